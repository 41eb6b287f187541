"""How the collector's CLI writes its administrative actions to the audit log.

What: `open_admin_audit(data)` gives the CLI an `AdminAudit` whose `record(action, target,
detail, result)` appends one entry with the actor ``cli:<OS user>``:
  - when no collector runs, the CLI opens the log itself (`LocalAudit`) and holds its lock
    until the command ends (a collector starting meanwhile waits for a restart);
  - while a collector runs (the log's lock is held: `AuditBusy`), the CLI asks it over a Unix
    socket in the data directory, `cli.sock` (`RemoteAudit`); the collector serves it with
    `serve_channel` and appends the entry to its own log.
  - Neither: `AuditUnavailable`, and the command changes nothing.

Why this way: a second writer would fork the chain, so the one process that holds the log
writes it. Who asks is decided by the kernel, not by the client: the collector reads the
caller's uid from the socket (SO_PEERCRED) and names it, as the CLI names its own effective
uid when it writes locally; a `--actor` a caller types is kept only as "requested_by". Only
root and the collector's own user may connect (the socket is 0600 in a 0700 directory, and the
uid is checked again). When the login uid the kernel keeps through su/sudo differs, it is
recorded as "login_user" (what auditd calls auid). The channel takes only `CLI_ACTIONS`:
it is not a way to write arbitrary entries in someone else's name.

Order: the CLI makes sure it can audit (the log locked, or the collector answering a ping)
before it changes anything, then records the result, refusals too. If that last write fails,
what the change granted is taken back (a new user disabled, a new agent revoked, a hold
change undone) and the command fails; a revocation or a disabling stays done.

Limits: one request line of at most `MAX_REQUEST` bytes, `TIMEOUT_S` per read. `retention run`
does not go through the channel: the running collector runs its own passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import socket
import struct
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from collector.auth.audit import AuditBusy, AuditError, AuditLog

SOCKET_NAME: Final = "cli.sock"
CLI_ACTIONS: Final = frozenset({"user_add", "user_disable", "agent_add", "agent_revoke", "hold_add",
                                "hold_remove"})
MAX_REQUEST: Final = 64 * 1024
TIMEOUT_S: Final = 30.0
# sun_path holds 108 bytes; a longer data directory is reached through /proc/self/fd
MAX_SOCKET_PATH: Final = 100
NO_LOGIN_UID: Final = 0xFFFFFFFF  # (uid_t)-1: no login session (a daemon, a container's init)


class AuditUnavailable(AuditError):
    """Neither the log nor a running collector can take the CLI's entries."""


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def cli_actor(uid: int, pid: int) -> tuple[str, dict[str, str]]:
    """The actor for a CLI process (``cli:<name of uid>``) and, when its login uid (through
    su or sudo) is another user's, {"login_user": that name}."""
    extra: dict[str, str] = {}
    try:
        login = int(Path(f"/proc/{pid}/loginuid").read_text())
    except (OSError, ValueError):
        login = NO_LOGIN_UID
    if login not in (NO_LOGIN_UID, uid):
        extra["login_user"] = _user_name(login)
    return f"cli:{_user_name(uid)}", extra


class _SocketPath:
    """The socket's path, short enough for sun_path (module Limits)."""

    def __init__(self, data: Path) -> None:
        self._dir_fd = -1
        path = data / SOCKET_NAME
        if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
            self.text = str(path)
        else:
            self._dir_fd = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.text = f"/proc/self/fd/{self._dir_fd}/{SOCKET_NAME}"

    def close(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


# ---- the collector's side


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a Unix socket."""
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    return pid, uid


def _append_request(request: Any) -> tuple[str, str, dict[str, Any], str]:
    """The fields of an append request; ValueError saying what is wrong."""
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    action, target, detail, result = (request.get(k) for k in ("action", "target", "detail", "result"))
    if action not in CLI_ACTIONS:
        raise ValueError(f"action must be one of {sorted(CLI_ACTIONS)}")
    if not isinstance(target, str) or not isinstance(result, str) or not isinstance(detail, dict):
        raise ValueError("target and result are strings, detail an object")
    return action, target, detail, result


class Channel:
    """The collector's end: appends the CLI's entries to ``audit`` (module doc)."""

    def __init__(self, data: Path, audit: AuditLog) -> None:
        self._data = data
        self._audit = audit
        self._path = _SocketPath(data)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        # The audit log's lock is ours, so a socket file left here is a dead collector's.
        (self._data / SOCKET_NAME).unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._client, path=self._path.text, limit=MAX_REQUEST)
        os.chmod(self._data / SOCKET_NAME, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        (self._data / SOCKET_NAME).unlink(missing_ok=True)
        self._path.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid = _peer(writer.get_extra_info("socket"))
            if uid not in (0, os.geteuid()):
                await self._reply(writer, {"error": "only root and the collector's user may ask"})
                return
            actor, extra = cli_actor(uid, pid)
            while line := await asyncio.wait_for(reader.readline(), TIMEOUT_S):
                await self._reply(writer, await self._answer(line, actor, extra))
        except (TimeoutError, ValueError, ConnectionError, OSError):
            pass  # a request over MAX_REQUEST, a silent or vanished client: nothing was appended
        finally:
            writer.close()

    async def _answer(self, line: bytes, actor: str, extra: dict[str, str]) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if isinstance(request, dict) and request.get("op") == "ping":
                return {"ok": True, "actor": actor}
            action, target, detail, result = _append_request(request)
        except ValueError as e:
            return {"error": f"bad request: {e}"}
        try:
            entry = await asyncio.get_running_loop().run_in_executor(
                None, self._audit.append, actor, action, target, {**detail, **extra}, result)
        except AuditError as e:
            return {"error": str(e)}
        return {"ok": True, "seq": entry["seq"]}

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()


# ---- the CLI's side


class AdminAudit:
    """Where the CLI's entries go for one command: ``with open_admin_audit(data) as audit``."""

    actor: str
    through_collector: bool

    def record(self, action: str, target: str, detail: dict[str, Any], result: str) -> None:
        """Append one entry (AuditError when it was not written)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> AdminAudit:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LocalAudit(AdminAudit):
    """The CLI writes the log itself (no collector runs)."""

    through_collector = False

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self.actor, self._extra = cli_actor(os.geteuid(), os.getpid())

    def record(self, action: str, target: str, detail: dict[str, Any], result: str) -> None:
        self._log.append(self.actor, action, target, {**detail, **self._extra}, result)

    def close(self) -> None:
        self._log.close()


class RemoteAudit(AdminAudit):
    """The running collector writes the CLI's entries (module doc)."""

    through_collector = True

    def __init__(self, data: Path) -> None:
        path = _SocketPath(data)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(TIMEOUT_S)
        try:
            self._sock.connect(path.text)
            self._file = self._sock.makefile("rwb")
            self.actor = str(self._ask({"op": "ping"})["actor"])
        except (OSError, AuditError) as e:
            self._sock.close()
            raise AuditUnavailable(f"the audit log is held by another process (a running collector?) "
                                   f"that does not answer on {data / SOCKET_NAME}: {e}") from None
        finally:
            path.close()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        self._file.write(json.dumps(request).encode() + b"\n")
        self._file.flush()
        line = self._file.readline(MAX_REQUEST)
        try:
            answer = json.loads(line) if line else {"error": "the collector closed the connection"}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            answer = {"error": "the collector's answer is not a JSON object"}
        if not answer.get("ok"):
            raise AuditError(f"the collector did not audit it: {answer.get('error', answer)}")
        return answer

    def record(self, action: str, target: str, detail: dict[str, Any], result: str) -> None:
        try:
            self._ask({"action": action, "target": target, "detail": detail, "result": result})
        except OSError as e:
            raise AuditError(f"the collector did not audit it: {e}") from None

    def close(self) -> None:
        self._file.close()
        self._sock.close()


def open_admin_audit(data: Path) -> AdminAudit:
    """The log itself when free, else the running collector's channel; AuditError if neither."""
    try:
        return LocalAudit(AuditLog(data / "audit.log"))
    except AuditBusy:
        return RemoteAudit(data)
