"""IPv6 framing: decoders, encoders with checksums, and address helpers (RFC 8200, RFC 4443,
RFC 4291, RFC 2464). scapy builds the inputs and re-derives the checksums of our outputs."""

from __future__ import annotations

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from protocols.ipv6 import (
    ALL_DHCP_SERVERS,
    decode_icmpv6,
    decode_ipv6,
    decode_udp6,
    encode_icmpv6_frame,
    encode_udp6_frame,
    ipv6_next_header,
    multicast_mac,
    solicited_node,
)
from protocols.params import GatewayParams, duid_ll, eui64_link_local
from protocols.wire import MalformedPacket, checksum
from tests.helpers import (
    DHCP6_DUID,
    DHCP6_MAC,
    DHCP6_SRC,
    GW6,
    SEED_LL,
    SEED_LL_STR,
    SEED_MAC,
    SEED_MAC_STR,
    dhcp6_request,
    ns_frame,
)

# A UDP datagram over IPv6 from the DHCPv6 server to the seed VM, 4 bytes of payload.
UDP6_FRAME = bytes.fromhex(
    "0a580af4021a"  # Ethernet dst: the VM
    "0a586d6dc150"  # Ethernet src: DHCPv6 server MAC
    "86dd"  # ethertype IPv6
    "60000000"  # version 6, traffic class 0, flow label 0
    "000c"  # payload length 12
    "11"  # next header UDP
    "40"  # hop limit 64
    "fe80000000000000 0858 6dff fe6d c150"  # src fe80::858:6dff:fe6d:c150
    "fe80000000000000 0858 0aff fef4 021a"  # dst fe80::858:aff:fef4:21a
    "0223"  # UDP sport 547
    "0222"  # UDP dport 546
    "000c"  # UDP length 12
    "78ab"  # UDP checksum (pseudo-header + header + payload), as scapy computes it
    "07123456"  # payload: a DHCPv6 REPLY header, xid 123456
)


def reason(fn, *args) -> str:
    with pytest.raises(MalformedPacket) as exc:
        fn(*args)
    return exc.value.reason


# Addresses


def test_spec_dhcpv6_source_is_the_eui64_link_local_of_the_server_mac():
    # SPEC "Constants": fe80::858:6dff:fe6d:c150 for 0a:58:6d:6d:c1:50.
    assert eui64_link_local(DHCP6_MAC) == DHCP6_SRC
    assert eui64_link_local(SEED_MAC) == SEED_LL
    params = GatewayParams()
    assert params.dhcpv6_source == DHCP6_SRC
    assert params.dhcpv6_duid == DHCP6_DUID == duid_ll(DHCP6_MAC)


def test_derived_identity_follows_a_configured_mac():
    params = GatewayParams(dhcpv6_mac=bytes.fromhex("000000001002"))
    assert params.dhcpv6_duid == bytes.fromhex("0003 0001 000000001002")
    assert params.dhcpv6_source == bytes.fromhex("fe800000000000000200 00ff fe00 1002")
    # Explicit values are kept.
    params = GatewayParams(dhcpv6_duid=b"\x00\x02abcd", dhcpv6_source=GW6)
    assert (params.dhcpv6_duid, params.dhcpv6_source) == (b"\x00\x02abcd", GW6)


def test_solicited_node_group_and_multicast_macs():
    assert solicited_node(GW6) == bytes.fromhex("ff020000000000000000 0001 ff00 0001")
    assert solicited_node(DHCP6_SRC) == bytes.fromhex("ff02000000000000000000 01ff6dc150")
    assert multicast_mac(solicited_node(GW6)) == bytes.fromhex("3333ff000001")
    assert multicast_mac(ALL_DHCP_SERVERS) == bytes.fromhex("333300010002")


def test_ipv6_next_header():
    assert ipv6_next_header(ns_frame()) == 58
    assert ipv6_next_header(dhcp6_request("solicit")) == 17
    assert ipv6_next_header(ns_frame()[:20]) is None


# Decoders


def test_decode_ipv6_fields_and_padding():
    frame = ns_frame()
    src, dst, nh, hlim, end = decode_ipv6(frame)
    assert (src, nh, hlim, end) == (SEED_LL, 58, 255, len(frame))
    assert dst == solicited_node(GW6)
    # Ethernet padding after the payload is ignored.
    assert decode_ipv6(frame + bytes(20))[4] == len(frame)


def test_every_truncated_prefix_refused():
    frame = ns_frame()
    for n in range(len(frame)):
        assert reason(decode_icmpv6, frame[:n]) == "truncated", n
    frame = dhcp6_request("solicit")
    for n in range(len(frame)):
        assert reason(decode_udp6, frame[:n]) == "truncated", n


def test_not_version_6():
    frame = bytearray(ns_frame())
    frame[14] = 0x45
    assert reason(decode_ipv6, bytes(frame)) == "bad_ip_header"


@pytest.mark.parametrize(
    ("ext", "expected"),
    [(IPv6ExtHdrHopByHop(), "ipv6_ext_header"), (IPv6ExtHdrFragment(), "fragment")],
)
def test_extension_headers_refused(ext, expected):
    frame = bytes(
        Ether(src=SEED_MAC_STR, dst="33:33:ff:00:00:01")
        / IPv6(src=SEED_LL_STR, dst="ff02::1:ff00:1", hlim=255)
        / ext
        / ICMPv6ND_NS(tgt="fe80::1")
    )
    assert reason(decode_icmpv6, frame) == expected


def test_multicast_source_refused():
    assert reason(decode_ipv6, ns_frame(ip_src="ff02::1")) == "bad_source"


def test_icmpv6_checksum_verified():
    frame = ns_frame()
    src, dst, hlim, icmp_type, code, start, end = decode_icmpv6(frame)
    assert (icmp_type, code, hlim, end - start) == (135, 0, 255, 32)
    for at in (start + 2, start + 8, end - 1):  # checksum, target, option
        broken = bytearray(frame)
        broken[at] ^= 0x01
        assert reason(decode_icmpv6, bytes(broken)) == "bad_checksum", at
    assert reason(decode_icmpv6, ns_frame(cksum=0)) == "bad_checksum"
    assert reason(decode_icmpv6, dhcp6_request("solicit")) == "not_icmpv6"


def test_icmpv6_shorter_than_its_header():
    frame = bytes(
        Ether(src=SEED_MAC_STR, dst="33:33:00:00:00:02")
        / IPv6(src=SEED_LL_STR, dst="ff02::2", nh=58)
        / Raw(b"\x85\x00")
    )
    assert reason(decode_icmpv6, frame) == "truncated"


def test_decode_udp6():
    frame = dhcp6_request("solicit", hlim=7)
    src, dst, hlim, sport, dport, payload = decode_udp6(frame)
    assert (src, dst, hlim, sport, dport) == (SEED_LL, ALL_DHCP_SERVERS, 7, 546, 547)
    assert payload == frame[62:] and payload[0] == 1
    assert decode_udp6(frame + bytes(30))[5] == payload  # padding ignored
    assert reason(decode_udp6, ns_frame()) == "not_udp"


def test_udp6_checksum_zero_is_invalid_but_others_are_not_verified():
    # RFC 8200 §8.1: receivers discard a zero UDP checksum over IPv6.
    assert reason(decode_udp6, dhcp6_request("solicit", udp_checksum=0)) == "bad_checksum"
    # A wrong non-zero checksum passes (offloaded guests), unless asked to verify.
    frame = dhcp6_request("solicit", udp_checksum=0x1234)
    assert decode_udp6(frame)[3:5] == (546, 547)
    assert reason(decode_udp6, frame, 14, True) == "bad_checksum"
    assert decode_udp6(dhcp6_request("solicit"), 14, True)[4] == 547


def test_udp6_length_checks():
    frame = bytearray(dhcp6_request("solicit"))
    frame[58:60] = (4).to_bytes(2, "big")  # UDP length under the header
    assert reason(decode_udp6, bytes(frame)) == "bad_ip_header"
    frame[58:60] = (len(frame) - 54 + 1).to_bytes(2, "big")  # past the IPv6 payload
    assert reason(decode_udp6, bytes(frame)) == "truncated"
    # IPv6 payload length past the frame.
    frame = bytearray(dhcp6_request("solicit"))
    frame[18:20] = (len(frame) - 54 + 1).to_bytes(2, "big")
    assert reason(decode_udp6, bytes(frame)) == "truncated"


# Encoders


def test_encode_udp6_frame_exact():
    frame = encode_udp6_frame(
        SEED_MAC, DHCP6_MAC, DHCP6_SRC, SEED_LL, 547, 546, bytes.fromhex("07123456")
    )
    assert frame == UDP6_FRAME
    pkt = Ether(frame)
    rebuilt = pkt.copy()
    rebuilt[UDP].chksum = None
    assert bytes(rebuilt) == frame  # scapy derives the same checksum
    assert checksum(frame[54:], int.from_bytes(frame[22:54], "big") + 12 + 17) == 0


def test_encode_udp6_frame_never_sends_a_zero_checksum():
    # A payload whose checksum computes to 0: append its own checksum as a final word.
    head = bytes.fromhex("07000001")
    pseudo = int.from_bytes(DHCP6_SRC + SEED_LL, "big") + 17 + 14 + 547 + 546 + 14
    payload = head + checksum(head, pseudo).to_bytes(2, "big")
    frame = encode_udp6_frame(SEED_MAC, DHCP6_MAC, DHCP6_SRC, SEED_LL, 547, 546, payload)
    assert frame[60:62] == b"\xff\xff"  # RFC 8200 §8.1: 0 is sent as 0xffff
    assert decode_udp6(frame, 14, True)[5] == payload


def test_encode_icmpv6_frame_matches_scapy():
    message = bytes.fromhex("87000000 00000000") + GW6 + bytes.fromhex("0101") + SEED_MAC
    frame = encode_icmpv6_frame(
        b"\x33\x33\xff\x00\x00\x01", SEED_MAC, SEED_LL, solicited_node(GW6), message
    )
    assert frame == ns_frame()  # scapy's own NS, byte for byte
    assert frame[20:22] == b"\x3a\xff"  # next header 58, hop limit 255
    assert decode_icmpv6(frame)[3] == 135
