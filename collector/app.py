"""The collector's aiohttp application: routes wired to the stores (DESIGN.md "The collector").

What: `create_app(storage, accounts)` returns the `web.Application` serving
- `POST /api/v1/batches` — agent uploads (`collector.ingest.batches`);
- `GET /api/v1/agent` — who an agent token belongs to (name, unit), for the uploader;
- `GET /api/v1/query/traceback`, `GET /api/v1/query/records` — operators' queries, each
  audited before it is answered (`collector.query.handlers`);
- `PUT`/`GET /api/v1/rulesets/current` — admins publish signed bundles, agents fetch them
  with an ETag (`collector.rules.publish`);
- `PUT /api/v1/units/self`, `GET /api/v1/units` — units' registration profiles and status;
- `GET /metrics` — every stage's counters in the Prometheus text format;
- `GET /` — the operators' web UI, and its login session (`collector.web.routes`);
- `GET /api/v1/events` — alerts as they are stored, server-sent events (`collector.web.live`);
- `GET /api/v1/audit`, `/api/v1/users` — the audit log for auditors, user management for
  admins (`collector.web.admin`).
Query, ruleset, unit and UI routes join here as they are built (issue 5 and later).

Why a factory: tests and `edgeaudit-collector serve` build the same application on the
same stores; nothing global.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.access import agent_of, json_error
from collector.auth.accounts import Accounts
from collector.auth.audit import AuditLog
from collector.ingest.batches import batches_handler
from collector.ingest.counters import IngestCounters
from collector.ingest.decoding import DEFAULT_WORKERS, Decoder
from collector.query.handlers import query_routes
from collector.retention import DEFAULT_RETENTION_DAYS
from collector.rules.bundle_store import BundleStore, etag
from collector.rules.publish import ruleset_routes
from collector.storage.base import Storage
from collector.storage_features import IndexBacklog, PreparedStorage
from collector.units.registry import Units
from collector.units.routes import unit_routes
from collector.web.admin import admin_routes
from collector.web.alert_hub import LiveAlerts
from collector.web.live import live_routes
from collector.web.routes import web_routes
from rulesets.bundle import MAX_BUNDLE_BYTES

COUNTERS_KEY = web.AppKey("ingest_counters", IngestCounters)
# How the application must be served: aiohttp would otherwise decompress a zstd body itself,
# unbounded, before the handler sees it; `wire.envelope` decompresses it with a hard limit.
AUTO_DECOMPRESS = False
# seconds a stopping collector gives open requests to finish (each answers only after its commit)
SHUTDOWN_TIMEOUT = 5.0


def create_app(storage: Storage, accounts: Accounts, audit: AuditLog | None = None,
               rulesets: BundleStore | None = None,
               ruleset_keys: Sequence[Ed25519PublicKey] = (), units: Units | None = None,
               decode_workers: int = DEFAULT_WORKERS, retention_days: int = DEFAULT_RETENTION_DAYS
               ) -> web.Application:
    """The application; the query and ruleset endpoints exist only with an audit log to write
    them to (and a bundle store for the latter). Uploads are decoded in ``decode_workers``
    processes for a store that takes packed granules (0: in threads)."""
    # the batch body is streamed and limited by its handler (a clear JSON error); read() is used
    # only for ruleset bundles, whose limit this is
    app = web.Application(client_max_size=MAX_BUNDLE_BYTES)
    counters = IngestCounters()
    app[COUNTERS_KEY] = counters
    prepared = storage if isinstance(storage, PreparedStorage) else None
    backlog = storage if isinstance(storage, IndexBacklog) else None
    decoder = Decoder(packed=prepared is not None, workers=decode_workers)

    async def start_decoder(app_: web.Application) -> None:
        await decoder.start()

    async def close_decoder(app_: web.Application) -> None:
        decoder.close()

    app.on_startup.append(start_decoder)
    app.on_cleanup.append(close_decoder)
    live = LiveAlerts()
    app.router.add_post("/api/v1/batches", batches_handler(accounts, storage, prepared, counters, decoder,
                                                          units.seen if units is not None else None,
                                                          live.publish))

    async def metrics(request: web.Request) -> web.Response:
        lines = counters.prometheus()
        if backlog is not None:  # SQLite: keys stored but not yet in the files' key index
            lines += ["# TYPE edgeaudit_storage_unindexed_key_bytes gauge",
                      f"edgeaudit_storage_unindexed_key_bytes {backlog.unindexed_bytes()}"]
        text = "\n".join(lines) + "\n"
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    app.router.add_get("/metrics", metrics)

    async def whoami(request: web.Request) -> web.Response:
        """An agent asks who its token makes it: the name and unit it must put in its batches."""
        agent = agent_of(accounts, request)
        if agent is None:
            return json_error(401, "unauthenticated", "a valid agent token is required", challenge="Bearer")
        return web.json_response({"agent": agent.name, "unit": agent.unit})

    app.router.add_get("/api/v1/agent", whoami)
    if audit is not None:
        query_routes(app, storage, accounts, audit)
        web_routes(app, accounts, audit)
        live_routes(app, live, accounts, audit)
        admin_routes(app, accounts, audit)
        if rulesets is not None:
            ruleset_routes(app, rulesets, accounts, audit, ruleset_keys,
                           units.ruleset_fetched if units is not None else None,
                           units.rulesets if units is not None else None)
        if units is not None:
            store = rulesets

            def current_ruleset() -> str | None:
                data = store.current() if store is not None else None
                return etag(data) if data is not None else None

            unit_routes(app, units, accounts, audit, retention_days, current_ruleset)
    return app
