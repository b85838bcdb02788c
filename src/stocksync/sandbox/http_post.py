"""A small HTTP/1.1 client for webhook deliveries: POST over kept-alive connections.

Shopify delivers from a fleet of machines; the sandbox delivers from the event loop that also
serves the Admin API. A general client (httpx) spends several milliseconds of that loop per
delivery on pool bookkeeping, and at hundreds of deliveries a second the sandbox, not the
receiver, would set the pace. Deliveries need little: a POST with a body, the status code,
the body read and dropped, the connection kept for the next one. Plain ``http://`` only (the
receivers are local); anything else is refused as a failed delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit


class DeliveryError(Exception):
    """The delivery did not get an HTTP answer (refused, reset, timed out, unreadable)."""


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class KeepAlivePoster:
    def __init__(self, max_connections: int, timeout: float) -> None:
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise DeliveryError(f"only http:// callback URLs are delivered to, not {url!r}")
        host, port = parts.hostname, parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange((host, port), request)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, key: tuple[str, int], request: bytes) -> int:
        idle = self._idle.setdefault(key, [])
        reused = bool(idle)
        conn = idle.pop() if idle else await asyncio.open_connection(*key)
        try:
            status, keep = await self._roundtrip(conn, request)
        except (OSError, asyncio.IncompleteReadError):
            conn[1].close()
            if not reused:
                raise
            # A kept connection the server closed meanwhile: once more on a new one.
            conn = await asyncio.open_connection(*key)
            status, keep = await self._roundtrip(conn, request)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            idle.append(conn)
        else:
            conn[1].close()
        return status

    @staticmethod
    async def _roundtrip(conn: _Connection, request: bytes) -> tuple[int, bool]:
        reader, writer = conn
        writer.write(request)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        version, status, *_ = status_line.decode("latin-1").split(" ", 2)
        length: int | None = None
        chunked = False
        keep = version == "HTTP/1.1"
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value
            elif name == "connection":
                keep = value != "close" if keep else value == "keep-alive"
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()  # the body runs to the end of the connection
            keep = False
        return int(status), keep

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()
