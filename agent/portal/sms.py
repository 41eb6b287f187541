"""The unit's SMS provider, called as the configured HTTP request (``[portal.sms]``).

Every provider (Aliyun, Tencent Cloud, a carrier's gateway, an in-house service) takes an
HTTP request carrying the number and the text; what differs is the URL, method, headers and
body, so those are templates: ``{phone}``, ``{code}`` and ``{minutes}`` are replaced, each value
escaped for where it lands (URL: percent-encoded; JSON body: a JSON string's contents; form
body: form-encoded; anything else: as is — the values are digits). A 2xx answer is a send;
anything else, or no answer within ``timeout_s``, is a failure the guest is told about
(``sms_failed``) and that is logged without the number or the code.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

from agent.portal.config import SmsConfig


class SmsError(Exception):
    """The provider did not take the message (the text says why, with no number or code)."""


class SmsSender(Protocol):
    def send(self, phone: str, code: str, minutes: int) -> None: ...


def _fill(template: str, values: dict[str, str], escape: str) -> str:
    out = template
    for k, v in values.items():
        if escape == "url":
            v = urllib.parse.quote(v, safe="")
        elif escape == "json":
            v = json.dumps(v, ensure_ascii=False)[1:-1]
        elif escape == "form":
            v = urllib.parse.quote_plus(v)
        out = out.replace("{" + k + "}", v)
    return out


class HttpSms:
    """``SmsSender`` for the configured provider."""

    def __init__(self, cfg: SmsConfig) -> None:
        self.cfg = cfg
        self._ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)

    def request(self, phone: str, code: str, minutes: int) -> urllib.request.Request:
        cfg = self.cfg
        values = {"phone": phone, "code": code, "minutes": str(minutes)}
        ctype = cfg.content_type.split(";")[0].strip().lower()
        form = ctype == "application/x-www-form-urlencoded"
        escape = "json" if ctype.endswith("json") else "form" if form else "none"
        body = _fill(cfg.body, values, escape).encode() if cfg.body and cfg.method == "POST" else None
        headers = dict(cfg.headers)
        if body is not None:
            headers.setdefault("Content-Type", cfg.content_type)
        return urllib.request.Request(_fill(cfg.url, values, "url"), data=body, method=cfg.method,
                                      headers=headers)

    def send(self, phone: str, code: str, minutes: int) -> None:
        req = self.request(phone, code, minutes)
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s, context=self._ctx) as resp:
                resp.read(65536)
                status = resp.status
        except urllib.error.HTTPError as e:
            raise SmsError(f"the SMS provider answered {e.code}") from None
        except (OSError, ValueError) as e:
            # str(e) of a URLError can carry the URL with the number in it: say only its kind
            raise SmsError(f"the SMS provider could not be reached ({type(e).__name__})") from None
        if not 200 <= status < 300:
            raise SmsError(f"the SMS provider answered {status}")
