"""Announcements after a live migration (SPEC "After a live migration"): gratuitous ARP pairs,
unsolicited Neighbor Advertisements, and the QEMU self-announce schedule."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from protocols.announce import (
    DEFAULT_ROUNDS_MS,
    GATEWAY_IPV6,
    AnnounceSchedule,
    announce_frames,
    garp_pair,
    unsolicited_na,
)
from protocols.bindings import Binding
from protocols.params import ROUTER_SUBNET
from tests.helpers import (
    GW_IP,
    GW_IP_STR,
    GW_MAC,
    GW_MAC_STR,
    SEED_IP,
    SEED_IP_STR,
    SEED_MAC,
    SEED_MAC_STR,
    SEED_NAME,
    seed_binding,
    seed_params,
)
from tests.unit.test_wire import reference_checksum

# The seed VM's IPv6 address in an OVN-Kubernetes style node subnet (fd00:10:244:2::/64).
SEED_IP6_STR = "fd00:10:244:2::1a"
SEED_IP6 = ipaddress.IPv6Address(SEED_IP6_STR).packed
SUBNET_GW = bytes((10, 244, 2, 1))

# The seed VM announces 10.244.2.26 toward the network: RFC 5227 §3 announcement (request).
SEED_GARP_REQUEST = bytes.fromhex(
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
    "000000000000"  # tha: zero (RFC 5227 §2.3)
    "0af4021a"  # tpa 10.244.2.26 (= spa: gratuitous)
)

# ... and the reply of the pair: tha = sha, so Linux's arp_is_garp() counts it as gratuitous.
SEED_GARP_REPLY = bytes.fromhex(
    "ffffffffffff"  # Ethernet dst: broadcast
    "0a580af4021a"  # Ethernet src: the VM
    "0806"  # ethertype ARP
    "0001"  # htype Ethernet
    "0800"  # ptype IPv4
    "06"  # hlen
    "04"  # plen
    "0002"  # op reply
    "0a580af4021a"  # sha: the VM
    "0af4021a"  # spa 10.244.2.26
    "0a580af4021a"  # tha: = sha (RFC 5944 §4.6 gratuitous reply)
    "0af4021a"  # tpa 10.244.2.26
)

# Toward the VM: the gateway 169.254.1.1 is at the gateway MAC.
GW_GARP_REQUEST = bytes.fromhex(
    "ffffffffffff"  # Ethernet dst: broadcast
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "0806"  # ethertype ARP
    "0001"  # htype Ethernet
    "0800"  # ptype IPv4
    "06"  # hlen
    "04"  # plen
    "0001"  # op request
    "0a58a9fe0101"  # sha: gateway MAC
    "a9fe0101"  # spa 169.254.1.1
    "000000000000"  # tha: zero
    "a9fe0101"  # tpa 169.254.1.1
)
GW_GARP_REPLY = bytes.fromhex(
    "ffffffffffff"  # Ethernet dst: broadcast
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "0806"  # ethertype ARP
    "0001"  # htype Ethernet
    "0800"  # ptype IPv4
    "06"  # hlen
    "04"  # plen
    "0002"  # op reply
    "0a58a9fe0101"  # sha: gateway MAC
    "a9fe0101"  # spa 169.254.1.1
    "0a58a9fe0101"  # tha: = sha
    "a9fe0101"  # tpa 169.254.1.1
)

# Toward the VM: fe80::1 is at the gateway MAC, and is a router.
GW_NA = bytes.fromhex(
    "333300000001"  # Ethernet dst: all-nodes multicast (RFC 2464 §7)
    "0a58a9fe0101"  # Ethernet src: gateway MAC
    "86dd"  # ethertype IPv6
    "60000000"  # version 6, traffic class 0, flow label 0
    "0020"  # payload length 32
    "3a"  # next header ICMPv6
    "ff"  # hop limit 255 (RFC 4861 §7.1.2)
    "fe800000000000000000000000000001"  # src fe80::1 (the target itself)
    "ff020000000000000000000000000001"  # dst ff02::1
    "88"  # type 136 Neighbor Advertisement
    "00"  # code 0
    "2444"  # checksum over the pseudo-header (RFC 8200 §8.1)
    "a0000000"  # flags R|O, S clear (multicast destination), reserved
    "fe800000000000000000000000000001"  # target fe80::1
    "02"  # option: Target Link-Layer Address
    "01"  # length 1 (8 bytes)
    "0a58a9fe0101"  # gateway MAC
)

# Toward the network: the seed VM's global address is at the VM's MAC; not a router.
SEED_NA = bytes.fromhex(
    "333300000001"  # Ethernet dst: all-nodes multicast
    "0a580af4021a"  # Ethernet src: the VM
    "86dd"  # ethertype IPv6
    "60000000"  # version 6, traffic class 0, flow label 0
    "0020"  # payload length 32
    "3a"  # next header ICMPv6
    "ff"  # hop limit 255
    "fd00001002440002000000000000001a"  # src fd00:10:244:2::1a (the target itself)
    "ff020000000000000000000000000001"  # dst ff02::1
    "88"  # type 136 Neighbor Advertisement
    "00"  # code 0
    "4058"  # checksum
    "20000000"  # flags O only
    "fd00001002440002000000000000001a"  # target
    "02"  # option: Target Link-Layer Address
    "01"  # length 1
    "0a580af4021a"  # the VM's MAC
)


def pseudo_header(src: bytes, dst: bytes, length: int, next_header: int) -> bytes:
    """RFC 8200 §8.1, laid out byte by byte."""
    return src + dst + length.to_bytes(4, "big") + bytes(3) + bytes((next_header,))


def scapy_na(mac: str, target: str, *, router: bool) -> bytes:
    """The same unsolicited NA built by scapy, checksum included."""
    pkt = (
        Ether(src=mac, dst="33:33:00:00:00:01")
        / IPv6(src=target, dst="ff02::1", hlim=255)
        / ICMPv6ND_NA(R=int(router), S=0, O=1, tgt=target)
        / ICMPv6NDOptDstLLAddr(lladdr=mac)
    )
    return bytes(pkt)


# --- gratuitous ARP ---------------------------------------------------------------------------


def test_garp_pair_seed_vm_vectors():
    request, reply = garp_pair(SEED_MAC, SEED_IP)
    assert request == SEED_GARP_REQUEST
    assert reply == SEED_GARP_REPLY
    assert len(request) == len(reply) == 42


def test_garp_pair_gateway_vectors():
    assert garp_pair(GW_MAC, GW_IP) == (GW_GARP_REQUEST, GW_GARP_REPLY)


@pytest.mark.parametrize(("mac", "ip"), [(SEED_MAC_STR, SEED_IP_STR), (GW_MAC_STR, GW_IP_STR)])
def test_garp_pair_matches_scapy(mac, ip):
    eth = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
    expect_request = bytes(eth / ARP(op=1, hwsrc=mac, psrc=ip, hwdst="00:00:00:00:00:00", pdst=ip))
    expect_reply = bytes(eth / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=mac, pdst=ip))
    packed_mac = bytes.fromhex(mac.replace(":", ""))
    packed_ip = ipaddress.IPv4Address(ip).packed
    assert garp_pair(packed_mac, packed_ip) == (expect_request, expect_reply)


def test_garp_pair_is_gratuitous_by_the_linux_rule():
    # net/ipv4/arp.c arp_is_garp(): sip == tip, and for a reply also tha == sha.
    for frame in garp_pair(SEED_MAC, SEED_IP):
        arp = Ether(frame)[ARP]
        assert arp.psrc == arp.pdst == SEED_IP_STR
        assert arp.hwsrc == Ether(frame).src == SEED_MAC_STR
        if arp.op == 2:
            assert arp.hwdst == arp.hwsrc


# --- unsolicited Neighbor Advertisement --------------------------------------------------------


def test_na_gateway_vector():
    assert unsolicited_na(GW_MAC, GATEWAY_IPV6, router=True) == GW_NA
    assert len(GW_NA) == 86


def test_na_vm_vector():
    assert unsolicited_na(SEED_MAC, SEED_IP6, router=False) == SEED_NA


@pytest.mark.parametrize(
    ("mac", "target", "router", "frame"),
    [(GW_MAC_STR, "fe80::1", True, GW_NA), (SEED_MAC_STR, SEED_IP6_STR, False, SEED_NA)],
)
def test_na_scapy_oracle(mac, target, router, frame):
    pkt = Ether(frame)
    assert pkt.dst == "33:33:00:00:00:01" and pkt.src == mac
    ip6 = pkt[IPv6]
    assert (ip6.src, ip6.dst, ip6.hlim, ip6.nh, ip6.plen) == (target, "ff02::1", 255, 58, 32)
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code, na.tgt) == (136, 0, target)
    flags = (na.R, na.S, na.O)
    assert flags == (int(router), 0, 1)
    opt = pkt[ICMPv6NDOptDstLLAddr]
    assert (opt.type, opt.len, opt.lladdr) == (2, 1, mac)
    assert not opt.payload  # exactly one option
    # scapy recomputes the checksum from scratch and gets ours.
    del pkt[ICMPv6ND_NA].cksum
    assert Ether(bytes(pkt))[ICMPv6ND_NA].cksum == int.from_bytes(frame[56:58], "big")
    # ... and builds the identical frame from the field values alone.
    assert scapy_na(mac, target, router=router) == frame


def test_na_checksum_verifies_with_the_reference_sum():
    for frame in (GW_NA, SEED_NA):
        src, dst, message = frame[22:38], frame[38:54], frame[54:]
        assert reference_checksum(pseudo_header(src, dst, len(message), 58) + message) == 0


@given(
    mac=st.binary(min_size=6, max_size=6),
    target=st.binary(min_size=16, max_size=16).filter(lambda b: b[0] != 0xFF),
    router=st.booleans(),
)
def test_na_matches_scapy_for_any_address(mac, target, router):
    mac_str = mac.hex(":")
    target_str = str(ipaddress.IPv6Address(target))
    assert unsolicited_na(mac, target, router=router) == scapy_na(
        mac_str, target_str, router=router
    )


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        garp_pair(SEED_MAC[:5], SEED_IP)  # struct would silently pad
    with pytest.raises(ValueError):
        garp_pair(SEED_MAC, SEED_IP + b"\x00")
    with pytest.raises(ValueError):
        unsolicited_na(SEED_MAC, SEED_IP, router=False)
    with pytest.raises(ValueError):
        unsolicited_na(SEED_MAC, ipaddress.IPv6Address("ff02::1").packed, router=False)


# --- announce_frames ---------------------------------------------------------------------------


def test_binding_ipv6_fields_are_optional_and_last():
    b = Binding(SEED_NAME, SEED_MAC, SEED_IP, 24)
    assert (b.ipv6, b.prefixlen6) == (None, 128)
    b = seed_binding(ipv6=SEED_IP6, prefixlen6=64)
    assert (b.ipv4, b.ipv6, b.prefixlen6) == (SEED_IP, SEED_IP6, 64)


def test_announce_frames_link_local_mode():
    network, vm = announce_frames(seed_binding(ipv6=SEED_IP6), seed_params())
    assert network == [SEED_GARP_REQUEST, SEED_GARP_REPLY, SEED_NA]
    assert vm == [GW_GARP_REQUEST, GW_GARP_REPLY, GW_NA]


def test_announce_frames_ipv4_only():
    network, vm = announce_frames(seed_binding(), seed_params())
    assert network == [SEED_GARP_REQUEST, SEED_GARP_REPLY]
    assert vm == [GW_GARP_REQUEST, GW_GARP_REPLY, GW_NA]


def test_announce_frames_subnet_mode_also_announces_the_subnet_gateway():
    network, vm = announce_frames(
        seed_binding(ipv6=SEED_IP6), seed_params(router_mode=ROUTER_SUBNET)
    )
    assert network == [SEED_GARP_REQUEST, SEED_GARP_REPLY, SEED_NA]
    assert len(vm) == 5
    assert vm[:2] == [GW_GARP_REQUEST, GW_GARP_REPLY]
    # 10.244.2.1, the router option 3 gave this VM, is at the gateway MAC too.
    assert vm[2:4] == list(garp_pair(GW_MAC, SUBNET_GW))
    for frame in vm[2:4]:
        arp = Ether(frame)[ARP]
        assert arp.psrc == arp.pdst == "10.244.2.1" and arp.hwsrc == GW_MAC_STR
    assert vm[4] == GW_NA


def test_announce_frames_subnet_mode_without_a_distinct_subnet_gateway():
    # A /31 has no subnet gateway: router_for() gives 169.254.1.1, announced once only.
    binding = seed_binding(prefixlen=31)
    _, vm = announce_frames(binding, seed_params(router_mode=ROUTER_SUBNET))
    assert vm == [GW_GARP_REQUEST, GW_GARP_REPLY, GW_NA]


@pytest.mark.parametrize("mode", ["link-local", ROUTER_SUBNET])
def test_announce_frames_binding_without_ipv4(mode):
    binding = seed_binding(ipv4=None, ipv6=SEED_IP6)
    network, vm = announce_frames(binding, seed_params(router_mode=mode))
    assert network == [SEED_NA]
    assert vm == [GW_GARP_REQUEST, GW_GARP_REPLY, GW_NA]


def test_announce_frames_binding_without_addresses():
    network, vm = announce_frames(seed_binding(ipv4=None), seed_params())
    assert network == []
    assert vm == [GW_GARP_REQUEST, GW_GARP_REPLY, GW_NA]


def test_announce_frames_other_gateway_ipv6():
    gw6 = ipaddress.IPv6Address("fe80::2").packed
    _, vm = announce_frames(seed_binding(), seed_params(), gateway_ipv6=gw6)
    na = Ether(vm[-1])
    assert na[IPv6].src == na[ICMPv6ND_NA].tgt == "fe80::2"
    assert na[ICMPv6ND_NA].R == 1


# --- AnnounceSchedule --------------------------------------------------------------------------

T0 = 1000.0
MAC_A = SEED_MAC
MAC_B = bytes.fromhex("0a580af4021b")
MAC_C = bytes.fromhex("0a580af4021c")


def at(ms: int, base: float = T0) -> float:
    """The scheduled time of offset `ms`, computed as the schedule does."""
    return base + ms / 1000


def test_default_rounds_are_qemus():
    assert DEFAULT_ROUNDS_MS == (0, 50, 200, 450, 800)
    assert AnnounceSchedule().rounds_ms == (0, 50, 200, 450, 800)


def test_rounds_fire_at_their_offsets_and_not_before():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    assert s.start(MAC_A, T0) is True
    assert s.active(MAC_A) and len(s) == 1
    assert s.due(T0 - 0.001) == []
    assert s.due(T0) == [(MAC_A, 0)]
    assert s.due(T0) == []  # consumed
    for index, ms in enumerate([50, 200, 450, 800], start=1):
        assert s.due(at(ms) - 0.0005) == []
        assert s.due(at(ms)) == [(MAC_A, index)]
    assert not s.active(MAC_A) and len(s) == 0
    assert s.due(T0 + 60) == []
    assert s.collapsed == 0


def test_next_deadline_follows_the_rounds():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    assert s.next_deadline() is None
    s.start(MAC_A, T0)
    assert s.next_deadline() == T0
    s.due(T0)
    assert s.next_deadline() == at(50)
    s.due(at(60))  # a little late, still one round: the next keeps its time
    assert s.next_deadline() == at(200)
    s.due(at(200))
    assert s.next_deadline() == at(450)
    s.due(at(450))
    assert s.next_deadline() == at(800)
    s.due(at(800))
    assert s.next_deadline() is None


def test_restart_during_rounds_resets_them():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    s.start(MAC_A, T0)
    assert s.due(at(50)) == [(MAC_A, 1)]  # round 0 collapsed into 1
    # The VM arrives again at T0 + 0.1: rounds restart from there.
    t1 = at(100)
    assert s.start(MAC_A, t1) is True
    assert len(s) == 1
    assert s.next_deadline() == t1
    assert s.due(t1) == [(MAC_A, 0)]
    # The old round 2 (T0 + 0.2) never fires; the new round 1 is at t1 + 0.05 = T0 + 0.15.
    assert s.due(at(199)) == [(MAC_A, 1)]
    assert s.due(at(200)) == []
    assert s.next_deadline() == at(200, t1)
    fired = [s.due(at(ms, t1)) for ms in (200, 450, 800)]
    assert fired == [[(MAC_A, 2)], [(MAC_A, 3)], [(MAC_A, 4)]]
    assert s.due(T0 + 60) == [] and len(s) == 0


def test_restart_before_the_first_round_fires():
    s = AnnounceSchedule([0, 50])
    s.start(MAC_A, T0)
    s.start(MAC_A, T0 + 0.01)
    assert s.due(T0) == []  # the first start's round 0 is gone
    assert s.due(T0 + 0.01) == [(MAC_A, 0)]


def test_cancel_stops_the_rounds():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    s.start(MAC_A, T0)
    s.start(MAC_B, T0)
    assert s.due(T0) == [(MAC_A, 0), (MAC_B, 0)]
    s.cancel(MAC_A)
    assert not s.active(MAC_A) and s.active(MAC_B) and len(s) == 1
    assert s.due(T0 + 60) == [(MAC_B, 4)]
    assert s.next_deadline() is None
    s.cancel(MAC_A)  # no-op
    s.cancel(MAC_C)  # never started: no-op
    assert len(s) == 0


def test_cancel_only_key_clears_next_deadline():
    s = AnnounceSchedule([0, 50])
    s.start(MAC_A, T0)
    s.cancel(MAC_A)
    assert s.next_deadline() is None
    assert s.due(T0 + 60) == []


def test_empty_rounds_turn_announcements_off():
    s = AnnounceSchedule([])
    assert s.rounds_ms == ()
    assert s.start(MAC_A, T0) is False
    assert not s.active(MAC_A) and len(s) == 0
    assert s.next_deadline() is None
    assert s.due(T0 + 60) == []


@pytest.mark.parametrize("rounds", [[50, 0], [0, 0], [-1, 50], [0, 50.0], [True], [0, "50"]])
def test_bad_rounds_are_refused(rounds):
    with pytest.raises(ValueError):
        AnnounceSchedule(rounds)


def test_single_round_schedule():
    s = AnnounceSchedule([100])
    s.start(MAC_A, T0)
    assert s.next_deadline() == at(100)
    assert s.due(at(99)) == []
    assert s.due(at(100)) == [(MAC_A, 0)]
    assert len(s) == 0


def test_many_keys_interleave_in_time_order():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    starts = {MAC_A: T0, MAC_B: T0 + 0.03, MAC_C: T0 + 0.12}
    for key, t in starts.items():
        s.start(key, t)
    events = sorted(
        (t + ms / 1000, key, i)
        for key, t in starts.items()
        for i, ms in enumerate([0, 50, 200, 450, 800])
    )
    seen = []
    for t, _, _ in events:  # a punctual caller: wakes at every deadline it is given
        assert s.next_deadline() == t
        seen.extend(s.due(t))
    assert seen == [(key, i) for _, key, i in events]
    assert len(s) == 0


def test_one_due_call_returns_many_keys_in_time_order():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    s.start(MAC_C, T0 + 0.02)
    s.start(MAC_A, T0)
    s.start(MAC_B, T0 + 0.01)
    assert s.due(T0 + 0.02) == [(MAC_A, 0), (MAC_B, 0), (MAC_C, 0)]


def test_late_caller_gets_one_round_per_key():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    s.start(MAC_A, T0)
    # Asleep until T0 + 0.3: rounds 0, 1 and 2 are all due; only round 2 is sent.
    assert s.due(at(300)) == [(MAC_A, 2)]
    assert s.collapsed == 2
    # The rest keep their times relative to the arrival.
    assert s.next_deadline() == at(450)
    assert s.due(at(449)) == []
    assert s.due(at(450)) == [(MAC_A, 3)]
    # Very late: only the last round.
    s.start(MAC_B, T0)
    assert s.due(T0 + 10) == [(MAC_A, 4), (MAC_B, 4)]
    assert s.collapsed == 2 + 4
    assert len(s) == 0


def test_late_rounds_come_out_in_the_time_order_of_the_rounds_sent():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    s.start(MAC_A, T0)  # rounds at .00 .05 .20 ...
    s.start(MAC_B, T0 + 0.04)  # rounds at .04 .09 .24 ...
    # At T0 + 0.22, A's latest due round is 2 (.20) and B's is 1 (.09): B's is older.
    assert s.due(at(220)) == [(MAC_B, 1), (MAC_A, 2)]
    assert s.next_deadline() == at(200, T0 + 0.04)


def test_restart_storm_keeps_the_heap_bounded():
    s = AnnounceSchedule([0, 50, 200, 450, 800])
    for i in range(10_000):
        s.start(MAC_A, T0 + i * 1e-6)  # e.g. a RARP per millisecond from a chatty VM
    assert len(s) == 1
    assert len(s._heap) <= 2 * len(s) + 65
    assert s.due(T0 + 60) == [(MAC_A, 4)]


# A random scripted run: ("start"|"cancel", key) or ("due", ms to advance the clock).
_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["start", "cancel"]), st.integers(0, 3)),
        st.tuples(st.just("due"), st.integers(0, 400)),
    ),
    max_size=60,
)
_rounds = st.lists(st.integers(0, 1000), max_size=6, unique=True).map(sorted)


@settings(max_examples=300)
@given(rounds=_rounds, ops=_ops)
def test_schedule_matches_a_model(rounds, ops):
    """Never a round before its time; each due() sends, per active key, the latest round that
    has come and nothing else; rounds come out in time order; a key whose rounds are left
    alone ends with its last round, once."""
    offsets = [ms / 1000 for ms in rounds]
    s = AnnounceSchedule(rounds)
    model: dict[int, list] = {}  # key -> [arrival, next round index]
    last_sent: dict[int, int] = {}
    now = T0

    def step(now: float) -> None:
        expected = []
        for key, (arrival, nxt) in list(model.items()):
            if arrival + offsets[nxt] > now:
                continue
            latest = nxt
            while latest + 1 < len(offsets) and arrival + offsets[latest + 1] <= now:
                latest += 1
            expected.append((arrival + offsets[latest], key, latest))
            if latest + 1 == len(offsets):
                del model[key]
            else:
                model[key][1] = latest + 1
        got = s.due(now)
        times = []
        for key, index in got:
            times.append(next(t for t, k, _ in expected if k == key))
            assert index > last_sent.get(key, -1)
            last_sent[key] = index
        assert times == sorted(times)  # time order
        assert sorted(got) == sorted((k, i) for _, k, i in expected)
        for t, _, _ in expected:
            assert t <= now  # never early

    for op, arg in ops:
        if op == "start":
            assert s.start(arg, now) is bool(rounds)
            if rounds:
                model[arg] = [now, 0]
                last_sent[arg] = -1
        elif op == "cancel":
            s.cancel(arg)
            model.pop(arg, None)
        else:
            now += arg / 1000
            step(now)
        assert len(s) == len(model)
        assert all(s.active(k) == (k in model) for k in range(4))
        pending = [a + offsets[n] for a, n in model.values()]
        assert s.next_deadline() == (min(pending) if pending else None)

    survivors = set(model)
    step(now + 60)
    assert len(s) == 0 and s.next_deadline() is None
    for key in survivors:
        assert last_sent[key] == len(rounds) - 1


@settings(max_examples=200)
@given(rounds=_rounds.filter(bool), gaps=st.lists(st.integers(0, 300), max_size=30))
def test_untouched_key_sends_increasing_rounds_ending_with_the_last(rounds, gaps):
    s = AnnounceSchedule(rounds)
    s.start(MAC_A, T0)
    now = T0
    sent = []
    for gap in gaps:
        now += gap / 1000
        for key, index in s.due(now):
            assert key == MAC_A and at(rounds[index]) <= now
            sent.append(index)
    sent.extend(index for _, index in s.due(T0 + 60))
    assert sent == sorted(set(sent))  # each at most once, in order
    assert sent[-1] == len(rounds) - 1
    # Every skipped round was collapsed, none lost silently.
    assert len(sent) + s.collapsed == len(rounds)


def test_punctual_caller_sends_every_round_exactly_once():
    s = AnnounceSchedule(DEFAULT_ROUNDS_MS)
    s.start(MAC_A, T0)
    sent = []
    while (deadline := s.next_deadline()) is not None:
        sent.extend(s.due(deadline))
    assert sent == [(MAC_A, i) for i in range(5)]
    assert s.collapsed == 0
