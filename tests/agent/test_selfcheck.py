"""The compliance self-check receipt from status files: a stopped agent fails every
"working" column with the reason; a running one's evidence (records by type, NAT source,
uploads, spool) makes each measure pass, and a missing piece fails exactly its measure."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from agent.config import load_config
from agent.run.status import StatusFile
from agent.selfcheck import check, main_selfcheck

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    (tmp_path / "agent.token").write_text("eaa_token\n")
    text = (REPO / "deploy" / "agent.toml").read_text()
    text = text.replace('"/etc/edgeaudit/agent.token"', '"agent.token"')
    text = text.replace('"/var/lib/edgeaudit/spool"', f'"{tmp_path / "spool"}"')
    examples = REPO / "rulesets" / "examples"
    text = text.replace('rules = "/var/lib/edgeaudit/rules.bundle"', f'rules = "{examples}"')
    text = text.replace('pubkeys = ["/etc/edgeaudit/rules-signing.pub"]', "pubkeys = []")
    text = text.replace('# cache_dir = "/var/lib/edgeaudit/rules.bundle.vectorscan"',
                        f'cache_dir = "{tmp_path / "engine-cache"}"')
    text = text.replace('roster = "/etc/edgeaudit/roster.csv"', "")
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def _running(tmp_path: Path, *, conntrack: bool = True, unit: bool = True, quarantined: int = 0) -> None:
    now = time.time()
    spool = tmp_path / "spool"
    sup: dict[str, Any] = {
        "role": "supervisor", "records": {"nat": 4, "audit": 1}, "last": {"nat": now - 5, "audit": now - 60},
        "conntrack": {"open": True} if conntrack else {"error": "Operation not permitted"},
        "unit_uploaded": now - 30 if unit else None, "unit_error": None if unit else "503: collector down",
        "spool": {"spool_records": 10, "spool_bytes": 1000, "file_bytes": 4096, "unsent_records": 0,
                  "quota_bytes": 2**30, "quota_alarm": False, "records_dropped": 0, "records_invalid": 0,
                  "evicted_early_records": 0, "upload_lag_s": None, "oldest_added": now - 3600,
                  "quarantined_records": quarantined},
        "uploader": {"counters": {}, "last_error": None},
    }
    StatusFile(spool, "supervisor").write(sup)
    StatusFile(spool, "lan0-0").write({"role": "capture", "records": {"login": 2, "session": 9, "alert": 1},
                                      "last": {"login": now - 100, "session": now - 1, "alert": now - 50},
                                      "capture": {"packets": 1000, "kernel_drops": 0}, "ruleset_version": 3,
                                      "keyword_engine": {"engine": "vectorscan",
                                                         "reason": "auto: vectorscan"}})


def test_a_stopped_agent_fails_with_the_reason(tmp_path: Path, capsys: Any) -> None:
    cfg = _config(tmp_path)
    assert main_selfcheck(cfg, offline=True) == 1
    out = capsys.readouterr().out
    assert "agent NOT running" in out and "[FAIL]" in out
    assert "configured ruleset" in out and "running ruleset version(s): none" in out


def test_a_running_agent_passes_and_each_gap_fails_its_measure(tmp_path: Path, capsys: Any) -> None:
    cfg_path = _config(tmp_path)
    cfg = load_config(cfg_path)
    _running(tmp_path)
    measures = {m.key: m for m in check(cfg, offline=True)}
    assert all(m.ok for m in measures.values()), {k: (m.configured, m.working, m.evidence)
                                                   for k, m in measures.items() if not m.ok}
    assert any("2 login records" in e for e in measures["login"].evidence)
    assert any("running ruleset version(s): 3" in e for e in measures["filtering"].evidence)
    assert "running keyword engine: vectorscan (auto: vectorscan)" in measures["filtering"].evidence
    assert any("keyword engine vectorscan (auto: vectorscan" in e for e in measures["filtering"].evidence)
    assert (tmp_path / "engine-cache").is_dir()  # the configured ruleset was compiled with its cache

    _running(tmp_path, conntrack=False, unit=False)
    measures = {m.key: m for m in check(cfg, offline=True)}
    failed = {k for k, m in measures.items() if not m.ok}
    assert failed == {"nat", "registration"}, failed
    assert any("Operation not permitted" in e for e in measures["nat"].evidence)
    assert any("503: collector down" in e for e in measures["registration"].evidence)

    # records the collector refused for good, held in the spool's quarantine: upload is not working
    _running(tmp_path, quarantined=120)
    measures = {m.key: m for m in check(cfg, offline=True)}
    assert {k for k, m in measures.items() if not m.ok} == {"upload"}
    assert any("120 records the collector refused" in e for e in measures["upload"].evidence)

    _running(tmp_path, conntrack=False, unit=False)
    assert main_selfcheck(cfg_path, as_json=True, offline=True) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {m["key"] for m in doc["measures"] if not m["ok"]} == {"nat", "registration"}


def test_a_dead_pid_is_not_running(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path))
    _running(tmp_path)
    status = tmp_path / "spool" / "status" / "supervisor.json"
    doc = json.loads(status.read_text())
    doc["pid"] = 2**22 + 17  # above pid_max's default: no such process
    status.write_text(json.dumps(doc))
    measures = {m.key: m for m in check(cfg, offline=True)}
    assert not measures["capture"].working and "NOT running" in measures["capture"].evidence[1]
    assert os.getpid() > 0


def test_spool_stats_and_check_from_the_command_line(tmp_path: Path, capsys: Any) -> None:
    from agent.cli import main
    from agent.spool.store import Spool

    cfg = _config(tmp_path)
    (tmp_path / "spool").mkdir()
    spool = Spool(tmp_path / "spool" / "spool.sqlite")
    spool.append([{"type": "audit", "ts": time.time(), "actor": "agent", "action": "start", "target": "agent",
                   "detail": "test", "result": "ok"}])
    spool.close()
    assert main(["spool", "stats", "--config", str(cfg)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["spool_records"] == 1 and stats["unsent_records"] == 1
    assert main(["spool", "check", "--config", str(cfg)]) == 0
    assert "ok" in capsys.readouterr().out
    # a damaged file: check says so and exits 1
    path = tmp_path / "spool" / "spool.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))
    assert main(["spool", "check", "--config", str(cfg)]) == 1
    assert "spool" in capsys.readouterr().err
