"""protocols.wire and protocols.ethernet: checksum, MAC text forms, Ethernet framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.ethernet import (
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    ETH_P_RARP,
    decode_ethernet,
    encode_ethernet,
)
from protocols.outcome import DROP_REASONS
from protocols.wire import (
    MalformedPacket,
    checksum,
    format_mac,
    ipv6_pseudo_header_sum,
    parse_mac,
)


def reference_checksum(data: bytes) -> int:
    """RFC 1071 §4.1, word by word with end-around carry: the slow oracle."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_checksum_rfc1071_example():
    # RFC 1071 §3 numerical example: words 0001 f203 f4f5 f6f7 sum to 0xddf2 (with carries),
    # so the checksum is its complement.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_checksum_ipv4_header_vector():
    header = bytes.fromhex(
        "4500"  # version 4, IHL 5, TOS 0
        "0073"  # total length 115
        "0000"  # identification
        "4000"  # DF, fragment offset 0
        "4011"  # TTL 64, protocol UDP
        "0000"  # checksum field zeroed for computing
        "c0a80001"  # 192.168.0.1
        "c0a800c7"  # 192.168.0.199
    )
    assert checksum(header) == 0xB861
    # Verifying a header that carries its checksum gives 0.
    assert checksum(header[:10] + b"\xb8\x61" + header[12:]) == 0


def test_checksum_edge_cases():
    # Nothing, or only zero words: the sum is +0, the checksum 0xFFFF (never 0).
    assert checksum(b"") == 0xFFFF
    assert checksum(bytes(20)) == 0xFFFF
    # A sum of 0xFFFF (-0) gives checksum 0, not 0xFFFF.
    assert checksum(b"\xff\xff") == 0
    assert checksum(b"\xff\xff\xff\xff") == 0
    assert checksum(b"\x12\x34\xed\xcb") == 0
    # Odd length: padded with a zero byte on the right, so 0xab is the word 0xab00.
    assert checksum(b"\xab") == 0xFFFF - 0xAB00
    assert checksum(b"\x00\x01\x02") == reference_checksum(b"\x00\x01\x02")


def test_checksum_initial_is_a_prefix_sum():
    # The pseudo-header trick: any even-length prefix can be passed as an integer instead.
    prefix = bytes.fromhex("0af4021aa9fe01010011012c")
    data = bytes(range(1, 40))
    assert checksum(data, int.from_bytes(prefix, "big")) == checksum(prefix + data)
    assert checksum(prefix + data) == reference_checksum(prefix + data)


@given(st.binary(max_size=1600))
def test_checksum_matches_reference(data):
    assert checksum(data) == reference_checksum(data)


@given(
    src=st.binary(min_size=16, max_size=16),
    dst=st.binary(min_size=16, max_size=16),
    next_header=st.integers(0, 255),
    data=st.binary(max_size=200),
    extra=st.sampled_from([0, 0x10000, 0xFFFF0000]),  # lengths past 16 bits (jumbograms)
)
def test_ipv6_pseudo_header_sum_matches_rfc8200_layout(src, dst, next_header, data, extra):
    # RFC 8200 §8.1: src, dst, 32-bit upper-layer length, 3 zero bytes, next header.
    length = len(data) + extra
    header = src + dst + length.to_bytes(4, "big") + bytes(3) + bytes((next_header,))
    partial = ipv6_pseudo_header_sum(src, dst, length, next_header)
    assert checksum(data, partial) == reference_checksum(header + data)


def test_parse_and_format_mac():
    assert parse_mac("0a:58:0a:f4:02:1a") == bytes.fromhex("0a580af4021a")
    assert parse_mac("0A-58-A9-FE-01-01") == bytes.fromhex("0a58a9fe0101")
    assert format_mac(bytes.fromhex("0a58a9fe0101")) == "0a:58:a9:fe:01:01"
    for bad in (
        "",
        "0a:58:0a:f4:02",
        "0a:58:0a:f4:02:1a:00",
        "0a:58:0a:f4:02:1",
        "zz:58:0a:f4:02:1a",
    ):
        with pytest.raises(ValueError):
            parse_mac(bad)


def test_malformed_packet_carries_a_known_reason():
    exc = MalformedPacket("truncated")
    assert exc.reason == "truncated"
    assert exc.reason in DROP_REASONS


def test_ethertype_constants():
    assert (ETH_P_IP, ETH_P_ARP, ETH_P_RARP, ETH_P_IPV6) == (0x0800, 0x0806, 0x8035, 0x86DD)
    assert BROADCAST_MAC == b"\xff" * 6


def test_ethernet_round_trip_and_padding():
    frame = encode_ethernet(BROADCAST_MAC, bytes.fromhex("0a580af4021a"), ETH_P_ARP, b"xyz")
    assert frame == bytes.fromhex("ffffffffffff0a580af4021a0806") + b"xyz"
    assert decode_ethernet(frame) == (BROADCAST_MAC, bytes.fromhex("0a580af4021a"), ETH_P_ARP)
    # Padding to the 60-byte minimum does not change the header.
    assert decode_ethernet(frame + bytes(60 - len(frame)))[2] == ETH_P_ARP


@pytest.mark.parametrize("n", range(14))
def test_ethernet_truncated(n):
    with pytest.raises(MalformedPacket) as info:
        decode_ethernet(bytes(n))
    assert info.value.reason == "truncated"


def test_protocols_package_does_no_io():
    # protocols/ is sans-IO (STYLE.md): no sockets, event loop, clock or logging setup.
    import ast
    import pathlib

    import protocols

    forbidden = {"socket", "asyncio", "time", "logging", "select", "selectors", "os", "threading"}
    root = pathlib.Path(protocols.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
