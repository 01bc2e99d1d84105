"""Ethernet II framing (no 802.1Q). Received frames may carry padding up to the 60-byte
minimum; every decoder in `protocols` reads its own length fields and ignores the tail.
"""

from __future__ import annotations

from .wire import ETH_HEADER, MalformedPacket

__all__ = [
    "BROADCAST_MAC",
    "ETH_HLEN",
    "ETH_P_ARP",
    "ETH_P_IP",
    "ETH_P_IPV6",
    "ETH_P_RARP",
    "decode_ethernet",
    "encode_ethernet",
]

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_RARP = 0x8035
ETH_P_IPV6 = 0x86DD

ETH_HLEN = 14
BROADCAST_MAC = b"\xff\xff\xff\xff\xff\xff"

_pack = ETH_HEADER.pack
_unpack_from = ETH_HEADER.unpack_from


def decode_ethernet(frame: bytes) -> tuple[bytes, bytes, int]:
    """`(dst, src, ethertype)`; MalformedPacket("truncated") under 14 bytes."""
    if len(frame) < ETH_HLEN:
        raise MalformedPacket("truncated")
    return _unpack_from(frame)


def encode_ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """Header plus payload, unpadded (the kernel/NIC pads short frames on the wire)."""
    return _pack(dst, src, ethertype) + payload
