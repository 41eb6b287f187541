"""The live agent's uploader: drains the durable spool to the collector, exactly once.

What: ``SpoolDrain(spool, client).run(stop)`` loops until ``stop`` is set: take the next
batch from the spool (``Spool.next_batch``: a few thousand records, or fewer once the oldest
has waited ``linger_s`` = 1 s), send it as one ``wire`` envelope (msgpack + zstd) under its
``batch_seq``, retry until the collector acknowledges it, then ``Spool.mark_sent`` it.
``drain()`` sends everything already spooled (shutdown, tests).

Why it is exactly once (DESIGN step 9): the batch number is committed to the spool (fsynced)
before the first send, and a batch stays "the next one" until its acknowledgement is
committed. A crash of the agent at any point therefore resends the same records under the
same number; the collector answers only after its own commit and stores an
``(agent, batch_seq)`` once, acknowledging a resend as a duplicate. A crash of the collector
before its commit loses nothing the agent has not still got; after its commit, the resend is
the duplicate. Batches go one at a time and in order, so "sent" is a prefix of the spool.

Retries: no answer, a timeout, 408, 429 or 5xx → exponential backoff with full jitter
(``backoff_delay``, capped at ``backoff_cap_s``), forever: records are never given up on.
A refusal that is not about the batch (401 token refused, 404/405 wrong URL, 407 proxy:
``client.NOT_ABOUT_THE_BATCH``; any 4xx but 413 that is not the collector's JSON answer: a
proxy in the way) would refuse every batch alike: it is logged, counted (``refused``,
``last_error``) and retried every ``refused_retry_s``, so the records stay spooled (and
visible in ``unsent_records``) until an operator fixes the cause.

Refused for good (``client.Refused.permanent``): any other 4xx (the collector's 400
invalid_batch, 409, 413, 415, 422, ...) is about this batch, and resending it cannot change
the answer; waiting on it would hold every later record
behind it. The batch moves to the spool's quarantine (``Spool.quarantine``: one transaction,
kept with the status, error, detail and time; see ``agent.spool.quarantine`` for its bound
and for requeueing it under a new ``batch_seq``), is counted (``quarantined``,
``quarantined_records``) and logged as an error, and the next batch goes out at once. A 403
first makes the drain ask again who its token belongs to (``GET /api/v1/agent``): if the
collector now knows the agent by another name or unit, the batch is sent again under that
identity, and only a 403 with an unchanged identity quarantines it. A batch that had a try
without an answer before it was refused is quarantined as ``maybe_stored``.

The agent's identity is asked lazily and retried like a batch, so the drain starts even
while the collector is down.

The body is built without decoding the records: the spool keeps each record as its msgpack
encoding (validated when spooled), and the envelope's msgpack map is written around their
concatenation (``build_body``), which is byte-for-byte what ``wire.envelope.encode_batch``
would produce for the same values.

Also every ``expire_every_s`` it asks the spool to delete sent records past their retention.

Limits: one batch in flight (the collector's commit, not the network, is the bottleneck on
one agent); ``batch_records`` ≤ ``wire.limits.MAX_BATCH_RECORDS``; ``batch_bytes`` keeps a
body under the envelope's size limits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgpack
import zstandard

from agent.spool.quarantine import Refusal
from agent.spool.store import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_RECORDS, Batch, Spool
from agent.uploader.client import (
    BACKOFF_CAP_S,
    CollectorClient,
    Refused,
    TransientError,
    UploadError,
    backoff_delay,
)
from wire.envelope import DEFAULT_LEVEL
from wire.version import SCHEMA_VERSION

log = logging.getLogger("edgeaudit.uploader")

#: A batch smaller than a full one waits at most this long for more records (seconds).
DEFAULT_LINGER_S: Final = 1.0
#: How often an idle drain looks at the spool for new records (seconds).
DEFAULT_POLL_S: Final = 0.05
#: After a refusal that is not about the batch (401, 404, 405, 407), it is tried again this often (s).
REFUSED_RETRY_S: Final = 60.0
#: Sent records past retention are deleted this often (seconds).
EXPIRE_EVERY_S: Final = 3600.0


def build_body(agent: str, unit: str, batch_seq: int, bodies: Sequence[bytes], created: float,
               level: int = DEFAULT_LEVEL) -> bytes:
    """The zstd-compressed envelope around records that are already msgpack-encoded."""
    pack = msgpack.Packer(use_bin_type=True).pack
    head = b"".join((
        b"\x86",  # fixmap of the envelope's six keys
        pack("v"), pack(SCHEMA_VERSION),
        pack("agent_id"), pack(agent),
        pack("unit_id"), pack(unit),
        pack("batch_seq"), pack(batch_seq),
        pack("created"), pack(float(created)),
        pack("records"), msgpack.Packer().pack_array_header(len(bodies)),
    ))
    return bytes(zstandard.ZstdCompressor(level=level).compress(head + b"".join(bodies)))


class SpoolDrain:
    """Sends the spool's batches to the collector until stopped (see the module docstring)."""

    def __init__(self, spool: Spool, client: CollectorClient, *, batch_records: int = DEFAULT_BATCH_RECORDS,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, linger_s: float = DEFAULT_LINGER_S,
                 poll_s: float = DEFAULT_POLL_S, backoff_cap_s: float = BACKOFF_CAP_S,
                 refused_retry_s: float = REFUSED_RETRY_S, expire_every_s: float = EXPIRE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spool = spool
        self.client = client
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.linger_s = linger_s
        self.poll_s = poll_s
        self.backoff_cap_s = backoff_cap_s
        self.refused_retry_s = refused_retry_s
        self.expire_every_s = expire_every_s
        self.clock = clock
        self.identity: tuple[str, str] | None = None
        self.counters: dict[str, Any] = {"batches": 0, "records": 0, "duplicates": 0, "resent": 0,
                                         "retries": 0, "refused": 0, "quarantined": 0,
                                         "quarantined_records": 0, "last_error": None, "last_ack": None}
        self._down = False
        self._next_expire = clock()  # once at start, then every expire_every_s

    def run(self, stop: threading.Event) -> None:
        """Drain until ``stop`` is set; spool errors (``SpoolError``) propagate."""
        while not stop.is_set():
            if not self.step(stop) and not stop.is_set():
                stop.wait(self.poll_s)

    def drain(self, stop: threading.Event | None = None) -> None:
        """Send every record spooled so far, without waiting for batches to fill."""
        stop = stop or threading.Event()
        while not stop.is_set() and self.step(stop, force=True):
            pass

    def step(self, stop: threading.Event, force: bool = False) -> bool:
        """Send one batch if there is one due; False when there was none (or ``stop`` was set)."""
        if self.clock() >= self._next_expire:
            self._next_expire = self.clock() + self.expire_every_s
            n = self.spool.expire()
            if n:
                log.info("uploader: %d sent records past retention deleted from the spool", n)
        identity = self.identity or self._whoami(stop)
        if identity is None:
            return False
        batch = self.spool.next_batch(self.batch_records, self.batch_bytes, 0.0 if force else self.linger_s)
        if batch is None:
            return False
        if batch.resent:
            log.info("uploader: resending batch %d (%d records) not acknowledged before", batch.batch_seq,
                     len(batch.bodies))
        answer = self._send(identity, batch, stop)
        if answer is None:
            return False
        if isinstance(answer, Refusal):
            self._quarantine(batch, answer)
            return True
        self.spool.mark_sent(batch.batch_seq)
        self.counters["batches"] += 1
        self.counters["records"] += len(batch.bodies)
        self.counters["resent"] += batch.resent
        self.counters["duplicates"] += bool(answer.get("duplicate"))
        self.counters["last_ack"] = time.time()
        return True

    def _whoami(self, stop: threading.Event) -> tuple[str, str] | None:
        self.identity = self._retry(stop, "GET /api/v1/agent", self.client.whoami)
        return self.identity

    def _send(self, identity: tuple[str, str], batch: Batch,
              stop: threading.Event) -> dict[str, Any] | Refusal | None:
        """Send ``batch`` until the collector acknowledges it (its answer) or refuses it for good
        (the ``Refusal`` to quarantine it with); None if ``stop`` is set first."""
        what = f"batch {batch.batch_seq}"
        maybe_stored = batch.resent  # an earlier try may have been committed before its answer was lost
        rechecked = False
        body = build_body(identity[0], identity[1], batch.batch_seq, batch.bodies, batch.created)
        attempt = 0
        while not stop.is_set():
            try:
                answer = self.client.post_batch(body)
            except TransientError as e:
                maybe_stored = True
                delay = self._transient(e, attempt)
            except Refused as e:
                if not e.permanent:
                    delay = self._refused(e, what)
                elif e.status == 403 and not rechecked:
                    rechecked = True  # maybe renamed or moved to another unit since we asked
                    fresh = self._whoami(stop)
                    if fresh is None:
                        return None
                    if fresh == identity:
                        return Refusal(e.status, e.error, e.detail, maybe_stored)
                    log.warning("uploader: the collector now knows this agent as %s of unit %s "
                                "(was %s of %s)", fresh[0], fresh[1], identity[0], identity[1])
                    identity = fresh
                    body = build_body(identity[0], identity[1], batch.batch_seq, batch.bodies, batch.created)
                    continue  # at once: this is a new request, not a retry
                else:
                    return Refusal(e.status, e.error, e.detail, maybe_stored)
            except UploadError as e:  # not the collector we trust (TLS): the same for every batch
                delay = self._refused(e, what)
            else:
                self._up()
                return dict(answer)
            attempt += 1
            stop.wait(delay)
        return None

    def _quarantine(self, batch: Batch, refusal: Refusal) -> None:
        self.spool.quarantine(batch.batch_seq, refusal)
        self.counters["quarantined"] += 1
        self.counters["quarantined_records"] += len(batch.bodies)
        self.counters["last_error"] = (f"batch {batch.batch_seq}: {refusal.status} {refusal.error}: "
                                       f"{refusal.detail}")
        log.error("uploader: collector %s refused batch %d (%d records) for good: %d %s: %s; moved to the "
                  "spool's quarantine, the next batches go on (`edgeaudit-agent spool requeue %d` sends it "
                  "again once the cause is fixed)", self.client.url, batch.batch_seq, len(batch.bodies),
                  refusal.status, refusal.error, refusal.detail, batch.batch_seq)

    def _retry(self, stop: threading.Event, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` until it answers; None if ``stop`` is set first."""
        attempt = 0
        while not stop.is_set():
            try:
                result = fn()
            except TransientError as e:
                delay = self._transient(e, attempt)
            except UploadError as e:
                delay = self._refused(e, what)
            else:
                self._up()
                return result
            attempt += 1
            stop.wait(delay)
        return None

    def _transient(self, e: TransientError, attempt: int) -> float:
        """Count and log (once per outage) a try without an answer; the wait before the next."""
        self.counters["retries"] += 1
        self.counters["last_error"] = str(e)
        if not self._down:
            log.warning("uploader: collector %s not answering (%s); records stay spooled, retrying",
                        self.client.url, e)
            self._down = True
        return backoff_delay(attempt, cap=self.backoff_cap_s)

    def _refused(self, e: UploadError, what: str) -> float:
        """Count and log a refusal an operator must fix; the wait before trying again."""
        self.counters["refused"] += 1
        self.counters["last_error"] = str(e)
        log.error("uploader: collector %s refused %s: %s; records stay spooled, retrying in %gs",
                  self.client.url, what, e, self.refused_retry_s)
        return self.refused_retry_s

    def _up(self) -> None:
        if self._down:
            log.info("uploader: collector %s answers again", self.client.url)
            self._down = False
