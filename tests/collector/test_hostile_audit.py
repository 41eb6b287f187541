"""The audit trail against someone who would leave no trace (issue 18, part C).

Every administrative command is audited with the OS user who ran it, through the running
collector when one holds the log; `retention run` beside a running collector, or with an
absurd period, says why in one line. The collector signs checkpoints of its log and hands
them to a witness file and a remote syslog over TCP (a real TCP listener here, and rsyslog
when installed); `audit verify --checkpoints` then catches what the chain alone cannot: a
cut tail (also once the collector restarted on it) and a chain rewritten whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_process import run_cli, running, serve_log
from collector_server import free_port, serve
from test_collector_units import request

from collector.auth.audit import GENESIS_PREV, canonical, entry_hash

ME = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
NOW = 1_800_000_000.0
CHECKPOINT = re.compile(r"edgeaudit-checkpoint (\{.*\})$")
# RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
SYSLOG_HEADER = re.compile(r"<109>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ edgeaudit-collector \d+ "
                           r"checkpoint - (edgeaudit-checkpoint \{.*\})$")


def ok(*args: str) -> str:
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def entries(data: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (data / "audit.log").read_text().splitlines()]


def one_line_refusal(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for word in words:
        assert word in res.stderr


def test_every_cli_change_is_audited_as_the_os_user(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    token = ok("agents", "add", "gw1", "--unit", "unit-42", "--data", data)
    password = ok("users", "add", "olga", "--role", "operator", "--data", data)
    assert run_cli("users", "add", "olga", "--role", "admin", "--data", data).returncode == 1  # exists
    ok("users", "disable", "olga", "--data", data)
    ok("agents", "revoke", "gw1", "--data", data)
    ok("holds", "add", "--account", "alice", "--actor", "court order 17", "--data", data)
    ok("holds", "remove", "--account", "alice", "--data", data)
    ok("retention", "run", "--now", str(NOW), "--data", data)
    log = entries(Path(data))
    assert [(e["actor"], e["action"], e["result"]) for e in log] == [
        (ME, "agent_add", "ok"), (ME, "user_add", "ok"), (ME, "user_add", "refused: user 'olga' exists"),
        (ME, "user_disable", "ok"), (ME, "agent_revoke", "ok"), (ME, "hold_add", "ok"),
        (ME, "hold_remove", "ok"), (ME, "retention", "ok")]
    assert log[0]["detail"] == {"name": "gw1", "unit": "unit-42"}
    assert log[5]["detail"]["requested_by"] == "court order 17"  # said, not trusted as the actor
    text = (Path(data) / "audit.log").read_text()
    assert token not in text and password not in text
    assert "intact: 8 entries" in ok("audit", "verify", "--data", data)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve(tmp_path)


def _channel(data: Path, request_: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(data / "cli.sock"))
        s.sendall(json.dumps(request_).encode() + b"\n")
        answer: dict[str, Any] = json.loads(s.makefile("rb").readline())
        return answer


def test_while_a_collector_runs_the_cli_is_audited_through_it(collector: dict[str, Any]) -> None:
    c = collector
    data = str(c["data"])
    made = len(entries(c["data"]))  # the fixture's own agents and users, made by the CLI: audited
    assert [(e["actor"], e["action"]) for e in entries(c["data"])] == [(ME, "agent_add")] * 2 + [
        (ME, "user_add")] * 3
    ok("agents", "revoke", "gw2", "--data", data)
    password = ok("users", "add", "wang", "--role", "operator", "--data", data)
    ok("users", "disable", "wang", "--data", data)
    ok("holds", "add", "--unit", "unit-7", "--data", data)
    assert run_cli("agents", "revoke", "nobody", "--data", data).returncode == 1
    log = entries(c["data"])[made:]
    assert [(e["actor"], e["action"], e["result"]) for e in log] == [
        (ME, "agent_revoke", "ok"), (ME, "user_add", "ok"), (ME, "user_disable", "ok"),
        (ME, "hold_add", "ok"), (ME, "agent_revoke", "refused: no agent 'nobody'")]
    assert password not in (c["data"] / "audit.log").read_text()
    # the collector's own entries go on in the same chain
    assert request(c, "GET", "/api/v1/query/records?type=dns", user=c["operator"])[0] == 200
    assert entries(c["data"])[-1]["action"] == "records"
    # the channel names the caller itself and writes only the CLI's actions
    assert "error" in _channel(c["data"], {"action": "records", "target": "x", "detail": {}, "result": "ok"})
    assert _channel(c["data"], {"actor": "olga", "action": "user_add", "target": "user x", "detail": {},
                                "result": "ok"})["ok"]
    assert entries(c["data"])[-1]["actor"] == ME
    assert "intact" in ok("audit", "verify", "--data", data)
    # retention by hand beside the collector's own passes: refused in one line
    one_line_refusal(run_cli("retention", "run", "--data", data), "collector is running")


def test_a_period_past_any_date_is_refused_in_one_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    one_line_refusal(run_cli("retention", "run", "--retention-days", "99999999999", "--data", data),
                     "more than a century")
    one_line_refusal(run_cli("serve", "--retention-days", "99999999999", "--data", data),
                     "more than a century")


class SyslogReceiver:
    """A TCP syslog server on loopback that takes octet-counted frames (RFC 6587 3.4.1), as
    rsyslog's imtcp does, and keeps each message."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = await reader.readuntil(b" ")
                assert length[:-1].isdigit(), length
                self.messages.append((await reader.readexactly(int(length[:-1]))).decode("utf-8"))
        except asyncio.IncompleteReadError as end:
            assert end.partial == b"", end.partial  # nothing between frames, nothing cut
        finally:
            writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _checkpoints(text: str) -> list[dict[str, Any]]:
    return [json.loads(m.group(1)) for line in text.splitlines() if (m := CHECKPOINT.search(line))]


def _wait_for(predicate: Any, what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def verify_with(data: Path, checkpoints: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("audit", "verify", "--data", str(data), "--checkpoints", str(checkpoints),
                   "--pubkey", str(pub))


def _rewritten(lines: list[str]) -> str:
    """The log with its first entry changed and every hash after it recomputed: a valid chain."""
    out, prev = [], GENESIS_PREV
    for i, line in enumerate(lines):
        entry = json.loads(line)
        if i == 0:
            entry["detail"] = {"name": "someone-else", "unit": "unit-42"}
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
        out.append(canonical(entry).decode())
    return "\n".join(out) + "\n"


def test_signed_checkpoints_at_witnesses_catch_a_cut_tail_and_a_rewritten_chain(tmp_path: Path) -> None:
    data = tmp_path / "data"
    witness, syslog_copy = tmp_path / "witness" / "checkpoints", tmp_path / "syslog.txt"
    pub = tmp_path / "pub"
    witness.parent.mkdir()
    ok("agents", "add", "gw1", "--unit", "unit-42", "--data", str(data))
    receiver = SyslogReceiver()
    try:
        options = ("--checkpoint-interval", "0.2", "--witness-file", str(witness),
                   "--witness-syslog", f"127.0.0.1:{receiver.port}")
        with running(data, *options):
            for name in ("olga", "ada", "li"):
                ok("users", "add", name, "--role", "operator", "--data", str(data))
            _wait_for(lambda: witness.exists() and _checkpoints(witness.read_text())[-1]["seq"] == 4,
                      "a checkpoint of the four entries reaches the witness file")
        _wait_for(lambda: len(receiver.messages) >= len(_checkpoints(witness.read_text())),
                  "every checkpoint reaches the syslog too")
    finally:
        receiver.stop()
    key = data / "audit-checkpoint.key"
    assert key.stat().st_mode & 0o777 == 0o600
    pub.write_text(ok("audit", "pubkey", "--data", str(data)) + "\n")
    assert pub.read_text() == (data / "audit-checkpoint.pub").read_text()
    assert "ed25519 " in serve_log(data)  # printed when made
    # the same signed lines in the file and the syslog, the last one taken at the stop
    in_file = _checkpoints(witness.read_text())
    from_syslog = []
    for message in receiver.messages:
        m = SYSLOG_HEADER.fullmatch(message)
        assert m, message
        from_syslog.append(m.group(1))
    assert _checkpoints("\n".join(from_syslog)) == in_file
    assert len(in_file) >= 3 and in_file[-1]["seq"] == 4
    syslog_copy.write_text("\n".join(from_syslog) + "\n")
    for copy in (witness, syslog_copy):
        res = verify_with(data, copy, pub)
        assert res.returncode == 0 and "intact: 4 entries" in res.stdout, res.stderr

    log = data / "audit.log"
    full = log.read_text().splitlines()
    # the tail cut off: the chain alone verifies, the checkpoints do not
    log.write_text("\n".join(full[:2]) + "\n")
    assert "intact" in ok("audit", "verify", "--data", str(data))
    for copy in (witness, syslog_copy):
        res = verify_with(data, copy, pub)
        assert res.returncode == 1 and "removed from the end" in res.stderr, res.stderr
    # ... and the collector restarted on the cut log, its chain growing again past the cut
    with running(data, "--witness-file", str(witness)):
        for name in ("zhao", "qian", "sun"):
            ok("users", "add", name, "--role", "operator", "--data", str(data))
    assert "intact: 5 entries" in ok("audit", "verify", "--data", str(data))
    res = verify_with(data, witness, pub)
    assert res.returncode == 1 and "does not match the checkpoint" in res.stderr, res.stderr
    # the whole chain rewritten: the chain verifies, the checkpoints do not
    log.write_text(_rewritten(full))
    assert "intact: 4 entries" in ok("audit", "verify", "--data", str(data))
    for copy in (witness, syslog_copy):
        res = verify_with(data, copy, pub)
        assert res.returncode == 1 and "chain rewritten" in res.stderr and "line 1" in res.stderr, res.stderr
    # a checkpoint someone wrote into the witness without the key is refused, not believed
    forged = dict(in_file[-1], seq=2, hash=json.loads(full[1])["hash"])
    forged_copy = tmp_path / "forged.txt"
    forged_copy.write_text("edgeaudit-checkpoint " + canonical(forged).decode() + "\n")
    log.write_text("\n".join(full[:2]) + "\n")
    res = verify_with(data, forged_copy, pub)
    assert res.returncode == 1 and "signature does not verify" in res.stderr, res.stderr


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslog is not installed")
def test_rsyslog_keeps_the_checkpoints_it_is_sent(tmp_path: Path) -> None:
    """Debian's rsyslogd, imtcp on loopback, writing what it receives to a file: the file
    verifies the log as the collector's own witness file does."""
    port, out = free_port(), tmp_path / "rsyslog-out.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'global(workDirectory="{tmp_path}")\nmodule(load="imtcp")\n'
                    f'input(type="imtcp" port="{port}" address="127.0.0.1")\n'
                    f'action(type="omfile" file="{out}")\n')
    rsyslogd = subprocess.Popen(["rsyslogd", "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _listening(port), "rsyslogd listens")
        data = tmp_path / "data"
        ok("agents", "add", "gw1", "--unit", "unit-42", "--data", str(data))
        with running(data, "--witness-syslog", f"127.0.0.1:{port}"):
            ok("users", "add", "olga", "--role", "operator", "--data", str(data))
        _wait_for(lambda: out.exists() and any(cp["seq"] == 2 for cp in _checkpoints(out.read_text())),
                  "rsyslogd wrote the stop's checkpoint")
    finally:
        rsyslogd.terminate()
        rsyslogd.wait(10)
    assert "intact: 2 entries" in ok("audit", "verify", "--data", str(data), "--checkpoints", str(out))
    (data / "audit.log").write_text((data / "audit.log").read_text().splitlines()[0] + "\n")
    res = run_cli("audit", "verify", "--data", str(data), "--checkpoints", str(out))
    assert res.returncode == 1 and "removed from the end" in res.stderr, res.stderr


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
