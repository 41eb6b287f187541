"""The flow table: UDP, ICMP and other transports, flow keys, timers, limits, and its fast path.

Packets are built with scapy and run through the real `Pipeline`; expected
values are Zeek's conn.log semantics (base/protocols/conn/main.zeek, the UDP
and ICMP analyzers, the session timers) and SCHEMA.md's `session` record.

The last part checks that `FlowTable.process_batch`'s fast path is invisible:
the synthetic gateway capture and the corpus captures give identical records
with normal batches, one packet per batch, and with the fast path disabled.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_paths import Frame, Record, general_path_sessions, pipeline_records, uid_key
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

from agent.capture import open_capture
from agent.decode.packet import Decoder
from agent.flows.table import FlowTable
from agent.pipeline import Pipeline
from agent.synth import generate

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
T0 = 1_700_000_000.0
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"

DNS_QUERY = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
DNS_REPLY = bytes.fromhex("12348180000100010000000007656b616d706c6503636f6d0000010001"
                          "c00c000100010000012c00045db8d822")


def frame(l3: ScapyPacket, *, src_mac: str = MAC_A, dst_mac: str = MAC_B, vlan: int | None = None,
          inner: int | None = None) -> bytes:
    eth: ScapyPacket = Ether(src=src_mac, dst=dst_mac)
    if vlan is not None and inner is not None:
        eth = eth / Dot1AD(vlan=vlan) / Dot1Q(vlan=inner)
    elif vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return bytes(eth / l3)


def ip(src: str, dst: str) -> ScapyPacket:
    return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes = b"", **kw: Any) -> bytes:
    return frame(ip(src, dst) / UDP(sport=sport, dport=dport) / Raw(payload), **kw)


def tcp(src: str, sport: int, dst: str, dport: int, flags: str, seq: int, ack: int = 0, payload: bytes = b"",
        **kw: Any) -> bytes:
    pkt = ip(src, dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=8192)
    return frame(pkt / Raw(payload) if payload else pkt, **kw)


def icmp(src: str, dst: str, type_: int, code: int = 0, payload: bytes = b"p" * 56, **kw: Any) -> bytes:
    return frame(IP(src=src, dst=dst) / ICMP(type=type_, code=code, id=7, seq=1) / Raw(payload), **kw)


def at(*frames: bytes, start: float = T0, step: float = 0.1) -> list[Frame]:
    return [(round(start + i * step, 6), 1, f) for i, f in enumerate(frames)]


def sessions(frames: list[Frame]) -> list[Record]:
    """Final session records (emission order); one-per-feed and slow-path runs must agree."""
    got = [r for r in pipeline_records(frames) if r["type"] == "session"]
    single = [r for r in pipeline_records(frames, one_by_one=True)
              if r["type"] == "session" and not r["interim"]]
    final = [r for r in got if not r["interim"]]
    assert sorted(single, key=uid_key) == sorted(final, key=uid_key)
    assert sorted(general_path_sessions(frames), key=uid_key) == sorted(final, key=uid_key)
    return got


def only(frames: list[Frame]) -> Record:
    recs = sessions(frames)
    assert len(recs) == 1, recs
    return recs[0]


def check(rec: Record, **want: Any) -> None:
    assert {k: rec[k] for k in want} == want


# -- UDP ---------------------------------------------------------------------------------------

def test_udp_request_response_is_SF_with_D_d() -> None:
    rec = only(at(udp("10.0.0.1", 33333, "10.0.0.53", 53, DNS_QUERY),
                  udp("10.0.0.53", 53, "10.0.0.1", 33333, DNS_REPLY, src_mac=MAC_B, dst_mac=MAC_A)))
    check(rec, proto="udp", src_ip="10.0.0.1", src_port=33333, dst_ip="10.0.0.53", dst_port=53,
          history="Dd", conn_state="SF", service="dns", orig_pkts=1, resp_pkts=1,
          orig_bytes=len(DNS_QUERY), resp_bytes=len(DNS_REPLY), orig_ip_bytes=28 + len(DNS_QUERY),
          resp_ip_bytes=28 + len(DNS_REPLY), missed_bytes=0, duration=0.1, src_mac=MAC_A, dst_mac=MAC_B)


def test_udp_one_way_is_S0() -> None:
    rec = only(at(udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"a" * 10),
                  udp("10.0.0.1", 5000, "10.0.0.2", 6000)))
    check(rec, history="D", conn_state="S0", orig_pkts=2, resp_pkts=0, orig_bytes=10, orig_ip_bytes=28 + 38)


def test_udp_reply_only_from_server_port_flips_to_SHR() -> None:
    rec = only(at(udp("10.0.0.53", 53, "10.0.0.1", 33333, DNS_REPLY)))
    check(rec, history="^d", conn_state="SHR", src_ip="10.0.0.1", src_port=33333, dst_port=53, orig_pkts=0,
          resp_pkts=1, resp_bytes=len(DNS_REPLY), src_mac=MAC_B, dst_mac=MAC_A)


def test_dhcp_unicast_reply_flips_but_broadcast_does_not() -> None:
    # as Zeek's dhcp-all-msg-types baseline: 128.2.6.97:68 -> .152:67 SHR ^d, and
    # 128.2.6.152:67 -> 255.255.255.255:68 S0 D
    unicast = only(at(udp("128.2.6.152", 67, "128.2.6.97", 68, b"\x02" * 300)))
    check(unicast, history="^d", conn_state="SHR", src_ip="128.2.6.97", src_port=68, dst_port=67)
    bcast = only(at(udp("128.2.6.152", 67, "255.255.255.255", 68, b"\x02" * 300)))
    check(bcast, history="D", conn_state="S0", src_ip="128.2.6.152", src_port=67, dst_ip="255.255.255.255")


def test_udp_from_server_port_to_multicast_does_not_flip() -> None:
    rec = only(at(udp("10.0.0.9", 123, "239.1.2.3", 40000, b"n" * 48)))
    check(rec, history="D", src_port=123, dst_ip="239.1.2.3", conn_state="S0")


def test_udp_between_two_server_ports_keeps_the_sender_as_originator() -> None:
    rec = only(at(udp("10.0.0.9", 123, "10.0.0.10", 53, b"n" * 48)))
    check(rec, history="D", src_port=123, dst_port=53)


def test_udp_empty_payload() -> None:
    check(only(at(udp("10.0.0.1", 5000, "10.0.0.2", 6000))), orig_bytes=0, orig_ip_bytes=28, history="D")


# -- ICMP and other transports ---------------------------------------------------------------

def test_icmp_echo_request_and_reply_are_one_flow() -> None:
    rec = only(at(icmp("10.0.0.1", "10.0.0.2", 8),
                  icmp("10.0.0.2", "10.0.0.1", 0, src_mac=MAC_B, dst_mac=MAC_A)))
    # as Zeek's core.tunnels.gre baseline: 66.59.111.190 8 -> 172.28.2.3 0, 56-byte payloads
    check(rec, proto="icmp", src_ip="10.0.0.1", src_port=8, dst_ip="10.0.0.2", dst_port=0, orig_pkts=1,
          resp_pkts=1, orig_bytes=56, resp_bytes=56, orig_ip_bytes=84, resp_ip_bytes=84, conn_state="OTH",
          missed_bytes=0)
    assert rec["community_id"] is not None


def test_icmpv6_echo_is_icmp6_with_ports_128_129() -> None:
    req = frame(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=1, seq=1, data=b"q" * 4))
    rep = frame(IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply(id=1, seq=1, data=b"q" * 4),
                src_mac=MAC_B, dst_mac=MAC_A)
    rec = only(at(req, rep))
    # as Zeek's core.tunnels.teredo baseline: 128 -> 129, 4 bytes each way, 52 IP bytes
    check(rec, proto="icmp6", src_ip="2001:db8::1", src_port=128, dst_port=129, orig_bytes=4, resp_bytes=4,
          orig_ip_bytes=52, resp_ip_bytes=52, orig_pkts=1, resp_pkts=1, conn_state="OTH")


def test_one_way_icmp_uses_the_code_as_responder_port() -> None:
    inner = bytes(IP(src="10.0.0.1", dst="10.0.0.9") / UDP(sport=5000, dport=6000))
    router = "10.0.0.254"
    recs = sessions(at(icmp(router, "10.0.0.1", 3, 3, inner), icmp(router, "10.0.0.1", 3, 3, inner),
                       icmp(router, "10.0.0.1", 3, 1, inner)))
    got = sorted((r["src_port"], r["dst_port"], r["orig_pkts"], r["resp_pkts"]) for r in recs)
    # unreachable type 3: port unreachable (code 3) twice, host unreachable (code 1) once
    assert got == [(3, 1, 1, 0), (3, 3, 2, 0)]
    assert all(r["src_ip"] == "10.0.0.254" and r["conn_state"] == "OTH" for r in recs)


def test_icmp_reply_first_keeps_its_sender_as_originator() -> None:
    check(only(at(icmp("10.0.0.2", "10.0.0.1", 0))), src_ip="10.0.0.2", src_port=0, dst_port=8)


def test_other_ip_protocol_is_one_flow_per_address_pair() -> None:
    esp = lambda s, d: frame(IP(src=s, dst=d, proto=50) / Raw(b"e" * 40))  # noqa: E731
    rec = only(at(esp("10.0.0.1", "10.0.0.2"), esp("10.0.0.2", "10.0.0.1"), esp("10.0.0.1", "10.0.0.2")))
    check(rec, proto="50", src_ip="10.0.0.1", src_port=0, dst_port=0, orig_pkts=2, resp_pkts=1,
          orig_ip_bytes=120, resp_ip_bytes=60, conn_state="OTH")
    assert rec["community_id"] is not None


# -- the key: VLANs -------------------------------------------------------------------------------

def test_vlan_is_part_of_the_flow_key() -> None:
    pkts = [udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"x", vlan=v, inner=i)
            for v, i in [(10, None), (20, None), (None, None), (10, None), (100, 200), (100, 300)]]
    recs = sessions(at(*pkts))
    got = sorted(((r["vlan"] or 0), (r["inner_vlan"] or 0), r["orig_pkts"]) for r in recs)
    assert got == [(0, 0, 1), (10, 0, 2), (20, 0, 1), (100, 200, 1), (100, 300, 1)]
    assert len({r["uid"] for r in recs}) == 5
    assert len({r["community_id"] for r in recs}) == 1  # Community ID v1 has no VLAN context


def test_tcp_over_vlan_has_full_state() -> None:
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    pkts = [tcp(*a, *b, "S", 100, vlan=7), tcp(*b, *a, "SA", 900, 101, vlan=7, src_mac=MAC_B, dst_mac=MAC_A),
            tcp(*a, *b, "A", 101, 901, vlan=7), tcp(*a, *b, "PA", 101, 901, b"g" * 20, vlan=7),
            tcp(*b, *a, "PA", 901, 121, b"h" * 30, vlan=7, src_mac=MAC_B, dst_mac=MAC_A),
            tcp(*a, *b, "FA", 121, 931, vlan=7),
            tcp(*b, *a, "FA", 931, 122, vlan=7, src_mac=MAC_B, dst_mac=MAC_A),
            tcp(*a, *b, "A", 122, 932, vlan=7)]
    check(only(at(*pkts)), vlan=7, inner_vlan=None, history="ShADdFf", conn_state="SF", orig_bytes=20,
          resp_bytes=30, orig_pkts=5, resp_pkts=3)


# -- timers, by packet time ---------------------------------------------------------------------

@pytest.mark.parametrize("gap,flows", [(59.0, 1), (61.0, 2)])
def test_udp_idle_timeout_is_60s(gap: float, flows: int) -> None:
    pkt = udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"x")
    assert len(sessions([(T0, 1, pkt), (T0 + gap, 1, pkt)])) == flows


@pytest.mark.parametrize("gap,flows", [(59.0, 1), (61.0, 2)])
def test_icmp_idle_timeout_is_60s(gap: float, flows: int) -> None:
    pkt = icmp("10.0.0.1", "10.0.0.2", 8)
    assert len(sessions([(T0, 1, pkt), (T0 + gap, 1, pkt)])) == flows


@pytest.mark.parametrize("gap,flows", [(9.0, 1), (11.0, 2)])
def test_dns_over_udp_ends_10s_after_its_last_packet(gap: float, flows: int) -> None:
    q = udp("10.0.0.1", 33333, "10.0.0.53", 53, DNS_QUERY)
    r = udp("10.0.0.53", 53, "10.0.0.1", 33333, DNS_REPLY)
    recs = sessions([(T0, 1, q), (T0 + 0.01, 1, r), (T0 + gap, 1, q)])
    assert len(recs) == flows
    assert all(x["service"] == "dns" for x in recs)


@pytest.mark.parametrize("gap,flows", [(299.0, 1), (301.0, 2)])
def test_tcp_idle_timeout_is_300s(gap: float, flows: int) -> None:
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    hs = [tcp(*a, *b, "S", 100), tcp(*b, *a, "SA", 900, 101), tcp(*a, *b, "A", 101, 901)]
    frames = at(*hs) + [(T0 + gap, 1, tcp(*a, *b, "PA", 101, 901, b"late"))]
    recs = [r for r in sessions(frames) if not r["interim"]]  # an interim snapshot may come in between
    assert len(recs) == flows
    assert recs[0]["history"] == ("ShAD" if flows == 1 else "ShA")


def test_timed_out_flow_is_emitted_while_traffic_goes_on() -> None:
    out: list[Record] = []
    p = Pipeline(out.extend)
    p.feed([(T0, 1, udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"x"))])
    assert out == []
    p.feed([(T0 + 100, 1, udp("10.0.0.3", 5000, "10.0.0.4", 6000, b"y"))])
    assert [(r["src_ip"], r["interim"]) for r in out if r["type"] == "session"] == [("10.0.0.1", False)]
    assert p.table.counters["flows_timed_out"] == 1
    p.finish()
    assert [r["src_ip"] for r in out if r["type"] == "session"] == ["10.0.0.1", "10.0.0.3"]


def test_long_connection_gives_interim_records_every_60s() -> None:
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    frames = at(tcp(*a, *b, "S", 100), tcp(*b, *a, "SA", 900, 101), tcp(*a, *b, "A", 101, 901), step=0.001)
    seq = 101
    for k in range(1, 21):  # 10 bytes every 10 s for 200 s
        frames.append((T0 + 10 * k, 1, tcp(*a, *b, "PA", seq, 901, b"0123456789")))
        seq += 10
    out = [r for r in pipeline_records(frames, one_by_one=True) if r["type"] == "session"]
    interim = [r for r in out if r["interim"]]
    final = [r for r in out if not r["interim"]]
    assert len(final) == 1 and len(interim) == 3
    assert {r["uid"] for r in interim} == {final[0]["uid"]}
    # snapshots at 60, 120 and 180 s of packet time, each before that packet
    assert [r["orig_bytes"] for r in interim] == [50, 110, 170]
    assert [r["duration"] for r in interim] == pytest.approx([50.0, 110.0, 170.0])
    assert all(r["conn_state"] == "S1" and r["history"] == "ShAD" for r in interim)
    check(final[0], orig_bytes=200, orig_pkts=22, conn_state="S1", interim=False)
    assert final[0]["duration"] == pytest.approx(200.0)


def test_flow_without_news_gives_no_interim_record() -> None:
    pkt = udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"x")
    other = udp("10.0.0.7", 5000, "10.0.0.8", 6000, b"x")
    frames = [(T0, 1, pkt)] + [(T0 + 5 * k, 1, other) for k in range(1, 15)]
    out = [r for r in pipeline_records(frames, one_by_one=True) if r["type"] == "session"]
    # nothing happened on the first flow since it started: no snapshot, just its final record
    # when it times out; the busy flow gets its snapshot at 60 s
    assert [(r["src_ip"], r["interim"]) for r in out] == [("10.0.0.1", False), ("10.0.0.7", True),
                                                          ("10.0.0.7", False)]


# -- limits and the end of a capture ------------------------------------------------------------

def test_eviction_at_max_flows_is_counted_and_loses_no_record() -> None:
    frames = [(T0 + i, 1, udp("10.0.0.1", 10_000 + i, "10.0.0.2", 53, DNS_QUERY)) for i in range(25)]
    out: list[Record] = []
    p = Pipeline(out.extend, max_flows=10)
    for fr in frames:
        p.feed([fr])
    evicted_before_finish = [r["src_port"] for r in out if r["type"] == "session"]
    assert p.table.counters["flows_evicted"] == 15
    assert p.counters()["flows_evicted"] == 15
    assert len(p.table.active) == 10
    # the least recently active go first
    assert evicted_before_finish == list(range(10_000, 10_015))
    p.finish()
    recs = [r for r in out if r["type"] == "session"]
    assert sorted(r["src_port"] for r in recs) == list(range(10_000, 10_025))
    assert all(r["orig_pkts"] == 1 and r["service"] == "dns" for r in recs)


def test_flush_emits_every_open_flow_once() -> None:
    out: list[Record] = []
    p = Pipeline(out.extend)
    p.feed(at(udp("10.0.0.1", 1, "10.0.0.2", 2, b"x"), icmp("10.0.0.1", "10.0.0.2", 8),
              tcp("10.0.0.1", 40000, "10.0.0.2", 80, "S", 5)))
    assert out == []
    p.finish()
    assert sorted(r["proto"] for r in out) == ["icmp", "tcp", "udp"]
    assert not p.table.active and not p.table.flows and not p.table.fast_tcp and not p.table.fast_udp
    p.finish()
    assert len(out) == 3


def _mixed() -> list[Frame]:
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    return at(tcp(*a, *b, "S", 100), tcp(*b, *a, "SA", 900, 101), tcp(*a, *b, "A", 101, 901),
              tcp(*a, *b, "PA", 101, 901, b"GET / HTTP/1.1\r\n\r\n"),
              udp("10.0.0.1", 33333, "10.0.0.53", 53, DNS_QUERY),
              icmp("10.0.0.1", "10.0.0.2", 8), udp("10.0.0.1", 5000, "10.0.0.2", 6000, b"x", vlan=3))


def test_uids_are_deterministic_for_the_same_input() -> None:
    first, second = pipeline_records(_mixed()), pipeline_records(_mixed())
    assert first == second
    uids = [r["uid"] for r in first]
    assert len(set(uids)) == len(uids) == 4
    assert all(u.startswith("C") for u in uids)
    other_seed = pipeline_records(_mixed(), uid_seed=b"another agent")
    assert {r["uid"] for r in other_seed}.isdisjoint(uids)
    assert [{k: v for k, v in r.items() if k != "uid"} for r in other_seed] == \
           [{k: v for k, v in r.items() if k != "uid"} for r in first]


def test_community_id_on_every_session() -> None:
    recs = pipeline_records(_mixed())
    assert all(isinstance(r["community_id"], str) and r["community_id"].startswith("1:") for r in recs)
    # Zeek's community-id-logging baseline (handshake-reorder.pcap) for this 5-tuple
    rec = only(at(tcp("141.142.228.5", 59856, "192.150.187.43", 80, "S", 1)))
    assert rec["community_id"] == "1:yvyB8h+3dnggTZW0UEITWCst97w="


def test_service_is_probed_from_payload() -> None:
    recs = {r["proto"] + str(r["vlan"]): r for r in pipeline_records(_mixed())}
    assert recs["tcpNone"]["service"] == "http"
    assert recs["udpNone"]["service"] == "dns"
    assert recs["udp3"]["service"] is None


# -- the fast path is invisible -----------------------------------------------------------------

def _run(batches: list[list[Frame]], fast: bool) -> tuple[list[Record], int]:
    out: list[Record] = []
    p = Pipeline(out.extend, fast_path=fast)
    for b in batches:
        p.feed(b)
    p.finish()
    return out, p.packets


def _final(recs: list[Record]) -> list[str]:
    """Everything but interim snapshots (whose timing depends on batch boundaries), order-free."""
    return sorted(json.dumps(r, sort_keys=True) for r in recs if not r.get("interim"))


def assert_fast_path_invisible(batches: list[list[Frame]]) -> list[Record]:
    normal, n = _run(batches, fast=True)
    slow, _ = _run(batches, fast=False)
    assert n == sum(len(b) for b in batches)
    assert normal == slow, "fast path changed the records"
    singles = [[fr] for b in batches for fr in b]
    one, _ = _run(singles, fast=True)
    one_slow, _ = _run(singles, fast=False)
    assert one == one_slow, "fast path changed the records (one packet per batch)"
    assert _final(one) == _final(normal), "batch boundaries changed the records"
    return normal


def _batches(path: Path, n: int = 4096) -> list[list[Frame]]:
    with open_capture(path) as cap:
        return list(cap.batches(n))


@pytest.fixture(scope="module")
def synth_pcaps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("synth")
    fast, slow = d / "edge.pcap", d / "edge-slow.pcap"
    generate(fast, 20_000, seed=7)
    # the same mix spread over ~7 minutes of packet time: timeouts, DNS timers and scans happen
    generate(slow, 20_000, seed=8, pps=50.0)
    return {"dense": fast, "sparse": slow}


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_fast_path_is_invisible_on_the_synthetic_capture(which: str, synth_pcaps: dict[str, Path]) -> None:
    batches = _batches(synth_pcaps[which], 1024)
    recs = assert_fast_path_invisible(batches)
    sess = [r for r in recs if r["type"] == "session"]
    assert len(sess) > 100
    assert {r["proto"] for r in sess} >= {"tcp", "udp"}
    # the fast path did carry most of the packets: the general decoder saw few of them
    out: list[Record] = []
    p = Pipeline(out.extend)
    for b in batches:
        p.feed(b)
    assert p.decoder.counters["frames"] < p.packets / 2


def _in_place(path: Path, chunk: int, fast: bool) -> list[Record]:
    """The CLI's way through a classic pcap: read_records over the file's map, in chunks."""
    out: list[Record] = []
    p = Pipeline(out.extend, fast_path=fast)
    with open_capture(path) as cap:
        region = cap.pcap_region()
        while region is not None:
            off, n, nbytes, snapped = p.feed_pcap(region, chunk)
            cap.consumed(off, n, nbytes, snapped)
            region = cap.pcap_region() if n == chunk else None
        for b in cap.batches(chunk):
            p.feed(b)
    p.finish()
    return out


@pytest.mark.parametrize("which", ["dense", "sparse"])
def test_in_place_pcap_path_gives_the_same_records(which: str, synth_pcaps: dict[str, Path]) -> None:
    path = synth_pcaps[which]
    batched, _ = _run(_batches(path, 1024), fast=True)
    assert _in_place(path, 1000, fast=True) == batched
    assert _in_place(path, 1000, fast=False) == batched


def _corpus_captures() -> Iterator[Path]:
    if not (CORPUS / "manifest.json").exists():
        return
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    seen: set[str] = set()
    for case in manifest["zeek"]:
        seen.update(t["path"] for t in case["traces"])
    for case in manifest["suricata-verify"]:
        seen.update(p["path"] for p in case["pcaps"])
    for rel in sorted(seen):
        yield CORPUS / rel


CORPUS_CAPTURES = list(_corpus_captures())


@pytest.mark.skipif(not CORPUS_CAPTURES, reason="no corpus at ../shared/corpus")
@pytest.mark.parametrize("path", CORPUS_CAPTURES, ids=[str(p.relative_to(CORPUS)) for p in CORPUS_CAPTURES])
def test_fast_path_is_invisible_on_corpus_captures(path: Path) -> None:
    assert_fast_path_invisible(_batches(path, 64))


# -- fast-path divergences found by these tests (agent/flows/table.py, not fixed here) -----------

def _established() -> list[Frame]:
    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    return at(tcp(*a, *b, "S", 1000), tcp(*b, *a, "SA", 5000, 1001), tcp(*a, *b, "A", 1001, 5001),
              tcp(*a, *b, "PA", 1001, 5001, b"q" * 100), tcp(*b, *a, "PA", 5001, 1101, b"r" * 200),
              tcp(*a, *b, "A", 1101, 5201))


def _raw_tcp(flags: str, seq: int, ack: int, payload: bytes = b"", dataofs: int | None = None) -> bytes:
    t = TCP(sport=40000, dport=80, flags=flags, seq=seq, ack=ack, window=8192)
    if dataofs is not None:
        t.dataofs = dataofs
    return frame(IP(src="10.0.0.1", dst="10.0.0.2") / t / Raw(payload))


def test_fast_path_ignores_ack_field_without_ack_flag() -> None:
    frames = _established()
    frames.append((frames[-1][0] + 0.1, 1, _raw_tcp("P", 1101, 5400, b"z" * 10)))
    assert_fast_path_invisible([frames])


def test_fast_path_drops_tcp_header_shorter_than_20_bytes() -> None:
    frames = _established()
    frames.append((frames[-1][0] + 0.1, 1, _raw_tcp("PA", 1101, 5201, b"y" * 30, dataofs=3)))
    assert_fast_path_invisible([frames])


def test_fast_path_drops_tcp_header_longer_than_the_segment() -> None:
    frames = _established()
    frames.append((frames[-1][0] + 0.1, 1, _raw_tcp("A", 1101, 5201, dataofs=15)))
    assert_fast_path_invisible([frames])


def test_slow_path_drops_malformed_tcp_headers_with_a_weird() -> None:
    # what Zeek does (ExtractTCP_Header: bad_TCP_header_len / truncated_header), and what the fast
    # path above should match
    frames = _established()
    frames.append((frames[-1][0] + 0.1, 1, _raw_tcp("PA", 1101, 5201, b"y" * 30, dataofs=3)))
    frames.append((frames[-1][0] + 0.1, 1, _raw_tcp("A", 1101, 5201, dataofs=15)))
    dec = Decoder()
    table = FlowTable()
    for ts, lt, fr in frames:
        pkt = dec.decode(ts, lt, fr)
        assert pkt is not None
        table.process(ts, pkt)
    assert [w.name for w in table.outbox.weirds] == ["bad_TCP_header_len", "bad_TCP_header_len"]
    table.flush()
    check(table.outbox.records[0], orig_pkts=4, orig_bytes=100, history="ShADd")


def test_fast_path_key_is_the_wire_order_of_addresses_and_ports() -> None:
    # guards the fast path's 12-byte key: src, dst, sport, dport as on the wire
    f = tcp("10.0.0.1", 40000, "10.0.0.2", 80, "S", 1)
    wire = socket.inet_aton("10.0.0.1") + socket.inet_aton("10.0.0.2") + struct.pack("!HH", 40000, 80)
    assert f[26:38] == wire
