"""What the command line needs before (or without) the full config machinery.

`lmdp announce` runs on a migration's critical path: it must not pay for importing the
config validator, so the error type and the listen-address parser live here.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

__all__ = ["DEFAULT_HTTP_LISTEN", "ConfigError", "parse_listen"]

DEFAULT_HTTP_LISTEN = "127.0.0.1:9464"


class ConfigError(Exception):
    """A config that cannot be run. `str()` is one line: `key.path: problem`."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse_listen(listen: str) -> tuple[str | None, int]:
    """Split "host:port" / "[v6]:port" / ":port" into (host or None for all, port).

    Raises ValueError with a one-line message. Port 0 asks the kernel for a free port.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"expected host:port, got {_short(listen)}")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"unbalanced brackets in {_short(listen)}")
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"invalid IPv6 address in {_short(listen)}") from None
    elif ":" in host:
        raise ValueError(f"IPv6 addresses must be in brackets: {_short(listen)}")
    elif host and not _HOST_RE.fullmatch(host):
        raise ValueError(f"invalid host in {_short(listen)}")
    return (host or None), int(port_text)
