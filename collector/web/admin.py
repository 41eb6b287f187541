"""The auditor's and the admin's API for the UI: the audit log, and user management.

- ``GET /api/v1/audit?limit=&before=`` (auditor): a page of audit entries, newest first,
  with the whole chain's verification (``collector.auth.audit.verify``: the first broken
  entry, or the anchor to keep elsewhere). Reading the log is itself an audit entry.
- ``GET /api/v1/users`` (admin): the users, their roles and whether disabled.
- ``POST /api/v1/users`` (admin, JSON ``{"name", "role"}``): a new user; the answer carries
  the generated password, the only time it is shown (the audit entry does not).
- ``POST /api/v1/users/{name}/disable`` (admin): the user can no longer log in; their API
  tokens and UI sessions stop working too.
Every refusal is decided here on the server, whatever the page offers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from collector.access import audit_first, json_answer, json_error, json_strings, require_user
from collector.auth.accounts import AccountError, Accounts, User
from collector.auth.audit import AuditLog, read_entries, verify

AUDIT_ROLES: Final = frozenset({"auditor"})
ADMIN_ROLES: Final = frozenset({"admin"})
MAX_AUDIT_PAGE: Final = 500


def admin_routes(app: web.Application, accounts: Accounts, audit: AuditLog) -> None:
    async def audited(request: web.Request, roles: frozenset[str], what: str, action: str,
                      detail: dict[str, Any], work: Callable[[User], Any]) -> web.Response:
        """Check the role, do ``work(user)`` in a thread, audit it, then answer its result."""
        user = await require_user(accounts, request, roles, what)
        if isinstance(user, web.Response):
            return user
        loop = asyncio.get_running_loop()
        refused: str | None = None
        try:
            result = await loop.run_in_executor(None, work, user)
        except AccountError as e:
            refused = str(e)
        # refused attempts too: an admin's failed changes belong in the record
        unaudited = await audit_first(audit, user.name, action, request.path_qs, detail,
                                      "ok" if refused is None else f"refused: {refused}"[:200])
        if unaudited is not None:
            return unaudited
        if refused is not None:
            return json_error(400, "bad_request", refused)
        return json_answer(result)

    async def audit_page(request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "100"))
            before = int(request.query["before"]) if request.query.get("before") else None
            if not 1 <= limit <= MAX_AUDIT_PAGE:
                raise ValueError
        except ValueError:
            return json_error(400, "bad_query", f"limit: 1..{MAX_AUDIT_PAGE}; before: an entry number")

        def work(user: User) -> dict[str, Any]:
            check = verify(audit.path)
            return {"entries": read_entries(audit.path, limit, before),
                    "verify": {"ok": check.ok, "entries": check.entries, "problem": check.problem,
                               "line": check.line, "anchor": check.anchor}}

        return await audited(request, AUDIT_ROLES, "read the audit log", "audit_view",
                             {"limit": limit, "before": before}, work)

    async def list_users(request: web.Request) -> web.Response:
        return await audited(request, ADMIN_ROLES, "list users", "users", {}, lambda user: {"users": [
            {"name": u.name, "role": u.role, "disabled": u.disabled} for u in accounts.list_users()]})

    async def add_user(request: web.Request) -> web.Response:
        given = await json_strings(request, "name", "role")
        if isinstance(given, web.Response):
            return given
        name, role = given
        return await audited(
            request, ADMIN_ROLES, "add users", "user_add", {"name": name, "role": role},
            lambda user: {"name": name, "role": role, "password": accounts.add_user(name, role)})

    async def disable_user(request: web.Request) -> web.Response:
        name = request.match_info["name"]

        def work(user: User) -> dict[str, Any]:
            if accounts.get_user(name) is None:
                raise AccountError(f"no user {name!r}")
            if name == user.name:
                raise AccountError("an admin cannot disable themself")
            accounts.disable_user(name)
            return {"name": name, "disabled": True}

        return await audited(request, ADMIN_ROLES, "disable users", "user_disable", {"name": name}, work)

    app.router.add_get("/api/v1/audit", audit_page)
    app.router.add_get("/api/v1/users", list_users)
    app.router.add_post("/api/v1/users", add_user)
    app.router.add_post("/api/v1/users/{name}/disable", disable_user)
