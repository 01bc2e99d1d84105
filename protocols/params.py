"""The node-independent answers every lmdp gives: gateway identity, DNS, MTU, lease time.

Built once at start-up from the validated config (see `dataplane/config.py`); responders
read it on every packet, so addresses are kept packed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "GatewayParams",
    "INFINITE_LIFETIME",
    "ROUTER_LINK_LOCAL",
    "ROUTER_SUBNET",
    "duid_ll",
    "eui64_link_local",
]

ROUTER_LINK_LOCAL = "link-local"
ROUTER_SUBNET = "subnet"
# RFC 8415 §7.7: a lifetime of 0xffffffff is infinite (OVN's choice for every IA lifetime).
INFINITE_LIFETIME = 0xFFFFFFFF


def duid_ll(mac: bytes) -> bytes:
    """DUID-LL (RFC 8415 §11.4): type 3, hardware type 1 (Ethernet), the MAC."""
    return b"\x00\x03\x00\x01" + mac


def eui64_link_local(mac: bytes) -> bytes:
    """fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 §2.5.1,
    appendix A): the universal/local bit flipped and ff:fe inserted in the middle."""
    return b"\xfe\x80" + bytes(6) + bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE)) + mac[3:6]


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

    # -- IPv6 (SPEC "DHCPv6", "NDP proxy", "IPv6 default route") ------------------------
    gateway_ipv6: bytes = bytes.fromhex("fe800000000000000000000000000001")  # fe80::1
    # Source MAC of DHCPv6 replies; the server DUID and reply source derive from it.
    dhcpv6_mac: bytes = bytes.fromhex("0a586d6dc150")
    # Server-ID option value; None: DUID-LL of `dhcpv6_mac`, filled in at construction, so
    # it is identical on every node and a RENEW after a migration names this server too.
    dhcpv6_duid: bytes | None = None
    # Source address of DHCPv6 replies; None: the EUI-64 link-local of `dhcpv6_mac`
    # (fe80::858:6dff:fe6d:c150), filled in at construction.
    dhcpv6_source: bytes | None = None
    dns6_servers: list[bytes] = field(default_factory=list)  # packed IPv6, option 23
    # IA address lifetimes (RFC 8415 §21.6); None: `lease_time`. INFINITE_LIFETIME is
    # OVN's choice (no RENEW ever). T1 = 0.5 and T2 = 0.8 x preferred (RFC 8415 §21.4).
    preferred_lifetime: int | None = None
    valid_lifetime: int | None = None
    # Preference option (RFC 8415 §21.8) in ADVERTISE; 255 makes a client request at once
    # instead of collecting Advertise messages for a second. None: omitted (as OVN).
    dhcpv6_preference: int | None = 255
    # Router Advertisements (SPEC "IPv6 default route"): off by default, as OVN.
    ra: bool = False
    ra_router_lifetime: int = 1800  # seconds; RFC 4861 §6.2.1: MaxRtrAdvInterval..9000
    ra_interval: float = 200.0  # MaxRtrAdvInterval (RFC 4861 §6.2.1): 4..1800 s

    def __post_init__(self) -> None:
        if self.dhcpv6_duid is None:
            self.dhcpv6_duid = duid_ll(self.dhcpv6_mac)
        if self.dhcpv6_source is None:
            self.dhcpv6_source = eui64_link_local(self.dhcpv6_mac)

    def router_for(self, ipv4: bytes, prefixlen: int) -> bytes:
        """Option 3's router for a VM address in the configured router mode."""
        if self.router_mode == ROUTER_SUBNET and prefixlen < 31:
            net = int.from_bytes(ipv4, "big") & ((0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF)
            return (net + 1).to_bytes(4, "big")
        return self.gateway_ipv4

    def ia_lifetimes(self) -> tuple[int, int, int, int]:
        """`(preferred, valid, t1, t2)` for an IA_NA address (RFC 8415 §21.4, §21.6).

        T1 and T2 are 0.5 and 0.8 of the preferred lifetime; with an infinite preferred
        lifetime they are infinite too (the client never renews, as with OVN).
        """
        preferred = self.lease_time if self.preferred_lifetime is None else self.preferred_lifetime
        valid = self.lease_time if self.valid_lifetime is None else self.valid_lifetime
        if preferred == INFINITE_LIFETIME:
            return preferred, valid, INFINITE_LIFETIME, INFINITE_LIFETIME
        return preferred, valid, preferred // 2, preferred * 4 // 5
