"""The Makefile as a newcomer meets it: a half-made .venv is made again, success says nothing of failure.

Runs the checkout's real Makefile with real ``python3 -m venv`` in a temp folder; ``PIP=true``
leaves out the package downloads (what is tested is the venv step, not PyPI).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _require import require_binary

ROOT = Path(__file__).resolve().parents[1]


def _make(cwd: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("make"), "--no-print-directory", *targets, f"PY={sys.executable}",
                           "PIP=true"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_half_made_venv_is_made_again_and_success_says_nothing_of_failure(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    # What `python3 -m venv` leaves when ensurepip is missing: bin/python, no pip.
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to("/bin/false")

    r = _make(tmp_path, ".venv/.ready")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ".venv is incomplete" in r.stdout and "creating .venv" in r.stdout
    pip = subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-m", "pip", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert pip.returncode == 0, pip.stderr

    (tmp_path / ".venv" / ".ready").unlink()
    r = _make(tmp_path, ".venv/.ready")  # a good venv is kept, and nothing reads like an error
    assert r.returncode == 0 and "incomplete" not in r.stdout and "creating" not in r.stdout, r.stdout
    assert "failed" not in r.stdout + r.stderr and "apt-get" not in r.stdout + r.stderr


def test_too_old_a_python_is_refused_before_anything_is_made(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Python 3.9.2' && exit 0\nexit 1\n")
    old.chmod(0o755)
    r = subprocess.run([require_binary("make"), "--no-print-directory", ".venv/.ready", f"PY={old}", "PIP=true"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "signalpath needs Python >= 3.11" in r.stdout and "Python 3.9.2" in r.stdout
    assert not (tmp_path / ".venv").exists()
