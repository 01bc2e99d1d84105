"""Fuzz ArpResponder.handle: it never raises, and every Outcome is a reply, a drop or a hint."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from protocols.arp import ArpResponder, decode_arp
from protocols.outcome import DROP_REASONS, Outcome
from tests.fuzz.mutations import mutated
from tests.helpers import GW_MAC, OTHER_IP_STR, arp_frame, seed_params, seed_table

SEEDS = [
    arp_frame(),  # answered
    arp_frame() + bytes(18),  # padded, answered
    arp_frame(eth_dst="0a:58:a9:fe:01:01"),  # unicast to the gateway
    arp_frame(spa="0.0.0.0", tpa="10.244.2.26"),  # probe for own
    arp_frame(tpa=OTHER_IP_STR),  # another VM's address
    arp_frame(op=2),  # reply
    arp_frame(op=3, ethertype=0x8035) + bytes(18),  # QEMU RARP
]


def check(responder: ArpResponder, frame: bytes) -> Outcome:
    out = responder.handle(frame, "tap0", 0.0)
    assert isinstance(out, Outcome)
    event(f"{out.received}: {out.sent or out.drop}")
    if out.reply is not None:
        assert out.drop is None and out.sent == "arp_reply"
        assert len(out.reply) == 42 and out.reply[6:12] == GW_MAC
        reply = decode_arp(out.reply, 14)
        assert reply.op == 2 and reply.sha == GW_MAC
        assert responder.table.owner_of(reply.spa) is None  # never for a VM address
    elif out.drop is None:
        assert out.received == "rarp"
    else:
        assert out.drop in DROP_REASONS
    return out


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=128))
def test_arbitrary_bytes(frame):
    check(ArpResponder(seed_params(), seed_table()), frame)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS).flatmap(mutated))
def test_mutated_frames(frame):
    check(ArpResponder(seed_params(), seed_table()), frame)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SEEDS).flatmap(
        lambda seed: st.integers(14, 41).map(lambda i: seed[:14] + seed[14:i] + bytes(42 - i))
    )
)
def test_zeroed_tails(frame):
    # Zero-filled ARP fields: 0.0.0.0 targets and sources, null MACs.
    check(ArpResponder(seed_params(), seed_table()), frame)
