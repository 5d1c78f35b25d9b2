"""Hostile HTTP servers for tests: raw asyncio servers on 127.0.0.1 port 0 that answer a
request with a response that never ends where a client would wait for it to.

Kinds (``HostileServer(kind)``):

- ``endless_header``: ``HTTP/1.1 200 OK\\r\\nX-Endless: `` then header bytes for ever;
- ``endless_lines``: one short header line after another, for ever;
- ``slowloris``: the status line, then one header byte per ``interval_s`` (1 s by default);
- ``endless_trailer``: a chunked body of 2 bytes, then one trailer field that never ends.

Each connection writes in chunks of ``chunk`` bytes as fast as the client reads (the socket's
flow control paces it), until the client goes away. ``sent`` counts the bytes written, over all
connections; ``connections`` the connections accepted.
"""

from __future__ import annotations

import asyncio
import contextlib


class HostileServer:
    def __init__(self, kind: str, *, chunk: int = 16 * 1024, interval_s: float = 1.0) -> None:
        if kind not in ("endless_header", "endless_lines", "slowloris", "endless_trailer"):
            raise ValueError(f"unknown hostile kind {kind!r}")
        self.kind = kind
        self.chunk = chunk
        self.interval_s = interval_s
        self.sent = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> HostileServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self._send(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # our own __aexit__: end quietly (asyncio's stream callback
            pass  # reports a handler task that ends cancelled as an error)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.sent += len(data)
        await writer.drain()

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        if self.kind == "endless_trailer":
            await self._write(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: ")
        else:
            await self._write(writer, b"HTTP/1.1 200 OK\r\n" + (b"X-Endless: " if self.kind != "endless_lines" else b""))
        if self.kind == "slowloris":
            while True:
                await asyncio.sleep(self.interval_s)
                await self._write(writer, b"a")
        piece = b"x-h: 1\r\n" * (self.chunk // 8) if self.kind == "endless_lines" else b"a" * self.chunk
        while True:
            await self._write(writer, piece)
            await asyncio.sleep(0)


def rss_mib() -> float:
    """This process's resident memory in MiB (psutil), for the memory bounds of hostile runs."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20
