"""The captive portal's admissions → network-level sessions with source ``portal``.

Input: the ``login`` records the portal itself writes (``source`` = ``portal``; it runs in
the agent's supervisor, which also puts them into every capture worker's inbox):
- ``event`` = ``login``: a guest was admitted: ``account`` (the guest account), ``ip``,
  ``mac``, ``calling_station``, ``session_id`` (the portal's session id), ``ts`` = the
  admission time. It opens a session holding ``ip`` from ``ts``. A login on an address that
  another portal session holds supersedes that one there (the address changed hands, or the
  guest was admitted again); a repeated login for a session already open is ignored
  (counter ``portal_duplicate_login``). A login without an address binds nothing
  (``portal_login_without_address``): the portal admits addresses, so it should not happen.
- ``event`` = ``logout``: the admission ended (time up, idle, the logout page): the session
  with that id ends at ``ts``. A logout matching no open session (the worker started after
  the admission, or a later admission superseded it) is counted
  (``portal_logout_without_login``); when it carries ``ip`` and ``duration`` and the table
  has no portal history on that address then, it gives the admission's address history,
  as a RADIUS Stop does.

Why no records come out: the portal already wrote its login and logout records (they go to
the spool from the supervisor); the table only learns who held the address when, so that
``stamp`` names the guest on its sessions, HTTP requests and alerts. Its sessions are
``NetSession(emits=False)``: ``Bindings`` neither counts nor returns their records.

Keys: ``("portal", "sid", session_id)``; without a session id ``("portal", "mac", mac)``,
else ``("portal", "ip", ip)``. A logout is matched by the same key.

Login records of every other source are not read: they are the table's own output (or
another worker's), and learning from them would count every binding twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.identity.fields import address, normalize_mac, number, text
from agent.identity.state import Bindings, NetSession, SessionKey


class PortalSource:
    """Feeds the portal's ``login`` records into the bindings (see the module docstring)."""

    def __init__(self, bindings: Bindings) -> None:
        self.b = bindings

    def observe(self, rec: Mapping[str, Any], ts: float) -> None:
        """Learn one portal login/logout; there is never a record to emit (module docstring)."""
        event = text(rec, "event")
        ip = address(rec, "ip")
        mac = normalize_mac(text(rec, "mac"))
        sid = text(rec, "session_id")
        key = _key(sid, mac, ip)
        counters = self.b.counters
        if event == "login":
            counters["portal_logins"] += 1
            if ip is None or key is None:
                counters["portal_login_without_address"] += 1
                return
            if self.b.session(key) is not None:
                counters["portal_duplicate_login"] += 1
                return
            self.b.open(
                NetSession(
                    key=key,
                    source="portal",
                    account=text(rec, "account"),
                    ip=ip,
                    mac=mac,
                    calling_station=text(rec, "calling_station") or mac,
                    session_id=sid,
                    since=ts,
                    emits=False,
                )
            )
        elif event == "logout":
            counters["portal_logouts"] += 1
            sess = self.b.session(key) if key is not None else None
            if sess is not None:
                self.b.close(sess, ts)
                return
            counters["portal_logout_without_login"] += 1
            duration = number(rec, "duration")
            if ip is None or duration is None or duration < 0:
                return
            since = ts - duration
            addr = self.b.peek(ip)
            if addr is not None and any(
                iv.source == "portal" and iv.since < ts and since < iv.end() for iv in addr.intervals
            ):
                # the table saw portal logins on the address then (this session was superseded
                # or evicted): what it learnt from them is better than a reconstruction
                return
            self.b.add_past(ip, since, ts, text(rec, "account"), mac, "portal")


def _key(sid: str | None, mac: str | None, ip: str | None) -> SessionKey | None:
    if sid is not None:
        return ("portal", "sid", sid)
    if mac is not None:
        return ("portal", "mac", mac)
    return ("portal", "ip", ip) if ip is not None else None
