"""Traffic for the migration lab: one TCP stream and 1 ms UDP probes from a peer to a VM,
and (router mode subnet) 1 ms UDP probes from the VM to its gateway.

Four roles, each run inside its namespace with the lab's interpreter
(`python -m dataplane.labtraffic vm|peer|echo|probe ...`); stdlib only, one thread, no busy
waiting:

- `vm`: accepts TCP connections and counts the bytes received, and echoes every UDP
  datagram back to its sender. It never sends anything on its own, so a VM whose incoming
  traffic is black-holed stays silent (the "silent VM" of the downtime measurement).
- `peer`: connects once and writes a chunk every tick (never reconnecting: a broken stream
  is reported, not repaired), and sends one numbered UDP probe every tick, recording every
  gap between consecutive replies longer than `--gap-ms`.
- `echo`: `vm` without the TCP listener (a node's gateway answering the VM's probes).
- `probe`: `peer` without the TCP stream (the VM probing its gateway).

Each writes its state as JSON to `--status` (atomically, every 20 ms and when it stops),
with times from `time.monotonic()`, which every namespace shares with the orchestrator.
SIGTERM stops either cleanly.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import selectors
import signal
import socket
import struct
import time

STATUS_INTERVAL = 0.02
MAX_GAPS = 500
_probe = struct.Struct("!Qd")  # sequence number, send time


class Status:
    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp"
        self.due = 0.0

    def write(self, state: dict, now: float, force: bool = False) -> None:
        if not force and now < self.due:
            return
        self.due = now + STATUS_INTERVAL
        state["t"] = now
        with open(self.tmp, "w") as f:
            json.dump(state, f)
        os.replace(self.tmp, self.path)


def _stopper() -> list[bool]:
    stop = [False]

    def handler(signum, frame):
        stop[0] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_vm(args) -> None:
    stop = _stopper()
    status = Status(args.status)
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("0.0.0.0", args.udp_port))
    echo.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(echo, selectors.EVENT_READ, "echo")
    if args.role == "vm":
        listener = socket.create_server(("0.0.0.0", args.tcp_port))
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, "accept")
    state = {"connections": [], "bytes": 0, "last_recv": None, "eof": False, "echoed": 0}
    conns: dict[int, int] = {}  # fd -> index in state["connections"]
    while not stop[0]:
        for key, _ in sel.select(STATUS_INTERVAL):
            now = time.monotonic()
            if key.data == "accept":
                try:
                    conn, peer = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                local = conn.getsockname()
                state["connections"].append(
                    {"peer": list(peer), "local": list(local), "bytes": 0, "accepted": now}
                )
                conns[conn.fileno()] = len(state["connections"]) - 1
                sel.register(conn, selectors.EVENT_READ, "stream")
            elif key.data == "stream":
                conn = key.fileobj
                entry = state["connections"][conns[conn.fileno()]]
                try:
                    data = conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    entry["error"] = os.strerror(e.errno or 0)
                    data = b""
                if not data:
                    entry["closed"] = now
                    state["eof"] = True
                    del conns[conn.fileno()]
                    sel.unregister(conn)
                    conn.close()
                    continue
                entry["bytes"] += len(data)
                state["bytes"] += len(data)
                state["last_recv"] = now
            else:
                # Drain what is there; answer each probe once, to where it came from.
                for _ in range(64):
                    try:
                        data, src = echo.recvfrom(2048)
                    except BlockingIOError:
                        break
                    try:
                        echo.sendto(data, src)
                        state["echoed"] += 1
                    except OSError:
                        pass
        status.write(state, time.monotonic())
    status.write(state, time.monotonic(), force=True)


def _connect(addr: tuple[str, int], timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(addr, timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_peer(args) -> None:
    stop = _stopper()
    status = Status(args.status)
    interval = args.interval_ms / 1000
    gap_min = args.gap_ms / 1000
    chunk = b"\x5a" * args.chunk
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect((args.vm, args.udp_port))
    udp.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    state = {
        "tcp": {},
        "probes": 0,
        "replies": 0,
        "first_reply": None,
        "last_reply": None,
        "gaps": [],  # [last reply before, first reply after, probes sent in between]
        "max_send_gap": 0.0,  # our own scheduling stalls, to judge the measurement
    }
    tcp_ok = args.role == "peer"
    if tcp_ok:
        tcp = _connect((args.vm, args.tcp_port), args.connect_timeout)
        tcp.setblocking(False)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(tcp, selectors.EVENT_READ, "tcp")
        state["tcp"] = {
            "local": list(tcp.getsockname()),
            "peer": list(tcp.getpeername()),
            "sent": 0,
        }
    seq = 0
    last_seq_reply = 0
    next_tick = time.monotonic()
    last_send = None
    while not stop[0]:
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            now = time.monotonic()
            if key.data == "udp":
                for _ in range(256):
                    try:
                        data = udp.recv(64)
                    except BlockingIOError:
                        break
                    except OSError:  # ICMP errors while the VM is unreachable
                        break
                    if len(data) < _probe.size:
                        continue
                    rseq, _sent = _probe.unpack_from(data)
                    last = state["last_reply"]
                    if last is not None and now - last >= gap_min:
                        state["gaps"].append([last, now, max(0, rseq - last_seq_reply - 1)])
                        del state["gaps"][:-MAX_GAPS]
                    if state["first_reply"] is None:
                        state["first_reply"] = now
                    state["last_reply"] = now
                    state["replies"] += 1
                    last_seq_reply = max(last_seq_reply, rseq)
            elif tcp_ok:
                # The VM never writes: readable means EOF or an error on our stream.
                try:
                    data = tcp.recv(4096)
                    err = None if data else "closed by the VM"
                except BlockingIOError:
                    err = None
                except OSError as e:
                    err = os.strerror(e.errno or 0)
                if err:
                    state["tcp"]["error"] = err
                    tcp_ok = False
                    sel.unregister(tcp)
        now = time.monotonic()
        if now >= next_tick:
            seq += 1
            try:
                udp.send(_probe.pack(seq, now))
                state["probes"] += 1
            except OSError:
                pass
            if tcp_ok:
                try:
                    state["tcp"]["sent"] += tcp.send(chunk)
                except BlockingIOError:
                    pass  # send buffer full while the path is down: skip this tick
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        state["tcp"]["error"] = os.strerror(e.errno or 0)
                        tcp_ok = False
                        sel.unregister(tcp)
            if last_send is not None:
                state["max_send_gap"] = max(state["max_send_gap"], now - last_send)
            last_send = now
            next_tick += interval
            if next_tick < now:  # we were stalled: do not send a burst to catch up
                next_tick = now + interval
        status.write(state, now)
    status.write(state, time.monotonic(), force=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="labtraffic", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="role", required=True)
    roles = {name: sub.add_parser(name) for name in ("vm", "peer", "echo", "probe")}
    for s in roles.values():
        s.add_argument("--status", required=True)
        s.add_argument("--tcp-port", type=int, default=5001)
        s.add_argument("--udp-port", type=int, default=5002)
    for name in ("peer", "probe"):
        s = roles[name]
        s.add_argument(
            "--vm", "--target", dest="vm", required=True, help="the IPv4 address to probe"
        )
        s.add_argument("--interval-ms", type=float, default=1.0)
        s.add_argument("--chunk", type=int, default=1024, help="TCP bytes per tick")
        s.add_argument("--gap-ms", type=float, default=3.0, help="shortest reply gap recorded")
        s.add_argument("--connect-timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    (run_vm if args.role in ("vm", "echo") else run_peer)(args)


if __name__ == "__main__":
    main()
