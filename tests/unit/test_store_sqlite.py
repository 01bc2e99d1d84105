"""Lease store contract, run against the SQLite backend.

The contract tests take a `make_store(path)` fixture so that other backends (etcd) can be
added to the `params` list and run the same suite.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from dataplane.stores import StoreError
from dataplane.stores.sqlite import SqliteLeaseStore
from protocols.bindings import Lease, Lease6

NOW = 1_700_000_000.0


def mac(n: int) -> bytes:
    return bytes([0x0A, 0x58, 0, 0, n >> 8 & 0xFF, n & 0xFF])


def ip(n: int) -> bytes:
    return bytes([10, 244, n >> 8 & 0xFF, n & 0xFF])


def lease(m: int, a: int, node: str = "node-a") -> Lease:
    return Lease(mac=mac(m), ipv4=ip(a), prefixlen=16, node=node)


@pytest.fixture(params=["sqlite"])
def make_store(request, tmp_path):
    opened = []

    def make(name: str = "leases.db"):
        store = SqliteLeaseStore(tmp_path / "state" / name)  # parent does not exist yet
        store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


# --- contract ---------------------------------------------------------------------------------


def test_empty_store(make_store):
    store = make_store()
    assert store.load() == []
    assert store.all_leases() == []
    assert store.commit([], NOW) == []


def test_commit_returns_stored_leases(make_store):
    store = make_store()
    batch = [lease(1, 10), lease(2, 11)]
    assert store.commit(batch, NOW) == batch


def test_restart_keeps_leases(make_store):
    store = make_store()
    store.commit([lease(1, 10), lease(2, 11, node="node-b")], NOW)
    store.close()
    again = make_store()
    loaded = sorted(again.load(), key=lambda x: x.mac)
    assert loaded == [lease(1, 10), lease(2, 11, node="node-b")]


def test_same_mac_keeps_first_address(make_store):
    store = make_store()
    store.commit([lease(1, 10)], NOW)
    [stored] = store.commit([lease(1, 99)], NOW + 60)
    assert stored == lease(1, 10)
    assert store.load() == [lease(1, 10)]
    # The address asked for the second time stays free for others.
    assert store.commit([lease(2, 99)], NOW + 61) == [lease(2, 99)]


def test_address_taken_by_another_mac_is_none(make_store):
    store = make_store()
    store.commit([lease(1, 10)], NOW)
    assert store.commit([lease(2, 10), lease(3, 12)], NOW + 1) == [None, lease(3, 12)]
    assert sorted(x.mac for x in store.load()) == [mac(1), mac(3)]


def test_conflicts_within_one_batch_resolve_in_order(make_store):
    store = make_store()
    result = store.commit([lease(1, 10), lease(2, 10), lease(1, 11)], NOW)
    assert result == [lease(1, 10), None, lease(1, 10)]


def test_all_leases_rows(make_store):
    store = make_store()
    store.commit([lease(2, 10)], NOW)
    store.commit([lease(1, 9)], NOW + 5)
    store.commit([lease(1, 9)], NOW + 7)  # touches `updated`, keeps `created`
    rows = store.all_leases()
    assert rows == [
        {
            "mac": "0a:58:00:00:00:01",
            "ipv4": "10.244.0.9/16",
            "node": "node-a",
            "created": NOW + 5,
            "updated": NOW + 7,
        },
        {
            "mac": "0a:58:00:00:00:02",
            "ipv4": "10.244.0.10/16",  # numeric order, not text order
            "node": "node-a",
            "created": NOW,
            "updated": NOW,
        },
    ]


def test_group_commit_is_one_transaction(make_store):
    store = make_store()
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)  # white box: count transactions
    batch = [lease(i, i) for i in range(1000)]
    t0 = time.perf_counter()
    result = store.commit(batch, NOW)
    elapsed = time.perf_counter() - t0
    store._conn.set_trace_callback(None)
    assert result == batch
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert elapsed < 2.0, f"1000-lease group commit took {elapsed:.3f}s"
    assert len(store.load()) == 1000


def test_failed_batch_leaves_nothing(make_store):
    store = make_store()
    with pytest.raises(ValueError):
        store.commit([lease(1, 10), Lease(mac=mac(2), ipv4=b"\x0a", prefixlen=16)], NOW)
    assert store.load() == []
    assert store.commit([lease(1, 10)], NOW) == [lease(1, 10)]


def test_two_instances_share_one_file(make_store):
    a = make_store()
    b = make_store()
    a.commit([lease(1, 10, node="node-a")], NOW)
    assert b.load() == [lease(1, 10, node="node-a")]
    # b loses the race for a's address, and cannot move a's MAC.
    assert b.commit([lease(2, 10, node="node-b"), lease(1, 11, node="node-b")], NOW) == [
        None,
        lease(1, 10, node="node-a"),
    ]
    b.set_node(mac(1), "node-b", NOW + 1)
    assert a.get_node(mac(1)) == "node-b"


def test_concurrent_writers_do_not_fail(make_store):
    # Two connections committing at once: one waits for the other's write lock.
    a = make_store()
    b = make_store()
    errors: list[BaseException] = []

    def run(store, base):
        try:
            for i in range(20):
                store.commit([lease(base + i, base + i)], NOW)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s, n)) for s, n in ((a, 0), (b, 100))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(a.load()) == 40


def test_set_node_get_node(make_store):
    store = make_store()
    assert store.get_node(mac(1)) is None
    assert store.set_node(mac(1), "node-a", NOW) is None
    assert store.get_node(mac(1)) == "node-a"
    assert store.get_node("0A:58:00:00:00:01") == "node-a"  # text MACs work too
    assert store.set_node(mac(1), "node-b", NOW + 10) == "node-a"
    store.close()
    assert make_store().get_node(mac(1)) == "node-b"


def test_first_sightings_record_only_the_new(make_store):
    store = make_store()
    store.set_node(mac(2), "node-b", NOW)
    assert store.first_sightings([mac(1), mac(2), mac(3)], "node-a", NOW + 5) == [
        None,
        ("node-b", NOW),
        None,
    ]
    assert [store.get_node(mac(i)) for i in (1, 2, 3)] == ["node-a", "node-b", "node-a"]
    # Asked again: now recorded, with the time of that first sighting.
    assert store.first_sightings([mac(1)], "node-c", NOW + 9) == [("node-a", NOW + 5)]


def test_not_open_is_store_error(tmp_path):
    store = SqliteLeaseStore(tmp_path / "x.db")
    with pytest.raises(StoreError):
        store.load()
    store.close()  # harmless


# --- SQLite specifics -------------------------------------------------------------------------


def test_file_is_wal_and_synchronous_full(tmp_path):
    path = tmp_path / "deep" / "er" / "leases.db"
    with SqliteLeaseStore(path) as store:
        assert path.exists()
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_schema(tmp_path):
    path = tmp_path / "leases.db"
    with SqliteLeaseStore(path) as store:
        store.commit([lease(1, 10)], NOW)
    conn = sqlite3.connect(path)
    cols = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(leases)")}
    assert cols == {
        "mac": "TEXT",
        "ipv4": "TEXT",
        "prefixlen": "INTEGER",
        "node": "TEXT",
        "created": "REAL",
        "updated": "REAL",
    }
    assert conn.execute("SELECT mac, ipv4 FROM leases").fetchall() == [
        ("0a:58:00:00:00:01", "10.244.0.10")
    ]
    cols = {r[1] for r in conn.execute("PRAGMA table_info(vm_nodes)")}
    assert cols == {"mac", "node", "seen"}
    conn.close()


def test_unopenable_path_is_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError):
        SqliteLeaseStore(blocker / "leases.db").open()  # parent is a regular file


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "leases.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteLeaseStore(path).open()


def test_locked_too_long_is_store_error(tmp_path):
    path = tmp_path / "leases.db"
    store = SqliteLeaseStore(path, busy_timeout=0.05)
    store.open()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        t0 = time.perf_counter()
        with pytest.raises(StoreError, match="commit failed"):
            store.commit([lease(1, 10)], NOW)
        assert time.perf_counter() - t0 >= 0.04  # it waited for busy_timeout first
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.commit([lease(1, 10)], NOW) == [lease(1, 10)]  # fine once released
    store.close()


# --- DHCPv6 leases, keyed by (DUID, IAID) ----------------------------------------------------


def ip6(n: int) -> bytes:
    return bytes.fromhex("fd00001002500000000000000000") + n.to_bytes(2, "big")


def lease6(duid: int, iaid: int, a: int, node: str = "node-a") -> Lease6:
    return Lease6(b"\x00\x03\x00\x01" + mac(duid), iaid, ip6(a), 64, node, mac(duid))


def test_lease6_commit_load_and_keep_first_address(make_store):
    store = make_store()
    assert store.commit([lease6(1, 1, 0x100), lease6(1, 2, 0x101)], NOW) == [
        lease6(1, 1, 0x100),
        lease6(1, 2, 0x101),  # another IAID of the same client is another lease
    ]
    # The same DUID and IAID asking again keeps its first address.
    again = store.commit([lease6(1, 1, 0x1FF)], NOW + 1)
    assert again == [lease6(1, 1, 0x100)]
    # An address held by another client is refused.
    assert store.commit([lease6(2, 1, 0x100)], NOW) == [None]
    reopened = make_store()  # the same file: what a restarted lmdp reads
    loaded = [item for item in reopened.load() if isinstance(item, Lease6)]
    assert sorted(loaded, key=lambda x: x.ipv6) == [lease6(1, 1, 0x100), lease6(1, 2, 0x101)]
    rows = reopened.all_leases()
    assert [r["ipv6"] for r in rows] == ["fd00:10:250::100/64", "fd00:10:250::101/64"]
    assert rows[0]["mac"] == "0a:58:00:00:00:01" and rows[0]["iaid"] == 1


def test_mixed_batch_is_one_transaction(make_store):
    store = make_store()
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    out = store.commit([lease(1, 10), lease6(1, 1, 0x100), lease(2, 11)], NOW)
    assert [type(x).__name__ for x in out] == ["Lease", "Lease6", "Lease"]
    assert sum(s.startswith("COMMIT") for s in statements) == 1
