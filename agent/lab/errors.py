"""The lab's small exception tree.

::

    LabError                  anything the lab refuses or cannot do
    ├── FaultRequestError     a bad fault request (unknown name/target/param, conflict);
    │                         the control API maps it to HTTP 400, the CLI to exit code 2
    ├── FaultNotFound         no fault with that id (HTTP 404)
    └── LabControlError       the control API answered an error or could not be reached
                              (client side, ``agent.lab.control``)
"""

from __future__ import annotations


class LabError(Exception):
    """Base of every error the lab raises on purpose."""


class FaultRequestError(LabError):
    """A fault request the lab refuses; the message says what and how to fix it."""


class FaultNotFound(LabError):
    """No active or past fault has that id."""


class LabControlError(LabError):
    """The control API answered with an error, or was unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
