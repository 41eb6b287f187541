"""The admin's roster: which account a device (MAC) or a fixed address (IP) belongs to.

What: ``load_roster(path)`` / ``parse_roster(text, name)`` read a CSV file and return a
``Roster``; ``Roster.account_for_mac`` / ``account_for_ip`` answer from it.

File format (UTF-8, with or without BOM; GB18030 accepted too, as spreadsheet programs on
Chinese Windows save CSV in it)::

    account,name,mac,ip
    # a line starting with '#' (after blanks) is a comment; blank lines are skipped
    zhangsan,张三,00:11:22:33:44:55,
    lisi,李四,,192.168.1.20
    wangwu,"Wang, Wu",00-11-22-33-44-66,192.168.1.21

- The header line is required and must be exactly ``account,name,mac,ip`` (any case).
- ``account`` is required; ``name`` is free text; ``mac`` and ``ip`` may be empty. A row
  with neither still lists the account (it binds nothing).
- MACs may be written ``aa:bb:cc:dd:ee:ff``, ``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` or as
  12 hex digits; IPs are IPv4 or IPv6 without zone. Both are stored in canonical form.
- One account may have several rows (several devices); a MAC or IP listed for two different
  accounts is an error, since the roster could then not answer.
- A '#' only starts a comment at the beginning of a line (a name may contain one); quoted
  fields must not span lines.

Errors: every bad row is reported, as ``FILE:LINE: problem``, in one ``RosterError`` (so the
admin fixes the file in one go); its ``problems`` lists them. Limits: ``MAX_ROWS`` rows,
``MAX_FIELD_LEN`` characters per field, ``MAX_PROBLEMS`` problems reported.

Why in the identity package: the regulation asks for an account on every login record, and
on a network with only DHCP the roster is the one place that knows it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from agent.identity.fields import UNSPECIFIED, normalize_mac
from wire.addresses import canonical_ip

HEADER: Final = ("account", "name", "mac", "ip")
#: Most data rows in a roster: a unit's users and devices; far above any real unit, and small
#: enough that a wrong file (a capture, a log) is refused quickly instead of loaded.
MAX_ROWS: Final = 200_000
#: Longest field, in characters (account names are short; this also bounds a binary file's lines).
MAX_FIELD_LEN: Final = 256
#: Most problems listed in one error; the count of the rest is given.
MAX_PROBLEMS: Final = 50


class RosterError(ValueError):
    """The roster file is unusable; ``problems`` lists ``FILE:LINE: problem`` strings."""

    def __init__(self, problems: list[str], more: int = 0) -> None:
        self.problems = problems
        tail = f"\n... and {more} more problem(s)" if more else ""
        super().__init__("\n".join(problems) + tail)


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One row of the roster file."""

    account: str
    name: str | None
    mac: str | None
    ip: str | None
    line: int


class Roster:
    """Account by MAC and by IP, from the admin's roster (see the module docstring)."""

    __slots__ = ("entries", "_by_mac", "_by_ip")

    def __init__(self, entries: Iterable[RosterEntry] = ()) -> None:
        self.entries: tuple[RosterEntry, ...] = tuple(entries)
        self._by_mac: dict[str, str] = {}
        self._by_ip: dict[str, str] = {}
        for e in self.entries:
            if e.mac is not None:
                self._by_mac.setdefault(e.mac, e.account)
            if e.ip is not None:
                self._by_ip.setdefault(e.ip, e.account)

    def __len__(self) -> int:
        return len(self.entries)

    def account_for_mac(self, mac: str | None) -> str | None:
        return self._by_mac.get(mac) if mac is not None else None

    def account_for_ip(self, ip: str | None) -> str | None:
        return self._by_ip.get(ip) if ip is not None else None

    def account_for(self, *, mac: str | None, ip: str | None) -> str | None:
        """The device's account (by MAC) first, else the fixed address's (by IP)."""
        account = self.account_for_mac(mac)
        return account if account is not None else self.account_for_ip(ip)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030", errors="replace")


def load_roster(path: str | os.PathLike[str]) -> Roster:
    """Read and check the roster file at ``path`` (OSError if it cannot be read)."""
    with open(path, "rb") as f:
        raw = f.read()
    return parse_roster(_decode(raw), os.fspath(path))


def parse_roster(content: str, name: str = "<roster>") -> Roster:
    """Parse roster text; ``name`` prefixes error locations (``name:line: ...``)."""
    problems: list[str] = []
    entries: list[RosterEntry] = []
    owner_of: dict[tuple[str, str], tuple[str, int]] = {}  # ("mac"|"ip", value) -> (account, line)
    header_seen = False
    rows = 0
    for lineno, line in enumerate(content.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([line], strict=True))]
        except (csv.Error, StopIteration) as exc:
            problems.append(f"{name}:{lineno}: not a CSV line ({exc})")
            continue
        if not header_seen:
            header_seen = True
            if tuple(f.lower() for f in fields) != HEADER:
                problems.append(f"{name}:{lineno}: the first line must be the header {','.join(HEADER)!r}")
                break
            continue
        rows += 1
        if rows > MAX_ROWS:
            problems.append(f"{name}:{lineno}: more than {MAX_ROWS} rows")
            break
        entry = _row(fields, name, lineno, problems)
        if entry is None:
            continue
        for kind, value in (("mac", entry.mac), ("ip", entry.ip)):
            if value is None:
                continue
            prev = owner_of.setdefault((kind, value), (entry.account, lineno))
            if prev[0] != entry.account:
                problems.append(
                    f"{name}:{lineno}: {kind.upper()} {value} is already the account "
                    f"{prev[0]!r}'s (line {prev[1]})"
                )
        entries.append(entry)
    if not header_seen:
        problems.append(f"{name}:1: empty roster: the header {','.join(HEADER)!r} is missing")
    if problems:
        raise RosterError(problems[:MAX_PROBLEMS], max(0, len(problems) - MAX_PROBLEMS))
    return Roster(entries)


def _row(fields: list[str], name: str, lineno: int, problems: list[str]) -> RosterEntry | None:
    where = f"{name}:{lineno}"
    if len(fields) != len(HEADER):
        problems.append(f"{where}: expected {len(HEADER)} fields ({','.join(HEADER)}), got {len(fields)}")
        return None
    account, person, mac_text, ip_text = fields
    ok = True
    for label, value in zip(HEADER, fields, strict=True):
        if len(value) > MAX_FIELD_LEN:
            problems.append(f"{where}: {label} is longer than {MAX_FIELD_LEN} characters")
            ok = False
    if not account:
        problems.append(f"{where}: missing account")
        ok = False
    mac = normalize_mac(mac_text) if mac_text else None
    if mac_text and mac is None:
        problems.append(f"{where}: bad MAC address {mac_text!r} (want aa:bb:cc:dd:ee:ff)")
        ok = False
    ip: str | None = None
    if ip_text:
        try:
            ip = canonical_ip(ip_text)
        except ValueError:
            ip = None
        if ip is None or ip in UNSPECIFIED:
            problems.append(f"{where}: bad IP address {ip_text!r}")
            ip, ok = None, False
    if not ok:
        return None
    return RosterEntry(account=account, name=person or None, mac=mac, ip=ip, line=lineno)
