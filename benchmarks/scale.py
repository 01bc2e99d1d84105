"""Scale: lmdp with 1,000 attached interfaces and 100,000 leases.

    .venv/bin/python benchmarks/scale.py [--interfaces 1000] [--leases 100000] [--samples 200]

Two namespaces: `node` (lmdp, serving `tap*`) and `peers`, joined by --interfaces veth pairs
(tapN in node, pN in peers, made with `ip -batch`). Each peer has its own MAC and a static
binding in the config. The lease store (SQLite) is filled beforehand with --leases IPv4 pool
leases through SqliteLeaseStore.commit, in batches.

1. Hot attach: lmdp starts with no tap yet (so its resident memory with the leases alone is
   known), then all the veth pairs are made at once: the time from `ip -batch` starting to
   all attached (lmdp's bound packet sockets in /proc/PID/net/packet, polled every 20 ms,
   then lmdp_interfaces_attached on /metrics), and the
   resident memory after.
2. Cold start: lmdp restarted with every interface present: the time from starting the
   process to all attached (Python start, config, loading the leases, the netlink dump, the
   sockets), the resident memory (VmRSS, /proc/PID/status) and its peak (VmHWM).
3. DHCP latency with that many, from the peers with a packet socket on the pN of a spread of
   interfaces, DISCOVER -> OFFER round trips measured from send to receive:
   a VM with a static binding; a client holding one of the 100,000 pool leases (its MAC
   from the store); a new client (an allocation, held in memory: the store's commit comes
   before the ACK, which this does not wait for).
   The same measured on a small lmdp (one interface, empty store) for comparison.

Writes benchmarks/results/scale.json and scale.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402

from dataplane.lab import Lab, LmdpProcess, write_config  # noqa: E402
from dataplane.stores.sqlite import SqliteLeaseStore  # noqa: E402
from protocols.bindings import Lease  # noqa: E402

TARGET_ATTACH_S = 2.0
TARGET_RSS_MB = 200.0
POOL = ("10.128.0.0/14", "10.128.0.10", "10.131.255.250")
METRICS = "http://127.0.0.1:9464/metrics"
ETH_P_IP = 0x0800


def peer_mac(i: int) -> str:
    return f"0a:58:0b:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"


def peer_ip(i: int) -> str:
    return f"10.100.{i // 250}.{i % 250 + 1}/16"


def lease_mac(i: int) -> bytes:
    return bytes([0x02, 0x00, 0x00, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])


def lease_ip(i: int) -> bytes:
    base = int.from_bytes(bytes([10, 128, 0, 10]), "big")
    return (base + i).to_bytes(4, "big")


def fill_store(path: Path, count: int, batch: int = 5000) -> float:
    t0 = time.monotonic()
    with SqliteLeaseStore(path, synchronous="NORMAL") as store:
        now = time.time()
        for start in range(0, count, batch):
            leases = [
                Lease(lease_mac(i), lease_ip(i), 14, "node-a")
                for i in range(start, min(count, start + batch))
            ]
            store.commit(leases, now)
    return time.monotonic() - t0


def make_veths(lab: Lab, node: str, peers: str, first: int, count: int) -> float:
    """Veth pairs tapN (node) / pN (peers), all up; returns the seconds `ip -batch` took."""
    lines = [
        f"link add tap{i} type veth peer name p{i} address {peer_mac(i)} netns {peers}"
        for i in range(first, first + count)
    ]
    lines += [f"link set tap{i} up" for i in range(first, first + count)]
    up = [f"link set p{i} up" for i in range(first, first + count)]
    (lab.workdir / "node.batch").write_text("\n".join(lines) + "\n")
    (lab.workdir / "peers.batch").write_text("\n".join(up) + "\n")
    t0 = time.monotonic()
    bl_run(["ip", "-n", node, "-batch", str(lab.workdir / "node.batch")])
    bl_run(["ip", "-n", peers, "-batch", str(lab.workdir / "peers.batch")])
    return time.monotonic() - t0


def bl_run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.strip()[:2000]}")


def attached(pid: int) -> int:
    """Interfaces with a packet socket bound to them in lmdp's namespace (distinct Iface
    values of /proc/PID/net/packet): lmdp binds a socket to a port as it attaches it (and
    may bind a second one, for its transmit ring). Read from outside, so polling costs lmdp
    nothing (its /healthz carries no count, and rendering /metrics, whose page grows with the
    interfaces, every few ms kept it busy while it attached)."""
    try:
        with open(f"/proc/{pid}/net/packet") as f:
            next(f)
            return len({line.split()[4] for line in f} - {"0"})
    except (FileNotFoundError, ProcessLookupError, StopIteration, IndexError):
        return -1


def metrics_attached(http: bl.NetnsThread) -> float:
    """lmdp's own count (lmdp_interfaces_attached on /metrics)."""
    text = http.run(bl.http_get, METRICS, 10.0)
    return bl.metric_value(text, "lmdp_interfaces_attached")


def wait_attached(
    http: bl.NetnsThread, want: int, t0: float, lmdp: LmdpProcess, timeout: float = 90
) -> tuple[float | None, int, float | None]:
    """(seconds from t0 until `want` interfaces have a bound socket, or None if not within
    `timeout`; lmdp's own count on /metrics then; seconds until /metrics said so, or None)."""
    last_report = 0.0
    bound = None
    n = 0
    while True:
        n = attached(lmdp.proc.pid)
        now = time.monotonic()
        if n >= want:
            bound = now - t0
            break
        if lmdp.proc.poll() is not None:
            raise SystemExit(f"lmdp exited {lmdp.proc.returncode}:\n{lmdp.log()[-3000:]}")
        if now - t0 > timeout:
            bl.progress(f"  gave up: {max(n, 0)}/{want} bound after {timeout:.0f} s")
            break
        if now - last_report > 5:
            bl.progress(f"  {max(n, 0)}/{want} attached after {now - t0:.1f} s")
            last_report = now
        time.sleep(0.02)
    counted, confirmed = 0, None
    while time.monotonic() - t0 < timeout + 10:
        try:
            counted = int(metrics_attached(http))
        except OSError:
            counted = 0  # the HTTP server starts once the first link dump is handled
        if counted >= want:
            confirmed = time.monotonic() - t0
            break
        time.sleep(0.1)
    return bound, counted, confirmed


def settled_snapshot(pid: int, timeout: float = 60) -> dict:
    """`snapshot` once the resident set stops growing (rings are set up in the background):
    two readings 0.5 s apart within 1 %."""
    t0 = time.monotonic()
    last = bl.status_kib(pid, "VmRSS")
    while time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        rss = bl.status_kib(pid, "VmRSS")
        if abs(rss - last) <= last / 100:
            break
        last = rss
    snap = snapshot(pid)
    snap["settled_after_s"] = round(time.monotonic() - t0, 1)
    return snap


def stop_timed(lmdp: LmdpProcess, timeout: float = 300) -> float:
    """SIGTERM, then the seconds until the process is gone (closing a thousand packet sockets
    takes the kernel a while: SIGKILL would not be quicker)."""
    p = lmdp.proc
    if p is None:
        return 0.0
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout)
    lmdp.proc = None
    if p in lmdp.lab.procs:
        lmdp.lab.procs.remove(p)
    return time.monotonic() - t0


def log_problems(lmdp: LmdpProcess) -> list[str]:
    """lmdp's WARNING and ERROR log lines (at most 20)."""
    return [ln for ln in lmdp.log().splitlines() if " WARNING " in ln or " ERROR " in ln][:20]


def attach_text(v: dict, which: str, want: int) -> str:
    s = v[f"{which}_attach_s"]
    if s is None:
        return f"not all within {v['timeout_s']:.0f} s"
    text = f"{s:.2f} s"
    counted, confirmed = v[f"{which}_attached"], v.get(f"{which}_metrics_s")
    if confirmed is None:
        text += f" (but lmdp counts {counted:,}/{want:,})"
    elif confirmed - s > 0.5:
        text += f" (lmdp counts them all at {confirmed:.2f} s)"
    return text


# -- DHCP round trips from the peers -----------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def discover(mac: bytes, xid: int) -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0, b"\0" * 4,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, mac + b"\0" * 10, b"", b"")  # fmt: skip
    options = bytes([99, 130, 83, 99, 53, 1, 1, 55, 5, 1, 3, 6, 26, 121, 255])
    payload = bootp + options + b"\0" * (300 - len(bootp) - len(options))
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\0" * 4,
                     b"\xff" * 4)  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + mac + struct.pack("!H", ETH_P_IP) + ip + udp


def round_trips(ifaces: list[str], macs: list[bytes], timeout: float = 2.0) -> list[float | None]:
    """DISCOVER -> OFFER in ms for each (interface, source MAC); None when no OFFER came.
    Runs in the peers namespace (NetnsThread)."""
    out: list[float | None] = []
    socks: dict[str, socket.socket] = {}
    try:
        for ifname, mac in zip(ifaces, macs, strict=True):
            s = socks.get(ifname)
            if s is None:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
                s.bind((ifname, ETH_P_IP))
                socks[ifname] = s
            s.settimeout(0.05)
            while True:  # anything left over from before
                try:
                    s.recv(2048)
                except (TimeoutError, BlockingIOError):
                    break
            xid = random.getrandbits(32)
            frame = discover(mac, xid)
            want = struct.pack("!I", xid)
            s.settimeout(timeout)
            t0 = time.perf_counter_ns()
            s.send(frame)
            got = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = s.recv(2048)
                except TimeoutError:
                    break
                # UDP to port 68 (IHL 5), BOOTREPLY with our xid
                if len(data) > 50 and data[23] == 17 and data[36:38] == b"\x00\x44" \
                        and data[42] == 2 and data[46:50] == want:  # fmt: skip
                    got = (time.perf_counter_ns() - t0) / 1e6
                    break
            out.append(got)
    finally:
        for s in socks.values():
            s.close()
    return out


def latency_set(peers_ns: bl.NetnsThread, count: int, interfaces: int, samples: int,
                kind: str, base: int) -> dict:  # fmt: skip
    """`samples` DISCOVERs spread over the interfaces, from one kind of client."""
    step = max(1, interfaces // samples)
    idx = [(k * step) % interfaces for k in range(samples)]
    ifaces = [f"p{i}" for i in idx]
    if kind == "static":
        macs = [bytes.fromhex(peer_mac(i).replace(":", "")) for i in idx]
    elif kind == "pool-lease":
        rng = random.Random(7)
        macs = [lease_mac(rng.randrange(count)) for _ in idx]
    else:  # new clients: MACs no lease has
        macs = [bytes([0x02, 0x01, 0, (base + k) >> 16 & 0xFF, (base + k) >> 8 & 0xFF,
                       (base + k) & 0xFF]) for k in range(samples)]  # fmt: skip
    ms = peers_ns.run(round_trips, ifaces, macs)
    ok = [m for m in ms if m is not None]
    return {
        "kind": kind,
        "samples": len(ms),
        "answered": len(ok),
        "first_ms": ms[0],
        "p50_ms": bl.percentile(ok, 50),
        "p99_ms": bl.percentile(ok, 99),
        "max_ms": max(ok) if ok else None,
        "mean_ms": sum(ok) / len(ok) if ok else None,
        "all_ms": [None if m is None else round(m, 4) for m in ms],
    }


KINDS = [
    ("static", "VM with a static binding"),
    ("pool-lease", "client holding one of the pool leases"),
    ("new", "new client (allocation)"),
]


def measure_latency(peers_ns, leases, interfaces, samples, tag, kinds=KINDS) -> list[dict]:
    out = []
    for n, (kind, label) in enumerate(kinds):
        r = latency_set(peers_ns, leases, interfaces, samples, kind, base=n * 100000 + 1)
        r["label"] = label
        out.append(r)
        bl.progress(
            f"{tag}: DISCOVER -> OFFER, {label}: {r['answered']}/{r['samples']} answered, "
            f"p50 {r['p50_ms'] or 0:.3f} ms, p99 {r['p99_ms'] or 0:.3f} ms, "
            f"first {r['first_ms'] or 0:.3f} ms"
        )
    return out


# -- the run ------------------------------------------------------------------------------------

# Socket variants: lmdp's default (rings on demand: classic sockets, and packet rings only
# for a port under load, see dataplane/afpacket.py), the mmap'd rings on every port from the
# attach (LMDP_RING=1: memory per port and an RCU grace period to set up), and never rings.
VARIANTS = {
    "default": {"LMDP_RING": "auto"},
    "rings": {"LMDP_RING": "1"},
    "classic": {"LMDP_RING": "0"},
}


def config_for(lab: Lab, name: str, interfaces: int, store: Path, globs: list[str]) -> Path:
    return write_config(
        lab.workdir / f"{name}.yaml",
        interfaces=globs,
        bindings=[
            {"name": f"vm{i}", "mac": peer_mac(i), "ipv4": peer_ip(i)} for i in range(interfaces)
        ],  # fmt: skip
        pools=[{"subnet": POOL[0], "start": POOL[1], "end": POOL[2]}],
        store={"backend": "sqlite", "path": str(store)},
    )


def snapshot(pid: int) -> dict:
    return {
        "rss_mib": round(bl.status_kib(pid, "VmRSS") / 1024, 1),
        "hwm_mib": round(bl.status_kib(pid, "VmHWM") / 1024, 1),
        "anon_mib": round(bl.status_kib(pid, "RssAnon") / 1024, 1),
        "threads": len(os.listdir(f"/proc/{pid}/task")),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def run_variant(args, variant: str, template: Path, small: bool) -> dict:
    """Hot attach, cold start and latency for one socket variant, in a lab of its own."""
    n = args.interfaces
    env = VARIANTS[variant]
    result: dict = {"variant": variant, "env": env}
    tag = f"[{variant}]"
    with Lab() as lab:
        node = lab.netns("node")
        peers = lab.netns("peers")
        store = lab.workdir / "leases.db"
        shutil.copyfile(template, store)
        config = config_for(lab, "scale", n, store, ["tap*"])
        http = bl.NetnsThread(node)
        peers_ns = bl.NetnsThread(peers)
        try:
            # 1. lmdp first, then every interface at once.
            lmdp = LmdpProcess(lab, node, config, env=env)
            t0 = time.monotonic()
            lmdp.start(timeout=120)
            result["start_no_interfaces_s"] = round(time.monotonic() - t0, 2)
            time.sleep(1)
            result["before_interfaces"] = snapshot(lmdp.proc.pid)
            bl.progress(
                f"{tag} lmdp up with {args.leases:,} leases and no interface in "
                f"{result['start_no_interfaces_s']:.2f} s: "
                f"{result['before_interfaces']['rss_mib']} MiB resident; making {n:,} veths"
            )
            cpu0 = bl.cpu_seconds(lmdp.proc.pid)
            t0 = time.monotonic()
            result["ip_batch_s"] = round(make_veths(lab, node, peers, 0, n), 2)
            secs, result["hot_attached"], conf = wait_attached(http, n, t0, lmdp, args.timeout)
            result["hot_attach_s"] = None if secs is None else round(secs, 2)
            result["hot_metrics_s"] = None if conf is None else round(conf, 2)
            result["timeout_s"] = args.timeout
            result["hot_attach_cpu_s"] = round(bl.cpu_seconds(lmdp.proc.pid) - cpu0, 2)
            result["after_hot_attach"] = settled_snapshot(lmdp.proc.pid)
            bl.progress(
                f"{tag} hot attach: {n:,} interfaces: {attach_text(result, 'hot', n)} "
                f"after `ip -batch` started (which took {result['ip_batch_s']:.2f} s); lmdp "
                f"CPU {result['hot_attach_cpu_s']:.2f} s; "
                f"{result['after_hot_attach']['rss_mib']} MiB resident"
            )
            result["hot_log_problems"] = log_problems(lmdp)
            result["stop_s"] = round(stop_timed(lmdp), 2)
            bl.progress(f"{tag} lmdp stopped {result['stop_s']:.2f} s after SIGTERM")
            # 2. Cold start with everything present.
            lmdp = LmdpProcess(lab, node, config, env=env)
            t0 = time.monotonic()
            lmdp.start(wait=False)
            secs, result["cold_attached"], conf = wait_attached(http, n, t0, lmdp, args.timeout)
            result["cold_attach_s"] = None if secs is None else round(secs, 2)
            result["cold_metrics_s"] = None if conf is None else round(conf, 2)
            result["cold_cpu_s"] = round(bl.cpu_seconds(lmdp.proc.pid), 2)
            result["after_cold_start"] = settled_snapshot(lmdp.proc.pid)
            bl.progress(
                f"{tag} cold start: {n:,} interfaces: {attach_text(result, 'cold', n)} "
                f"after starting lmdp; {result['after_cold_start']['rss_mib']} MiB resident "
                f"(peak {result['after_cold_start']['hwm_mib']} MiB)"
            )
            # 3. Latency with that many.
            result["latency"] = measure_latency(
                peers_ns, args.leases, n, args.samples, f"{tag} {n:,} interfaces"
            )
            result["after_latency"] = snapshot(lmdp.proc.pid)
            result["cold_log_problems"] = log_problems(lmdp)
            stop_timed(lmdp)
            if small:
                # The same on a small lmdp: one interface, an empty store.
                small_config = config_for(lab, "small", n, lab.workdir / "small.db", ["tap0"])
                lmdp = LmdpProcess(lab, node, small_config, env=env)
                lmdp.start()
                wait_attached(http, 1, time.monotonic(), lmdp, args.timeout)
                result["small_rss"] = snapshot(lmdp.proc.pid)
                result["small_latency"] = measure_latency(
                    peers_ns, args.leases, 1, args.samples, f"{tag} 1 interface, empty store",
                    kinds=[k for k in KINDS if k[0] != "pool-lease"],
                )  # fmt: skip
                lmdp.stop()
        finally:
            http.close()
            peers_ns.close()
    return result


def per_interface_kib(v: dict, interfaces: int) -> float:
    grew = v["after_hot_attach"]["rss_mib"] - v["before_interfaces"]["rss_mib"]
    return grew * 1024 / interfaces


def plot(data: dict, path: str) -> None:
    import matplotlib.pyplot as plt

    variants = data["variants"]
    main = variants[0]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = {"static": "#2a6fb0", "pool-lease": "#27ae60", "new": "#c0392b"}
    sets = [(main["latency"], "-", f"{data['interfaces']:,} ifaces")]
    if main.get("small_latency"):
        sets.append((main["small_latency"], ":", "1 iface, empty store"))
    for lat, style, tag in sets:
        for s in lat:
            ms = sorted(m for m in s["all_ms"] if m is not None)
            if not ms:
                continue
            a1.plot(ms, [100 * (i + 1) / len(ms) for i in range(len(ms))], style,
                    color=colors[s["kind"]], label=f"{s['label']} ({tag})")  # fmt: skip
    a1.set_xscale("log")
    a1.set_xlabel(f"DISCOVER -> OFFER round trip, ms (log), lmdp {main['variant']} sockets")
    a1.set_ylabel("% of samples at or below")
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=7)
    names, rss, attach = [], [], []
    for v in variants:
        names += [f"{v['variant']}\nleases only", f"{v['variant']}\nafter attach"]
        after = max(v["after_hot_attach"]["rss_mib"], v["after_cold_start"]["rss_mib"])
        rss += [v["before_interfaces"]["rss_mib"], after]
        n = data["interfaces"]
        attach.append(
            f"{v['variant']}: hot {attach_text(v, 'hot', n)}, cold {attach_text(v, 'cold', n)}"
        )
    mib_target = TARGET_RSS_MB * 1e6 / 2**20
    a2.bar(names, rss, color=["#bbbbbb", "#2a6fb0"] * len(variants))
    a2.axhline(mib_target, color="#c03030", lw=2, label="target: 200 MB")
    for i, v in enumerate(rss):
        a2.text(i, v, f"{v:.0f} MiB", ha="center", va="bottom", fontsize=8)
    a2.set_ylabel("lmdp resident memory, MiB")
    a2.tick_params(axis="x", labelsize=8)
    a2.set_title(f"attach {data['interfaces']:,} (target {TARGET_ATTACH_S:g} s): "
                 + "; ".join(attach), fontsize=8)  # fmt: skip
    a2.legend(fontsize=8)
    m = data["machine"]
    bl.save_figure(fig, path, f"lmdp with {data['interfaces']:,} interfaces and "
                   f"{data['leases']:,} leases: {m['cpu']}, {m['cpus']} CPUs, {data['date']}",
                   fontsize=10, dpi=110)  # fmt: skip


def describe(data: dict) -> None:
    """The table, targets and notes (report.py's schema) from the measurements in `data`."""
    results = data["variants"]
    n = data["interfaces"]
    mb = 2**20 / 1e6  # MiB -> MB
    columns = ["Measure"] + [f"lmdp, {v['variant']} sockets" for v in results]
    rows = []

    def row(label, fn):
        rows.append([label] + [fn(v) for v in results])

    row(
        "Time to attach all, cold start (process start to all attached)",
        lambda v: attach_text(v, "cold", n),
    )
    row(
        "Time to attach all, hot (`ip -batch` start to all attached)",
        lambda v: f"{attach_text(v, 'hot', n)} (ip -batch {v['ip_batch_s']:.2f} s)",
    )
    row(
        "Resident memory after cold start: VmRSS / peak VmHWM",
        lambda v: (
            f"{v['after_cold_start']['rss_mib'] * mb:.0f} MB / "
            f"{v['after_cold_start']['hwm_mib'] * mb:.0f} MB"
        ),
    )
    row(
        "Resident memory, leases only -> after hot attach",
        lambda v: (
            f"{v['before_interfaces']['rss_mib'] * mb:.0f} MB -> "
            f"{v['after_hot_attach']['rss_mib'] * mb:.0f} MB ("
            f"{per_interface_kib(v, n):.0f} KiB per interface)"
        ),
    )
    row(
        "Stop: SIGTERM to exit, with every interface attached",
        lambda v: f"{v['stop_s']:.2f} s",
    )
    row(
        "Threads / open files after cold start",
        lambda v: f"{v['after_cold_start']['threads']} / {v['after_cold_start']['fds']:,}",
    )
    for k, (_kind, label) in enumerate(KINDS):
        row(
            f"DISCOVER -> OFFER, {label}: p50 / p99 (answered)",
            lambda v, k=k: (
                f"{v['latency'][k]['p50_ms'] or 0:.3f} / "
                f"{v['latency'][k]['p99_ms'] or 0:.3f} ms "
                f"({v['latency'][k]['answered']}/{v['latency'][k]['samples']})"
            ),
        )
    row(
        "First DISCOVER of a new client after start (pool scan from its first address)",
        lambda v: f"{v['latency'][-1]['first_ms'] or 0:.1f} ms",
    )
    row(
        "Start with the leases, no interface (process start to serving)",
        lambda v: f"{v['start_no_interfaces_s']:.2f} s",
    )
    first = results[0]
    if first.get("small_latency"):
        for s in first["small_latency"]:
            rows.append(
                [
                    f"... on a small lmdp (1 interface, empty store), {s['label']}",
                    f"{s['p50_ms'] or 0:.3f} / {s['p99_ms'] or 0:.3f} ms "
                    f"({s['answered']}/{s['samples']})",
                ]
                + [""] * (len(results) - 1)
            )
        rows.append(
            ["Resident memory, small lmdp", f"{first['small_rss']['rss_mib'] * mb:.0f} MB"]
            + [""] * (len(results) - 1)
        )
    data["table"] = {"columns": columns, "align": ["l"] * len(columns), "rows": rows}  # fmt: skip
    times = [first["cold_attach_s"], first["hot_attach_s"]]
    attach = None if None in times else max(times)
    rss = max(first["after_cold_start"]["rss_mib"], first["after_hot_attach"]["rss_mib"]) * mb
    others = "; ".join(
        f"{v['variant']} sockets: cold {attach_text(v, 'cold', n)}, "
        f"hot {attach_text(v, 'hot', n)}, "
        f"{max(v['after_cold_start']['rss_mib'], v['after_hot_attach']['rss_mib']) * mb:.0f} MB"
        for v in results[1:]
    )
    data["targets"] = [
        {
            "target": f"{n:,} interfaces attached in under {TARGET_ATTACH_S:g} s",
            "measured": f"{first['variant']} sockets: cold "
            f"{attach_text(first, 'cold', n)}, hot "
            f"{attach_text(first, 'hot', n)}" + (f" ({others})" if others else ""),
            "met": attach is not None and attach < TARGET_ATTACH_S,
        },
        {
            "target": f"... with under {TARGET_RSS_MB:g} MB resident",
            "measured": f"{first['variant']} sockets: {rss:.0f} MB",
            "met": rss < TARGET_RSS_MB,
        },
    ]
    data["notes"] = [
        f"{data['leases']:,} IPv4 pool leases committed to the SQLite store before lmdp starts "
        f"(lmdp loads them all into memory at start), {n:,} static bindings "
        "(one per peer). Attach time: lmdp's packet sockets bound to an interface "
        "(/proc/PID/net/packet), polled every 20 ms from outside lmdp, then confirmed by "
        "lmdp_interfaces_attached on /metrics. Round trips timed in Python around send and "
        "receive on a packet socket on the peer's end (the few microseconds of Python on the "
        "client side are included); a new client's OFFER names an allocation held in memory "
        "(the store's commit, an fsync on disk, comes before its ACK). "
        "`default` sockets: lmdp as it starts by default (rings on demand: one recv_into / "
        "send a frame, and TPACKET_V2 rings only for a port under load, one spare built "
        "ahead); `rings`: LMDP_RING=1 (mmap'd TPACKET_V2 receive and transmit rings on every "
        "port from the attach); `classic`: LMDP_RING=0. "
        "MB = 10^6 bytes, MiB = 2^20.",
    ]
    for v in results:
        problems = sorted(set(v.get("hot_log_problems", []) + v.get("cold_log_problems", [])))
        if problems:
            data["notes"].append(
                f"lmdp ({v['variant']} sockets) logged: "
                + "; ".join(f"`{p.split(' ', 2)[-1]}`" for p in problems[:5])
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interfaces", type=int, default=1000)
    p.add_argument("--leases", type=int, default=100000)
    p.add_argument("--samples", type=int, default=200, help="DISCOVERs per kind of client")
    p.add_argument("--timeout", type=float, default=90, help="seconds to wait for attach (90)")
    p.add_argument("--variants", default="default,rings",
                   help=f"socket variants, comma-separated: {', '.join(VARIANTS)}")  # fmt: skip
    p.add_argument("--render", action="store_true",
                   help="only rewrite the tables of results/scale.json")  # fmt: skip
    args = p.parse_args(argv)
    if args.render:
        with open(os.path.join(bl.RESULTS, "scale.json")) as f:
            data = json.load(f)
        describe(data)
        bl.write_results("scale", data, plot)
        return 0
    variants = args.variants.split(",")
    if any(v not in VARIANTS for v in variants):
        p.error(f"--variants: choose from {', '.join(VARIANTS)}")
    bl.need_root("ip")
    results = []
    with tempfile.TemporaryDirectory(prefix="lmdp-scale-") as tmp:
        template = Path(tmp) / "leases.db"
        bl.progress(f"filling a store with {args.leases:,} leases")
        fill_s = fill_store(template, args.leases)
        for i, variant in enumerate(variants):
            results.append(run_variant(args, variant, template, small=i == 0))
    data = {
        "benchmark": "scale",
        "title": f"Scale: {args.interfaces:,} interfaces, {args.leases:,} leases",
        "date": bl.now_utc(),
        "machine": bl.machine(),
        "command": bl.command_line(),
        "interfaces": args.interfaces,
        "leases": args.leases,
        "fill_s": round(fill_s, 2),
        "variants": results,
    }
    describe(data)
    bl.write_results("scale", data, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
