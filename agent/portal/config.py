"""``[portal]`` in agent.toml: the captive portal's settings, checked like every other section.

Keys (defaults in brackets; ``deploy/agent.toml`` documents each one for the admin):

``interfaces`` [required]: the guest network's interfaces on the gateway (nftables ``iifname``);
``address`` [required]: the gateway's IPv4 address on that network (where the portal listens and
redirected HTTP lands); ``http_port`` [8080]: the portal's plain-HTTP port; ``https_port``
[0 = none] with ``tls_cert``/``tls_key``: HTTPS for the page and the RFC 8908 API (RFC 8908 §2
wants the API over TLS; without it the API is served over HTTP and selfcheck says so);
``hostname`` [address]: the name in the portal's URLs (the certificate's name);
``methods`` [["sms", "desk", "voucher"]]: how guests register (``voucher`` redeems the desk's codes,
so it needs ``desk``); ``session_s`` [28800]: how long an admission lasts; ``idle_s`` [1800]: the
idle timeout; ``valid_s`` [86400]: how long an SMS registration lets the guest's device back in
without registering again; ``desk_max_days`` [30]: the longest stay the desk may register;
``devices_per_guest`` [3]; ``ask_name`` [true]: the SMS form asks the guest's name;
``sweep_s`` [5]: how often ends of admission (time up, idle) are looked for; ``nft_table``
["edgeaudit_portal"]; ``unit_notice`` [""]: an extra sentence for the page (e.g. the venue's desk
hours).

``[portal.sms]`` (required when ``methods`` has ``sms``): the unit's SMS provider, called as an HTTP
request: ``url`` (``{phone}``, ``{code}`` allowed, URL-encoded), ``method`` ["POST"], ``headers``
[{}], ``body`` [""] (``{phone}``, ``{code}``, ``{minutes}``: JSON-escaped when ``content_type``
is JSON, form-encoded when it is a form), ``content_type`` ["application/json"], ``timeout_s``
[10], ``ca_file`` [system CAs]; the code: ``code_ttl_s`` [300], ``code_tries`` [5]: wrong tries
per code; limits: ``resend_after_s`` [60], ``sends_per_number_hour`` [5], ``sends_per_device_hour``
[10], ``fails_per_device_hour`` [20]: wrong codes from one device over every number before it is
refused for the hour (brute force across numbers).

``[[portal.desk_users]]`` (required when ``methods`` has ``desk``): ``name`` and ``password_hash``
(``edgeaudit-agent portal hash-password``: scrypt; the password itself never goes in the file).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from agent.config import _Section

METHODS: Final = ("sms", "desk", "voucher")
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}\Z")
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]{1,253}\Z")
_NFT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}\Z")
_USER = re.compile(r"[A-Za-z0-9_.@-]{1,64}\Z")


@dataclass(frozen=True)
class SmsConfig:
    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # the provider's key: never printed
    body: str = ""
    content_type: str = "application/json"
    timeout_s: float = 10.0
    ca_file: Path | None = None
    code_ttl_s: int = 300
    code_tries: int = 5
    resend_after_s: int = 60
    sends_per_number_hour: int = 5
    sends_per_device_hour: int = 10
    fails_per_device_hour: int = 20


@dataclass(frozen=True)
class DeskUser:
    name: str
    password_hash: str = field(default="", repr=False)  # not the password, but not for logs either


@dataclass(frozen=True)
class PortalConfig:
    interfaces: tuple[str, ...]
    address: str
    http_port: int = 8080
    https_port: int = 0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    hostname: str = ""
    methods: tuple[str, ...] = METHODS
    session_s: float = 28800.0
    idle_s: float = 1800.0
    valid_s: float = 86400.0
    desk_max_days: int = 30
    devices_per_guest: int = 3
    ask_name: bool = True
    sweep_s: float = 5.0
    nft_table: str = "edgeaudit_portal"
    unit_notice: str = ""
    sms: SmsConfig | None = None
    desk_users: tuple[DeskUser, ...] = ()

    @property
    def host(self) -> str:
        return self.hostname or self.address

    @property
    def page_url(self) -> str:
        """The portal page guests are sent to (plain HTTP: every device can open it)."""
        return f"http://{self.host}:{self.http_port}/"

    @property
    def secure_page_url(self) -> str:
        """The page over TLS when configured (RFC 8908's user-portal-url), else ``page_url``."""
        return f"https://{self.host}:{self.https_port}/" if self.https_port else self.page_url

    @property
    def api_url(self) -> str:
        """The RFC 8908 API URI (DHCP option 114, RFC 8910)."""
        if self.https_port:
            return f"https://{self.host}:{self.https_port}/api/captive"
        return f"http://{self.host}:{self.http_port}/api/captive"


def _positive(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def parse_portal(doc: Any, problems: list[str], rel: Callable[[str], Path],
                 section: type[_Section]) -> PortalConfig | None:
    """``[portal]`` checked (problems appended as ``[portal].key: ...``); None when absent."""
    if doc is None:
        return None
    p = section("portal", doc, problems, {
        "interfaces", "address", "http_port", "https_port", "tls_cert", "tls_key", "hostname", "methods",
        "session_s", "idle_s", "valid_s", "desk_max_days", "devices_per_guest", "ask_name", "sweep_s",
        "nft_table", "unit_notice", "sms", "desk_users"})
    interfaces = p.get("interfaces", [], list, "a list of interface names",
                       lambda v: bool(v) and all(isinstance(x, str) and _IFNAME.match(x) for x in v))
    if "interfaces" not in p.table:
        p.bad("interfaces", "is required: the guest network's interfaces")
    address = p.get("address", "", str, "the gateway's IPv4 address on the guest network", _ipv4)
    if "address" not in p.table:
        p.bad("address", "is required: the gateway's IPv4 address on the guest network")
    port = (int, "a port 1..65535", lambda v: 0 < v < 65536)
    http_port = p.get("http_port", 8080, *port)
    https_port = p.get("https_port", 0, int, "a port 1..65535, or 0 for none", lambda v: 0 <= v < 65536)
    cert = p.get("tls_cert", "", str, "a path", bool)
    key = p.get("tls_key", "", str, "a path", bool)
    if https_port and not (cert and key):
        p.bad("https_port", "needs tls_cert and tls_key")
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path and not rel(path).is_file():
            p.bad(name, f"{rel(path)} is not a readable file")
    methods = p.get("methods", list(METHODS), list, f"a list of {', '.join(METHODS)}",
                    lambda v: bool(v) and all(m in METHODS for m in v) and len(set(v)) == len(v))
    if "voucher" in methods and "desk" not in methods:
        p.bad("methods", '"voucher" redeems codes the desk prints: it needs "desk"')
    seconds = ((int, float), "seconds > 0", _positive)
    sms = _sms(p.table.get("sms"), problems, rel, section) if "sms" in p.table else None
    if "sms" in methods and sms is None:
        p.bad("sms", 'is required when methods has "sms": the SMS provider ([portal.sms])')
    desk = _desk_users(p, problems)
    if "desk" in methods and not desk:
        p.bad("desk_users", 'at least one is required when methods has "desk" ([[portal.desk_users]])')
    return PortalConfig(
        interfaces=tuple(interfaces), address=address, http_port=http_port, https_port=https_port,
        tls_cert=rel(cert) if cert else None, tls_key=rel(key) if key else None,
        hostname=p.get("hostname", "", str, "a host name", lambda v: v == "" or bool(_HOSTNAME.match(v))),
        methods=tuple(methods),
        session_s=float(p.get("session_s", 28800.0, *seconds)),
        idle_s=float(p.get("idle_s", 1800.0, *seconds)),
        valid_s=float(p.get("valid_s", 86400.0, *seconds)),
        desk_max_days=p.get("desk_max_days", 30, int, "days 1..366", lambda v: 1 <= v <= 366),
        devices_per_guest=p.get("devices_per_guest", 3, int, "1..20", lambda v: 1 <= v <= 20),
        ask_name=p.get("ask_name", True, bool, "true or false"),
        sweep_s=float(p.get("sweep_s", 5.0, (int, float), "seconds 0.1..300", lambda v: 0.1 <= v <= 300)),
        nft_table=p.get("nft_table", "edgeaudit_portal", str, "an nftables table name",
                        lambda v: bool(_NFT_NAME.match(v))),
        unit_notice=p.get("unit_notice", "", str, "text", lambda v: len(v) <= 500),
        sms=sms, desk_users=desk)


def _ipv4(v: str) -> bool:
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        return False
    return True


def _sms(doc: Any, problems: list[str], rel: Callable[[str], Path],
         section: type[_Section]) -> SmsConfig | None:
    s = section("portal.sms", doc, problems, {
        "url", "method", "headers", "body", "content_type", "timeout_s", "ca_file", "code_ttl_s",
        "code_tries", "resend_after_s", "sends_per_number_hour", "sends_per_device_hour",
        "fails_per_device_hour"})
    url = s.get("url", "", str, "an http:// or https:// URL",
                lambda v: urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname))
    if not url:
        s.bad("url", "is required")
        return None
    headers = s.get("headers", {}, dict, "a table of header names and text values",
                    lambda v: all(isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9-]{1,64}", k)
                                  and isinstance(x, str) and "\n" not in x and "\r" not in x
                                  for k, x in v.items()))
    ca = s.get("ca_file", "", str, "a path", bool)
    count = (int, "an integer >= 1", lambda v: v >= 1)
    return SmsConfig(
        url=url, method=s.get("method", "POST", str, '"GET" or "POST"', lambda v: v in ("GET", "POST")),
        headers=tuple(sorted(headers.items())), body=s.get("body", "", str, "a text template"),
        content_type=s.get("content_type", "application/json", str, "a media type",
                           lambda v: bool(re.fullmatch(r"[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+(;.*)?", v))),
        timeout_s=float(s.get("timeout_s", 10.0, (int, float), "seconds 1..60", lambda v: 1 <= v <= 60)),
        ca_file=rel(ca) if ca else None,
        code_ttl_s=s.get("code_ttl_s", 300, int, "seconds 30..3600", lambda v: 30 <= v <= 3600),
        code_tries=s.get("code_tries", 5, int, "1..10", lambda v: 1 <= v <= 10),
        resend_after_s=s.get("resend_after_s", 60, int, "seconds 0..3600", lambda v: 0 <= v <= 3600),
        sends_per_number_hour=s.get("sends_per_number_hour", 5, *count),
        sends_per_device_hour=s.get("sends_per_device_hour", 10, *count),
        fails_per_device_hour=s.get("fails_per_device_hour", 20, *count))


def _desk_users(p: _Section, problems: list[str]) -> tuple[DeskUser, ...]:
    raw = p.table.get("desk_users", [])
    if not isinstance(raw, list) or not all(isinstance(u, dict) for u in raw):
        p.bad("desk_users", "must be a list of tables ([[portal.desk_users]] name, password_hash)")
        return ()
    users: list[DeskUser] = []
    for n, u in enumerate(raw):
        name, hashed = u.get("name"), u.get("password_hash")
        extra = sorted(set(u) - {"name", "password_hash"})
        if extra:
            p.bad(f"desk_users[{n}]", f"unknown key(s) {', '.join(extra)}")
        if not isinstance(name, str) or not _USER.match(name):
            p.bad(f"desk_users[{n}].name", "must be 1-64 letters, digits, _ . @ -")
            continue
        if not isinstance(hashed, str) or not hashed.startswith("scrypt$") or hashed.count("$") != 5:
            p.bad(f"desk_users[{n}].password_hash",
                  "must be a hash from `edgeaudit-agent portal hash-password` (never the password)")
            continue
        if any(x.name == name for x in users):
            p.bad(f"desk_users[{n}].name", f"{name} appears twice")
            continue
        users.append(DeskUser(name, hashed))
    return tuple(users)
