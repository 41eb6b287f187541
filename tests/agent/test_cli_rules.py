"""`edgeaudit-agent replay --rules` and `edgeaudit-rules test`, run as commands on real files:
a ruleset directory or a signed bundle in, `alert` records out; a bad ruleset or bundle is
refused with its reason and nothing is scanned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from test_cli import REPO, read_jsonl, run, tcp_conn, write_pcap

from rulesets.bundle import sign_bundle
from rulesets.keys import load_private_key, write_keypair

EXAMPLES = REPO / "rulesets" / "examples"


def capture(tmp_path: Path) -> Path:
    frames = tcp_conn("192.0.2.10", 40001, "198.51.100.80", 80, 1_700_000_000.0,
                      request=f"GET /s?q={quote('在线赌场')} HTTP/1.1\r\nHost: a.example\r\n\r\n".encode())
    frames += tcp_conn("192.0.2.10", 40002, "198.51.100.80", 80, 1_700_000_001.0,
                       request=(b"POST /buy HTTP/1.1\r\nHost: b.example\r\nContent-Length: 12\r\n\r\n"
                                b"buy meth now"))
    path = tmp_path / "c.pcap"
    write_pcap(path, frames)
    return path


def test_replay_with_a_ruleset_directory(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    res = run("replay", capture(tmp_path), "--jsonl", out, "--rules", EXAMPLES)
    assert res.returncode == 0, res.stderr
    got = sorted((r["field"], r["category"], r["keyword"], r["action"], r["encoding"])
                 for r in read_jsonl(out) if r["type"] == "alert")
    assert got == [("http.request_body", "drugs", "buy meth", "block", "utf-8"),
                   ("http.uri", "gambling", "在线赌场", "alert", "url")]


def test_a_bad_ruleset_is_refused_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ruleset.toml").write_text('name = "x"\nversion = 1\n[[categories]]\nid = "a"\naction = "stop"\n'
                                      'severity = 3\nkeywords = "k.txt"\n')
    (bad / "k.txt").write_bytes(b"fine\nx\n")
    res = run("replay", capture(tmp_path), "--jsonl", tmp_path / "o.jsonl", "--rules", bad)
    assert res.returncode == 2
    assert "ruleset.toml:5" in res.stderr and "k.txt:2" in res.stderr


def test_replay_with_a_signed_bundle(tmp_path: Path) -> None:
    write_keypair(tmp_path / "signer")
    bundle = tmp_path / "rules.bundle"
    sign_bundle(EXAMPLES, load_private_key(tmp_path / "signer.key"), bundle, expires=4_000_000_000)
    cap = capture(tmp_path)
    out = tmp_path / "out.jsonl"
    res = run("replay", cap, "--jsonl", out, "--rules", bundle, "--pubkey", tmp_path / "signer.pub")
    assert res.returncode == 0, res.stderr
    assert len([r for r in read_jsonl(out) if r["type"] == "alert"]) == 2
    # without a key, or with another one, it is refused
    res = run("replay", cap, "--jsonl", out, "--rules", bundle)
    assert res.returncode == 2 and "--pubkey" in res.stderr
    write_keypair(tmp_path / "other")
    res = run("replay", cap, "--jsonl", out, "--rules", bundle, "--pubkey", tmp_path / "other.pub")
    assert res.returncode == 2 and "bundle refused" in res.stderr and "unknown key" in res.stderr


def test_rules_test_prints_what_would_match(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = [sys.executable, "-m", "rulesets.cli", "test", str(EXAMPLES), str(capture(tmp_path))]
    res = subprocess.run(argv,
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "'在线赌场'" in res.stdout and "gambling/alert" in res.stdout and "drugs/block" in res.stdout
    assert "2 alert(s)" in res.stdout
