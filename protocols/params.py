"""The node-independent answers every lmdp gives: gateway identity, DNS, MTU, lease time.

Built once at start-up from the validated config (see `dataplane/config.py`); responders
read it on every packet, so addresses are kept packed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["GatewayParams", "ROUTER_LINK_LOCAL", "ROUTER_SUBNET"]

ROUTER_LINK_LOCAL = "link-local"
ROUTER_SUBNET = "subnet"


@dataclass(slots=True)
class GatewayParams:
    gateway_ipv4: bytes = bytes((169, 254, 1, 1))
    gateway_mac: bytes = bytes.fromhex("0a58a9fe0101")
    # link-local: router 169.254.1.1 with an on-link host route (option 121);
    # subnet: router is the first host of the VM's subnet (current OVN-Kubernetes).
    router_mode: str = ROUTER_LINK_LOCAL
    dns_servers: list[bytes] = field(default_factory=list)  # packed IPv4
    search: list[str] = field(default_factory=list)  # option 119 (and 15 = first)
    mtu: int | None = 1400
    lease_time: int = 3500
    # Extra CIDRs answered by the ARP proxy besides the gateway address.
    proxied: list[ipaddress.IPv4Network] = field(default_factory=list)

    def router_for(self, ipv4: bytes, prefixlen: int) -> bytes:
        """Option 3's router for a VM address in the configured router mode."""
        if self.router_mode == ROUTER_SUBNET and prefixlen < 31:
            net = int.from_bytes(ipv4, "big") & ((0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF)
            return (net + 1).to_bytes(4, "big")
        return self.gateway_ipv4
