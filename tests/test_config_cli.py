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
      - {name: edge-b, url: "ftp://u:pw@cdn.example/k"}
""")
    r = run_cli("check-config", str(f))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert f"{f}: streams[0].edges[1].url: 'ftp://***@cdn.example' is not an http(s) URL" in lines
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
        f.write_text(f"agent: {{listen: '127.0.0.1:{port}'}}\nstreams:\n"
                     "  - {name: main, origin: 'http://127.0.0.1:1/live/main.m3u8'}\n")
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


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"signalpath {version('signalpath')}", r


def test_the_minimal_example_config_passes_check_config_as_it_is():
    """examples/minimal.yaml (README "Quickstart") is valid without any environment variable set."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "minimal.yaml"
    env = {k: v for k, v in os.environ.items() if k not in ("CDN_TOKEN", "STREAM_KEY")}
    r = subprocess.run([*SP, "check-config", "-c", str(example)], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert ": ok — 1 stream(s)" in r.stdout
    assert "${" not in example.read_text()  # no secrets, nothing to export first


@pytest.mark.parametrize("content", ["", "agent: {site: a}\n", "streams: []\n"])
def test_a_config_without_streams_is_an_error_for_check_config_and_run(tmp_path, content):
    f = tmp_path / "c.yaml"
    f.write_text(content)
    for command in (["check-config", str(f)], ["run", "-c", str(f)]):
        r = run_cli(*command)
        assert r.returncode == 2, (command, r)
        assert r.stderr.strip() == f"{f}: streams: no stream to watch: add one under streams: with a name and its " \
                                   "origin playlist URL (examples/minimal.yaml is a complete one)"


def test_incidents_never_creates_the_database_it_is_asked_to_read(tmp_path):
    missing = tmp_path / "typo.db"
    r = run_cli("incidents", "--db", str(missing))
    assert r.returncode == 2 and f"--db {missing}: no such file" in r.stderr and "Traceback" not in r.stderr
    f = tmp_path / "c.yaml"
    f.write_text("streams:\n  - {name: main, origin: 'http://127.0.0.1:1/live/main.m3u8'}\n")
    r = run_cli("incidents", "-c", str(f))
    assert r.returncode == 1 and "no incident database at" in r.stderr and "yet" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_json_into_a_closed_pipe_ends_quietly(tmp_path):
    """`signalpath incidents --json | head -1`: the reader is gone before the output is written."""
    from agent.incidents import IncidentStore

    db = tmp_path / "inc.db"
    IncidentStore(db).close()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has exited: every write to the pipe fails with EPIPE
    try:
        r = subprocess.run([*SP, "incidents", "--db", str(db), "--json"], stdout=write_end, stderr=subprocess.PIPE,
                           text=True, timeout=30)
    finally:
        os.close(write_end)
    assert r.stderr == "" and r.returncode == 128 + signal.SIGPIPE, r.stderr


def test_every_option_has_help_and_no_help_shows_markup():
    import argparse

    from agent.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{path} {name}")

    for path, parser in walk(build_parser(), "signalpath"):
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{path} {'/'.join(action.option_strings) or action.dest}: no help text"
        text = parser.format_help()
        assert "``" not in text and ":func:" not in text and ":mod:" not in text, f"{path} --help shows markup"


def test_lab_commands_say_where_they_looked_and_how_to_point_elsewhere():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    r = run_cli("lab", "faults", "--control", f"http://127.0.0.1:{port}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"cannot reach the lab control API at http://127.0.0.1:{port}" in r.stderr
    assert "signalpath demo" in r.stderr and "9330" in r.stderr and "--control URL" in r.stderr


def test_the_demo_takes_the_lab_control_port_lab_commands_look_at_unless_it_is_taken():
    import socket

    from agent.demo import _lab_control_port

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert _lab_control_port(taken) == 0  # a free one then; the demo prints it
    assert _lab_control_port(taken) == taken


def test_reading_the_history_needs_no_stream_secret(tmp_path):
    """`incidents -c` reads incidents.path only: an edge token that is not in this shell's
    environment is no reason to refuse the history (it refused before)."""
    conf = tmp_path / "agent.yaml"
    conf.write_text("streams:\n  - name: news\n    origin: http://127.0.0.1:9/o.m3u8\n"
                    "    edges: [{name: e1, url: 'http://127.0.0.1:9/e.m3u8?token=${SP_TEST_UNSET_TOKEN}'}]\n"
                    "incidents: {path: 'state/inc.db'}\n")
    env = {k: v for k, v in os.environ.items() if k != "SP_TEST_UNSET_TOKEN"}
    r = run_cli("incidents", "-c", str(conf), env=env)
    assert r.returncode == 1 and "SP_TEST_UNSET_TOKEN" not in r.stderr, r.stderr
    assert str(tmp_path / "state" / "inc.db") in r.stderr and not (tmp_path / "state").exists()


def test_a_url_without_its_scheme_is_never_quoted(tmp_path, monkeypatch):
    """A fresh user's find: a URL with its scheme missing or mistyped was quoted whole —
    'amuser:PW@127.0.0.1:9093', 'rtmps//ingest.example/live/KEY', a ${VAR} holding
    'user:PW@cdn.example/...'. Without scheme://host nothing tells a password or a key from
    the rest, so such a value is not shown at all (every URL key: HTTP, RTMP, alerts, ingest)."""
    monkeypatch.setenv("EDGE_URL", "cdnuser:CANARY1@cdn.example/live/main.m3u8?token=CANARY2")
    f = tmp_path / "c.yaml"
    f.write_text("""
streams:
  - name: main
    origin: "${EDGE_URL}"
    edges:
      - {name: edge-a, url: "http//cdn:CANARY3@127.0.0.1:8081/x.m3u8"}
    ingest:
      rtmp: [{url: "rtmps//ingest.example/live/CANARY4"}]
alerts:
  alertmanagers: [{url: "amuser:CANARY5@127.0.0.1:9093"}]
  webhooks: [{url: "not a url CANARY6"}]
""")
    r = run_cli("check-config", str(f))
    assert r.returncode == 2, r.stdout
    assert "CANARY" not in r.stdout + r.stderr
    for key in ("streams[0].origin", "streams[0].edges[0].url", "streams[0].ingest.rtmp[0].url",
                "alerts.alertmanagers[0].url", "alerts.webhooks[0].url"):
        assert any(key in line and "not an" in line and "value is not shown" in line
                   for line in r.stderr.splitlines()), (key, r.stderr)


@pytest.mark.parametrize("streams, setting, decoded", [
    (1, None, "all"), (10, None, "all"), (11, None, "key"), (11, "all", "all"), (1, "key", "key"),
])
def test_media_decodes_every_picture_for_a_few_streams_and_key_frames_at_scale(streams, setting, decoded):
    from agent.jobs import build_jobs

    media = {} if setting is None else {"media": {"video_frames": setting}}
    cfg = parse_config({"streams": [{"name": f"s{i}", "origin": f"http://h/{i}/a.m3u8", **media}
                                    for i in range(streams)]}, env={})
    modes = {t.config.video_frames for job in build_jobs(cfg) if job.probe == "media" for t in job.targets}
    assert modes == {decoded}


@pytest.mark.parametrize("streams, setting, sampled", [
    (1, None, "all"), (50, None, "all"), (51, None, 2), (200, None, 4), (200, "all", "all"), (1, 3, 3),
])
def test_media_analyses_every_segment_up_to_50_streams_and_samples_runs_beyond(streams, setting, sampled):
    from agent.jobs import build_jobs

    media = {} if setting is None else {"media": {"sampling": setting}}
    cfg = parse_config({"streams": [{"name": f"s{i}", "origin": f"http://h/{i}/a.m3u8", **media}
                                    for i in range(streams)]}, env={})
    modes = {t.config.sampling for job in build_jobs(cfg) if job.probe == "media" for t in job.targets}
    assert modes == {sampled}


@pytest.mark.parametrize("streams, setting, decoded", [(1, None, "all"), (10, None, "all"), (11, None, "key"),
                                                       (11, "all", "all"), (1, "key", "key")])
def test_ingest_monitors_decode_every_picture_for_a_few_ingests_and_key_pictures_at_scale(streams, setting,
                                                                                          decoded):
    from agent.jobs import build_jobs

    monitor = {"url": "rtmp://ingest/live/${KEY}", **({} if setting is None else {"video_frames": setting})}
    cfg = parse_config({"streams": [{"name": f"s{i}", "origin": f"http://h/{i}/a.m3u8",
                                     "ingest": {"monitor": [monitor]}} for i in range(streams)]}, env={"KEY": "k"})
    modes = {t.config.settings.video_frames for job in build_jobs(cfg) if job.probe == "ingest_monitor"
             for t in job.targets}
    assert modes == {decoded}
