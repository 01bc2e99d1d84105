"""The DHCPv6 codec (RFC 8415 §8, §21; RFC 3646; RFC 4704): vectors, round trips, framing."""

from __future__ import annotations

import pytest
from scapy.layers import dhcp6 as s6

from protocols.dhcpv6.codec import (
    Dhcpv6Message,
    IaAddress,
    decode_dhcpv6,
    decode_domain_name,
    decode_ia_na,
    decode_options6,
    encode_dhcpv6,
    encode_domain_name,
    encode_ia_na,
    encode_iaaddr,
    encode_option6,
    encode_status,
)
from protocols.dhcpv6.constants import (
    OPT_CLIENT_FQDN,
    OPT_IA_NA,
    OPT_SERVERID,
    SOLICIT,
    STATUS_NO_ADDRS_AVAIL,
)
from protocols.params import duid_ll
from protocols.wire import MalformedPacket
from tests.helpers import DHCP6_OFF, SEED_IP6, dhcp6_request

# A SOLICIT from the seed VM, field by field.
SOLICIT_PAYLOAD = bytes.fromhex(
    "01"  # msg-type SOLICIT
    "123456"  # transaction-id
    "0001 000a 0003 0001 0a580af4021a"  # Client Identifier: DUID-LL of the VM's MAC
    "0008 0002 0000"  # Elapsed Time 0
    "0006 0004 0017 0018"  # Option Request: 23 (DNS), 24 (search)
    "0003 000c 0a0b0c0d 00000000 00000000"  # IA_NA: IAID 0a0b0c0d, T1 0, T2 0, no address
)


def reason(fn, *args) -> str:
    with pytest.raises(MalformedPacket) as exc:
        fn(*args)
    return exc.value.reason


def test_spec_server_id_vector():
    # SPEC "Test vectors": server id for MAC 00:00:00:00:10:02.
    option = encode_option6(OPT_SERVERID, duid_ll(bytes.fromhex("000000001002")))
    assert option == bytes.fromhex("0002 000a 0003 0001 000000001002")


def test_spec_fqdn_vector_is_the_name_alone():
    # SPEC "Test vectors": "ovn.org" encodes as 0027 0009 03 6f766e 03 6f7267 00. Its length
    # (9) is exactly the DNS wire form of the name: the vector carries no flags byte (it is
    # OVN's internal action encoding). On the wire RFC 4704 §4 puts the flags byte first,
    # so the option lmdp sends for that name is 10 bytes long.
    assert encode_option6(OPT_CLIENT_FQDN, encode_domain_name("ovn.org")) == bytes.fromhex(
        "0027 0009 03 6f766e 03 6f7267 00"
    )
    wire = encode_option6(OPT_CLIENT_FQDN, b"\x04" + encode_domain_name("ovn.org"))
    assert wire == bytes.fromhex("0027 000a 04 03 6f766e 03 6f7267 00")
    parsed = s6.DHCP6OptClientFQDN(wire)
    assert (parsed.flags, parsed.fqdn) == (4, b"ovn.org.")


def test_decode_solicit_vector():
    msg = decode_dhcpv6(SOLICIT_PAYLOAD)
    assert (msg.msg_type, msg.xid) == (SOLICIT, 0x123456)
    assert [code for code, _ in msg.options] == [1, 8, 6, 3]
    assert msg.client_id() == bytes.fromhex("00030001 0a580af4021a")
    assert msg.server_id() is None and not msg.rapid_commit()
    (ia,) = msg.ia_nas()
    assert (ia.iaid, ia.t1, ia.t2, ia.addresses, ia.status) == (0x0A0B0C0D, 0, 0, [], None)
    assert encode_dhcpv6(msg) == SOLICIT_PAYLOAD


def test_scapy_built_messages_round_trip():
    for mtype in ("solicit", "request", "renew", "rebind", "confirm", "release", "decline"):
        frame = dhcp6_request(
            mtype,
            iaids=(1, 2),
            addresses=("fd00:10:244:2::1a",),
            rapid_commit=True,
            fqdn=(1, "fedora"),
        )
        payload = frame[DHCP6_OFF:]
        msg = decode_dhcpv6(payload)
        assert encode_dhcpv6(msg) == payload
        ias = msg.ia_nas()
        assert [ia.iaid for ia in ias] == [1, 2]  # repeated options kept, in order
        assert [a.address for a in ias[0].addresses] == [SEED_IP6]
        assert msg.rapid_commit()
        assert msg.client_fqdn() == (1, bytes.fromhex("06 6665646f7261 00"))


def test_unknown_options_survive_a_round_trip():
    payload = SOLICIT_PAYLOAD + bytes.fromhex("fff0 0003 616263") + bytes.fromhex("0059 0000")
    msg = decode_dhcpv6(payload)
    assert msg.get(0xFFF0) == b"abc" and msg.get(0x59) == b""
    assert encode_dhcpv6(msg) == payload


def test_every_truncated_prefix_is_refused_or_a_shorter_message():
    payload = dhcp6_request("request", addresses=("fd00::1",), fqdn=(0, "a"))[DHCP6_OFF:]
    boundaries = set()
    for n in range(len(payload)):
        try:
            msg = decode_dhcpv6(payload[:n])
        except MalformedPacket as exc:
            assert exc.reason in {"truncated", "bad_options"}, n
            continue
        boundaries.add(n)
        assert encode_dhcpv6(msg) == payload[:n]  # cut at an option boundary
    assert min(boundaries) == 4


def test_broken_framing():
    assert reason(decode_dhcpv6, b"\x01\x00\x00") == "truncated"
    assert reason(decode_dhcpv6, SOLICIT_PAYLOAD + b"\x00\x01\x00") == "bad_options"
    assert reason(decode_dhcpv6, SOLICIT_PAYLOAD + b"\x00\x01\x00\x05abcd") == "bad_options"
    # Relay messages have another header (RFC 8415 §9): not decoded here.
    assert reason(decode_dhcpv6, b"\x0c\x00" + bytes(40)) == "unsupported_message"
    assert reason(decode_dhcpv6, b"\x0d\x00" + bytes(40)) == "unsupported_message"
    with pytest.raises(MalformedPacket):
        decode_options6(b"\x00\x01\x00\x02a", 0, 5)


def test_ia_na_with_address_and_status():
    value = (
        bytes.fromhex("00000007 000006d6 00000af0")
        + encode_iaaddr(SEED_IP6, 3500, 3500)
        + encode_status(STATUS_NO_ADDRS_AVAIL, "none")
    )
    ia = decode_ia_na(value)
    assert (ia.iaid, ia.t1, ia.t2) == (7, 1750, 2800)
    assert ia.addresses == [IaAddress(SEED_IP6, 3500, 3500, [])]
    assert ia.status == (STATUS_NO_ADDRS_AVAIL, "none")
    assert encode_ia_na(7, 1750, 2800, value[12:]) == encode_option6(OPT_IA_NA, value)
    parsed = s6.DHCP6OptIA_NA(encode_option6(OPT_IA_NA, value))
    assert parsed.ianaopts[0].addr == "fd00:10:244:2::1a"
    assert parsed.ianaopts[1].statuscode == 2


def test_ia_na_bad_values_are_none_or_skipped():
    assert decode_ia_na(bytes(11)) is None
    assert decode_ia_na(bytes(12) + b"\x00\x05\x00") is None  # inner framing broken
    short_addr = encode_option6(5, bytes(20))  # IAADDR under 24 bytes: left out
    bad_inner = encode_option6(5, bytes(24) + b"\x00")  # IAADDR options broken: left out
    ia = decode_ia_na(bytes(12) + short_addr + bad_inner + encode_iaaddr(SEED_IP6, 1, 2))
    assert [a.address for a in ia.addresses] == [SEED_IP6]
    ia = decode_ia_na(bytes(12) + encode_option6(13, b"\x00\x02\xff\xfe"))
    assert ia.status == (2, "")  # not UTF-8: the code is kept
    # A message whose only IA_NA is malformed has no IA_NA.
    msg = Dhcpv6Message(SOLICIT, 1, [(OPT_IA_NA, bytes(5))])
    assert msg.ia_nas() == []


def test_accessors_return_none_for_bad_values():
    assert Dhcpv6Message(1, 0, [(1, b"\x00\x01")]).client_id() is None  # too short
    assert Dhcpv6Message(1, 0, [(1, bytes(131))]).client_id() is None  # over 130 bytes
    assert Dhcpv6Message(1, 0, [(1, bytes(130))]).client_id() == bytes(130)
    assert not Dhcpv6Message(1, 0, [(14, b"x")]).rapid_commit()
    assert Dhcpv6Message(1, 0, [(39, b"")]).client_fqdn() is None
    assert Dhcpv6Message(1, 0, [(2, b"")]).server_id() == b""


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("fedora", "06 6665646f7261"),  # partial: no root label (RFC 4704 §4.2)
        ("fedora.svc.", "06 6665646f7261 03 737663 00"),
        ("ovn.org", "03 6f766e 03 6f7267 00"),  # a dot: fully qualified
        ("", ""),
    ],
)
def test_domain_names(text, wire):
    assert encode_domain_name(text) == bytes.fromhex(wire)
    expected = text if "." not in text or text.endswith(".") else text + "."
    assert decode_domain_name(bytes.fromhex(wire)) == expected


def test_bad_domain_names():
    assert decode_domain_name(b"\xc0\x00") is None  # compression is not allowed
    assert decode_domain_name(b"\x05ab") is None
    assert decode_domain_name(b"\x01a\x00\x01b") is None  # bytes after the root label
    assert decode_domain_name(b"\x01\xff\x00") is None  # not ASCII
    with pytest.raises(ValueError):
        encode_domain_name("a" * 64 + ".example")
