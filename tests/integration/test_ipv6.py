"""IPv6 against lmdp in namespaces: real DHCPv6 clients (ISC dhclient -6, dhcpcd -6), ndisc6,
the kernel's own router discovery, perfdhcp -6, and hostile frames from a VM.

What went on the wire is read back from tcpdump captures with dpkt and a DHCPv6 option
walker written here, independent of lmdp's own codec.
"""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import dpkt
import pytest

from dataplane.lab import (
    DHCPCD_CONF,
    Dhcp6Client,
    LabError,
    VmClient,
    ipv4_addresses,
    ipv6_addresses,
    ipv6_default_routes,
    prepare_ipv6,
    wait_for,
)

from .conftest import GATEWAY_MAC, VM_IP, VM_MAC, Node, perfdhcp_stats, require

VM6 = "fd00:10:244:2::1a"
DNS6 = "fd00:10:96::a"
SERVER_MAC = "0a:58:6d:6d:c1:50"
SERVER_LL = "fe80::858:6dff:fe6d:c150"
SERVER_DUID = bytes.fromhex("000300010a586d6dc150")
GATEWAY6 = "fe80::1"
LEASE_TIME = 3500
DHCPV6_FILTER = "udp port 546 or udp port 547"

MSG_NAMES = dict(enumerate(["?", "SOLICIT", "ADVERTISE", "REQUEST", "CONFIRM", "RENEW",
                            "REBIND", "REPLY", "RELEASE", "DECLINE", "RECONFIGURE",
                            "INFORMATION-REQUEST"]))  # fmt: skip
ND_RS, ND_RA, ND_NS, ND_NA = 133, 134, 135, 136


def v6_config(ipv4: bool = False, **config) -> dict:
    """The VM's binding: IPv6-only, or dual-stack with `ipv4`; DNS with an IPv6 server."""
    binding = {"name": "fedora", "mac": VM_MAC, "ipv6": f"{VM6}/64"}
    if ipv4:
        binding["ipv4"] = f"{VM_IP}/24"
    config.setdefault("bindings", [binding])
    config.setdefault("dns", {"servers": ["10.96.0.10", DNS6],
                              "search": ["default.svc.cluster.local"]})  # fmt: skip
    return config


@pytest.fixture
def nodes(lab):
    """Make Node(lab, short, **config)s; their logs are printed when a test fails."""
    made: list[Node] = []

    def make(short: str = "node", **config) -> Node:
        n = Node(lab, short, **config)
        made.append(n)
        return n

    yield make
    for n in made:
        print(f"--- lmdp log ({n.ns})\n{n.lmdp.log()}")


# -- reading captures --------------------------------------------------------------------


def _ip6(addr: bytes) -> str:
    return str(ipaddress.IPv6Address(addr))


def dhcpv6_options(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, i)
        out.append((code, data[i + 4 : i + 4 + length]))
        i += 4 + length
    return out


def decode_dhcpv6(payload: bytes) -> dict:
    opts = dhcpv6_options(payload[4:])
    msg = {
        "type": MSG_NAMES.get(payload[0], str(payload[0])),
        "xid": payload[1:4].hex(),
        "client_id": next((v for c, v in opts if c == 1), None),
        "server_id": next((v for c, v in opts if c == 2), None),
        "ia_na": [],
        "dns": [],
        "option_codes": [c for c, _ in opts],
    }
    for code, value in opts:
        if code == 3 and len(value) >= 12:  # IA_NA: IAID, T1, T2, options
            iaid, t1, t2 = struct.unpack_from("!III", value)
            addrs = [
                (_ip6(v[:16]), *struct.unpack_from("!II", v, 16))
                for c, v in dhcpv6_options(value[12:])
                if c == 5 and len(v) >= 24  # IAADDR: address, preferred, valid
            ]
            msg["ia_na"].append({"iaid": iaid, "t1": t1, "t2": t2, "addrs": addrs})
        elif code == 23:
            msg["dns"] = [_ip6(value[j : j + 16]) for j in range(0, len(value), 16)]
    return msg


def frames(path: Path) -> list[dict]:
    """The IPv6 frames of a capture: addressing, and the DHCPv6 or ICMPv6 (ND) content."""
    out = []
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip6 = eth.data
            if not isinstance(ip6, dpkt.ip6.IP6):
                continue
            fr = {
                "eth_src": eth.src.hex(":"),
                "eth_dst": eth.dst.hex(":"),
                "src": _ip6(ip6.src),
                "dst": _ip6(ip6.dst),
                "hlim": ip6.hlim,
            }
            if isinstance(ip6.data, dpkt.udp.UDP) and 546 in (ip6.data.sport, ip6.data.dport):
                fr.update(sport=ip6.data.sport, dport=ip6.data.dport)
                fr.update(decode_dhcpv6(bytes(ip6.data.data)))
            elif ip6.nxt == 58:
                icmp = bytes(ip6.data)
                fr.update(icmp_type=icmp[0], code=icmp[1])
                if icmp[0] in (ND_NS, ND_NA):
                    fr["flags"] = icmp[4] >> 5  # R, S, O
                    fr["target"] = _ip6(icmp[8:24])
                    fr["nd_options"] = _nd_options(icmp[24:])
                elif icmp[0] == ND_RA:
                    fr["ra_flags"] = icmp[5]
                    fr["router_lifetime"] = struct.unpack_from("!H", icmp, 6)[0]
                    fr["nd_options"] = _nd_options(icmp[16:])
            out.append(fr)
    return out


def _nd_options(data: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 2 <= len(data) and data[i + 1]:
        out.append((data[i], data[i + 2 : i + 8 * data[i + 1]]))
        i += 8 * data[i + 1]
    return out


def dhcpv6(path: Path) -> list[dict]:
    return [f for f in frames(path) if "xid" in f]


def ipv6_tcpdump(lab, ns, path: Path, expr: str = DHCPV6_FILTER):
    """tcpdump in `ns` writing `path`, started once the capture is live.

    --immediate-mode: without it libpcap hands packets over from its ring a block at a time
    (or after a 1 s timeout), so what arrived in the last second before a test stops the
    capture would be lost."""
    p = lab.popen(
        ns, "tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-n", "-w", str(path), expr,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    p.stderr.readline()  # "listening on ..."
    return p


def vm_link_local(lab, vm) -> str:
    return ipv6_addresses(lab, vm, scope="link")[0].split("/")[0]


def assert_reply_from_lmdp(reply: dict, request: dict, address: str = VM6, lifetime=LEASE_TIME):
    """A DHCPv6 reply as SPEC says: from the server MAC and link-local with the request's hop
    limit, the DUID-LL server id, the request's client id, IA_NA with the binding's address
    and lease-time lifetimes (T1, T2 = 0.5, 0.8 of them), the IPv6 DNS server."""
    assert reply["xid"] == request["xid"]
    assert reply["eth_src"] == SERVER_MAC and reply["eth_dst"] == request["eth_src"]
    assert reply["src"] == SERVER_LL and reply["dst"] == request["src"]
    assert reply["hlim"] == request["hlim"]  # copied (SPEC)
    assert (reply["sport"], reply["dport"]) == (547, 546)
    assert reply["server_id"] == SERVER_DUID
    assert reply["client_id"] == request["client_id"]
    (ia,) = reply["ia_na"]
    assert ia["iaid"] == request["ia_na"][0]["iaid"]
    assert ia["addrs"] == [(address, lifetime, lifetime)]
    assert (ia["t1"], ia["t2"]) == (lifetime // 2, lifetime * 4 // 5)
    assert reply["dns"] == [DNS6]


def exchanges(msgs: list[dict]) -> list[tuple[dict, dict]]:
    """(request, reply) pairs by transaction id, in the order the requests were sent."""
    replies = {m["xid"]: m for m in msgs if m["type"] in ("ADVERTISE", "REPLY")}
    return [(m, replies[m["xid"]]) for m in msgs if m["sport"] == 546 and m["xid"] in replies]


def start_client(lab, vm, client: str, **kw) -> Dhcp6Client:
    c = Dhcp6Client(lab, vm, client, **kw)
    c.start()
    return c


def wait_global(lab, vm, timeout: float = 15) -> list[str]:
    return wait_for(lambda: ipv6_addresses(lab, vm), timeout, 0.05, f"a global address in {vm}")


# -- DHCPv6 clients ------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
def test_ipv6_only_vm_gets_binding_address(lab, nodes, client):
    """An IPv6-only binding: the client gets exactly the binding's address and the IPv6 DNS
    server; the ADVERTISE and REPLY are addressed and filled as SPEC says; no RA comes
    (`ra` is off) and DHCPv4 is not answered for this VM."""
    require(client, "tcpdump", "udhcpc")
    node = nodes(**v6_config())
    vm = node.add_vm("vm", VM_MAC)
    prepare_ipv6(lab, vm)  # accept_ra on: an RA with a prefix would add a SLAAC address
    pcap = lab.workdir / "dhcpv6.pcap"
    dump = ipv6_tcpdump(lab, vm, pcap)
    node.start()
    c = start_client(lab, vm, client)
    assert wait_global(lab, vm) == [f"{VM6}/128"]
    wait_for(lambda: DNS6 in lab.resolv_conf(vm), 10, 0.05, "the IPv6 DNS server")
    msgs = wait_for(lambda: len(m := dhcpv6(pcap)) >= 4 and m, 5, 0.05, "4 DHCPv6 messages")
    lab.stop(dump)
    pairs = exchanges(msgs)
    assert [(q["type"], r["type"]) for q, r in pairs[:2]] == [
        ("SOLICIT", "ADVERTISE"), ("REQUEST", "REPLY")
    ], msgs  # fmt: skip
    link_local = vm_link_local(lab, vm)
    for request, reply in pairs:
        assert request["src"] == link_local and request["dst"] == "ff02::1:2"
        assert_reply_from_lmdp(reply, request)
    assert pairs[1][0]["server_id"] == SERVER_DUID  # the REQUEST names the DUID-LL
    assert f"nameserver {DNS6}" in lab.resolv_conf(vm)
    # Still exactly one global address, and no default route: lmdp sent no RA.
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]
    assert ipv6_default_routes(lab, vm) == []
    assert node.metric("lmdp_replies_sent_total", type="ra") == 0
    # Every SOLICIT and REQUEST was counted and answered, on the VM's port.
    for asked, answer in (("SOLICIT", "ADVERTISE"), ("REQUEST", "REPLY")):
        n = node.metric("lmdp_frames_received_total", protocol="dhcpv6", type=asked)
        assert n >= 1
        assert node.metric("lmdp_replies_sent_total", interface="tap0", type=answer) == n
    # DHCPv4 from the IPv6-only VM: no binding address, no answer.
    lab.exec(vm, "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "1", "-T", "1", check=False)
    assert ipv4_addresses(lab, vm) == []
    assert node.metric("lmdp_replies_sent_total", type="DHCPOFFER") == 0
    assert node.metric("lmdp_drops_total", reason="unknown_client") >= 1
    c.stop()


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
def test_dual_stack_vm_gets_both_addresses(lab, nodes, client):
    """A binding with ipv4 and ipv6: the same client software run for each family."""
    require(client)
    node = nodes(**v6_config(ipv4=True))
    vm = node.add_vm("vm", VM_MAC)
    prepare_ipv6(lab, vm)
    node.start()
    # dhcpcd: no ARP probe of the IPv4 address (seconds), as the DHCPv4 tests need not.
    v4 = VmClient(lab, vm, client, conf=DHCPCD_CONF + "noarp\n" if client == "dhcpcd" else None)
    v4.start()
    v6 = start_client(lab, vm, client)
    assert wait_global(lab, vm) == [f"{VM6}/128"]
    v4_addrs = wait_for(lambda: ipv4_addresses(lab, vm), 15, 0.05, "an IPv4 address")
    assert v4_addrs == [f"{VM_IP}/24"]
    wait_for(lambda: "default via 169.254.1.1" in lab.exec(vm, "ip", "route"), 10, 0.05,
             "the IPv4 default route")  # fmt: skip
    assert node.metric("lmdp_replies_sent_total", type="DHCPACK") >= 1
    assert node.metric("lmdp_replies_sent_total", type="REPLY") >= 1
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]
    v6.stop()
    v4.stop()


def test_dhcpcd_renew_now_is_answered_with_same_address(lab, nodes):
    """`dhcpcd -N -6`: a RENEW naming the server's DUID and the address, REPLY with it."""
    require("dhcpcd", "tcpdump")
    node = nodes(**v6_config())
    vm = node.add_vm("vm", VM_MAC)
    prepare_ipv6(lab, vm)
    pcap = lab.workdir / "renew.pcap"
    dump = ipv6_tcpdump(lab, vm, pcap)
    node.start()
    c = start_client(lab, vm, "dhcpcd")
    wait_global(lab, vm)
    wait_for(lambda: any(m["type"] == "REPLY" for m in dhcpv6(pcap)), 5, 0.05, "the REPLY")

    def renewals():
        return [(q, r) for q, r in exchanges(dhcpv6(pcap)) if q["type"] == "RENEW"]

    # `dhcpcd -N` signals dhcpcd (SIGUSR1), which loses a signal that arrives while its
    # BOUND6 hook still runs: ask again until a RENEW goes out.
    for attempt in range(3):
        c.renew()
        try:
            renews = wait_for(renewals, 1.5, 0.05, "a RENEW and its REPLY")
            break
        except LabError:
            if attempt == 2:
                raise
    lab.stop(dump)
    request, reply = renews[0]
    assert request["server_id"] == SERVER_DUID
    assert [a[0] for a in request["ia_na"][0]["addrs"]] == [VM6]
    assert reply["type"] == "REPLY"
    assert_reply_from_lmdp(reply, request)
    n = node.metric("lmdp_frames_received_total", protocol="dhcpv6", type="RENEW")
    assert n == len(renewals())
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]
    c.stop()


def test_renew_at_t1_is_answered_here_and_after_the_port_moves(lab, nodes):
    """dhclient -6 with a 10 s lease renews at T1 = 5 s (multicast RENEW): node A answers
    with the same address; after the VM's port moves to node B (another lmdp sharing the
    store), node B answers the next RENEW, with the same address and the same server DUID,
    and, having seen the VM arrive, announces the gateway to it (unsolicited NA for fe80::1)."""
    require("dhclient", "tcpdump")
    store = {"backend": "sqlite", "path": str(lab.workdir / "shared.db")}
    a = nodes("node-a", **v6_config(lease_time=10, store=store))
    b = nodes("node-b", **v6_config(lease_time=10, store=store, node="node-b"))
    vm = a.add_vm("vm", VM_MAC)
    prepare_ipv6(lab, vm)
    pcap = lab.workdir / "renew.pcap"
    dump = ipv6_tcpdump(lab, vm, pcap, f"icmp6 or {DHCPV6_FILTER}")
    a.start()
    b.start()
    c = start_client(lab, vm, "dhclient")
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]

    def renewals():
        return [(q, r) for q, r in exchanges(dhcpv6(pcap)) if q["type"] == "RENEW"]

    first = wait_for(renewals, 10, 0.1, "a RENEW at T1 and its REPLY")
    request, reply = first[0]
    assert request["dst"] == "ff02::1:2" and request["server_id"] == SERVER_DUID
    assert reply["type"] == "REPLY"
    assert_reply_from_lmdp(reply, request, lifetime=10)
    assert a.metric("lmdp_frames_received_total", protocol="dhcpv6", type="RENEW") == 1
    assert b.metric("lmdp_frames_received_total", protocol="dhcpv6") == 0

    def gateway_announcements():
        return [
            f for f in frames(pcap)
            if f.get("icmp_type") == ND_NA and f["target"] == GATEWAY6 and f["dst"] == "ff02::1"
        ]  # fmt: skip

    assert gateway_announcements() == []

    # Live migration of the port: node A's tap goes to node B's namespace.
    lab.ip(a.ns, "link", "set", "tap0", "netns", b.ns)
    lab.ip(b.ns, "link", "set", "tap0", "up")
    wait_for(lambda: b.metric("lmdp_replies_sent_total", type="REPLY") >= 1, 10, 0.1,
             "node B's REPLY to the RENEW")  # fmt: skip
    second = wait_for(lambda: len(r := renewals()) >= 2 and r, 3, 0.05, "the second REPLY")
    request, reply = second[1]
    assert request["type"] == "RENEW" and request["server_id"] == SERVER_DUID
    assert_reply_from_lmdp(reply, request, lifetime=10)
    assert b.metric("lmdp_frames_received_total", protocol="dhcpv6", type="RENEW") >= 1
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]
    nas = wait_for(gateway_announcements, 3, 0.05, "node B's unsolicited NA for fe80::1")
    lab.stop(dump)
    for na in nas:
        assert (na["eth_src"], na["src"], na["hlim"]) == (GATEWAY_MAC, GATEWAY6, 255)
        assert na["flags"] == 0b101  # R and O; S clear to a multicast destination
        assert na["nd_options"] == [(2, bytes.fromhex(GATEWAY_MAC.replace(":", "")))]
    c.stop()


# -- NDP and router advertisements -----------------------------------------------------------

RESOLVE6 = (
    "import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
    "s.sendto(b'lmdp', ('fe80::1', 9, 0, socket.if_nametoindex('eth0')))"
)


def test_ndisc6_and_the_kernel_resolve_the_gateway(lab, nodes):
    """ndisc6 fe80::1 gets the gateway MAC in an NA with R|S|O from fe80::1; the kernel's own
    neighbour resolution gets it too; NS for other addresses are not answered."""
    require("ndisc6", "tcpdump")
    node = nodes(**v6_config())
    vm = node.add_vm("vm", VM_MAC)
    prepare_ipv6(lab, vm)
    pcap = lab.workdir / "nd.pcap"
    dump = ipv6_tcpdump(lab, vm, pcap, "icmp6")
    node.start()
    out = lab.exec(vm, "ndisc6", "-1", "-r", "3", "-w", "1000", GATEWAY6, "eth0", check=False)
    assert f"target link-layer address: {GATEWAY_MAC}" in out.lower(), out  # ndisc6: upper case
    # The kernel resolving fe80::1 for a datagram (multicast NS, then the NA).
    lab.exec(vm, sys.executable, "-c", RESOLVE6)
    neigh = wait_for(
        lambda: "lladdr" in (o := lab.exec(vm, "ip", "-6", "neigh", "show", GATEWAY6)) and o,
        3, 0.05, "a neighbour entry for fe80::1",
    )  # fmt: skip
    assert f"lladdr {GATEWAY_MAC}" in neigh and "router" in neigh, neigh
    # Not the gateway: no answer (another address on the link, and the VM's own).
    out = lab.exec(vm, "ndisc6", "-1", "-r", "1", "-w", "300", "fe80::99", "eth0", check=False)
    assert "link-layer address" not in out.lower(), out
    lab.stop(dump)
    nas = [f for f in frames(pcap) if f.get("icmp_type") == ND_NA]
    assert len(nas) == 2, nas
    link_local = vm_link_local(lab, vm)
    for na in nas:
        assert na["eth_src"] == GATEWAY_MAC and na["eth_dst"] == VM_MAC
        assert (na["src"], na["dst"], na["hlim"]) == (GATEWAY6, link_local, 255)
        assert na["target"] == GATEWAY6
        assert na["flags"] == 0b111  # R, S, O
        assert na["nd_options"] == [(2, bytes.fromhex(GATEWAY_MAC.replace(":", "")))]
    assert node.metric("lmdp_frames_received_total", protocol="ndp", type="ns") >= 3
    assert node.metric("lmdp_replies_sent_total", type="na") == 2
    assert node.metric("lmdp_drops_total", reason="not_proxied") >= 1


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
def test_ra_gives_default_route_and_still_one_global_address(lab, nodes, client):
    """ra: true. dhclient -6 with the kernel doing router discovery (accept_ra=1), or dhcpcd
    doing it itself and starting DHCPv6 on the M flag: `default via fe80::1` with no manual
    route, and the DHCPv6 address is the only global one (the RA has no prefix)."""
    require(client, "tcpdump")
    node = nodes(**v6_config(ra=True))
    vm = node.add_vm("vm", VM_MAC)
    prepare_ipv6(lab, vm, accept_ra=client == "dhclient")
    pcap = lab.workdir / "ra.pcap"
    dump = ipv6_tcpdump(lab, vm, pcap, f"icmp6 or {DHCPV6_FILTER}")
    node.start()
    c = start_client(lab, vm, client, ra=True)
    assert wait_global(lab, vm) == [f"{VM6}/128"]
    routes = wait_for(lambda: ipv6_default_routes(lab, vm), 10, 0.05, "an IPv6 default route")
    assert routes == [f"{GATEWAY6} eth0"]
    lab.stop(dump)
    ras = [f for f in frames(pcap) if f.get("icmp_type") == ND_RA]
    assert ras
    for ra in ras:
        assert ra["eth_src"] == GATEWAY_MAC and ra["src"] == GATEWAY6 and ra["hlim"] == 255
        assert ra["ra_flags"] & 0xC0 == 0xC0  # M and O
        assert ra["router_lifetime"] > 0
        assert 3 not in [code for code, _ in ra["nd_options"]]  # no Prefix Information
    if client == "dhcpcd":  # it sent its own RS, answered by unicast
        assert node.metric("lmdp_frames_received_total", protocol="ndp", type="rs") >= 1
        assert any(ra["dst"] == vm_link_local(lab, vm) for ra in ras), ras
    assert node.metric("lmdp_replies_sent_total", type="ra") >= 1
    # A moment later: still one global address (no SLAAC), one default route.
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]
    assert ipv6_default_routes(lab, vm) == [f"{GATEWAY6} eth0"]
    c.stop()


# -- load -------------------------------------------------------------------------------------


def test_perfdhcp6_thousand_clients_no_drops(lab, nodes):
    """perfdhcp -6: 1,000 simulated clients (DUIDs from one MAC), SOLICIT-ADVERTISE and
    REQUEST-REPLY with no drops, 1,000 distinct pool addresses committed to the store."""
    require("perfdhcp")
    node = nodes(
        bindings=[],
        pools=[{"subnet": "fd00:10:250::/64", "start": "fd00:10:250::100",
                "end": "fd00:10:250::ffff"}],
    )  # fmt: skip
    perf = node.add_vm("perf", "0a:58:0a:fa:00:01", port="tapperf")
    prepare_ipv6(lab, perf, accept_ra=False)  # perfdhcp binds to the link-local address
    node.start()
    out = lab.exec(
        perf, "perfdhcp", "-6", "-l", "eth0", "-r", "200", "-R", "1000", "-n", "1000",
        "-p", "30", "-W", "2000000", check=False, timeout=60,
    )  # fmt: skip
    stats = perfdhcp_stats(out)
    want = {"sent packets": 1000, "received packets": 1000, "drops": 0}
    assert stats.get("SOLICIT-ADVERTISE") == want, out
    assert stats.get("REQUEST-REPLY") == want, out
    assert "non unique addresses: 0" in out
    assert node.metric("lmdp_leases_committed_total") >= 1000
    assert node.metric("lmdp_bindings", kind="pool") == 1000
    assert node.metric("lmdp_drops_total") == 0


# -- hostile frames ---------------------------------------------------------------------------

ATTACK6 = textwrap.dedent(
    """
    import sys
    from scapy.all import Ether, IPv6, UDP, Raw, sendp, conf
    from scapy.layers.inet6 import (ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr,
                                    ICMPv6NDOptPrefixInfo)
    from scapy.layers.dhcp6 import (DHCP6_Solicit, DHCP6_Request, DHCP6_Advertise,
                                    DHCP6_Reply, DHCP6OptClientId, DHCP6OptServerId,
                                    DHCP6OptIA_NA, DUID_LL, DUID_LLT)
    conf.verb = 0
    mac, ll, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
    e = Ether(src=mac, dst="33:33:00:01:00:02")
    to_servers = IPv6(src=ll, dst="ff02::1:2") / UDP(sport=546, dport=547)
    cid = DHCP6OptClientId(duid=DUID_LLT(lladdr=mac, timeval=1))
    sid = DHCP6OptServerId(duid=DUID_LL(lladdr="0a:58:6d:6d:c1:50"))
    ns = ICMPv6ND_NS(tgt="fe80::1") / ICMPv6NDOptSrcLLAddr(lladdr=mac)
    ns_multicast = Ether(src=mac, dst="33:33:ff:00:00:01") / IPv6(src=ll, dst="ff02::1:ff00:1")
    bad_checksum = ICMPv6ND_NS(tgt="fe80::1", cksum=0x1234) / ICMPv6NDOptSrcLLAddr(lladdr=mac)
    cases = {
        "no_client_id": e / to_servers / DHCP6_Solicit(trid=1) / DHCP6OptIA_NA(iaid=1),
        "no_ia_na": e / to_servers / DHCP6_Request(trid=2) / cid / sid,
        "bad_hop_limit": ns_multicast.copy() / ns,
        "bad_checksum": ns_multicast / bad_checksum,
        "ra_from_vm": Ether(src=mac, dst="33:33:00:00:00:01")
            / IPv6(src=ll, dst="ff02::1", hlim=255) / ICMPv6ND_RA(M=1, O=1, routerlifetime=1800)
            / ICMPv6NDOptSrcLLAddr(lladdr=mac) / ICMPv6NDOptPrefixInfo(prefix="fd00:66::"),
        "server_message": [e / to_servers / DHCP6_Advertise(trid=3) / cid / sid,
                           e / to_servers / DHCP6_Reply(trid=4) / cid / sid],
    }
    cases["bad_hop_limit"][IPv6].hlim = 254
    cases["bad_checksum"][IPv6].hlim = 255
    # Also a SOLICIT with a client id but no IA_NA.
    cases["no_ia_na"] = [cases["no_ia_na"], e / to_servers / DHCP6_Solicit(trid=5) / cid]
    out = []
    for reason, pkts in cases.items():
        pkts = pkts if isinstance(pkts, list) else [pkts]
        sendp(pkts * copies, iface="eth0")
        out.append(f"{reason}={len(pkts) * copies}")
    print(" ".join(out))
    """
)


def test_hostile_ipv6_frames_are_dropped_counted_never_answered(lab, nodes):
    """Solicit without Client-ID, requests without IA_NA, NS with hop limit 254 or a bad
    checksum, an RA and ADVERTISE/REPLY from the VM: each dropped under its reason, nothing
    sent back; a real client is served afterwards."""
    require("dhclient", "tcpdump", "ndisc6")
    node = nodes(**v6_config())
    vm = node.add_vm("vm", VM_MAC)
    # No RS, no DAD: the VM's kernel sends nothing lmdp would answer.
    prepare_ipv6(lab, vm, accept_ra=False)
    pcap = lab.workdir / "attack.pcap"
    dump = ipv6_tcpdump(lab, vm, pcap, f"icmp6 or {DHCPV6_FILTER}")
    node.start()
    script = lab.workdir / "attack6.py"
    script.write_text(ATTACK6)
    out = lab.exec(vm, sys.executable, str(script), VM_MAC, vm_link_local(lab, vm), "3")
    sent = {k: int(v) for k, v in (kv.split("=") for kv in out.split())}
    wait_for(
        lambda: node.metric("lmdp_drops_total", reason="server_message") >= 6,
        5, 0.05, "lmdp to count the frames",
    )  # fmt: skip
    drops = {r: node.metric("lmdp_drops_total", reason=r) for r in sent}
    assert drops == sent, (drops, sent)
    assert node.metric("lmdp_replies_sent_total") == 0
    # The ADVERTISE and REPLY are counted as received under their own names.
    for t in ("ADVERTISE", "REPLY"):
        assert node.metric("lmdp_frames_received_total", protocol="dhcpv6", type=t) == 3
    assert node.metric("lmdp_frames_received_total", protocol="ndp", type="ra") == 3
    assert node.metric("lmdp_internal_errors_total") == 0
    # The VM's RA was ignored by lmdp, and nothing from lmdp reached the VM.
    assert [f for f in frames(pcap) if f["eth_src"] in (GATEWAY_MAC, SERVER_MAC)] == []
    # Still serving: a real client, and ndisc6.
    c = start_client(lab, vm, "dhclient")
    assert ipv6_addresses(lab, vm, tentative=True) == [f"{VM6}/128"]
    out = lab.exec(vm, "ndisc6", "-1", "-r", "3", "-w", "1000", GATEWAY6, "eth0", check=False)
    assert GATEWAY_MAC in out.lower(), out
    lab.stop(dump)
    c.stop()
