"""Who is asking, and how a handler refuses: the collector's request authentication and errors.

- Agents: `Authorization: Bearer <agent token>` (`agent_of`, or the `requires_agent`
  decorator); never a name in a payload.
- People: `Authorization: Basic` (name and password) or `Bearer <API token>`; in the web UI,
  the session cookie `SESSION_COOKIE` (`collector.web`), which a state-changing request must
  back with the `CSRF_HEADER` header (a page on another site cannot send one without the
  collector's consent; the cookie is also `SameSite=Strict`). `requires(roles, what)`
  decorates a handler that takes `(request, user)`: it is called only for a user whose role
  is in `roles`. A handler that checks its parameters before the caller (a malformed query
  is a 400 whoever sends it, and runs no KDF) calls `authorized` itself, after them.
- Passwords (Basic, and the UI's login form) go through `check_password`: the login throttle
  (`collector.auth.throttle`: per account and per source address; a refused attempt is a 429
  with `Retry-After`, before any KDF runs), then the KDF in its own bounded pool
  (`collector.auth.password_pool`; full: 503 with `Retry-After`), never in the thread pool
  that commits uploads.
- Refusals are raised, never returned: `JsonError(status, error, detail)` is an aiohttp
  HTTP exception whose body is JSON `{"error", "detail"}`; 401s carry the
  `WWW-Authenticate` challenge of the scheme asked for. Every refusal of someone who named
  themself is on the record (`audit_refusal`): a wrong password (`login_refused`), a
  throttled attempt (`login_throttled`), a role refused (`forbidden`, via `forbidden`), with
  the source address and what was asked; once per `throttle.REFUSAL_WINDOW_S` per action,
  name and address, with the count of those not written, so refusals cannot fill the disk.
  `audit_first` raises the 503 when an entry could not be written.
The stores come from the application's typed keys (`collector.app_keys`). Request bodies
are read by `collector.http_limits`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, Literal, TypeVar

from aiohttp import web

from collector.app_keys import ACCOUNTS, AUDIT_LOG, LOGIN_THROTTLE, PASSWORD_POOL, REFUSALS
from collector.auth.accounts import Accounts, Agent, User
from collector.auth.audit import AuditError
from collector.auth.password_pool import PoolBusy
from collector.auth.throttle import account_key, address_key

R = TypeVar("R", bound=web.StreamResponse)
Handler = Callable[[web.Request], Awaitable[R]]


class JsonError(web.HTTPError):
    """An error answer to raise from a handler: status ``status``, JSON body
    ``{"error": error, "detail": detail}``; with ``challenge`` (a 401), the
    ``WWW-Authenticate`` header of that scheme; ``headers`` besides (``Retry-After``)."""

    def __init__(self, status: int, error: str, detail: str, *, challenge: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an error status is 4xx or 5xx, not {status}")
        self.status_code = status  # HTTPException answers with its status_code
        extra = dict(headers or {})
        if challenge:
            extra["WWW-Authenticate"] = f'{challenge} realm="edgeaudit"'
        super().__init__(text=json.dumps({"error": error, "detail": detail}), content_type="application/json",
                         headers=extra or None)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def agent_of(accounts: Accounts, request: web.Request) -> Agent | None:
    """The agent whose (unrevoked) token the request carries, else None."""
    token = bearer_token(request)
    return accounts.agent_for_token(token) if token is not None else None


def requires_agent(detail: str = "an agent token is required"
                   ) -> Callable[[Callable[[web.Request, Agent], Awaitable[R]]], Handler[R]]:
    """Decorates a handler taking ``(request, agent)``: it is called with the agent whose token
    the request carries; without one the answer is a 401 saying ``detail``."""
    def decorate(handler: Callable[[web.Request, Agent], Awaitable[R]]) -> Handler[R]:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> R:
            agent = agent_of(request.app[ACCOUNTS], request)
            if agent is None:
                raise JsonError(401, "unauthenticated", detail, challenge="Bearer")
            return await handler(request, agent)
        return checked
    return decorate


SESSION_COOKIE = "edgeaudit_session"
CSRF_HEADER = "X-Edgeaudit-UI"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


#: The actor of a refused login whose name is no account's (all such share one entry per window).
UNKNOWN_NAME: Final = "(unknown name)"


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def audit_refusal(request: web.Request, actor: str, action: str, detail: dict[str, Any], *,
                        key: str | None = None) -> None:
    """Write a refusal to the audit log: ``actor`` (the name claimed or known), ``action``,
    the source address and what was asked, unless one with the same action, ``key``
    (default: the actor) and address was written in the current window (then it is only
    counted, and the next entry says how many were not written). Raises the 503 when the
    entry cannot be written (``audit_first``)."""
    if AUDIT_LOG not in request.app:  # a collector without an audit log has no such routes
        return
    address = request.remote or "unknown"
    entry = request.app[REFUSALS].entry((action, account_key(actor if key is None else key),
                                         address_key(address)), time.monotonic())
    if entry is None:
        return
    told: dict[str, Any] = {"address": address, "asked": f"{request.method} {request.path_qs}"[:300],
                            **detail, "unwritten": entry.unwritten}
    if entry.over_budget:
        told["unwritten_overall"] = entry.over_budget
    await audit_first(request, actor[:64], action, request.path[:200], told, "refused", what="refusal")


async def forbidden(request: web.Request, user: User, detail: str) -> JsonError:
    """The 403 to raise for ``user`` (``detail`` says what their role may not do), once it is
    on the record (``audit_refusal``)."""
    await audit_refusal(request, user.name, "forbidden", {"role": user.role, "refused": detail})
    return JsonError(403, "forbidden", detail)


async def check_password(request: web.Request, name: str, password: str,
                         via: Literal["basic", "web"]) -> User | None:
    """The user if ``password`` is ``name``'s, else None (the refusal audited). Raises the
    429 when the throttle refuses the attempt (no KDF runs) and the 503 when the password
    pool is full."""
    throttle, pool = request.app[LOGIN_THROTTLE], request.app[PASSWORD_POOL]
    address = address_key(request.remote)
    refused = throttle.admit(name, address, time.monotonic())
    if refused is not None:
        # refused by address: one entry per address and window, whatever names it tries
        await audit_refusal(request, _claimed(request, name), "login_throttled",
                            {"via": via, "by": refused.by, "retry_after": math.ceil(refused.retry_after)},
                            key="*" if refused.by == "address" else None)
        whose = "for this account" if refused.by == "account" else "from this address"
        raise JsonError(429, "too_many_attempts", f"too many failed logins {whose}; try again later",
                        headers=_retry_after(refused.retry_after))
    try:
        user = await pool.verify(request.app[ACCOUNTS], name, password)
    except PoolBusy as e:
        throttle.settle(name, address, "unchecked", time.monotonic())
        raise JsonError(503, "busy", str(e), headers=_retry_after(1)) from None
    except BaseException:
        throttle.settle(name, address, "unchecked", time.monotonic())
        raise
    throttle.settle(name, address, "failed" if user is None else "succeeded", time.monotonic())
    if user is None:
        await audit_refusal(request, _claimed(request, name), "login_refused", {"via": via})
    return user


def _claimed(request: web.Request, name: str) -> str:
    """The name a refused login claimed, as the audit log may show it: an account's name, or
    UNKNOWN_NAME. What is typed into the name field is not always a name (a password typed one
    field early is the usual case), and the log must never hold a password."""
    return name if request.app[ACCOUNTS].get_user(name) is not None else UNKNOWN_NAME


def _basic_credentials(value: str) -> tuple[str, str] | None:
    try:
        name, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return name, password


async def authenticate(request: web.Request) -> User | None:
    """The user behind Basic credentials (``check_password``: throttled, may raise the 429),
    an API bearer token or, without an Authorization header, the UI's session cookie."""
    accounts = request.app[ACCOUNTS]
    loop = asyncio.get_running_loop()
    if "Authorization" not in request.headers:
        session = request.cookies.get(SESSION_COOKIE)
        if not session or (request.method not in _SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1"):
            return None
        return await loop.run_in_executor(None, accounts.user_for_session, session)
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        credentials = _basic_credentials(value)
        return None if credentials is None else await check_password(request, *credentials, via="basic")
    if scheme.lower() == "bearer" and value.strip():
        return await loop.run_in_executor(None, accounts.user_for_api_token, value.strip())
    return None


async def authorized(request: web.Request, roles: Collection[str], what: str) -> User:
    """The authenticated user if their role is in ``roles``; else raises the 401 or the 403
    (saying the role may not ``what``; audited), or the throttle's 429."""
    user = await authenticate(request)
    if user is None:
        # no Basic challenge to the UI's own requests: a browser would pop its password dialog
        raise JsonError(401, "unauthenticated", "Basic credentials or an API token are required",
                        challenge=None if CSRF_HEADER in request.headers else "Basic")
    if user.role not in roles:
        raise await forbidden(request, user, f"role {user.role} may not {what}")
    return user


def requires(roles: Collection[str], what: str
             ) -> Callable[[Callable[[web.Request, User], Awaitable[R]]], Handler[R]]:
    """Decorates a handler taking ``(request, user)``: it is called only for a user whose
    role is in ``roles`` (``authorized``), before anything else is read from the request."""
    def decorate(handler: Callable[[web.Request, User], Awaitable[R]]) -> Handler[R]:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> R:
            return await handler(request, await authorized(request, roles, what))
        return checked
    return decorate


def json_answer(data: Any) -> web.Response:
    """A JSON answer with text as it is (Chinese names, accounts), not ``\\u`` escapes."""
    return web.json_response(data, dumps=lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":")))


async def audit_first(request: web.Request, actor: str, action: str, target: str, detail: dict[str, Any],
                      result: str = "ok", what: str = "request") -> None:
    """Append an entry to the application's audit log (off the event loop) before an answer
    leaves; when it cannot be written, raise the 503 to answer instead (no audit entry, no
    answer)."""
    audit = request.app[AUDIT_LOG]
    try:
        await asyncio.get_running_loop().run_in_executor(None, audit.append, actor, action, target, detail,
                                                         result)
    except AuditError as e:
        raise JsonError(503, "audit_unavailable", f"the {what} was not audited: {e}") from e
