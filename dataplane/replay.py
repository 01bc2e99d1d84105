"""`lmdp replay`: run a capture through the engine's dispatch without sockets, report rates.

The frames go through `Engine.process_batch`, the very code `lmdp serve` runs for a batch
drained from a packet socket: the same responders, counters, arrival bookkeeping and group
commit. Only the port is different: its "socket" keeps the replies (`-w`) or drops them.

What is timed: the processing loop only. The capture is read with dpkt and held in memory;
before each pass every frame is copied into a fresh `bytes` object (a packet socket hands
the engine a new object for each frame, so nothing cached on the object, such as its hash,
may carry over from one pass to the next) and cut into batches of `RECV_BATCH` frames with
the capture time of their first frame as `now`, as the engine's reader does. Rates are frames
(or replies) per second of `time.perf_counter` time spent inside the loop. The loop's CPU
time (`time.thread_time`) is reported beside it: on a shared machine the wall-clock figure
is the lower one, by the time other processes held the core. Before the loop, replay exempts
the start-up objects from garbage collection, as `lmdp serve` does.

Pool allocations: the engine holds a reply that names a new pool address until the lease
store has committed it (DESIGN "The sans-IO boundary"). Replay gives the engine an in-memory
SQLite store (the store code of `lmdp serve`, without the file and its fsync; the configured
store is never opened) and, after each pass, outside the timed loop, runs the engine's own
group commit (`Engine.flush`) and its arrival checks. The replies the commit releases are
counted and written like the others; the commit time is reported on its own. From the
second pass on, every client is a known one: its pool address is durable and the arrival
check has recorded it on this node, as on a server that has been running for a while. The
store is empty at the start, so no VM is ever seen as arriving from another node and no
announcement is sent.

Counts come from the engine's own metrics (`lmdp_frames_received`, `lmdp_replies_sent`,
`lmdp_drops`), so replay reports exactly what `/metrics` would. Per-kind rates are each
kind's count over the whole loop time: they are the rate of that kind when the capture holds
only that kind, which is how `benchmarks/replay.py` runs it (one capture per kind).

Without `-c`, replay runs `builtin_config()`: the VMs, pools and gateway that
`benchmarks/gen_captures.py` generates its captures for (see `vm_mac` and friends).
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CaptureError",
    "KINDS",
    "Progress",
    "RECV_BATCH",
    "REPLAY_IFNAME",
    "ReplayResult",
    "builtin_config",
    "builtin_config_data",
    "format_report",
    "pool_mac",
    "read_capture",
    "replay",
    "vm_ipv4",
    "vm_ipv6",
    "vm_link_local",
    "vm_mac",
    "write_capture",
]

RECV_BATCH = 64  # frames per batch, as `PacketSocket.recv_batch` drains them
REPLAY_IFNAME = "replay0"
DLT_EN10MB = 1  # pcap link type: Ethernet
_CHUNK = 16384  # frames between progress checks

# -- the built-in config: the VMs and pools the generated captures are made for -----------

REPLAY_VMS = 1000
POOL_SUBNET = "10.246.0.0/16"
POOL6_SUBNET = "fd00:10:246::/64"
DNS_SERVERS = ["10.96.0.10", "fd00:10:96::a"]
SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def vm_mac(i: int) -> str:
    """The MAC of static VM `i` (0 <= i < 65536)."""
    return f"0a:58:0a:f5:{i >> 8:02x}:{i & 0xFF:02x}"


def pool_mac(i: int) -> str:
    """The MAC of pool client `i`: no binding, so it is given a pool address."""
    return f"0a:58:0a:f6:{i >> 8:02x}:{i & 0xFF:02x}"


def vm_ipv4(i: int) -> str:
    return str(ipaddress.IPv4Address("10.245.0.10") + i)


def vm_ipv6(i: int) -> str:
    return str(ipaddress.IPv6Address("fd00:10:245::10") + i)


def vm_link_local(mac: str) -> str:
    """The guest's EUI-64 link-local address (RFC 4291 appendix A), the source of its
    NDP and DHCPv6 messages."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes((b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE)) + b[3:]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def builtin_config_data(vms: int = REPLAY_VMS) -> dict[str, Any]:
    """The replay config as plain data (what `gen_captures.py` writes as YAML)."""
    return {
        "node": "replay",
        "interfaces": [REPLAY_IFNAME],
        "gateway": {"ipv4": "169.254.1.1", "ipv6": "fe80::1", "mac": "0a:58:a9:fe:01:01"},
        "dns": {"servers": list(DNS_SERVERS), "search": list(SEARCH)},
        "mtu": 1400,
        "lease_time": 3500,
        "bindings": [
            {
                "name": f"vm-{i:04d}",
                "mac": vm_mac(i),
                "ipv4": f"{vm_ipv4(i)}/16",
                "ipv6": f"{vm_ipv6(i)}/64",
            }
            for i in range(vms)
        ],
        "pools": [
            {"subnet": POOL_SUBNET, "start": "10.246.0.10", "end": "10.246.255.250"},
            {"subnet": POOL6_SUBNET, "start": "fd00:10:246::10", "end": "fd00:10:246::ffff"},
        ],
        "store": {"backend": "sqlite", "path": ":memory:"},
        "http": {"listen": None},
    }


def builtin_config(vms: int = REPLAY_VMS):
    from .config import parse_config

    return parse_config(builtin_config_data(vms), source="<replay built-in config>")


# -- captures ------------------------------------------------------------------------------


class CaptureError(Exception):
    """A capture that cannot be read (not a pcap/pcapng file, not Ethernet)."""


def read_capture(path: str) -> list[tuple[float, bytes]]:
    """`(timestamp, frame)` for every frame of a pcap or pcapng file of Ethernet frames."""
    import dpkt

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            f.seek(0)
            reader_type = dpkt.pcapng.Reader if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader
            try:
                reader = reader_type(f)
            except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError) as e:
                raise CaptureError(f"{path}: not a pcap or pcapng file ({e})") from None
            if reader.datalink() != DLT_EN10MB:
                raise CaptureError(
                    f"{path}: link type {reader.datalink()}, replay needs Ethernet (1)"
                )
            return [(float(ts), bytes(buf)) for ts, buf in reader]
    except OSError as e:
        raise CaptureError(f"cannot read {path}: {e.strerror or e}") from None


def write_capture(path: str, packets: list[tuple[float, bytes]]) -> None:
    import dpkt

    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535, linktype=DLT_EN10MB)
        for ts, frame in packets:
            writer.writepkt(frame, ts=ts)


# -- the socket-less port ------------------------------------------------------------------


class _DiscardTx:
    """A transmit side that accepts every frame: `send` is `len`, whose result (the frame's
    length) is true, like a successful `PacketSocket.send`."""

    fd = -1
    send = len

    def close(self) -> None:
        pass


class _RecordingTx:
    """A transmit side that keeps `(now, frame)` for every frame sent, for `-w`."""

    __slots__ = ("fd", "now", "sent")

    def __init__(self) -> None:
        self.fd = -1
        self.now = 0.0
        self.sent: list[tuple[float, bytes]] = []

    def send(self, frame: bytes) -> bool:
        self.sent.append((self.now, frame))
        return True

    def close(self) -> None:
        pass


# -- the run -------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplayResult:
    capture_frames: int
    passes: int
    frames: int = 0  # processed (capture_frames x passes)
    seconds: float = 0.0  # in the processing loop (time.perf_counter)
    cpu_seconds: float = 0.0  # CPU time of the loop (time.thread_time): less when shared
    commit_seconds: float = 0.0  # group commits and arrival checks between passes
    received: dict[tuple[str, str], int] = field(default_factory=dict)  # (protocol, type)
    sent: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    leases_committed: int = 0
    store_commits: int = 0
    internal_errors: int = 0
    replies: list[tuple[float, bytes]] = field(default_factory=list)  # first pass, with -w

    @property
    def replies_total(self) -> int:
        return sum(self.sent.values())

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "capture_frames": self.capture_frames,
            "passes": self.passes,
            "frames": self.frames,
            "loop_seconds": self.seconds,
            "loop_cpu_seconds": self.cpu_seconds,
            "commit_seconds": self.commit_seconds,
            "frames_per_s": self.rate(self.frames),
            "replies": self.replies_total,
            "replies_per_s": self.rate(self.replies_total),
            "replies_per_cpu_s": (
                self.replies_total / self.cpu_seconds if self.cpu_seconds > 0 else 0.0
            ),
            "received": [
                {"protocol": p, "type": t, "frames": n, "per_s": self.rate(n)}
                for (p, t), n in sorted(self.received.items())
            ],
            "sent": [
                {"type": t, "replies": n, "per_s": self.rate(n)}
                for t, n in sorted(self.sent.items())
            ],
            "dropped": [{"reason": r, "frames": n} for r, n in sorted(self.dropped.items())],
            "leases_committed": self.leases_committed,
            "store_commits": self.store_commits,
            "internal_errors": self.internal_errors,
        }


def _counts(engine, result: ReplayResult) -> None:
    """Fill the result from the engine's metrics registry, as a scrape would see it."""
    for family in engine.metrics.registry.collect():
        for s in family.samples:
            if s.name == "lmdp_frames_received_total":
                key = (s.labels["protocol"], s.labels["type"])
                result.received[key] = result.received.get(key, 0) + int(s.value)
            elif s.name == "lmdp_replies_sent_total":
                t = s.labels["type"]
                result.sent[t] = result.sent.get(t, 0) + int(s.value)
            elif s.name == "lmdp_drops_total":
                r = s.labels["reason"]
                result.dropped[r] = result.dropped.get(r, 0) + int(s.value)
            elif s.name == "lmdp_leases_committed_total":
                result.leases_committed = int(s.value)
            elif s.name == "lmdp_store_commits_total":
                result.store_commits = int(s.value)
            elif s.name == "lmdp_internal_errors_total":
                result.internal_errors = int(s.value)


async def _settle(engine) -> None:
    """Between passes: the group commit, then the arrival checks the pass queued."""
    await engine.flush()
    migration = engine.migration
    checker = asyncio.create_task(migration.checker())
    try:
        while migration.checks_pending():
            await asyncio.sleep(0.001)
    finally:
        checker.cancel()
        try:
            await checker
        except asyncio.CancelledError:
            pass


def replay(
    frames: list[tuple[float, bytes]],
    config=None,
    *,
    passes: int = 1,
    record: bool = False,
    progress: Callable[[int, int, float], None] | None = None,
) -> ReplayResult:
    """Run `frames` through a socket-less engine `passes` times; see the module docstring.

    `config` (default `builtin_config()`) is used with its store replaced by an in-memory
    one. With `record`, the replies of the first pass are kept in `result.replies`.
    `progress(done, total, loop_seconds)` is called every `_CHUNK` frames.
    """
    from .cli import freeze_startup_objects
    from .config import StoreConfig
    from .engine import Engine, Port

    if config is None:
        config = builtin_config()
    config = config.model_copy(update={"store": StoreConfig(backend="sqlite", path=":memory:")})
    result = ReplayResult(capture_frames=len(frames), passes=passes)
    total = len(frames) * passes
    engine = Engine(config)
    recorder = _RecordingTx() if record else None
    port = Port(REPLAY_IFNAME, recorder if recorder is not None else _DiscardTx())
    try:
        with asyncio.Runner() as runner:
            engine.open_store()
            engine.ports[REPLAY_IFNAME] = port
            freeze_startup_objects()  # as `lmdp serve` does
            process_batch = engine.process_batch
            done = 0
            for n in range(passes):
                if n == 1 and recorder is not None:
                    result.replies = recorder.sent
                    port.psock = _DiscardTx()
                    recorder = None
                # Fresh objects, cut into batches, outside the timed loop.
                batches = [
                    (frames[i][0], [bytes(memoryview(f)) for _, f in frames[i : i + RECV_BATCH]])
                    for i in range(0, len(frames), RECV_BATCH)
                ]
                per_chunk = max(1, _CHUNK // RECV_BATCH)
                for c in range(0, len(batches), per_chunk):
                    chunk = batches[c : c + per_chunk]
                    c0 = time.thread_time()
                    if recorder is not None:
                        t0 = time.perf_counter()
                        for now, batch in chunk:
                            recorder.now = now
                            process_batch(port, batch, now)
                        t1 = time.perf_counter()
                    else:
                        t0 = time.perf_counter()
                        for now, batch in chunk:
                            process_batch(port, batch, now)
                        t1 = time.perf_counter()
                    result.cpu_seconds += time.thread_time() - c0
                    result.seconds += t1 - t0
                    done += sum(len(b) for _, b in chunk)
                    if progress is not None:
                        progress(done, total, result.seconds)
                t0 = time.perf_counter()
                runner.run(_settle(engine))
                result.commit_seconds += time.perf_counter() - t0
            if recorder is not None:
                result.replies = recorder.sent
            result.frames = done
            _counts(engine, result)
    finally:
        engine.ports.pop(REPLAY_IFNAME, None)  # not a real port: no "detached" log line
        engine.close()
    return result


# -- the command ---------------------------------------------------------------------------

KINDS = (
    # (label in reports, protocol, received type)
    ("ARP", "arp", "arp_request"),
    ("DHCPv4 DISCOVER", "dhcpv4", "DHCPDISCOVER"),
    ("DHCPv4 REQUEST", "dhcpv4", "DHCPREQUEST"),
    ("DHCPv6 SOLICIT", "dhcpv6", "SOLICIT"),
    ("DHCPv6 REQUEST", "dhcpv6", "REQUEST"),
    ("NS", "ndp", "ns"),
)


def format_report(path: str, r: ReplayResult) -> str:
    def rate(n: int) -> str:
        return f"{r.rate(n):>12,.0f}/s"

    lines = [
        f"{path}: {r.capture_frames} frames x {r.passes} passes = {r.frames} frames "
        f"in {r.seconds:.3f} s of processing ({r.cpu_seconds:.3f} s of CPU)",
        f"  frames   {r.frames:>10}  {rate(r.frames)}",
        f"  replies  {r.replies_total:>10}  {rate(r.replies_total)}",
        "received (protocol type):",
    ]
    names = {(p, t): label for label, p, t in KINDS}
    for (p, t), n in sorted(r.received.items(), key=lambda kv: -kv[1]):
        label = names.get((p, t), "")
        lines.append(f"  {p + ' ' + t:<28} {n:>10}  {rate(n)}  {label}")
    lines.append("sent:")
    for t, n in sorted(r.sent.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {t:<28} {n:>10}  {rate(n)}")
    if r.dropped:
        lines.append("dropped:")
        for reason, n in sorted(r.dropped.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {reason:<28} {n:>10}")
    lines.append(
        f"store: {r.leases_committed} leases in {r.store_commits} group commits; "
        f"{r.commit_seconds:.3f} s between passes (commits and arrival checks, not timed above)"
    )
    if r.internal_errors:
        lines.append(f"internal errors: {r.internal_errors}")
    return "\n".join(lines)


class Progress:
    """Progress on stderr once a run has taken a second: a line that rewrites itself on a
    terminal, a line every few seconds otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last = self.start
        self.shown = False

    def __call__(self, done: int, total: int, loop_seconds: float) -> None:
        now = time.monotonic()
        if now - self.start < 1.0 or now - self.last < (0.5 if self.tty else 5.0):
            return
        self.last = now
        rate = done / loop_seconds if loop_seconds > 0 else 0.0
        text = f"replay: {done}/{total} frames ({100 * done // max(total, 1)}%), {rate:,.0f}/s"
        if self.tty:
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
