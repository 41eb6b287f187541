"""`PUT /api/v1/units/self` (an agent uploads its unit's profile) and `GET /api/v1/units`
(operators list units with their profile, last upload and agents' status; audited)."""

from __future__ import annotations

import asyncio
import json
from typing import Final

from aiohttp import web

from collector.auth.accounts import Accounts
from collector.auth.audit import AuditError, AuditLog
from collector.ingest.batches import bearer_token
from collector.query.handlers import QUERY_ROLES, authenticate
from collector.units.registry import Units
from wire.errors import ValidationError
from wire.unit import validate_unit_profile

MAX_PROFILE_BYTES: Final = 64 * 1024


def _error(status: int, reason: str, detail: str) -> web.Response:
    return web.json_response({"error": reason, "detail": detail}, status=status)


def unit_routes(app: web.Application, units: Units, accounts: Accounts, audit: AuditLog) -> None:
    async def put_self(request: web.Request) -> web.Response:
        token = bearer_token(request)
        agent = accounts.agent_for_token(token) if token is not None else None
        if agent is None:
            return _error(401, "unauthenticated", "an agent token is required")
        if request.content_length is not None and request.content_length > MAX_PROFILE_BYTES:
            return _error(413, "too_large", f"a profile is at most {MAX_PROFILE_BYTES} bytes")
        raw = await request.content.read(MAX_PROFILE_BYTES + 1)
        if len(raw) > MAX_PROFILE_BYTES:
            return _error(413, "too_large", f"a profile is at most {MAX_PROFILE_BYTES} bytes")
        try:
            profile = validate_unit_profile(json.loads(raw))
        except (ValueError, ValidationError) as e:
            return _error(400, "invalid_profile", str(e)[:500])
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, units.put_profile, agent.unit, agent.name, profile)
        return web.json_response({"unit": agent.unit, "updated": True})

    async def list_units(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(None, authenticate, accounts, request)
        if user is None:
            return _error(401, "unauthenticated", "Basic credentials or an API token are required")
        if user.role not in QUERY_ROLES:
            return _error(403, "forbidden", f"role {user.role} may not list units")

        def work() -> list[dict[str, object]]:
            agents = [(a.name, a.unit, a.revoked) for a in accounts.list_agents()]
            return units.listing(agents)

        listing = await loop.run_in_executor(None, work)
        try:
            await loop.run_in_executor(None, audit.append, user.name, "units", request.path_qs,
                                       {"results": len(listing)}, "ok")
        except AuditError as e:
            return _error(503, "audit_unavailable", str(e))
        return web.json_response({"units": listing}, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    app.router.add_put("/api/v1/units/self", put_self)
    app.router.add_get("/api/v1/units", list_units)
