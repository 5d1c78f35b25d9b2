"""Bad and hostile config files (issue 15 item 4): every problem is found by ``check-config``
(and refused the same way by ``run``) with the key's path, in bounded time, without a traceback,
and without echoing a secret.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from agent.config import load_config, parse_listen
from agent.errors import ConfigError

SP = [sys.executable, "-m", "agent.cli"]
ORIGIN = "http://127.0.0.1:1/live/main.m3u8"


def _problems(tmp_path, text: str) -> list[tuple[str, str]]:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f, env={})
    return exc.value.problems


def _one(tmp_path, text: str) -> str:
    """The single problem as ``path: message``."""
    problems = _problems(tmp_path, text)
    assert len(problems) == 1, problems
    path, msg = problems[0]
    return f"{path}: {msg}" if path else msg


# ---------------------------------------------------------------- URL ports and hosts

@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:99999/a.m3u8", "port 99999 out of range (1-65535)"),
    ("http://127.0.0.1:0/a.m3u8", "port 0 out of range (1-65535)"),
    ("http://127.0.0.1:8o8o/a.m3u8", "the port is not a number"),
    ("http://[::1/a.m3u8", "IPv6 address without its closing ']'"),
    ("http://[not-v6]:80/a.m3u8", "'[not-v6]' is not an IPv6 address"),
])
def test_an_edge_url_with_a_bad_port_or_ipv6_host_is_named_by_its_path(tmp_path, url, expected):
    text = f"streams:\n  - name: s\n    origin: '{ORIGIN}'\n    edges:\n      - {{name: a, url: '{ORIGIN}'}}\n" \
           f"      - {{name: b, url: '{url}'}}\n"
    assert _one(tmp_path, text) == f"streams[0].edges[1].url: {expected}"


def test_a_good_ipv6_url_is_accepted(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("streams:\n  - {name: s, origin: 'http://[::1]:8080/live/main.m3u8'}\n")
    assert load_config(f).streams[0].origin == "http://[::1]:8080/live/main.m3u8"


def test_bad_ports_are_found_in_every_url_key_not_only_the_edges(tmp_path):
    text = ("streams:\n  - name: s\n    origin: 'http://h:70000/a.m3u8'\n"
            "    ingest: {rtmp: [{url: 'rtmp://h:123456/live/KEY'}]}\n"
            "exporters: {otlp: {endpoint: 'http://collector:65536'}}\n")
    got = {p for p, _ in _problems(tmp_path, text)}
    assert got == {"streams[0].origin", "streams[0].ingest.rtmp[0].url", "exporters.otlp.endpoint"}


def test_a_url_error_never_echoes_a_password_or_token(tmp_path):
    text = ("streams:\n  - name: s\n    origin: 'http://user:PASSWORD1@h:99999/a.m3u8?token=TOKEN1'\n"
            "    edges: [{name: a, url: 'http://u:PASSWORD2@[::1/a.m3u8?token=TOKEN2'}]\n")
    out = repr(_problems(tmp_path, text))
    for secret in ("PASSWORD1", "PASSWORD2", "TOKEN1", "TOKEN2"):
        assert secret not in out


# ---------------------------------------------------------------- listen addresses

@pytest.mark.parametrize("value,host,port", [
    ("127.0.0.1:9321", "127.0.0.1", 9321),
    ("localhost:0", "localhost", 0),
    ("[::1]:9000", "::1", 9000),
    ("[::]:9000", "::", 9000),
    ("0.0.0.0:80", "0.0.0.0", 80),
])
def test_listen_addresses_that_are_good(value, host, port):
    assert parse_listen(value) == (host, port)


@pytest.mark.parametrize("value,expected", [
    ("nowhere", "'nowhere' is not HOST:PORT"),
    ("127.0.0.1:99999", "port 99999 out of range (0-65535)"),
    ("127.0.0.1:", "'127.0.0.1:' is not HOST:PORT"),
    ("::1:9000", "an IPv6 address goes in brackets: '[::1]:9000'"),
    ("[::1:9000", "'[::1:9000' has no closing ']'"),
    ("[::1]9000", "'[::1]9000' is not [IPv6]:PORT"),
    ("[nothost]:9000", "'nothost' is not an IPv6 address"),
    ("bad host:9000", "'bad host' is not a host name or address"),
])
def test_listen_addresses_that_are_bad(tmp_path, value, expected):
    text = f"agent: {{listen: '{value}'}}\nstreams:\n  - {{name: s, origin: '{ORIGIN}'}}\n"
    assert _one(tmp_path, text).startswith(f"agent.listen: {expected}")


# ---------------------------------------------------------------- incidents.path

def test_an_incident_store_that_is_a_directory(tmp_path):
    (tmp_path / "store").mkdir()
    msg = _one(tmp_path, f"streams:\n  - {{name: s, origin: '{ORIGIN}'}}\nincidents: {{path: store}}\n")
    assert msg == f"incidents.path: {tmp_path / 'store'} is a directory, not an SQLite file"


def test_an_incident_store_under_a_regular_file(tmp_path):
    (tmp_path / "notadir").write_text("x")
    msg = _one(tmp_path, f"streams:\n  - {{name: s, origin: '{ORIGIN}'}}\nincidents: {{path: notadir/sub/inc.db}}\n")
    assert msg == f"incidents.path: {tmp_path / 'notadir'} is a file, not a folder"


def test_an_incident_store_that_is_not_a_database(tmp_path):
    (tmp_path / "inc.db").write_text("agent:\n  listen: x\n")
    msg = _one(tmp_path, f"streams:\n  - {{name: s, origin: '{ORIGIN}'}}\nincidents: {{path: inc.db}}\n")
    assert msg == f"incidents.path: {tmp_path / 'inc.db'} is not an SQLite database"


def test_an_incident_store_that_is_a_database_or_empty_or_new_is_fine(tmp_path):
    sqlite3.connect(tmp_path / "inc.db").execute("CREATE TABLE t (x)").connection.close()
    (tmp_path / "empty.db").write_bytes(b"")
    for path in ("inc.db", "empty.db", "new/dir/inc.db"):
        f = tmp_path / "c.yaml"
        f.write_text(f"streams:\n  - {{name: s, origin: '{ORIGIN}'}}\nincidents: {{path: {path}}}\n")
        load_config(f)
    assert not (tmp_path / "new").exists()  # check-config never creates it


# ---------------------------------------------------------------- duplicate keys

def test_a_duplicate_key_is_an_error_with_its_path_and_both_lines(tmp_path):
    text = f"streams:\n  - name: s\n    origin: '{ORIGIN}'\n    name: t\n"
    assert _one(tmp_path, text) == "streams[0].name: duplicate key at line 4, column 5 (first at line 2, column 5)"


def test_a_duplicate_top_level_key(tmp_path):
    text = f"agent: {{site: a}}\nstreams:\n  - {{name: s, origin: '{ORIGIN}'}}\nagent: {{site: b}}\n"
    assert _one(tmp_path, text) == "agent: duplicate key at line 4, column 1 (first at line 1, column 1)"


def test_anchors_aliases_and_merge_keys_still_work(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(f"streams:\n  - name: a\n    origin: '{ORIGIN}'\n    hls: &hls {{interval_s: 2.0}}\n"
                 f"  - name: b\n    origin: '{ORIGIN}'\n    hls: *hls\n"
                 f"  - name: c\n    origin: '{ORIGIN}'\n    hls: {{<<: *hls, stale_factor: 3.0}}\n")
    cfg = load_config(f)
    assert [s.hls.interval_s for s in cfg.streams] == [2.0, 2.0, 2.0]
    assert cfg.streams[2].hls.stale_factor == 3.0


# ---------------------------------------------------------------- YAML bombs

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_billion_laughs_is_rejected_fast(tmp_path):
    t0 = time.monotonic()
    msg = _one(tmp_path, BILLION_LAUGHS)
    assert time.monotonic() - t0 < 0.5
    assert "aliases expand to more than 100000 values" in msg and msg.startswith("invalid YAML: ")


def test_a_recursive_alias_is_rejected(tmp_path):
    msg = _one(tmp_path, "streams: &s [*s]\n")
    assert "an alias refers to a collection it is inside of" in msg


@pytest.mark.parametrize("text", ["[" * 100_000, "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 200)),
                                  "x: " + "{a: " * 60 + "1" + "}" * 60 + "\n"])
def test_deep_nesting_is_rejected_with_its_line(tmp_path, text):
    t0 = time.monotonic()
    msg = _one(tmp_path, text)
    assert time.monotonic() - t0 < 1
    assert msg.startswith("invalid YAML: line ") and "nested deeper than 50" in msg, msg


def test_a_huge_file_is_rejected_before_it_is_parsed(tmp_path):
    msg = _one(tmp_path, "# padding\n" * 120_000)
    assert msg == "the file is over 1 MiB (1200000 bytes): not a config file"


# ---------------------------------------------------------------- the CLI: check-config and run alike

@pytest.mark.parametrize("text,expected", [
    (BILLION_LAUGHS, "aliases expand to more than"),
    ("[" * 100_000, "nested deeper than 50"),
    (f"streams:\n  - {{name: s, origin: '{ORIGIN}'}}\nstreams: []\n", "streams: duplicate key at line 3"),
    (f"agent: {{listen: '[::1:9000'}}\nstreams:\n  - {{name: s, origin: '{ORIGIN}'}}\n", "agent.listen: "),
    ("streams:\n  - {name: s, origin: 'http://u:PASSWORD1@h:99999/a?token=TOKEN1'}\n",
     "streams[0].origin: port 99999 out of range"),
])
def test_check_config_and_run_refuse_alike(tmp_path, text, expected):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    outs = []
    for command in (["check-config", "-c", str(f)], ["run", "-c", str(f)]):
        r = subprocess.run([*SP, *command], capture_output=True, text=True, timeout=30, env=dict(os.environ))
        assert r.returncode == 2, (command, r.stderr)
        assert expected in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "PASSWORD1" not in r.stderr and "TOKEN1" not in r.stderr
        outs.append(r.stderr)
    assert outs[0] == outs[1]


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_run_listens_on_an_ipv6_listen_address(tmp_path):
    """``agent.listen: '[::1]:PORT'`` is accepted by check-config and listened on by run (it used to be
    passed on with its brackets)."""
    import signal
    import socket
    import urllib.request

    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    f = tmp_path / "c.yaml"
    f.write_text(f"agent: {{listen: '[::1]:{port}'}}\nstreams:\n  - {{name: s, origin: '{ORIGIN}'}}\n")
    p = subprocess.Popen([*SP, "run", "-c", str(f)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=tmp_path)
    try:
        deadline, body = time.monotonic() + 20, ""
        while time.monotonic() < deadline and "signalpath_probe_success" not in body:
            try:
                body = urllib.request.urlopen(f"http://[::1]:{port}/metrics", timeout=2).read().decode()
            except OSError:
                time.sleep(0.1)
        assert "signalpath_probe_success" in body
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
        assert p.returncode == 0 and f"http://[::1]:{port}/" in err and "Traceback" not in err, err
    finally:
        if p.poll() is None:
            p.kill()


def test_a_flat_file_of_many_values_is_refused_before_its_graph_is_built(tmp_path):
    t0 = time.monotonic()
    msg = _one(tmp_path, "x: [" + "1," * 400_000 + "1]\n")
    assert time.monotonic() - t0 < 2
    assert msg.startswith("invalid YAML: line 1, column ") and "more than 100000 values" in msg, msg
