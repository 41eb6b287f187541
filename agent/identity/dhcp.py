"""DHCP leases (RFC 2131) → network-level sessions with source ``dhcp``.

Input: ``dhcp`` records with Zeek dhcp.log semantics, one per client transaction, whose
``msg_types`` list the messages seen in order. Each of ACK, RELEASE and DECLINE in that list
is acted on, in order:
- ``ACK`` with ``assigned_addr`` (yiaddr, RFC 2131 §4.3.1): the client holds the address for
  ``lease_time`` seconds (option 51), or ``default_lease`` when the record has none.
  - same address, same MAC, lease still open: a renewal (RFC 2131 §4.4.5), which extends the
    lease and makes no new login (counter ``renewed``);
  - the address was leased to another MAC: that lease ends now (logout, ``dhcp_reassigned``);
  - the MAC held another address: that lease ends now (logout, ``dhcp_moved``);
  - otherwise a login: ip, mac, calling_station = the MAC, session_id null (DHCP has no
    session id that outlives a transaction), account = the roster's account for the MAC,
    else for the address, else null.
  An ACK to an INFORM (§3.4, a client with a fixed address asking for options) leases
  nothing and is skipped.
- ``RELEASE`` (§4.4.6; ciaddr = ``client_addr``): the lease ends (logout, ``dhcp_released``).
  A RELEASE for a lease never seen (the capture began during it) still gives the logout
  record, with duration null (``dhcp_release_without_lease``).
- ``DECLINE`` (§4.4.4; the address is in use elsewhere): ends the client's lease of the
  requested address if one is open; no record otherwise.
- Expiry: a lease not renewed ends at ts + lease_time: ``IdentityTable.expire`` (also run by
  every ``observe``) gives its logout, dated at the lease end.
NAK and the other messages change no lease.

Why the account never comes from ``host_name``: the client chooses it (option 12) and nothing
checks it; an account in a login record must be one an admin or an authentication vouches
for. The host name stays in the ``dhcp`` record for the investigator.

Time: the record's ``ts`` (Zeek: the transaction's first message) stands for the ACK's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.identity.fields import address, normalize_mac, number, text
from agent.identity.login import login_record
from agent.identity.roster import Roster
from agent.identity.state import Bindings, NetSession


class DhcpSource:
    """Feeds ``dhcp`` records into the bindings (see the module docstring)."""

    def __init__(self, bindings: Bindings, roster: Roster, default_lease: float) -> None:
        self.b = bindings
        self.roster = roster
        self.default_lease = default_lease

    def observe(self, rec: Mapping[str, Any], ts: float) -> list[dict[str, Any]]:
        types = rec.get("msg_types")
        if not isinstance(types, list) or "INFORM" in types:
            return []
        mac = normalize_mac(text(rec, "mac"))
        out: list[dict[str, Any]] = []
        for msg in types:
            if msg == "ACK":
                out += self._ack(rec, ts, mac)
            elif msg == "RELEASE":
                out += self._release(address(rec, "client_addr"), mac, ts, log_unmatched=True)
            elif msg == "DECLINE":
                out += self._release(address(rec, "requested_addr"), mac, ts, log_unmatched=False)
        return out

    def _ack(self, rec: Mapping[str, Any], ts: float, mac: str | None) -> list[dict[str, Any]]:
        ip = address(rec, "assigned_addr")
        counters = self.b.counters
        if ip is None:
            counters["dhcp_ack_without_address"] += 1
            return []
        lease = number(rec, "lease_time")
        expires = ts + (lease if lease is not None and lease > 0 else self.default_lease)
        out: list[dict[str, Any]] = []
        current = self.b.session(("dhcp", ip))
        if current is not None:
            if current.mac == mac:
                self.b.renew(current, max(expires, current.expires or expires))
                return []
            counters["dhcp_reassigned"] += 1
            out.append(self.b.close(current, ts))
        if mac is not None:
            elsewhere = self.b.session_by_mac("dhcp", mac)
            if elsewhere is not None:
                counters["dhcp_moved"] += 1
                out.append(self.b.close(elsewhere, ts))
        sess = NetSession(
            key=("dhcp", ip),
            source="dhcp",
            account=self.roster.account_for(mac=mac, ip=ip),
            ip=ip,
            mac=mac,
            calling_station=mac,
            session_id=None,
            since=ts,
            expires=expires,
        )
        return out + self.b.open(sess)

    def _release(
        self, ip: str | None, mac: str | None, ts: float, *, log_unmatched: bool
    ) -> list[dict[str, Any]]:
        sess = self.b.session(("dhcp", ip)) if ip is not None else None
        if sess is None and mac is not None and ip is None:
            sess = self.b.session_by_mac("dhcp", mac)
        if sess is not None and (mac is None or sess.mac is None or sess.mac == mac):
            self.b.counters["dhcp_released"] += 1
            return [self.b.close(sess, ts)]
        if not log_unmatched or (ip is None and mac is None):
            return []
        self.b.counters["dhcp_release_without_lease"] += 1
        self.b.counters["logouts"] += 1
        return [
            login_record(
                ts=ts,
                event="logout",
                account=self.roster.account_for(mac=mac, ip=ip),
                ip=ip,
                mac=mac,
                calling_station=mac,
                source="dhcp",
                session_id=None,
                duration=None,
            )
        ]
