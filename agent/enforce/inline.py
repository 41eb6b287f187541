"""Inline mode: every forwarded packet waits in NFQUEUE for the agent's verdict (DESIGN.md step 8).

What: on the gateway an nftables rule (``queue num N`` in a forward chain) hands each
packet to the agent (`agent.enforce.nfqueue.NfQueue`). `InlineAgent.handle` runs it
through the pipeline (flows, decoders, the keyword filter) and only then answers:
accept, or drop when that very packet completed a match of a `block` rule. For a
blocked TCP connection it also sends resets both ways (`agent.enforce.rst`, injected
with a raw socket, `agent.enforce.inject.RawInjector`), sequenced so each end accepts
them:
- to the receiver of the dropped packet, from its peer, at the dropped packet's own
  sequence number (the receiver's RCV.NXT: the packet never reached it);
- to the sender, from the other end, at the next sequence number that end would send
  (the highest seen from it, all of which was forwarded).
Every later packet of a blocked connection is dropped without being inspected, so
nothing of it gets through even if an end ignores the reset. A blocked UDP flow (a DNS
query) just has its packets dropped. The alert says `blocked: true`. A new connection that
happens to reuse a blocked one's addresses and ports (its SYN: the client's kernel freed the
port at the reset) is a new connection, inspected as any other: without that, a client
opening many connections (a mass mailer reset at each MAIL FROM) finds one of its later ones
silently dropped for good.

Why verdicts one packet at a time: the packet that completes a keyword must be the one
held back; the pipeline is fast enough per packet (the bench) and NFQUEUE's
fail-open flag (`NfQueue(fail_open=True)`) lets traffic through rather than stalling
the link if the agent falls behind.

Limits: `MAX_BLOCKED` connections are remembered as blocked (oldest forgotten first,
counted); the packet must be IPv4 or IPv6 without extension headers before the
transport header to be matched against a blocked connection (others are inspected
as usual).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from agent.capture.linktypes import RAW
from agent.enforce.nfqueue import NfQueue, QueuedPacket
from agent.enforce.rst import reset_packets
from agent.flows.tcp import TcpEndpoint

if TYPE_CHECKING:
    from agent.enforce.inject import RawInjector
    from agent.flows.state import Flow
    from agent.pipeline import Pipeline

MAX_BLOCKED: Final = 65536
_M32: Final = 0xFFFFFFFF

Key = tuple[bytes, bytes, int, int, int]  # src, dst, sport, dport, protocol


def packet_key(pkt: bytes) -> Key | None:
    """The 5-tuple of a raw IPv4/IPv6 packet (ports 0 when it has none), or None."""
    if len(pkt) < 20:
        return None
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        proto = pkt[9]
        src, dst, off = pkt[12:16], pkt[16:20], ihl
        if (pkt[6] & 0x1F) or pkt[7]:  # a non-first fragment: no ports
            return src, dst, 0, 0, proto
    elif version == 6 and len(pkt) >= 40:
        proto = pkt[6]
        src, dst, off = pkt[8:24], pkt[24:40], 40
    else:
        return None
    if proto in (6, 17) and len(pkt) >= off + 4:
        return src, dst, (pkt[off] << 8) | pkt[off + 1], (pkt[off + 2] << 8) | pkt[off + 3], proto
    return src, dst, 0, 0, proto


def opens_connection(pkt: bytes) -> bool:
    """Whether a raw IPv4/IPv6 packet is a TCP SYN without ACK (a connection's first packet)."""
    off = (pkt[0] & 0x0F) * 4 if pkt[0] >> 4 == 4 else 40
    return len(pkt) > off + 13 and pkt[off + 13] & 0x12 == 0x02


class InlineAgent:
    def __init__(self, pipeline: Pipeline, injector: RawInjector | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if pipeline.inspector is None or (pipeline.filter is None and pipeline.mail is None):
            raise ValueError("inline mode needs the decoders and a ruleset or the mail policy")
        self.pipeline = pipeline
        self.injector = injector
        self.clock = clock
        self.inspector = pipeline.inspector
        self.inspector.on_block = self._on_block
        self.blocked: dict[Key, None] = {}  # both directions of each blocked connection
        self._drop_current = False
        self.counters = {"packets": 0, "accepted": 0, "dropped": 0, "dropped_blocked": 0,
                         "connections_blocked": 0, "resets_sent": 0, "reset_errors": 0,
                         "blocked_forgotten": 0, "blocked_reused": 0}

    def handle(self, payload: bytes, ts: float | None = None) -> bool:
        """Inspect one queued IP packet; True to accept it, False to drop it."""
        self.counters["packets"] += 1
        key = packet_key(payload)
        if key is not None and key in self.blocked:
            if not (key[4] == 6 and opens_connection(payload)):
                self.counters["dropped_blocked"] += 1
                self.counters["dropped"] += 1
                return False
            self._forget(key)  # a new connection on the same addresses and ports (module docstring)
        self._drop_current = False
        self.pipeline.feed([(self.clock() if ts is None else ts, RAW, payload)])
        if self._drop_current:
            self.counters["dropped"] += 1
            return False
        self.counters["accepted"] += 1
        return True

    def serve(self, queue: NfQueue, stop: Callable[[], bool], poll: float = 0.2) -> None:
        """Answer every packet of `queue` until `stop()` says so (checked at least every `poll` s)."""
        while not stop():
            for qp in queue.recv(timeout=poll):
                queue.verdict(qp.packet_id, self.handle(qp.payload))

    def handle_queued(self, qp: QueuedPacket) -> bool:
        return self.handle(qp.payload)

    # -- the inspector's call when a `block` rule matched -----------------------------------------
    def _on_block(self, f: Flow, alerts: list[dict[str, Any]], segment: tuple[bool, int] | None) -> bool:
        self._drop_current = True
        self._remember(f)
        if f.proto == 6:
            self._reset(f, segment)
        return True

    def _forget(self, key: Key) -> None:
        src, dst, sport, dport, proto = key
        self.blocked.pop(key, None)
        self.blocked.pop((dst, src, dport, sport, proto), None)
        self.counters["blocked_reused"] += 1

    def _remember(self, f: Flow) -> None:
        if len(self.blocked) >= 2 * MAX_BLOCKED:
            for _ in range(2):
                self.blocked.pop(next(iter(self.blocked)))
            self.counters["blocked_forgotten"] += 1
        self.blocked[(f.oip, f.rip, f.oport, f.rport, f.proto)] = None
        self.blocked[(f.rip, f.oip, f.rport, f.oport, f.proto)] = None
        self.counters["connections_blocked"] += 1

    def _reset(self, f: Flow, seg: tuple[bool, int] | None) -> None:
        if seg is None or self.injector is None:
            return
        from_orig, seq = seg
        orig, resp = f.orig, f.resp
        # the dropped packet's receiver expects its sequence number; its sender expects the
        # next byte of the other end (everything seen from that end was forwarded)
        assert isinstance(orig, TcpEndpoint) and isinstance(resp, TcpEndpoint)  # (only TCP is reset)
        o_next = seq if from_orig else orig.last & _M32
        r_next = resp.last & _M32 if from_orig else seq
        try:
            packets = reset_packets(
                client_ip=str(ipaddress.ip_address(f.oip)), client_port=f.oport,
                server_ip=str(ipaddress.ip_address(f.rip)), server_port=f.rport,
                client_next_seq=o_next, server_next_seq=r_next, burst=1)
        except ValueError:
            self.counters["reset_errors"] += 1
            return
        for _direction, pkt in packets:
            try:
                self.injector.send(pkt)
                self.counters["resets_sent"] += 1
            except OSError:
                self.counters["reset_errors"] += 1
