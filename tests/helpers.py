"""Shared test data: the seed VM, gateway parameters, and request builders.

Requests are built with scapy, an implementation independent of `protocols`, so a test never
checks our encoder against our own decoder only.
"""

from __future__ import annotations

import ipaddress

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from protocols.bindings import Binding, BindingTable, Pool
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
