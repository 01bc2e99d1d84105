"""ARP flood against the kernel: how much of a top-speed flood of requests for the gateway
lmdp answers, beside the kernel's own ARP answering the same flood.

    flock /tmp/lmdp-bench.lock .venv/bin/python benchmarks/arp_flood.py \\
        [--requests 300000] [--macs 256] [--runs 3] [--variants default,classic]

Needs root, `tcpreplay` (Debian package `tcpreplay`) and matplotlib for the plot.

A lab (dataplane.lab.Lab: namespaces with a unique prefix, always torn down) of two
namespaces joined by a veth pair: `snd` (snd0) and `rsp` (rsp0), IPv6 off in both so the
counters see nothing but the flood and its answers, and ARP off on snd0 so the sender's
kernel drops the replies at once instead of processing them. A pcap of `--requests` ARP
who-has 169.254.1.1, cycling through `--macs` senders (each with its own MAC and an address
in 169.254.0.0/16), built with scapy, is replayed with `tcpreplay --topspeed -K` (preloaded)
from snd0 while a sampler in `snd` reads snd0's receive counter every 5 ms: every frame
snd0 receives is a reply, and the counter costs the sender nothing per frame. Unless
`--no-pin`, tcpreplay runs on CPU 0 and lmdp on CPU 1, so neither takes the other's core
(the kernel's ARP answers in the softirq of the sender's transmit, on CPU 0, either way).

Per run and responder:
- `kernel`: rsp0 holds 169.254.1.1/16, no lmdp; its neighbour table is flushed first (the
  kernel makes an entry per asker, as it answers).
- an lmdp variant (`--variants`, see netbench.VARIANTS; `default` is rings on demand, the
  default socket path, `classic` the recv_into/send path every port starts on, `ring`
  small rings on every port from the attach): `lmdp serve` on rsp0, whose config's
  gateway is 169.254.1.1; rsp0 has no address, so the kernel stays silent (it still runs
  its ARP input for every request: a route look-up for the sender, on the sender's core).
  A variant with `+noarp` (e.g. `default+noarp`) sets `arp off` on rsp0 first, as on a VM
  port the host has no business answering on, which skips that input.

Reported per responder: replies, share answered (replies / requests), replies per second
(replies over the time from the first request to the last reply, 5 ms resolution), the
rate tcpreplay achieved, the frames rsp0 received, and for lmdp its CPU time (user and
system, from /proc) and its own counts (/metrics). The ratio of each lmdp variant to the
kernel, in replies per second and in share answered, medians over the runs. Runs interleave
the responders, so drift on a shared machine spreads over all of them.

Writes benchmarks/results/arp_flood.json and arp_flood.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

import benchlib
from netbench import (
    GATEWAY_IP,
    RESULTS,
    VARIANTS,
    Lab,
    cpu_seconds,
    link_counters,
    machine,
    quiet_link,
    start_lmdp,
    write_lmdp_config,
)

SENDER_CPU, RESPONDER_CPU = 0, 1  # --pin: tcpreplay on one core, lmdp on the other

SAMPLER = r"""
import os, sys, time
base = "/sys/class/net/" + sys.argv[1] + "/statistics/"
rx, tx = open(base + "rx_packets"), open(base + "tx_packets")
last, quiet = None, 0
while True:
    rx.seek(0); tx.seek(0)
    now = (int(rx.read()), int(tx.read()))
    if now != last or quiet >= 20:
        print(f"{time.monotonic():.6f} {now[0]} {now[1]}", flush=True)
        last, quiet = now, 0
    else:
        quiet += 1
    time.sleep(0.005)
"""


def build_pcap(path: str, requests: int, macs: int) -> None:
    """`requests` ARP who-has GATEWAY_IP frames (42 bytes, as Linux sends them), cycling
    through `macs` senders; scapy builds the distinct frames, dpkt writes the file."""
    import dpkt
    from scapy.layers.l2 import ARP, Ether

    frames = []
    for i in range(macs):
        mac = f"0a:58:0a:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
        ip = f"169.254.{100 + (i >> 8) % 100}.{1 + i % 250}"
        pkt = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=mac, psrc=ip, hwdst="00:00:00:00:00:00", pdst=GATEWAY_IP
        )
        frames.append(bytes(pkt))
    with open(path, "wb") as f:
        writer = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        for n in range(requests):
            writer.writepkt(frames[n % macs], ts=n * 1e-6)


class Sampler:
    """The sender's counters every 5 ms, from a process in its namespace."""

    def __init__(self, lab: Lab, ns: str, ifname: str):
        self.samples: list[tuple[float, int, int]] = []
        self.proc = lab.popen(
            ns, sys.executable, "-c", SAMPLER, ifname, stdout=subprocess.PIPE, text=True
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        while not self.samples:
            time.sleep(0.01)

    def _read(self) -> None:
        for line in self.proc.stdout:
            t, rx, tx = line.split()
            self.samples.append((float(t), int(rx), int(tx)))

    def stop(self, lab: Lab) -> None:
        lab.stop(self.proc)
        lab.procs.remove(self.proc)
        self.thread.join(2)


def parse_tcpreplay(out: str) -> dict:
    got = {}
    m = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", out)
    if m:
        got["sent"], got["seconds"] = int(m.group(1)), float(m.group(2))
    m = re.search(r"Rated: .*?([\d.]+) pps", out)
    if m:
        got["pps"] = float(m.group(1))
    m = re.search(r"Failed packets:\s+(\d+)", out)
    if m:
        got["failed"] = int(m.group(1))
    return got


def one_run(
    lab, snd, rsp, pcap, requests, responder, label, config, progress, perf_dir=None, pin=False
) -> dict:
    lmdp = None
    if responder == "kernel":
        lab.ip(rsp, "neigh", "flush", "dev", "rsp0")
        lab.ip(rsp, "addr", "add", f"{GATEWAY_IP}/16", "dev", "rsp0")
    else:
        variant, _, suffix = responder.partition("+")
        if suffix == "noarp":
            lab.ip(rsp, "link", "set", "rsp0", "arp", "off")
        lmdp = start_lmdp(lab, rsp, config, VARIANTS[variant][1])
        if pin:
            benchlib.pin(lmdp.proc.pid, {RESPONDER_CPU})
    try:
        time.sleep(0.3)  # settle: nothing else on the link
        rsp_before = link_counters(lab, rsp, "rsp0")
        cpu_before = cpu_seconds(lmdp.proc.pid) if lmdp else None
        sampler = Sampler(lab, snd, "snd0")
        rx0, tx0 = sampler.samples[-1][1:]
        perf = None
        if lmdp and perf_dir:
            perf_data = os.path.join(perf_dir, f"{responder}.perf.data")
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-g", "-F", "1999", "-p", str(lmdp.proc.pid),
                 "-o", perf_data],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)
        taskset = ["taskset", "-c", str(SENDER_CPU)] if pin else []
        replay = lab.popen(
            snd, *taskset, "tcpreplay", "--topspeed", "-K", "-i", "snd0", pcap,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        while replay.poll() is None:
            time.sleep(0.2)
            _, rx, tx = sampler.samples[-1]
            progress(f"{label}: sent {tx - tx0:,} replies {rx - rx0:,}")
        out = replay.stdout.read()
        lab.procs.remove(replay)
        # The tail: replies still coming once the sender is done (a queue draining).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            recent = [s for s in sampler.samples if s[0] > time.monotonic() - 0.3]
            if recent and recent[0][1] == sampler.samples[-1][1]:
                break
        sampler.stop(lab)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(30)
        cpu_after = cpu_seconds(lmdp.proc.pid) if lmdp else None
        rsp_after = link_counters(lab, rsp, "rsp0")
        counts = None
        if lmdp:
            counts = {
                "frames_received": lmdp.metric("lmdp_frames_received_total"),
                "replies_sent": lmdp.metric("lmdp_replies_sent_total"),
                "drops": lmdp.metric("lmdp_drops_total"),
            }
    finally:
        if lmdp is not None:
            lmdp.stop()
            lab.ip(rsp, "link", "set", "rsp0", "arp", "on")
        else:
            lab.ip(rsp, "addr", "del", f"{GATEWAY_IP}/16", "dev", "rsp0")
    samples = sampler.samples
    tp = parse_tcpreplay(out)
    replies = samples[-1][1] - rx0
    sent = samples[-1][2] - tx0
    t_start = next(t for t, _, tx in samples if tx > tx0)
    t_end = next(t for t, rx, _ in samples if rx == samples[-1][1])
    # The last sample before the first request: the start is within one sampling period.
    t_start = max((t for t, _, tx in samples if tx == tx0), default=t_start)
    window = max(t_end - t_start, 1e-3)
    run = {
        "responder": responder,
        "requests": requests,
        "sent": sent,
        "replies": replies,
        "share_answered": replies / requests,
        "replies_per_s": replies / window,
        "window_s": window,
        "tcpreplay": tp,
        "rsp0_rx_packets": rsp_after["rx_packets"] - rsp_before["rx_packets"],
        "rsp0_rx_dropped": rsp_after["rx_dropped"] - rsp_before["rx_dropped"],
        "curve": [(round(t - t_start, 4), rx - rx0) for t, rx, _ in samples if t >= t_start],
    }
    if lmdp:
        run["cpu_user_s"] = cpu_after[0] - cpu_before[0]
        run["cpu_system_s"] = cpu_after[1] - cpu_before[1]
        run["lmdp"] = counts
    return run


def perf_report(workdir, responder: str, prefix: str) -> None:
    """The profile of lmdp during the flood: where its CPU time went, by symbol (kernel and
    the interpreter's C functions; Python 3.11 frames show as _PyEval_EvalFrameDefault)."""
    data = os.path.join(workdir, f"{responder}.perf.data")
    common = ["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none"]
    by_dso = subprocess.run(
        [*common, "--sort", "dso", "--percent-limit", "0.5"], capture_output=True, text=True
    ).stdout
    inclusive = subprocess.run(
        [*common, "--children", "--sort", "sym", "--percent-limit", "4"],
        capture_output=True,
        text=True,
    ).stdout
    by_sym = subprocess.run(
        [*common, "--sort", "dso,sym", "--percent-limit", "0.4"], capture_output=True, text=True
    ).stdout
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with open(f"{prefix}-perf-{responder}.txt", "w") as f:
        f.write(f"# perf record -g -F 1999 -p LMDP during the flood; variant {responder}\n")
        for text in (by_dso, inclusive, by_sym):
            f.write("\n".join(ln for ln in text.splitlines() if ln and not ln.startswith("#")))
            f.write("\n\n")


def summarise(runs: list[dict]) -> dict:
    out = {
        "runs": len(runs),
        "replies": [r["replies"] for r in runs],
        "replies_per_s": [r["replies_per_s"] for r in runs],
        "share_answered": [r["share_answered"] for r in runs],
        "offered_pps": [r["tcpreplay"].get("pps") for r in runs],
        "median_replies_per_s": statistics.median(r["replies_per_s"] for r in runs),
        "median_share_answered": statistics.median(r["share_answered"] for r in runs),
        "median_offered_pps": statistics.median(r["tcpreplay"].get("pps", 0) for r in runs),
    }
    if "cpu_user_s" in runs[0]:
        out["median_cpu_s"] = statistics.median(r["cpu_user_s"] + r["cpu_system_s"] for r in runs)
        out["median_cpu_user_s"] = statistics.median(r["cpu_user_s"] for r in runs)
        out["median_cpu_system_s"] = statistics.median(r["cpu_system_s"] for r in runs)
        out["median_cpu_us_per_reply"] = statistics.median(
            1e6 * (r["cpu_user_s"] + r["cpu_system_s"]) / max(r["replies"], 1) for r in runs
        )
    return out


def plot(data: dict, path: str) -> bool:
    plt = benchlib.pyplot()
    if plt is None:
        return False
    res = data["results"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.5 * len(res) + 3.5))
    names = [r["label"] for r in res][::-1]
    rates = [r["median_replies_per_s"] for r in res][::-1]
    colors = ["#888888" if r["responder"] == "kernel" else "#4878a8" for r in res][::-1]
    bars = ax1.barh(names, rates, color=colors)
    for bar, r in zip(bars, res[::-1], strict=True):
        y = bar.get_y() + bar.get_height() / 2
        ax1.plot(r["replies_per_s"], [y] * len(r["replies_per_s"]), "k.", ms=4)
        ax1.text(
            bar.get_width() * 1.02,
            y,
            f"{bar.get_width():,.0f}/s, {100 * r['median_share_answered']:.1f}% answered",
            va="center",
            fontsize=8,
        )
    ax1.set_xlim(0, max(max(r["replies_per_s"]) for r in res) * 1.6)
    ax1.set_xlabel("ARP replies per second (median; dots: runs)")
    for r in res:
        curve = r["median_run_curve"]
        ax2.plot([c[0] for c in curve], [c[1] for c in curve], label=r["label"])
    ax2.axhline(data["requests"], color="#c03030", lw=1, ls="--", label="requests sent")
    ax2.set_xlabel("seconds from the first request")
    ax2.set_ylabel("replies received by the sender")
    ax2.legend(fontsize=7, loc="lower right")
    m = data["machine"]
    benchlib.save_figure(
        fig,
        path,
        f"ARP flood, tcpreplay --topspeed, {data['requests']:,} requests from {data['macs']} "
        f"MACs: {m['cpu']} ({m['cpus']} CPUs), {m['python']}, {data['date']}",
    )
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=300_000, help="ARP requests per run (300000)")
    p.add_argument("--macs", type=int, default=256, help="distinct senders (256)")
    p.add_argument("--runs", type=int, default=3, help="runs per responder (3)")
    p.add_argument(
        "--variants",
        default="default,classic",
        help=f"lmdp variants beside the kernel, from: {', '.join(VARIANTS)} (default,classic)",
    )
    p.add_argument("--out", default="arp_flood", help="result file name (arp_flood)")
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin tcpreplay to CPU 0 and lmdp to CPU 1 (the kernel answers in the "
        "sender's softirq, on the sender's CPU, either way)",
    )
    p.add_argument(
        "--perf",
        action="store_true",
        help="profile lmdp with `perf record -g` during each flood (slows it: a separate run);"
        " writes results/NAME-perf-VARIANT.txt",
    )
    args = p.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        base, _, suffix = v.partition("+")
        if base not in VARIANTS or suffix not in ("", "noarp"):
            p.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)} (+noarp)")
    if os.geteuid() != 0:
        p.error("needs root (network namespaces)")
    if shutil.which("tcpreplay") is None:
        p.error("tcpreplay is not installed (apt-get install tcpreplay)")
    responders = ["kernel", *variants]
    labels = {"kernel": "Linux kernel ARP"}
    for v in variants:
        base, _, suffix = v.partition("+")
        labels[v] = VARIANTS[base][0] + (", host ARP off on the port" if suffix else "")
    started = time.monotonic()
    runs: dict[str, list[dict]] = {r: [] for r in responders}
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2

    def progress(msg: str) -> None:
        print(f"\r  {msg:<70}", end="", file=sys.stderr, flush=True)

    with Lab() as lab:
        snd, rsp = lab.netns("snd"), lab.netns("rsp")
        quiet_link(lab, snd)
        quiet_link(lab, rsp)
        lab.veth(snd, "snd0", rsp, "rsp0")
        lab.ip(snd, "link", "set", "snd0", "arp", "off")
        pcap = str(lab.workdir / "arp-flood.pcap")
        print(f"building {args.requests:,} requests from {args.macs} MACs ...", file=sys.stderr)
        build_pcap(pcap, args.requests, args.macs)
        config = write_lmdp_config(lab.workdir / "lmdp.yaml", ["rsp0"])
        for n in range(args.runs):
            for responder in responders:
                label = f"[run {n + 1}/{args.runs}] {responder}"
                run = one_run(
                    lab, snd, rsp, pcap, args.requests, responder, label, config, progress,
                    str(lab.workdir) if args.perf else None, pin,
                )  # fmt: skip
                if args.perf and responder != "kernel":
                    perf_report(lab.workdir, responder, os.path.join(RESULTS, args.out))
                runs[responder].append(run)
                print(
                    f"\r  {label}: {run['replies']:,}/{args.requests:,} answered "
                    f"({100 * run['share_answered']:.1f}%), {run['replies_per_s']:,.0f} replies/s"
                    f", offered {run['tcpreplay'].get('pps', 0):,.0f}/s"
                    + (
                        f", lmdp CPU {run['cpu_user_s'] + run['cpu_system_s']:.2f}s"
                        if "cpu_user_s" in run
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
    results = []
    kernel = summarise(runs["kernel"])
    for responder in responders:
        s = summarise(runs[responder])
        ordered = sorted(runs[responder], key=lambda r: r["replies_per_s"])
        median_run = ordered[len(ordered) // 2]
        s.update(
            responder=responder,
            label=labels[responder],
            median_run_curve=median_run["curve"],
            ratio_to_kernel_rate=s["median_replies_per_s"] / kernel["median_replies_per_s"],
            ratio_to_kernel_share=s["median_share_answered"] / kernel["median_share_answered"],
            target_met=s["median_share_answered"] >= 0.9999
            and s["median_replies_per_s"] >= kernel["median_replies_per_s"] * 0.98,
        )
        results.append(s)
    data = {
        "benchmark": "arp_flood",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": " ".join([os.path.relpath(sys.argv[0]), *(argv or sys.argv[1:])]),
        "requests": args.requests,
        "macs": args.macs,
        "pinned": pin,
        "target": "100% of the flood answered, at no less than the kernel's rate",
        "method": " ".join(__doc__.split("Per run and responder:")[0].split("\n\n", 2)[2].split()),
        "results": results,
        "runs": {r: [{k: v for k, v in x.items() if k != "curve"} for x in runs[r]] for r in runs},
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{args.out}.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    plotted = plot(data, os.path.join(RESULTS, f"{args.out}.png"))
    print(
        f"\n{'responder':<36} {'replies/s':>11} {'answered':>9} {'offered/s':>10} "
        f"{'x kernel':>8} {'CPU s':>6} {'us/reply':>8}"
    )
    for r in results:
        print(
            f"{r['label']:<36} {r['median_replies_per_s']:>11,.0f} "
            f"{100 * r['median_share_answered']:>8.2f}% {r['median_offered_pps']:>10,.0f} "
            f"{r['ratio_to_kernel_rate']:>8.2f} "
            f"{r.get('median_cpu_s', float('nan')):>6.2f} "
            f"{r.get('median_cpu_us_per_reply', float('nan')):>8.2f}"
        )
    print(
        f"benchmarks/results/{args.out}.json{f', {args.out}.png' if plotted else ''} "
        f"({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
