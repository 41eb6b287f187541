"""The collector's aiohttp application: the stores under typed keys, and the route tables.

What: `create_app(storage, accounts, ...)` returns the `web.Application` serving
- `POST /api/v1/batches` — agent uploads (`collector.ingest.batches`);
- `GET /api/v1/agent` — who an agent token belongs to (name, unit), for the uploader
  (`collector.ingest.whoami`);
- `GET /metrics` — every stage's counters in the Prometheus text format (`collector.metrics`);
and, with an audit log to write them to,
- `GET /api/v1/query/traceback`, `/records`, `/connection` — operators' queries, each audited
  before it is answered (`collector.query.handlers`);
- `GET /` — the operators' web UI, and its login session (`collector.web.routes`);
- `GET /api/v1/events` — alerts as they are stored, server-sent events (`collector.web.live`);
- `GET /api/v1/audit`, `/api/v1/users` — the audit log for auditors, user management for
  admins (`collector.web.admin`);
- with a bundle store, `PUT`/`GET /api/v1/rulesets/current`, `GET /api/v1/rulesets` — admins
  publish signed bundles, agents fetch them with an ETag (`collector.rules.publish`);
- with a units registry, `PUT /api/v1/units/self`, `GET /api/v1/units`, the compliance
  reports and the hourly statistics (`collector.units.routes`).

How: each of those modules holds module-level handlers and a short route table
(`..._ROUTES`); a handler takes what it needs from the application by a typed key
(`collector.app_keys`), which this factory sets. What only some storage backends can do is
asked here once (`collector.storage_features`) and set under its own key, or not at all.

Every answer under `/api/` carries `Cache-Control: no-store` (records, accounts and audit
entries must not stay in a browser's or a proxy's cache). Request bodies are read with each
endpoint's limits (`collector.http_limits`); a refused body is drained for at most
`LINGERING_S` before the connection closes. Password logins are throttled and hashed in
their own pool (`collector.access.check_password`).

Why a factory: tests and `edgeaudit-collector serve` build the same application on the
same stores; nothing global.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.app_keys import (
    ACCOUNTS,
    AUDIT_LOG,
    BUNDLES,
    DECODER,
    INDEX_BACKLOG,
    INGEST_COUNTERS,
    LIVE_ALERTS,
    LOGIN_THROTTLE,
    PASSWORD_POOL,
    PREPARED_STORAGE,
    REFUSALS,
    RETENTION_DAYS,
    RULESET_KEYS,
    STORAGE,
    UNITS,
)
from collector.auth.accounts import Accounts
from collector.auth.audit import AuditLog
from collector.auth.password_pool import PasswordPool
from collector.auth.throttle import LoginThrottle, RefusalLog
from collector.http_limits import MAX_INLINE_PARSE
from collector.ingest.batches import INGEST_LIMITS, INGEST_ROUTES
from collector.ingest.counters import IngestCounters
from collector.ingest.decoding import DEFAULT_WORKERS, Decoder
from collector.ingest.limits import DEFAULT_MAX_FUTURE_S, IngestLimits
from collector.ingest.whoami import AGENT_ROUTES
from collector.metrics import METRICS_ROUTES
from collector.query.handlers import QUERY_ROUTES
from collector.query.schema import SCHEMA_ROUTES
from collector.retention import DEFAULT_RETENTION_DAYS
from collector.rules.bundle_store import BundleStore
from collector.rules.publish import RULESET_ROUTES
from collector.storage.base import Storage
from collector.storage_features import IndexBacklog, PreparedStorage
from collector.units.registry import Units
from collector.units.routes import UNIT_ROUTES
from collector.web.admin import ADMIN_ROUTES
from collector.web.alert_hub import LiveAlerts
from collector.web.live import LIVE_ROUTES, close_streams
from collector.web.routes import UI_ROUTES

# How the application must be served: aiohttp would otherwise decompress a zstd body itself,
# unbounded, before the handler sees it; `wire.envelope` decompresses it with a hard limit.
AUTO_DECOMPRESS = False
# seconds a stopping collector gives open requests to finish (each answers only after its commit)
SHUTDOWN_TIMEOUT = 5.0
#: Seconds the rest of a refused body (413, 408) is read and discarded before the connection
#: closes, so a client still sending sees the answer instead of a reset (Apache lingers 2 s;
#: aiohttp's 10 s would let a slow client hold the connection five times longer).
LINGERING_S = 2.0
#: What ``request.read()`` would take: no handler calls it (each reads its body with its own
#: limit, ``collector.http_limits``, or streams it, the batches); this bounds one that would.
CLIENT_MAX_SIZE = MAX_INLINE_PARSE


async def start_decoder(app: web.Application) -> None:
    await app[DECODER].start()


async def close_decoder(app: web.Application) -> None:
    app[DECODER].close()


async def close_password_pool(app: web.Application) -> None:
    app[PASSWORD_POOL].close()


async def no_store(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: API answers, refusals included, are not to be cached."""
    if request.path.startswith("/api/"):
        response.headers["Cache-Control"] = "no-store"


def create_app(storage: Storage, accounts: Accounts, audit: AuditLog | None = None,
               rulesets: BundleStore | None = None,
               ruleset_keys: Sequence[Ed25519PublicKey] = (), units: Units | None = None,
               decode_workers: int = DEFAULT_WORKERS, retention_days: int = DEFAULT_RETENTION_DAYS,
               max_future_s: float = DEFAULT_MAX_FUTURE_S, max_batch_days: int | None = None
               ) -> web.Application:
    """The application; the query and ruleset endpoints exist only with an audit log to write
    them to (and a bundle store for the latter). Uploads are decoded in ``decode_workers``
    processes for a store that takes packed granules (0: in threads); a batch with a record
    more than ``max_future_s`` ahead, or spanning more than ``max_batch_days`` (default:
    ``retention_days``), is refused (``collector.ingest.limits``)."""
    app = web.Application(client_max_size=CLIENT_MAX_SIZE, handler_args={"lingering_time": LINGERING_S})
    app[STORAGE] = storage
    app[ACCOUNTS] = accounts
    app[RETENTION_DAYS] = retention_days
    app[INGEST_LIMITS] = IngestLimits(max_future_s, max_batch_days or retention_days)
    app[RULESET_KEYS] = ruleset_keys
    app[INGEST_COUNTERS] = IngestCounters()
    app[LIVE_ALERTS] = LiveAlerts()
    app[LOGIN_THROTTLE] = LoginThrottle()
    app[REFUSALS] = RefusalLog()
    app[PASSWORD_POOL] = PasswordPool()
    if isinstance(storage, PreparedStorage):
        app[PREPARED_STORAGE] = storage
    if isinstance(storage, IndexBacklog):
        app[INDEX_BACKLOG] = storage
    app[DECODER] = Decoder(packed=PREPARED_STORAGE in app, workers=decode_workers)
    if units is not None:
        app[UNITS] = units
    if rulesets is not None:
        app[BUNDLES] = rulesets
    app.on_startup.append(start_decoder)
    app.on_cleanup.append(close_decoder)
    app.on_cleanup.append(close_password_pool)
    app.on_response_prepare.append(no_store)
    app.add_routes([*INGEST_ROUTES, *METRICS_ROUTES, *AGENT_ROUTES])
    if audit is not None:
        app[AUDIT_LOG] = audit
        app.add_routes([*QUERY_ROUTES, *SCHEMA_ROUTES, *UI_ROUTES, *LIVE_ROUTES, *ADMIN_ROUTES])
        app.on_shutdown.append(close_streams)
        if rulesets is not None:
            app.add_routes(RULESET_ROUTES)
        if units is not None:
            app.add_routes(UNIT_ROUTES)
    return app
