"""The YAML config: load, validate, and turn into what the engine runs on.

Everything that can be wrong with a config is found here, at start-up, and reported as one
`ConfigError` whose message is one line naming the key path and the problem
(`bindings[0].mac: invalid MAC address 'zz'`); nothing is checked at packet time.

Keys are the ones in DESIGN.md ("Config"); unknown keys are errors at every level so that a
typo never silently falls back to a default. Two parts of the documented schema are parsed
but refused until they are implemented, so that nobody runs a config that silently ignores
them: the `kubernetes` binding source and `dns.kubernetes` (DNS servers read from a Service).
`store.backend: etcd` is refused the same way.

YAML is read with a `SafeLoader` subclass that differs from `yaml.safe_load` in two ways:
a plain scalar with colons that YAML 1.1 would read as a base-60 integer stays text (an
unquoted MAC such as 52:54:00:12:34:56 is otherwise silently an int), and a key repeated in
one mapping is an error instead of the last one winning.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from protocols.bindings import Binding, BindingTable, Pool, Pool6
from protocols.params import INFINITE_LIFETIME, ROUTER_SUBNET, GatewayParams

from .errors import DEFAULT_HTTP_LISTEN, ConfigError, _short, parse_listen

__all__ = [
    "AnnounceConfig",
    "ArpConfig",
    "BindingConfig",
    "Config",
    "ConfigError",
    "DnsConfig",
    "GatewayConfig",
    "HttpConfig",
    "PoolConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
    "parse_listen",
]

DEFAULT_INTERFACES = ("tap*", "vnet*")
DEFAULT_STORE_PATH = "/var/lib/lmdp/leases.db"
DEFAULT_ROUNDS_MS = (0, 50, 200, 450, 800)
IFNAMSIZ = 16  # Linux interface names are at most 15 bytes


# --- scalar parsers (each raises ValueError with a message naming the bad value) ------------


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {what}, got {_short(value)}")
    return value.strip()


def _parse_ipv4(value: Any) -> ipaddress.IPv4Address:
    text = _require_str(value, "an IPv4 address")
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"invalid IPv4 address {_short(value)}") from None


def _parse_ipv6(value: Any) -> ipaddress.IPv6Address:
    text = _require_str(value, "an IPv6 address")
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"invalid IPv6 address {_short(value)}") from None


def _parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    text = _require_str(value, "an IP address")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IP address {_short(value)}") from None


def _parse_ipv4_interface(value: Any) -> ipaddress.IPv4Interface:
    text = _require_str(value, "an IPv4 address/prefixlen")
    if "/" not in text:
        raise ValueError(f"expected address/prefixlen, got {_short(value)}")
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(f"invalid IPv4 address/prefixlen {_short(value)}") from None
    ip = iface.ip
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_reserved:
        raise ValueError(f"{ip} is not a usable unicast address")
    net = iface.network
    if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        which = "network" if ip == net.network_address else "broadcast"
        raise ValueError(f"{ip} is the {which} address of {net}")
    return iface


def _parse_ipv6_interface(value: Any) -> ipaddress.IPv6Interface:
    text = _require_str(value, "an IPv6 address/prefixlen")
    if "/" not in text:
        raise ValueError(f"expected address/prefixlen, got {_short(value)}")
    try:
        iface = ipaddress.IPv6Interface(text)
    except ValueError:
        raise ValueError(f"invalid IPv6 address/prefixlen {_short(value)}") from None
    if iface.ip.is_unspecified or iface.ip.is_multicast or iface.ip.is_loopback:
        raise ValueError(f"{iface.ip} is not a usable unicast address")
    return iface


def _parse_ipv4_network(value: Any) -> ipaddress.IPv4Network:
    text = _require_str(value, "an IPv4 network a.b.c.d/len")
    if "/" not in text:
        raise ValueError(f"expected network/prefixlen, got {_short(value)}")
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(f"{text} has host bits set") from None
        raise ValueError(f"invalid IPv4 network {_short(value)}") from None


def _parse_network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = _require_str(value, "a network address/prefixlen")
    if ":" not in text:
        return _parse_ipv4_network(value)
    if "/" not in text:
        raise ValueError(f"expected network/prefixlen, got {_short(value)}")
    try:
        return ipaddress.IPv6Network(text)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(f"{text} has host bits set") from None
        raise ValueError(f"invalid IPv6 network {_short(value)}") from None


_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")


def _parse_mac(value: Any) -> str:
    """A unicast, non-zero MAC, normalised to lower-case colon hex."""
    text = _require_str(value, "a MAC address")
    if not _MAC_RE.fullmatch(text):
        raise ValueError(f"invalid MAC address {_short(value)}")
    mac = text.lower().replace("-", ":")
    first = int(mac[:2], 16)
    if first & 1:
        raise ValueError(f"{mac} is a multicast MAC address")
    if mac == "00:00:00:00:00:00":
        raise ValueError("00:00:00:00:00:00 is not a usable MAC address")
    return mac


_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _parse_domain(value: Any) -> str:
    """A DNS name (RFC 1123 host name syntax); a trailing dot is dropped."""
    text = _require_str(value, "a domain name")
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253 or not all(_LABEL_RE.fullmatch(p) for p in name.split(".")):
        raise ValueError(f"invalid domain name {_short(value)}")
    return name.lower()


def _parse_ifname(value: Any) -> str:
    text = _require_str(value, "an interface name")
    if (
        not text
        or len(text.encode()) >= IFNAMSIZ
        or text in (".", "..")
        or any(c in text for c in "/: \t")
    ):
        raise ValueError(f"invalid interface name {_short(value)}")
    return text


def _parse_glob(value: Any) -> str:
    text = _require_str(value, "an interface name or glob")
    if not text or any(c in text for c in "/ \t"):
        raise ValueError(f"invalid interface name or glob {_short(value)}")
    return text


def _parse_listen_setting(value: Any) -> str | None:
    if value is None or value == "":
        return None  # HTTP disabled
    text = _require_str(value, "host:port")
    parse_listen(text)
    return text


def _typed(parser: Any, py_type: Any) -> Any:
    """A field type validated by `parser` and written back as its str() in effective()."""
    return Annotated[py_type, PlainValidator(parser), PlainSerializer(str, return_type=str)]


IPv4 = _typed(_parse_ipv4, ipaddress.IPv4Address)
IPv6 = _typed(_parse_ipv6, ipaddress.IPv6Address)
IPAny = _typed(_parse_ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
IPv4Iface = _typed(_parse_ipv4_interface, ipaddress.IPv4Interface)
IPv6Iface = _typed(_parse_ipv6_interface, ipaddress.IPv6Interface)
IPv4Net = _typed(_parse_ipv4_network, ipaddress.IPv4Network)
IPNet = _typed(_parse_network, ipaddress.IPv4Network | ipaddress.IPv6Network)
Mac = Annotated[str, PlainValidator(_parse_mac)]
Domain = Annotated[str, PlainValidator(_parse_domain)]
IfName = Annotated[str, PlainValidator(_parse_ifname)]
Glob = Annotated[str, PlainValidator(_parse_glob)]
Via = Annotated[str, PlainValidator(lambda v: "auto" if v == "auto" else _parse_ifname(v))]
Listen = Annotated[str | None, PlainValidator(_parse_listen_setting)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


# --- models ---------------------------------------------------------------------------------


class _Model(BaseModel):
    # strict: YAML already typed the scalars; "1400" is not an MTU and "yes" is not a bool.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class GatewayConfig(_Model):
    ipv4: IPv4 = ipaddress.IPv4Address("169.254.1.1")
    ipv6: IPv6 = ipaddress.IPv6Address("fe80::1")
    mac: Mac = "0a:58:a9:fe:01:01"
    router_mode: Literal["link-local", "subnet"] = "link-local"


class DnsConfig(_Model):
    servers: list[IPAny] = []
    search: list[Domain] = []
    # Documented (DNS servers from a Service's cluster IP) but not implemented: refused.
    kubernetes: Any = None

    @field_validator("kubernetes")
    @classmethod
    def _no_kubernetes(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("not supported yet (list the addresses in dns.servers)")
        return value


class BindingConfig(_Model):
    name: NonEmptyStr
    mac: Mac
    ipv4: IPv4Iface | None = None
    ipv6: IPv6Iface | None = None  # IPv6-only VMs have just this
    hostname: Domain | None = None

    @model_validator(mode="after")
    def _some_address(self) -> BindingConfig:
        if self.ipv4 is None and self.ipv6 is None:
            raise ValueError("needs ipv4, ipv6 or both")
        return self


class PoolConfig(_Model):
    """IPv4 pools allocate per MAC; IPv6 pools per DUID and IAID (RFC 8415)."""

    subnet: IPNet
    start: IPAny
    end: IPAny

    @field_validator("start", "end")
    @classmethod
    def _inside_subnet(cls, value: ipaddress.IPv4Address, info: ValidationInfo) -> Any:
        subnet = info.data.get("subnet")
        if subnet is None:
            return value  # subnet itself failed; that error is reported
        if value.version != subnet.version:
            raise ValueError(f"{value} is not an IPv{subnet.version} address like {subnet}")
        if value not in subnet:
            raise ValueError(f"{value} is outside subnet {subnet}")
        if subnet.prefixlen < 31 and value in (subnet.network_address, subnet.broadcast_address):
            which = "network" if value == subnet.network_address else "broadcast"
            raise ValueError(f"{value} is the {which} address of {subnet}")
        start = info.data.get("start")
        if info.field_name == "end" and start is not None and value < start:
            raise ValueError(f"{value} is before start {start}")
        return value


class Dhcpv6Config(_Model):
    # IA address lifetimes: "lease" (lease_time, renewed at T1; lmdp's default) or
    # "infinite" (0xffffffff, what OVN sends), or a number of seconds.
    lifetime: Literal["lease", "infinite"] | Annotated[int, Field(ge=60, le=0xFFFFFFFE)] = "lease"


class StoreConfig(_Model):
    backend: Literal["sqlite", "etcd"] = "sqlite"
    path: NonEmptyStr = DEFAULT_STORE_PATH
    endpoints: list[NonEmptyStr] | None = None  # etcd; accepted so the shape is checked

    @field_validator("backend")
    @classmethod
    def _implemented(cls, value: str) -> str:
        if value != "sqlite":
            raise ValueError(f"{value} not implemented yet (use sqlite)")
        return value


class HttpConfig(_Model):
    listen: Listen = DEFAULT_HTTP_LISTEN  # null or "" disables the HTTP server


class AnnounceConfig(_Model):
    rounds_ms: list[Annotated[int, Field(ge=0)]] = list(DEFAULT_ROUNDS_MS)
    via: Via = "auto"  # "auto": the VM port's bridge; else the interface to announce on

    @field_validator("rounds_ms")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"must be strictly ascending offsets in ms, got {value}")
        return value


class ArpConfig(_Model):
    proxy: list[IPv4Net] = []  # extra CIDRs answered by the ARP proxy (lmdp extension)


class Config(_Model):
    node: NonEmptyStr = Field(default_factory=socket.gethostname)
    interfaces: Annotated[list[Glob], Field(min_length=1)] = list(DEFAULT_INTERFACES)
    gateway: GatewayConfig = GatewayConfig()
    dns: DnsConfig = DnsConfig()
    # Documented binding source (virt-launcher pods); refused until it is implemented.
    kubernetes: Any = None
    mtu: Annotated[int, Field(ge=68, le=65535)] | None = 1400
    lease_time: Annotated[int, Field(ge=10, le=0xFFFFFFFF)] = 3500
    ra: bool = False
    dhcpv6: Dhcpv6Config = Dhcpv6Config()
    bindings: list[BindingConfig] = []
    pools: list[PoolConfig] = []
    store: StoreConfig = StoreConfig()
    http: HttpConfig = HttpConfig()
    announce: AnnounceConfig = AnnounceConfig()
    arp: ArpConfig = ArpConfig()

    @field_validator("kubernetes")
    @classmethod
    def _no_kubernetes(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("binding source not implemented yet")
        return value

    @field_validator("http", mode="before")
    @classmethod
    def _http_null(cls, value: Any) -> Any:
        return {"listen": None} if value is None else value

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        _cross_check(self)
        return self

    # --- what the engine runs on ---

    def gateway_params(self) -> GatewayParams:
        """The node-independent answers, packed for the responders."""
        lifetime = self.dhcpv6.lifetime
        if lifetime == "lease":
            lifetime = None  # GatewayParams: follow lease_time
        elif lifetime == "infinite":
            lifetime = INFINITE_LIFETIME
        return GatewayParams(
            gateway_ipv4=self.gateway.ipv4.packed,
            gateway_mac=bytes.fromhex(self.gateway.mac.replace(":", "")),
            router_mode=self.gateway.router_mode,
            dns_servers=[s.packed for s in self.dns.servers if s.version == 4],
            dns6_servers=[s.packed for s in self.dns.servers if s.version == 6],
            gateway_ipv6=self.gateway.ipv6.packed,
            ra=self.ra,
            preferred_lifetime=lifetime,
            valid_lifetime=lifetime,
            search=list(self.dns.search),
            mtu=self.mtu,
            lease_time=self.lease_time,
            proxied=list(self.arp.proxy),
        )

    def binding_table(self) -> BindingTable:
        """Static bindings and pools; persisted pool leases are added by the engine."""
        bindings = [
            Binding(
                name=b.name,
                mac=bytes.fromhex(b.mac.replace(":", "")),
                ipv4=b.ipv4.ip.packed if b.ipv4 else None,
                prefixlen=b.ipv4.network.prefixlen if b.ipv4 else 32,
                hostname=b.hostname,
                ipv6=b.ipv6.ip.packed if b.ipv6 else None,
                prefixlen6=b.ipv6.network.prefixlen if b.ipv6 else 128,
            )
            for b in self.bindings
        ]
        pools = [Pool(p.subnet, p.start, p.end) for p in self.pools if p.subnet.version == 4]
        pools6 = [Pool6(p.subnet, p.start, p.end) for p in self.pools if p.subnet.version == 6]
        return BindingTable(bindings, pools, pools6)

    def effective(self) -> dict[str, Any]:
        """The config with every default filled in, as plain JSON/YAML-serialisable data."""
        return self.model_dump(mode="json")

    def interface_matches(self, name: str) -> bool:
        """Whether an interface that appears should be attached (case-sensitive globs)."""
        return any(fnmatch.fnmatchcase(name, g) for g in self.interfaces)


def _cross_check(cfg: Config) -> None:
    """Checks that span entries; raises ConfigError directly so the path stays precise."""
    gw = cfg.gateway
    subnet_mode = gw.router_mode == ROUTER_SUBNET

    def router_of(net: ipaddress.IPv4Network) -> ipaddress.IPv4Address | None:
        # Mirrors GatewayParams.router_for: the subnet's first host in router_mode subnet.
        return net.network_address + 1 if subnet_mode and net.prefixlen < 31 else None

    macs: dict[str, int] = {}
    ipv4s: dict[ipaddress.IPv4Address, int] = {}
    ipv6s: dict[ipaddress.IPv6Address, int] = {}
    for i, b in enumerate(cfg.bindings):
        where = f"bindings[{i}]"
        if b.mac == gw.mac:
            raise ConfigError(f"{where}.mac: {b.mac} is the gateway MAC")
        if b.mac in macs:
            raise ConfigError(f"{where}.mac: {b.mac} already used by bindings[{macs[b.mac]}]")
        macs[b.mac] = i
        if b.ipv4 is not None:
            ip = b.ipv4.ip
            if ip == gw.ipv4:
                raise ConfigError(f"{where}.ipv4: {ip} is the gateway address")
            if ip == router_of(b.ipv4.network):
                raise ConfigError(f"{where}.ipv4: {ip} is its subnet's router (router_mode subnet)")
            if ip in ipv4s:
                raise ConfigError(f"{where}.ipv4: {ip} already used by bindings[{ipv4s[ip]}]")
            ipv4s[ip] = i
        if b.ipv6 is not None:
            ip6 = b.ipv6.ip
            if ip6 == gw.ipv6:
                raise ConfigError(f"{where}.ipv6: {ip6} is the gateway address")
            if ip6 in ipv6s:
                raise ConfigError(f"{where}.ipv6: {ip6} already used by bindings[{ipv6s[ip6]}]")
            ipv6s[ip6] = i

    # Pools may share addresses with static bindings (allocation skips used addresses), but
    # never with each other: two pools in one subnet must have disjoint ranges, and
    # different subnets must not overlap (a VM would get a different on-link prefix).
    for i, p in enumerate(cfg.pools):
        where = f"pools[{i}]"
        gateway = gw.ipv4 if p.subnet.version == 4 else gw.ipv6
        if p.start <= gateway <= p.end:
            raise ConfigError(f"{where}: range {p.start}-{p.end} contains the gateway {gateway}")
        router = router_of(p.subnet) if p.subnet.version == 4 else None
        if router is not None and p.start <= router <= p.end:
            raise ConfigError(
                f"{where}: range {p.start}-{p.end} contains the router {router} "
                "(router_mode subnet)"
            )
        for j, q in enumerate(cfg.pools[:i]):
            if p.subnet.version != q.subnet.version:
                continue
            if p.subnet != q.subnet and p.subnet.overlaps(q.subnet):
                raise ConfigError(
                    f"{where}.subnet: {p.subnet} overlaps pools[{j}].subnet {q.subnet}"
                )
            if p.subnet == q.subnet and p.start <= q.end and q.start <= p.end:
                raise ConfigError(
                    f"{where}: range {p.start}-{p.end} overlaps pools[{j}] {q.start}-{q.end}"
                )


# --- loading --------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader, minus base-60 integers, plus an error for a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key)}", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:
                pass  # unhashable key: SafeLoader reports it
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if ":" in node.value:
        return node.value  # YAML 1.1 base-60 (52:54:00:12:34:56 is a MAC, not a number)
    return loader.construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    return ConfigError(" ".join(f"{where}: YAML error: {problem}".split()))


_TYPE_PHRASES = {
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "model_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if isinstance(part, str) and part.isprintable() else repr(part)
            out += f".{name}" if out else name
    return out or "config"


def _validation_error(exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    path = _format_loc(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = f", got {_short(err['input'])}"
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "invalid_key":
        path = _format_loc(err["loc"][:-1])
        message = f"key {_short(err['loc'][-1])} is not a string"
    elif kind == "value_error":
        message = str(ctx["error"])
    elif kind == "missing":
        message = "required key missing"
    elif kind in _TYPE_PHRASES:
        message = _TYPE_PHRASES[kind] + got
    elif kind == "literal_error":
        message = f"expected {ctx['expected']}{got}"
    elif kind == "greater_than_equal":
        message = f"must be >= {ctx['ge']}{got}"
    elif kind == "less_than_equal":
        message = f"must be <= {ctx['le']}{got}"
    elif kind in ("too_short", "string_too_short") and ctx.get("min_length") == 1:
        message = "must not be empty"
    else:
        msg = err["msg"]
        message = msg[:1].lower() + msg[1:]
    return ConfigError(" ".join(f"{path}: {message}".split()))


def parse_config(data: Mapping[str, Any] | str | bytes | None, source: str = "<config>") -> Config:
    """Validate a config given as YAML text or as already-parsed data."""
    if isinstance(data, bytes | str):
        try:
            data = yaml.load(data, Loader=_Loader)
        except yaml.YAMLError as exc:
            raise _yaml_error(source, exc) from None
    if data is None:
        data = {}  # an empty file: all defaults
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {_short(data)}")
    try:
        return Config.model_validate(dict(data))
    except ValidationError as exc:
        raise _validation_error(exc) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML config file; every failure is a one-line ConfigError."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config {os.fspath(path)}: {exc.strerror}") from None
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config {os.fspath(path)}: not UTF-8 text") from None
    return parse_config(decoded, source=os.fspath(path))
