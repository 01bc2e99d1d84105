"""Arrival detection rules and the announce rounds, without sockets or real time."""

from __future__ import annotations

import asyncio
import time

import pytest

from dataplane.config import parse_config
from dataplane.engine import Engine, Port
from tests.helpers import GW_MAC, SEED_IP, SEED_MAC, SEED_MAC_STR, arp_frame
from tests.unit.test_engine import FakeSocket


def make_engine(tmp_path, node: str, rounds=(0, 50, 200, 450, 800)) -> Engine:
    config = parse_config(
        {
            "node": node,
            "interfaces": ["tap*"],
            "bindings": [{"name": "fedora", "mac": SEED_MAC_STR, "ipv4": "10.244.2.26/24"}],
            "store": {"backend": "sqlite", "path": str(tmp_path / "leases.db")},
            "announce": {"rounds_ms": list(rounds), "via": "uplink0"},
        }
    )
    e = Engine(config)
    e.open_store()
    e.ports["tap0"] = Port("tap0", FakeSocket())
    return e


@pytest.fixture
def nodes(tmp_path):
    a, b = make_engine(tmp_path, "node-a"), make_engine(tmp_path, "node-b")
    yield a, b
    a.close()
    b.close()


async def drain_checks(engine: Engine) -> None:
    """What `Migration.checker` does with what is queued now, as one batch."""
    m = engine.migration
    batch = []
    while not m._checks.empty():
        batch.append(m._checks.get_nowait())
    if batch:
        await m._check_batch(batch)
    for mac, _, _ in batch:
        m._queued.discard(mac)


def recheck_due(engine: Engine) -> None:
    """As if RECHECK seconds had passed since the last store look-up for the seed VM."""
    engine.migration.here[SEED_MAC].checked -= 3600


def sample(engine, name, **labels):
    return engine.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_first_sighting_records_node_without_announcing(nodes):
    a, _ = nodes
    a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    assert a.store.get_node(SEED_MAC) == "node-a"
    assert len(a.migration.schedule) == 0


async def test_same_node_no_announce_and_no_store_lookup_per_frame(nodes):
    a, _ = nodes
    for _ in range(3):
        a.process(a.ports["tap0"], arp_frame(), time.time())
        await drain_checks(a)
    calls = []
    a.store.first_sightings = lambda *args: calls.append(args)  # must not be asked again
    for _ in range(100):
        a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    assert calls == [] and len(a.migration.schedule) == 0


async def test_frame_on_another_node_is_one_arrival(nodes):
    a, b = nodes
    a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    # The VM moved: node B hears it (e.g. QEMU's RARP, or its first ARP).
    for _ in range(20):
        b.process(b.ports["tap0"], arp_frame(), time.time())
    await drain_checks(b)
    for _ in range(20):
        b.process(b.ports["tap0"], arp_frame(), time.time())
    await drain_checks(b)
    assert b.store.get_node(SEED_MAC) == "node-b"
    assert sample(b, "lmdp_vm_arrivals_total", trigger="frame") == 1  # once per arrival
    assert b.migration.schedule.active(SEED_MAC)


async def test_rarp_from_a_bound_vm_is_an_arrival(nodes):
    a, b = nodes
    a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    rarp = arp_frame(op=3, ethertype=0x8035, spa="0.0.0.0", tpa="0.0.0.0", tha=SEED_MAC_STR)
    b.process(b.ports["tap0"], rarp, time.time())
    await drain_checks(b)
    assert sample(b, "lmdp_vm_arrivals_total", trigger="frame") == 1
    assert b.ports["tap0"].psock.sent == []  # RARP itself is never answered


async def test_return_to_a_previous_node_announces_again(nodes):
    a, b = nodes
    a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    a.detach("tap0")  # the VM's port left node A
    b.process(b.ports["tap0"], arp_frame(), time.time())
    await drain_checks(b)
    a.ports["tap0"] = Port("tap0", FakeSocket())  # and came back
    a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    assert sample(a, "lmdp_vm_arrivals_total", trigger="frame") == 1
    assert a.store.get_node(SEED_MAC) == "node-a"


async def test_vm_on_two_nodes_at_once_warns_and_does_not_fight(nodes, caplog):
    a, b = nodes
    a.process(a.ports["tap0"], arp_frame(), time.time())
    await drain_checks(a)
    b.process(b.ports["tap0"], arp_frame(), time.time())
    await drain_checks(b)
    # Both keep hearing the MAC (two VMs share it); each looks the store up again in turn.
    for _ in range(3):
        for node in (a, b):
            node.process(node.ports["tap0"], arp_frame(), time.time())
            recheck_due(node)
            node.process(node.ports["tap0"], arp_frame(), time.time())
            await drain_checks(node)
    assert sample(a, "lmdp_vm_arrivals_total", trigger="frame") == 0
    assert sample(b, "lmdp_vm_arrivals_total", trigger="frame") == 1
    assert sample(a, "lmdp_vm_conflicts_total") >= 1
    assert "duplicate MAC" in caplog.text
    assert b.store.get_node(SEED_MAC) == "node-b"


async def test_explicit_announce(nodes):
    _, b = nodes
    status, body = await b.migration.announce(SEED_MAC_STR, None)
    assert status == 200 and body["rounds"] == 5 and body["node"] == "node-b"
    assert sample(b, "lmdp_vm_arrivals_total", trigger="announce") == 1
    assert b.store.get_node(SEED_MAC) == "node-b"
    assert (await b.migration.announce("0a:58:00:00:00:99", None))[0] == 404
    assert (await b.migration.announce("zz", None))[0] == 400
    assert (await b.migration.announce(SEED_MAC_STR, "tap9"))[0] == 404


async def test_rounds_send_gateway_toward_vm_and_vm_toward_network(nodes, monkeypatch):
    _, b = nodes
    via = []
    monkeypatch.setattr(b.migration, "_send_via", lambda ifname, f: via.append((ifname, f)) or 1)
    await b.migration.announce(SEED_MAC_STR, "tap0")
    b.migration.send_round(SEED_MAC)
    to_vm = b.ports["tap0"].psock.sent
    # Toward the VM: the gateway's address with the gateway MAC.
    assert to_vm and all(f[6:12] == GW_MAC and f[28:32] == bytes((169, 254, 1, 1)) for f in to_vm
                         if f[12:14] == b"\x08\x06")  # fmt: skip
    # Toward the network, via the configured uplink: the VM's own address from its MAC.
    assert {name for name, _ in via} == {"uplink0"}
    garps = [f for _, f in via if f[12:14] == b"\x08\x06"]
    assert garps and all(f[6:12] == SEED_MAC and f[28:32] == SEED_IP for f in garps)


async def test_announcements_off(tmp_path):
    e = make_engine(tmp_path, "node-c", rounds=())
    try:
        status, body = await e.migration.announce(SEED_MAC_STR, None)
        assert status == 200 and body["rounds"] == 0
        assert e.store.get_node(SEED_MAC) == "node-c"  # still this VM's node
        assert len(e.migration.schedule) == 0
    finally:
        e.close()


async def test_a_burst_of_vms_is_checked_in_one_store_transaction(tmp_path):
    """20 VMs heard at once: the checker asks the store once for all of them, records the new
    ones here, and the one the store puts on another node is an arrival."""
    macs = [f"0a:58:0a:f4:02:{i:02x}" for i in range(10, 30)]
    config = parse_config(
        {
            "node": "node-a",
            "interfaces": ["tap*"],
            "bindings": [
                {"name": f"vm{i}", "mac": mac, "ipv4": f"10.244.2.{10 + i}/24"}
                for i, mac in enumerate(macs)
            ],
            "store": {"backend": "sqlite", "path": str(tmp_path / "leases.db")},
        }
    )
    e = Engine(config)
    e.open_store()
    e.ports["tap0"] = Port("tap0", FakeSocket())
    e.store.set_node(macs[3], "node-b", time.time() - 10)
    calls = []
    first_sightings = e.store.first_sightings
    e.store.first_sightings = lambda *args: calls.append(len(args[0])) or first_sightings(*args)
    checker = asyncio.create_task(e.migration.checker())
    try:
        for i, mac in enumerate(macs):
            e.process(
                e.ports["tap0"], arp_frame(eth_src=mac, spa=f"10.244.2.{10 + i}"), time.time()
            )
        for _ in range(200):
            await asyncio.sleep(0.01)
            if not e.migration.checks_pending():
                break
        assert calls == [20]
        assert all(e.store.get_node(mac) == "node-a" for mac in macs)
        assert sample(e, "lmdp_vm_arrivals_total", trigger="frame") == 1
    finally:
        checker.cancel()
        e.close()
