"""signalpath's exception tree, mapped at the boundary (httpx ``_exceptions.py`` habit).

    SignalpathError
    ├── ConfigError        a user's config is wrong: carries every problem with its path
    └── AgentError         the agent could not start (port in use, store unusable)

Probes never raise these for measurement failures: those are data
(``probes.base.Failure``). Third-party exceptions are translated with
``raise ... from exc`` where they cross into agent code.
"""

from __future__ import annotations


class SignalpathError(Exception):
    """Base of every error signalpath raises on purpose."""


class ConfigError(SignalpathError):
    """A configuration problem; ``problems`` lists ``(path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class AgentError(SignalpathError):
    """The agent cannot run (e.g. its listen address is taken)."""
