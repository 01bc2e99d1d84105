"""What a responder tells the engine about one received frame.

Responders never raise on remote input and never do I/O: they return an `Outcome` naming
what was received (a metrics label), the frame to transmit if any, the drop reason if the
frame was refused, and a `Lease` that the engine must commit to the store before it
transmits the reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bindings import Lease

__all__ = ["Outcome", "DROP_REASONS"]

# The closed set of drop reasons; each becomes a value of the `reason` metrics label.
DROP_REASONS = frozenset(
    {
        "truncated",  # shorter than its headers say
        "bad_ethertype",  # not a protocol this responder handles
        "bad_ip_header",  # IPv4 version/IHL/length nonsense
        "bad_checksum",  # IPv4 header or UDP checksum wrong
        "fragment",  # IPv4 fragment
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
    conflict: bytes | None = None  # DHCPDECLINE: the address the VM found in use (option 50)
