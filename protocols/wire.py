"""Shared wire helpers: the one exception for bad input, the internet checksum, MAC text forms
and the precompiled `struct.Struct`s the codecs use (one `unpack_from` per fixed header after
one explicit length check; see STYLE.md).
"""

from __future__ import annotations

import struct

from .outcome import DROP_REASONS

__all__ = [
    "ARP_PACKET",
    "BOOTP_HEADER",
    "ETH_HEADER",
    "IPV4_HEADER",
    "IPV6_HEADER",
    "ICMPV6_HEADER",
    "UDP_HEADER",
    "MalformedPacket",
    "checksum",
    "format_mac",
    "ipv6_pseudo_header_sum",
    "parse_mac",
]

# Ethernet II: dst, src, ethertype (IEEE 802.3 §3.1.1; no 802.1Q tag).
ETH_HEADER = struct.Struct("!6s6sH")
# ARP for Ethernet/IPv4 (RFC 826): htype, ptype, hlen, plen, op, sha, spa, tha, tpa.
ARP_PACKET = struct.Struct("!HHBBH6s4s6s4s")
# IPv4 without options (RFC 791 §3.1): ver/ihl, tos, total length, id, flags/fragment offset,
# ttl, protocol, header checksum, src, dst.
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
# IPv6 (RFC 8200 §3): version/traffic class/flow label, payload length, next header,
# hop limit, src, dst; 40 bytes.
IPV6_HEADER = struct.Struct("!IHBB16s16s")
# ICMPv6 (RFC 4443 §2.1): type, code, checksum.
ICMPV6_HEADER = struct.Struct("!BBH")
# UDP (RFC 768): sport, dport, length, checksum.
UDP_HEADER = struct.Struct("!HHHH")
# BOOTP/DHCP fixed header (RFC 2131 §2, figure 1): op, htype, hlen, hops, xid, secs, flags,
# ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file; 236 bytes.
BOOTP_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class MalformedPacket(Exception):
    """Remote input that cannot be processed. `.reason` is a slug from `DROP_REASONS`.

    The only exception the codecs raise on bad input; responders catch it and return an
    `Outcome` with `drop=reason`, so it never escapes a `handle` method.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        assert reason in DROP_REASONS, reason
        super().__init__(reason)
        self.reason = reason


def checksum(data: bytes, initial: int = 0) -> int:
    """The internet checksum (RFC 1071) of `data`, as the 16-bit value to put on the wire.

    `initial` is a partial sum to include, e.g. the UDP pseudo-header (RFC 768) as
    `int.from_bytes(src + dst, "big") + proto + length`; only its value modulo 0xFFFF matters.
    Because 2**16 == 1 (mod 0xFFFF), a big integer reduced modulo 0xFFFF is the one's
    complement sum of its 16-bit words, computed in C. Odd-length data is padded with a zero
    byte (RFC 1071 §4.1). Verifying data that contains its own checksum gives 0.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    value += initial
    if value == 0:
        # Every word zero: the one's complement sum is +0, whose complement is 0xFFFF.
        return 0xFFFF
    value %= 0xFFFF
    # A non-zero sum that is a multiple of 0xFFFF folds to 0xFFFF (-0), so the checksum is 0.
    return 0xFFFF - value if value else 0


def ipv6_pseudo_header_sum(src: bytes, dst: bytes, length: int, next_header: int) -> int:
    """The IPv6 pseudo-header (RFC 8200 §8.1) as a partial sum for `checksum(data, initial)`.

    The pseudo-header is src, dst, the 32-bit upper-layer length, three zero bytes and the
    next header. Only the sum's value modulo 0xFFFF matters, and a 32-bit length adds its two
    16-bit words because 2**16 == 1 (mod 0xFFFF), so the plain integer sum is exact.
    """
    return int.from_bytes(src + dst, "big") + length + next_header


def parse_mac(text: str) -> bytes:
    """`"0a:58:0a:f4:02:1a"` (or with `-`) to 6 packed bytes; ValueError if it is not a MAC."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes.fromhex("".join(parts))


def format_mac(mac: bytes) -> str:
    """6 packed bytes to lower-case colon form."""
    return mac.hex(":")
