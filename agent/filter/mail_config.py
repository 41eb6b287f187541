"""``[mail]`` in agent.toml: the mail policy's settings (``agent.filter.mail_policy``), checked
like every other section.

Keys (defaults in brackets; ``deploy/agent.toml`` documents each one for the admin). A unit that
writes no ``[mail]`` gets every default: the policy runs, in ``run`` as in ``replay``.

``enabled`` [true]: false turns the mail policy off.
``domains`` [[]]: the unit's own mail domains (a subdomain counts as the unit's); without them
the envelope-domain check is off, and an account name without ``@`` matches a sender of any
domain. ``inside`` [RFC 1918, RFC 6598, loopback, link-local, IPv6 ULA, and ``[unit]
ip_ranges``]: the networks whose clients' mail is checked (mail leaving the unit; mail the
world delivers to the unit's servers is not). ``relays`` [``[unit] mail_servers``]: the unit's
own mail servers: their relaying is not counted per host, and they may greet with the names of
``server_names`` [[]] (the mail servers' host names: a HELO naming one of them, or one of the
unit's domains, from any other host claims another host). ``severity`` [4]: the alerts' severity
(1..5).

What each finding does: ``"off"``, ``"alert"`` or ``"block"`` (inline mode stops the mail and
resets the connection; elsewhere a ``block`` is an alert with ``blocked: false``):
``rate`` ["block"]: a limit below passed; ``envelope_domain`` ["alert"]: the envelope sender's
domain is not one of ``domains``; ``mailfrom_not_account`` ["alert"]: the envelope sender is not
the SMTP AUTH account's address; ``from_not_account`` ["alert"]: the ``From:`` address is not the
account's; ``helo`` ["alert"]: the HELO/EHLO claims another host; ``display_name`` ["alert"]: the
``From:`` display name holds another address than the one the mail is from.

``[mail.sender]``, ``[mail.account]``, ``[mail.host]``: the limits per envelope sender address,
per SMTP AUTH account and per inside host (client address): ``messages_per_minute`` [100],
``recipients_per_minute`` [500], ``messages_per_hour`` [1000], ``recipients_per_hour`` [5000];
0 = no limit.

``[mail.senders]``: the addresses an account may send as besides its own, e.g.
``alice = ["office@unit.example.cn"]`` (a shared mailbox): what Postfix's
``smtpd_sender_login_maps`` would list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from agent.config import _Section

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ACTIONS: Final = ("off", "alert", "block")
#: The findings, each with its own action key (the alert's reason names them).
CHECKS: Final = ("rate", "envelope_domain", "mailfrom_not_account", "from_not_account", "helo",
                 "display_name")
_DEFAULT_ACTIONS: Final = {"rate": "block", "envelope_domain": "alert", "mailfrom_not_account": "alert",
                           "from_not_account": "alert", "helo": "alert", "display_name": "alert"}
SCOPES: Final = ("sender", "account", "host")
LIMIT_KEYS: Final = ("messages_per_minute", "recipients_per_minute", "messages_per_hour",
                     "recipients_per_hour")
#: A unit's inside networks as a gateway sees them (Zeek's Site::local_nets; the same list as the
#: SSH decoder's direction): RFC 1918, shared address space (RFC 6598), loopback, link-local, ULA.
DEFAULT_INSIDE: Final = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
                         "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128")
_INSIDE_NETS: Final[tuple[Network, ...]] = tuple(ipaddress.ip_network(n) for n in DEFAULT_INSIDE)
MAX_LIST: Final = 1024  # entries in any list of [mail] (domains, networks, relays, an account's senders)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z"  # compiled on first use (re caches it): not at start


# (NamedTuples, not dataclasses: every agent process and replay imports this module, and a
# dataclass's generated methods cost a millisecond or two at each start)
class Limits(NamedTuple):
    """One scope's limits (0 = none)."""

    messages_per_minute: int = 100
    recipients_per_minute: int = 500
    messages_per_hour: int = 1000
    recipients_per_hour: int = 5000


class MailConfig(NamedTuple):
    """The policy's settings (module docstring: the keys)."""

    enabled: bool = True
    domains: tuple[str, ...] = ()
    inside: tuple[Network, ...] = _INSIDE_NETS
    relays: tuple[str, ...] = ()
    server_names: tuple[str, ...] = ()
    severity: int = 4
    actions: tuple[tuple[str, str], ...] = tuple(_DEFAULT_ACTIONS.items())
    sender: Limits = Limits()
    account: Limits = Limits()
    host: Limits = Limits()
    senders: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # whether `inside` / `relays` were written (else ``with_unit`` fills them from [unit])
    inside_given: bool = False
    relays_given: bool = False

    def action(self, check: str) -> str:
        return dict(self.actions)[check]

    def limits(self, scope: str) -> Limits:
        lim: Limits = getattr(self, scope)
        return lim

    def with_unit(self, profile: dict[str, Any] | None) -> MailConfig:
        """The defaults that come from the unit profile ([unit]): ``ip_ranges`` are inside too,
        ``mail_servers`` are the relays, unless [mail] names its own."""
        if not profile:
            return self
        out = self
        if not self.inside_given:
            extra = []
            for n in profile.get("ip_ranges") or []:
                try:
                    extra.append(ipaddress.ip_network(str(n), strict=False))
                except ValueError:
                    continue
            if extra:
                out = out._replace(inside=out.inside + tuple(extra))
        if not self.relays_given:
            relays = tuple(_canonical_ip(str(a)) for a in profile.get("mail_servers") or [])
            out = out._replace(relays=tuple(a for a in relays if a))
        return out


DEFAULT: Final = MailConfig()


def domain_name(text: str) -> str | None:
    """A mail domain in its canonical form: lower case, no trailing dot, IDNA (punycode) for a
    non-ASCII name; None when it is not a domain name."""
    d = text.strip().rstrip(".").lower()
    if not d.isascii():
        try:
            d = d.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return d if re.match(_DOMAIN, d) else None


def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _networks(v: Any) -> bool:
    if not isinstance(v, list) or len(v) > MAX_LIST:
        return False
    for n in v:
        try:
            ipaddress.ip_network(n, strict=False)
        except (TypeError, ValueError):
            return False
    return True


def _str_list(v: Any, item: Callable[[str], bool]) -> bool:
    return isinstance(v, list) and len(v) <= MAX_LIST and all(isinstance(x, str) and item(x) for x in v)


def _addresses(v: Iterable[str]) -> tuple[str, ...]:
    return tuple(a.strip().lower() for a in v)


def _address(a: str) -> bool:
    local, at, dom = a.strip().rpartition("@")
    return bool(at and local and domain_name(dom))


def parse_mail(doc: Any, problems: list[str], rel: Callable[[str], Path],
               section: type[_Section]) -> MailConfig:
    """``[mail]`` checked (problems appended as ``[mail].key: ...``); the defaults when absent.

    ``rel`` is unused ([mail] names no files) but kept for the sections' common signature."""
    if doc is None:
        return DEFAULT
    m = section("mail", doc, problems, {"enabled", "domains", "inside", "relays", "server_names", "severity",
                                        *CHECKS, *SCOPES, "senders"})
    domains = m.get("domains", [], list, "a list of domain names",
                    lambda v: _str_list(v, lambda x: domain_name(x) is not None))
    inside = m.get("inside", list(DEFAULT_INSIDE), list, "a list of networks (CIDR)", _networks)
    relays = m.get("relays", [], list, "a list of IP addresses",
                   lambda v: _str_list(v, lambda x: _canonical_ip(x) is not None))
    names = m.get("server_names", [], list, "a list of host names",
                  lambda v: _str_list(v, lambda x: domain_name(x) is not None))
    actions = tuple((c, m.get(c, _DEFAULT_ACTIONS[c], str, f"one of {', '.join(ACTIONS)}",
                              lambda v: v in ACTIONS)) for c in CHECKS)
    scopes = {s: _limits(m.table.get(s), s, problems, section) for s in SCOPES}
    senders = _senders(m.table.get("senders"), problems, section)
    return MailConfig(
        enabled=m.get("enabled", True, bool, "true or false"),
        domains=tuple(dict.fromkeys(d for x in domains if (d := domain_name(x)) is not None)),
        inside=tuple(ipaddress.ip_network(n, strict=False) for n in inside),
        relays=tuple(dict.fromkeys(a for x in relays if (a := _canonical_ip(x)) is not None)),
        server_names=tuple(dict.fromkeys(d for x in names if (d := domain_name(x)) is not None)),
        severity=m.get("severity", 4, int, "an integer 1..5", lambda v: 1 <= v <= 5),
        actions=actions, sender=scopes["sender"], account=scopes["account"], host=scopes["host"],
        senders=senders, inside_given="inside" in m.table, relays_given="relays" in m.table)


def _limits(doc: Any, scope: str, problems: list[str], section: type[_Section]) -> Limits:
    if doc is None:
        return Limits()
    s = section(f"mail.{scope}", doc, problems, set(LIMIT_KEYS))
    base = Limits()
    got = {k: s.get(k, getattr(base, k), int, "an integer >= 0 (0 = no limit)", lambda v: 0 <= v <= 10**9)
           for k in LIMIT_KEYS}
    return Limits(**got)


def _senders(doc: Any, problems: list[str],
             section: type[_Section]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if doc is None:
        return ()
    if not isinstance(doc, dict):
        problems.append("[mail.senders]: must be a table (account = [addresses])")
        return ()
    s = section("mail.senders", doc, problems, set(doc))
    out: list[tuple[str, tuple[str, ...]]] = []
    for account in sorted(doc):
        addrs = s.get(account, [], list, "a list of mail addresses", lambda v: _str_list(v, _address))
        if addrs:
            out.append((account.strip().lower(), _addresses(addrs)))
    return tuple(out)
