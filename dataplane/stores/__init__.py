"""Lease stores: where pool allocations and each VM's last node are kept.

Every backend implements `LeaseStore` and passes the same contract tests. The calls are
synchronous and may block (disk, network): the engine runs them in one worker thread, never on
the event loop. Failures surface as `StoreError` (the engine then stops making new pool
allocations and keeps answering known bindings from memory).
"""

from __future__ import annotations

from typing import Protocol

from protocols.bindings import Lease

__all__ = ["LeaseStore", "StoreError"]


class StoreError(Exception):
    """The store could not do what was asked (I/O error, locked too long, corrupt file)."""


class LeaseStore(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...

    def load(self) -> list[Lease]:
        """Every persisted lease."""
        ...

    def commit(self, leases: list[Lease], now: float) -> list[Lease | None]:
        """Persist a batch in one transaction; the result is aligned with `leases`.

        Element i is the authoritative lease for leases[i].mac: the one stored before (a MAC
        keeps its first address forever; compare `ipv4` with what was asked), or leases[i]
        itself once stored; None when leases[i].ipv4 is already held by another MAC.
        """
        ...

    def all_leases(self) -> list[dict]:
        """Rows for display: mac, ipv4 ("a.b.c.d/len"), node, created, updated."""
        ...

    def set_node(self, mac: bytes | str, node: str, now: float) -> str | None:
        """Record `node` as where the VM was last seen; returns the previous node."""
        ...

    def first_sightings(
        self, macs: list[bytes | str], node: str, now: float
    ) -> list[tuple[str, float] | None]:
        """Per VM, the (node, seen) recorded before; None: recorded now as `node` at `now`."""
        ...

    def get_node(self, mac: bytes | str) -> str | None: ...
