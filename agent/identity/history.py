"""Who held an address when: the intervals kept per address and the rule that picks one.

What: an ``Interval`` says "from ``since`` until ``until`` (or, while still open, until
``expires`` or for ever) ``account``/``mac`` held this address, according to ``source``".
``best_at`` picks the interval that answers "who was behind the address at ts";
``trim`` keeps a list of intervals within its limit.

Why intervals and not just the current holder: records are stamped after the fact. A
``session`` record is emitted when its connection ends, with ``ts`` = the connection's
start, and a lease may have changed hands in between; the answer must be the holder at
``ts``, not the holder now.

Priority (``best_at``): among the intervals covering ``ts``, one that names an account beats
one that does not; then the higher ``RANK`` of its source; then the later ``since`` (the
most recent login is the current one); then the one added last. Ranks: RADIUS, PPPoE and
the captive portal authenticate the user of the access session (3); a DHCP lease names the
account only through the admin's roster, for a device (2); application logins (HTTP Basic,
FTP, POP3, IMAP, SMTP AUTH) show an account was used from the address, which on a shared or
NATed host need not be its user (1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

RANK: Final[dict[str, int]] = {
    "radius": 3,
    "pppoe": 3,
    "portal": 3,
    "dhcp": 2,
    "roster": 1,
    "http": 1,
    "ftp": 1,
    "pop3": 1,
    "imap": 1,
    "smtp": 1,
}


@dataclass(slots=True, eq=False)
class Interval:
    """One holder of one address over [since, end()). Mutable: open intervals get an end."""

    since: float
    account: str | None
    mac: str | None
    source: str
    until: float | None = None  # set when the holder logged out (or was superseded)
    expires: float | None = None  # while open: a lease end or an application login's TTL

    def end(self) -> float:
        """The first instant not covered: ``until``, else ``expires``, else infinity."""
        if self.until is not None:
            return self.until
        return self.expires if self.expires is not None else math.inf

    def covers(self, ts: float) -> bool:
        return self.since <= ts < self.end()

    def is_closed(self) -> bool:
        return self.until is not None


@dataclass(frozen=True, slots=True)
class Identity:
    """The answer for one address at one time (see ``IdentityTable.lookup``)."""

    account: str | None
    mac: str | None
    source: str
    since: float
    until: float | None  # None: still open at the time asked about (it may end later)


def best_at(intervals: list[Interval], ts: float) -> Interval | None:
    """The interval that answers for ``ts`` by the priority rule of the module docstring."""
    best: Interval | None = None
    best_key: tuple[bool, int, float] = (False, -1, -math.inf)
    for iv in intervals:
        if not iv.covers(ts):
            continue
        key = (iv.account is not None, RANK.get(iv.source, 0), iv.since)
        if key >= best_key:
            best, best_key = iv, key
    return best


def trim(intervals: list[Interval], limit: int) -> list[Interval]:
    """Remove intervals until at most ``limit`` remain; return the removed ones.

    Closed intervals go first, the one that ended earliest first (the oldest history answers
    the fewest future questions); only if every interval is open does the earliest-started
    open one go (the caller detaches it from its binding).
    """
    removed: list[Interval] = []
    while len(intervals) > limit:
        closed = [iv for iv in intervals if iv.is_closed()]
        pool = closed if closed else intervals
        victim = min(pool, key=lambda iv: (iv.end(), iv.since) if closed else (iv.since, iv.end()))
        intervals.remove(victim)
        removed.append(victim)
    return removed
