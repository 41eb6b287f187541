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

Limits: `rulesets.bundle.MAX_BUNDLE_BYTES` for an upload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.access import agent_of, audit_first, json_error, require_user
from collector.auth.accounts import Accounts
from collector.auth.audit import AuditLog
from collector.rules.bundle_store import BundleStore, etag
from rulesets.bundle import MAX_BUNDLE_BYTES, BundleError, verify_bundle


def ruleset_routes(app: web.Application, store: BundleStore, accounts: Accounts, audit: AuditLog,
                   keys: Sequence[Ed25519PublicKey],
                   on_fetch: Callable[[str, str], None] | None = None,
                   agents_fetched: Callable[[], dict[str, tuple[str, float]]] | None = None) -> None:
    """``on_fetch(agent, etag)``: an agent was given (or already had) the bundle ``etag``;
    ``agents_fetched()``: what each agent last fetched (agent -> (etag, when))."""
    async def get_current(request: web.Request) -> web.Response:
        agent = agent_of(accounts, request)
        if agent is None:
            return json_error(401, "unauthenticated", "an agent token is required", challenge="Bearer")
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, store.current)
        if data is None:
            return json_error(404, "no_ruleset", "no ruleset has been published")
        tag = etag(data)
        if on_fetch is not None:  # which agent runs which version (the unit registry, compliance)
            await loop.run_in_executor(None, on_fetch, agent.name, tag)
        if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(body=data, content_type="application/x-tar", headers={"ETag": tag})

    async def put_current(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        user = await require_user(accounts, request, ("admin",), "publish rulesets")
        if isinstance(user, web.Response):
            return user
        if not keys:
            return json_error(409, "no_keys", "the collector was started without --ruleset-pubkey")
        if request.content_length is not None and request.content_length > MAX_BUNDLE_BYTES:
            return json_error(413, "too_large", f"a bundle is at most {MAX_BUNDLE_BYTES} bytes")
        data = await request.read()
        running = await loop.run_in_executor(None, store.current)
        newer_than = None
        if running is not None:
            try:
                newer_than = verify_bundle(running, keys).version
            except BundleError:
                newer_than = None  # the stored one no longer verifies (expired, key rotated)
        try:
            verified = await loop.run_in_executor(
                None, lambda: verify_bundle(data, keys, newer_than=newer_than, max_bytes=MAX_BUNDLE_BYTES))
        except BundleError as e:
            status = 409 if "is not newer than" in e.reason else 400
            return json_error(status, "bundle_refused", e.reason)
        refused = await audit_first(audit, user.name, "ruleset_publish",
                                    f"{verified.name} v{verified.version}",
                                    {"key_id": verified.key_id, "etag": etag(data)}, what="publication")
        if refused is not None:
            return refused
        entry = {"name": verified.name, "version": verified.version, "etag": etag(data), "by": user.name,
                 "published": time.time(), "key_id": verified.key_id}
        await loop.run_in_executor(None, store.replace, data, entry)
        return web.json_response({"name": verified.name, "version": verified.version, "etag": etag(data)})

    async def overview(request: web.Request) -> web.Response:
        """Operators and admins: the bundles published (newest first; the first is current)
        and the bundle each agent last fetched or confirmed."""
        user = await require_user(accounts, request, ("operator", "admin"), "see rulesets")
        if isinstance(user, web.Response):
            return user
        loop = asyncio.get_running_loop()
        history = await loop.run_in_executor(None, store.history)
        by_etag = {h["etag"]: h for h in history}
        fetched = await loop.run_in_executor(None, agents_fetched) if agents_fetched is not None else {}
        current = history[0]["etag"] if history else None
        agents = []
        for a in await loop.run_in_executor(None, accounts.list_agents):
            if a.revoked:
                continue
            tag, when = fetched.get(a.name, (None, None))
            agents.append({"agent": a.name, "unit": a.unit, "etag": tag, "fetched": when,
                           "version": by_etag.get(tag or "", {}).get("version"),
                           "current": tag is not None and tag == current})
        return web.json_response({"history": history, "current": current, "agents": agents})

    app.router.add_get("/api/v1/rulesets", overview)
    app.router.add_get("/api/v1/rulesets/current", get_current)
    app.router.add_put("/api/v1/rulesets/current", put_current)
