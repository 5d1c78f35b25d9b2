"""A small live HLS server for tests: a real aiohttp server on 127.0.0.1 port 0.

Serves a master playlist and media playlists whose media sequence advances with the
wall clock (a sliding window), and real MPEG-TS segments made once with PyAV.
Several :class:`Endpoint` servers share one time base, so an origin and its edges
list the same segments; each endpoint has knobs to misbehave like a broken server.

Beyond the muxed ladder, knobs set before the agent starts make the master list demuxed audio
(EXT-X-MEDIA TYPE=AUDIO, GROUP-ID "aud", one rendition per language, the first DEFAULT=YES,
variants with AUDIO="aud"; audio-only MPEG-TS segments, each audio playlist frozen on its own
with ``frozen_at["audio_<lang>"]``), an I-frame playlist of the 360p variant (byte ranges into
its segments) and encrypted playlists whose EXT-X-KEY URIs (with a token in the query) answer
16 key bytes, rotate every N segments, or fail with a status. ``unwritten_s`` plays a packager
that lists each segment before it has written it (404 for that long after it is listed, then 200).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import math
import time
from dataclasses import dataclass, field

import av
import numpy as np
from aiohttp import web

RENDITIONS = {"360p": (640, 360, 800_000), "180p": (320, 180, 300_000)}


KEY_BYTES = b"KEYBYTES-canary!"  # 16 octets: what a key server answers (tests look for it where it must not be)
KEY_TOKEN = "KEYTOKENcanary"  # the key URIs' query: must never be shown either


def make_audio_segment(seconds: float) -> bytes:
    """A real audio-only MPEG-TS segment (AAC tone), as a packager writes demuxed audio."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        _mux_tone(out, _tone_stream(out), seconds)
    return buf.getvalue()


def _tone_stream(out: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    """The AAC stream (mono, 48 kHz); added before anything is muxed (PyAV writes the header then)."""
    a = out.add_stream("aac", rate=48000)
    a.layout = "mono"
    return a


def _mux_tone(out: av.container.OutputContainer, a: av.audio.stream.AudioStream, seconds: float) -> None:
    """Encode and mux ``seconds`` of a 440-Hz tone (amplitude 0.2) on ``a`` into ``out``."""
    samples = int(seconds * 48000)
    tone = (0.2 * np.sin(2 * math.pi * 440 * np.arange(samples) / 48000.0)).astype(np.float32)
    for off in range(0, samples, 1024):
        fr = av.AudioFrame.from_ndarray(tone[off:off + 1024].reshape(1, -1), format="flt", layout="mono")
        fr.sample_rate = 48000
        fr.pts = off
        fr.time_base = fractions.Fraction(1, 48000)
        for pkt in a.encode(fr):
            out.mux(pkt)
    for pkt in a.encode():
        out.mux(pkt)


def make_segment(width: int, height: int, seconds: float, fps: int = 10, seed: int = 0) -> bytes:
    """A real MPEG-TS segment: H.264 moving pattern + AAC tone."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"preset": "ultrafast", "tune": "zerolatency"}
        a = _tone_stream(out)
        n = int(seconds * fps)
        for i in range(n):
            img = np.zeros((height, width, 3), np.uint8)
            x = (i * 7 + seed * 13) % width
            img[:, max(0, x - 8):x + 8] = (255, 200, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in v.encode(frame):
                out.mux(pkt)
        for pkt in v.encode():
            out.mux(pkt)
        _mux_tone(out, a, seconds)
    return buf.getvalue()


_SEGMENTS: dict[tuple[str, float], list[bytes]] = {}


def segments_for(rendition: str, seconds: float) -> list[bytes]:
    key = (rendition, seconds)
    if key not in _SEGMENTS and rendition.startswith("audio_"):
        _SEGMENTS[key] = [make_audio_segment(seconds)] * 2
    elif key not in _SEGMENTS:
        w, h, _ = RENDITIONS[rendition]
        _SEGMENTS[key] = [make_segment(w // 8 * 2, h // 8 * 2, seconds, seed=i) for i in range(2)]
    return _SEGMENTS[key]


@dataclass
class Knobs:
    """How an endpoint misbehaves (all off = healthy)."""

    frozen_at: dict[str, int] = field(default_factory=dict)  # rendition -> media sequence it stays at
    freeze_all: bool = False
    playlist_status: int | None = None
    segment_status: int | None = None
    segment_bytes_per_s: float | None = None  # throttle segment bodies
    malformed: bool = False
    huge_playlist: bool = False
    redirect_loop: bool = False
    pdt: bool = True
    endlist: bool = False  # append #EXT-X-ENDLIST: the live stream ended
    seq_offset: dict[str, int] = field(default_factory=dict)  # rendition -> numbered this much lower (same content)
    lag_segments: dict[str, int] = field(default_factory=dict)  # rendition -> its content this many segments late
    gap_every: int = 0  # every Nth media sequence listed as #EXT-X-GAP and answered 404
    encrypted: bool = False  # list #EXT-X-KEY METHOD=AES-128 (the segments stay clear; the key URI answers KEY_BYTES)
    key_rotate_every: int = 0  # with encrypted: a new key URI and IV every N media sequences (0: one key)
    key_status: int | None = None  # the key URIs answer this HTTP status instead of the key
    key_body: bytes | None = None  # the key URIs answer these bytes instead of KEY_BYTES
    key_delay_s: float = 0.0  # the key server takes this long to answer
    audio: tuple[str, ...] = ()  # demuxed audio: one EXT-X-MEDIA TYPE=AUDIO rendition per language
    iframes: bool = False  # list an EXT-X-I-FRAME-STREAM-INF playlist of the 360p variant
    gone: set[str] = field(default_factory=set)  # media playlists ("audio_en", "360p"...) answering 404
    playlist_delay_s: float = 0.0  # media playlists answer this late (a slow first byte)
    unwritten_s: float = 0.0  # a packager that lists before it writes: each segment answers 404 for this
    # long after it is listed, then 200 (its playlist keeps advancing on time)


class Timeline:
    """The shared live time base: segment ``n`` becomes available at ``t0 + (n+1)*dur``."""

    def __init__(self, seg_dur: float = 1.0, window: int = 5, first_seq: int = 100) -> None:
        self.seg_dur = seg_dur
        self.window = window
        self.first_seq = first_seq
        self.t0 = time.time() - window * seg_dur

    def newest(self) -> int:
        return self.first_seq + int((time.time() - self.t0) / self.seg_dur) - 1

    def listed_at(self, seq: int) -> float:
        """When segment ``seq`` first appears in the playlists (wall clock)."""
        return self.t0 + (seq - self.first_seq + 1) * self.seg_dur

    def media_playlist(self, rendition: str, newest: int, pdt: bool, seq_offset: int = 0, gap_every: int = 0) -> str:
        first = max(self.first_seq, newest - self.window + 1)
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{math.ceil(self.seg_dur)}",
                 f"#EXT-X-MEDIA-SEQUENCE:{first - seq_offset}"]
        for seq in range(first, newest + 1):
            if pdt:
                start = self.t0 + (seq - self.first_seq) * self.seg_dur
                ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)) + f".{int(start * 1000) % 1000:03d}Z"
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{ts}")
            if gap_every and seq % gap_every == 0:
                lines.append("#EXT-X-GAP")
            lines.append(f"#EXTINF:{self.seg_dur:.3f},")
            lines.append(f"{rendition}/{seq}.ts")
        return "\n".join(lines) + "\n"


class Endpoint:
    """One HLS server (an origin or an edge) on 127.0.0.1, port 0."""

    def __init__(self, timeline: Timeline, renditions: tuple[str, ...] = ("360p", "180p")) -> None:
        self.tl = timeline
        self.renditions = renditions
        self.knobs = Knobs()
        self.requests = 0
        self.segments_requested: list[int] = []  # media sequence of every segment request, in order
        self.playlists_requested: list[str] = []  # media playlist of every playlist request, in order
        self.audio_segments_requested: list[int] = []
        self.keys_requested: list[str] = []  # path and query of every key request
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def master_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/live/main.m3u8"

    def media_url(self, rendition: str) -> str:
        return f"http://127.0.0.1:{self.port}/live/main/{rendition}.m3u8"

    async def start(self) -> Endpoint:
        for r in self.renditions:
            await asyncio.to_thread(segments_for, r, self.tl.seg_dur)
        app = web.Application()
        app.router.add_get("/live/main.m3u8", self.master)
        app.router.add_get("/live/main/{r}.m3u8", self.media)
        app.router.add_get("/live/main/{r}/{seq}.ts", self.segment)
        app.router.add_get("/live/main/keys/{name}", self.key)
        app.router.add_get("/loop/{n}", self.loop)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Close the listener: afterwards connections are refused (port kept for restart)."""
        if self._runner:
            await self._runner.cleanup()
            self._runner = None

    def _common(self) -> web.Response | None:
        self.requests += 1
        k = self.knobs
        if k.redirect_loop:
            raise web.HTTPFound("/loop/0")
        if k.playlist_status:
            headers = {"Retry-After": "12"} if k.playlist_status in (429, 503) else {}
            return web.Response(status=k.playlist_status, text="error\n", headers=headers)
        if k.malformed:
            return web.Response(text="<html>not a playlist</html>", content_type="text/html")
        if k.huge_playlist:
            return web.Response(body=b"#EXTM3U\n" + b"#" * (5 * 1024 * 1024),
                                content_type="application/vnd.apple.mpegurl")
        return None

    async def loop(self, req: web.Request) -> web.Response:
        n = int(req.match_info["n"])
        raise web.HTTPFound(f"/loop/{n + 1}")

    async def master(self, _req: web.Request) -> web.Response:
        early = self._common()
        if early is not None:
            return early
        k = self.knobs
        lines = ["#EXTM3U"]
        for i, lang in enumerate(k.audio):
            lines.append(f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="{lang}",LANGUAGE="{lang}",'
                         f'DEFAULT={"YES" if i == 0 else "NO"},AUTOSELECT=YES,URI="main/audio_{lang}.m3u8"')
        for r in self.renditions:
            w, h, bw = RENDITIONS[r]
            audio = ',AUDIO="aud"' if k.audio else ""
            lines += [f"#EXT-X-STREAM-INF:BANDWIDTH={bw},RESOLUTION={w}x{h}{audio}", f"main/{r}.m3u8"]
        if k.iframes:
            w, h, bw = RENDITIONS["360p"]
            lines.append(f'#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH={bw // 10},RESOLUTION={w}x{h},'
                         'URI="main/360p_iframes.m3u8"')
        return web.Response(text="\n".join(lines) + "\n", content_type="application/vnd.apple.mpegurl")

    async def media(self, req: web.Request) -> web.Response:
        early = self._common()
        if early is not None:
            return early
        r = req.match_info["r"]
        if r not in self.playlists or r in self.knobs.gone:
            raise web.HTTPNotFound()
        self.playlists_requested.append(r)
        if self.knobs.playlist_delay_s:
            await asyncio.sleep(self.knobs.playlist_delay_s)
        newest = self.tl.newest()
        if self.knobs.freeze_all:
            self.knobs.frozen_at.update({x: self.knobs.frozen_at.get(x, newest) for x in self.playlists})
        if r in self.knobs.frozen_at:
            newest = self.knobs.frozen_at[r]
        newest -= self.knobs.lag_segments.get(r, 0)
        iframes = r.endswith("_iframes")
        text = self.tl.media_playlist(r.removesuffix("_iframes"), newest, self.knobs.pdt,
                                      self.knobs.seq_offset.get(r, 0), self.knobs.gap_every)
        if iframes:  # one I-frame per segment, at its start (RFC 8216 §4.3.3.6)
            text = text.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:4\n#EXT-X-I-FRAMES-ONLY")
            text = text.replace("\n360p/", "\n#EXT-X-BYTERANGE:18800@0\n360p/")
        if self.knobs.encrypted:
            text = self._keyed(text)
        if self.knobs.endlist:
            text += "#EXT-X-ENDLIST\n"
        return web.Response(text=text,
                            content_type="application/vnd.apple.mpegurl", headers={"Cache-Control": "max-age=1"})

    @property
    def playlists(self) -> tuple[str, ...]:
        """Every media playlist this endpoint serves: variants, audio renditions, I-frame playlist."""
        k = self.knobs
        return (*self.renditions, *(f"audio_{x}" for x in k.audio), *(("360p_iframes",) if k.iframes else ()))

    def _keyed(self, text: str) -> str:
        """EXT-X-KEY before the first segment and, rotating, before every Nth media sequence: a new
        URI (with a token in its query, as key servers take one) and a new IV."""
        every = self.knobs.key_rotate_every
        lines = text.splitlines()
        out: list[str] = []
        first = True
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("#EXT-X-PROGRAM-DATE-TIME") or line.startswith("#EXT-X-GAP") \
                    or line.startswith("#EXTINF"):
                # the segment's tags start here: find its URI to know its media sequence
                j = i
                while lines[j].startswith("#"):
                    j += 1
                seq = int(lines[j].rsplit("/", 1)[1].split(".")[0])
                if first or (every and seq % every == 0):
                    block = seq // every if every else 0
                    out.append(f'#EXT-X-KEY:METHOD=AES-128,URI="keys/{block}.bin?token={KEY_TOKEN}",'
                               f"IV=0x{block:032x}")
                    first = False
                out.extend(lines[i:j + 1])
                i = j + 1
                continue
            out.append(line)
            i += 1
        return "\n".join(out) + "\n"

    async def key(self, req: web.Request) -> web.Response:
        self.requests += 1
        self.keys_requested.append(req.path_qs)
        if self.knobs.key_delay_s:
            await asyncio.sleep(self.knobs.key_delay_s)
        if self.knobs.key_body is not None:
            return web.Response(body=self.knobs.key_body, content_type="application/octet-stream")
        if self.knobs.key_status:
            return web.Response(status=self.knobs.key_status, text="no key\n")
        return web.Response(body=KEY_BYTES, content_type="application/octet-stream")

    async def segment(self, req: web.Request) -> web.StreamResponse:
        self.requests += 1
        k = self.knobs
        if k.segment_status:
            return web.Response(status=k.segment_status, text="no such segment\n")
        r = req.match_info["r"]
        seq = int(req.match_info["seq"].split(".")[0])
        if r.startswith("audio_"):
            self.audio_segments_requested.append(seq)
        else:
            self.segments_requested.append(seq)
        if k.gap_every and seq % k.gap_every == 0:
            return web.Response(status=404, text="a gap: no such segment\n")
        if k.unwritten_s and time.time() < self.tl.listed_at(seq) + k.unwritten_s:
            return web.Response(status=404, text="not written yet\n")
        if (r, self.tl.seg_dur) not in _SEGMENTS:  # audio segments are made when first asked for
            await asyncio.to_thread(segments_for, r, self.tl.seg_dur)
        body = segments_for(r, self.tl.seg_dur)[seq % 2]
        if not k.segment_bytes_per_s:
            return web.Response(body=body, content_type="video/mp2t", headers={"Cache-Control": "max-age=60"})
        resp = web.StreamResponse(headers={"Content-Type": "video/mp2t", "Content-Length": str(len(body))})
        await resp.prepare(req)
        chunk = max(1, int(k.segment_bytes_per_s / 10))
        for off in range(0, len(body), chunk):
            await resp.write(body[off:off + chunk])
            await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp
