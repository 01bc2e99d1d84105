"""ARP (RFC 826) codec for Ethernet/IPv4 and the gateway ARP proxy.

The proxy answers "who has <gateway>?" for the VMs so that their default route resolves to
the gateway MAC on whichever node they run; it never answers for a VM's own address.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .bindings import Binding, BindingTable
from .ethernet import BROADCAST_MAC, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_RARP
from .outcome import Outcome
from .params import ROUTER_SUBNET, GatewayParams
from .wire import ARP_PACKET, ETH_HEADER, MalformedPacket

__all__ = [
    "ARP_HLEN",
    "ARPHRD_ETHER",
    "ARPOP_REPLY",
    "ARPOP_REQUEST",
    "ArpPacket",
    "ArpResponder",
    "decode_arp",
    "encode_arp",
]

ARPHRD_ETHER = 1  # hardware type Ethernet
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
ARP_HLEN = 28  # Ethernet/IPv4 ARP payload length

_unpack_arp = ARP_PACKET.unpack_from
_pack_arp = ARP_PACKET.pack
# The Ethernet header and the ARP packet in one: a request is read, and its reply built, with
# one (un)pack (see ETH_HEADER and ARP_PACKET).
_ARP_FRAME = struct.Struct(ETH_HEADER.format + ARP_PACKET.format.lstrip("!"))
_unpack_frame = _ARP_FRAME.unpack_from
_pack_frame = _ARP_FRAME.pack


@dataclass(slots=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet; addresses are packed bytes (6 and 4)."""

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


def decode_arp(data: bytes, offset: int = 0) -> ArpPacket:
    """Decode the ARP packet at `data[offset:]`; trailing bytes (Ethernet padding) ignored.

    Only htype 1 (Ethernet), ptype 0x0800, hlen 6, plen 4 (RFC 826) are accepted;
    anything else is MalformedPacket("bad_arp"), short input MalformedPacket("truncated").
    """
    if len(data) < offset + ARP_HLEN:
        raise MalformedPacket("truncated")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _unpack_arp(data, offset)
    if htype != ARPHRD_ETHER or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        raise MalformedPacket("bad_arp")
    return ArpPacket(op, sha, spa, tha, tpa)


def encode_arp(packet: ArpPacket) -> bytes:
    """The 28-byte Ethernet/IPv4 ARP packet (RFC 826)."""
    return _pack_arp(
        ARPHRD_ETHER, ETH_P_IP, 6, 4, packet.op, packet.sha, packet.spa, packet.tha, packet.tpa
    )


class ArpResponder:
    """The gateway ARP proxy (SPEC "ARP proxy"; RFC 826, RFC 5227).

    Answers an ARP request (op 1) whose target is the gateway IPv4, in router mode "subnet"
    the subnet gateway of the asking VM's binding, or an address in `params.proxied`, with
    a reply from the gateway MAC: Ethernet dst = the requester's Ethernet src, op 2,
    sha = gateway MAC, spa = the target, tha = the requester's sha, tpa = the requester's
    spa. The reply is 42 bytes, not padded (the kernel or NIC pads on the wire).

    Never answered, each with a drop reason: gratuitous ARP (spa == tpa), a probe for or a
    request about an address the asker's binding owns (RFC 5227 §2.1.1), a target that is
    any VM's address (answering would let one VM hijack another's traffic), a unicast
    request whose Ethernet dst is not the gateway MAC, replies and other ops, malformed
    frames. RARP (QEMU's self-announce after a migration) is reported as received "rarp"
    with `mac` = Ethernet src, no reply and no drop: it is only a hint that the VM is up.

    `params` is read once here; build a new responder when the parameters change.

    `handle` is pure: its outcome depends on the frame's bytes and the binding table only
    (not on `ifname` or `now`), and it changes nothing. The engine relies on that to reuse
    the outcome for a byte-identical frame until `table.version` changes.
    """

    __slots__ = ("params", "table", "_gateway", "_gateway_mac", "_subnet_mode", "_proxied")
    pure = True

    def __init__(self, params: GatewayParams, table: BindingTable):
        self.params = params
        self.table = table
        self._gateway = params.gateway_ipv4
        self._gateway_mac = params.gateway_mac
        self._subnet_mode = params.router_mode == ROUTER_SUBNET
        self._proxied = tuple(
            (int(net.network_address), int(net.netmask)) for net in params.proxied
        )

    def handle(self, frame: bytes, ifname: str, now: float) -> Outcome:
        """Answer or refuse one received frame; never raises on remote input."""
        if len(frame) < ETH_HLEN:
            return Outcome("arp", drop="truncated")
        ethertype = frame[12] << 8 | frame[13]
        if ethertype == ETH_P_RARP:
            return Outcome("rarp", mac=frame[6:12])
        if ethertype != ETH_P_ARP:
            return Outcome("arp", drop="bad_ethertype")
        src = frame[6:12]
        binding = self.table.by_mac.get(src)  # table.lookup, without the call
        mac = src if binding is not None else None
        if len(frame) < ETH_HLEN + ARP_HLEN:
            return Outcome("arp", drop="truncated", mac=mac)
        # As decode_arp, without building an ArpPacket.
        dst, _, _, htype, ptype, hlen, plen, op, sha, spa, _, tpa = _unpack_frame(frame)
        if htype != ARPHRD_ETHER or ptype != ETH_P_IP or hlen != 6 or plen != 4:
            return Outcome("arp", drop="bad_arp", mac=mac)

        if op != ARPOP_REQUEST:
            label = "arp_reply" if op == ARPOP_REPLY else "arp"
            return Outcome(label, drop="arp_reply", mac=mac)
        if dst != BROADCAST_MAC and dst != self._gateway_mac:
            return Outcome("arp_request", drop="wrong_unicast_dst", mac=mac)
        if spa == tpa:
            return Outcome("arp_request", drop="gratuitous", mac=mac)
        if binding is not None and binding.ipv4 == tpa:
            return Outcome("arp_request", drop="probe_for_own", mac=mac)
        if tpa in self.table.by_ipv4:  # table.owner_of
            return Outcome("arp_request", drop="vm_address", mac=mac)
        if tpa != self._gateway and not self._is_proxied(tpa, binding):
            return Outcome("arp_request", drop="not_proxied", mac=mac)

        gw_mac = self._gateway_mac
        reply = _pack_frame(
            src, gw_mac, ETH_P_ARP, ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REPLY, gw_mac, tpa, sha, spa
        )
        # Positional (received, reply, sent, drop, lease, mac): a third cheaper than keywords.
        return Outcome("arp_request", reply, "arp_reply", None, None, mac)

    def _is_proxied(self, tpa: bytes, binding: Binding | None) -> bool:
        if tpa == self._gateway:
            return True
        if (
            self._subnet_mode
            and binding is not None
            and binding.ipv4 is not None
            and tpa == self.params.router_for(binding.ipv4, binding.prefixlen)
        ):
            return True
        if self._proxied:
            value = int.from_bytes(tpa, "big")
            for network, netmask in self._proxied:
                if value & netmask == network:
                    return True
        return False
