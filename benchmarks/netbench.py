"""What the socket benchmarks (arp_flood.py, latency.py, ports_memory.py) share: the lmdp
variants they compare, lmdp started in a lab namespace with a variant's environment, link
counters, CPU time and memory of a process, and the machine description.

Not a benchmark itself; imported by the scripts beside it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from benchlib import machine  # noqa: E402

from dataplane.lab import Lab, LmdpProcess  # noqa: E402

__all__ = [
    "GATEWAY_IP",
    "GATEWAY_MAC",
    "Lab",
    "VARIANTS",
    "cpu_seconds",
    "link_counters",
    "machine",
    "quiet_link",
    "resident_kib",
    "start_lmdp",
    "write_lmdp_config",
]

GATEWAY_IP = "169.254.1.1"
GATEWAY_MAC = "0a:58:a9:fe:01:01"

# lmdp variant -> (label, environment of `lmdp serve`); see dataplane/afpacket.py.
VARIANTS = {
    "default": ("lmdp, rings on demand (default: 8192x256)", {"LMDP_RING": "auto"}),
    "classic": ("lmdp, recv_into/send (LMDP_RING=0)", {"LMDP_RING": "0"}),
    "ring": ("lmdp, RX+TX rings from the attach (LMDP_RING=1)", {"LMDP_RING": "1"}),
    "tx-1024": ("lmdp, rings, 1024-byte TX slots", {"LMDP_RING": "128x512,16x1024"}),
    "rx-ring": ("lmdp, RX ring, send per reply", {"LMDP_RING": "128x512,0"}),
    "ring-bypass": (
        "lmdp, rings + QDISC_BYPASS",
        {"LMDP_RING": "1", "LMDP_QDISC_BYPASS": "1"},
    ),
    "ring-256": ("lmdp, rings, 256 RX slots (+64 KiB)", {"LMDP_RING": "256x512,16x512"}),
    "ring-512": ("lmdp, rings, 512 RX slots (+192 KiB)", {"LMDP_RING": "512x512,16x512"}),
    "auto-2048": ("lmdp, on demand, 2048 RX slots of 512 B", {"LMDP_RING": "auto:2048x512,64x512"}),
    "auto-4096": ("lmdp, on demand, 4096 RX slots of 512 B", {"LMDP_RING": "auto:4096x512,64x512"}),
}


def quiet_link(lab: Lab, ns: str) -> None:
    """No IPv6 in `ns` (no router solicitations, MLD or DAD frames in the counters), no
    reverse-path filter (flood senders are on-link anyway). Before the links are made."""
    lab.exec(
        ns, "sysctl", "-qw",
        "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
        "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
    )  # fmt: skip


def link_counters(lab: Lab, ns: str, ifname: str) -> dict[str, int]:
    """The interface's packet counters (rx/tx packets and drops)."""
    link = json.loads(lab.exec(ns, "ip", "-j", "-s", "link", "show", "dev", ifname))[0]
    stats = link["stats64"]
    return {
        "rx_packets": stats["rx"]["packets"],
        "rx_dropped": stats["rx"]["dropped"],
        "tx_packets": stats["tx"]["packets"],
        "tx_dropped": stats["tx"]["dropped"],
    }


def write_lmdp_config(path: Path, interfaces: list[str], bindings: list[dict] | None = None):
    import yaml

    config = {
        "node": "bench",
        "interfaces": interfaces,
        "gateway": {"ipv4": GATEWAY_IP, "ipv6": "fe80::1", "mac": GATEWAY_MAC},
        "dns": {"servers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]},
        "mtu": 1400,
        "bindings": bindings or [],
        "store": {"backend": "sqlite", "path": str(path.with_suffix(".db"))},
        "http": {"listen": "127.0.0.1:9464"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_lmdp(lab: Lab, ns: str, config: Path, env: dict[str, str]) -> LmdpProcess:
    """`lmdp serve` in `ns` with `env` added to its environment; returns once healthy."""
    lmdp = LmdpProcess(lab, ns, config, env={"LMDP_QDISC_BYPASS": None, **env})
    lmdp.start(timeout=30)
    return lmdp


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def resident_kib(pid: int) -> dict[str, int]:
    """VmRSS and its parts (RssAnon, RssFile: ring pages count there) in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
    return out
