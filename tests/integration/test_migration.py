"""Live migration in the namespace lab: a VM with a real DHCP client and a live TCP stream
moves between three nodes, each with its own lmdp, all sharing one SQLite store.

The VM is silent (no IPv6, no delayed ACKs, and no RARP unless a test sends QEMU's): after
a move, only lmdp's announcement (triggered by `lmdp announce`, as a migration controller
calls it) or the VM's next DHCP request tells the network where it went. Downtime is the
longest gap between replies to the peer's 1 ms UDP probes. The VM's own link never goes
down: only its tap (`vm0`) moves between the nodes.

Router mode subnet (current OVN-Kubernetes) gives every node its own gateway MAC for
10.244.2.1 and a gateway that only its own node reaches; the VM probes it every 1 ms, and
its outage is the longest gap between those replies.

Dual stack: the VM also holds an IPv6 address from DHCPv6 and its default route from lmdp's
RA; IPv6 is on for the VM and the peer only, and watchers check that the VM stays silent
while it is cut off and that the peer gets the target's unsolicited NA.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dataplane.labmigration import (
    DOWNTIME_LIMIT_MS,
    GATEWAY_IP,
    GATEWAY_IP6,
    GATEWAY_MAC,
    SUBNET_GATEWAY_IP,
    VM_IP,
    VM_IP6,
    MigrationLab,
)

from .conftest import require

# With announcements off nothing restores the path until the VM speaks; stop waiting here.
SILENT_BOUND = 2.0
# ... and in router mode subnet nothing corrects the VM's gateway entry for tens of seconds.
STALE_BOUND = 1.5


@pytest.fixture
def migration_lab(lab):
    labs: list[MigrationLab] = []

    def make(**kwargs) -> MigrationLab:
        require("dhclient", "bridge")
        ml = MigrationLab(lab, client="dhclient", **kwargs).build()
        labs.append(ml)
        ml.start_lmdp()
        ml.start_client()
        ml.start_traffic()
        return ml

    yield make
    # pytest shows captured output only for failing tests: there, the daemons' logs help.
    for ml in labs:
        for node, p in ml.lmdp.items():
            print(f"--- lmdp log ({node})\n{p.log()}")


def test_three_hops_keep_address_routes_and_tcp_connection(migration_lab):
    ml = migration_lab()
    routes = ml.routes()
    assert f"default via {GATEWAY_IP} dev eth0" in routes
    assert ml.addresses() == [f"{VM_IP}/24"]
    conn = ml.tcp_connection()
    assert conn is not None
    assert ml.store_node() == "node-a"
    for target in ("node-b", "node-c", "node-a"):
        h = ml.migrate(target)
        assert not h.errors, h
        assert h.tcp_same, f"hop {h.hop}: the TCP stream broke or stalled: {ml.vm_status()}"
        assert h.renew_nodes == [target], f"hop {h.hop}: renew ACKed by {h.renew_nodes}"
        assert h.addresses == [f"{VM_IP}/24"]
        assert h.routes_same
        assert h.store_node == target
        assert h.carrier_changes == 0, "the VM's own link went down: only its tap moves"
        assert not h.downtime_open and h.downtime_ms <= DOWNTIME_LIMIT_MS, (
            f"hop {h.hop} {h.source} -> {target}: downtime {h.downtime_text()} ms; "
            f"{target}'s bridge forwards the VM's MAC to: {h.fdb or 'nowhere (floods)'}"
        )
    assert ml.tcp_connection() == conn  # one connection, never re-established
    assert ml.routes() == routes
    assert "error" not in ml.peer_status()["tcp"]


def test_without_announcements_downtime_is_clearly_longer(migration_lab):
    ml = migration_lab(announce_rounds_ms=[])
    h = ml.migrate("node-b", bound=SILENT_BOUND)
    # Nothing told the fabric: the path stayed dead until the VM's own renew.
    assert h.downtime_ms >= 10 * DOWNTIME_LIMIT_MS, h
    assert h.renew_nodes == ["node-b"]
    assert h.addresses == [f"{VM_IP}/24"]
    assert h.tcp_same, f"the TCP stream did not survive the long outage: {ml.vm_status()}"


def test_qemu_rarp_after_a_move_is_an_arrival(migration_lab):
    """A VM that is not silent: its RARP alone, with no `lmdp announce`, moves it."""
    ml = migration_lab()
    h = ml.migrate("node-b", announce=False, rarp=True)
    assert h.store_node_before_renew == "node-b"  # the RARP, not the renew, moved it
    assert ml.arrivals("node-b", "frame") == 1
    assert ml.arrivals("node-b", "announce") == 0
    assert not h.downtime_open and h.downtime_ms <= DOWNTIME_LIMIT_MS, h
    assert h.renew_nodes == ["node-b"] and h.tcp_same and not h.errors


def test_failed_migration_leaves_vm_served_by_source(migration_lab):
    ml = migration_lab()
    conn = ml.tcp_connection()
    # The port leaves node-a but never comes up on node-b; it is put back on node-a.
    h = ml.migrate("node-b", fail=True)
    assert not h.moved and h.served_by == "node-a"
    assert not h.errors, h
    assert not h.downtime_open, f"traffic did not come back on the source: {h}"
    assert h.renew_nodes == ["node-a"], f"renew ACKed by {h.renew_nodes}"
    assert h.addresses == [f"{VM_IP}/24"] and h.routes_same
    assert h.store_node == "node-a"
    assert ml.arrivals("node-b", "frame") == ml.arrivals("node-b", "announce") == 0
    assert h.tcp_same and ml.tcp_connection() == conn
    # Nothing was left behind on node-b: a real migration there still works.
    h = ml.migrate("node-b")
    assert h.renew_nodes == ["node-b"] and h.tcp_same and h.store_node == "node-b"


def test_subnet_mode_gateway_announcement_corrects_the_vms_gateway_entry(migration_lab):
    ml = migration_lab(router_mode="subnet")
    macs = ml.gateway_macs
    assert f"default via {SUBNET_GATEWAY_IP} dev eth0" in ml.routes()
    # The VM learnt node-a's gateway MAC from lmdp's ARP proxy (the gateway never answers).
    assert ml.gateway_mac_in_cache() == macs["node-a"]
    assert ml.lmdp["node-a"].metric("lmdp_replies_sent_total", type="arp_reply") >= 1
    for target in ("node-b", "node-c"):
        h = ml.migrate(target)
        assert h.gw_mac_before != macs[target]
        assert h.gw_mac_after == macs[target], f"hop {h.hop}: {h.gw_neigh_after}"
        assert not h.gw_outage_open and h.gw_outage_ms <= DOWNTIME_LIMIT_MS, (
            f"hop {h.hop} to {target}: VM -> gateway outage {h.gw_outage_text()} ms"
        )
        assert h.carrier_changes == 0
        assert h.renew_nodes == [target] and h.tcp_same and not h.errors, h
        assert h.routes_same


def test_subnet_mode_without_announcements_the_stale_gateway_entry_black_holes(migration_lab):
    """The outage reported against OVN-Kubernetes: the VM keeps node-a's gateway MAC, which
    node-b does not answer, until the kernel gives the entry up (long after we stop)."""
    ml = migration_lab(router_mode="subnet", announce_rounds_ms=[])
    h = ml.migrate("node-b", bound=STALE_BOUND)
    assert h.gw_mac_after == ml.gateway_macs["node-a"], h.gw_neigh_after
    assert h.gw_outage_open and h.gw_outage_ms >= 1000, h
    assert ml.lmdp["node-b"].metric("lmdp_announce_rounds_total") == 0
    # Everything else survives the hop: the address, the lease renewal, the peer's stream.
    assert h.renew_nodes == ["node-b"] and h.addresses == [f"{VM_IP}/24"]
    assert h.tcp_same and h.carrier_changes == 0


def test_dual_stack_vm_keeps_its_ipv6_address_and_default_route(migration_lab):
    """dhclient -4 and -6 with lmdp's RAs: one global IPv6 address (the binding's, from
    DHCPv6) and `default via fe80::1` before and after each hop; the DHCPv6 CONFIRM after a
    hop is answered by the target only; the peer's IPv6 probes are back within the limit,
    having got the target's unsolicited NA for the VM; the VM said nothing while cut off."""
    ml = migration_lab(dual_stack=True)
    assert ml.addresses6() == [f"{VM_IP6}/128"]
    assert ml.routes6() == [f"{GATEWAY_IP6} eth0"]
    assert ml.gateway6_mac() == GATEWAY_MAC  # made by the RA's source link-layer address
    for target in ("node-b", "node-c"):
        h = ml.migrate(target)
        assert not h.errors, h
        assert h.addresses6 == [f"{VM_IP6}/128"] and h.routes6 == [f"{GATEWAY_IP6} eth0"], h
        assert h.renew6_nodes == [target], f"hop {h.hop}: DHCPv6 REPLY by {h.renew6_nodes}"
        assert h.renew_nodes == [target] and h.addresses == [f"{VM_IP}/24"] and h.tcp_same
        assert h.gw6_mac_after == GATEWAY_MAC, h.gw6_neigh_after
        assert h.vm_spoke == [], f"hop {h.hop}: the VM spoke while cut off: {h.vm_spoke}"
        assert f"unsolicited NA {VM_IP6}" in [what for _, what in h.peer_heard], h.peer_heard
        for family, ms, still_open in (
            ("IPv4", h.downtime_ms, h.downtime_open),
            ("IPv6", h.downtime6_ms, h.downtime6_open),
        ):
            assert not still_open and ms <= DOWNTIME_LIMIT_MS, (
                f"hop {h.hop} to {target}: {family} downtime {ms} ms"
            )
    assert ml.addresses6() == [f"{VM_IP6}/128"] and ml.routes6() == [f"{GATEWAY_IP6} eth0"]


def lmdp(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dataplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_lab_demo_migrates_reports_and_tears_down():
    require("dhclient", "bridge")
    p = lmdp("lab", "demo", "--hops", "1")
    prefix = re.search(r"^lab (\S+):", p.stdout, re.M)
    assert prefix, p.stdout + p.stderr
    for section in ("ip a (VM, before)", "ip route (VM, before)", "ip neigh (VM, before)",
                    "ip neigh (VM, after 1 hops)", "hops", "checks"):  # fmt: skip
        assert f"== {section}\n" in p.stdout
    assert re.search(r"^1 +node-a -> node-b +yes ", p.stdout, re.M), p.stdout
    assert p.returncode == 0, p.stdout + p.stderr
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix.group(1) not in left


def test_lab_demo_subnet_mode_reports_the_gateway_entry_per_hop():
    require("dhclient", "bridge")
    p = lmdp("lab", "demo", "--router-mode", "subnet", "--hops", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    # Before and after the hop, the VM's entry for the router names node-a's then node-b's.
    assert re.search(r"before 10\.244\.2\.1 .*lladdr 0a:58:0a:f4:02:0a .*\(node-a's", p.stdout)
    assert re.search(r"after: +10\.244\.2\.1 .*lladdr 0a:58:0a:f4:02:0b .*\(node-b's", p.stdout)
    row = re.search(r"^1 +node-a -> node-b +0a:58:0a:f4:02:0b \(node-b's\) +(\d+) ", p.stdout, re.M)
    assert row and int(row.group(1)) <= DOWNTIME_LIMIT_MS, p.stdout


def test_lab_demo_usage_errors_are_one_line():
    p = lmdp("lab", "demo", "--client", "udhcpc")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "dhclient or dhcpcd" in p.stderr
    assert lmdp("lab", "demo", "--hops", "0").returncode == 2
    p = lmdp("lab", "demo", "--simple", "--router-mode", "subnet")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    p = lmdp("lab", "demo", "--simple", "--dual-stack", "--client", "udhcpc")
    assert p.returncode == 2 and "DHCPv6" in p.stderr and p.stderr.strip().count("\n") == 0
