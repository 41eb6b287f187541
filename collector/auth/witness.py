"""Witnesses: where the collector's signed audit checkpoints go, off its own disk.

What: a `Checkpointer` signs the audit log's head (collector.auth.checkpoints) and hands the
line to each witness: a `FileWitness` appends it to a file (`serve --witness-file PATH`, meant
to be on another mount: NFS, a WORM share, a disk an auditor's `chattr +a` protects); a
`SyslogWitness` sends it to a remote syslog over TCP (`serve --witness-syslog HOST:PORT`) as
an RFC 5424 message (facility 13 "log audit", severity notice, APP-NAME edgeaudit-collector,
MSGID checkpoint, the line as MSG) framed by octet counting (RFC 6587 section 3.4.1), which
rsyslog's imtcp and syslog-ng take. The collector checkpoints when it starts, every
`serve --checkpoint-interval` seconds (default `DEFAULT_INTERVAL`) and when it stops, and
writes every checkpoint to its stderr too (the journal is one more copy).

Why: someone who can write the audit log can cut its tail or rewrite it whole and the chain
still verifies; what they cannot reach is a copy elsewhere. `audit verify --checkpoints FILE`
then catches both (collector.auth.checkpoints).

Failure: a witness that cannot be reached is said on stderr, in one line, and tried again at
the next checkpoint; the collector keeps serving (the checkpoint also went to stderr). A
syslog message counts as delivered once the receiver, having read our whole stream (we
half-close it), closes its end within `TIMEOUT_S`: that proves it reached the receiver's
process, not its disk.

Limits: plain TCP, no TLS (RFC 5425) and no RELP acknowledgement: a man in the middle can drop
checkpoints (the signature stops him from forging them). One connection per checkpoint.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Protocol

from collector.auth.audit import AuditLog
from collector.auth.checkpoints import Checkpoint, sign
from rulesets.keys import Ed25519PrivateKey

DEFAULT_INTERVAL: Final = 300.0
MAX_INTERVAL: Final = 86400.0
TIMEOUT_S: Final = 5.0
FILE_MODE: Final = 0o600
# RFC 5424 section 6.2.1: facility 13 is "log audit", severity 5 "notice"; PRI = 13 * 8 + 5.
SYSLOG_PRI: Final = 13 * 8 + 5
APP_NAME: Final = "edgeaudit-collector"
MSGID: Final = "checkpoint"
MAX_HOSTNAME: Final = 255  # RFC 5424 HOSTNAME is 1*255PRINTUSASCII


class WitnessError(Exception):
    """A witness option that cannot work (said at start, before serving)."""


class Witness(Protocol):
    name: str

    def send(self, checkpoint: Checkpoint) -> None:
        """Hand the checkpoint over; OSError when it did not get there."""


class FileWitness:
    """Appends each checkpoint line to a file, fsync'ed."""

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            raise WitnessError(f"--witness-file {path}: no directory {path.parent}")
        self.path = path
        self.name = f"file {path}"

    def same_device_as(self, other: Path) -> bool:
        """Whether the file lies on the file system of ``other`` (then it is lost with it)."""
        return os.stat(self.path.parent).st_dev == os.stat(other).st_dev

    def send(self, checkpoint: Checkpoint) -> None:
        created = not self.path.exists()
        # O_APPEND: never overwrite what is there (the mount or `chattr +a` may insist on it)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            data = (checkpoint.line() + "\n").encode("ascii")
            if os.write(fd, data) != len(data):
                raise OSError(0, "short write")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's name must survive a crash as well as its line
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def parse_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise WitnessError(f"--witness-syslog wants HOST:PORT, not {text!r}")
    return host, int(port)


def syslog_frame(checkpoint: Checkpoint, hostname: str, procid: int) -> bytes:
    """The RFC 5424 message carrying ``checkpoint``, octet-counted (RFC 6587 3.4.1)."""
    host = "".join(c for c in hostname if 33 <= ord(c) <= 126)[:MAX_HOSTNAME] or "-"
    message = (f"<{SYSLOG_PRI}>1 {checkpoint.ts} {host} {APP_NAME} {procid} {MSGID} - "
               f"{checkpoint.line()}").encode("ascii")
    return f"{len(message)} ".encode("ascii") + message


class SyslogWitness:
    """Sends each checkpoint to a syslog server over TCP (module doc)."""

    def __init__(self, address: str) -> None:
        self.host, self.port = parse_host_port(address)
        self.name = f"syslog {address}"

    def send(self, checkpoint: Checkpoint) -> None:
        frame = syslog_frame(checkpoint, socket.gethostname(), os.getpid())
        with socket.create_connection((self.host, self.port), timeout=TIMEOUT_S) as sock:
            sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
            # the receiver closes once it has read everything we sent; data it sends is not ours
            while sock.recv(4096):
                pass


def _stderr(line: str) -> None:
    print(f"edgeaudit-collector: {line}", file=sys.stderr, flush=True)


class Checkpointer:
    """Signs the audit log's head and sends it to every witness (module doc)."""

    def __init__(self, audit: AuditLog, key: Ed25519PrivateKey, witnesses: Sequence[Witness],
                 say: Callable[[str], None] = _stderr) -> None:
        self._audit = audit
        self._key = key
        self._witnesses = list(witnesses)
        self._say = say

    def checkpoint(self) -> tuple[Checkpoint, list[str]]:
        """Sign and send one checkpoint now; (it, the witnesses' failures)."""
        seq, digest = self._audit.head()
        checkpoint = sign(self._key, seq, digest)
        self._say(checkpoint.line())
        failures: list[str] = []
        for witness in self._witnesses:
            try:
                witness.send(checkpoint)
            except OSError as e:
                failures.append(f"{witness.name}: {e.strerror or e}")
                self._say(f"audit checkpoint not delivered to {failures[-1]} (retried at the next one)")
        return checkpoint, failures
