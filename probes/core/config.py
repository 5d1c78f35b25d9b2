"""The one strict-config base (STYLE.md 8): every config model derives from :class:`StrictModel`.

Unknown keys are errors (``extra="forbid"``), so a typo in the YAML is reported with its
path instead of being ignored; models are frozen, so a probe cannot change the config it
was handed; defaults live in the type. Probe configs live beside their probes and
derive from it; agent/config.py composes them into the agent's config.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = ["StrictModel"]
