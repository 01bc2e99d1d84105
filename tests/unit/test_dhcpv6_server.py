"""The DHCPv6 responder against SPEC "DHCPv6" (RFC 8415, RFC 3646, RFC 4704).

Requests are built by scapy; replies are checked byte by byte and parsed back by scapy,
whose recomputed UDP checksum must equal ours.
"""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers import dhcp6 as s6
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from protocols.bindings import Binding, BindingTable, Lease6, Pool6
from protocols.dhcpv4.server import Dhcpv4Responder
from protocols.dhcpv6.codec import decode_dhcpv6
from protocols.dhcpv6.server import Dhcpv6Responder
from protocols.ipv6 import encode_udp6_frame
from protocols.outcome import DROP_REASONS
from protocols.params import INFINITE_LIFETIME, GatewayParams
from tests.helpers import (
    DHCP6_DUID,
    DHCP6_MAC,
    DHCP6_OFF,
    DHCP6_SRC,
    DHCP6_SRC_STR,
    IAID,
    OTHER_MAC_STR,
    POOL6_SUBNET,
    SEED_IP6,
    SEED_IP6_STR,
    SEED_LL,
    SEED_MAC,
    SEED_MAC_STR,
    UNKNOWN_MAC,
    UNKNOWN_MAC_STR,
    V6ONLY_IP6,
    V6ONLY_LL_STR,
    V6ONLY_MAC,
    V6ONLY_MAC_STR,
    XID6,
    dhcp6_request,
    dhcp_request,
    duid_ll_of,
    ns_frame,
    seed_binding,
    seed_binding6,
    seed_params,
    seed_params6,
    seed_table,
    seed_table6,
)

# SPEC "DHCPv6": the ADVERTISE answering the seed VM's SOLICIT (default parameters plus
# the IPv6 DNS server fd00:10:96::a), field by field.
SEED_ADVERTISE = bytes.fromhex(
    "0a580af4021a"  # Ethernet dst: the request's Ethernet src
    "0a586d6dc150"  # Ethernet src: the DHCPv6 server MAC
    "86dd"  # ethertype IPv6
    "60000000"  # version 6
    "006d"  # payload length 109
    "11"  # next header UDP
    "01"  # hop limit: copied from the request (1)
    "fe80000000000000 0858 6dff fe6d c150"  # src fe80::858:6dff:fe6d:c150
    "fe80000000000000 0858 0aff fef4 021a"  # dst: the request's source
    "0223 0222"  # UDP 547 -> 546
    "006d"  # UDP length 109
    "6604"  # UDP checksum
    "02"  # msg-type ADVERTISE
    "123456"  # transaction-id (copied)
    "0001 000a 0003 0001 0a580af4021a"  # Client Identifier (copied)
    "0002 000a 0003 0001 0a586d6dc150"  # Server Identifier: DUID-LL of 0a:58:6d:6d:c1:50
    "0007 0001 ff"  # Preference 255: request at once
    "0003 0028"  # IA_NA, 40 bytes:
    "0a0b0c0d"  # IAID (copied)
    "000006d6"  # T1 1750 = 0.5 x preferred
    "00000af0"  # T2 2800 = 0.8 x preferred
    "0005 0018"  # IA Address, 24 bytes:
    "fd00 0010 0244 0002 0000 0000 0000 001a"  # fd00:10:244:2::1a (DESIGN's example binding)
    "00000dac"  # preferred lifetime 3500 (the lease time)
    "00000dac"  # valid lifetime 3500
    "0017 0010 fd00 0010 0096 0000 0000 0000 0000 000a"  # DNS servers: fd00:10:96::a
)
SEED_IA_NA = bytes.fromhex(
    "0003 0028 0a0b0c0d 000006d6 00000af0 0005 0018 fd00001002440002000000000000001a"
    "00000dac 00000dac"
)


def handle(responder: Dhcpv6Responder, frame: bytes):
    out = responder.handle(frame, "tap0", 1000.0)
    assert out.drop is None or out.drop in DROP_REASONS
    assert (out.reply is None) != (out.drop is None), out
    return out


@pytest.fixture
def dhcp6() -> Dhcpv6Responder:
    return Dhcpv6Responder(seed_params6(), seed_table6(), node="node-a")


def payload(out) -> bytes:
    return out.reply[DHCP6_OFF:]


def scapy_agrees(out):
    """scapy parses the reply as Ether/IPv6/UDP/DHCPv6 and recomputes the same checksum."""
    pkt = Ether(out.reply)
    assert IPv6 in pkt and UDP in pkt
    rebuilt = pkt.copy()
    rebuilt[UDP].chksum = None
    rebuilt[IPv6].plen = None
    rebuilt[UDP].len = None
    assert bytes(rebuilt) == out.reply
    return pkt


def addressing(out) -> tuple:
    """(Ethernet dst, Ethernet src, IPv6 src, IPv6 dst, hop limit, UDP sport, dport)."""
    r = out.reply
    return (
        r[0:6],
        r[6:12],
        r[22:38],
        r[38:54],
        r[21],
        int.from_bytes(r[54:56], "big"),
        int.from_bytes(r[56:58], "big"),
    )


def option_codes(out) -> list[int]:
    return [code for code, _ in decode_dhcpv6(payload(out)).options]


def ia_of(out, index: int = 0):
    return decode_dhcpv6(payload(out)).ia_nas()[index]


# SOLICIT -> ADVERTISE


def test_solicit_advertise_exact(dhcp6):
    out = handle(dhcp6, dhcp6_request("solicit"))
    assert (out.received, out.sent, out.drop, out.mac, out.lease6) == (
        "SOLICIT",
        "ADVERTISE",
        None,
        SEED_MAC,
        None,  # a static binding needs no commit
    )
    assert out.reply == SEED_ADVERTISE
    assert addressing(out) == (SEED_MAC, DHCP6_MAC, DHCP6_SRC, SEED_LL, 1, 547, 546)


def test_advertise_parsed_by_scapy(dhcp6):
    pkt = scapy_agrees(handle(dhcp6, dhcp6_request("solicit")))
    adv = pkt[s6.DHCP6_Advertise]
    assert adv.trid == XID6
    assert bytes(pkt[s6.DHCP6OptClientId].duid) == duid_ll_of(SEED_MAC_STR)
    assert bytes(pkt[s6.DHCP6OptServerId].duid) == DHCP6_DUID
    assert pkt[s6.DHCP6OptPref].prefval == 255
    ia = pkt[s6.DHCP6OptIA_NA]
    assert (ia.iaid, ia.T1, ia.T2) == (IAID, 1750, 2800)
    addr = ia.ianaopts[0]
    assert (addr.addr, addr.preflft, addr.validlft) == (SEED_IP6_STR, 3500, 3500)
    assert pkt[s6.DHCP6OptDNSServers].dnsservers == ["fd00:10:96::a"]


def test_solicit_with_rapid_commit_gets_reply(dhcp6):
    out = handle(dhcp6, dhcp6_request("solicit", rapid_commit=True))
    assert (out.received, out.sent) == ("SOLICIT", "REPLY")
    body = payload(out)
    assert body[0] == 7 and bytes.fromhex("000e 0000") in body  # Rapid Commit (RFC 8415 §21.14)
    assert bytes.fromhex("0007") not in body[:40]  # no Preference in a REPLY
    assert SEED_IA_NA in body
    pkt = scapy_agrees(out)
    assert s6.DHCP6_Reply in pkt and s6.DHCP6OptRapidCommit in pkt


def test_solicit_hint_is_ignored(dhcp6):
    out = handle(dhcp6, dhcp6_request("solicit", addresses=("fd00::77",)))
    assert [a.address for a in ia_of(out).addresses] == [SEED_IP6]


# REQUEST, RENEW, REBIND -> REPLY


@pytest.mark.parametrize("mtype", ["request", "renew", "rebind"])
def test_reply_with_the_binding_address(dhcp6, mtype):
    out = handle(dhcp6, dhcp6_request(mtype, addresses=(SEED_IP6_STR,)))
    assert (out.received, out.sent, out.mac) == (mtype.upper(), "REPLY", SEED_MAC)
    body = payload(out)
    assert body[:4] == bytes.fromhex("07 123456")
    assert SEED_IA_NA in body  # the same address, new lifetimes
    assert option_codes(out) == [1, 2, 3, 23]
    assert addressing(out) == (SEED_MAC, DHCP6_MAC, DHCP6_SRC, SEED_LL, 1, 547, 546)
    assert s6.DHCP6_Reply in scapy_agrees(out)


def test_request_for_another_address_gets_the_binding(dhcp6):
    # RFC 8415 §18.3.2: addresses in a REQUEST are hints; the server assigns.
    out = handle(dhcp6, dhcp6_request("request", addresses=("fd00:10:244:2::99",)))
    ia = ia_of(out)
    assert [(a.address, a.preferred, a.valid) for a in ia.addresses] == [(SEED_IP6, 3500, 3500)]


@pytest.mark.parametrize("mtype", ["renew", "rebind"])
def test_renew_of_a_stale_address_returns_it_with_zero_lifetimes(dhcp6, mtype):
    # RFC 8415 §18.3.4/§18.3.5: an address not appropriate for the link comes back with
    # lifetimes 0, next to the binding's address, so the guest drops it at once.
    stale = "fd00:10:244:2::99"
    out = handle(dhcp6, dhcp6_request(mtype, addresses=(stale, SEED_IP6_STR)))
    ia = ia_of(out)
    assert (ia.t1, ia.t2, ia.status) == (1750, 2800, None)
    assert [(a.address, a.preferred, a.valid) for a in ia.addresses] == [
        (SEED_IP6, 3500, 3500),
        (ipaddress.IPv6Address(stale).packed, 0, 0),
    ]
    opts = scapy_agrees(out)[s6.DHCP6OptIA_NA].ianaopts
    assert [(o.addr, o.validlft) for o in opts] == [(SEED_IP6_STR, 3500), (stale, 0)]


def test_request_and_renew_unicast_to_the_server_are_served(dhcp6):
    for mtype in ("request", "renew", "release", "decline"):
        frame = dhcp6_request(mtype, ip_dst=DHCP6_SRC_STR, eth_dst="0a:58:6d:6d:c1:50")
        assert handle(dhcp6, frame).sent == "REPLY", mtype


def test_hop_limit_copied(dhcp6):
    for hlim in (1, 64, 255):
        assert addressing(handle(dhcp6, dhcp6_request("renew", hlim=hlim)))[4] == hlim


def test_renew_after_migration_names_this_server_on_every_node():
    # The DUID is the same on every node (SPEC), so a RENEW carrying the Server-ID of the
    # node the VM came from is ours on the target node too.
    source = Dhcpv6Responder(seed_params6(), seed_table6(), node="node-a")
    target = Dhcpv6Responder(seed_params6(), seed_table6(), node="node-b")
    sid = bytes(Ether(handle(source, dhcp6_request("solicit")).reply)[s6.DHCP6OptServerId].duid)
    out = handle(target, dhcp6_request("renew", server_id=sid, addresses=(SEED_IP6_STR,)))
    assert out.sent == "REPLY" and SEED_IA_NA in payload(out)


# CONFIRM, RELEASE, DECLINE, INFORMATION-REQUEST


@pytest.mark.parametrize(
    ("addresses", "status"),
    [
        ((SEED_IP6_STR,), b"\x00\x00"),  # Success
        (("fd00:10:244:2::ffff",), b"\x00\x00"),  # another address on the /64: on-link
        (("fd00:10:244:3::1a",), b"\x00\x04"),  # NotOnLink
        ((SEED_IP6_STR, "2001:db8::1"), b"\x00\x04"),  # one off-link address is enough
    ],
)
def test_confirm(dhcp6, addresses, status):
    out = handle(dhcp6, dhcp6_request("confirm", addresses=addresses))
    assert (out.received, out.sent) == ("CONFIRM", "REPLY")
    body = payload(out)
    assert option_codes(out) == [1, 2, 13]  # top-level Status Code, no IA_NA
    assert body[body.index(b"\x00\x0d") + 4 :][:2] == status
    assert scapy_agrees(out)[s6.DHCP6OptStatusCode].statuscode == status[1]


def test_confirm_without_addresses_is_not_answered(dhcp6):
    # RFC 8415 §18.3.3: no addresses in any IA: the server MUST NOT reply.
    out = handle(dhcp6, dhcp6_request("confirm"))
    assert (out.drop, out.reply) == ("confirm_without_address", None)


@pytest.mark.parametrize("mtype", ["release", "decline"])
def test_release_decline_reply_success(dhcp6, mtype):
    out = handle(dhcp6, dhcp6_request(mtype, addresses=(SEED_IP6_STR,)))
    assert (out.received, out.sent, out.mac) == (mtype.upper(), "REPLY", SEED_MAC)
    assert option_codes(out) == [1, 2, 13]
    assert payload(out).endswith(bytes.fromhex("000d 0002 0000"))  # Success, no message
    assert out.conflict == (SEED_IP6 if mtype == "decline" else None)
    assert scapy_agrees(out)[s6.DHCP6OptStatusCode].statuscode == 0
    # The binding stays: the next SOLICIT gets the same address.
    assert SEED_IA_NA in payload(handle(dhcp6, dhcp6_request("solicit")))


def test_decline_without_address_names_the_binding(dhcp6):
    assert handle(dhcp6, dhcp6_request("decline")).conflict == SEED_IP6


def test_information_request(dhcp6):
    out = handle(dhcp6, dhcp6_request("information-request", iaids=()))
    assert (out.received, out.sent, out.mac) == ("INFORMATION-REQUEST", "REPLY", SEED_MAC)
    assert option_codes(out) == [1, 2, 23]  # no IA_NA
    # Without a Client Identifier (RFC 8415 §18.2.6: optional here): answered without one.
    out = handle(dhcp6, dhcp6_request("information-request", iaids=(), client_id=False))
    assert option_codes(out) == [2, 23]
    # Naming this server is allowed (RFC 8415 §16.12), another server is not.
    frame = dhcp6_request("information-request", iaids=(), server_id=DHCP6_DUID)
    assert handle(dhcp6, frame).sent == "REPLY"
    frame = dhcp6_request("information-request", iaids=(), server_id=b"\x00\x03\x00\x01abcdef")
    assert handle(dhcp6, frame).drop == "not_for_us"
    # Carrying an IA is refused (RFC 8415 §16.12).
    assert handle(dhcp6, dhcp6_request("information-request")).drop == "unexpected_ia"


def test_information_request_who_is_answered():
    frame = dhcp6_request("information-request", iaids=(), eth_src=UNKNOWN_MAC_STR)
    # Unknown MAC, no IPv6 pool: no reply.
    out = handle(Dhcpv6Responder(seed_params6(), seed_table6()), frame)
    assert (out.drop, out.mac) == ("unknown_client", None)
    # Unknown MAC, with an IPv6 pool (which would serve it anyway): answered.
    assert handle(Dhcpv6Responder(seed_params6(), seed_table6(pool6=True)), frame).sent == "REPLY"
    # A bound MAC without IPv6 (IPv4-only VM): answered, it is a known VM.
    out = handle(
        Dhcpv6Responder(seed_params6(), seed_table()),
        dhcp6_request("information-request", iaids=()),
    )
    assert out.sent == "REPLY"


# Bad input: dropped, counted by reason, never answered


@pytest.mark.parametrize(
    "mtype", ["solicit", "request", "renew", "rebind", "confirm", "release", "decline"]
)
def test_without_client_id_dropped(dhcp6, mtype):
    out = handle(dhcp6, dhcp6_request(mtype, client_id=False, addresses=(SEED_IP6_STR,)))
    assert (out.received, out.drop, out.mac) == (mtype.upper(), "no_client_id", SEED_MAC)


@pytest.mark.parametrize(
    "mtype", ["solicit", "request", "renew", "rebind", "confirm", "release", "decline"]
)
def test_without_ia_na_dropped(dhcp6, mtype):
    assert handle(dhcp6, dhcp6_request(mtype, iaids=())).drop == "no_ia_na"


def test_malformed_ia_na_is_no_ia_na(dhcp6):
    frame = dhcp6_request("solicit", iaids=(), options=[s6.DHCP6OptUnknown(optcode=3, data=b"x")])
    assert handle(dhcp6, frame).drop == "no_ia_na"


@pytest.mark.parametrize("mtype", ["request", "renew", "release", "decline"])
def test_server_id_required_and_must_be_ours(dhcp6, mtype):
    # RFC 8415 §16.4, §16.6, §16.8, §16.9.
    assert handle(dhcp6, dhcp6_request(mtype, server_id=None)).drop == "no_server_id"
    other = bytes.fromhex("00030001 000000001002")
    assert handle(dhcp6, dhcp6_request(mtype, server_id=other)).drop == "not_for_us"


@pytest.mark.parametrize("mtype", ["solicit", "confirm", "rebind"])
def test_server_id_forbidden(dhcp6, mtype):
    # RFC 8415 §16.2, §16.5, §16.7: discarded even when the id is ours.
    frame = dhcp6_request(mtype, server_id=DHCP6_DUID, addresses=(SEED_IP6_STR,))
    assert handle(dhcp6, frame).drop == "server_id_present"


@pytest.mark.parametrize(
    ("mtype", "label"),
    [
        ("advertise", "ADVERTISE"),
        ("reply", "REPLY"),
        ("reconfigure", "RECONFIGURE"),
    ],
)
def test_server_messages_from_a_vm_dropped(dhcp6, mtype, label):
    out = handle(dhcp6, dhcp6_request(mtype, server_id=DHCP6_DUID))
    assert (out.received, out.drop, out.reply, out.mac) == (label, "server_message", None, SEED_MAC)


def test_relay_messages_dropped(dhcp6):
    relay_repl = bytes(
        Ether(src=SEED_MAC_STR, dst="33:33:00:01:00:02")
        / IPv6(src=str(ipaddress.IPv6Address(SEED_LL)), dst="ff02::1:2")
        / UDP(sport=547, dport=547)
        / s6.DHCP6_RelayReply()
    )
    assert handle(dhcp6, relay_repl).drop == "server_message"
    relay_forw = bytes(
        Ether(src=SEED_MAC_STR, dst="33:33:00:01:00:02")
        / IPv6(src=str(ipaddress.IPv6Address(SEED_LL)), dst="ff02::1:2")
        / UDP(sport=547, dport=547)
        / s6.DHCP6_RelayForward()
    )
    out = handle(dhcp6, relay_forw)
    assert (out.received, out.drop) == ("RELAY-FORW", "unsupported_message")


def test_unknown_message_type(dhcp6):
    frame = bytearray(dhcp6_request("solicit"))
    frame[DHCP6_OFF] = 99
    frame[60:62] = b"\x12\x34"  # any non-zero checksum is taken (not verified)
    out = handle(dhcp6, bytes(frame))
    assert (out.received, out.drop) == ("DHCPV6UNKNOWN", "unsupported_message")


def test_destinations(dhcp6):
    # Unicast to another address, or to another group.
    assert handle(dhcp6, dhcp6_request("request", ip_dst="fe80::2")).drop == "wrong_destination"
    assert handle(dhcp6, dhcp6_request("solicit", ip_dst="ff02::1")).drop == "wrong_destination"
    # SOLICIT, CONFIRM, REBIND, INFORMATION-REQUEST only by multicast (RFC 8415 §16).
    for mtype in ("solicit", "confirm", "rebind", "information-request"):
        frame = dhcp6_request(
            mtype,
            ip_dst=DHCP6_SRC_STR,
            addresses=(SEED_IP6_STR,),
            iaids=() if mtype == "information-request" else (IAID,),
        )
        assert handle(dhcp6, frame).drop == "unicast_forbidden", mtype
    # Nowhere to answer.
    assert handle(dhcp6, dhcp6_request("solicit", ip_src="::")).drop == "bad_source"
    assert handle(dhcp6, dhcp6_request("solicit", ip_src="ff02::5")).drop == "bad_source"
    assert handle(dhcp6, dhcp6_request("solicit", dport=546)).drop == "wrong_port"


def test_udp_checksums(dhcp6):
    # RFC 8200 §8.1: a zero UDP checksum over IPv6 is invalid.
    assert handle(dhcp6, dhcp6_request("solicit", udp_checksum=0)).drop == "bad_checksum"
    # A wrong non-zero one is taken: offloaded guests leave a partial sum there.
    assert handle(dhcp6, dhcp6_request("solicit", udp_checksum=0xBEEF)).sent == "ADVERTISE"


def test_not_ipv6_udp(dhcp6):
    assert handle(dhcp6, ns_frame()).drop == "not_udp"
    assert handle(dhcp6, dhcp_request("discover")).drop == "bad_ethertype"
    assert handle(dhcp6, b"\x00" * 13).drop == "truncated"


@pytest.mark.parametrize("mtype", ["solicit", "request", "renew"])
def test_every_truncated_prefix_is_dropped(dhcp6, mtype):
    frame = dhcp6_request(mtype, addresses=(SEED_IP6_STR,), fqdn=(1, "fedora"))
    for n in range(len(frame)):
        out = handle(dhcp6, frame[:n])
        assert out.reply is None and out.drop in DROP_REASONS, (n, out)


def test_truncated_message_inside_consistent_headers(dhcp6):
    # UDP/IPv6 lengths rewritten to match each shorter message: the DHCPv6 decoder itself
    # must refuse, or (cut at an option boundary after the IA_NA) serve what is complete.
    body = dhcp6_request("solicit")[DHCP6_OFF:]
    ia_end = len(body)
    for n in range(ia_end + 1):
        frame = encode_udp6_frame(
            bytes.fromhex("333300010002"),
            SEED_MAC,
            SEED_LL,
            bytes.fromhex("ff020000000000000000000000010002"),
            546,
            547,
            body[:n],
            1,
        )
        out = handle(dhcp6, frame)
        if n == ia_end:
            assert out.sent == "ADVERTISE"
        else:
            assert out.drop in {"truncated", "bad_options", "no_client_id", "no_ia_na"}, n


def test_ethernet_padding_tolerated(dhcp6):
    frame = dhcp6_request("solicit")
    for padding in (bytes(4), b"\xaa" * 40):
        assert handle(dhcp6, frame + padding).reply == SEED_ADVERTISE


# Reply options


def test_search_fqdn_and_option_order():
    params = seed_params6(search=["svc.cluster.local", "cluster.local"])
    dhcp6 = Dhcpv6Responder(params, seed_table6())
    out = handle(dhcp6, dhcp6_request("request", fqdn=(0, "fedora")))
    assert option_codes(out) == [1, 2, 3, 23, 24, 39]
    body = payload(out)
    tail = body[body.index(bytes.fromhex("0018 0022")) :]
    assert tail == bytes.fromhex(
        "0018 0022"  # domain search list (RFC 3646 §4), 34 bytes, uncompressed:
        "03737663 07636c7573746572 056c6f63616c 00"  # svc.cluster.local
        "07636c7573746572 056c6f63616c 00"  # cluster.local
        "0027 001b"  # Client FQDN, 27 bytes:
        "04"  # flags: N=1 (lmdp updates no DNS), S=0, O=0 (RFC 4704 §4.1)
        "06 6665646f7261 03 737663 07 636c7573746572 05 6c6f63616c 00"  # fedora.svc.cluster.local
    )
    pkt = scapy_agrees(out)
    assert pkt[s6.DHCP6OptDNSDomains].dnsdomains == ["svc.cluster.local.", "cluster.local."]
    assert pkt[s6.DHCP6OptClientFQDN].fqdn == b"fedora.svc.cluster.local."


def test_fqdn_flags_and_forms():
    table = seed_table6()
    dhcp6 = Dhcpv6Responder(seed_params6(), table)
    # The client asked the server to update (S=1): overridden, so O=1 and N=1, S=0.
    out = handle(dhcp6, dhcp6_request("solicit", fqdn=(1, "whatever")))
    assert payload(out).endswith(bytes.fromhex("0027 0008 06 06 6665646f7261"))  # partial
    assert scapy_agrees(out)[s6.DHCP6OptClientFQDN].flags == 6
    # A hostname with a dot is fully qualified as it is.
    table.add(seed_binding6(hostname="fedora.example"))
    out = handle(dhcp6, dhcp6_request("solicit", fqdn=(0, "x")))
    assert payload(out).endswith(bytes.fromhex("0027 0011 04 06 6665646f7261 07 6578616d706c65 00"))
    # Not sent: not answered (SPEC).
    assert 39 not in option_codes(handle(dhcp6, dhcp6_request("solicit")))
    # Not in CONFIRM/RELEASE replies.
    out = handle(dhcp6, dhcp6_request("release", fqdn=(0, "x")))
    assert 39 not in option_codes(out)


def test_fqdn_for_a_client_without_a_name_echoes_its_own():
    dhcp6 = Dhcpv6Responder(seed_params6(), seed_table6(pool6=True))
    frame = dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, fqdn=(0, "client.example"))
    out = handle(dhcp6, frame)
    assert payload(out).endswith(bytes.fromhex("0027 0011 04 06 636c69656e74 07 6578616d706c65 00"))


def test_optional_options_omitted_and_other_lifetimes():
    params = GatewayParams(
        mtu=None, dhcpv6_preference=None, preferred_lifetime=600, valid_lifetime=900
    )
    dhcp6 = Dhcpv6Responder(params, seed_table6())
    out = handle(dhcp6, dhcp6_request("solicit"))
    assert option_codes(out) == [1, 2, 3]  # no Preference, no DNS, no search
    ia = ia_of(out)
    assert (ia.t1, ia.t2) == (300, 480)  # 0.5 and 0.8 x preferred (RFC 8415 §21.4)
    assert [(a.preferred, a.valid) for a in ia.addresses] == [(600, 900)]


def test_infinite_lifetimes_as_ovn():
    params = seed_params6(preferred_lifetime=INFINITE_LIFETIME, valid_lifetime=INFINITE_LIFETIME)
    ia = ia_of(handle(Dhcpv6Responder(params, seed_table6()), dhcp6_request("solicit")))
    assert (ia.t1, ia.t2) == (INFINITE_LIFETIME, INFINITE_LIFETIME)
    assert [(a.preferred, a.valid) for a in ia.addresses] == [(INFINITE_LIFETIME,) * 2]


def test_spec_server_id_vector_in_a_reply():
    params = GatewayParams(dhcpv6_mac=bytes.fromhex("000000001002"))
    out = handle(Dhcpv6Responder(params, seed_table6()), dhcp6_request("solicit"))
    assert bytes.fromhex("0002 000a 0003 0001 000000001002") in payload(out)
    assert out.reply[6:12] == bytes.fromhex("000000001002")
    # A REQUEST must now name that id.
    frame = dhcp6_request("request", server_id=bytes.fromhex("00030001 000000001002"))
    assert handle(Dhcpv6Responder(params, seed_table6()), frame).sent == "REPLY"


@pytest.mark.parametrize(
    "overrides",
    [
        dict(preferred_lifetime=900, valid_lifetime=600),  # preferred > valid
        dict(valid_lifetime=2**32),
        dict(dhcpv6_preference=256),
        dict(dns6_servers=[bytes(4)]),
        dict(search=["a" * 64 + ".example"]),
        dict(dhcpv6_duid=b"\x00"),
    ],
)
def test_bad_configuration_fails_at_construction(overrides):
    with pytest.raises(ValueError):
        Dhcpv6Responder(seed_params6(**overrides), seed_table6())


# Bindings: static by MAC, IPv6-only, several IAs


def test_static_binding_found_by_mac_not_duid(dhcp6):
    out = handle(dhcp6, dhcp6_request("solicit", duid=b"\x00\x04" + bytes(16)))
    assert SEED_IA_NA in payload(out)
    # The seed's DUID from an unknown MAC is not the seed.
    frame = dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, duid=duid_ll_of(SEED_MAC_STR))
    out = handle(dhcp6, frame)
    assert (out.drop, out.mac) == ("unknown_client", None)


def test_ipv6_only_vm(dhcp6):
    frame = dhcp6_request("solicit", eth_src=V6ONLY_MAC_STR, ip_src=V6ONLY_LL_STR)
    out = handle(dhcp6, frame)
    assert out.sent == "ADVERTISE" and out.mac == V6ONLY_MAC
    assert [a.address for a in ia_of(out).addresses] == [V6ONLY_IP6]
    assert out.reply[:6] == V6ONLY_MAC
    # DHCPv4 has nothing for it.
    dhcp4 = Dhcpv4Responder(seed_params(), seed_table6())
    assert dhcp4.handle(dhcp_request("discover", eth_src=V6ONLY_MAC_STR), "tap0", 0).drop == (
        "unknown_client"
    )


def test_dual_stack_vm_gets_both(dhcp6):
    table = seed_table6()
    dhcp4 = Dhcpv4Responder(seed_params(), table)
    assert dhcp4.handle(dhcp_request("discover"), "tap0", 0).sent == "DHCPOFFER"
    assert handle(Dhcpv6Responder(seed_params6(), table), dhcp6_request("solicit")).sent == (
        "ADVERTISE"
    )


def test_static_binding_with_several_ia_na(dhcp6):
    # One address: the first IA_NA gets it, the others NoAddrsAvail (RFC 8415 §18.3.2).
    out = handle(dhcp6, dhcp6_request("request", iaids=(1, 2)))
    first, second = ia_of(out, 0), ia_of(out, 1)
    assert (first.iaid, [a.address for a in first.addresses]) == (1, [SEED_IP6])
    assert (second.iaid, second.addresses, second.status[0]) == (2, [], 2)
    assert (second.t1, second.t2) == (0, 0)
    # The IA that already holds the address keeps it.
    holding = s6.DHCP6OptIA_NA(iaid=2, ianaopts=[s6.DHCP6OptIAAddress(addr=SEED_IP6_STR)])
    frame = dhcp6_request("renew", iaids=(), options=[s6.DHCP6OptIA_NA(iaid=1), holding])
    out = handle(dhcp6, frame)
    assert ia_of(out, 0).addresses == [] and ia_of(out, 0).status[0] == 2
    assert [a.address for a in ia_of(out, 1).addresses] == [SEED_IP6]


def test_ia_pd_and_ia_ta_are_refused_politely(dhcp6):
    frame = dhcp6_request("solicit", options=[s6.DHCP6OptIA_PD(iaid=5), s6.DHCP6OptIA_TA(iaid=6)])
    out = handle(dhcp6, frame)
    assert out.sent == "ADVERTISE"
    body = payload(out)
    assert (
        bytes.fromhex(
            "0019 002b"  # IA_PD, 43 bytes:
            "00000005 00000000 00000000"  # IAID (copied), T1 0, T2 0
            "000d 001b 0006"  # Status Code NoPrefixAvail (RFC 8415 §21.13) ...
        )
        + b"no prefix delegation here"
        in body
    )
    assert (
        bytes.fromhex(
            "0004 0020"  # IA_TA, 32 bytes:
            "00000006"  # IAID (copied)
            "000d 0018 0002"  # Status Code NoAddrsAvail ...
        )
        + b"no address for this IA"
        in body
    )
    pkt = scapy_agrees(out)
    assert pkt[s6.DHCP6OptIA_PD].iaid == 5 and pkt[s6.DHCP6OptIA_TA].iaid == 6


def test_ipv4_only_binding_has_no_ipv6():
    out = handle(Dhcpv6Responder(seed_params6(), seed_table()), dhcp6_request("solicit"))
    assert (out.drop, out.mac) == ("unknown_client", SEED_MAC)


def test_binding_change_is_seen(dhcp6):
    dhcp6.table.add(
        seed_binding6(ipv6=bytes.fromhex("fd000010024400020000000000000077"), hostname="renamed")
    )
    out = handle(dhcp6, dhcp6_request("solicit", fqdn=(0, "x")))
    assert [a.address for a in ia_of(out).addresses] == [
        bytes.fromhex("fd000010024400020000000000000077")
    ]
    assert b"\x07renamed" in payload(out)


# Pools: allocations keyed by DUID and IAID


def pool_responder(size: int = 4, **kw) -> Dhcpv6Responder:
    return Dhcpv6Responder(
        seed_params6(), seed_table6(pool6=True, pool6_size=size), node="node-a", **kw
    )


def pool_address(n: int) -> bytes:
    return ipaddress.IPv6Network(POOL6_SUBNET)[0x10 + n].packed


def test_pool_allocates_by_duid_and_iaid_and_asks_for_commit():
    dhcp6 = pool_responder()
    duid = duid_ll_of(UNKNOWN_MAC_STR)
    frame = dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR)
    out = handle(dhcp6, frame)
    assert (out.sent, out.mac) == ("ADVERTISE", None)  # not a bound VM
    # The ADVERTISE need not wait for the store (unless it is down); the REPLY always does.
    assert out.lease6 == Lease6(duid, IAID, pool_address(0), 64, "node-a", UNKNOWN_MAC)
    assert not out.commit_first
    assert [a.address for a in ia_of(out).addresses] == [pool_address(0)]
    # The same IA again: the address is held for it.
    again = handle(dhcp6, frame)
    assert [a.address for a in ia_of(again).addresses] == [pool_address(0)]
    reply = handle(dhcp6, dhcp6_request("request", eth_src=UNKNOWN_MAC_STR))
    assert reply.lease6 == out.lease6 and reply.commit_first
    dhcp6.table.confirm6(reply.lease6)
    reply = handle(dhcp6, dhcp6_request("request", eth_src=UNKNOWN_MAC_STR))
    assert reply.sent == "REPLY" and reply.lease6 is None
    assert [a.address for a in ia_of(reply).addresses] == [pool_address(0)]
    # Another IAID of the same DUID is another IA: another address.
    out = handle(dhcp6, dhcp6_request("request", eth_src=UNKNOWN_MAC_STR, iaids=(99,)))
    assert out.lease6.ipv6 == pool_address(1) and out.lease6.iaid == 99


def test_a_thousand_duids_from_one_mac_get_a_thousand_addresses():
    # perfdhcp simulates many clients from one MAC: each DUID is its own client.
    dhcp6 = pool_responder(size=1000)
    seen = set()
    for i in range(1000):
        duid = b"\x00\x01\x00\x01" + i.to_bytes(4, "big") + UNKNOWN_MAC
        out = handle(
            dhcp6, dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, duid=duid, rapid_commit=True)
        )
        assert out.sent == "REPLY" and out.lease6.duid == duid
        dhcp6.table.confirm6(out.lease6)
        seen.add(out.lease6.ipv6)
    assert len(seen) == 1000
    out = handle(dhcp6, dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, duid=b"\x00\x02xyz"))
    assert (out.drop, out.reply) == ("pool_exhausted", None)


def test_pool_reply_to_several_new_ias_commits_them_all():
    """Two IA_NAs: the ADVERTISE names an address for each (held in memory), and the REPLY
    grants both, handing the engine both leases to commit in one transaction."""
    dhcp6 = pool_responder()
    offer = handle(dhcp6, dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, iaids=(1, 2)))
    offered = [ia_of(offer, k).addresses[0].address for k in (0, 1)]
    assert [x.ipv6 for x in (offer.lease6, *offer.extra6)] == offered
    assert not offer.commit_first
    out = handle(dhcp6, dhcp6_request("request", eth_src=UNKNOWN_MAC_STR, iaids=(1, 2)))
    assert [ia_of(out, k).addresses[0].address for k in (0, 1)] == offered
    assert [(x.iaid, x.ipv6) for x in (out.lease6, *out.extra6)] == [
        (1, offered[0]),
        (2, offered[1]),
    ]
    for lease in (out.lease6, *out.extra6):
        dhcp6.table.confirm6(lease)
    again = handle(dhcp6, dhcp6_request("request", eth_src=UNKNOWN_MAC_STR, iaids=(1, 2)))
    assert again.lease6 is None and again.extra6 == ()
    assert [ia_of(again, k).addresses[0].address for k in (0, 1)] == offered


def test_pool_renew_of_an_unknown_ia_allocates_and_zeroes_the_old_address():
    dhcp6 = pool_responder()
    frame = dhcp6_request("renew", eth_src=UNKNOWN_MAC_STR, addresses=("fd00:10:244:9::99",))
    out = handle(dhcp6, frame)
    ia = ia_of(out)
    assert [(a.address, a.valid) for a in ia.addresses] == [
        (pool_address(0), 3500),
        (bytes.fromhex("fd000010024400090000000000000099"), 0),
    ]
    assert out.lease6 is not None


def test_pool_allocation_disabled_or_no_pool():
    dhcp6 = pool_responder(allocate=False)
    frame = dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR)
    assert handle(dhcp6, frame).drop == "unknown_client"
    dhcp6.table.restore6(Lease6(duid_ll_of(UNKNOWN_MAC_STR), IAID, pool_address(2), 64))
    assert [a.address for a in ia_of(handle(dhcp6, frame)).addresses] == [pool_address(2)]
    assert handle(Dhcpv6Responder(seed_params6(), seed_table6()), frame).drop == "unknown_client"


@pytest.mark.parametrize("mtype", ["confirm", "release", "decline"])
def test_pool_messages_that_do_not_allocate(mtype):
    dhcp6 = pool_responder()
    frame = dhcp6_request(mtype, eth_src=UNKNOWN_MAC_STR, addresses=("fd00:10:244:9::10",))
    out = handle(dhcp6, frame)
    if mtype == "confirm":
        assert out.sent == "REPLY"  # on-link: inside the pool's subnet
        assert payload(out).endswith(bytes.fromhex("000d 0002 0000"))
    else:
        assert out.drop == "unknown_client"  # nothing to release
    assert dhcp6.table.by_ia == {}


def test_pool_release_of_a_held_address():
    dhcp6 = pool_responder()
    out = handle(dhcp6, dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, rapid_commit=True))
    dhcp6.table.confirm6(out.lease6)
    out = handle(dhcp6, dhcp6_request("release", eth_src=UNKNOWN_MAC_STR))
    assert out.sent == "REPLY"
    out = handle(
        dhcp6, dhcp6_request("confirm", eth_src=UNKNOWN_MAC_STR, addresses=("fd00:10:244:2::1a",))
    )
    assert payload(out).endswith(bytes.fromhex("000d 001a 0004") + b"address not on this link")


def test_ipv4_only_vm_served_from_the_ipv6_pool():
    subnet = ipaddress.IPv6Network(POOL6_SUBNET)
    table = BindingTable([seed_binding()], [], [Pool6(subnet, subnet[0x10], subnet[0x11])])
    dhcp6 = Dhcpv6Responder(seed_params6(search=["svc"]), table)
    out = handle(dhcp6, dhcp6_request("solicit", fqdn=(0, "x")))
    assert [a.address for a in ia_of(out).addresses] == [pool_address(0)]
    assert out.mac == SEED_MAC
    assert payload(out).endswith(bytes.fromhex("06 6665646f7261 03 737663 00"))  # its name


def test_static_address_wins_over_a_pool_allocation():
    table = seed_table6(pool6=True)
    dhcp6 = Dhcpv6Responder(seed_params6(), table)
    out = handle(dhcp6, dhcp6_request("solicit", eth_src=UNKNOWN_MAC_STR, rapid_commit=True))
    table.confirm6(out.lease6)
    # The operator now binds that address statically to another VM.
    table.add(Binding(name="late", mac=bytes.fromhex("0a5800000777"), ipv6=pool_address(0)))
    held = str(ipaddress.IPv6Address(pool_address(0)))
    renew = handle(dhcp6, dhcp6_request("renew", eth_src=UNKNOWN_MAC_STR, addresses=(held,)))
    ia = ia_of(renew)
    assert [(a.address, a.valid) for a in ia.addresses] == [
        (pool_address(1), 3500),
        (pool_address(0), 0),
    ]


def test_table_restore6_and_owner():
    table = seed_table6(pool6=True)
    lease = Lease6(b"\x00\x03\x00\x01" + UNKNOWN_MAC, 1, pool_address(3), 64, "node-b")
    b = table.restore6(lease)
    assert table.owner_of6(pool_address(3)) is b and b.durable and b.duid == lease.duid
    # A stale pool lease never takes a static address.
    stale = Lease6(b"\x00\x02x", 1, SEED_IP6, 64)
    assert table.restore6(stale).name == "fedora"
    assert table.lookup6(b"\x00\x02x", 1) is None
    table.remove6(lease.duid, 1)
    assert table.owner_of6(pool_address(3)) is None
    # Removing a static binding frees its IPv6 index too.
    table.remove(SEED_MAC)
    assert table.owner_of6(SEED_IP6) is None


def test_unknown_client_drop_names_no_mac(dhcp6):
    out = handle(dhcp6, dhcp6_request("solicit", eth_src=OTHER_MAC_STR.replace("1b", "1c")))
    assert (out.drop, out.mac) == ("unknown_client", None)
    assert UNKNOWN_MAC not in dhcp6.table.by_mac
