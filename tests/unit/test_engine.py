"""The engine without sockets: dispatch, counting, and group commit before the reply."""

from __future__ import annotations

import pytest

from dataplane.config import parse_config
from dataplane.engine import Engine, Port
from protocols.bindings import Lease
from tests.helpers import (
    GW_MAC,
    SEED_MAC,
    SEED_MAC_STR,
    arp_frame,
    dhcp6_request,
    dhcp_request,
    ns_frame,
)

POOL_MAC_STR = "0a:58:0a:f4:09:01"
POOL_MAC = bytes.fromhex(POOL_MAC_STR.replace(":", ""))


class FakeSocket:
    def __init__(self):
        self.sent: list[bytes] = []
        self.fd = -1

    def send(self, frame: bytes) -> bool:
        self.sent.append(frame)
        return True

    def close(self) -> None:
        pass


@pytest.fixture
def engine(tmp_path):
    config = parse_config(
        {
            "node": "node-a",
            "interfaces": ["tap*"],
            "bindings": [{"name": "fedora", "mac": SEED_MAC_STR, "ipv4": "10.244.2.26/24"}],
            "pools": [
                {"subnet": "10.244.9.0/24", "start": "10.244.9.10", "end": "10.244.9.20"},
                {
                    "subnet": "fd00:10:250::/64",
                    "start": "fd00:10:250::10",
                    "end": "fd00:10:250::20",
                },
            ],  # fmt: skip
            "store": {"backend": "sqlite", "path": str(tmp_path / "leases.db")},
        }
    )
    e = Engine(config)
    e.open_store()
    yield e
    e.close()


@pytest.fixture
def port(engine):
    p = Port("tap0", FakeSocket())
    engine.ports["tap0"] = p
    return p


def sample(engine, name, **labels):
    value = engine.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_static_binding_answered_at_once(engine, port):
    engine.process(port, dhcp_request("discover"), 0.0)
    engine.process(port, arp_frame(), 0.0)
    assert len(port.psock.sent) == 2
    assert sample(engine, "lmdp_replies_sent_total", interface="tap0", type="DHCPOFFER") == 1
    assert sample(engine, "lmdp_replies_sent_total", interface="tap0", type="arp_reply") == 1
    assert (
        sample(
            engine,
            "lmdp_frames_received_total",
            interface="tap0",
            protocol="dhcpv4",
            type="DHCPDISCOVER",
        )
        == 1
    )


def test_drops_are_counted_by_reason(engine, port):
    engine.process(port, b"\x00" * 10, 0.0)  # shorter than Ethernet
    engine.process(port, dhcp_request("discover")[:30], 0.0)
    assert port.psock.sent == []
    assert sample(engine, "lmdp_drops_total", interface="tap0", reason="bad_ethertype") == 1
    assert sample(engine, "lmdp_drops_total", interface="tap0", reason="truncated") == 1


def pool_request(mac: str = POOL_MAC_STR, ip: str = "10.244.9.10") -> bytes:
    return dhcp_request("request", eth_src=mac, options=[("requested_addr", ip)])


def nak_or_ack(frame: bytes) -> str:
    """The DHCP message type of a reply frame (option 53 is the first option lmdp sends)."""
    assert frame[282:284] == bytes((53, 1))
    return {5: "ACK", 6: "NAK"}[frame[284]]


async def test_pool_offer_at_once_ack_only_after_commit(engine, port):
    engine.process(port, dhcp_request("discover", eth_src=POOL_MAC_STR), 0.0)
    assert len(port.psock.sent) == 1  # the OFFER: the address is held in memory
    assert engine._pending == [] and engine.store.load() == []
    engine.process(port, pool_request(), 0.0)
    assert len(port.psock.sent) == 1  # no ACK before the store said yes
    await engine.flush()
    assert len(port.psock.sent) == 2
    assert [(lease.mac, lease.ipv4) for lease in engine.store.load()] == [
        (POOL_MAC, bytes((10, 244, 9, 10)))
    ]
    assert engine.table.lookup(POOL_MAC).durable
    # Now durable: a renewal is ACKed at once, with no second commit.
    engine.process(port, pool_request(), 0.0)
    assert len(port.psock.sent) == 3
    assert sample(engine, "lmdp_store_commits_total") == 1


async def test_burst_is_group_committed(engine, port):
    macs = [f"0a:58:0a:f4:09:{i:02x}" for i in range(1, 11)]
    for i, mac in enumerate(macs):
        engine.process(port, dhcp_request("discover", eth_src=mac), 0.0)
        engine.process(port, pool_request(mac, f"10.244.9.{10 + i}"), 0.0)
    assert len(port.psock.sent) == len(macs)  # the OFFERs
    await engine.flush()
    assert len(port.psock.sent) == 2 * len(macs)
    assert sample(engine, "lmdp_leases_committed_total") == len(macs)
    assert sample(engine, "lmdp_store_commits_total") == 1  # one transaction for the burst


async def test_store_outage_refuses_new_allocations_keeps_known(engine, port, monkeypatch):
    def broken(leases, now):
        raise OSError("disk on fire")

    monkeypatch.setattr(engine.store, "commit", broken)
    engine.process(port, pool_request(), 0.0)
    await engine.flush()
    assert port.psock.sent == []
    assert sample(engine, "lmdp_drops_total", interface="tap0", reason="store_unavailable") == 1
    assert engine.table.lookup(POOL_MAC) is None  # the tentative address is free again
    assert engine.health()[0] is False
    # Known bindings are still answered from memory, never NAKed for a slow store.
    engine.process(port, dhcp_request("discover"), 0.0)
    assert len(port.psock.sent) == 1
    # A new client gets no OFFER while the store is down: its allocation is committed
    # first, and that commit fails too.
    engine.process(port, dhcp_request("discover", eth_src=POOL_MAC_STR), 0.0)
    assert len(port.psock.sent) == 1
    await engine.flush()
    assert len(port.psock.sent) == 1
    assert sample(engine, "lmdp_drops_total", interface="tap0", reason="store_unavailable") == 2
    # The store is back: the next DISCOVER's commit finds it, and the OFFER goes out.
    monkeypatch.undo()
    engine.process(port, dhcp_request("discover", eth_src=POOL_MAC_STR), 0.0)
    await engine.flush()
    assert len(port.psock.sent) == 2 and engine.health()[0] is True
    assert engine.table.lookup(POOL_MAC).durable


async def test_address_taken_by_another_node_is_not_acked(engine, port, monkeypatch):
    monkeypatch.setattr(engine.store, "commit", lambda leases, now: [None] * len(leases))
    engine.process(port, pool_request(), 0.0)
    await engine.flush()
    # A NAK instead of the ACK (RFC 2131 §4.3.2): the client starts over at once.
    assert [nak_or_ack(f) for f in port.psock.sent] == ["NAK"]
    assert sample(engine, "lmdp_replies_sent_total", interface="tap0", type="DHCPNAK") == 1
    assert engine.table.lookup(POOL_MAC) is None


async def test_store_holds_another_address_for_the_mac(engine, port, monkeypatch):
    held = Lease(POOL_MAC, bytes((10, 244, 9, 15)), 24, "node-b")
    monkeypatch.setattr(engine.store, "commit", lambda leases, now: [held])
    engine.process(port, pool_request(), 0.0)
    await engine.flush()
    assert [nak_or_ack(f) for f in port.psock.sent] == ["NAK"]  # not the wrong address
    assert engine.table.lookup(POOL_MAC).ipv4 == held.ipv4  # the next DISCOVER gets this one


def test_internal_error_is_counted_not_raised(engine, port, monkeypatch):
    def boom(frame, ifname, now):
        raise RuntimeError("bug")

    monkeypatch.setitem(engine._handlers, 0x0806, boom)
    engine.process(port, arp_frame(), 0.0)
    assert sample(engine, "lmdp_internal_errors_total") == 1
    engine.process(port, dhcp_request("discover"), 0.0)  # and everyone else is still served
    assert len(port.psock.sent) == 1


def test_leases_view(engine):
    rows = engine.leases()
    assert rows == [
        {
            "name": "fedora",
            "mac": SEED_MAC_STR,
            "ipv4": "10.244.2.26/24",
            "ipv6": None,
            "kind": "static",
            "committed": True,
        }
    ]
    assert engine.table.lookup(SEED_MAC) is not None


def test_ipv6_dispatch_ndp(engine, port):
    engine.process(port, ns_frame(), 0.0)  # who has fe80::1?
    assert len(port.psock.sent) == 1 and port.psock.sent[0][6:12] == GW_MAC
    assert (
        sample(engine, "lmdp_frames_received_total", interface="tap0", protocol="ndp", type="ns")
        == 1
    )


async def test_dhcpv6_pool_reply_sent_only_after_commit(engine, port):
    engine.process(port, dhcp6_request("solicit", eth_src=POOL_MAC_STR), 0.0)
    assert len(port.psock.sent) == 1  # the ADVERTISE, at once
    engine.process(port, dhcp6_request("request", eth_src=POOL_MAC_STR), 0.0)
    assert len(port.psock.sent) == 1
    await engine.flush()
    assert len(port.psock.sent) == 2
    stored = [x for x in engine.store.load() if hasattr(x, "duid")]
    assert [(x.ipv6.hex(), x.mac) for x in stored] == [
        ("fd000010025000000000000000000010", POOL_MAC)
    ]
    assert sample(engine, "lmdp_bindings", kind="pool") == 1
    rows = [r for r in engine.leases() if r["kind"] == "pool"]
    assert rows[0]["ipv6"] == "fd00:10:250::10/64" and rows[0]["committed"] is True


async def test_dhcpv6_reply_to_two_new_ias_waits_for_both(engine, port):
    engine.process(port, dhcp6_request("request", eth_src=POOL_MAC_STR, iaids=(1, 2)), 0.0)
    assert port.psock.sent == []
    await engine.flush()
    assert len(port.psock.sent) == 1
    assert sorted(x.iaid for x in engine.store.load() if hasattr(x, "duid")) == [1, 2]
    assert sample(engine, "lmdp_store_commits_total") == 1
    assert sample(engine, "lmdp_leases_committed_total") == 2


def test_reused_arp_answer_follows_the_binding_table(tmp_path):
    """The engine reuses an ARP outcome for the same frame only while the bindings stand."""
    config = parse_config(
        {
            "node": "node-a",
            "gateway": {"router_mode": "subnet"},
            "pools": [{"subnet": "10.244.9.0/24", "start": "10.244.9.10", "end": "10.244.9.20"}],
            "store": {"backend": "sqlite", "path": str(tmp_path / "leases.db")},
        }
    )
    engine = Engine(config)
    engine.open_store()
    port = Port("tap0", FakeSocket())
    engine.ports["tap0"] = port
    # Who has 10.244.9.1, the router of the subnet the client will be given?
    ask = arp_frame(eth_src=POOL_MAC_STR, spa="10.244.9.10", tpa="10.244.9.1")
    try:
        engine.process(port, ask, 0.0)
        engine.process(port, ask, 0.0)
        assert port.psock.sent == []  # no binding yet: not its router
        assert sample(engine, "lmdp_drops_total", interface="tap0", reason="not_proxied") == 2
        engine.process(port, dhcp_request("discover", eth_src=POOL_MAC_STR), 0.0)
        engine.process(port, ask, 0.0)  # now bound (tentatively) in 10.244.9.0/24
        arp = [f for f in port.psock.sent if f[12:14] == b"\x08\x06"]
        assert [f[:6] for f in arp] == [POOL_MAC]
        assert sample(engine, "lmdp_replies_sent_total", interface="tap0", type="arp_reply") == 1
    finally:
        engine.close()


def test_reused_answer_is_counted_on_its_own_port(engine, port):
    other = Port("tap1", FakeSocket())
    engine.ports["tap1"] = other
    for p in (port, port, other, port):
        engine.process(p, arp_frame(), 0.0)
    assert (len(port.psock.sent), len(other.psock.sent)) == (3, 1)
    assert sample(engine, "lmdp_replies_sent_total", interface="tap0", type="arp_reply") == 3
    assert sample(engine, "lmdp_replies_sent_total", interface="tap1", type="arp_reply") == 1
    assert (
        sample(
            engine,
            "lmdp_frames_received_total",
            interface="tap1",
            protocol="arp",
            type="arp_request",
        )
        == 1
    )


def test_ra_sent_again_when_an_attached_port_changes_state(tmp_path, monkeypatch):
    """A port attached while down loses its first RA; coming up must send one."""
    config = parse_config({"node": "n", "ra": True, "store": {"path": str(tmp_path / "l.db")}})
    e = Engine(config)
    try:
        port = Port("tap0", FakeSocket())
        port.psock.ifindex, port.psock.sock = 7, None
        e.ports["tap0"] = port
        monkeypatch.setattr("dataplane.engine.clear_error", lambda sock: 0)
        e.link_changed("add", "tap0", 7, True)  # netlink: tap0 changed (came up)
        ras = [f for f in port.psock.sent if f[12:14] == b"\x86\xdd" and f[54] == 134]
        assert len(ras) == 1 and ras[0][6:12] == GW_MAC
    finally:
        e.close()


class FakeQueue(FakeSocket):
    """A socket with `queued` frames waiting, read 64 at a time; `ring`: as a port on packet
    rings (rx_ready says whether frames wait), else as a classic socket (rx_ready None)."""

    def __init__(self, frames: list[bytes], ring: bool):
        super().__init__()
        self.queued, self.ring, self.batches, self.flushes = list(frames), ring, 0, 0

    def recv_batch(self, limit: int = 64) -> list[bytes]:
        self.batches += 1
        out, self.queued = self.queued[:limit], self.queued[limit:]
        return out

    def rx_ready(self) -> bool | None:
        return bool(self.queued) if self.ring else None

    def flush(self) -> int:
        self.flushes += 1
        return 0


@pytest.mark.parametrize("ring", [True, False])
def test_a_port_on_rings_is_drained_in_one_wake_up(engine, ring):
    from dataplane.engine import RING_BATCHES

    frames = [arp_frame()] * (64 * (RING_BATCHES + 2))
    psock = FakeQueue(frames, ring)
    engine.ports["tap0"] = port = Port("tap0", psock)
    engine._on_readable(port)
    # On rings: batch after batch while the ring has frames, up to RING_BATCHES, then the
    # loop's turn; each batch's replies flushed. Classic: one batch per wake-up.
    batches = RING_BATCHES if ring else 1
    assert (psock.batches, psock.flushes, len(psock.sent)) == (batches, batches, 64 * batches)


def test_a_busy_port_on_rings_watches_for_more_before_sleeping(engine, monkeypatch):
    from dataplane import engine as engine_module

    psock = FakeQueue([arp_frame()] * 64, ring=True)
    engine.ports["tap0"] = port = Port("tap0", psock)
    polls = []
    ready = psock.rx_ready

    def rx_ready():
        polls.append(1)
        if len(polls) == 3:
            psock.queued.append(arp_frame())  # a frame arrives while it watches
        return ready()

    monkeypatch.setattr(psock, "rx_ready", rx_ready)
    monkeypatch.setattr(engine_module, "SPIN", 0.05)
    engine._on_readable(port)
    assert len(psock.sent) == 65  # the late frame was answered in the same wake-up
    # A quiet port (fewer than SPIN_AFTER frames) does not watch at all.
    psock.queued = [arp_frame()]
    polls.clear()
    engine._on_readable(port)
    assert len(polls) == 1 and len(psock.sent) == 66
