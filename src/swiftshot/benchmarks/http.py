"""A small HTTP/1.1 client on asyncio streams, for the load generator.

Why not httpx: on a 2-core machine shared with the server under test, every millisecond of client
CPU per request is taken from the server. This client does only what the benchmark needs
(keep-alive, Content-Length and chunked bodies) and costs a fraction of httpx per request; the
load generator reports its own CPU use so that claim is checked on every run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class NotLoopback(ValueError):
    """The target is not on this machine: the load generator refuses to load other hosts."""


def loopback_target(url: str) -> tuple[str, int]:
    """``http://127.0.0.1:8000`` → (host, port); refuse anything that is not loopback HTTP."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise NotLoopback(f"target must be an http:// URL on this machine (e.g. "
                          f"http://127.0.0.1:8000); got {url!r}")
    host = parts.hostname
    try:
        port = parts.port or 80
    except ValueError:
        raise NotLoopback(f"target {url!r} has an invalid port") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise NotLoopback(f"cannot resolve {host!r}; use a loopback address such as 127.0.0.1") from None
    addresses = {info[4][0] for info in infos}
    bad = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if bad or not addresses:
        raise NotLoopback(f"refusing to load {host!r} ({', '.join(bad) or 'no address'}): the "
                          "load generator only targets loopback (127.0.0.0/8, ::1)")
    return host, port


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    """Lower-cased names; a repeated header keeps its last value."""
    body: bytes


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


class Client:
    """Keep-alive connections to one host; opens a new one whenever all are busy (open loop)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Conn] = []
        self._host_header = f"{host}:{port}".encode()

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> Response:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._open()
        try:
            resp, keep = await self._exchange(conn, method, path, headers or {}, body)
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            conn.close()
            # A kept-alive connection the server closed while idle: one fresh try is safe
            # only when nothing was answered on it.
            if reused and isinstance(e, (asyncio.IncompleteReadError, ConnectionResetError,
                                         BrokenPipeError)):
                return await self._fresh(method, path, headers or {}, body)
            raise
        except BaseException:
            conn.close()
            raise
        return self._release(conn, keep, resp)

    async def _fresh(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        conn = await self._open()
        try:
            resp, keep = await self._exchange(conn, method, path, headers, body)
        except BaseException:
            conn.close()
            raise
        return self._release(conn, keep, resp)

    def _release(self, conn: _Conn, keep: bool, resp: Response) -> Response:
        if keep:
            self._idle.append(conn)
        else:
            conn.close()
        return resp

    async def _open(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**22)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer)

    async def _exchange(self, conn: _Conn, method: str, path: str, headers: dict[str, str],
                        body: bytes) -> tuple[Response, bool]:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header]
        lines += [f"{k}: {v}".encode() for k, v in headers.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}".encode())
        conn.writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await conn.writer.drain()

        status_line = await conn.reader.readline()
        if not status_line:
            raise asyncio.IncompleteReadError(b"", None)
        version, _, rest = status_line.decode("latin-1").partition(" ")
        status = int(rest.split(" ", 1)[0])
        hdrs: dict[str, str] = {}
        while True:
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            name, _, value = line.decode("latin-1").partition(":")
            hdrs[name.strip().lower()] = value.strip()
        keep = version.strip() == "HTTP/1.1" and hdrs.get("connection", "").lower() != "close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            data = b""
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            data = await self._chunked(conn.reader)
        elif "content-length" in hdrs:
            data = await conn.reader.readexactly(int(hdrs["content-length"]))
        else:
            data = await conn.reader.read()
            keep = False
        return Response(status, hdrs, data), keep

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            try:
                await conn.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
