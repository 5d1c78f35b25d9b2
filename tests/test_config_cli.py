"""Config validation and the CLI as a user meets them: real subprocesses, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from agent.config import parse_config
from agent.errors import ConfigError

SP = [sys.executable, "-m", "agent.cli"]


def run_cli(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([*SP, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


GOOD = """
agent: {listen: "127.0.0.1:0", site: studio-a}
streams:
  - name: main
    origin: "http://127.0.0.1:8080/live/main.m3u8"
    edges:
      - {name: edge-a, url: "http://127.0.0.1:8081/live/main.m3u8"}
      - {name: edge-b, url: "http://127.0.0.1:8082/live/main.m3u8?token=${CDN_TOKEN}"}
"""


def test_check_config_ok(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(GOOD)
    r = run_cli("check-config", str(f), env={"CDN_TOKEN": "s3cret"})
    assert r.returncode == 0, r.stderr
    assert "1 stream(s), 2 edge(s)" in r.stdout
    assert "s3cret" not in r.stdout + r.stderr


def test_check_config_reports_every_error_with_its_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("""
agent: {listen: "nowhere", colour: blue}
streams:
  - name: main
    origin: "http://127.0.0.1:8080/live/main.m3u8"
    edges:
      - {name: edge-a, url: "http://127.0.0.1:8081/a.m3u8"}
      - {name: edge-b, url: "ftp:/"}
""")
    r = run_cli("check-config", str(f))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert f"{f}: streams[0].edges[1].url: 'ftp:/' is not an http(s) URL" in lines
    assert any(line.startswith(f"{f}: agent.listen: 'nowhere' is not HOST:PORT") for line in lines)
    assert any(line.startswith(f"{f}: agent.colour: unknown key") for line in lines)
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("content,expected", [
    (None, "no such file"),
    ("streams: [\n  - name: a\n   bad", "invalid YAML: line"),
    ("streams:\n  - {name: a, origin: 'http://h/a.m3u8'}\n  - {name: a, origin: 'http://h/b.m3u8'}\n",
     "streams[1].name: duplicate stream name 'a'"),
    ("streams:\n  - name: a\n    origin: 'http://h/a.m3u8'\n    edges: [{name: e, url: 'http://h/1'}, "
     "{name: e, url: 'http://h/2'}]\n", "streams[0].edges[1].name: duplicate edge name 'e'"),
    ("streams:\n  - {name: a, origin: 'http://h/a.m3u8?k=${NOPE_NOT_SET}'}\n",
     "streams[0].origin: environment variable NOPE_NOT_SET is not set"),
    ("- just\n- a list\n", "the top level must be a mapping"),
])
def test_check_config_one_line_errors(tmp_path, content, expected):
    f = tmp_path / "c.yaml"
    if content is not None:
        f.write_text(content)
    r = run_cli("check-config", str(f))
    assert r.returncode == 2
    assert expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_env_interpolation_and_defaults():
    cfg = parse_config({"streams": [{"name": "s", "origin": "http://h/${P:-live}/a.m3u8?t=${T}"}]},
                       env={"T": "tok"})
    assert cfg.streams[0].origin == "http://h/live/a.m3u8?t=tok"
    assert cfg.streams[0].hls.interval_s == 1.0 and cfg.streams[0].hls.stale_factor == 1.5
    assert cfg.agent.listen == "127.0.0.1:9321"


def test_bad_url_error_hides_secrets():
    with pytest.raises(ConfigError) as exc:
        parse_config({"streams": [{"name": "s", "origin": "rtmp://user:pw@h/live/SECRETKEY"}]}, env={})
    assert "SECRETKEY" not in str(exc.value) and "pw" not in str(exc.value)


def test_help_teaches_with_examples():
    r = run_cli("--help")
    assert r.returncode == 0 and "check-config" in r.stdout and "run" in r.stdout and "example" in r.stdout
    for cmd in ("run", "check-config"):
        h = run_cli(cmd, "--help")
        assert h.returncode == 0
        assert "example:" in h.stdout and "signalpath " + cmd in h.stdout


def test_run_serves_and_stops_cleanly_on_sigterm(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    f = tmp_path / "c.yaml"
    f.write_text(f"agent: {{listen: '127.0.0.1:{port}', site: t}}\nstreams:\n"
                 "  - {name: main, origin: 'http://127.0.0.1:1/live/main.m3u8'}\n")
    p = subprocess.Popen([*SP, "run", "-c", str(f)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=tmp_path)
    try:
        deadline = time.monotonic() + 20
        body = ""
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if "signalpath_probe_success" in body:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert "signalpath_probe_success" in body
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=15)
        assert p.returncode == 0, err
        assert "stopped" in err and "Traceback" not in err
    finally:
        if p.poll() is None:
            p.kill()


def test_run_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        f = tmp_path / "c.yaml"
        f.write_text(f"agent: {{listen: '127.0.0.1:{port}'}}\nstreams: []\n")
        r = run_cli("run", "-c", str(f))
    assert r.returncode == 2
    assert "cannot listen on" in r.stderr and "Traceback" not in r.stderr


def test_a_relative_incident_store_lives_beside_the_config_file(tmp_path, monkeypatch):
    from agent.config import load_config

    f = tmp_path / "conf" / "c.yaml"
    f.parent.mkdir()
    f.write_text("streams:\n  - {name: main, origin: 'http://127.0.0.1:1/live/main.m3u8'}\n"
                 "incidents: {path: 'state/inc.db'}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(f).incidents.path == str(tmp_path / "conf" / "state" / "inc.db")
    f.write_text("streams:\n  - {name: main, origin: 'http://127.0.0.1:1/live/main.m3u8'}\n")
    assert load_config(f).incidents.path == str(tmp_path / "conf" / "signalpath-incidents.db")


def test_check_config_takes_the_file_as_run_does(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("streams:\n  - {name: main, origin: 'http://127.0.0.1:1/live/main.m3u8'}\n")
    assert run_cli("check-config", "-c", str(f)).returncode == 0
    assert run_cli("check-config", str(f)).returncode == 0
    r = run_cli("check-config")
    assert r.returncode == 2 and "give the config file once" in r.stderr
