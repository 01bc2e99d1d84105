"""Ports that appear after start are attached and served; ports that go away are detached."""

from __future__ import annotations

from dataplane.lab import VmClient, ipv4_addresses, wait_for

from .conftest import VM_IP, VM_MAC, require


def test_port_added_later_is_attached_and_removed_port_detached(lab, node):
    require("udhcpc")
    node.start()
    assert node.metric("lmdp_interfaces_attached") == 0
    # Names that do not match `interfaces` are left alone.
    other = lab.netns("other")
    lab.veth(node.ns, "eth-uplink", other, "eth0")
    vm = node.add_vm("vm", VM_MAC)  # tap0 appears while lmdp runs
    wait_for(lambda: node.metric("lmdp_interfaces_attached") == 1, 5, what="tap0 attached")
    VmClient(lab, vm, "udhcpc").start()
    assert ipv4_addresses(lab, vm) == [f"{VM_IP}/24"]
    # A link flap (down leaves ENETDOWN on the socket) does not stop service.
    lab.ip(node.ns, "link", "set", "tap0", "down")
    lab.ip(node.ns, "link", "set", "tap0", "up")
    lab.ip(vm, "addr", "flush", "dev", "eth0")
    VmClient(lab, vm, "udhcpc").start()
    assert ipv4_addresses(lab, vm) == [f"{VM_IP}/24"]
    lab.ip(node.ns, "link", "del", "tap0")
    wait_for(lambda: node.metric("lmdp_interfaces_attached") == 0, 5, what="tap0 detached")
    # Its per-interface series are gone with it.
    assert 'interface="tap0"' not in node.lmdp.get("/metrics")
    # And it comes back when the port does (a VM restarted on this node).
    vm2 = node.add_vm("vm2", VM_MAC, port="tap0")
    wait_for(lambda: node.metric("lmdp_interfaces_attached") == 1, 5, what="tap0 again")
    VmClient(lab, vm2, "udhcpc").start()
    assert ipv4_addresses(lab, vm2) == [f"{VM_IP}/24"]
