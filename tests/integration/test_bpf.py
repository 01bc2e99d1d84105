"""The kernel-side filter: exactly our protocols reach Python, a VM's data traffic never."""

from __future__ import annotations

import sys
import textwrap

from dataplane.lab import Lab

PROBE = textwrap.dedent(
    """
    import json, socket, sys, time
    from scapy.all import (ARP, BOOTP, DHCP, IP, TCP, UDP, Ether, ICMPv6EchoRequest,
                           ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6ND_RS, IPv6, Raw)
    from scapy.layers.dhcp6 import DHCP6_Solicit
    from dataplane.afpacket import PacketSocket

    rx = PacketSocket("rx0")
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


def test_filter_passes_exactly_our_protocols():
    import json

    with Lab() as lab:
        ns = lab.netns("bpf")
        lab.ip(ns, "link", "add", "tx0", "type", "veth", "peer", "name", "rx0")
        lab.ip(ns, "link", "set", "tx0", "up")
        lab.ip(ns, "link", "set", "rx0", "up")
        script = lab.workdir / "probe.py"
        script.write_text(PROBE)
        result = json.loads(lab.exec(ns, sys.executable, str(script)))
    wrong = {name: got for name, (got, want) in result.items() if bool(got) != want or got > 1}
    assert not wrong, f"filter mismatches (frames received): {wrong}"
