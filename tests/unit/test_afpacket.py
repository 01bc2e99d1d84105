"""The packet rings without a kernel: the slot walk, the hand-back, the batched transmit.

A PacketSocket whose ring is an anonymous mapping laid out as the kernel lays out TPACKET_V2
slots, and whose socket is a stand-in that plays the kernel's side of `send()` and `recv()`.
The real kernel is in tests/integration/test_bpf.py.
"""

from __future__ import annotations

import concurrent.futures
import errno
import mmap
import struct

import pytest

from dataplane import afpacket
from dataplane.afpacket import (
    FLOOD_RING,
    TP_STATUS_COPY,
    TP_STATUS_SEND_REQUEST,
    TP_STATUS_USER,
    PacketSocket,
    RingGeometry,
    RingPolicy,
    ring_from_env,
)

RX_HDR = struct.Struct("=IIIH")  # tp_status, tp_len, tp_snaplen, tp_mac
TX_HDR = struct.Struct("=II")  # tp_status, tp_len
VNET = struct.Struct("<BBHHHH")  # struct virtio_net_hdr, before each frame in a TX slot
MAC_OFF = 66
TP_STATUS_LOSING = 4
TP_STATUS_TS_SOFTWARE = 1 << 29


class QueuedFrames:
    """`recv_into` from `self.queue`, a list of whole frames, as a non-blocking socket."""

    queue: list[bytes]

    def recv_into(self, buf) -> int:
        if not self.queue:
            raise BlockingIOError
        frame = self.queue.pop(0)
        buf[: len(frame)] = frame
        return len(frame)


class KernelSide(QueuedFrames):
    """What the kernel does for `send(b"")` on a TX ring (every marked slot, in order, from
    its own head) and for `recv_into` (the queue of whole frames beside the ring)."""

    def __init__(self, psock: PacketSocket, error: int | None = None):
        self.psock = psock
        self.head = 0
        self.wire: list[bytes] = []
        self.queue: list[bytes] = []
        self.kicks = 0
        self.error = error

    def send(self, data: bytes, *address) -> int:
        if data:  # a plain send: not on a ring socket
            self.wire.append(bytes(data))
            return len(data)
        self.kicks += 1
        if self.error is not None:
            raise OSError(self.error, "link down")
        mm, offsets = self.psock._tx_mm, self.psock._tx_offsets
        while True:
            off = offsets[self.head]
            status, length = TX_HDR.unpack_from(mm, off)
            if status != TP_STATUS_SEND_REQUEST:
                return 0
            # The virtio-net header before the frame: no offloads, hdr_len the whole frame
            # (so the kernel copies it into the skb: see afpacket's "Transmit").
            assert VNET.unpack_from(mm, off + 32) == (0, 0, length - 10, 0, 0, 0)
            self.wire.append(mm[off + 42 : off + 32 + length])
            TX_HDR.pack_into(mm, off, 0, length)
            self.head = (self.head + 1) % len(offsets)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options = {**getattr(self, "options", {}), option: value}


def ring_socket(
    geometry: RingGeometry, error: int | None = None
) -> tuple[PacketSocket, KernelSide]:
    """A PacketSocket on anonymous mappings instead of kernel rings, its rings in use."""
    ps = object.__new__(PacketSocket)
    rx = afpacket._layout(geometry.rx_frames, geometry.rx_frame)
    ps.ifname, ps.ifindex, ps.ring = "tap0", 1, geometry
    ps.on_swap, ps._policy = None, RingPolicy(geometry, on_demand=False)
    ps._qdisc_bypass, ps._bufsize = False, 1 << 20
    ps._rings = ps._setup = None
    ps._mm = mmap.mmap(-1, rx[0] * rx[1])
    ps._rx_offsets = afpacket._slot_offsets(0, *rx[:3])
    ps._tx_mm, ps._tx_offsets, ps._tx_max = None, [], 0
    if geometry.tx_frames:
        tx = afpacket._layout(geometry.tx_frames, geometry.tx_frame)
        ps._tx_mm = mmap.mmap(-1, tx[0] * tx[1])
        ps._tx_offsets = afpacket._slot_offsets(0, *tx[:3])
        ps._tx_max = tx[2] - 42
    ps._rx_head = ps._tx_head = ps._tx_pending = 0
    ps._batching = False
    ps.truncated = 0
    kernel = KernelSide(ps, error)
    ps.sock = ps._tx_sock = kernel
    ps.fd = -1
    return ps, kernel


class RxWriter:
    """The kernel's side of the receive ring: fill the next slot if it is free."""

    def __init__(self, psock: PacketSocket, kernel: KernelSide):
        self.psock, self.kernel, self.head = psock, kernel, 0

    def deliver(self, frame: bytes, extra_status: int = 0, queue_full: bool = False) -> bool:
        mm, offsets = self.psock._mm, self.psock._rx_offsets
        off = offsets[self.head]
        if RX_HDR.unpack_from(mm, off)[0] & TP_STATUS_USER:
            return False  # ring full: dropped
        room = self.psock.ring.rx_frame - MAC_OFF
        status = TP_STATUS_USER | extra_status
        snap = frame[:room]
        if len(frame) > room and not queue_full:
            status |= TP_STATUS_COPY
            self.kernel.queue.append(frame)
        mm[off + MAC_OFF : off + MAC_OFF + len(snap)] = snap
        RX_HDR.pack_into(mm, off, status, len(frame), len(snap), MAC_OFF)
        self.head = (self.head + 1) % len(offsets)
        return True


def frame(n: int, size: int = 42) -> bytes:
    return bytes([n & 0xFF]) * size


def test_frames_come_out_in_order_as_bytes_and_slots_go_back():
    ps, kernel = ring_socket(RingGeometry(16, 256, 0))
    rx = RxWriter(ps, kernel)
    sent = [frame(i) for i in range(40)]  # more than the ring holds: it wraps
    got = []
    for chunk in range(0, 40, 10):
        for f in sent[chunk : chunk + 10]:
            assert rx.deliver(f, TP_STATUS_LOSING | TP_STATUS_TS_SOFTWARE)
        batch = ps.recv_batch(64)
        assert all(type(f) is bytes for f in batch)  # copies, never views of the ring
        got += batch
    assert got == sent
    assert ps.recv_batch() == []


def test_a_full_ring_drops_and_a_batch_is_bounded():
    ps, kernel = ring_socket(RingGeometry(16, 256, 0))
    rx = RxWriter(ps, kernel)
    accepted = [rx.deliver(frame(i)) for i in range(20)]
    assert accepted == [True] * 16 + [False] * 4
    assert ps.recv_batch(5) == [frame(i) for i in range(5)]
    assert ps.recv_batch(64) == [frame(i) for i in range(5, 16)]
    assert rx.deliver(frame(99))  # room again
    assert ps.recv_batch() == [frame(99)]


def test_a_frame_bigger_than_a_slot_is_read_whole_from_the_queue():
    ps, kernel = ring_socket(RingGeometry(16, 256, 0))
    rx = RxWriter(ps, kernel)
    big = bytes(range(256)) + bytes(100)  # 356 bytes: a DHCPDISCOVER's size
    for f in (frame(1), big, frame(2), big[::-1]):
        rx.deliver(f)
    assert ps.recv_batch() == [frame(1), big, frame(2), big[::-1]]


def test_a_truncated_frame_without_its_copy_is_counted_not_passed_on():
    ps, kernel = ring_socket(RingGeometry(16, 256, 0))
    rx = RxWriter(ps, kernel)
    rx.deliver(frame(1))
    rx.deliver(frame(2, 400), queue_full=True)
    rx.deliver(frame(3))
    assert ps.recv_batch() == [frame(1), frame(3)]
    assert ps.truncated == 1


def test_replies_in_a_batch_go_out_together_at_flush():
    ps, kernel = ring_socket(RingGeometry(16, 256, 16, 256))
    ps.recv_batch()  # the engine's reader: a batch starts
    for i in range(5):
        assert ps.send(frame(i))
    assert kernel.wire == [] and kernel.kicks == 0
    assert ps.flush() == 0
    assert kernel.wire == [frame(i) for i in range(5)] and kernel.kicks == 1
    assert ps.flush() == 0 and kernel.kicks == 1  # nothing queued: no system call


def test_outside_a_batch_a_reply_goes_out_at_once():
    ps, kernel = ring_socket(RingGeometry(16, 256, 16, 256))
    assert ps.send(frame(7))  # an announcement, a committed lease's reply
    assert kernel.wire == [frame(7)]


def test_a_batch_longer_than_the_ring_wraps_in_order():
    ps, kernel = ring_socket(RingGeometry(16, 256, 16, 256))
    ps.recv_batch()
    sent = [frame(i) for i in range(50)]
    assert all(ps.send(f) for f in sent)
    ps.flush()
    assert kernel.wire == sent


def test_a_frame_bigger_than_a_slot_goes_out_after_the_ones_before_it(monkeypatch):
    ps, kernel = ring_socket(RingGeometry(16, 256, 16, 256))
    monkeypatch.setattr(afpacket, "_send_big", lambda ifname, f: kernel.send(f) > 0)
    big = bytes(500)
    ps.recv_batch()
    ps.send(frame(1))
    ps.send(big)
    ps.send(frame(2))
    ps.flush()
    assert kernel.wire == [frame(1), big, frame(2)]


def test_a_slot_the_device_still_holds_is_busy():
    ps, kernel = ring_socket(RingGeometry(16, 256, 16, 256))
    for off in ps._tx_offsets:
        TX_HDR.pack_into(ps._tx_mm, off, 2, 0)  # TP_STATUS_SENDING
    assert ps.send(frame(1)) is False
    assert kernel.wire == []


def test_a_link_down_at_flush_unmarks_what_was_queued():
    ps, kernel = ring_socket(RingGeometry(16, 256, 16, 256), error=errno.ENETDOWN)
    ps.recv_batch()
    for i in range(3):
        ps.send(frame(i))
    assert ps.flush() == 3
    # Back up: nothing stale goes out, and the next frames start where the kernel will.
    kernel.error = None
    ps.send(frame(9))
    assert kernel.wire == [frame(9)]
    kernel.error = errno.ENETDOWN  # outside a batch the caller hears of it
    assert ps.send(frame(10)) is False


def test_geometry_and_the_environment_knob():
    on_demand = RingPolicy(FLOOD_RING, on_demand=True)
    assert ring_from_env({}) == on_demand  # the default, see the module docstring
    assert ring_from_env({"LMDP_RING": "auto"}) == on_demand
    assert ring_from_env({"LMDP_RING": "1"}) == RingPolicy(RingGeometry(), on_demand=False)
    assert ring_from_env({"LMDP_RING": "0"}) is None
    assert ring_from_env({"LMDP_RING": "256x512"}) == RingPolicy(RingGeometry(256, 512), False)
    assert ring_from_env({"LMDP_RING": "auto:1024x512,32x512"}) == RingPolicy(
        RingGeometry(1024, 512, 32, 512), on_demand=True
    )
    assert ring_from_env({"LMDP_RING": "64x256,0"}).geometry.tx_frames == 0
    assert ring_from_env({"LMDP_RING": "64x256,16x2048"}).geometry == RingGeometry(
        64, 256, 16, 2048
    )
    assert ring_from_env({"LMDP_RING": "banana"}) == on_demand  # warned, the default
    with pytest.raises(ValueError):
        RingGeometry(64, 500)  # not a multiple of 16
    # Slots never straddle a page, and the ring is at least what was asked for.
    assert afpacket._layout(100, 512) == (4096, 13, 512, 104)
    assert afpacket._layout(3, 6144) == (8192, 3, 6144, 3)
    assert RingGeometry(128, 512, 0).nbytes == 64 * 1024
    assert RingGeometry().nbytes == 72 * 1024
    assert FLOOD_RING.nbytes == (2048 + 32) * 1024


class FakeSocket(QueuedFrames):
    """A socket's side of the move to rings: its filter, its bind, its queue, its close."""

    def __init__(self, fd: int, queue: list[bytes] | None = None):
        self.fd, self.queue, self.sent = fd, queue or [], []
        self.filter: list | None = None
        self.bound = self.closed = None

    def fileno(self) -> int:
        return self.fd

    def bind(self, address) -> None:
        self.bound = address

    def getsockopt(self, *args) -> int:
        return 0  # SO_ERROR

    def setsockopt(self, level, option, value) -> None:
        if option == afpacket.SO_ATTACH_FILTER:
            self.filter = "drop all" if len(value) and value[0] == 1 else "ours"

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def close(self) -> None:
        self.closed = True


def classic_socket(policy: RingPolicy | None, queue: list[bytes]) -> PacketSocket:
    """A PacketSocket on the classic path, its socket a stand-in with `queue` queued."""
    ps = object.__new__(PacketSocket)
    ps.ifname, ps.ifindex, ps.ring, ps.on_swap, ps._policy = "tap0", 1, None, None, policy
    ps._qdisc_bypass, ps._bufsize = False, 1 << 20
    ps._rings = ps._setup = ps._mm = ps._tx_sock = ps._tx_mm = None
    ps._rx_offsets, ps._tx_offsets = [], []
    ps._rx_head = ps._tx_head = ps._tx_pending = ps._tx_max = 0
    ps._batching = False
    ps.truncated = 0
    ps.sock = FakeSocket(7, queue)
    ps.fd = 7
    return ps


def spare_rings(geometry: RingGeometry) -> tuple[afpacket._Rings, KernelSide]:
    """Rings as `_build` leaves them, on anonymous mappings and stand-in sockets."""
    rings = afpacket._Rings(geometry)
    rx = afpacket._layout(geometry.rx_frames, geometry.rx_frame)
    tx = afpacket._layout(geometry.tx_frames, geometry.tx_frame)
    rings.rx_sock, rings.rx_mm = FakeSocket(9), mmap.mmap(-1, rx[0] * rx[1])
    rings.rx_offsets = afpacket._slot_offsets(0, *rx[:3])
    rings.tx_mm = mmap.mmap(-1, tx[0] * tx[1])
    rings.tx_offsets, rings.tx_max = afpacket._slot_offsets(0, *tx[:3]), tx[2] - 42
    return rings, None


@pytest.fixture
def spares(monkeypatch):
    """A fresh spare pool that builds nothing (a test hands it its spares)."""
    pool = afpacket._Spares()
    monkeypatch.setattr(afpacket, "_spares", pool)
    monkeypatch.setattr(pool, "prime", lambda *args: None)
    monkeypatch.setattr(afpacket, "_closer", lambda: _Now())
    return pool


class _Now:
    """The closing thread, run at once."""

    def submit(self, fn, *args):
        fn(*args)


def test_a_full_batch_moves_the_port_to_rings_reading_the_old_queue_first(spares):
    geometry = RingGeometry(16, 256, 16, 256)
    old = [frame(i) for i in range(70)]  # the loop fell behind: a full batch and more
    ps = classic_socket(RingPolicy(geometry), list(old))
    old_sock = ps.sock
    rings, _ = spare_rings(geometry)
    tx = rings.tx_sock = FakeSocket(10)
    spares.ready.append(rings)
    swapped = []
    ps.on_swap = lambda old_fd: swapped.append((old_fd, ps.fd))
    # A full batch: the port moves, and what the old socket still held comes with it.
    assert ps.recv_batch(64) == old
    assert ps.ring == geometry and spares.in_use == 1 and spares.ready == []
    assert swapped == [(7, 9)]  # the poller moves to the new fd, told the old one
    assert rings.rx_sock.bound == ("tap0", afpacket.ETH_P_ALL)
    assert tx.bound == ("tap0", 0)
    assert old_sock.filter == "drop all" and old_sock.closed
    # From now on the ring: a frame the kernel writes there comes out of the next batch.
    rx = RxWriter(ps, KernelSide(ps))
    rx.deliver(frame(99))
    assert ps.recv_batch() == [frame(99)]
    ps.close()
    assert spares.in_use == 0


def test_a_port_that_keeps_up_stays_classic(spares):
    ps = classic_socket(RingPolicy(RingGeometry(16, 256, 16, 256)), [frame(i) for i in range(63)])
    spares.ready.append(spare_rings(RingGeometry(16, 256, 16, 256))[0])
    assert len(ps.recv_batch(64)) == 63
    assert ps.ring is None and spares.in_use == 0 and len(spares.ready) == 1
    # With rings off (LMDP_RING=0), even a full batch stays classic.
    ps = classic_socket(None, [frame(i) for i in range(64)])
    assert len(ps.recv_batch(64)) == 64 and ps.ring is None and spares.in_use == 0


def test_no_more_than_max_ring_ports_move(spares, monkeypatch):
    monkeypatch.setattr(afpacket, "MAX_RING_PORTS", 1)
    geometry = RingGeometry(16, 256, 16, 256)
    first = classic_socket(RingPolicy(geometry), [frame(i) for i in range(64)])
    spares.ready += [spare_rings(geometry)[0], spare_rings(geometry)[0]]
    first.recv_batch(64)
    second = classic_socket(RingPolicy(geometry), [frame(i) for i in range(64)])
    second.recv_batch(64)
    assert first.ring == geometry and second.ring is None
    first.close()  # its place is free again
    second.sock.queue += [frame(i) for i in range(64)]
    second.recv_batch(64)
    assert second.ring == geometry


def test_without_a_spare_the_rings_are_built_and_the_move_waits_for_them(spares, monkeypatch):
    geometry = RingGeometry(16, 256, 16, 256)
    built = concurrent.futures.Future()
    monkeypatch.setattr(afpacket, "_ring_setup", lambda: _Submit(built))
    ps = classic_socket(RingPolicy(geometry), [frame(i) for i in range(64)])
    assert len(ps.recv_batch(64)) == 64 and ps.ring is None and ps._setup is built
    ps.sock.queue.append(frame(64))
    assert ps.recv_batch(64) == [frame(64)] and ps.ring is None  # still building
    rings, _ = spare_rings(geometry)
    built.set_result(rings)
    ps.sock.queue.append(frame(65))
    assert ps.recv_batch(64) == [frame(65)] and ps.ring == geometry


class _Submit:
    def __init__(self, future):
        self.future = future

    def submit(self, fn, *args):
        return self.future


@pytest.mark.parametrize(
    "release, vnet",
    [("4.12.14-lp150", False), ("4.13.0", True), ("6.1.0-27-amd64", True), ("10.0", True)],
)
def test_the_tx_virtio_header_only_where_the_kernel_reads_it(release, vnet):
    # Before Linux 4.13, tpacket_snd does not read a virtio-net header: it would go out as
    # the first ten bytes of every frame.
    assert afpacket._kernel_at_least(4, 13, release) is vnet
