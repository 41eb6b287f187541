"""RADIUS accounting (RFC 2866) → network-level sessions with source ``radius``.

Which records bind (``radius`` records, one per request/response exchange):
- ``Accounting-Request`` with ``status_type``
  - ``Start`` (RFC 2866 §5.1, Acct-Status-Type 1): login. account = User-Name,
    ip = Framed-IP-Address, mac = Calling-Station-Id when it is a MAC (802.1X and Wi-Fi
    NASes put the client's MAC there, RFC 3580 §3.21) else the MAC of the DHCP lease on that
    address, calling_station = Calling-Station-Id (a phone number on dial-up/mobile NASes)
    or the MAC, session_id = Acct-Session-Id (RFC 2866 §5.5). A repeated Start for an open
    session (a retransmission) is ignored.
  - ``Interim-Update`` (3): refreshes an open session (and binds Framed-IP-Address if the
    Start had none). For an unknown session (the capture began after the Start) it is the
    login, dated back by Acct-Session-Time (§5.7) when present.
  - ``Stop`` (2): logout; duration = Acct-Session-Time if given, else the time since the
    login. A Stop without a Start still gives the logout record (the regulation wants it)
    and, with Acct-Session-Time, the address history of the session.
  - ``Accounting-On`` / ``Accounting-Off`` (7, 8; RFC 2866 §5.1): the NAS (re)started or is
    shutting down, so all its open sessions end (logout each).
- Access-Request/Accept/Reject exchanges bind nothing. An Access-Accept proves credentials,
  but it has no end event: a binding made from it could only end by being superseded. The
  Accounting Start that follows carries the same user and address plus a session id and
  is paired with a Stop. A NAS that sends no accounting should be configured to.

Sessions are keyed by (NAS, Acct-Session-Id): the id is unique per NAS (RFC 2866 §5.5). The
NAS is NAS-IP-Address, else the record's source address (the NAS sends accounting). Without
an Acct-Session-Id the key is (NAS, User-Name, Framed-IP-Address).

Accounting-Request records are used whatever their ``result``: accounting has no negative
answer, and a missing Accounting-Response (lost, or a one-sided capture) does not undo what
the NAS reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.identity.fields import address, normalize_mac, number, text
from agent.identity.login import login_record
from agent.identity.state import Bindings, NetSession


class RadiusSource:
    """Feeds ``radius`` records into the bindings (see the module docstring)."""

    def __init__(self, bindings: Bindings) -> None:
        self.b = bindings

    def observe(self, rec: Mapping[str, Any], ts: float) -> list[dict[str, Any]]:
        if text(rec, "code") != "Accounting-Request":
            return []
        status = text(rec, "status_type")
        nas = address(rec, "nas_ip") or address(rec, "src_ip")
        if status in ("Accounting-On", "Accounting-Off"):
            return self._nas_restart(nas, ts)
        username = text(rec, "username")
        ip = address(rec, "framed_addr")
        csid = text(rec, "calling_station_id")
        sid = text(rec, "acct_session_id")
        session_time = number(rec, "session_time")
        key = ("radius", nas or "", sid or "", "" if sid else f"{username or ''}\0{ip or ''}")
        sess = self.b.session(key)
        counters = self.b.counters

        if status == "Start":
            if sess is not None:
                counters["radius_duplicate_start"] += 1
                return []
            return self.b.open(self._new(key, username, ip, csid, sid, nas, ts))

        if status == "Interim-Update":
            if sess is not None:
                if sess.account is None and username is not None:
                    sess.account = username
                if ip is not None and sess.ip is None:
                    return self.b.claim(sess, ip, ts)
                return []
            counters["radius_interim_without_start"] += 1
            since = ts - session_time if session_time is not None else ts
            return self.b.open(self._new(key, username, ip, csid, sid, nas, since))

        if status == "Stop":
            if sess is not None:
                return [self.b.close(sess, ts, duration=session_time, account=username)]
            counters["radius_stop_without_start"] += 1
            mac, calling = self._mac(ip, csid, ts)
            if ip is not None and session_time is not None:
                self.b.add_past(ip, ts - session_time, ts, username, mac, "radius")
            counters["logouts"] += 1
            return [
                login_record(
                    ts=ts,
                    event="logout",
                    account=username,
                    ip=ip,
                    mac=mac,
                    calling_station=calling,
                    source="radius",
                    session_id=sid,
                    duration=session_time,
                )
            ]
        return []

    def _mac(self, ip: str | None, csid: str | None, ts: float) -> tuple[str | None, str | None]:
        """(mac, calling_station) for a session: from Calling-Station-Id, else the DHCP lease."""
        mac = normalize_mac(csid)
        if mac is None and ip is not None:
            holder = self.b.network_holder(ip, ts)
            mac = holder.mac if holder is not None else None
        return mac, csid if csid is not None else mac

    def _new(
        self,
        key: tuple[str, ...],
        username: str | None,
        ip: str | None,
        csid: str | None,
        sid: str | None,
        nas: str | None,
        since: float,
    ) -> NetSession:
        mac, calling = self._mac(ip, csid, since)
        return NetSession(
            key=key,
            source="radius",
            account=username,
            ip=ip,
            mac=mac,
            calling_station=calling,
            session_id=sid,
            since=since,
            nas=nas,
        )

    def _nas_restart(self, nas: str | None, ts: float) -> list[dict[str, Any]]:
        self.b.counters["radius_nas_restart"] += 1
        return [self.b.close(s, ts) for s in self.b.sessions() if s.source == "radius" and s.nas == nas]
