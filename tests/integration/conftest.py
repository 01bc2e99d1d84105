"""Integration fixtures: each test gets its own namespaces, torn down even when it fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataplane.lab import Lab, LmdpProcess, write_config

VM_MAC = "0a:58:0a:f4:02:1a"
VM_IP = "10.244.2.26"
OTHER_MAC = "0a:58:0a:f4:02:1b"
OTHER_IP = "10.244.2.27"
GATEWAY_MAC = "0a:58:a9:fe:01:01"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(item.fspath).is_relative_to(here):
            item.add_marker(pytest.mark.integration)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root for network namespaces")
        for item in items:
            if Path(item.fspath).is_relative_to(here):
                item.add_marker(skip)


def require(*commands: str) -> None:
    """Fail (not skip) when a peer is missing: `make test` installs them all."""
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        pytest.fail(f"missing peers {missing}: run `make test`, which installs them")


@pytest.fixture
def lab():
    with Lab() as lab:
        yield lab


class Node:
    """A node namespace running lmdp, with VM namespaces attached by veth."""

    def __init__(self, lab: Lab, short: str = "node", **config):
        self.lab = lab
        self.ns = lab.netns(short)
        self.config_path = write_config(lab.workdir / f"{short}.yaml", **config)
        self.lmdp = LmdpProcess(lab, self.ns, self.config_path)
        self._ports = 0

    def add_vm(self, short: str, mac: str, port: str | None = None) -> str:
        vm = self.lab.netns(short)
        port = port or f"tap{self._ports}"
        self._ports += 1
        self.lab.veth(self.ns, port, vm, "eth0", mac_b=mac)
        return vm

    def start(self) -> Node:
        self.lmdp.start()
        return self

    def metric(self, name: str, **labels: str) -> float:
        return self.lmdp.metric(name, **labels)


@pytest.fixture
def node(lab):
    n = Node(
        lab,
        bindings=[
            {"name": "fedora", "mac": VM_MAC, "ipv4": f"{VM_IP}/24"},
            {"name": "other", "mac": OTHER_MAC, "ipv4": f"{OTHER_IP}/24"},
        ],
    )
    yield n
    # pytest shows captured output only for failing tests: there, the daemon's log helps.
    print(f"--- lmdp log ({n.ns})\n{n.lmdp.log()}")


def tcpdump(lab: Lab, ns: str, path: Path, expr: str = "udp port 67 or udp port 68"):
    """Start tcpdump in `ns` writing `path`; returns the Popen (stop it with lab.stop)."""
    p = lab.popen(
        ns, "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-n", "-w", str(path), expr,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    # tcpdump says "listening on" once the capture is live.
    p.stderr.readline()
    return p


def run_in_veth_lab(
    code: str, *args: str, env: str | None = None, rx_up: bool = True, timeout: float = 30
) -> dict | list:
    """Run the Python `code` in a namespace of its own holding the veth pair tx0 - rx0 (tx0
    up; rx0 too unless `rx_up` is False: the code brings it up); its stdout is JSON."""
    with Lab() as lab:
        ns = lab.netns("veth")
        # No IPv6 in the namespace: the kernel's own router solicitations would pass the
        # filter and be counted against whichever case is on the wire then.
        lab.exec(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                 "net.ipv6.conf.default.disable_ipv6=1")  # fmt: skip
        lab.ip(ns, "link", "add", "tx0", "type", "veth", "peer", "name", "rx0")
        lab.ip(ns, "link", "set", "tx0", "up")
        if rx_up:
            lab.ip(ns, "link", "set", "rx0", "up")
        script = lab.workdir / "probe.py"
        script.write_text(code)
        cmd = [sys.executable, str(script), *args]
        if env is not None:
            cmd = ["env", env, *cmd]
        return json.loads(lab.exec(ns, *cmd, timeout=timeout))


def perfdhcp_stats(out: str) -> dict[str, dict[str, int]]:
    """perfdhcp's per-exchange counts: {"DISCOVER-OFFER": {"sent packets": n,
    "received packets": n, "drops": n}, ...}, from its "Statistics for:" sections."""
    stats = {}
    for section, body in re.findall(r"Statistics for: (\S+?)\*+\n(.*?)collected", out, re.S):
        stats[section] = {
            k: int(v)
            for k, v in re.findall(r"^(sent packets|received packets|drops): (\d+)", body, re.M)
        }
    return stats
