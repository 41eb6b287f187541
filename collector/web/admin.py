"""The auditor's and the admin's API for the UI: the audit log, and user management.

- ``GET /api/v1/audit?limit=&before=`` (auditor): a page of audit entries, newest first,
  with the whole chain's verification (``collector.auth.audit.verify``: the first broken
  entry, or the anchor to keep elsewhere). Reading the log is itself an audit entry.
- ``GET /api/v1/users`` (admin): the users, their roles and whether disabled.
- ``POST /api/v1/users`` (admin, JSON ``{"name", "role"}`` as ``application/json``, at most
  ``http_limits.SMALL_JSON``): a new user; the answer carries the generated password, the
  only time it is shown (the audit entry does not).
- ``POST /api/v1/users/{name}/disable`` (admin): the user can no longer log in; their API
  tokens and UI sessions stop working too.
Every refusal is decided here on the server, whatever the page offers. The handlers are
``ADMIN_ROUTES`` (added by ``collector.app``); each does its work in a worker thread and
audits it, refused attempts too (``_answer_audited``). The audit page's parameters and a new
user's body are checked before the caller is (``collector.access.authorized``): a malformed
request is a 400 whoever sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from collector.access import JsonError, audit_first, authorized, json_answer, requires
from collector.app_keys import ACCOUNTS, AUDIT_LOG
from collector.auth.accounts import AccountError, Accounts, User
from collector.auth.audit import read_entries, verify
from collector.http_limits import json_strings
from collector.query.params import BadQuery, int_param

AUDIT_ROLES: Final = frozenset({"auditor"})
ADMIN_ROLES: Final = frozenset({"admin"})
MAX_AUDIT_PAGE: Final = 500


async def _answer_audited(request: web.Request, user: User, action: str, detail: dict[str, Any],
                          work: Callable[[], Any]) -> web.Response:
    """Do ``work()`` in a thread, audit it, then answer its result (a refused change, an
    ``AccountError``, is audited too and answered 400)."""
    refused: str | None = None
    try:
        result = await asyncio.get_running_loop().run_in_executor(None, work)
    except AccountError as e:
        refused = str(e)
    # refused attempts too: an admin's failed changes belong in the record
    await audit_first(request, user.name, action, request.path_qs, detail,
                      "ok" if refused is None else f"refused: {refused}"[:200])
    if refused is not None:
        raise JsonError(400, "bad_request", refused)
    return json_answer(result)


def _audit_view(path: Path, limit: int, before: int | None) -> dict[str, Any]:
    check = verify(path)
    return {"entries": read_entries(path, limit, before),
            "verify": {"ok": check.ok, "entries": check.entries, "problem": check.problem,
                       "line": check.line, "anchor": check.anchor}}


async def audit_page(request: web.Request) -> web.Response:
    try:
        limit = int_param(request.query.get("limit"), "limit", lo=1, hi=MAX_AUDIT_PAGE) or 100
        before = int_param(request.query.get("before"), "before", lo=1, hi=2**62)
    except BadQuery:
        raise JsonError(400, "bad_query", f"limit: 1..{MAX_AUDIT_PAGE}; before: an entry number") from None
    user = await authorized(request, AUDIT_ROLES, "read the audit log")
    return await _answer_audited(request, user, "audit_view", {"limit": limit, "before": before},
                                 partial(_audit_view, request.app[AUDIT_LOG].path, limit, before))


def _users(accounts: Accounts) -> dict[str, Any]:
    return {"users": [{"name": u.name, "role": u.role, "disabled": u.disabled}
                      for u in accounts.list_users()]}


@requires(ADMIN_ROLES, "list users")
async def list_users(request: web.Request, user: User) -> web.Response:
    return await _answer_audited(request, user, "users", {}, partial(_users, request.app[ACCOUNTS]))


def _add_user(accounts: Accounts, name: str, role: str) -> dict[str, Any]:
    return {"name": name, "role": role, "password": accounts.add_user(name, role)}


async def add_user(request: web.Request) -> web.Response:
    name, role = await json_strings(request, "name", "role")
    user = await authorized(request, ADMIN_ROLES, "add users")
    return await _answer_audited(request, user, "user_add", {"name": name, "role": role},
                                 partial(_add_user, request.app[ACCOUNTS], name, role))


def _disable_user(accounts: Accounts, name: str, by: str) -> dict[str, Any]:
    if accounts.get_user(name) is None:
        raise AccountError(f"no user {name!r}")
    if name == by:
        raise AccountError("an admin cannot disable themself")
    accounts.disable_user(name)
    return {"name": name, "disabled": True}


@requires(ADMIN_ROLES, "disable users")
async def disable_user(request: web.Request, user: User) -> web.Response:
    name = request.match_info["name"]
    return await _answer_audited(request, user, "user_disable", {"name": name},
                                 partial(_disable_user, request.app[ACCOUNTS], name, user.name))


ADMIN_ROUTES: Final = (
    web.get("/api/v1/audit", audit_page),
    web.get("/api/v1/users", list_users),
    web.post("/api/v1/users", add_user),
    web.post("/api/v1/users/{name}/disable", disable_user),
)
