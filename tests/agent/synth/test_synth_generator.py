"""The synthetic capture generator: determinism, counts, checksums, protocol mix, TCP state.

Every check parses the pcap with dpkt, an implementation independent of the
generator's own builders and checksum arithmetic.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from agent.synth import GenStats, generate
from agent.synth.sessions import KINDS

REPO = Path(__file__).resolve().parents[3]
PACKETS = 2000


@dataclass(frozen=True)
class Capture:
    path: Path
    stats: GenStats


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Capture:
    path = tmp_path_factory.mktemp("synth") / "edge2k.pcap"
    return Capture(path, generate(path, PACKETS, seed=1))


def frames(path: Path) -> Iterator[tuple[float, bytes]]:
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            yield ts, bytes(buf)


def test_packet_count_and_stats(capture: Capture) -> None:
    recs = list(frames(capture.path))
    assert len(recs) == PACKETS
    st = capture.stats
    assert st.packets == PACKETS
    assert st.bytes == sum(len(buf) for _, buf in recs)
    assert sum(st.packets_by_kind.values()) == PACKETS
    assert set(st.sessions) == set(KINDS)
    assert all(n > 0 for n in st.sessions.values()), st.sessions
    timestamps = [ts for ts, _ in recs]
    assert timestamps == sorted(timestamps)
    assert st.first_ts == pytest.approx(timestamps[0], abs=1e-6)
    assert st.last_ts == pytest.approx(timestamps[-1], abs=1e-6)


def test_deterministic_for_a_seed(capture: Capture, tmp_path: Path) -> None:
    again = tmp_path / "again.pcap"
    other = tmp_path / "other.pcap"
    assert generate(again, PACKETS, seed=1) == capture.stats
    assert again.read_bytes() == capture.path.read_bytes()
    generate(other, PACKETS, seed=2)
    assert other.read_bytes() != capture.path.read_bytes()


def test_checksums_valid(capture: Capture) -> None:
    n_tcp = n_udp = 0
    for _, buf in frames(capture.path):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        assert isinstance(ip, dpkt.ip.IP)
        raw = buf[14:]
        assert len(raw) == ip.len
        assert dpkt.in_cksum(raw[:20]) == 0, "IPv4 header checksum"
        seg = raw[20 : ip.len]
        pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, ip.p, len(seg))
        assert dpkt.in_cksum(pseudo + seg) == 0, f"L4 checksum, proto {ip.p}"
        if ip.p == dpkt.ip.IP_PROTO_UDP:
            assert ip.data.sum != 0, "UDP checksum must not be sent as 0"
            n_udp += 1
        else:
            assert ip.p == dpkt.ip.IP_PROTO_TCP
            n_tcp += 1
        # dpkt recomputes both checksums when they are zeroed; it must produce the wire bytes.
        ip.sum = 0
        ip.data.sum = 0
        assert bytes(ip) == raw
    assert n_tcp and n_udp


def _sni(hello: dpkt.ssl.TLSClientHello) -> str:
    for ext_type, data in hello.extensions:
        if ext_type == 0:
            # server_name_list length (2), name type (1), name length (2), name
            (name_len,) = struct.unpack_from("!H", data, 3)
            return bytes(data[5 : 5 + name_len]).decode()
    raise AssertionError("no server_name extension")


def test_every_protocol_in_the_mix(capture: Capture) -> None:
    # Seed 1 at the default concurrency puts every kind, including the 1% SMTP share,
    # far enough into its script within 2000 packets; a generator change may need a new seed.
    found: dict[str, int] = {}

    def saw(kind: str) -> None:
        found[kind] = found.get(kind, 0) + 1

    for _, buf in frames(capture.path):
        ip = dpkt.ethernet.Ethernet(buf).data
        l4 = ip.data
        data = bytes(l4.data)
        if ip.p == dpkt.ip.IP_PROTO_TCP:
            if l4.dport == 80 and data.startswith(b"GET "):
                head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                req = dpkt.http.Request(head)
                assert req.method == "GET" and req.headers["host"]
                saw("http")
            elif l4.sport == 80 and data.startswith(b"HTTP/1.1 "):
                saw("http-response")
            elif l4.dport == 443 and data[:1] == b"\x16":
                rec = dpkt.ssl.TLSRecord(data)
                hs = dpkt.ssl.TLSHandshake(rec.data)
                assert isinstance(hs.data, dpkt.ssl.TLSClientHello)
                assert "." in _sni(hs.data)
                saw("tls")
            elif l4.sport == 25 and data.startswith(b"220 "):
                saw("smtp")
            elif l4.dport == 25 and data.startswith(b"EHLO "):
                saw("smtp-ehlo")
        else:
            assert ip.p == dpkt.ip.IP_PROTO_UDP
            if 53 in (l4.sport, l4.dport):
                msg = dpkt.dns.DNS(data)
                assert len(msg.qd) == 1 and "." in msg.qd[0].name
                if msg.qr == dpkt.dns.DNS_R:
                    assert len(msg.an) >= 1
                    saw("dns-response")
                else:
                    saw("dns")
            elif 443 in (l4.sport, l4.dport):
                assert 30 <= len(data) <= 1350
                if len(data) >= 1200:
                    saw("quic")
    expected = {"http", "http-response", "tls", "dns", "dns-response", "smtp", "smtp-ehlo", "quic"}
    assert expected <= set(found), found


def test_tcp_sequence_and_ack_numbers_are_consistent(capture: Capture) -> None:
    """Each side's seq advances by payload (+1 for SYN/FIN); every ACK acknowledges all the peer sent."""
    next_seq: dict[tuple[bytes, int, bytes, int], int] = {}
    last: dict[tuple[bytes, int, bytes, int], tuple[int, bytes]] = {}
    for _, buf in frames(capture.path):
        ip = dpkt.ethernet.Ethernet(buf).data
        if ip.p != dpkt.ip.IP_PROTO_TCP:
            continue
        tcp = ip.data
        key = (ip.src, tcp.sport, ip.dst, tcp.dport)
        peer = (ip.dst, tcp.dport, ip.src, tcp.sport)
        payload = bytes(tcp.data)
        if tcp.flags & dpkt.tcp.TH_SYN:
            assert key not in next_seq, "one connection per 4-tuple"
        elif last.get(key) == (tcp.seq, payload) and payload:
            continue  # a retransmission repeats the previous segment exactly
        else:
            assert next_seq[key] == tcp.seq
        if tcp.flags & dpkt.tcp.TH_ACK:
            assert tcp.ack == next_seq[peer]
        adv = len(payload) + (1 if tcp.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        next_seq[key] = (tcp.seq + adv) & 0xFFFFFFFF
        last[key] = (tcp.seq, payload)
        assert len(payload) <= 1448
    assert next_seq


def test_zero_packets_gives_empty_pcap(tmp_path: Path) -> None:
    out = tmp_path / "empty.pcap"
    st = generate(out, 0)
    assert st.packets == 0 and st.bytes == 0
    assert list(frames(out)) == []


@pytest.mark.parametrize("kwargs", [{"packets": -1}, {"packets": 10, "concurrency": 0}])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "x.pcap", **kwargs)


def test_cli_matches_api(tmp_path: Path) -> None:
    cli_out = tmp_path / "cli.pcap"
    api_out = tmp_path / "api.pcap"
    proc = subprocess.run(
        [sys.executable, "-m", "agent.synth", str(cli_out), "--packets", "300", "--seed", "3",
         "--concurrency", "50", "--json"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    reported = json.loads(proc.stdout)
    assert reported["packets"] == 300
    assert "wrote" in proc.stderr
    st = generate(api_out, 300, seed=3, concurrency=50)
    assert reported["bytes"] == st.bytes
    assert cli_out.read_bytes() == api_out.read_bytes()
