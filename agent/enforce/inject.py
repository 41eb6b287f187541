"""Putting crafted packets on the network: raw IP (inline) and raw Ethernet (mirror port).

What: two small senders for the packets `agent.enforce.rst` builds (DESIGN.md data
path step 8, "Enforce"):
- `RawInjector` for an agent running ON the gateway (inline): IP packets go through
  the kernel's routing with ``socket(AF_INET, SOCK_RAW, IPPROTO_RAW)`` and
  ``socket(AF_INET6, SOCK_RAW, IPPROTO_RAW)``. IPPROTO_RAW implies IP_HDRINCL (raw(7))
  for IPv4 and, for IPv6, the same "header included" mode (the kernel's inet6_create
  sets hdrincl for IPPROTO_RAW): we hand over the WHOLE packet, IPv6 header included.
  (A raw IPv6 socket of any other protocol takes only the payload and builds the
  header itself, with a source address of this host: useless for a forged RST.)
  With the header included the kernel sends the source address we wrote, so the
  forged addresses need neither IP_TRANSPARENT nor a local address. The kernel still
  routes by destination and fills in what raw(7) says it always fills: for IPv4 the
  header checksum and total length, and the ID when it is 0; for IPv6 the payload
  length. The TCP checksum is ours (`rst` computes it).
- `LinkInjector` for an agent on a mirror (SPAN) port: it sees a copy of the
  traffic, its own interface is not on the path, so routing would send nothing the
  endpoints see. It writes whole Ethernet frames (with the MAC addresses it observed,
  `rst.ethernet_frame`) onto one interface with ``socket(AF_PACKET, SOCK_RAW, 0)``
  (packet(7)); protocol 0 makes the socket send-only, so it never queues a copy of
  the traffic it is not going to read.

Both are context managers, count ``sent`` and ``errors``, and raise on failure
(`InjectError`, an OSError naming what failed and why, counted first): whether a
failed reset stops the pipeline is the caller's decision, not ours. Creating either
needs CAP_NET_RAW: without it the PermissionError says so.

Limits: one send per packet (no batching: a reset is a handful of packets);
IPv6 link-local destinations (which need a scope id) are refused. On a gateway
that NATs, a locally sent packet matching a tracked connection goes through the
same conntrack/NAT as its connection (POSTROUTING), so build the RSTs from the
addresses seen on the inside and let the kernel translate. ``mark`` (SO_MARK,
needs CAP_NET_ADMIN) lets the ruleset recognise our own packets, e.g. to keep them
out of an NFQUEUE rule on the output path.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from types import TracebackType
from typing import Final

IPPROTO_RAW: Final = 255
SO_MARK: Final = 36  # asm-generic/socket.h; socket.SO_MARK is missing on some Python builds
MAX_PACKET: Final = 0xFFFF  # an IP packet's largest size; the route's MTU limits further (EMSGSIZE)
MAX_FRAME: Final = 0xFFFF + 18  # an AF_PACKET frame: MTU-limited by the kernel, this only stops nonsense
CAP_NET_RAW_HINT: Final = ("raw sockets need CAP_NET_RAW: run the agent as root, or grant it the "
                           "capability (systemd AmbientCapabilities=CAP_NET_RAW, or "
                           "setcap cap_net_raw+ep on the interpreter)")


class InjectError(OSError):
    """A packet or frame could not be sent (the OSError's errno and text say why)."""


def _raw_socket(family: int, proto: int, what: str) -> socket.socket:
    try:
        return socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError as e:
        raise PermissionError(e.errno, f"cannot open a {what} socket: {CAP_NET_RAW_HINT}") from e


def _set_mark(sock: socket.socket, mark: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
    except PermissionError as e:
        raise PermissionError(e.errno, "setting SO_MARK on the injector needs CAP_NET_ADMIN") from e


class RawInjector:
    """Send whole IPv4/IPv6 packets (header included, any source address) through the kernel.

    ``mark``: an fwmark (SO_MARK) put on every packet sent, or None.
    """

    def __init__(self, *, mark: int | None = None) -> None:
        self.sent = 0
        self.errors = 0
        self._v4: socket.socket | None = None
        self._v6: socket.socket | None = None
        self._v6_error: str | None = None
        self._v4 = _raw_socket(socket.AF_INET, IPPROTO_RAW, "raw IPv4")
        try:
            self._v6 = _raw_socket(socket.AF_INET6, IPPROTO_RAW, "raw IPv6")
        except PermissionError:
            self._v4.close()
            raise
        except OSError as e:
            # a kernel booted with ipv6.disable=1 has no AF_INET6: IPv4 still works
            self._v6_error = f"no IPv6 on this host: {e.strerror}"
        if mark is not None:
            for s in (self._v4, self._v6):
                if s is not None:
                    _set_mark(s, mark)

    def send(self, packet: bytes) -> None:
        """Send one IP packet as it is; raises ValueError (not IP) or InjectError (kernel refused)."""
        try:
            sock, dest = self._route(packet)
        except ValueError:
            self.errors += 1
            raise
        try:
            sock.sendto(packet, dest)
        except OSError as e:
            self.errors += 1
            raise InjectError(e.errno, f"sending a {len(packet)}-byte packet to {dest[0]}: {e.strerror}"
                              ) from e
        self.sent += 1

    def _route(self, packet: bytes) -> tuple[socket.socket, tuple[str, int] | tuple[str, int, int, int]]:
        if self._v4 is None:
            raise ValueError("the injector is closed")
        if not 0 < len(packet) <= MAX_PACKET:
            raise ValueError(f"a {len(packet)}-byte packet is not an IP packet")
        version = packet[0] >> 4
        if version == 4 and len(packet) >= 20:
            return self._v4, (str(ipaddress.IPv4Address(packet[16:20])), 0)
        if version == 6 and len(packet) >= 40:
            if self._v6 is None:
                raise ValueError(f"cannot send an IPv6 packet: {self._v6_error}")
            dst = ipaddress.IPv6Address(packet[24:40])
            if dst.is_link_local:
                raise ValueError(f"link-local destination {dst} needs an interface scope")
            return self._v6, (str(dst), 0, 0, 0)
        raise ValueError(f"not an IPv4/IPv6 packet (version {version}, {len(packet)} bytes)")

    def close(self) -> None:
        for s in (self._v4, self._v6):
            if s is not None:
                s.close()
        self._v4 = self._v6 = None

    def __enter__(self) -> RawInjector:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LinkInjector:
    """Send whole Ethernet frames on interface ``ifname`` (mirror-port mode)."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.sent = 0
        self.errors = 0
        sock = _raw_socket(socket.AF_PACKET, 0, "packet (AF_PACKET)")
        try:
            sock.bind((ifname, 0))
        except OSError as e:
            sock.close()
            if e.errno == errno.ENODEV:
                raise InjectError(e.errno, f"no interface named {ifname!r} in this network namespace"
                                  ) from e
            raise InjectError(e.errno, f"binding to interface {ifname!r}: {e.strerror}") from e
        self._sock: socket.socket | None = sock

    def send(self, frame: bytes) -> None:
        """Send one frame as it is (destination MAC first); raises ValueError or InjectError."""
        if self._sock is None or not 14 <= len(frame) <= MAX_FRAME:
            self.errors += 1
            raise ValueError("the injector is closed" if self._sock is None
                             else f"a {len(frame)}-byte frame is not an Ethernet frame")
        try:
            self._sock.send(frame)
        except OSError as e:
            self.errors += 1
            raise InjectError(e.errno, f"sending a {len(frame)}-byte frame on {self.ifname}: {e.strerror}"
                              ) from e
        self.sent += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> LinkInjector:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
