"""Arrival detection and the announce rounds (SPEC "After a live migration").

The store records the node each VM was last seen on. A frame from a bound VM on this node,
when the store names another node, is an arrival (QEMU's RARP right after a migration is
such a frame); so is `lmdp announce`, which a migration controller calls for a VM that may
stay silent. An arrival makes this node the VM's node and starts the announce rounds:
gratuitous ARPs (and NAs) for the VM toward the network, and for the gateway toward the VM.

Per frame, the cost is one dict lookup: the store is asked again only when a VM appears
on a port where it was not seen, or when RECHECK seconds have passed since the last look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocols.announce import AnnounceSchedule, announce_frames
from protocols.bindings import mac_str
from protocols.wire import parse_mac

from .links import claim_mac, forget_mac

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger("lmdp.migration")

__all__ = ["Migration", "RECHECK", "bridge_of", "bridge_ports"]

RECHECK = 5.0  # seconds between store look-ups for a VM that keeps talking here
CHECK_QUEUE = 1024  # arrival checks waiting for the store; more are retried on a later frame
CHECK_BATCH = 256  # arrival checks answered by one store transaction


def bridge_of(ifname: str) -> str | None:
    """The bridge (master device) `ifname` is enslaved to, or None."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{ifname}/master"))
    except OSError:
        return None


def bridge_ports(bridge: str) -> list[str]:
    """The ports enslaved to `bridge`."""
    try:
        return sorted(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except OSError:
        return []


@dataclass(slots=True)
class Sighting:
    ifname: str | None  # the port the VM was last seen on here (None: not known)
    checked: float  # monotonic time of the last store look-up
    last_frame: float  # wall-clock time of the last frame from it here


class Migration:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.node = engine.node
        self.via = engine.config.announce.via
        self.schedule = AnnounceSchedule(engine.config.announce.rounds_ms)
        self.here: dict[bytes, Sighting] = {}
        self._targets: dict[bytes, str | None] = {}  # mac -> port to announce on
        self._checks: asyncio.Queue[tuple[bytes, str, float]] = asyncio.Queue(CHECK_QUEUE)
        self._queued: set[bytes] = set()
        self._wake = asyncio.Event()
        self._tx: dict[str, socket.socket] = {}  # send-only sockets for uplinks/bridges

    # -- the hot path ------------------------------------------------------------------

    def seen(self, mac: bytes, ifname: str, now: float) -> None:
        """A frame from bound VM `mac` arrived on port `ifname`."""
        s = self.here.get(mac)
        if s is not None:
            prior, s.last_frame = s.last_frame, now
            if s.ifname == ifname and time.monotonic() - s.checked < RECHECK:
                return
        else:
            prior = 0.0
        if mac in self._queued or mac not in self.engine.table.by_mac:
            return
        try:
            self._checks.put_nowait((mac, ifname, prior))
            self._queued.add(mac)
        except asyncio.QueueFull:
            pass  # the next frame from this VM asks again

    def port_detached(self, ifname: str) -> None:
        """The VMs seen on a port that went away are no longer known to be here."""
        for mac in [m for m, s in self.here.items() if s.ifname == ifname]:
            del self.here[mac]

    # -- arrival checks (background task) ----------------------------------------------

    def checks_pending(self) -> int:
        """Arrival checks queued or in progress (`lmdp replay` waits for them to finish)."""
        return len(self._queued)

    async def checker(self) -> None:
        """Answer queued arrival checks, a batch at a time: one store transaction asks about
        (and records the first sightings of) every VM queued meanwhile."""
        while True:
            batch = [await self._checks.get()]
            while len(batch) < CHECK_BATCH and not self._checks.empty():
                batch.append(self._checks.get_nowait())
            try:
                await self._check_batch(batch)
            except Exception as e:
                self.engine.metrics.store_error()
                log.warning("arrival check for %d VMs failed: %s", len(batch), e)
            finally:
                for mac, _, _ in batch:
                    self._queued.discard(mac)

    async def _check(self, mac: bytes, ifname: str, prior: float) -> None:
        await self._check_batch([(mac, ifname, prior)])

    async def _check_batch(self, batch: list[tuple[bytes, str, float]]) -> None:
        """Is each VM new here? `prior` is when we last heard it here before this frame."""
        engine = self.engine
        macs = [mac for mac, _, _ in batch]
        recorded = await engine.in_store_thread(
            engine.store.first_sightings, macs, self.node, time.time()
        )
        now = time.time()
        for (mac, ifname, prior), rec in zip(batch, recorded, strict=True):
            if rec is None or rec[0] == self.node:
                # Recorded here already, or a first sighting anywhere (the store recorded it
                # here just now): the VM started here; nothing to correct.
                self.here[mac] = Sighting(ifname, time.monotonic(), now)
                continue
            try:
                await self._elsewhere(mac, ifname, prior, *rec)
            except Exception as e:
                engine.metrics.store_error()
                log.warning("arrival of %s failed: %s", mac_str(mac), e)

    async def _elsewhere(
        self, mac: bytes, ifname: str, prior: float, other_node: str, since: float
    ) -> None:
        """The store names another node for a VM heard here: an arrival, unless we kept
        hearing it here after that node took it."""
        previous = self.here.get(mac)
        if previous is not None and prior > since:
            # Two VMs share this MAC, or a migration left the source running. Warn once per
            # look-up, never fight over it (that would be an announcement storm).
            self.engine.metrics.vm_conflicts.inc()
            log.warning(
                "VM %s is seen on %s port %s while %s has it: duplicate MAC?",
                mac_str(mac),
                self.node,
                ifname,
                other_node,
            )
            previous.checked = time.monotonic()
            return
        await self.arrive(mac, ifname, "frame")

    async def arrive(self, mac: bytes, ifname: str | None, trigger: str) -> int:
        """Make this node the VM's node and start its announce rounds; returns the rounds."""
        engine = self.engine
        now = time.time()
        previous = await engine.in_store_thread(engine.store.set_node, mac, self.node, now)
        self.here[mac] = Sighting(ifname, time.monotonic(), now)
        await self._claim(mac, ifname)
        self._targets[mac] = ifname
        engine.metrics.arrivals.labels(trigger).inc()
        started = self.schedule.start(mac, time.monotonic())
        log.info(
            "VM %s arrived on %s (port %s, was on %s, %s)%s",
            mac_str(mac),
            self.node,
            ifname or "unknown",
            previous or "no node",
            trigger,
            "" if started else "; announcements are off",
        )
        self._wake.set()
        return len(self.schedule.rounds_ms) if started else 0

    async def _claim(self, mac: bytes, ifname: str | None) -> None:
        """Make this node's bridge forward the VM's MAC to its port (see links.claim_mac)."""
        text = mac_str(mac)
        try:
            if ifname is not None:
                if bridge_of(ifname) is not None:
                    await asyncio.to_thread(claim_mac, ifname, text)
                return
            bridges = {b for p in self.engine.ports for b in [bridge_of(p)] if b}
            if bridges:
                await asyncio.to_thread(forget_mac, bridges, text)
        except Exception as e:  # a port that just went away, a bridge without learning
            log.warning("cannot update the bridge for %s on %s: %s", text, ifname, e)

    async def announce(self, mac_text: str, interface: str | None) -> tuple[int, dict]:
        """`lmdp announce`: the HTTP handler behind POST /announce."""
        try:
            mac = parse_mac(mac_text)
        except ValueError:
            return 400, {"error": f"not a MAC address: {mac_text!r}"}
        if self.engine.table.lookup(mac) is None:
            return 404, {"error": f"unknown MAC {mac_str(mac)}: no binding or lease"}
        if interface is not None and interface not in self.engine.ports:
            # The controller may be quicker than our netlink monitor: attach it now.
            if not self.engine.config.interface_matches(interface):
                return 404, {"error": f"interface {interface} is not one lmdp serves"}
            try:
                self.engine.attach(interface)
            except OSError as e:
                return 404, {"error": f"interface {interface}: {e.strerror or e}"}
        if interface is None:
            s = self.here.get(mac)
            interface = s.ifname if s is not None else None
        rounds = await self.arrive(mac, interface, "announce")
        return 200, {"mac": mac_str(mac), "node": self.node, "interface": interface,
                     "rounds": rounds}  # fmt: skip

    # -- the announcer (background task) -----------------------------------------------

    async def announcer(self) -> None:
        while True:
            deadline = self.schedule.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            for mac, _round in self.schedule.due(time.monotonic()):
                try:
                    self.send_round(mac)
                except Exception:
                    self.engine.metrics.internal_error()
                    log.exception("announce round for %s failed", mac_str(mac))

    def send_round(self, mac: bytes) -> None:
        engine = self.engine
        binding = engine.table.lookup(mac)
        if binding is None:
            self.schedule.cancel(mac)
            return
        toward_network, toward_vm = announce_frames(binding, engine.params)
        target = self._targets.get(mac)
        ports = (
            [engine.ports[target]]
            if target in engine.ports
            else list(engine.ports.values())  # a silent VM on an unknown port: every port
        )
        uplinks: set[str] = set()
        for port in ports:
            for frame in toward_vm:
                if port.psock.send(frame):
                    engine.metrics.sent(port.ifname, "announce_gateway")
            if self.via != "auto":
                uplinks.add(self.via)
            elif (bridge := bridge_of(port.ifname)) is not None:
                # Toward the network is every port of the VM's bridge that lmdp does not
                # serve (its uplinks), never the bridge device itself: that would flood the
                # VM's own announcement back down its port, and a learning bridge between
                # there and the guest (KubeVirt's in-pod bridge) would then place the VM's
                # MAC on the wrong side.
                uplinks.update(p for p in bridge_ports(bridge) if p not in engine.ports)
        for uplink in uplinks:
            for frame in toward_network:
                if self._send_via(uplink, frame):
                    engine.metrics.sent(uplink, "announce_vm")
        engine.metrics.announce_rounds.inc()

    def _send_via(self, ifname: str, frame: bytes) -> bool:
        sock = self._tx.get(ifname)
        try:
            if sock is None:
                # Protocol 0: a send-only packet socket, it receives nothing.
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                sock.bind((ifname, 0))
                sock.setblocking(False)
                self._tx[ifname] = sock
            sock.send(frame)
            return True
        except OSError as e:
            log.warning("cannot announce via %s: %s", ifname, e)
            if sock is not None:
                sock.close()
            self._tx.pop(ifname, None)
            return False

    def close(self) -> None:
        for sock in self._tx.values():
            sock.close()
        self._tx.clear()
