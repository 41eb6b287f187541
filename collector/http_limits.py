"""Request bodies read with limits: how many bytes, how fast, and how deep a JSON body nests.

What: ``read_body(request, limit)`` returns a request's body once it has arrived in full, or
raises the ``collector.access.JsonError`` to answer instead:
- 413 when ``Content-Length`` says more than ``limit.max_bytes`` (before a byte is read), or
  when more arrives than that (a chunked body, a lying header) — the read stops there;
- 408 when the body has not arrived within ``limit.timeout_s``, a deadline each chunk
  received pushes back by its share of ``MIN_BODY_RATE`` (Apache mod_reqtimeout's
  ``body=20,MinRate=500`` rule: a body may be large, not slow);
both with ``Connection: close``: the rest of the body is read and discarded for at most the
application's lingering time (``collector.app.LINGERING_S``), so the client sees the answer,
then the connection ends. ``json_body`` reads a JSON body that way and parses it:
``Content-Type: application/json`` required (415 otherwise: a form on another site cannot
send one without the collector's consent — CORS — so it cannot log a victim in as someone
else), at most ``MAX_JSON_DEPTH`` arrays/objects deep, no NaN/Infinity, else a 400.
``json_strings`` takes named string fields from a small JSON object body.

Why: a handler that calls ``request.read()`` reads up to the application's
``client_max_size`` however slowly it comes, and ``json.loads`` on the event loop stops every
other request while it runs (a 32 MiB login body stalled the collector for 4 s and took
840 MB; a deeply nested one raised RecursionError: a 500). Each endpoint now states the
body it takes (``SMALL_JSON``: two short strings), and only a small body is ever parsed: a
``SMALL_JSON`` body parses in microseconds, so it is parsed on the event loop; nesting is
checked by a linear scan before ``json.loads`` recurses.

Limits: the timeout covers the body, not the request line and headers (aiohttp reads those
before a handler runs and has no timeout for them; a reverse proxy's, e.g. nginx's
``client_header_timeout``, covers that). A body over ``MAX_INLINE_PARSE`` is refused by
``json_body`` rather than parsed on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from aiohttp import web

from collector.access import JsonError

#: A body must keep arriving at least this fast (bytes per second) once its first
#: ``timeout_s`` have passed: 256 kbit/s, below any link an operator, admin or agent uses,
#: and it bounds how long a maximal bundle can hold a connection (~70 min for 128 MiB).
MIN_BODY_RATE: Final = 32 * 1024
#: Seconds for a small JSON body: it is one TCP segment after the headers; 5 s leaves room
#: for two retransmissions on a lossy link.
JSON_TIMEOUT_S: Final = 5.0
#: Arrays and objects inside each other: the collector's bodies are a few levels deep (a unit
#: profile is 3); Python's parser recurses and fails near 1000.
MAX_JSON_DEPTH: Final = 32
#: The largest JSON body parsed on the event loop (~1 ms of ``json.loads``); endpoints take
#: at most this.
MAX_INLINE_PARSE: Final = 64 * 1024
JSON_TYPE: Final = "application/json"


@dataclass(frozen=True)
class BodyLimit:
    """The body an endpoint takes: at most ``max_bytes``, arriving within ``timeout_s`` (plus
    one second per ``MIN_BODY_RATE`` bytes received)."""

    max_bytes: int
    timeout_s: float


#: A login or a new user: a name (at most 64 characters) and a password or role.
SMALL_JSON: Final = BodyLimit(4 * 1024, JSON_TIMEOUT_S)

# A string (possessive, so an unterminated one is consumed once: linear time) or a bracket.
_JSON_TOKENS: Final = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)


def _closing(error: JsonError) -> JsonError:
    """``error`` answered with ``Connection: close``: the client stops sending a refused body."""
    error.force_close()
    return error


def _too_large(limit: BodyLimit) -> JsonError:
    return _closing(JsonError(413, "too_large", f"the body is over {limit.max_bytes} bytes"))


async def read_body(request: web.Request, limit: BodyLimit) -> bytes:
    """The whole body within ``limit``; else raises the 413 or the 408 (see the module doc)."""
    if request.content_length is not None and request.content_length > limit.max_bytes:
        raise _too_large(limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit.timeout_s
    body = bytearray()
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                chunk = await request.content.readany()
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > limit.max_bytes:
                raise _too_large(limit)
            deadline += len(chunk) / MIN_BODY_RATE
    except TimeoutError:
        raise _closing(JsonError(408, "body_timeout", "the body did not arrive in time"
                                 f" ({limit.timeout_s:g} s, then {MIN_BODY_RATE} bytes/s)")) from None
    except (web.RequestPayloadError, ConnectionError):  # a broken chunked encoding; the client left
        raise _closing(JsonError(400, "bad_body", "the body was not sent completely")) from None


def json_depth_exceeds(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``max_depth`` (brackets inside
    strings do not count), found in one linear pass without parsing."""
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = text[m.start()]
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif c in "]}":
            depth -= 1
    return False


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """``raw`` as JSON (UTF-8, at most ``MAX_JSON_DEPTH`` deep, no NaN/Infinity); ValueError
    otherwise."""
    if len(raw) > MAX_INLINE_PARSE:
        raise ValueError(f"a JSON body is at most {MAX_INLINE_PARSE} bytes")
    text = raw.decode("utf-8")
    if json_depth_exceeds(text):
        raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # cannot happen within MAX_JSON_DEPTH; a 400 all the same
        raise ValueError("nested too deep") from None


async def json_body(request: web.Request, limit: BodyLimit = SMALL_JSON) -> Any:
    """The request's JSON body within ``limit``: 415 unless it says ``application/json``,
    413/408 (``read_body``), 400 when it is not JSON (the reason in the detail)."""
    if request.content_type != JSON_TYPE:
        raise JsonError(415, "unsupported_media_type", f"the body must be sent as {JSON_TYPE}")
    raw = await read_body(request, limit)
    try:
        return parse_json(raw)
    except ValueError as e:  # UnicodeDecodeError and json.JSONDecodeError are ValueErrors
        raise JsonError(400, "bad_request", f"the body is not JSON: {str(e)[:200]}") from None


async def json_strings(request: web.Request, *names: str, limit: BodyLimit = SMALL_JSON) -> list[str]:
    """The str values of ``names`` in the request's JSON object body (``json_body``); else
    raises the 4xx."""
    body = await json_body(request, limit)
    values = [body.get(n) for n in names] if isinstance(body, dict) else []
    if len(values) != len(names) or not all(isinstance(v, str) for v in values):
        fields = ", ".join(f'"{n}": ...' for n in names)
        raise JsonError(400, "bad_request", f"a JSON object {{{fields}}} of strings is required")
    return [str(v) for v in values]
