"""A tiny HTTP/1.1 server for /metrics, /healthz and /leases.

Plain asyncio streams (so it runs under uvloop), one request per connection, always
`Connection: close`. Hostile or broken clients cost little: the request head must arrive
within READ_TIMEOUT and fit in MAX_HEAD bytes, a reply must drain within WRITE_TIMEOUT, and at
most MAX_CONNECTIONS are served at once (more are closed at once). Request bodies are never
read. The callables run on the event loop, so they must not block; `leases` may also return
an awaitable (e.g. a store read done in a worker thread).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable

from .config import parse_listen
from .metrics import CONTENT_TYPE, Metrics

__all__ = ["start_http"]

log = logging.getLogger(__name__)

READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
LINGER_TIMEOUT = 1.0
LINGER_BYTES = 1 << 20
MAX_HEAD = 8192
MAX_CONNECTIONS = 64

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"

Health = Callable[[], tuple[bool, str]]
Leases = Callable[[], list[dict] | Awaitable[list[dict]]]
Announce = Callable[[str, str | None], Awaitable[tuple[int, dict]]]


def _response(
    status: int, body: bytes, content_type: str = _TEXT, head_only: bool = False
) -> bytes:
    headers = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
    ]
    if status == 405:
        headers.append("Allow: GET, HEAD, POST")
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + body


def _parse_request_line(head: bytes) -> tuple[str, str, str] | None:
    """(method, path, query) from a request head, or None if it is not HTTP/1.x."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        method = parts[0].decode("ascii")
        target = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not method.isalpha() or not method.isupper() or not target.startswith("/"):
        return None
    path, _, query = target.partition("?")
    return method, path, query


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then discard what the client still sends (an unread request body),
    briefly: closing with unread input makes the kernel send RST, and the client may then
    lose the reply it has not read yet."""
    if not writer.can_write_eof():
        return
    writer.write_eof()
    budget = LINGER_BYTES
    try:
        async with asyncio.timeout(LINGER_TIMEOUT):
            while budget > 0:
                chunk = await reader.read(min(budget, 65536))
                if not chunk:
                    return
                budget -= len(chunk)
    except TimeoutError:
        pass


async def start_http(
    listen: str,
    metrics: Metrics,
    health: Health,
    leases: Leases,
    announce: Announce | None = None,
) -> asyncio.Server:
    """Start serving on `listen` ("host:port", "[v6]:port", ":port" for all addresses).

    `health()` returns (healthy, reason): /healthz answers 200 "ok" or 503 with the reason.
    `leases()` returns JSON-serialisable rows for /leases. `POST /announce?mac=M[&interface=I]`
    calls `announce(mac, interface)`, which returns (status, JSON body). The returned server
    is already serving; close it with `server.close(); await server.wait_closed()`.
    """
    host, port = parse_listen(listen)
    active = 0

    async def route(method: str, path: str, query: str) -> bytes:
        head_only = method == "HEAD"
        if method == "POST" and path == "/announce" and announce is not None:
            args = urllib.parse.parse_qs(query)
            mac = args.get("mac", [""])[0]
            interface = args.get("interface", [None])[0]
            status, result = await announce(mac, interface)
            return _response(status, json.dumps(result).encode() + b"\n", _JSON)
        if method not in ("GET", "HEAD"):
            return _response(405, b"method not allowed\n")
        if path == "/metrics":
            return _response(200, metrics.render(), CONTENT_TYPE, head_only)
        if path == "/healthz":
            ok, reason = health()
            if ok:
                return _response(200, b"ok\n", head_only=head_only)
            return _response(503, f"{reason}\n".encode(), head_only=head_only)
        if path == "/leases":
            rows = leases()
            if inspect.isawaitable(rows):
                rows = await rows
            body = json.dumps(rows, indent=1).encode() + b"\n"
            return _response(200, body, _JSON, head_only)
        return _response(404, b"not found\n", head_only=head_only)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if active >= MAX_CONNECTIONS:
            writer.transport.abort()
            return
        active += 1
        clean = False
        try:
            reply = await _read_and_route(reader)
            if reply is not None:
                writer.write(reply)
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
                await _linger(reader, writer)
            clean = True
        except (ConnectionError, TimeoutError):
            pass  # the client went away or stalled
        finally:
            active -= 1
            if clean:
                writer.close()
            else:
                writer.transport.abort()

    async def _read_and_route(reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.IncompleteReadError:
            return None  # closed before a full head: nobody to answer
        except asyncio.LimitOverrunError:
            return _response(431, b"request head too large\n")
        except TimeoutError:
            return _response(408, b"request timeout\n")
        request = _parse_request_line(head)
        if request is None:
            return _response(400, b"bad request\n")
        try:
            return await route(*request)
        except Exception:
            log.exception("HTTP handler failed for %s %s", request[0], request[1])
            return _response(500, b"internal error\n")

    return await asyncio.start_server(handle, host, port, limit=MAX_HEAD, reuse_address=True)
