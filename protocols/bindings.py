"""VM bindings: which MAC owns which address, and the pools that hand out new ones.

A binding is keyed by the MAC address that sends the request on an attached interface (the
VM's MAC, which a live migration keeps). Static bindings come from the config or from
Kubernetes and need no allocation; pool bindings are allocated once per MAC, persisted by the
engine before the first reply that names them, and then behave like static ones forever.

Pure: no I/O, no clock reads. The engine loads persisted leases with `restore`, and confirms
an allocation with `confirm` once the store has committed it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["Binding", "BindingTable", "Lease", "Pool"]


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
class Pool:
    """A range of addresses inside `subnet` handed out in order, one per MAC."""

    subnet: ipaddress.IPv4Network
    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address
    _next: int = field(default=0, init=False)

    def contains(self, ip: bytes) -> bool:
        v = int.from_bytes(ip, "big")
        return int(self.start) <= v <= int(self.end)

    def size(self) -> int:
        return int(self.end) - int(self.start) + 1


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class BindingTable:
    """Static bindings plus pool allocations, looked up by MAC or by IPv4 address."""

    __slots__ = ("by_mac", "by_ipv4", "pools")

    def __init__(self, bindings: list[Binding] | None = None, pools: list[Pool] | None = None):
        self.by_mac: dict[bytes, Binding] = {}
        self.by_ipv4: dict[bytes, Binding] = {}
        self.pools: list[Pool] = list(pools or [])
        for b in bindings or []:
            self.add(b)

    def add(self, binding: Binding) -> None:
        old = self.by_mac.get(binding.mac)
        if old is not None and old.ipv4 is not None and self.by_ipv4.get(old.ipv4) is old:
            del self.by_ipv4[old.ipv4]
        self.by_mac[binding.mac] = binding
        if binding.ipv4 is not None:
            self.by_ipv4[binding.ipv4] = binding

    def remove(self, mac: bytes) -> None:
        old = self.by_mac.pop(mac, None)
        if old is not None and old.ipv4 is not None and self.by_ipv4.get(old.ipv4) is old:
            del self.by_ipv4[old.ipv4]

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
        reply so the engine commits it first, then calls `confirm`. `pools` narrows the
        choice (a relay's subnet); by default every pool is tried in order.
        """
        for pool in self.pools if pools is None else pools:
            n = pool.size()
            base = int(pool.start)
            for i in range(n):
                off = (pool._next + i) % n
                ip = (base + off).to_bytes(4, "big")
                if ip in self.by_ipv4:
                    continue
                pool._next = (off + 1) % n
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
        return b

    def confirm(self, lease: Lease) -> None:
        b = self.by_mac.get(lease.mac)
        if b is not None and b.ipv4 == lease.ipv4:
            b.durable = True
        else:
            self.restore(lease)

    def __len__(self) -> int:
        return len(self.by_mac)
