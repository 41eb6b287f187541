"""Building the ``login`` record (SCHEMA.md "login"): one shape for every source.

What: ``login_record`` returns a complete ``login`` record (every field present, as
``wire.validate`` wants); ``LoginSource`` and ``NETWORK_SOURCES`` name the sources.

Clamping: a login time reconstructed from a RADIUS ``session_time`` (Interim-Update or Stop
for a session whose Start was not seen) can fall before the epoch on crafted input, and a
clock step can make a duration negative; ``ts`` is clamped to ``MIN_TS`` and ``duration`` to
0 so that the record is always valid.
"""

from __future__ import annotations

from typing import Any, Final, Literal, cast

from wire.limits import MIN_TS
from wire.records import LoginRecord, LoginSource

Event = Literal["login", "logout"]

#: Sources that say which host holds an address (an address lease or an access session).
#: They outrank application logins (see the package docstring, "Priority").
NETWORK_SOURCES: Final[frozenset[str]] = frozenset({"radius", "pppoe", "portal", "dhcp"})
#: Sources that only say an account logged in to some service from an address.
APP_SOURCES: Final[frozenset[str]] = frozenset({"http", "ftp", "pop3", "imap", "smtp"})


def login_record(
    *,
    ts: float,
    event: Event,
    account: str | None,
    ip: str | None,
    mac: str | None,
    calling_station: str | None,
    source: LoginSource,
    session_id: str | None,
    duration: float | None = None,
) -> dict[str, Any]:
    """A ``login`` record; ``calling_station`` falls back to ``mac`` (SCHEMA.md: "or the MAC")."""
    rec: LoginRecord = {
        "type": "login",
        "ts": max(MIN_TS, ts),
        "event": event,
        "account": account,
        "ip": ip,
        "mac": mac,
        "calling_station": calling_station if calling_station is not None else mac,
        "source": source,
        "session_id": session_id,
        "duration": None if duration is None else max(0.0, duration),
    }
    return cast(dict[str, Any], rec)


__all__ = ["APP_SOURCES", "NETWORK_SOURCES", "Event", "LoginSource", "login_record"]
