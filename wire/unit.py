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
