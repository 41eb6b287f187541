"""The operators' web UI: the page at ``/``, its static files, and the login session.

What: ``UI_ROUTES`` (added by ``collector.app``) are
- ``GET /`` and ``GET /static/{file}``: the single-page UI (``collector/web/static``: plain
  HTML, CSS and JavaScript modules, no build step, nothing fetched from elsewhere), with a
  Content-Security-Policy that allows only this origin's scripts and styles;
- ``POST /api/v1/session`` (JSON ``{"name", "password"}``): a login. The password is checked
  with the accounts' KDF in a worker thread; success sets the ``SESSION_COOKIE`` (HttpOnly,
  SameSite=Strict, Secure under TLS) and answers ``{"name", "role"}``; a failure is a 401 and
  both are written to the audit log;
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

from collector.access import CSRF_HEADER, SESSION_COOKIE, JsonError, audit_first, json_strings, requires
from collector.app_keys import ACCOUNTS
from collector.auth.accounts import SESSION_MAX_S, User

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
    accounts = request.app[ACCOUNTS]
    loop = asyncio.get_running_loop()
    user = await loop.run_in_executor(None, accounts.verify_password, name, password)
    await audit_first(request, name[:64], "login", request.path, {"via": "web"},
                      "ok" if user is not None else "denied", what="login")
    if user is None:
        raise JsonError(401, "unauthenticated", "wrong name or password")
    token = await loop.run_in_executor(None, accounts.add_session, user.name)
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
