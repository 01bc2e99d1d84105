"""Replay benchmark: `lmdp replay` on one generated capture per kind, several runs each.

    .venv/bin/python benchmarks/replay.py [--runs 5] [--scale 1.0] [KIND ...]

Generates the captures first if benchmarks/captures/ lacks them (gen_captures.py), then runs
`lmdp replay CAPTURE -c replay.yaml --repeat N --json` in a fresh process per run and keeps
the median of the replies per second. Writes benchmarks/results/replay.json (every run, the
machine, the date), replay.md (the table for the README) and replay.png (needs matplotlib:
`pip install -e '.[bench]'`, which `make bench` does).

What a figure means: replies per second of processing time on one core, frames preloaded in
memory, no sockets (see dataplane/replay.py). The captures come from 1000 VMs, one request
each, replayed N times: from the second pass on, a VM's ARP request and NS are answered from
the engine's memo of pure outcomes, as a running server answers a VM that asks again.
"arp-cold" replays arp-distinct.pcap (10,000 requests, no two alike) once per run: every
answer is built anew, as for VMs that each ask once.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import benchlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CAPTURES = os.path.join(HERE, "captures")
RESULTS = os.path.join(HERE, "results")
CONFIG = os.path.join(CAPTURES, "replay.yaml")

# kind: (label, capture, passes per run, target replies/s or None)
KINDS = {
    "arp": ("ARP who-has gateway", "arp", 600, 1_500_000),
    "arp-cold": ("ARP, no answer reused (1 pass)", "arp-distinct", 1, None),
    "dhcpv4-discover": ("DHCPv4 DISCOVER -> OFFER", "dhcpv4-discover", 60, 150_000),
    "dhcpv4-request": ("DHCPv4 REQUEST -> ACK", "dhcpv4-request", 60, 150_000),
    "dhcpv6-solicit": ("DHCPv6 SOLICIT -> ADVERTISE", "dhcpv6-solicit", 40, None),
    "dhcpv6-request": ("DHCPv6 REQUEST -> REPLY", "dhcpv6-request", 40, None),
    "ns": ("NS for fe80::1 -> NA", "ns", 600, None),
    "dhcpv4-pool": ("DHCPv4 DISCOVER, pool clients", "dhcpv4-pool", 60, None),
}


def replay_once(capture: str, passes: int) -> dict:
    cmd = [sys.executable, "-m", "dataplane.cli", "replay", capture, "-c", CONFIG]
    cmd += ["--repeat", str(passes), "--json", "-q"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"replay failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr}")
    return json.loads(done.stdout)


def run(kinds: list[str], runs: int, scale: float) -> dict:
    results = []
    for n, kind in enumerate(kinds, 1):
        label, capture_name, passes, target = KINDS[kind]
        passes = max(1, round(passes * scale)) if passes > 1 else 1
        capture = os.path.join(CAPTURES, f"{capture_name}.pcap")
        reports = []
        for r in range(runs):
            report = replay_once(capture, passes)
            reports.append(report)
            print(
                f"[{n}/{len(kinds)}] {kind:<16} run {r + 1}/{runs}: "
                f"{report['replies_per_s']:>12,.0f} replies/s",
                file=sys.stderr,
                flush=True,
            )
        rates = [x["replies_per_s"] for x in reports]
        median = statistics.median(rates)
        results.append(
            {
                "kind": kind,
                "label": label,
                "capture": os.path.relpath(capture, ROOT),
                "frames_per_run": reports[0]["frames"],
                "replies_per_run": reports[0]["replies"],
                "passes": passes,
                "replies_per_s": rates,
                "frames_per_s": [x["frames_per_s"] for x in reports],
                "median_replies_per_s": median,
                "median_frames_per_s": statistics.median(x["frames_per_s"] for x in reports),
                "median_replies_per_cpu_s": statistics.median(
                    x["replies_per_cpu_s"] for x in reports
                ),
                "dropped": reports[0]["dropped"],
                "target_replies_per_s": target,
                "meets_target": None if target is None else median >= target,
            }
        )
    return {
        "benchmark": "replay",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": benchlib.machine(),
        "runs": runs,
        "method": (
            "lmdp replay, one process per run, median of the runs; replies per second of "
            "time.perf_counter time in the processing loop on one core, frames in memory, "
            "no sockets; beside it replies per second of the loop's CPU time "
            "(time.thread_time), higher when other processes shared the core"
        ),
        "results": results,
    }


def table(data: dict) -> str:
    m = data["machine"]
    lines = [
        f"Replay on {m['cpu']} ({m['cpus']} CPUs), {m['python']}, lmdp {m['lmdp']}, "
        f"{data['date']}; median of {data['runs']} runs, one core.",
        "",
        "| Kind | Replies/s | Replies per CPU second | Frames per run | Target |",
        "|---|---:|---:|---:|---|",
    ]
    for r in data["results"]:
        target = r["target_replies_per_s"]
        verdict = ""
        if target is not None:
            verdict = f"{target:,} ({'met' if r['meets_target'] else 'not met'})"
        lines.append(
            f"| {r['label']} | {r['median_replies_per_s']:,.0f} "
            f"| {r['median_replies_per_cpu_s']:,.0f} | {r['frames_per_run']:,} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def plot(data: dict, path: str) -> bool:
    plt = benchlib.pyplot()
    if plt is None:
        return False
    results = data["results"][::-1]
    labels = [r["label"] for r in results]
    values = [r["median_replies_per_s"] for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(results) + 1.6))
    bars = ax.barh(labels, values, color="#4878a8")
    for bar, r in zip(bars, results, strict=True):
        lo, hi = min(r["replies_per_s"]), max(r["replies_per_s"])
        ax.plot([lo, hi], [bar.get_y() + bar.get_height() / 2] * 2, color="black", lw=1)
        ax.text(
            max(hi, bar.get_width()) * 1.1,
            bar.get_y() + bar.get_height() / 2,
            f"{bar.get_width():,.0f}",
            va="center",
            fontsize=8,
        )
        target = r["target_replies_per_s"]
        if target:
            y = bar.get_y()
            ax.plot([target, target], [y - 0.1, y + bar.get_height() + 0.1], color="#c03030", lw=2)
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 2, max(values) * 4)
    ax.set_xlabel("replies per second, one core (log scale; red: target; black: range of runs)")
    m = data["machine"]
    benchlib.save_figure(fig, path, f"lmdp replay: {m['cpu']}, {m['python']}, {data['date']}")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs per kind (5)")
    p.add_argument("--scale", type=float, default=1.0, help="scale the passes per run (1.0)")
    p.add_argument("kinds", nargs="*", help=f"kinds to run: {', '.join(KINDS)} (all)")
    args = p.parse_args(argv)
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        p.error(f"unknown kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    kinds = args.kinds or list(KINDS)
    needed = {KINDS[k][1] for k in kinds}
    missing = [c for c in needed if not os.path.exists(os.path.join(CAPTURES, f"{c}.pcap"))]
    if missing or not os.path.exists(CONFIG):
        sys.path.insert(0, HERE)
        import gen_captures

        print("generating the captures ...", file=sys.stderr, flush=True)
        gen_captures.generate(CAPTURES, log=lambda m: print(m, file=sys.stderr))
    started = time.monotonic()
    data = run(kinds, args.runs, args.scale)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "replay.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    text = table(data)
    with open(os.path.join(RESULTS, "replay.md"), "w") as f:
        f.write(text)
    plotted = plot(data, os.path.join(RESULTS, "replay.png"))
    print(text)
    print(
        f"benchmarks/results/replay.json, replay.md{', replay.png' if plotted else ''} "
        f"({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
