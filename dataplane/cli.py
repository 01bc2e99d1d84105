"""The `lmdp` command line. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import socket
import sys

from .errors import DEFAULT_HTTP_LISTEN, ConfigError, parse_listen

log = logging.getLogger("lmdp")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2

DEFAULT_CONFIG = "/etc/lmdp/lmdp.yaml"


class Fatal(Exception):
    """A runtime failure reported as one line, exit status 1."""


def _fail(msg: str, code: int) -> int:
    print(f"lmdp: {msg}", file=sys.stderr)
    return code


def _load(path: str):
    from .config import load_config  # pydantic: imported only by commands that validate

    return load_config(path)


def _glob(name: str) -> bool:
    return any(c in name for c in "*?[")


# -- serve -------------------------------------------------------------------------------


def freeze_startup_objects() -> None:
    """Exempt what start-up built (config, bindings, modules) from garbage collection.

    It lives as long as the process; left in the collector's oldest generation, it is walked
    by every full collection, and the objects the hot path keeps (reused answers) trigger
    those: measured with `lmdp replay`, ARP answers built anew went from 190,000/s to
    370,000/s on a 1000-VM config.
    """
    import gc

    gc.collect()
    gc.freeze()


def _check_packet_socket_allowed() -> None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError as e:
        raise Fatal(
            "cannot open a packet socket: run as root or grant CAP_NET_RAW and CAP_NET_ADMIN"
        ) from e


async def _serve(config) -> None:
    import asyncio

    from .engine import Engine
    from .http import start_http
    from .links import LinkMonitor

    loop = asyncio.get_running_loop()
    engine = Engine(config)
    engine.loop = loop
    try:
        restored = engine.open_store()
    except Exception as e:
        raise Fatal(f"store.path: cannot open lease store {config.store.path}: {e}") from e
    freeze_startup_objects()

    def on_link(event: str, name: str, ifindex: int) -> None:
        engine.link_changed(event, name, ifindex, config.interface_matches(name))

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    server = None
    try:
        monitor = LinkMonitor(loop.call_soon_threadsafe, on_link)
        await asyncio.to_thread(monitor.start)
        await asyncio.sleep(0.05)  # let the initial link dump's callbacks run
        present = {n for _, n in socket.if_nameindex()}
        missing = [n for n in config.interfaces if not _glob(n) and n not in present]
        if missing:
            raise Fatal(f"interfaces: no such interface: {', '.join(missing)}")
        if config.http.listen:
            try:
                server = await start_http(
                    config.http.listen,
                    engine.metrics,
                    engine.health,
                    engine.leases,
                    engine.migration.announce,
                )
            except OSError as e:
                raise Fatal(f"http.listen: cannot listen on {config.http.listen}: {e}") from e
        log.info(
            "lmdp serving on node %s: %d bindings (%d leases restored), %d interfaces, http %s",
            config.node,
            len(engine.table),
            restored,
            len(engine.ports),
            config.http.listen or "off",
        )
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(engine.committer()),
                tg.create_task(engine.migration.checker()),
                tg.create_task(engine.migration.announcer()),
                tg.create_task(engine.advertiser()),
            ]
            await stop.wait()
            for task in tasks:
                task.cancel()
        # Allocations already decided are committed and answered, not lost.
        await engine.flush()
        log.info("stopping")
    finally:
        if server is not None:
            server.close()
        engine.close()


def cmd_serve(args) -> int:
    import asyncio

    import uvloop

    config = _load(args.config)
    _check_packet_socket_allowed()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(config))
    return EXIT_OK


# -- other commands ----------------------------------------------------------------------


def cmd_check_config(args) -> int:
    import yaml

    config = _load(args.config)
    sys.stdout.write(yaml.safe_dump(config.effective(), sort_keys=False))
    return EXIT_OK


def cmd_leases(args) -> int:
    from .stores.sqlite import SqliteLeaseStore

    config = _load(args.config)
    store = SqliteLeaseStore(config.store.path)
    try:
        store.open()
        rows = store.all_leases()
    except Exception as e:
        raise Fatal(f"store.path: cannot read lease store {config.store.path}: {e}") from e
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no leases")
        return EXIT_OK
    import datetime

    print(f"{'MAC':<18} {'ADDRESS':<24} {'NODE':<16} {'UPDATED':<20} CLIENT")
    for r in rows:
        ts = datetime.datetime.fromtimestamp(r["updated"], datetime.UTC).strftime(
            "%Y-%m-%d %H:%M:%SZ"
        )
        address = r.get("ipv4") or r.get("ipv6")
        client = f"duid {r['duid']} iaid {r['iaid']}" if "duid" in r else ""
        print(f"{r['mac'] or '-':<18} {address:<24} {r['node'] or '-':<16} {ts:<20} {client}")
    return EXIT_OK


class UsageError(Exception):
    """Bad usage reported as one line, exit status 2."""


def _http_listen(path: str) -> str | None:
    """The daemon's `http.listen`, read without the validator (see errors.py)."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML") from e
    http = data.get("http", {}) if isinstance(data, dict) else {}
    if http is None:
        return None
    listen = http.get("listen", DEFAULT_HTTP_LISTEN) if isinstance(http, dict) else None
    if listen is not None and not isinstance(listen, str):
        raise ConfigError(f"http.listen: expected host:port, got {listen!r}")
    return listen or None


def cmd_announce(args) -> int:
    """POST /announce to the running daemon. Kept light: it runs during a migration."""
    import http.client
    import urllib.parse

    from protocols.wire import parse_mac

    try:
        mac = parse_mac(args.mac)
    except ValueError as e:
        raise UsageError(f"MAC: not a MAC address: {args.mac!r}") from e
    listen = _http_listen(args.config)
    if not listen:
        raise UsageError("http.listen: lmdp announce talks to the daemon over HTTP; it is off")
    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise ConfigError(f"http.listen: {e}") from e
    host = {None: "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    query = {"mac": ":".join(f"{b:02x}" for b in mac)}
    if args.interface:
        query["interface"] = args.interface
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("POST", f"/announce?{urllib.parse.urlencode(query)}")
        response = conn.getresponse()
        status, body = response.status, response.read()
        conn.close()
    except OSError as e:
        raise Fatal(f"cannot reach the lmdp daemon at {where}: {e.strerror or e}") from e
    try:
        reply = json.loads(body)
    except ValueError:
        reply = {"error": body.decode(errors="replace").strip()}
    if status in (400, 404):
        raise UsageError(f"announce: {reply.get('error', status)}")
    if status != 200:
        raise Fatal(f"announce: the daemon answered {status}: {reply.get('error', '')}")
    print(
        f"announced {reply['mac']} on {reply['node']}"
        f" (port {reply['interface'] or 'unknown: all ports'}, {reply['rounds']} rounds)"
    )
    return EXIT_OK


def cmd_lab(args) -> int:
    if args.dual_stack and args.client == "udhcpc":
        return _fail("lab demo: --dual-stack needs dhclient or dhcpcd (DHCPv6)", EXIT_USAGE)
    if args.simple:
        if args.router_mode != "link-local":
            return _fail(
                "lab demo: --router-mode subnet is a migration demo, not --simple", EXIT_USAGE
            )
        from .lab import run_demo

        return run_demo(client=args.client, keep=args.keep, dual_stack=args.dual_stack)
    from .labmigration import run_migration_demo

    if args.client == "udhcpc":
        return _fail("lab demo: the migration demo needs dhclient or dhcpcd", EXIT_USAGE)
    if args.hops < 1:
        return _fail("lab demo: --hops must be at least 1", EXIT_USAGE)
    return run_migration_demo(
        client=args.client,
        keep=args.keep,
        hops=args.hops,
        announce=not args.no_announce,
        router_mode=args.router_mode,
        dual_stack=args.dual_stack,
    )


def cmd_replay(args) -> int:
    from .replay import (
        CaptureError,
        Progress,
        builtin_config,
        format_report,
        read_capture,
        replay,
        write_capture,
    )

    if args.repeat < 1:
        raise UsageError("--repeat: must be at least 1")
    config = _load(args.config) if args.config else builtin_config()
    try:
        frames = read_capture(args.pcap)
    except CaptureError as e:
        raise UsageError(f"PCAP: {e}") from e
    progress = None if args.quiet else Progress()
    result = replay(
        frames, config, passes=args.repeat, record=args.write is not None, progress=progress
    )
    if progress is not None:
        progress.finish()
    if args.write is not None:
        try:
            write_capture(args.write, result.replies)
        except OSError as e:
            raise Fatal(f"-w: cannot write {args.write}: {e.strerror or e}") from e
    if args.json:
        print(json.dumps({"capture": args.pcap, **result.to_json()}, indent=2))
    else:
        print(format_report(args.pcap, result))
    if result.internal_errors:
        errors = result.internal_errors
        return _fail(f"replay: {errors} internal errors (see the log)", EXIT_RUNTIME)
    return EXIT_OK


# -- entry point -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lmdp",
        description="Live-migration dataplane: DHCPv4 server and ARP gateway proxy for VMs.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run the daemon in the foreground")
    s.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("check-config", help="validate and print the effective config")
    s.add_argument("config", help="YAML config file")
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser(
        "replay", help="run a capture through the responders without sockets, report rates"
    )
    s.add_argument("pcap", metavar="PCAP", help="pcap or pcapng file of Ethernet frames")
    s.add_argument(
        "-c", "--config", help="YAML config (default: the built-in one of the benchmarks)"
    )
    s.add_argument("-w", "--write", metavar="OUT.pcap", help="write the replies to a pcap")
    s.add_argument("--repeat", type=int, default=1, metavar="N", help="run the capture N times (1)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("leases", help="list leases from the configured store")
    s.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="YAML config file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_leases)

    s = sub.add_parser("announce", help="announce a VM now, as after a migration")
    s.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="the daemon's YAML config")
    s.add_argument("mac", help="the VM's MAC address")
    s.add_argument("-i", "--interface", help="the VM's port (default: where it was last seen)")
    s.set_defaults(func=cmd_announce)

    s = sub.add_parser("lab", help="network-namespace lab")
    labsub = s.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    labsub.required = True
    d = labsub.add_parser(
        "demo",
        help="migrate a VM with a real DHCP client and a live TCP stream across three nodes",
    )
    d.add_argument(
        "--client",
        choices=["auto", "dhclient", "dhcpcd", "udhcpc"],
        default="auto",
        help="DHCP client to run in the VM (auto: dhclient if present, else dhcpcd; "
        "udhcpc only with --simple and without --dual-stack)",
    )
    d.add_argument("--keep", action="store_true", help="leave the namespaces up (debugging)")
    d.add_argument(
        "--hops", type=int, default=3, help="migrations to make, A -> B -> C -> A ... (3)"
    )
    d.add_argument(
        "--no-announce",
        action="store_true",
        help="turn lmdp's announcements off (announce.rounds_ms: []) to compare downtimes",
    )
    d.add_argument(
        "--router-mode",
        choices=["link-local", "subnet"],
        default="link-local",
        help="link-local: router 169.254.1.1 at one gateway MAC everywhere (default); "
        "subnet: router 10.244.2.1 at a different gateway MAC per node, as current "
        "OVN-Kubernetes, measuring the VM's outage toward its gateway after each hop",
    )
    d.add_argument(
        "--simple",
        action="store_true",
        help="one node and one VM, no migration: address, routes, gateway, DNS and MTU",
    )
    d.add_argument(
        "--dual-stack",
        action="store_true",
        help="give the VM IPv6 too: binding fd00:10:244:2::1a/64, lmdp's RAs (ra: true) and "
        "an IPv6 DNS server; the VM runs a DHCPv6 client beside the DHCPv4 one (dhclient -6, "
        "or dhcpcd -6 with --client dhcpcd) and shows its IPv6 address, default via fe80::1 "
        "and the gateway's MAC; each hop also measures the peer's IPv6 downtime, renews "
        "over DHCPv6 and checks that the VM sent nothing on its own while cut off",
    )
    d.set_defaults(func=cmd_lab)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (ConfigError, UsageError) as e:
        return _fail(str(e), EXIT_USAGE)
    except Fatal as e:
        return _fail(str(e), EXIT_RUNTIME)
    except KeyboardInterrupt:
        return EXIT_RUNTIME
    except OSError as e:
        if os.geteuid() != 0 and e.errno in (errno.EPERM, errno.EACCES):
            return _fail(f"{e.strerror}: run as root", EXIT_RUNTIME)
        return _fail(str(e), EXIT_RUNTIME)


if __name__ == "__main__":
    sys.exit(main())
