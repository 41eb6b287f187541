"""The unit registration profile (备案 information) an agent uploads for its unit.

Not a record: one JSON document per unit, replaced on each upload (`PUT /api/v1/units/self`),
shown to operators with the unit's compliance status. Fields, all required (null or empty
where the unit has none):

    name, legal_representative, address, postal_code, phone, industry, isp, access_method
                                       str (<= 256 chars; postal_code 6 digits when given)
    security_officers                  list of {"name", "certificate_no", "phone"} (<= 20)
    ip_ranges                          list of CIDR strings (<= 256)
    egress_ips, dns_servers, mail_servers   lists of IP addresses (<= 256 each)
    services, security_measures        lists of str (<= 64 each, <= 256 chars)

`validate_unit_profile` returns the canonical profile (addresses and networks in their
canonical text) or raises `ValidationError` naming the field.

`publishing_services` and `service_hosts` read the free-text ``services`` list for the news,
publishing and bulletin-board services a unit declares and the hosts they name: the agent
records what those hosts receive (``agent.publish``) and the collector's compliance report
shows the measure for such units; both sides read the profile with these two functions.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from wire.errors import ValidationError

MAX_TEXT: Final = 256
MAX_LIST: Final = 256
MAX_OFFICERS: Final = 20
MAX_ITEMS: Final = 64
TEXT_FIELDS: Final = ("name", "legal_representative", "address", "postal_code", "phone", "industry", "isp",
                      "access_method")
IP_LISTS: Final = ("egress_ips", "dns_servers", "mail_servers")
TEXT_LISTS: Final = ("services", "security_measures")
FIELDS: Final = frozenset(TEXT_FIELDS + IP_LISTS + TEXT_LISTS + ("security_officers", "ip_ranges"))
_POSTAL = re.compile(r"[0-9]{6}\Z")


def _text(v: Any, where: str, *, required: bool = False) -> str | None:
    if v is None and not required:
        return None
    if not isinstance(v, str) or (required and not v.strip()):
        raise ValidationError(f"{where}: a{' non-empty' if required else ''} string is required")
    if len(v) > MAX_TEXT or any(ord(ch) < 32 for ch in v):
        raise ValidationError(f"{where}: at most {MAX_TEXT} characters, no control characters")
    return v


def _list(v: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(v, list) or len(v) > limit:
        raise ValidationError(f"{where}: a list of at most {limit} items is required")
    return v


def validate_unit_profile(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValidationError("profile: a JSON object is required")
    unknown = set(doc) - FIELDS
    missing = FIELDS - set(doc)
    if unknown:
        raise ValidationError(f"profile: unknown fields {sorted(unknown)}")
    if missing:
        raise ValidationError(f"profile: missing fields {sorted(missing)}")
    out: dict[str, Any] = {}
    for f in TEXT_FIELDS:
        out[f] = _text(doc[f], f, required=f == "name")
    if out["postal_code"] is not None and not _POSTAL.match(out["postal_code"]):
        raise ValidationError("postal_code: six digits")
    officers = []
    for i, o in enumerate(_list(doc["security_officers"], "security_officers", MAX_OFFICERS)):
        if not isinstance(o, dict) or set(o) != {"name", "certificate_no", "phone"}:
            raise ValidationError(f"security_officers[{i}]: an object with name, certificate_no, phone")
        officers.append({k: _text(o[k], f"security_officers[{i}].{k}", required=k == "name") for k in o})
    out["security_officers"] = officers
    nets = []
    for i, n in enumerate(_list(doc["ip_ranges"], "ip_ranges", MAX_LIST)):
        try:
            nets.append(str(ipaddress.ip_network(str(n), strict=False)))
        except ValueError:
            raise ValidationError(f"ip_ranges[{i}]: not a network: {str(n)[:60]!r}") from None
    out["ip_ranges"] = nets
    for f in IP_LISTS:
        ips = []
        for i, a in enumerate(_list(doc[f], f, MAX_LIST)):
            try:
                ips.append(str(ipaddress.ip_address(str(a))))
            except ValueError:
                raise ValidationError(f"{f}[{i}]: not an IP address: {str(a)[:60]!r}") from None
        out[f] = ips
    for f in TEXT_LISTS:
        out[f] = [_text(x, f"{f}[{i}]", required=True) for i, x in enumerate(_list(doc[f], f, MAX_ITEMS))]
    return out


# --- publishing services named in the profile (issue 20) --------------------------------------

#: Words that make a ``services`` entry a news, publishing or bulletin-board service (Order 82
#: Art. 7/10: "新闻、出版以及电子公告等服务"): matched in the entry's text, ASCII case ignored. A
#: mail, access or web-hosting entry names none of them, so a webmail's traffic is never taken
#: for publishing (the agent records what such hosts receive: ``agent.publish``).
PUBLISHING_WORDS: Final = ("新闻", "出版", "发布", "论坛", "公告", "留言", "博客", "微博", "贴吧", "聊天室",
                           "news", "publish", "forum", "bbs", "bulletin", "blog", "guestbook")
# a host name (a "*." wildcard allowed), optionally after a scheme and with a port: ASCII only,
# so a name written right after Chinese text ("论坛bbs.example.cn") is still found alone
_HOST_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9.*-])(?:https?://)?((?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]|[0-9]{1,3}))(?::([0-9]{1,5}))?(?![A-Za-z0-9-])")
_IPV4_TEXT = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}\Z")


def publishing_services(services: list[str]) -> list[str]:
    """The entries of a profile's ``services`` that name a publishing service (``PUBLISHING_WORDS``)."""
    return [s for s in services if any(w in s.lower() for w in PUBLISHING_WORDS)]


def service_hosts(entry: str) -> list[str]:
    """The host names one ``services`` entry names, lower-cased, in order, each once: a name with
    at least one dot and a top-level label of letters ("bbs.example.cn", "*.example.cn"), or an
    IPv4 address; a URL gives its host, and a port written after the name is kept
    ("news.example.cn:8080"). Only ASCII names are found in free text (an IDN is written in its
    xn-- form there, or given to the agent's ``[publishing] hosts``)."""
    out: list[str] = []
    for m in _HOST_IN_TEXT.finditer(entry):
        name, port = m.group(1).lower(), m.group(2)
        last = name.rsplit(".", 1)[1]
        if last.isdigit() and not _IPV4_TEXT.match(name.removeprefix("*.")):
            continue  # "1.2", "v2.0": a number, not a host
        host = f"{name}:{port}" if port and 0 < int(port) < 65536 else name
        if host not in out:
            out.append(host)
    return out
