"""The agent's side of `POST /api/v1/batches`: records in, acknowledged batches out.

What: `Uploader(url, token)` asks the collector who its token belongs to
(`GET /api/v1/agent`: the collector, not the agent, decides an agent's name and unit),
then `add(records)` gathers records into batches of `batch_records` and `flush()` sends
what is left. Each batch is the `wire` envelope (msgpack + zstd) with a `batch_seq`
unique to this agent; a batch counts as delivered only when the collector answered 200
with `{"accepted": N, "duplicate": b}` after its commit.

Retries: connection errors, timeouts, 408, 429 and 5xx are retried with exponential backoff
and full jitter (AWS architecture blog, "Exponential Backoff And Jitter"), up to
`max_tries`, resending the same bytes under the same `batch_seq`, so a batch stored
before a lost answer is acknowledged as a duplicate and stored once. Any other 4xx is a
refusal that retrying the same request cannot fix: `Refused` (an `UploadError`) with the
status and the collector's `error` and `detail`.

Which refusals are about the batch (`Refused.permanent`, used by the spool drain to move a
batch to the spool's quarantine, `agent.spool.quarantine`): a 4xx the collector itself
answered, with its JSON `{"error", "detail"}`, except `NOT_ABOUT_THE_BATCH` (401: the token;
404, 405: the URL, or a collector without this endpoint; 407: a proxy's credentials) and the
transient ones above; and a 413 from anyone (a proxy's body limit is about this body too). So
the collector's 400 (invalid_batch), 403 (wrong_agent), 409 (a batch_seq it holds other
content under), 413 (too_large), 415, 422 (records too far in the future or spanning too many
days) are permanent for the batch that got them. Any other 4xx, and one that is not the
collector's answer (a proxy or a server in the way: an aiohttp server that cannot decode zstd
answers a plain-text 400 to every batch), would refuse every batch alike until an operator
fixes the cause: quarantining would empty the whole queue into the quarantine.

Sequence numbers: the live agent's spool (`agent.spool`, drained by `agent.uploader.drain`)
keeps them across restarts; for `replay` they start at the wall clock in nanoseconds, so two
uploads by the same agent never reuse a number (a reused one would be taken for a resend and
dropped).

TLS: an `https` URL is verified against the system CAs, or against `--collector-ca`.

`CollectorClient` is the single-try HTTP exchange both this class and the spool drain use;
`backoff_delay` their common wait.

Limits: `MAX_BATCH_RECORDS` (wire) per batch; `max_tries` per batch.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, overload

from wire.envelope import encode_batch

DEFAULT_BATCH_RECORDS: Final = 5000
DEFAULT_MAX_TRIES: Final = 8
BACKOFF_BASE_S: Final = 0.2
BACKOFF_CAP_S: Final = 10.0
TIMEOUT_S: Final = 60.0


class UploadError(Exception):
    """The collector refused (or never acknowledged) a batch; the message says why."""


class TransientError(UploadError):
    """No answer, or an answer that says "try again later" (connection error, timeout, 408, 429, 5xx)."""


#: 4xx answers that say nothing about the batch sent (module doc): never quarantined.
NOT_ABOUT_THE_BATCH: Final = frozenset({401, 404, 405, 407})
#: 4xx answers that mean "try again later": transient, like 5xx.
TRANSIENT_4XX: Final = frozenset({408, 429})


class Refused(UploadError):
    """The collector (or a proxy before it) answered a 4xx that resending will not change."""

    def __init__(self, message: str, status: int, error: str, detail: str, from_collector: bool) -> None:
        super().__init__(message)
        self.status = status
        self.error = error  # the collector's error name, or "http_<status>" for another answer
        self.detail = detail
        self.from_collector = from_collector  # the answer was the collector's JSON error

    @property
    def permanent(self) -> bool:
        """True when the refusal is about this request's body, not the token, the URL or
        something between the agent and the collector (module doc)."""
        return self.status == 413 or (self.from_collector and self.status not in NOT_ABOUT_THE_BATCH)


def backoff_delay(attempt: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Full jitter: a uniform wait in [0, min(cap, base * 2**attempt)] before try ``attempt`` + 1."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 62)))


class CollectorClient:
    """One HTTP exchange with the collector at a time, no retries (callers decide how to retry)."""

    def __init__(self, url: str, token: str, *, ca_file: str | None = None,
                 timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._ssl = ssl.create_default_context(cafile=ca_file) if self.url.startswith("https:") else None

    def whoami(self) -> tuple[str, str]:
        """(agent, unit) the collector knows this token as."""
        who = self.request("GET", "/api/v1/agent", None)
        return str(who["agent"]), str(who["unit"])

    def post_batch(self, body: bytes) -> dict[str, Any]:
        """POST one batch body; the collector's acknowledgement ``{"accepted": N, "duplicate": b}``."""
        return self.request("POST", "/api/v1/batches", body)

    def request_json(self, method: str, path: str, doc: Any) -> dict[str, Any]:
        """One try of a JSON request body (the unit profile); answers as ``request``."""
        return self._exchange(method, path, json.dumps(doc).encode(), "application/json", None)[0]

    def fetch(self, path: str, etag: str | None) -> tuple[bytes, str | None] | None:
        """One try of a GET of bytes with ``If-None-Match: etag``: (body, its ETag), or None when
        not modified (304) or there is nothing (404); errors as ``request``."""
        try:
            body, headers = self._exchange("GET", path, None, None, etag, raw=True)
        except _NotModified:
            return None
        return body, headers.get("ETag")

    def request(self, method: str, path: str, body: bytes | None) -> dict[str, Any]:
        """One try: the JSON answer, ``TransientError`` (retry later) or ``UploadError`` (refused).
        A body is a batch (msgpack + zstd)."""
        ctype = "application/msgpack" if body is not None else None
        return self._exchange(method, path, body, ctype, None)[0]

    @overload
    def _exchange(self, method: str, path: str, body: bytes | None, ctype: str | None, etag: str | None,
                  raw: Literal[False] = False) -> tuple[dict[str, Any], Mapping[str, str]]: ...

    @overload
    def _exchange(self, method: str, path: str, body: bytes | None, ctype: str | None, etag: str | None,
                  raw: Literal[True]) -> tuple[bytes, Mapping[str, str]]: ...

    def _exchange(self, method: str, path: str, body: bytes | None, ctype: str | None, etag: str | None,
                  raw: bool = False) -> tuple[Any, Mapping[str, str]]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if ctype is not None:
            headers["Content-Type"] = ctype
        if ctype == "application/msgpack":
            headers["Content-Encoding"] = "zstd"
        if etag is not None:
            headers["If-None-Match"] = etag
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                data = resp.read()
                return (data if raw else dict(json.loads(data or b"{}"))), dict(resp.headers)
        except urllib.error.HTTPError as e:
            if raw and e.code in (304, 404):
                raise _NotModified from None
            error, detail, from_collector = _reason(e)
            if e.code not in TRANSIENT_4XX and e.code < 500:
                raise Refused(f"{method} {path}: refused with {e.code}: {error}: {detail}", e.code, error,
                              detail, from_collector) from None
            raise TransientError(f"{e.code}: {error}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                # not the collector we trust: waiting does not change that
                raise UploadError(f"{method} {path}: {reason}") from None
            raise TransientError(str(reason) or type(e).__name__) from None
        except ValueError as e:  # an answer that is not JSON: a proxy in the way, or a cut answer
            raise TransientError(f"{method} {path}: unreadable answer: {e}") from None


class _NotModified(Exception):
    """304 (the ETag still names the current content) or 404 (nothing published)."""


class Uploader:
    def __init__(self, url: str, token: str, *, batch_records: int = DEFAULT_BATCH_RECORDS,
                 max_tries: int = DEFAULT_MAX_TRIES, ca_file: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = CollectorClient(url, token, ca_file=ca_file)
        self.url = self.client.url
        self.token = token
        self.batch_records = batch_records
        self.max_tries = max_tries
        self.sleep = sleep
        self._pending: list[Mapping[str, Any]] = []
        self._seq = time.time_ns()
        self.counters = {"batches": 0, "records": 0, "duplicates": 0, "retries": 0}
        who = self._request("GET", "/api/v1/agent", None)
        self.agent = str(who["agent"])
        self.unit = str(who["unit"])

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        for r in records:
            self._pending.append(r)
            if len(self._pending) >= self.batch_records:
                self._send()

    def flush(self) -> None:
        if self._pending:
            self._send()

    def _send(self) -> None:
        records, self._pending = self._pending, []
        body = encode_batch(self.agent, self.unit, self._seq, records)
        answer = self._request("POST", "/api/v1/batches", body)
        self._seq += 1
        self.counters["batches"] += 1
        self.counters["records"] += int(answer.get("accepted", 0))
        if answer.get("duplicate"):
            self.counters["duplicates"] += 1

    def _request(self, method: str, path: str, body: bytes | None) -> dict[str, Any]:
        last = ""
        for attempt in range(self.max_tries):
            if attempt:
                self.counters["retries"] += 1
                self.sleep(backoff_delay(attempt))
            try:
                return self.client.request(method, path, body)
            except TransientError as e:
                last = str(e)
        raise UploadError(f"{method} {path}: no answer after {self.max_tries} tries (last: {last})")


#: Bytes of an error answer read for its reason (the collector's JSON is far smaller).
MAX_ERROR_BODY: Final = 4096


def _reason(e: urllib.error.HTTPError) -> tuple[str, str, bool]:
    """(error, detail, True) of the collector's JSON error answer ``{"error", "detail"}``; for
    anything else (a proxy's page) ``http_<status>``, the reason phrase and False."""
    fallback = (f"http_{e.code}", str(e.reason), False)
    try:
        payload = json.loads(e.read(MAX_ERROR_BODY) or b"{}")
    except (ValueError, OSError, http.client.HTTPException):
        return fallback
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), str):
        return fallback
    return payload["error"], str(payload.get("detail", "")), True
