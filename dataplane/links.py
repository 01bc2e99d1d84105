"""Follow the interfaces of this network namespace over netlink (pyroute2).

pyroute2's netlink core runs its own asyncio loop, which does not start under uvloop, so the
monitor lives in a thread of its own and hands link events to the engine's loop with
`call_soon_threadsafe`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK, ndmsg

log = logging.getLogger("lmdp.links")

__all__ = ["LinkMonitor", "claim_mac", "current_links", "forget_mac"]


def current_links() -> list[str]:
    with IPRoute() as ipr:
        return [link.get("IFLA_IFNAME") for link in ipr.get_links()]


class LinkMonitor:
    """Calls `on_event("add" | "del", ifname, ifindex)` in the loop's thread via `post`.

    "add" comes for every new link and every change of an existing one (up, down, rename).
    """

    def __init__(self, post: Callable[..., object], on_event: Callable[[str, str, int], None]):
        self._post = post
        self._on_event = on_event
        self._known: dict[int, str] = {}  # ifindex -> name, as told to on_event
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lmdp-netlink", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("netlink monitor did not start")
        if self._error is not None:
            raise self._error

    def _connect(self) -> IPRoute:
        """Subscribe, then dump: a link that appears in between is not missed."""
        ipr = IPRoute()
        ipr.bind(groups=RTMGRP_LINK)
        current = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        for index, name in list(self._known.items()):
            if current.get(index) != name:
                self._emit("del", name, index)  # went away while we were not listening
        for index, name in current.items():
            self._emit("add", name, index)
        return ipr

    def _emit(self, event: str, name: str, index: int) -> None:
        if event == "add":
            self._known[index] = name
        else:
            self._known.pop(index, None)
        self._post(self._on_event, event, name, index)

    def _run(self) -> None:
        try:
            ipr = self._connect()
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        while True:
            try:
                msgs = ipr.get()
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    log.error("netlink monitor stopped: %s", e)
                    return
                # Events were lost (a burst of links overflowed the socket): start over
                # from a fresh dump, attaching and detaching by difference.
                log.warning("netlink events lost (%s); resynchronising the link list", e)
                with contextlib.suppress(Exception):
                    ipr.close()
                try:
                    ipr = self._connect()
                except Exception as e2:
                    log.error("netlink monitor stopped: %s", e2)
                    return
                continue
            except Exception as e:
                log.error("netlink monitor stopped: %s", e)
                return
            for msg in msgs:
                name = msg.get("IFLA_IFNAME")
                if name is None:
                    continue
                if msg["event"] == "RTM_NEWLINK":
                    self._emit("add", name, msg["index"])
                elif msg["event"] == "RTM_DELLINK":
                    self._emit("del", name, msg["index"])


def claim_mac(port: str, mac: str) -> None:
    """Point the port's bridge at `port` for `mac` now, as a learned (dynamic) entry.

    While the VM ran elsewhere, its broadcasts taught this node's bridge that its MAC is
    behind the uplink; a VM that arrives silent would never correct that, and traffic the
    fabric now sends here would be dropped. A dynamic entry ages out like a learned one; a
    permanent one would make the bridge treat the MAC as its own. Blocking: call from a
    worker thread (pyroute2 runs its own event loop).
    """
    with IPRoute() as ipr:
        ifindex = ipr.link_lookup(ifname=port)[0]
        ipr.fdb(
            "replace",
            ifindex=ifindex,
            lladdr=mac,
            state=ndmsg.states["reachable"],
            flags=ndmsg.flags["master"],
        )


def forget_mac(bridges: set[str], mac: str) -> int:
    """Drop what the bridges learned about `mac`, so they flood it until it speaks.

    For an arrival whose port is not known. Returns the entries removed. Blocking.
    """
    removed = 0
    with IPRoute() as ipr:
        masters = {i for b in bridges for i in ipr.link_lookup(ifname=b)}
        for entry in ipr.fdb("dump", lladdr=mac):
            if (
                entry.get("NDA_MASTER") in masters
                and not entry["state"] & ndmsg.states["permanent"]
            ):
                ipr.fdb(
                    "del",
                    ifindex=entry["ifindex"],
                    lladdr=mac,
                    state=entry["state"],
                    flags=ndmsg.flags["master"],
                )
                removed += 1
    return removed
