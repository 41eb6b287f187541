"""edgeaudit-agent, run as a subprocess on captures written in tmp_path.

`replay`: JSON-lines output, --summary/--stats, damaged and non-capture files
(one-line error naming file and offset, exit 2, records before the damage kept),
several files read as one stream, pcapng. `synth`: the requested packet count.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dpkt
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw
from scapy.utils import wrpcapng

from wire.validate import validate_record

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0
MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
RMAC = dict(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")

Frames = list[tuple[float, bytes]]


# -- capture builders ---------------------------------------------------------------------------------


def tcp_conn(client: str, cport: int, server: str, sport: int, t: float,
             request: bytes = b"GET / HTTP/1.1\r\n\r\n",
             response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") -> Frames:
    """A complete TCP connection: handshake, one request, one response, FIN both ways."""
    c, s = 1000, 5000

    def cs(flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
        p: ScapyPacket = (Ether(**MAC) / IP(src=client, dst=server)
                          / TCP(sport=cport, dport=sport, flags=flags, seq=seq, ack=ack))
        return bytes(p / Raw(data)) if data else bytes(p)

    def sc(flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
        p: ScapyPacket = (Ether(**RMAC) / IP(src=server, dst=client)
                          / TCP(sport=sport, dport=cport, flags=flags, seq=seq, ack=ack))
        return bytes(p / Raw(data)) if data else bytes(p)

    q, r = len(request), len(response)
    frames = [
        cs("S", c, 0), sc("SA", s, c + 1), cs("A", c + 1, s + 1),
        cs("PA", c + 1, s + 1, request), sc("A", s + 1, c + 1 + q),
        sc("PA", s + 1, c + 1 + q, response), cs("A", c + 1 + q, s + 1 + r),
        cs("FA", c + 1 + q, s + 1 + r), sc("FA", s + 1 + r, c + 2 + q), cs("A", c + 2 + q, s + 2 + r),
    ]
    return [(t + i * 0.01, f) for i, f in enumerate(frames)]


def udp_pkt(src: str, sport: int, dst: str, dport: int, t: float,
            payload: bytes = b"\x00" * 12) -> tuple[float, bytes]:
    return t, bytes(Ether(**MAC) / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))


def write_pcap(path: Path, frames: Frames, linktype: int = 1) -> list[int]:
    """Write a classic pcap; return the byte offset of each record header."""
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        for ts, frame in frames:
            w.writepkt(frame, ts=ts)
    offsets, off = [], 24
    for _, frame in frames:
        offsets.append(off)
        off += 16 + len(frame)
    assert path.stat().st_size == off
    return offsets


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "agent.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    for r in records:
        assert isinstance(r, dict) and isinstance(r["type"], str)
        validate_record(r)
    return records


def sessions(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(r["proto"], r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"]): r
            for r in records if r["type"] == "session"}


def one_error_line(stderr: str, path: Path) -> int:
    """stderr is exactly one line 'edgeaudit-agent: FILE: offset N: message'; returns N."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    m = re.fullmatch(rf"edgeaudit-agent: {re.escape(str(path))}: offset (\d+): (.+)", lines[0])
    assert m, lines[0]
    assert "Traceback" not in stderr
    return int(m.group(1))


@pytest.fixture()
def traffic() -> Frames:
    frames = tcp_conn("192.0.2.10", 40001, "198.51.100.80", 80, T0)
    frames += tcp_conn("192.0.2.11", 40002, "198.51.100.80", 80, T0 + 1)
    frames += [udp_pkt("192.0.2.10", 53001, "198.51.100.53", 53, T0 + 2),
               udp_pkt("198.51.100.53", 53, "192.0.2.10", 53001, T0 + 2.01)]
    frames.append((T0 + 3, bytes(Ether(**MAC) / Dot1Q(vlan=12) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                                 / UDP(sport=1234, dport=4321) / Raw(b"v6"))))
    return frames


# -- replay ---------------------------------------------------------------------------------------------


def test_replay_writes_session_records(tmp_path: Path, traffic: Frames) -> None:
    pcap, out = tmp_path / "in.pcap", tmp_path / "out.jsonl"
    write_pcap(pcap, traffic)
    res = run("replay", pcap, "--jsonl", out, "--no-progress")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and res.stdout == ""
    records = read_jsonl(out)
    assert {r["type"] for r in records} == {"session", "http", "dns"}
    s = sessions(records)
    assert len(s) == 4 == len([r for r in records if r["type"] == "session"])
    http = s[("tcp", "192.0.2.10", 40001, "198.51.100.80", 80)]
    # the decoders' records carry the flow id of their connection
    (req,) = [r for r in records if r["type"] == "http" and r["uid"] == http["uid"]]
    assert (req["src_ip"], req["src_port"], req["dst_ip"], req["dst_port"], req["proto"]) == \
        ("192.0.2.10", 40001, "198.51.100.80", 80, "tcp")
    assert (http["conn_state"], http["orig_pkts"], http["resp_pkts"]) == ("SF", 6, 4)
    assert http["src_mac"] == "02:00:00:00:00:01" and http["dst_mac"] == "02:00:00:00:00:02"
    # the last ACK after both FINs does not extend the duration (Zeek does the same)
    assert http["ts"] == T0 and http["duration"] == pytest.approx(0.08)
    assert ("tcp", "192.0.2.11", 40002, "198.51.100.80", 80) in s
    dns = s[("udp", "192.0.2.10", 53001, "198.51.100.53", 53)]
    assert (dns["orig_pkts"], dns["resp_pkts"]) == (1, 1)
    v6 = s[("udp", "2001:db8::1", 1234, "2001:db8::2", 4321)]
    assert v6["vlan"] == 12 and v6["inner_vlan"] is None


def test_console_script(tmp_path: Path, traffic: Frames) -> None:
    exe = shutil.which("edgeaudit-agent", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("edgeaudit-agent console script not installed next to the interpreter")
    pcap, out = tmp_path / "in.pcap", tmp_path / "out.jsonl"
    write_pcap(pcap, traffic)
    res = subprocess.run([exe, "replay", str(pcap), "--jsonl", str(out)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert len([r for r in read_jsonl(out) if r["type"] == "session"]) == 4


def test_summary_prints_the_table(tmp_path: Path, traffic: Frames) -> None:
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, traffic + [(T0 + 4, bytes(Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.2"))[:20])])
    res = run("replay", pcap, "--summary")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for heading in ("records", "totals", "weird names"):
        assert re.search(rf"^{heading}$", out, re.M), out
    assert re.search(r"^\s+session\s+4$", out, re.M)
    assert re.search(r"^\s+weird\s+1$", out, re.M)
    assert re.search(rf"^\s+packets\s+{len(traffic) + 1}$", out, re.M)
    assert re.search(r"^\s+flows\s+4$", out, re.M)
    assert re.search(r"^\s+malformed\s+1$", out, re.M)
    assert re.search(r"^\s+truncated_IP\s+1$", out, re.M)


def test_weird_records_for_malformed_frames(tmp_path: Path) -> None:
    pcap, out = tmp_path / "in.pcap", tmp_path / "out.jsonl"
    good = udp_pkt("192.0.2.1", 1, "192.0.2.2", 2, T0)
    bad_version = bytearray(good[1])
    bad_version[14] = 0x75
    write_pcap(pcap, [good, (T0 + 1, bytes(bad_version)), (T0 + 2, b"\x02" * 10)])
    res = run("replay", pcap, "--jsonl", out)
    assert res.returncode == 0, res.stderr
    records = read_jsonl(out)
    weirds = [(r["ts"], r["name"]) for r in records if r["type"] == "weird"]
    assert weirds == [(T0 + 1, "bad_IP_version"), (T0 + 2, "truncated_link_header")]
    assert all(isinstance(r["detail"], str) for r in records if r["type"] == "weird")
    assert len(sessions(records)) == 1


def test_stats_record(tmp_path: Path, traffic: Frames) -> None:
    pcap, out = tmp_path / "in.pcap", tmp_path / "out.jsonl"
    write_pcap(pcap, traffic)
    res = run("replay", pcap, "--jsonl", out, "--stats")
    assert res.returncode == 0, res.stderr
    records = read_jsonl(out)
    assert [r["type"] for r in records].count("stats") == 1 and records[-1]["type"] == "stats"
    assert records[-1]["packets"] == len(traffic)
    assert records[-1]["bytes"] == sum(len(f) for _, f in traffic)


def test_replay_without_output_file(tmp_path: Path, traffic: Frames) -> None:
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, traffic)
    res = run("replay", pcap, "--progress")
    assert res.returncode == 0 and res.stdout == "", res.stderr


def test_pcapng_input(tmp_path: Path, traffic: Frames) -> None:
    pcap, out = tmp_path / "in.pcapng", tmp_path / "out.jsonl"
    pkts = []
    for ts, frame in traffic:
        p = Ether(frame)
        p.time = ts
        pkts.append(p)
    wrpcapng(str(pcap), pkts)
    res = run("replay", pcap, "--jsonl", out)
    assert res.returncode == 0, res.stderr
    assert len(sessions(read_jsonl(out))) == 4


# -- damaged input -----------------------------------------------------------------------------------


def _udp_flows(n: int) -> Frames:
    """n one-packet UDP flows, one per source port, so each complete packet gives one session."""
    return [udp_pkt("192.0.2.1", 10000 + i, "198.51.100.1", 9999, T0 + i) for i in range(n)]


@pytest.mark.parametrize("cut", ["mid-data", "mid-header", "after-header"])
def test_truncated_capture(tmp_path: Path, cut: str) -> None:
    pcap, out = tmp_path / "cut.pcap", tmp_path / "out.jsonl"
    frames = _udp_flows(6)
    offsets = write_pcap(pcap, frames)
    last = offsets[-1]
    keep = {"mid-data": last + 16 + 10, "mid-header": last + 7, "after-header": last + 16}[cut]
    data = pcap.read_bytes()
    pcap.write_bytes(data[:keep])
    res = run("replay", pcap, "--jsonl", out)
    assert res.returncode == 2
    assert one_error_line(res.stderr, pcap) == last
    records = read_jsonl(out)
    assert {r["type"] for r in records} == {"session"}
    assert sorted(r["src_port"] for r in records) == [10000 + i for i in range(5)]


def test_truncated_inside_the_file_header(tmp_path: Path) -> None:
    pcap, out = tmp_path / "cut.pcap", tmp_path / "out.jsonl"
    write_pcap(pcap, _udp_flows(2))
    pcap.write_bytes(pcap.read_bytes()[:10])
    res = run("replay", pcap, "--jsonl", out)
    assert res.returncode == 2
    assert one_error_line(res.stderr, pcap) == 0
    assert read_jsonl(out) == []


@pytest.mark.parametrize("content", [b"", b"hello, this is not a capture\n", b"\x1f\x8b\x08\x00" + b"\0" * 40,
                                     b"\xd4\xc3\xb2\xa1"])
def test_not_a_capture(tmp_path: Path, content: bytes) -> None:
    path, out = tmp_path / "notes.pcap", tmp_path / "out.jsonl"
    path.write_bytes(content)
    res = run("replay", path, "--jsonl", out)
    assert res.returncode == 2
    assert one_error_line(res.stderr, path) == 0
    assert read_jsonl(out) == []


def test_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.pcap", tmp_path):
        res = run("replay", path, "--jsonl", tmp_path / "out.jsonl")
        assert res.returncode == 2
        assert one_error_line(res.stderr, path) == 0


def test_usage_errors_exit_2() -> None:
    assert run("replay").returncode == 2
    assert run("replay", "x.pcap", "--progress", "--no-progress").returncode == 2
    assert run().returncode == 2


def test_unwritable_output_is_a_one_line_error(tmp_path: Path, traffic: Frames) -> None:
    pcap = tmp_path / "in.pcap"
    write_pcap(pcap, traffic)
    res = run("replay", pcap, "--jsonl", tmp_path / "no" / "such" / "dir" / "out.jsonl")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("edgeaudit-agent: ")


# -- several files, one stream ------------------------------------------------------------------------


def test_multiple_files_are_one_stream(tmp_path: Path) -> None:
    conn = tcp_conn("192.0.2.10", 40001, "198.51.100.80", 80, T0)
    a, b, c, out = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap", tmp_path / "out.jsonl"
    write_pcap(a, conn[:2])  # SYN, SYN-ACK
    write_pcap(b, conn[2:7] + [udp_pkt("192.0.2.20", 5000, "198.51.100.53", 53, T0 + 0.065)])
    write_pcap(c, conn[7:])  # the FINs and last ACK
    res = run("replay", a, b, c, "--jsonl", out, "--summary")
    assert res.returncode == 0, res.stderr
    s = sessions(read_jsonl(out))
    assert len(s) == 2
    tcp = s[("tcp", "192.0.2.10", 40001, "198.51.100.80", 80)]
    assert tcp["conn_state"] == "SF"
    assert (tcp["orig_pkts"], tcp["resp_pkts"]) == (6, 4)
    assert tcp["history"].startswith("ShAD") and "F" in tcp["history"] and "f" in tcp["history"]
    assert tcp["duration"] == pytest.approx(0.08)  # first SYN (file a) to the last FIN (file c)
    assert re.search(r"^\s+packets\s+11$", res.stdout, re.M)


def test_damaged_second_file_keeps_the_records_of_the_first(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "out.jsonl"
    write_pcap(a, tcp_conn("192.0.2.10", 40001, "198.51.100.80", 80, T0))
    offsets = write_pcap(b, _udp_flows(3))
    b.write_bytes(b.read_bytes()[:offsets[2] + 20])
    res = run("replay", a, b, "--jsonl", out)
    assert res.returncode == 2
    assert one_error_line(res.stderr, b) == offsets[2]
    s = sessions(read_jsonl(out))
    assert ("tcp", "192.0.2.10", 40001, "198.51.100.80", 80) in s
    assert {k[2] for k in s if k[0] == "udp"} == {10000, 10001}


def test_non_capture_among_files(tmp_path: Path) -> None:
    a, junk, out = tmp_path / "a.pcap", tmp_path / "junk.txt", tmp_path / "out.jsonl"
    write_pcap(a, _udp_flows(2))
    junk.write_text("not a capture\n")
    res = run("replay", a, junk, "--jsonl", out)
    assert res.returncode == 2
    assert one_error_line(res.stderr, junk) == 0
    assert len(sessions(read_jsonl(out))) == 2


# -- synth ------------------------------------------------------------------------------------------------


def test_synth_writes_the_requested_packet_count(tmp_path: Path) -> None:
    pcap, out = tmp_path / "synth.pcap", tmp_path / "out.jsonl"
    res = run("synth", pcap, "--packets", "400", "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert re.fullmatch(rf"wrote {re.escape(str(pcap))}: 400 packets, [\d,]+ bytes\n", res.stdout)
    with open(pcap, "rb") as f:
        r = dpkt.pcap.Reader(f)
        assert r.datalink() == dpkt.pcap.DLT_EN10MB
        stamps = [ts for ts, _ in r]
    assert len(stamps) == 400 and stamps == sorted(stamps)
    res = run("replay", pcap, "--jsonl", out)
    assert res.returncode == 0, res.stderr
    records = [r for r in read_jsonl(out) if r["type"] == "session"]
    assert records
    assert sum(r["orig_pkts"] + r["resp_pkts"] for r in records) == 400


# -- the roster ---------------------------------------------------------------------------------------


def test_roster_names_the_account_behind_an_address(tmp_path: Path, traffic: Frames) -> None:
    pcap, out, roster = tmp_path / "in.pcap", tmp_path / "out.jsonl", tmp_path / "roster.csv"
    write_pcap(pcap, traffic)
    roster.write_text("account,name,mac,ip\n# the front desk PC\nalice,Alice Wang,,192.0.2.10\n",
                      encoding="utf-8")
    res = run("replay", pcap, "--jsonl", out, "--roster", roster, "--no-progress")
    assert res.returncode == 0, res.stderr
    records = read_jsonl(out)
    by_src = {(r["type"], r["src_ip"]): r["account"] for r in records if r["type"] in ("session", "http")}
    assert by_src[("session", "192.0.2.10")] == "alice" and by_src[("http", "192.0.2.10")] == "alice"
    assert by_src[("session", "192.0.2.11")] is None


def test_a_bad_roster_is_refused_with_every_problem(tmp_path: Path, traffic: Frames) -> None:
    pcap, out, roster = tmp_path / "in.pcap", tmp_path / "out.jsonl", tmp_path / "roster.csv"
    write_pcap(pcap, traffic)
    roster.write_text("account,name,mac,ip\nalice,A,zz:zz,192.0.2.10\n,B,,192.0.2.11\n", encoding="utf-8")
    res = run("replay", pcap, "--jsonl", out, "--roster", roster, "--no-progress")
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"edgeaudit-agent: {roster}:") for line in lines)
    assert f"{roster}:2:" in lines[0] and f"{roster}:3:" in lines[1]
    missing = run("replay", pcap, "--roster", tmp_path / "nope.csv", "--no-progress")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
