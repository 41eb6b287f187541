"""Ruleset publication: admins upload signed bundles, agents fetch the current one.

What (DESIGN.md "Rulesets", issue 5 "Units and rulesets"):
- `PUT /api/v1/rulesets/current` (an admin, Basic or API token; body = a bundle made by
  `edgeaudit-rules sign`): the collector verifies it as an agent would
  (`rulesets.bundle.verify_bundle`: a signature by one of the keys it was started with,
  `--ruleset-pubkey`; intact; unexpired; a higher version than the one it serves; a valid
  ruleset), stores it atomically, and audits the publication. A refused bundle is a 4xx
  with the reason (409 when it is not newer), and the current one stays.
- `GET /api/v1/rulesets/current` (an agent token): the bundle bytes with an `ETag` (its
  SHA-256); `If-None-Match` with that tag gets 304, so polling agents transfer nothing
  until it changes. Agents verify the bundle themselves (`agent.filter.updates`): the
  collector is a distribution point, not a trust anchor. Each fetch (200 or 304) tells the
  units registry which bundle that agent runs.
- `GET /api/v1/rulesets` (operators and admins): every bundle published here, newest first
  (`history.jsonl` beside the bundle: name, version, ETag, who, when), and for each agent
  the bundle it last fetched and whether it is the current one (the UI's rulesets page).

The handlers are `RULESET_ROUTES` (added by `collector.app` when it has a bundle store,
`collector.rules.bundle_store`); the store, the signing keys and the units registry come from
the application (`collector.app_keys`).

Limits: `rulesets.bundle.MAX_BUNDLE_BYTES` for an upload, which must keep arriving at
`collector.http_limits.MIN_BODY_RATE` after its first 30 s (`BUNDLE_BODY`).
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any, Final

from aiohttp import web

from collector.access import JsonError, audit_first, requires, requires_agent
from collector.app_keys import ACCOUNTS, BUNDLES, RULESET_KEYS, UNITS
from collector.auth.accounts import Agent, User
from collector.http_limits import BodyLimit, read_body
from collector.rules.bundle_store import etag
from rulesets.bundle import MAX_BUNDLE_BYTES, BundleError, verify_bundle

PUBLISH_ROLES: Final = frozenset({"admin"})
#: A bundle upload: up to MAX_BUNDLE_BYTES, its first 30 s free of the minimum rate.
BUNDLE_BODY: Final = BodyLimit(MAX_BUNDLE_BYTES, 30.0)
OVERVIEW_ROLES: Final = frozenset({"operator", "admin"})


@requires_agent()
async def get_current(request: web.Request, agent: Agent) -> web.Response:
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, request.app[BUNDLES].current)
    if data is None:
        raise JsonError(404, "no_ruleset", "no ruleset has been published")
    tag = etag(data)
    units = request.app.get(UNITS)
    if units is not None:  # which agent runs which version (the unit registry, compliance)
        await loop.run_in_executor(None, units.ruleset_fetched, agent.name, tag)
    if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers={"ETag": tag})
    return web.Response(body=data, content_type="application/x-tar", headers={"ETag": tag})


@requires(PUBLISH_ROLES, "publish rulesets")
async def put_current(request: web.Request, user: User) -> web.Response:
    loop = asyncio.get_running_loop()
    store, keys = request.app[BUNDLES], request.app[RULESET_KEYS]
    if not keys:
        raise JsonError(409, "no_keys", "the collector was started without --ruleset-pubkey")
    data = await read_body(request, BUNDLE_BODY)
    running = await loop.run_in_executor(None, store.current)
    newer_than = None
    if running is not None:
        try:
            newer_than = verify_bundle(running, keys).version
        except BundleError:
            newer_than = None  # the stored one no longer verifies (expired, key rotated)
    try:
        verified = await loop.run_in_executor(
            None, partial(verify_bundle, data, keys, newer_than=newer_than, max_bytes=MAX_BUNDLE_BYTES))
    except BundleError as e:
        status = 409 if "is not newer than" in e.reason else 400
        raise JsonError(status, "bundle_refused", e.reason) from None
    await audit_first(request, user.name, "ruleset_publish", f"{verified.name} v{verified.version}",
                      {"key_id": verified.key_id, "etag": etag(data)}, what="publication")
    entry = {"name": verified.name, "version": verified.version, "etag": etag(data), "by": user.name,
             "published": time.time(), "key_id": verified.key_id}
    await loop.run_in_executor(None, store.replace, data, entry)
    return web.json_response({"name": verified.name, "version": verified.version, "etag": etag(data)})


@requires(OVERVIEW_ROLES, "see rulesets")
async def overview(request: web.Request, user: User) -> web.Response:
    """Operators and admins: the bundles published (newest first; the first is current)
    and the bundle each agent last fetched or confirmed."""
    loop = asyncio.get_running_loop()
    history = await loop.run_in_executor(None, request.app[BUNDLES].history)
    by_etag = {h["etag"]: h for h in history}
    units = request.app.get(UNITS)
    fetched = await loop.run_in_executor(None, units.rulesets) if units is not None else {}
    current = history[0]["etag"] if history else None
    agents: list[dict[str, Any]] = []
    for a in await loop.run_in_executor(None, request.app[ACCOUNTS].list_agents):
        if a.revoked:
            continue
        tag, when = fetched.get(a.name, (None, None))
        agents.append({"agent": a.name, "unit": a.unit, "etag": tag, "fetched": when,
                       "version": by_etag.get(tag or "", {}).get("version"),
                       "current": tag is not None and tag == current})
    return web.json_response({"history": history, "current": current, "agents": agents})


RULESET_ROUTES: Final = (
    web.get("/api/v1/rulesets", overview),
    web.get("/api/v1/rulesets/current", get_current),
    web.put("/api/v1/rulesets/current", put_current),
)
