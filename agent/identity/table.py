"""``IdentityTable``: the one object the pipeline talks to (see the package docstring).

Call order per record: ``observe(rec)`` first (it may bind the record's own login, e.g. an
HTTP Basic request), then ``stamp(rec)``; emit the records ``observe`` returned. Call
``expire(ts)`` from a timer while no records arrive, so idle lease ends still give logouts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from agent.identity.apps import AppLogins
from agent.identity.dhcp import DhcpSource
from agent.identity.fields import address, normalize_mac, record_ts, text
from agent.identity.history import Identity, best_at
from agent.identity.portal import PortalSource
from agent.identity.pppoe import PppoeSource
from agent.identity.radius import RadiusSource
from agent.identity.roster import Roster
from agent.identity.state import COUNTER_NAMES, Bindings
from wire.limits import MAX_TS, MIN_TS
from wire.records import RECORDS

#: Addresses with history kept: a unit's gateway serves thousands of hosts; 65,536 addresses
#: at the default interval limit cost well under 100 MB in the worst case.
DEFAULT_MAX_ENTRIES: Final = 65_536
#: Intervals kept per address: a day of hourly DHCP reassignment plus app logins; older ones
#: only answer questions about records stamped long ago, which are already stamped.
DEFAULT_MAX_INTERVALS_PER_IP: Final = 64
#: The lowest interval limit accepted: each address has at most 4 open network sessions (one
#: per network source), so this leaves room for closed history and application logins.
MIN_INTERVALS_PER_IP: Final = 8
#: Lease assumed when a DHCP ACK has no lease time (option 51 missing): one day, the common
#: server default; a shorter guess would drop the account of hosts that renew rarely.
DEFAULT_DHCP_LEASE: Final = 86_400.0
#: How long an application login keeps naming the address's account after it was last seen:
#: a working day. Longer would outlive most address reuse on networks without DHCP in view.
DEFAULT_APP_LOGIN_TTL: Final = 8 * 3600.0

#: Record types ``stamp`` fills ``account`` on (SCHEMA.md: the ones with an ``account`` field
#: taken from the identity table).
STAMPED_TYPES: Final = frozenset(name for name, m in RECORDS.items() if m.stamped)
_APP_TYPES: Final = frozenset(name for name, m in RECORDS.items() if m.app_user is not None)
_OBSERVED_TYPES: Final = _APP_TYPES | {"radius", "dhcp", "pppoe", "login"}


class IdentityTable:
    """Address → (account, MAC, source, since) over time, from the records of other decoders."""

    def __init__(
        self,
        *,
        roster: Roster | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_intervals_per_ip: int = DEFAULT_MAX_INTERVALS_PER_IP,
        dhcp_default_lease: float = DEFAULT_DHCP_LEASE,
        app_login_ttl: float = DEFAULT_APP_LOGIN_TTL,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        if max_intervals_per_ip < MIN_INTERVALS_PER_IP:
            raise ValueError(f"max_intervals_per_ip must be at least {MIN_INTERVALS_PER_IP}")
        for name, value in (("dhcp_default_lease", dhcp_default_lease), ("app_login_ttl", app_login_ttl)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.roster = roster if roster is not None else Roster()
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._b = Bindings(
            max_entries=max_entries,
            max_intervals_per_ip=max_intervals_per_ip,
            app_login_ttl=app_login_ttl,
            counters=self.counters,
        )
        self._radius = RadiusSource(self._b)
        self._dhcp = DhcpSource(self._b, self.roster, dhcp_default_lease)
        self._pppoe = PppoeSource(self._b)
        self._portal = PortalSource(self._b)
        self._apps = AppLogins(self._b)

    def observe(self, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Learn from any record; return the ``login`` records (login/logout) it causes.

        Leases that ended by the record's ``ts`` are expired first, so their logouts come
        before anything the record itself causes. The portal's ``login`` records cause none
        (the portal wrote them); other ``login`` records are ignored.
        """
        self.counters["records_seen"] += 1
        ts = rec.get("ts")
        if type(ts) is not float or not MIN_TS <= ts <= MAX_TS:  # the common case in one test
            ts = record_ts(rec)
            if ts is None:
                self.counters["records_malformed"] += 1
                return []
        due = self._b.next_expiry()
        out = self._b.expire(ts) if due is not None and due <= ts else []
        rtype = rec.get("type")
        if rtype not in _OBSERVED_TYPES:
            return out
        if rtype == "radius":
            out += self._radius.observe(rec, ts)
        elif rtype == "dhcp":
            out += self._dhcp.observe(rec, ts)
        elif rtype == "pppoe":
            out += self._pppoe.observe(rec, ts)
        elif rtype == "login":
            # only the portal's: every other login record is this table's own output (or a
            # peer's), and learning from it would bind everything twice
            if rec.get("source") == "portal":
                self._portal.observe(rec, ts)
        elif rtype in _APP_TYPES:
            assert isinstance(rtype, str)
            out += self._apps.observe(rtype, rec, ts)
        return out

    def pppoe_auth(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Feed one of the PPPoE decoder's ``auth_events()`` (see ``agent.identity.pppoe``);
        returns the login records it releases (an IPCP address completes a session's login)."""
        if event.get("event") == "ipcp":
            return self._pppoe.ipcp(event)
        self._pppoe.auth(event)
        return []

    def finish(self) -> list[dict[str, Any]]:
        """End of input: login records still held back (PPPoE sessions with no IPCP seen)."""
        return self._pppoe.finish()

    def expire(self, ts: float) -> list[dict[str, Any]]:
        """Logouts for the DHCP leases that ended at or before ``ts`` (dated at the lease end)."""
        return self._b.expire(ts)

    def lookup(self, ip: str, ts: float) -> Identity | None:
        """The interval that answers for ``ip`` at ``ts`` (priority: see ``history``), if any."""
        addr = self._b.peek(ip)
        iv = best_at(addr.intervals, ts) if addr is not None else None
        if iv is None:
            return None
        return Identity(account=iv.account, mac=iv.mac, source=iv.source, since=iv.since, until=iv.until)

    def account_at(self, ip: str, ts: float) -> str | None:
        """Who was behind ``ip`` at ``ts``.

        The best interval covering ``ts`` that names an account (priority: ``history``);
        when none does, the roster: the account of the MAC the covering interval knows,
        else of the address (a fixed address in the roster).
        """
        addr = self._b.peek(ip)
        iv = best_at(addr.intervals, ts) if addr is not None else None
        if iv is not None and iv.account is not None:
            return iv.account
        return self.roster.account_for(mac=iv.mac if iv is not None else None, ip=ip)

    def stamp(self, rec: dict[str, Any]) -> None:
        """Set ``account`` on a session/http/alert record from its ``src_ip`` at its ``ts``.

        Only when ``account`` is null (or absent). For a ``session`` record whose address
        gives no account, the roster's account for its ``src_mac`` is used: on a flat
        network the first frame's source MAC is the host's.
        """
        if rec.get("type") not in STAMPED_TYPES or rec.get("account") is not None:
            return
        if not self._b.knows_addresses and not len(self.roster):
            # nobody is known yet (no login source, no roster): the answer is null, found cheaply
            rec["account"] = None
            self.counters["stamped_unknown"] += 1
            return
        ip = address(rec, "src_ip")
        ts = rec.get("ts")
        if type(ts) is not float or not MIN_TS <= ts <= MAX_TS:
            ts = record_ts(rec)
        account = self.account_at(ip, ts) if ip is not None and ts is not None else None
        if account is None and rec.get("type") == "session":
            account = self.roster.account_for_mac(normalize_mac(text(rec, "src_mac")))
        rec["account"] = account
        self.counters["stamped" if account is not None else "stamped_unknown"] += 1
