"""DHCPv6 (RFC 8415, RFC 3646, RFC 4704): codec and server responder."""

from .codec import Dhcpv6Message, IaAddress, IaNa, decode_dhcpv6, encode_dhcpv6
from .server import Dhcpv6Responder

__all__ = [
    "Dhcpv6Message",
    "Dhcpv6Responder",
    "IaAddress",
    "IaNa",
    "decode_dhcpv6",
    "encode_dhcpv6",
]
