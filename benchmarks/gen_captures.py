"""Generate the replay captures and their config, with scapy (an encoder independent of lmdp).

    .venv/bin/python benchmarks/gen_captures.py [--vms 1000] [--per-vm 1] [--out DIR]

One pcap per kind into benchmarks/captures/ (generated, not committed), each holding
`--per-vm` requests from every VM (VM order, then again with new transaction ids):

    arp.pcap              ARP who-has 169.254.1.1 (the gateway), broadcast
    dhcpv4-discover.pcap  DHCPDISCOVER from static bindings, as dhclient sends it
    dhcpv4-request.pcap   DHCPREQUEST (SELECTING: options 50 and 54) from static bindings
    dhcpv6-solicit.pcap   SOLICIT with one IA_NA, to ff02::1:2
    dhcpv6-request.pcap   REQUEST naming our server DUID and the VM's address
    ns.pcap               Neighbor Solicitation for fe80::1 to its solicited-node group
    dhcpv4-pool.pcap      DHCPDISCOVER from MACs without a binding: pool allocations
    arp-distinct.pcap     ARP who-has 169.254.1.1, 10 per VM, no two frames alike (the target
                          hardware address, ignored in a request, counts up): every answer is
                          built anew, none is reused

and replay.yaml, the config they are made for (the same as `lmdp replay`'s built-in config
when --vms is the default). Replay one with `lmdp replay benchmarks/captures/arp.pcap
-c benchmarks/captures/replay.yaml --repeat 200`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import yaml
from scapy.layers import dhcp6
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataplane.replay import (  # noqa: E402
    REPLAY_VMS,
    builtin_config_data,
    pool_mac,
    vm_ipv4,
    vm_ipv6,
    vm_link_local,
    vm_mac,
)
from protocols.params import GatewayParams  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "captures")

GATEWAY_IP = "169.254.1.1"
BROADCAST = "ff:ff:ff:ff:ff:ff"
ALL_DHCP = "ff02::1:2"
ALL_DHCP_MAC = "33:33:00:01:00:02"
GATEWAY6 = "fe80::1"
GATEWAY6_GROUP = "ff02::1:ff00:1"  # solicited-node group of fe80::1
GATEWAY6_GROUP_MAC = "33:33:ff:00:00:01"
SERVER_DUID = GatewayParams().dhcpv6_duid  # DUID-LL of the default DHCPv6 server MAC
# dhclient's parameter request list: mask, router, DNS, hostname, domain, MTU, broadcast,
# lease, server id, T1, T2, search, classless routes.
PRL = [1, 3, 6, 12, 15, 26, 28, 51, 54, 58, 59, 119, 121]


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _xid(i: int, round_: int) -> int:
    return (0x5EED0000 + round_ * 65536 + i) & 0xFFFFFFFF


def arp_request(i: int, round_: int) -> bytes:
    mac = vm_mac(i)
    return bytes(
        Ether(src=mac, dst=BROADCAST) / ARP(op=1, hwsrc=mac, psrc=vm_ipv4(i), pdst=GATEWAY_IP)
    )


def _dhcp4(mac: str, xid: int, options: list) -> bytes:
    chaddr = _mac_bytes(mac)
    opts = [
        *options,
        ("client_id", b"\x01" + chaddr),
        ("max_dhcp_size", 1500),
        ("param_req_list", PRL),
        "end",
    ]
    return bytes(
        Ether(src=mac, dst=BROADCAST)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(op=1, chaddr=chaddr, xid=xid)
        / DHCP(options=opts)
    )


def dhcpv4_discover(i: int, round_: int) -> bytes:
    return _dhcp4(
        vm_mac(i), _xid(i, round_), [("message-type", "discover"), ("hostname", f"vm-{i:04d}")]
    )


def arp_distinct(i: int, round_: int) -> bytes:
    mac = vm_mac(i)
    tha = f"00:00:00:00:{round_ >> 8:02x}:{round_ & 0xFF:02x}"
    return bytes(
        Ether(src=mac, dst=BROADCAST)
        / ARP(op=1, hwsrc=mac, psrc=vm_ipv4(i), hwdst=tha, pdst=GATEWAY_IP)
    )


def dhcpv4_request(i: int, round_: int) -> bytes:
    options = [
        ("message-type", "request"),
        ("requested_addr", vm_ipv4(i)),
        ("server_id", GATEWAY_IP),
        ("hostname", f"vm-{i:04d}"),
    ]
    return _dhcp4(vm_mac(i), _xid(i, round_), options)


def dhcpv4_pool(i: int, round_: int) -> bytes:
    return _dhcp4(pool_mac(i), _xid(i, round_), [("message-type", "discover")])


def _dhcp6(i: int, round_: int, msg) -> bytes:
    mac = vm_mac(i)
    msg /= dhcp6.DHCP6OptElapsedTime() / dhcp6.DHCP6OptOptReq(reqopts=[23, 24])
    return bytes(
        Ether(src=mac, dst=ALL_DHCP_MAC)
        / IPv6(src=vm_link_local(mac), dst=ALL_DHCP, hlim=1)
        / UDP(sport=546, dport=547)
        / msg
    )


def _client_id(i: int):
    return dhcp6.DHCP6OptClientId(duid=b"\x00\x03\x00\x01" + _mac_bytes(vm_mac(i)))


def dhcpv6_solicit(i: int, round_: int) -> bytes:
    msg = dhcp6.DHCP6_Solicit(trid=_xid(i, round_) & 0xFFFFFF) / _client_id(i)
    msg /= dhcp6.DHCP6OptIA_NA(iaid=i + 1, T1=0, T2=0)
    return _dhcp6(i, round_, msg)


def dhcpv6_request(i: int, round_: int) -> bytes:
    msg = dhcp6.DHCP6_Request(trid=_xid(i, round_) & 0xFFFFFF) / _client_id(i)
    msg /= dhcp6.DHCP6OptServerId(duid=SERVER_DUID)
    address = dhcp6.DHCP6OptIAAddress(addr=vm_ipv6(i), preflft=0, validlft=0)
    msg /= dhcp6.DHCP6OptIA_NA(iaid=i + 1, T1=0, T2=0, ianaopts=[address])
    return _dhcp6(i, round_, msg)


def neighbor_solicit(i: int, round_: int) -> bytes:
    mac = vm_mac(i)
    return bytes(
        Ether(src=mac, dst=GATEWAY6_GROUP_MAC)
        / IPv6(src=vm_link_local(mac), dst=GATEWAY6_GROUP, hlim=255)
        / ICMPv6ND_NS(tgt=GATEWAY6)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac)
    )


# kind: (frame builder, requests per VM per --per-vm)
KINDS = {
    "arp": (arp_request, 1),
    "dhcpv4-discover": (dhcpv4_discover, 1),
    "dhcpv4-request": (dhcpv4_request, 1),
    "dhcpv6-solicit": (dhcpv6_solicit, 1),
    "dhcpv6-request": (dhcpv6_request, 1),
    "ns": (neighbor_solicit, 1),
    "dhcpv4-pool": (dhcpv4_pool, 1),
    "arp-distinct": (arp_distinct, 10),
}


def generate(out: str, vms: int = REPLAY_VMS, per_vm: int = 1, kinds=None, log=print) -> None:
    """Write the captures of `kinds` (default: all) and replay.yaml into `out`."""
    os.makedirs(out, exist_ok=True)
    config_path = os.path.join(out, "replay.yaml")
    with open(config_path, "w") as f:
        f.write("# Generated by benchmarks/gen_captures.py: the config its captures are for.\n")
        yaml.safe_dump(builtin_config_data(vms), f, sort_keys=False)
    for kind in kinds or KINDS:
        build, rounds = KINDS[kind]
        t0 = time.monotonic()
        frames = [build(i, r) for r in range(per_vm * rounds) for i in range(vms)]
        path = os.path.join(out, f"{kind}.pcap")
        # Timestamps 10 us apart from a fixed start, so the files are reproducible.
        packets = [Ether(f) for f in frames]
        for n, p in enumerate(packets):
            p.time = 1_700_000_000 + n * 1e-5
        wrpcap(path, packets, linktype=1)
        log(f"{path}: {len(frames)} frames ({time.monotonic() - t0:.1f} s)")
    log(f"{config_path}: {vms} VMs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vms", type=int, default=REPLAY_VMS, help="static VMs (1000)")
    p.add_argument("--per-vm", type=int, default=1, help="requests per VM in each capture (1)")
    p.add_argument("--out", default=DEFAULT_OUT, help="output directory (benchmarks/captures)")
    p.add_argument("kinds", nargs="*", help=f"kinds to generate: {', '.join(KINDS)} (all)")
    args = p.parse_args(argv)
    unknown = [k for k in args.kinds if k not in KINDS]
    if unknown:
        p.error(f"unknown kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    if not 1 <= args.vms <= 65536:
        p.error("--vms must be 1..65536")
    generate(args.out, args.vms, args.per_vm, args.kinds or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
