"""`edgeaudit-agent replay` with publishing hosts: --publishing-host, --config (its [publishing] and
the hosts its [unit] services name), and refusals naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import dpkt
import pytest
from tcp_frames import Conn

from agent.cli import main
from wire.validate import validate_record

T0 = 1_700_000_000.0
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def capture(tmp_path: Path) -> Path:
    """Three posts, to bbs., news. and www.example.cn, each on its own connection."""
    frames: list[bytes] = []
    for n, host in enumerate(("bbs.example.cn", "news.example.cn", "www.example.cn")):
        body = urlencode({"author": f"作者{n}", "message": f"发往 {host}"}).encode()
        req = (f"POST /post HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        c = Conn("192.0.2.10", 40000 + n, "198.51.100.80", 80)
        frames += c.handshake() + c.exchange(req, OK) + c.close()
    path = tmp_path / "posts.pcap"
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=T0 + i * 0.01)
    return path


def replay(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(capture(tmp_path)), "--jsonl", str(out), "--no-progress", *args]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    for r in recs:
        validate_record(r)
    return [r for r in recs if r["type"] == "publish"]


def test_no_publishing_host_no_publish_record(tmp_path: Path) -> None:
    assert replay(tmp_path) == []


def test_publishing_hosts_on_the_command_line(tmp_path: Path) -> None:
    pubs = replay(tmp_path, "--publishing-host", "BBS.example.cn", "--publishing-host", "news.example.cn:80")
    assert [(p["host"], p["text"]) for p in pubs] == [
        ("bbs.example.cn", "author=作者0\nmessage=发往 bbs.example.cn"),
        ("news.example.cn", "author=作者1\nmessage=发往 news.example.cn")]


def test_publishing_hosts_from_the_agents_configuration(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("""
[capture]
interfaces = ["eth0"]
[collector]
url = "http://127.0.0.1:1"
token = "t"
[spool]
path = "spool"
[unit]
name = "某某网"
services = ["上网服务", "新闻发布 news.example.cn"]
[publishing]
hosts = ["*.example.cn"]
from_profile = true
""")
    # *.example.cn names all three; the profile's news host once more
    assert [p["host"] for p in replay(tmp_path, "--config", str(cfg))] == [
        "bbs.example.cn", "news.example.cn", "www.example.cn"]
    cfg.write_text(cfg.read_text().replace('hosts = ["*.example.cn"]', "hosts = []"))
    assert [p["host"] for p in replay(tmp_path, "--config", str(cfg))] == ["news.example.cn"]
    both = replay(tmp_path, "--config", str(cfg), "--publishing-host", "bbs.example.cn")
    assert [p["host"] for p in both] == ["bbs.example.cn", "news.example.cn"]


def test_bad_hosts_and_configurations_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap, out = str(capture(tmp_path)), str(tmp_path / "o.jsonl")
    assert main(["replay", cap, "--jsonl", out, "--publishing-host", "bbs example"]) == 2
    assert "--publishing-host: 'bbs example': not a host name" in capsys.readouterr().err
    cfg = tmp_path / "agent.toml"
    cfg.write_text("[publishing]\nhosts = 3\n")
    assert main(["replay", cap, "--jsonl", out, "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "[publishing].hosts: must be a list of host names, not 3" in err
