"""The ARP codec and the gateway ARP proxy (SPEC "ARP proxy"; RFC 826, RFC 5227)."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.l2 import ARP, Ether

from protocols.arp import ArpPacket, ArpResponder, decode_arp, encode_arp
from protocols.bindings import BindingTable
from protocols.outcome import DROP_REASONS
from protocols.params import ROUTER_SUBNET
from protocols.wire import MalformedPacket
from tests.helpers import (
    GW_IP,
    GW_MAC,
    GW_MAC_STR,
    OTHER_IP_STR,
    SEED_IP,
    SEED_MAC,
    UNKNOWN_MAC,
    UNKNOWN_MAC_STR,
    arp_frame,
    seed_params,
    seed_table,
)

# "Who has 169.254.1.1? Tell 10.244.2.26", broadcast by the seed VM.
ARP_REQUEST = bytes.fromhex(
    "ffffffffffff"  # Ethernet dst: broadcast
    "0a580af4021a"  # Ethernet src: the VM
    "0806"  # ethertype ARP
    "0001"  # htype Ethernet
    "0800"  # ptype IPv4
    "06"  # hlen
    "04"  # plen
    "0001"  # op request
    "0a580af4021a"  # sha: the VM
    "0af4021a"  # spa 10.244.2.26
    "000000000000"  # tha: unknown
    "a9fe0101"  # tpa 169.254.1.1
)

# SPEC "Test vectors": the reply to the seed VM, exactly.
ARP_REPLY = bytes.fromhex(
    "0a580af4021a"  # Ethernet dst: the requester
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "0806"  # ethertype ARP
    "0001"  # htype Ethernet
    "0800"  # ptype IPv4
    "06"  # hlen
    "04"  # plen
    "0002"  # op reply
    "0a58a9fe0101"  # sha: gateway MAC
    "a9fe0101"  # spa: the target, 169.254.1.1
    "0a580af4021a"  # tha: the requester's sha
    "0af4021a"  # tpa: the requester's spa
)

# QEMU's self-announce after a migration (SPEC): RARP, 60 bytes, op 3, sha = tha = VM MAC.
QEMU_RARP = (
    bytes.fromhex(
        "ffffffffffff"  # Ethernet dst: broadcast
        "0a580af4021a"  # Ethernet src: the VM
        "8035"  # ethertype RARP
        "0001"  # htype Ethernet
        "0800"  # ptype IPv4
        "06"  # hlen
        "04"  # plen
        "0003"  # op 3: reverse request
        "0a580af4021a"  # sha: the VM
        "00000000"  # spa
        "0a580af4021a"  # tha: the VM
        "00000000"  # tpa
    )
    + bytes(18)  # padding to 60 bytes
)


def test_spec_vector_reply(arp):
    out = arp.handle(ARP_REQUEST, "tap0", 0.0)
    assert out.reply == ARP_REPLY
    assert len(out.reply) == 42  # not padded: the kernel/NIC pads on the wire
    assert (out.received, out.sent, out.drop, out.mac) == (
        "arp_request",
        "arp_reply",
        None,
        SEED_MAC,
    )


def test_scapy_built_request_matches_vector(arp):
    assert arp_frame() == ARP_REQUEST
    reply = Ether(arp.handle(arp_frame(), "tap0", 0.0).reply)
    assert reply[Ether].dst == "0a:58:0a:f4:02:1a" and reply[Ether].src == GW_MAC_STR
    assert reply[ARP].op == 2
    assert reply[ARP].hwsrc == GW_MAC_STR and reply[ARP].psrc == "169.254.1.1"
    assert reply[ARP].hwdst == "0a:58:0a:f4:02:1a" and reply[ARP].pdst == "10.244.2.26"


def test_padded_request_is_answered(arp):
    padded = ARP_REQUEST + bytes(60 - len(ARP_REQUEST))
    assert arp.handle(padded, "tap0", 0.0).reply == ARP_REPLY
    # Trailing junk, as some NICs leave it, is padding too.
    assert arp.handle(ARP_REQUEST + b"\xaa" * 18, "tap0", 0.0).reply == ARP_REPLY


def test_unicast_to_gateway_mac_is_answered(arp):
    # RFC 1122 §2.3.2.1: a cache entry is refreshed by unicast to the known MAC.
    out = arp.handle(arp_frame(eth_dst=GW_MAC_STR, tha=GW_MAC_STR), "tap0", 0.0)
    assert out.reply == ARP_REPLY


def test_request_from_unbound_host_is_answered_without_mac():
    table = BindingTable()
    out = ArpResponder(seed_params(), table).handle(ARP_REQUEST, "tap0", 0.0)
    assert out.reply == ARP_REPLY
    assert out.mac is None


def test_probe_for_gateway_is_answered_to_zero_spa(arp):
    # RFC 5227 §2.1.1: a probe (spa 0.0.0.0) for an address in use must get a reply, so a host
    # trying to take the gateway's address picks another one.
    out = arp.handle(arp_frame(spa="0.0.0.0"), "tap0", 0.0)
    assert out.reply[28:32] == GW_IP  # spa = the target
    assert out.reply[38:42] == bytes(4)  # tpa = the asker's 0.0.0.0


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        # Gratuitous ARP: the VM announcing its own address (spa == tpa).
        (arp_frame(spa="10.244.2.26", tpa="10.244.2.26"), "gratuitous"),
        # Gratuitous ARP for the gateway address itself.
        (arp_frame(spa="169.254.1.1", tpa="169.254.1.1"), "gratuitous"),
        # RFC 5227 probe for the asker's own address.
        (arp_frame(spa="0.0.0.0", tpa="10.244.2.26"), "probe_for_own"),
        # Any request about the asker's own address.
        (arp_frame(spa="10.244.9.9", tpa="10.244.2.26"), "probe_for_own"),
        # Another VM's address: never answered (no hijacking).
        (arp_frame(tpa=OTHER_IP_STR), "vm_address"),
        (arp_frame(spa="0.0.0.0", tpa=OTHER_IP_STR), "vm_address"),
        # An address that is neither the gateway nor proxied.
        (arp_frame(tpa="10.244.2.1"), "not_proxied"),
        (arp_frame(tpa="8.8.8.8"), "not_proxied"),
        # Unicast to a MAC that is not the gateway's.
        (arp_frame(eth_dst="0a:58:0a:f4:02:1b"), "wrong_unicast_dst"),
        # Replies (op 2), including a gratuitous reply for the gateway.
        (arp_frame(op=2, tha=GW_MAC_STR), "arp_reply"),
        (arp_frame(op=2, spa="169.254.1.1", tpa="169.254.1.1"), "arp_reply"),
        # Other ops carried with the ARP ethertype (RARP reply op 4, InARP op 8).
        (arp_frame(op=4), "arp_reply"),
        (arp_frame(op=8), "arp_reply"),
        # Not an ARP frame at all.
        (arp_frame(ethertype=0x0800), "bad_ethertype"),
    ],
)
def test_never_answered(arp, frame, reason):
    out = arp.handle(frame, "tap0", 0.0)
    assert out.reply is None and out.sent is None
    assert out.drop == reason
    assert reason in DROP_REASONS


def test_received_labels(arp):
    assert arp.handle(arp_frame(op=2), "tap0", 0.0).received == "arp_reply"
    assert arp.handle(arp_frame(op=8), "tap0", 0.0).received == "arp"
    assert arp.handle(arp_frame(tpa="8.8.8.8"), "tap0", 0.0).received == "arp_request"
    assert arp.handle(ARP_REQUEST[:20], "tap0", 0.0).received == "arp"


def test_mac_is_set_only_for_bound_senders(arp):
    assert arp.handle(arp_frame(tpa="8.8.8.8"), "tap0", 0.0).mac == SEED_MAC
    unknown = arp_frame(eth_src=UNKNOWN_MAC_STR, spa="10.244.9.9")
    out = arp.handle(unknown, "tap0", 0.0)
    assert out.reply is not None and out.mac is None


@pytest.mark.parametrize(
    ("field", "offset", "value"),
    [
        ("htype", 14, b"\x00\x06"),  # IEEE 802 hardware type
        ("ptype", 16, b"\x86\xdd"),  # IPv6
        ("hlen", 18, b"\x08"),
        ("plen", 19, b"\x10"),
    ],
)
def test_not_ethernet_ipv4_arp(arp, field, offset, value):
    frame = ARP_REQUEST[:offset] + value + ARP_REQUEST[offset + len(value) :]
    out = arp.handle(frame, "tap0", 0.0)
    assert out.drop == "bad_arp" and out.reply is None
    assert out.mac == SEED_MAC


def test_qemu_rarp_is_only_a_hint(arp):
    assert len(QEMU_RARP) == 60
    out = arp.handle(QEMU_RARP, "tap0", 0.0)
    assert out.received == "rarp"
    assert out.mac == SEED_MAC
    assert out.reply is None and out.drop is None


@pytest.mark.parametrize("op", [1, 2, 3, 4])
def test_rarp_any_op_and_any_length_is_a_hint(arp, op):
    frame = QEMU_RARP[:20] + op.to_bytes(2, "big") + QEMU_RARP[22:]
    out = arp.handle(frame, "tap0", 0.0)
    assert (out.received, out.reply, out.drop) == ("rarp", None, None)
    # Even a bare header is a RARP hint; it is never answered.
    assert arp.handle(QEMU_RARP[:14], "tap0", 0.0).received == "rarp"


@pytest.mark.parametrize("frame", [ARP_REQUEST, ARP_REQUEST + bytes(18)])
def test_every_truncated_prefix_is_dropped(arp, frame):
    for n in range(42):
        out = arp.handle(frame[:n], "tap0", 0.0)
        assert out.reply is None
        assert out.drop in {"truncated"}, (n, out)


def test_subnet_mode_answers_for_the_subnet_gateway():
    arp = ArpResponder(seed_params(router_mode=ROUTER_SUBNET), seed_table())
    out = arp.handle(arp_frame(tpa="10.244.2.1"), "tap0", 0.0)
    assert out.reply is not None
    assert out.reply[28:32] == bytes((10, 244, 2, 1))  # spa = the subnet gateway
    assert out.reply[22:28] == GW_MAC  # sha = gateway MAC
    # The link-local gateway is still answered.
    assert arp.handle(ARP_REQUEST, "tap0", 0.0).reply == ARP_REPLY
    # Another subnet's gateway is not the asker's.
    assert arp.handle(arp_frame(tpa="10.244.3.1"), "tap0", 0.0).drop == "not_proxied"
    # A host without a binding has no subnet gateway.
    unknown = arp_frame(eth_src=UNKNOWN_MAC_STR, spa="10.244.2.99", tpa="10.244.2.1")
    assert arp.handle(unknown, "tap0", 0.0).drop == "not_proxied"


def test_link_local_mode_does_not_answer_for_the_subnet_gateway(arp):
    assert arp.handle(arp_frame(tpa="10.244.2.1"), "tap0", 0.0).drop == "not_proxied"


def test_proxied_cidrs():
    params = seed_params(proxied=[ipaddress.IPv4Network("100.64.0.0/16")])
    arp = ArpResponder(params, seed_table())
    out = arp.handle(arp_frame(tpa="100.64.3.4"), "tap0", 0.0)
    assert out.reply is not None and out.reply[28:32] == bytes((100, 64, 3, 4))
    assert arp.handle(arp_frame(tpa="100.65.0.1"), "tap0", 0.0).drop == "not_proxied"


def test_proxied_cidr_never_covers_a_vm_address():
    params = seed_params(proxied=[ipaddress.IPv4Network("10.244.2.0/24")])
    arp = ArpResponder(params, seed_table())
    assert arp.handle(arp_frame(tpa=OTHER_IP_STR), "tap0", 0.0).drop == "vm_address"
    assert arp.handle(arp_frame(tpa="10.244.2.1"), "tap0", 0.0).reply is not None


def test_decode_encode_round_trip():
    packet = decode_arp(ARP_REQUEST, 14)
    assert packet == ArpPacket(1, SEED_MAC, SEED_IP, bytes(6), GW_IP)
    assert encode_arp(packet) == ARP_REQUEST[14:]
    # Our encoding parses in scapy as the same packet.
    parsed = ARP(encode_arp(packet))
    assert (parsed.op, parsed.hwsrc, parsed.psrc, parsed.pdst) == (
        1,
        "0a:58:0a:f4:02:1a",
        "10.244.2.26",
        "169.254.1.1",
    )


def test_decode_scapy_built_arp():
    frame = bytes(
        Ether(src=UNKNOWN_MAC_STR)
        / ARP(op=2, hwsrc=UNKNOWN_MAC_STR, psrc="1.2.3.4", hwdst=GW_MAC_STR, pdst="5.6.7.8")
    )
    assert decode_arp(frame, 14) == ArpPacket(
        2, UNKNOWN_MAC, bytes((1, 2, 3, 4)), GW_MAC, bytes((5, 6, 7, 8))
    )


def test_decode_arp_errors():
    with pytest.raises(MalformedPacket) as info:
        decode_arp(ARP_REQUEST[14:41])
    assert info.value.reason == "truncated"
    with pytest.raises(MalformedPacket) as info:
        decode_arp(b"\x00\x06" + ARP_REQUEST[16:])
    assert info.value.reason == "bad_arp"
