"""Fuzz Dhcpv4Responder.handle and the DHCPv4 codec.

Invariants: handle never raises and returns a reply, a drop or a no-reply message (RELEASE,
DECLINE); a reply is a well-formed BOOTREPLY; what decode_dhcpv4 accepts, it can encode and
decode back to the same message.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.dhcpv4.codec import (
    DhcpMessage,
    decode_dhcpv4,
    decode_udp4,
    encode_dhcpv4,
    encode_udp4_frame,
)
from protocols.dhcpv4.server import Dhcpv4Responder
from protocols.outcome import DROP_REASONS, Outcome
from protocols.wire import MalformedPacket
from tests.fuzz.mutations import mutated
from tests.helpers import (
    BOOTP_OFF,
    GW_IP,
    GW_MAC,
    RELAY_IP_STR,
    SEED_IP,
    SEED_IP_STR,
    SEED_MAC,
    UNKNOWN_MAC,
    UNKNOWN_MAC_STR,
    dhcp_request,
    seed_params,
    seed_table,
)

NO_REPLY = {"DHCPRELEASE", "DHCPDECLINE"}
RELAY_IP = bytes((10, 244, 2, 254))

SEEDS = [
    dhcp_request("discover"),
    dhcp_request("discover", flags=0x8000, udp_checksum=0),
    dhcp_request("discover", eth_src=UNKNOWN_MAC_STR),  # pool allocation
    dhcp_request(
        "request", options=[("server_id", "169.254.1.1"), ("requested_addr", SEED_IP_STR)]
    ),
    dhcp_request("request", options=[("requested_addr", "10.1.2.3")]),  # NAK
    dhcp_request("request", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR),
    dhcp_request("inform", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR),
    dhcp_request("release", ciaddr=SEED_IP_STR),
    dhcp_request("decline", options=[("requested_addr", SEED_IP_STR)]),
    dhcp_request("discover", giaddr=RELAY_IP_STR, sport=67),
]
PAYLOADS = [frame[BOOTP_OFF:] for frame in SEEDS]


def responder() -> Dhcpv4Responder:
    return Dhcpv4Responder(seed_params(search=["svc.cluster.local"]), seed_table(pool=True))


def check(frame: bytes) -> Outcome:
    dhcp = responder()
    out = dhcp.handle(frame, "tap0", 0.0)
    assert isinstance(out, Outcome)
    event(f"{out.received}: {out.sent or out.drop}")
    if out.reply is not None:
        assert out.drop is None
        assert out.sent in {"DHCPOFFER", "DHCPACK", "DHCPNAK"}
        assert out.reply[6:12] == GW_MAC
        ip_src, _dst, sport, dport, payload = decode_udp4(out.reply)
        assert ip_src == GW_IP and sport == 67 and dport in (67, 68)
        reply = decode_dhcpv4(payload)
        assert reply.op == 2 and len(payload) >= 300
        assert reply.server_id() == GW_IP
    elif out.drop is None:
        assert out.received in NO_REPLY
    else:
        assert out.drop in DROP_REASONS
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(frame):
    check(frame)


_addresses = st.sampled_from([bytes(4), SEED_IP, GW_IP, RELAY_IP, b"\xff" * 4, b"\x0a\x01\x02\x03"])
_messages = st.builds(
    DhcpMessage,
    op=st.sampled_from([1] * 6 + [2, 0]),
    htype=st.sampled_from([1, 1, 6]),
    hlen=st.sampled_from([6, 6, 0, 16, 255]),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 0xFFFF),
    flags=st.sampled_from([0, 0x8000, 0xFFFF]),
    ciaddr=_addresses,
    yiaddr=_addresses,
    giaddr=st.sampled_from([bytes(4), bytes(4), RELAY_IP]),
    chaddr=st.sampled_from([SEED_MAC, UNKNOWN_MAC, bytes(6)]).map(lambda m: m + bytes(10)),
    options=st.tuples(
        st.integers(0, 12),  # message type, 0 = leave option 53 out
        st.dictionaries(
            st.sampled_from([1, 3, 12, 50, 51, 54, 55, 61, 82, 119, 121, 224]),
            st.one_of(_addresses, st.binary(max_size=300)),
            max_size=6,
        ),
    ).map(lambda t: ({53: bytes((t[0],))} if t[0] else {}) | t[1]),
)


@settings(max_examples=500, deadline=None)
@given(_messages, st.sampled_from([SEED_MAC, UNKNOWN_MAC]), st.binary(max_size=16))
def test_structured_messages(msg, eth_src, tail):
    # Well-framed BOOTP with arbitrary field and option values (and junk after END), from the
    # seed VM or from an unknown MAC that the pool serves.
    payload = encode_dhcpv4(msg) + tail
    check(encode_udp4_frame(b"\xff" * 6, eth_src, bytes(4), b"\xff" * 4, 68, 67, payload))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_options(tail):
    # A valid header and cookie followed by arbitrary option bytes.
    payload = PAYLOADS[0][:240] + tail
    check(encode_udp4_frame(b"\xff" * 6, SEED_MAC, bytes(4), b"\xff" * 4, 68, 67, payload))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SEEDS).flatmap(mutated))
def test_mutated_frames(frame):
    check(frame)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(PAYLOADS).flatmap(mutated), st.sampled_from(SEEDS))
def test_mutated_payloads_in_valid_frames(payload, seed):
    # Mutate the BOOTP message, then frame it with valid checksums so the mutation is seen.
    frame = encode_udp4_frame(seed[0:6], seed[6:12], seed[26:30], seed[30:34], 68, 67, payload)
    check(frame)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(PAYLOADS).flatmap(lambda p: mutated(p[240:]).map(lambda o: p[:240] + o)))
def test_mutated_options(payload):
    # Mutations confined to the options, so the header and cookie stay recognisable.
    check(encode_udp4_frame(b"\xff" * 6, SEED_MAC, bytes(4), b"\xff" * 4, 68, 67, payload))


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.sampled_from(PAYLOADS).flatmap(mutated),
        st.binary(max_size=80).map(lambda tail: PAYLOADS[0][:240] + tail),
        _messages.map(encode_dhcpv4),
    )
)
def test_decode_encode_round_trip(payload):
    try:
        msg = decode_dhcpv4(payload)
    except MalformedPacket:
        return
    encoded = encode_dhcpv4(msg)
    assert decode_dhcpv4(encoded) == msg
    assert encode_dhcpv4(decode_dhcpv4(encoded)) == encoded
