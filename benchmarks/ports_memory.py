"""Resident memory of `lmdp serve` by attached interface: what a port costs, by socket path.

    flock /tmp/lmdp-bench.lock .venv/bin/python benchmarks/ports_memory.py \\
        [--ports 0,250,1000] [--variants default,ring,classic]

In one lab namespace, N veth pairs (tapN, with its peer pN in the same namespace); lmdp
serves `tap*`, and once /metrics says all N are attached and the size has settled (the rings
are set up on threads after the attach), its VmRSS
(and RssAnon, RssFile: the mapped ring pages count in RssFile) is read from /proc. The
cost of a port is the slope between the smallest and the largest N. Variants: see
netbench.VARIANTS (`default`: rings on demand, so idle ports hold none; `ring`: rings on
every port from the attach; `classic`: never), plus `head`: the committed code (a `git
worktree` of HEAD), to compare a change against.

Writes benchmarks/results/ports_memory.json and ports_memory.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import benchlib
from netbench import (
    RESULTS,
    ROOT,
    VARIANTS,
    Lab,
    machine,
    resident_kib,
    start_lmdp,
    write_lmdp_config,
)

TARGET_MB = 200  # 1,000 interfaces under 200 MB resident (the scale target)


@contextlib.contextmanager
def head_worktree():
    """The committed tree in a temporary worktree; lmdp runs from it (cwd first on the path)."""
    path = tempfile.mkdtemp(prefix="lmdp-head-")
    subprocess.run(
        ["git", "-C", ROOT, "worktree", "add", "--detach", path, "HEAD"],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", ROOT, "worktree", "remove", "--force", path], capture_output=True
        )


def make_ports(lab: Lab, ns: str, count: int, have: int) -> None:
    batch = lab.workdir / "ports.batch"
    lines = []
    for i in range(have, count):
        lines += [f"link add tap{i} type veth peer name p{i}", f"link set tap{i} up"]
        lines += [f"link set p{i} up"]
    if lines:
        batch.write_text("\n".join(lines) + "\n")
        lab.exec(ns, "ip", "-batch", str(batch), timeout=300)


def measure(lab, ns, config, variant, ports, cwd) -> dict:
    env = dict(VARIANTS[variant][1]) if variant in VARIANTS else {}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        lmdp = start_lmdp(lab, ns, config, env)
    finally:
        os.chdir(old)
    try:
        deadline = time.monotonic() + 120
        while lmdp.metric("lmdp_interfaces_attached") < ports:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{variant}: only {lmdp.metric('lmdp_interfaces_attached')} attached"
                )
            time.sleep(0.5)
        # The rings are set up on threads after the attach: wait until the size settles.
        last, steady = None, 0
        while steady < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            now = resident_kib(lmdp.proc.pid)
            steady = steady + 1 if now == last else 0
            last = now
        return last
    finally:
        lab.stop(lmdp.proc, timeout=180)  # closing a thousand packet sockets takes a while


def plot(data: dict, path: str) -> bool:
    plt = benchlib.pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in data["results"]:
        xs = [p["ports"] for p in r["points"]]
        ys = [p["VmRSS"] / 1024 for p in r["points"]]
        ax.plot(xs, ys, "o-", label=f"{r['label']}: {r['kib_per_port']:.0f} KiB/port")
    ax.axhline(TARGET_MB * 1e6 / 2**20, color="#c03030", lw=1, ls="--", label="200 MB")
    ax.set_xlabel("attached interfaces")
    ax.set_ylabel("lmdp VmRSS (MiB)")
    ax.legend(fontsize=8)
    m = data["machine"]
    benchlib.save_figure(fig, path, f"lmdp resident memory by port: {m['python']}, {data['date']}")
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ports", default="0,250,1000", help="interface counts (0,250,1000)")
    p.add_argument("--variants", default="default,ring,classic", help="(default,ring,classic)")
    args = p.parse_args(argv)
    counts = sorted(int(x) for x in args.ports.split(","))
    variants = args.variants.split(",")
    labels = {"head": "lmdp HEAD (before: 64 KiB buffer a port)"}
    results = {v: [] for v in variants}
    with contextlib.ExitStack() as stack, Lab() as lab:
        cwds = {v: ROOT for v in variants}
        if "head" in variants:
            cwds["head"] = stack.enter_context(head_worktree())
        ns = lab.netns("mem")
        config = write_lmdp_config(lab.workdir / "lmdp.yaml", ["tap*"])
        have = 0
        for n in counts:
            make_ports(lab, ns, n, have)
            have = n
            for v in variants:
                rss = measure(lab, ns, config, v, n, cwds[v])
                results[v].append({"ports": n, **rss})
                print(f"  {v:<10} {n:>5} ports: VmRSS {rss['VmRSS'] / 1024:7.1f} MiB "
                      f"(anon {rss['RssAnon'] / 1024:.1f}, file {rss['RssFile'] / 1024:.1f})",
                      file=sys.stderr, flush=True)  # fmt: skip
    out = []
    for v in variants:
        pts = results[v]
        lo, hi = pts[0], pts[-1]
        slope = (hi["VmRSS"] - lo["VmRSS"]) / max(hi["ports"] - lo["ports"], 1)
        at_1000 = lo["VmRSS"] + slope * (1000 - lo["ports"])
        out.append(
            {
                "variant": v,
                "label": labels.get(v) or VARIANTS[v][0],
                "env": VARIANTS.get(v, (None, {}))[1],
                "points": pts,
                "kib_per_port": slope,
                "mb_at_1000_ports": at_1000 * 1024 / 1e6,
                "meets_target": at_1000 * 1024 / 1e6 < TARGET_MB,
            }
        )
    data = {
        "benchmark": "ports_memory",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "target": f"1,000 interfaces under {TARGET_MB} MB resident",
        "results": out,
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "ports_memory.json"), "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    plot(data, os.path.join(RESULTS, "ports_memory.png"))
    for r in out:
        print(f"{r['label']:<44} {r['kib_per_port']:6.1f} KiB/port, "
              f"{r['mb_at_1000_ports']:6.1f} MB at 1,000 ports")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
