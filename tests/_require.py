"""Skip-or-fail helper for tests that need a real system binary.

A test that needs nginx, ffmpeg, prometheus... calls ``require_binary(name)``.
When the binary is missing the test is skipped, unless the environment says the
lab is mandatory (``SIGNALPATH_REQUIRE_LAB=1``, set in CI), in which case it
fails: a CI run must never go green by silently skipping the real-software lab.
"""

from __future__ import annotations

import os
import shutil

import pytest

# Debian package that provides each binary, so the message says what to install.
_DEBIAN_PACKAGES: dict[str, str] = {
    "nginx": "nginx libnginx-mod-rtmp",
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "promtool": "prometheus",
    "amtool": "prometheus-alertmanager",
    "chromium": "chromium",
    "systemd-analyze": "systemd",
}


def require_binary(name: str) -> str:
    """Return the absolute path of ``name`` on PATH, or skip/fail the test.

    Fails (``pytest.fail``) instead of skipping when ``SIGNALPATH_REQUIRE_LAB == "1"``.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    package = _DEBIAN_PACKAGES.get(name, name)
    message = (
        f"required binary {name!r} not found on PATH; "
        f"install the Debian package(s): apt-get install {package}"
    )
    if os.environ.get("SIGNALPATH_REQUIRE_LAB") == "1":
        pytest.fail(message + " (SIGNALPATH_REQUIRE_LAB=1 makes this a failure)", pytrace=False)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover - pytest.skip raises
