"""Alerts as they arrive, to the operators' screens: server-sent events.

What: ``LiveAlerts`` (``collector.web.alert_hub``) is an in-process publish/subscribe hub.
Ingest calls ``publish(agent, unit, alerts)`` after a batch holding ``alert`` records is
committed (never before: what an operator sees is stored); ``events`` (``LIVE_ROUTES``)
serves ``GET /api/v1/events`` (operators and admins, the same authentication as every
query), a ``text/event-stream`` of ``event: alert`` messages whose data is the alert record
as stored (with ``_agent``/``_unit``), plus a comment every ``HEARTBEAT_S`` so proxies keep
the stream open and a closed one is noticed. Subscribing is written to the audit log (alerts
carry addresses and accounts). The hub is the application's ``LIVE_ALERTS``
(``collector.app_keys``); ``close_streams`` ends every stream when the collector stops.

Limits: a subscriber that does not keep up loses alerts beyond ``alert_hub.QUEUE_ALERTS``
(counted in its stream as an ``event: dropped``) rather than holding the collector's memory;
alerts stored while nobody watched are in the record search (type ``alert``). One collector
process: behind several collectors each streams the alerts it ingested.
"""

from __future__ import annotations

import asyncio
import json
from typing import Final

from aiohttp import web

from collector.access import audit_first, requires
from collector.app_keys import LIVE_ALERTS
from collector.auth.accounts import User

HEARTBEAT_S: Final = 15.0
LIVE_ROLES: Final = frozenset({"operator", "admin"})


@requires(LIVE_ROLES, "watch alerts")
async def events(request: web.Request, user: User) -> web.StreamResponse:
    await audit_first(request, user.name, "watch_alerts", request.path, {})
    live = request.app[LIVE_ALERTS]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    q = live.subscribe()
    dropped = live.dropped
    try:
        await resp.write(b"retry: 3000\n: connected\n\n")
        while True:
            try:
                alert = await asyncio.wait_for(q.get(), HEARTBEAT_S)
            except TimeoutError:
                await resp.write(b": heartbeat\n\n")
                continue
            if alert is None:
                break
            data = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))
            await resp.write(f"event: alert\ndata: {data}\n\n".encode())
            if live.dropped != dropped:
                dropped = live.dropped
                await resp.write(f"event: dropped\ndata: {dropped}\n\n".encode())
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        live.unsubscribe(q)
    return resp


async def close_streams(app: web.Application) -> None:
    """An ``on_shutdown`` signal: every open stream ends (the collector is stopping)."""
    app[LIVE_ALERTS].close()


LIVE_ROUTES: Final = (web.get("/api/v1/events", events),)
