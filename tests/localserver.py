"""An aiohttp application served on 127.0.0.1, port 0, for tests that script a server.

    server = await LocalServer.start(app)       # or: async with await LocalServer.start(app) as s:
    url = server.url + "/live/index.m3u8"
    ...
    await server.stop()
"""

from __future__ import annotations

from aiohttp import web


class LocalServer:
    """``app`` listening on a free loopback port; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, app: web.Application) -> LocalServer:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return cls(runner, site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> LocalServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
