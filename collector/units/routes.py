"""Units' HTTP API: their profiles, their status, ingest statistics and compliance reports.

- `PUT /api/v1/units/self`: an agent uploads its unit's registration profile (its token
  names the unit);
- `GET /api/v1/units`: operators list units with their profile, last upload and agents'
  status (audited); the security officers' certificate numbers and phones are masked
  unless an admin asks with ``personal=1``, audited as such;
- `GET /api/v1/stats/hourly?hours=24`: records stored per hour and unit, the dashboard's
  chart (counts only, no record content, so not audited);
- `GET /api/v1/units/{unit}/compliance?format=json|html|pdf`: one unit's compliance report,
  and `GET /api/v1/compliance`: the units out of compliance (both audited;
  `collector.units.compliance`).

The handlers are `UNIT_ROUTES` (added by `collector.app` when it has a units registry); the
registry, accounts, retention period and ruleset bundle come from the application
(`collector.app_keys`).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

from collector.access import JsonError, audit_first, forbidden, json_answer, requires, requires_agent
from collector.app_keys import ACCOUNTS, BUNDLES, RETENTION_DAYS, UNITS
from collector.auth.accounts import Accounts, Agent, User
from collector.http_limits import JSON_TIMEOUT_S, BodyLimit, parse_json, read_body
from collector.query.handlers import QUERY_ROLES
from collector.query.params import BadQuery, int_param
from collector.query.schema import PERSONAL_ROLES, mask
from collector.rules.bundle_store import BundleStore, current_etag
from collector.units.compliance import problems, report
from collector.units.registry import Units
from collector.units.report_html import PdfUnavailable, render, to_pdf
from wire.errors import ValidationError
from wire.unit import validate_unit_profile

MAX_PROFILE_BYTES: Final = 64 * 1024
PROFILE_BODY: Final = BodyLimit(MAX_PROFILE_BYTES, JSON_TIMEOUT_S)
#: Who sees the security officers' certificate numbers and phones unmasked (with ``personal=1``).


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


@requires_agent()
async def put_self(request: web.Request, agent: Agent) -> web.Response:
    raw = await read_body(request, PROFILE_BODY)
    try:
        profile = validate_unit_profile(parse_json(raw))
    except (ValueError, ValidationError) as e:
        raise JsonError(400, "invalid_profile", str(e)[:500]) from None
    await asyncio.get_running_loop().run_in_executor(None, request.app[UNITS].put_profile, agent.unit,
                                                     agent.name, profile)
    return web.json_response({"unit": agent.unit, "updated": True})


def _agent_list(accounts: Accounts) -> list[tuple[str, str, bool]]:
    return [(a.name, a.unit, a.revoked) for a in accounts.list_agents()]


def _listing(units: Units, accounts: Accounts, personal: bool) -> list[dict[str, Any]]:
    listing = units.listing(_agent_list(accounts))
    if not personal:
        for u in listing:
            u["profile"] = masked_profile(u["profile"])
    return listing


@requires(QUERY_ROLES, "list units")
async def list_units(request: web.Request, user: User) -> web.Response:
    personal = request.query.get("personal") == "1"
    if personal and user.role not in PERSONAL_ROLES:
        raise await forbidden(request, user, f"role {user.role} may not see personal numbers")
    listing = await asyncio.get_running_loop().run_in_executor(
        None, _listing, request.app[UNITS], request.app[ACCOUNTS], personal)
    # a view of personal numbers is audited as such
    action = "units_personal" if personal else "units"
    await audit_first(request, user.name, action, request.path_qs,
                      {"results": len(listing), "personal": personal})
    return json_answer({"units": listing, "retention_days": request.app[RETENTION_DAYS]})


@requires(QUERY_ROLES, "see ingest statistics")
async def hourly(request: web.Request, user: User) -> web.Response:
    try:
        hours = int_param(request.query.get("hours"), "hours", lo=1, hi=24 * 31) or 24
    except BadQuery:
        raise JsonError(400, "bad_query", "hours: 1..744") from None
    rows = await asyncio.get_running_loop().run_in_executor(None, request.app[UNITS].hourly, hours)
    return web.json_response({"hours": rows})


def _report(units: Units, accounts: Accounts, bundles: BundleStore | None, retention_days: int,
            unit: str) -> dict[str, Any]:
    return report(units, _agent_list(accounts), unit, retention_days, current_etag(bundles))


def _problems(units: Units, accounts: Accounts, bundles: BundleStore | None,
              retention_days: int) -> list[dict[str, Any]]:
    return problems(units, _agent_list(accounts), retention_days, current_etag(bundles))


@requires(QUERY_ROLES, "read compliance reports")
async def compliance_of(request: web.Request, user: User) -> web.Response:
    unit = request.match_info["unit"]
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "html", "pdf"):
        raise JsonError(400, "bad_query", "format: json, html or pdf")
    app = request.app
    loop = asyncio.get_running_loop()
    ans = await loop.run_in_executor(None, partial(_report, app[UNITS], app[ACCOUNTS], app.get(BUNDLES),
                                                   app[RETENTION_DAYS], unit))
    await audit_first(request, user.name, "compliance", request.path_qs,
                      {"unit": unit, "ok": ans["ok"], "format": fmt})
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
        raise JsonError(501, "pdf_unavailable", str(e)) from None
    return web.Response(body=pdf, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="compliance-{quote(unit)}.pdf"'})


@requires(QUERY_ROLES, "list units out of compliance")
async def out_of_compliance(request: web.Request, user: User) -> web.Response:
    app = request.app
    found = await asyncio.get_running_loop().run_in_executor(
        None, partial(_problems, app[UNITS], app[ACCOUNTS], app.get(BUNDLES), app[RETENTION_DAYS]))
    await audit_first(request, user.name, "compliance_list", request.path_qs, {"results": len(found)})
    return json_answer({"units": found})


UNIT_ROUTES: Final = (
    web.get("/api/v1/units/{unit}/compliance", compliance_of),
    web.get("/api/v1/compliance", out_of_compliance),
    web.put("/api/v1/units/self", put_self),
    web.get("/api/v1/units", list_units),
    web.get("/api/v1/stats/hourly", hourly),
)
