"""Interleaves many concurrent sessions into one packet stream, as a gateway sees it.

Design: a fixed number of session slots (the concurrency) each hold a live
session generator. Every step picks a slot uniformly at random and emits that
session's next frame, so long transfers interleave with short lookups and no
session hogs the wire. A finished session is replaced at once by a new one
drawn from :data:`agent.synth.sessions.MIX`, keeping concurrency constant;
when the packet budget is reached the capture simply ends, leaving the
sessions in flight unfinished, as a real capture window does.

Clients are 1500 draws from 192.168.1–15.x (duplicates allowed, so some hosts
are busier than others); each client's source ports advance sequentially
through 32768–60767 from a random start, like Linux's ephemeral allocator.
Inter-packet gaps are exponential with mean ``1/pps`` seconds.

The loop body is the generator's hot path; it keeps lookups in locals and
avoids per-packet allocations beyond the frame itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

from agent.synth.frames import MacPair
from agent.synth.sessions import MIX, Client, SessionContext

CLIENT_COUNT = 1500
GATEWAY_MAC = bytes.fromhex("00163e0a0b01")
EPHEMERAL_FIRST = 32768
EPHEMERAL_SPAN = 28000

FrameSink = Callable[[float, bytes], None]


@dataclass
class ScheduleResult:
    """Counters of one scheduling run, by session kind."""

    packets: int = 0
    bytes: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    sessions: dict[str, int] = field(default_factory=dict)
    packets_by_kind: dict[str, int] = field(default_factory=dict)


def make_clients(rng: random.Random, count: int = CLIENT_COUNT) -> list[Client]:
    clients = []
    for _ in range(count):
        ip = bytes((192, 168, rng.randrange(1, 16), rng.randrange(2, 255)))
        # Locally administered MAC derived from the address, so it is stable per client.
        clients.append(Client(ip, MacPair.of(b"\x02\x00" + ip, GATEWAY_MAC)))
    return clients


class Scheduler:
    """Owns the session slots and the client port allocator."""

    def __init__(self, ctx: SessionContext, clients: list[Client], concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not clients:
            raise ValueError("need at least one client")
        self.ctx = ctx
        self.clients = clients
        self.concurrency = concurrency
        self._next_port: dict[bytes, int] = {}
        self._kind_cum = list(accumulate(w for _, _, w in MIX))
        self._kind_index = list(range(len(MIX)))

    def _client_port(self, client: Client) -> int:
        rng = self.ctx.rng
        port = self._next_port.get(client.ip)
        if port is None:
            port = rng.randrange(EPHEMERAL_FIRST, 60000)
        self._next_port[client.ip] = EPHEMERAL_FIRST + ((port + 1 - EPHEMERAL_FIRST) % EPHEMERAL_SPAN)
        return port

    def new_session(self) -> tuple[int, Iterator[bytes]]:
        """Start a session of a kind drawn from the mix; returns (kind index, frame iterator)."""
        rng = self.ctx.rng
        client = rng.choice(self.clients)
        port = self._client_port(client)
        k = rng.choices(self._kind_index, cum_weights=self._kind_cum)[0]
        return k, MIX[k][1](self.ctx, client, port)

    def run(self, packets: int, sink: FrameSink, start_ts: float, pps: float) -> ScheduleResult:
        """Emit ``packets`` frames to ``sink`` with timestamps from ``start_ts`` at mean rate ``pps``."""
        if packets < 0:
            raise ValueError("packets must be >= 0")
        if pps <= 0:
            raise ValueError("pps must be > 0")
        rng = self.ctx.rng
        slots = [self.new_session() for _ in range(self.concurrency)]
        kinds = [k for k, _ in slots]
        gens = [g for _, g in slots]
        fresh = [True] * len(gens)  # slot's session has not emitted yet
        nk = len(MIX)
        sessions = [0] * nk
        kind_packets = [0] * nk
        rand, expo = rng.random, rng.expovariate
        n_slots = len(gens)
        t = start_ts
        count = 0
        nbytes = 0
        first_ts = 0.0
        while count < packets:
            # int(random() * n) instead of randrange(): same uniform choice, a third of the cost.
            i = int(rand() * n_slots)
            try:
                frame = next(gens[i])
            except StopIteration:
                kinds[i], gens[i] = self.new_session()
                fresh[i] = True
                continue
            k = kinds[i]
            if fresh[i]:
                fresh[i] = False
                sessions[k] += 1
            t += expo(pps)
            if not count:
                first_ts = t
            sink(t, frame)
            count += 1
            nbytes += len(frame)
            kind_packets[k] += 1
        names = [name for name, _, _ in MIX]
        return ScheduleResult(
            packets=count,
            bytes=nbytes,
            first_ts=first_ts,
            last_ts=t if count else 0.0,
            sessions=dict(zip(names, sessions, strict=True)),
            packets_by_kind=dict(zip(names, kind_packets, strict=True)),
        )
