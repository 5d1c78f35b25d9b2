"""The deployment artifacts a user runs the agent with (deploy/): the systemd unit passes
systemd's own checks with a low exposure score, and the container image is built from files
that make a complete, installable package and runs as an unprivileged user.

No container engine runs here (no daemon, no podman), so the image itself is not built: the
test builds the wheel the Containerfile's ``pip install .`` would, from exactly the files it
copies, and checks the Containerfile's user, pins and entry point.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _require import require_binary

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "signalpath.service"
CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def _unit_for_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's signalpath (verify checks it exists)."""
    exe = Path(sys.executable).with_name("signalpath")
    assert exe.exists(), "the venv's signalpath entry point (make venv installs it)"
    text = UNIT.read_text().replace("/opt/signalpath/.venv/bin/signalpath", str(exe))
    out = tmp_path / "signalpath.service"
    out.write_text(text)
    return out


@pytest.mark.lab
def test_the_systemd_unit_verifies_and_is_hardened(tmp_path):
    analyze = require_binary("systemd-analyze")
    unit = _unit_for_here(tmp_path)
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    sec = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True,
                         timeout=60)
    m = re.search(r"Overall exposure level for signalpath\.service: ([0-9.]+) (\w+)", sec.stdout)
    assert m is not None, sec.stdout[-2000:] + sec.stderr
    assert float(m.group(1)) <= 2.0, sec.stdout  # systemd's "OK" band starts below 2.0... 'SAFE' below 1.0
    text = UNIT.read_text()
    for line in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=",
                 "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=signalpath"):
        assert line in text.splitlines(), line
    exec_start = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split()[1:] == ["run", "-c", "/etc/signalpath/signalpath.yaml"]


def _instructions() -> list[tuple[str, str]]:
    lines, cur = [], ""
    for raw in CONTAINERFILE.read_text().splitlines():
        if raw.startswith("#") or not raw.strip():
            continue
        cur += raw.rstrip("\\").strip() + " " if raw.endswith("\\") else raw.strip()
        if not raw.endswith("\\"):
            word, _, rest = cur.partition(" ")
            lines.append((word.upper(), rest.strip()))
            cur = ""
    return lines


def test_the_container_runs_unprivileged_pinned_and_as_the_agent():
    ins = _instructions()
    base = [rest for word, rest in ins if word == "FROM"]
    assert len(base) == 1 and re.fullmatch(r"[\w./-]+:[\w.-]+", base[0]) and not base[0].endswith(":latest")
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert all(word != "USER" for word, _ in ins[ins.index(("USER", users[-1])) + 1:])
    pip = next(rest for word, rest in ins if word == "RUN" and "pip install" in rest)
    assert "-c constraints.txt" in pip  # the versions the tests ran with
    entry = dict(ins)
    assert entry["ENTRYPOINT"] == '["signalpath"]' and entry["CMD"].startswith('["run", "-c", ')
    assert entry["EXPOSE"] == "9321"
    for word, rest in ins:  # nothing secret baked in
        assert not re.search(r"(?i)(token|password|secret|key)=", rest), (word, rest)


def test_the_files_the_container_copies_make_an_installable_agent(tmp_path):
    """`pip install .` in the image sees only what COPY put there: build that wheel here."""
    ctx = tmp_path / "context"
    ctx.mkdir()
    for word, rest in _instructions():
        if word != "COPY":
            continue
        *sources, _dest = rest.split()
        for src in sources:
            path = ROOT / src
            assert path.exists(), f"COPY {src}: not in the repository"
            if path.is_dir():
                shutil.copytree(path, ctx / src, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, ctx / src)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                          "-w", str(tmp_path / "dist"), str(ctx)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("signalpath-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"agent/cli.py", "agent/web/index.html", "probes/hls.py", "agent/selfwatch.py"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "signalpath = agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
