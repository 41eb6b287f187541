"""`PUT /api/v1/units/self` (an agent uploads its unit's profile), `GET /api/v1/units`
(operators list units with their profile, last upload and agents' status; audited) and
`GET /api/v1/stats/hourly?hours=24` (records stored per hour and unit, the dashboard's chart:
counts only, no record content, so not audited)."""

from __future__ import annotations

import asyncio
import json
from typing import Final

from aiohttp import web

from collector.access import agent_of, json_error, require_user
from collector.auth.accounts import Accounts
from collector.auth.audit import AuditError, AuditLog
from collector.query.handlers import QUERY_ROLES
from collector.units.registry import Units
from wire.errors import ValidationError
from wire.unit import validate_unit_profile

MAX_PROFILE_BYTES: Final = 64 * 1024


def unit_routes(app: web.Application, units: Units, accounts: Accounts, audit: AuditLog) -> None:
    async def put_self(request: web.Request) -> web.Response:
        agent = agent_of(accounts, request)
        if agent is None:
            return json_error(401, "unauthenticated", "an agent token is required", challenge="Bearer")
        if request.content_length is not None and request.content_length > MAX_PROFILE_BYTES:
            return json_error(413, "too_large", f"a profile is at most {MAX_PROFILE_BYTES} bytes")
        raw = await request.content.read(MAX_PROFILE_BYTES + 1)
        if len(raw) > MAX_PROFILE_BYTES:
            return json_error(413, "too_large", f"a profile is at most {MAX_PROFILE_BYTES} bytes")
        try:
            profile = validate_unit_profile(json.loads(raw))
        except (ValueError, ValidationError) as e:
            return json_error(400, "invalid_profile", str(e)[:500])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, units.put_profile, agent.unit, agent.name, profile)
        return web.json_response({"unit": agent.unit, "updated": True})

    async def list_units(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        user = await require_user(accounts, request, QUERY_ROLES, "list units")
        if isinstance(user, web.Response):
            return user

        def work() -> list[dict[str, object]]:
            agents = [(a.name, a.unit, a.revoked) for a in accounts.list_agents()]
            return units.listing(agents)

        listing = await loop.run_in_executor(None, work)
        try:
            await loop.run_in_executor(None, audit.append, user.name, "units", request.path_qs,
                                       {"results": len(listing)}, "ok")
        except AuditError as e:
            return json_error(503, "audit_unavailable", str(e))
        return web.json_response({"units": listing}, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def hourly(request: web.Request) -> web.Response:
        user = await require_user(accounts, request, QUERY_ROLES, "see ingest statistics")
        if isinstance(user, web.Response):
            return user
        try:
            hours = int(request.query.get("hours", "24"))
            if not 1 <= hours <= 24 * 31:
                raise ValueError
        except ValueError:
            return json_error(400, "bad_query", "hours: 1..744")
        rows = await asyncio.get_running_loop().run_in_executor(None, units.hourly, hours)
        return web.json_response({"hours": rows})

    app.router.add_put("/api/v1/units/self", put_self)
    app.router.add_get("/api/v1/units", list_units)
    app.router.add_get("/api/v1/stats/hourly", hourly)
