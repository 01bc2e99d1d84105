"""Announcements after a live migration (SPEC "After a live migration"): gratuitous ARP and
unsolicited Neighbor Advertisements, and the QEMU self-announce schedule that paces them.

When a VM arrives on a node that was not its last one, the target node tells the network
where the VM now is (switches re-learn its port at once) and tells the VM where its gateway
is (a guest whose neighbour cache holds another MAC for its gateway is corrected).

Pure: frames are bytes built from a binding and the gateway parameters, and the schedule is a
timer table that takes `now` as an argument and says when it next needs the caller (the
aioquic shape). The frames are identical in every round, so the engine builds them once with
`announce_frames` when the VM arrives, calls `AnnounceSchedule.start`, and transmits them
again for every `(mac, round)` that `due` returns.

Byte-level decisions, with the rules they rest on:

- Gratuitous ARP is a pair, request then reply, both to Ethernet broadcast with Ethernet src =
  sha, spa = tpa = the announced address. The request's tha is zero (RFC 5227 §2.3: ignored,
  SHOULD be zero). The reply's tha is sha, not zero: Linux (`arp_is_garp` in
  net/ipv4/arp.c) counts an ARP reply as gratuitous only when tha == sha, which is the
  definition of a gratuitous reply in RFC 5944 §4.6 and what `arping -A` sends; a reply with
  a zero tha is an ordinary unsolicited reply, which overrides a cached MAC only when the
  entry is older than `locktime` (1 s) and never creates one under `arp_accept`.
- The pairs toward the VM are broadcast too, not unicast to the VM's MAC. Linux updates an
  existing neighbour entry from any ARP whose spa names it, broadcast or unicast to its own
  MAC alike (`arp_process`: the override flag is `is_garp` or an expired locktime; the frame
  type only makes a unicast reply REACHABLE instead of STALE, and a STALE entry with the
  right MAC is used at once). Broadcast is what every gratuitous ARP sender emits (the
  kernel, OVN, keepalived, arping), so it is the path every guest OS handles, and the frame
  does not depend on the VM.
- An unsolicited NA's IPv6 source is its target, for the gateway (`fe80::1`, the gateway's
  own link-local address) and for a VM's global address alike. RFC 4861 §4.4 wants an
  address of the sending interface; the target is the one address of that interface lmdp
  knows, since a guest's link-local address is not derivable from its MAC (NetworkManager
  defaults to RFC 7217 stable-privacy addresses), and `::` is not a valid NA source. Linux
  itself sends unsolicited NAs this way (`ndisc_send_unsol_na` -> `ndisc_send_na` with the
  address as both source and target).
"""

from __future__ import annotations

import heapq
import itertools
import struct
from collections.abc import Hashable, Sequence

from .arp import ARPHRD_ETHER, ARPOP_REPLY, ARPOP_REQUEST
from .bindings import Binding
from .ethernet import BROADCAST_MAC, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6
from .params import ROUTER_SUBNET, GatewayParams
from .wire import ARP_PACKET, ETH_HEADER, IPV6_HEADER, checksum, ipv6_pseudo_header_sum

__all__ = [
    "ALL_NODES",
    "ALL_NODES_MAC",
    "DEFAULT_ROUNDS_MS",
    "GATEWAY_IPV6",
    "IPPROTO_ICMPV6",
    "ND_NEIGHBOR_ADVERT",
    "ND_OPT_TARGET_LINKADDR",
    "NA_FLAG_OVERRIDE",
    "NA_FLAG_ROUTER",
    "NA_FLAG_SOLICITED",
    "AnnounceSchedule",
    "announce_frames",
    "garp_pair",
    "unsolicited_na",
]

GATEWAY_IPV6 = bytes.fromhex("fe800000000000000000000000000001")  # fe80::1
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")  # ff02::1
ALL_NODES_MAC = bytes.fromhex("333300000001")  # 33:33 + low 32 bits of ff02::1 (RFC 2464 §7)
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_ADVERT = 136  # RFC 4861 §4.4
ND_OPT_TARGET_LINKADDR = 2  # RFC 4861 §4.6.1
ND_HOP_LIMIT = 255  # RFC 4861 §7.1.2: receivers drop ND messages with any other hop limit
NA_FLAG_ROUTER = 0x80000000
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000
# QEMU's self-announce: 5 rounds, first gap 50 ms, growing by 100 ms (SPEC).
DEFAULT_ROUNDS_MS = (0, 50, 200, 450, 800)

_ZERO_MAC = bytes(6)
_pack_eth = ETH_HEADER.pack
_pack_arp = ARP_PACKET.pack
_pack_ip6 = IPV6_HEADER.pack
# Neighbor Advertisement with one Target Link-Layer Address option (RFC 4861 §4.4, §4.6.1):
# type, code, checksum, R/S/O flags + reserved, target, option type, option length (units of
# 8 bytes), link-layer address; 32 bytes.
_NA_MESSAGE = struct.Struct("!BBHI16sBB6s")
_IP6_VERSION = 6 << 28  # version 6, traffic class 0, flow label 0


def _require(value: bytes, size: int, what: str) -> None:
    # `struct`'s "6s" pads or truncates silently; a wrong length here is a caller's bug.
    if not isinstance(value, bytes) or len(value) != size:
        raise ValueError(f"{what} must be {size} packed bytes, got {value!r}")


def garp_pair(mac: bytes, ipv4: bytes) -> tuple[bytes, bytes]:
    """A gratuitous ARP request and reply announcing that `ipv4` is at `mac` (42 bytes each).

    Both go to Ethernet broadcast from `mac`, with sha = `mac` and spa = tpa = `ipv4`
    (RFC 5227 §3 announces with the request). The request's tha is zero (RFC 5227 §2.3); the
    reply's tha is `mac`, which makes it gratuitous to Linux (see the module docstring).
    Unpadded, like the ARP proxy's replies: the kernel or NIC pads on the wire.
    """
    _require(mac, 6, "mac")
    _require(ipv4, 4, "ipv4")
    eth = _pack_eth(BROADCAST_MAC, mac, ETH_P_ARP)
    request = eth + _pack_arp(
        ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST, mac, ipv4, _ZERO_MAC, ipv4
    )
    reply = eth + _pack_arp(ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REPLY, mac, ipv4, mac, ipv4)
    return request, reply


def unsolicited_na(mac: bytes, target: bytes, *, router: bool) -> bytes:
    """An unsolicited Neighbor Advertisement that `target` is at `mac` (RFC 4861 §7.2.6).

    Ethernet 33:33:00:00:00:01 from `mac`; IPv6 from `target` (see the module docstring) to
    ff02::1, hop limit 255; ICMPv6 type 136 code 0 with O set, R if `router`, S clear (S must
    be clear to a multicast destination, RFC 4861 §7.1.2), and one Target Link-Layer Address
    option = `mac`. The checksum covers the IPv6 pseudo-header (RFC 8200 §8.1). 86 bytes.
    """
    _require(mac, 6, "mac")
    _require(target, 16, "target")
    if target[0] == 0xFF:
        raise ValueError("a Neighbor Advertisement's target is never multicast (RFC 4861 §4.4)")
    flags = NA_FLAG_OVERRIDE | (NA_FLAG_ROUTER if router else 0)
    message = _NA_MESSAGE.pack(
        ND_NEIGHBOR_ADVERT, 0, 0, flags, target, ND_OPT_TARGET_LINKADDR, 1, mac
    )
    length = _NA_MESSAGE.size
    csum = checksum(message, ipv6_pseudo_header_sum(target, ALL_NODES, length, IPPROTO_ICMPV6))
    return b"".join(
        (
            _pack_eth(ALL_NODES_MAC, mac, ETH_P_IPV6),
            _pack_ip6(_IP6_VERSION, length, IPPROTO_ICMPV6, ND_HOP_LIMIT, target, ALL_NODES),
            message[:2],
            csum.to_bytes(2, "big"),
            message[4:],
        )
    )


def announce_frames(
    binding: Binding, params: GatewayParams, gateway_ipv6: bytes = GATEWAY_IPV6
) -> tuple[list[bytes], list[bytes]]:
    """`(toward_network, toward_vm)`: one round of announcements for a VM that just arrived.

    Toward the network (the VM port's uplink), from the VM's MAC: a gratuitous ARP pair for
    its IPv4 address and an unsolicited NA (O, not R) for its IPv6 address, each if it has
    one. Toward the VM, from the gateway MAC: a gratuitous ARP pair for the gateway IPv4; in
    router mode "subnet" also one for the subnet gateway the VM was given as its router
    (when that differs); and an unsolicited NA (R|O) for `gateway_ipv6`. The gateway
    announcements do not depend on the binding's addresses: a guest that holds no entry for
    them ignores them (no entry is created without `arp_accept` or `accept_untracked_na`).
    """
    toward_network: list[bytes] = []
    if binding.ipv4 is not None:
        toward_network.extend(garp_pair(binding.mac, binding.ipv4))
    if binding.ipv6 is not None:
        toward_network.append(unsolicited_na(binding.mac, binding.ipv6, router=False))

    gw_mac = params.gateway_mac
    toward_vm = list(garp_pair(gw_mac, params.gateway_ipv4))
    if params.router_mode == ROUTER_SUBNET and binding.ipv4 is not None:
        router = params.router_for(binding.ipv4, binding.prefixlen)
        if router != params.gateway_ipv4:
            toward_vm.extend(garp_pair(gw_mac, router))
    toward_vm.append(unsolicited_na(gw_mac, gateway_ipv6, router=True))
    return toward_network, toward_vm


# A heap entry: (deadline, sequence, key, generation, round index). The sequence number is
# unique, so the heap never compares keys; the generation is the sequence number of the
# `start` that scheduled the entry, so a restart or a cancel makes older entries stale.
_Entry = tuple[float, int, Hashable, int, int]


class AnnounceSchedule:
    """The per-VM announcement rounds: a timer table driven by the caller's clock.

    `rounds_ms` are offsets from the arrival in milliseconds, strictly ascending (default
    QEMU's 0, 50, 200, 450, 800); empty turns announcements off. `start(key, now)` schedules
    every round for `key` (a VM MAC) from `now`; `due(now)` hands back the rounds whose time
    has come; `next_deadline()` is when to call `due` next. Times are seconds (floats) from
    any monotonic clock. Each operation is O(log n) in the number of keys (one live heap
    entry per key; entries made stale by a restart or cancel are skipped when popped, and
    the heap is rebuilt when they outnumber the live ones).

    A late caller gets one round, not a burst: if several rounds of a key fell due since the
    last `due`, only the latest is returned and the skipped ones are counted in `collapsed`.
    The rounds are identical, idempotent refreshes, so sending copies back to back adds
    nothing a receiver uses (Linux even ignores back-to-back non-gratuitous ARP replies within
    `locktime`), and a loop that is already late should not be handed extra work. The
    remaining rounds keep their times relative to the arrival, so the spacing that follows
    is the designed one.
    """

    __slots__ = ("rounds_ms", "collapsed", "_offsets", "_heap", "_live", "_seq")

    def __init__(self, rounds_ms: Sequence[int] = DEFAULT_ROUNDS_MS):
        rounds = tuple(rounds_ms)
        for ms in rounds:
            if isinstance(ms, bool) or not isinstance(ms, int) or ms < 0:
                raise ValueError(f"announce rounds must be non-negative integers (ms): {rounds}")
        if any(b <= a for a, b in itertools.pairwise(rounds)):
            raise ValueError(f"announce rounds must be strictly ascending: {rounds}")
        self.rounds_ms = rounds  # as configured; read-only by convention
        self._offsets = tuple(ms / 1000 for ms in rounds)
        self._heap: list[_Entry] = []
        # key -> (generation, arrival time) for every key with rounds pending.
        self._live: dict[Hashable, tuple[int, float]] = {}
        self._seq = itertools.count()
        self.collapsed = 0  # rounds skipped because the caller was late

    def start(self, key: Hashable, now: float) -> bool:
        """Schedule every round for `key` from `now`, replacing any rounds it still had.

        True when rounds were scheduled, False when announcements are off. The first round
        (offset 0 by default) is due at `now`: call `due(now)` next.
        """
        if not self._offsets:
            return False
        generation = next(self._seq)
        self._live[key] = (generation, now)
        heapq.heappush(self._heap, (now + self._offsets[0], generation, key, generation, 0))
        self._compact()
        return True

    def cancel(self, key: Hashable) -> None:
        """Drop the rounds still pending for `key` (e.g. the VM left again); no-op if none."""
        if self._live.pop(key, None) is not None:
            self._compact()

    def active(self, key: Hashable) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def due(self, now: float) -> list[tuple[Hashable, int]]:
        """Consume and return every `(key, round_index)` due at `now`, in time order.

        A key whose several rounds fell due since the last call yields only the latest of
        them (see the class docstring); its next round stays at its scheduled time.
        """
        heap = self._heap
        live = self._live
        offsets = self._offsets
        last = len(offsets) - 1
        out: list[tuple[Hashable, int]] = []
        while heap and heap[0][0] <= now:
            _, _, key, generation, index = heapq.heappop(heap)
            state = live.get(key)
            if state is None or state[0] != generation:
                continue  # cancelled or restarted since this entry was pushed
            arrival = state[1]
            latest = index
            while latest < last and arrival + offsets[latest + 1] <= now:
                latest += 1
            if latest != index:
                # Late: re-file under the latest due round's time, so that the output stays in
                # the time order of the rounds actually sent.
                self.collapsed += latest - index
                entry = (arrival + offsets[latest], next(self._seq), key, generation, latest)
                heapq.heappush(heap, entry)
                continue
            out.append((key, index))
            if index == last:
                del live[key]
            else:
                entry = (arrival + offsets[index + 1], next(self._seq), key, generation, index + 1)
                heapq.heappush(heap, entry)
        return out

    def next_deadline(self) -> float | None:
        """When the earliest pending round is due (possibly already past), or None if none."""
        heap = self._heap
        live = self._live
        while heap:
            deadline, _, key, generation, _ = heap[0]
            state = live.get(key)
            if state is not None and state[0] == generation:
                return deadline
            heapq.heappop(heap)
        return None

    def _compact(self) -> None:
        # Stale entries are otherwise dropped only when they reach the top; a burst of
        # restarts (one per RARP from a VM that keeps announcing itself) must not grow the heap
        # without bound. Rebuilding leaves one entry per live key, so this is amortised O(1).
        if len(self._heap) > 2 * len(self._live) + 64:
            live = self._live
            self._heap = [e for e in self._heap if live.get(e[2], (None,))[0] == e[3]]
            heapq.heapify(self._heap)
