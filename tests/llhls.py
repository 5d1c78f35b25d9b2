"""A small live Low-Latency HLS server for tests (no real LL-HLS packager installs here): a real
aiohttp server on 127.0.0.1 port 0 whose parts advance with the clock.

Each rendition is cut into parts of ``part_s`` seconds, ``parts_per_segment`` to a segment. Its
media playlist is what draft-pantos-hls-rfc8216bis §9.11 shows (tests/test_llhls.py holds the
rendering against that example): EXT-X-TARGETDURATION, EXT-X-MEDIA-SEQUENCE, EXT-X-SERVER-CONTROL
(CAN-BLOCK-RELOAD=YES, PART-HOLD-BACK = 3 part targets), EXT-X-PART-INF; the last
``window`` complete segments, the EXT-X-PART tags of those within three target durations of the
end (§4.4.4.9 asks them removed past that), the parts of the segment in progress (with an
EXT-X-PROGRAM-DATE-TIME on the first segment: parts are cut on the wall clock), an
EXT-X-PRELOAD-HINT for the next part and an EXT-X-RENDITION-REPORT per sibling rendition.

Blocking reload (§6.2.5.2): ``_HLS_msn=M&_HLS_part=P`` is held until part P of segment M exists
(or the segment is complete), at most three target durations (then 503); ``_HLS_msn`` more than
two segments past the newest is 400. Parts and segments answer a few bytes.

With ``skip_until_s`` it offers Playlist Delta Updates (CAN-SKIP-UNTIL; ``_HLS_skip=YES`` leaves out
the segments starting more than that before the end, EXT-X-SKIP says how many).

Knobs: ``stalled_at`` (monotonic time after which no part is produced: a packager that stops),
``blocks`` (False: a blocking reload is answered at once with the current playlist, as an edge
that strips or ignores the query does), ``part_delay_s`` (each part answers that late) and
``bad_skip`` (a delta update's SKIPPED-SEGMENTS one short of what it left out: an off-by-one) and
``playlist_delay_s`` (every playlist answer starts that late: a slow first byte).

A part requested before it is cut (as its preload hint invites, §4.4.5.3) is held until it is
(at most three target durations, then 404), and answered as soon as it is; ``hinted_requests``
counts them. Knobs: ``hint_delay_s`` (such a request answers that long after the part is cut,
while the same part asked for once listed answers at once: a CDN that does not hold or coalesce
hinted requests and fetches the part only after the playlist lists it) and ``hint_404`` (such a
request is answered 404 at once: a server that does not hold them).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from localserver import LocalServer


@dataclass
class LowLatencyKnobs:
    stalled_at: float | None = None
    blocks: bool = True
    part_delay_s: float = 0.0  # each part's answer waits this long (a slow edge for parts)
    bad_skip: bool = False  # a delta update says it skipped one segment fewer than it left out
    playlist_delay_s: float = 0.0  # every playlist answer waits this long first (a slow first byte)
    hint_delay_s: float = 0.0  # a part asked for before it is cut answers this long after it is cut
    hint_404: bool = False  # a part asked for before it is cut answers 404 at once


class LowLatencyEndpoint:
    def __init__(self, *, part_s: float = 0.5, parts_per_segment: int = 4, window: int = 6,
                 renditions: tuple[str, ...] = ("180p", "360p"), t0: float | None = None,
                 skip_until_s: float | None = None) -> None:
        self.part_s = part_s
        self.per = parts_per_segment
        self.window = window
        self.renditions = renditions
        self.t0 = time.monotonic() - 8 * part_s * parts_per_segment if t0 is None else t0
        self.wall_t0 = time.time() - (time.monotonic() - self.t0)  # the same instant on the wall clock
        self.skip_until_s = skip_until_s  # CAN-SKIP-UNTIL offered: delta updates for _HLS_skip=YES
        self.knobs = LowLatencyKnobs()
        self.server: LocalServer | None = None
        self.blocking_requests = 0
        self.hinted_requests = 0  # parts requested before they were cut

    @property
    def target_duration(self) -> int:
        return max(math.floor(self.part_s * self.per + 0.5), 1)  # EXTINF rounded may not exceed it (RFC 8216 §4.3.3.1)

    def url(self, rendition: str) -> str:
        assert self.server is not None
        return f"{self.server.url}/{rendition}.m3u8"

    def parts_done(self, now: float | None = None) -> int:
        """Complete parts since the start (all renditions are cut alike)."""
        now = time.monotonic() if now is None else now
        if self.knobs.stalled_at is not None:
            now = min(now, self.knobs.stalled_at)
        return max(int((now - self.t0) / self.part_s), 0)

    def render(self, rendition: str, done: int, *, seg: str = "seg{msn}.ts", part: str = "part{msn}.{i}.ts",
               version: int | None = None, pdt: bool = True, skip: bool = False) -> str:
        """The media playlist once ``done`` parts are complete (module docstring)."""
        msn_done, in_progress = divmod(done, self.per)
        first = max(msn_done - self.window, 0)
        seg_s = self.part_s * self.per
        lines = ["#EXTM3U", f"#EXT-X-TARGETDURATION:{self.target_duration}"]
        if version is not None:
            lines.append(f"#EXT-X-VERSION:{version}")
        can_skip = f",CAN-SKIP-UNTIL={self.skip_until_s:.1f}" if self.skip_until_s else ""
        lines += [f"#EXT-X-MEDIA-SEQUENCE:{first}",
                  f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * self.part_s:.5f}{can_skip}",
                  f"#EXT-X-PART-INF:PART-TARGET={self.part_s:.5f}"]
        skipped = 0
        if skip and self.skip_until_s:  # segments starting more than CAN-SKIP-UNTIL before the end
            end = msn_done * seg_s + in_progress * self.part_s
            skipped = sum(1 for msn in range(first, msn_done) if end - msn * seg_s > self.skip_until_s)
            if skipped:
                lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped - 1 if self.knobs.bad_skip else skipped}")
        recent = msn_done - math.ceil(3 * self.target_duration / seg_s)  # parts listed from this segment on
        if pdt:  # the first segment's capture time (the wall clock the parts are cut on)
            start = datetime.fromtimestamp(self.wall_t0 + (first + skipped) * seg_s, UTC).isoformat(timespec="milliseconds")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{start.replace('+00:00', 'Z')}")
        for msn in range(first + skipped, msn_done):
            if msn >= recent:
                lines += [self._part(rendition, msn, i, part) for i in range(self.per)]
            lines += [f"#EXTINF:{seg_s:.5f},", seg.format(msn=msn)]
        lines += [self._part(rendition, msn_done, i, part) for i in range(in_progress)]
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part.format(msn=msn_done, i=in_progress)}"')
        last_msn, last_part = (msn_done, in_progress - 1) if in_progress else (msn_done - 1, self.per - 1)
        for other in self.renditions:
            if other != rendition:
                lines.append(f'#EXT-X-RENDITION-REPORT:URI="{other}.m3u8",LAST-MSN={last_msn},LAST-PART={last_part}')
        return "\n".join(lines) + "\n"

    def _part(self, _rendition: str, msn: int, i: int, template: str) -> str:
        flag = ",INDEPENDENT=YES" if i == 0 else ""
        return f'#EXT-X-PART:DURATION={self.part_s:.5f}{flag},URI="{template.format(msn=msn, i=i)}"'

    async def start(self) -> LowLatencyEndpoint:
        app = web.Application()
        app.router.add_get("/{rendition}.m3u8", self.playlist)
        app.router.add_get("/{name}.ts", self.media)
        self.server = await LocalServer.start(app)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    async def playlist(self, req: web.Request) -> web.Response:
        rendition = req.match_info["rendition"]
        if rendition not in self.renditions:
            raise web.HTTPNotFound()
        if self.knobs.playlist_delay_s:
            await asyncio.sleep(self.knobs.playlist_delay_s)
        msn_q, part_q = req.query.get("_HLS_msn"), req.query.get("_HLS_part")
        if msn_q is not None and self.knobs.blocks:
            self.blocking_requests += 1
            msn, want = int(msn_q), int(part_q or 0)
            if msn > self.parts_done() // self.per + 2:
                raise web.HTTPBadRequest(text="_HLS_msn too far in the future\n")
            # part P of segment M, or the whole segment when no part is named
            need = msn * self.per + (want + 1 if part_q is not None else self.per)
            deadline = time.monotonic() + 3 * self.target_duration
            while self.parts_done() < need:
                if time.monotonic() > deadline:
                    raise web.HTTPServiceUnavailable(text="part not produced in time\n")
                await asyncio.sleep(0.02)
        body = self.render(rendition, self.parts_done(), skip=req.query.get("_HLS_skip") == "YES")
        return web.Response(text=body, content_type="application/vnd.apple.mpegurl",
                            headers={"Cache-Control": "no-cache"})

    async def media(self, req: web.Request) -> web.Response:
        name = req.match_info["name"]
        if (m := re.fullmatch(r"part(\d+)\.(\d+)", name)) is not None:
            await self.hinted(int(m[1]) * self.per + int(m[2]))
        if name.startswith("part") and self.knobs.part_delay_s:
            await asyncio.sleep(self.knobs.part_delay_s)
        return web.Response(body=b"\x47" + b"\0" * 187, content_type="video/mp2t")

    async def hinted(self, index: int) -> None:
        """Hold a request for part ``index`` (counted from the start) until it is cut (module
        docstring); at once when it is out already."""
        if self.parts_done() > index:
            return
        self.hinted_requests += 1
        if self.knobs.hint_404:
            raise web.HTTPNotFound(text="not cut yet\n")
        deadline = time.monotonic() + 3 * self.target_duration
        while self.parts_done() <= index:
            cut = self.t0 + (index + 1) * self.part_s  # when the part is cut (unless stalled)
            if time.monotonic() > deadline:
                raise web.HTTPNotFound(text="part not produced in time\n")
            await asyncio.sleep(min(max(cut - time.monotonic(), 0.0) + 0.001, 0.05))
        if self.knobs.hint_delay_s:
            await asyncio.sleep(self.knobs.hint_delay_s)
