"""The portal's HTTP side: pages, forms, the captive probes and the RFC 8908 API.

What: ``make_app(portal, cfg)`` is an aiohttp application; ``PortalServer`` runs it on its own
event loop thread on ``address:http_port`` (where the packet filter sends unregistered
clients' port-80 traffic) and, when configured, ``address:https_port`` with the unit's
certificate. The client is ``request.remote`` (the guest network is one hop away; its MAC
comes from the gateway's neighbour table, ``service.neighbour_mac``).

Requests whose ``Host`` is not the portal's are redirected traffic: a browser's ordinary
``http://`` page or a system's captive-portal probe. While the client is not admitted (and not
a device recognised from an earlier registration) every one of them gets ``302`` to the portal
page with the wanted URL in ``?url=``: Android's ``generate_204`` then sees no 204, Apple's
``hotspot-detect.html`` no ``Success`` page, Windows' ``connecttest.txt`` not its text, and each
opens its captive-portal browser. Once admitted, a probe that still reaches the portal (a
connection translated before the admission) gets the answer its system expects.

RFC 8908 (Captive Portal API): ``GET /api/captive`` answers ``application/captive+json`` with
``captive`` (true until admitted), ``user-portal-url`` (the page, over TLS when configured,
§5), ``seconds-remaining`` and ``can-extend-session`` (false) when admitted; ``Cache-Control:
private`` (§4.1: the answer is per client). RFC 8910: the API's URI is what the guest
network's DHCP server hands out as option 114 (``edgeaudit-agent portal dhcp-option``).

Forms: ``POST /sms`` (``action`` send|verify), ``POST /voucher``, ``POST /logout``; the desk's
``/desk``, ``/desk/sign-in``, ``/desk/register``, ``/desk/sign-out`` with a session cookie
(HttpOnly, SameSite=Strict, Path=/desk) and a per-session CSRF field. Bodies are at most 16 KiB;
a malformed request gets the page with a message, never a stack trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final, TypeVar
from urllib.parse import quote

from aiohttp import web

from agent.portal import pages
from agent.portal.config import PortalConfig
from agent.portal.service import Outcome, Portal

log = logging.getLogger("edgeaudit.portal")

MAX_BODY: Final = 16 * 1024
T = TypeVar("T")

APPLE_SUCCESS: Final = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
#: Captive-portal probes and what each system wants to see when the network is open.
PROBES: Final[dict[str, tuple[int, str, str]]] = {
    "/generate_204": (204, "", "text/plain"),  # Android, ChromeOS (connectivitycheck.gstatic.com)
    "/gen_204": (204, "", "text/plain"),
    "/hotspot-detect.html": (200, APPLE_SUCCESS, "text/html"),  # Apple (captive.apple.com)
    "/library/test/success.html": (200, APPLE_SUCCESS, "text/html"),
    "/connecttest.txt": (200, "Microsoft Connect Test", "text/plain"),  # Windows 10+ (msftconnecttest.com)
    "/ncsi.txt": (200, "Microsoft NCSI", "text/plain"),  # older Windows (msftncsi.com)
    "/success.txt": (200, "success\n", "text/plain"),  # Firefox (detectportal.firefox.com)
    "/canonical.html": (200, '<meta http-equiv="refresh" content="0;url=https://support.mozilla.org/'
                        'kb/captive-portal"/>', "text/html"),
}

_PORTAL: Final = web.AppKey("portal", Portal)
_CONFIG: Final = web.AppKey("config", PortalConfig)
_UNIT: Final = web.AppKey("unit", str)


def _lang(request: web.Request) -> str:
    q = request.query.get("lang")
    if q in ("zh", "en"):
        return q
    c = request.cookies.get("lang")
    if c in ("zh", "en"):
        return c
    return "en" if request.headers.get("Accept-Language", "").lower().startswith("en") else "zh"


def _page(request: web.Request, body: str, status: int = 200) -> web.Response:
    lang = _lang(request)
    path = request.path if request.path.startswith("/desk") else "/"
    resp = web.Response(text=pages.layout(lang, body, request.app[_UNIT], switch_to=f"{path}?"),
                        status=status, content_type="text/html", charset="utf-8")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if request.query.get("lang") in ("zh", "en"):
        resp.set_cookie("lang", lang, max_age=365 * 86400, samesite="Lax")
    return resp


async def _call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Service calls block (SQLite, the SMS request, scrypt): off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kw))


async def _form(request: web.Request) -> dict[str, str] | None:
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    try:
        data = await request.post()
    except (ValueError, UnicodeDecodeError, web.HTTPException):
        return None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def _is_portal_host(request: web.Request, cfg: PortalConfig) -> bool:
    host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower()
    return host in (cfg.host.lower(), cfg.address)


@web.middleware
async def _redirected(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> web.StreamResponse:
    cfg = request.app[_CONFIG]
    if _is_portal_host(request, cfg) or request.path == "/api/captive":
        return await handler(request)
    portal = request.app[_PORTAL]
    ip = request.remote or ""
    session = await _call(portal.recognise, ip)
    probe = PROBES.get(request.path) if session is not None else None
    if probe is not None:
        status, text, ctype = probe
        resp = web.Response(status=status, text=text or None, content_type=ctype,
                            headers={"Cache-Control": "no-store"})
    else:
        resp = web.Response(status=302, headers={
            "Location": f"{cfg.page_url}?url={quote(str(request.url), safe='')}",
            "Cache-Control": "no-store"})
    # This connection was translated to the portal by the packet filter, and stays so (conntrack):
    # a browser keeping it alive would send its next request for the site here again, even once
    # the guest is admitted (the "continue" link landed on the portal). Closing it makes the next
    # request a new connection, which an admitted guest's goes out.
    resp.force_close()
    return resp


async def index(request: web.Request) -> web.StreamResponse:
    portal, cfg = request.app[_PORTAL], request.app[_CONFIG]
    ip = request.remote or ""
    lang = _lang(request)
    next_url = pages.safe_next(request.query.get("url", "")) or ""
    session = await _call(portal.recognise, ip)
    if session is not None:
        left = max(0.0, session.hard_end - portal.clock())
        return _page(request, pages.online(lang, account=session.account, seconds=left,
                                           next_url=next_url or None, msg=pages.message(lang, None)))
    return _page(request, pages.index(lang, methods=cfg.methods, ask_name=cfg.ask_name,
                                      msg=pages.message(lang, None), next_url=next_url,
                                      notice_extra=cfg.unit_notice))


def _refused(request: web.Request, out: Outcome, form: dict[str, str]) -> web.Response:
    cfg = request.app[_CONFIG]
    lang = _lang(request)
    values: dict[str, object] = {}
    if out.key == "wait_resend":
        values["seconds"] = int(out.seconds or 0) + 1
    if out.key == "wrong_code":
        values["tries"] = out.tries_left or 0
    if out.key == "code_sent":
        values["minutes"] = max(1, (cfg.sms.code_ttl_s if cfg.sms else 300) // 60)
    countdown = int(out.seconds or 0) if out.key in ("code_sent", "wait_resend") else 0
    status = 200 if out.ok else 400 if out.key.startswith("bad_") or out.key in ("must_agree", "no_code") \
        else 429 if out.key in ("too_many_sends", "too_many_tries", "wait_resend") else 403
    return _page(request, pages.index(
        lang, methods=cfg.methods, ask_name=cfg.ask_name, msg=pages.message(lang, out.key, out.ok, **values),
        phone=form.get("phone", ""), name=form.get("name", ""),
        next_url=pages.safe_next(form.get("url", "")) or "", countdown=countdown,
        notice_extra=cfg.unit_notice), status=status)


def _admitted(request: web.Request, out: Outcome, form: dict[str, str]) -> web.Response:
    lang = _lang(request)
    return _page(request, pages.online(lang, account=out.account or "", seconds=out.seconds or 0.0,
                                       next_url=pages.safe_next(form.get("url", "")),
                                       msg=pages.message(lang, "admitted", True)))


async def sms(request: web.Request) -> web.StreamResponse:
    portal = request.app[_PORTAL]
    form = await _form(request)
    if form is None:
        return _refused(request, Outcome(False, "bad_request"), {})
    ip = request.remote or ""
    if form.get("action") == "send":
        out = await _call(portal.send_code, ip, form.get("phone", ""))
        return _refused(request, out, form)
    out = await _call(portal.verify_code, ip, form.get("phone", ""), form.get("code", ""),
                      form.get("name", ""), form.get("agree") == "1")
    return _admitted(request, out, form) if out.ok else _refused(request, out, form)


async def voucher(request: web.Request) -> web.StreamResponse:
    portal = request.app[_PORTAL]
    form = await _form(request)
    if form is None:
        return _refused(request, Outcome(False, "bad_request"), {})
    out = await _call(portal.redeem, request.remote or "", form.get("voucher", ""), form.get("agree") == "1")
    return _admitted(request, out, form) if out.ok else _refused(request, out, form)


async def logout(request: web.Request) -> web.StreamResponse:
    portal = request.app[_PORTAL]
    await _call(portal.logout, request.remote or "")
    return _page(request, pages.logged_out(_lang(request)))


async def captive_api(request: web.Request) -> web.StreamResponse:
    """RFC 8908 §5: the client's state as JSON."""
    portal, cfg = request.app[_PORTAL], request.app[_CONFIG]
    session = await _call(portal.recognise, request.remote or "")
    doc: dict[str, Any] = {"captive": session is None, "user-portal-url": cfg.secure_page_url}
    if session is not None:
        doc["seconds-remaining"] = max(0, int(session.hard_end - portal.clock()))
        doc["can-extend-session"] = False
    return web.Response(body=json.dumps(doc).encode(), content_type="application/captive+json",
                        headers={"Cache-Control": "private"})


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "portal.css":
        return web.Response(text=pages.CSS, content_type="text/css",
                            headers={"Cache-Control": "max-age=3600"})
    if name == "portal.js":
        return web.Response(text=pages.JS, content_type="application/javascript",
                            headers={"Cache-Control": "max-age=3600"})
    raise web.HTTPNotFound()


# -- the front desk --

DESK_COOKIE: Final = "desk"


async def desk(request: web.Request) -> web.StreamResponse:
    portal, cfg = request.app[_PORTAL], request.app[_CONFIG]
    lang = _lang(request)
    if "desk" not in cfg.methods:
        raise web.HTTPNotFound()
    sess = portal.desk_session(request.cookies.get(DESK_COOKIE))
    if sess is None:
        return _page(request, pages.desk_sign_in(lang, pages.message(lang, None)))
    return _page(request, pages.desk_form(lang, user=sess.user, csrf=sess.csrf, msg=pages.message(lang, None),
                                          max_days=cfg.desk_max_days))


async def desk_sign_in(request: web.Request) -> web.StreamResponse:
    portal, cfg = request.app[_PORTAL], request.app[_CONFIG]
    if "desk" not in cfg.methods:
        raise web.HTTPNotFound()
    lang = _lang(request)
    form = await _form(request) or {}
    got = await _call(portal.desk_sign_in, form.get("user", "")[:64], form.get("password", "")[:256],
                      request.remote or "")
    if got is None:
        return _page(request, pages.desk_sign_in(lang, pages.message(lang, "desk_bad_sign_in")), status=403)
    token, _sess = got
    resp = web.HTTPSeeOther("/desk")
    resp.set_cookie(DESK_COOKIE, token, httponly=True, samesite="Strict", path="/desk",
                    secure=request.secure)
    raise resp


async def desk_register(request: web.Request) -> web.StreamResponse:
    portal, cfg = request.app[_PORTAL], request.app[_CONFIG]
    lang = _lang(request)
    sess = portal.desk_session(request.cookies.get(DESK_COOKIE))
    form = await _form(request)
    if sess is None:
        return _page(request, pages.desk_sign_in(lang, pages.message(lang, None)), status=403)
    if form is None or not hmac.compare_digest(form.get("csrf", ""), sess.csrf):
        return _page(request, pages.desk_form(lang, user=sess.user, csrf=sess.csrf,
                                              max_days=cfg.desk_max_days,
                                              msg=pages.message(lang, "bad_request")), status=400)
    out = await _call(portal.desk_register, sess, name=form.get("name", ""), id_type=form.get("id_type", ""),
                      id_number=form.get("id_number", ""), room=form.get("room", ""),
                      phone=form.get("phone", ""), days=form.get("days", "1"))
    if not out.ok:
        values: dict[str, object] = {"max": cfg.desk_max_days} if out.key == "bad_days" else {}
        msg = pages.message(lang, out.key, False, **values)
        return _page(request, pages.desk_form(lang, user=sess.user, csrf=sess.csrf,
                                              max_days=cfg.desk_max_days, msg=msg, values=form), status=400)
    return _page(request, pages.desk_voucher(lang, account=out.account or "", voucher=out.voucher or "",
                                             valid_until=out.valid_until or 0.0))


async def desk_sign_out(request: web.Request) -> web.StreamResponse:
    portal = request.app[_PORTAL]
    token = request.cookies.get(DESK_COOKIE)
    sess = portal.desk_session(token)
    form = await _form(request) or {}
    if sess is not None and hmac.compare_digest(form.get("csrf", ""), sess.csrf):
        portal.desk_sign_out(token)
    resp = web.HTTPSeeOther("/desk")
    resp.del_cookie(DESK_COOKIE, path="/desk")
    raise resp


def make_app(portal: Portal, cfg: PortalConfig, unit_name: str = "") -> web.Application:
    app = web.Application(middlewares=[_redirected], client_max_size=MAX_BODY)
    app[_PORTAL] = portal
    app[_CONFIG] = cfg
    app[_UNIT] = unit_name
    app.router.add_get("/", index)
    app.router.add_post("/sms", sms)
    app.router.add_post("/voucher", voucher)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/captive", captive_api)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/desk", desk)
    app.router.add_post("/desk/sign-in", desk_sign_in)
    app.router.add_post("/desk/register", desk_register)
    app.router.add_post("/desk/sign-out", desk_sign_out)
    for path in PROBES:  # on the portal's own host: the portal's state, as a probe would see it
        app.router.add_get(path, partial(_probe, path))
    return app


async def _probe(path: str, request: web.Request) -> web.StreamResponse:
    portal, cfg = request.app[_PORTAL], request.app[_CONFIG]
    if await _call(portal.recognise, request.remote or "") is None:
        raise web.HTTPFound(cfg.page_url)
    status, text, ctype = PROBES[path]
    return web.Response(status=status, text=text or None, content_type=ctype)


class PortalServer:
    """The app on its own thread and event loop (the supervisor's other threads are not asyncio)."""

    def __init__(self, portal: Portal, cfg: PortalConfig, unit_name: str = "") -> None:
        self.portal = portal
        self.cfg = cfg
        self.unit_name = unit_name
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Listen on the configured ports; raises OSError (e.g. the port is taken) when it cannot."""
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._start())
            except BaseException as e:  # reported to start(), which raises it
                self.error = e
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._stop())
            self.loop.close()

        self.thread = threading.Thread(target=run, name="portal-http", daemon=True)
        self.thread.start()
        ready.wait(timeout)
        if self.error is not None:
            raise OSError(f"portal: cannot listen: {self.error}") from self.error

    async def _start(self) -> None:
        cfg = self.cfg
        self.runner = web.AppRunner(make_app(self.portal, cfg, self.unit_name), access_log=None,
                                    handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, cfg.address, cfg.http_port, reuse_address=True).start()
        if cfg.https_port and cfg.tls_cert and cfg.tls_key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
            await web.TCPSite(self.runner, cfg.address, cfg.https_port, ssl_context=ctx,
                              reuse_address=True).start()

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def stop(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        with contextlib.suppress(RuntimeError):
            self.thread.join(timeout=10)
