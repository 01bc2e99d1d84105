"""IPv6 framing for the NDP proxy and the DHCPv6 server (RFC 8200, RFC 4443, RFC 4291).

Decoders for the fixed IPv6 header, ICMPv6 (checksum verified, RFC 4443 §2.3) and UDP over
IPv6; encoders that build whole Ethernet frames with correct checksums; and the address
helpers NDP needs (solicited-node groups, multicast MACs).

Extension headers are not parsed: the messages lmdp answers (NS, RS, DHCPv6 from a client
on the link) never carry one, so a next header other than the upper layer a responder wants
is refused ("ipv6_ext_header", "fragment" for a Fragment header). Bytes past the payload
length are Ethernet padding and ignored.

The engine hands ethertype 0x86DD to one of two responders by `ipv6_next_header(frame)`:
58 (ICMPv6) to `NdpResponder`, anything else to `Dhcpv6Responder`.
"""

from __future__ import annotations

from .ethernet import ETH_HLEN, ETH_P_IPV6
from .params import eui64_link_local
from .wire import ETH_HEADER, IPV6_HEADER, UDP_HEADER, MalformedPacket, checksum

__all__ = [
    "ALL_DHCP_SERVERS",
    "ALL_NODES",
    "ALL_NODES_MAC",
    "ALL_ROUTERS",
    "EXTENSION_HEADERS",
    "IPPROTO_FRAGMENT",
    "IPPROTO_ICMPV6",
    "IPPROTO_UDP",
    "IPV6_HLEN",
    "SOLICITED_NODE_PREFIX",
    "UNSPECIFIED",
    "decode_icmpv6",
    "decode_ipv6",
    "decode_udp6",
    "encode_icmpv6_frame",
    "encode_udp6_frame",
    "eui64_link_local",
    "ipv6_next_header",
    "multicast_mac",
    "solicited_node",
]

IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_FRAGMENT = 44
# Next-header values that are extension headers (RFC 8200 §4, IANA "IPv6 Extension Header
# Types"): hop-by-hop, routing, fragment, ESP, AH, destination options, mobility, HIP,
# shim6, experimental.
EXTENSION_HEADERS = frozenset((0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254))
IPV6_HLEN = 40

UNSPECIFIED = bytes(16)  # ::
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")  # ff02::1
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")  # ff02::2
# All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1), where clients send.
ALL_DHCP_SERVERS = bytes.fromhex("ff020000000000000000000000010002")  # ff02::1:2
ALL_NODES_MAC = bytes.fromhex("333300000001")

_VERSION_6 = 6 << 28  # version 6, traffic class 0, flow label 0
SOLICITED_NODE_PREFIX = bytes.fromhex("ff0200000000000000000001ff")  # ff02::1:ff00:0/104

_unpack_ip6 = IPV6_HEADER.unpack_from
_pack_ip6 = IPV6_HEADER.pack
_unpack_udp = UDP_HEADER.unpack_from
_pack_udp = UDP_HEADER.pack
_pack_eth = ETH_HEADER.pack


def solicited_node(address: bytes) -> bytes:
    """The solicited-node multicast group of `address` (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX."""
    return SOLICITED_NODE_PREFIX + address[13:16]


def multicast_mac(group: bytes) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 + its low 32 bits (RFC 2464 §7)."""
    return b"\x33\x33" + group[12:16]


def ipv6_next_header(frame: bytes, offset: int = ETH_HLEN) -> int | None:
    """The fixed header's next header of the IPv6 packet at `frame[offset:]`, or None if short.

    The engine's dispatch key for ethertype 0x86DD: 58 goes to the NDP proxy, the rest to
    the DHCPv6 server (which refuses what is not UDP)."""
    return frame[offset + 6] if len(frame) > offset + 6 else None


def decode_ipv6(frame: bytes, offset: int = ETH_HLEN) -> tuple[bytes, bytes, int, int, int]:
    """`(src, dst, next_header, hop_limit, end)` of the IPv6 packet at `frame[offset:]`.

    The payload is `frame[offset + 40:end]`. Checks, in order: 40 bytes present
    ("truncated"), version 6 ("bad_ip_header", RFC 8200 §3), the payload length within the
    frame ("truncated"; bytes after it are Ethernet padding), the next header not an
    extension header ("fragment" for a Fragment header, else "ipv6_ext_header"), the source
    not multicast ("bad_source", RFC 4291 §2.7: never a source).
    """
    if len(frame) < offset + IPV6_HLEN:
        raise MalformedPacket("truncated")
    vtf, plen, nh, hlim, src, dst = _unpack_ip6(frame, offset)
    if vtf >> 28 != 6:
        raise MalformedPacket("bad_ip_header")
    end = offset + IPV6_HLEN + plen
    if end > len(frame):
        raise MalformedPacket("truncated")
    if nh in EXTENSION_HEADERS:
        raise MalformedPacket("fragment" if nh == IPPROTO_FRAGMENT else "ipv6_ext_header")
    if src[0] == 0xFF:
        raise MalformedPacket("bad_source")
    return src, dst, nh, hlim, end


def decode_icmpv6(
    frame: bytes, offset: int = ETH_HLEN
) -> tuple[bytes, bytes, int, int, int, int, int]:
    """`(src, dst, hop_limit, type, code, start, end)` of the ICMPv6 message at
    `frame[start:end]`, after `decode_ipv6`'s checks.

    Next header 58 ("not_icmpv6"), at least the 4-byte ICMPv6 header ("truncated"), and the
    checksum over the pseudo-header and the message (RFC 4443 §2.3, RFC 8200 §8.1;
    "bad_checksum"). Verified always: NS and RS are built by the guest kernel's ndisc code
    with a full checksum, never left to checksum offload.
    """
    src, dst, nh, hlim, end = decode_ipv6(frame, offset)
    if nh != IPPROTO_ICMPV6:
        raise MalformedPacket("not_icmpv6")
    start = offset + IPV6_HLEN
    length = end - start
    if length < 4:
        raise MalformedPacket("truncated")
    pseudo = int.from_bytes(src + dst, "big") + length + IPPROTO_ICMPV6
    if checksum(frame[start:end], pseudo) != 0:
        raise MalformedPacket("bad_checksum")
    return src, dst, hlim, frame[start], frame[start + 1], start, end


def decode_udp6(
    frame: bytes, offset: int = ETH_HLEN, verify_udp: bool = False
) -> tuple[bytes, bytes, int, int, int, bytes]:
    """`(src, dst, hop_limit, sport, dport, payload)` of the UDP datagram over IPv6 at
    `frame[offset:]`, after `decode_ipv6`'s checks.

    Next header 17 ("not_udp"), the 8-byte UDP header present ("truncated"), UDP length at
    least 8 ("bad_ip_header") and within the IPv6 payload ("truncated"), a non-zero checksum
    ("bad_checksum": RFC 8200 §8.1, a zero UDP checksum is invalid in IPv6 and receivers
    discard it), and with `verify_udp` the checksum itself.

    The responder does not verify a non-zero UDP checksum, for the reason `decode_udp4`
    gives: with checksum offload a packet socket sees a guest's UDP before the checksum is
    filled in. Such a partial checksum is the folded pseudo-header sum, which is never 0, so
    refusing a zero checksum cannot refuse an offloaded datagram.
    """
    src, dst, nh, hlim, end = decode_ipv6(frame, offset)
    if nh != IPPROTO_UDP:
        raise MalformedPacket("not_udp")
    udp = offset + IPV6_HLEN
    if end - udp < 8:
        raise MalformedPacket("truncated")
    sport, dport, ulen, ucsum = _unpack_udp(frame, udp)
    if ulen < 8:
        raise MalformedPacket("bad_ip_header")
    if udp + ulen > end:
        raise MalformedPacket("truncated")
    if ucsum == 0:
        raise MalformedPacket("bad_checksum")
    if verify_udp:
        pseudo = int.from_bytes(src + dst, "big") + ulen + IPPROTO_UDP
        if checksum(frame[udp : udp + ulen], pseudo) != 0:
            raise MalformedPacket("bad_checksum")
    return src, dst, hlim, sport, dport, frame[udp + 8 : udp + ulen]


def encode_udp6_frame(
    eth_dst: bytes,
    eth_src: bytes,
    ip_src: bytes,
    ip_dst: bytes,
    sport: int,
    dport: int,
    payload: bytes,
    hop_limit: int = 64,
) -> bytes:
    """Ethernet + IPv6 (no extension headers) + UDP with its checksum (RFC 8200 §8.1: a
    computed checksum of 0 is sent as 0xFFFF, never 0)."""
    ulen = 8 + len(payload)
    # The payload starts at an even offset, so its words add to those of the pseudo-header
    # (src, dst, length, next header) and of the UDP header (ports, length; checksum 0).
    partial = int.from_bytes(ip_src + ip_dst, "big") + IPPROTO_UDP + ulen + sport + dport + ulen
    csum = checksum(payload, partial) or 0xFFFF
    return b"".join(
        (
            _pack_eth(eth_dst, eth_src, ETH_P_IPV6),
            _pack_ip6(_VERSION_6, ulen, IPPROTO_UDP, hop_limit, ip_src, ip_dst),
            _pack_udp(sport, dport, ulen, csum),
            payload,
        )
    )


def encode_icmpv6_frame(
    eth_dst: bytes,
    eth_src: bytes,
    ip_src: bytes,
    ip_dst: bytes,
    message: bytes,
    hop_limit: int = 255,
) -> bytes:
    """Ethernet + IPv6 + the ICMPv6 `message`, whose checksum field (bytes 2-3) must be zero
    and is filled in (RFC 4443 §2.3). Hop limit 255 by default, as every ND message needs."""
    length = len(message)
    csum = checksum(message, int.from_bytes(ip_src + ip_dst, "big") + length + IPPROTO_ICMPV6)
    return b"".join(
        (
            _pack_eth(eth_dst, eth_src, ETH_P_IPV6),
            _pack_ip6(_VERSION_6, length, IPPROTO_ICMPV6, hop_limit, ip_src, ip_dst),
            message[:2],
            csum.to_bytes(2, "big"),
            message[4:],
        )
    )
