"""How many wrong passwords an account, or a source address, may try; and which refusals are
written down.

What:
- ``FailureThrottle(policy)`` counts failed password checks per key. ``policy.free``
  failures may come at once; the last of them, and each one after, locks the key for
  ``base_lock_s * 2**(failures - free)`` (capped at ``max_lock_s``), during which an attempt
  is refused before any password is checked, and after which one attempt at a time is let
  through. Failures are forgotten ``forget_s`` after the last one (or the end of its lock).
  Checks still running count against the allowance (``pending``), so 32 guesses sent at
  once get ``free`` checks, not 32.
- ``LoginThrottle`` holds one for accounts (the name claimed, whether or not it exists:
  ``account_key``) and one for source addresses (IPv6 by /64: one host holds a whole /64),
  and admits an attempt only when both do; a success forgets the account's failures (not
  the address's: one valid account must not reset an address that guesses others).
- ``RefusalLog`` decides which refusals the audit log gets: the first of each key (such as
  action, name and address) in ``window_s``, with how many of that key were not written
  since its last entry, and at most ``max_per_window`` entries in all per window.

Why: without it a guesser could try passwords as fast as the KDF runs (200 at 19/s, then the
right one worked), and every try wrote an fsync'ed audit line with a name of its choosing.
The numbers follow common practice (OWASP's authentication cheat sheet, Keycloak's
brute-force detection): a handful of free tries for typos, then exponential backoff up to a
quarter of an hour, rather than a permanent lockout an attacker could impose on anyone.

Limits: in memory, per collector process: a restart forgets, and N collectors behind a
balancer give N allowances. A guesser can keep an account locked (at one try per lock):
its owner's API tokens and UI sessions still work, only new password logins wait. Behind a
reverse proxy every client has the proxy's address (forwarded headers are not trusted).
Each table holds at most ``max_keys`` keys; beyond, the least recently used is forgotten
(counted in ``evicted``). Not thread-safe: called from the event loop only. Times are
``time.monotonic()`` seconds, passed in.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Literal


@dataclass(frozen=True)
class Policy:
    free: int  # failures before the first lock
    forget_s: float  # failures are forgotten this long after the last one (or its lock's end)
    base_lock_s: float  # the first lock; each further failure doubles it
    max_lock_s: float


#: 5 failures per account per 15 min: typos are a few, guessing needs many (OWASP suggests
#: locking after a small number; Keycloak's default waits start at the first failure).
ACCOUNT_POLICY: Final = Policy(free=5, forget_s=15 * 60, base_lock_s=30.0, max_lock_s=15 * 60)
#: Per address, higher: a police center's operators may all leave through one NAT address,
#: and a password spray tries many accounts from one place.
ADDRESS_POLICY: Final = Policy(free=30, forget_s=15 * 60, base_lock_s=30.0, max_lock_s=15 * 60)
#: Keys each table remembers: ~200 bytes each, so a few MB however many names are claimed.
MAX_TRACKED_KEYS: Final = 20_000
#: Seconds to wait when the allowance is taken by checks still running.
PENDING_RETRY_S: Final = 1.0
#: A refusal of the same kind by the same name from the same address is written once per
#: window (with the count of those not written), so a guesser cannot fill the disk.
REFUSAL_WINDOW_S: Final = 15 * 60
#: Entries of refusals per window in all (~400 bytes each: at most ~40 MB a day however
#: many addresses and names a flood uses); beyond, they are counted into the next entry.
MAX_REFUSAL_ENTRIES: Final = 1000
#: The prefix that stands for an IPv6 host (RFC 4291: an interface identifier is 64 bits).
IPV6_HOST_PREFIX: Final = 64
#: A claimed name is keyed by this many characters: one more than a real name may have
#: (``accounts.NAME_RE``), so a longer name never shares a real one's key, and a 4 KiB name
#: costs no more memory than a real one.
NAME_KEY_CHARS: Final = 65


@dataclass
class _Failures:
    failures: int = 0
    pending: int = 0
    quiet_from: float = 0.0  # the last failure, or the end of the lock it caused
    locked_until: float = 0.0


class FailureThrottle:
    """Failed attempts per key under one ``Policy`` (see the module doc)."""

    def __init__(self, policy: Policy, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.policy = policy
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self.evicted = 0  # keys forgotten while they still counted, for room

    def wait(self, key: str, now: float) -> float:
        """Seconds before an attempt for ``key`` may be checked; 0: now."""
        e = self._keys.get(key)
        if e is None:
            return 0.0
        p = self.policy
        if e.pending == 0 and now >= e.quiet_from + p.forget_s:
            e.failures, e.locked_until = 0, 0.0
        if e.failures + e.pending < p.free:
            return 0.0
        if e.locked_until > now:
            return e.locked_until - now
        if e.failures >= p.free and e.pending == 0:
            return 0.0  # the lock is over: one attempt
        return PENDING_RETRY_S

    def begin(self, key: str) -> None:
        """An attempt ``wait`` admitted is being checked."""
        e = self._keys.get(key)
        if e is None:
            e = self._keys[key] = _Failures()
            self._make_room()
        else:
            self._keys.move_to_end(key)
        e.pending += 1

    def end(self, key: str, outcome: Literal["failed", "succeeded", "unchecked"], now: float) -> None:
        """The check ``begin`` announced is over: the password was wrong, right (the key's
        failures are forgotten), or not checked at all."""
        e = self._keys.get(key)
        if e is None:  # forgotten for room meanwhile
            return
        e.pending = max(0, e.pending - 1)
        if outcome == "succeeded":
            e.failures, e.locked_until = 0, 0.0
        elif outcome == "failed":
            p = self.policy
            e.failures += 1
            e.quiet_from = now
            if e.failures >= p.free:
                e.locked_until = now + min(p.base_lock_s * 2 ** min(e.failures - p.free, 32), p.max_lock_s)
                e.quiet_from = e.locked_until
        if e.failures == 0 and e.pending == 0:
            del self._keys[key]

    def _make_room(self) -> None:
        while len(self._keys) > self.max_keys:
            _, e = self._keys.popitem(last=False)
            if e.failures:
                self.evicted += 1

    def __len__(self) -> int:
        return len(self._keys)


def account_key(name: str) -> str:
    """The claimed name as throttled and as its refusals are counted."""
    return name[:NAME_KEY_CHARS]


def address_key(remote: str | None) -> str:
    """The source address as throttled: an IPv4 address, an IPv6 /64 (an IPv4-mapped IPv6
    address as its IPv4), "unknown" without one (a Unix socket)."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_HOST_PREFIX), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Refused:
    """An attempt refused before its password was checked: by which table, for how long."""

    by: Literal["account", "address"]
    retry_after: float


class LoginThrottle:
    """Password attempts throttled per account and per source address (see the module doc)."""

    def __init__(self, accounts: Policy = ACCOUNT_POLICY, addresses: Policy = ADDRESS_POLICY,
                 max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.accounts = FailureThrottle(accounts, max_keys)
        self.addresses = FailureThrottle(addresses, max_keys)
        self.refused = 0  # attempts refused without a password check

    def admit(self, name: str, address: str, now: float) -> Refused | None:
        """None when ``name`` may try a password from ``address`` now (the attempt then
        counts as pending until ``settle``); else why not, and for how long."""
        name = account_key(name)
        by_address = self.addresses.wait(address, now)
        by_account = self.accounts.wait(name, now)
        if by_address or by_account:
            self.refused += 1
            if by_address >= by_account:
                return Refused("address", by_address)
            return Refused("account", by_account)
        self.accounts.begin(name)
        self.addresses.begin(address)
        return None

    def settle(self, name: str, address: str, outcome: Literal["failed", "succeeded", "unchecked"],
               now: float) -> None:
        """The admitted attempt's result (``FailureThrottle.end``)."""
        self.accounts.end(account_key(name), outcome, now)
        self.addresses.end(address, "unchecked" if outcome == "succeeded" else outcome, now)


@dataclass
class _Written:
    since: float  # when this key's last entry was written
    unwritten: int = 0  # refusals of this key since then that were not


@dataclass(frozen=True)
class Entry:
    """A refusal to write: how many of its key were not written since the key's last entry,
    and how many of any key were not written for want of room in the window."""

    unwritten: int
    over_budget: int


class RefusalLog:
    """Which refusals go to the audit log (see the module doc)."""

    def __init__(self, window_s: float = REFUSAL_WINDOW_S, max_per_window: int = MAX_REFUSAL_ENTRIES,
                 max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.window_s = window_s
        self.max_per_window = max_per_window
        self.max_keys = max_keys
        self._keys: OrderedDict[tuple[str, ...], _Written] = OrderedDict()
        self._window_start = float("-inf")
        self._written_in_window = 0
        self.over_budget = 0  # not written for want of room, not yet told in an entry
        self.unwritten = 0  # all refusals not written, ever

    def entry(self, key: tuple[str, ...], now: float) -> Entry | None:
        """The entry to write for this refusal, or None (it is counted instead)."""
        w = self._keys.get(key)
        if w is not None and now - w.since < self.window_s:
            w.unwritten += 1
            self.unwritten += 1
            return None
        if now - self._window_start >= self.window_s:
            self._window_start, self._written_in_window = now, 0
        if self._written_in_window >= self.max_per_window:
            self.over_budget += 1
            self.unwritten += 1
            return None
        self._written_in_window += 1
        told = Entry(w.unwritten if w is not None else 0, self.over_budget)
        self.over_budget = 0
        self._keys[key] = _Written(now)
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys or self._oldest_is_stale(now):
            self._keys.popitem(last=False)
        return told

    def _oldest_is_stale(self, now: float) -> bool:
        # a key with refusals not yet told keeps its count for its next entry
        oldest = next(iter(self._keys.values()), None)
        return oldest is not None and oldest.unwritten == 0 and now - oldest.since >= self.window_s
