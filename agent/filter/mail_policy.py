"""The mail policy: mass mail and forged or hidden senders in the SMTP the unit sends (issue 20).

What: the SMTP decoder reports each mail transaction's steps as it reads them (``MAIL FROM``,
each ``RCPT TO``, the end of the message with its headers); ``MailPolicy`` counts them in time
windows and checks them, and returns `alert` records of the built-in category ``mail``
(SCHEMA-additions 1.6: ``reason``, ``sender``, ``count``, ``limit``, ``window_s``). Sans-IO: time
is the packets' time, so ``replay`` gives the alerts a live agent gives. ``[mail]`` in agent.toml
configures it (``agent.filter.mail_config``); a unit that configures nothing gets the defaults.

Only mail leaving the unit is judged: a transaction whose client (the connection's originator)
is inside (``[mail] inside``). Mail the world delivers to the unit's servers is not.

Limits (reason ``rate:<scope>:<messages|recipients>:<minute|hour>``): per envelope sender
address, per SMTP AUTH account and per inside host (the unit's ``relays`` excepted), messages and
recipients per minute and per hour. A message counts when its transaction starts (``MAIL
FROM``), a recipient at its ``RCPT TO`` — attempts, blocked ones too: a sender that keeps
trying stays over its limit.
Windows: a minute is the current 5-second slot and the 11 before it, an hour the current
5-minute slot and the 11 before it (``_Window``): counts per slot, so memory per key is bounded
whatever the rate. Windows are per key, not per connection: they survive across connections.

Forgery checks a gateway can make without the internet (each ``off``/``alert``/``block``):
- ``forged:envelope_domain``: an unauthenticated transaction's envelope sender is not of one
  of the unit's ``domains`` (an authenticated one is checked against its account instead);
- ``forged:mailfrom_not_account``: the envelope sender is not the address of the account that
  authenticated (SMTP AUTH; ``[mail.senders]`` lists the other addresses an account may use);
- ``forged:from_not_account``: the same for the ``From:`` header's address;
- ``forged:helo``: HELO/EHLO claims another host: an address literal (or bare address) that is
  not the client's own, or, from a host that is not one of the unit's relays, one of the
  unit's mail domains or its mail servers' ``server_names``;
- ``hidden:display_name``: the ``From:`` display name holds an address (after NFKC: a
  full-width ＠ is an @) other than the one the mail is from, ``"boss@unit.cn" <x@evil.example>``.

When the checks run, and what ``block`` can stop: the envelope, HELO and limit checks run at
``MAIL FROM`` (a sender already over a limit is stopped at its next ``MAIL FROM``) and at each
``RCPT TO`` (the recipient past the limit); the header checks at the end of the message. In
inline mode (NFQUEUE) the inspector's ``on_block`` drops the packet that carried the step and
resets the connection both ways: the server never receives that command or the message's
final dot, so it never accepts the message. Counting at ``MAIL FROM`` is what makes a limit
enforceable anywhere: a reset sent without dropping (a passive tap) races the server's reply to
that packet, but a reset at ``MAIL FROM`` or ``RCPT TO`` still arrives long before the client
has finished the message, while one sent at the final dot would come after the server's
``250``. Only header findings (``From:``) need the inline drop. Outside inline mode (gateway
capture, ``replay``) nothing is stopped: a ``block`` finding is an alert with ``blocked:
false``, as for keyword rules.

How many alerts: one per (connection, reason, key). A limit alerts again for a key at most once
per window length while it stays over (the count says how far), except when blocking: each
connection a block stops has its alert (``blocked: true``), the record of what was stopped.

Across capture workers: PACKET_FANOUT_HASH gives each worker its own share of the connections,
so one sender's connections are spread over all of them. Each worker keeps full windows: what
it counts itself, plus the tallies its peers forward (``take_tallies`` → the worker's peer
inboxes → ``absorb``, the way identity records already travel, ``agent.run.worker``); a
worker that raises a limit alert forwards that too, so the others do not repeat it within the
window. Why not counters in one place (the supervisor): the decision is needed while the
packet is in hand, and a round trip per transaction to another process would stall capture;
a tally arrives at a peer at its next batch (milliseconds), which is the only skew. Inline
mode has one worker, which sees everything.

Limits: ``MAX_KEYS`` counted keys (the least recently used is forgotten, counted in
``keys_evicted``), ``MAX_CONNS`` connections with state (oldest forgotten), text cut to
``MAX_KEYWORD`` characters in keywords and the wire's 200 in snippets. Mail inside TLS
(STARTTLS, SMTPS) is not visible and is not judged.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections import deque
from typing import Any, Final

from agent.filter.mail_config import DEFAULT, Limits, MailConfig, domain_name
from agent.protocols.base import MailStep, Record
from wire.limits import MAX_SNIPPET_LEN

CATEGORY: Final = "mail"
RULESET_VERSION: Final = "builtin"  # the policy is the agent's own, configured in agent.toml, not a ruleset's
TALLY: Final = "mail_tally"  # the type of the counts forwarded between capture workers (never spooled)
MAX_KEYS: Final = 65536  # senders, accounts and hosts with windows
MAX_CONNS: Final = 65536  # SMTP connections with state
MAX_KEYWORD: Final = 256  # characters of an alert's keyword
MINUTE: Final = (60, 5)  # (window seconds, slot seconds)
HOUR: Final = (3600, 300)
_WINDOWS: Final = (("minute", MINUTE), ("hour", HOUR))
_FIELD: Final = {"sender": "smtp.mailfrom", "account": "smtp.user", "host": "smtp.src_ip"}
# an address inside a display name (after NFKC): local part, @, a dotted domain
_ADDRESS_IN_TEXT: Final = (  # compiled on first use (re caches it): not at start
    r"([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+)\s*@\s*([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


class _Window:
    """Messages and recipients of one key over one window, counted in slots (module doc)."""

    __slots__ = ("width", "n", "slots", "messages", "recipients", "head")

    def __init__(self, window_s: int, slot_s: int) -> None:
        self.width = slot_s
        self.n = window_s // slot_s
        self.slots: deque[list[int]] = deque()  # [slot id, messages, recipients], oldest first
        self.messages = 0
        self.recipients = 0
        self.head = -1  # the latest slot seen

    def _advance(self, sid: int) -> None:
        if sid <= self.head:
            return
        self.head = sid
        floor = sid - self.n
        slots = self.slots
        while slots and slots[0][0] <= floor:
            s = slots.popleft()
            self.messages -= s[1]
            self.recipients -= s[2]

    def at(self, ts: float) -> None:
        """Move the window to `ts` (older slots leave it)."""
        self._advance(int(ts // self.width))

    def add(self, ts: float, messages: int, recipients: int) -> None:
        sid = int(ts // self.width)
        self._advance(sid)
        if sid <= self.head - self.n:
            return  # older than the window (a late tally from a peer)
        slots = self.slots
        if slots and slots[-1][0] == sid:
            s = slots[-1]
        elif not slots or slots[-1][0] < sid:
            s = [sid, 0, 0]
            slots.append(s)
        else:  # an earlier slot (packets a little out of order, a peer's tally): find or insert it
            i = len(slots) - 1
            while i >= 0 and slots[i][0] > sid:
                i -= 1
            if i >= 0 and slots[i][0] == sid:
                s = slots[i]
            else:
                s = [sid, 0, 0]
                slots.insert(i + 1, s)
        s[1] += messages
        s[2] += recipients
        self.messages += messages
        self.recipients += recipients


class _Key:
    """One sender, account or host: its two windows and when each limit last alerted."""

    __slots__ = ("minute", "hour", "alerted")

    def __init__(self) -> None:
        self.minute = _Window(*MINUTE)
        self.hour = _Window(*HOUR)
        self.alerted: dict[str, float] = {}  # reason -> ts of the last alert


class _Conn:
    """What the policy keeps of one SMTP connection."""

    __slots__ = ("client", "checked", "relay", "keys", "alerted", "stopped")

    def __init__(self, client: str, checked: bool, relay: bool) -> None:
        self.client = client
        self.checked = checked  # the client is inside: its mail is judged
        self.relay = relay  # the client is one of the unit's mail servers
        self.keys: list[tuple[str, str]] = []  # the current transaction's counted (scope, key)
        self.alerted: set[str] = set()  # reason and key of each alert made on this connection
        self.stopped = False  # a block was asked for inline: the rest of it is not judged


def envelope_address(path: str | None) -> str:
    """An envelope path as the policy counts it: lower case, a source route dropped; "" for the
    null sender (bounces)."""
    if not path:
        return ""
    a = path.strip().lower()
    if a.startswith("@") and ":" in a:  # RFC 5321 §4.1.2 source route, "@a,@b:user@dom"
        a = a.split(":", 1)[1]
    return a


def split_from(value: str) -> tuple[str, str]:
    """A ``From:`` value (RFC 2047 words already decoded) as (display name, address).

    ``"Name" <a@b>`` and ``Name <a@b>`` give the text before the last ``<``; ``a@b (Name)`` gives
    the comment. The address is lower-cased, "" when there is none."""
    v = value.strip()
    lt = v.rfind("<")
    if lt >= 0:
        gt = v.find(">", lt)
        addr = v[lt + 1:gt if gt >= 0 else len(v)]
        display = v[:lt]
    else:
        op = v.find("(")
        addr = v[:op] if op >= 0 else v
        display = v[op + 1:].rstrip(")") if op >= 0 else ""
    addr = addr.strip().strip('"').strip().lower()
    display = display.strip().strip('"').strip()
    if "," in addr:  # a list of authors: the first
        addr = addr.split(",", 1)[0].strip()
    return display, envelope_address(addr)


def hidden_address(display: str, address: str) -> str | None:
    """The address a display name shows when it is not the one the mail is from, else None."""
    if "@" not in display and "\uff20" not in display and "\ufe6b" not in display:
        return None
    m = re.search(_ADDRESS_IN_TEXT, unicodedata.normalize("NFKC", display))
    if m is None:
        return None
    shown = f"{m.group(1)}@{m.group(2)}".lower()
    return None if shown == address else shown


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class MailPolicy:
    """Judges SMTP transactions (module doc); alerts come back with the flow id ``ids`` given."""

    def __init__(self, config: MailConfig = DEFAULT) -> None:
        self.config = config
        self.domains = frozenset(config.domains)
        self.server_names = frozenset(config.server_names)
        self.relays = frozenset(config.relays)
        self.inside = config.inside
        self.senders = {acct: frozenset(addrs) for acct, addrs in config.senders}
        self.actions = dict(config.actions)
        self.rate_action = self.actions["rate"]
        self.scopes: tuple[tuple[str, Limits], ...] = tuple(
            (s, config.limits(s)) for s in ("sender", "account", "host")
            if any((config.limits(s).messages_per_minute, config.limits(s).recipients_per_minute,
                    config.limits(s).messages_per_hour, config.limits(s).recipients_per_hour)))
        # per scope, its limits that are set: (window, seconds, of messages?, limit, alert reason)
        self.limit_checks: dict[str, tuple[tuple[str, int, bool, int, str], ...]] = {
            scope: tuple((wname, window_s, metric == "messages", limit, f"rate:{scope}:{metric}:{wname}")
                         for wname, (window_s, _slot) in _WINDOWS for metric in ("messages", "recipients")
                         if (limit := getattr(lim, f"{metric}_per_{wname}")))
            for scope, lim in self.scopes}
        self._inside_memo: dict[str, bool] = {}  # client address -> inside (bounded: MAX_CONNS)
        self.keys: dict[tuple[str, str], _Key] = {}  # least recently used first
        self.max_keys = MAX_KEYS
        self.max_conns = MAX_CONNS
        self.conns: dict[str, _Conn] = {}
        self.share = False  # a worker with peers sets it: tallies are kept for `take_tallies`
        self._tallies: dict[tuple[int, tuple[tuple[str, str], ...]], list[Any]] = {}
        self._alerted_out: list[tuple[float, str, str, str]] = []
        self.counters: dict[str, int] = {
            "transactions": 0, "recipients": 0, "messages": 0, "outside": 0, "alerts": 0, "suppressed": 0,
            "keys_evicted": 0, "conns_evicted": 0, "tallies_sent": 0, "tallies_received": 0}

    # -- the SMTP decoder's steps, one connection at a time ----------------------------------

    def steps(self, uid: str, ids: Record, steps: list[MailStep], enforcing: bool = False) -> list[Record]:
        """The steps a decoder reported (`agent.protocols.base.MailSteps`), in order; `enforcing`:
        a `block` stops the connection now (inline), so what follows it is not judged."""
        out: list[Record] = []
        for kind, ts, txn in steps:
            if kind == "mail":
                got = self.mail_from(uid, ids, ts, txn["helo"], txn["user"], txn["mailfrom"], enforcing)
            elif kind == "rcpt":
                got = self.rcpt_to(uid, ids, ts, enforcing)
            else:
                got = self.message(uid, ids, ts, txn["user"], txn["from"], enforcing)
            if got:
                out += got
                if enforcing and any(a["action"] == "block" for a in got):
                    conn = self.conns.get(uid)
                    if conn is not None:
                        conn.stopped = True
                    break
        return out

    def mail_from(self, uid: str, ids: Record, ts: float, helo: str | None, user: str | None,
                  mailfrom: str | None, enforcing: bool = False) -> list[Record]:
        """A transaction starts: count its message; check the envelope, the HELO and the limits."""
        conn = self._conn(uid, ids)
        if not conn.checked:
            self.counters["outside"] += 1
            return []
        if conn.stopped:
            return []
        self.counters["transactions"] += 1
        out: list[Record] = []
        sender = envelope_address(mailfrom)
        account = user.strip().lower() if user else ""
        keys: list[tuple[str, str]] = []
        if self.rate_action != "off":
            for scope, _lim in self.scopes:
                name = sender if scope == "sender" else account if scope == "account" else \
                    ("" if conn.relay else conn.client)
                if name:
                    keys.append((scope, name))
        conn.keys = keys
        if keys:
            self._count(ts, keys, 1, 0)
            self._rates(conn, ids, ts, out, enforcing, False)
        actions = self.actions
        if sender and account:
            if actions["mailfrom_not_account"] != "off" and not self._is_account(account, sender):
                self._finding(conn, ids, ts, out, "forged:mailfrom_not_account", "smtp.mailfrom", sender,
                              f"MAIL FROM:<{sender}> after AUTH as {user}", sender)
        elif sender and self.domains and actions["envelope_domain"] != "off":
            domain = sender.rpartition("@")[2]
            if not self._unit_domain(domain):
                ours = ", ".join(sorted(self.domains))
                why = f"MAIL FROM:<{sender}>: {domain or 'no domain'} is not the unit's ({ours})"
                self._finding(conn, ids, ts, out, "forged:envelope_domain", "smtp.mailfrom", domain or sender,
                              why, sender)
        if helo and actions["helo"] != "off" and self._claims(helo, conn):
            self._finding(conn, ids, ts, out, "forged:helo", "smtp.helo", helo,
                          f"HELO {helo} from {conn.client}", sender or account or conn.client)
        return out

    def rcpt_to(self, uid: str, ids: Record, ts: float, enforcing: bool = False) -> list[Record]:
        """One more recipient of the current transaction."""
        conn = self._conn(uid, ids)
        if not conn.checked or conn.stopped:
            return []
        self.counters["recipients"] += 1
        if not conn.keys:
            return []
        out: list[Record] = []
        self._count(ts, conn.keys, 0, 1)
        self._rates(conn, ids, ts, out, enforcing, True)
        return out

    def message(self, uid: str, ids: Record, ts: float, user: str | None, from_: str | None,
                enforcing: bool = False) -> list[Record]:
        """The message's data ended: check its ``From:`` against the account and its display name."""
        conn = self._conn(uid, ids)
        if not conn.checked or conn.stopped or not from_:
            return []
        self.counters["messages"] += 1
        out: list[Record] = []
        display, address = split_from(from_)
        account = user.strip().lower() if user else ""
        actions = self.actions
        if account and address and actions["from_not_account"] != "off" \
                and not self._is_account(account, address):
            self._finding(conn, ids, ts, out, "forged:from_not_account", "smtp.from", address,
                          f"From: {from_} after AUTH as {user}", address)
        if display and actions["display_name"] != "off":
            shown = hidden_address(display, address)
            if shown is not None:
                self._finding(conn, ids, ts, out, "hidden:display_name", "smtp.from", shown, f"From: {from_}",
                              address or shown)
        return out

    def close(self, uid: str) -> None:
        """The connection ended."""
        self.conns.pop(uid, None)

    # -- across capture workers ------------------------------------------------------------------

    def take_tallies(self) -> list[dict[str, Any]]:
        """What this worker counted (and alerted) since the last call, for its peers' ``absorb``."""
        out: list[dict[str, Any]] = []
        if self._tallies:
            for (_slot, keys), (ts, m, r) in self._tallies.items():
                out.append({"type": TALLY, "ts": ts, "keys": [list(k) for k in keys], "messages": m,
                            "recipients": r})
            self._tallies.clear()
        if self._alerted_out:
            for ts, scope, name, reason in self._alerted_out:
                out.append({"type": TALLY, "ts": ts, "keys": [[scope, name]], "messages": 0, "recipients": 0,
                            "alerted": reason})
            self._alerted_out.clear()
        self.counters["tallies_sent"] += len(out)
        return out

    def absorb(self, tally: dict[str, Any]) -> None:
        """A peer's tally: its counts join this worker's windows (no alert is made from them)."""
        try:
            ts = float(tally["ts"])
            m, r = int(tally["messages"]), int(tally["recipients"])
            keys = [(str(s), str(n)) for s, n in tally["keys"]]
            reason = tally.get("alerted")
        except (KeyError, TypeError, ValueError):
            return
        self.counters["tallies_received"] += 1
        for k in keys:
            key = self._key(k)
            if m or r:
                key.minute.add(ts, m, r)
                key.hour.add(ts, m, r)
            if isinstance(reason, str):
                key.alerted[reason] = max(ts, key.alerted.get(reason, ts))

    def count(self, scope: str, name: str, ts: float) -> tuple[int, int, int, int]:
        """(messages a minute, recipients a minute, messages an hour, recipients an hour) of a key
        at `ts` (for tests and status)."""
        key = self.keys.get((scope, name))
        if key is None:
            return (0, 0, 0, 0)
        key.minute.at(ts)
        key.hour.at(ts)
        return key.minute.messages, key.minute.recipients, key.hour.messages, key.hour.recipients

    # -- internals ---------------------------------------------------------------------------------

    def _conn(self, uid: str, ids: Record) -> _Conn:
        conn = self.conns.get(uid)
        if conn is None:
            client = str(ids.get("src_ip") or "")
            checked = self._inside(client)
            conn = _Conn(client, checked, client in self.relays)
            if len(self.conns) >= self.max_conns:
                del self.conns[next(iter(self.conns))]
                self.counters["conns_evicted"] += 1
            self.conns[uid] = conn
        return conn

    def _inside(self, client: str) -> bool:
        memo = self._inside_memo
        known = memo.get(client)
        if known is None:
            if len(memo) >= self.max_conns:
                memo.clear()
            known = memo[client] = self._in_networks(client)
        return known

    def _in_networks(self, client: str) -> bool:
        try:
            a = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(a.version == n.version and a in n for n in self.inside)

    def _key(self, k: tuple[str, str]) -> _Key:
        keys = self.keys
        key = keys.pop(k, None)  # re-inserted: the dict's order is least recently used first
        if key is None:
            key = _Key()
            if len(keys) >= self.max_keys:
                del keys[next(iter(keys))]
                self.counters["keys_evicted"] += 1
        keys[k] = key
        return key

    def _count(self, ts: float, keys: list[tuple[str, str]], messages: int, recipients: int) -> None:
        for k in keys:
            key = self._key(k)
            key.minute.add(ts, messages, recipients)
            key.hour.add(ts, messages, recipients)
        if self.share:
            tk = (int(ts // MINUTE[1]), tuple(keys))
            t = self._tallies.get(tk)
            if t is None:
                self._tallies[tk] = [ts, messages, recipients]
            else:
                t[0] = ts
                t[1] += messages
                t[2] += recipients

    def _rates(self, conn: _Conn, ids: Record, ts: float, out: list[Record], enforcing: bool,
               recipients_only: bool) -> None:
        """The transaction's keys against their limits (after counting: their windows are at `ts`)."""
        blocking = enforcing and self.rate_action == "block"
        for scope, name in conn.keys:
            key = self.keys.get((scope, name))
            if key is None:
                continue
            for wname, window_s, is_messages, limit, reason in self.limit_checks[scope]:
                if is_messages and recipients_only:
                    continue
                win = key.minute if wname == "minute" else key.hour
                count = win.messages if is_messages else win.recipients
                if count <= limit:
                    continue
                tag = f"{reason}\0{name}"
                if tag in conn.alerted:
                    continue
                last = key.alerted.get(reason)
                if not blocking and last is not None and ts - last < window_s:
                    self.counters["suppressed"] += 1
                    continue
                key.alerted[reason] = ts
                conn.alerted.add(tag)
                if self.share:
                    self._alerted_out.append((ts, scope, name, reason))
                metric = "messages" if is_messages else "recipients"
                field = _FIELD[scope] if is_messages else "smtp.rcptto"
                out.append(self._alert(
                    ids, ts, self.rate_action, reason, field, f"{limit} {metric} per {wname}",
                    f"{scope} {name}: {count} {metric} in {window_s} s, limit {limit}",
                    name, count, limit, window_s))

    def _finding(self, conn: _Conn, ids: Record, ts: float, out: list[Record], reason: str, field: str,
                 keyword: str, snippet: str, sender: str) -> None:
        """A forgery finding (its check is the reason's second part: its action), once per connection."""
        tag = f"{reason}\0{keyword}"
        if tag in conn.alerted:
            return
        conn.alerted.add(tag)
        action = self.actions[reason.split(":", 1)[1]]
        out.append(self._alert(ids, ts, action, reason, field, keyword, snippet, sender, None, None, None))

    def _alert(self, ids: Record, ts: float, action: str, reason: str, field: str, keyword: str, snippet: str,
               sender: str, count: int | None, limit: int | None, window_s: int | None) -> Record:
        self.counters["alerts"] += 1
        rec: Record = ids.copy()
        rec.update({
            "type": "alert", "ts": ts, "rule_id": f"mail:{reason}", "ruleset_version": RULESET_VERSION,
            "category": CATEGORY, "severity": self.config.severity, "action": action, "blocked": False,
            "field": field, "keyword": keyword[:MAX_KEYWORD], "encoding": None,
            "snippet": snippet[:MAX_SNIPPET_LEN], "account": None, "reason": reason,
            "sender": sender[:MAX_KEYWORD] or None, "count": count, "limit": limit, "window_s": window_s})
        return rec

    def _unit_domain(self, domain: str) -> bool:
        d = domain_name(domain) if domain else None
        if d is None:
            return False
        if d in self.domains:
            return True
        return any(d.endswith("." + u) for u in self.domains)

    def _is_account(self, account: str, address: str) -> bool:
        """Whether `address` is one the authenticated `account` may send as."""
        if address in self.senders.get(account, ()):
            return True
        if "@" in account:
            return address == account
        local, at, domain = address.rpartition("@")
        if not at:
            return address == account
        return local == account and (not self.domains or self._unit_domain(domain))

    def _claims(self, helo: str, conn: _Conn) -> bool:
        """The HELO names another host than the client (module doc)."""
        h = helo.strip()
        literal = h[1:-1] if h.startswith("[") and h.endswith("]") else h
        if literal[:5].lower() == "ipv6:":
            literal = literal[5:]
        # (only what may be an address is parsed: a host name would cost an exception each time)
        ip = _ip(literal) if literal[:1].isdigit() or ":" in literal else None
        if ip is not None:
            return ip != conn.client
        if conn.relay:
            return False
        name = domain_name(h)
        return name is not None and (name in self.server_names or name in self.domains)
