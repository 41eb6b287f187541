"""Connection-tracking events over netlink -> `nat` records (the gateway's NAT log).

What: ``ConntrackSource`` subscribes to the kernel's ctnetlink multicast groups
NFNLGRP_CONNTRACK_NEW and NFNLGRP_CONNTRACK_DESTROY (not UPDATE: state changes carry no
new translation), decodes each message with pyroute2's ``nfct_msg``, and feeds a
``NatTable`` (agent/nat/table.py), which keeps translated connections only and produces
the records. ``outside_for(...)`` is the table's lookup for stamping `nat_ip`/`nat_port`
on `session` records; it is thread-safe (one lock), so ``run`` may own a thread while the
pipeline looks up from another.

Use: blocking, ``source.run(callback, stop_event)`` (returns within ``POLL_S`` of the event
being set); step-wise, ``source.poll(timeout)`` -> records (waits in poll(2) at most
``timeout`` seconds for the socket, then reads what is queued; never spins).
``ConntrackSource(netns="name")`` opens its sockets inside a named network namespace
(pyroute2's ``netns.create_socket``: a short-lived child enters the namespace and passes
the socket back), so the agent (or a test) needs no ``ip netns exec``.

Why a raw netlink socket under pyroute2's message classes, and not pyroute2's
``Conntrack`` object: the event loss handling below needs to see ENOBUFS exactly where the
kernel reports it, to choose the receive buffer, and to wait in poll(2) with a timeout;
pyroute2 0.9's asyncio transport turns socket errors into queued pseudo-messages and owns
the event loop. Decoding (attributes, nesting, byte order) is entirely pyroute2's.

Timestamps (the record's ``ts``):
* ``create`` from a NEW event: the receipt time, ``time.time()`` when the message was read
  from the socket. The kernel puts no CTA_TIMESTAMP in NEW events (ctnetlink_conntrack_event
  dumps timestamps only with IPCT_DESTROY); events arrive within milliseconds, except in an
  overrun (below).
* ``destroy``: CTA_TIMESTAMP_STOP (the kernel's wall clock at the entry's death, ns -> s)
  when the kernel stamps connections (sysctl ``net.netfilter.nf_conntrack_timestamp=1``,
  per network namespace), else the receipt time.
* ``create`` from a table read (after an overrun): CTA_TIMESTAMP_START when the kernel
  stamps connections, else the time of the read.
``counters["kernel_ts"]`` / ``counters["receipt_ts"]`` count which one each record got.
Deployments should set ``nf_conntrack_timestamp=1`` (deploy/ snippet; see the report).

Event loss: netlink multicast is lossy. When the socket's receive buffer overruns, the
next ``recv`` fails with ENOBUFS (we never set NETLINK_NO_ENOBUFS). Then:
1. ``counters["enobufs"] += 1``;
2. the messages still queued in the socket (older than the loss) are read and applied;
3. the whole table is read (a ctnetlink dump on a second, unsubscribed socket, which has
   flow control and cannot lose messages) and ``NatTable.reconcile`` runs: a translated
   entry of the dump that is not known (or is known under another CTA_ID) gets a `create`
   (ts: its CTA_TIMESTAMP_START when the kernel gives one, else the read's time); a known
   translation absent from the dump gets a `destroy` with the read's time (its real end
   was in the lost events); anything in both is left alone. ``counters["resyncs"]``.
Events that arrive after the dump are applied as usual: a NEW for an entry the dump
already created is a duplicate and is ignored (same key and CTA_ID), a DESTROY for an
entry never known is counted (``destroy_unknown``) and ignored. What cannot be recovered:
connections that began and ended entirely inside the lost window (they never reach a
record; the counter says that this may have happened). ``resync()`` can also be called
directly, e.g. once at start to learn the translations that existed before the agent.

Receive buffer: ``RCVBUF`` (default 16 MiB) set with SO_RCVBUFFORCE (root may exceed
``net.core.rmem_max``), falling back to SO_RCVBUF; the size the kernel granted is in
``rcvbuf_effective``.

Limits: IPv4 and IPv6 tuples; ``MAX_READS_PER_POLL`` datagrams per ``poll`` (the rest stays
queued for the next call, so one call is bounded); the table's own limits (table.py);
messages that fail to decode are counted (``decode_errors``) and skipped.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from pyroute2 import netns as pr_netns
from pyroute2.netlink import (
    NETLINK_NETFILTER,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.nfnetlink import (
    NFNL_SUBSYS_CTNETLINK,
    NFNLGRP_CONNTRACK_DESTROY,
    NFNLGRP_CONNTRACK_NEW,
)
from pyroute2.netlink.nfnetlink.nfctsocket import (
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_GET,
    IPCTNL_MSG_CT_NEW,
    nfct_msg,
)

from agent.nat.table import LINGER_S, LIVE_LIMIT, CtKey, CtTuple, Current, NatTable, classify
from wire.records import NatRecord

RCVBUF = 16 * 1024 * 1024  # bytes of kernel receive buffer for events: ~50k NEW/DESTROY messages
RECV_SIZE = 65536  # bytes per recv(): one datagram holds one or a few event messages
MAX_READS_PER_POLL = 4096  # datagrams per poll() call before returning to the caller
POLL_S = 0.5  # seconds run() waits per step, so a stop request is seen within this time
DUMP_TIMEOUT_S = 10.0  # seconds a full table read may wait for the kernel

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_MSG_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
_MSG_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
_MSG_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET


# What `_recv` returns for ENOBUFS: compared by identity, and recv always returns a new object.
_OVERRUN = b"\x00overrun"


class _CtMarshal(Marshal):  # type: ignore[misc]
    msg_map = {_MSG_NEW: nfct_msg, _MSG_DELETE: nfct_msg}


def _group_mask(*groups: int) -> int:
    mask = 0
    for g in groups:
        mask |= 1 << (g - 1)
    return mask


class ConntrackSource:
    """ctnetlink NEW/DESTROY events of one network namespace -> `nat` records."""

    def __init__(self, netns: str | None = None, rcvbuf: int = RCVBUF, linger: float = LINGER_S,
                 limit: int = LIVE_LIMIT, clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], float] = time.time) -> None:
        self.netns = netns
        self.wallclock = wallclock
        self.table = NatTable(linger=linger, limit=limit, clock=clock)
        self.counters: dict[str, int] = dict.fromkeys(
            ("events_new", "events_destroy", "untranslated", "decode_errors", "enobufs", "resyncs",
             "kernel_ts", "receipt_ts", "records"), 0)
        self._lock = threading.Lock()
        self._marshal = _CtMarshal()
        self._seq = 0
        self.events = self._open(rcvbuf)
        self.events.bind((0, _group_mask(NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY)))
        self.events.setblocking(False)
        self._poller = select.poll()  # not select.select: the agent may hold fds above FD_SETSIZE
        self._poller.register(self.events, select.POLLIN)
        self.rcvbuf_effective = self.events.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._dump_sock: socket.socket | None = None

    # sockets --------------------------------------------------------------------------------

    def _socket(self) -> socket.socket:
        if self.netns is None:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        # flags=0: never create the namespace, only enter an existing one
        sock: socket.socket = pr_netns.create_socket(self.netns, socket.AF_NETLINK, socket.SOCK_RAW,
                                                     NETLINK_NETFILTER, flags=0)
        return sock

    def _open(self, rcvbuf: int) -> socket.socket:
        sock = self._socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        return sock

    def close(self) -> None:
        self.events.close()
        if self._dump_sock is not None:
            self._dump_sock.close()
            self._dump_sock = None

    def __enter__(self) -> ConntrackSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the loop -------------------------------------------------------------------------------

    def run(self, callback: Callable[[NatRecord], None], stop: threading.Event) -> None:
        """Deliver records to ``callback`` until ``stop`` is set (seen within ``POLL_S``)."""
        while not stop.is_set():
            for rec in self.poll(POLL_S):
                callback(rec)

    def poll(self, timeout: float = 0.0) -> list[NatRecord]:
        """Wait up to ``timeout`` s for events, then read what is queued; return the records."""
        ready = self._poller.poll(max(0, int(timeout * 1000)))
        out: list[NatRecord] = []
        if not ready:
            with self._lock:
                self.table.expire()
            return out
        for _ in range(MAX_READS_PER_POLL):
            data = self._recv()
            if data is None:
                break
            if data is _OVERRUN:
                out += self._drain()
                out += self.resync()
                break
            out += self._apply(data, self.wallclock())
        self.counters["records"] += len(out)
        return out

    def _recv(self) -> bytes | None:
        """One datagram of events; None when none is queued, ``_OVERRUN`` (counted) on ENOBUFS."""
        try:
            return self.events.recv(RECV_SIZE)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            self.counters["enobufs"] += 1
            return _OVERRUN

    def _drain(self) -> list[NatRecord]:
        """Apply the messages still queued after an overrun (they are older than the loss)."""
        out: list[NatRecord] = []
        for _ in range(MAX_READS_PER_POLL):
            data = self._recv()
            if data is None:
                break
            if data is not _OVERRUN:
                out += self._apply(data, self.wallclock())
        return out

    def _apply(self, data: bytes, now: float) -> list[NatRecord]:
        out: list[NatRecord] = []
        for msg in self._marshal.parse(data):
            mtype = msg["header"]["type"]
            if mtype not in (_MSG_NEW, _MSG_DELETE):
                continue
            entry = self._entry(msg)
            if entry is None:
                continue
            key, ct_id, orig, reply, start, stop = entry
            with self._lock:
                if mtype == _MSG_NEW:
                    self.counters["events_new"] += 1
                    t = classify(orig, reply)
                    if t is None:
                        self.counters["untranslated"] += 1
                        continue
                    out += self.table.create(key, ct_id, t, self._ts(None, now))
                else:
                    self.counters["events_destroy"] += 1
                    if classify(orig, reply) is None:
                        continue
                    out += self.table.destroy(key, ct_id, self._ts(stop, now))
        return out

    def _ts(self, kernel_ns: int | None, now: float) -> float:
        if kernel_ns:
            self.counters["kernel_ts"] += 1
            return kernel_ns / 1e9
        self.counters["receipt_ts"] += 1
        return now

    # decoding -------------------------------------------------------------------------------

    def _entry(self, msg: Any) -> tuple[CtKey, int | None, CtTuple, CtTuple, int | None, int | None] | None:
        """(key, CTA_ID, orig, reply, start ns, stop ns) of one ctnetlink message, or None."""
        try:
            if msg["header"].get("error") is not None:
                raise ValueError(str(msg["header"]["error"]))
            family = int(msg["nfgen_family"])
            orig = _tuple(family, msg.get_attr("CTA_TUPLE_ORIG"))
            reply = _tuple(family, msg.get_attr("CTA_TUPLE_REPLY"))
            ct_id = msg.get_attr("CTA_ID")
            zone = msg.get_attr("CTA_ZONE") or 0
            start = stop = None
            stamp = msg.get_attr("CTA_TIMESTAMP")
            if stamp is not None:
                start = stamp.get_attr("CTA_TIMESTAMP_START")
                stop = stamp.get_attr("CTA_TIMESTAMP_STOP")
        except (ValueError, TypeError, AttributeError, KeyError):
            self.counters["decode_errors"] += 1
            return None
        key: CtKey = (family, int(zone), orig)
        return (key, None if ct_id is None else int(ct_id), orig, reply,
                None if start is None else int(start), None if stop is None else int(stop))

    # full table read ------------------------------------------------------------------------

    def resync(self) -> list[NatRecord]:
        """Read the whole table and reconcile (see the module docstring); return the records.

        Call it from the thread that polls (it shares the dump socket); the agent calls it once
        after start to learn the translations that existed before it."""
        now = self.wallclock()
        current: dict[CtKey, Current] = {}
        for msg in self._dump():
            entry = self._entry(msg)
            if entry is None:
                continue
            key, ct_id, orig, reply, start, _ = entry
            t = classify(orig, reply)
            if t is not None:
                current[key] = Current(ct_id, t, start / 1e9 if start else now)
        self.counters["resyncs"] += 1
        with self._lock:
            return self.table.reconcile(current, now)

    def _dump(self) -> Iterator[Any]:
        if self._dump_sock is None:
            self._dump_sock = self._open(RCVBUF)
            self._dump_sock.bind((0, 0))
            self._dump_sock.settimeout(DUMP_TIMEOUT_S)
        sock = self._dump_sock
        self._seq += 1
        req = nfct_msg()
        req["header"]["type"] = _MSG_GET
        req["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
        req["header"]["sequence_number"] = self._seq
        req["nfgen_family"] = socket.AF_UNSPEC  # every family
        req.encode()
        sock.send(req.data)
        while True:
            data = sock.recv(RECV_SIZE)
            for msg in self._marshal.parse(data):
                hdr = msg["header"]
                if hdr["sequence_number"] != self._seq:
                    continue
                if hdr["type"] == NLMSG_DONE:
                    return
                if hdr["type"] == NLMSG_ERROR:
                    err = hdr.get("error")
                    if err is not None:
                        raise OSError(getattr(err, "code", errno.EIO), f"conntrack dump failed: {err}")
                    return
                if hdr["type"] == _MSG_NEW:
                    yield msg

    # the lookup -----------------------------------------------------------------------------

    def outside_for(self, proto: str, src_ip: str, src_port: int | None, dst_ip: str,
                    dst_port: int | None) -> tuple[str, int | None] | None:
        """(nat_ip, nat_port) for a session's originator, or None (see NatTable.outside_for)."""
        with self._lock:
            return self.table.outside_for(proto, src_ip, src_port, dst_ip, dst_port)

    def stats(self) -> dict[str, int]:
        """This source's counters and its table's, one flat map."""
        with self._lock:
            return {**self.counters, **self.table.counters, "live": len(self.table)}


def _tuple(family: int, nla: Any) -> CtTuple:
    if nla is None:
        raise ValueError("conntrack message without a tuple")
    ip = nla.get_attr("CTA_TUPLE_IP")
    pr = nla.get_attr("CTA_TUPLE_PROTO")
    if family == socket.AF_INET:
        src, dst = ip.get_attr("CTA_IP_V4_SRC"), ip.get_attr("CTA_IP_V4_DST")
    elif family == socket.AF_INET6:
        src, dst = ip.get_attr("CTA_IP_V6_SRC"), ip.get_attr("CTA_IP_V6_DST")
    else:
        raise ValueError(f"address family {family}")
    proto = int(pr.get_attr("CTA_PROTO_NUM"))
    sport: int | None
    dport: int | None
    if proto == socket.IPPROTO_ICMP:
        sport, dport = pr.get_attr("CTA_PROTO_ICMP_ID"), None
    elif proto == socket.IPPROTO_ICMPV6:
        sport, dport = pr.get_attr("CTA_PROTO_ICMPV6_ID"), None
    else:
        sport, dport = pr.get_attr("CTA_PROTO_SRC_PORT"), pr.get_attr("CTA_PROTO_DST_PORT")
    if src is None or dst is None:
        raise ValueError("conntrack tuple without addresses")
    return CtTuple(proto, str(src), str(dst), None if sport is None else int(sport),
                   None if dport is None else int(dport))
