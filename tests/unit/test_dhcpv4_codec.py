"""The DHCPv4 codec (RFC 2131 §2, RFC 2132, RFC 3396, RFC 3397, RFC 3442) and IPv4/UDP framing."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from protocols.dhcpv4.codec import (
    DhcpMessage,
    decode_classless_routes,
    decode_dhcpv4,
    decode_domain_search,
    decode_options,
    decode_udp4,
    encode_classless_routes,
    encode_dhcpv4,
    encode_domain_search,
    encode_udp4_frame,
)
from protocols.dhcpv4.constants import (
    DHCPDISCOVER,
    DHCPREQUEST,
    MESSAGE_TYPE_NAMES,
    OPT_CLASSLESS_ROUTES,
    OPT_DOMAIN_SEARCH,
    OPT_END,
    OPT_MESSAGE_TYPE,
    OPT_SERVER_ID,
)
from protocols.wire import MalformedPacket
from tests.helpers import GW_IP, GW_MAC, SEED_IP, SEED_MAC, dhcp_request

# A DISCOVER as the seed VM's NetworkManager sends it, the BOOTP part only.
DISCOVER = (
    bytes.fromhex(
        "01"  # op BOOTREQUEST
        "01"  # htype Ethernet
        "06"  # hlen
        "00"  # hops
        "2a2b2c2d"  # xid
        "0003"  # secs 3
        "8000"  # flags: broadcast
        "00000000"  # ciaddr
        "00000000"  # yiaddr
        "00000000"  # siaddr
        "00000000"  # giaddr
        "0a580af4021a"  # chaddr: the VM MAC ...
    )
    + bytes(10)  # ... padded to 16 bytes
    + bytes(64)  # sname
    + bytes(128)  # file
    + bytes.fromhex(
        "63825363"  # magic cookie
        "350101"  # 53 message type: DHCPDISCOVER
        "3d07010a580af4021a"  # 61 client id: type 1 + MAC
        "0c06 6665646f7261"  # 12 hostname "fedora"
        "370401030f79"  # 55 parameter request list: 1 3 15 121
        "3902 0240"  # 57 max message size 576
        "00"  # pad
        "ff"  # END
    )
)


def test_decode_discover_vector():
    msg = decode_dhcpv4(DISCOVER)
    assert (msg.op, msg.htype, msg.hlen, msg.hops) == (1, 1, 6, 0)
    assert (msg.xid, msg.secs, msg.flags) == (0x2A2B2C2D, 3, 0x8000)
    assert msg.ciaddr == msg.yiaddr == msg.siaddr == msg.giaddr == bytes(4)
    assert msg.chaddr == SEED_MAC + bytes(10)
    assert msg.client_mac == SEED_MAC
    assert list(msg.options) == [53, 61, 12, 55, 57]  # pad skipped, END stops
    assert msg.message_type() == DHCPDISCOVER
    assert msg.client_id() == b"\x01" + SEED_MAC
    assert msg.hostname() == "fedora"
    assert msg.parameter_request_list() == bytes((1, 3, 15, 121))
    assert msg.max_message_size() == 576
    assert msg.requested_ip() is None and msg.server_id() is None and msg.lease_time() is None


def test_round_trip_is_byte_exact_for_a_canonical_message():
    msg = decode_dhcpv4(DISCOVER)
    encoded = encode_dhcpv4(msg)
    # The pad option is not kept; everything else is identical, then zero padding to 300.
    canonical = DISCOVER.replace(bytes.fromhex("024000ff"), bytes.fromhex("0240ff"))
    assert encoded == canonical + bytes(300 - len(canonical))
    assert decode_dhcpv4(encoded) == msg


def test_unknown_options_survive_a_round_trip():
    options = {
        53: b"\x03",
        82: b"\x01\x04abcd\x02\x02xy",  # relay agent information (RFC 3046)
        224: b"site-specific",  # private use (RFC 2132 §1... RFC 3942)
        250: b"",  # zero-length value
        50: SEED_IP,
    }
    msg = DhcpMessage(xid=7, chaddr=SEED_MAC + bytes(10), options=options)
    back = decode_dhcpv4(encode_dhcpv4(msg))
    assert back == msg
    assert list(back.options) == [53, 82, 224, 250, 50]  # order kept
    # scapy sees the same unknown option bytes.
    opts = dict(o for o in DHCP(encode_dhcpv4(msg)[240:]).options if isinstance(o, tuple))
    assert opts[224] == b"site-specific"


def test_repeated_options_are_concatenated():
    # RFC 3396 §5: instances of one option are concatenated in order.
    payload = DISCOVER[:240] + bytes.fromhex(
        "350103"  # 53 DHCPREQUEST
        "7704 03616263"  # 119 part 1: "\x03abc"
        "0c02 6865"  # 12 "he" (interleaved)
        "7701 00"  # 119 part 2: root label
        "ff"
    )
    msg = decode_dhcpv4(payload)
    assert msg.options[OPT_DOMAIN_SEARCH] == b"\x03abc\x00"
    assert list(msg.options) == [53, 119, 12]
    assert decode_domain_search(msg.options[OPT_DOMAIN_SEARCH]) == ["abc"]


def test_long_options_are_split_and_rejoined():
    value = bytes(range(256)) + bytes(44)  # 300 bytes: more than one option can hold
    msg = DhcpMessage(options={53: b"\x01", 43: value})
    encoded = encode_dhcpv4(msg)
    assert encoded[240:246] == bytes.fromhex("3501012bff00")  # 53, then 43 len 255
    assert encoded[243 + 2 + 255 : 243 + 2 + 255 + 2] == bytes((43, 45))  # second instance
    assert decode_dhcpv4(encoded).options[43] == value


def test_bytes_after_end_are_ignored_and_end_is_optional():
    base = DISCOVER[:240] + bytes.fromhex("350101")
    assert decode_dhcpv4(base + b"\xff" + b"\x0c\x05junk!").options == {53: b"\x01"}
    assert decode_dhcpv4(base).options == {53: b"\x01"}  # no END at all
    assert decode_dhcpv4(base + bytes(50)).options == {53: b"\x01"}  # only pads


@pytest.mark.parametrize(
    "tail",
    [
        "35",  # code without a length byte
        "3501",  # length 1, value missing
        "350101 0c09 666564",  # 12 claims 9 bytes, 3 present
        "350101 00 00 37",  # code at the very end
    ],
)
def test_broken_option_framing(tail):
    with pytest.raises(MalformedPacket) as info:
        decode_dhcpv4(DISCOVER[:240] + bytes.fromhex(tail))
    assert info.value.reason == "bad_options"


@pytest.mark.parametrize(
    "end, expected",
    [
        (3, {53: b"\x01"}),
        (10, {53: b"\x01", 12: b"hello"}),
        (4, "bad_options"),  # 12's length byte lies past `end`, though inside the data
        (9, "bad_options"),  # 12 runs one byte past `end`
    ],
)
def test_options_are_bounded_by_end_not_by_the_data(end, expected):
    data = bytes.fromhex("350101 0c05") + b"hello" + bytes.fromhex("3501ff")
    if isinstance(expected, dict):
        assert decode_options(data, 0, end) == expected
        return
    with pytest.raises(MalformedPacket) as info:
        decode_options(data, 0, end)
    assert info.value.reason == expected


def test_truncated_and_cookie_errors():
    for n in (0, 1, 100, 235):
        with pytest.raises(MalformedPacket) as info:
            decode_dhcpv4(DISCOVER[:n])
        assert info.value.reason == "truncated"
    for n in (236, 237, 239):
        with pytest.raises(MalformedPacket) as info:
            decode_dhcpv4(DISCOVER[:n])
        assert info.value.reason == "no_magic_cookie"
    # Plain BOOTP (RFC 951): 64 bytes of vendor area without the cookie.
    with pytest.raises(MalformedPacket) as info:
        decode_dhcpv4(DISCOVER[:236] + bytes(64))
    assert info.value.reason == "no_magic_cookie"


def test_accessors_return_none_for_bad_values():
    msg = DhcpMessage(
        htype=6,
        options={
            53: b"\x01\x01",
            50: b"\x0a\xf4\x02",
            54: b"",
            51: b"\x00",
            61: b"\x01",
            57: b"\x01\x00",
        },
    )
    assert msg.message_type() is None
    assert msg.requested_ip() is None
    assert msg.server_id() is None
    assert msg.lease_time() is None
    assert msg.client_id() is None
    assert msg.max_message_size() is None  # 256 < 576
    assert msg.hostname() is None
    assert msg.client_mac is None  # htype 6 is not Ethernet
    assert DhcpMessage(options={12: b"\xff\xfe"}).hostname() is None


def test_encode_pads_to_300_bytes():
    encoded = encode_dhcpv4(DhcpMessage(options={53: b"\x01"}))
    assert len(encoded) == 300
    assert encoded[240:244] == bytes((53, 1, 1, OPT_END))
    assert encoded[244:] == bytes(56)
    big = DhcpMessage(options={53: b"\x01", 43: bytes(100)})
    assert len(encode_dhcpv4(big)) == 240 + 3 + 102 + 1  # already long enough: no padding


def test_encode_refuses_pad_and_end_codes():
    with pytest.raises(ValueError):
        encode_dhcpv4(DhcpMessage(options={0: b"x"}))
    with pytest.raises(ValueError):
        encode_dhcpv4(DhcpMessage(options={255: b""}))


def test_scapy_parses_what_we_encode():
    msg = DhcpMessage(
        xid=0x01020304,
        flags=0x8000,
        ciaddr=SEED_IP,
        chaddr=SEED_MAC + bytes(10),
        options={OPT_MESSAGE_TYPE: bytes((DHCPREQUEST,)), OPT_SERVER_ID: GW_IP, 50: SEED_IP},
    )
    bootp = BOOTP(encode_dhcpv4(msg))
    assert bootp.xid == 0x01020304 and bootp.ciaddr == "10.244.2.26"
    assert bootp.chaddr[:6] == SEED_MAC
    assert bootp[DHCP].options[:3] == [
        ("message-type", 3),
        ("server_id", "169.254.1.1"),
        ("requested_addr", "10.244.2.26"),
    ]


def test_we_decode_what_scapy_builds():
    frame = dhcp_request(
        "request", options=[("requested_addr", "10.244.2.26"), ("server_id", "169.254.1.1")]
    )
    _src, _dst, sport, dport, payload = decode_udp4(frame)
    assert (sport, dport) == (68, 67)
    msg = decode_dhcpv4(payload)
    assert msg.message_type() == DHCPREQUEST
    assert msg.requested_ip() == SEED_IP and msg.server_id() == GW_IP
    assert msg.client_mac == SEED_MAC


def test_message_type_names():
    assert MESSAGE_TYPE_NAMES[1] == "DHCPDISCOVER"
    assert MESSAGE_TYPE_NAMES[8] == "DHCPINFORM"
    assert [MESSAGE_TYPE_NAMES[i] for i in range(1, 9)] == [
        "DHCPDISCOVER",
        "DHCPOFFER",
        "DHCPREQUEST",
        "DHCPDECLINE",
        "DHCPACK",
        "DHCPNAK",
        "DHCPRELEASE",
        "DHCPINFORM",
    ]


# Option 119 (RFC 3397) and option 121 (RFC 3442).


def test_domain_search_encoding():
    assert encode_domain_search(["svc.cluster.local", "cluster.local."]) == bytes.fromhex(
        "03 737663"  # "svc"
        "07 636c7573746572"  # "cluster"
        "05 6c6f63616c"  # "local"
        "00"  # root
        "07 636c7573746572"  # "cluster" (no compression)
        "05 6c6f63616c"  # "local"
        "00"  # root
    )
    for bad in (["a..b"], ["x" * 64 + ".com"]):
        with pytest.raises(ValueError):
            encode_domain_search(bad)


def test_domain_search_decoding_follows_pointers():
    # RFC 3397 §2 example: eng.apple.com, marketing.apple.com with a pointer to offset 4.
    data = bytes.fromhex("03656e67 056170706c65 03636f6d 00 096d61726b6574696e67 c004")
    assert decode_domain_search(data) == ["eng.apple.com", "marketing.apple.com"]
    assert decode_domain_search(b"\x03ab") is None
    assert decode_domain_search(b"\xc0\x00") is None  # pointer loop


def test_classless_routes_encoding():
    routes = [
        (GW_IP, 32, bytes(4)),  # 169.254.1.1/32 on-link
        (bytes(4), 0, GW_IP),  # default via 169.254.1.1
    ]
    encoded = encode_classless_routes(routes)
    assert encoded == bytes.fromhex(
        "20 a9fe0101 00000000"  # /32, 4 significant octets, router 0.0.0.0
        "00 a9fe0101"  # /0, no octets, router 169.254.1.1
    )
    assert decode_classless_routes(encoded) == routes
    # RFC 3442 §3 examples: 10.17.0.0/16 -> 2 octets; 10.27.129.0/24 -> 3; 10.229.0.128/25 -> 4.
    assert encode_classless_routes([(bytes((10, 17, 0, 0)), 16, GW_IP)])[:3] == b"\x10\x0a\x11"
    assert (
        encode_classless_routes([(bytes((10, 27, 129, 0)), 24, GW_IP)])[:4] == b"\x18\x0a\x1b\x81"
    )
    assert len(encode_classless_routes([(bytes((10, 229, 0, 128)), 25, GW_IP)])) == 9
    assert decode_classless_routes(b"\x21" + bytes(8)) is None
    assert decode_classless_routes(b"\x18\x0a\x1b") is None
    with pytest.raises(ValueError):
        encode_classless_routes([(bytes(4), 33, GW_IP)])


def test_scapy_reads_our_option_121():
    value = encode_classless_routes([(GW_IP, 32, bytes(4)), (bytes(4), 0, GW_IP)])
    dhcp = DHCP(bytes((53, 1, 2, OPT_CLASSLESS_ROUTES, len(value))) + value + b"\xff")
    assert dhcp.options[1] == (
        "classless_static_routes",
        ["169.254.1.1/32:0.0.0.0", "0.0.0.0/0:169.254.1.1"],
    )


# IPv4/UDP framing.


def _frame(**kw) -> bytes:
    return dhcp_request("discover", **kw)


def test_decode_udp4_scapy_frame():
    src, dst, sport, dport, payload = decode_udp4(_frame())
    assert (src, dst, sport, dport) == (bytes(4), b"\xff" * 4, 68, 67)
    assert decode_dhcpv4(payload).message_type() == DHCPDISCOVER


def test_decode_udp4_tolerates_padding_and_ip_options():
    frame = _frame()
    assert decode_udp4(frame + bytes(40))[4] == decode_udp4(frame)[4]
    # IPv4 with a 4-byte option (IHL 6): router alert, RFC 2113.
    with_opt = bytes(
        Ether(dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255", options=b"\x94\x04\x00\x00")
        / UDP(sport=68, dport=67)
        / b"hello"
    )
    assert with_opt[14] == 0x46
    assert decode_udp4(with_opt)[4] == b"hello"


def _patch_ip(frame: bytes, offset: int, value: bytes, fix_checksum: bool = True) -> bytes:
    """Change bytes of the IPv4 header at `offset` (from its start), then redo its checksum."""
    frame = frame[: 14 + offset] + value + frame[14 + offset + len(value) :]
    if fix_checksum:
        ip = IP(frame[14:])
        del ip.chksum
        frame = frame[:14] + bytes(ip)[:20] + frame[34:]
    return frame


def test_decode_udp4_errors():
    frame = _frame()

    def reason(f: bytes) -> str:
        with pytest.raises(MalformedPacket) as info:
            decode_udp4(f)
        return info.value.reason

    assert reason(frame[:33]) == "truncated"  # IPv4 header cut
    assert reason(frame[:-1]) == "truncated"  # total length says more than there is
    assert reason(_patch_ip(frame, 0, b"\x65")) == "bad_ip_header"  # version 6
    assert reason(_patch_ip(frame, 0, b"\x44")) == "bad_ip_header"  # IHL 4
    assert reason(_patch_ip(frame, 2, b"\x00\x10")) == "bad_ip_header"  # total length < IHL
    assert reason(_patch_ip(frame, 10, b"\x12\x34", False)) == "bad_checksum"
    assert reason(_patch_ip(frame, 8, b"\x3f", False)) == "bad_checksum"  # TTL changed only
    assert reason(_patch_ip(frame, 6, b"\x20\x00")) == "fragment"  # MF
    assert reason(_patch_ip(frame, 6, b"\x00\x10")) == "fragment"  # offset 16
    assert reason(_patch_ip(frame, 9, b"\x06")) == "not_udp"  # TCP
    udp_len = frame[38:40]
    assert reason(frame[:38] + b"\x00\x07" + frame[40:]) == "bad_ip_header"  # UDP length < 8
    longer = (int.from_bytes(udp_len, "big") + 1).to_bytes(2, "big")
    assert reason(frame[:38] + longer + frame[40:]) == "truncated"
    # A flipped payload byte breaks the UDP checksum, noticed only when asked to verify it.
    flipped = frame[:-1] + bytes((frame[-1] ^ 1,))
    with pytest.raises(MalformedPacket) as e:
        decode_udp4(flipped, verify_udp=True)
    assert e.value.reason == "bad_checksum"
    assert decode_udp4(flipped)[4][-1] == frame[-1] ^ 1


def test_decode_udp4_accepts_partial_checksum_from_offload():
    """A guest's kernel UDP socket with checksum offload: the field holds only the
    pseudo-header sum when the frame reaches a packet socket. Still served."""
    frame = bytearray(_frame())
    frame[40:42] = b"\x12\x34"  # not the real checksum
    assert decode_udp4(bytes(frame))[3] == 67


def test_decode_udp4_accepts_zero_udp_checksum():
    frame = _frame(udp_checksum=0)
    assert frame[40:42] == b"\x00\x00"
    flipped = frame[:-1] + bytes((frame[-1] ^ 1,))  # not covered by any checksum
    assert decode_udp4(flipped)[4][-1] == frame[-1] ^ 1


def test_dont_fragment_is_not_a_fragment():
    frame = _patch_ip(_frame(), 6, b"\x40\x00")
    assert decode_udp4(frame)[3] == 67


def test_encode_udp4_frame_checksums_per_scapy():
    payload = encode_dhcpv4(DhcpMessage(op=2, yiaddr=SEED_IP, options={53: b"\x02"}))
    frame = encode_udp4_frame(SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68, payload, ttl=64)
    pkt = Ether(frame)
    assert pkt[Ether].dst == "0a:58:0a:f4:02:1a" and pkt[Ether].type == 0x0800
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].ttl, pkt[IP].proto) == (
        "169.254.1.1",
        "10.244.2.26",
        64,
        17,
    )
    assert pkt[IP].len == 20 + 8 + len(payload) and pkt[UDP].len == 8 + len(payload)
    # scapy recomputes both checksums from scratch and gets ours.
    rebuilt = pkt.copy()
    rebuilt[IP].chksum = None
    rebuilt[UDP].chksum = None
    assert bytes(rebuilt) == frame
    assert decode_udp4(frame) == (GW_IP, SEED_IP, 67, 68, payload)


def test_encode_udp4_frame_sends_zero_checksum_as_ffff():
    # Choose a 2-byte payload that makes the one's complement sum 0xFFFF, i.e. checksum 0;
    # RFC 768 says it is then transmitted as all ones (0 would mean "no checksum").
    probe = encode_udp4_frame(SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68, b"\x00\x00")
    word = int.from_bytes(probe[40:42], "big")
    frame = encode_udp4_frame(SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68, word.to_bytes(2, "big"))
    assert frame[40:42] == b"\xff\xff"
    assert decode_udp4(frame)[4] == word.to_bytes(2, "big")
    rebuilt = Ether(frame)
    rebuilt[UDP].chksum = None
    assert bytes(rebuilt) == frame


def test_encode_udp4_frame_odd_payload():
    frame = encode_udp4_frame(SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68, b"abc")
    rebuilt = Ether(frame)
    rebuilt[IP].chksum = None
    rebuilt[UDP].chksum = None
    assert bytes(rebuilt) == frame
