"""The hosts a unit publishes on, as written in agent.toml, and how a request's Host is matched.

A pattern (``[publishing] hosts``, or a host named in the unit profile's services) is one of:

- ``bbs.example.cn``: that name, on any port;
- ``bbs.example.cn:8080``: that name on that port only (a Host field without a port is port 80:
  the agent decodes cleartext HTTP only);
- ``*.example.cn``: every name under example.cn (``a.example.cn``, ``a.b.example.cn``), not
  example.cn itself; with ``:port`` as above;
- an IPv4 address, or an IPv6 address in brackets (``[2001:db8::5]``), as a client writes it in
  Host when it has no name.

Names are compared as browsers send them: lower case, without a trailing dot, an
internationalized name in its IDNA ASCII form (``论坛.example.cn`` is written to the config as
is and matched as ``xn--...``). A Host field is matched the same way after the same folding.

Why no DNS: the agent sees the Host the poster's software wrote; resolving names would put a
lookup (and its failures) on the packet path.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable
from typing import Final

DEFAULT_PORT: Final = 80
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_NAME: Final = 253  # RFC 1035 §2.3.4, in its text form


class HostError(ValueError):
    """A host pattern that is not one (the message says why)."""


def _idna(name: str) -> str:
    """``name`` lower-cased with its non-ASCII labels in IDNA ASCII form (HostError when one cannot be)."""
    labels = []
    for label in name.lower().split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(label.encode("idna").decode("ascii"))
        except UnicodeError:
            raise HostError(f"{name!r}: {label!r} is not a valid internationalized label") from None
    return ".".join(labels)


def normalize_pattern(text: str) -> str:
    """A host pattern in the form `HostMatcher` compares (module doc), or HostError."""
    t = text.strip()
    if not t:
        raise HostError("an empty host")
    port: int | None = None
    if t.startswith("["):  # an IPv6 literal, maybe with a port
        end = t.find("]")
        rest = t[end + 1:] if end > 0 else "x"
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            raise HostError(f"{text!r}: an IPv6 address is written [address] or [address]:port")
        try:
            addr = ipaddress.IPv6Address(t[1:end])
        except ValueError:
            raise HostError(f"{text!r}: not an IPv6 address") from None
        name = f"[{addr.compressed}]"
        port = int(rest[1:]) if rest else None
    else:
        name, sep, tail = t.rpartition(":")
        if not sep:
            name = t
        elif tail.isdigit():
            port = int(tail)
        else:
            raise HostError(f"{text!r}: a port must be a number (an IPv6 address goes in brackets)")
        name = name.rstrip(".")
        wild = name.startswith("*.")
        name = ("*." if wild else "") + _idna(name.removeprefix("*."))
        bare = name.removeprefix("*.")
        if len(bare) > MAX_NAME or not all(_LABEL.match(x) for x in bare.split(".")):
            raise HostError(f"{text!r}: not a host name (letters, digits and '-' in dot-separated labels)")
        if wild and "." not in bare:
            raise HostError(f"{text!r}: a wildcard names a domain's hosts, like *.example.cn")
    if port is not None and not 0 < port < 65536:
        raise HostError(f"{text!r}: the port must be 1..65535")
    return name if port is None else f"{name}:{port}"


def _split(host: str) -> tuple[str, int]:
    """A Host field (as the HTTP record keeps it) as (folded name, port)."""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        name = h[:end + 1] if end > 0 else h
        tail = h[end + 1:] if end > 0 else ""
        numbered = tail.startswith(":") and tail[1:].isdigit() and len(tail) < 7
        port = int(tail[1:]) if numbered else DEFAULT_PORT
        if end > 0:
            with contextlib.suppress(ValueError):  # the config holds the compressed form
                name = f"[{ipaddress.IPv6Address(name[1:-1]).compressed}]"
        return name, port
    name, sep, tail = h.rpartition(":")
    if not sep or not tail.isdigit() or len(tail) > 5:
        name, tail = h, ""
    name = name.rstrip(".")
    if not name.isascii():
        with contextlib.suppress(HostError):
            name = _idna(name)
    return name, int(tail) if tail else DEFAULT_PORT


class HostMatcher:
    """Whether a request's Host is one of the patterns (module doc). A few set lookups per request."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(dict.fromkeys(normalize_pattern(p) for p in patterns))
        self._any_port: set[str] = set()
        self._on_port: set[tuple[str, int]] = set()
        self._suffixes: list[tuple[str, int | None]] = []  # (".example.cn", port or None)
        for p in self.patterns:
            if p.startswith("["):
                end = p.find("]")
                name, port = p[:end + 1], (int(p[end + 2:]) if len(p) > end + 1 else None)
            else:
                name, _, tail = p.partition(":")
                port = int(tail) if tail else None
            if name.startswith("*."):
                self._suffixes.append((name[1:], port))
            elif port is None:
                self._any_port.add(name)
            else:
                self._on_port.add((name, port))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, host: str | None) -> bool:
        if not host:
            return False
        name, port = _split(host)
        if name in self._any_port or (name, port) in self._on_port:
            return True
        return any(name.endswith(suffix) and (p is None or p == port) for suffix, p in self._suffixes)
