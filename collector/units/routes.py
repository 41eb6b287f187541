"""`PUT /api/v1/units/self` (an agent uploads its unit's profile), `GET /api/v1/units`
(operators list units with their profile, last upload and agents' status; audited; the
security officers' certificate numbers and phones masked unless an admin asks with
``personal=1``, audited as such) and
`GET /api/v1/stats/hourly?hours=24` (records stored per hour and unit, the dashboard's chart:
counts only, no record content, so not audited)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Final
from urllib.parse import quote

from aiohttp import web

from collector.access import agent_of, audit_first, json_answer, json_error, require_user
from collector.auth.accounts import Accounts
from collector.auth.audit import AuditLog
from collector.query.handlers import QUERY_ROLES
from collector.units.compliance import problems, report
from collector.units.registry import Units
from collector.units.report_html import PdfUnavailable, render, to_pdf
from wire.errors import ValidationError
from wire.unit import validate_unit_profile

MAX_PROFILE_BYTES: Final = 64 * 1024
#: Who sees the security officers' certificate numbers and phones unmasked (with ``personal=1``).
PERSONAL_ROLES: Final = frozenset({"admin"})


def mask(text: object) -> object:
    """A personal number with all but its last two characters hidden."""
    if not isinstance(text, str) or len(text) <= 2:
        return "**" if isinstance(text, str) and text else text
    return "*" * (len(text) - 2) + text[-2:]


def masked_profile(profile: dict[str, object] | None) -> dict[str, object] | None:
    """The profile with the security officers' certificate numbers and phones masked."""
    if profile is None:
        return None
    officers = profile.get("security_officers")
    if not isinstance(officers, list):
        return profile
    return {**profile, "security_officers": [
        {**o, "certificate_no": mask(o.get("certificate_no")), "phone": mask(o.get("phone"))}
        if isinstance(o, dict) else o for o in officers]}


def unit_routes(app: web.Application, units: Units, accounts: Accounts, audit: AuditLog,
                retention_days: int = 180, current_ruleset: Callable[[], str | None] = lambda: None) -> None:
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
        personal = request.query.get("personal") == "1"
        if personal and user.role not in PERSONAL_ROLES:
            return json_error(403, "forbidden", f"role {user.role} may not see personal numbers")

        def work() -> list[dict[str, object]]:
            agents = [(a.name, a.unit, a.revoked) for a in accounts.list_agents()]
            listing = units.listing(agents)
            if not personal:
                for u in listing:
                    u["profile"] = masked_profile(u["profile"])  # type: ignore[arg-type]
            return listing

        listing = await loop.run_in_executor(None, work)
        # a view of personal numbers is audited as such
        action = "units_personal" if personal else "units"
        refused = await audit_first(audit, user.name, action, request.path_qs,
                                    {"results": len(listing), "personal": personal})
        if refused is not None:
            return refused
        return json_answer({"units": listing, "retention_days": retention_days})

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

    def agent_list() -> list[tuple[str, str, bool]]:
        return [(a.name, a.unit, a.revoked) for a in accounts.list_agents()]

    async def compliance_of(request: web.Request) -> web.Response:
        user = await require_user(accounts, request, QUERY_ROLES, "read compliance reports")
        if isinstance(user, web.Response):
            return user
        unit = request.match_info["unit"]
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "html", "pdf"):
            return json_error(400, "bad_query", "format: json, html or pdf")
        loop = asyncio.get_running_loop()
        ans = await loop.run_in_executor(None, lambda: report(units, agent_list(), unit, retention_days,
                                                              current_ruleset()))
        refused = await audit_first(audit, user.name, "compliance", request.path_qs,
                                    {"unit": unit, "ok": ans["ok"], "format": fmt})
        if refused is not None:
            return refused
        if fmt == "json":
            return json_answer(ans)
        page = render(ans)
        if fmt == "html":  # no script in it; its styles are inline
            return web.Response(text=page, content_type="text/html", charset="utf-8", headers={
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff"})
        try:
            pdf = await loop.run_in_executor(None, to_pdf, page)
        except PdfUnavailable as e:
            return json_error(501, "pdf_unavailable", str(e))
        return web.Response(body=pdf, content_type="application/pdf", headers={
            "Content-Disposition": f'attachment; filename="compliance-{quote(unit)}.pdf"'})

    async def out_of_compliance(request: web.Request) -> web.Response:
        user = await require_user(accounts, request, QUERY_ROLES, "list units out of compliance")
        if isinstance(user, web.Response):
            return user
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, lambda: problems(units, agent_list(), retention_days,
                                                                  current_ruleset()))
        refused = await audit_first(audit, user.name, "compliance_list", request.path_qs,
                                    {"results": len(found)})
        if refused is not None:
            return refused
        return json_answer({"units": found})

    app.router.add_get("/api/v1/units/{unit}/compliance", compliance_of)
    app.router.add_get("/api/v1/compliance", out_of_compliance)
    app.router.add_put("/api/v1/units/self", put_self)
    app.router.add_get("/api/v1/units", list_units)
    app.router.add_get("/api/v1/stats/hourly", hourly)
