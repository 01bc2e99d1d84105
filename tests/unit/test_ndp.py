"""The NDP proxy against SPEC "NDP proxy" and "IPv6 default route" (RFC 4861).

Solicitations are built by scapy; replies are checked byte by byte and parsed back by scapy,
whose recomputed checksums must equal ours.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_RA,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6Unknown,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from protocols.bindings import BindingTable
from protocols.ndp import NdpResponder, build_ra, ra_delay
from protocols.outcome import DROP_REASONS
from protocols.params import GatewayParams
from tests.helpers import (
    DHCP6_MAC,
    DHCP6_SRC_STR,
    GW6_STR,
    GW_MAC,
    OTHER_IP6_STR,
    SEED_IP6_STR,
    SEED_LL_STR,
    SEED_MAC,
    SEED_MAC_STR,
    UNKNOWN_MAC,
    UNKNOWN_MAC_STR,
    V6ONLY_LL_STR,
    V6ONLY_MAC,
    V6ONLY_MAC_STR,
    dhcp6_request,
    na_frame,
    ns_frame,
    ra_frame,
    redirect_frame,
    rs_frame,
    seed_params6,
    seed_table6,
)

# SPEC "NDP proxy": the NA answering the seed VM's NS for fe80::1.
NA_TO_SEED = bytes.fromhex(
    "0a580af4021a"  # Ethernet dst: the NS's Ethernet src
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "86dd"  # ethertype IPv6
    "60000000"  # version 6, traffic class 0, flow label 0
    "0020"  # payload length 32
    "3a"  # next header ICMPv6
    "ff"  # hop limit 255
    "fe800000000000000000000000000001"  # src fe80::1
    "fe80000000000000 0858 0aff fef4 021a"  # dst: the NS source, fe80::858:aff:fef4:21a
    "88"  # type 136 Neighbor Advertisement
    "00"  # code 0
    "d060"  # checksum
    "e0000000"  # flags R|S|O, reserved
    "fe800000000000000000000000000001"  # target fe80::1
    "02"  # option Target Link-Layer Address
    "01"  # length 1 (8 bytes)
    "0a58a9fe0101"  # the gateway MAC
)

# The answer to a DAD probe for fe80::1: to all-nodes, S clear (RFC 4861 §7.2.4).
NA_DAD = bytes.fromhex(
    "333300000001"  # Ethernet dst: all-nodes
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "86dd 60000000 0020 3a ff"  # IPv6, payload 32, ICMPv6, hop limit 255
    "fe800000000000000000000000000001"  # src fe80::1
    "ff020000000000000000000000000001"  # dst ff02::1
    "88 00 2444"  # NA, code 0, checksum
    "a0000000"  # flags R|O (no S)
    "fe800000000000000000000000000001"  # target fe80::1
    "0201 0a58a9fe0101"  # TLLA = gateway MAC
)

# SPEC "IPv6 default route": the RA answering the seed VM's RS (ra: true, MTU 1400).
RA_TO_SEED = bytes.fromhex(
    "0a580af4021a"  # Ethernet dst: the RS's Ethernet src
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "86dd 60000000"  # IPv6
    "0020"  # payload length 32
    "3a ff"  # ICMPv6, hop limit 255
    "fe800000000000000000000000000001"  # src fe80::1 (link-local, RFC 4861 §4.2)
    "fe80000000000000 0858 0aff fef4 021a"  # dst: the RS source
    "86"  # type 134 Router Advertisement
    "00"  # code 0
    "5fa2"  # checksum
    "40"  # cur hop limit 64
    "c0"  # M=1 (addresses by DHCPv6), O=1 (other configuration by DHCPv6), prf medium
    "0708"  # router lifetime 1800 s (> 0: a default router)
    "00000000"  # reachable time: unspecified
    "00000000"  # retrans timer: unspecified
    "0101 0a58a9fe0101"  # Source Link-Layer Address = gateway MAC
    "0501 0000 00000578"  # MTU 1400
    # and no Prefix Information option: the only global address comes from DHCPv6
)


def handle(responder: NdpResponder, frame: bytes):
    out = responder.handle(frame, "tap0", 1000.0)
    assert out.drop is None or out.drop in DROP_REASONS
    assert out.reply is None or out.drop is None
    return out


@pytest.fixture
def ndp() -> NdpResponder:
    return NdpResponder(seed_params6(), seed_table6())


@pytest.fixture
def ndp_ra() -> NdpResponder:
    return NdpResponder(seed_params6(ra=True), seed_table6())


def scapy_agrees(frame: bytes):
    """scapy parses the reply and recomputes the same ICMPv6 checksum and lengths."""
    pkt = Ether(frame)
    rebuilt = pkt.copy()
    rebuilt[IPv6].plen = None
    rebuilt[IPv6].payload.cksum = None
    assert bytes(rebuilt) == frame
    return pkt


# Neighbor Solicitation for the gateway


def test_ns_for_gateway_exact(ndp):
    out = handle(ndp, ns_frame())
    assert (out.received, out.sent, out.drop, out.mac) == ("ns", "na", None, SEED_MAC)
    assert out.reply == NA_TO_SEED
    pkt = scapy_agrees(out.reply)
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (1, 1, 1, GW6_STR)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == "0a:58:a9:fe:01:01"
    assert pkt[IPv6].hlim == 255


def test_ns_unicast_nud_probe_answered(ndp):
    # A NUD probe goes to fe80::1 itself, Ethernet-unicast to the cached MAC; a stale MAC
    # after a migration must not stop the answer that corrects it.
    for eth_dst in ("0a:58:a9:fe:01:01", "0a:58:a9:fe:09:09"):
        out = handle(ndp, ns_frame(ip_dst=GW6_STR, eth_dst=eth_dst))
        assert out.reply == NA_TO_SEED, eth_dst
    # Without a Source Link-Layer Address option (allowed for unicast NS).
    assert handle(ndp, ns_frame(ip_dst=GW6_STR, slla=False)).reply == NA_TO_SEED


def test_dad_probe_for_gateway_is_defended(ndp):
    out = handle(ndp, ns_frame(ip_src="::"))
    assert (out.received, out.sent, out.mac) == ("ns", "na", SEED_MAC)
    assert out.reply == NA_DAD
    na = scapy_agrees(out.reply)[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (1, 0, 1)


def test_ns_for_dhcpv6_server_address(ndp):
    # The DHCPv6 server's link-local address resolves to the DHCPv6 server MAC (S|O, no R),
    # so that unicast DHCPv6 can reach it.
    out = handle(ndp, ns_frame(DHCP6_SRC_STR))
    assert out.sent == "na"
    pkt = scapy_agrees(out.reply)
    assert (pkt[Ether].src, pkt[IPv6].src, pkt[IPv6].dst) == (
        "0a:58:6d:6d:c1:50",
        DHCP6_SRC_STR,
        SEED_LL_STR,
    )
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 1, 1, DHCP6_SRC_STR)
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == "0a:58:6d:6d:c1:50"
    assert out.reply[6:12] == DHCP6_MAC


def test_ipv6_only_vm_and_unknown_mac_answered(ndp):
    out = handle(ndp, ns_frame(eth_src=V6ONLY_MAC_STR, ip_src=V6ONLY_LL_STR))
    assert out.sent == "na" and out.mac == V6ONLY_MAC and out.reply[:6] == V6ONLY_MAC
    # Any host on the port asking for the gateway is answered; `mac` only names VMs.
    out = handle(ndp, ns_frame(eth_src=UNKNOWN_MAC_STR, ip_src="fe80::42"))
    assert out.sent == "na" and out.mac is None and out.reply[:6] == UNKNOWN_MAC


def test_ethernet_padding_tolerated(ndp):
    assert handle(ndp, ns_frame() + bytes(26)).reply == NA_TO_SEED


# Never answered


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        # SPEC: hop limit under 255 means it crossed a router (RFC 4861 §7.1.1).
        (ns_frame(hlim=254), "bad_hop_limit"),
        (ns_frame(hlim=64), "bad_hop_limit"),
        (ns_frame(hlim=1), "bad_hop_limit"),
        (ns_frame(code=1), "bad_nd"),
        # A DAD probe goes to a solicited-node group, without SLLA.
        (ns_frame(ip_src="::", ip_dst=GW6_STR, eth_dst="0a:58:a9:fe:01:01"), "bad_nd"),
        # Another VM's address is never answered, nor the asker's own.
        (ns_frame(OTHER_IP6_STR), "vm_address"),
        (ns_frame(SEED_IP6_STR, ip_src="::"), "probe_for_own"),
        (ns_frame(SEED_IP6_STR), "probe_for_own"),
        # Anything else is not ours to answer.
        (ns_frame("fe80::2"), "not_proxied"),
        (ns_frame("fd00:10:244:2::99"), "not_proxied"),
        (ns_frame(SEED_LL_STR, ip_src="::"), "not_proxied"),  # the VM's own link-local DAD
        # Sent to a group that is not the target's.
        (ns_frame(ip_dst="ff02::1"), "wrong_destination"),
        (ns_frame(ip_dst="ff02::1:ff00:2"), "wrong_destination"),
        (ns_frame(ip_dst="fe80::2"), "wrong_destination"),
        # A VM using fe80::1 as its own source claims the gateway's address.
        (ns_frame(ip_src=GW6_STR), "gateway_claimed"),
    ],
)
def test_ns_dropped(ndp, frame, reason):
    out = handle(ndp, frame)
    assert (out.received, out.drop, out.reply, out.mac) == ("ns", reason, None, SEED_MAC)


def test_bad_checksum_dropped(ndp):
    # The type of a message whose checksum fails is not trusted: received "icmpv6".
    out = handle(ndp, ns_frame(cksum=0x1234))
    assert (out.received, out.drop, out.reply, out.mac) == (
        "icmpv6",
        "bad_checksum",
        None,
        SEED_MAC,
    )


def test_ns_structural_checks(ndp):
    frame = bytearray(ns_frame())
    frame[62] = 0xFF  # target made multicast (ff80::1)
    assert handle(ndp, _refit(frame)).drop == "bad_nd"
    frame = bytearray(ns_frame())
    frame[79] = 0  # option length 0 (RFC 4861 §7.1.1)
    assert handle(ndp, _refit(frame)).drop == "bad_nd"
    frame = bytearray(ns_frame())
    frame[79] = 2  # option running past the message
    assert handle(ndp, _refit(frame)).drop == "bad_nd"
    frame = bytearray(ns_frame() + b"\x01")  # a lone byte after the option
    assert handle(ndp, _refit(frame)).drop == "bad_nd"
    # An NS shorter than its 24 bytes.
    frame = ns_frame(slla=False, ip_dst=GW6_STR)
    assert handle(ndp, _refit(bytearray(frame[:-4]))).drop == "bad_nd"


def _refit(frame: bytearray) -> bytes:
    """After an edit: payload length = the rest of the frame, ICMPv6 checksum recomputed by
    scapy (the edit itself is what the test is about)."""
    pkt = Ether(bytes(frame[:54])) / Raw(bytes(frame[54:]))
    pkt[IPv6].plen = len(frame) - 54
    ip = IPv6(bytes(pkt[IPv6])[:40])
    message = bytearray(frame[54:])
    message[2:4] = b"\x00\x00"
    icmp = ICMPv6Unknown(bytes(message))
    icmp.cksum = None
    return bytes(Ether(bytes(frame[:14])) / ip / icmp)


def test_every_truncated_prefix_is_dropped(ndp_ra):
    for frame in (ns_frame(), ns_frame(ip_src="::"), rs_frame(), na_frame()):
        for n in range(len(frame)):
            out = handle(ndp_ra, frame[:n])
            assert out.reply is None and out.drop in DROP_REASONS, (n, out)


def test_not_icmpv6(ndp):
    assert handle(ndp, dhcp6_request("solicit")).drop == "not_icmpv6"
    assert handle(ndp, bytes(14)).drop == "bad_ethertype"
    assert handle(ndp, b"\x00" * 5).drop == "truncated"


def test_other_icmpv6_types_unsupported(ndp):
    echo = bytes(
        Ether(src=SEED_MAC_STR, dst="0a:58:a9:fe:01:01")
        / IPv6(src=SEED_LL_STR, dst=GW6_STR)
        / ICMPv6EchoRequest()
    )
    out = handle(ndp, echo)
    assert (out.received, out.drop, out.mac) == ("icmpv6", "unsupported_message", SEED_MAC)


# Router Solicitation -> Router Advertisement


def test_rs_answered_with_ra_exact(ndp_ra):
    out = handle(ndp_ra, rs_frame())
    assert (out.received, out.sent, out.drop, out.mac) == ("rs", "ra", None, SEED_MAC)
    assert out.reply == RA_TO_SEED
    pkt = scapy_agrees(out.reply)
    ra = pkt[ICMPv6ND_RA]
    assert (ra.M, ra.O, ra.chlim, ra.routerlifetime) == (1, 1, 64, 1800)
    assert pkt[ICMPv6NDOptSrcLLAddr].lladdr == "0a:58:a9:fe:01:01"
    assert pkt[ICMPv6NDOptMTU].mtu == 1400
    assert ICMPv6NDOptPrefixInfo not in pkt  # SPEC: no Prefix Information option


def test_rs_from_unspecified_answered_to_all_nodes(ndp_ra):
    out = handle(ndp_ra, rs_frame(ip_src="::"))
    assert out.reply[:6] == bytes.fromhex("333300000001")
    assert scapy_agrees(out.reply)[IPv6].dst == "ff02::1"
    assert out.reply == build_ra(seed_params6(ra=True))  # the periodic RA is the same frame


def test_rs_unicast_to_gateway_answered(ndp_ra):
    frame = rs_frame(ip_dst=GW6_STR)
    assert handle(ndp_ra, frame).reply == RA_TO_SEED


def test_rs_without_ra_is_dropped(ndp):
    out = handle(ndp, rs_frame())
    assert (out.received, out.drop, out.reply, out.mac) == ("rs", "ra_disabled", None, SEED_MAC)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (rs_frame(hlim=254), "bad_hop_limit"),
        (rs_frame(hlim=1), "bad_hop_limit"),
        (rs_frame(ip_dst="ff02::1"), "wrong_destination"),
        (rs_frame(ip_dst="fe80::2"), "wrong_destination"),
    ],
)
def test_rs_dropped(ndp_ra, frame, reason):
    assert handle(ndp_ra, frame).drop == reason


def test_rs_from_unspecified_with_slla_is_invalid(ndp_ra):
    # RFC 4861 §6.1.1: no SLLA option when the source is ::.
    frame = bytes(
        Ether(src=SEED_MAC_STR, dst="33:33:00:00:00:02")
        / IPv6(src="::", dst="ff02::2", hlim=255, nh=58)
        / Raw(bytes.fromhex("8500 0000 00000000 0101") + SEED_MAC)
    )
    frame = _refit(bytearray(frame))
    assert handle(ndp_ra, frame).drop == "bad_nd"


def test_ra_without_mtu_and_other_lifetime():
    params = GatewayParams(ra=True, mtu=None, ra_router_lifetime=600, ra_interval=60)
    frame = build_ra(params)
    pkt = scapy_agrees(frame)
    assert pkt[ICMPv6ND_RA].routerlifetime == 600
    assert ICMPv6NDOptMTU not in pkt
    assert len(frame) == 14 + 40 + 16 + 8


@pytest.mark.parametrize(
    "overrides",
    [
        dict(mtu=1000),  # IPv6 needs 1280 (RFC 8200 §5)
        dict(ra_interval=2),  # MaxRtrAdvInterval 4..1800 (RFC 4861 §6.2.1)
        dict(ra_interval=3600),
        dict(ra_router_lifetime=0),  # SPEC: router lifetime > 0
        dict(ra_router_lifetime=100),  # under MaxRtrAdvInterval
        dict(ra_router_lifetime=9001),
    ],
)
def test_bad_ra_configuration_fails_at_construction(overrides):
    with pytest.raises(ValueError):
        NdpResponder(seed_params6(ra=True, **overrides), seed_table6())
    # With RAs off the same parameters are not an error (IPv4-only deployments).
    NdpResponder(seed_params6(ra=False, **overrides), seed_table6())


def test_ra_delay_is_between_min_and_max_interval():
    params = GatewayParams(ra_interval=200)
    assert ra_delay(params, 0.0) == pytest.approx(66)  # MinRtrAdvInterval = 0.33 x Max
    assert ra_delay(params, 0.999) < 200
    assert ra_delay(GatewayParams(ra_interval=8), 0.0) == pytest.approx(6)


# Messages a VM must not send, and NAs it may


def test_ra_from_vm_dropped(ndp_ra):
    out = handle(ndp_ra, ra_frame())
    assert (out.received, out.drop, out.reply, out.mac) == ("ra", "ra_from_vm", None, SEED_MAC)


def test_redirect_from_vm_dropped(ndp):
    out = handle(ndp, redirect_frame())
    assert (out.received, out.drop, out.reply) == ("redirect", "redirect_from_vm", None)


def test_unsolicited_na_from_vm_is_taken_without_answer(ndp):
    out = handle(ndp, na_frame())
    assert (out.received, out.reply, out.drop, out.mac) == ("na", None, None, SEED_MAC)
    out = handle(ndp, na_frame(eth_src=UNKNOWN_MAC_STR, target="fe80::42"))
    assert (out.received, out.drop, out.mac) == ("na", None, None)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (na_frame(GW6_STR), "gateway_claimed"),
        (na_frame(DHCP6_SRC_STR), "gateway_claimed"),
        (na_frame(hlim=64), "bad_hop_limit"),
        (na_frame(solicited=1), "bad_nd"),  # S set toward a multicast destination
        (na_frame("ff02::5", ip_src=SEED_LL_STR), "bad_nd"),  # multicast target
    ],
)
def test_na_dropped(ndp, frame, reason):
    out = handle(ndp, frame)
    assert (out.received, out.drop, out.reply) == ("na", reason, None)


def test_vm_address_never_answered_even_when_a_pool_holds_it():
    table = seed_table6(pool6=True)
    binding = table.allocate6(b"\x00\x03\x00\x01" + UNKNOWN_MAC, 1)
    ndp = NdpResponder(seed_params6(), table)
    frame = ns_frame(str(ipaddress.IPv6Address(binding.ipv6)))
    assert handle(ndp, frame).drop == "vm_address"


def test_empty_table_still_answers_the_gateway():
    ndp = NdpResponder(GatewayParams(), BindingTable())
    out = handle(ndp, ns_frame())
    assert out.reply == NA_TO_SEED and out.mac is None
    assert handle(ndp, ns_frame(SEED_IP6_STR)).drop == "not_proxied"


def test_other_gateway_address():
    gw = bytes.fromhex("fe800000000000000000000000000abc")
    ndp = NdpResponder(GatewayParams(gateway_ipv6=gw), BindingTable())
    out = handle(ndp, ns_frame("fe80::abc"))
    assert out.sent == "na" and out.reply[22:38] == gw and out.reply[62:78] == gw
    assert handle(ndp, ns_frame()).drop == "not_proxied"
    assert out.reply[6:12] == GW_MAC
