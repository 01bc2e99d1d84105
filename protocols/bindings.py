"""VM bindings: which MAC owns which address, and the pools that hand out new ones.

A binding is keyed by the MAC address that sends the request on an attached interface (the
VM's MAC, which a live migration keeps). Static bindings come from the config or from
Kubernetes and need no allocation; pool bindings are allocated once per MAC, persisted by the
engine before the first reply that names them, and then behave like static ones forever.

Pure: no I/O, no clock reads. The engine loads persisted leases with `restore`, and confirms
an allocation with `confirm` once the store has committed it.

IPv6: a binding may have an IPv4 address, an IPv6 address or both. Static bindings with an
IPv6 address are found by MAC like the IPv4 ones (DHCPv6 looks them up by the request's
Ethernet source). Pool allocations for DHCPv6 are keyed by the client's DUID and IAID, as
RFC 8415 intends (one client may hold several IAs, and a test tool may simulate thousands of
DUIDs from one MAC): `allocate6`, `lookup6`, `restore6`, `confirm6`, `remove6`. Those
bindings live in `by_ia` and `by_ipv6`, never in `by_mac`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["Binding", "BindingTable", "Lease", "Lease6", "Pool", "Pool6"]


@dataclass(slots=True)
class Binding:
    """One VM's addressing. `mac` and `ipv4` are packed bytes (6 and 4) for the hot path."""

    name: str
    mac: bytes
    ipv4: bytes | None = None  # packed address
    prefixlen: int = 32
    hostname: str | None = None
    # Set for pool allocations; False until the store has committed the allocation.
    pool: bool = False
    durable: bool = True
    # The VM's IPv6 address (16 packed bytes) and its prefix length; IA_NA gives a /128.
    ipv6: bytes | None = None
    prefixlen6: int = 128
    # Set for DHCPv6 pool allocations only: the DUID and IAID the address is bound to.
    duid: bytes | None = None
    iaid: int = 0

    @property
    def ipv4_address(self) -> ipaddress.IPv4Address | None:
        return ipaddress.IPv4Address(self.ipv4) if self.ipv4 is not None else None

    @property
    def netmask(self) -> bytes:
        return ((0xFFFFFFFF << (32 - self.prefixlen)) & 0xFFFFFFFF).to_bytes(4, "big")


@dataclass(slots=True)
class Lease:
    """A pool allocation to be committed to the store before any reply that names it."""

    mac: bytes
    ipv4: bytes
    prefixlen: int
    node: str = ""


@dataclass(slots=True)
class Lease6:
    """A DHCPv6 pool allocation (keyed by DUID and IAID) to commit before any reply naming it.

    `mac` is the Ethernet source the request came from, for the operator's benefit only."""

    duid: bytes
    iaid: int
    ipv6: bytes
    prefixlen: int
    node: str = ""
    mac: bytes | None = None


class _Range:
    """What IPv4 and IPv6 pools share: an inclusive range of addresses [start, end] and
    `_next`, the offset the next allocation's search starts from."""

    __slots__ = ()

    def contains(self, ip: bytes) -> bool:
        v = int.from_bytes(ip, "big")
        return int(self.start) <= v <= int(self.end)

    def size(self) -> int:
        return int(self.end) - int(self.start) + 1

    def next_free(self, taken: dict[bytes, object], width: int) -> bytes | None:
        """The first address (`width` bytes) from `_next` on, wrapping, that is not in
        `taken`; the search starts after it next time. None: every address is taken."""
        n = self.size()
        base = int(self.start)
        for i in range(n):
            off = (self._next + i) % n
            ip = (base + off).to_bytes(width, "big")
            if ip not in taken:
                self._next = (off + 1) % n
                return ip
        return None

    def passed(self, ip: bytes) -> None:
        """`ip` is held (a lease read back from the store): start later searches past it, so
        that the first allocation after a restart does not walk every address held."""
        if self.contains(ip):
            self._next = max(self._next, int.from_bytes(ip, "big") - int(self.start) + 1)
            if self._next >= self.size():
                self._next = 0


@dataclass(slots=True)
class Pool(_Range):
    """A range of addresses inside `subnet` handed out in order, one per MAC."""

    subnet: ipaddress.IPv4Network
    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address
    _next: int = field(default=0, init=False)


@dataclass(slots=True)
class Pool6(_Range):
    """A range of IPv6 addresses inside `subnet` handed out in order, one per (DUID, IAID).

    `subnet` is also what CONFIRM treats as on-link for a client served from this pool."""

    subnet: ipaddress.IPv6Network
    start: ipaddress.IPv6Address
    end: ipaddress.IPv6Address
    _next: int = field(default=0, init=False)

    def on_link(self, ip: bytes) -> bool:
        v = int.from_bytes(ip, "big")
        net = self.subnet
        return int(net.network_address) <= v <= int(net.broadcast_address)


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class BindingTable:
    """Static bindings plus pool allocations, looked up by MAC, by IPv4 or IPv6 address, or
    (DHCPv6 pool allocations) by DUID and IAID.

    `version` changes whenever a binding is entered or removed, so that a caller may keep
    what it derived from the table (the engine reuses ARP and NDP answers) until it does.
    """

    __slots__ = ("by_mac", "by_ipv4", "pools", "by_ipv6", "by_ia", "pools6", "version")

    def __init__(
        self,
        bindings: list[Binding] | None = None,
        pools: list[Pool] | None = None,
        pools6: list[Pool6] | None = None,
    ):
        self.by_mac: dict[bytes, Binding] = {}
        self.by_ipv4: dict[bytes, Binding] = {}
        self.pools: list[Pool] = list(pools or [])
        self.by_ipv6: dict[bytes, Binding] = {}
        self.by_ia: dict[tuple[bytes, int], Binding] = {}
        self.pools6: list[Pool6] = list(pools6 or [])
        self.version = 0
        for b in bindings or []:
            self.add(b)

    def add(self, binding: Binding) -> None:
        self.version += 1
        old = self.by_mac.get(binding.mac)
        if old is not None and old.ipv4 is not None and self.by_ipv4.get(old.ipv4) is old:
            del self.by_ipv4[old.ipv4]
        if old is not None and old.ipv6 is not None and self.by_ipv6.get(old.ipv6) is old:
            del self.by_ipv6[old.ipv6]
        self.by_mac[binding.mac] = binding
        if binding.ipv4 is not None:
            self.by_ipv4[binding.ipv4] = binding
        if binding.ipv6 is not None:
            current = self.by_ipv6.get(binding.ipv6)
            if current is not None and current.duid is not None:
                # A static address wins over a pool allocation that holds it: the pool
                # client is given another address at its next RENEW/REBIND.
                self.by_ia.pop((current.duid, current.iaid), None)
            self.by_ipv6[binding.ipv6] = binding

    def remove(self, mac: bytes) -> None:
        self.version += 1
        old = self.by_mac.pop(mac, None)
        if old is not None and old.ipv4 is not None and self.by_ipv4.get(old.ipv4) is old:
            del self.by_ipv4[old.ipv4]
        if old is not None and old.ipv6 is not None and self.by_ipv6.get(old.ipv6) is old:
            del self.by_ipv6[old.ipv6]

    def lookup(self, mac: bytes) -> Binding | None:
        return self.by_mac.get(mac)

    def owner_of(self, ipv4: bytes) -> Binding | None:
        return self.by_ipv4.get(ipv4)

    def pools_for(self, giaddr: bytes) -> list[Pool]:
        """The pools serving a relay's link: those whose subnet holds `giaddr` (RFC 2131 §4.3.1)."""
        v = int.from_bytes(giaddr, "big")
        return [p for p in self.pools if int(p.subnet.network_address) <= v <= int(
            p.subnet.broadcast_address)]  # fmt: skip

    def allocate(self, mac: bytes, pools: list[Pool] | None = None) -> Binding | None:
        """A tentative pool binding for an unknown MAC, or None when no pool has room.

        The binding is entered with `durable=False`; the responder attaches a `Lease` to its
        reply for the engine to commit (before an ACK), then the engine calls `confirm`.
        `pools` narrows the choice (a relay's subnet); by default every pool is tried in
        order.
        """
        for pool in self.pools if pools is None else pools:
            ip = pool.next_free(self.by_ipv4, 4)
            if ip is not None:
                b = Binding(
                    name="",
                    mac=mac,
                    ipv4=ip,
                    prefixlen=pool.subnet.prefixlen,
                    pool=True,
                    durable=False,
                )
                self.add(b)
                return b
        return None

    def restore(self, lease: Lease) -> Binding:
        """Enter a lease read back from the store (durable by definition)."""
        b = Binding(
            name="",
            mac=lease.mac,
            ipv4=lease.ipv4,
            prefixlen=lease.prefixlen,
            pool=True,
            durable=True,
        )
        current = self.by_ipv4.get(lease.ipv4)
        if current is not None and current.mac != lease.mac and not current.pool:
            return current  # a static binding wins over a stale pool lease
        if current is not None and current.mac != lease.mac:
            self.remove(current.mac)
        self.add(b)
        for pool in self.pools:
            pool.passed(lease.ipv4)
        return b

    def confirm(self, lease: Lease) -> None:
        b = self.by_mac.get(lease.mac)
        if b is not None and b.ipv4 == lease.ipv4:
            b.durable = True
        else:
            self.restore(lease)

    # -- IPv6 ---------------------------------------------------------------------------

    def owner_of6(self, ipv6: bytes) -> Binding | None:
        """The binding (static or DHCPv6 pool) that holds `ipv6`, if any."""
        return self.by_ipv6.get(ipv6)

    def lookup6(self, duid: bytes, iaid: int) -> Binding | None:
        """The DHCPv6 pool allocation of one IA (RFC 8415 §12: a binding per DUID and IAID)."""
        return self.by_ia.get((duid, iaid))

    def allocate6(self, duid: bytes, iaid: int, mac: bytes | None = None) -> Binding | None:
        """A tentative pool binding for an IA that has none, or None when no pool has room.

        Like `allocate`: entered with `durable=False`; the responder attaches a `Lease6` to
        its reply for the engine to commit first, then the engine calls `confirm6`.
        """
        key = (duid, iaid)
        for pool in self.pools6:
            ip = pool.next_free(self.by_ipv6, 16)
            if ip is not None:
                b = Binding(
                    name="",
                    mac=mac or b"",
                    ipv6=ip,
                    prefixlen6=pool.subnet.prefixlen,
                    pool=True,
                    durable=False,
                    duid=duid,
                    iaid=iaid,
                )
                self._add6(key, b)
                return b
        return None

    def restore6(self, lease: Lease6) -> Binding:
        """Enter a DHCPv6 lease read back from the store (durable by definition)."""
        b = Binding(
            name="",
            mac=lease.mac or b"",
            ipv6=lease.ipv6,
            prefixlen6=lease.prefixlen,
            pool=True,
            durable=True,
            duid=lease.duid,
            iaid=lease.iaid,
        )
        key = (lease.duid, lease.iaid)
        current = self.by_ipv6.get(lease.ipv6)
        if current is not None and current.duid is None:
            return current  # a static binding wins over a stale pool lease
        if current is not None and (current.duid, current.iaid) != key:
            self.remove6(current.duid, current.iaid)
        self._add6(key, b)
        for pool in self.pools6:
            pool.passed(lease.ipv6)
        return b

    def confirm6(self, lease: Lease6) -> None:
        b = self.by_ia.get((lease.duid, lease.iaid))
        if b is not None and b.ipv6 == lease.ipv6:
            b.durable = True
        else:
            self.restore6(lease)

    def remove6(self, duid: bytes, iaid: int) -> None:
        self.version += 1
        old = self.by_ia.pop((duid, iaid), None)
        if old is not None and old.ipv6 is not None and self.by_ipv6.get(old.ipv6) is old:
            del self.by_ipv6[old.ipv6]

    def _add6(self, key: tuple[bytes, int], binding: Binding) -> None:
        self.version += 1
        old = self.by_ia.get(key)
        if old is not None and old.ipv6 is not None and self.by_ipv6.get(old.ipv6) is old:
            del self.by_ipv6[old.ipv6]
        self.by_ia[key] = binding
        self.by_ipv6[binding.ipv6] = binding

    def __len__(self) -> int:
        return len(self.by_mac)
