"""Capture worker processes: N AF_PACKET rings in one fanout group, one consumer each.

What
    ``WorkerPool(config, factory, workers=N).start()`` forks N processes.  Each opens
    its own TPACKET_V3 ring on the interface (``AfPacketSource``), joins the pool's
    ``PACKET_FANOUT_HASH`` group (with ``PACKET_FANOUT_FLAG_DEFRAG``), builds its
    consumer with ``factory(index, source)`` (typically a ``Pipeline`` writing to its
    own sink) and feeds it one batch per retired block.  ``stop()`` sends SIGTERM: each
    worker takes the blocks already in its ring, calls ``consumer.finish()`` (flushing
    every open flow), reads the kernel's counters a last time and exits 0.
    ``counters()`` sums the workers' capture counters (packets, bytes, kernel_drops...)
    from shared memory, for the parent's ``stats`` records and ``/metrics``.

Why
    One Python process runs on one core; a gateway's link needs more than one core's
    worth of decoding at line rate (DESIGN.md, data path 1).  The kernel's flow hash
    puts both directions of a connection in the same socket (the hash is symmetric
    over the addresses and ports), and DEFRAG reassembles IP fragments before hashing
    so a fragmented datagram is not split between workers: each worker's flow table
    sees whole flows and needs no coordination.  Processes are forked *after* the
    parent loaded and compiled the ruleset, so the 10k-keyword automaton is built once
    and shared copy-on-write.

How
    * Fork start method (the factory may be a closure; nothing is pickled).  A worker
      signals ``ready`` once its socket is in the group; ``start()`` waits for all of
      them (or a worker's failure, whose reason is reported) so traffic sent after
      ``start()`` returns is spread over every worker.
    * SIGTERM/SIGINT in a worker set a flag and write to a wake-up pipe
      (``signal.set_wakeup_fd``) that the worker polls together with the ring, so it
      reacts at once even when the interface is silent; a batch being processed is
      finished first.
    * Counters: a shared ``multiprocessing.Array`` of 64-bit integers, one row per
      worker, written by its worker after every block and at every stats interval
      (no lock: one writer per row; a reader may see a row mid-update, off by one
      block at most).  The kernel's statistics are read on every idle poll, every
      ``stats_interval`` seconds, and at exit.
    * A consumer may have ``stats(counters: dict[str, int])``: called every
      ``stats_interval`` seconds with the worker's capture counters (for the
      pipeline's periodic ``stats`` record, e.g. its ``kernel_drops``).

Limits
    * A worker that dies is not restarted here: its share of the hash is moved to the
      other members by the kernel (flows in flight change worker, and their records
      are split); ``failed()`` tells the parent, which decides.
    * Each worker has its own ring: memory = workers x block_size x block_nr.
    * Linux only, root or CAP_NET_RAW.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import SynchronizedArray
from typing import Any, Final, Protocol

from agent.capture.afpacket import (
    DEFAULT_BLOCK_NR,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_RETIRE_MS,
    PACKET_FANOUT_FLAG_DEFRAG,
    AfPacketSource,
    default_fanout_group,
)
from agent.capture.bpf import BpfProgram
from agent.capture.orphan import end_with_parent

__all__ = ["COUNTER_KEYS", "CaptureConfig", "Consumer", "WorkerPool", "run_worker"]

COUNTER_KEYS: Final = ("packets", "bytes", "blocks", "snapped", "vlan_restored",
                       "kernel_packets", "kernel_drops", "kernel_freeze_q")
START_TIMEOUT_S: Final = 30.0  # a worker must open its ring within this (then `start` fails)
STOP_TIMEOUT_S: Final = 60.0  # a worker flushing its flows gets this long before SIGKILL
IDLE_POLL_MS: Final = 1000  # the longest a silent worker sleeps without reading kernel counters


class Consumer(Protocol):
    """What a worker feeds: `agent.pipeline.Pipeline` has this shape."""

    def feed(self, batch: list[tuple[float, int, bytes]], nbytes: int | None = None) -> None: ...

    def finish(self) -> None: ...


ConsumerFactory = Callable[[int, AfPacketSource], Consumer]


@dataclass(frozen=True)
class CaptureConfig:
    """Where and how each worker captures (see AfPacketSource for the meaning of each)."""

    ifname: str
    block_size: int = DEFAULT_BLOCK_SIZE
    block_nr: int = DEFAULT_BLOCK_NR
    retire_ms: int = DEFAULT_RETIRE_MS
    bpf: BpfProgram | None = None
    promisc: bool = False
    snaplen: int = 0
    fanout_group: int = field(default_factory=default_fanout_group)
    fanout_flags: int = PACKET_FANOUT_FLAG_DEFRAG
    stats_interval: float = 10.0

    def open(self, fanout: bool = True) -> AfPacketSource:
        return AfPacketSource(self.ifname, block_size=self.block_size, block_nr=self.block_nr,
                              retire_ms=self.retire_ms, bpf=self.bpf, promisc=self.promisc,
                              snaplen=self.snaplen, fanout_group=self.fanout_group if fanout else None,
                              fanout_flags=self.fanout_flags)


def _publish(row: Any, base: int, counters: dict[str, int]) -> None:
    for i, k in enumerate(COUNTER_KEYS):
        row[base + i] = counters[k]


def run_worker(source: AfPacketSource, consumer: Consumer, *, stop: Callable[[], bool],
               wake_fd: int | None = None, stats_interval: float = 10.0,
               on_block: Callable[[dict[str, int]], None] | None = None) -> None:
    """Feed `consumer` from `source` until `stop()`; then drain the ring and `finish()`.

    `wake_fd`: a descriptor that becomes readable when `stop()` turns true (a signal
    wake-up pipe), polled together with the ring. `on_block(counters)` runs after
    every block and every idle poll (the pool publishes counters with it).
    """
    poller = select.poll()
    poller.register(source.fileno(), select.POLLIN | select.POLLERR)
    if wake_fd is not None:
        poller.register(wake_fd, select.POLLIN)
    stats = getattr(consumer, "stats", None)
    next_stats = time.monotonic() + stats_interval
    read = source.read_block
    feed = consumer.feed
    counters = source.counters
    while not stop():
        before = counters["bytes"]
        batch = read()
        if batch is not None:
            feed(batch, counters["bytes"] - before)
        else:
            timeout = min(IDLE_POLL_MS, max(0, int((next_stats - time.monotonic()) * 1000)))
            for fd, _ in poller.poll(timeout):
                if fd == wake_fd:
                    os.read(fd, 4096)
            if not source.ready():
                source.read_kernel_stats()
        if on_block is not None:
            on_block(counters)
        now = time.monotonic()
        if now >= next_stats:
            next_stats = now + stats_interval
            source.read_kernel_stats()
            if stats is not None:
                stats(dict(counters))
    # flush: what the kernel already handed over, then every open flow
    for batch in source.drain():
        consumer.feed(batch)
    consumer.finish()
    source.read_kernel_stats()
    if on_block is not None:
        on_block(counters)


def _worker_entry(index: int, config: CaptureConfig, factory: ConsumerFactory, shared: Any,
                  ready: Any, failed: Any, errors: Any, parent: int) -> None:
    stopping = [False]

    def on_signal(signum: int, frame: object) -> None:
        stopping[0] = True

    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    os.set_blocking(rfd, False)
    signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    end_with_parent(parent)  # a killed agent's workers stop too, flushing their flows
    base = index * len(COUNTER_KEYS)
    try:
        with config.open() as source:
            consumer = factory(index, source)
            ready.release()
            run_worker(source, consumer, stop=lambda: stopping[0], wake_fd=rfd,
                       stats_interval=config.stats_interval,
                       on_block=lambda c: _publish(shared, base, c))
    except BaseException as e:
        failed[index] = 1
        errors.put((index, f"{type(e).__name__}: {e}", traceback.format_exc()))
        ready.release()
        raise SystemExit(1) from e
    raise SystemExit(0)


class WorkerPool:
    """N capture worker processes sharing one interface through a fanout group."""

    def __init__(self, config: CaptureConfig, factory: ConsumerFactory, workers: int | None = None) -> None:
        self.config = config
        self.factory = factory
        self.n = workers if workers is not None else (os.cpu_count() or 1)
        if self.n < 1:
            raise ValueError(f"workers: {self.n}, must be at least 1")
        self._ctx = mp.get_context("fork")
        self._shared: SynchronizedArray[int] | Any = self._ctx.Array("q", self.n * len(COUNTER_KEYS),
                                                                     lock=False)
        self._ready = self._ctx.Semaphore(0)
        self._failed: Any = self._ctx.Array("b", self.n, lock=False)  # 1: the worker raised
        self._errors = self._ctx.Queue()
        self.procs: list[Any] = []
        self.errors: list[tuple[int, str, str]] = []

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Fork the workers and wait until every one has joined the fanout group.

        Raises RuntimeError (with the first worker's reason) if one fails to open its ring.
        """
        for i in range(self.n):
            p = self._ctx.Process(target=_worker_entry, name=f"edgeaudit-capture-{i}",
                                  args=(i, self.config, self.factory, self._shared, self._ready,
                                        self._failed, self._errors, os.getpid()), daemon=False)
            p.start()
            self.procs.append(p)
        deadline = time.monotonic() + timeout
        for _ in range(self.n):
            if not self._ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self.stop()
                raise RuntimeError(f"capture workers on {self.config.ifname}: not ready after {timeout} s")
        if any(self._failed):
            self.stop()
            reason = self.errors[0] if self.errors else (-1, "exited before it was ready", "")
            raise RuntimeError(f"capture worker {reason[0]} on {self.config.ifname}: {reason[1]}")

    def _collect_errors(self) -> None:
        # every worker that failed put one reason on the queue before exiting
        want = sum(1 for f in self._failed if f)
        while len(self.errors) < want:
            try:
                self.errors.append(self._errors.get(timeout=5.0))
            except Exception:  # queue.Empty: a worker killed before it could say why
                return

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def counters(self) -> dict[str, int]:
        """The workers' capture counters, summed (kernel_drops included)."""
        k = len(COUNTER_KEYS)
        shared = self._shared
        return {key: sum(shared[w * k + i] for w in range(self.n)) for i, key in enumerate(COUNTER_KEYS)}

    def worker_counters(self) -> list[dict[str, int]]:
        k = len(COUNTER_KEYS)
        return [{key: self._shared[w * k + i] for i, key in enumerate(COUNTER_KEYS)} for w in range(self.n)]

    def failed(self) -> list[int]:
        """Indexes of workers that exited with a non-zero status."""
        return [i for i, p in enumerate(self.procs) if p.exitcode not in (None, 0)]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[int | None]:
        """SIGTERM every worker, wait for them to flush and exit (SIGKILL after `timeout`); exit codes."""
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> list[int | None]:
        deadline = None if timeout is None else time.monotonic() + timeout
        for p in self.procs:
            p.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.kill()
                p.join()
        self._collect_errors()
        return [p.exitcode for p in self.procs]
