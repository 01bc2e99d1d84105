"""Config loading: the documented example, defaults, and one-line errors naming the key."""

from __future__ import annotations

import ipaddress
import socket
import textwrap

import pytest
import yaml

from dataplane.config import Config, ConfigError, load_config, parse_config, parse_listen
from protocols.params import GatewayParams

# The example from DESIGN.md ("Config"), without the `kubernetes:` line (not implemented).
EXAMPLE = textwrap.dedent(
    """\
    node: node-a                       # default: the host name
    interfaces: ["tap*", "vnet*"]      # names or globs; attached when they appear
    gateway: {ipv4: 169.254.1.1, ipv6: "fe80::1", mac: "0a:58:a9:fe:01:01", router_mode: link-local}
    dns: {servers: ["10.96.0.10"], search: []}
    mtu: 1400
    lease_time: 3500
    ra: false
    bindings:
      - {name: fedora, mac: "0a:58:0a:f4:02:1a", ipv4: 10.244.2.26/24, ipv6: "fd00:10:244:2::1a/64"}
    pools:
      - {subnet: 10.244.3.0/24, start: 10.244.3.10, end: 10.244.3.250}
    store: {backend: sqlite, path: /var/lib/lmdp/leases.db}
    http: {listen: "127.0.0.1:9464"}   # /metrics (Prometheus), /healthz, /leases
    announce: {rounds_ms: [0, 50, 200, 450, 800], via: auto}
    """
)

BINDING = {"name": "vm", "mac": "0a:58:0a:f4:02:1a", "ipv4": "10.244.2.26/24"}


def error_of(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the documented example and defaults ------------------------------------------------------


def test_design_example_parses():
    cfg = parse_config(EXAMPLE)
    assert cfg.node == "node-a"
    assert cfg.gateway.ipv4 == ipaddress.IPv4Address("169.254.1.1")
    assert cfg.bindings[0].name == "fedora"
    assert str(cfg.bindings[0].ipv4) == "10.244.2.26/24"
    assert str(cfg.bindings[0].ipv6) == "fd00:10:244:2::1a/64"
    assert str(cfg.pools[0].subnet) == "10.244.3.0/24"
    assert cfg.announce.rounds_ms == [0, 50, 200, 450, 800]


def test_design_example_round_trips_through_effective():
    cfg = parse_config(EXAMPLE)
    eff = cfg.effective()
    # What `lmdp check-config` prints is itself a valid config that means the same thing.
    again = parse_config(yaml.safe_dump(eff))
    assert again.effective() == eff
    assert eff["bindings"][0]["mac"] == "0a:58:0a:f4:02:1a"
    assert eff["gateway"]["ipv4"] == "169.254.1.1"


def test_defaults():
    cfg = parse_config("")
    assert cfg.node == socket.gethostname()
    assert cfg.interfaces == ["tap*", "vnet*"]
    assert str(cfg.gateway.ipv4) == "169.254.1.1"
    assert str(cfg.gateway.ipv6) == "fe80::1"
    assert cfg.gateway.mac == "0a:58:a9:fe:01:01"
    assert cfg.gateway.router_mode == "link-local"
    assert cfg.dns.servers == [] and cfg.dns.search == []
    assert cfg.mtu == 1400 and cfg.lease_time == 3500 and cfg.ra is False
    assert cfg.bindings == [] and cfg.pools == []
    assert cfg.store.backend == "sqlite" and cfg.store.path == "/var/lib/lmdp/leases.db"
    assert cfg.http.listen == "127.0.0.1:9464"
    assert cfg.announce.rounds_ms == [0, 50, 200, 450, 800] and cfg.announce.via == "auto"
    assert cfg.arp.proxy == []


def test_effective_is_plain_data():
    eff = parse_config({"bindings": [BINDING], "arp": {"proxy": ["10.0.0.0/8"]}}).effective()
    yaml.safe_dump(eff)  # would raise on ipaddress objects
    assert eff["arp"]["proxy"] == ["10.0.0.0/8"]
    assert eff["bindings"][0]["ipv4"] == "10.244.2.26/24"
    assert eff["mtu"] == 1400


def test_mtu_null_and_http_disabled():
    assert parse_config("mtu: null").mtu is None
    assert parse_config("http: null").http.listen is None
    assert parse_config("http: {listen: ''}").http.listen is None
    assert parse_config("http: {listen: '[::1]:9464'}").http.listen == "[::1]:9464"


def test_unquoted_qemu_mac_stays_a_mac():
    # YAML 1.1 reads 52:54:00:12:34:56 as a base-60 integer; we keep it as text.
    cfg = parse_config("bindings: [{name: a, mac: 52:54:00:12:34:56, ipv4: 10.0.0.5/24}]")
    assert cfg.bindings[0].mac == "52:54:00:12:34:56"


def test_mac_normalised():
    cfg = parse_config({"bindings": [dict(BINDING, mac="0A-58-0A-F4-02-1A")]})
    assert cfg.bindings[0].mac == "0a:58:0a:f4:02:1a"


def test_interface_matches():
    cfg = parse_config({"interfaces": ["tap*", "eth1"]})
    assert cfg.interface_matches("tap0")
    assert cfg.interface_matches("eth1")
    assert not cfg.interface_matches("eth10")
    assert not cfg.interface_matches("vnet0")
    assert not cfg.interface_matches("TAP0")


# --- what the engine runs on ------------------------------------------------------------------


def test_gateway_params():
    cfg = parse_config(
        {
            "gateway": {"ipv4": "169.254.7.1", "mac": "0a:58:a9:fe:07:01", "router_mode": "subnet"},
            "dns": {
                "servers": ["10.96.0.10", "fd00::10", "10.96.0.11"],
                "search": ["Cluster.Local."],
            },
            "mtu": 9000,
            "lease_time": 600,
            "arp": {"proxy": ["10.244.0.0/16"]},
        }
    )
    p = cfg.gateway_params()
    assert isinstance(p, GatewayParams)
    assert p.gateway_ipv4 == bytes([169, 254, 7, 1])
    assert p.gateway_mac == bytes.fromhex("0a58a9fe0701")
    assert p.router_mode == "subnet"
    assert p.dns_servers == [bytes([10, 96, 0, 10]), bytes([10, 96, 0, 11])]  # IPv4 only
    assert p.search == ["cluster.local"]
    assert p.mtu == 9000 and p.lease_time == 600
    assert p.proxied == [ipaddress.IPv4Network("10.244.0.0/16")]


def test_binding_table():
    table = parse_config(EXAMPLE).binding_table()
    mac = bytes.fromhex("0a580af4021a")
    b = table.lookup(mac)
    assert b is not None
    assert b.name == "fedora" and b.ipv4 == bytes([10, 244, 2, 26]) and b.prefixlen == 24
    assert not b.pool and b.durable
    assert table.owner_of(bytes([10, 244, 2, 26])) is b
    assert len(table.pools) == 1
    pool = table.pools[0]
    assert pool.subnet == ipaddress.IPv4Network("10.244.3.0/24")
    assert pool.size() == 241
    new = table.allocate(bytes.fromhex("0a580af4030a"))
    assert new is not None and new.ipv4 == bytes([10, 244, 3, 10]) and new.prefixlen == 24


# --- errors: one line naming the key ----------------------------------------------------------


def test_unknown_top_level_key():
    assert error_of("gatway: {ipv4: 169.254.1.1}") == "gatway: unknown key"


def test_unknown_nested_key():
    assert error_of("gateway: {ipv44: 169.254.1.1}") == "gateway.ipv44: unknown key"
    assert error_of({"bindings": [dict(BINDING, ip=1)]}) == "bindings[0].ip: unknown key"


def test_bad_ipv4_address():
    assert error_of("gateway: {ipv4: 169.254.1.300}") == (
        "gateway.ipv4: invalid IPv4 address '169.254.1.300'"
    )
    message = error_of({"pools": [{"subnet": "10.0.0.0/24", "start": "x", "end": "10.0.0.9"}]})
    assert message.startswith("pools[0].start: ")


def test_binding_needs_prefix():
    assert error_of({"bindings": [dict(BINDING, ipv4="10.244.2.26")]}).startswith(
        "bindings[0].ipv4: expected address/prefixlen"
    )


@pytest.mark.parametrize("ipv4", ["10.244.2.0/24", "10.244.2.255/24"])
def test_binding_network_or_broadcast(ipv4):
    message = error_of({"bindings": [dict(BINDING, ipv4=ipv4)]})
    assert message.startswith("bindings[0].ipv4: ")
    assert "network" in message or "broadcast" in message


@pytest.mark.parametrize(
    ("mac", "problem"),
    [
        ("zz", "invalid MAC address 'zz'"),
        ("0a:58:0a:f4:02", "invalid MAC address"),
        ("01:00:5e:00:00:01", "multicast"),
        ("ff:ff:ff:ff:ff:ff", "multicast"),
        ("00:00:00:00:00:00", "not a usable MAC"),
    ],
)
def test_bad_mac(mac, problem):
    message = error_of({"bindings": [dict(BINDING, mac=mac)]})
    assert message.startswith("bindings[0].mac: ")
    assert problem in message


def test_bad_mac_exact_message():
    assert error_of({"bindings": [dict(BINDING, mac="zz")]}) == (
        "bindings[0].mac: invalid MAC address 'zz'"
    )


def test_overlapping_pool_subnets():
    message = error_of(
        {
            "pools": [
                {"subnet": "10.244.3.0/24", "start": "10.244.3.10", "end": "10.244.3.100"},
                {"subnet": "10.244.3.128/25", "start": "10.244.3.130", "end": "10.244.3.140"},
            ]
        }
    )
    assert message == "pools[1].subnet: 10.244.3.128/25 overlaps pools[0].subnet 10.244.3.0/24"


def test_overlapping_pool_ranges_in_one_subnet():
    pools = [
        {"subnet": "10.244.3.0/24", "start": "10.244.3.10", "end": "10.244.3.100"},
        {"subnet": "10.244.3.0/24", "start": "10.244.3.100", "end": "10.244.3.200"},
    ]
    message = error_of({"pools": pools})
    assert message.startswith("pools[1]: ") and "overlaps pools[0]" in message
    # Disjoint ranges in one subnet are fine.
    pools[1]["start"] = "10.244.3.101"
    assert len(parse_config({"pools": pools}).pools) == 2


@pytest.mark.parametrize(
    ("pool", "key", "problem"),
    [
        ({"start": "10.244.4.10", "end": "10.244.3.20"}, "start", "outside subnet"),
        ({"start": "10.244.3.10", "end": "10.244.4.20"}, "end", "outside subnet"),
        ({"start": "10.244.3.0", "end": "10.244.3.20"}, "start", "network address"),
        ({"start": "10.244.3.10", "end": "10.244.3.255"}, "end", "broadcast address"),
        ({"start": "10.244.3.20", "end": "10.244.3.10"}, "end", "before start"),
    ],
)
def test_pool_bounds(pool, key, problem):
    message = error_of({"pools": [dict(pool, subnet="10.244.3.0/24")]})
    assert message.startswith(f"pools[0].{key}: ")
    assert problem in message


def test_pool_subnet_host_bits():
    message = error_of(
        {"pools": [{"subnet": "10.244.3.1/24", "start": "10.244.3.10", "end": "10.244.3.20"}]}
    )
    assert message == "pools[0].subnet: 10.244.3.1/24 has host bits set"


def test_pool_may_cover_static_binding():
    cfg = parse_config(
        {
            "bindings": [dict(BINDING, ipv4="10.244.3.10/24")],
            "pools": [{"subnet": "10.244.3.0/24", "start": "10.244.3.10", "end": "10.244.3.20"}],
        }
    )
    # Allocation skips the statically bound address.
    new = cfg.binding_table().allocate(bytes.fromhex("0a580af4aaaa"))
    assert new is not None and new.ipv4 == bytes([10, 244, 3, 11])


def test_duplicate_binding_mac():
    second = dict(BINDING, name="other", ipv4="10.244.2.27/24")
    message = error_of({"bindings": [BINDING, second]})
    assert message == "bindings[1].mac: 0a:58:0a:f4:02:1a already used by bindings[0]"


def test_duplicate_binding_mac_differently_spelled():
    second = dict(BINDING, name="other", mac="0A-58-0A-F4-02-1A", ipv4="10.244.2.27/24")
    assert error_of({"bindings": [BINDING, second]}).startswith("bindings[1].mac: ")


def test_duplicate_binding_ipv4():
    second = dict(BINDING, name="other", mac="0a:58:0a:f4:02:1b", ipv4="10.244.2.26/16")
    message = error_of({"bindings": [BINDING, second]})
    assert message == "bindings[1].ipv4: 10.244.2.26 already used by bindings[0]"


def test_binding_on_gateway_address():
    message = error_of({"bindings": [dict(BINDING, ipv4="169.254.1.1/16")]})
    assert message == "bindings[0].ipv4: 169.254.1.1 is the gateway address"


def test_router_mode_subnet_reserves_first_host():
    data = {"gateway": {"router_mode": "subnet"}, "bindings": [dict(BINDING, ipv4="10.0.0.1/24")]}
    assert error_of(data).startswith("bindings[0].ipv4: 10.0.0.1 is its subnet's router")
    data["gateway"]["router_mode"] = "link-local"
    assert parse_config(data).bindings[0].ipv4.ip == ipaddress.IPv4Address("10.0.0.1")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mtu": 67}, "mtu: must be >= 68, got 67"),
        ({"mtu": "1400"}, "mtu: expected an integer, got '1400'"),
        ({"lease_time": 9}, "lease_time: must be >= 10, got 9"),
        ({"ra": "yes"}, "ra: expected true or false, got 'yes'"),
        ({"interfaces": []}, "interfaces: must not be empty"),
        ({"interfaces": "tap*"}, "interfaces: expected a list, got 'tap*'"),
        ({"gateway": 5}, "gateway: expected a mapping, got 5"),
        (
            {"gateway": {"router_mode": "bridge"}},
            "gateway.router_mode: expected 'link-local' or 'subnet', got 'bridge'",
        ),
        ({"announce": {"rounds_ms": [0, -5]}}, "announce.rounds_ms[1]: must be >= 0, got -5"),
        (
            {"announce": {"rounds_ms": [0, 200, 50]}},
            "announce.rounds_ms: must be strictly ascending offsets in ms, got [0, 200, 50]",
        ),
        ({"announce": {"via": "a/b"}}, "announce.via: invalid interface name 'a/b'"),
        ({"dns": {"servers": ["dns.example"]}}, "dns.servers[0]: invalid IP address 'dns.example'"),
        ({"dns": {"search": ["bad..name"]}}, "dns.search[0]: invalid domain name 'bad..name'"),
        (
            {"http": {"listen": "::1:9464"}},
            "http.listen: IPv6 addresses must be in brackets: '::1:9464'",
        ),
        ({"http": {"listen": "localhost"}}, "http.listen: expected host:port, got 'localhost'"),
        ({"bindings": [{"name": "a"}]}, "bindings[0].mac: required key missing"),
        (
            {"store": {"backend": "etcd", "endpoints": ["http://e:2379"]}},
            "store.backend: etcd not implemented yet (use sqlite)",
        ),
        (
            {"store": {"backend": "redis"}},
            "store.backend: expected 'sqlite' or 'etcd', got 'redis'",
        ),
        ({"arp": {"proxy": ["10.0.0.1/8"]}}, "arp.proxy[0]: 10.0.0.1/8 has host bits set"),
    ],
)
def test_error_messages(data, expected):
    assert error_of(data) == expected


def test_kubernetes_refused():
    assert error_of({"kubernetes": {"kubeconfig": "/x"}}) == (
        "kubernetes: binding source not implemented yet"
    )


def test_dns_kubernetes_refused():
    message = error_of({"dns": {"kubernetes": {"namespace": "kube-system", "name": "kube-dns"}}})
    assert message.startswith("dns.kubernetes: not supported yet")


def test_top_level_not_a_mapping():
    assert error_of("- a\n- b") == "config: expected a mapping at the top level, got ['a', 'b']"


def test_yaml_syntax_error_names_line():
    message = error_of("node: a\ngateway: {ipv4: [\n")
    assert message.startswith("<config>:") and "YAML error" in message


def test_yaml_duplicate_key():
    assert error_of("mtu: 1400\nra: false\nmtu: 9000\n") == (
        "<config>:3:1: YAML error: duplicate key 'mtu'"
    )


# --- files ------------------------------------------------------------------------------------


def test_load_config_file(tmp_path):
    path = tmp_path / "lmdp.yaml"
    path.write_text(EXAMPLE)
    assert isinstance(load_config(path), Config)
    assert load_config(str(path)).node == "node-a"


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"cannot read config {path}: No such file or directory"


def test_load_config_syntax_error_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("node: a\n  bad: indent\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2:") and "\n" not in message


def test_load_config_error_names_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("bindings:\n  - {name: a, mac: zz, ipv4: 10.0.0.5/24}\n")
    with pytest.raises(ConfigError, match=r"^bindings\[0\]\.mac: invalid MAC address 'zz'$"):
        load_config(path)


def test_parse_listen():
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    assert parse_listen(":9464") == (None, 9464)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("127.0.0.1", "1.2.3.4:99999", "[::1:9464", "::1:9464", "a b:1"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_ipv6_only_and_dual_stack_bindings_and_ipv6_pools():
    cfg = parse_config(
        {
            "node": "n",
            "bindings": [
                {"name": "v6", "mac": "0a:58:0a:f4:02:30", "ipv6": "fd00:10:244:2::30/64"},
                {"name": "ds", "mac": "0a:58:0a:f4:02:31", "ipv4": "10.244.2.31/24",
                 "ipv6": "fd00:10:244:2::31/64"},
            ],
            "pools": [
                {"subnet": "10.244.3.0/24", "start": "10.244.3.10", "end": "10.244.3.20"},
                {"subnet": "fd00:10:250::/64", "start": "fd00:10:250::100",
                 "end": "fd00:10:250::1ff"},
            ],
            "dns": {"servers": ["10.96.0.10", "fd00:10:96::a"]},
            "ra": True,
        }
    )  # fmt: skip
    table = cfg.binding_table()
    v6 = table.lookup(bytes.fromhex("0a580af40230"))
    assert v6.ipv4 is None and v6.ipv6 == ipaddress.IPv6Address("fd00:10:244:2::30").packed
    assert v6.prefixlen6 == 64
    assert [str(p.subnet) for p in table.pools] == ["10.244.3.0/24"]
    assert [str(p.subnet) for p in table.pools6] == ["fd00:10:250::/64"]
    params = cfg.gateway_params()
    assert params.dns_servers == [bytes((10, 96, 0, 10))]
    assert params.dns6_servers == [ipaddress.IPv6Address("fd00:10:96::a").packed]
    assert params.ra is True and params.ia_lifetimes()[1] == 3500  # valid = lease_time


def test_dhcpv6_infinite_lifetime():
    params = parse_config({"dhcpv6": {"lifetime": "infinite"}}).gateway_params()
    assert params.ia_lifetimes()[:2] == (0xFFFFFFFF, 0xFFFFFFFF)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"bindings": [{"name": "a", "mac": "0a:58:0a:f4:02:30"}]},
         "bindings[0]: needs ipv4, ipv6 or both"),
        ({"pools": [{"subnet": "fd00::/64", "start": "10.0.0.1", "end": "fd00::9"}]},
         "pools[0].start: 10.0.0.1 is not an IPv6 address like fd00::/64"),
        ({"pools": [{"subnet": "fd00::/64", "start": "fd00::10", "end": "fd00::20"},
                    {"subnet": "fd00::/64", "start": "fd00::15", "end": "fd00::30"}]},
         "pools[1]: range fd00::15-fd00::30 overlaps pools[0] fd00::10-fd00::20"),
        ({"dhcpv6": {"lifetime": "forever"}}, "dhcpv6.lifetime"),
    ],
)  # fmt: skip
def test_ipv6_config_errors(data, message):
    assert error_of(data).startswith(message)
