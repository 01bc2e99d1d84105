"""The live-migration lab: a fabric, three nodes with an lmdp each, one VM that moves.

```
 fabric:             br0 (peer host 10.244.2.100) -- to-node-a, to-node-b, to-node-c
                                                           |  (one veth per node)
 node-a, -b, -c:          gw -- br-vm -- uplink -----------'
                          |       |
 gw-<node> (subnet mode): eth0    vm0    the VM's tap: a migration moves it to the next node
                                  |
 wire-fedora (the VM's NIC):     tap -- br-wire -- guest
                                                     |
 vm-fedora:                                         eth0 (0a:58:0a:f4:02:1a; never goes down)
```

Everything is one L2 segment, so peer <-> VM traffic is bridged: the fabric bridge learns
which node the VM's MAC is behind, and keeps sending there after the VM has left until
something from the VM's MAC arrives from its new node. A migration moves `vm0` (the far end
of the wire's `tap`, i.e. the VM's tap device) into the next node's namespace and bridge, as
a tap moves between hosts. The VM's own `eth0` is a veth into the wire namespace, which
stays put: the VM keeps its carrier, addresses, routes, neighbour cache and sockets, as a
migrated guest does (moving a veth end drops the carrier of its peer only, and Linux
flushes a device's neighbour entries on carrier loss). br-wire learns nothing, like a
wire: the target lmdp's gratuitous ARP from the VM's MAC also floods out of `vm0`, and would
teach it that the VM is behind `tap`. Each node's lmdp watches `vm*` only
(never the bridge or the uplink); all three share one SQLite store.

Router mode `subnet` (current OVN-Kubernetes): the VM's router is 10.244.2.1 and every node
has its own gateway MAC. Each node then also has a gateway endpoint, the namespace
`gw-<node>` (10.244.2.1 with that node's gateway MAC, a UDP echo responder), on port `gw`
of its br-vm, standing in for OVN's per-node router: it is reachable from the VM only on
its own node. `gw` and `uplink` are isolated bridge ports (`bridge link set ... isolated
on`: isolated ports never forward to each other), so frames for node A's gateway MAC that
the VM sends from node B may cross the fabric but are dropped at node A's bridge, and the
gateways never reach (nor teach their MACs to) the fabric. The gateway kernels never answer
ARP (`arp_ignore=8`) and know the VM's MAC statically, so every answer the VM gets about
10.244.2.1 is lmdp's (its ARP proxy and its post-migration gratuitous ARP). The VM probes
10.244.2.1 every millisecond; after a move, its neighbour entry still names the source
node's gateway until lmdp's announcement corrects it, or, with announcements off, until
Linux gives up on the entry (STALE after 15-45 s, 5 s DELAY, 3 unicast probes, then a
broadcast request that the target's lmdp answers): the lab stops waiting long before.

The VM is silent toward the peer: IPv6 is off in every lab namespace (no DAD, MLD or router
solicitations), delayed ACKs are off on its route to the peer, and it never sends a RARP.
What brings the peer's traffic back after a move is the target lmdp's announcement (or,
with announcements off, the next frame the VM sends: its DHCP renew, or in router mode
subnet its probes to the gateway).

Dual stack (`dual_stack=True`, `lmdp lab demo --dual-stack`): the binding also has
fd00:10:244:2::1a/64, lmdp sends RAs (`ra: true`: default via fe80::1, no prefix) and has an
IPv6 DNS server, and the VM runs a DHCPv6 client beside the DHCPv4 one. IPv6 is turned on
for the VM's eth0 and the peer's br0 only (nodes and wire bridge it, as they bridge IPv4).
The VM stays as silent as IPv6 lets it: no DAD; MLD reports only when it joins a
solicited-node group (link-local address, then the DHCPv6 one), repeated ~10 ms apart (not
up to 1 s) so all are out before the first hop (no querier, so none after); router
solicitations until the first RA. The peer probes the VM's IPv6 address as well, and two
watchers record what the VM sends on its own (on its wire) and what reaches the peer from
the VM's MAC: a hop checks that the VM said nothing while it was cut off, and that the peer
got the target's unsolicited NA. The VM reaches the peer through an on-link host route
(nothing in the lab answers for the gateway's MAC) and never uses fe80::1, whose entry the
RA made: a datagram through that STALE entry would make the kernel probe it, unprompted,
5 s later.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .lab import (
    Dhcp6Client,
    Lab,
    LabError,
    LmdpProcess,
    VmClient,
    client_available,
    ipv4_addresses,
    ipv6_addresses,
    ipv6_default_routes,
    metric_sum,
    prepare_ipv6,
    resolve_gateway,
    wait_for,
    write_config,
)

__all__ = ["HopResult", "MigrationLab", "run_migration_demo"]

VM_NAME = "fedora"
VM_MAC = "0a:58:0a:f4:02:1a"
VM_IP = "10.244.2.26"
PEER_IP = "10.244.2.100"
PEER_MAC = "02:00:0a:f4:02:64"
GATEWAY_IP = "169.254.1.1"
GATEWAY_MAC = "0a:58:a9:fe:01:01"
SUBNET_GATEWAY_IP = "10.244.2.1"  # the router in router mode subnet: the subnet's first host
ROUTER_MODES = ("link-local", "subnet")
PORT = "vm0"  # the VM's port: the same name on every node, so `interfaces: ["vm*"]` matches
BRIDGE = "br-vm"
UPLINK = "uplink"
GW_PORT = "gw"  # the node's gateway endpoint on its br-vm (router mode subnet)
WIRE_BRIDGE = "br-wire"
WIRE_TAP = "tap"  # the wire's end of the moving veth; `vm0` is the other end
WIRE_GUEST = "guest"  # the wire's end of the VM's eth0
NODES = ("node-a", "node-b", "node-c")
ANNOUNCE_ROUNDS_MS = [0, 50, 200, 450, 800]
DOWNTIME_LIMIT_MS = 100.0
# With announcements off in router mode subnet, the VM's stale gateway entry lasts tens of
# seconds (the kernel's neighbour timers); the demo stops waiting for it here.
STALE_GATEWAY_BOUND = 3.0
# The request each client sends when the lab asks it to renew after a hop (VmClient.renew).
RENEW_STATE = {"dhclient": "INIT-REBOOT", "dhcpcd": "RENEWING"}
# --dual-stack: the VM's IPv6 binding (DHCPv6 gives the address as a /128), the peer's
# address beside it, the gateway lmdp advertises (RA) and answers for, the DNS servers.
VM_IP6 = "fd00:10:244:2::1a"
PEER_IP6 = "fd00:10:244:2::64"
GATEWAY_IP6 = "fe80::1"
DNS_SERVERS = ["10.96.0.10", "fd00:10:96::a"]
# ... and what each DHCPv6 client sends when asked again after a hop (Dhcp6Client.renew).
RENEW6_MESSAGE = {"dhclient": "CONFIRM", "dhcpcd": "RENEW"}


def node_gateway_mac(index: int) -> str:
    """Router mode subnet: a different gateway MAC per node (0a:58:0a:f4:02:0a, 0b, ...)."""
    return f"0a:58:0a:f4:02:{0x0A + index:02x}"


@dataclass
class HopResult:
    hop: int
    source: str
    target: str
    served_by: str  # where the VM runs after the hop: the target, or the source if it failed
    moved: bool = False  # the port came up on the target
    downtime_ms: float | None = None
    downtime_open: bool = False  # replies had not resumed when we stopped waiting
    move_ms: float = 0.0  # moving the port (and, for a failed hop, waiting and moving back)
    announce_ms: float | None = None  # wall time of `lmdp announce`
    tcp_same: bool = False
    tcp_bytes: int = 0  # bytes the VM received on its stream during the hop
    renew_nodes: list[str] = field(default_factory=list)  # nodes whose DHCPACK count rose
    addresses: list[str] = field(default_factory=list)
    routes_same: bool = False
    store_node: str | None = None  # where the shared store records the VM afterwards
    store_node_before_renew: str | None = None  # ... once traffic is back, before the renew
    fdb: str = ""  # the served node's bridge entry for the VM's MAC, when replies never resumed
    carrier_changes: int = 0  # of the VM's eth0 during the hop (a migrated guest sees none)
    # Router mode subnet: the VM's probes to its gateway, and its neighbour entry for it.
    gw_outage_ms: float | None = None  # longest VM -> gateway reply gap since the hop began
    gw_outage_open: bool = False  # replies had not resumed when we stopped waiting
    gw_neigh_before: str = ""  # `ip neigh show <gateway>` in the VM before the hop
    gw_mac_before: str | None = None  # the MAC that entry held
    gw_neigh_after: str = ""  # ... once the hop's outage is over (or we stopped waiting)
    gw_mac_after: str | None = None  # the MAC that entry holds
    # --dual-stack: the peer's IPv6 probes, the VM's IPv6 state after its DHCPv6 renew.
    downtime6_ms: float | None = None
    downtime6_open: bool = False
    renew6_nodes: list[str] = field(default_factory=list)  # nodes whose DHCPv6 REPLYs rose
    addresses6: list[str] = field(default_factory=list)  # global, tentative ones included
    routes6: list[str] = field(default_factory=list)  # IPv6 default routes, "via dev"
    gw6_neigh_after: str = ""  # `ip -6 neigh show fe80::1` in the VM after the hop
    gw6_mac_after: str | None = None
    # When the hop began, when the probes' replies were back (or we stopped waiting), and
    # when the hop's checks were done; frames the VM sent unprompted in the first span.
    t_start: float = 0.0
    t_moved: float = 0.0
    t_resumed: float = 0.0
    t_end: float = 0.0
    vm_spoke: list[str] = field(default_factory=list)
    # What the peer received from the VM's MAC (lmdp's announcements, the VM's own frames)
    # while the VM was cut off: (ms after the port moved, what).
    peer_heard: list[tuple[float, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def renewed_by_served_node(self) -> bool:
        return self.renew_nodes == [self.served_by]

    def downtime_text(self) -> str:
        return _ms_text(self.downtime_ms, self.downtime_open)

    def gw_outage_text(self) -> str:
        return _ms_text(self.gw_outage_ms, self.gw_outage_open)

    def downtime6_text(self) -> str:
        return _ms_text(self.downtime6_ms, self.downtime6_open)


def _ms_text(ms: float | None, open_: bool) -> str:
    if ms is None:
        return "?"
    return f"{'>=' if open_ else ''}{ms:.0f}"


def _longest_gap(status: dict, since: float, clip: bool = False) -> tuple[float | None, bool]:
    """The longest gap between a prober's replies that ended after `since` (ms), and whether
    the current gap is still open (then the value is a lower bound). `clip`: count a gap
    that began before `since` from `since`."""
    now, last = status.get("t", time.monotonic()), status.get("last_reply")
    spans = [(start, end) for start, end, _ in status.get("gaps", []) if end > since]
    open_gap = last is not None and now - last > 0.05
    if open_gap:
        spans.append((last, now))
    gaps = [end - (max(start, since) if clip else start) for start, end in spans]
    return (max(gaps) * 1000 if gaps else 0.0), open_gap


_WARM_CLI = """\
import json, sys, time
from dataplane import cli, config  # what a cold `lmdp announce` spends its start-up on
import urllib.request, yaml
print("ready", flush=True)
for line in sys.stdin:
    t0 = time.monotonic()
    rc = cli.main(json.loads(line))
    print(f"lab-cli-rc {rc} {(time.monotonic() - t0) * 1000:.1f}", flush=True)
"""


_RARP = """\
import socket, sys
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
frame = (b"\\xff" * 6 + mac + b"\\x80\\x35" + bytes.fromhex("0001 0800 06 04 0003")
         + mac + bytes(4) + mac + bytes(4)).ljust(60, b"\\0")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
s.send(frame)
"""


class WarmCli:
    """An `lmdp` command line kept imported in a namespace: `run(argv)` calls `cli.main`."""

    def __init__(self, lab: Lab, ns: str):
        self.proc = lab.popen(
            ns, sys.executable, "-c", _WARM_CLI,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._buf = b""

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise LabError("the lmdp command did not answer")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise LabError(f"the lmdp command process exited: {self._buf.decode()}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def wait_ready(self, timeout: float = 15) -> None:
        while self._line(timeout) != "ready":
            pass

    def run(self, argv: list[str], timeout: float = 15) -> float:
        """Run `lmdp ARGV`; returns its wall time in ms, raises LabError unless it exits 0."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(argv) + "\n").encode())
        self.proc.stdin.flush()
        output = []
        while not (line := self._line(timeout)).startswith("lab-cli-rc "):
            output.append(line)
        _, rc, ms = line.split()
        if rc != "0":
            raise LabError(f"lmdp {' '.join(argv)} exited {rc}: {' '.join(output)}")
        return float(ms)


class MigrationLab:
    """Builds the topology inside `lab`; `lab` tears everything down."""

    def __init__(
        self,
        lab: Lab,
        *,
        client: str = "dhclient",
        announce_rounds_ms: list[int] | None = None,
        nodes: tuple[str, ...] = NODES,
        lease_time: int = 3500,
        announce_mode: str = "warm",
        router_mode: str = "link-local",
        dual_stack: bool = False,
    ):
        if router_mode not in ROUTER_MODES:
            raise LabError(f"router mode must be one of {', '.join(ROUTER_MODES)}")
        self.lab = lab
        self.client_kind = client
        self.rounds = ANNOUNCE_ROUNDS_MS if announce_rounds_ms is None else announce_rounds_ms
        self.node_names = nodes
        self.router_mode = router_mode
        self.subnet_mode = router_mode == "subnet"
        # What the VM routes through, and each node's MAC for it (one MAC everywhere in
        # link-local mode; one per node in subnet mode, as OVN-Kubernetes' node routers).
        self.gateway_ip = SUBNET_GATEWAY_IP if self.subnet_mode else GATEWAY_IP
        self.gateway_macs = {
            node: node_gateway_mac(i) if self.subnet_mode else GATEWAY_MAC
            for i, node in enumerate(nodes)
        }
        self.gw_ns: dict[str, str] = {}  # node name -> its gateway endpoint's namespace
        self.wire = ""
        self.lease_time = lease_time
        self.announce_mode = announce_mode
        self.warm: dict[str, WarmCli] = {}
        self.announce_retries = 0
        self.fabric = ""
        self.ns: dict[str, str] = {}  # node name -> namespace
        self.lmdp: dict[str, LmdpProcess] = {}
        self.vm = ""
        self.vm_node = nodes[0]
        self.client: VmClient | None = None
        self.dual_stack = dual_stack
        self.client6: Dhcp6Client | None = None
        self.store_path = lab.workdir / "leases.db"
        self.peer_status_path = lab.workdir / "peer.json"
        self.vm_status_path = lab.workdir / "vm.json"
        self.gw_probe_status_path = lab.workdir / "vm-gateway-probe.json"
        self.watch_status_path = lab.workdir / "vm-watch.json"
        self.peer_watch_status_path = lab.workdir / "peer-watch.json"
        self.traffic: list[subprocess.Popen] = []
        self.hops = 0

    @property
    def announcing(self) -> bool:
        return bool(self.rounds)

    # -- topology ----------------------------------------------------------------------

    def _netns(self, short: str) -> str:
        ns = self.lab.netns(short)
        # Before any interface exists, so none of them ever gets IPv6 (a silent VM, and
        # no neighbour discovery chatter on the bridges).
        self.lab.exec(
            ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        )  # fmt: skip
        return ns

    def _bridge(self, ns: str, name: str, mac: str | None = None) -> None:
        self.lab.ip(ns, "link", "add", name, "type", "bridge", "mcast_snooping", "0")
        if mac:
            self.lab.ip(ns, "link", "set", name, "address", mac)
        self.lab.ip(ns, "link", "set", name, "up")

    def build(self) -> MigrationLab:
        lab = self.lab
        self.fabric = self._netns("fabric")
        # The peer host is the fabric bridge's own address: one namespace, one L2 segment.
        self._bridge(self.fabric, "br0", mac=PEER_MAC)
        lab.ip(self.fabric, "addr", "add", f"{PEER_IP}/24", "dev", "br0")
        if self.dual_stack:
            # The peer's IPv6, on br0 only: no DAD, no router solicitation, no RA taken.
            lab.exec(self.fabric, "sysctl", "-qw", *(
                f"net.ipv6.conf.br0.{k}={v}"
                for k, v in (("accept_dad", 0), ("accept_ra", 0), ("router_solicitations", 0),
                             ("disable_ipv6", 0))
            ))  # fmt: skip
            lab.ip(self.fabric, "-6", "addr", "add", f"{PEER_IP6}/64", "dev", "br0", "nodad")
        for node in self.node_names:
            ns = self._netns(node)
            self.ns[node] = ns
            self._bridge(ns, BRIDGE)
            lab.veth(ns, UPLINK, self.fabric, f"to-{node}")
            lab.ip(ns, "link", "set", UPLINK, "master", BRIDGE)
            lab.ip(self.fabric, "link", "set", f"to-{node}", "master", "br0")
            if self.subnet_mode:
                self._gateway(node)
        # The VM's NIC: eth0 is a veth into the wire, whose other port (`tap`) is a veth
        # whose far end, `vm0`, is what moves between the nodes. The VM's link never drops.
        self.wire = self._netns(f"wire-{VM_NAME}")
        self._bridge(self.wire, WIRE_BRIDGE)
        self.vm = self._netns(f"vm-{VM_NAME}")
        lab.veth(self.wire, WIRE_GUEST, self.vm, "eth0", mac_b=VM_MAC)
        lab.ip(self.wire, "link", "set", WIRE_GUEST, "master", WIRE_BRIDGE)
        first = self.ns[self.vm_node]
        lab.veth(first, PORT, self.wire, WIRE_TAP)
        lab.ip(self.wire, "link", "set", WIRE_TAP, "master", WIRE_BRIDGE)
        # br-wire learns, like KubeVirt's in-pod bridge (k6t-eth0): an announcement for
        # the VM that came back down vm0 would teach it the VM is behind `tap` and cut
        # the VM off until it speaks; lmdp announces on the uplinks only, and the
        # migration tests would catch it if that changed.
        lab.ip(first, "link", "set", PORT, "master", BRIDGE)
        return self

    def _gateway(self, node: str) -> None:
        """The node's router as OVN's: 10.244.2.1 at the node's own gateway MAC, reachable
        from the VM port of this node only, and never answering ARP itself (lmdp does)."""
        lab, ns = self.lab, self.ns[node]
        gw = self._netns(f"gw-{node}")
        self.gw_ns[node] = gw
        lab.exec(gw, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=8")
        lab.veth(ns, GW_PORT, gw, "eth0", mac_b=self.gateway_macs[node])
        lab.ip(gw, "addr", "add", f"{SUBNET_GATEWAY_IP}/24", "dev", "eth0")
        # OVN's router knows its ports' MACs; so does this one: it never asks.
        lab.ip(gw, "neigh", "replace", VM_IP, "lladdr", VM_MAC, "dev", "eth0", "nud", "permanent")
        lab.ip(ns, "link", "set", GW_PORT, "master", BRIDGE)
        # Isolated ports never forward to each other: the gateway talks to the VM port only,
        # and nothing from the fabric (another node's VM) ever reaches it.
        for port in (GW_PORT, UPLINK):
            lab.exec(ns, "bridge", "link", "set", "dev", port, "isolated", "on")

    def write_configs(self) -> None:
        for node in self.node_names:
            extra: dict = {}
            binding = {"name": VM_NAME, "mac": VM_MAC, "ipv4": f"{VM_IP}/24"}
            if self.subnet_mode:
                extra["gateway"] = {"router_mode": "subnet", "mac": self.gateway_macs[node]}
            if self.dual_stack:
                binding["ipv6"] = f"{VM_IP6}/64"
                extra["ra"] = True  # default via fe80::1 from lmdp's RA (M, O; no prefix)
                extra["dns"] = {"servers": DNS_SERVERS, "search": ["default.svc.cluster.local"]}
            write_config(
                self.lab.workdir / f"{node}.yaml",
                node=node,
                interfaces=["vm*"],
                lease_time=self.lease_time,
                bindings=[binding],
                store={"backend": "sqlite", "path": str(self.store_path)},
                announce={"rounds_ms": list(self.rounds), "via": "auto"},
                **extra,
            )

    def start_lmdp(self, timeout: float = 20) -> None:
        self.write_configs()
        for node in self.node_names:
            p = LmdpProcess(self.lab, self.ns[node], self.lab.workdir / f"{node}.yaml")
            p.start(wait=False)
            self.lmdp[node] = p
        if self.announce_mode == "warm":
            for node in self.node_names:
                self.warm[node] = WarmCli(self.lab, self.ns[node])
        for p in self.lmdp.values():
            p.wait_healthy(timeout)
        for w in self.warm.values():
            w.wait_ready(timeout)

    def start_client(self, timeout: float = 30) -> list[str]:
        if self.dual_stack:
            self.start_watch()
            self.prepare_ipv6()
        self.client = VmClient(self.lab, self.vm, self.client_kind)
        self.client.start()
        if self.dual_stack:
            # dhclient -6 returns once bound; dhcpcd at once, so that its DHCPv6 runs while
            # its DHCPv4 still probes the address (ARP, seconds).
            self.client6 = Dhcp6Client(self.lab, self.vm, self.client_kind, ra=True)
            self.client6.start(timeout)
        addrs = wait_for(lambda: ipv4_addresses(self.lab, self.vm), timeout, what="an address")
        wait_for(lambda: "default via" in self.routes(), 10, what="the VM's routes")
        # The lab's silent VM: ACK the peer's stream at once, never from a delayed-ACK timer
        # that could fire just after a move and re-teach the fabric (a frame the VM sends
        # on its own). A host route, so the DHCP-configured routes stay as they were.
        self.lab.ip(self.vm, "route", "add", f"{PEER_IP}/32", "dev", "eth0", "quickack", "1")
        if self.dual_stack:
            self.wait_client6(timeout)
        return addrs

    def prepare_ipv6(self) -> None:
        """IPv6 on the VM's eth0 only (lo and the wire keep it off): no DAD, the RA's
        default route taken by the kernel (dhclient) or by dhcpcd itself, and the MLD
        reports the kernel sends when it joins a solicited-node group (for the link-local
        address now, for the DHCPv6 address later) repeated after 1 ms (~10 ms: the
        kernel's timer granularity) instead of up to a second, so that all of them are out
        before the first hop (nothing queries, so none follows)."""
        self.lab.exec(self.vm, "sysctl", "-qw",
                      "net.ipv6.conf.eth0.mldv2_unsolicited_report_interval=1",
                      "net.ipv6.conf.eth0.mldv1_unsolicited_report_interval=1")  # fmt: skip
        prepare_ipv6(self.lab, self.vm, accept_ra=self.client_kind == "dhclient")

    def wait_client6(self, timeout: float = 30) -> list[str]:
        """The VM's DHCPv6 client (dhcpcd starts DHCPv6 on the M flag of lmdp's RA) holds
        the binding's address, and the kernel or dhcpcd the RA's default route; then an
        on-link host route to the peer (the lab's: nothing in the lab answers for the
        gateway's MAC, so the VM must not send the peer's replies through fe80::1)."""
        addrs = wait_for(self.addresses6, timeout, 0.05, "an IPv6 address")
        wait_for(self.routes6, 10, 0.05, "the VM's IPv6 default route")
        self.lab.ip(self.vm, "-6", "route", "add", f"{PEER_IP6}/128", "dev", "eth0")
        return addrs

    def start_watch(self, timeout: float = 10) -> None:
        """Watch what the VM sends on its own, from its wire (which never moves), and what
        reaches the peer from the VM's MAC (lmdp's announcements on the VM's behalf)."""
        for ns, ifname, path in (
            (self.wire, WIRE_GUEST, self.watch_status_path),
            (self.fabric, "br0", self.peer_watch_status_path),
        ):
            self._traffic(ns, "watch", "--status", str(path), "--ifname", ifname,
                          "--mac", VM_MAC)  # fmt: skip
        for path in (self.watch_status_path, self.peer_watch_status_path):
            wait_for(path.exists, timeout, 0.02, "the watchers")

    def _traffic(self, ns: str, *args: str) -> None:
        self.traffic.append(
            self.lab.popen(
                ns,
                sys.executable,
                "-m",
                "dataplane.labtraffic",
                *args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
        )

    def start_traffic(self, timeout: float = 10) -> None:
        """The VM's receiver and echo responder, then the peer's stream and probes; in
        router mode subnet also the gateways' echo responders and the VM's probes to its
        gateway."""
        ipv6 = ["--udp6"] if self.dual_stack else []
        self._traffic(self.vm, "vm", "--status", str(self.vm_status_path), *ipv6)
        wait_for(self.vm_status_path.exists, timeout, 0.05, "the VM's traffic responder")
        ipv6 = ["--vm6", VM_IP6] if self.dual_stack else []
        self._traffic(
            self.fabric, "peer", "--status", str(self.peer_status_path), "--vm", VM_IP, *ipv6
        )
        if self.subnet_mode:
            echoes = [self.lab.workdir / f"gw-{node}.json" for node in self.gw_ns]
            for node, status in zip(self.gw_ns, echoes, strict=True):
                self._traffic(self.gw_ns[node], "echo", "--status", str(status))
            wait_for(lambda: all(p.exists() for p in echoes), timeout, 0.05, "the gateways")
            self._traffic(
                self.vm, "probe", "--status", str(self.gw_probe_status_path),
                "--target", self.gateway_ip,
            )  # fmt: skip
        wait_for(
            lambda: (
                self.vm_status().get("bytes", 0) > 0
                and self.peer_status().get("replies")
                and (not self.subnet_mode or self.gw_probe_status().get("replies"))
                and (not self.dual_stack or self.peer6_status().get("replies"))
            ),
            timeout,
            0.05,
            "the TCP stream and the probes to flow",
        )

    def stop_traffic(self) -> None:
        for p in self.traffic:
            self.lab.stop(p)
            if p.returncode not in (0, -15) and p.stderr is not None:
                err = p.stderr.read().decode(errors="replace").strip()
                if err:
                    raise LabError(f"traffic process failed: {err.splitlines()[-1]}")
        self.traffic.clear()

    # -- observation -------------------------------------------------------------------

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def peer_status(self) -> dict:
        return self._read(self.peer_status_path)

    def vm_status(self) -> dict:
        return self._read(self.vm_status_path)

    def gw_probe_status(self) -> dict:
        return self._read(self.gw_probe_status_path)

    def peer6_status(self) -> dict:
        status = self.peer_status()
        return {**status.get("ipv6", {}), **({"t": status["t"]} if "t" in status else {})}

    def vm_frames(self) -> list[tuple[float, str, bool]]:
        """What the VM sent other than TCP and UDP: (time, what, unprompted)."""
        return [tuple(f) for f in self._read(self.watch_status_path).get("frames", [])]

    def peer_frames(self) -> list[tuple[float, str, bool]]:
        """What reached the peer from the VM's MAC other than TCP and UDP."""
        return [tuple(f) for f in self._read(self.peer_watch_status_path).get("frames", [])]

    def addresses6(self) -> list[str]:
        """The VM's global IPv6 addresses, tentative ones included."""
        return ipv6_addresses(self.lab, self.vm, tentative=True)

    def routes6(self) -> list[str]:
        return ipv6_default_routes(self.lab, self.vm)

    def gateway6_neigh(self) -> str:
        return self.lab.exec(self.vm, "ip", "-6", "neigh", "show", GATEWAY_IP6, "dev", "eth0")

    def gateway6_mac(self) -> str | None:
        out = self.lab.exec(self.vm, "ip", "-j", "-6", "neigh", "show", GATEWAY_IP6, "dev", "eth0")
        entries = json.loads(out or "[]")
        return entries[0].get("lladdr") if entries else None

    def resolve_gateway6(self) -> str:
        """The VM's entry for fe80::1: the RA's source link-layer address made it already
        when the kernel takes the RA (dhclient); otherwise one datagram makes the kernel ask
        (lmdp answers). An entry that exists is left alone: a datagram through a STALE
        entry would make the kernel probe it, unprompted, 5 s later."""
        if self.gateway6_mac() is None:
            send = (
                "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
                f"s.sendto(b'lmdp', ('{GATEWAY_IP6}', 9, 0, socket.if_nametoindex('eth0')))"
            )
            self.lab.exec(self.vm, sys.executable, "-c", send, check=False)
            try:
                wait_for(self.gateway6_mac, 3, 0.05, f"a neighbour entry for {GATEWAY_IP6}")
            except LabError:
                pass
        return self.gateway6_neigh()

    def replies(self) -> dict[str, dict[str, float]]:
        """Per node, the DHCPACKs and DHCPv6 REPLYs it sent (one /metrics read per node)."""
        out = {}
        for node, p in self.lmdp.items():
            text = p.get("/metrics")
            out[node] = {
                t: metric_sum(text, "lmdp_replies_sent_total", type=t) for t in ("DHCPACK", "REPLY")
            }
        return out

    def gateway_neigh(self) -> str:
        """The VM's neighbour entry for its gateway, as `ip neigh` shows it."""
        return self.lab.exec(self.vm, "ip", "neigh", "show", self.gateway_ip, "dev", "eth0")

    def gateway_mac_in_cache(self) -> str | None:
        out = self.lab.exec(self.vm, "ip", "-j", "neigh", "show", self.gateway_ip, "dev", "eth0")
        entries = json.loads(out or "[]")
        return entries[0].get("lladdr") if entries else None

    def gateway_owner(self, mac: str | None) -> str | None:
        """Which node's gateway `mac` is (in link-local mode: every node's)."""
        owners = [node for node, m in self.gateway_macs.items() if m == mac]
        return owners[0] if len(owners) == 1 else None

    def carrier_changes(self) -> int:
        """How often the VM's eth0 lost or regained its carrier so far."""
        return int(self.lab.exec(self.vm, "cat", "/sys/class/net/eth0/carrier_changes"))

    def routes(self) -> str:
        return self.lab.exec(self.vm, "ip", "-4", "route")

    def addresses(self) -> list[str]:
        return ipv4_addresses(self.lab, self.vm)

    def snapshot(self) -> dict[str, str]:
        """The VM's view, as a user would look at it: `ip a`, `ip route`, `ip neigh`; with
        IPv6 also its global address, IPv6 routes and its entry for the IPv6 gateway."""
        views = {
            "ip a": self.lab.exec(self.vm, "ip", "a"),
            "ip route": self.lab.exec(self.vm, "ip", "route"),
            "ip neigh": self.lab.exec(self.vm, "ip", "neigh"),
        }
        if self.dual_stack:
            views |= {
                "ip -6 addr show scope global": self.lab.exec(
                    self.vm, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"
                ),
                "ip -6 route": self.lab.exec(self.vm, "ip", "-6", "route"),
                f"ip -6 neigh show {GATEWAY_IP6}": self.gateway6_neigh(),
            }
        return views

    def resolve_gateway(self) -> str:
        return resolve_gateway(self.lab, self.vm, self.gateway_ip)

    def arrivals(self, node: str, trigger: str) -> float:
        return self.lmdp[node].metric("lmdp_vm_arrivals_total", trigger=trigger)

    def acks(self) -> dict[str, float]:
        return {node: counts["DHCPACK"] for node, counts in self.replies().items()}

    def store_node(self) -> str | None:
        from .stores.sqlite import SqliteLeaseStore

        with SqliteLeaseStore(self.store_path) as store:
            return store.get_node(VM_MAC)

    def fdb(self, node: str) -> str:
        """Where the node's bridge forwards frames for the VM's MAC (empty: it floods)."""
        out = self.lab.exec(self.ns[node], "bridge", "fdb", "show", "br", BRIDGE)
        return "; ".join(line.strip() for line in out.splitlines() if VM_MAC in line)

    def tcp_connection(self) -> tuple | None:
        """(peer address, peer port, VM port) of the stream, if exactly one ever existed."""
        conns = self.vm_status().get("connections", [])
        if len(conns) != 1 or conns[0].get("closed") or conns[0].get("error"):
            return None
        return (*conns[0]["peer"], conns[0]["local"][1])

    def downtime(self, since: float) -> tuple[float | None, bool]:
        """The longest gap between the peer's probe replies that ended after `since` (ms),
        and whether the current gap is still open (then the value is a lower bound)."""
        return _longest_gap(self.peer_status(), since)

    def downtime6(self, since: float) -> tuple[float | None, bool]:
        """The same for the peer's IPv6 probes."""
        return _longest_gap(self.peer6_status(), since)

    def gateway_outage(self, since: float) -> tuple[float | None, bool]:
        """The same for the VM's probes to its gateway, counted from `since` at the
        earliest: a hop's outage is not the one an earlier hop left open."""
        return _longest_gap(self.gw_probe_status(), since, clip=True)

    # -- actions -----------------------------------------------------------------------

    def _move_port(self, src: str, dst: str, up: bool = True) -> None:
        self.lab.ip(self.ns[src], "link", "set", PORT, "netns", self.ns[dst])
        if up:
            self.lab.ip(self.ns[dst], "link", "set", PORT, "master", BRIDGE, "up")

    def _port_up(self, node: str) -> bool:
        out = self.lab.exec(self.ns[node], "ip", "-j", "link", "show", PORT, check=False)
        try:
            return json.loads(out)[0].get("operstate") == "UP"
        except (ValueError, IndexError, KeyError):
            return False

    def send_rarp(self) -> None:
        """QEMU's post-migration self-announce from the VM: RARP op 3, sha = tha = VM MAC."""
        self.lab.exec(self.vm, sys.executable, "-c", _RARP, VM_MAC)

    def announce_args(self, node: str) -> list[str]:
        config = str(self.lab.workdir / f"{node}.yaml")
        return ["announce", "-c", config, "-i", PORT, VM_MAC]

    def announce(self, node: str, mode: str | None = None) -> float:
        """`lmdp announce -c CONFIG -i vm0 MAC` in the node's namespace, as the migration
        controller calls it once the VM runs there; returns its wall time in ms.

        `warm` (the default) runs the command's own code (`cli.main`) in a process of the
        node that imported it beforehand, like a long-running controller; `cold` starts
        the `lmdp` command anew, interpreter start-up and imports included."""
        mode = mode or self.announce_mode
        t0 = time.monotonic()
        while True:
            try:
                if mode == "warm":
                    self.warm[node].run(self.announce_args(node))
                else:
                    self.lab.exec(self.ns[node], sys.executable, "-m", "dataplane.cli",
                                  *self.announce_args(node))  # fmt: skip
                return (time.monotonic() - t0) * 1000
            except LabError as e:
                # lmdp attaches the port when netlink tells it the port appeared; a call
                # that comes first is refused, and a controller asks again.
                if "not attached" not in str(e) or time.monotonic() - t0 > 1:
                    raise
                self.announce_retries += 1
                time.sleep(0.005)

    def migrate(
        self,
        target: str,
        *,
        announce: bool = True,
        rarp: bool = False,
        fail: bool = False,
        bound: float = 2.0,
        fail_wait: float = 1.0,
    ) -> HopResult:
        """Move the VM's port to `target` (or, with `fail`, let the move fail and roll back
        to the source), then renew the lease and check the stream. `announce`: the
        controller calls `lmdp announce` on the target; `rarp`: the VM sends QEMU's
        self-announce RARP once its port is up (a VM that is not silent). Never raises for
        a check that fails: the result says what happened."""
        self.hops += 1
        source = self.vm_node
        r = HopResult(self.hops, source, target, served_by=source if fail else target)
        routes_before, conn_before = self.routes(), self.tcp_connection()
        bytes_before = self.vm_status().get("bytes", 0)
        carrier_before = self.carrier_changes()
        if self.subnet_mode:
            r.gw_neigh_before = self.gateway_neigh()
            r.gw_mac_before = self.gateway_mac_in_cache()
        t0 = r.t_start = time.monotonic()
        if fail:
            # The port leaves the source but never comes up on the target (left down and
            # outside its bridge); the orchestrator gives up and puts it back on the source.
            self._move_port(source, target, up=False)
            deadline = time.monotonic() + fail_wait
            while time.monotonic() < deadline and not self._port_up(target):
                time.sleep(0.05)
            r.moved = self._port_up(target)
            self._move_port(target, source)
        else:
            self._move_port(source, target)
            r.moved = True
        t_moved = r.t_moved = time.monotonic()
        r.move_ms = (t_moved - t0) * 1000
        self.vm_node = r.served_by
        if rarp:
            self.send_rarp()
        if announce and not fail:
            try:
                r.announce_ms = self.announce(target)
            except LabError as e:
                r.errors.append(f"announce: {e}")

        def resumed(st: dict) -> bool:
            return (st.get("last_reply") or 0) > t_moved and any(
                end > t_moved for _, end, _ in st.get("gaps", [])
            )

        def replies_resumed() -> bool:
            return (
                resumed(self.peer_status())
                and (not self.subnet_mode or resumed(self.gw_probe_status()))
                and (not self.dual_stack or resumed(self.peer6_status()))
            )

        try:
            wait_for(replies_resumed, bound, 0.02, "probe replies")
        except LabError:
            pass
        r.t_resumed = time.monotonic()
        r.downtime_ms, r.downtime_open = self.downtime(t0)
        if self.dual_stack:
            r.downtime6_ms, r.downtime6_open = self.downtime6(t0)
            r.gw6_neigh_after = self.gateway6_neigh()
            r.gw6_mac_after = self.gateway6_mac()
        if r.downtime_open:
            r.fdb = self.fdb(r.served_by)
        if self.subnet_mode:
            r.gw_outage_ms, r.gw_outage_open = self.gateway_outage(t0)
            r.gw_neigh_after = self.gateway_neigh()
            r.gw_mac_after = self.gateway_mac_in_cache()
        r.store_node_before_renew = self.store_node()
        # The renew: a real DHCP client asks again; the node now serving must ACK it.
        # (Counted from here: lmdp forgets a port's counters when the port leaves it.)
        before = self.replies()
        try:
            assert self.client is not None
            self.client.renew()
        except LabError as e:
            r.errors.append(f"renew: {e}")
        r.addresses = self.addresses()
        after = None
        if self.dual_stack:
            try:
                after = self.renew6(before)
            except LabError as e:
                r.errors.append(f"IPv6 renew: {e}")
            r.addresses6, r.routes6 = self.addresses6(), self.routes6()
        after = after or self.replies()
        r.renew_nodes = [n for n in self.node_names if after[n]["DHCPACK"] > before[n]["DHCPACK"]]
        r.renew6_nodes = [n for n in self.node_names if after[n]["REPLY"] > before[n]["REPLY"]]
        r.routes_same = self.routes() == routes_before
        # The same stream, still flowing: new bytes after the hop on the one connection.
        flowing_from = self.vm_status().get("bytes", 0)
        try:
            wait_for(
                lambda: self.vm_status().get("bytes", 0) > flowing_from + 16 * 1024,
                5,
                0.05,
                "the stream to flow after the hop",
            )
        except LabError as e:
            r.errors.append(str(e))
        conn_after = self.tcp_connection()
        r.tcp_bytes = self.vm_status().get("bytes", 0) - bytes_before
        r.tcp_same = (
            conn_before is not None
            and conn_after == conn_before
            and "error" not in self.peer_status().get("tcp", {})
            and self.vm_status().get("bytes", 0) > flowing_from
        )
        r.store_node = self.store_node()
        r.carrier_changes = self.carrier_changes() - carrier_before
        if self.dual_stack:
            r.t_end = time.monotonic()
            r.vm_spoke = [
                what for t, what, unprompted in self.vm_frames()
                if unprompted and r.t_start <= t <= r.t_resumed
            ]  # fmt: skip
            r.peer_heard = [
                ((t - t_moved) * 1000, what)
                for t, what, _ in self.peer_frames()
                if r.t_start <= t <= r.t_resumed
            ]
        return r

    def renew6(
        self, before: dict[str, dict[str, float]], attempts: int = 3, wait: float = 1.5
    ) -> dict[str, dict[str, float]]:
        """The DHCPv6 client asks again (Dhcp6Client.renew) until a node's REPLYs rise above
        `before` (a `replies()`); returns the `replies()` that showed it. dhcpcd may lose the
        signal behind `dhcpcd -N`: it is asked again (dhclient -6 returns once answered)."""
        assert self.client6 is not None
        last: dict[str, dict[str, float]] = {}

        def answered() -> bool:
            last.update(self.replies())
            return any(last[n]["REPLY"] > before[n]["REPLY"] for n in self.node_names)

        tries = attempts if self.client_kind == "dhcpcd" else 1
        for attempt in range(tries):
            self.client6.renew()
            try:
                wait_for(answered, wait, 0.02, "a DHCPv6 REPLY")
                return last
            except LabError:
                if attempt == tries - 1:
                    raise
        return last


# -- the demo ---------------------------------------------------------------------------------


def _section(title: str, body: str) -> None:
    print(f"\n== {title}")
    print(body.rstrip() or "(empty)")


def _renew_text(h: HopResult) -> str:
    if h.renew_nodes:
        return f"ACK by {','.join(h.renew_nodes)}, {' '.join(h.addresses)}"
    return f"no ACK, {' '.join(h.addresses) or 'no address'}"


def _renew6_text(h: HopResult) -> str:
    if h.renew6_nodes:
        return f"REPLY by {','.join(h.renew6_nodes)}, {' '.join(h.addresses6)}"
    return f"no REPLY, {' '.join(h.addresses6) or 'no address'}"


def _gateway_text(h: HopResult, gateway_macs: dict[str, str]) -> str:
    """The VM's gateway MAC after the hop, and whose it is."""
    owners = [n for n, m in gateway_macs.items() if m == h.gw_mac_after]
    if h.gw_mac_after is None:
        return "no entry"
    return f"{h.gw_mac_after} ({owners[0]}'s)" if len(owners) == 1 else h.gw_mac_after


def _stale_note(h: HopResult, gateway_macs: dict[str, str]) -> str:
    owners = [n for n, m in gateway_macs.items() if m == h.gw_mac_after]
    if h.gw_outage_open and owners and owners[0] != h.served_by:
        return f" (stale neighbour entry still points at {owners[0]}'s gateway)"
    return ""


def hop_table(
    hops: list[HopResult], gateway_macs: dict[str, str] | None = None, ipv6: bool = False
) -> str:
    """One row per hop; with `gateway_macs` (router mode subnet) the VM's gateway entry and
    its outage toward the gateway come first; with `ipv6` (--dual-stack) the peer's IPv6
    downtime follows the IPv4 one, and the DHCPv6 renew the DHCPv4 one."""
    if gateway_macs is None:
        head = ["hop", "node", "TCP same conn", "KiB in hop", "downtime ms"]
    else:
        head = ["hop", "node", "VM's gateway MAC after", "VM->gateway outage ms", "peer->VM ms"]
    head += ["IPv6 ms"] if ipv6 else []
    head += ["TCP same conn"] if gateway_macs is not None else []
    head += ["renew", "IPv6 renew"] if ipv6 else ["renew"]
    rows = [tuple(head)]
    for h in hops:
        arrow = f"{h.source} -> {h.target}" + (" (failed)" if h.served_by == h.source else "")
        tcp = "yes" if h.tcp_same else "NO"
        v6 = [h.downtime6_text()] if ipv6 else []
        if gateway_macs is None:
            row = [tcp, f"{h.tcp_bytes / 1024:.0f}", h.downtime_text(), *v6]
        else:
            row = [_gateway_text(h, gateway_macs), h.gw_outage_text(), h.downtime_text(), *v6,
                   tcp]  # fmt: skip
        row += [_renew_text(h)] + ([_renew6_text(h)] if ipv6 else [])
        rows.append((str(h.hop), arrow, *row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def hop_checks(
    h: HopResult,
    announcing: bool,
    gateway_macs: dict[str, str] | None = None,
    ipv6: bool = False,
) -> list[tuple[str, bool, str]]:
    """What must hold after a hop; `gateway_macs`: router mode subnet, one MAC per node;
    `ipv6`: --dual-stack."""
    label = f"hop {h.hop} {h.source} -> {h.target}"
    announced = announcing and h.served_by == h.target
    checks = [
        (f"{label}: same TCP connection, still flowing", h.tcp_same, f"{h.tcp_bytes} B"),
        (
            f"{label}: renew ACKed by {h.served_by} only",
            h.renewed_by_served_node,
            ",".join(h.renew_nodes) or "no ACK",
        ),
        (f"{label}: address {VM_IP}/24", h.addresses == [f"{VM_IP}/24"], " ".join(h.addresses)),
        (f"{label}: routes unchanged", h.routes_same, ""),
        (
            f"{label}: the VM's link stayed up",
            h.carrier_changes == 0,
            f"{h.carrier_changes} carrier changes" if h.carrier_changes else "",
        ),
    ]
    if announced:
        checks.append(
            (
                f"{label}: downtime <= {DOWNTIME_LIMIT_MS:.0f} ms",
                h.downtime_ms is not None
                and not h.downtime_open
                and h.downtime_ms <= DOWNTIME_LIMIT_MS,
                f"{h.downtime_text()} ms"
                + (f"; {h.served_by} br-vm: {h.fdb or 'no entry'}" if h.downtime_open else ""),
            )
        )
    if gateway_macs is not None:
        served_mac = gateway_macs[h.served_by]
        if announced:
            checks += [
                (
                    f"{label}: the VM's gateway entry is {h.served_by}'s ({served_mac})",
                    h.gw_mac_after == served_mac,
                    h.gw_neigh_after.strip(),
                ),
                (
                    f"{label}: VM -> gateway outage <= {DOWNTIME_LIMIT_MS:.0f} ms",
                    h.gw_outage_ms is not None
                    and not h.gw_outage_open
                    and h.gw_outage_ms <= DOWNTIME_LIMIT_MS,
                    f"{h.gw_outage_text()} ms",
                ),
            ]
        elif h.gw_mac_after != served_mac:
            # The lab's per-node routers: another node's gateway MAC must not work here.
            checks.append(
                (
                    f"{label}: the stale gateway entry black-holes the VM's routed traffic",
                    h.gw_outage_open,
                    f"{_gateway_text(h, gateway_macs)}, outage {h.gw_outage_text()} ms",
                )
            )
    if ipv6:
        checks += ipv6_hop_checks(h, label, announced, gateway_macs)
    if h.errors:
        checks.append((f"{label}: no errors", False, "; ".join(h.errors)))
    return checks


def ipv6_hop_checks(
    h: HopResult, label: str, announced: bool, gateway_macs: dict[str, str] | None
) -> list[tuple[str, bool, str]]:
    """--dual-stack: the VM's IPv6 after the hop, the peer's IPv6 probes, and the VM's
    silence while it was cut off (anything it sent then could have re-taught the fabric
    before lmdp's announcement did)."""
    checks = [
        (
            f"{label}: IPv6 {VM_IP6}/128, the only global address",
            h.addresses6 == [f"{VM_IP6}/128"],
            " ".join(h.addresses6) or "none",
        ),
        (
            f"{label}: IPv6 default via {GATEWAY_IP6}",
            h.routes6 == [f"{GATEWAY_IP6} eth0"],
            "; ".join(h.routes6) or "none",
        ),
        (
            f"{label}: IPv6 renew answered by {h.served_by} only",
            h.renew6_nodes == [h.served_by],
            ",".join(h.renew6_nodes) or "no REPLY",
        ),
    ]
    # Router mode subnet without the target's NA for fe80::1, the entry keeps the source's.
    if gateway_macs is None or announced:
        mac = GATEWAY_MAC if gateway_macs is None else gateway_macs[h.served_by]
        owner = f"{h.served_by}'s " if gateway_macs is not None else ""
        checks.append(
            (
                f"{label}: the VM's {GATEWAY_IP6} entry is {owner}{mac}",
                h.gw6_mac_after == mac,
                h.gw6_neigh_after.strip() or "no entry",
            )
        )
    if announced:
        na = [ms for ms, what in h.peer_heard if what == f"unsolicited NA {VM_IP6}"]
        checks += [
            (
                f"{label}: IPv6 downtime <= {DOWNTIME_LIMIT_MS:.0f} ms",
                h.downtime6_ms is not None
                and not h.downtime6_open
                and h.downtime6_ms <= DOWNTIME_LIMIT_MS,
                f"{h.downtime6_text()} ms",
            ),
            (
                f"{label}: the peer got {h.served_by}'s unsolicited NA for {VM_IP6}",
                bool(na),
                f"{na[0]:.0f} ms after the move" if na else "none",
            ),
        ]
    # Router mode subnet: the VM's 1 ms UDP probes to its gateway are its own, by design.
    but = " but its gateway probes" if gateway_macs is not None else ""
    checks.append(
        (
            f"{label}: the VM sent nothing{but} on its own while cut off",
            not h.vm_spoke,
            ", ".join(h.vm_spoke),
        )
    )
    return checks


def pick_client(client: str) -> str:
    if client == "auto":
        return next((c for c in ("dhclient", "dhcpcd") if client_available(c)), "")
    return client if client_available(client) else ""


def _heard_text(h: HopResult) -> str:
    """What first reached the peer from the VM's MAC after the move (lmdp's round 0)."""
    if not h.peer_heard:
        return "the peer heard nothing from the VM's MAC while it was cut off"
    first = h.peer_heard[0][0]
    frames = [what for ms, what in h.peer_heard if ms - first < 5]
    return f"the peer heard {', '.join(frames)} {first:.0f} ms after the move"


def _print_hop(ml: MigrationLab, h: HopResult) -> None:
    how = (
        f"renew ACK by {','.join(h.renew_nodes) or 'nobody'} (port moved in {h.move_ms:.0f} ms"
        + (f", lmdp announce took {h.announce_ms:.0f} ms)" if h.announce_ms else ")")
    )
    if not ml.subnet_mode:
        print(f"hop {h.hop}: {h.source} -> {h.target}: downtime {h.downtime_text()} ms, {how}")
    else:
        print(f"hop {h.hop}: {h.source} -> {h.target}")
        for when, neigh, mac in (
            ("before", h.gw_neigh_before, h.gw_mac_before),
            ("after: ", h.gw_neigh_after, h.gw_mac_after),
        ):
            owner = ml.gateway_owner(mac)
            print(
                f"  VM's ip neigh {when} {neigh.strip() or '(none)'}"
                + (f"  ({owner}'s gateway)" if owner else "")
            )
        print(
            f"  VM -> gateway outage {h.gw_outage_text()} ms{_stale_note(h, ml.gateway_macs)}; "
            f"peer -> VM downtime {h.downtime_text()} ms; {how}"
        )
    if ml.dual_stack:
        owner = ml.gateway_owner(h.gw6_mac_after) if ml.subnet_mode else None
        spoke = ", ".join(h.vm_spoke) if h.vm_spoke else "nothing"
        print(
            f"  IPv6: downtime {h.downtime6_text()} ms, "
            f"{RENEW6_MESSAGE[ml.client_kind]} answered by "
            f"{','.join(h.renew6_nodes) or 'nobody'}; {' '.join(h.addresses6) or 'no address'}, "
            f"{'; '.join(h.routes6) and 'default via ' + '; '.join(h.routes6) or 'no default'}"
            f"; {GATEWAY_IP6} at {h.gw6_mac_after or '?'}"
            + (f" ({owner}'s)" if owner else "")
            + f"\n  {_heard_text(h)}; the VM sent {spoke}"
            + (" but its gateway probes" if ml.subnet_mode else "")
            + " on its own while cut off"
        )


def noise_report(ml: MigrationLab, hops: list[HopResult]) -> str:
    """What the VM sent unprompted (other than TCP and UDP), by phase of the demo."""
    phases: list[tuple[str, float, float]] = []
    if hops:
        phases.append(("setting up (before hop 1)", float("-inf"), hops[0].t_start))
    for h in hops:
        phases += [
            (f"hop {h.hop}, while cut off", h.t_start, h.t_resumed),
            (f"hop {h.hop}, after (the renews)", h.t_resumed, h.t_end),
        ]
    if hops:
        phases.append(("after the hops", hops[-1].t_end, float("inf")))
    lines = []
    frames = [(t, what) for t, what, unprompted in ml.vm_frames() if unprompted]
    for name, start, end in phases:
        counts: dict[str, int] = {}
        for t, what in frames:
            if start <= t < end or (end == float("inf") and t >= start):
                counts[what] = counts.get(what, 0) + 1
        text = ", ".join(f"{w} x{n}" if n > 1 else w for w, n in counts.items())
        lines.append(f"{name + ':':34} {text or 'nothing'}")
    return "\n".join(lines)


DUAL_STACK_NOTE = f"""\
IPv6 is on in the VM (eth0 only) and at the peer (br0 only); nodes and wire bridge it. The
VM has no DAD (accept_dad 0) and takes lmdp's RA; it sends router solicitations until that
RA comes, and MLD reports only when it joins a group (for its link-local address, then for
its DHCPv6 one), repeated ~10 ms apart instead of up to 1 s so that all are out before hop
1; nothing queries, so none follows. Its echo replies carry MSG_CONFIRM, so it never probes
the peer's neighbour entry on its own. It reaches the peer by an on-link route (the lab's:
{PEER_IP6} dev eth0) and never through fe80::1, whose entry the RA made. Each renew
makes the client or its script send more (MLD reports once the address is set again;
dhcpcd also an unsolicited NA and a gratuitous ARP for its addresses, at times an RS), but
only once the traffic is back. The fabric is one L2 segment and the VM keeps its MAC: the first
of lmdp's announcement frames, ARP or NA, re-teaches it for both families."""


def run_migration_demo(
    client: str = "auto",
    keep: bool = False,
    hops: int = 3,
    announce: bool = True,
    router_mode: str = "link-local",
    dual_stack: bool = False,
) -> int:
    if os.geteuid() != 0:
        print("lmdp: the lab needs root (network namespaces)", file=sys.stderr)
        return 1
    kind = pick_client(client)
    if kind not in ("dhclient", "dhcpcd"):
        print(
            f"lmdp: the migration demo needs dhclient or dhcpcd ({client} not usable)",
            file=sys.stderr,
        )
        return 1
    started = time.monotonic()
    checks: list[tuple[str, bool, str]] = []
    results: list[HopResult] = []
    lab = Lab()
    try:
        ml = MigrationLab(
            lab,
            client=kind,
            announce_rounds_ms=None if announce else [],
            router_mode=router_mode,
            dual_stack=dual_stack,
        )
        subnet = ml.subnet_mode
        macs = ml.gateway_macs if subnet else None
        ml.build()
        gateways = (
            f"gateway {SUBNET_GATEWAY_IP} at "
            + " / ".join(f"{mac} on {n}" for n, mac in ml.gateway_macs.items())
            if subnet
            else f"gateway {GATEWAY_IP} at {GATEWAY_MAC} everywhere"
        )
        print(
            f"lab {lab.prefix}: fabric (peer {PEER_IP}"
            + (f", {PEER_IP6}" if dual_stack else "")
            + f"), {', '.join(NODES)} (br-vm, lmdp on "
            f"{PORT}), VM {VM_NAME} {VM_MAC} on {ml.vm_node}; router mode {router_mode}, "
            f"{gateways}"
            + (f" (IPv6: {GATEWAY_IP6}, RAs on)" if dual_stack else "")
            + "; announcements "
            + (f"at {ml.rounds} ms" if announce else "off")
        )
        ml.start_lmdp()
        ml.start_client()
        ml.start_traffic()
        ml.resolve_gateway()
        if dual_stack:
            ml.resolve_gateway6()
        before = ml.snapshot()
        conn = ml.tcp_connection()
        v6 = f" and {' '.join(ml.addresses6())}" if dual_stack else ""
        print(
            f"{kind} bound {' '.join(ml.addresses())}{v6} on {ml.vm_node}; TCP stream "
            f"{PEER_IP}:{conn[1] if conn else '?'} -> {VM_IP}:{conn[2] if conn else '?'} "
            f"and 1 ms UDP probes{' (IPv4 and IPv6)' if dual_stack else ''} running"
            + (f", and the VM probes its gateway {SUBNET_GATEWAY_IP} every 1 ms" if subnet else "")
            + f"; after each hop the client renews ({RENEW_STATE[kind]} REQUEST"
            + (f"; DHCPv6 {RENEW6_MESSAGE[kind]}" if dual_stack else "")
            + ")"
        )
        for title, body in before.items():
            _section(f"{title} (VM, before)", body)
        print(f"({PEER_IP} ... quickack 1 is the lab's: no delayed ACK may speak for the VM)")
        if dual_stack:
            print(f"({PEER_IP6} dev eth0 is the lab's: the peer is on-link for the VM)")
        route = [NODES[(i + 1) % len(NODES)] for i in range(hops)]
        # With announcements off in subnet mode the stale entry lasts tens of seconds.
        bound = STALE_GATEWAY_BOUND if subnet and not announce else 2.0
        print()
        for target in route:
            h = ml.migrate(target, bound=bound)
            results.append(h)
            _print_hop(ml, h)
            checks += hop_checks(h, ml.announcing, macs, ipv6=dual_stack)
        neigh = ml.resolve_gateway()
        after = ml.snapshot()
        for title, body in after.items():
            _section(f"{title} (VM, after {hops} hops)", body)
        _section("hops", hop_table(results, macs, ipv6=dual_stack))
        checks += [
            (
                "address and routes as before",
                before["ip route"] == after["ip route"] and ml.addresses() == [f"{VM_IP}/24"],
                "",
            ),
            ("one TCP connection throughout", ml.tcp_connection() == conn, ""),
        ]
        if announce:
            mac = ml.gateway_macs[ml.vm_node]
            checks.append(
                (
                    f"neighbour {ml.gateway_ip} is {mac}"
                    + (f" ({ml.vm_node}'s gateway)" if subnet else ""),
                    f"lladdr {mac}" in neigh,
                    neigh.strip(),
                )
            )
        if dual_stack:
            checks.append(
                (
                    f"IPv6 {VM_IP6}/128 and default via {GATEWAY_IP6} as before",
                    ml.addresses6() == [f"{VM_IP6}/128"]
                    and ml.routes6() == [f"{GATEWAY_IP6} eth0"],
                    "",
                )
            )
            if announce or not subnet:
                mac = ml.gateway_macs[ml.vm_node]
                checks.append(
                    (
                        f"neighbour {GATEWAY_IP6} is {mac}"
                        + (f" ({ml.vm_node}'s gateway)" if subnet else ""),
                        ml.gateway6_mac() == mac,
                        ml.gateway6_neigh().strip(),
                    )
                )
            _section(
                "what the VM sent on its own (all but TCP and UDP, seen on its wire)",
                noise_report(ml, results),
            )
            print(DUAL_STACK_NOTE)
        # What the hops' warm `lmdp announce` calls did not pay: the command's start-up.
        cold = ml.announce(ml.vm_node, mode="cold")
        print(
            f"\nlmdp announce was called from a process that had imported lmdp already "
            f"({', '.join(f'{h.announce_ms:.0f}' for h in results if h.announce_ms)} ms); "
            f"a fresh `lmdp announce` takes {cold:.0f} ms, which a silent VM's downtime "
            "would include."
        )
        if not subnet:
            print(
                "Router mode subnet with a gateway MAC per node (current OVN-Kubernetes), "
                "where the gateway announcement ends the stale-neighbour outage: "
                "`lmdp lab demo --router-mode subnet [--no-announce]`."
            )
        elif announce:
            print(
                f"Each hop's gratuitous ARP for {SUBNET_GATEWAY_IP} from the target's lmdp "
                "replaced the VM's gateway entry at once. With --no-announce the entry keeps "
                "the source node's MAC, which no other node answers."
            )
        else:
            print(
                f"Without announcements the VM kept the source node's MAC for "
                f"{SUBNET_GATEWAY_IP}, which no other node answers; Linux gives the entry up "
                "only after its neighbour timers run (STALE after 15-45 s, DELAY 5 s, 3 "
                "unicast probes, then a broadcast request): the outage reported against "
                f"OVN-Kubernetes. The lab stopped waiting after {STALE_GATEWAY_BOUND:.0f} s."
            )
        ml.stop_traffic()
    except (LabError, subprocess.SubprocessError, OSError) as e:
        print(f"lmdp: demo failed: {e}", file=sys.stderr)
        checks.append(("demo ran", False, str(e)))
    finally:
        if keep:
            lab.stop_processes()
            print(f"namespaces kept: {' '.join(lab.namespaces)}; files in {lab.workdir}")
        else:
            lab.teardown()
    print("\n== checks")
    for what, ok, detail in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}{'  (' + detail + ')' if detail else ''}")
    print(f"\n{time.monotonic() - started:.1f}s")
    return 0 if checks and all(ok for _, ok, _ in checks) else 1
