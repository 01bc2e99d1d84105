"""The NDP gateway proxy (SPEC "NDP proxy", "IPv6 default route"; RFC 4861).

Answers Neighbor Solicitations for the gateway's link-local address (`fe80::1`) with the
gateway MAC, so that a VM's default route resolves the same way on whichever node it runs,
and, when `ra` is on, Router Solicitations with a Router Advertisement that makes the guest
install `::/0 via fe80::1` and ask DHCPv6 for its address (M=1, O=1, no Prefix Information).
Nothing else is answered; a VM's own address never is.

Decisions where SPEC or RFC 4861 leave room, with the reasons:

- The DHCPv6 server's link-local address (`dhcpv6_source`, fe80::858:6dff:fe6d:c150) is
  answered too, with the DHCPv6 server MAC and S|O (no R: it is not a router). SPEC serves
  DHCPv6 sent unicast to that address, and a client can only send there once the address
  resolves; every node answers it identically, like the gateway.
- The NA for the gateway carries O although RFC 4861 §7.2.4 says a proxy SHOULD clear it:
  lmdp is not a proxy for some other node's address, it is the gateway on every node, and
  O is what corrects a guest whose cache holds another MAC after a migration (SPEC).
- The Ethernet destination of an NS is not checked, only its IPv6 destination: a NUD probe
  unicast to a stale gateway MAC after a migration deserves the answer that fixes it.
- RS is answered at once, unicast to the soliciting address (RFC 4861 §6.2.6 allows
  unicast; its random 0-0.5 s delay exists to spread the answers of several routers, and
  lmdp is the only router on a VM port, as with OVN, which answers at once too). An RS from
  `::` is answered to ff02::1.
- A Neighbor Advertisement from a VM is normal (unsolicited NAs on link-up, answers to
  other nodes): received as "na", neither answered nor dropped, and reports `mac` like
  QEMU's RARP. One whose target is the gateway or the DHCPv6 server address is a VM
  claiming lmdp's addresses: dropped "gateway_claimed", so it is counted.
"""

from __future__ import annotations

import struct

from .bindings import BindingTable
from .ethernet import ETH_HLEN, ETH_P_IPV6
from .ipv6 import (
    ALL_NODES,
    ALL_NODES_MAC,
    ALL_ROUTERS,
    SOLICITED_NODE_PREFIX,
    UNSPECIFIED,
    decode_icmpv6,
    encode_icmpv6_frame,
    solicited_node,
)
from .outcome import Outcome
from .params import GatewayParams
from .wire import MalformedPacket

__all__ = [
    "ND_HOP_LIMIT",
    "ND_NEIGHBOR_ADVERT",
    "ND_NEIGHBOR_SOLICIT",
    "ND_REDIRECT",
    "ND_ROUTER_ADVERT",
    "ND_ROUTER_SOLICIT",
    "NA_FLAG_OVERRIDE",
    "NA_FLAG_ROUTER",
    "NA_FLAG_SOLICITED",
    "RA_FLAG_MANAGED",
    "RA_FLAG_OTHER",
    "NdpResponder",
    "build_ra",
    "ra_delay",
]

# ICMPv6 types (RFC 4861 §4).
ND_ROUTER_SOLICIT = 133
ND_ROUTER_ADVERT = 134
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_REDIRECT = 137
# Options (RFC 4861 §4.6).
ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_TARGET_LINKADDR = 2
ND_OPT_MTU = 5
ND_HOP_LIMIT = 255  # RFC 4861 §6.1, §7.1: receivers drop ND messages with any other
NA_FLAG_ROUTER = 0x80000000
NA_FLAG_SOLICITED = 0x40000000
NA_FLAG_OVERRIDE = 0x20000000
RA_FLAG_MANAGED = 0x80  # M: addresses from DHCPv6 (RFC 4861 §4.2)
RA_FLAG_OTHER = 0x40  # O: other configuration from DHCPv6
RA_CUR_HOP_LIMIT = 64  # the hop limit guests should use (RFC 4861 §4.2; IANA default TTL)
IPV6_MIN_MTU = 1280  # RFC 8200 §5

# Received labels.
RECEIVED_ICMPV6 = "icmpv6"  # malformed, or an ICMPv6 type the proxy does not take
_LABELS = {
    ND_ROUTER_SOLICIT: "rs",
    ND_ROUTER_ADVERT: "ra",
    ND_NEIGHBOR_SOLICIT: "ns",
    ND_NEIGHBOR_ADVERT: "na",
    ND_REDIRECT: "redirect",
}

# NA with one Target Link-Layer Address option (RFC 4861 §4.4, §4.6.1): type, code,
# checksum, flags + reserved, target, option type, option length (8-byte units), MAC.
_NA = struct.Struct("!BBHI16sBB6s")
# RA header (RFC 4861 §4.2): type, code, checksum, cur hop limit, M/O flags, router lifetime,
# reachable time, retrans timer; then Source Link-Layer Address (§4.6.1).
_RA = struct.Struct("!BBHBBHIIBB6s")
# MTU option (RFC 4861 §4.6.4): type, length 1, reserved, MTU.
_MTU_OPTION = struct.Struct("!BBHI")


def _check_options(frame: bytes, i: int, end: int) -> bool | None:
    """Walk the ND options in `frame[i:end]` (RFC 4861 §4.6): True if a Source Link-Layer
    Address option is present, False if not, None if the framing is broken (a zero length,
    or an option running past the end)."""
    slla = False
    while i < end:
        if i + 2 > end:
            return None
        units = frame[i + 1]
        if units == 0 or i + 8 * units > end:
            return None
        if frame[i] == ND_OPT_SOURCE_LINKADDR:
            slla = True
        i += 8 * units
    return slla


def _ra_message(params: GatewayParams) -> bytes:
    """The RA's ICMPv6 message with a zero checksum; ValueError for a bad configuration."""
    interval = params.ra_interval
    lifetime = params.ra_router_lifetime
    if not 4 <= interval <= 1800:
        raise ValueError(f"ra_interval {interval} outside 4..1800 s (RFC 4861 §6.2.1)")
    if not interval <= lifetime <= 9000:
        raise ValueError(
            f"ra_router_lifetime {lifetime} outside ra_interval..9000 s (RFC 4861 §6.2.1)"
        )
    message = _RA.pack(
        ND_ROUTER_ADVERT, 0, 0, RA_CUR_HOP_LIMIT, RA_FLAG_MANAGED | RA_FLAG_OTHER, lifetime,
        0, 0, ND_OPT_SOURCE_LINKADDR, 1, params.gateway_mac,
    )  # fmt: skip
    if params.mtu:
        if not IPV6_MIN_MTU <= params.mtu <= 0xFFFFFFFF:
            raise ValueError(f"MTU {params.mtu} under IPv6's minimum of 1280 (RFC 8200 §5)")
        message += _MTU_OPTION.pack(ND_OPT_MTU, 1, 0, params.mtu)
    return message


def build_ra(
    params: GatewayParams, dst_mac: bytes = ALL_NODES_MAC, dst_ip: bytes = ALL_NODES
) -> bytes:
    """A Router Advertisement frame from the gateway (SPEC "IPv6 default route").

    Ethernet src = gateway MAC, IPv6 src = `gateway_ipv6` (a link-local address, as RFC 4861
    §4.2 requires), hop limit 255; cur hop limit 64, M=1, O=1, router lifetime
    `ra_router_lifetime`, reachable time and retrans timer 0 (unspecified); options: Source
    Link-Layer Address = gateway MAC, MTU if `params.mtu`; no Prefix Information, so the
    guest's only global address is the one DHCPv6 gives. The default destination is ff02::1
    for the periodic RAs (pace them with `ra_delay`). ValueError for a bad configuration.
    """
    return encode_icmpv6_frame(
        dst_mac, params.gateway_mac, params.gateway_ipv6, dst_ip, _ra_message(params)
    )


def ra_delay(params: GatewayParams, u: float) -> float:
    """Seconds until the next periodic RA, for `u` uniform in [0, 1) from the caller's RNG:
    uniform between MinRtrAdvInterval and MaxRtrAdvInterval = `ra_interval` (RFC 4861
    §6.2.4), MinRtrAdvInterval being its default 0.33 x Max (0.75 x Max under 9 s)."""
    high = params.ra_interval
    low = high * (0.33 if high >= 9 else 0.75)
    return low + u * (high - low)


class NdpResponder:
    """The NDP proxy: one `handle` call per received ICMPv6 frame (SPEC "NDP proxy").

    Neighbor Solicitation (type 135) with hop limit 255, code 0, a valid checksum and the
    RFC 4861 §7.1.1 checks, whose target is `gateway_ipv6` (or `dhcpv6_source`), sent to
    the target or its solicited-node group: a Neighbor Advertisement with Ethernet dst =
    the NS's Ethernet src, Ethernet src = gateway MAC (DHCPv6 server MAC), IPv6 src = the
    target, dst = the NS source, hop limit 255, flags R|S|O (S|O for the DHCPv6 server), and
    one Target Link-Layer Address option. A DAD probe (source ::) for those targets is
    answered to ff02::1 (33:33:00:00:00:01) with S clear (RFC 4861 §7.2.4), defending the
    address. NS for any other target: dropped "probe_for_own" (the asker's own address),
    "vm_address" (another VM's: never answered) or "not_proxied".

    Router Solicitation (type 133; hop limit 255, code 0, §6.1.1 checks) sent to ff02::2 or
    the gateway: with `params.ra`, an RA from `build_ra` unicast to the RS source (to ff02::1
    when the source is ::); without, dropped "ra_disabled".

    From a VM, a Router Advertisement is dropped "ra_from_vm" and a Redirect
    "redirect_from_vm"; Neighbor Advertisements are taken without answer (see the module
    docstring). `Outcome.mac` is the Ethernet source whenever it is a bound VM's MAC.

    `params` is read once here; build a new responder when the parameters change.

    `handle` is pure: its outcome depends on the frame's bytes and the binding table only
    (not on `ifname` or `now`), and it changes nothing. The engine relies on that to reuse
    the outcome for a byte-identical frame until `table.version` changes.
    """

    __slots__ = ("params", "table", "_targets", "_ra")
    pure = True

    def __init__(self, params: GatewayParams, table: BindingTable):
        self.params = params
        self.table = table
        # target -> (MAC to answer with, NA flags when solicited, NA flags for DAD).
        gw_flags = NA_FLAG_ROUTER | NA_FLAG_OVERRIDE
        server = params.dhcpv6_source
        self._targets: dict[bytes, tuple[bytes, int, int]] = {}
        if server is not None:
            self._targets[server] = (
                params.dhcpv6_mac, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE, NA_FLAG_OVERRIDE
            )  # fmt: skip
        self._targets[params.gateway_ipv6] = (
            params.gateway_mac, gw_flags | NA_FLAG_SOLICITED, gw_flags
        )  # fmt: skip
        # Validated here so that a bad configuration fails at start-up, not at packet time.
        self._ra = _ra_message(params) if params.ra else None

    def handle(self, frame: bytes, ifname: str, now: float) -> Outcome:
        """Answer or refuse one received frame; never raises on remote input."""
        if len(frame) < ETH_HLEN:
            return Outcome(RECEIVED_ICMPV6, drop="truncated")
        if frame[12] << 8 | frame[13] != ETH_P_IPV6:
            return Outcome(RECEIVED_ICMPV6, drop="bad_ethertype")
        eth_src = frame[6:12]
        mac = eth_src if self.table.lookup(eth_src) is not None else None
        try:
            src, dst, hlim, icmp_type, code, start, end = decode_icmpv6(frame)
        except MalformedPacket as exc:
            return Outcome(RECEIVED_ICMPV6, drop=exc.reason, mac=mac)
        label = _LABELS.get(icmp_type)
        if label is None:
            return Outcome(RECEIVED_ICMPV6, drop="unsupported_message", mac=mac)
        if icmp_type == ND_ROUTER_ADVERT:
            return Outcome(label, drop="ra_from_vm", mac=mac)
        if icmp_type == ND_REDIRECT:
            return Outcome(label, drop="redirect_from_vm", mac=mac)
        if hlim != ND_HOP_LIMIT:
            return Outcome(label, drop="bad_hop_limit", mac=mac)
        if code != 0:
            return Outcome(label, drop="bad_nd", mac=mac)
        if icmp_type == ND_NEIGHBOR_SOLICIT:
            return self._solicit(frame, eth_src, mac, src, dst, start, end)
        if icmp_type == ND_ROUTER_SOLICIT:
            return self._router_solicit(frame, eth_src, mac, src, dst, start, end)
        return self._advert(frame, mac, dst, start, end)

    def _solicit(
        self, frame: bytes, eth_src: bytes, mac: bytes | None, src: bytes, dst: bytes,
        start: int, end: int,
    ) -> Outcome:  # fmt: skip
        """NS (RFC 4861 §7.1.1 validity, §7.2.3-§7.2.4 answer)."""
        if end - start < 24:
            return Outcome("ns", drop="bad_nd", mac=mac)
        target = frame[start + 8 : start + 24]
        slla = _check_options(frame, start + 24, end)
        if target[0] == 0xFF or slla is None:
            return Outcome("ns", drop="bad_nd", mac=mac)
        dad = src == UNSPECIFIED
        if dad and (slla or dst[:13] != SOLICITED_NODE_PREFIX):
            # §7.1.1: a DAD probe goes to a solicited-node group and has no SLLA option.
            return Outcome("ns", drop="bad_nd", mac=mac)
        answer = self._targets.get(target)
        if answer is None:
            binding = self.table.lookup(eth_src)
            if binding is not None and binding.ipv6 == target:
                return Outcome("ns", drop="probe_for_own", mac=mac)
            if self.table.owner_of6(target) is not None:
                return Outcome("ns", drop="vm_address", mac=mac)
            return Outcome("ns", drop="not_proxied", mac=mac)
        if dst != target and dst != solicited_node(target):
            return Outcome("ns", drop="wrong_destination", mac=mac)
        if src in self._targets:
            return Outcome("ns", drop="gateway_claimed", mac=mac)
        answer_mac, flags, dad_flags = answer
        if dad:
            eth_dst, ip_dst, flags = ALL_NODES_MAC, ALL_NODES, dad_flags
        else:
            eth_dst, ip_dst = eth_src, src
        message = _NA.pack(
            ND_NEIGHBOR_ADVERT, 0, 0, flags, target, ND_OPT_TARGET_LINKADDR, 1, answer_mac
        )
        reply = encode_icmpv6_frame(eth_dst, answer_mac, target, ip_dst, message)
        return Outcome("ns", reply=reply, sent="na", mac=mac)

    def _router_solicit(
        self, frame: bytes, eth_src: bytes, mac: bytes | None, src: bytes, dst: bytes,
        start: int, end: int,
    ) -> Outcome:  # fmt: skip
        """RS (RFC 4861 §6.1.1 validity, §6.2.6 answer)."""
        if end - start < 8:
            return Outcome("rs", drop="bad_nd", mac=mac)
        slla = _check_options(frame, start + 8, end)
        if slla is None or (slla and src == UNSPECIFIED):
            return Outcome("rs", drop="bad_nd", mac=mac)
        if self._ra is None:
            return Outcome("rs", drop="ra_disabled", mac=mac)
        if dst != ALL_ROUTERS and dst != self.params.gateway_ipv6:
            return Outcome("rs", drop="wrong_destination", mac=mac)
        if src == UNSPECIFIED:
            eth_dst, ip_dst = ALL_NODES_MAC, ALL_NODES
        else:
            eth_dst, ip_dst = eth_src, src
        params = self.params
        reply = encode_icmpv6_frame(
            eth_dst, params.gateway_mac, params.gateway_ipv6, ip_dst, self._ra
        )
        return Outcome("rs", reply=reply, sent="ra", mac=mac)

    def _advert(self, frame: bytes, mac: bytes | None, dst: bytes, start: int, end: int) -> Outcome:
        """NA from a VM (RFC 4861 §7.1.2 validity): taken, never answered."""
        if end - start < 24:
            return Outcome("na", drop="bad_nd", mac=mac)
        target = frame[start + 8 : start + 24]
        solicited = frame[start + 4] & 0x40
        if (
            target[0] == 0xFF
            or (solicited and dst[0] == 0xFF)
            or _check_options(frame, start + 24, end) is None
        ):
            return Outcome("na", drop="bad_nd", mac=mac)
        if target in self._targets:
            return Outcome("na", drop="gateway_claimed", mac=mac)
        return Outcome("na", mac=mac)
