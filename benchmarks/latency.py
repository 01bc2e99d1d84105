"""Reply latency at a low rate: one request every 10 ms, the time until its answer arrives.

    flock /tmp/lmdp-bench.lock .venv/bin/python benchmarks/latency.py \\
        [--count 1000] [--interval-ms 10] [--variants default,classic] [--kinds arp,dhcpv4,dhcpv6]

Needs root and matplotlib for the plot.

A lab (dataplane.lab.Lab, always torn down) of two namespaces joined by a veth pair: `cli`
(cli0, the MAC of VM 0 of the replay config) and `rsp` (rsp0). lmdp serves rsp0 with the
replay config (1000 static VMs, gateway 169.254.1.1), once per variant (netbench.VARIANTS:
`default` is rings on demand, `classic` the recv_into/send path every port starts on); for ARP
the kernel answers too, from 169.254.1.1/16 on rsp0 with lmdp stopped.

The client is this script (`--client KIND`) run in `cli`: a packet socket on cli0 sends one
request every `--interval-ms` on a fixed schedule (ARP who-has the gateway, DHCPDISCOVER,
or DHCPv6 SOLICIT from VM 0, built beforehand by gen_captures.py's scapy builders, a new
transaction id each time) and waits for the matching answer (ARP reply from the gateway,
OFFER or ADVERTISE with the same transaction id), 200 ms at most. Latency is
`time.perf_counter_ns()` from just before `send` to just after the `recv` that returned the
answer: what a client sees, its own wake-up included. The first 5 samples of each series are
warm-up and left out. Reported: p50, p90, p99, p99.9 and max in microseconds, and answers
missing.

Writes benchmarks/results/latency.json and latency.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import select
import socket
import statistics
import sys
import time

import benchlib

HERE = os.path.dirname(os.path.abspath(__file__))
WARMUP = 5
TIMEOUT_S = 0.2
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
COLORS = {"kernel": "#888888", "ring": "#4878a8", "classic": "#e08030"}
KINDS = {
    "arp": "ARP who-has gateway",
    "dhcpv4": "DHCPDISCOVER -> OFFER",
    "dhcpv6": "DHCPv6 SOLICIT -> ADVERTISE",
}


# -- the client (runs in the client namespace) ------------------------------------------------


def _requests(kind: str, count: int) -> list[tuple[bytes, object]]:
    """(frame, what identifies its answer) for each request."""
    sys.path.insert(0, HERE)
    import gen_captures as g

    from dataplane.replay import vm_ipv4

    out = []
    for n in range(count):
        if kind == "arp":
            out.append((g.arp_request(0, n), socket.inet_aton(vm_ipv4(0))))
        elif kind == "dhcpv4":
            out.append((g.dhcpv4_discover(0, n), g._xid(0, n).to_bytes(4, "big")))
        else:
            out.append((g.dhcpv6_solicit(0, n), (g._xid(0, n) & 0xFFFFFF).to_bytes(3, "big")))
    return out


def _answers(kind: str, frame: bytes, key) -> bool:
    if kind == "arp":
        return frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02" and frame[38:42] == key
    if kind == "dhcpv4":
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            return False
        udp = 14 + (frame[14] & 0x0F) * 4
        return frame[udp + 2 : udp + 4] == b"\x00\x44" and frame[udp + 12 : udp + 16] == key
    return (
        frame[12:14] == b"\x86\xdd"
        and frame[20] == 17
        and frame[56:58] == b"\x02\x22"
        and frame[62] == 2
        and frame[63:66] == key
    )


def client(kind: str, ifname: str, count: int, interval: float) -> int:
    requests = _requests(kind, count)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    samples: list[float | None] = []
    clock = time.perf_counter_ns
    start = time.monotonic()
    for n, (frame, key) in enumerate(requests):
        # A fixed schedule: request n goes out at start + n * interval.
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        while True:  # nothing stale in the queue
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        t0 = clock()
        sock.send(frame)
        got = None
        deadline = t0 + int(TIMEOUT_S * 1e9)
        while got is None:
            left_ms = (deadline - clock()) / 1e6
            if left_ms <= 0:
                break
            if not poller.poll(left_ms):
                continue
            while True:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                if _answers(kind, reply, key):
                    got = clock()
                    break
        samples.append(None if got is None else (got - t0) / 1000)
        if (n + 1) % 100 == 0:
            print(f"\r    {kind}: {n + 1}/{count}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    json.dump(samples, sys.stdout)
    return 0


# -- the orchestrator -------------------------------------------------------------------------


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def summarise(samples: list[float | None]) -> dict:
    kept = samples[WARMUP:]
    ok = [x for x in kept if x is not None]
    return {
        "samples": len(kept),
        "answered": len(ok),
        "missing": len(kept) - len(ok),
        "p50_us": percentile(ok, 50) if ok else None,
        "p90_us": percentile(ok, 90) if ok else None,
        "p99_us": percentile(ok, 99) if ok else None,
        "p999_us": percentile(ok, 99.9) if ok else None,
        "max_us": max(ok) if ok else None,
        "mean_us": statistics.fmean(ok) if ok else None,
    }


def run_client(lab, ns, kind, count, interval) -> list[float | None]:
    out = lab.exec(
        ns, sys.executable, os.path.abspath(__file__), "--client", kind, "--ifname", "cli0",
        "--count", str(count), "--interval-ms", str(interval * 1000),
        timeout=count * (interval + TIMEOUT_S) + 60,
    )  # fmt: skip
    return json.loads(out)


def plot(data: dict, path: str) -> bool:
    plt = benchlib.pyplot()
    if plt is None:
        return False
    kinds = [k for k in KINDS if any(r["kind"] == k for r in data["results"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        for r in data["results"]:
            if r["kind"] != kind:
                continue
            xs = sorted(x for x in r["latencies_us"][WARMUP:] if x is not None)
            ys = [100 * (i + 1) / len(xs) for i in range(len(xs))]
            color = COLORS.get(r["responder"])
            ax.plot(xs, ys, color=color, label=f"{r['label']} (p99 {r['p99_us']:.0f} us)")
        ax.axvline(1000, color="#c03030", lw=1, ls="--", label="1 ms")
        ax.set_xscale("log")
        ax.set_ylim(0, 100.5)
        ax.set_xlabel("reply latency (us, log scale)")
        ax.set_ylabel("% of requests answered within")
        ax.set_title(KINDS[kind], fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    m = data["machine"]
    benchlib.save_figure(
        fig,
        path,
        f"one request every {data['interval_ms']:g} ms, {data['count']} per series: "
        f"{m['cpu']} ({m['cpus']} CPUs), {m['python']}, {data['date']}",
    )
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="requests per series (1000)")
    p.add_argument("--interval-ms", type=float, default=10.0, help="between requests (10)")
    p.add_argument("--variants", default="default,classic", help="lmdp variants (default,classic)")
    p.add_argument("--kinds", default="arp,dhcpv4,dhcpv6", help="(arp,dhcpv4,dhcpv6)")
    p.add_argument("--client", choices=list(KINDS), help=argparse.SUPPRESS)
    p.add_argument("--ifname", default="cli0", help=argparse.SUPPRESS)
    p.add_argument("--replot", action="store_true", help="redraw the plot from the JSON")
    args = p.parse_args(argv)
    if args.replot:
        from netbench import RESULTS

        with open(os.path.join(RESULTS, "latency.json")) as f:
            return 0 if plot(json.load(f), os.path.join(RESULTS, "latency.png")) else 1
    interval = args.interval_ms / 1000
    if args.client:
        return client(args.client, args.ifname, args.count, interval)

    from netbench import (
        GATEWAY_IP,
        RESULTS,
        VARIANTS,
        Lab,
        machine,
        quiet_link,
        start_lmdp,
    )

    from dataplane.replay import builtin_config_data, vm_mac

    variants = [v for v in args.variants.split(",") if v]
    kinds = [k for k in args.kinds.split(",") if k]
    for v in variants:
        if v not in VARIANTS:
            p.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    if os.geteuid() != 0:
        p.error("needs root (network namespaces)")
    started = time.monotonic()
    results = []
    with Lab() as lab:
        cli, rsp = lab.netns("cli"), lab.netns("rsp")
        quiet_link(lab, rsp)
        lab.veth(rsp, "rsp0", cli, "cli0", mac_b=vm_mac(0))
        import yaml

        config = lab.workdir / "lmdp.yaml"
        data = builtin_config_data()
        data.update(
            interfaces=["rsp0"],
            store={"backend": "sqlite", "path": str(lab.workdir / "lmdp.db")},
            http={"listen": "127.0.0.1:9464"},
        )
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        series = []
        if "arp" in kinds:
            series.append(("kernel", "arp"))
        series += [(v, k) for v in variants for k in kinds]
        for responder in ["kernel", *variants]:
            todo = [k for r, k in series if r == responder]
            if not todo:
                continue
            lmdp = None
            if responder == "kernel":
                lab.ip(rsp, "addr", "add", f"{GATEWAY_IP}/16", "dev", "rsp0")
                label = "Linux kernel ARP"
            else:
                lmdp = start_lmdp(lab, rsp, config, VARIANTS[responder][1])
                label = VARIANTS[responder][0]
            try:
                for kind in todo:
                    print(f"  {label}: {KINDS[kind]}", file=sys.stderr, flush=True)
                    lat = run_client(lab, cli, kind, args.count, interval)
                    s = summarise(lat)
                    print(
                        f"    p50 {s['p50_us']:.0f} us, p99 {s['p99_us']:.0f} us, "
                        f"max {s['max_us']:.0f} us, {s['missing']} missing",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.append(
                        {"responder": responder, "kind": kind, "label": label, **s,
                         "latencies_us": lat}
                    )  # fmt: skip
            finally:
                if lmdp is not None:
                    lmdp.stop()
                else:
                    lab.ip(rsp, "addr", "del", f"{GATEWAY_IP}/16", "dev", "rsp0")
    out = {
        "benchmark": "latency",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": " ".join([os.path.relpath(sys.argv[0]), *(argv or sys.argv[1:])]),
        "count": args.count,
        "interval_ms": args.interval_ms,
        "target": "99th-percentile reply latency under 1 ms at low rate",
        "results": results,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latency.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    plotted = plot(out, os.path.join(RESULTS, "latency.png"))
    print(f"\n{'responder':<34} {'kind':<8} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>7} miss")
    for r in results:
        print(
            f"{r['label']:<34} {r['kind']:<8} {r['p50_us']:>7.0f} {r['p99_us']:>7.0f} "
            f"{r['p999_us']:>7.0f} {r['max_us']:>7.0f} {r['missing']:>4}"
        )
    print(
        f"benchmarks/results/latency.json{', latency.png' if plotted else ''} "
        f"({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
