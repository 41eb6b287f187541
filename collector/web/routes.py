"""The operators' web UI: the page at ``/``, its static files, and the login session.

What: ``UI_ROUTES`` (added by ``collector.app``) are
- ``GET /`` and ``GET /static/{file}``: the single-page UI (``collector/web/static``: plain
  HTML, CSS and JavaScript modules, no build step, nothing fetched from elsewhere), with a
  Content-Security-Policy that allows only this origin's scripts and styles;
- ``POST /api/v1/session`` (``Content-Type: application/json``, at most
  ``http_limits.SMALL_JSON``: ``{"name", "password"}``): a login. The password is checked by
  ``collector.access.check_password`` (throttled per account and address: a 429 with
  ``Retry-After``; the KDF in its own pool); success sets the ``SESSION_COOKIE`` (HttpOnly,
  SameSite=Strict, Secure under TLS), answers ``{"name", "role"}`` and is written to the
  audit log; a failure is a 401, written once per window per name and address
  (``login_refused``). Another content type is a 415: a form on another site could
  otherwise log a victim's browser into the attacker's account;
- ``GET /api/v1/session``: who the cookie belongs to (``{"name", "role"}``) or 401;
- ``DELETE /api/v1/session``: logout (the session ends on the server, the cookie is cleared).

Why a cookie session on top of Basic and API tokens: a browser should not hold the password
(Basic would resend it with every request and run the ~50 ms KDF each time); the session
token is random, kept only as a hash, ends after ``SESSION_IDLE_S`` idle or
``SESSION_MAX_S`` after login, and every API endpoint accepts it (``collector.access``), so
the UI calls the same authorized, audited API as any client: nothing is only hidden in the
page.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Final

from aiohttp import web

from collector.access import CSRF_HEADER, SESSION_COOKIE, JsonError, audit_first, check_password, requires
from collector.app_keys import ACCOUNTS
from collector.auth.accounts import SESSION_MAX_S, User
from collector.http_limits import json_strings

STATIC: Final = Path(__file__).with_name("static")
#: Files the UI is made of; nothing else under static/ is served.
FILES: Final = {name: "text/javascript" for name in ("app.js", "i18n.js", "api.js", "pages.js",
                                                     "dashboard.js", "admin.js")} | {"app.css": "text/css"}
ALL_ROLES: Final = frozenset({"operator", "auditor", "admin"})
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
                               " img-src 'self' data:; connect-src 'self'; form-action 'self';"
                               " frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


async def index(request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html",
                        charset="utf-8", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    kind = FILES.get(name)
    if kind is None:
        raise web.HTTPNotFound()
    return web.Response(body=(STATIC / name).read_bytes(), content_type=kind, charset="utf-8",
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def login(request: web.Request) -> web.Response:
    name, password = await json_strings(request, "name", "password")
    user = await check_password(request, name, password, via="web")
    if user is None:
        raise JsonError(401, "unauthenticated", "wrong name or password")
    await audit_first(request, user.name, "login", request.path, {"via": "web", "address": request.remote},
                      what="login")
    token = await asyncio.get_running_loop().run_in_executor(None, request.app[ACCOUNTS].add_session,
                                                             user.name)
    resp = web.json_response({"name": user.name, "role": user.role})
    resp.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_S, httponly=True, samesite="Strict",
                    secure=request.secure, path="/")
    return resp


@requires(ALL_ROLES, "use the UI")
async def whoami(request: web.Request, user: User) -> web.Response:
    return web.json_response({"name": user.name, "role": user.role})


async def logout(request: web.Request) -> web.Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and request.headers.get(CSRF_HEADER) == "1":
        await asyncio.get_running_loop().run_in_executor(None, request.app[ACCOUNTS].end_session, token)
    resp = web.json_response({"ok": True})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


UI_ROUTES: Final = (
    web.get("/", index),
    web.get("/static/{file}", static),
    web.post("/api/v1/session", login),
    web.get("/api/v1/session", whoami),
    web.delete("/api/v1/session", logout),
)
