"""The gateway's known address translations: conntrack tuples -> `nat` records and lookups.

What: pure state, no sockets and no wall clock of its own.
* ``classify(orig, reply)`` turns a connection's original and reply tuples into a
  ``Translation`` (inside, outside, remote endpoints), or ``None`` when the kernel did not
  translate the connection (the reply tuple is the exact inverse of the original).
* ``NatTable`` remembers the translations that are live, emits a SCHEMA `nat` record when
  one is created or destroyed, reconciles itself against a full re-read of the kernel table
  (after event loss), and answers ``outside_for(proto, src_ip, src_port, dst_ip, dst_port)``
  for the pipeline, which stamps `nat_ip`/`nat_port` on `session` records.

Which endpoint is which (conntrack's two tuples; "orig" = as the originator sent it,
"reply" = as the responder's packets look before translation back):
* source NAT (SNAT, masquerade; ``reply.dst != orig.src``): inside = ``orig.src``,
  outside = ``reply.dst`` (the public address and port the gateway chose),
  remote = ``orig.dst`` (what the inside host addressed). A connection with both SNAT and
  DNAT (hairpin) is treated as SNAT: the inside host is the one translated on the way out.
* destination NAT only (port forwarding; ``reply.src != orig.dst``): inside = ``reply.src``
  (the internal server the connection was forwarded to), outside = ``orig.dst`` (the public
  address and port that was called), remote = ``orig.src`` (the caller on the internet).
* ICMP: the "port" of inside/outside is the ICMP echo identifier (masquerade rewrites it);
  remote_port is ``None``. Other protocols without ports: all ports ``None``.

The lookup map (``outside_for``) holds source-NAT translations only, keyed by the inside
5-tuple as the inside host sent it (``orig``), because `nat_ip` is "the public address the
originator was translated to". After a destroy the entry lingers ``linger`` seconds (by the
injected monotonic clock): sessions are emitted after their connection ended, possibly after
conntrack already forgot it. A new translation of the same 5-tuple replaces a lingering one.

Limits (DESIGN.md standard 3): ``limit`` bounds both the live set and the lookup map
(default ``LIVE_LIMIT``). When the lookup map is full the oldest lingering entry is evicted
first (``counters["lookup_evicted"]``); when everything in it is live, the new entry is not
added (``counters["lookup_dropped"]``). A create beyond the live limit still yields its
record, but the translation is not remembered (``counters["live_dropped"]``), so its destroy
later counts as ``destroy_unknown``.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wire.records import NatRecord

LIVE_LIMIT = 1_000_000  # translations remembered; the kernel's nf_conntrack_max is usually far lower
LINGER_S = 300.0  # seconds a destroyed translation still answers outside_for (sessions end later)

_PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp",
                socket.IPPROTO_ICMPV6: "icmp6"}
_ICMPS = (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6)


def proto_name(num: int) -> str:
    """SCHEMA's protocol name: tcp, udp, icmp, icmp6, else the IP protocol number as a string."""
    return _PROTO_NAMES.get(num, str(num))


@dataclass(frozen=True, slots=True)
class CtTuple:
    """One direction of a conntrack entry. ``sport``/``dport``: ports; for ICMP the echo id
    is ``sport`` and ``dport`` is ``None``; ``None`` for protocols without ports."""

    proto: int
    src: str
    dst: str
    sport: int | None
    dport: int | None


@dataclass(frozen=True, slots=True)
class Translation:
    """A translated connection's endpoints as the `nat` record names them."""

    snat: bool  # True: source NAT (goes into the lookup map); False: destination NAT only
    proto: str
    inside_ip: str
    inside_port: int | None
    outside_ip: str
    outside_port: int | None
    remote_ip: str
    remote_port: int | None


def classify(orig: CtTuple, reply: CtTuple) -> Translation | None:
    """The translation a conntrack entry describes, or ``None`` when it is untranslated."""
    icmp = orig.proto in _ICMPS
    # ICMP: the reply tuple carries the same echo id in its "sport" slot (no inversion)
    reply_back_port = reply.sport if icmp else reply.dport
    reply_from_port = None if icmp else reply.sport
    snat = reply.dst != orig.src or reply_back_port != orig.sport
    dnat = reply.src != orig.dst or reply_from_port != orig.dport
    name = proto_name(orig.proto)
    if snat:
        return Translation(True, name, orig.src, orig.sport, reply.dst, reply_back_port,
                           orig.dst, orig.dport)
    if dnat:
        return Translation(False, name, reply.src, reply_from_port, orig.dst, orig.dport,
                           orig.src, orig.sport)
    return None


def nat_record(event: str, ts: float, t: Translation) -> NatRecord:
    """The SCHEMA `nat` record of ``t`` (``event``: ``create`` or ``destroy``)."""
    return {"type": "nat", "ts": round(ts, 6), "event": "create" if event == "create" else "destroy",
            "proto": t.proto, "inside_ip": t.inside_ip, "inside_port": t.inside_port,
            "outside_ip": t.outside_ip, "outside_port": t.outside_port,
            "remote_ip": t.remote_ip, "remote_port": t.remote_port}


# A conntrack entry's identity: address family, zone and original tuple (unique in the kernel's
# table at any instant). The kernel's CTA_ID tells two entries that reuse one key apart.
CtKey = tuple[int, int, CtTuple]
LookupKey = tuple[str, str, int | None, str, int | None]


@dataclass(slots=True)
class Live:
    ct_id: int | None
    translation: Translation
    lookup: LookupKey | None


@dataclass(frozen=True, slots=True)
class Current:
    """One translated entry of a full table read (for ``NatTable.reconcile``)."""

    ct_id: int | None
    translation: Translation
    ts: float  # the entry's start time when the kernel gives it, else the read's time


class NatTable:
    """Live translations, their `nat` records, and the inside 5-tuple -> outside lookup."""

    def __init__(self, linger: float = LINGER_S, limit: int = LIVE_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.linger = linger
        self.limit = limit
        self.clock = clock
        self.live: dict[CtKey, Live] = {}
        self._lookup: dict[LookupKey, tuple[str, int | None]] = {}
        self._expiry: dict[LookupKey, float] = {}  # lingering lookup entries -> deadline
        self._lingering: deque[tuple[float, LookupKey]] = deque()  # deadlines in order
        self.counters: dict[str, int] = dict.fromkeys(
            ("created", "destroyed", "duplicate_create", "destroy_unknown", "destroy_other_id",
             "live_dropped", "lookup_evicted", "lookup_dropped", "reconcile_created",
             "reconcile_destroyed"), 0)

    # events ---------------------------------------------------------------------------------

    def create(self, key: CtKey, ct_id: int | None, t: Translation, ts: float) -> list[NatRecord]:
        """A NEW event for a translated entry: its `create` record (none if already known)."""
        have = self.live.get(key)
        if have is not None:
            if have.ct_id == ct_id or ct_id is None or have.ct_id is None:
                self.counters["duplicate_create"] += 1
                return []
            # the key was reused by a new entry while the old one's DESTROY got lost
            out = self._forget(key, ts)
            return out + self.create(key, ct_id, t, ts)
        self.counters["created"] += 1
        if len(self.live) >= self.limit:
            self.counters["live_dropped"] += 1
        else:
            self.live[key] = Live(ct_id, t, self._remember(key, t))
        return [nat_record("create", ts, t)]

    def destroy(self, key: CtKey, ct_id: int | None, ts: float) -> list[NatRecord]:
        """A DESTROY event: the `destroy` record of the entry, if it was a known translation."""
        have = self.live.get(key)
        if have is None:
            self.counters["destroy_unknown"] += 1
            return []
        if ct_id is not None and have.ct_id is not None and ct_id != have.ct_id:
            self.counters["destroy_other_id"] += 1  # an older entry of the same key: already gone
            return []
        return self._forget(key, ts)

    def reconcile(self, current: Mapping[CtKey, Current], ts: float) -> list[NatRecord]:
        """Make the live set equal a full table read ``current`` (translated entries only).

        * an entry in ``current`` not live (or live under another CTA_ID): `create`, with the
          entry's own ``ts`` (kernel start time when timestamps are on, else the read's time);
        * a live entry missing from ``current`` (or replaced by another CTA_ID): `destroy` at
          ``ts`` (the time of the read: the real end is unknown, it was in the lost events);
        * an entry in both: nothing.
        """
        out: list[NatRecord] = []
        for key in [k for k, v in self.live.items()
                    if k not in current or _other_id(current[k].ct_id, v.ct_id)]:
            out += self._forget(key, ts)
            self.counters["reconcile_destroyed"] += 1
        for key, cur in current.items():
            if key not in self.live:
                out += self.create(key, cur.ct_id, cur.translation, cur.ts)
                self.counters["reconcile_created"] += 1
        return out

    # the lookup -----------------------------------------------------------------------------

    def outside_for(self, proto: str, src_ip: str, src_port: int | None, dst_ip: str,
                    dst_port: int | None) -> tuple[str, int | None] | None:
        """The public (address, port) ``src`` was translated to for this connection, or None.

        Valid while the translation lives and ``linger`` seconds after its destroy."""
        self.expire()
        return self._lookup.get((proto, src_ip, src_port, dst_ip, dst_port))

    def expire(self) -> None:
        """Drop lingering lookup entries whose time is up."""
        now = self.clock()
        while self._lingering and self._lingering[0][0] <= now:
            deadline, lk = self._lingering.popleft()
            if self._expiry.get(lk) == deadline:
                del self._expiry[lk]
                del self._lookup[lk]

    def __len__(self) -> int:
        return len(self.live)

    # internals ------------------------------------------------------------------------------

    def _remember(self, key: CtKey, t: Translation) -> LookupKey | None:
        if not t.snat:
            return None
        o = key[2]
        lk: LookupKey = (t.proto, o.src, o.sport, o.dst, o.dport)
        self._expiry.pop(lk, None)  # a lingering entry of the same 5-tuple is replaced
        if lk not in self._lookup and len(self._lookup) >= self.limit:
            self.expire()
            while len(self._lookup) >= self.limit and self._lingering:
                deadline, old = self._lingering.popleft()
                if self._expiry.get(old) == deadline:
                    del self._expiry[old]
                    del self._lookup[old]
                    self.counters["lookup_evicted"] += 1
            if len(self._lookup) >= self.limit:
                self.counters["lookup_dropped"] += 1
                return None
        self._lookup[lk] = (t.outside_ip, t.outside_port)
        return lk

    def _forget(self, key: CtKey, ts: float) -> list[NatRecord]:
        have = self.live.pop(key)
        self.counters["destroyed"] += 1
        if have.lookup is not None and have.lookup in self._lookup:
            deadline = self.clock() + self.linger
            self._expiry[have.lookup] = deadline
            self._lingering.append((deadline, have.lookup))
        return [nat_record("destroy", ts, have.translation)]


def _other_id(a: int | None, b: int | None) -> bool:
    return a is not None and b is not None and a != b

