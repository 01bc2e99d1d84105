"""DHCPv4 message codec (RFC 2131 §2, RFC 2132, RFC 3396) and the IPv4/UDP framing around it.

Options are kept raw in an ordered dict `code -> bytes` and decoded lazily by accessors that
return None for a bad value; only broken option framing rejects a message. Unknown options
survive a decode/encode round trip.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..ethernet import ETH_HLEN, ETH_P_IP
from ..wire import BOOTP_HEADER, ETH_HEADER, IPV4_HEADER, UDP_HEADER, MalformedPacket, checksum
from .constants import (
    BOOTP_HEADER_LEN,
    BOOTP_MIN_LEN,
    BOOTREQUEST,
    MAGIC_COOKIE,
    OPT_CLIENT_ID,
    OPT_HOSTNAME,
    OPT_LEASE_TIME,
    OPT_MAX_MESSAGE_SIZE,
    OPT_MESSAGE_TYPE,
    OPT_PARAMETER_REQUEST_LIST,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
)

__all__ = [
    "DhcpMessage",
    "decode_classless_routes",
    "decode_dhcpv4",
    "decode_domain_search",
    "decode_options",
    "decode_udp4",
    "encode_classless_routes",
    "encode_dhcpv4",
    "encode_domain_search",
    "encode_options",
    "encode_udp4_frame",
]

IPPROTO_UDP = 17
ZERO4 = bytes(4)
_COOKIE_END = BOOTP_HEADER_LEN + 4

_unpack_bootp = BOOTP_HEADER.unpack_from
_pack_bootp = BOOTP_HEADER.pack
_unpack_ip = IPV4_HEADER.unpack_from
_pack_ip = IPV4_HEADER.pack
_unpack_udp = UDP_HEADER.unpack_from
_pack_udp = UDP_HEADER.pack
_pack_eth = ETH_HEADER.pack
_unpack_ip_udp = struct.Struct(IPV4_HEADER.format + UDP_HEADER.format.lstrip("!")).unpack_from


@dataclass(slots=True)
class DhcpMessage:
    """A BOOTP/DHCP message (RFC 2131 §2). Addresses are packed 4-byte values; `chaddr` is the
    16-byte field (the MAC is its first `hlen` bytes); `options` maps code to raw value, in the
    order first seen, with repeated options already concatenated (RFC 3396)."""

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: bytes = ZERO4
    yiaddr: bytes = ZERO4
    siaddr: bytes = ZERO4
    giaddr: bytes = ZERO4
    chaddr: bytes = bytes(16)
    sname: bytes = bytes(64)
    file: bytes = bytes(128)
    options: dict[int, bytes] = field(default_factory=dict)

    # Lazy accessors: None when absent or when the value has the wrong shape (RFC 2132).

    def message_type(self) -> int | None:
        """Option 53 (RFC 2132 §9.6)."""
        value = self.options.get(OPT_MESSAGE_TYPE)
        return value[0] if value is not None and len(value) == 1 else None

    def requested_ip(self) -> bytes | None:
        """Option 50 (RFC 2132 §9.1)."""
        value = self.options.get(OPT_REQUESTED_IP)  # `_ipv4`, inline: every REQUEST asks
        return value if value is not None and len(value) == 4 else None

    def server_id(self) -> bytes | None:
        """Option 54 (RFC 2132 §9.7)."""
        return self._ipv4(OPT_SERVER_ID)

    def lease_time(self) -> int | None:
        """Option 51 (RFC 2132 §9.2)."""
        value = self.options.get(OPT_LEASE_TIME)
        return int.from_bytes(value, "big") if value is not None and len(value) == 4 else None

    def client_id(self) -> bytes | None:
        """Option 61 (RFC 2132 §9.14): at least 2 bytes (type and identifier)."""
        value = self.options.get(OPT_CLIENT_ID)
        return value if value is not None and len(value) >= 2 else None

    def hostname(self) -> str | None:
        """Option 12 (RFC 2132 §3.14), ASCII."""
        value = self.options.get(OPT_HOSTNAME)
        if not value:
            return None
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None

    def parameter_request_list(self) -> bytes | None:
        """Option 55 (RFC 2132 §9.8)."""
        value = self.options.get(OPT_PARAMETER_REQUEST_LIST)
        return value if value else None

    def max_message_size(self) -> int | None:
        """Option 57 (RFC 2132 §9.10); values under 576 are invalid."""
        value = self.options.get(OPT_MAX_MESSAGE_SIZE)
        if value is None or len(value) != 2:
            return None
        size = value[0] << 8 | value[1]
        return size if size >= 576 else None

    @property
    def client_mac(self) -> bytes | None:
        """`chaddr` as an Ethernet MAC, or None when htype/hlen are not Ethernet's (1, 6)."""
        if self.htype != 1 or self.hlen != 6:
            return None
        return self.chaddr[:6]

    def _ipv4(self, code: int) -> bytes | None:
        value = self.options.get(code)
        return value if value is not None and len(value) == 4 else None


def decode_options(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """Options in `data[start:end]` (RFC 2132 §2): pad (0) skipped, END (255) stops, a missing
    END tolerated; repeated codes concatenated in order (RFC 3396 §5). An option whose length
    runs past `end` is MalformedPacket("bad_options")."""
    # The hot path: one pass that stores each value, and checks the bounds once at the end
    # (an option running past `end` leaves the cursor past it). A repeated code, rare, is
    # found by the count and decoded again with concatenation.
    options: dict[int, bytes] = {}
    i = start
    count = 0
    try:
        while i < end:
            code = data[i]
            if code == 255:
                break
            if code:
                j = i + 2 + data[i + 1]
                options[code] = data[i + 2 : j]
                count += 1
                i = j
            else:
                i += 1
    except IndexError:  # a code without its length byte at the end of `data`
        raise MalformedPacket("bad_options") from None
    if i > end:
        raise MalformedPacket("bad_options")
    if count != len(options):
        return _decode_repeated_options(data, start, end)
    return options


def _decode_repeated_options(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """`decode_options` for a block that repeats a code: values concatenated (RFC 3396 §5)."""
    options: dict[int, bytes] = {}
    i = start
    while i < end:
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            break
        j = i + 2 + data[i + 1]
        value = data[i + 2 : j]
        previous = options.get(code)
        options[code] = value if previous is None else previous + value
        i = j
    return options


def decode_dhcpv4(payload: bytes) -> DhcpMessage:
    """Decode a BOOTP/DHCP message (the UDP payload).

    RFC 2131 §2 fixed header (236 bytes), then the magic cookie 99.130.83.99 (RFC 2131 §3),
    then options. Under 236 bytes: "truncated"; no cookie: "no_magic_cookie"; broken option
    framing: "bad_options". Option overload (option 52, RFC 2132 §9.3) is not applied: the
    `sname` and `file` fields are kept raw.
    """
    n = len(payload)
    if n < BOOTP_HEADER_LEN:
        raise MalformedPacket("truncated")
    if n < _COOKIE_END or payload[BOOTP_HEADER_LEN:_COOKIE_END] != MAGIC_COOKIE:
        raise MalformedPacket("no_magic_cookie")
    (
        op,
        htype,
        hlen,
        hops,
        xid,
        secs,
        flags,
        ciaddr,
        yiaddr,
        siaddr,
        giaddr,
        chaddr,
        sname,
        file,
    ) = _unpack_bootp(payload)
    options = decode_options(payload, _COOKIE_END, n)
    return DhcpMessage(
        op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
        file, options,
    )  # fmt: skip


def encode_option(code: int, value: bytes) -> bytes:
    """One option; values over 255 bytes are split into consecutive instances (RFC 3396 §5)."""
    n = len(value)
    if n <= 255:
        return bytes((code, n)) + value
    return b"".join(
        bytes((code, len(chunk))) + chunk
        for chunk in (value[i : i + 255] for i in range(0, n, 255))
    )


def encode_options(options: dict[int, bytes]) -> bytes:
    """Options in dict order, without END. Codes 0 and 255 carry no value and are refused."""
    parts = []
    for code, value in options.items():
        if not 0 < code < 255:
            raise ValueError(f"option code {code} cannot carry a value")
        parts.append(encode_option(code, value))
    return b"".join(parts)


def encode_dhcpv4(msg: DhcpMessage, min_len: int = BOOTP_MIN_LEN) -> bytes:
    """Encode `msg`: fixed header, magic cookie, options in dict order, END, then zero padding
    up to `min_len` bytes (RFC 1542 §2.1 recommends at least 300 for old relays)."""
    header = _pack_bootp(
        msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags, msg.ciaddr,
        msg.yiaddr, msg.siaddr, msg.giaddr, msg.chaddr, msg.sname, msg.file,
    )  # fmt: skip
    out = b"".join((header, MAGIC_COOKIE, encode_options(msg.options), b"\xff"))
    if len(out) < min_len:
        out += bytes(min_len - len(out))
    return out


def encode_domain_search(names: list[str]) -> bytes:
    """Option 119's value (RFC 3397 §2): each name in RFC 1035 §3.1 wire form, uncompressed.

    ValueError for an empty label or a label over 63 bytes (a configuration error)."""
    parts = []
    for name in names:
        name = name.rstrip(".")
        if name:
            for label in name.split("."):
                raw = label.encode("ascii")
                if not 0 < len(raw) < 64:
                    raise ValueError(f"bad DNS label {label!r} in {name!r}")
                parts.append(bytes((len(raw),)) + raw)
        parts.append(b"\x00")
    return b"".join(parts)


def decode_domain_search(data: bytes) -> list[str] | None:
    """Option 119's value to names, following RFC 1035 §4.1.4 compression pointers; None if
    malformed."""
    names = []
    i = 0
    n = len(data)
    while i < n:
        labels: list[str] = []
        pos = i
        jumped = False
        hops = 0
        while True:
            if pos >= n:
                return None
            length = data[pos]
            if length == 0:
                if not jumped:
                    i = pos + 1
                break
            if length & 0xC0 == 0xC0:
                if pos + 1 >= n or hops > n:
                    return None
                target = (length & 0x3F) << 8 | data[pos + 1]
                if not jumped:
                    i = pos + 2
                jumped = True
                hops += 1
                pos = target
                continue
            if length & 0xC0 or pos + 1 + length > n:
                return None
            try:
                labels.append(data[pos + 1 : pos + 1 + length].decode("ascii"))
            except UnicodeDecodeError:
                return None
            pos += 1 + length
        names.append(".".join(labels))
    return names


def encode_classless_routes(routes: list[tuple[bytes, int, bytes]]) -> bytes:
    """Option 121's value (RFC 3442 §3): for each `(destination, prefixlen, router)`, the
    prefix length, the significant octets of the destination (ceil(prefixlen / 8)), then the
    router; router 0.0.0.0 means on-link."""
    parts = []
    for destination, prefixlen, router in routes:
        if not 0 <= prefixlen <= 32:
            raise ValueError(f"bad prefix length {prefixlen}")
        parts.append(bytes((prefixlen,)) + destination[: (prefixlen + 7) // 8] + router)
    return b"".join(parts)


def decode_classless_routes(data: bytes) -> list[tuple[bytes, int, bytes]] | None:
    """Option 121's value to `(destination, prefixlen, router)` triples; None if malformed."""
    routes = []
    i = 0
    n = len(data)
    while i < n:
        prefixlen = data[i]
        if prefixlen > 32:
            return None
        width = (prefixlen + 7) // 8
        if i + 1 + width + 4 > n:
            return None
        destination = data[i + 1 : i + 1 + width] + bytes(4 - width)
        routes.append((destination, prefixlen, data[i + 1 + width : i + 5 + width]))
        i += 5 + width
    return routes


def decode_udp4(
    frame: bytes, offset: int = ETH_HLEN, verify_udp: bool = False
) -> tuple[bytes, bytes, int, int, bytes]:
    """`(ip_src, ip_dst, sport, dport, payload)` of the IPv4/UDP datagram at `frame[offset:]`.

    Checks, in order: IPv4 version 4 and IHL >= 5 ("bad_ip_header", RFC 791 §3.1), headers and
    total length present ("truncated"; bytes past the total length are Ethernet padding and
    ignored), header checksum ("bad_checksum"), no fragment ("fragment"), protocol 17
    ("not_udp"), UDP length within the datagram ("truncated"; under 8 is "bad_ip_header"),
    and, with `verify_udp`, the UDP checksum unless it is 0 (RFC 768; "bad_checksum").

    The responder does not verify the UDP checksum: with checksum offload (virtio-net, veth)
    a packet socket sees a guest's unicast UDP before the checksum is filled in, which is
    why ISC dhcpd drops renewals from such guests as "bad udp checksums". The Ethernet FCS
    already guards the bytes, and the IPv4 header checksum is still checked.
    """
    end = len(frame)
    if end < offset + 20:
        raise MalformedPacket("truncated")
    if frame[offset] == 0x45 and end >= offset + 28:
        # No IPv4 options, the usual case: both headers in one unpack.
        (_vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst,
         sport, dport, ulen, ucsum) = _unpack_ip_udp(frame, offset)  # fmt: skip
        ihl = 20
    else:
        vihl, _tos, total, _ident, frag, _ttl, proto, _csum, src, dst = _unpack_ip(frame, offset)
        ihl = (vihl & 0x0F) << 2
        if vihl >> 4 != 4 or ihl < 20:
            raise MalformedPacket("bad_ip_header")
        ulen = -1  # the UDP header is read below
    if total < ihl:
        raise MalformedPacket("bad_ip_header")
    if offset + total > end:
        raise MalformedPacket("truncated")
    # checksum(header) != 0, inline: the header is never all zeros (version 4).
    if int.from_bytes(frame[offset : offset + ihl], "big") % 0xFFFF:
        raise MalformedPacket("bad_checksum")
    if frag & 0x3FFF:  # MF set or a non-zero fragment offset
        raise MalformedPacket("fragment")
    if proto != IPPROTO_UDP:
        raise MalformedPacket("not_udp")
    udp = offset + ihl
    if total - ihl < 8:
        raise MalformedPacket("truncated")
    if ulen < 0:
        sport, dport, ulen, ucsum = _unpack_udp(frame, udp)
    if ulen < 8:
        raise MalformedPacket("bad_ip_header")
    if ulen > total - ihl:
        raise MalformedPacket("truncated")
    payload = frame[udp + 8 : udp + ulen]
    if verify_udp and ucsum:
        pseudo = int.from_bytes(src + dst, "big") + IPPROTO_UDP + ulen
        if checksum(frame[udp : udp + ulen], pseudo) != 0:
            raise MalformedPacket("bad_checksum")
    return src, dst, sport, dport, payload


def encode_udp4_frame(
    eth_dst: bytes,
    eth_src: bytes,
    ip_src: bytes,
    ip_dst: bytes,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int = 64,
) -> bytes:
    """Ethernet + IPv4 (no options, id 0, not fragmented) + UDP, with both checksums computed
    (RFC 791 §3.1, RFC 768; a computed UDP checksum of 0 is sent as 0xFFFF)."""
    ulen = 8 + len(payload)
    ip = _pack_ip(0x45, 0, 20 + ulen, 0, 0, ttl, IPPROTO_UDP, 0, ip_src, ip_dst)
    ip_csum = checksum(ip)
    # The payload starts at an even offset, so its words add to those of the pseudo-header
    # (src, dst, protocol, length) and of the UDP header (ports, length; checksum 0).
    partial = int.from_bytes(ip_src + ip_dst, "big") + IPPROTO_UDP + ulen + sport + dport + ulen
    udp_csum = checksum(payload, partial) or 0xFFFF
    return b"".join(
        (
            _pack_eth(eth_dst, eth_src, ETH_P_IP),
            ip[:10],
            ip_csum.to_bytes(2, "big"),
            ip[12:],
            _pack_udp(sport, dport, ulen, udp_csum),
            payload,
        )
    )
