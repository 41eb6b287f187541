"""`GET /metrics`: the collector's counters in the Prometheus text format.

What: the ingest stage's counters (`collector.ingest.counters.IngestCounters`) and, for a
store that indexes keys after the commit (`collector.storage_features.IndexBacklog`:
SQLite), the bytes of keys not yet in its index (a gauge; 0 once the index caught up); and
the login defences (`collector.auth.throttle`, `collector.auth.password_pool`): attempts
refused before any password check, keys the throttle forgot for room, refusals not written
to the audit log (counted instead), checks refused because the password pool was full.
No authentication: nothing here names a unit, an agent, a user or a record.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from collector.app_keys import INDEX_BACKLOG, INGEST_COUNTERS, LOGIN_THROTTLE, PASSWORD_POOL, REFUSALS


async def metrics(request: web.Request) -> web.Response:
    lines = request.app[INGEST_COUNTERS].prometheus()
    backlog = request.app.get(INDEX_BACKLOG)
    if backlog is not None:  # SQLite: keys stored but not yet in the files' key index
        lines += ["# TYPE edgeaudit_storage_unindexed_key_bytes gauge",
                  f"edgeaudit_storage_unindexed_key_bytes {backlog.unindexed_bytes()}"]
    app = request.app
    if LOGIN_THROTTLE in app:
        throttle = app[LOGIN_THROTTLE]
        evicted = throttle.accounts.evicted + throttle.addresses.evicted
        lines += ["# TYPE edgeaudit_login_throttled_total counter",
                  f"edgeaudit_login_throttled_total {throttle.refused}",
                  "# TYPE edgeaudit_login_throttle_evicted_total counter",
                  f"edgeaudit_login_throttle_evicted_total {evicted}",
                  "# TYPE edgeaudit_audit_refusals_unwritten_total counter",
                  f"edgeaudit_audit_refusals_unwritten_total {app[REFUSALS].unwritten}",
                  "# TYPE edgeaudit_password_pool_busy_total counter",
                  f"edgeaudit_password_pool_busy_total {app[PASSWORD_POOL].busy}"]
    text = "\n".join(lines) + "\n"
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


METRICS_ROUTES: Final = (web.get("/metrics", metrics),)
