"""PPPoE sessions (RFC 2516) → network-level sessions with source ``pppoe``.

Input: ``pppoe`` records, one per discovery or termination packet.
- ``PADS`` (RFC 2516 §5.4, access concentrator → host) with a non-zero SESSION_ID: login.
  mac = calling_station = the host's MAC (the PADS's destination), session_id =
  str(SESSION_ID), account = the record's ``username`` when the decoder has one. A session
  id of zero means the concentrator refused (§5.4) and binds nothing; a repeated PADS is a
  retransmission.
- ``PADT`` (§5.5, either side): logout, duration = time since the PADS. The session is found
  by (SESSION_ID, host MAC), trying both addresses of the packet. Its ``username`` fills the
  account if the login had none. A PADT for a session whose PADS was not seen still gives a
  logout (duration null, ``pppoe_padt_without_pads``); the host is the side that is not a
  known concentrator (the sender of a PADO or PADS), or null if that cannot be told.
- Any other pppoe record with a username for an open session fills its account.
- The PPPoE decoder's session-stage events (``agent.protocols.pppoe``, ``auth_events()``:
  plain dicts, not records), given to ``IdentityTable.pppoe_auth``: a successful PAP/CHAP
  authentication fills the account of the open session; an IPCP Configure-Ack sent to the
  host (RFC 1332 §3.3) gives it its address, which is bound from then on.
- The login record is held back from the PADS until IPCP names the address, so that it
  carries the account (PAP/CHAP come first, RFC 1661 §3.2 phases) and the address the
  regulation asks for; a session that ends (PADT) or a capture that ends (``finish``)
  before any IPCP writes it with what is known. It is dated at the PADS either way.

Addresses: discovery carries none; IPCP (above) or, on a BRAS, the RADIUS accounting for
the same session binds it. Limit: ``MAX_CONCENTRATORS`` MACs remembered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agent.identity.fields import normalize_mac, number, text
from agent.identity.login import login_record
from agent.identity.state import Bindings, NetSession

#: Access concentrator MACs remembered (a site has a handful; a flood of fake PADOs must not
#: grow memory): the oldest is forgotten first.
MAX_CONCENTRATORS: Final = 1024


class PppoeSource:
    """Feeds ``pppoe`` records into the bindings (see the module docstring)."""

    def __init__(self, bindings: Bindings) -> None:
        self.b = bindings
        self._concentrators: dict[str, None] = {}  # insertion-ordered set

    def observe(self, rec: Mapping[str, Any], ts: float) -> list[dict[str, Any]]:
        code = text(rec, "code")
        src = normalize_mac(text(rec, "src_mac"))
        dst = normalize_mac(text(rec, "dst_mac"))
        sid_num = number(rec, "session_id")
        sid = str(int(sid_num)) if sid_num is not None and sid_num > 0 else None
        username = text(rec, "username")
        if code in ("PADO", "PADS") and src is not None:
            self._remember(src)
        if sid is None:
            return []
        if code == "PADS":
            if dst is None:
                return []
            sess = self.b.session(("pppoe", dst, sid))
            if sess is not None:
                if sess.account is None:
                    sess.account = username
                return []
            return self.b.open(
                NetSession(
                    key=("pppoe", dst, sid),
                    source="pppoe",
                    account=username,
                    ip=None,
                    mac=dst,
                    calling_station=dst,
                    session_id=sid,
                    since=ts,
                ),
                announce=False,  # the login waits for IPCP's address (and PAP/CHAP's account)
            )
        found = self._find(sid, src, dst)
        if code == "PADT":
            if found is not None:
                out = [] if found.announced else [self.b.announce(found)]
                return out + [self.b.close(found, ts, account=username)]
            return [self._unmatched_padt(ts, sid, src, dst, username)]
        if found is not None and found.account is None:
            found.account = username
        return []

    def _find(self, sid: str, *macs: str | None) -> NetSession | None:
        for mac in macs:
            if mac is not None:
                sess = self.b.session(("pppoe", mac, sid))
                if sess is not None:
                    return sess
        return None

    def _remember(self, mac: str) -> None:
        self._concentrators.pop(mac, None)
        self._concentrators[mac] = None
        if len(self._concentrators) > MAX_CONCENTRATORS:
            del self._concentrators[next(iter(self._concentrators))]

    def _unmatched_padt(
        self, ts: float, sid: str, src: str | None, dst: str | None, username: str | None
    ) -> dict[str, Any]:
        host: str | None = None
        if src in self._concentrators and dst not in self._concentrators:
            host = dst
        elif dst in self._concentrators and src not in self._concentrators:
            host = src
        self.b.counters["pppoe_padt_without_pads"] += 1
        self.b.counters["logouts"] += 1
        return login_record(
            ts=ts,
            event="logout",
            account=username,
            ip=None,
            mac=host,
            calling_station=host,
            source="pppoe",
            session_id=sid,
            duration=None,
        )

    def ipcp(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """IPCP gave the host of an open session its address: bind it and write the login."""
        ip = text(event, "ip")
        mac = normalize_mac(text(event, "client_mac"))
        sid_num = number(event, "session_id")
        ts = number(event, "ts")
        if ip is None or mac is None or sid_num is None or ts is None:
            return []
        sess = self.b.session(("pppoe", mac, str(int(sid_num))))
        if sess is None or sess.ip == ip:
            return []  # the concentrator's own address (acknowledged by the host), or a repeat
        out = self.b.claim(sess, ip, max(ts, sess.since))
        if not sess.announced:
            out.append(self.b.announce(sess))
        self.b.counters["pppoe_ipcp_addresses"] += 1
        return out

    def finish(self) -> list[dict[str, Any]]:
        """End of input: the logins still held back (no IPCP seen), with what is known."""
        return [self.b.announce(s) for s in self.b.sessions() if s.source == "pppoe" and not s.announced]

    def auth(self, event: Mapping[str, Any]) -> None:
        """A PAP/CHAP result from the PPPoE decoder: name the account of the open session."""
        if event.get("event") != "auth" or event.get("ok") is not True:
            return
        username = text(event, "username")
        mac = normalize_mac(text(event, "client_mac"))
        sid_num = number(event, "session_id")
        if username is None or mac is None or sid_num is None:
            return
        sess = self.b.session(("pppoe", mac, str(int(sid_num))))
        if sess is not None and sess.account is None:
            sess.account = username
            self.b.counters["pppoe_auth_named"] += 1
