"""What a responder tells the engine about one received frame.

Responders never raise on remote input and never do I/O: they return an `Outcome` naming
what was received (a metrics label), the frame to transmit if any, the drop reason if the
frame was refused, and a `Lease` (DHCPv4) or `Lease6` (DHCPv6) that the engine must commit to
the store before it transmits the reply.

An outcome is read-only once returned: a pure responder's outcome may be handed out again
for an identical frame (see `ArpResponder`), so nobody may change it after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bindings import Lease, Lease6

__all__ = ["Outcome", "DROP_REASONS"]

# The closed set of drop reasons; each becomes a value of the `reason` metrics label.
DROP_REASONS = frozenset(
    {
        "truncated",  # shorter than its headers say
        "bad_ethertype",  # not a protocol this responder handles
        "bad_ip_header",  # IPv4 version/IHL/length nonsense (IPv6: version, UDP length)
        "bad_checksum",  # IPv4 header, UDP or ICMPv6 checksum wrong; zero UDP checksum in IPv6
        "fragment",  # IPv4 fragment, or an IPv6 Fragment header
        "not_udp",
        "wrong_port",
        "not_bootrequest",  # op 2 (BOOTREPLY) sent by a VM, or bad htype/hlen
        "no_magic_cookie",
        "bad_options",  # option framing broken
        "no_message_type",  # no option 53
        "unsupported_message",  # DHCP message type a server does not accept
        "unknown_client",  # no binding and no pool
        "pool_exhausted",
        "no_subnet",  # relayed from a giaddr that no pool's subnet holds
        "store_unavailable",  # new allocation refused while the store is down
        "bad_arp",  # not Ethernet/IPv4 ARP
        "arp_reply",  # ARP op other than request (replies, RARP)
        "gratuitous",  # sender IP == target IP
        "probe_for_own",  # target owned by the asker
        "vm_address",  # target is a VM's address: never answered
        "not_proxied",  # target is not the gateway or a proxied address
        "wrong_unicast_dst",  # unicast to a MAC that is not the gateway's
        "stale_allocation",  # the store gave the MAC another address
        "relay_from_vm",  # giaddr set by a bound VM: a VM is never a relay
        "tx_busy",  # the interface's transmit queue was full
        # IPv6, NDP and DHCPv6
        "ipv6_ext_header",  # an IPv6 extension header before the upper layer: not parsed
        "not_icmpv6",  # IPv6 but not ICMPv6 (the NDP responder's drop for DHCPv6 traffic)
        "bad_source",  # IPv6 source that cannot be answered (multicast; :: where not allowed)
        "wrong_destination",  # IPv6 dst not ours: not the gateway/its solicited-node group,
        #   not ff02::1:2 or the DHCPv6 server address, not all-routers for an RS
        "bad_hop_limit",  # ND message with hop limit under 255 (RFC 4861 §6.1, §7.1)
        "bad_nd",  # ND message invalid per RFC 4861 §6.1/§7.1: code, length, options, DAD rules
        "ra_disabled",  # Router Solicitation while `ra` is off (OVN-compatible default)
        "ra_from_vm",  # Router Advertisement sent by a VM: a VM is never a router
        "redirect_from_vm",  # ICMPv6 Redirect sent by a VM
        "gateway_claimed",  # NA from a VM whose target is the gateway or DHCPv6 server address
        "no_client_id",  # DHCPv6 message without a usable Client Identifier (RFC 8415 §16)
        "no_server_id",  # REQUEST/RENEW/RELEASE/DECLINE without Server Identifier (§16)
        "not_for_us",  # Server Identifier that is not ours (§16)
        "server_id_present",  # SOLICIT/CONFIRM/REBIND carrying a Server Identifier (§16)
        "no_ia_na",  # non-information request with no usable IA_NA (SPEC)
        "unexpected_ia",  # INFORMATION-REQUEST carrying an IA option (RFC 8415 §16.12)
        "unicast_forbidden",  # SOLICIT/CONFIRM/REBIND/INFORMATION-REQUEST sent unicast (§16)
        "server_message",  # ADVERTISE/REPLY/RECONFIGURE/RELAY-REPL sent by a VM
        "confirm_without_address",  # CONFIRM naming no address: no reply (§18.3.3)
    }
)


@dataclass(slots=True)
class Outcome:
    received: str  # what came in: "DHCPDISCOVER", "arp_request", "rarp", ...
    reply: bytes | None = None  # the frame to transmit on the interface it came on
    sent: str | None = None  # what goes out: "DHCPOFFER", "arp_reply", ...
    drop: str | None = None  # reason slug from DROP_REASONS
    lease: Lease | None = None  # commit this before transmitting `reply`
    mac: bytes | None = None  # the VM MAC the frame came from, when it is a bound VM
    conflict: bytes | None = None  # DHCPDECLINE: the address the VM found in use (option 50);
    #   DHCPv6 DECLINE: the (16-byte) IPv6 address declined
    lease6: Lease6 | None = None  # DHCPv6 pool allocation: commit before transmitting `reply`
    extra6: tuple[Lease6, ...] = ()  # more of them, for a REPLY to several new IA_NAs
    nak: bytes | None = None  # DHCPv4: sent instead of `reply` if the store holds the address
    #   for another client (or another address for this one): the client restarts at once
    commit_first: bool = True  # False: `reply` may go before its lease is committed (an
    #   OFFER or ADVERTISE names an allocation held in memory), unless the store is down
