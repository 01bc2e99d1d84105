"""The DHCPv4 responder against SPEC "DHCPv4" (RFC 2131, RFC 2132, RFC 3442).

Requests are built by scapy; replies are checked byte by byte and parsed back by scapy.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from protocols.bindings import Binding, BindingTable, Lease, Pool
from protocols.dhcpv4.codec import encode_udp4_frame
from protocols.dhcpv4.server import Dhcpv4Responder
from protocols.outcome import DROP_REASONS
from protocols.params import ROUTER_SUBNET, GatewayParams
from tests.helpers import (
    BOOTP_OFF,
    GW_IP,
    GW_MAC,
    IP_OFF,
    OPTIONS_OFF,
    OTHER_IP_STR,
    RELAY_IP_STR,
    RELAY_MAC_STR,
    SEED_IP,
    SEED_IP_STR,
    SEED_MAC,
    UDP_OFF,
    UNKNOWN_MAC,
    UNKNOWN_MAC_STR,
    XID,
    dhcp_request,
    option_codes,
    seed_binding,
    seed_params,
    seed_table,
)

BROADCAST4 = b"\xff\xff\xff\xff"

# The option block of the OFFER to the seed VM (default params plus DNS 10.96.0.10), in
# SPEC order. 240 + 62 = 302 bytes of BOOTP: long enough, so no padding follows END.
SEED_OFFER_OPTIONS = bytes.fromhex(
    "350102"  # 53 message type: DHCPOFFER
    "0104ffffff00"  # 1 subnet mask 255.255.255.0
    "0304a9fe0101"  # 3 router 169.254.1.1
    "06040a60000a"  # 6 DNS 10.96.0.10
    "0c06 6665646f7261"  # 12 hostname "fedora"
    "1a02 0578"  # 26 MTU 1400
    "3304 00000dac"  # 51 lease time 3500
    "3604 a9fe0101"  # 54 server id 169.254.1.1
    "790e"  # 121 classless routes, 14 bytes:
    "20 a9fe0101 00000000"  # 169.254.1.1/32 -> 0.0.0.0 (on-link)
    "00 a9fe0101"  # 0.0.0.0/0 -> 169.254.1.1
    "ff"  # END
)
SEED_ACK_OPTIONS = b"\x35\x01\x05" + SEED_OFFER_OPTIONS[3:]

# The BOOTP header of that OFFER (RFC 2131 table 3), for a request with xid 2a2b2c2d.
SEED_OFFER_HEADER = (
    bytes.fromhex(
        "02"  # op BOOTREPLY
        "01"  # htype Ethernet (copied)
        "06"  # hlen (copied)
        "00"  # hops 0
        "2a2b2c2d"  # xid (copied)
        "0000"  # secs 0
        "0000"  # flags (copied)
        "00000000"  # ciaddr 0 in an OFFER
        "0af4021a"  # yiaddr 10.244.2.26
        "00000000"  # siaddr
        "00000000"  # giaddr
        "0a580af4021a"  # chaddr (copied) ...
    )
    + bytes(10)  # ... rest of chaddr
    + bytes(64 + 128)  # sname, file
    + bytes.fromhex("63825363")  # magic cookie
)

# The DHCPNAK option block: 53 and 54 only (RFC 2131 table 3), padded to 300 bytes of BOOTP.
NAK_OPTIONS = bytes.fromhex(
    "350106"  # 53 message type: DHCPNAK
    "3604 a9fe0101"  # 54 server id 169.254.1.1 (beyond OVN, which omits it)
    "ff"  # END
) + bytes(300 - 240 - 10)  # padding to 300


def handle(responder, frame: bytes):
    out = responder.handle(frame, "tap0", 1000.0)
    assert (out.reply is None) != (out.drop is None) or out.received in {
        "DHCPRELEASE",
        "DHCPDECLINE",
    }
    assert out.drop is None or out.drop in DROP_REASONS
    return out


def bootp(out) -> bytes:
    return out.reply[BOOTP_OFF:]


def options(out) -> bytes:
    return out.reply[OPTIONS_OFF:]


def addressing(out) -> tuple:
    """(Ethernet dst, Ethernet src, IPv4 src, IPv4 dst, UDP sport, UDP dport)."""
    r = out.reply
    return (
        r[0:6],
        r[6:12],
        r[IP_OFF + 12 : IP_OFF + 16],
        r[IP_OFF + 16 : IP_OFF + 20],
        int.from_bytes(r[UDP_OFF : UDP_OFF + 2], "big"),
        int.from_bytes(r[UDP_OFF + 2 : UDP_OFF + 4], "big"),
    )


def assert_scapy_agrees(out):
    """scapy parses the reply as Ether/IP/UDP/BOOTP/DHCP and recomputes the same checksums."""
    pkt = Ether(out.reply)
    for layer in (Ether, IP, UDP, BOOTP, DHCP):
        assert layer in pkt
    rebuilt = pkt.copy()
    rebuilt[IP].chksum = None
    rebuilt[UDP].chksum = None
    assert bytes(rebuilt) == out.reply
    assert pkt[IP].len == len(out.reply) - 14
    return pkt


def scapy_options(out) -> dict:
    return {o[0]: o[1] for o in Ether(out.reply)[DHCP].options if isinstance(o, tuple)}


# DISCOVER -> OFFER


def test_discover_offer_exact(dhcp):
    out = handle(dhcp, dhcp_request("discover"))
    assert (out.received, out.sent, out.drop, out.mac) == (
        "DHCPDISCOVER",
        "DHCPOFFER",
        None,
        SEED_MAC,
    )
    assert out.lease is None  # a static binding needs no commit
    assert bootp(out)[:240] == SEED_OFFER_HEADER
    assert options(out) == SEED_OFFER_OPTIONS
    assert len(bootp(out)) == 302
    # Unicast to yiaddr: Ethernet dst = the requester, src = gateway MAC, IPv4 from the server
    # id, UDP 67 -> 68.
    assert addressing(out) == (SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68)
    assert out.reply[IP_OFF + 8] == 64  # TTL


def test_offer_parsed_by_scapy(dhcp):
    out = handle(dhcp, dhcp_request("discover"))
    pkt = assert_scapy_agrees(out)
    assert pkt[BOOTP].op == 2 and pkt[BOOTP].yiaddr == SEED_IP_STR and pkt[BOOTP].xid == XID
    assert pkt[DHCP].options[:-1] == [
        ("message-type", 2),
        ("subnet_mask", "255.255.255.0"),
        ("router", "169.254.1.1"),
        ("name_server", "10.96.0.10"),
        ("hostname", b"fedora"),
        ("interface-mtu", 1400),
        ("lease_time", 3500),
        ("server_id", "169.254.1.1"),
        ("classless_static_routes", ["169.254.1.1/32:0.0.0.0", "0.0.0.0/0:169.254.1.1"]),
    ]
    assert pkt[DHCP].options[-1] == "end"


def test_discover_with_other_requested_ip_is_offered_the_binding(dhcp):
    out = handle(dhcp, dhcp_request("discover", options=[("requested_addr", "10.244.2.99")]))
    assert out.sent == "DHCPOFFER"
    assert bootp(out)[16:20] == SEED_IP  # yiaddr


def test_discover_broadcast_flag(dhcp):
    out = handle(dhcp, dhcp_request("discover", flags=0x8000))
    assert addressing(out) == (SEED_MAC, GW_MAC, GW_IP, BROADCAST4, 67, 68)
    assert bootp(out)[10:12] == b"\x80\x00"  # flags copied


def test_hops_secs_ciaddr_are_zero_in_an_offer(dhcp):
    # RFC 2131 table 3: hops 0, secs 0, ciaddr 0 in a DHCPOFFER whatever the request said.
    out = handle(dhcp, dhcp_request("discover", hops=3, secs=42, ciaddr="10.9.9.9"))
    assert bootp(out)[3] == 0
    assert bootp(out)[8:10] == b"\x00\x00"
    assert bootp(out)[12:16] == bytes(4)


def test_reply_to_vm_mac_even_when_request_is_unicast_to_gateway(dhcp):
    out = handle(dhcp, dhcp_request("discover", eth_dst="0a:58:a9:fe:01:01"))
    assert out.reply[0:6] == SEED_MAC


def test_binding_found_by_ethernet_source_not_chaddr(dhcp):
    # chaddr names another MAC, but the frame comes from the seed VM: the seed VM is answered.
    out = handle(dhcp, dhcp_request("discover", chaddr=UNKNOWN_MAC))
    assert out.sent == "DHCPOFFER" and bootp(out)[16:20] == SEED_IP
    assert bootp(out)[28:34] == UNKNOWN_MAC  # chaddr copied as sent
    # And an unknown Ethernet source with the seed's chaddr is not the seed.
    out = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR, chaddr=SEED_MAC))
    assert out.drop == "unknown_client"


# REQUEST in the four client states (RFC 2131 §4.3.2)


def test_request_selecting_ack(dhcp):
    frame = dhcp_request(
        "request", options=[("server_id", "169.254.1.1"), ("requested_addr", SEED_IP_STR)]
    )
    out = handle(dhcp, frame)
    assert (out.received, out.sent) == ("DHCPREQUEST", "DHCPACK")
    assert options(out) == SEED_ACK_OPTIONS
    assert bootp(out)[12:16] == bytes(4)  # ciaddr copied: 0
    assert bootp(out)[16:20] == SEED_IP
    assert addressing(out) == (SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68)
    assert_scapy_agrees(out)


def test_request_selecting_other_server_id_still_acked(dhcp):
    # After a live migration the request may name any server id (SPEC).
    frame = dhcp_request(
        "request", options=[("server_id", "10.0.0.1"), ("requested_addr", SEED_IP_STR)]
    )
    assert handle(dhcp, frame).sent == "DHCPACK"


def test_request_selecting_wrong_address_nak(dhcp):
    frame = dhcp_request(
        "request", options=[("server_id", "169.254.1.1"), ("requested_addr", "10.244.2.99")]
    )
    assert handle(dhcp, frame).sent == "DHCPNAK"


def test_request_init_reboot(dhcp):
    ack = handle(dhcp, dhcp_request("request", options=[("requested_addr", SEED_IP_STR)]))
    assert ack.sent == "DHCPACK" and bootp(ack)[16:20] == SEED_IP
    nak = handle(dhcp, dhcp_request("request", options=[("requested_addr", "10.1.2.3")]))
    assert nak.sent == "DHCPNAK"


def test_request_renewing_unicast(dhcp):
    frame = dhcp_request(
        "request", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR, ip_dst="169.254.1.1",
        eth_dst="0a:58:a9:fe:01:01", sport=68,
    )  # fmt: skip
    out = handle(dhcp, frame)
    assert out.sent == "DHCPACK"
    assert bootp(out)[12:16] == SEED_IP  # ciaddr copied (RFC 2131 table 3)
    assert bootp(out)[16:20] == SEED_IP
    assert addressing(out) == (SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68)


def test_request_rebinding_broadcast(dhcp):
    frame = dhcp_request("request", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR)
    out = handle(dhcp, frame)
    assert out.sent == "DHCPACK" and bootp(out)[12:16] == SEED_IP


def test_request_renewing_other_address_nak(dhcp):
    out = handle(dhcp, dhcp_request("request", ciaddr=OTHER_IP_STR, ip_src=OTHER_IP_STR))
    assert out.sent == "DHCPNAK"


def test_option_50_wins_over_ciaddr(dhcp):
    # SPEC: "requested IP" is option 50 if present, else ciaddr.
    frame = dhcp_request("request", ciaddr="10.1.2.3", options=[("requested_addr", SEED_IP_STR)])
    assert handle(dhcp, frame).sent == "DHCPACK"
    frame = dhcp_request("request", ciaddr=SEED_IP_STR, options=[("requested_addr", "10.1.2.3")])
    assert handle(dhcp, frame).sent == "DHCPNAK"


def test_request_with_neither_50_nor_ciaddr_nak(dhcp):
    assert handle(dhcp, dhcp_request("request")).sent == "DHCPNAK"
    # A server id alone does not say which address.
    assert handle(dhcp, dhcp_request("request", options=[("server_id", "169.254.1.1")])).sent == (
        "DHCPNAK"
    )


def test_nak_exact(dhcp):
    out = handle(dhcp, dhcp_request("request", options=[("requested_addr", "10.1.2.3")]))
    assert (out.received, out.sent, out.mac, out.lease) == (
        "DHCPREQUEST",
        "DHCPNAK",
        SEED_MAC,
        None,
    )
    header = bootp(out)[:240]
    assert header[0] == 2 and header[4:8] == XID.to_bytes(4, "big")
    assert header[12:16] == bytes(4)  # ciaddr 0
    assert header[16:20] == bytes(4)  # yiaddr 0
    assert header[28:34] == SEED_MAC  # chaddr
    assert options(out) == NAK_OPTIONS
    assert len(bootp(out)) == 300  # padded for old relays
    # A NAK is broadcast at IPv4, but the Ethernet dst is still the requester.
    assert addressing(out) == (SEED_MAC, GW_MAC, GW_IP, BROADCAST4, 67, 68)
    assert_scapy_agrees(out)
    assert scapy_options(out) == {
        "message-type": 6,
        "server_id": "169.254.1.1",
    }


def test_nak_ignores_unicast_ciaddr(dhcp):
    out = handle(dhcp, dhcp_request("request", ciaddr="10.1.2.3", ip_src="10.1.2.3"))
    assert out.sent == "DHCPNAK"
    assert addressing(out)[3] == BROADCAST4
    assert bootp(out)[12:16] == bytes(4)


# INFORM, RELEASE, DECLINE


def test_inform_ack(dhcp):
    frame = dhcp_request("inform", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR)
    out = handle(dhcp, frame)
    assert (out.received, out.sent, out.mac) == ("DHCPINFORM", "DHCPACK", SEED_MAC)
    assert out.lease is None
    assert bootp(out)[12:16] == SEED_IP  # ciaddr copied
    assert bootp(out)[16:20] == bytes(4)  # yiaddr 0 (RFC 2131 §4.3.5)
    assert options(out) == bytes.fromhex(
        "350105"  # 53 DHCPACK
        "0304a9fe0101"  # 3 router (no 1: SPEC)
        "06040a60000a"  # 6 DNS
        "0c06 6665646f7261"  # 12 hostname
        "1a02 0578"  # 26 MTU (no 51, 58, 59: RFC 2131 §4.3.5)
        "3604 a9fe0101"  # 54 server id
        "790e 20a9fe010100000000 00a9fe0101"  # 121
        "ff"  # END
    ) + bytes(300 - 240 - 50)
    assert addressing(out) == (SEED_MAC, GW_MAC, GW_IP, SEED_IP, 67, 68)  # to ciaddr
    assert {1, 51, 58, 59}.isdisjoint(option_codes(options(out)))
    assert_scapy_agrees(out)


def test_inform_with_broadcast_flag(dhcp):
    frame = dhcp_request("inform", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR, flags=0x8000)
    assert addressing(handle(dhcp, frame))[3] == BROADCAST4


def test_inform_without_ciaddr_is_broadcast(dhcp):
    assert addressing(handle(dhcp, dhcp_request("inform")))[3] == BROADCAST4


def test_release_no_reply(dhcp):
    out = handle(dhcp, dhcp_request("release", ciaddr=SEED_IP_STR, ip_src=SEED_IP_STR))
    assert (out.received, out.reply, out.sent, out.drop, out.mac) == (
        "DHCPRELEASE",
        None,
        None,
        None,
        SEED_MAC,
    )


def test_decline_no_reply_reports_conflict(dhcp):
    out = handle(dhcp, dhcp_request("decline", options=[("requested_addr", SEED_IP_STR)]))
    assert (out.received, out.reply, out.drop, out.mac) == ("DHCPDECLINE", None, None, SEED_MAC)
    assert out.conflict == SEED_IP
    # Without option 50 (a broken client) the conflict still names the binding's address.
    out = handle(dhcp, dhcp_request("decline"))
    assert (out.reply, out.conflict) == (None, SEED_IP)
    # RELEASE is recorded (counted) but is not a conflict.
    assert handle(dhcp, dhcp_request("release")).conflict is None


@pytest.mark.parametrize("mtype", ["release", "decline", "inform"])
def test_unknown_client_no_allocation(mtype):
    dhcp = Dhcpv4Responder(seed_params(), seed_table(pool=True))
    out = handle(dhcp, dhcp_request(mtype, eth_src=UNKNOWN_MAC_STR))
    assert out.drop == "unknown_client"
    assert dhcp.table.lookup(UNKNOWN_MAC) is None


# Drops


@pytest.mark.parametrize(
    ("frame", "received", "reason"),
    [
        # A VM acting as a DHCP server: BOOTREPLY (op 2).
        (dhcp_request("offer", op=2), "BOOTREPLY", "not_bootrequest"),
        (dhcp_request("discover", op=2), "BOOTREPLY", "not_bootrequest"),
        # Server message types in a BOOTREQUEST.
        (dhcp_request("offer"), "DHCPOFFER", "unsupported_message"),
        (dhcp_request("ack"), "DHCPACK", "unsupported_message"),
        (dhcp_request("nak"), "DHCPNAK", "unsupported_message"),
        (dhcp_request(99), "DHCPUNKNOWN", "unsupported_message"),
        # No option 53: plain BOOTP.
        (dhcp_request(None, options=[("requested_addr", SEED_IP_STR)]), "BOOTREQUEST",
         "no_message_type"),
        # Wrong port.
        (dhcp_request("discover", dport=68), "dhcpv4", "wrong_port"),
        (dhcp_request("discover", dport=547), "dhcpv4", "wrong_port"),
    ],
)  # fmt: skip
def test_dropped(dhcp, frame, received, reason):
    out = handle(dhcp, frame)
    assert (out.received, out.drop, out.reply) == (received, reason, None)
    assert out.mac == SEED_MAC  # the engine can name the VM (e.g. one acting as a server)


def test_no_magic_cookie_dropped(dhcp):
    frame = dhcp_request("discover")
    broken = bytearray(frame)
    broken[OPTIONS_OFF - 4] ^= 0xFF
    assert handle(dhcp, bytes(broken)).drop == "no_magic_cookie"  # UDP checksum not verified
    frame = dhcp_request("discover", udp_checksum=0)
    broken = bytearray(frame)
    broken[OPTIONS_OFF - 4] ^= 0xFF
    assert handle(dhcp, bytes(broken)).drop == "no_magic_cookie"


def test_malformed_framing_dropped(dhcp):
    frame = dhcp_request("discover", udp_checksum=0)
    broken = frame[: OPTIONS_OFF + 1] + b"\x40" + frame[OPTIONS_OFF + 2 :]  # 53 claims 64 bytes
    assert handle(dhcp, broken).drop == "bad_options"
    assert handle(dhcp, b"\x00" * 12 + b"\x86\xdd" + bytes(100)).drop == "bad_ethertype"


def test_message_type_with_bad_length_is_no_message_type(dhcp):
    frame = dhcp_request(None, options=[(53, b"\x01\x01")])
    assert handle(dhcp, frame).drop == "no_message_type"


def test_unknown_client_without_pool(dhcp):
    out = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    assert (out.received, out.drop, out.reply, out.mac) == (
        "DHCPDISCOVER",
        "unknown_client",
        None,
        None,
    )


def test_binding_without_ipv4_is_unknown():
    table = BindingTable([Binding(name="v6only", mac=UNKNOWN_MAC)], [])
    out = handle(
        Dhcpv4Responder(seed_params(), table), dhcp_request("discover", eth_src=UNKNOWN_MAC_STR)
    )
    assert out.drop == "unknown_client"


@pytest.mark.parametrize("mtype", ["discover", "request"])
def test_every_truncated_prefix_is_dropped(dhcp, mtype):
    frame = dhcp_request(mtype, options=[("requested_addr", SEED_IP_STR)])
    for n in range(len(frame)):
        out = handle(dhcp, frame[:n])
        assert out.reply is None and out.drop in DROP_REASONS, (n, out)
    # The same with UDP checksum 0, so that cuts reach the BOOTP decoder's own checks.
    frame = dhcp_request(mtype, udp_checksum=0, options=[("requested_addr", SEED_IP_STR)])
    for n in range(len(frame)):
        out = handle(dhcp, frame[:n])
        assert out.reply is None and out.drop in DROP_REASONS, (n, out)


def test_truncated_bootp_inside_consistent_headers_is_dropped(dhcp):
    # IPv4/UDP lengths rewritten to match each shorter BOOTP message (UDP checksum 0):
    # the BOOTP decoder itself must refuse, never the reply builder crash.
    payload = dhcp_request("discover")[BOOTP_OFF:]
    for n in range(0, len(payload)):
        frame = encode_udp4_frame(b"\xff" * 6, SEED_MAC, bytes(4), BROADCAST4, 68, 67, payload[:n])
        out = handle(dhcp, frame)
        if n >= 243 and payload[240:243] == b"\x35\x01\x01":
            assert out.sent == "DHCPOFFER"  # 53 is complete: a DISCOVER without END is served
        else:
            assert out.drop in {"truncated", "no_magic_cookie", "bad_options", "no_message_type"}


def test_ethernet_padding_tolerated(dhcp):
    frame = dhcp_request("discover")
    for padding in (bytes(4), b"\xaa" * 40):
        assert options(handle(dhcp, frame + padding)) == SEED_OFFER_OPTIONS


def test_zero_udp_checksum_accepted(dhcp):
    assert handle(dhcp, dhcp_request("discover", udp_checksum=0)).sent == "DHCPOFFER"


# Relays (RFC 2131 §4.1)


def relayed(mtype: str, **kw) -> bytes:
    return dhcp_request(
        mtype, eth_src=RELAY_MAC_STR, eth_dst="0a:58:a9:fe:01:01", ip_src=RELAY_IP_STR,
        ip_dst="169.254.1.1", sport=67, giaddr=RELAY_IP_STR, hops=1, chaddr=SEED_MAC, **kw,
    )  # fmt: skip


def test_relayed_discover_answered_to_giaddr_port_67(dhcp):
    out = handle(dhcp, relayed("discover"))
    # No `mac`: the client is behind the relay, not a VM on this port (no arrival check).
    assert out.sent == "DHCPOFFER" and out.mac is None
    relay_mac = bytes.fromhex(RELAY_MAC_STR.replace(":", ""))
    relay_ip = ipaddress.IPv4Address(RELAY_IP_STR).packed
    assert addressing(out) == (relay_mac, GW_MAC, GW_IP, relay_ip, 67, 67)
    assert bootp(out)[24:28] == relay_ip  # giaddr copied
    assert bootp(out)[16:20] == SEED_IP
    assert options(out) == SEED_OFFER_OPTIONS
    assert_scapy_agrees(out)


def test_relayed_nak_sets_broadcast_flag(dhcp):
    out = handle(dhcp, relayed("request", options=[("requested_addr", "10.1.2.3")]))
    assert out.sent == "DHCPNAK"
    assert addressing(out)[3:] == (ipaddress.IPv4Address(RELAY_IP_STR).packed, 67, 67)
    assert bootp(out)[10:12] == b"\x80\x00"  # RFC 2131 §4.3.2


def test_relayed_with_non_ethernet_chaddr_dropped(dhcp):
    assert handle(dhcp, relayed("discover", hlen=16)).drop == "not_bootrequest"


def test_relayed_unknown_chaddr(dhcp):
    frame = dhcp_request("discover", eth_src=RELAY_MAC_STR, giaddr=RELAY_IP_STR, chaddr=UNKNOWN_MAC)
    assert handle(dhcp, frame).drop == "unknown_client"  # chaddr, not the Ethernet src


def test_relay_claimed_by_a_vm_is_refused(dhcp):
    """A bound VM setting giaddr and another client's chaddr must not learn its address."""
    frame = dhcp_request(
        "discover", eth_src=SEED_MAC.hex(":"), giaddr=RELAY_IP_STR, chaddr=UNKNOWN_MAC
    )
    out = handle(dhcp, frame)
    assert (out.drop, out.reply, out.mac) == ("relay_from_vm", None, SEED_MAC)


# Option contents and order


def test_option_order_with_everything_configured():
    params = seed_params(search=["svc.cluster.local", "cluster.local"], mtu=8900)
    table = BindingTable([seed_binding(hostname="fedora.example")])
    out = handle(Dhcpv4Responder(params, table), dhcp_request("discover"))
    block = options(out)
    assert option_codes(block) == [53, 1, 3, 6, 12, 15, 119, 26, 51, 54, 121]
    start = block.index(b"\x0c\x0e")
    assert block[start : start + 16 + 19 + 36 + 4] == bytes.fromhex(
        "0c0e 6665646f72612e6578616d706c65"  # 12 hostname "fedora.example" (over the name)
        "0f11 7376632e636c75737465722e6c6f63616c"  # 15 domain name: the first search domain
        "7722"  # 119 domain search, 34 bytes:
        "03737663 07636c7573746572 056c6f63616c 00"  # svc.cluster.local
        "07636c7573746572 056c6f63616c 00"  # cluster.local
        "1a02 22c4"  # 26 MTU 8900
    )
    assert scapy_options(out)["domain"] == b"svc.cluster.local"


def test_optional_options_omitted():
    params = GatewayParams(mtu=None)  # no DNS, no MTU, no search
    table = BindingTable([seed_binding(name="")])
    out = handle(Dhcpv4Responder(params, table), dhcp_request("discover"))
    assert option_codes(options(out)) == [53, 1, 3, 51, 54, 121]
    # 240 + 44 bytes of options (3+6+6+6+6+16+1): padded with 16 zero bytes to 300.
    assert len(bootp(out)) == 300
    assert options(out).endswith(
        b"\x79\x0e" + bytes.fromhex("20a9fe010100000000 00a9fe0101ff") + bytes(16)
    )


def test_multiple_dns_servers():
    params = seed_params(dns_servers=[bytes((10, 96, 0, 10)), bytes((10, 96, 0, 11))])
    out = handle(Dhcpv4Responder(params, seed_table()), dhcp_request("discover"))
    assert bytes.fromhex("0608 0a60000a 0a60000b") in options(out)


def test_subnet_router_mode():
    params = seed_params(router_mode=ROUTER_SUBNET)
    out = handle(Dhcpv4Responder(params, seed_table()), dhcp_request("discover"))
    block = options(out)
    assert bytes.fromhex("0304 0af40201") in block  # 3 router 10.244.2.1
    # 121: only the default route, the router being on-link in the VM's /24.
    assert block.endswith(bytes.fromhex("3604 a9fe01017905 00 0af40201ff") + bytes(7))
    assert addressing(out)[2] == GW_IP  # server id / source stays 169.254.1.1


def test_subnet_mode_host_route_for_slash_32():
    # router_for falls back to the gateway for /31 and /32, which is then off-link.
    params = seed_params(router_mode=ROUTER_SUBNET)
    table = BindingTable([seed_binding(prefixlen=32)])
    block = options(handle(Dhcpv4Responder(params, table), dhcp_request("discover")))
    assert bytes.fromhex("0104 ffffffff") in block
    assert bytes.fromhex("790e 20a9fe0101 00000000 00a9fe0101") in block


def test_ovn_offer_option_vectors():
    # SPEC "Test vectors": OVN's OFFER options for server id 10.0.0.1, lease 3600, router
    # 10.0.0.1, /24. lmdp orders them differently but encodes each value the same.
    params = GatewayParams(gateway_ipv4=bytes((10, 0, 0, 1)), lease_time=3600, mtu=None)
    table = BindingTable([Binding(name="", mac=SEED_MAC, ipv4=bytes((10, 0, 0, 5)), prefixlen=24)])
    block = options(handle(Dhcpv4Responder(params, table), dhcp_request("discover")))
    for tlv in ("330400000e10", "0104ffffff00", "03040a000001", "36040a000001"):
        assert bytes.fromhex(tlv) in block, tlv
    assert option_codes(block) == [53, 1, 3, 51, 54, 121]


def test_bad_configuration_fails_at_construction():
    with pytest.raises(ValueError):
        Dhcpv4Responder(seed_params(search=["a" * 64 + ".example"]), seed_table())
    with pytest.raises(ValueError):
        Dhcpv4Responder(seed_params(mtu=40), seed_table())


def test_binding_change_is_not_hidden_by_the_cache(dhcp, table):
    assert bootp(handle(dhcp, dhcp_request("discover")))[16:20] == SEED_IP
    table.add(seed_binding(ipv4=bytes((10, 244, 2, 77)), hostname="renamed"))
    out = handle(dhcp, dhcp_request("discover"))
    assert bootp(out)[16:20] == bytes((10, 244, 2, 77))
    assert b"\x0c\x07renamed" in options(out)


# Pools


def pool_responder(size: int = 2, **kw) -> Dhcpv4Responder:
    return Dhcpv4Responder(
        seed_params(), seed_table(pool=True, pool_size=size), node="node-a", **kw
    )


def test_pool_allocates_and_asks_for_commit():
    dhcp = pool_responder()
    out = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    allocated = bytes((10, 244, 9, 10))
    assert out.sent == "DHCPOFFER" and out.mac == UNKNOWN_MAC
    assert bootp(out)[16:20] == allocated
    # The allocation goes with the OFFER, which need not wait for the store (but does while
    # the store is down); only the ACK always waits.
    assert out.lease == Lease(UNKNOWN_MAC, allocated, 24, "node-a") and not out.commit_first
    assert bytes.fromhex("0104 ffffff00") in options(out)
    assert option_codes(options(out)) == [53, 1, 3, 6, 26, 51, 54, 121]  # no name: no 12
    # The same MAC asks again: the address is held for it.
    again = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    assert bootp(again)[16:20] == allocated and again.lease == out.lease
    # The REQUEST's ACK carries the lease for the engine to commit first.
    frame = dhcp_request(
        "request", eth_src=UNKNOWN_MAC_STR, options=[("requested_addr", "10.244.9.10")]
    )
    ack = handle(dhcp, frame)
    assert ack.sent == "DHCPACK" and ack.lease == out.lease and ack.commit_first
    # ... and the NAK the engine sends instead if the store gives the address to another.
    nak = Ether(ack.nak)
    assert nak[Ether].dst == UNKNOWN_MAC_STR and nak[BOOTP].yiaddr == "0.0.0.0"
    assert ("message-type", 6) in nak[DHCP].options
    # Once the store has it, nothing more to commit.
    dhcp.table.confirm(ack.lease)
    ack = handle(dhcp, frame)
    assert ack.sent == "DHCPACK" and ack.lease is None


def test_pool_ack_before_commit_carries_the_lease():
    dhcp = pool_responder()
    handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    frame = dhcp_request(
        "request", eth_src=UNKNOWN_MAC_STR, options=[("requested_addr", "10.244.9.10")]
    )
    ack = handle(dhcp, frame)
    assert ack.sent == "DHCPACK" and ack.lease is not None


def test_pool_request_from_unknown_allocates_then_naks_other_address():
    dhcp = pool_responder()
    frame = dhcp_request(
        "request", eth_src=UNKNOWN_MAC_STR, options=[("requested_addr", "192.168.1.50")]
    )
    out = handle(dhcp, frame)
    assert out.sent == "DHCPNAK" and out.lease is None  # the NAK names no address
    offer = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    assert offer.sent == "DHCPOFFER" and bootp(offer)[16:20] == bytes((10, 244, 9, 10))


def test_pool_exhausted():
    dhcp = pool_responder(size=2)
    for i in range(2):
        mac = f"02:00:00:00:00:{i:02x}"
        assert handle(dhcp, dhcp_request("discover", eth_src=mac)).sent == "DHCPOFFER"
    out = handle(dhcp, dhcp_request("discover", eth_src="02:00:00:00:00:99"))
    assert (out.received, out.drop, out.reply) == ("DHCPDISCOVER", "pool_exhausted", None)


def test_pool_allocation_disabled():
    dhcp = pool_responder(allocate=False)
    assert handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR)).drop == "unknown_client"


def test_pool_never_hands_out_a_static_address():
    subnet = ipaddress.IPv4Network("10.244.2.0/24")
    table = BindingTable([seed_binding()], [Pool(subnet, subnet[26], subnet[27])])
    dhcp = Dhcpv4Responder(seed_params(), table)
    out = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    assert bootp(out)[16:20] == bytes((10, 244, 2, 27))


def test_pool_after_restart_continues_past_the_leases_read_back():
    """Restored leases move the search start past them: the first new client after a
    restart does not walk every address held (and freed ones are not reused at once)."""
    subnet = ipaddress.IPv4Network("10.244.9.0/24")
    table = BindingTable([], [Pool(subnet, subnet[10], subnet[254])])
    for i, last in enumerate((10, 11, 12, 40, 13)):
        table.restore(Lease(bytes.fromhex(f"0200000000{i:02x}"), bytes((10, 244, 9, last)), 24))
    dhcp = Dhcpv4Responder(seed_params(), table)
    out = handle(dhcp, dhcp_request("discover", eth_src=UNKNOWN_MAC_STR))
    assert bootp(out)[16:20] == bytes((10, 244, 9, 41))
    # The last address held: the search wraps to the start and skips what is held.
    table = BindingTable([], [Pool(subnet, subnet[10], subnet[12])])
    table.restore(Lease(bytes.fromhex("020000000001"), bytes((10, 244, 9, 12)), 24))
    table.restore(Lease(bytes.fromhex("020000000002"), bytes((10, 244, 9, 10)), 24))
    out = handle(
        Dhcpv4Responder(seed_params(), table), dhcp_request("discover", eth_src=UNKNOWN_MAC_STR)
    )
    assert bootp(out)[16:20] == bytes((10, 244, 9, 11))


def test_pool_clients_of_a_subnet_share_one_option_block():
    dhcp = pool_responder(size=5)
    for i in range(5):
        out = handle(dhcp, dhcp_request("discover", eth_src=f"02:00:00:00:00:{i:02x}"))
        assert bootp(out)[16:20] == bytes((10, 244, 9, 10 + i))
        assert options(out) == options(handle(pool_responder(size=5), dhcp_request(
            "discover", eth_src=f"02:00:00:00:00:{i:02x}")))  # fmt: skip
        assert_scapy_agrees(out)
    assert len(dhcp._cache) == 1


def test_option_cache_is_bounded(monkeypatch):
    # One cached option block per (type, address, prefix, hostname): churn must not grow it.
    monkeypatch.setattr("protocols.dhcpv4.server._CACHE_LIMIT", 4)
    table = BindingTable()
    dhcp = Dhcpv4Responder(seed_params(), table)
    for i in range(20):
        table.add(seed_binding(ipv4=bytes((10, 244, 2, 100 + i)), hostname=f"vm{i}"))
        out = handle(dhcp, dhcp_request("discover"))
        assert bootp(out)[16:20] == bytes((10, 244, 2, 100 + i))
        assert f"vm{i}".encode() in options(out)
        assert len(dhcp._cache) <= 4


def test_relayed_allocation_uses_the_pool_of_giaddrs_subnet():
    """RFC 2131 §4.3.1: a relayed client gets an address on the relay's link."""
    from protocols.bindings import Pool

    def pool(net, start, end):
        return Pool(
            ipaddress.ip_network(net), ipaddress.ip_address(start), ipaddress.ip_address(end)
        )

    table = BindingTable(
        [],
        [
            pool("10.1.0.0/24", "10.1.0.10", "10.1.0.20"),
            pool("10.2.0.0/24", "10.2.0.10", "10.2.0.20"),
        ],
    )
    responder = Dhcpv4Responder(seed_params(), table)
    frame = dhcp_request("discover", eth_src=RELAY_MAC_STR, giaddr="10.2.0.1", chaddr=UNKNOWN_MAC)
    out = handle(responder, frame)
    assert out.sent == "DHCPOFFER" and bootp(out)[16:20] == bytes((10, 2, 0, 10))
    frame = dhcp_request("discover", eth_src=RELAY_MAC_STR, giaddr="10.3.0.1", chaddr=b"\x0a" * 6)
    assert handle(responder, frame).drop == "no_subnet"
