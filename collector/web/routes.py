"""The operators' web UI: the page at ``/``, its static files, and the login session.

What: ``web_routes(app, accounts, audit)`` adds
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

from collector.access import CSRF_HEADER, SESSION_COOKIE, audit_first, json_error, json_strings, require_user
from collector.auth.accounts import SESSION_MAX_S, Accounts
from collector.auth.audit import AuditLog

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


def web_routes(app: web.Application, accounts: Accounts, audit: AuditLog) -> None:
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
        given = await json_strings(request, "name", "password")
        if isinstance(given, web.Response):
            return given
        name, password = given
        loop = asyncio.get_running_loop()
        user = await loop.run_in_executor(None, accounts.verify_password, name, password)
        refused = await audit_first(audit, name[:64], "login", request.path, {"via": "web"},
                                    "ok" if user is not None else "denied", what="login")
        if refused is not None:
            return refused
        if user is None:
            return json_error(401, "unauthenticated", "wrong name or password")
        token = await loop.run_in_executor(None, accounts.add_session, user.name)
        resp = web.json_response({"name": user.name, "role": user.role})
        resp.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_S, httponly=True, samesite="Strict",
                        secure=request.secure, path="/")
        return resp

    async def whoami(request: web.Request) -> web.Response:
        user = await require_user(accounts, request, ALL_ROLES, "use the UI")
        if isinstance(user, web.Response):
            return user
        return web.json_response({"name": user.name, "role": user.role})

    async def logout(request: web.Request) -> web.Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token and request.headers.get(CSRF_HEADER) == "1":
            await asyncio.get_running_loop().run_in_executor(None, accounts.end_session, token)
        resp = web.json_response({"ok": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    app.router.add_get("/", index)
    app.router.add_get("/static/{file}", static)
    app.router.add_post("/api/v1/session", login)
    app.router.add_get("/api/v1/session", whoami)
    app.router.add_delete("/api/v1/session", logout)
