"""Identity: who was behind an internal address at a given time (DESIGN.md, data path step 5).

What: ``IdentityTable`` keeps address → (account, MAC, source, since) over time. It is fed
only records: the ones the other decoders emit (``radius``, ``dhcp``, ``pppoe``, ``http``,
``ftp``, ``mailbox``, ``smtp``), the captive portal's ``login`` records (source ``portal``;
everything else, other ``login`` records included, is ignored) and the admin's roster file.
It emits the regulation's ``login`` records (login and logout, with account, address, MAC
and calling number) for every source but the portal, which writes its own, and stamps
``account`` on ``session``, ``http`` and ``alert`` records.
It is sans-IO and deterministic: time comes only from the records' ``ts``, so a replayed
capture gives the same records as live capture; only ``load_roster`` reads a file.

API::

    table = IdentityTable(roster=load_roster("roster.csv"))
    for rec in records:
        out = table.observe(rec)   # login/logout records this record causes
        table.stamp(rec)           # rec["account"] for session/http/alert, if null
    table.account_at("10.0.0.7", ts)   # account or None; table.lookup(ip, ts) for the rest
    table.expire(ts)                   # lease ends → logouts (observe also does this)
    table.pppoe_auth(ev)               # PPPoE decoder's auth_events(): names a session's account
    table.counters                     # what happened and what was dropped, by name

Sources (each module's docstring has the details and the RFC sections):
- ``radius``: accounting Start/Interim-Update/Stop, Accounting-On/Off (RFC 2866);
  Access-Accept binds nothing (no end event; the accounting Start says the same).
- ``dhcp``: ACK = lease (login; a renewal is not a new login), RELEASE/DECLINE/expiry =
  logout; the account comes from the roster (by MAC, then address), never from the
  client-chosen host name; null when the roster does not know the device.
- ``pppoe``: PADS = login, PADT = logout, for the host's MAC; no address (discovery has none);
  the account from the record's username or the decoder's PAP/CHAP events.
- ``apps``: successful HTTP Basic, FTP, POP3, IMAP and SMTP AUTH logins bind the client
  address to the account; a login record the first time, never a logout record.
- ``roster``: the admin's CSV of account, name, MAC, IP: the account of a DHCP lease's MAC,
  and the answer for a fixed address no dynamic source covers. It creates no login records:
  it has no times; the stamped ``account`` carries its answers.
- ``portal``: the captive portal's own ``login`` records (it runs in the supervisor, which
  hands them to every capture worker): login = an admitted guest holds the address, logout
  (same ``session_id``) = the admission ended; a new admission on the address supersedes
  the previous one. No records come out for them: the portal wrote them already.

Priority (``history``): for an address at a time, an interval naming an account beats one
that does not, then network-level sources (RADIUS, PPPoE, portal: an authenticated access
session) beat a DHCP lease (an account only through the roster, for a device) beat
application logins (an account used from the address, maybe by someone else on a shared or
NATed host); then the latest login wins. A network session starting or ending on an address
ends the application logins open on it, since the address may have changed hands.

History: every binding is an interval [since, until) kept per address, so a record stamped
late (a ``session`` is emitted when its connection ends, with ``ts`` = its start) gets the
holder at its ``ts``. Open intervals end at a DHCP lease's end or an application login's
TTL even before ``expire`` runs.

Limits (named, counted in ``counters``): ``max_entries`` addresses and open sessions,
``max_intervals_per_ip`` intervals per address (``state`` says what goes first), leases
without a lease time last ``dhcp_default_lease``, application logins ``app_login_ttl``.

Modules: ``table`` (the facade), ``state`` (sessions, history, emission), ``history``
(intervals, priority), ``radius`` / ``dhcp`` / ``pppoe`` / ``portal`` / ``apps`` (one per source),
``roster`` (the CSV file), ``login`` (the record), ``fields`` (reading other records).
"""

from agent.identity.history import Identity
from agent.identity.roster import Roster, RosterEntry, RosterError, load_roster, parse_roster
from agent.identity.table import IdentityTable

__all__ = ["Identity", "IdentityTable", "Roster", "RosterEntry", "RosterError", "load_roster", "parse_roster"]
