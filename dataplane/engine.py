"""The event loop: frames in from attached ports, through the responders, replies out.

Protocol decisions live in `protocols/`; this module only moves bytes, counts outcomes,
and commits pool allocations to the lease store before the replies that name them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable

from protocols.arp import ArpResponder
from protocols.bindings import Lease6, mac_str
from protocols.dhcpv4.server import Dhcpv4Responder
from protocols.dhcpv6.server import Dhcpv6Responder
from protocols.ipv6 import ipv6_next_header
from protocols.ndp import NdpResponder, build_ra, ra_delay
from protocols.outcome import Outcome

from .afpacket import PacketSocket, clear_error, release_spares
from .config import Config
from .metrics import Metrics
from .migration import Migration
from .stores.sqlite import SqliteLeaseStore

log = logging.getLogger("lmdp.engine")

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_RARP = 0x8035
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
MEMO_LIMIT = 16384  # reused outcomes kept; the memo starts afresh when full
MEMO_MAX_FRAME = 96  # longer frames are not looked up (ARP is 42-60 bytes, an NS 78-94)
COMMIT_INTERVAL = 0.001  # seconds: group commits start at most this often
RING_BATCHES = 16  # batches one wake-up reads from a port on rings, then the loop's turn
SPIN_AFTER = 64  # frames in one wake-up that make a port on rings watch for more ...
SPIN = 50e-6  # ... for this many seconds before the loop may sleep


class RateLimitedLog:
    """At most `burst` messages per `period` seconds; the rest are counted and summarised."""

    def __init__(self, logger: logging.Logger, period: float = 10.0, burst: int = 5):
        self.logger, self.period, self.burst = logger, period, burst
        self.window = 0.0
        self.count = 0
        self.suppressed = 0

    def __call__(self, level: int, msg: str, *args, **kwargs) -> None:
        now = time.monotonic()
        if now - self.window > self.period:
            if self.suppressed:
                self.logger.log(level, "%d similar messages suppressed", self.suppressed)
            self.window, self.count, self.suppressed = now, 0, 0
        if self.count < self.burst:
            self.count += 1
            self.logger.log(level, msg, *args, **kwargs)
        else:
            self.suppressed += 1


class Port:
    __slots__ = ("ifname", "psock")

    def __init__(self, ifname: str, psock: PacketSocket):
        self.ifname = ifname
        self.psock = psock


class Engine:
    def __init__(self, config: Config, metrics: Metrics | None = None):
        self.config = config
        self.node = config.node
        self.params = config.gateway_params()
        self.table = config.binding_table()
        self.metrics = metrics or Metrics()
        self.arp = ArpResponder(self.params, self.table)
        self.dhcp4 = Dhcpv4Responder(self.params, self.table, node=self.node)
        self.ndp = NdpResponder(self.params, self.table)
        self.dhcp6 = Dhcpv6Responder(self.params, self.table, node=self.node)
        self._ra_frame = build_ra(self.params) if self.params.ra else None
        self.store = SqliteLeaseStore(config.store.path)
        self.store_ok = True
        self.ports: dict[str, Port] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._store_exec = concurrent.futures.ThreadPoolExecutor(1, "lmdp-store")
        self._pending: list[tuple[Port, Outcome]] = []  # replies waiting for a commit
        self._pending_event = asyncio.Event()
        self._bug_log = RateLimitedLog(log)
        self._warn_log = RateLimitedLog(log)
        self._handlers: dict[int, Callable[[bytes, str, float], Outcome]] = {
            ETH_P_ARP: self.arp.handle,
            ETH_P_RARP: self.arp.handle,
            ETH_P_IP: self.dhcp4.handle,
        }
        self._protocol = {ETH_P_ARP: "arp", ETH_P_RARP: "arp", ETH_P_IP: "dhcpv4"}
        responders = {"arp": self.arp, "dhcpv4": self.dhcp4, "ndp": self.ndp, "dhcpv6": self.dhcp6}
        self._pure = frozenset(p for p, r in responders.items() if r.pure)
        # frame -> (ifname, outcome, received key, sent or drop key), for pure responders
        self._memo: dict[bytes, tuple] = {}
        self._memo_once: set[int] = set()  # hashes of frames answered once, not yet kept
        self._memo_version = -1  # the table.version the memo was built for
        self._counts = self.metrics.frame_counts()
        self.migration = Migration(self)
        self.metrics.count_bindings_with(self._count_bindings)

    # -- lifecycle ---------------------------------------------------------------------

    def open_store(self) -> int:
        """Open the store and enter its leases; returns how many were restored."""
        self.store.open()
        leases = self.store.load()
        for lease in leases:
            if isinstance(lease, Lease6):
                self.table.restore6(lease)
            else:
                self.table.restore(lease)
        return len(leases)

    async def in_store_thread(self, fn, *args):
        """Run a store call on the store's own thread (SQLite blocks; the loop must not)."""
        return await asyncio.get_running_loop().run_in_executor(self._store_exec, fn, *args)

    def close(self) -> None:
        for name in list(self.ports):
            self.detach(name)
        release_spares()
        self.migration.close()
        self._store_exec.shutdown(wait=True)
        self.store.close()

    # -- ports -------------------------------------------------------------------------

    def attach(self, ifname: str) -> bool:
        if ifname in self.ports:
            return False
        psock = PacketSocket(ifname)
        port = Port(ifname, psock)
        self.ports[ifname] = port
        if self.loop is not None:
            loop = self.loop

            def moved(old_fd: int) -> None:
                # The port moved to packet rings on a new socket (afpacket): read that one.
                loop.remove_reader(old_fd)
                loop.add_reader(psock.fd, self._on_readable, port)

            psock.on_swap = moved
            loop.add_reader(psock.fd, self._on_readable, port)
        self.metrics.set_interfaces_attached(len(self.ports))
        log.info("attached %s (ifindex %d)", ifname, psock.ifindex)
        if self._ra_frame is not None:
            self._advertise(port)
        return True

    def link_changed(self, event: str, ifname: str, ifindex: int, wanted: bool) -> None:
        """A netlink event for `ifname`: attach, detach, or re-arm the port's reader."""
        port = self.ports.get(ifname)
        if event == "del":
            if port is not None and port.psock.ifindex == ifindex:
                self.detach(ifname)
            return
        # A port renamed away from a watched name is gone under its old name.
        for name, p in list(self.ports.items()):
            if p.psock.ifindex == ifindex and name != ifname:
                self.detach(name)
        if port is not None and port.psock.ifindex != ifindex:
            self.detach(ifname)  # deleted and re-created under the same name
            port = None
        if not wanted:
            return
        if port is None:
            try:
                self.attach(ifname)
            except OSError as e:
                # Gone again before we got to it (if_nametoindex's error has no errno).
                if e.errno not in (None, errno.ENODEV, errno.ENXIO, errno.ENOENT):
                    log.warning("cannot attach %s: %s", ifname, e)
            return
        # Up/down: a link that went down left ENETDOWN on the socket, and the loop may
        # have stopped polling it on that error. Clear it and poll again.
        clear_error(port.psock.sock)
        if self.loop is not None:
            self.loop.remove_reader(port.psock.fd)
            self.loop.add_reader(port.psock.fd, self._on_readable, port)
        if self._ra_frame is not None:
            # The RA sent at attach is lost when the port appears down (a migrated VM's tap
            # is brought up after it is created); a change of state sends it again.
            self._advertise(port)

    def detach(self, ifname: str) -> bool:
        port = self.ports.pop(ifname, None)
        if port is None:
            return False
        if self.loop is not None:
            self.loop.remove_reader(port.psock.fd)
        port.psock.close()
        self.migration.port_detached(ifname)
        self.metrics.forget_interface(ifname)
        self.metrics.set_interfaces_attached(len(self.ports))
        log.info("detached %s", ifname)
        return True

    # -- the hot path ------------------------------------------------------------------

    def _on_readable(self, port: Port) -> None:
        """Read and answer a batch. A port on packet rings (one under load: see afpacket)
        goes on while its ring has frames, up to RING_BATCHES batches, and after a busy
        stretch watches the ring for SPIN seconds before it lets the loop sleep: under a
        flood the next frame is microseconds away, and a sleep and a wake-up per batch cost
        more than the frames (measured: a fifth of the flood's time was spent idle)."""
        psock = port.psock
        busy = 0
        for _ in range(RING_BATCHES):
            try:
                frames = psock.recv_batch()
            except OSError as e:
                self._warn_log(logging.WARNING, "receive on %s failed: %s", port.ifname, e)
                return
            try:
                self.process_batch(port, frames, time.time())
            finally:
                psock.flush()  # the batch's replies, in one send (afpacket's TX ring)
            busy += len(frames)
            ready = psock.rx_ready()
            if ready is None:
                return  # no ring: one batch a wake-up (the loop calls again if need be)
            if not ready:
                if busy < SPIN_AFTER or port.ifname not in self.ports:
                    return
                deadline = time.perf_counter() + SPIN
                while not psock.rx_ready():
                    if time.perf_counter() > deadline:
                        return

    def process_batch(self, port: Port, frames: Iterable[bytes], now: float) -> None:
        """Every frame of one batch received on `port` (also `lmdp replay`'s entry point).

        The outcomes of pure responders (ARP, NDP; see `ArpResponder`) are kept by frame and
        reused for the same bytes on the same port, a VM asking for the gateway again, until
        the binding table changes: such a frame costs a dict look-up and the counting, done
        here inline, instead of a decode and a reply build. Every other frame goes through
        `_dispatch`.
        """
        table = self.table
        memo = self._memo
        if self._memo_version != table.version:
            memo.clear()
            self._memo_version = table.version
        memo_get = memo.get
        received, sent, dropped = self._counts
        seen = self.migration.seen
        send = port.psock.send
        ifname = port.ifname
        for frame in frames:
            try:
                # Pure responders' frames are short; DHCP's are not worth hashing.
                entry = memo_get(frame) if len(frame) <= MEMO_MAX_FRAME else None
                if entry is None or entry[0] is not ifname:
                    self._dispatch(port, frame, now)
                    continue
                _, outcome, rx_key, out_key = entry
                received[rx_key] = received.get(rx_key, 0) + 1
                mac = outcome.mac
                if mac is not None:
                    seen(mac, ifname, now)
                reply = outcome.reply
                if reply is None:
                    if out_key is not None:  # a drop
                        dropped[out_key] = dropped.get(out_key, 0) + 1
                elif send(reply):
                    sent[out_key] = sent.get(out_key, 0) + 1
                else:
                    key = (ifname, "tx_busy")
                    dropped[key] = dropped.get(key, 0) + 1
            except Exception:
                # Our bug, not the peer's: count it, show the frame, keep serving everyone else.
                self.metrics.internal_error()
                self._bug_log(
                    logging.ERROR,
                    "internal error on %s handling %s",
                    ifname,
                    frame[:256].hex(),
                    exc_info=True,
                )

    def process(self, port: Port, frame: bytes, now: float) -> None:
        """One frame received on `port`."""
        self.process_batch(port, (frame,), now)

    def _dispatch(self, port: Port, frame: bytes, now: float) -> None:
        """A frame whose outcome is not kept: hand it to its responder, act on the outcome."""
        ifname = port.ifname
        received, sent, dropped = self._counts
        try:
            ethertype = frame[12] << 8 | frame[13]
        except IndexError:
            ethertype = 0
        handler = self._handlers.get(ethertype)
        if handler is not None:
            protocol = self._protocol[ethertype]
        elif ethertype == ETH_P_IPV6:
            if ipv6_next_header(frame) == IPPROTO_ICMPV6:
                handler, protocol = self.ndp.handle, "ndp"
            else:
                handler, protocol = self.dhcp6.handle, "dhcpv6"
        else:
            key = (ifname, "bad_ethertype")
            dropped[key] = dropped.get(key, 0) + 1
            return
        outcome = handler(frame, ifname, now)
        rx_key = (ifname, protocol, outcome.received)
        received[rx_key] = received.get(rx_key, 0) + 1
        drop = outcome.drop
        reply = outcome.reply
        if protocol in self._pure:
            # Kept only when reusable as is (a pure responder never asks for a commit), and
            # only from the second sight on: a frame seen once costs a hash in a set, not a
            # memo entry (measured: that entry made a cold ARP answer a third slower).
            if (
                len(frame) <= MEMO_MAX_FRAME
                and type(frame) is bytes
                and outcome.lease is None
                and outcome.lease6 is None
                and outcome.conflict is None
            ):
                once = self._memo_once
                h = hash(frame)
                if h not in once:
                    if len(once) >= MEMO_LIMIT:
                        once.clear()
                    once.add(h)
                else:
                    if drop is not None:
                        out_key = (ifname, drop)
                    elif reply is not None:
                        out_key = (ifname, outcome.sent or "unknown")
                    else:
                        out_key = None
                    memo = self._memo
                    if len(memo) >= MEMO_LIMIT:
                        memo.clear()
                    memo[frame] = (ifname, outcome, rx_key, out_key)
        elif self._memo_version != self.table.version:
            self._memo.clear()  # the responder entered a binding (a pool allocation)
            self._memo_version = self.table.version
        mac = outcome.mac
        if mac is not None:
            self.migration.seen(mac, ifname, now)
        if drop is not None:
            key = (ifname, drop)
            dropped[key] = dropped.get(key, 0) + 1
            return
        if outcome.conflict is not None:
            # RFC 2131 §4.3.3, RFC 8415 §18.3.8: the client found its address in use.
            self._warn_log(
                logging.WARNING,
                "address conflict: %s declined %s on %s",
                mac_str(outcome.mac) if outcome.mac else "unknown client",
                ipaddress.ip_address(outcome.conflict),
                ifname,
            )
        if reply is None:
            return
        if (outcome.lease is not None or outcome.lease6 is not None) and (
            outcome.commit_first or not self.store_ok
        ):
            # A pool allocation: the reply waits for the store (see `flush`). An OFFER or
            # ADVERTISE waits too while the store is down: none is sent that could not be
            # ACKed, and its commit is what finds the store back.
            self._pending.append((port, outcome))
            self._pending_event.set()
        elif port.psock.send(reply):  # `_transmit`, inline
            key = (ifname, outcome.sent or "unknown")
            sent[key] = sent.get(key, 0) + 1
        else:
            key = (ifname, "tx_busy")
            dropped[key] = dropped.get(key, 0) + 1

    def _transmit(self, port: Port, outcome: Outcome) -> None:
        if port.psock.send(outcome.reply):
            self.metrics.sent(port.ifname, outcome.sent or "unknown")
        else:
            self.metrics.dropped(port.ifname, "tx_busy")

    # -- group commit of pool allocations ----------------------------------------------

    async def committer(self) -> None:
        """Commit pending allocations in one transaction per batch, then send their replies.

        While a commit is in flight, new allocations queue up for the next one; and a commit
        starts at most once per COMMIT_INTERVAL, so that a steady stream of new clients is
        committed in batches too (each commit costs a hand-over to the store's thread and
        back, measured at ~100 µs of CPU besides SQLite's own work). A commit after a quiet
        spell starts at once: an idle server adds no delay.
        """
        last = -COMMIT_INTERVAL
        while True:
            await self._pending_event.wait()
            wait = last + COMMIT_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._pending_event.clear()
            last = time.monotonic()
            await self.flush()

    async def flush(self) -> None:
        """Commit what is pending now in one transaction, then send or refuse its replies."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        # Each reply's leases (a DHCPv6 REPLY may name several new IAs), flat for the store.
        groups = [[o.lease or o.lease6, *o.extra6] for _, o in batch]
        leases = [lease for group in groups for lease in group]
        t0 = time.perf_counter()
        try:
            results = await self.in_store_thread(self.store.commit, leases, time.time())
        except Exception as e:
            self.metrics.store_error()
            if self.store_ok:
                log.error("lease store commit failed: %s; refusing new allocations", e)
            self.store_ok = False
            for (port, _), group in zip(batch, groups, strict=True):
                for lease in group:
                    self._forget(lease)
                # Never a NAK for a slow store: the client asks again, and is answered then.
                self.metrics.dropped(port.ifname, "store_unavailable")
            return
        if not self.store_ok:
            log.info("lease store is back")
        self.store_ok = True
        self.metrics.store_committed(time.perf_counter() - t0, len(leases))
        stored_all = iter(results)
        for (port, o), group in zip(batch, groups, strict=True):
            granted = True
            for asked in group:
                stored = next(stored_all)
                v6 = isinstance(asked, Lease6)
                if stored is None:
                    # Another node took this address first.
                    self._forget(asked)
                    granted = False
                elif (stored.ipv6 != asked.ipv6) if v6 else (stored.ipv4 != asked.ipv4):
                    # The store holds another address for this client: offer that one next.
                    self.table.restore6(stored) if v6 else self.table.restore(stored)
                    granted = False
                else:
                    self.table.confirm6(stored) if v6 else self.table.confirm(stored)
            if port.ifname not in self.ports:
                continue
            if granted:
                self._transmit(port, o)
            elif o.nak is not None and port.psock.send(o.nak):
                # RFC 2131 §4.3.2: the address is not this client's; it starts over at once.
                self.metrics.sent(port.ifname, "DHCPNAK")
            else:
                self.metrics.dropped(port.ifname, "stale_allocation")  # it will ask again

    def _forget(self, lease) -> None:
        """Drop a tentative allocation that will not be committed."""
        if isinstance(lease, Lease6):
            self.table.remove6(lease.duid, lease.iaid)
        else:
            self.table.remove(lease.mac)

    def _count_bindings(self) -> tuple[int, int]:
        """(static, pool) bindings, for `lmdp_bindings` at scrape time."""
        pool = sum(1 for b in self.table.by_mac.values() if b.pool)
        return len(self.table.by_mac) - pool, pool + len(self.table.by_ia)

    # -- periodic router advertisements (ra: true) -------------------------------------

    async def advertiser(self) -> None:
        """RFC 4861 §6.2.4: an unsolicited RA to ff02::1 on every port, at random intervals
        within [MinRtrAdvInterval, MaxRtrAdvInterval]; RS are answered at once by the NDP
        responder. Also one RA on each newly attached port, so a booting guest need not
        wait for its RS to be answered."""
        if self._ra_frame is None:
            return
        while True:
            await asyncio.sleep(ra_delay(self.params, random.random()))
            for port in list(self.ports.values()):
                self._advertise(port)

    def _advertise(self, port: Port) -> None:
        if port.psock.send(self._ra_frame):
            self.metrics.sent(port.ifname, "ra")

    # -- views for /healthz and /leases ------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if not self.store_ok:
            return False, "lease store unavailable"
        return True, f"ok: {len(self.ports)} interfaces attached"

    def leases(self) -> list[dict]:
        out = []
        for b in [*self.table.by_mac.values(), *self.table.by_ia.values()]:
            row = {
                "name": b.name,
                "mac": mac_str(b.mac) if b.mac else None,
                "ipv4": f"{b.ipv4_address}/{b.prefixlen}" if b.ipv4 is not None else None,
                "ipv6": f"{ipaddress.IPv6Address(b.ipv6)}/{b.prefixlen6}" if b.ipv6 else None,
                "kind": "pool" if b.pool else "static",
                "committed": b.durable,
            }
            if b.duid is not None:
                row["duid"], row["iaid"] = b.duid.hex(), b.iaid
            out.append(row)
        return out
