"""The network-namespace lab: nodes, VMs and real DHCP clients, all torn down afterwards.

Everything lives in namespaces named with a per-run prefix; nothing touches the host's own
interfaces. Processes started here are stopped by their PID, never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Lab", "LabError", "VmClient", "run_demo"]

NETNS_ETC = Path("/etc/netns")


class LabError(Exception):
    pass


def _run(cmd: list[str], check: bool = True, timeout: float = 30, **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


@dataclass
class Lab:
    """A set of namespaces with a unique prefix; use as a context manager."""

    prefix: str = field(default_factory=lambda: f"lmdp{os.getpid() % 10000}{secrets.token_hex(2)}")
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    pidfiles: list[Path] = field(default_factory=list)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lmdp-lab-")))

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    # -- namespaces ----------------------------------------------------------------------

    def netns(self, short: str) -> str:
        """Create namespace `<prefix>-<short>` with loopback up and a private resolv.conf."""
        name = f"{self.prefix}-{short}"
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        # `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc: clients that rewrite
        # /etc/resolv.conf write this file, never the host's.
        d = NETNS_ETC / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text("")
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args: str) -> str:
        return _run(["ip", "-n", ns, *args])

    def exec(self, ns: str, *cmd: str, check: bool = True, timeout: float = 30) -> str:
        return _run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)

    def popen(self, ns: str, *cmd: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)
        self.procs.append(p)
        return p

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str, mac_b: str | None = None):
        """A veth pair created directly inside the namespaces (never in the host's)."""
        _run(["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
              "netns", ns_b])  # fmt: skip
        if mac_b:
            self.ip(ns_b, "link", "set", name_b, "address", mac_b)
        self.ip(ns_a, "link", "set", name_a, "up")
        self.ip(ns_b, "link", "set", name_b, "up")

    def resolv_conf(self, ns: str) -> str:
        return (NETNS_ETC / ns / "resolv.conf").read_text()

    # -- teardown ------------------------------------------------------------------------

    def stop(self, p: subprocess.Popen, timeout: float = 5) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)

    def stop_processes(self) -> None:
        """Stop every process this lab started, by the PID it has for it."""
        for pidfile in self.pidfiles:
            # Daemons that forked (dhclient): the PID they wrote is the one we started.
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
        self.pidfiles.clear()
        for p in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(p)
        self.procs.clear()

    def teardown(self) -> None:
        self.stop_processes()
        for ns in reversed(self.namespaces):
            # Anything still inside dies with the namespace's interfaces; delete the netns.
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- real DHCP clients ----------------------------------------------------------------------

DHCLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
send host-name = gethostname();
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        domain-search, host-name, interface-mtu, rfc3442-classless-static-routes;
"""

DHCPCD_CONF = """\
# lmdp lab: IPv4 only, no IPv4LL fallback, apply MTU and classless routes
noipv4ll
noipv6rs
ipv4only
option domain_name_servers, domain_name, domain_search, host_name
option classless_static_routes, interface_mtu
require dhcp_server_identifier
"""


def client_available(name: str) -> bool:
    return shutil.which(name) is not None


def spawn_dhcpcd(
    lab: Lab, ns: str, ifname: str, family: str, conf: Path, timeout: float
) -> subprocess.Popen:
    """dhcpcd (`family` "-4" or "-6") in the foreground (-B: we own its PID). It keeps its
    leases, DUID and control sockets in fixed host paths: this run gets private ones
    (`ip netns exec` runs it in a mount namespace of its own), so VMs never see each other's."""
    private = (
        "for d in /var/lib/dhcpcd /run/dhcpcd; do mkdir -p $d && "
        'mount -t tmpfs lmdp-lab $d || exit 1; done; exec "$@"'
    )
    return lab.popen(
        ns, "sh", "-c", private, "sh", "dhcpcd", "-B", family, "-f", str(conf),
        "-t", str(int(timeout)), ifname,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@dataclass
class VmClient:
    """Runs one real DHCP client inside a VM namespace and stops it afterwards."""

    lab: Lab
    ns: str
    kind: str
    ifname: str = "eth0"
    conf: str | None = None  # the client's config text; default DHCLIENT_CONF / DHCPCD_CONF
    proc: subprocess.Popen | None = None

    def _path(self, name: str) -> Path:
        return self.lab.workdir / f"{self.ns}-{self.kind}-{name}"

    def start(self, timeout: float = 30) -> str:
        """Run the client until it is bound; returns its output."""
        if self.kind == "dhclient":
            conf = self._path("dhclient.conf")
            conf.write_text(self.conf or DHCLIENT_CONF)
            pidfile = self._path("dhclient.pid")
            if pidfile not in self.lab.pidfiles:
                self.lab.pidfiles.append(pidfile)
            # -1: try once and fail rather than retry forever; it forks once bound.
            return self.lab.exec(
                self.ns, "dhclient", "-1", "-v", "-cf", str(conf), "-lf",
                str(self._path("dhclient.leases")), "-pf", str(pidfile), self.ifname,
                timeout=timeout,
            )  # fmt: skip
        if self.kind == "dhcpcd":
            conf = self._path("dhcpcd.conf")
            conf.write_text(self.conf or DHCPCD_CONF)
            self.proc = spawn_dhcpcd(self.lab, self.ns, self.ifname, "-4", conf, timeout)
            return ""
        if self.kind == "udhcpc":
            return self.lab.exec(
                self.ns, "udhcpc", "-i", self.ifname, "-f", "-q", "-n", "-t", "5", "-T", "2",
                "-O", "121", "-O", "26", "-x", "hostname:vm",
                timeout=timeout,
            )  # fmt: skip
        raise LabError(f"unknown DHCP client {self.kind}")

    def renew(self, timeout: float = 30) -> str:
        """Ask for the current lease again now, as a guest does after a migration, without
        ever deconfiguring the address.

        dhclient has no "renew now": stop the running one (SIGTERM by its pidfile leaves the
        address alone, unlike `-x`, whose STOP hook flushes it) and start it again with the
        same lease file, which makes it send an INIT-REBOOT REQUEST for its address.
        dhcpcd: `dhcpcd -N` through its control socket (in the private mount namespace
        it runs in) makes it send a RENEWING REQUEST, unicast to the server identifier.
        """
        return _renew(self, "-4", timeout)

    def received_dns(self) -> list[str]:
        """The DNS servers in the client's current lease (dhclient, dhcpcd), whatever the
        resolv.conf says: with a DHCPv6 client beside it, the one that configured last
        wrote that file."""
        return _lease_dns(self, "dhclient.leases", "domain-name-servers", "-4",
                          "domain_name_servers")  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)
            self.proc = None
        if self.kind == "dhclient":
            self.lab.exec(
                self.ns, "dhclient", "-x", "-pf", str(self._path("dhclient.pid")),
                "-lf", str(self._path("dhclient.leases")), self.ifname, check=False,
            )  # fmt: skip


def _lease_dns(client, lease_name: str, option: str, family: str, variable: str) -> list[str]:
    """DNS servers from a client's lease: dhclient's lease file (the last `option` line),
    or `dhcpcd -U` (its lease, read in the private mount namespace it runs in)."""
    if client.kind == "dhclient":
        path = client._path(lease_name)
        text = path.read_text() if path.exists() else ""
        found = re.findall(rf"option {re.escape(option)} ([^;]+);", text)
        return [a.strip() for a in found[-1].split(",")] if found else []
    if client.kind == "dhcpcd" and client.proc is not None:
        out = _run(["nsenter", "-t", str(client.proc.pid), "-m", "-n",
                    "dhcpcd", "-U", family, client.ifname], check=False)  # fmt: skip
        for line in out.splitlines():
            key, _, value = line.partition("=")
            if key == variable:
                return value.strip("'\"").split()
    return []


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie has finished: its parent just has not reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _renew(client, family: str, timeout: float) -> str:
    """VmClient.renew / Dhcp6Client.renew: dhclient is restarted on its lease file (SIGTERM
    by its pidfile leaves the address alone), dhcpcd is told `-N` in its mount namespace."""
    if client.kind == "dhclient":
        pidfile = client._path("dhclient.pid")
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not _alive(pid), 5, 0.01, f"dhclient {family} {pid} to stop")
        return client.start(timeout)
    if client.kind == "dhcpcd" and client.proc is not None:
        return _run(
            ["nsenter", "-t", str(client.proc.pid), "-m", "-n",
             "dhcpcd", "-N", family, client.ifname],
            timeout=timeout,
        )  # fmt: skip
    raise LabError(f"renew is not supported for {client.kind} {family}")


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def ipv4_addresses(lab: Lab, ns: str, ifname: str = "eth0") -> list[str]:
    out = json.loads(lab.exec(ns, "ip", "-j", "-4", "addr", "show", "dev", ifname))
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in out
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    ]


def effective_mtu(lab: Lab, ns: str, ifname: str = "eth0") -> int:
    """The MTU the VM's packets get: dhclient sets the interface's, dhcpcd sets it on every
    route it installs (`mtu 1400`), which takes precedence over the interface's."""
    link = json.loads(lab.exec(ns, "ip", "-j", "link", "show", ifname))[0]
    routes = json.loads(lab.exec(ns, "ip", "-j", "-4", "route", "show", "dev", ifname))
    route_mtus = {r.get("metrics", [{}])[0].get("mtu") for r in routes if r.get("metrics")}
    if (
        len(route_mtus) == 1
        and None not in route_mtus
        and len(routes) == sum(1 for r in routes if r.get("metrics"))
    ):
        return route_mtus.pop()
    return link["mtu"]


def resolve_gateway(lab: Lab, ns: str, gateway: str = "169.254.1.1") -> str:
    """Make the VM's kernel resolve its gateway (one UDP datagram) and return `ip neigh`."""
    send = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.sendto(b'lmdp', ('{gateway}', 9))"
    )
    lab.exec(ns, sys.executable, "-c", send, check=False)

    def resolved() -> str:
        out = lab.exec(ns, "ip", "neigh", "show", gateway)
        return out if "lladdr" in out else ""

    try:
        return wait_for(resolved, 3, 0.05, f"a neighbour entry for {gateway}")
    except LabError:
        return lab.exec(ns, "ip", "neigh", "show", gateway)


# -- real DHCPv6 clients ---------------------------------------------------------------------

# dhclient -6: `timeout` bounds a `-1` run that gets no answer (its default is 60 s).
DHCLIENT6_CONF = """\
timeout {timeout};
request dhcp6.name-servers, dhcp6.domain-search;
"""

# lmdp sends no RA by default (as OVN), so nothing would ever set the M flag that starts
# dhcpcd's DHCPv6: `noipv6rs` with an `ia_na` makes it solicit an address at once.
DHCPCD6_CONF = """\
# lmdp lab: DHCPv6 only, an address at once, no router solicitation
ipv6only
noipv6rs
ia_na
option dhcp6_name_servers, dhcp6_domain_search
"""

# With `ra: true`: dhcpcd solicits a router itself and starts DHCPv6 (IA_NA) on the RA's
# M flag; it installs the default route from the RA (and turns the kernel's accept_ra off).
DHCPCD6_RA_CONF = """\
# lmdp lab: DHCPv6 only, started by the M flag of lmdp's router advertisement
ipv6only
option dhcp6_name_servers, dhcp6_domain_search
"""


def prepare_ipv6(lab: Lab, ns: str, ifname: str = "eth0", accept_ra: bool = True) -> None:
    """Make a VM namespace's IPv6 ready at once: no DAD (so the link-local address a DHCPv6
    client binds to, and the address it is given, are usable immediately), router
    solicitations every second at first, and the kernel's RA processing on or off.

    The link is cycled so that its link-local address is made again without DAD; this also
    makes the kernel send a Router Solicitation (to lmdp if it is running)."""
    lab.ip(ns, "link", "set", ifname, "down")
    settings = {
        "disable_ipv6": 0,
        "accept_dad": 0,
        "accept_ra": int(accept_ra),
        "router_solicitation_delay": 0,
        "router_solicitation_interval": 1,
    }
    lab.exec(ns, "sysctl", "-qw",
             *(f"net.ipv6.conf.{ifname}.{k}={v}" for k, v in settings.items()))  # fmt: skip
    lab.ip(ns, "link", "set", ifname, "up")
    wait_for(lambda: ipv6_addresses(lab, ns, ifname, scope="link"), 5, 0.02,
             f"a link-local address on {ns} {ifname}")  # fmt: skip


def ipv6_addresses(
    lab: Lab, ns: str, ifname: str = "eth0", scope: str = "global", tentative: bool = False
) -> list[str]:
    """`addr/prefixlen` of the interface's IPv6 addresses of `scope` ("global", "link");
    tentative ones (DAD not done) only with `tentative`."""
    out = json.loads(lab.exec(ns, "ip", "-j", "-6", "addr", "show", "dev", ifname))
    return [
        f"{a['local']}/{a['prefixlen']}"
        for link in out
        for a in link.get("addr_info", [])
        if a.get("family") == "inet6"
        and a.get("scope") == scope
        and (tentative or not a.get("tentative"))
    ]


def ipv6_default_routes(lab: Lab, ns: str) -> list[str]:
    """`via dev` of each IPv6 default route, e.g. ["fe80::1 eth0"]."""
    routes = json.loads(lab.exec(ns, "ip", "-j", "-6", "route", "show", "default"))
    return [f"{r.get('gateway', '')} {r.get('dev', '')}" for r in routes]


@dataclass
class Dhcp6Client:
    """Runs `dhclient -6` or `dhcpcd -6` in a VM namespace (with private lease, DUID and
    pid files) and stops it afterwards.

    `ra`: dhcpcd waits for a Router Advertisement with the M flag (lmdp's `ra: true`)
    instead of soliciting at once; dhclient never looks at RAs (the kernel does)."""

    lab: Lab
    ns: str
    kind: str  # "dhclient" or "dhcpcd"
    ifname: str = "eth0"
    ra: bool = False
    conf: str | None = None
    proc: subprocess.Popen | None = None

    def _path(self, name: str) -> Path:
        return self.lab.workdir / f"{self.ns}-{self.kind}6-{name}"

    @property
    def lease_file(self) -> Path:
        return self._path("dhclient.leases")

    def start(self, timeout: float = 20) -> str:
        """dhclient: run until bound (it forks then; returns its output). dhcpcd: start it
        in the foreground and return at once (wait for the address)."""
        if self.kind == "dhclient":
            conf = self._path("dhclient.conf")
            conf.write_text(self.conf or DHCLIENT6_CONF.format(timeout=int(timeout)))
            pidfile = self._path("dhclient.pid")
            if pidfile not in self.lab.pidfiles:
                self.lab.pidfiles.append(pidfile)
            # -1: one try (bounded by `timeout` in the config); the DUID it makes is kept
            # in the lease file, so it is this VM's own.
            return self.lab.exec(
                self.ns, "dhclient", "-6", "-1", "-v", "-cf", str(conf),
                "-lf", str(self.lease_file), "-pf", str(pidfile), self.ifname,
                timeout=timeout + 10,
            )  # fmt: skip
        if self.kind == "dhcpcd":
            conf = self._path("dhcpcd.conf")
            conf.write_text(self.conf or (DHCPCD6_RA_CONF if self.ra else DHCPCD6_CONF))
            self.proc = spawn_dhcpcd(self.lab, self.ns, self.ifname, "-6", conf, timeout)
            return ""
        raise LabError(f"unknown DHCPv6 client {self.kind}")

    def renew(self, timeout: float = 10) -> str:
        """Ask for the current lease again now, without deconfiguring the address.

        dhcpcd: `dhcpcd -N -6` makes it send a RENEW now (dhcpcd can lose the signal behind
        it while a hook runs: check that the RENEW went out). dhclient -6 has no "renew
        now" (give it a short lease, it renews at T1 = half of it); here it is stopped
        (SIGTERM by its pidfile leaves the address alone) and started again with the same
        lease file, which makes it ask for its address again at once."""
        return _renew(self, "-6", timeout)

    def received_dns(self) -> list[str]:
        """The IPv6 DNS servers in the client's lease (see VmClient.received_dns)."""
        return _lease_dns(self, "dhclient.leases", "dhcp6.name-servers", "-6",
                          "dhcp6_name_servers")  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.stop(self.proc)
            self.proc = None
        if self.kind == "dhclient":
            self.lab.exec(
                self.ns, "dhclient", "-6", "-x", "-pf", str(self._path("dhclient.pid")),
                "-lf", str(self.lease_file), self.ifname, check=False,
            )  # fmt: skip


# -- lmdp inside a node namespace -----------------------------------------------------------


@dataclass
class LmdpProcess:
    lab: Lab
    ns: str
    config_path: Path
    http: str = "127.0.0.1:9464"
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    env: dict[str, str | None] | None = None  # changes to lmdp's environment; None: unset

    def start(self, timeout: float = 15, wait: bool = True) -> None:
        """Start lmdp; with `wait`, return once it answers /healthz (else `wait_healthy`)."""
        self.log_path = self.config_path.with_suffix(".log")
        logf = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        environ = dict(os.environ)
        for key, value in (self.env or {}).items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        self.proc = self.lab.popen(
            self.ns, sys.executable, "-m", "dataplane.cli", "serve", "-c", str(self.config_path),
            stdout=logf, stderr=subprocess.STDOUT, env=environ,
        )  # fmt: skip
        logf.close()
        if wait:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 15) -> None:
        wait_for(self._healthy, timeout, 0.1, f"lmdp in {self.ns} to become healthy")

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise LabError(f"lmdp exited with {self.proc.returncode}:\n{self.log()}")
        return self.get("/healthz", check=False).startswith("ok")

    def get(self, path: str, check: bool = True) -> str:
        code = (
            "import sys,urllib.request\n"
            "try:\n"
            f"  print(urllib.request.urlopen('http://{self.http}{path}', timeout=2).read()"
            ".decode(), end='')\n"
            "except Exception as e:\n"
            "  print('error', e); sys.exit(1)\n"
        )
        # -I -S: no site-packages or user paths to set up (stdlib only): 40 ms, not 110.
        return self.lab.exec(self.ns, sys.executable, "-I", "-S", "-c", code, check=check)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return metric_sum(self.get("/metrics"), name, **labels)

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.lab.stop(self.proc)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named `name` (e.g. `lmdp_drops_total`) in a Prometheus text page
    whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def write_config(path: Path, **overrides) -> Path:
    import yaml

    config = {
        "node": "node-a",
        "interfaces": ["tap*"],
        "dns": {"servers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]},
        "mtu": 1400,
        "bindings": [
            {"name": "fedora", "mac": "0a:58:0a:f4:02:1a", "ipv4": "10.244.2.26/24"},
        ],
        "store": {"backend": "sqlite", "path": str(path.with_suffix(".db"))},
        "http": {"listen": "127.0.0.1:9464"},
    }
    config.update(overrides)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- the demo ---------------------------------------------------------------------------------

VM_MAC = "0a:58:0a:f4:02:1a"
# --dual-stack: the binding's IPv6 address (given as a /128), lmdp's gateway, the DNS server.
VM_IP6 = "fd00:10:244:2::1a"
GATEWAY_IP6 = "fe80::1"
GATEWAY_MAC = "0a:58:a9:fe:01:01"
DNS_IP6 = "fd00:10:96::a"


def _section(title: str, body: str) -> None:
    print(f"\n== {title}")
    print(body.rstrip() or "(empty)")


def _resolve_gateway6(lab: Lab, ns: str) -> str:
    """`ip -6 neigh` for fe80::1 in the VM: made by lmdp's RA (its source link-layer
    address), or else asked for with one datagram (lmdp answers the kernel's NS)."""

    def entry() -> str:
        out = lab.exec(ns, "ip", "-6", "neigh", "show", GATEWAY_IP6, "dev", "eth0")
        return out if "lladdr" in out else ""

    if not entry():
        send = (
            "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
            f"s.sendto(b'lmdp', ('{GATEWAY_IP6}', 9, 0, socket.if_nametoindex('eth0')))"
        )
        lab.exec(ns, sys.executable, "-c", send, check=False)
        with contextlib.suppress(LabError):
            wait_for(entry, 3, 0.05, f"a neighbour entry for {GATEWAY_IP6}")
    return lab.exec(ns, "ip", "-6", "neigh", "show", GATEWAY_IP6, "dev", "eth0")


def run_demo(client: str = "auto", keep: bool = False, dual_stack: bool = False) -> int:
    """One node, one VM, no migration. `dual_stack`: the binding has an IPv6 address too,
    lmdp sends RAs and has an IPv6 DNS server, and the VM runs a DHCPv6 client beside the
    DHCPv4 one (the same software: dhclient -6 or dhcpcd -6)."""
    if os.geteuid() != 0:
        print("lmdp: the lab needs root (network namespaces)", file=sys.stderr)
        return 1
    kinds = ("dhclient", "dhcpcd") if dual_stack else ("dhclient", "dhcpcd", "udhcpc")
    if client == "auto":
        client = next((c for c in kinds if client_available(c)), "")
        if not client:
            print(f"lmdp: no DHCP client found ({', '.join(kinds)})", file=sys.stderr)
            return 1
    if client not in kinds:
        print(f"lmdp: --dual-stack needs {' or '.join(kinds)} (DHCPv6)", file=sys.stderr)
        return 1
    lab = Lab()
    checks: list[tuple[str, bool, str]] = []
    try:
        node = lab.netns("node-a")
        vm = lab.netns("vm-fedora")
        lab.veth(node, "tap0", vm, "eth0", mac_b=VM_MAC)
        print(f"lab {lab.prefix}: node {node}, VM {vm} ({VM_MAC}) on tap0")
        v6 = {}
        if dual_stack:
            v6 = {
                "bindings": [{"name": "fedora", "mac": VM_MAC, "ipv4": "10.244.2.26/24",
                              "ipv6": f"{VM_IP6}/64"}],
                "dns": {"servers": ["10.96.0.10", DNS_IP6],
                        "search": ["default.svc.cluster.local"]},
                "ra": True,
            }  # fmt: skip
            # The kernel takes lmdp's RA for dhclient; dhcpcd takes it itself.
            prepare_ipv6(lab, vm, accept_ra=client == "dhclient")
        lmdp = LmdpProcess(lab, node, write_config(lab.workdir / "node-a.yaml", **v6))
        lmdp.start()
        print(
            f"lmdp serving in {node}"
            + (f" (IPv6 too: {VM_IP6}/64, RAs on)" if dual_stack else "")
            + f"; running {client}{' (-4 and -6)' if dual_stack else ''} in the VM"
        )
        t0 = time.monotonic()
        vc = VmClient(lab, vm, client)
        vc.start()
        v6c = None
        if dual_stack:
            # dhclient -6 returns once bound, dhcpcd -6 at once (DHCPv6 on the RA's M flag).
            v6c = Dhcp6Client(lab, vm, client, ra=True)
            v6c.start()
        addrs = wait_for(lambda: ipv4_addresses(lab, vm), 30, what="the VM's address")
        if dual_stack:
            wait_for(lambda: ipv6_addresses(lab, vm, tentative=True), 30, 0.05,
                     "the VM's IPv6 address")  # fmt: skip
            wait_for(lambda: ipv6_default_routes(lab, vm), 10, 0.05, "an IPv6 default route")
        print(f"bound in {time.monotonic() - t0:.2f}s")
        routes = lab.exec(vm, "ip", "route")
        arping = lab.exec(
            vm, "arping", "-c", "1", "-w", "2", "-I", "eth0", "169.254.1.1", check=False
        )
        neigh = resolve_gateway(lab, vm)
        mtu = effective_mtu(lab, vm)
        _section("ip -4 addr (VM)", lab.exec(vm, "ip", "-4", "addr", "show", "dev", "eth0"))
        _section("ip route (VM)", routes)
        _section("arping 169.254.1.1 (VM)", arping)
        _section("ip neigh (VM)", neigh)
        if dual_stack:
            neigh6 = _resolve_gateway6(lab, vm)
            _section(
                "ip -6 addr show scope global (VM)",
                lab.exec(vm, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"),
            )
            _section("ip -6 route (VM)", lab.exec(vm, "ip", "-6", "route"))
            _section(f"ip -6 neigh show {GATEWAY_IP6} (VM)", neigh6)
        _section("resolv.conf (VM)", lab.resolv_conf(vm))
        dns = {}
        if dual_stack:
            # Two clients, one file: each rewrites resolv.conf with its own family's servers.
            dns = {"DHCPv4": vc.received_dns(), "DHCPv6": v6c.received_dns() if v6c else []}
            print("(two clients, one file: the one that configured last wrote it)")
            _section(
                "DNS servers in the clients' leases (VM)",
                "\n".join(f"{k}: {' '.join(v) or '(none)'}" for k, v in dns.items()),
            )
        _section("leases (lmdp /leases)", lmdp.get("/leases"))
        checks = [
            ("address 10.244.2.26/24", addrs == ["10.244.2.26/24"], ", ".join(addrs)),
            ("default via 169.254.1.1", "default via 169.254.1.1" in routes, ""),
            ("on-link route to 169.254.1.1", "169.254.1.1 dev eth0" in routes, ""),
            (
                "neighbour 169.254.1.1 is 0a:58:a9:fe:01:01",
                "lladdr 0a:58:a9:fe:01:01" in neigh,
                "",
            ),  # fmt: skip
            (
                ("DNS 10.96.0.10 (DHCPv4 lease)", "10.96.0.10" in dns["DHCPv4"], "")
                if dual_stack
                else ("DNS 10.96.0.10", "10.96.0.10" in lab.resolv_conf(vm), "")
            ),
            ("MTU 1400", mtu == 1400, str(mtu)),
        ]
        if client == "udhcpc":
            checks = checks[:1] + checks[3:4]  # udhcpc's default script sets no 121 routes
        if dual_stack:
            addrs6 = ipv6_addresses(lab, vm, tentative=True)
            routes6 = ipv6_default_routes(lab, vm)
            checks += [
                (
                    f"IPv6 {VM_IP6}/128, the only global address",
                    addrs6 == [f"{VM_IP6}/128"],
                    ", ".join(addrs6),
                ),
                (f"default via {GATEWAY_IP6}", routes6 == [f"{GATEWAY_IP6} eth0"],
                 "; ".join(routes6)),
                (f"neighbour {GATEWAY_IP6} is {GATEWAY_MAC}", f"lladdr {GATEWAY_MAC}" in neigh6,
                 neigh6.strip()),
                (f"DNS {DNS_IP6} (DHCPv6 lease)", DNS_IP6 in dns["DHCPv6"], ""),
            ]  # fmt: skip
        if v6c is not None:
            v6c.stop()
        vc.stop()
    except (LabError, subprocess.SubprocessError, OSError) as e:
        print(f"lmdp: demo failed: {e}", file=sys.stderr)
        checks.append(("demo ran", False, str(e)))
    finally:
        if keep:
            print(f"namespaces kept: {' '.join(lab.namespaces)}")
        else:
            lab.teardown()
    print("\n== checks")
    for what, ok, detail in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}{'  (' + detail + ')' if detail else ''}")
    return 0 if checks and all(ok for _, ok, _ in checks) else 1
