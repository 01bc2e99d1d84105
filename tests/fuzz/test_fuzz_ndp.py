"""Fuzz NdpResponder.handle and the IPv6/ICMPv6 decoders.

Invariants: handle never raises; every Outcome is a reply, a drop from DROP_REASONS, or an
NA taken without answer; a reply is a well-formed NA or RA from lmdp's own addresses with a
valid checksum and hop limit 255, and never answers for a VM's address.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.ipv6 import decode_icmpv6, encode_icmpv6_frame
from protocols.ndp import NdpResponder
from protocols.outcome import DROP_REASONS, Outcome
from protocols.wire import MalformedPacket
from tests.fuzz.mutations import mutated
from tests.helpers import (
    DHCP6_MAC,
    DHCP6_SRC,
    DHCP6_SRC_STR,
    GW6,
    GW_MAC,
    OTHER_IP6_STR,
    SEED_IP6_STR,
    SEED_MAC,
    UNKNOWN_MAC,
    V6ONLY_LL_STR,
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

SEEDS = [
    ns_frame(),  # answered
    ns_frame() + bytes(20),  # padded
    ns_frame(ip_dst="fe80::1", eth_dst="0a:58:a9:fe:01:01"),  # NUD probe
    ns_frame(ip_src="::"),  # DAD for the gateway
    ns_frame(DHCP6_SRC_STR),  # the DHCPv6 server address
    ns_frame(OTHER_IP6_STR),  # another VM's address
    ns_frame(SEED_IP6_STR, ip_src="::"),  # DAD for own
    ns_frame(eth_src=V6ONLY_MAC_STR, ip_src=V6ONLY_LL_STR),
    rs_frame(),
    rs_frame(ip_src="::"),
    na_frame(),
    ra_frame(),
    redirect_frame(),
    dhcp6_request("solicit"),
]
ANSWERS_FROM = {GW6: GW_MAC, DHCP6_SRC: DHCP6_MAC}


def responder(ra: bool = True) -> NdpResponder:
    return NdpResponder(seed_params6(ra=ra), seed_table6())


def check(ndp: NdpResponder, frame: bytes) -> Outcome:
    out = ndp.handle(frame, "tap0", 0.0)
    assert isinstance(out, Outcome)
    event(f"{out.received}: {out.sent or out.drop}")
    if out.reply is not None:
        assert out.drop is None and out.sent in {"na", "ra"}
        src, dst, hlim, icmp_type, code, start, end = decode_icmpv6(out.reply)
        assert hlim == 255 and code == 0
        assert out.reply[6:12] == ANSWERS_FROM[src]
        if out.sent == "na":
            assert icmp_type == 136
            target = out.reply[start + 8 : start + 24]
            assert target in ANSWERS_FROM and target == src
            assert ndp.table.owner_of6(target) is None  # never for a VM address
        else:
            assert icmp_type == 134 and src == GW6
            assert out.reply[start + 5] == 0xC0  # M=1, O=1
    elif out.drop is None:
        assert out.received == "na"
    else:
        assert out.drop in DROP_REASONS
    if out.mac is not None:
        assert ndp.table.lookup(out.mac) is not None
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=160))
def test_arbitrary_bytes(frame):
    check(responder(), frame)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([SEED_MAC, UNKNOWN_MAC]),
    st.sampled_from([58, 58, 17, 0, 44, 59]),
    st.integers(0, 255),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=80),
    st.integers(-2, 2),
)
def test_arbitrary_ipv6_packets(src_mac, nh, hlim, addresses, payload, skew):
    # A version-6 header whose payload length is about right, then arbitrary bytes.
    plen = max(0, len(payload) + skew)
    header = b"\x60\x00\x00\x00" + plen.to_bytes(2, "big") + bytes((nh, hlim)) + addresses
    check(responder(), b"\x33\x33\xff\x00\x00\x01" + src_mac + b"\x86\xdd" + header + payload)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SEEDS).flatmap(mutated), st.booleans())
def test_mutated_frames(frame, ra):
    check(responder(ra), frame)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SEEDS[:-1]).flatmap(lambda f: mutated(f[54:]).map(lambda m: (f, m))))
def test_mutated_messages_with_valid_checksums(seed_and_message):
    # Mutate the ICMPv6 message, then frame it with a correct checksum and hop limit 255,
    # so that the mutation reaches the ND checks instead of failing the checksum.
    seed, message = seed_and_message
    if len(message) < 4:
        message += bytes(4 - len(message))
    message = message[:2] + b"\x00\x00" + message[4:]
    frame = encode_icmpv6_frame(seed[0:6], seed[6:12], seed[22:38], seed[38:54], message)
    check(responder(), frame)


_sources = st.sampled_from(
    [
        GW6,
        DHCP6_SRC,
        bytes(16),
        bytes.fromhex("fe80" + "00" * 13 + "02"),
        bytes.fromhex("fd00001002440002000000000000001a"),
    ]
)
_addresses = st.sampled_from(
    [
        GW6,
        DHCP6_SRC,
        bytes(16),
        bytes.fromhex("ff0200000000000000000001ff000001"),
        bytes.fromhex("ff020000000000000000000000000002"),
        bytes.fromhex("fe80" + "00" * 13 + "02"),
        bytes.fromhex("fd00001002440002000000000000001a"),
    ]
)


@settings(max_examples=500, deadline=None)
@given(
    icmp_type=st.sampled_from([133, 134, 135, 136, 137, 128, 143]),
    code=st.sampled_from([0, 0, 0, 1]),
    flags=st.integers(0, 255),
    target=_addresses,
    src=_sources,
    dst=_addresses,
    hlim=st.sampled_from([255, 255, 255, 254, 1]),
    options=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 3), st.binary(max_size=30)), max_size=3
    ),
)
def test_structured_nd_messages(icmp_type, code, flags, target, src, dst, hlim, options):
    body = bytes((icmp_type, code, 0, 0, flags, 0, 0, 0)) + target
    body += b"".join(bytes((t, n)) + blob for t, n, blob in options)
    frame = encode_icmpv6_frame(b"\x33\x33\xff\x00\x00\x01", SEED_MAC, src, dst, body, hlim)
    check(responder(), frame)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS).flatmap(mutated))
def test_decoders_raise_only_malformed_packet(frame):
    try:
        decode_icmpv6(frame)
    except MalformedPacket as exc:
        assert exc.reason in DROP_REASONS
