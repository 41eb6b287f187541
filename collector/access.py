"""Who is asking: the collector's request authentication, shared by every endpoint.

- Agents: `Authorization: Bearer <agent token>` (`agent_of`); never a name in a payload.
- People: `Authorization: Basic` (name and password; the KDF runs in a worker thread) or
  `Bearer <API token>` (`require_user`, which also checks the role); in the web UI, the
  session cookie `SESSION_COOKIE` (`collector.web`), which a state-changing request must
  back with the `CSRF_HEADER` header (a page on another site cannot send one without the
  collector's consent; the cookie is also `SameSite=Strict`).
- Refusals are JSON `{"error", "detail"}` with the status (`json_error`); 401s carry the
  `WWW-Authenticate` challenge of the scheme asked for.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Collection
from typing import Any

from aiohttp import web

from collector.auth.accounts import Accounts, Agent, User
from collector.auth.audit import AuditError, AuditLog


def json_error(status: int, reason: str, detail: str, *, challenge: str | None = None) -> web.Response:
    headers = {"WWW-Authenticate": f'{challenge} realm="edgeaudit"'} if challenge else None
    return web.json_response({"error": reason, "detail": detail}, status=status, headers=headers)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def agent_of(accounts: Accounts, request: web.Request) -> Agent | None:
    """The agent whose (unrevoked) token the request carries, else None."""
    token = bearer_token(request)
    return accounts.agent_for_token(token) if token is not None else None


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


async def require_user(accounts: Accounts, request: web.Request, roles: Collection[str],
                       what: str) -> User | web.Response:
    """The authenticated user if their role is in `roles`, else the 401/403 to answer with."""
    user = await asyncio.get_running_loop().run_in_executor(None, authenticate, accounts, request)
    if user is None:
        # no Basic challenge to the UI's own requests: a browser would pop its password dialog
        return json_error(401, "unauthenticated", "Basic credentials or an API token are required",
                          challenge=None if CSRF_HEADER in request.headers else "Basic")
    if user.role not in roles:
        return json_error(403, "forbidden", f"role {user.role} may not {what}")
    return user


def json_answer(data: Any) -> web.Response:
    """A JSON answer with text as it is (Chinese names, accounts), not ``\\u`` escapes."""
    return web.json_response(data, dumps=lambda o: json.dumps(o, ensure_ascii=False, separators=(",", ":")))


async def audit_first(audit: AuditLog, actor: str, action: str, target: str, detail: dict[str, Any],
                      result: str = "ok", what: str = "request") -> web.Response | None:
    """Append an audit entry (off the event loop) before an answer leaves: None once it is
    written, else the 503 to answer instead (no audit entry, no answer)."""
    try:
        await asyncio.get_running_loop().run_in_executor(None, audit.append, actor, action, target, detail,
                                                         result)
    except AuditError as e:
        return json_error(503, "audit_unavailable", f"the {what} was not audited: {e}")
    return None


async def json_strings(request: web.Request, *names: str) -> list[str] | web.Response:
    """The str values of ``names`` in the request's JSON object body, or the 400 to answer."""
    try:
        body = json.loads(await request.read())
        values = [body[n] for n in names]
        if not all(isinstance(v, str) for v in values):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        fields = ", ".join(f'"{n}": ...' for n in names)
        return json_error(400, "bad_request", f"a JSON object {{{fields}}} of strings is required")
    return values
