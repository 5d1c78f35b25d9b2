"""The HTTP layer against a real nginx that behaves as CDNs do in the field.

One nginx, two server blocks on two loopback ports:

- the entry (an edge's load balancer) answers the stream URL with ``return 302`` to a
  cache node, the URL carrying a token as such redirects do;
- the cache node serves the playlists from a temp folder with ``gzip on`` for
  ``application/vnd.apple.mpegurl`` (as many CDNs do), and the segments as they are,
  with byte ranges (nginx's static module answers ``Range`` with 206).

Players resolve relative URIs against the URL that answered after the redirects (RFC 3986
§5.1.3), so every media playlist and segment must be asked of the cache node; the body
must come back decoded; a byte range must come back exact. The HLS probe itself is run
once against the entry and nginx's access log says where its requests went.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from _require import require_binary
from attempt import call_probe

from probes import hls
from probes.base import ProbeContext, ProbeTarget
from probes.core.playlist import MasterPlaylist, MediaPlaylist, parse
from probes.core.redact import redact_url
from probes.hls import HlsSettings
from probes.net.httpfetch import Fetcher

pytestmark = pytest.mark.lab

MASTER = "".join(
    ["#EXTM3U\n#EXT-X-VERSION:3\n"]
    + [f"#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={w}x{h},CODECS=\"avc1.64001f,mp4a.40.2\"\n{name}/index.m3u8\n"
       for name, (w, h, bw) in {"720p": (1280, 720, 3_000_000), "360p": (640, 360, 800_000)}.items()])
MEDIA = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:100\n"
         "#EXTINF:2.000,\nseg100.ts\n#EXTINF:2.000,\n../shared/seg101.ts\n")
SEGMENT = bytes(range(188)) * 40  # 7,520 bytes of TS-sized packets


@dataclass
class Nginx:
    entry: str  # http://127.0.0.1:P1
    node: str  # http://127.0.0.1:P2
    node_port: int
    access_log: Path

    def requests(self) -> list[tuple[int, str, int]]:
        """(server port, request path, status) of every request so far."""
        out = []
        for line in self.access_log.read_text().splitlines():
            port, path, status = line.split(" ")[:3]
            out.append((int(port), path, int(status)))
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    binary = require_binary("nginx")
    run, www = tmp_path / "run", tmp_path / "www"
    (run / "tmp").mkdir(parents=True)
    for name in ("720p", "360p"):
        (www / "live" / name).mkdir(parents=True)
        (www / "live" / name / "index.m3u8").write_text(MEDIA)
        (www / "live" / name / "seg100.ts").write_bytes(SEGMENT)
    (www / "live" / "shared").mkdir()
    (www / "live" / "shared" / "seg101.ts").write_bytes(SEGMENT[::-1])
    (www / "live" / "main.m3u8").write_text(MASTER)
    p1, p2 = free_port(), free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the pytest temp folder (0700)
    conf = run / "nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {run}/nginx.pid; error_log {run}/error.log warn; {user}
events {{ worker_connections 64; }}
http {{
  log_format sp '$server_port $uri $status';
  access_log {run}/access.log sp;
  client_body_temp_path {run}/tmp/body; proxy_temp_path {run}/tmp/proxy;
  fastcgi_temp_path {run}/tmp/fastcgi; uwsgi_temp_path {run}/tmp/uwsgi; scgi_temp_path {run}/tmp/scgi;
  types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
  gzip on; gzip_types application/vnd.apple.mpegurl; gzip_min_length 1;
  server {{ listen 127.0.0.1:{p1};
    location = /live/main.m3u8 {{ return 302 http://127.0.0.1:{p2}/node7/live/main.m3u8?token=s3cret; }} }}
  server {{ listen 127.0.0.1:{p2};
    location /node7/ {{ alias {www}/; add_header Cache-Control no-cache; }} }}
}}
""")
    check = subprocess.run([binary, "-t", "-c", str(conf), "-p", str(run)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(run)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        for port in (p1, p2):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert proc.poll() is None, (run / "error.log").read_text()
                    assert time.monotonic() < deadline, "nginx did not listen within 10 s"
                    time.sleep(0.05)
        yield Nginx(f"http://127.0.0.1:{p1}", f"http://127.0.0.1:{p2}", p2, run / "access.log")
    finally:
        proc.terminate()  # by its PID: daemon off, so the master is our child
        proc.wait(timeout=10)


async def test_redirect_gzip_and_range_through_real_nginx(nginx: Nginx) -> None:
    async with Fetcher(max_per_host=4) as f:
        fr = await f.get(nginx.entry + "/live/main.m3u8", max_bytes=100_000)
        assert fr.ok, fr.detail
        assert fr.redirects == 1 and fr.final_url == nginx.node + "/node7/live/main.m3u8?token=s3cret"
        assert redact_url(fr.final_url) == nginx.node + "/node7/live/main.m3u8?token=***"
        assert fr.headers["content-encoding"] == "gzip"  # nginx gzipped it: we asked as players do
        assert fr.body.decode() == MASTER and fr.decoded_size == len(MASTER) and fr.size < len(MASTER)
        master = parse(fr.body.decode(), fr.final_url)
        assert isinstance(master, MasterPlaylist)
        assert [v.uri for v in master.variants] == [f"{nginx.node}/node7/live/{n}/index.m3u8" for n in ("720p", "360p")]

        mf = await f.get(master.variants[1].uri, max_bytes=100_000)
        assert mf.ok and mf.redirects == 0 and mf.headers["content-encoding"] == "gzip"
        media = parse(mf.body.decode(), mf.final_url)
        assert isinstance(media, MediaPlaylist)
        assert [s.uri for s in media.segments] == [f"{nginx.node}/node7/live/360p/seg100.ts",
                                                   f"{nginx.node}/node7/live/shared/seg101.ts"]

        seg = await f.get(media.segments[1].uri, max_bytes=100_000, keep_body=False)
        assert seg.ok and seg.body == b"" and seg.size == seg.decoded_size == len(SEGMENT)
        assert "content-encoding" not in seg.headers  # video/mp2t is not in gzip_types

        part = await f.get(media.segments[0].uri, max_bytes=100_000, byte_range=(376, 1880))
        assert part.ok and part.status == 206 and not part.range_ignored
        assert part.body == SEGMENT[1880:2256] and part.size == 376
        assert part.headers["content-range"] == f"bytes 1880-2255/{len(SEGMENT)}"
        beyond = await f.get(media.segments[0].uri, max_bytes=100_000, byte_range=(10, len(SEGMENT)))
        assert beyond.failure is not None and beyond.status == 416


async def test_hls_probe_follows_the_redirect_to_the_cache_node(nginx: Nginx) -> None:
    """An entry that answers 302: the probe's media playlists and segments go to the node."""
    async with Fetcher(max_per_host=4) as f:
        target = ProbeTarget("hls", "main", "cdn", "edge-a", HlsSettings(), nginx.entry + "/live/main.m3u8", 1.0, 5.0)
        result = await call_probe(hls.probe, target, ProbeContext(state={}, http=f))
    assert result.failure is None, result.detail
    seen = nginx.requests()
    entry = [r for r in seen if r[0] != nginx.node_port]
    assert entry == [(int(nginx.entry.rsplit(":", 1)[1]), "/live/main.m3u8", 302)]  # the entry: once, redirected
    node = {(path, status) for port, path, status in seen if port == nginx.node_port}
    assert {("/node7/live/main.m3u8", 200), ("/node7/live/720p/index.m3u8", 200),
            ("/node7/live/360p/index.m3u8", 200), ("/node7/live/shared/seg101.ts", 200)} <= node, seen
