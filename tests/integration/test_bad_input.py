"""Hostile and stray frames from a VM: dropped, counted by reason, everyone else still served."""

from __future__ import annotations

import sys
import textwrap

from dataplane.lab import VmClient, ipv4_addresses

from .conftest import VM_IP, VM_MAC, require

ATTACK = textwrap.dedent(
    """
    import sys
    from scapy.all import ARP, BOOTP, DHCP, IP, UDP, Ether, IPv6, TCP, Raw, sendp, conf
    conf.verb = 0
    mac = sys.argv[1]
    bcast = "ff:ff:ff:ff:ff:ff"
    def dhcp(src_mac, op=1, msg="discover"):
        return (Ether(src=src_mac, dst=bcast) / IP(src="0.0.0.0", dst="255.255.255.255")
                / UDP(sport=68, dport=67)
                / BOOTP(op=op, chaddr=bytes.fromhex(src_mac.replace(":", "")), xid=7)
                / DHCP(options=[("message-type", msg), "end"]))
    good = bytes(dhcp(mac))
    frames = []
    # Every truncated prefix of a valid DISCOVER (past the Ethernet header).
    frames += [Ether(good[:n]) if n >= 14 else Raw(good[:n]) for n in range(14, len(good), 7)]
    frames.append(dhcp(mac, op=2, msg="offer"))               # a VM acting as a server
    frames.append(dhcp("0a:58:0a:f4:09:09"))                  # an unknown MAC
    frames.append(Ether(src=mac, dst=bcast) / IP(dst="255.255.255.255")
                  / UDP(sport=68, dport=67) / Raw(b"\\x01" * 300))  # no magic cookie
    frames.append(Ether(src=mac, dst=bcast) / ARP(op=2, psrc="169.254.1.1"))  # ARP reply
    frames.append(Ether(src=mac, dst=bcast) / ARP(psrc="10.0.0.1", pdst="10.0.0.1"))  # GARP
    # Data traffic the BPF filter must keep out of lmdp entirely.
    data = [Ether(src=mac, dst="0a:58:a9:fe:01:01") / IP(src="10.244.2.26", dst="8.8.8.8")
            / UDP(sport=5353, dport=53) / Raw(b"x" * 40),
            Ether(src=mac, dst="0a:58:a9:fe:01:01") / IP(src="10.244.2.26", dst="1.1.1.1")
            / TCP(sport=40000, dport=443),
            Ether(src=mac, dst="33:33:00:00:00:01") / IPv6() / UDP(sport=1, dport=2)]
    sendp(frames, iface="eth0")
    sendp(data * 50, iface="eth0")
    print(len(frames), len(data) * 50)
    """
)


def test_bad_frames_are_counted_and_service_continues(lab, node):
    require("dhclient")
    vm = node.add_vm("vm", VM_MAC)
    node.start()
    script = lab.workdir / "attack.py"
    script.write_text(ATTACK)
    sent, data = map(int, lab.exec(vm, sys.executable, str(script), VM_MAC).split())
    assert sent > 20 and data == 150
    # The service still answers a real client afterwards.
    VmClient(lab, vm, "dhclient").start()
    assert ipv4_addresses(lab, vm) == [f"{VM_IP}/24"]
    drops = {
        reason: node.metric("lmdp_drops_total", reason=reason)
        for reason in (
            "truncated",
            "not_bootrequest",
            "unknown_client",
            "no_magic_cookie",
            "arp_reply",
            "gratuitous",
            "bad_ethertype",
        )  # fmt: skip
    }
    assert drops["truncated"] >= 10, drops
    assert drops["not_bootrequest"] >= 1, drops
    assert drops["unknown_client"] >= 1, drops
    assert drops["no_magic_cookie"] >= 1, drops
    assert drops["arp_reply"] >= 1, drops
    assert drops["gratuitous"] >= 1, drops
    # Data frames never reached Python: nothing counted for them at all.
    assert drops["bad_ethertype"] == 0, drops
    assert node.metric("lmdp_internal_errors_total") == 0
    total = node.metric("lmdp_frames_received_total")
    assert total < sent + 20, f"{total} frames reached lmdp; data traffic leaked through BPF"
