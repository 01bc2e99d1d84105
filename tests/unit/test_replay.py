"""`lmdp replay`: a capture through the engine without sockets, its counts and its replies."""

from __future__ import annotations

import json

import dpkt
import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DHCP6_Advertise, DHCP6_Reply, DHCP6OptIAAddress
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import rdpcap, wrpcap

from dataplane.cli import main
from dataplane.replay import (
    builtin_config,
    pool_mac,
    read_capture,
    replay,
    vm_ipv4,
    vm_ipv6,
    vm_link_local,
    vm_mac,
)
from tests.helpers import GW_IP_STR, GW_MAC_STR, arp_frame, dhcp6_request, dhcp_request, ns_frame

ZERO_MAC = "00:00:00:00:00:00"
POOL_FIRST = "10.246.0.10"  # the first address of builtin_config's IPv4 pool


def ll(i: int) -> str:
    return vm_link_local(vm_mac(i))


def capture_frames() -> list[bytes]:
    """One of each kind from the built-in config's VMs, a pool client, and two refusals."""
    return [
        arp_frame(eth_src=vm_mac(0), spa=vm_ipv4(0)),
        arp_frame(eth_src=vm_mac(1), spa=vm_ipv4(1)),
        arp_frame(eth_src=vm_mac(0), spa=vm_ipv4(0), tpa=vm_ipv4(1)),  # another VM: never
        dhcp_request("discover", eth_src=vm_mac(0)),
        dhcp_request("request", eth_src=vm_mac(1), options=[("requested_addr", vm_ipv4(1))]),
        dhcp6_request("solicit", eth_src=vm_mac(2), ip_src=ll(2)),
        dhcp6_request("request", eth_src=vm_mac(3), ip_src=ll(3), addresses=(vm_ipv6(3),)),
        ns_frame(eth_src=vm_mac(0), ip_src=ll(0)),
        dhcp_request("discover", eth_src=pool_mac(0)),  # no binding: a pool allocation
        dhcp_request("request", eth_src=pool_mac(0), options=[("requested_addr", POOL_FIRST)]),
        bytes(Ether(src=vm_mac(0), dst=GW_MAC_STR, type=0x88B5) / (b"\x00" * 46)),
    ]


@pytest.fixture(scope="module")
def config():
    return builtin_config(vms=8)


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), [Ether(f) for f in capture_frames()])
    return path


def test_counts_every_outcome_from_the_engines_metrics(capture, config):
    frames = read_capture(str(capture))
    assert [f for _, f in frames] == capture_frames()
    r = replay(frames, config, passes=3)
    assert (r.capture_frames, r.passes, r.frames) == (11, 3, 33)
    assert r.received == {
        ("arp", "arp_request"): 9,
        ("dhcpv4", "DHCPDISCOVER"): 6,
        ("dhcpv4", "DHCPREQUEST"): 6,
        ("dhcpv6", "SOLICIT"): 3,
        ("dhcpv6", "REQUEST"): 3,
        ("ndp", "ns"): 3,
    }
    # The pool client's ACK is sent after its commit, on every pass.
    assert r.sent == {
        "arp_reply": 6,
        "DHCPOFFER": 6,
        "DHCPACK": 6,
        "ADVERTISE": 3,
        "REPLY": 3,
        "na": 3,
    }
    assert r.dropped == {"vm_address": 3, "bad_ethertype": 3}
    assert r.replies_total == 27
    # One allocation, committed once: from the second pass on the client is a known one.
    assert (r.leases_committed, r.store_commits, r.internal_errors) == (1, 1, 0)
    assert r.seconds > 0 and r.rate(r.frames) == r.frames / r.seconds
    assert r.replies == []  # nothing kept without `record`


def test_passes_are_counted_alike(capture, config):
    """Reused ARP/NDP outcomes (from the second pass on) are counted as the first ones."""
    frames = read_capture(str(capture))
    one = replay(frames, config, passes=1)
    four = replay(frames, config, passes=4)
    assert {k: 4 * v for k, v in one.received.items()} == four.received
    assert {k: 4 * v for k, v in one.sent.items()} == four.sent
    assert {k: 4 * v for k, v in one.dropped.items()} == four.dropped


def test_cli_json_and_written_replies(capture, tmp_path, capsys):
    out = tmp_path / "replies.pcap"
    code = main(["replay", str(capture), "-w", str(out), "--repeat", "2", "--json", "-q"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 22 and report["replies"] == 18
    assert report["replies_per_s"] > 0 and report["frames_per_s"] >= report["replies_per_s"]
    sent = {row["type"]: row["replies"] for row in report["sent"]}
    assert sent["arp_reply"] == 4 and sent["DHCPOFFER"] == 4

    # The replies of the first pass, in order; the pool ACK last (after its commit).
    with open(out, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        written = [bytes(buf) for _, buf in reader]
    assert len(written) == 9
    pkts = rdpcap(str(out))
    assert [bytes(p) for p in pkts] == written

    for i, p in enumerate(pkts[:2]):  # the gateway answers each VM
        assert p[Ether].dst == vm_mac(i) and p[Ether].src == GW_MAC_STR
        assert (p[ARP].op, p[ARP].hwsrc, p[ARP].psrc) == (2, GW_MAC_STR, GW_IP_STR)
        assert (p[ARP].hwdst, p[ARP].pdst) == (vm_mac(i), vm_ipv4(i))

    def dhcp_type(p):
        return dict(o for o in p[DHCP].options if isinstance(o, tuple))["message-type"]

    offer, ack = pkts[2], pkts[3]
    assert dhcp_type(offer) == 2 and offer[BOOTP].yiaddr == vm_ipv4(0)
    assert dhcp_type(ack) == 5 and ack[BOOTP].yiaddr == vm_ipv4(1)
    assert DHCP6_Advertise in pkts[4] and pkts[4][DHCP6OptIAAddress].addr == vm_ipv6(2)
    assert DHCP6_Reply in pkts[5] and pkts[5][DHCP6OptIAAddress].addr == vm_ipv6(3)
    assert pkts[6][ICMPv6ND_NA].tgt == "fe80::1" and pkts[6][IPv6].dst == ll(0)
    pool_offer, pool_ack = pkts[7], pkts[8]
    assert pool_offer[Ether].dst == pool_mac(0) and dhcp_type(pool_offer) == 2
    assert pool_offer[BOOTP].yiaddr == POOL_FIRST
    assert pool_ack[Ether].dst == pool_mac(0) and dhcp_type(pool_ack) == 5
    assert pool_ack[BOOTP].yiaddr == POOL_FIRST

    # Checksums as scapy computes them.
    for p in pkts:
        for layer in (IP, UDP, IPv6):
            if layer in p and hasattr(p[layer], "chksum"):
                del p[layer].chksum
        if ICMPv6ND_NA in p:
            del p[ICMPv6ND_NA].cksum
    assert [bytes(Ether(bytes(p))) for p in pkts] == written


def test_cli_with_a_config_file(capture, tmp_path, capsys):
    config = tmp_path / "lmdp.yaml"
    config.write_text(
        "gateway: {ipv4: 169.254.1.1, mac: '0a:58:a9:fe:01:01'}\n"
        f"bindings: [{{name: a, mac: '{vm_mac(0)}', ipv4: {vm_ipv4(0)}/16}}]\n"
    )
    assert main(["replay", str(capture), "-c", str(config), "-q"]) == 0
    text = capsys.readouterr().out
    assert "arp_reply" in text and "unknown_client" in text  # only VM 0 is known here


@pytest.mark.parametrize(
    "argv, message",
    [
        (["replay", "/nonexistent.pcap"], "PCAP: cannot read /nonexistent.pcap"),
        (["replay", "{junk}"], "not a pcap or pcapng file"),
        (["replay", "{sll}"], "replay needs Ethernet"),
        (["replay", "{capture}", "--repeat", "0"], "--repeat: must be at least 1"),
    ],
)
def test_bad_usage_exits_2(argv, message, capture, tmp_path, capsys):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    sll = tmp_path / "sll.pcap"
    with open(sll, "wb") as f:
        dpkt.pcap.Writer(f, linktype=113).writepkt(b"\x00" * 16, ts=0)
    paths = {"junk": junk, "sll": sll, "capture": capture}
    argv = [a.format(**paths) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmdp: ") and message in err and "Traceback" not in err
