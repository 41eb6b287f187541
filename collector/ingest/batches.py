"""`POST /api/v1/batches`: authenticate the agent, validate the batch, commit it, then acknowledge.

What (DESIGN.md "The collector", issue 5 "Ingest"):
1. The agent is who its bearer token says (`Accounts.agent_for_token`); the `agent_id` and
   `unit_id` inside the payload are never trusted (a payload naming another agent is
   refused: an uploader bug or an attempt to write someone else's records).
2. The body must be `Content-Encoding: zstd` msgpack in the `wire` envelope, within the
   size limits, every record valid (`wire.envelope.decode_batch`); anything else is a 4xx
   with a JSON error and nothing is stored. Its records' times must lie within the
   collector's limits (`collector.ingest.limits`: not more than a day ahead of its clock,
   over no more days than the agent's backup period), else 422.
3. The records are committed (`Storage.insert_batch`, idempotent on (agent, batch_seq) with
   the batch's digest; `insert_prepared` with granules packed by the decoder for a store that
   has it, `collector.storage_features.PreparedStorage`) in a
   worker thread, and only then does the answer say `{"accepted": N, "duplicate": b}`. Other
   records under a stored (or in-flight) batch number get 409 (`BatchConflict`), nothing
   stored: answering them "duplicate" would lose them.
   Decoding (2) runs in worker processes or a thread (`collector.ingest.decoding`), so the
   event loop only moves bytes.

Every stage counts what came in and what was refused and why (`IngestCounters`, shown on
`/metrics`). After the commit, the units registry learns the agent is alive
(`Units.seen`, when the collector has one) and the alerts of a new batch go to the
operators' live feed (`LiveAlerts.publish`). The handler is `INGEST_ROUTES` (added by
`collector.app`); the accounts, storage, decoder, counters, registry and feed come from the
application (`collector.app_keys`).

Limits: `MAX_BODY_BYTES` is read at most (checked against Content-Length before reading
and again while reading); the envelope's own limits (`wire.limits`) apply after that.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Final

from aiohttp import web

from collector.access import JsonError, agent_of
from collector.app_keys import (
    ACCOUNTS,
    DECODER,
    INGEST_COUNTERS,
    LIVE_ALERTS,
    PREPARED_STORAGE,
    STORAGE,
    UNITS,
)
from collector.ingest.counters import IngestCounters
from collector.ingest.decoding import Decoded, DecoderUnavailable
from collector.ingest.limits import IngestLimits, check_times
from collector.storage.base import BatchConflict, StorageUnavailable
from wire.errors import ValidationError
from wire.limits import MAX_BATCH_COMPRESSED

MAX_BODY_BYTES: Final = MAX_BATCH_COMPRESSED
#: The application's time limits on a batch's records (``collector.app.create_app`` sets
#: them); here rather than in ``collector.app_keys``: this handler alone reads them.
INGEST_LIMITS: Final = web.AppKey[IngestLimits]("ingest_limits")


def _ts_range(batch: Decoded) -> tuple[float, float] | None:
    """The earliest and latest ``ts`` of the batch's records (None: it has none)."""
    if batch.granules is not None:
        if not batch.granules:
            return None
        return min(g.ts_min for g in batch.granules), max(g.ts_max for g in batch.granules)
    stamps = [float(r["ts"]) for r in batch.records or ()]
    return (min(stamps), max(stamps)) if stamps else None


def _refused(counters: IngestCounters, status: int, reason: str, detail: str,
             challenge: str | None = None) -> JsonError:
    """The error to raise, counted under its reason."""
    counters.refused[reason] += 1
    return JsonError(status, reason, detail[:500], challenge=challenge)


async def receive_batch(request: web.Request) -> web.Response:
    """Steps 1-3 of the module doc. The agent is checked here, not by ``requires_agent``: a
    refused token is counted like every other refusal."""
    app = request.app
    counters = app[INGEST_COUNTERS]
    counters.batches += 1
    agent = agent_of(app[ACCOUNTS], request)
    if agent is None:
        raise _refused(counters, 401, "unauthenticated",
                       "a valid agent token is required (Authorization: Bearer)", challenge="Bearer")
    if request.headers.get("Content-Encoding", "").strip().lower() != "zstd":
        raise _refused(counters, 415, "unsupported_encoding",
                       "the body must be sent with Content-Encoding: zstd")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _refused(counters, 413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _refused(counters, 413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    loop = asyncio.get_running_loop()
    try:
        # Off the event loop, like the commit: decompressing, parsing and validating 5,000
        # records takes tens of milliseconds, which would stall every other request (other
        # agents' uploads, queries) if it ran on the event loop. The decoder packs granules
        # only for a store that takes them (PREPARED_STORAGE is set).
        batch = await app[DECODER].decode(bytes(body))
    except ValidationError as e:
        raise _refused(counters, 400, "invalid_batch", str(e)) from None
    except DecoderUnavailable as e:
        raise _refused(counters, 503, "decoder_unavailable", str(e)) from None
    if batch.agent_id != agent.name or batch.unit_id != agent.unit:
        raise _refused(counters, 403, "wrong_agent", "the batch names another agent or unit than its token")
    counters.records += batch.count
    span = _ts_range(batch)
    refusal = None if span is None else check_times(app[INGEST_LIMITS], *span, time.time())
    if refusal is not None:
        raise _refused(counters, 422, *refusal)
    prepared = app.get(PREPARED_STORAGE)
    try:
        if batch.granules is not None and prepared is not None:
            result = await loop.run_in_executor(
                None, prepared.insert_prepared, agent.name, agent.unit, batch.batch_seq, batch.granules,
                batch.count, batch.digest)
        else:
            assert batch.records is not None
            result = await loop.run_in_executor(
                None, app[STORAGE].insert_batch, agent.name, agent.unit, batch.batch_seq, batch.records,
                batch.digest)
    except BatchConflict as e:  # the agent reused a batch number: these records are not stored
        raise _refused(counters, 409, "batch_seq_reused", str(e)) from None
    except (OSError, sqlite3.Error, StorageUnavailable) as e:  # not committed (a full disk, a
        # ClickHouse refusal): the agent keeps the batch and retries later
        raise _refused(counters, 503, "storage_unavailable", f"could not commit: {e}") from None
    units = app.get(UNITS)
    if units is not None:  # the agent is alive (units' status): after the commit, not before
        await loop.run_in_executor(None, units.seen, agent.name, agent.unit,
                                   0 if result.duplicate else result.accepted,
                                   {} if result.duplicate else batch.summary,
                                   None if result.duplicate else batch.stats)
    if batch.alerts and not result.duplicate:
        app[LIVE_ALERTS].publish(agent.name, agent.unit, batch.alerts)
    if result.duplicate:
        counters.duplicate_batches += 1
    else:
        counters.stored_batches += 1
        counters.stored_records += result.accepted
    return web.json_response({"accepted": result.accepted, "duplicate": result.duplicate})


INGEST_ROUTES: Final = (web.post("/api/v1/batches", receive_batch),)
