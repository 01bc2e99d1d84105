"""Fuzz Dhcpv6Responder.handle and the DHCPv6 codec.

Invariants: handle never raises and returns a reply or a drop from DROP_REASONS; a reply is
a well-formed ADVERTISE or REPLY from the DHCPv6 server's identity with a correct UDP
checksum, copying the client's Client Identifier and naming this server; an address in it
with non-zero lifetimes belongs to the asking client; what decode_dhcpv6 accepts, it can
encode and decode back to the same message.
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.dhcpv6.codec import Dhcpv6Message, decode_dhcpv6, encode_dhcpv6
from protocols.dhcpv6.server import Dhcpv6Responder
from protocols.ipv6 import ALL_DHCP_SERVERS, decode_udp6, encode_udp6_frame
from protocols.outcome import DROP_REASONS, Outcome
from protocols.wire import MalformedPacket
from tests.fuzz.mutations import mutated
from tests.helpers import (
    DHCP6_DUID,
    DHCP6_MAC,
    DHCP6_OFF,
    DHCP6_SRC,
    DHCP6_SRC_STR,
    SEED_IP6_STR,
    SEED_LL,
    SEED_MAC,
    UNKNOWN_MAC,
    UNKNOWN_MAC_STR,
    V6ONLY_MAC_STR,
    dhcp6_request,
    seed_params6,
    seed_table6,
)

SEEDS = [
    dhcp6_request("solicit"),
    dhcp6_request("solicit", rapid_commit=True, fqdn=(1, "fedora")),
    dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR),  # pool allocation
    dhcp6_request("solicit", eth_src=V6ONLY_MAC_STR, iaids=(1, 2)),
    dhcp6_request("request", addresses=(SEED_IP6_STR,)),
    dhcp6_request("request", eth_src=UNKNOWN_MAC_STR, iaids=(1, 2)),
    dhcp6_request("renew", addresses=("fd00::99", SEED_IP6_STR), ip_dst=DHCP6_SRC_STR),
    dhcp6_request("rebind", addresses=(SEED_IP6_STR,)),
    dhcp6_request("confirm", addresses=(SEED_IP6_STR,)),
    dhcp6_request("release", addresses=(SEED_IP6_STR,)),
    dhcp6_request("decline", addresses=(SEED_IP6_STR,)),
    dhcp6_request("information-request", iaids=(), client_id=False),
    dhcp6_request("reply", server_id=DHCP6_DUID),
]
PAYLOADS = [frame[DHCP6_OFF:] for frame in SEEDS]


def responder() -> Dhcpv6Responder:
    params = seed_params6(search=["svc.cluster.local"])
    return Dhcpv6Responder(params, seed_table6(pool6=True, pool6_size=3), node="node-a")


def frame_of(payload: bytes, eth_src: bytes = SEED_MAC, dst: bytes = ALL_DHCP_SERVERS) -> bytes:
    return encode_udp6_frame(
        b"\x33\x33\x00\x01\x00\x02", eth_src, SEED_LL, dst, 546, 547, payload, 1
    )


def check(frame: bytes) -> Outcome:
    dhcp6 = responder()
    out = dhcp6.handle(frame, "tap0", 0.0)
    assert isinstance(out, Outcome)
    event(f"{out.received}: {out.sent or out.drop}")
    if out.reply is None:
        assert out.drop in DROP_REASONS
        assert out.lease6 is None
        return out
    assert out.drop is None and out.sent in {"ADVERTISE", "REPLY"}
    assert out.reply[0:6] == frame[6:12] and out.reply[6:12] == DHCP6_MAC
    src, _dst, _hlim, sport, dport, payload = decode_udp6(out.reply, verify_udp=True)
    assert (src, sport, dport) == (DHCP6_SRC, 547, 546)
    reply = decode_dhcpv6(payload)
    assert reply.msg_type == (2 if out.sent == "ADVERTISE" else 7)
    request = decode_dhcpv6(decode_udp6(frame)[5])
    assert reply.xid == request.xid
    assert reply.server_id() == DHCP6_DUID
    assert reply.get(1) == request.client_id()
    # Every address given with a lifetime belongs to this client: the sender's static
    # binding, or a pool allocation for its DUID.
    binding = dhcp6.table.lookup(frame[6:12])
    for ia in reply.ia_nas():
        for a in ia.addresses:
            if a.valid:
                owner = dhcp6.table.owner_of6(a.address)
                assert owner is not None
                assert owner is binding or owner.duid == request.client_id()
    if out.lease6 is not None:
        assert out.lease6.duid == request.client_id()
    return out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(frame):
    check(frame)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([SEED_MAC, UNKNOWN_MAC]))
def test_arbitrary_payloads(payload, eth_src):
    check(frame_of(payload, eth_src))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SEEDS).flatmap(mutated))
def test_mutated_frames(frame):
    check(frame)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(PAYLOADS).flatmap(mutated),
    st.sampled_from([SEED_MAC, UNKNOWN_MAC]),
    st.sampled_from([ALL_DHCP_SERVERS, DHCP6_SRC]),
)
def test_mutated_payloads_in_valid_frames(payload, eth_src, dst):
    # Mutate the DHCPv6 message, then frame it with valid lengths and checksum.
    check(frame_of(payload, eth_src, dst))


def _option(code: int, value: bytes) -> tuple[int, bytes]:
    return code, value


_ia_inner = st.lists(
    st.one_of(
        st.tuples(st.just(5), st.binary(min_size=24, max_size=40)),  # IA Address
        st.tuples(
            st.just(5), st.just(bytes.fromhex("fd00001002440002000000000000001a") + bytes(8))
        ),  # the seed's address
        st.tuples(st.sampled_from([13, 99]), st.binary(max_size=8)),
    ),
    max_size=3,
).map(lambda opts: b"".join(c.to_bytes(2, "big") + len(v).to_bytes(2, "big") + v for c, v in opts))
_options = st.lists(
    st.one_of(
        st.builds(
            _option,
            st.just(1),
            st.sampled_from(
                [
                    b"\x00\x03\x00\x01" + SEED_MAC,
                    b"\x00\x03\x00\x01" + UNKNOWN_MAC,
                    b"",
                    b"\x00\x02x",
                    bytes(131),
                ]
            ),
        ),
        st.builds(_option, st.just(2), st.sampled_from([DHCP6_DUID, b"\x00\x03\x00\x01xxxxxx"])),
        st.builds(
            _option,
            st.just(3),
            st.tuples(st.binary(min_size=12, max_size=12), _ia_inner).map(lambda t: t[0] + t[1]),
        ),
        st.builds(_option, st.sampled_from([3, 4, 25]), st.binary(max_size=30)),
        st.builds(_option, st.just(14), st.sampled_from([b"", b"x"])),
        st.builds(_option, st.just(39), st.binary(max_size=20)),
        st.builds(_option, st.integers(0, 0xFFFF), st.binary(max_size=20)),
    ),
    max_size=8,
)


_client_ids = st.sampled_from(
    [b"\x00\x03\x00\x01" + SEED_MAC, b"\x00\x03\x00\x01" + UNKNOWN_MAC, b"\x00\x02xyz"]
)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from([1, 1, 1, 3, 3, 4, 5, 5, 6, 8, 9, 11, 2, 7, 99]),
    st.integers(0, 0xFFFFFF),
    _client_ids,
    st.integers(0, 9),
    st.lists(st.tuples(st.integers(0, 3), _ia_inner), max_size=3),
    _options,
    st.sampled_from([SEED_MAC, UNKNOWN_MAC]),
    st.sampled_from([ALL_DHCP_SERVERS, ALL_DHCP_SERVERS, ALL_DHCP_SERVERS, DHCP6_SRC]),
)
def test_structured_messages(mtype, xid, client_id, honest, ias, options, eth_src, dst):
    # Well-framed messages with a plausible identity (mostly following RFC 8415 §16 on the
    # Server Identifier), plausible IA_NAs and arbitrary further option values, from the
    # seed VM or from a pool client.
    head = [(1, client_id)]
    if (mtype in (3, 5, 8, 9)) == (honest < 8):
        head.append((2, DHCP6_DUID if honest else b"\x00\x03\x00\x01xxxxxx"))
    head += [(3, iaid.to_bytes(4, "big") + bytes(8) + inner) for iaid, inner in ias]
    payload = encode_dhcpv6(Dhcpv6Message(mtype, xid, head + options))
    check(frame_of(payload, eth_src, dst))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([1, 1, 1, 3, 3, 4, 5, 5, 6, 8, 9, 11, 2, 7, 10, 12, 13, 0, 99]),
    st.integers(0, 0xFFFFFF),
    _options,
    st.sampled_from([SEED_MAC, UNKNOWN_MAC]),
)
def test_structured_messages_any_options(mtype, xid, options, eth_src):
    check(frame_of(encode_dhcpv6(Dhcpv6Message(mtype, xid, options)), eth_src))


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.sampled_from(PAYLOADS).flatmap(mutated),
        st.binary(max_size=80),
        st.builds(Dhcpv6Message, st.integers(0, 11), st.integers(0, 0xFFFFFF), _options).map(
            encode_dhcpv6
        ),
    )
)
def test_decode_encode_round_trip(payload):
    try:
        msg = decode_dhcpv6(payload)
    except MalformedPacket as exc:
        assert exc.reason in DROP_REASONS
        return
    encoded = encode_dhcpv6(msg)
    assert encoded == payload  # options are kept raw: the encoding is the input
    assert decode_dhcpv6(encoded) == msg
    msg.ia_nas()  # lazy accessors never raise on any value
    msg.client_fqdn()
    msg.client_id()
