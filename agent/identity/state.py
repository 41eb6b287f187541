"""The identity table's state: open network sessions, application logins, address history.

What: ``Bindings`` keeps
- ``NetSession`` objects, one per open network-level session (a RADIUS accounting session,
  a PPPoE session, a DHCP lease, a captive portal admission), keyed by their source's own key;
- per address (``Address``): the ``Interval`` history, the network session of each source
  currently holding it, and the open application logins;
and offers the few operations the source handlers (``radius``, ``dhcp``, ``pppoe``,
``portal``, ``apps``) are written in: ``open`` / ``close`` / ``renew`` a session, ``claim`` an address
for one, ``expire`` leases, ``app_login``, ``add_past``. Each returns the ``login`` records
it causes, so every login and logout goes through one place and is counted once. The
portal's sessions cause none (``emits`` false): the portal writes its own records.

Rules kept here (the package docstring says why):
- per address and source at most one open network session: a new one supersedes the old,
  which gets a logout at the new one's start (counter ``superseded``);
- a network session starting on an address, or ending there, ends the application logins
  open on it (no logout records: those logins never had one);
- application logins stay valid ``app_login_ttl`` seconds after they were last seen.

Limits (DESIGN.md, standard 3), each with a counter of what was dropped at it:
- ``max_entries`` addresses with history; the least recently updated goes with its history
  and application logins (``addresses_evicted``);
- ``max_entries`` open sessions: the oldest is forgotten by key (``sessions_evicted``), so
  its end (Stop, PADT, RELEASE, lease expiry) is no longer matched; it keeps holding its
  address until a new session of its source supersedes it there (a logout then);
- ``max_intervals_per_ip`` intervals per address: the earliest-ended closed one goes
  (``intervals_dropped``), see ``history.trim``;
- the expiry heap is rebuilt when it holds more than twice the sessions (renewals leave
  stale entries behind).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from agent.identity.history import Interval, best_at, trim
from agent.identity.login import NETWORK_SOURCES, Event, LoginSource, login_record

SessionKey = tuple[str, ...]  # (source, source-specific parts...)

#: Every counter the table keeps, present from the start so /metrics shows zeros.
COUNTER_NAMES: Final = (
    "records_seen",
    "records_malformed",
    "logins",
    "logouts",
    "superseded",
    "expired",
    "renewed",
    "app_logins_refreshed",
    "app_logins_anonymous_ignored",
    "radius_duplicate_start",
    "radius_interim_without_start",
    "radius_stop_without_start",
    "radius_nas_restart",
    "dhcp_reassigned",
    "dhcp_moved",
    "dhcp_released",
    "dhcp_release_without_lease",
    "dhcp_ack_without_address",
    "pppoe_padt_without_pads",
    "pppoe_auth_named",
    "pppoe_ipcp_addresses",
    "portal_logins",
    "portal_logouts",
    "portal_duplicate_login",
    "portal_login_without_address",
    "portal_logout_without_login",
    "stamped",
    "stamped_unknown",
    "addresses_evicted",
    "sessions_evicted",
    "intervals_dropped",
)


@dataclass(slots=True, eq=False)
class NetSession:
    """One open network-level session (RADIUS, PPPoE, DHCP lease, captive portal admission)."""

    key: SessionKey
    source: LoginSource
    account: str | None
    ip: str | None
    mac: str | None
    calling_station: str | None
    session_id: str | None
    since: float
    nas: str | None = None  # RADIUS: the NAS, whose Accounting-On/Off ends its sessions
    expires: float | None = None  # DHCP: the lease end
    interval: Interval | None = None  # its entry in the address history, while it holds one
    announced: bool = True  # its login record went out (PPPoE: held until IPCP names the address)
    # False: its source writes its login/logout records (the captive portal), the table only
    # keeps its history; open/close neither return nor count them
    emits: bool = True


class Address:
    """History and current holders of one address."""

    __slots__ = ("intervals", "net", "apps")

    def __init__(self) -> None:
        self.intervals: list[Interval] = []
        self.net: dict[str, NetSession] = {}  # source -> the session holding the address
        self.apps: dict[tuple[str, str], Interval] = {}  # (source, account) -> open app login


class Bindings:
    """See the module docstring."""

    def __init__(
        self, *, max_entries: int, max_intervals_per_ip: int, app_login_ttl: float, counters: dict[str, int]
    ) -> None:
        self.max_entries = max_entries
        self.max_intervals_per_ip = max_intervals_per_ip
        self.app_login_ttl = app_login_ttl
        self.counters = counters
        self._addrs: OrderedDict[str, Address] = OrderedDict()
        self._sessions: dict[SessionKey, NetSession] = {}
        self._by_mac: dict[tuple[str, str], SessionKey] = {}  # (source, mac) -> its session
        self._expiry: list[tuple[float, int, SessionKey]] = []  # (expires, seq, key), lazy
        self._seq = 0

    # --- addresses ----------------------------------------------------------------------------
    def peek(self, ip: str) -> Address | None:
        return self._addrs.get(ip)

    def address(self, ip: str) -> Address:
        """The address's entry, created if new; marks it most recently updated."""
        addr = self._addrs.get(ip)
        if addr is not None:
            self._addrs.move_to_end(ip)
            return addr
        addr = self._addrs[ip] = Address()
        if len(self._addrs) > self.max_entries:
            self._addrs.popitem(last=False)
            self.counters["addresses_evicted"] += 1
        return addr

    def _add_interval(self, addr: Address, iv: Interval) -> None:
        addr.intervals.append(iv)
        for gone in trim(addr.intervals, self.max_intervals_per_ip):
            self.counters["intervals_dropped"] += 1
            if gone.is_closed():
                continue
            for k, app in list(addr.apps.items()):
                if app is gone:
                    del addr.apps[k]
            for sess in addr.net.values():
                if sess.interval is gone:
                    sess.interval = None

    def add_past(
        self, ip: str, since: float, until: float, account: str | None, mac: str | None, source: str
    ) -> None:
        """Record a closed interval learnt after the fact (a RADIUS Stop whose Start was missed)."""
        self._add_interval(self.address(ip), Interval(since, account, mac, source, until=max(since, until)))

    def network_holder(self, ip: str, ts: float) -> Interval | None:
        """The best network-level interval of ``ip`` covering ``ts`` (for an app login's MAC)."""
        addr = self._addrs.get(ip)
        if addr is None:
            return None
        return best_at([iv for iv in addr.intervals if iv.source in NETWORK_SOURCES], ts)

    def _end_apps(self, addr: Address, ts: float) -> None:
        """A network session started or ended at ``ts``: app logins begun by then end there."""
        for k, iv in list(addr.apps.items()):
            if iv.since <= ts:
                iv.until = min(ts, iv.end())
                del addr.apps[k]

    # --- network sessions ---------------------------------------------------------------------
    @property
    def knows_addresses(self) -> bool:
        """Some address has (or had) a holder: without any, no lookup can answer."""
        return bool(self._addrs)

    def session(self, key: SessionKey) -> NetSession | None:
        return self._sessions.get(key)

    def session_by_mac(self, source: str, mac: str) -> NetSession | None:
        key = self._by_mac.get((source, mac))
        return self._sessions.get(key) if key is not None else None

    def sessions(self) -> list[NetSession]:
        return list(self._sessions.values())

    def open(self, sess: NetSession, *, announce: bool = True) -> list[dict[str, Any]]:
        """Start a session: logouts of the ones it supersedes, then its login record (unless
        ``announce`` is false: then `announce` writes it later, when more is known)."""
        out: list[dict[str, Any]] = []
        self._sessions[sess.key] = sess
        if sess.mac is not None:
            self._by_mac[(sess.source, sess.mac)] = sess.key
        if len(self._sessions) > self.max_entries:
            oldest = next(iter(self._sessions.values()))
            self._forget(oldest)
            self.counters["sessions_evicted"] += 1
        if sess.expires is not None:
            self._push_expiry(sess)
        if sess.ip is not None:
            out += self.claim(sess, sess.ip, sess.since)
        if not announce:
            sess.announced = False
        elif sess.emits:
            out.append(self.announce(sess))
        return out

    def announce(self, sess: NetSession) -> dict[str, Any]:
        """The login record of `sess`, dated at its start, with what is known of it now."""
        sess.announced = True
        self.counters["logins"] += 1
        return self._record(sess, "login", sess.since)

    def claim(self, sess: NetSession, ip: str, since: float) -> list[dict[str, Any]]:
        """``sess`` holds ``ip`` from ``since``: supersede the source's previous holder."""
        out: list[dict[str, Any]] = []
        sess.ip = ip
        addr = self.address(ip)
        old = addr.net.get(sess.source)
        if old is not None and old is not sess:
            self.counters["superseded"] += 1
            logout = self.close(old, since)
            if old.emits:
                out.append(logout)
        self._end_apps(addr, since)
        iv = Interval(since, sess.account, sess.mac, sess.source, expires=sess.expires)
        sess.interval = iv
        addr.net[sess.source] = sess
        self._add_interval(addr, iv)
        return out

    def close(
        self, sess: NetSession, ts: float, *, duration: float | None = None, account: str | None = None
    ) -> dict[str, Any]:
        """End a session at ``ts``; its logout record (``duration`` defaults to ts - since).

        For a session that does not emit (``emits`` false) the record is not counted and the
        caller drops it."""
        if account is not None and sess.account is None:
            sess.account = account
        self._forget(sess)
        ts = max(ts, sess.since)
        if sess.ip is not None:
            addr = self._addrs.get(sess.ip)
            if addr is not None and addr.net.get(sess.source) is sess:
                del addr.net[sess.source]
                self._end_apps(addr, ts)
        if sess.interval is not None:
            sess.interval.until = ts
            if sess.interval.account is None:
                sess.interval.account = sess.account
            sess.interval = None
        if sess.emits:
            self.counters["logouts"] += 1
        return self._record(sess, "logout", ts, ts - sess.since if duration is None else duration)

    def _forget(self, sess: NetSession) -> None:
        if self._sessions.get(sess.key) is sess:
            del self._sessions[sess.key]
        if sess.mac is not None and self._by_mac.get((sess.source, sess.mac)) == sess.key:
            del self._by_mac[(sess.source, sess.mac)]

    def renew(self, sess: NetSession, expires: float) -> None:
        """Extend a lease (a DHCP renewal): no new login."""
        sess.expires = expires
        if sess.interval is not None:
            sess.interval.expires = expires
        self._push_expiry(sess)
        self.counters["renewed"] += 1

    def _push_expiry(self, sess: NetSession) -> None:
        assert sess.expires is not None
        if len(self._expiry) > 2 * len(self._sessions) + 64:
            self._expiry = [(e, q, k) for e, q, k in self._expiry if self._due(k, e)]
            heapq.heapify(self._expiry)
        self._seq += 1
        heapq.heappush(self._expiry, (sess.expires, self._seq, sess.key))

    def _due(self, key: SessionKey, expires: float) -> bool:
        sess = self._sessions.get(key)
        return sess is not None and sess.expires == expires

    def next_expiry(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def expire(self, ts: float) -> list[dict[str, Any]]:
        """Close every session whose lease ended at or before ``ts``, at its lease end."""
        out: list[dict[str, Any]] = []
        while self._expiry and self._expiry[0][0] <= ts:
            expires, _, key = heapq.heappop(self._expiry)
            if self._due(key, expires):
                self.counters["expired"] += 1
                out.append(self.close(self._sessions[key], expires))
        return out

    def _record(
        self, sess: NetSession, event: Event, ts: float, duration: float | None = None
    ) -> dict[str, Any]:
        return login_record(
            ts=ts,
            event=event,
            account=sess.account,
            ip=sess.ip,
            mac=sess.mac,
            calling_station=sess.calling_station,
            source=sess.source,
            session_id=sess.session_id,
            duration=duration,
        )

    # --- application logins -------------------------------------------------------------------
    def app_login(
        self, ip: str, account: str, source: LoginSource, ts: float, session_id: str | None
    ) -> list[dict[str, Any]]:
        """An application login succeeded: a login record the first time the binding appears."""
        addr = self.address(ip)
        key = (source, account)
        valid_until = ts + self.app_login_ttl
        iv = addr.apps.get(key)
        if iv is not None:
            if ts < iv.end():  # the same binding seen again: extend it
                iv.since = min(iv.since, ts)
                iv.expires = max(iv.expires or valid_until, valid_until)
                self.counters["app_logins_refreshed"] += 1
                return []
            iv.until = iv.end()  # lapsed: it ended when its TTL ran out
            del addr.apps[key]
        holder = self.network_holder(ip, ts)
        mac = holder.mac if holder is not None else None
        iv = Interval(ts, account, mac, source, expires=valid_until)
        # Records arrive out of time order: a network login on this address after ts ends it.
        later = [n.since for n in addr.intervals if n.source in NETWORK_SOURCES and n.since > ts]
        if later:
            iv.until = min(later)
        else:
            addr.apps[key] = iv
        self._add_interval(addr, iv)
        self.counters["logins"] += 1
        return [
            login_record(
                ts=ts,
                event="login",
                account=account,
                ip=ip,
                mac=mac,
                calling_station=None,
                source=source,
                session_id=session_id,
            )
        ]
