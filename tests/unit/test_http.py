"""The /metrics, /healthz, /leases HTTP server, including hostile clients."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

from dataplane import http as lmdp_http
from dataplane.http import start_http
from dataplane.metrics import Metrics


class State:
    def __init__(self):
        self.healthy = (True, "ok")
        self.rows = [{"mac": "0a:58:0a:f4:03:0a", "ipv4": "10.244.3.10/24", "node": "node-a"}]

    def health(self):
        return self.healthy

    def leases(self):
        return self.rows


@pytest.fixture
async def server():
    metrics = Metrics()
    metrics.received("tap0", "dhcpv4", "DHCPDISCOVER")
    state = State()
    srv = await start_http("127.0.0.1:0", metrics, state.health, state.leases)
    port = srv.sockets[0].getsockname()[1]
    yield port, state
    srv.close()
    await srv.wait_closed()


async def raw(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if half_close:
        writer.write_eof()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return reply


def parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, {k.lower(): v for k, v in headers.items()}, body


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return parse(await raw(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()))


async def test_metrics(server):
    port, _ = server
    status, headers, body = await get(port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    text = body.decode()
    assert "lmdp_frames_received_total{" in text
    assert 'interface="tap0"' in text
    assert "lmdp_store_commit_seconds_bucket" in text


async def test_metrics_with_urllib(server):
    port, _ = server

    def fetch():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?x=1", timeout=5) as r:
            return r.status, r.read()

    status, body = await asyncio.to_thread(fetch)
    assert status == 200 and b"# TYPE lmdp_drops_total counter" in body


async def test_healthz(server):
    port, state = server
    status, _, body = await get(port, "/healthz")
    assert (status, body) == (200, b"ok\n")
    state.healthy = (False, "lease store unavailable")
    status, _, body = await get(port, "/healthz")
    assert (status, body) == (503, b"lease store unavailable\n")


async def test_leases(server):
    port, state = server
    status, headers, body = await get(port, "/leases")
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == state.rows


async def test_leases_async_callable():
    async def leases():
        await asyncio.sleep(0)
        return [{"mac": "x"}]

    srv = await start_http("127.0.0.1:0", Metrics(), lambda: (True, ""), leases)
    try:
        status, _, body = await get(srv.sockets[0].getsockname()[1], "/leases")
        assert (status, json.loads(body)) == (200, [{"mac": "x"}])
    finally:
        srv.close()
        await srv.wait_closed()


async def test_head(server):
    port, _ = server
    status, headers, body = await get(port, "/healthz", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == "3"


async def test_not_found_and_method_not_allowed(server):
    port, _ = server
    assert (await get(port, "/nope"))[0] == 404
    status, headers, _ = await get(port, "/metrics", "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD, POST"


async def test_post_with_unread_body_still_gets_reply(server):
    port, _ = server
    body = b"x" * 500_000  # more than socket buffers take in one go
    request = b"POST /metrics HTTP/1.1\r\nContent-Length: 500000\r\n\r\n" + body
    status, _, _ = parse(await raw(port, request))
    assert status == 405


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\x16\x03\x01 TLS hello\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
    ],
)
async def test_garbage_is_400_and_server_survives(server, garbage):
    port, _ = server
    assert parse(await raw(port, garbage))[0] == 400
    assert (await get(port, "/healthz"))[0] == 200


async def test_closed_early_and_oversized_head(server):
    port, _ = server
    assert await raw(port, b"GET /met", half_close=True) == b""
    huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
    assert parse(await raw(port, huge))[0] == 431
    assert (await get(port, "/healthz"))[0] == 200


async def test_slow_client_times_out(server, monkeypatch):
    port, _ = server
    monkeypatch.setattr(lmdp_http, "READ_TIMEOUT", 0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finishes the head
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert parse(reply)[0] == 408
    assert (await get(port, "/healthz"))[0] == 200


async def test_handler_bug_is_500(server):
    port, state = server
    state.healthy = None  # health() now returns something that cannot be unpacked
    assert (await get(port, "/healthz"))[0] == 500
    assert (await get(port, "/metrics"))[0] == 200


async def test_ipv6_listen():
    try:
        srv = await start_http("[::1]:0", Metrics(), lambda: (True, ""), list)
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        port = srv.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert parse(reply)[0] == 200
    finally:
        srv.close()
        await srv.wait_closed()


def test_bad_listen_string():
    with pytest.raises(ValueError):
        asyncio.run(start_http("127.0.0.1", Metrics(), lambda: (True, ""), list))


async def test_connection_limit(server, monkeypatch):
    port, _ = server
    monkeypatch.setattr(lmdp_http, "MAX_CONNECTIONS", 1)
    _, slow = await asyncio.open_connection("127.0.0.1", port)
    slow.write(b"GET /metrics HTTP/1.1\r\n")  # holds the only slot
    await slow.drain()
    await asyncio.sleep(0.05)
    try:
        reply = await raw(port, b"GET /healthz HTTP/1.1\r\n\r\n")
    except ConnectionError:
        reply = b""  # aborted: a reset instead of a clean EOF
    finally:
        slow.close()
    assert reply == b""  # turned away without an answer
    await asyncio.sleep(0.05)
    assert (await get(port, "/healthz"))[0] == 200


async def test_post_announce_calls_the_handler():
    calls = []

    async def announce(mac, interface):
        calls.append((mac, interface))
        if mac == "0a:58:0a:f4:02:1a":
            return 200, {"mac": mac, "rounds": 5}
        return 404, {"error": f"unknown MAC {mac}"}

    srv = await start_http("127.0.0.1:0", Metrics(), lambda: (True, ""), list, announce)
    try:
        port = srv.sockets[0].getsockname()[1]
        status, _, body = await get(port, "/announce?mac=0a:58:0a:f4:02:1a&interface=tap0", "POST")
        assert status == 200 and b'"rounds": 5' in body
        status, _, body = await get(port, "/announce?mac=0a:58:00:00:00:01", "POST")
        assert status == 404 and b"unknown MAC" in body
        assert calls == [("0a:58:0a:f4:02:1a", "tap0"), ("0a:58:00:00:00:01", None)]
        assert (await get(port, "/announce?mac=x", "GET"))[0] == 404  # only POST announces
    finally:
        srv.close()
        await srv.wait_closed()
