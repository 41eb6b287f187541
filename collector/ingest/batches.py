"""`POST /api/v1/batches`: authenticate the agent, validate the batch, commit it, then acknowledge.

What (DESIGN.md "The collector", issue 5 "Ingest"):
1. The agent is who its bearer token says (`Accounts.agent_for_token`); the `agent_id` and
   `unit_id` inside the payload are never trusted (a payload naming another agent is
   refused: an uploader bug or an attempt to write someone else's records).
2. The body must be `Content-Encoding: zstd` msgpack in the `wire` envelope, within the
   size limits, every record valid (`wire.envelope.decode_batch`); anything else is a 4xx
   with a JSON error and nothing is stored.
3. The records are committed (`Storage.insert_batch`, idempotent on (agent, batch_seq);
   `insert_prepared` with granules packed by the decoder for a store that has it,
   `collector.storage_features.PreparedStorage`) in a
   worker thread, and only then does the answer say `{"accepted": N, "duplicate": b}`.
   Decoding (2) runs in worker processes or a thread (`collector.ingest.decoding`), so the
   event loop only moves bytes.

Every stage counts what came in and what was refused and why (`IngestCounters`, shown on
`/metrics`).

Limits: `MAX_BODY_BYTES` is read at most (checked against Content-Length before reading
and again while reading); the envelope's own limits (`wire.limits`) apply after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from aiohttp import web

from collector.access import agent_of, json_error
from collector.auth.accounts import Accounts
from collector.ingest.counters import IngestCounters
from collector.ingest.decoding import Decoder, DecoderUnavailable
from collector.storage.base import Storage
from collector.storage_features import PreparedStorage
from wire.errors import ValidationError
from wire.limits import MAX_BATCH_COMPRESSED

MAX_BODY_BYTES: Final = MAX_BATCH_COMPRESSED


def _error(status: int, reason: str, detail: str, counters: IngestCounters,
           challenge: str | None = None) -> web.Response:
    counters.refused[reason] += 1
    return json_error(status, reason, detail[:500], challenge=challenge)


#: Per record type of a batch: (records, latest ts).
Summary = Mapping[str, tuple[int, float]]


def batches_handler(tokens: Accounts, storage: Storage, prepared: PreparedStorage | None,
                    counters: IngestCounters, decoder: Decoder,
                    on_commit: Callable[[str, str, int, Summary, dict[str, Any] | None], None] | None = None,
                    on_alerts: Callable[[str, str, Sequence[dict[str, Any]]], None] | None = None,
                    ) -> Callable[[web.Request], Any]:
    """The aiohttp handler, bound to its account store, storage, decoder and counters.

    ``prepared`` is ``storage`` when it takes packed granules (else None), and ``decoder``
    must pack granules only then. After a
    commit, ``on_commit(agent, unit, new records, Summary, newest stats record)`` (0, {},
    None for a repeat) and, for a new batch
    holding ``alert`` records, ``on_alerts(agent, unit, alerts)`` (on the event loop)."""
    async def handle(request: web.Request) -> web.Response:
        counters.batches += 1
        agent = agent_of(tokens, request)
        if agent is None:
            return _error(401, "unauthenticated", "a valid agent token is required (Authorization: Bearer)",
                          counters, challenge="Bearer")
        if request.headers.get("Content-Encoding", "").strip().lower() != "zstd":
            return _error(415, "unsupported_encoding", "the body must be sent with Content-Encoding: zstd",
                          counters)
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes", counters)
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _error(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes", counters)
        loop = asyncio.get_running_loop()
        try:
            # Off the event loop, like the commit: decompressing, parsing and validating 5,000
            # records takes tens of milliseconds, which would stall every other request (other
            # agents' uploads, queries) if it ran on the event loop.
            batch = await decoder.decode(bytes(body))
        except ValidationError as e:
            return _error(400, "invalid_batch", str(e), counters)
        except DecoderUnavailable as e:
            return _error(503, "decoder_unavailable", str(e), counters)
        if batch.agent_id != agent.name or batch.unit_id != agent.unit:
            return _error(403, "wrong_agent", "the batch names another agent or unit than its token",
                          counters)
        counters.records += batch.count
        try:
            if batch.granules is not None and prepared is not None:
                result = await loop.run_in_executor(
                    None, prepared.insert_prepared, agent.name, agent.unit, batch.batch_seq, batch.granules,
                    batch.count)
            else:
                assert batch.records is not None
                result = await loop.run_in_executor(
                    None, storage.insert_batch, agent.name, agent.unit, batch.batch_seq, batch.records)
        except OSError as e:  # the store could not commit: the agent retries later
            return _error(503, "storage_unavailable", f"could not commit: {e}", counters)
        if on_commit is not None:  # the agent is alive (units' status): after the commit, not before
            await loop.run_in_executor(None, on_commit, agent.name, agent.unit,
                                       0 if result.duplicate else result.accepted,
                                       {} if result.duplicate else batch.summary,
                                       None if result.duplicate else batch.stats)
        if on_alerts is not None and batch.alerts and not result.duplicate:
            on_alerts(agent.name, agent.unit, batch.alerts)
        if result.duplicate:
            counters.duplicate_batches += 1
        else:
            counters.stored_batches += 1
            counters.stored_records += result.accepted
        return web.json_response({"accepted": result.accepted, "duplicate": result.duplicate})

    return handle
