"""Headless Chromium driven over the DevTools protocol (CDP) for page tests that interact.

``async with Browser(chromium, profile) as b: page = await b.open(url)`` starts Chromium with
``--remote-debugging-port=0`` (it prints the port it chose), opens ``url`` in a tab and speaks
CDP to it over a WebSocket (aiohttp): ``page.eval(js)`` (awaits a returned promise, gives its
JSON value), ``page.wait(js, timeout)`` (until ``js`` is truthy; a deadline, never a sleep),
``page.screenshot(path, width, height)`` (a PNG at that viewport), ``page.screenshots(folder,
name)`` (laptop and phone sizes, printed and kept in ``$SIGNALPATH_SCREENSHOTS``). Every wait has a timeout;
Chromium is killed on exit.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import aiohttp


class CdpError(RuntimeError):
    pass


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        n = next(self._ids)
        await self.ws.send_json({"id": n, "method": method, "params": params})
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive_json()
                if msg.get("id") == n:
                    if "error" in msg:
                        raise CdpError(f"{method}: {msg['error']}")
                    return dict(msg.get("result", {}))

    async def eval(self, expression: str, timeout: float = 15.0) -> Any:
        r = await self.call("Runtime.evaluate", timeout, expression=expression, awaitPromise=True,
                            returnByValue=True)
        if "exceptionDetails" in r:
            raise CdpError(f"{expression[:80]}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get("result", {}).get("value")

    async def wait(self, expression: str, timeout: float = 15.0) -> Any:
        """Until ``expression`` is truthy. One that throws (an element not there yet: the page
        still loading) counts as not yet; at the deadline its last error is in the message."""
        deadline = time.monotonic() + timeout
        error = ""
        while True:
            try:
                value = await self.eval(expression)
            except CdpError as exc:
                value, error = None, f" (last error: {exc})"
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"never true within {timeout:g} s: {expression[:120]}{error}")
            await asyncio.sleep(0.2)

    async def screenshots(self, folder: Path, name: str) -> list[Path]:
        """``name``-laptop.png (1366x900) and ``name``-phone.png (390x844) in ``folder``; their paths
        are printed (the test output), and copied to ``$SIGNALPATH_SCREENSHOTS`` when set."""
        out = []
        for width, height, size in ((1366, 900, "laptop"), (390, 844, "phone")):
            shot = await self.screenshot(folder / f"{name}-{size}.png", width, height)
            print(f"screenshot: {shot}")
            keep = os.environ.get("SIGNALPATH_SCREENSHOTS")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                (Path(keep) / shot.name).write_bytes(shot.read_bytes())
            out.append(shot)
        return out

    async def screenshot(self, path: Path, width: int, height: int) -> Path:
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=width < 700)
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


class Browser:
    def __init__(self, chromium: str, profile: Path) -> None:
        self.chromium, self.profile = chromium, profile
        self.proc: asyncio.subprocess.Process | None = None
        self.session: aiohttp.ClientSession | None = None
        self.port = 0
        self._drain: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Browser:
        self.proc = await asyncio.create_subprocess_exec(
            self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={self.profile}",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        async with asyncio.timeout(30):
            while not self.port:
                line = (await self.proc.stderr.readline()).decode(errors="replace")
                if not line:
                    raise CdpError("chromium exited before it listened")
                m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if m:
                    self.port = int(m.group(1))
        self._drain = asyncio.ensure_future(self._drain_stderr())  # a full pipe would block Chromium
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while await self.proc.stderr.read(65536):
            pass

    async def __aexit__(self, *exc: object) -> None:
        if self._drain is not None:
            self._drain.cancel()
        if self.session is not None:
            await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)

    async def open(self, url: str) -> Page:
        assert self.session is not None
        async with self.session.put(f"http://127.0.0.1:{self.port}/json/new?{url}") as r:
            target = json.loads(await r.text())
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024)
        page = Page(ws)
        await page.call("Page.enable")
        # the new tab starts as about:blank, 'complete' at once: wait for the page asked for
        await page.wait("location.href !== 'about:blank' && document.readyState === 'complete'")
        return page
