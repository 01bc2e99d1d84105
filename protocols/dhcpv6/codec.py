"""DHCPv6 message codec (RFC 8415 §8 message format, §21 options; RFC 3646; RFC 4704).

A client/server message is a type byte, a 3-byte transaction id and options, each a 2-byte
code, a 2-byte length and the value. Options are kept raw, in order and with repeats (a
client may send several IA_NA), in a list of `(code, value)`; accessors decode them lazily
and return None for a bad value. Only broken framing rejects a message ("bad_options").
Unknown options survive a decode/encode round trip.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..dhcpv4.codec import decode_domain_search, encode_domain_search
from ..wire import MalformedPacket
from .constants import (
    DUID_MAX_LEN,
    OPT_CLIENT_FQDN,
    OPT_CLIENTID,
    OPT_IA_NA,
    OPT_IAADDR,
    OPT_RAPID_COMMIT,
    OPT_SERVERID,
    OPT_STATUS_CODE,
    RELAY_FORW,
    RELAY_REPL,
)

__all__ = [
    "Dhcpv6Message",
    "IaAddress",
    "IaNa",
    "decode_dhcpv6",
    "decode_domain_name",
    "decode_ia_na",
    "decode_options6",
    "encode_dhcpv6",
    "encode_domain_name",
    "encode_ia_na",
    "encode_iaaddr",
    "encode_option6",
    "encode_options6",
    "encode_status",
]

HEADER_LEN = 4  # msg-type and transaction-id (RFC 8415 §8)

_OPTION_HEADER = struct.Struct("!HH")
_unpack_option = _OPTION_HEADER.unpack_from
_pack_option = _OPTION_HEADER.pack
# IA_NA value (RFC 8415 §21.4): IAID, T1, T2, then IA_NA-options.
_IA_NA = struct.Struct("!III")
# IA Address option (RFC 8415 §21.6), header included: code, length, address, preferred
# lifetime, valid lifetime, then IAaddr-options.
_IAADDR = struct.Struct("!HH16sII")


@dataclass(slots=True)
class IaAddress:
    """An IA Address option (RFC 8415 §21.6): a 16-byte address and its lifetimes."""

    address: bytes
    preferred: int
    valid: int
    options: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class IaNa:
    """An IA_NA option (RFC 8415 §21.4): IAID, T1, T2, its IA Address options and, in a
    reply, its Status Code. `options` holds every inner option raw, in order."""

    iaid: int
    t1: int
    t2: int
    addresses: list[IaAddress] = field(default_factory=list)
    status: tuple[int, str] | None = None
    options: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class Dhcpv6Message:
    """A client/server message (RFC 8415 §8): type, 24-bit transaction id, options."""

    msg_type: int
    xid: int = 0
    options: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, code: int) -> bytes | None:
        """The first value of option `code`, or None."""
        for c, value in self.options:
            if c == code:
                return value
        return None

    def get_all(self, code: int) -> list[bytes]:
        """Every value of option `code`, in order."""
        return [value for c, value in self.options if c == code]

    def client_id(self) -> bytes | None:
        """Client Identifier (RFC 8415 §21.2): a DUID of 3 to 130 bytes."""
        value = self.get(OPT_CLIENTID)
        return value if value is not None and 3 <= len(value) <= DUID_MAX_LEN else None

    def server_id(self) -> bytes | None:
        """Server Identifier (RFC 8415 §21.3), raw; None only when absent."""
        return self.get(OPT_SERVERID)

    def rapid_commit(self) -> bool:
        """Rapid Commit (RFC 8415 §21.14): present with an empty value."""
        return self.get(OPT_RAPID_COMMIT) == b""

    def ia_nas(self) -> list[IaNa]:
        """The well-formed IA_NA options, in order; malformed ones are left out."""
        out = []
        for c, value in self.options:
            if c == OPT_IA_NA:
                ia = decode_ia_na(value)
                if ia is not None:
                    out.append(ia)
        return out

    def client_fqdn(self) -> tuple[int, bytes] | None:
        """Client FQDN (RFC 4704 §4): `(flags, domain name field raw)`; None if empty."""
        value = self.get(OPT_CLIENT_FQDN)
        if not value:
            return None
        return value[0], value[1:]


def decode_options6(data: bytes, start: int, end: int) -> list[tuple[int, bytes]]:
    """Options in `data[start:end]` (RFC 8415 §21.1) as `(code, value)` in order. An option
    header or value running past `end` is MalformedPacket("bad_options")."""
    options = []
    i = start
    while i < end:
        if i + 4 > end:
            raise MalformedPacket("bad_options")
        code, length = _unpack_option(data, i)
        j = i + 4 + length
        if j > end:
            raise MalformedPacket("bad_options")
        options.append((code, data[i + 4 : j]))
        i = j
    return options


def decode_dhcpv6(payload: bytes) -> Dhcpv6Message:
    """Decode a client/server message (the UDP payload, RFC 8415 §8).

    Under 4 bytes: "truncated"; relay messages (RELAY-FORW, RELAY-REPL: another header,
    §9): "unsupported_message"; broken option framing: "bad_options". Option values are not
    checked here (see the accessors).
    """
    if len(payload) < HEADER_LEN:
        raise MalformedPacket("truncated")
    msg_type = payload[0]
    if msg_type in (RELAY_FORW, RELAY_REPL):
        raise MalformedPacket("unsupported_message")
    xid = payload[1] << 16 | payload[2] << 8 | payload[3]
    return Dhcpv6Message(msg_type, xid, decode_options6(payload, HEADER_LEN, len(payload)))


def encode_option6(code: int, value: bytes) -> bytes:
    """One option: code, length, value. ValueError over 65535 bytes."""
    if len(value) > 0xFFFF:
        raise ValueError(f"option {code} value of {len(value)} bytes does not fit")
    return _pack_option(code, len(value)) + value


def encode_options6(options: list[tuple[int, bytes]]) -> bytes:
    return b"".join(_pack_option(code, len(value)) + value for code, value in options)


def encode_dhcpv6(msg: Dhcpv6Message) -> bytes:
    """Type, transaction id, then the options in list order."""
    return (
        bytes((msg.msg_type,))
        + (msg.xid & 0xFFFFFF).to_bytes(3, "big")
        + encode_options6(msg.options)
    )


def decode_ia_na(value: bytes) -> IaNa | None:
    """An IA_NA value (RFC 8415 §21.4), or None if its fixed part or inner options are
    malformed. IA Address options with a malformed value are left out of `addresses`; a
    Status Code whose message is not UTF-8 keeps its code with an empty message."""
    n = len(value)
    if n < 12:
        return None
    iaid, t1, t2 = _IA_NA.unpack_from(value)
    try:
        options = decode_options6(value, 12, n)
    except MalformedPacket:
        return None
    ia = IaNa(iaid, t1, t2, options=options)
    for code, inner in options:
        if code == OPT_IAADDR and len(inner) >= 24:
            sub = []
            if len(inner) > 24:
                try:
                    sub = decode_options6(inner, 24, len(inner))
                except MalformedPacket:
                    continue
            preferred = int.from_bytes(inner[16:20], "big")
            valid = int.from_bytes(inner[20:24], "big")
            ia.addresses.append(IaAddress(inner[:16], preferred, valid, sub))
        elif code == OPT_STATUS_CODE and len(inner) >= 2 and ia.status is None:
            try:
                text = inner[2:].decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            ia.status = (inner[0] << 8 | inner[1], text)
    return ia


def encode_status(code: int, message: str = "") -> bytes:
    """A Status Code option (RFC 8415 §21.13): code and a UTF-8 message, not NUL-terminated."""
    return encode_option6(OPT_STATUS_CODE, code.to_bytes(2, "big") + message.encode("utf-8"))


def encode_iaaddr(address: bytes, preferred: int, valid: int, options: bytes = b"") -> bytes:
    """An IA Address option (RFC 8415 §21.6)."""
    return _IAADDR.pack(OPT_IAADDR, 24 + len(options), address, preferred, valid) + options


def encode_ia_na(iaid: int, t1: int, t2: int, options: bytes = b"") -> bytes:
    """An IA_NA option (RFC 8415 §21.4) around already encoded inner options."""
    return encode_option6(OPT_IA_NA, _IA_NA.pack(iaid, t1, t2) + options)


def encode_domain_name(name: str) -> bytes:
    """A domain name in DNS wire form (RFC 8415 §10, RFC 1035 §3.1), uncompressed.

    A name ending with "." or containing a dot is fully qualified (ends with the root
    label); a single label without a dot is a partial name, encoded without the terminating
    zero byte (RFC 4704 §4.2). ValueError for an empty or over-long label."""
    partial = "." not in name
    wire = encode_domain_search([name])
    return wire[:-1] if partial else wire


def decode_domain_name(data: bytes) -> str | None:
    """Option 39's domain name field to text: a fully qualified name ends with "."; a partial
    name (no root label) does not. None if malformed (compression is not allowed, §10)."""
    if not data:
        return ""
    partial = data[-1] != 0
    wire = data + b"\x00" if partial else data
    i = 0
    while i < len(wire) and wire[i]:
        if wire[i] & 0xC0:
            return None
        i += 1 + wire[i]
    if i != len(wire) - 1:
        return None
    names = decode_domain_search(wire)
    if names is None or len(names) != 1:
        return None
    return names[0] if partial else names[0] + "."
