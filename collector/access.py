"""Who is asking, and how a handler refuses: the collector's request authentication and errors.

- Agents: `Authorization: Bearer <agent token>` (`agent_of`, or the `requires_agent`
  decorator); never a name in a payload.
- People: `Authorization: Basic` (name and password; the KDF runs in a worker thread) or
  `Bearer <API token>`; in the web UI, the session cookie `SESSION_COOKIE`
  (`collector.web`), which a state-changing request must back with the `CSRF_HEADER` header
  (a page on another site cannot send one without the collector's consent; the cookie is
  also `SameSite=Strict`). `requires(roles, what)` decorates a handler that takes
  `(request, user)`: it is called only for a user whose role is in `roles`. A handler that
  checks its parameters before the caller (a malformed query is a 400 whoever sends it, and
  runs no KDF) calls `authorized` itself, after them.
- Refusals are raised, never returned: `JsonError(status, error, detail)` is an aiohttp
  HTTP exception whose body is JSON `{"error", "detail"}`; 401s carry the
  `WWW-Authenticate` challenge of the scheme asked for. `audit_first` raises the 503 when an
  answer could not be audited, `json_strings` the 400 for a body it cannot read.
The stores come from the application's typed keys (`collector.app_keys`).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

from aiohttp import web

from collector.app_keys import ACCOUNTS, AUDIT_LOG
from collector.auth.accounts import Accounts, Agent, User
from collector.auth.audit import AuditError

R = TypeVar("R", bound=web.StreamResponse)
Handler = Callable[[web.Request], Awaitable[R]]


class JsonError(web.HTTPError):
    """An error answer to raise from a handler: status ``status``, JSON body
    ``{"error": error, "detail": detail}``; with ``challenge`` (a 401), the
    ``WWW-Authenticate`` header of that scheme."""

    def __init__(self, status: int, error: str, detail: str, *, challenge: str | None = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"an error status is 4xx or 5xx, not {status}")
        self.status_code = status  # HTTPException answers with its status_code
        headers = {"WWW-Authenticate": f'{challenge} realm="edgeaudit"'} if challenge else None
        super().__init__(text=json.dumps({"error": error, "detail": detail}), content_type="application/json",
                         headers=headers)


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


def authenticate(accounts: Accounts, request: web.Request) -> User | None:
    """The user behind Basic credentials, an API bearer token (the KDF runs for Basic) or,
    without an Authorization header, the UI's session cookie."""
    if "Authorization" not in request.headers:
        session = request.cookies.get(SESSION_COOKIE)
        if not session or (request.method not in _SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1"):
            return None
        return accounts.user_for_session(session)
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            name, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return accounts.verify_password(name, password)
    if scheme.lower() == "bearer" and value.strip():
        return accounts.user_for_api_token(value.strip())
    return None


async def authorized(request: web.Request, roles: Collection[str], what: str) -> User:
    """The authenticated user if their role is in ``roles``; else raises the 401 or the 403
    (saying the role may not ``what``)."""
    user = await asyncio.get_running_loop().run_in_executor(None, authenticate, request.app[ACCOUNTS],
                                                             request)
    if user is None:
        # no Basic challenge to the UI's own requests: a browser would pop its password dialog
        raise JsonError(401, "unauthenticated", "Basic credentials or an API token are required",
                        challenge=None if CSRF_HEADER in request.headers else "Basic")
    if user.role not in roles:
        raise JsonError(403, "forbidden", f"role {user.role} may not {what}")
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


async def json_strings(request: web.Request, *names: str) -> list[str]:
    """The str values of ``names`` in the request's JSON object body; else raises the 400."""
    try:
        body = json.loads(await request.read())
        values = [body[n] for n in names]
        if not all(isinstance(v, str) for v in values):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        fields = ", ".join(f'"{n}": ...' for n in names)
        raise JsonError(400, "bad_request", f"a JSON object {{{fields}}} of strings is required") from None
    return values
