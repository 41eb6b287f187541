"""Application logins → bindings with sources ``http``, ``ftp``, ``pop3``, ``imap``, ``smtp``.

A successful login to a service shows which account was used from the connection's
originator address (``src_ip``). Only successful ones bind:
- ``http``: ``username`` (HTTP Basic, RFC 7617) and a response with status < 400 (a 401 or
  403 means the credentials were refused; no response, no proof);
- ``ftp``: the record of the command answered ``230 User logged in`` (RFC 959 §4.2.2, on
  PASS, or on USER when no password is asked), with ``user`` known. ``anonymous`` and ``ftp``
  (RFC 1635) name nobody and bind nothing (``app_logins_anonymous_ignored``);
- ``mailbox``: ``login_ok`` true and ``user``; the source is the record's ``protocol``
  (``pop3``|``imap``);
- ``smtp``: ``user`` (SMTP AUTH, RFC 4954). Limit: the smtp record does not say whether the
  server accepted the AUTH (a 235), so a refused AUTH that was followed by a mail
  transaction on the same connection binds too.

Emission: a ``login`` record the first time an (address, account, source) binding appears
(session_id = the connection's uid, mac = the MAC of the network session holding the
address then, if any). Seeing it again within ``app_login_ttl`` extends it silently.
These logins have no logout record: services do not log out at a point the capture can
see. They end, without a record, ``app_login_ttl`` after last seen, or when a network-level
session starts or ends on the address (the address may have changed hands).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agent.identity.fields import address, number, text
from agent.identity.login import LoginSource
from agent.identity.state import Bindings
from agent.protocols.ftp import UNKNOWN_USER

#: FTP user names that identify nobody (RFC 1635 anonymous FTP).
ANONYMOUS_FTP: Final = frozenset({"anonymous", "ftp"})
#: FTP reply "User logged in, proceed" (RFC 959 §4.2.2).
FTP_LOGGED_IN: Final = 230


class AppLogins:
    """Feeds http/ftp/mailbox/smtp records into the bindings (see the module docstring)."""

    def __init__(self, bindings: Bindings) -> None:
        self.b = bindings

    def observe(self, rtype: str, rec: Mapping[str, Any], ts: float) -> list[dict[str, Any]]:
        found = self._login(rtype, rec)
        if found is None:
            return []
        source, user = found
        ip = address(rec, "src_ip")
        if ip is None:
            return []
        return self.b.app_login(ip, user, source, ts, text(rec, "uid"))

    def _login(self, rtype: str, rec: Mapping[str, Any]) -> tuple[LoginSource, str] | None:
        if rtype == "http":
            user = text(rec, "username")
            status = number(rec, "status_code")
            if user is not None and status is not None and status < 400:
                return "http", user
        elif rtype == "ftp":
            user = text(rec, "user")
            if (
                user is not None
                and user != UNKNOWN_USER
                and text(rec, "command") in ("USER", "PASS")
                and number(rec, "reply_code") == FTP_LOGGED_IN
            ):
                if user.lower() in ANONYMOUS_FTP:
                    self.b.counters["app_logins_anonymous_ignored"] += 1
                    return None
                return "ftp", user
        elif rtype == "mailbox":
            user = text(rec, "user")
            protocol = text(rec, "protocol")
            if user is not None and rec.get("login_ok") is True:
                if protocol == "pop3":
                    return "pop3", user
                if protocol == "imap":
                    return "imap", user
        elif rtype == "smtp":
            user = text(rec, "user")
            if user is not None:
                return "smtp", user
        return None
