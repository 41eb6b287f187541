"""Public entry point: :func:`generate` writes a synthetic gateway capture.

Design: wiring only — seed one ``random.Random``, build the shared content
(corpora, domains), the clients and the frame builder from it in a fixed
order, then let the :class:`~agent.synth.scheduler.Scheduler` stream frames
into a :class:`~agent.synth.pcap.PcapWriter`. Because every random draw comes
from that one RNG in a fixed order, the same ``(packets, seed, concurrency,
pps)`` always gives a byte-identical file.

The traffic mix and packet shapes follow ``../shared/tools/gen_edge_pcap.py``
(the tool the benchmarks were specified against) so results are comparable;
this package is self-contained because users do not have ``../shared``.
Cost: ~2 s to build the corpora, then a few microseconds per packet (see
``bench/README.md``); memory is dominated by the 22 MiB of corpora and the
largest in-flight response body (at most 8 MiB each).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.synth.content import Content
from agent.synth.frames import FrameBuilder
from agent.synth.pcap import PcapWriter
from agent.synth.scheduler import Scheduler, make_clients
from agent.synth.sessions import SessionContext

DEFAULT_START_TS = 1719820800.0  # 2024-07-01 08:00:00 UTC
DEFAULT_PPS = 100_000.0
DEFAULT_CONCURRENCY = 400


@dataclass
class GenStats:
    """What :func:`generate` wrote."""

    packets: int
    bytes: int  # sum of frame lengths (excluding pcap headers)
    sessions: dict[str, int]  # sessions with at least one packet in the capture, by kind
    packets_by_kind: dict[str, int]
    first_ts: float
    last_ts: float
    seed: int
    concurrency: int
    # Wall time of the run: useful to report, but not part of the capture's identity.
    elapsed_s: float = field(default=0.0, compare=False)

    @property
    def duration_s(self) -> float:
        """Capture time span (packet timestamps), not generation time."""
        return self.last_ts - self.first_ts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_s"] = self.duration_s
        return d

    def summary(self) -> str:
        avg = self.bytes / self.packets if self.packets else 0.0
        rate = self.packets / self.elapsed_s if self.elapsed_s else 0.0
        kinds = ", ".join(f"{k}={v}" for k, v in self.sessions.items())
        return (
            f"{self.packets} packets, {self.bytes} bytes, avg {avg:.0f} B/pkt, "
            f"capture span {self.duration_s:.1f}s, sessions: {kinds}; "
            f"generated in {self.elapsed_s:.1f}s ({rate:,.0f} pkt/s)"
        )


def generate(
    out_path: str | Path,
    packets: int,
    seed: int = 1,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    pps: float = DEFAULT_PPS,
    start_ts: float = DEFAULT_START_TS,
) -> GenStats:
    """Write a pcap of exactly ``packets`` Ethernet frames of interleaved gateway sessions.

    ``concurrency`` is the number of sessions in flight at any time; ``pps`` the
    mean packet rate used for timestamps. Raises ``ValueError`` on a negative
    packet count or non-positive concurrency/rate.
    """
    # Validate before the ~1 s corpus build so bad arguments fail fast.
    if packets < 0:
        raise ValueError("packets must be >= 0")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if pps <= 0:
        raise ValueError("pps must be > 0")
    started = time.perf_counter()
    rng = random.Random(seed)
    content = Content(rng)
    builder = FrameBuilder(rng.randrange(65536))
    clients = make_clients(rng)
    scheduler = Scheduler(SessionContext(rng, content, builder), clients, concurrency)
    with PcapWriter(out_path) as writer:
        result = scheduler.run(packets, writer.write, start_ts, pps)
    return GenStats(
        packets=result.packets,
        bytes=result.bytes,
        sessions=result.sessions,
        packets_by_kind=result.packets_by_kind,
        first_ts=result.first_ts,
        last_ts=result.last_ts,
        seed=seed,
        concurrency=concurrency,
        elapsed_s=time.perf_counter() - started,
    )
