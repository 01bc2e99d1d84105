"""Shared test data: the seed VM, gateway parameters, and request builders.

Requests are built with scapy, an implementation independent of `protocols`, so a test never
checks our encoder against our own decoder only.
"""

from __future__ import annotations

import ipaddress

from scapy.layers import dhcp6 as scapy_dhcp6
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from protocols.bindings import Binding, BindingTable, Pool, Pool6
from protocols.params import GatewayParams

# The seed's VM (SPEC "Test vectors"): fedora, 0a:58:0a:f4:02:1a, 10.244.2.26/24.
SEED_NAME = "fedora"
SEED_MAC = bytes.fromhex("0a580af4021a")
SEED_MAC_STR = "0a:58:0a:f4:02:1a"
SEED_IP = bytes((10, 244, 2, 26))
SEED_IP_STR = "10.244.2.26"
SEED_PREFIXLEN = 24

# A second VM on the same node.
OTHER_MAC = bytes.fromhex("0a580af4021b")
OTHER_MAC_STR = "0a:58:0a:f4:02:1b"
OTHER_IP = bytes((10, 244, 2, 27))
OTHER_IP_STR = "10.244.2.27"

GW_MAC = bytes.fromhex("0a58a9fe0101")
GW_MAC_STR = "0a:58:a9:fe:01:01"
GW_IP = bytes((169, 254, 1, 1))
GW_IP_STR = "169.254.1.1"
DNS_IP = bytes((10, 96, 0, 10))

RELAY_MAC_STR = "02:00:00:00:00:fe"
RELAY_IP_STR = "10.244.2.254"
UNKNOWN_MAC_STR = "02:42:ac:11:00:02"
UNKNOWN_MAC = bytes.fromhex("0242ac110002")
XID = 0x2A2B2C2D


def seed_binding(**overrides) -> Binding:
    fields = dict(name=SEED_NAME, mac=SEED_MAC, ipv4=SEED_IP, prefixlen=SEED_PREFIXLEN)
    fields.update(overrides)
    return Binding(**fields)


def other_binding() -> Binding:
    return Binding(name="centos", mac=OTHER_MAC, ipv4=OTHER_IP, prefixlen=SEED_PREFIXLEN)


def seed_table(*, pool: bool = False, pool_size: int = 4) -> BindingTable:
    pools = []
    if pool:
        subnet = ipaddress.IPv4Network("10.244.9.0/24")
        pools.append(Pool(subnet, subnet[10], subnet[10 + pool_size - 1]))
    return BindingTable([seed_binding(), other_binding()], pools)


def seed_params(**overrides) -> GatewayParams:
    fields = dict(dns_servers=[DNS_IP])
    fields.update(overrides)
    return GatewayParams(**fields)


def dhcp_request(
    mtype: str | int | None,
    *,
    eth_src: str = SEED_MAC_STR,
    eth_dst: str = "ff:ff:ff:ff:ff:ff",
    ip_src: str = "0.0.0.0",
    ip_dst: str = "255.255.255.255",
    sport: int = 68,
    dport: int = 67,
    op: int = 1,
    chaddr: bytes | None = None,
    hlen: int = 6,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    flags: int = 0,
    hops: int = 0,
    secs: int = 0,
    xid: int = XID,
    options: list | tuple = (),
    udp_checksum: int | None = None,
) -> bytes:
    """A client (or relayed) BOOTP/DHCP frame built by scapy."""
    opts = [] if mtype is None else [("message-type", mtype)]
    opts += list(options)
    opts.append("end")
    if chaddr is None:
        chaddr = bytes.fromhex(eth_src.replace(":", ""))
    pkt = (
        Ether(src=eth_src, dst=eth_dst)
        / IP(src=ip_src, dst=ip_dst)
        / UDP(sport=sport, dport=dport, chksum=udp_checksum)
        / BOOTP(
            op=op,
            hlen=hlen,
            chaddr=chaddr,
            ciaddr=ciaddr,
            giaddr=giaddr,
            flags=flags,
            hops=hops,
            secs=secs,
            xid=xid,
        )
        / DHCP(options=opts)
    )
    return bytes(pkt)


def arp_frame(
    *,
    op: int = 1,
    eth_src: str = SEED_MAC_STR,
    eth_dst: str = "ff:ff:ff:ff:ff:ff",
    sha: str | None = None,
    spa: str = SEED_IP_STR,
    tha: str = "00:00:00:00:00:00",
    tpa: str = GW_IP_STR,
    ethertype: int = 0x0806,
) -> bytes:
    """An ARP frame built by scapy (42 bytes, unpadded)."""
    pkt = Ether(src=eth_src, dst=eth_dst, type=ethertype) / ARP(
        op=op, hwsrc=sha or eth_src, psrc=spa, hwdst=tha, pdst=tpa
    )
    return bytes(pkt)


def option_codes(block: bytes) -> list[int]:
    """The option codes in `block` (from just after the cookie) up to END, in order."""
    codes = []
    i = 0
    while block[i] != 255:
        if block[i] == 0:
            i += 1
            continue
        codes.append(block[i])
        i += 2 + block[i + 1]
    return codes


# Offsets into a reply frame without IP options.
IP_OFF = 14
UDP_OFF = 34
BOOTP_OFF = 42
OPTIONS_OFF = BOOTP_OFF + 240


# -- IPv6 ----------------------------------------------------------------------------------

# The seed VM dual-stack, as DESIGN's example binding: fd00:10:244:2::1a/64.
SEED_IP6_STR = "fd00:10:244:2::1a"
SEED_IP6 = ipaddress.IPv6Address(SEED_IP6_STR).packed
SEED_PREFIXLEN6 = 64
SEED_LL_STR = "fe80::858:aff:fef4:21a"  # the seed VM's EUI-64 link-local address
SEED_LL = ipaddress.IPv6Address(SEED_LL_STR).packed
# The other VM's IPv6 address (bound in seed_table6).
OTHER_IP6_STR = "fd00:10:244:2::1b"
OTHER_IP6 = ipaddress.IPv6Address(OTHER_IP6_STR).packed
# An IPv6-only VM.
V6ONLY_NAME = "v6only"
V6ONLY_MAC_STR = "0a:58:00:00:06:01"
V6ONLY_MAC = bytes.fromhex("0a5800000601")
V6ONLY_IP6_STR = "fd00:10:244:2::61"
V6ONLY_IP6 = ipaddress.IPv6Address(V6ONLY_IP6_STR).packed
V6ONLY_LL_STR = "fe80::858:ff:fe00:601"

GW6_STR = "fe80::1"
GW6 = ipaddress.IPv6Address(GW6_STR).packed
GW6_SOLICITED_STR = "ff02::1:ff00:1"
DHCP6_MAC_STR = "0a:58:6d:6d:c1:50"
DHCP6_MAC = bytes.fromhex("0a586d6dc150")
DHCP6_SRC_STR = "fe80::858:6dff:fe6d:c150"
DHCP6_SRC = ipaddress.IPv6Address(DHCP6_SRC_STR).packed
DHCP6_DUID = bytes.fromhex("00030001 0a586d6dc150")
DNS6_STR = "fd00:10:96::a"
DNS6 = ipaddress.IPv6Address(DNS6_STR).packed
ALL_DHCP_STR = "ff02::1:2"
POOL6_SUBNET = "fd00:10:244:9::/64"
IAID = 0x0A0B0C0D
XID6 = 0x123456


def seed_binding6(**overrides) -> Binding:
    """The seed VM, dual-stack."""
    return seed_binding(**{"ipv6": SEED_IP6, "prefixlen6": SEED_PREFIXLEN6, **overrides})


def v6only_binding() -> Binding:
    return Binding(name=V6ONLY_NAME, mac=V6ONLY_MAC, ipv6=V6ONLY_IP6, prefixlen6=64)


def seed_table6(*, pool6: bool = False, pool6_size: int = 4) -> BindingTable:
    """The dual-stack seed VM, the other VM (IPv4 and IPv6) and the IPv6-only VM."""
    other = other_binding()
    other.ipv6 = OTHER_IP6
    other.prefixlen6 = 64
    pools6 = []
    if pool6:
        subnet = ipaddress.IPv6Network(POOL6_SUBNET)
        pools6.append(Pool6(subnet, subnet[0x10], subnet[0x10 + pool6_size - 1]))
    return BindingTable([seed_binding6(), other, v6only_binding()], [], pools6)


def seed_params6(**overrides) -> GatewayParams:
    fields = dict(dns6_servers=[DNS6])
    fields.update(overrides)
    return seed_params(**fields)


def duid_ll_of(mac_str: str) -> bytes:
    return bytes.fromhex("00030001" + mac_str.replace(":", ""))


_DHCP6_CLASSES = {
    "solicit": scapy_dhcp6.DHCP6_Solicit,
    "advertise": scapy_dhcp6.DHCP6_Advertise,
    "request": scapy_dhcp6.DHCP6_Request,
    "confirm": scapy_dhcp6.DHCP6_Confirm,
    "renew": scapy_dhcp6.DHCP6_Renew,
    "rebind": scapy_dhcp6.DHCP6_Rebind,
    "reply": scapy_dhcp6.DHCP6_Reply,
    "release": scapy_dhcp6.DHCP6_Release,
    "decline": scapy_dhcp6.DHCP6_Decline,
    "reconfigure": scapy_dhcp6.DHCP6_Reconf,
    "information-request": scapy_dhcp6.DHCP6_InfoRequest,
}
NO_SERVER_ID = ("solicit", "confirm", "rebind", "information-request")


def dhcp6_request(
    mtype: str,
    *,
    eth_src: str = SEED_MAC_STR,
    eth_dst: str = "33:33:00:01:00:02",
    ip_src: str = SEED_LL_STR,
    ip_dst: str = ALL_DHCP_STR,
    hlim: int = 1,
    sport: int = 546,
    dport: int = 547,
    xid: int = XID6,
    duid: bytes | None = None,
    client_id: bool = True,
    server_id: bytes | None | bool = True,
    iaids: tuple[int, ...] | list[int] = (IAID,),
    addresses: tuple[str, ...] | list[str] = (),
    rapid_commit: bool = False,
    fqdn: tuple[int, str] | None = None,
    options: list | tuple = (),
    udp_checksum: int | None = None,
) -> bytes:
    """A client DHCPv6 frame built by scapy.

    Client-ID is DUID-LL of `eth_src` unless `duid` is given; `server_id=True` adds ours to
    the message types that carry one (REQUEST, RENEW, RELEASE, DECLINE); bytes add those.
    Each IAID becomes an IA_NA holding `addresses`. `fqdn` = (flags, name)."""
    msg = _DHCP6_CLASSES[mtype](trid=xid)
    if client_id:
        value = duid if duid is not None else duid_ll_of(eth_src)
        msg /= scapy_dhcp6.DHCP6OptClientId(duid=value)
    if server_id is True and mtype not in NO_SERVER_ID:
        server_id = DHCP6_DUID
    if isinstance(server_id, bytes):
        msg /= scapy_dhcp6.DHCP6OptServerId(duid=server_id)
    msg /= scapy_dhcp6.DHCP6OptElapsedTime() / scapy_dhcp6.DHCP6OptOptReq(reqopts=[23, 24])
    if rapid_commit:
        msg /= scapy_dhcp6.DHCP6OptRapidCommit()
    for iaid in iaids:
        inner = [scapy_dhcp6.DHCP6OptIAAddress(addr=a, preflft=0, validlft=0) for a in addresses]
        msg /= scapy_dhcp6.DHCP6OptIA_NA(iaid=iaid, T1=0, T2=0, ianaopts=inner)
    if fqdn is not None:
        msg /= scapy_dhcp6.DHCP6OptClientFQDN(flags=fqdn[0], fqdn=fqdn[1])
    for option in options:
        msg /= option
    pkt = (
        Ether(src=eth_src, dst=eth_dst)
        / IPv6(src=ip_src, dst=ip_dst, hlim=hlim)
        / UDP(sport=sport, dport=dport, chksum=udp_checksum)
        / msg
    )
    return bytes(pkt)


def ns_frame(
    target: str = GW6_STR,
    *,
    eth_src: str = SEED_MAC_STR,
    eth_dst: str | None = None,
    ip_src: str = SEED_LL_STR,
    ip_dst: str | None = None,
    hlim: int = 255,
    code: int = 0,
    slla: bool = True,
    cksum: int | None = None,
) -> bytes:
    """A Neighbor Solicitation built by scapy; by default to the target's solicited-node
    group, with a Source Link-Layer Address option (none for a DAD probe from ::)."""
    if ip_dst is None:
        group = (
            bytes.fromhex("ff0200000000000000000001ff") + ipaddress.IPv6Address(target).packed[13:]
        )
        ip_dst = str(ipaddress.IPv6Address(group))
    if eth_dst is None:
        eth_dst = "33:33:" + ipaddress.IPv6Address(ip_dst).packed[12:].hex(":")
    ns = ICMPv6ND_NS(tgt=target, code=code)
    if cksum is not None:
        ns.cksum = cksum
    if slla and ip_src != "::":
        ns /= ICMPv6NDOptSrcLLAddr(lladdr=eth_src)
    return bytes(Ether(src=eth_src, dst=eth_dst) / IPv6(src=ip_src, dst=ip_dst, hlim=hlim) / ns)


def rs_frame(
    *,
    eth_src: str = SEED_MAC_STR,
    ip_src: str = SEED_LL_STR,
    ip_dst: str = "ff02::2",
    hlim: int = 255,
    slla: bool = True,
) -> bytes:
    """A Router Solicitation built by scapy (to all-routers by default)."""
    rs = ICMPv6ND_RS()
    if slla and ip_src != "::":
        rs /= ICMPv6NDOptSrcLLAddr(lladdr=eth_src)
    eth_dst = "33:33:" + ipaddress.IPv6Address(ip_dst).packed[12:].hex(":")
    return bytes(Ether(src=eth_src, dst=eth_dst) / IPv6(src=ip_src, dst=ip_dst, hlim=hlim) / rs)


def na_frame(
    target: str = SEED_IP6_STR,
    *,
    eth_src: str = SEED_MAC_STR,
    ip_src: str | None = None,
    ip_dst: str = "ff02::1",
    hlim: int = 255,
    solicited: int = 0,
) -> bytes:
    """An unsolicited Neighbor Advertisement (O set) built by scapy, as a guest sends."""
    na = ICMPv6ND_NA(tgt=target, R=0, S=solicited, O=1) / ICMPv6NDOptDstLLAddr(lladdr=eth_src)
    eth_dst = "33:33:" + ipaddress.IPv6Address(ip_dst).packed[12:].hex(":")
    ip = IPv6(src=ip_src or target, dst=ip_dst, hlim=hlim)
    return bytes(Ether(src=eth_src, dst=eth_dst) / ip / na)


def ra_frame(*, eth_src: str = SEED_MAC_STR, ip_src: str = SEED_LL_STR) -> bytes:
    """A Router Advertisement as a rogue VM would send it."""
    ra = ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=eth_src)
    return bytes(Ether(src=eth_src, dst="33:33:00:00:00:01") / IPv6(src=ip_src, dst="ff02::1") / ra)


def redirect_frame(*, eth_src: str = SEED_MAC_STR, ip_src: str = SEED_LL_STR) -> bytes:
    """An ICMPv6 Redirect as a rogue VM would send it."""
    redirect = ICMPv6ND_Redirect(tgt=GW6_STR, dst="fd00::1")
    return bytes(
        Ether(src=eth_src, dst="0a:58:0a:f4:02:1b") / IPv6(src=ip_src, dst="fe80::2") / redirect
    )


# Offsets into an Ethernet + IPv6 frame.
IP6_OFF = 14
L4_OFF6 = 54  # UDP or ICMPv6 header
DHCP6_OFF = 62  # DHCPv6 message after the UDP header
