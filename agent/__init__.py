"""signalpath's agent (DESIGN.md "Layout")."""


def installed_version() -> str | None:
    """The installed distribution's version (pyproject.toml); None when run from a checkout that
    was never installed. Imports nothing heavy: the CLI's --version uses it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signalpath")
    except PackageNotFoundError:
        return None
