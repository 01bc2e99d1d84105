"""The packet socket against the kernel: exactly our protocols reach Python, a VM's data
traffic never, on the ring path and the classic one; and the rings' round trip."""

from __future__ import annotations

import textwrap

import pytest

from .conftest import run_in_veth_lab

PROBE = textwrap.dedent(
    """
    import json, socket, sys, time
    from scapy.all import (ARP, BOOTP, DHCP, IP, TCP, UDP, Ether, ICMPv6EchoRequest,
                           ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, IPv6, Raw)
    from scapy.layers.dhcp6 import DHCP6_Solicit
    from dataplane.afpacket import PacketSocket

    rx = PacketSocket("rx0")
    assert rx.settle() == (sys.argv[1] == "ring")
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    tx.bind(("tx0", 0))
    e = Ether(src="0a:58:0a:f4:02:1a", dst="ff:ff:ff:ff:ff:ff")
    cases = {
        "arp": (e / ARP(pdst="169.254.1.1"), True),
        "rarp": (Ether(src="0a:58:0a:f4:02:1a", dst="ff:ff:ff:ff:ff:ff", type=0x8035)
                 / Raw(bytes(46)), True),
        "dhcpv4": (e / IP(dst="255.255.255.255") / UDP(sport=68, dport=67) / BOOTP()
                   / DHCP(options=[("message-type", "discover"), "end"]), True),
        "dhcpv4 relay": (e / IP(src="10.0.0.1", dst="10.0.0.2", ihl=6, options=b"\\x94\\x04\\0\\0")
                         / UDP(sport=67, dport=67) / BOOTP(), True),
        "dhcpv6": (e / IPv6(dst="ff02::1:2") / UDP(sport=546, dport=547) / DHCP6_Solicit(),
                   True),
        "rs": (e / IPv6(dst="ff02::2", hlim=255) / ICMPv6ND_RS(), True),
        "ra": (e / IPv6(dst="ff02::1", hlim=255) / ICMPv6ND_RA(), True),
        "ns": (e / IPv6(dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="fe80::1"), True),
        "na": (e / IPv6(dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt="fe80::2"), True),
        "dns": (e / IP(dst="10.96.0.10") / UDP(sport=5353, dport=53) / Raw(b"q"), False),
        "tcp": (e / IP(dst="10.0.0.9") / TCP(dport=443), False),
        "dhcp client port": (e / IP() / UDP(sport=67, dport=68), False),
        "ipv4 fragment": (e / IP(dst="255.255.255.255", frag=10) / Raw(bytes(20)), False),
        "icmpv6 echo": (e / IPv6(dst="ff02::1") / ICMPv6EchoRequest(), False),
        "ipv6 udp 53": (e / IPv6(dst="fd00::1") / UDP(sport=1, dport=53), False),
        "redirect": (e / IPv6(dst="ff02::1") / Raw(bytes([137, 0, 0, 0]) + bytes(36)), False),
        "vlan": (Ether(dst="ff:ff:ff:ff:ff:ff", type=0x8100) / Raw(bytes(46)), False),
    }
    passed = {}
    for name, (pkt, _) in cases.items():
        tx.send(bytes(pkt))
        time.sleep(0.02)
        passed[name] = len(rx.recv_batch())
    print(json.dumps({n: [passed[n], want] for n, (_, want) in cases.items()}))
    """
)


@pytest.mark.parametrize("path", ["ring", "classic"])
def test_filter_passes_exactly_our_protocols(path):
    result = run_in_veth_lab(PROBE, path, env="LMDP_RING=0" if path == "classic" else "LMDP_RING=1")
    wrong = {name: got for name, (got, want) in result.items() if bool(got) != want or got > 1}
    assert not wrong, f"filter mismatches (frames received): {wrong}"


RING_ROUND_TRIP = textwrap.dedent(
    """
    import json, socket, time
    from dataplane.afpacket import PacketSocket, RingGeometry

    # Small rings, so that the test wraps them and overflows a slot.
    rx = PacketSocket("rx0", ring=RingGeometry(rx_frames=16, rx_frame=256, tx_frames=8,
                                               tx_frame=512))
    assert rx.settle()
    assert rx.recv_batch() == [] and rx.ring is not None  # switched to the rings
    peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    peer.bind(("tx0", 3))
    peer.setblocking(False)
    mac = bytes.fromhex("0a580af4021a")
    arp = (bytes([255] * 6) + mac + bytes([8, 6]) + bytes.fromhex("0001080006040001") + mac
           + bytes([10, 244, 2, 26]) + bytes(6) + bytes([169, 254, 1, 1]))
    def arp_n(n):
        return arp[:-1] + bytes([n])
    dhcp = bytes.fromhex("ffffffffffff0a580af4021a0800") + bytes(20) + bytes(8) + bytes(300)
    dhcp = (dhcp[:14] + bytes([0x45]) + dhcp[15:23] + bytes([17]) + dhcp[24:34]
            + bytes([0, 68, 0, 67]) + dhcp[38:])  # IPv4, UDP 68 -> 67
    received, sent = [], []
    for n in range(40):  # in rounds of 10: more than the ring holds in all, never at once
        f = dhcp[:-1] + bytes([n]) if n % 4 == 0 else arp_n(n)
        sent.append(f)
        peer.send(f)
        if n % 10 == 9:
            time.sleep(0.05)
            received += rx.recv_batch(64)
    # Transmit: a batch (not on the wire before flush), longer than the TX ring, with a
    # frame bigger than a slot in the middle.
    rx.recv_batch()
    out = [arp_n(100 + n) for n in range(12)] + [dhcp + bytes(300)] + [arp_n(200)]
    queued = [rx.send(f) for f in out[:5]]
    time.sleep(0.02)
    early = []
    while True:
        try:
            early.append(peer.recv(4096))
        except BlockingIOError:
            break
    queued += [rx.send(f) for f in out[5:]]
    rx.flush()
    time.sleep(0.05)
    wire = []
    while True:
        try:
            wire.append(peer.recv(4096))
        except BlockingIOError:
            break
    print(json.dumps({
        "ring_in_use": rx.ring is not None,
        "received_in_order": received == sent, "received": len(received),
        "all_bytes": all(type(f) is bytes for f in received),
        "queued": all(queued), "before_flush": len(early), "wire_in_order": wire == out,
        "wire": len(wire),
    }))
    rx.close()
    """
)


def test_rings_round_trip_in_order_with_big_frames_and_batches():
    got = run_in_veth_lab(RING_ROUND_TRIP)
    assert got == {
        "ring_in_use": True,
        "received_in_order": True,
        "received": 40,
        "all_bytes": True,
        "queued": True,
        "before_flush": 0,
        "wire_in_order": True,
        "wire": 14,
    }
