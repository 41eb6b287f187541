"""`GET /metrics`: the collector's counters in the Prometheus text format.

What: the ingest stage's counters (`collector.ingest.counters.IngestCounters`) and, for a
store that indexes keys after the commit (`collector.storage_features.IndexBacklog`:
SQLite), the bytes of keys not yet in its index (a gauge; 0 once the index caught up).
No authentication: nothing here names a unit, an agent or a record.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from collector.app_keys import INDEX_BACKLOG, INGEST_COUNTERS


async def metrics(request: web.Request) -> web.Response:
    lines = request.app[INGEST_COUNTERS].prometheus()
    backlog = request.app.get(INDEX_BACKLOG)
    if backlog is not None:  # SQLite: keys stored but not yet in the files' key index
        lines += ["# TYPE edgeaudit_storage_unindexed_key_bytes gauge",
                  f"edgeaudit_storage_unindexed_key_bytes {backlog.unindexed_bytes()}"]
    text = "\n".join(lines) + "\n"
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


METRICS_ROUTES: Final = (web.get("/metrics", metrics),)
