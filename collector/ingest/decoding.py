"""Decoding uploaded batches off the event loop: in worker processes, or in threads.

What: ``Decoder.decode(body)`` turns an upload body into a ``Decoded`` batch (envelope
fields, record count, and either the records or, for a store that takes them, the packed
granules), or raises ``wire.errors.ValidationError`` with the reason to answer 400 with.

Why processes: decompressing, parsing, validating and packing a record costs ~14 µs of
Python, the store's own insert ~5 µs; in one process the GIL serialises all of it, which
capped ingest near 40k records/s on 2 cores. With ``workers`` processes (``serve
--decode-workers``, default the CPU count) the Python work runs beside the event loop and
the SQLite commits, and what crosses back is compact: the compressed granules and their
key sets (``collector.storage.granules``), not thousands of dicts. Stores without
``insert_prepared`` (ClickHouse takes the records themselves) decode in a thread: pickling
the records back would cost as much as decoding them.

Failure: a worker that dies (killed, out of memory) breaks the pool; the batch gets a
``DecoderUnavailable`` (the handler answers 503 and the agent resends it) and the next
batch starts a fresh pool.

Lifetime: the workers end with the collector, even a ``kill -9``'ed one. Each holds the read
end of a *lifeline* pipe whose only write end the collector keeps; a thread in the worker
waits on it and ends the worker at end of file, which the kernel delivers when the collector
dies, however it dies. (``PR_SET_PDEATHSIG``, the agent's way, would watch the wrong process:
a worker's parent is the multiprocessing fork server, and the fork server lives as long as any
worker holds its "alive" pipe.) With its workers gone the fork server sees that pipe close and
exits too, and the resource tracker after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from collector.storage.granules import Granule, prepare, type_summary
from wire.envelope import decode_batch_spans, records_digest
from wire.errors import ValidationError
from wire.validate import Batch

#: Worker processes by default: one per CPU (the event loop and SQLite mostly wait on them).
DEFAULT_WORKERS: Final = os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Decoded:
    """One valid batch: its envelope fields and its records, or their granules."""

    agent_id: str
    unit_id: str
    batch_seq: int
    count: int
    records: Sequence[dict[str, Any]] | None = None
    granules: Sequence[Granule] | None = None
    alerts: Sequence[dict[str, Any]] = ()  # its alert records (the UI's live feed)
    summary: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # type -> (count, latest ts)
    stats: dict[str, Any] | None = None  # its newest ``stats`` record (the agent's health)
    digest: bytes | None = None  # its content: SHA-256 of its records as sent (records_digest)


class DecoderUnavailable(Exception):
    """The worker pool broke while decoding this batch; nothing was decided about it."""


def decode_records(body: bytes) -> Decoded:
    """Decode and validate ``body`` (raises ``ValidationError``)."""
    batch, payload, offsets = decode_batch_spans(body)
    return _decoded(batch, digest=records_digest(batch["records"], payload, offsets))


#: The agent's mail policy's alert category (agent.filter.mail_policy), and the registry's name
#: for their count and latest (beside the record types: collector.units.compliance's mail measure).
MAIL_CATEGORY: Final = "mail"
MAIL_ALERTS: Final = "alert/mail"


def _decoded(batch: Batch, granules: Sequence[Granule] | None = None, digest: bytes | None = None) -> Decoded:
    """The batch's ``Decoded`` (its records, or its ``granules`` when packed) with what ingest
    reports after the commit: its per-type summary and, only when that names them, its alerts
    and newest stats record (most batches hold neither, and scanning thousands of records
    for them would cost every batch)."""
    records = batch["records"]
    summary = type_summary(records)
    alerts = [r for r in records if r.get("type") == "alert"] if "alert" in summary else []
    mail = [float(r["ts"]) for r in alerts if r.get("category") == MAIL_CATEGORY]
    if mail:  # the mail policy's alerts, counted apart for the compliance report's mail measure
        summary = {**summary, MAIL_ALERTS: (len(mail), max(mail))}
    stats = None
    if "stats" in summary:
        stats = max((r for r in records if r.get("type") == "stats"), key=lambda r: float(r["ts"]))
    return Decoded(batch["agent_id"], batch["unit_id"], batch["batch_seq"], len(records),
                   records=records if granules is None else None, granules=granules, alerts=alerts,
                   summary=summary, stats=stats, digest=digest)


def decode_packed(body: bytes) -> Decoded | str:
    """Decode, validate and pack ``body`` into granules; a refusal comes back as its message
    (a str pickles whatever the exception class)."""
    # The cycle collector is off meanwhile: a batch is thousands of fresh dicts and lists
    # without a cycle among them (reference counting frees them all), and collecting them
    # generation by generation cost ~15% of a worker's time (bench/bench_collector.py).
    collecting = gc.isenabled()
    gc.disable()
    try:
        batch, payload, offsets = decode_batch_spans(body)
        records = batch["records"]
        granules = prepare(records, payload, offsets)
    except (ValidationError, ValueError) as e:
        return str(e)
    finally:
        if collecting:
            gc.enable()
    return _decoded(batch, granules, records_digest(records, payload, offsets))


def _ready() -> bool:
    return True


#: How a worker ends when its collector is gone (nothing of its work can be delivered anyway).
ORPHAN_EXIT: Final = 70


def _end_with_collector(lifeline: Connection) -> None:
    """Worker initializer: end this process when ``lifeline``'s writer, the collector, is gone
    (module doc, "Lifetime")."""

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()  # nothing is ever sent: this returns by EOFError
        os._exit(ORPHAN_EXIT)  # no clean-up to do: results would go to nobody

    threading.Thread(target=watch, name="collector-lifeline", daemon=True).start()


class Decoder:
    """Decodes in ``workers`` processes when ``packed`` (granules wanted), else in threads."""

    def __init__(self, *, packed: bool, workers: int = DEFAULT_WORKERS) -> None:
        self._packed = packed and workers > 0
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lifeline: tuple[Connection, Connection] | None = None  # (workers' read end, our write end)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: the collector runs threads (the loop's executor, SQLite calls), and a
            # plain fork of a threaded process can inherit a held lock.
            context = multiprocessing.get_context("forkserver")
            # The fork server imports the decoder once; each worker is a fork of it.
            context.set_forkserver_preload(["collector.ingest.decoding"])
            # Workers start as the pool needs them, each taking a copy of the read end: we keep
            # it while the pool lives. Both ends are close-on-exec, and only the read end is
            # passed on (through the fork server), so this process holds the only writer.
            self._lifeline = context.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(self._workers, mp_context=context,
                                             initializer=_end_with_collector, initargs=(self._lifeline[0],))
        return self._pool

    def _cut_lifeline(self) -> None:
        """Close our ends: any worker of the last pool still alive ends."""
        if self._lifeline is not None:
            for end in self._lifeline:
                end.close()
            self._lifeline = None

    async def start(self) -> None:
        """Start the workers now (each imports the decoder, ~0.3 s of CPU) rather than under
        the first uploads."""
        if self._packed:
            loop = asyncio.get_running_loop()
            pool = self._executor()
            await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self._workers)))

    async def decode(self, body: bytes) -> Decoded:
        loop = asyncio.get_running_loop()
        if not self._packed:
            return await loop.run_in_executor(None, decode_records, body)
        pool = self._executor()
        try:
            result = await loop.run_in_executor(pool, decode_packed, body)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                self._cut_lifeline()
            raise DecoderUnavailable("a decoding worker died; send the batch again") from None
        if isinstance(result, str):
            raise ValidationError(result)
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._cut_lifeline()
