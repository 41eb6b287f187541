"""Typed application keys: everything the collector's handlers take from the application.

``collector.app.create_app`` puts each store and setting under its key; a handler reads
``request.app[KEY]`` and gets it with its type (aiohttp's ``AppKey``), so handlers are plain
module-level functions and nothing is captured in closures or looked up by a string.

Optional parts are set only when this collector has them; read them with
``request.app.get(KEY)``, which is None when they are absent:
- ``UNITS`` (the units registry) and ``BUNDLES`` (the ruleset bundle store);
- ``PREPARED_STORAGE`` and ``INDEX_BACKLOG``: the storage again, set only when it has that
  method (``collector.storage_features``; SQLite has both, ClickHouse neither).
``AUDIT_LOG`` is set only with an audit log; the routes that need it (queries, the UI, admin,
live alerts, rulesets, units) are added only then, so they may read it with ``[]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.auth.accounts import Accounts
from collector.auth.audit import AuditLog
from collector.auth.password_pool import PasswordPool
from collector.auth.throttle import LoginThrottle, RefusalLog
from collector.ingest.counters import IngestCounters
from collector.ingest.decoding import Decoder
from collector.rules.bundle_store import BundleStore
from collector.storage.base import Storage
from collector.storage_features import IndexBacklog, PreparedStorage
from collector.units.registry import Units
from collector.web.alert_hub import LiveAlerts

ACCOUNTS: Final = web.AppKey[Accounts]("accounts")
STORAGE: Final = web.AppKey[Storage]("storage")
PREPARED_STORAGE: Final = web.AppKey[PreparedStorage]("prepared_storage")
INDEX_BACKLOG: Final = web.AppKey[IndexBacklog]("index_backlog")
DECODER: Final = web.AppKey[Decoder]("decoder")
INGEST_COUNTERS: Final = web.AppKey[IngestCounters]("ingest_counters")
LIVE_ALERTS: Final = web.AppKey[LiveAlerts]("live_alerts")
AUDIT_LOG: Final = web.AppKey[AuditLog]("audit_log")
#: Password logins: their throttle, the refusals written to the audit log, the KDF's own pool.
LOGIN_THROTTLE: Final = web.AppKey[LoginThrottle]("login_throttle")
REFUSALS: Final = web.AppKey[RefusalLog]("refusals")
PASSWORD_POOL: Final = web.AppKey[PasswordPool]("password_pool")
UNITS: Final = web.AppKey[Units]("units")
BUNDLES: Final = web.AppKey[BundleStore]("bundles")
#: The keys a published bundle must be signed with (``serve --ruleset-pubkey``); may be empty.
RULESET_KEYS: Final = web.AppKey[Sequence[Ed25519PublicKey]]("ruleset_keys")
#: Days records are kept (``serve --retention-days``): shown with the units and in compliance.
RETENTION_DAYS: Final = web.AppKey[int]("retention_days")
