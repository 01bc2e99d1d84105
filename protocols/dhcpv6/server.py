"""The DHCPv6 server responder (SPEC "DHCPv6"; RFC 8415, RFC 3646, RFC 4704).

Stateful: a VM's IA_NA gets the one IPv6 address its binding owns (found by the request's
Ethernet source MAC), or an address from a pool allocated to the client's DUID and IAID.
Unlike the reference system, RENEW and REBIND are answered, so a guest keeps its address
with finite lifetimes, and the server DUID is identical on every node, so a RENEW after a
live migration names this server too. See `Dhcpv6Responder` for the rules.
"""

from __future__ import annotations

from ..bindings import Binding, BindingTable, Lease6
from ..dhcpv4.codec import encode_domain_search
from ..ethernet import ETH_HLEN, ETH_P_IPV6
from ..ipv6 import ALL_DHCP_SERVERS, UNSPECIFIED, decode_udp6, encode_udp6_frame
from ..outcome import Outcome
from ..params import GatewayParams
from ..wire import MalformedPacket
from .codec import (
    Dhcpv6Message,
    IaNa,
    decode_dhcpv6,
    decode_domain_name,
    encode_domain_name,
    encode_ia_na,
    encode_iaaddr,
    encode_option6,
    encode_status,
)
from .constants import (
    ADVERTISE,
    CLIENT_PORT,
    CONFIRM,
    DECLINE,
    FQDN_FLAG_N,
    FQDN_FLAG_O,
    FQDN_FLAG_S,
    INFORMATION_REQUEST,
    MESSAGE_TYPE_NAMES,
    OPT_CLIENT_FQDN,
    OPT_CLIENTID,
    OPT_DNS_SERVERS,
    OPT_DOMAIN_LIST,
    OPT_IA_NA,
    OPT_IA_PD,
    OPT_IA_TA,
    OPT_PREFERENCE,
    OPT_RAPID_COMMIT,
    OPT_SERVERID,
    REBIND,
    RECONFIGURE,
    RELAY_FORW,
    RELAY_REPL,
    RELEASE,
    RENEW,
    REPLY,
    REQUEST,
    SERVER_PORT,
    SOLICIT,
    STATUS_NO_ADDRS_AVAIL,
    STATUS_NO_PREFIX_AVAIL,
    STATUS_NOT_ON_LINK,
    STATUS_SUCCESS,
    UNKNOWN_MESSAGE_NAME,
)

__all__ = ["Dhcpv6Responder", "RECEIVED_MALFORMED"]

RECEIVED_MALFORMED = "dhcpv6"  # not a decodable DHCPv6 message (or not IPv6/UDP at all)

_CACHE_LIMIT = 4096
_RAPID_COMMIT = encode_option6(OPT_RAPID_COMMIT, b"")
_NO_ADDRS = encode_status(STATUS_NO_ADDRS_AVAIL, "no address for this IA")
_NO_PREFIX = encode_status(STATUS_NO_PREFIX_AVAIL, "no prefix delegation here")
_SUCCESS = encode_status(STATUS_SUCCESS, "")
_NOT_ON_LINK = encode_status(STATUS_NOT_ON_LINK, "address not on this link")

# Client messages a server answers (RFC 8415 §18.3), and the rest by kind.
_ACCEPTED = frozenset(
    (SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE, INFORMATION_REQUEST)
)
_SERVER_MESSAGES = frozenset((ADVERTISE, REPLY, RECONFIGURE, RELAY_REPL))
# RFC 8415 §16: these must name this server; those below must not name any.
_NEED_SERVER_ID = frozenset((REQUEST, RENEW, RELEASE, DECLINE))
_NO_SERVER_ID = frozenset((SOLICIT, CONFIRM, REBIND))
# RFC 8415 §16: discarded when sent to a unicast address.
_MULTICAST_ONLY = frozenset((SOLICIT, CONFIRM, REBIND, INFORMATION_REQUEST))
_MAY_ALLOCATE = frozenset((SOLICIT, REQUEST, RENEW, REBIND))
_ASSIGNING = _MAY_ALLOCATE  # messages whose reply carries IA_NA addresses
_IA_OPTIONS = frozenset((OPT_IA_NA, OPT_IA_TA, OPT_IA_PD))


class Dhcpv6Responder:
    """Answers DHCPv6 requests from VMs, one `handle` call per received frame.

    Message handling (SPEC table; RFC 8415 §18.3):

    - SOLICIT: ADVERTISE with the IA_NA addresses (and Preference `dhcpv6_preference`); with
      Rapid Commit (§21.14), a REPLY carrying Rapid Commit instead.
    - REQUEST, RENEW, REBIND: REPLY with the IA_NA addresses. The client's IA Address
      options are hints: a REQUEST is given the binding's address whatever it names
      (§18.3.2); in a RENEW or REBIND, each address the client names that is not the one it
      is given comes back with lifetimes 0 (§18.3.4, §18.3.5: "not appropriate for the
      link"), so a guest drops a stale address at once.
    - CONFIRM: REPLY with status Success if every address named is on-link (inside the
      binding's prefix, or a pool's subnet for a pool client), else NotOnLink (§18.3.3);
      no address at all: no reply ("confirm_without_address").
    - RELEASE, DECLINE: REPLY with status Success (SPEC); nothing is freed (pool addresses
      are sticky, as for DHCPv4). A DECLINE sets `Outcome.conflict` to the first address
      it names so that the engine can log the conflict.
    - INFORMATION-REQUEST: REPLY with DNS and search only; answered when the Ethernet
      source is a bound MAC or an IPv6 pool exists. A Client Identifier is optional here
      (RFC 8415 §18.2.6, §16.12), so one without is answered; one with an IA is not.
    - ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL sent by a VM: dropped "server_message";
      RELAY-FORW and unknown types: "unsupported_message".

    Validation (RFC 8415 §16, SPEC): no usable Client Identifier: "no_client_id";
    REQUEST/RENEW/RELEASE/DECLINE without a Server Identifier: "no_server_id", with another
    server's: "not_for_us" (also INFORMATION-REQUEST naming another server); SOLICIT,
    CONFIRM, REBIND with one: "server_id_present"; no well-formed IA_NA in anything but an
    INFORMATION-REQUEST: "no_ia_na". Requests must go to ff02::1:2 or, unicast (**beyond**),
    to `dhcpv6_source` ("wrong_destination"); SOLICIT, CONFIRM, REBIND and
    INFORMATION-REQUEST sent unicast are dropped (§16, "unicast_forbidden"). A zero UDP
    checksum is refused (RFC 8200 §8.1); other UDP checksums are not verified (offload).

    Addresses per IA_NA. A static binding (found by the Ethernet source MAC, with `ipv6`
    set) has one address: it goes to the IA that already holds it, else to the first IA_NA;
    any other IA_NA gets status NoAddrsAvail. Without such a binding, each IA_NA is looked up
    by (DUID, IAID) in the IPv6 pools and, for SOLICIT/REQUEST/RENEW/REBIND with `allocate`,
    allocated if new. Allocations the store has not committed yet are returned as
    `Outcome.lease6` (and `extra6`, for a client with several new IAs): the engine commits
    them, in one transaction, before sending a REPLY; an ADVERTISE (`commit_first` False)
    goes at once, the allocations held in memory, unless the store is down.
    No address for any IA_NA: no reply ("pool_exhausted" when a pool was full, else
    "unknown_client"). IA_TA and IA_PD are answered with NoAddrsAvail / NoPrefixAvail.

    Reply options, in this order: Client Identifier (copied), Server Identifier
    (`dhcpv6_duid`), Preference (ADVERTISE) or Rapid Commit, a top-level Status Code
    (CONFIRM, RELEASE, DECLINE), IA_NA (IAID copied; T1, T2; IA Address with the preferred
    and valid lifetimes of `params.ia_lifetimes`), DNS servers (23) if `dns6_servers`,
    domain search (24) if `search`, Client FQDN (39) only if the client sent 39. Options 23,
    24 and 39 go only in ADVERTISE and in REPLY to SOLICIT, REQUEST, RENEW, REBIND (23 and
    24 also to INFORMATION-REQUEST).

    Client FQDN (RFC 4704 §4.1, §5): lmdp updates no DNS, so flags N=1, S=0, and O=1 when
    the client asked for S (its preference is overridden). The name is the binding's
    hostname (else its name), qualified with the first search domain when it is a single
    label; without search domains it stays a partial name. A client without a named
    binding gets its own name back.

    Addressing: Ethernet dst = the request's Ethernet src, Ethernet src = `dhcpv6_mac`,
    IPv6 src = `dhcpv6_source`, dst = the request's source, hop limit copied from the
    request (SPEC; 0 becomes 1), UDP 547 -> 546 with a correct checksum.

    `params` is read once here; build a new responder when the parameters change.
    """

    __slots__ = (
        "params",
        "table",
        "node",
        "allocate",
        "_duid",
        "_mac",
        "_source",
        "_server_id",
        "_preference",
        "_tail",
        "_domain",
        "_lifetimes",
        "_fqdn_cache",
    )
    pure = False  # allocates from pools; answers name per-transaction ids

    def __init__(
        self, params: GatewayParams, table: BindingTable, node: str = "", allocate: bool = True
    ):
        self.params = params
        self.table = table
        self.node = node
        self.allocate = allocate
        # Everything that does not depend on the request is built and checked here, so that
        # a bad configuration fails at start-up, not at packet time.
        duid = params.dhcpv6_duid
        source = params.dhcpv6_source
        if duid is None or not 3 <= len(duid) <= 130:
            raise ValueError(f"dhcpv6_duid must be 3..130 bytes (RFC 8415 §11.1): {duid!r}")
        if source is None or len(source) != 16 or len(params.dhcpv6_mac) != 6:
            raise ValueError("dhcpv6_source must be 16 bytes and dhcpv6_mac 6 bytes")
        self._duid = duid
        self._mac = params.dhcpv6_mac
        self._source = source
        self._server_id = encode_option6(OPT_SERVERID, duid)
        preference = params.dhcpv6_preference
        if preference is not None and not 0 <= preference <= 255:
            raise ValueError(f"dhcpv6_preference {preference} outside 0..255 (RFC 8415 §21.8)")
        self._preference = (
            encode_option6(OPT_PREFERENCE, bytes((preference,))) if preference is not None else b""
        )
        if any(len(a) != 16 for a in params.dns6_servers):
            raise ValueError("dns6_servers must be packed IPv6 addresses (16 bytes)")
        dns = b"".join(params.dns6_servers)
        dns = encode_option6(OPT_DNS_SERVERS, dns) if dns else b""
        search = b""
        if params.search:
            search = encode_option6(OPT_DOMAIN_LIST, encode_domain_search(params.search))
        self._tail = dns + search  # options 23 and 24, the same in every reply that has them
        self._domain = params.search[0].rstrip(".") if params.search else ""
        preferred, valid, t1, t2 = params.ia_lifetimes()
        for value in (preferred, valid):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"lifetime {value} outside 0..0xffffffff (RFC 8415 §7.7)")
        if preferred > valid:
            # RFC 8415 §21.6: a client discards an address whose preferred lifetime exceeds
            # its valid lifetime.
            raise ValueError(f"preferred lifetime {preferred} exceeds valid lifetime {valid}")
        self._lifetimes = (preferred, valid, t1, t2)
        self._fqdn_cache: dict[tuple[str, int], bytes] = {}

    def handle(self, frame: bytes, ifname: str, now: float) -> Outcome:
        """Answer or refuse one received frame; never raises on remote input."""
        if len(frame) < ETH_HLEN:
            return Outcome(RECEIVED_MALFORMED, drop="truncated")
        if frame[12] << 8 | frame[13] != ETH_P_IPV6:
            return Outcome(RECEIVED_MALFORMED, drop="bad_ethertype")
        eth_src = frame[6:12]
        binding = self.table.lookup(eth_src)
        mac = eth_src if binding is not None else None
        try:
            src, dst, hlim, _sport, dport, payload = decode_udp6(frame)
            if dport != SERVER_PORT:
                return Outcome(RECEIVED_MALFORMED, drop="wrong_port", mac=mac)
            if payload:
                first = payload[0]
                if first in _SERVER_MESSAGES:
                    return Outcome(MESSAGE_TYPE_NAMES[first], drop="server_message", mac=mac)
                if first == RELAY_FORW:
                    return Outcome("RELAY-FORW", drop="unsupported_message", mac=mac)
            msg = decode_dhcpv6(payload)
        except MalformedPacket as exc:
            return Outcome(RECEIVED_MALFORMED, drop=exc.reason, mac=mac)

        mtype = msg.msg_type
        label = MESSAGE_TYPE_NAMES.get(mtype, UNKNOWN_MESSAGE_NAME)
        if mtype not in _ACCEPTED:
            return Outcome(label, drop="unsupported_message", mac=mac)
        if src == UNSPECIFIED:
            return Outcome(label, drop="bad_source", mac=mac)  # nowhere to answer
        if dst != ALL_DHCP_SERVERS:
            if dst != self._source:
                return Outcome(label, drop="wrong_destination", mac=mac)
            if mtype in _MULTICAST_ONLY:
                return Outcome(label, drop="unicast_forbidden", mac=mac)
        client_id = msg.client_id()
        if client_id is None and (
            mtype != INFORMATION_REQUEST or msg.get(OPT_CLIENTID) is not None
        ):
            return Outcome(label, drop="no_client_id", mac=mac)
        server_id = msg.server_id()
        if mtype in _NEED_SERVER_ID:
            if server_id is None:
                return Outcome(label, drop="no_server_id", mac=mac)
            if server_id != self._duid:
                return Outcome(label, drop="not_for_us", mac=mac)
        elif server_id is not None:
            if mtype in _NO_SERVER_ID:
                return Outcome(label, drop="server_id_present", mac=mac)
            if server_id != self._duid:  # INFORMATION-REQUEST may name us (§16.12)
                return Outcome(label, drop="not_for_us", mac=mac)

        reply = _Reply(self, frame, src, hlim, msg, client_id)
        if mtype == INFORMATION_REQUEST:
            if any(code in _IA_OPTIONS for code, _ in msg.options):
                return Outcome(label, drop="unexpected_ia", mac=mac)
            if binding is None and not self.table.pools6:
                return Outcome(label, drop="unknown_client", mac=mac)
            return Outcome(label, reply=reply.build(REPLY, self._tail), sent="REPLY", mac=mac)

        ias = msg.ia_nas()
        if not ias:
            return Outcome(label, drop="no_ia_na", mac=mac)
        static = binding if binding is not None and binding.ipv6 is not None else None
        if static is None and not self.table.pools6:
            return Outcome(label, drop="unknown_client", mac=mac)
        assert client_id is not None  # only INFORMATION-REQUEST may lack it

        if mtype in _ASSIGNING:
            return self._assign(label, reply, mtype, ias, static, binding, client_id, eth_src)
        if mtype == CONFIRM:
            addresses = [a.address for ia in ias for a in ia.addresses]
            if not addresses:
                return Outcome(label, drop="confirm_without_address", mac=mac)
            ok = all(self._on_link(a, static) for a in addresses)
            reply.extra = _SUCCESS if ok else _NOT_ON_LINK
            return Outcome(label, reply=reply.build(REPLY), sent="REPLY", mac=mac)
        # RELEASE, DECLINE: the client must be one we serve.
        held = None
        if static is not None:
            held = static.ipv6
        else:
            for ia in ias:
                b = self.table.lookup6(client_id, ia.iaid)
                if b is not None:
                    held = b.ipv6
                    break
            if held is None:
                return Outcome(label, drop="unknown_client", mac=mac)
        reply.extra = _SUCCESS
        out = Outcome(label, reply=reply.build(REPLY), sent="REPLY", mac=mac)
        if mtype == DECLINE:
            named = [a.address for ia in ias for a in ia.addresses]
            out.conflict = named[0] if named else held
        return out

    def _assign(
        self,
        label: str,
        reply: _Reply,
        mtype: int,
        ias: list[IaNa],
        static: Binding | None,
        binding: Binding | None,
        duid: bytes,
        eth_src: bytes,
    ) -> Outcome:
        """ADVERTISE or REPLY with an address for each IA_NA that can have one."""
        preferred, valid, t1, t2 = self._lifetimes
        stale_to_zero = mtype in (RENEW, REBIND)
        primary = 0
        if static is not None and len(ias) > 1:
            mine = static.ipv6
            for k, ia in enumerate(ias):
                for a in ia.addresses:
                    if a.address == mine:
                        primary = k
                        break
                else:
                    continue
                break
        msg = reply.msg
        # An ADVERTISE names allocations held in memory; a REPLY (a Rapid Commit one too)
        # waits for the store to commit its allocation.
        advertise = mtype == SOLICIT and not msg.rapid_commit()
        to_commit: list[Lease6] = []
        assigned = 0
        exhausted = False
        table = self.table
        blocks = []
        for k, ia in enumerate(ias):
            if static is not None:
                address = static.ipv6 if k == primary else None
            else:
                b = table.lookup6(duid, ia.iaid)
                if b is None and mtype in _MAY_ALLOCATE and self.allocate:
                    b = table.allocate6(duid, ia.iaid, eth_src)
                    if b is None:
                        exhausted = True
                if b is not None and not b.durable:
                    to_commit.append(
                        Lease6(duid, ia.iaid, b.ipv6, b.prefixlen6, self.node, eth_src)
                    )
                address = b.ipv6 if b is not None else None
            inner = encode_iaaddr(address, preferred, valid) if address is not None else b""
            if stale_to_zero:
                for a in ia.addresses:
                    if a.address != address:
                        inner += encode_iaaddr(a.address, 0, 0)
            if address is None:
                blocks.append(encode_ia_na(ia.iaid, 0, 0, inner + _NO_ADDRS))
            else:
                assigned += 1
                blocks.append(encode_ia_na(ia.iaid, t1, t2, inner))
        mac = eth_src if binding is not None else None
        if not assigned:
            return Outcome(label, drop="pool_exhausted" if exhausted else "unknown_client", mac=mac)
        for code, value in msg.options:
            if code == OPT_IA_PD and len(value) >= 12:
                blocks.append(encode_option6(OPT_IA_PD, value[:4] + bytes(8) + _NO_PREFIX))
            elif code == OPT_IA_TA and len(value) >= 4:
                blocks.append(encode_option6(OPT_IA_TA, value[:4] + _NO_ADDRS))
        reply.ias = b"".join(blocks)
        tail = self._tail + self._fqdn(msg, binding)
        if advertise:
            reply.extra = self._preference
            out = Outcome(label, reply=reply.build(ADVERTISE, tail), sent="ADVERTISE", mac=mac)
        else:
            if mtype == SOLICIT:
                reply.extra = _RAPID_COMMIT
            out = Outcome(label, reply=reply.build(REPLY, tail), sent="REPLY", mac=mac)
        if to_commit:
            out.lease6, out.extra6 = to_commit[0], tuple(to_commit[1:])
            out.commit_first = not advertise
        return out

    def _on_link(self, address: bytes, static: Binding | None) -> bool:
        """CONFIRM's test (RFC 8415 §18.3.3): inside the binding's prefix, or a pool's subnet."""
        if static is not None:
            bits = 128 - static.prefixlen6
            mine = int.from_bytes(static.ipv6, "big") >> bits
            return int.from_bytes(address, "big") >> bits == mine
        return any(pool.on_link(address) for pool in self.table.pools6)

    def _fqdn(self, msg: Dhcpv6Message, binding: Binding | None) -> bytes:
        """Option 39 for the reply, or b"" when the client sent none (RFC 4704 §5)."""
        sent = msg.client_fqdn()
        if sent is None:
            return b""
        flags = FQDN_FLAG_N | (FQDN_FLAG_O if sent[0] & FQDN_FLAG_S else 0)
        name = (binding.hostname or binding.name) if binding is not None else ""
        if not name:
            # No name of ours: give the client its own name back, if it is a valid one.
            if decode_domain_name(sent[1]) is None:
                return b""
            return encode_option6(OPT_CLIENT_FQDN, bytes((flags,)) + sent[1])
        key = (name, flags)
        option = self._fqdn_cache.get(key)
        if option is None:
            if "." not in name.rstrip(".") and self._domain:
                name = f"{name}.{self._domain}."
            elif "." in name:
                name = name.rstrip(".") + "."
            try:
                wire = encode_domain_name(name)
            except (ValueError, UnicodeEncodeError):
                return b""  # a name DNS cannot carry: leave the option out
            option = encode_option6(OPT_CLIENT_FQDN, bytes((flags,)) + wire)
            if len(self._fqdn_cache) >= _CACHE_LIMIT:
                self._fqdn_cache.clear()
            self._fqdn_cache[key] = option
        return option


class _Reply:
    """The parts of one reply: addressing from the request, options filled in by the handler."""

    __slots__ = ("responder", "frame", "src", "hlim", "msg", "client_id", "extra", "ias")

    def __init__(
        self,
        responder: Dhcpv6Responder,
        frame: bytes,
        src: bytes,
        hlim: int,
        msg: Dhcpv6Message,
        client_id: bytes | None,
    ):
        self.responder = responder
        self.frame = frame
        self.src = src
        self.hlim = hlim
        self.msg = msg
        self.client_id = client_id
        self.extra = b""
        self.ias = b""

    def build(self, reply_type: int, tail: bytes = b"") -> bytes:
        r = self.responder
        client_id = self.client_id
        payload = b"".join(
            (
                bytes((reply_type,)),
                self.msg.xid.to_bytes(3, "big"),
                encode_option6(OPT_CLIENTID, client_id) if client_id is not None else b"",
                r._server_id,
                self.extra,
                self.ias,
                tail,
            )
        )
        return encode_udp6_frame(
            self.frame[6:12], r._mac, r._source, self.src, SERVER_PORT, CLIENT_PORT, payload,
            self.hlim or 1,
        )  # fmt: skip
