"""DHCPv4 (RFC 2131, RFC 2132, RFC 3396, RFC 3397, RFC 3442): codec and server responder."""

from .codec import DhcpMessage, decode_dhcpv4, decode_udp4, encode_dhcpv4, encode_udp4_frame
from .server import Dhcpv4Responder

__all__ = [
    "DhcpMessage",
    "Dhcpv4Responder",
    "decode_dhcpv4",
    "decode_udp4",
    "encode_dhcpv4",
    "encode_udp4_frame",
]
