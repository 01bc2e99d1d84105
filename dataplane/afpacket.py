"""AF_PACKET sockets for VM ports, with a classic BPF filter so only our protocols reach Python.

One socket per attached interface. The socket is created with protocol 0 (it receives
nothing), the filter is attached, and only then is it bound to ETH_P_ALL on the interface:
no frame can slip in before the filter is in place, so no drain step is needed.

Rings on demand (the default). A port starts on the classic path, one `recv_into` a frame
and one `send` a reply: cheap (no ring pages), and as fast as anything for a port that sees
a few frames a second. A port that shows load, a `recv_batch` that comes back full (64
frames were queued at once: the loop is behind on this port), moves to TPACKET_V2 receive
and transmit rings sized for a flood (`FLOOD_RING`: 8192 receive slots of 256 bytes and 64
transmit slots of 512 bytes, 2.03 MiB: at a flood of 300,000 ARP requests a second, 27 ms of
frames when the loop falls behind). The move takes no system call that waits: a ring socket
is built ahead on a setup thread (`_Spares`, one at a time), so the port moves at once, and
the next spare is built behind it. At most `MAX_RING_PORTS` ports hold rings at a time; a
port keeps its rings until it is detached. `LMDP_RING` overrides: `0` never rings; `1` rings
on every port from the attach (`DEFAULT_RING`: 128 receive and 16 transmit slots, 72 KiB a
port); `RXxSIZE[,TXxSIZE]` (e.g. `256x512,16x512`; `TX` may be `0`, receive ring only) rings
of that geometry on every port; `auto:RXxSIZE[,TXxSIZE]` on demand with that geometry.

How a port moves (`PacketSocket._install`, on the loop's thread). Its rings live on new
sockets: the receive ring on a socket with a drop-all filter and the transmit ring on a
socket that receives nothing, both built unbound. The move binds them to the port, gives the
receive socket the real filter (the ring takes our frames from then on), gives the old
socket a drop-all filter (it takes no more), reads what the old socket had queued (older
than anything in the ring, so first), and swaps: `fd` changes, and `on_swap(old_fd)` tells
whoever polls it (the engine moves its reader); the old socket is closed on a closing
thread. A frame that arrives between the two filters may be read from both (answered twice);
none is lost. Why not a ring on the bound socket: the kernel unhooks a bound socket while it
sets up a ring and waits for an RCU grace period (frames on the wire then are lost), and
since the 2025 fix to packet_set_ring() (CVE-2025-38617) it also clears the socket's
protocol for that wait even when the socket is not hooked, a socket bound while its link was
down: a NETDEV_UP in that window finds no protocol and leaves the socket unhooked, and the
ring setup does not hook it either, so the port stays deaf until its link goes down and up
again. That was the race behind "a port re-created under the same name is sometimes deaf" (a
new tap is bound while down and brought up at once). A ring set before the bind, on a socket
that is not bound, has nothing to lose; the bind itself is race-free against link events
(the kernel checks the link under the socket's bind lock).

Receive: a PACKET_RX_RING of TPACKET_V2 slots mapped with mmap. The kernel writes each
accepted frame into the next free slot and wakes the reader at once (V2 has no block retire
timer: a lone request is not held back, unlike TPACKET_V3 at low rates); `recv_batch` walks
the slots with one precompiled unpack each, copies the frame out as `bytes` and hands the
slot straight back, so no view of the ring ever escapes. A frame bigger than a slot (ARP,
NDP and most DHCPv6 fit in 256 bytes, ordinary DHCPv4 in 512) is marked TP_STATUS_COPY and
also queued whole on the socket (PACKET_COPY_THRESH, set before the bind, so the queue never
holds anything else); it is read from there with `recv_into`, in order.

Transmit: a PACKET_TX_RING, on the second socket, never polled. `send` writes the frame into
the next slot and marks it; between `recv_batch` and `flush` (the engine's reader callback)
the marked slots go out together with one `send()` call, outside a batch at once. A frame
bigger than a slot goes out on a plain socket, after the slots before it. The slots are
filled strictly in order, because the kernel stops at the first slot that is not marked.
Each frame is preceded in its slot by a virtio-net header (PACKET_VNET_HDR, Linux 4.13+)
whose `hdr_len` is the whole frame: the kernel then copies the frame into the socket
buffer's own bytes. Without it the kernel would attach the slot's bytes to the frame as a
page fragment, and a veth or a tap, where the frame outlives the slot, makes it allocate a
page and copy it there: measured at a tenth of lmdp's time under an ARP flood. So the ring
saves system calls, not copies.

Memory: ring pages count in the process's resident set from the moment they are mapped (the
kernel maps them all at once): with rings on demand, a thousand idle ports cost no ring
memory, the spare costs 2.03 MiB, and a port under load 2.03 MiB more (at most
`MAX_RING_PORTS` of them) (benchmarks/ports_memory.py, benchmarks/scale.py).

Cost of a ring outside the hot path: the kernel waits for an RCU grace period each time a
ring is set up or torn down, and when a packet socket is closed (measured 10-12 ms each
here), so rings are set up, and sockets closed, on threads of their own: the loop never
waits for it, and a thousand ports overlap their waits.

`LMDP_QDISC_BYPASS=1` sets PACKET_QDISC_BYPASS: frames skip the device's queueing
discipline, and packet taps such as tcpdump on the port no longer see them.

Ordering: the walk reads a slot's status and then its bytes, as separate loads with no
barrier between them, which is sound where loads are not reordered with other loads (x86).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno
import logging
import mmap
import os
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ACCEPT_SNAPLEN",
    "release_spares",
    "FLOOD_RING",
    "PacketSocket",
    "RingGeometry",
    "RingPolicy",
    "build_filter",
    "ring_from_env",
]

log = logging.getLogger("lmdp.afpacket")

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_COPY_THRESH = 7
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_VNET_HDR = 15
PACKET_LOSS = 14
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: our own transmissions are not looped back
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
ACCEPT_SNAPLEN = 0xFFFF

TPACKET_V2 = 1
TP_STATUS_KERNEL = 0  # receive slot: the kernel's
TP_STATUS_USER = 1  # receive slot: holds a frame for us
TP_STATUS_COPY = 2  # ... truncated; the whole frame is on the socket's queue
TP_STATUS_AVAILABLE = 0  # transmit slot: ours to fill
TP_STATUS_SEND_REQUEST = 1  # ... filled, for the next send()
TP_TX_BUSY = 0x7  # SEND_REQUEST | SENDING | WRONG_FORMAT (the high bits are timestamp flags)

# struct tpacket2_hdr: tp_status, tp_len, tp_snaplen, tp_mac (tp_net, times, VLAN unused).
_RX_HDR = struct.Struct("=IIIH")
_TX_HDR = struct.Struct("=II")  # tp_status, tp_len
_U32 = struct.Struct("=I")
_REQ = struct.Struct("=IIII")  # struct tpacket_req: block size, blocks, frame size, frames
_STATS = struct.Struct("=II")  # struct tpacket_stats: packets, drops
_KERNEL = _U32.pack(TP_STATUS_KERNEL)
_TX_DATA = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr)): a transmit slot's data offset
# struct virtio_net_hdr (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset), in
# little-endian (virtio 1.0; what a packet socket reads on a little-endian host), before
# each frame in a transmit slot: see "Transmit" in the module's docstring.
_VNET = struct.Struct("<BBHHHH")


def _kernel_at_least(major: int, minor: int, release: str | None = None) -> bool:
    m = re.match(r"(\d+)\.(\d+)", release if release is not None else os.uname().release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


# tpacket_snd reads the header since Linux 4.13; older kernels would send it as frame bytes.
_TX_VNET = _kernel_at_least(4, 13)
_TX_FRAME = _TX_DATA + (_VNET.size if _TX_VNET else 0)  # where a transmit slot's frame starts
_RX_MAC = 66  # where a received Ethernet frame starts in its slot (TPACKET2_HDRLEN, aligned)
_TP_ALIGN = 16

# Classic BPF opcodes (linux/filter.h).
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_H_IND = 0x48
_LDX_B_MSH = 0xB1
_JEQ_K = 0x15
_JGT_K = 0x25
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_insn = struct.Struct("=HBBI")


def build_filter() -> list[tuple[int, int, int, int]]:
    """ARP, RARP, unfragmented IPv4/UDP to port 67, IPv6/UDP to port 547 and ICMPv6 router
    and neighbour discovery (RS, NS, NA) pass; everything else is dropped in the kernel, so a
    VM's data traffic costs lmdp nothing. IPv6 extension headers are not walked: DHCPv6 and
    NDP from guests carry none (NDP must not be fragmented, RFC 6980)."""
    accept, reject = 20, 21
    # (code, jump-if-true target, jump-if-false target, k); targets are absolute indexes
    # here and made relative (to the next instruction) below.
    prog = [
        (_LD_H_ABS, None, None, 12),  # 0  A = ethertype
        (_JEQ_K, accept, 2, 0x0806),  # 1  ARP
        (_JEQ_K, accept, 3, 0x8035),  # 2  RARP (QEMU's post-migration announce)
        (_JEQ_K, 12, 4, 0x86DD),  # 3  IPv6
        (_JEQ_K, 5, reject, 0x0800),  # 4  IPv4
        (_LD_B_ABS, None, None, 23),  # 5  A = IP protocol
        (_JEQ_K, 7, reject, 17),  # 6  UDP
        (_LD_H_ABS, None, None, 20),  # 7  A = flags | fragment offset
        (_JSET_K, reject, 9, 0x1FFF),  # 8  a non-first fragment has no UDP header
        (_LDX_B_MSH, None, None, 14),  # 9  X = IP header length
        (_LD_H_IND, None, None, 16),  # 10 A = UDP destination port
        (_JEQ_K, accept, reject, 67),  # 11 DHCPv4 server port
        (_LD_B_ABS, None, None, 20),  # 12 A = IPv6 next header
        (_JEQ_K, 14, 16, 58),  # 13 ICMPv6
        (_LD_B_ABS, None, None, 54),  # 14 A = ICMPv6 type
        (_JGE_K, 17, reject, 133),  # 15 type >= 133 (RS) ...
        (_JEQ_K, 18, reject, 17),  # 16 UDP (reached from 13 only)
        (_JGT_K, reject, accept, 136),  # 17 ... and <= 136 (NA): RS, RA, NS, NA
        (_LD_H_ABS, None, None, 56),  # 18 A = UDP destination port
        (_JEQ_K, accept, reject, 547),  # 19 DHCPv6 server port
        (_RET_K, None, None, ACCEPT_SNAPLEN),  # 20 accept
        (_RET_K, None, None, 0),  # 21 reject
    ]
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):
        out.append((code, 0 if jt is None else jt - i - 1, 0 if jf is None else jf - i - 1, k))
    return out


_DROP_ALL = [(_RET_K, 0, 0, 0)]  # a socket with this filter takes nothing


def _attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(_insn.pack(*i) for i in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def clear_error(sock: socket.socket) -> int:
    """Read and clear a pending socket error (ENETDOWN after the link went down)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


@dataclass(frozen=True, slots=True)
class RingGeometry:
    """Slots per ring and bytes per slot. `tx_frames` 0: no transmit ring (one send a frame).

    A receive slot holds a frame of up to `rx_frame - 66` bytes (446 for 512: ARP, NDP, RS,
    a DISCOVER from dhclient or dhcpcd); a transmit slot up to `tx_frame - 42` bytes."""

    rx_frames: int = 128
    rx_frame: int = 512
    tx_frames: int = 16
    tx_frame: int = 512

    def __post_init__(self) -> None:
        for name in ("rx_frame", "tx_frame"):
            size = getattr(self, name)
            if size % _TP_ALIGN or size < 128:
                raise ValueError(f"{name} must be a multiple of 16 and at least 128, not {size}")
        if self.rx_frames < 1 or self.tx_frames < 0:
            raise ValueError("a receive ring needs at least one slot")

    @property
    def nbytes(self) -> int:
        """Bytes mapped (and resident) for one socket's rings."""
        rx = _layout(self.rx_frames, self.rx_frame)
        tx = _layout(self.tx_frames, self.tx_frame) if self.tx_frames else None
        return rx[0] * rx[1] + (tx[0] * tx[1] if tx else 0)


DEFAULT_RING = RingGeometry()  # rings on every port (LMDP_RING=1): small, 72 KiB a port
# 256-byte receive slots hold frames of up to 190 bytes (ARP, NDP, RS, most DHCPv6); a
# DHCPv4 frame takes a slot and the copy on the socket's queue.
FLOOD_RING = RingGeometry(rx_frames=8192, rx_frame=256, tx_frames=64, tx_frame=512)
MAX_RING_PORTS = 32  # ports holding on-demand rings at a time (2.03 MiB each)


@dataclass(frozen=True, slots=True)
class RingPolicy:
    """When a port gets rings of `geometry`: `on_demand`, once it shows load (the default,
    see the module's docstring), or else from the attach."""

    geometry: RingGeometry = FLOOD_RING
    on_demand: bool = True


ON_DEMAND = RingPolicy()


def _parse_geometry(text: str) -> RingGeometry:
    rx, _, tx = text.partition(",")
    rx_frames, rx_frame = (int(x) for x in rx.split("x"))
    if not tx:
        tx_frames, tx_frame = DEFAULT_RING.tx_frames, DEFAULT_RING.tx_frame
    elif tx == "0":
        tx_frames, tx_frame = 0, DEFAULT_RING.tx_frame
    else:
        tx_frames, tx_frame = (int(x) for x in tx.split("x"))
    return RingGeometry(rx_frames, rx_frame, tx_frames, tx_frame)


def ring_from_env(environ=os.environ) -> RingPolicy | None:
    """The ring policy `LMDP_RING` asks for (see the module's docstring); None: no rings."""
    text = environ.get("LMDP_RING", "").strip().lower()
    if text in ("", "auto"):
        return ON_DEMAND
    if text in ("0", "off", "no"):
        return None
    if text in ("1", "on", "yes"):
        return RingPolicy(DEFAULT_RING, on_demand=False)
    try:
        if text.startswith("auto:"):
            return RingPolicy(_parse_geometry(text[5:]), on_demand=True)
        return RingPolicy(_parse_geometry(text), on_demand=False)
    except ValueError as e:
        log.warning("LMDP_RING=%r ignored (%s); rings on demand", text, e)
        return ON_DEMAND


def _layout(frames: int, frame_size: int) -> tuple[int, int, int, int]:
    """(block size, blocks, frame size, frames) for a ring of at least `frames` slots."""
    block = max(mmap.PAGESIZE, -(-frame_size // mmap.PAGESIZE) * mmap.PAGESIZE)
    per_block = block // frame_size
    blocks = -(-frames // per_block)
    return block, blocks, frame_size, blocks * per_block


def _slot_offsets(base: int, block: int, blocks: int, frame_size: int) -> list[int]:
    per_block = block // frame_size
    return [base + b * block + f * frame_size for b in range(blocks) for f in range(per_block)]


_PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
_libc = ctypes.CDLL(None, use_errno=True)


def _setsockopt_nogil(fd: int, option: int, value: bytes) -> None:
    """setsockopt(SOL_PACKET) through ctypes, which lets go of the GIL while the kernel
    waits (socket.setsockopt holds it: a ring's grace period would stall the loop)."""
    buf = ctypes.create_string_buffer(value, len(value))
    if _libc.setsockopt(fd, SOL_PACKET, option, buf, len(value)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_setting_up: concurrent.futures.ThreadPoolExecutor | None = None


def _ring_setup() -> concurrent.futures.ThreadPoolExecutor:
    """Threads that set rings up; several, so a burst of attaches overlaps its waits."""
    global _setting_up
    if _setting_up is None:
        _setting_up = concurrent.futures.ThreadPoolExecutor(8, "lmdp-ring")
    return _setting_up


# One receive buffer for every socket's `recv_into` (the classic path, and frames too big
# for a slot): frames are copied out of it at once and the reader runs on the loop's thread
# only, so a 64 KiB buffer a port is not needed.
_rx_buf = bytearray(ACCEPT_SNAPLEN)
_rx_view = memoryview(_rx_buf)
_big_tx: socket.socket | None = None  # an unbound socket for frames bigger than a TX slot


def _send_big(ifname: str, frame: bytes) -> bool:
    global _big_tx
    if _big_tx is None:
        _big_tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        _big_tx.setblocking(False)
    return _send(_big_tx.sendto, frame, (ifname, 0))


def _send(send, frame: bytes, *address) -> bool:
    try:
        send(frame, *address)
        return True
    except (BlockingIOError, InterruptedError):
        return False
    except OSError as e:
        if e.errno in (errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO, errno.EAGAIN, errno.ENODEV):
            return False
        raise


class _Rings:
    """A port's rings, on sockets of their own, built unbound on a setup thread (`_build`)
    and handed to the loop's thread, which binds them to the port (`PacketSocket._install`)."""

    __slots__ = (
        "geometry",
        "rx_sock",
        "rx_mm",
        "rx_offsets",
        "tx_sock",
        "tx_mm",
        "tx_offsets",
        "tx_max",
    )

    def __init__(self, geometry: RingGeometry):
        self.geometry = geometry
        self.rx_sock: socket.socket | None = None
        self.rx_mm: mmap.mmap | None = None
        self.rx_offsets: list[int] = []
        self.tx_sock: socket.socket | None = None
        self.tx_mm: mmap.mmap | None = None
        self.tx_offsets: list[int] = []
        self.tx_max = 0

    def release(self) -> None:
        """Unmap, then close the sockets (blocking: on a closing thread). Unmapped first:
        the kernel frees a ring once it is unmapped and its socket closed."""
        for mm in (self.rx_mm, self.tx_mm):
            if mm is not None:
                mm.close()
        self.rx_mm = self.tx_mm = None
        for sock in (self.rx_sock, self.tx_sock):
            if sock is not None:
                sock.close()
        self.rx_sock = self.tx_sock = None


def _build(geometry: RingGeometry, qdisc_bypass: bool, bufsize: int) -> _Rings:
    """On a setup thread: the transmit socket and ring, and the receive socket (filtered;
    protocol 0: it takes nothing until it is bound) and ring; neither bound, so no link
    event can be lost while the kernel sets the rings up (see the module's docstring)."""
    rings = _Rings(geometry)
    try:
        if geometry.tx_frames:
            tx = _layout(geometry.tx_frames, geometry.tx_frame)
            tx_sock = rings.tx_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            tx_sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            # A slot the kernel finds malformed is skipped and freed, never left to jam
            # the ring (the kernel stops at the first slot it cannot send). Before the
            # ring, as PACKET_VERSION: the kernel refuses both once a ring exists.
            tx_sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
            if _TX_VNET:
                tx_sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            if qdisc_bypass:
                tx_sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            _setsockopt_nogil(tx_sock.fileno(), PACKET_TX_RING, _REQ.pack(*tx))
            rings.tx_mm = mmap.mmap(tx_sock.fileno(), tx[0] * tx[1], mmap.MAP_SHARED, _PROT_RW)
            rings.tx_offsets = _slot_offsets(0, tx[0], tx[1], tx[2])
            rings.tx_max = tx[2] - _TX_FRAME
            tx_sock.setblocking(False)
        rx_sock = rings.rx_sock = _new_socket(build_filter(), bufsize, qdisc_bypass)
        rx_sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        # A frame too long for its slot is also queued whole on the socket (the slot says
        # TP_STATUS_COPY); nothing else ever is, as the ring takes every frame.
        rx_sock.setsockopt(SOL_PACKET, PACKET_COPY_THRESH, 1)
        rx = _layout(geometry.rx_frames, geometry.rx_frame)
        _setsockopt_nogil(rx_sock.fileno(), PACKET_RX_RING, _REQ.pack(*rx))
        rings.rx_mm = mmap.mmap(rx_sock.fileno(), rx[0] * rx[1], mmap.MAP_SHARED, _PROT_RW)
        rings.rx_offsets = _slot_offsets(0, rx[0], rx[1], rx[2])
        return rings
    except BaseException:
        rings.release()
        raise


def _new_socket(prog, bufsize: int, qdisc_bypass: bool) -> socket.socket:
    """An unbound, non-blocking packet socket (protocol 0: it receives nothing yet)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        _attach_filter(sock, prog)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass  # kernels before 4.20: the filter still keeps load low
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        if qdisc_bypass:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Spares:
    """Ring sockets for on-demand rings, built ahead so that a port under load moves at
    once: one is kept ready (or being built), and another is built when it is taken.
    Used from the loop's thread only; the setup thread only builds."""

    def __init__(self) -> None:
        self.ready: list[_Rings] = []
        self.building: concurrent.futures.Future | None = None
        self.in_use = 0  # ports that hold, or are getting, on-demand rings
        self.refused = False  # the kernel refused a ring: stop asking

    def _collect(self) -> None:
        building = self.building
        if building is not None and building.done():
            self.building = None
            try:
                self.ready.append(building.result())
            except Exception as e:
                self.refused = True
                log.warning("no packet rings (%s): ports stay on one frame a call", e)

    def prime(self, geometry: RingGeometry, qdisc_bypass: bool, bufsize: int) -> None:
        """Have a spare of `geometry` ready, or being built."""
        self._collect()
        if self.refused or self.building is not None or self.in_use >= MAX_RING_PORTS:
            return
        if any(r.geometry == geometry for r in self.ready):
            return
        self.building = _ring_setup().submit(_build, geometry, qdisc_bypass, bufsize)

    def take(self, geometry: RingGeometry) -> _Rings | None:
        self._collect()
        for i, rings in enumerate(self.ready):
            if rings.geometry == geometry:
                return self.ready.pop(i)
        return None

    def close(self) -> None:
        """Release the spares, ready or being built (the engine is closing)."""
        building, self.building = self.building, None
        if building is not None:
            building.add_done_callback(
                lambda f: f.exception() is None and _closer().submit(f.result().release)
            )
        ready, self.ready = self.ready, []
        for rings in ready:
            _closer().submit(rings.release)


_spares = _Spares()


def release_spares() -> None:
    """Free the ring sockets built ahead for ports under load (see `_Spares`)."""
    _spares.close()


class PacketSocket:
    """A non-blocking AF_PACKET socket bound to one interface.

    `recv_batch` drains up to `limit` frames without blocking; `send` queues a reply, sent
    by the next `flush` when it comes between `recv_batch` and `flush` (a batch), at once
    otherwise; `fd` is for the event loop; `close` releases everything.

    The socket serves at once on the classic path. With rings on demand (the default), a
    `recv_batch` that comes back full moves the port to rings, from a spare built ahead, or
    from one built then on a setup thread; with rings always (`LMDP_RING=1` or a geometry),
    they are built from the attach. Either way the move happens in `recv_batch`, on the
    caller's thread, and changes `fd`: whoever polls `fd` sets `on_swap`, which is called
    with the old fd once `fd` is the new one. `settle` waits for rings being built. The TX
    ring lives on a second socket that receives nothing and is never polled: freeing a
    transmitted frame then wakes no one (on the polled socket every freed frame ran the
    event loop's wait-queue callback: 4-5% of lmdp's CPU under a flood, perf).
    """

    __slots__ = (
        "ifname",
        "ifindex",
        "sock",
        "fd",
        "ring",
        "on_swap",
        "_policy",
        "_qdisc_bypass",
        "_bufsize",
        "_rings",
        "_setup",
        "_mm",
        "_rx_offsets",
        "_rx_head",
        "_tx_sock",
        "_tx_mm",
        "_tx_offsets",
        "_tx_head",
        "_tx_max",
        "_tx_pending",
        "_batching",
        "truncated",
    )

    def __init__(
        self,
        ifname: str,
        bufsize: int = 1 << 20,
        ring: RingPolicy | RingGeometry | None | bool = True,
        qdisc_bypass: bool | None = None,
    ):
        """`ring`: True for `LMDP_RING` (rings on demand unless it says otherwise), a policy,
        a geometry (rings of it from the start), or None/False for none.
        `qdisc_bypass`: None for `LMDP_QDISC_BYPASS`."""
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        if ring is True:
            ring = ring_from_env()
        elif isinstance(ring, RingGeometry):
            ring = RingPolicy(ring, on_demand=False)
        if qdisc_bypass is None:
            qdisc_bypass = os.environ.get("LMDP_QDISC_BYPASS", "") == "1"
        self.ring: RingGeometry | None = None  # the rings in use (None: classic path)
        self.on_swap: Callable[[int], object] | None = None
        self._policy: RingPolicy | None = ring or None
        self._qdisc_bypass = qdisc_bypass
        self._bufsize = bufsize
        self._rings: _Rings | None = None
        self._setup: concurrent.futures.Future | None = None
        self._mm: mmap.mmap | None = None
        self._rx_offsets: list[int] = []
        self._tx_sock: socket.socket | None = None
        self._tx_mm: mmap.mmap | None = None
        self._tx_offsets: list[int] = []
        self._rx_head = self._tx_head = self._tx_pending = self._tx_max = 0
        self._batching = False
        self.truncated = 0  # frames longer than a slot whose whole copy could not be queued
        sock = _new_socket(build_filter(), bufsize, qdisc_bypass)
        try:
            sock.bind((ifname, ETH_P_ALL))
            # Bound while the link was down, the socket carries ENETDOWN; an event loop
            # that sees the error condition stops polling the fd. Clear it.
            clear_error(sock)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()
        policy = self._policy
        if policy is None:
            return
        if policy.on_demand:
            _spares.prime(policy.geometry, qdisc_bypass, bufsize)
        else:
            self._setup = _ring_setup().submit(_build, policy.geometry, qdisc_bypass, bufsize)

    def _upgrade(self) -> list[bytes]:
        """A full batch on the classic path: move to rings (on demand) if a port may."""
        policy = self._policy
        if _spares.refused or _spares.in_use >= MAX_RING_PORTS:
            return []
        _spares.in_use += 1
        rings = _spares.take(policy.geometry)
        _spares.prime(policy.geometry, self._qdisc_bypass, self._bufsize)  # the next one
        if rings is not None:
            return self._install(rings)
        # No spare yet: build ours; meanwhile the classic queue holds more of the burst.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        self._setup = _ring_setup().submit(
            _build, policy.geometry, self._qdisc_bypass, self._bufsize
        )
        return []

    def _built(self) -> list[bytes]:
        """The rings built on the setup thread are ready (or failed): move to them."""
        setup, self._setup = self._setup, None
        try:
            rings = setup.result()
        except Exception as e:
            # No ring (an old or restricted kernel, no memory): the classic path works.
            log.warning("%s: no packet ring (%s); receiving one frame a call", self.ifname, e)
            self._no_rings()
            return []
        return self._install(rings)

    def _no_rings(self) -> None:
        if self._policy is not None and self._policy.on_demand:
            _spares.in_use -= 1
        self._policy = None

    def _install(self, rings: _Rings) -> list[bytes]:
        """Move to `rings` (see the module's docstring); returns the frames the old socket
        had queued (older than everything in the ring)."""
        rx = rings.rx_sock
        try:
            rx.bind((self.ifname, ETH_P_ALL))  # the ring takes our frames from now on
            clear_error(rx)
            if rings.tx_sock is not None:
                rings.tx_sock.bind((self.ifname, 0))  # protocol 0: it receives nothing
        except OSError as e:
            # The port is going away (ENODEV): its detach follows; stay where we are.
            log.warning("%s: cannot move to packet rings: %s", self.ifname, e)
            _closer().submit(rings.release)
            self._no_rings()
            return []
        old, old_fd = self.sock, self.fd
        try:
            _attach_filter(old, _DROP_ALL)  # ... and the old socket none
        except OSError as e:
            # Stay on the old socket, which still takes everything; the ring socket goes.
            log.warning("%s: cannot move to packet rings: %s", self.ifname, e)
            _closer().submit(rings.release)
            self._no_rings()
            return []
        try:
            frames = self._recv_classic(1 << 30)
        except OSError:
            frames = []  # (never raises half moved)
        self.sock, self.fd = rx, rx.fileno()
        self._rings = rings
        self._mm, self._rx_offsets, self._rx_head = rings.rx_mm, rings.rx_offsets, 0
        self._tx_sock, self._tx_mm = rings.tx_sock, rings.tx_mm
        self._tx_offsets, self._tx_max, self._tx_head = rings.tx_offsets, rings.tx_max, 0
        self.ring = rings.geometry
        try:
            if self.on_swap is not None:
                self.on_swap(old_fd)  # before the old fd is closed, and its number reused
        finally:
            _closer().submit(old.close)
        if self._policy.on_demand:
            log.info(
                "%s: under load: moved to packet rings (%d receive slots; %d frames were queued)",
                self.ifname,
                len(rings.rx_offsets),
                len(frames),
            )
        return frames

    def settle(self, timeout: float | None = 10) -> bool:
        """Wait until rings being built are ready (the next `recv_batch` moves to them);
        True if they are, or already in use. For tests and tools that need the ring path."""
        setup = self._setup
        if setup is not None:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                return setup.exception(timeout) is None
            return False
        return self.ring is not None

    # -- receive -----------------------------------------------------------------------

    def recv_batch(self, limit: int = 64) -> list[bytes]:
        """Drain up to `limit` frames without blocking; replies sent until `flush` are
        batched."""
        setup = self._setup
        out = self._built() if setup is not None and setup.done() else []
        mm = self._mm
        if mm is None:
            out += self._recv_classic(limit)
            if len(out) >= limit and setup is None and self._policy is not None:
                out += self._upgrade()  # (only on demand: else it is being built)
            self._batching = True
            return out
        offsets = self._rx_offsets
        nslots = len(offsets)
        head = self._rx_head
        unpack = _RX_HDR.unpack_from
        append = out.append
        for _ in range(limit):
            off = offsets[head]
            status, length, snaplen, mac = unpack(mm, off)
            if not status & TP_STATUS_USER:
                break
            if status & TP_STATUS_COPY:
                frame = self._recv_copy()
            elif snaplen == length:
                start = off + mac
                frame = mm[start : start + snaplen]  # a copy: bytes, never a view
            else:
                frame = None  # longer than a slot, and the socket's queue was full
            mm[off : off + 4] = _KERNEL  # the slot is the kernel's again
            head += 1
            if head == nslots:
                head = 0
            if frame is not None:
                append(frame)
            else:
                self.truncated += 1
        self._rx_head = head
        self._batching = True  # (not before: a receive that raised opens no batch)
        return out

    def rx_ready(self) -> bool | None:
        """With a receive ring: whether a frame waits in it (one load, no system call);
        None without a ring (ask the socket: poll it)."""
        mm = self._mm
        if mm is None:
            return None
        return bool(_U32.unpack_from(mm, self._rx_offsets[self._rx_head])[0] & TP_STATUS_USER)

    def _recv_copy(self) -> bytes | None:
        """The whole of a frame that did not fit its slot, from the socket's queue."""
        try:
            n = self.sock.recv_into(_rx_buf)
        except OSError:
            return None  # (never raises: the walk must record how far it got)
        return bytes(_rx_view[:n])

    def _recv_classic(self, limit: int) -> list[bytes]:
        out = []
        recv_into = self.sock.recv_into
        for _ in range(limit):
            try:
                n = recv_into(_rx_buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno == errno.ENETDOWN:
                    break
                raise
            out.append(bytes(_rx_view[:n]))
        return out

    # -- transmit ----------------------------------------------------------------------

    def send(self, frame: bytes) -> bool:
        """Queue `frame` (sent by `flush` in a batch, at once outside one); False: dropped
        (the device is busy or gone)."""
        offsets = self._tx_offsets
        if not offsets:
            return _send(self.sock.send, frame)
        n = len(frame)
        if n > self._tx_max:
            if self._tx_pending:
                self._kick()  # the frames before it go first
            return _send_big(self.ifname, frame)
        mm = self._tx_mm
        off = offsets[self._tx_head]
        if _U32.unpack_from(mm, off)[0] & TP_TX_BUSY:
            # Marked and not sent yet (the ring is full of this batch): send those now.
            # Still busy after that: the device has not let go of it.
            if self._tx_pending:
                self._kick()
            if _U32.unpack_from(mm, off)[0] & TP_TX_BUSY:
                return False
        if _TX_VNET:
            _VNET.pack_into(mm, off + _TX_DATA, 0, 0, n, 0, 0, 0)  # hdr_len n: copy it all
        mm[off + _TX_FRAME : off + _TX_FRAME + n] = frame
        _TX_HDR.pack_into(mm, off, TP_STATUS_SEND_REQUEST, _TX_FRAME - _TX_DATA + n)
        head = self._tx_head + 1
        self._tx_head = 0 if head == len(offsets) else head
        self._tx_pending += 1
        if not self._batching:
            return not self._kick()  # (dropped if the link is down)
        return True

    def flush(self) -> int:
        """Send what the batch queued, in one call; ends the batch. Returns how many queued
        frames were dropped (the link went down)."""
        self._batching = False
        return self._kick() if self._tx_pending else 0

    def _kick(self) -> int:
        try:
            self._tx_sock.send(b"")  # tpacket_snd: every marked slot, in order
            self._tx_pending = 0
            return 0
        except (BlockingIOError, InterruptedError):
            return 0  # the device pushed back: the slots stay marked for the next send()
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                return 0
            if e.errno not in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                raise
        # The link is down: what is marked would go out stale when it comes back. Unmark it.
        mm = self._tx_mm
        dropped = 0
        for off in self._tx_offsets:
            if _U32.unpack_from(mm, off)[0] & TP_TX_BUSY == TP_STATUS_SEND_REQUEST:
                _U32.pack_into(mm, off, TP_STATUS_AVAILABLE)
                dropped += 1
        self._tx_pending = 0
        # The kernel resumes at its own head, the first slot it did not send; so do we.
        self._tx_head = (self._tx_head - dropped) % len(self._tx_offsets)
        return dropped

    # -- the rest ----------------------------------------------------------------------

    def stats(self) -> tuple[int, int]:
        """(frames received, frames dropped for want of room) since the last call (the
        kernel clears the counters when they are read)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        return _STATS.unpack(raw)

    def close(self) -> None:
        """Unmap the rings and close the sockets, on a closing thread: the kernel waits for
        an RCU grace period or more before close returns (measured: 12 ms, 24 ms with a
        ring), which would stall the loop at every detach and make closing a thousand ports
        take half a minute; the threads overlap those waits (close releases the GIL).
        Interpreter exit waits for them."""
        setup, self._setup = self._setup, None
        rings, self._rings = self._rings, None
        sock = self.sock
        if (rings is not None or setup is not None) and self._policy is not None:
            self._no_rings()
        self._policy = None
        self._mm = self._tx_mm = self._tx_sock = None
        self._rx_offsets, self._tx_offsets = [], []
        self.ring = None

        def finish() -> None:
            built = rings
            if setup is not None:
                with contextlib.suppress(Exception):
                    built = setup.result()
            if built is not None:
                built.release()
            sock.close()  # (the receive ring's socket, closed already, or the classic one)

        _closer().submit(finish)


_closing: concurrent.futures.ThreadPoolExecutor | None = None


def _closer() -> concurrent.futures.ThreadPoolExecutor:
    global _closing
    if _closing is None:
        _closing = concurrent.futures.ThreadPoolExecutor(8, "lmdp-close")
    return _closing
