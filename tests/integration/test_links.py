"""Ports that appear after start are attached and served; ports that go away are detached."""

from __future__ import annotations

import sys
import textwrap
import time

from dataplane.lab import VmClient, ipv4_addresses, wait_for

from .conftest import VM_IP, VM_MAC, require, run_in_veth_lab


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


# A port bound while its link is down whose link comes up while its rings are being set up
# (as a new tap is: created down, brought up at once). The kernel clears the socket's
# protocol while it sets up a ring on a bound socket, even one not hooked yet, and a
# NETDEV_UP in that window left the socket unhooked: deaf for good (afpacket's docstring).
# The link comes up at delays that cover the setup (one or two grace periods, 10-12 ms
# each), and half the time only after the move to the rings.
LINK_UP_DURING_RING_SETUP = textwrap.dedent(
    """
    import fcntl, json, socket, struct, time
    from dataplane.afpacket import PacketSocket, RingGeometry

    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def set_up(name, up):  # SIOCGIFFLAGS / SIOCSIFFLAGS: at once, unlike `ip link`
        ifr = struct.pack("16sH", name.encode(), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(ctl, 0x8913, ifr)[:18])[1]
        flags = flags | 1 if up else flags & ~1
        fcntl.ioctl(ctl, 0x8914, struct.pack("16sH", name.encode(), flags))

    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    peer.bind(("tx0", 0))
    mac = bytes.fromhex("0a580af4021a")
    arp = (bytes([255] * 6) + mac + bytes([8, 6]) + bytes.fromhex("0001080006040001") + mac
           + bytes([10, 244, 2, 26]) + bytes(6) + bytes([169, 254, 1, 1]))
    deaf = []
    for i, delay in enumerate([0.002, 0.006, 0.01, 0.014, 0.018, 0.024] * 4):
        set_up("rx0", False)
        rx = PacketSocket("rx0", ring=RingGeometry())
        after = i % 2 == 1
        if not after:
            time.sleep(delay)
            set_up("rx0", True)
        rx.settle()
        rx.recv_batch()  # the move to the rings
        if after:
            set_up("rx0", True)
        assert rx.ring is not None
        time.sleep(0.01)
        peer.send(arp)
        time.sleep(0.03)
        if rx.recv_batch() != [arp]:
            deaf.append([delay, after])
        rx.close()
    print(json.dumps(deaf))
    """
)


def test_port_whose_link_comes_up_while_its_rings_are_set_up_still_hears():
    deaf = run_in_veth_lab(LINK_UP_DURING_RING_SETUP, rx_up=False, timeout=60)
    assert deaf == [], f"deaf after the ring setup ([delay, link up after the move]): {deaf}"


def test_port_under_load_moves_to_rings_and_keeps_serving(lab, node, monkeypatch):
    """Rings on demand: a burst of ARP requests moves the port to rings, on a new socket
    that the engine must poll from then on; it answers what it reads, and serves on after.
    (Not every request of the burst: the sender outruns lmdp on a busy 2-core runner.)"""
    require("udhcpc")
    monkeypatch.setenv("LMDP_RING", "auto")  # the default, whatever the caller's LMDP_RING
    node.start()
    vm = node.add_vm("vm", VM_MAC)
    wait_for(lambda: node.metric("lmdp_interfaces_attached") == 1, 5, what="tap0 attached")
    n = 5000
    burst = textwrap.dedent(
        f"""
        import socket
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.bind(("eth0", 0))
        mac = bytes.fromhex("{VM_MAC.replace(":", "")}")
        for i in range({n}):
            s.send(bytes([255] * 6) + mac + bytes([8, 6]) + bytes.fromhex("0001080006040001")
                   + mac + bytes([10, 244, 2, 26]) + bytes(6) + bytes([169, 254, 1, 1]))
        """
    )
    lab.exec(vm, sys.executable, "-c", burst)
    wait_for(lambda: "tap0: under load: moved to packet rings" in node.lmdp.log(), 5,
             what="the move to rings")  # fmt: skip

    def counts():
        return (
            node.metric("lmdp_frames_received_total", interface="tap0", type="arp_request"),
            node.metric("lmdp_replies_sent_total", interface="tap0", type="arp_reply"),
        )

    before = counts()
    time.sleep(0.3)
    received, answered = counts()
    assert (received, answered) == before, "the burst is over"
    assert received >= n / 2 and answered == received
    VmClient(lab, vm, "udhcpc").start()  # served on the ring socket
    assert ipv4_addresses(lab, vm) == [f"{VM_IP}/24"]
