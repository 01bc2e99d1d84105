"""The default lease store: one SQLite file, shareable by several lmdp processes on a host.

Durability: the engine ACKs a pool allocation only after `commit` returns, so a commit must
survive power loss. The file is in WAL mode with `synchronous=FULL`: each commit appends to
the WAL and fsyncs it once. With group commit that is one fsync per batch, never one per
lease, so FULL costs little; `synchronous=NORMAL` would skip that fsync and could forget the
last ACKed allocations on power loss (the database stays consistent either way), after which
a rebooted VM might be offered a different address. Pass synchronous="NORMAL" to trade that
for speed.

Sharing: WAL lets readers run beside one writer; writers take the write lock up front with
`BEGIN IMMEDIATE` and wait up to `busy_timeout` for it. (A deferred transaction that reads and
then writes cannot wait for the lock in WAL mode: it fails at once with SQLITE_BUSY.) The
UNIQUE constraint on ipv4 decides races between processes: the first commit wins.

One connection, used under a lock, so the engine's worker thread and anything else (the CLI,
tests) never interleave statements.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

from protocols.bindings import Lease, Lease6, mac_str

from . import StoreError

__all__ = ["SqliteLeaseStore"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: leases6 (version 1 files gain the table on open)
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leases (
        mac TEXT PRIMARY KEY,            -- 0a:58:0a:f4:03:0a
        ipv4 TEXT NOT NULL UNIQUE,       -- 10.244.3.10
        prefixlen INTEGER NOT NULL,
        node TEXT NOT NULL,              -- the node that allocated it
        created REAL NOT NULL,           -- Unix time
        updated REAL NOT NULL            -- last commit that named it
    )""",
    """CREATE TABLE IF NOT EXISTS leases6 (
        duid TEXT NOT NULL,              -- hex, from the DHCPv6 Client-ID
        iaid INTEGER NOT NULL,
        ipv6 TEXT NOT NULL UNIQUE,       -- fd00:10:250::100
        prefixlen INTEGER NOT NULL,
        mac TEXT,                        -- the Ethernet source that asked (for operators)
        node TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (duid, iaid)
    )""",
    """CREATE TABLE IF NOT EXISTS vm_nodes (
        mac TEXT PRIMARY KEY,
        node TEXT NOT NULL,              -- where the VM was last seen
        seen REAL NOT NULL
    )""",
)
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def _mac_text(mac: bytes | str) -> str:
    if isinstance(mac, bytes | bytearray):
        if len(mac) != 6:
            raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
        return mac_str(mac)
    text = mac.lower().replace("-", ":")
    if not _MAC_RE.fullmatch(text):
        raise ValueError(f"invalid MAC address {mac!r}")
    return text


def _ip_key(row: dict[str, Any]) -> int:
    return int(ipaddress.IPv4Address(row["ipv4"].split("/")[0]))


class SqliteLeaseStore:
    """Leases and VM nodes in one SQLite file. Synchronous: call from a worker thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous.upper()
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # --- lifecycle ---

    def open(self) -> None:
        """Create the parent directory, the file and the schema as needed."""
        with self._lock:
            if self._conn is not None:
                return
            conn = None
            try:
                if self.path != ":memory:":
                    parent = os.path.dirname(os.path.abspath(self.path))
                    os.makedirs(parent, exist_ok=True)
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                    check_same_thread=False,  # guarded by self._lock instead
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal" and self.path != ":memory:":
                    raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                self._create_schema(conn)
            except (sqlite3.Error, OSError) as e:
                if conn is not None:
                    conn.close()
                raise StoreError(f"{self.path}: {e}") from e
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            self._conn = conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this lmdp "
                    f"({SCHEMA_VERSION})"
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close the connection; safe to call twice or without open()."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteLeaseStore:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: store is not open")
        return self._conn

    def _query(self, sql: str, params: tuple = (), one: bool = False) -> Any:
        """One read statement under the lock; SQLite errors become StoreError."""
        with self._lock:
            try:
                cur = self._connection().execute(sql, params)
                return cur.fetchone() if one else cur.fetchall()
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {e}") from e

    @contextlib.contextmanager
    def _write(self, what: str = "") -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock (BEGIN IMMEDIATE .. COMMIT, ROLLBACK on any
        error); SQLite errors become StoreError, prefixed with `what`."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise StoreError(f"{self.path}: {what}{e}") from e

    # --- leases ---

    def load(self) -> list[Lease | Lease6]:
        """Every persisted lease, IPv4 and IPv6 (unparsable rows are logged and skipped)."""
        rows = self._query("SELECT mac, ipv4, prefixlen, node FROM leases")
        leases = []
        for mac, ipv4, prefixlen, node in rows:
            try:
                lease = Lease(
                    mac=bytes.fromhex(_mac_text(mac).replace(":", "")),
                    ipv4=ipaddress.IPv4Address(ipv4).packed,
                    prefixlen=int(prefixlen),
                    node=node,
                )
            except (ValueError, TypeError, AttributeError):
                log.warning("%s: skipping unreadable lease row %r", self.path, (mac, ipv4))
                continue
            leases.append(lease)
        return leases + self._load6()

    def _load6(self) -> list[Lease6]:
        rows = self._query("SELECT duid, iaid, ipv6, prefixlen, mac, node FROM leases6")
        leases: list[Lease6] = []
        for duid, iaid, ipv6, prefixlen, mac, node in rows:
            try:
                leases.append(
                    Lease6(
                        duid=bytes.fromhex(duid),
                        iaid=int(iaid),
                        ipv6=ipaddress.IPv6Address(ipv6).packed,
                        prefixlen=int(prefixlen),
                        node=node,
                        mac=bytes.fromhex(_mac_text(mac).replace(":", "")) if mac else None,
                    )
                )
            except (ValueError, TypeError, AttributeError):
                log.warning("%s: skipping unreadable lease6 row %r", self.path, (duid, ipv6))
        return leases

    def commit(self, leases: list[Lease | Lease6], now: float) -> list[Lease | Lease6 | None]:
        """Persist a batch in ONE transaction (one fsync); the result is aligned with `leases`.

        Element i is the authoritative lease for leases[i].mac:
        - the lease already stored for that MAC, whatever address was asked for (a MAC keeps
          its first address forever; the caller compares `ipv4`), its `updated` refreshed;
        - otherwise leases[i] as now stored (a new Lease object);
        - None when leases[i].ipv4 is already held by another MAC (the caller lost a race
          with another process or node and must not hand that address out).
        A MAC or address repeated within the batch behaves as if committed in order.
        A `Lease6` is the same, keyed by (DUID, IAID) instead of the MAC.
        """
        if not leases:
            return []
        rows = []
        for lease in leases:
            if isinstance(lease, Lease6):
                if len(lease.ipv6) != 16 or not 0 <= lease.prefixlen <= 128 or not lease.duid:
                    raise ValueError(f"bad lease {lease!r}")
                rows.append((lease.duid.hex(), str(ipaddress.IPv6Address(lease.ipv6))))
                continue
            if len(lease.ipv4) != 4 or not 0 <= lease.prefixlen <= 32:
                raise ValueError(f"bad lease {lease!r}")
            rows.append((_mac_text(lease.mac), str(ipaddress.IPv4Address(lease.ipv4))))
        with self._write("commit failed: ") as conn:
            return [
                self._commit_one6(conn, lease, key, addr, now)
                if isinstance(lease, Lease6)
                else self._commit_one(conn, lease, key, addr, now)
                for lease, (key, addr) in zip(leases, rows, strict=True)
            ]

    @staticmethod
    def _commit_one(
        conn: sqlite3.Connection, lease: Lease, mac: str, ipv4: str, now: float
    ) -> Lease | None:
        row = conn.execute(
            "SELECT ipv4, prefixlen, node FROM leases WHERE mac = ?", (mac,)
        ).fetchone()
        if row is not None:
            conn.execute("UPDATE leases SET updated = ? WHERE mac = ?", (now, mac))
            stored_ip, prefixlen, node = row
            return Lease(lease.mac, ipaddress.IPv4Address(stored_ip).packed, prefixlen, node)
        cur = conn.execute(
            "INSERT INTO leases (mac, ipv4, prefixlen, node, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (ipv4) DO NOTHING",
            (mac, ipv4, lease.prefixlen, lease.node, now, now),
        )
        if cur.rowcount == 0:
            return None  # the address belongs to another MAC
        return Lease(lease.mac, lease.ipv4, lease.prefixlen, lease.node)

    @staticmethod
    def _commit_one6(
        conn: sqlite3.Connection, lease: Lease6, duid: str, ipv6: str, now: float
    ) -> Lease6 | None:
        row = conn.execute(
            "SELECT ipv6, prefixlen, node FROM leases6 WHERE duid = ? AND iaid = ?",
            (duid, lease.iaid),
        ).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE leases6 SET updated = ? WHERE duid = ? AND iaid = ?",
                (now, duid, lease.iaid),
            )
            stored, prefixlen, node = row
            return Lease6(
                lease.duid, lease.iaid, ipaddress.IPv6Address(stored).packed, prefixlen, node,
                lease.mac,
            )  # fmt: skip
        mac = _mac_text(lease.mac) if lease.mac else None
        cur = conn.execute(
            "INSERT INTO leases6 (duid, iaid, ipv6, prefixlen, mac, node, created, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ipv6) DO NOTHING",
            (duid, lease.iaid, ipv6, lease.prefixlen, mac, lease.node, now, now),
        )
        if cur.rowcount == 0:
            return None  # the address belongs to another client
        return Lease6(lease.duid, lease.iaid, lease.ipv6, lease.prefixlen, lease.node, lease.mac)

    def all_leases(self) -> list[dict[str, Any]]:
        """Rows for display, by address: mac, ipv4 ("a.b.c.d/len"), node, created, updated."""
        rows = self._query("SELECT mac, ipv4, prefixlen, node, created, updated FROM leases")
        out = [
            {
                "mac": mac,
                "ipv4": f"{ipv4}/{prefixlen}",
                "node": node,
                "created": created,
                "updated": updated,
            }
            for mac, ipv4, prefixlen, node, created, updated in rows
        ]
        try:
            out.sort(key=_ip_key)
        except ValueError:
            out.sort(key=lambda r: r["ipv4"])  # a hand-edited row; still show everything
        rows6 = self._query(
            "SELECT duid, iaid, ipv6, prefixlen, mac, node, created, updated"
            " FROM leases6 ORDER BY ipv6"
        )
        out += [
            {
                "mac": mac,
                "ipv6": f"{ipv6}/{prefixlen}",
                "duid": duid,
                "iaid": iaid,
                "node": node,
                "created": created,
                "updated": updated,
            }
            for duid, iaid, ipv6, prefixlen, mac, node, created, updated in rows6
        ]
        return out

    # --- where each VM was last seen (for migration) ---

    def set_node(self, mac: bytes | str, node: str, now: float) -> str | None:
        """Record that the VM was seen on `node` at `now`; returns the node recorded before."""
        key = _mac_text(mac)
        with self._write() as conn:
            row = conn.execute("SELECT node FROM vm_nodes WHERE mac = ?", (key,)).fetchone()
            conn.execute(
                "INSERT INTO vm_nodes (mac, node, seen) VALUES (?, ?, ?)"
                " ON CONFLICT (mac) DO UPDATE SET node = excluded.node, seen = excluded.seen",
                (key, node, now),
            )
        return row[0] if row is not None else None

    def first_sightings(
        self, macs: list[bytes | str], node: str, now: float
    ) -> list[tuple[str, float] | None]:
        """For each VM, the (node, seen) recorded before, or None: then, never recorded
        anywhere, it is recorded on `node` at `now`. One transaction for the whole batch
        (a burst of VMs booting costs one fsync, not one per VM)."""
        keys = [_mac_text(m) for m in macs]
        out: list[tuple[str, float] | None] = []
        with self._write() as conn:
            for key in keys:
                sql = "SELECT node, seen FROM vm_nodes WHERE mac = ?"
                row = conn.execute(sql, (key,)).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO vm_nodes (mac, node, seen) VALUES (?, ?, ?)", (key, node, now)
                    )
                out.append((row[0], row[1]) if row is not None else None)
        return out

    def get_node(self, mac: bytes | str) -> str | None:
        """The node where the VM was last seen, or None if never recorded."""
        found = self.get_node_seen(mac)
        return found[0] if found is not None else None

    def get_node_seen(self, mac: bytes | str) -> tuple[str, float] | None:
        """(node, when that node recorded it), or None if never recorded."""
        key = _mac_text(mac)
        row = self._query("SELECT node, seen FROM vm_nodes WHERE mac = ?", (key,), one=True)
        return (row[0], row[1]) if row is not None else None
