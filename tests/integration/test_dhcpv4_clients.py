"""Real DHCP clients (ISC dhclient, dhcpcd, busybox udhcpc) against lmdp in namespaces."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import dpkt
import pytest

from dataplane.lab import VmClient, effective_mtu, ipv4_addresses, wait_for

from .conftest import GATEWAY_MAC, OTHER_IP, VM_IP, VM_MAC, require, tcpdump

MSG_NAMES = {
    1: "DISCOVER",
    2: "OFFER",
    3: "REQUEST",
    4: "DECLINE",
    5: "ACK",
    6: "NAK",
    7: "RELEASE",
}


def dhcp_messages(path: Path) -> list[dict]:
    """The DHCP messages in a capture, decoded by dpkt (an independent decoder)."""
    out = []
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            d = dpkt.dhcp.DHCP(ip.data.data)
            opts = dict(d.opts)
            out.append(
                {
                    "type": MSG_NAMES.get(opts.get(53, b"\0")[0], "?"),
                    "ip_src": socket.inet_ntoa(ip.src),
                    "ip_dst": socket.inet_ntoa(ip.dst),
                    "ciaddr": socket.inet_ntoa(d.ciaddr.to_bytes(4, "big")),
                    "yiaddr": socket.inet_ntoa(d.yiaddr.to_bytes(4, "big")),
                    "requested": socket.inet_ntoa(opts[50]) if 50 in opts else None,
                    "eth_src": eth.src.hex(":"),
                }
            )
    return out


def vm_state(lab, vm):
    return lab.exec(vm, "ip", "route"), effective_mtu(lab, vm), lab.resolv_conf(vm)


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
def test_full_client_gets_address_routes_dns_mtu(lab, node, client):
    require(client)
    vm = node.add_vm("vm", VM_MAC)
    node.start()
    vc = VmClient(lab, vm, client)
    vc.start()
    addrs = wait_for(lambda: ipv4_addresses(lab, vm), 30, what="an address")
    # dhcpcd applies routes and resolv.conf just after the address: wait for the route.
    wait_for(lambda: "default via" in lab.exec(vm, "ip", "route"), 10, what="routes")
    wait_for(lambda: "10.96.0.10" in lab.resolv_conf(vm), 10, what="resolv.conf")
    routes, mtu, resolv = vm_state(lab, vm)
    assert addrs == [f"{VM_IP}/24"]
    assert "default via 169.254.1.1 dev eth0" in routes
    assert any(line.startswith("169.254.1.1 dev eth0") for line in routes.splitlines())
    assert "nameserver 10.96.0.10" in resolv
    assert mtu == 1400
    assert node.metric("lmdp_replies_sent_total", type="DHCPACK") >= 1
    vc.stop()


def test_udhcpc_gets_the_binding_address(lab, node):
    require("udhcpc")
    vm = node.add_vm("vm", VM_MAC)
    node.start()
    VmClient(lab, vm, "udhcpc").start()
    assert wait_for(lambda: ipv4_addresses(lab, vm), 10, what="an address") == [f"{VM_IP}/24"]


def test_arping_learns_gateway_mac(lab, node):
    require("arping")
    vm = node.add_vm("vm", VM_MAC)
    node.start()
    lab.ip(vm, "addr", "add", f"{VM_IP}/24", "dev", "eth0")
    out = lab.exec(vm, "arping", "-c", "2", "-w", "3", "-I", "eth0", "169.254.1.1", check=False)
    assert GATEWAY_MAC in out.lower(), out
    # A VM's own address and other addresses are never answered.
    out = lab.exec(vm, "arping", "-c", "1", "-w", "1", "-I", "eth0", OTHER_IP, check=False)
    assert GATEWAY_MAC not in out.lower(), out
    assert node.metric("lmdp_drops_total", reason="vm_address") >= 1


def test_renew_unicast_to_gateway_is_acked(lab, lab_node_short_lease):
    """dhclient renews at T1 by unicast to the server id 169.254.1.1: ACKed, same address."""
    require("dhclient", "tcpdump")
    node = lab_node_short_lease
    vm = node.add_vm("vm", VM_MAC)
    node.start()
    pcap = lab.workdir / "renew.pcap"
    dump = tcpdump(lab, vm, pcap)
    vc = VmClient(lab, vm, "dhclient")
    vc.start()
    assert ipv4_addresses(lab, vm) == [f"{VM_IP}/24"]

    def renewed():
        msgs = dhcp_messages(pcap)
        for i, m in enumerate(msgs):
            if m["type"] == "REQUEST" and m["ip_dst"] == "169.254.1.1" and m["ciaddr"] == VM_IP:
                return [r for r in msgs[i + 1 :] if r["type"] in ("ACK", "NAK")]
        return None

    replies = wait_for(renewed, 20, 0.5, "a unicast renew and its reply")
    lab.stop(dump)
    assert replies[0]["type"] == "ACK"
    assert replies[0]["yiaddr"] == VM_IP
    assert replies[0]["ip_src"] == "169.254.1.1"
    assert replies[0]["ip_dst"] == VM_IP  # unicast back to the client
    assert ipv4_addresses(lab, vm) == [f"{VM_IP}/24"]
    vc.stop()


@pytest.fixture
def lab_node_short_lease(lab):
    from .conftest import Node

    return Node(
        lab,
        lease_time=10,
        bindings=[{"name": "fedora", "mac": VM_MAC, "ipv4": f"{VM_IP}/24"}],
    )


def test_request_for_another_vms_address_is_naked(lab, node):
    """dhclient starting INIT-REBOOT with another VM's address: NAK, then the right one."""
    require("dhclient", "tcpdump")
    vm = node.add_vm("vm", VM_MAC)
    node.start()
    vc = VmClient(lab, vm, "dhclient")
    # A lease file from "before" naming the other VM's address makes dhclient ask for it.
    expiry = time.strftime("%w %Y/%m/%d %H:%M:%S", time.gmtime(time.time() + 3600))
    vc._path("dhclient.leases").write_text(
        'lease {\n  interface "eth0";\n'
        f"  fixed-address {OTHER_IP};\n"
        "  option subnet-mask 255.255.255.0;\n"
        "  option dhcp-server-identifier 169.254.1.1;\n"
        f"  renew {expiry};\n  rebind {expiry};\n  expire {expiry};\n}}\n"
    )
    pcap = lab.workdir / "nak.pcap"
    dump = tcpdump(lab, vm, pcap)
    vc.start()
    addrs = wait_for(lambda: ipv4_addresses(lab, vm), 30, what="an address")
    msgs = wait_for(
        lambda: (m := dhcp_messages(pcap)) and m[-1]["type"] == "ACK" and m, 5, what="the ACK"
    )
    lab.stop(dump)
    asked = [m for m in msgs if m["type"] == "REQUEST" and m["requested"] == OTHER_IP]
    assert asked, msgs
    naks = [m for m in msgs if m["type"] == "NAK"]
    assert naks and naks[0]["eth_src"] == GATEWAY_MAC
    assert addrs == [f"{VM_IP}/24"]
    assert node.metric("lmdp_replies_sent_total", type="DHCPNAK") >= 1
    vc.stop()


def test_pool_client_keeps_address_across_restart(lab):
    require("dhclient")
    from .conftest import Node

    node = Node(lab, bindings=[], pools=[
        {"subnet": "10.244.3.0/24", "start": "10.244.3.10", "end": "10.244.3.250"}
    ])  # fmt: skip
    early = node.add_vm("early", "0a:58:0a:f4:03:98")
    vm = node.add_vm("vm", "0a:58:0a:f4:03:99")
    node.start()
    # Another VM takes the first pool address, so ours is not the one a fresh pool would
    # hand out first: after the restart only the store can explain getting it again.
    VmClient(lab, early, "dhclient").start()
    assert ipv4_addresses(lab, early) == ["10.244.3.10/24"]
    vc = VmClient(lab, vm, "dhclient")
    vc.start()
    first = ipv4_addresses(lab, vm)
    assert first == ["10.244.3.11/24"]
    vc.stop()
    lab.ip(vm, "addr", "flush", "dev", "eth0")
    assert node.lmdp.stop() == 0
    # A client that forgot its lease (DISCOVER from scratch) to a restarted lmdp.
    vc._path("dhclient.leases").unlink(missing_ok=True)
    node.lmdp.start()
    vc2 = VmClient(lab, vm, "dhclient")
    vc2.start()
    assert ipv4_addresses(lab, vm) == first
    leases = node.lmdp.get("/leases")
    assert "0a:58:0a:f4:03:99" in leases and "10.244.3.11/24" in leases
    # `lmdp leases` reads the same store while the daemon runs.
    out = subprocess.run(
        [sys.executable, "-m", "dataplane.cli", "leases", "-c", str(node.config_path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split()[:3] for line in out.splitlines()[1:]]
    assert ["0a:58:0a:f4:03:98", "10.244.3.10/24", "node-a"] in rows
    assert ["0a:58:0a:f4:03:99", "10.244.3.11/24", "node-a"] in rows
    vc2.stop()
