"""The DHCPv4 server responder (SPEC "DHCPv4"; RFC 2131, RFC 2132, RFC 3442).

Every VM gets the one address its binding owns. The binding is found by the request's
Ethernet source MAC (by `chaddr` only when a relay forwarded the request), never by client-id.
The reply's options and addressing are fixed by SPEC; see `Dhcpv4Responder`.
"""

from __future__ import annotations

import struct

from ..bindings import Binding, BindingTable, Lease
from ..ethernet import ETH_HLEN, ETH_P_IP
from ..outcome import Outcome
from ..params import GatewayParams
from ..wire import BOOTP_HEADER, MalformedPacket
from .codec import (
    DhcpMessage,
    decode_dhcpv4,
    decode_udp4,
    encode_classless_routes,
    encode_domain_search,
    encode_option,
)
from .constants import (
    BOOTP_MIN_LEN,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    CLIENT_PORT,
    DHCPACK,
    DHCPDECLINE,
    DHCPDISCOVER,
    DHCPINFORM,
    DHCPNAK,
    DHCPOFFER,
    DHCPRELEASE,
    DHCPREQUEST,
    HTYPE_ETHER,
    MAGIC_COOKIE,
    MESSAGE_TYPE_NAMES,
    OPT_CLASSLESS_ROUTES,
    OPT_DNS,
    OPT_DOMAIN_NAME,
    OPT_DOMAIN_SEARCH,
    OPT_HOSTNAME,
    OPT_LEASE_TIME,
    OPT_MESSAGE_TYPE,
    OPT_MTU,
    OPT_REQUESTED_IP,
    OPT_ROUTER,
    OPT_SERVER_ID,
    OPT_SUBNET_MASK,
    SERVER_PORT,
    UNKNOWN_MESSAGE_NAME,
)

__all__ = ["Dhcpv4Responder", "RECEIVED_BOOTREQUEST", "RECEIVED_MALFORMED"]

# Received labels for frames that carry no usable message type.
RECEIVED_MALFORMED = "dhcpv4"  # not a decodable BOOTP message (or not IPv4/UDP at all)
RECEIVED_BOOTREPLY = "BOOTREPLY"  # op 2 from a VM
RECEIVED_BOOTREQUEST = "BOOTREQUEST"  # plain BOOTP, no option 53

ZERO4 = bytes(4)
BROADCAST4 = b"\xff\xff\xff\xff"
_END = b"\xff"
# Cache key for the option block of an ACK to DHCPINFORM (not a message type number).
_INFORM_ACK = -1
_CACHE_LIMIT = 4096

# A reply is a template with the request's fields put in. The template, cached per binding,
# message type and destination, holds the Ethernet, IPv4 (no options, id 0, TTL 64) and UDP
# headers up to the UDP checksum, then sname and file (zero, RFC 2131 table 3), the magic
# cookie and the option block. Per request: the BOOTP fields op .. chaddr (RFC 2131 figure
# 1) and the UDP checksum. Checksums are sums of 16-bit words, and 2**16 == 1 (mod 0xFFFF)
# makes a packed field's value, taken modulo 0xFFFF, the sum of its words (wire.checksum):
# the template's share of the UDP checksum is summed once, the fields' per request.
_REPLY_HEADERS = struct.Struct("!6s6sH BBHHHBBH4s4s HHH")  # up to the UDP checksum
_BOOTP_FIELDS = struct.Struct("!BBBBIHH4s4s4s4s16s")  # op .. chaddr, 44 bytes
_SNAME_FILE_COOKIE = bytes(64 + 128) + MAGIC_COOKIE
_UDP_FIXED = 8 + BOOTP_HEADER.size + len(MAGIC_COOKIE)  # UDP length before the options
_IPPROTO_UDP = 17
_TTL = 64
_from_bytes = int.from_bytes
_pack_headers = _REPLY_HEADERS.pack
_pack_fields = _BOOTP_FIELDS.pack


def _word_sum(data: bytes) -> int:
    """`data`'s share of an internet checksum when it starts at an even offset and ends the
    message (an odd length is padded with a zero byte, RFC 1071 §4.1), modulo 0xFFFF."""
    return _from_bytes(data + b"\0" if len(data) & 1 else data, "big") % 0xFFFF


_opt = encode_option


def _padded(options: bytes) -> bytes:
    """Options plus END, zero-padded so the BOOTP message reaches BOOTP_MIN_LEN bytes."""
    block = options + _END
    short = BOOTP_MIN_LEN - (BOOTP_HEADER.size + len(MAGIC_COOKIE) + len(block))
    return block + bytes(short) if short > 0 else block


_MASKS = tuple((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33))


def _options_key(binding: Binding, kind: int) -> tuple:
    """What a binding's option block depends on: its subnet (mask, router and routes), not
    its address, so that one block serves every pool client of a subnet."""
    prefixlen = binding.prefixlen
    subnet = _from_bytes(binding.ipv4, "big") & _MASKS[prefixlen]
    return (kind, subnet, prefixlen, binding.hostname or binding.name)


class Dhcpv4Responder:
    """Answers DHCPv4 requests from VMs, one `handle` call per received frame.

    Message handling (SPEC table; "requested IP" is option 50, else `ciaddr`):

    - DHCPDISCOVER: DHCPOFFER with the binding's address; a different option 50 is ignored.
    - DHCPREQUEST in any state (RFC 2131 §4.3.2: SELECTING with 54 and 50, INIT-REBOOT with
      50 and no 54, RENEWING/REBINDING with `ciaddr` and no 50): DHCPACK if the requested IP
      is the binding's address, else DHCPNAK; neither 50 nor `ciaddr`: DHCPNAK. Option 54 is
      not compared: after a live migration it may name any server.
    - DHCPINFORM (RFC 2131 §4.3.5): DHCPACK with `yiaddr` 0 and without options 1, 51, 58, 59.
    - DHCPRELEASE, DHCPDECLINE: no reply; a DECLINE sets `Outcome.conflict` to its option 50
      (RFC 2131 §4.3.3) so the engine can log the conflict.
    - BOOTREPLY (op 2), no magic cookie, no option 53, other message types: dropped.

    OFFER/ACK options, in this order: 53, 1, 3, 6 (if DNS servers), 12 (binding hostname, else
    its name, if non-empty), 15 and 119 (if a search list; 15 = its first domain), 26 (if an
    MTU), 51, 54, 121, END. Option 121 (RFC 3442) repeats the default route of option 3 and,
    when the router is outside the VM's subnet (link-local mode: 169.254.1.1), first an
    on-link host route to it. The DHCPNAK carries 53 and 54 (RFC 2131 table 3). The server
    identifier (54) is `params.gateway_ipv4` in both router modes: it is the reply's source
    IPv4 and the gateway MAC answers for it on every node.

    Reply fields follow RFC 2131 table 3: op 2; htype, hlen, xid, flags, giaddr, chaddr copied;
    hops 0, secs 0; `ciaddr` copied in an ACK, 0 otherwise; siaddr, sname, file zero. The
    message is padded to 300 bytes (RFC 1542 §2.1).

    Addressing (SPEC; RFC 2131 §4.1): Ethernet dst = the request's Ethernet src, Ethernet src
    = gateway MAC, IPv4 src = server id, UDP 67 -> 68. IPv4 dst: `giaddr` if set (UDP dst port
    67; a NAK to a relay also sets the broadcast flag, RFC 2131 §4.3.2); else 255.255.255.255
    for a NAK or when the broadcast flag is set; else `yiaddr` (`ciaddr` for an INFORM),
    falling back to broadcast if that is 0.

    Binding lookup: Ethernet src; `chaddr` (htype 1, hlen 6) when `giaddr` is set. A DISCOVER
    or REQUEST from an unknown MAC allocates from the table's pools if `allocate`. A reply
    naming a pool binding the store has not committed yet carries it as `Outcome.lease`. The
    engine commits it before sending an ACK (DESIGN: ACKed only once stored); an OFFER
    (`commit_first` False) goes at once, the allocation held in memory (RFC 2131 §4.3.1
    lets a server reserve it so), unless the store is down.

    `params` is read once here; build a new responder when the parameters change.
    """

    __slots__ = (
        "params",
        "table",
        "node",
        "allocate",
        "_server_id",
        "_gateway_mac",
        "_dns",
        "_common_tail",
        "_inform_tail",
        "_nak_options",
        "_cache",
        "_templates",
        "_ip_sum",
        "_udp_sum",
    )
    pure = False  # allocates from pools; answers name per-transaction ids

    def __init__(
        self, params: GatewayParams, table: BindingTable, node: str = "", allocate: bool = True
    ):
        self.params = params
        self.table = table
        self.node = node
        self.allocate = allocate
        self._server_id = params.gateway_ipv4
        self._gateway_mac = params.gateway_mac
        # Options that do not depend on the binding, built here so that a bad configuration
        # fails at start-up, not at packet time.
        dns = _opt(OPT_DNS, b"".join(params.dns_servers)) if params.dns_servers else b""
        search = b""
        if params.search:
            search = _opt(OPT_DOMAIN_NAME, params.search[0].rstrip(".").encode("ascii"))
            search += _opt(OPT_DOMAIN_SEARCH, encode_domain_search(params.search))
        mtu = b""
        if params.mtu:
            if not 68 <= params.mtu <= 0xFFFF:
                raise ValueError(f"MTU {params.mtu} outside 68..65535 (RFC 2132 §5.1)")
            mtu = _opt(OPT_MTU, params.mtu.to_bytes(2, "big"))
        lease = _opt(OPT_LEASE_TIME, params.lease_time.to_bytes(4, "big"))
        server_id = _opt(OPT_SERVER_ID, self._server_id)
        # Between option 12 and option 121.
        self._common_tail = search + mtu + lease + server_id
        self._inform_tail = search + mtu + server_id
        self._dns = dns
        nak = _padded(bytes((OPT_MESSAGE_TYPE, 1, DHCPNAK)) + server_id)
        self._nak_options = (nak, _word_sum(nak))
        self._cache: dict[tuple, tuple[bytes, int]] = {}
        self._templates: dict[tuple, tuple[bytes, bytes, int]] = {}
        # The words every reply shares: of the IPv4 header (version/IHL, TTL/protocol, the
        # source), and of the UDP checksum (pseudo-header source and protocol, source port,
        # the magic cookie).
        src = _from_bytes(self._server_id, "big")
        self._ip_sum = 0x4500 + (_TTL << 8 | _IPPROTO_UDP) + src
        self._udp_sum = src + _IPPROTO_UDP + SERVER_PORT + _word_sum(MAGIC_COOKIE)

    def handle(self, frame: bytes, ifname: str, now: float) -> Outcome:
        """Answer or refuse one received frame; never raises on remote input."""
        if len(frame) < ETH_HLEN:
            return Outcome(RECEIVED_MALFORMED, drop="truncated")
        if frame[12] << 8 | frame[13] != ETH_P_IP:
            return Outcome(RECEIVED_MALFORMED, drop="bad_ethertype")
        eth_src = frame[6:12]
        try:
            _ip_src, _ip_dst, _sport, dport, payload = decode_udp4(frame)
            if dport != SERVER_PORT:
                return self._drop(RECEIVED_MALFORMED, "wrong_port", eth_src)
            if payload and payload[0] != BOOTREQUEST:
                label = RECEIVED_BOOTREPLY if payload[0] == BOOTREPLY else RECEIVED_MALFORMED
                return self._drop(label, "not_bootrequest", eth_src)
            msg = decode_dhcpv4(payload)
        except MalformedPacket as exc:
            return self._drop(RECEIVED_MALFORMED, exc.reason, eth_src)

        mtype = msg.message_type()
        if mtype is None:
            return self._drop(RECEIVED_BOOTREQUEST, "no_message_type", eth_src)
        label = MESSAGE_TYPE_NAMES.get(mtype, UNKNOWN_MESSAGE_NAME)
        if mtype not in _ACCEPTED:
            return self._drop(label, "unsupported_message", eth_src)

        if msg.giaddr != ZERO4:
            # Relayed: the Ethernet src is the relay's, so the client is named by chaddr.
            if msg.htype != HTYPE_ETHER or msg.hlen != 6:
                return Outcome(label, drop="not_bootrequest")
            if self.table.lookup(eth_src) is not None:
                # A VM is never a relay: with giaddr and another VM's chaddr it could learn
                # or claim that VM's address.
                return self._drop(label, "relay_from_vm", eth_src)
            mac = msg.chaddr[:6]
        else:
            mac = eth_src
        binding = self.table.by_mac.get(mac)  # table.lookup, without the call
        if binding is None or binding.ipv4 is None:
            if binding is not None or not (mtype in _MAY_ALLOCATE and self.allocate):
                return Outcome(label, drop="unknown_client")
            if not self.table.pools:
                return Outcome(label, drop="unknown_client")
            pools = None
            if msg.giaddr != ZERO4:
                pools = self.table.pools_for(msg.giaddr)
                if not pools:
                    return Outcome(label, drop="no_subnet")
            binding = self.table.allocate(mac, pools)
            if binding is None:
                return Outcome(label, drop="pool_exhausted")

        eth_dst = eth_src
        # Migration tracks VMs on this port; a relayed client is on the relay's link.
        vm = binding.mac if msg.giaddr == ZERO4 else None
        if mtype == DHCPDISCOVER:
            return self._answer(label, eth_dst, msg, binding, DHCPOFFER, vm)
        if mtype == DHCPREQUEST:
            requested = msg.requested_ip()
            if requested is None and msg.ciaddr != ZERO4:
                requested = msg.ciaddr
            if requested is not None and requested == binding.ipv4:
                return self._answer(label, eth_dst, msg, binding, DHCPACK, vm)
            reply = self._frame(eth_dst, msg, DHCPNAK, ZERO4, ZERO4, None, DHCPNAK)
            return Outcome(label, reply=reply, sent="DHCPNAK", mac=vm)
        if mtype == DHCPINFORM:
            reply = self._frame(eth_dst, msg, DHCPACK, msg.ciaddr, ZERO4, binding, _INFORM_ACK)
            return Outcome(label, reply=reply, sent="DHCPACK", mac=vm)
        if mtype == DHCPDECLINE:
            conflict = msg.options.get(OPT_REQUESTED_IP)
            if conflict is None or len(conflict) != 4:
                conflict = binding.ipv4  # option 50 is a MUST, but name the address anyway
            return Outcome(label, mac=vm, conflict=conflict)
        return Outcome(label, mac=vm)  # DHCPRELEASE

    def _drop(self, label: str, reason: str, eth_src: bytes) -> Outcome:
        """A refusal; `mac` names the sender if it is a bound VM (e.g. a VM acting as a server)."""
        mac = eth_src if self.table.lookup(eth_src) is not None else None
        return Outcome(label, drop=reason, mac=mac)

    def _answer(
        self,
        label: str,
        eth_dst: bytes,
        msg: DhcpMessage,
        binding: Binding,
        reply_type: int,
        vm: bytes | None,
    ) -> Outcome:
        """An OFFER or ACK naming the binding's address (an ACK: with the lease to commit)."""
        ipv4 = binding.ipv4
        ciaddr = msg.ciaddr if reply_type == DHCPACK else ZERO4
        reply = self._frame(eth_dst, msg, reply_type, ciaddr, ipv4, binding, reply_type)
        sent = "DHCPOFFER" if reply_type == DHCPOFFER else "DHCPACK"
        if binding.pool and not binding.durable:
            # A new client. Its ACK waits for the store, and the NAK goes instead if the
            # store gives the address (or the client) to another; its OFFER goes at once,
            # unless the store is down (then the engine commits first: no OFFER it can't
            # ACK, and the commit finds out when the store is back).
            out = Outcome(label, reply, sent, None, None, vm)
            out.lease = Lease(binding.mac, ipv4, binding.prefixlen, self.node)
            if reply_type == DHCPACK:
                out.nak = self._frame(eth_dst, msg, DHCPNAK, ZERO4, ZERO4, None, DHCPNAK)
            else:
                out.commit_first = False
            return out
        # Positional (received, reply, sent, drop, lease, mac): a third cheaper than keywords.
        return Outcome(label, reply, sent, None, None, vm)

    def _options(self, binding: Binding, kind: int) -> tuple[bytes, int]:
        """The option block (53 .. END plus padding) for an OFFER, ACK or INFORM-ACK, and its
        share of the UDP checksum (`_word_sum`)."""
        hostname = binding.hostname or binding.name
        key = _options_key(binding, kind)
        block = self._cache.get(key)
        if block is not None:
            return block
        ipv4 = binding.ipv4
        prefixlen = binding.prefixlen
        router = self.params.router_for(ipv4, prefixlen)
        mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
        on_link = int.from_bytes(router, "big") & mask == int.from_bytes(ipv4, "big") & mask
        routes = [(ZERO4, 0, router)]
        if not on_link:
            # RFC 3442 §1: a client using 121 ignores option 3, so the route to a router
            # outside the subnet must be given explicitly, as an on-link host route.
            routes.insert(0, (router, 32, ZERO4))
        host = _opt(OPT_HOSTNAME, hostname.encode()) if hostname else b""
        parts = [bytes((OPT_MESSAGE_TYPE, 1, DHCPACK if kind == _INFORM_ACK else kind))]
        if kind != _INFORM_ACK:
            parts.append(_opt(OPT_SUBNET_MASK, mask.to_bytes(4, "big")))
        parts += [_opt(OPT_ROUTER, router), self._dns, host]
        parts.append(self._inform_tail if kind == _INFORM_ACK else self._common_tail)
        parts.append(_opt(OPT_CLASSLESS_ROUTES, encode_classless_routes(routes)))
        block = _padded(b"".join(parts))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        entry = self._cache[key] = (block, _word_sum(block))
        return entry

    def _frame(
        self,
        eth_dst: bytes,
        msg: DhcpMessage,
        reply_type: int,
        ciaddr: bytes,
        yiaddr: bytes,
        binding: Binding | None,
        kind: int,
    ) -> bytes:
        """The reply frame: BOOTP header (RFC 2131 table 3), options, addressing (§4.1); IPv4
        and UDP checksums computed (RFC 791 §3.1, RFC 768; a UDP checksum of 0 goes as
        0xFFFF). The options are those of `_options(binding, kind)`, the NAK's without a
        binding."""
        flags = msg.flags
        giaddr = msg.giaddr
        dport = CLIENT_PORT
        if giaddr != ZERO4:
            ip_dst = giaddr
            dport = SERVER_PORT
            if reply_type == DHCPNAK:
                flags |= BROADCAST_FLAG  # RFC 2131 §4.3.2: the relay broadcasts the NAK
        elif reply_type == DHCPNAK or flags & BROADCAST_FLAG:
            ip_dst = BROADCAST4
        else:
            ip_dst = yiaddr if yiaddr != ZERO4 else ciaddr
            if ip_dst == ZERO4:
                ip_dst = BROADCAST4
        options_key = _options_key(binding, kind) if binding is not None else None
        key = (options_key, eth_dst, ip_dst, dport)
        template = self._templates.get(key)
        if template is None:
            template = self._template(binding, kind, eth_dst, ip_dst, dport)
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            self._templates[key] = template
        head, tail, template_sum = template
        fields = _pack_fields(
            BOOTREPLY, msg.htype, msg.hlen, 0, msg.xid, 0, flags, ciaddr, yiaddr, ZERO4, giaddr,
            msg.chaddr,
        )  # fmt: skip
        # Folded and complemented (wire.checksum): the sum is never zero, so a remainder of 0
        # means a sum of 0xFFFF (-0), whose checksum is 0, sent as 0xFFFF (RFC 768).
        total = (template_sum + _from_bytes(fields, "big")) % 0xFFFF
        udp_checksum = (0xFFFF - total if total else 0xFFFF).to_bytes(2, "big")
        return b"".join((head, udp_checksum, fields, tail))

    def _template(
        self, binding: Binding | None, kind: int, eth_dst: bytes, ip_dst: bytes, dport: int
    ) -> tuple[bytes, bytes, int]:
        """`(head, tail, share of the UDP checksum)` of a reply: head is the headers up to
        the UDP checksum, tail sname, file, the cookie and the options."""
        block, block_sum = self._nak_options if binding is None else self._options(binding, kind)
        ulen = _UDP_FIXED + len(block)
        dst = _from_bytes(ip_dst, "big")
        ip_sum = (self._ip_sum + 20 + ulen + dst) % 0xFFFF  # non-zero: see `_frame`
        head = _pack_headers(
            eth_dst, self._gateway_mac, ETH_P_IP,
            0x45, 0, 20 + ulen, 0, 0, _TTL, _IPPROTO_UDP,
            0xFFFF - ip_sum if ip_sum else 0, self._server_id, ip_dst,
            SERVER_PORT, dport, ulen,
        )  # fmt: skip
        # The pseudo-header and the UDP header both carry the length.
        udp_sum = self._udp_sum + dst + ulen + ulen + dport + block_sum
        return head, _SNAME_FILE_COOKIE + block, udp_sum % 0xFFFF


_ACCEPTED = frozenset((DHCPDISCOVER, DHCPREQUEST, DHCPDECLINE, DHCPRELEASE, DHCPINFORM))
_MAY_ALLOCATE = frozenset((DHCPDISCOVER, DHCPREQUEST))
