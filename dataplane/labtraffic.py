"""Traffic for the migration lab: one TCP stream and 1 ms UDP probes from a peer to a VM
(over IPv4, and with `--vm6` also over IPv6), and (router mode subnet) 1 ms UDP probes from
the VM to its gateway; and a watcher of what the VM sends on its own.

Five roles, each run inside its namespace with the lab's interpreter
(`python -m dataplane.labtraffic vm|peer|echo|probe|watch ...`); stdlib only, one thread, no
busy waiting:

- `vm`: accepts TCP connections and counts the bytes received, and echoes every UDP
  datagram back to its sender (also over IPv6 with `--udp6`). It never sends anything on
  its own, so a VM whose incoming traffic is black-holed stays silent (the "silent VM" of
  the downtime measurement). Echoes go out with MSG_CONFIRM: a probe just came from the
  peer, so the kernel need not re-check the peer's neighbour entry (a unicast ARP or NS
  probe 5 s after the entry was last confirmed, which the VM would send on its own).
- `peer`: connects once and writes a chunk every tick (never reconnecting: a broken stream
  is reported, not repaired), and sends one numbered UDP probe every tick (to `--vm`, and
  to `--vm6` too), recording every gap between consecutive replies longer than `--gap-ms`.
  A probe goes out with MSG_CONFIRM when a reply came since the previous one.
- `echo`: `vm` without the TCP listener (a node's gateway answering the VM's probes).
- `probe`: `peer` without the TCP stream (the VM probing its gateway).
- `watch`: reads what the VM sends (on the wire's port toward it, `--ifname`) except its
  TCP and UDP, and records each frame with what it is and whether it answers something
  (an ARP reply, a solicited NA) or was sent unprompted (an ARP request, NS, RS, MLD
  report): an unprompted frame from a moved VM tells the network where it went, as lmdp's
  announcement does.

Each writes its state as JSON to `--status` (atomically, every 20 ms and when it stops),
with times from `time.monotonic()`, which every namespace shares with the orchestrator.
SIGTERM stops either cleanly.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import ipaddress
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
    if args.udp6:
        echo6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        echo6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        echo6.bind(("::", args.udp_port))
        echo6.setblocking(False)
        sel.register(echo6, selectors.EVENT_READ, "echo")
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
                sock = key.fileobj
                for _ in range(64):
                    try:
                        data, src = sock.recvfrom(2048)
                    except BlockingIOError:
                        break
                    try:
                        sock.sendto(data, socket.MSG_CONFIRM, src)
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


class Prober:
    """One UDP socket probing one address: numbered probes, and the gaps between replies."""

    def __init__(self, address: str, port: int, gap_min: float):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.connect((address, port))
        self.sock.setblocking(False)
        self.gap_min = gap_min
        self.seq = 0
        self.last_seq_reply = 0
        self.replied = False  # a reply came since the last probe
        self.state = {
            "probes": 0,
            "replies": 0,
            "first_reply": None,
            "last_reply": None,
            "gaps": [],  # [last reply before, first reply after, probes sent in between]
        }

    def read(self, now: float) -> None:
        state = self.state
        for _ in range(256):
            try:
                data = self.sock.recv(64)
            except BlockingIOError:
                break
            except OSError:  # ICMP errors while the VM is unreachable
                break
            if len(data) < _probe.size:
                continue
            rseq, _sent = _probe.unpack_from(data)
            last = state["last_reply"]
            if last is not None and now - last >= self.gap_min:
                state["gaps"].append([last, now, max(0, rseq - self.last_seq_reply - 1)])
                del state["gaps"][:-MAX_GAPS]
            if state["first_reply"] is None:
                state["first_reply"] = now
            state["last_reply"] = now
            state["replies"] += 1
            self.last_seq_reply = max(self.last_seq_reply, rseq)
            self.replied = True

    def send(self, now: float) -> None:
        self.seq += 1
        # MSG_CONFIRM only on proof of forward progress (a reply since the last probe): the
        # peer's neighbour entry for the VM stays confirmed while the VM answers, and is
        # re-checked by the kernel as usual once it does not.
        flags = socket.MSG_CONFIRM if self.replied else 0
        self.replied = False
        try:
            self.sock.send(_probe.pack(self.seq, now), flags)
            self.state["probes"] += 1
        except OSError:
            pass


def run_peer(args) -> None:
    stop = _stopper()
    status = Status(args.status)
    interval = args.interval_ms / 1000
    gap_min = args.gap_ms / 1000
    chunk = b"\x5a" * args.chunk
    sel = selectors.DefaultSelector()
    probers = [Prober(args.vm, args.udp_port, gap_min)]
    if args.vm6:
        probers.append(Prober(args.vm6, args.udp_port, gap_min))
    for prober in probers:
        sel.register(prober.sock, selectors.EVENT_READ, prober)
    # The IPv4 prober's state is the status itself (as before IPv6); IPv6's is "ipv6".
    state = probers[0].state
    state.update({"tcp": {}, "max_send_gap": 0.0})  # our own stalls, to judge the measurement
    if args.vm6:
        state["ipv6"] = probers[1].state
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
    next_tick = time.monotonic()
    last_send = None
    while not stop[0]:
        timeout = max(0.0, next_tick - time.monotonic())
        for key, _ in sel.select(timeout):
            now = time.monotonic()
            if isinstance(key.data, Prober):
                key.data.read(now)
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
            for prober in probers:
                prober.send(now)
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


# -- watch: what the VM sends on its own --------------------------------------------------------

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
_insn = struct.Struct("=HBBI")
# Classic BPF (linux/filter.h): ld word/half/byte absolute, jeq, ret; SKF_AD_PKTTYPE.
_LD_W, _LD_H, _LD_B, _JEQ, _RET = 0x20, 0x28, 0x30, 0x15, 0x06
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4


def _watch_filter() -> list[tuple[int, int, int, int]]:
    """Frames arriving from the VM (not going to it) that are not TCP or UDP over IPv4 or
    IPv6 (its stream ACKs, echo replies and DHCP: what it is asked for or told to send)."""
    accept, reject = 11, 12
    prog = [
        (_LD_W, None, None, _SKF_AD_PKTTYPE),  # 0
        (_JEQ, reject, 2, PACKET_OUTGOING),  # 1  toward the VM
        (_LD_H, None, None, 12),  # 2  ethertype
        (_JEQ, 5, 4, 0x0800),  # 3  IPv4
        (_JEQ, 8, accept, 0x86DD),  # 4  IPv6; anything else (ARP, RARP) passes
        (_LD_B, None, None, 23),  # 5  IPv4 protocol
        (_JEQ, reject, 7, 6),  # 6  TCP
        (_JEQ, reject, accept, 17),  # 7  UDP
        (_LD_B, None, None, 20),  # 8  IPv6 next header
        (_JEQ, reject, 10, 6),  # 9  TCP
        (_JEQ, reject, accept, 17),  # 10 UDP
        (_RET, None, None, 0xFFFF),  # 11 accept
        (_RET, None, None, 0),  # 12 reject
    ]
    return [
        (code, 0 if jt is None else jt - i - 1, 0 if jf is None else jf - i - 1, k)
        for i, (code, jt, jf, k) in enumerate(prog)
    ]


def _ip6(b: bytes) -> str:
    return str(ipaddress.IPv6Address(b))


def describe(frame: bytes) -> tuple[str, bool]:
    """What a frame from the VM is, and whether it was sent unprompted (not an answer)."""
    if len(frame) < 14:
        return "runt frame", True
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0806 and len(frame) >= 42:
        op = struct.unpack_from("!H", frame, 20)[0]
        spa, tpa = socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42])
        if spa == tpa:  # an announcement, request or reply (RFC 5227 §3, RFC 5944 §4.6)
            return f"gratuitous ARP {'reply' if op == 2 else 'request'} {spa}", True
        if op == 2:
            return f"ARP reply {spa}", False
        return f"ARP request for {tpa}", True
    if ethertype == 0x8035:
        return "RARP", True
    if ethertype == 0x0800 and len(frame) >= 34:
        proto = frame[23]
        if proto == 1:
            icmp_type = frame[14 + (frame[14] & 0x0F) * 4]
            return f"ICMP type {icmp_type}", icmp_type == 8
        return ("IGMP report", True) if proto == 2 else (f"IPv4 protocol {proto}", True)
    if ethertype == 0x86DD and len(frame) >= 54:
        nxt, off = frame[20], 54
        if nxt == 0 and len(frame) >= off + 2:  # hop-by-hop options (MLD's router alert)
            nxt, off = frame[off], off + (frame[off + 1] + 1) * 8
        if nxt != 58 or len(frame) < off + 4:
            return f"IPv6 next header {nxt}", True
        t = frame[off]
        if t == 133:
            return "RS", True
        if t == 135 and len(frame) >= off + 24:
            src = _ip6(frame[22:38])
            what = "DAD NS" if src == "::" else "NS"
            return f"{what} for {_ip6(frame[off + 8 : off + 24])}", True
        if t == 136 and len(frame) >= off + 24:
            solicited = bool(frame[off + 4] & 0x40)
            target = _ip6(frame[off + 8 : off + 24])
            return f"{'' if solicited else 'unsolicited '}NA {target}", not solicited
        if t in (131, 143):
            return f"MLDv{1 if t == 131 else 2} report", True
        if t == 132:
            return "MLD done", True
        return f"ICMPv6 type {t}", t == 128
    return f"ethertype 0x{ethertype:04x}", True


def run_watch(args) -> None:
    stop = _stopper()
    status = Status(args.status)
    mac = bytes.fromhex(args.mac.replace(":", ""))
    # Protocol 0 until the filter is in place (nothing is received), then ETH_P_ALL.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    prog = _watch_filter()
    raw = b"".join(_insn.pack(*i) for i in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", len(prog), ctypes.addressof(buf))
    )
    sock.bind((args.ifname, ETH_P_ALL))
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    state = {"frames": []}  # [time, what, unprompted]
    while not stop[0]:
        for _ in sel.select(STATUS_INTERVAL):
            for _ in range(64):
                try:
                    frame, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING or frame[6:12] != mac:
                    continue
                what, unprompted = describe(frame)
                state["frames"].append([time.monotonic(), what, unprompted])
                del state["frames"][:-MAX_GAPS]
        status.write(state, time.monotonic())
    status.write(state, time.monotonic(), force=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="labtraffic", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="role", required=True)
    roles = {name: sub.add_parser(name) for name in ("vm", "peer", "echo", "probe", "watch")}
    for s in roles.values():
        s.add_argument("--status", required=True)
    for name in ("vm", "peer", "echo", "probe"):
        s = roles[name]
        s.add_argument("--tcp-port", type=int, default=5001)
        s.add_argument("--udp-port", type=int, default=5002)
    for name in ("vm", "echo"):
        roles[name].add_argument("--udp6", action="store_true", help="echo over IPv6 too")
    for name in ("peer", "probe"):
        s = roles[name]
        s.add_argument(
            "--vm", "--target", dest="vm", required=True, help="the IPv4 address to probe"
        )
        s.add_argument("--vm6", help="an IPv6 address to probe as well (status: ipv6)")
        s.add_argument("--interval-ms", type=float, default=1.0)
        s.add_argument("--chunk", type=int, default=1024, help="TCP bytes per tick")
        s.add_argument("--gap-ms", type=float, default=3.0, help="shortest reply gap recorded")
        s.add_argument("--connect-timeout", type=float, default=10.0)
    roles["watch"].add_argument("--ifname", required=True, help="the port toward the VM")
    roles["watch"].add_argument("--mac", required=True, help="the VM's MAC address")
    args = p.parse_args(argv)
    run = {"vm": run_vm, "echo": run_vm, "peer": run_peer, "probe": run_peer, "watch": run_watch}
    run[args.role](args)


if __name__ == "__main__":
    main()
