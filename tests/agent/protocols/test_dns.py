"""Tests for agent.protocols.dns: unit tests built with scapy and a Zeek corpus test."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import dpkt
import pytest
from protocol_streams import zeek_rows
from scapy.layers.dns import (
    DNS,
    DNSQR,
    DNSRR,
    DNSRRMX,
    DNSRRSOA,
)

from agent.decode.errors import DecodeError
from agent.protocols.dns import MAX_PENDING, DnsDecoder, parse_message, read_name
from wire.limits import MAX_LIST_ITEM_LEN

T0 = 1_700_000_000.0


def query(tid: int, name: str, qtype: str = "A", rd: int = 1) -> bytes:
    return bytes(DNS(id=tid, qr=0, rd=rd, qd=DNSQR(qname=name, qtype=qtype)))


def response(tid: int, name: str, qtype: str = "A", an: Any = None, **kw: Any) -> bytes:
    flags = {"qr": 1, "rd": 1, "ra": 1, "aa": 0, "rcode": 0}
    flags.update(kw)
    return bytes(DNS(id=tid, qd=DNSQR(qname=name, qtype=qtype), an=an, **flags))


def pair(q: bytes, r: bytes) -> dict[str, Any]:
    d = DnsDecoder("udp")
    assert d.feed(True, q, T0) == []
    recs = d.feed(False, r, T0 + 0.1)
    assert len(recs) == 1
    assert d.close(T0 + 1) == []
    return recs[0]


# -- record types ---------------------------------------------------------------


def test_a_record() -> None:
    r = pair(
        query(1, "Example.COM"),
        response(1, "Example.COM", an=DNSRR(rrname="Example.COM", type="A", ttl=300, rdata="192.0.2.7")),
    )
    assert r == {
        "type": "dns",
        "ts": T0,
        "trans_id": 1,
        "query": "example.com",  # Zeek lower-cases the question
        "qclass": 1,
        "qtype": 1,
        "qtype_name": "A",
        "rcode": 0,
        "rcode_name": "NOERROR",
        "AA": False,
        "TC": False,
        "RD": True,
        "RA": True,
        "answers": ["192.0.2.7"],
        "ttls": [300.0],
        "rejected": False,
    }


def test_aaaa_record() -> None:
    r = pair(
        query(2, "v6.example", "AAAA"),
        response(
            2, "v6.example", "AAAA", an=DNSRR(rrname="v6.example", type="AAAA", ttl=60, rdata="2001:db8::1")
        ),
    )
    assert r["qtype_name"] == "AAAA"
    assert r["answers"] == ["2001:db8::1"]
    assert r["ttls"] == [60.0]


def test_cname_chain() -> None:
    an = [
        DNSRR(rrname="www.example.com", type="CNAME", ttl=10, rdata="a.example.net"),
        DNSRR(rrname="a.example.net", type="CNAME", ttl=20, rdata="b.example.org"),
        DNSRR(rrname="b.example.org", type="A", ttl=30, rdata="198.51.100.1"),
    ]
    r = pair(query(3, "www.example.com"), response(3, "www.example.com", an=an, aa=1))
    assert r["answers"] == ["a.example.net", "b.example.org", "198.51.100.1"]
    assert r["ttls"] == [10.0, 20.0, 30.0]
    assert r["AA"] is True


def test_mx_logs_exchange_only() -> None:
    an = [
        DNSRRMX(rrname="example.com", ttl=3600, preference=10, exchange="mx1.example.com"),
        DNSRRMX(rrname="example.com", ttl=3600, preference=20, exchange="mx2.example.com"),
    ]
    r = pair(query(4, "example.com", "MX"), response(4, "example.com", "MX", an=an))
    assert r["qtype_name"] == "MX"
    assert r["answers"] == ["mx1.example.com", "mx2.example.com"]


def test_txt_multi_string() -> None:
    an = DNSRR(rrname="t.example", type="TXT", ttl=5, rdata=[b"hello world", b"v=spf1 -all"])
    r = pair(query(5, "t.example", "TXT"), response(5, "t.example", "TXT", an=an))
    assert r["answers"] == ["TXT 11 hello world TXT 11 v=spf1 -all"]


def test_txt_non_utf8_is_gb18030() -> None:
    text = "中文".encode("gb18030")
    an = DNSRR(rrname="t.example", type="TXT", ttl=5, rdata=[text])
    r = pair(query(6, "t.example", "TXT"), response(6, "t.example", "TXT", an=an))
    assert r["answers"] == [f"TXT {len(text)} 中文"]


def test_soa_and_ns() -> None:
    soa = DNSRRSOA(rrname="example.com", ttl=900, mname="ns1.example.com", rname="hostmaster.example.com")
    r = pair(query(7, "example.com", "SOA"), response(7, "example.com", "SOA", an=soa))
    assert r["answers"] == ["ns1.example.com"]
    ns = [
        DNSRR(rrname="example.com", type="NS", ttl=900, rdata="ns1.example.com"),
        DNSRR(rrname="example.com", type="NS", ttl=900, rdata="ns2.example.com"),
    ]
    r = pair(query(8, "example.com", "NS"), response(8, "example.com", "NS", an=ns))
    assert r["answers"] == ["ns1.example.com", "ns2.example.com"]


def test_ptr() -> None:
    name = "7.2.0.192.in-addr.arpa"
    an = DNSRR(rrname=name, type="PTR", ttl=86400, rdata="host.example.com")
    r = pair(query(9, name, "PTR"), response(9, name, "PTR", an=an))
    assert r["qtype_name"] == "PTR"
    assert r["answers"] == ["host.example.com"]


def test_nxdomain_with_soa_in_authority() -> None:
    soa = DNSRRSOA(rrname="example.com", ttl=900, mname="ns1.example.com", rname="h.example.com")
    raw = bytes(DNS(id=10, qr=1, rcode=3, qd=DNSQR(qname="nope.example.com"), ns=soa))
    r = pair(query(10, "nope.example.com"), raw)
    assert (r["rcode"], r["rcode_name"]) == (3, "NXDOMAIN")
    assert r["answers"] == [] and r["ttls"] == []
    assert r["rejected"] is False  # authority RR present (Zeek: no dns_rejected)


def test_rejected_response_without_rrs() -> None:
    raw = bytes(DNS(id=11, qr=1, rcode=5, qd=DNSQR(qname="x.example")))
    r = pair(query(11, "x.example"), raw)
    assert r["rcode_name"] == "REFUSED"
    assert r["rejected"] is True


def test_header_flags_of_a_response_without_answers() -> None:
    """NODATA (NOERROR, no answer RR) and REFUSED replies still report the server's AA/RA bits,
    as Suricata does (suricata-verify decode-teredo-01, DNS ids 38477 and 26746)."""
    name = "www.wireshark.org"
    nodata = pair(query(12, name, "AAAA"), response(12, name, "AAAA", an=[], aa=1))
    assert (nodata["rcode_name"], nodata["AA"], nodata["RA"]) == ("NOERROR", True, True)
    assert nodata["answers"] == []
    refused = pair(query(13, "x.example"), response(13, "x.example", an=[], aa=1, ra=0, rcode=5))
    assert (refused["rcode_name"], refused["AA"], refused["RA"]) == ("REFUSED", True, False)


def test_unknown_type_rendering() -> None:
    an = DNSRR(rrname="x.example", type=65280, ttl=1, rdata=b"\x01\x02")
    r = pair(query(12, "x.example", 65280), response(12, "x.example", 65280, an=an))
    assert r["qtype_name"] == "query-65280"
    assert r["answers"] == ["<unknown type=65280>"]


# -- malformed input ------------------------------------------------------------------


def test_truncated_header() -> None:
    with pytest.raises(DecodeError) as e:
        DnsDecoder("udp").feed(True, b"\x00\x01\x00", T0)
    assert e.value.name == "DNS_truncated_len_lt_hdr_len"


def test_truncated_rdata() -> None:
    raw = response(13, "a.example", an=DNSRR(rrname="a.example", type="A", ttl=1, rdata="192.0.2.1"))
    with pytest.raises(DecodeError) as e:
        parse_message(raw[:-2])
    assert e.value.name == "DNS_truncated_RR_rdlength_lt_len"


def test_truncated_question() -> None:
    raw = query(14, "a.example")
    with pytest.raises(DecodeError) as e:
        parse_message(raw[:-3])
    assert e.value.name == "DNS_truncated_quest_too_short"


def test_compression_loop() -> None:
    header = struct.pack("!6H", 15, 0, 1, 0, 0, 0)
    self_ptr = header + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # name at 12 points to 12
    with pytest.raises(DecodeError) as e:
        parse_message(self_ptr)
    assert e.value.name == "DNS_label_forward_compress_offset"
    # two pointers pointing at each other: the forward one is refused
    msg = header + b"\xc0\x0e\xc0\x0c"
    with pytest.raises(DecodeError):
        read_name(msg, 12)


def test_label_too_long() -> None:
    header = struct.pack("!6H", 16, 0, 1, 0, 0, 0)
    msg = header + bytes([64]) + b"a" * 64 + b"\x00\x00\x01\x00\x01"
    with pytest.raises(DecodeError) as e:
        parse_message(msg)
    assert e.value.name == "DNS_label_too_long"


def test_name_too_long() -> None:
    header = struct.pack("!6H", 17, 0, 1, 0, 0, 0)
    msg = header + (bytes([63]) + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"
    with pytest.raises(DecodeError) as e:
        parse_message(msg)
    assert e.value.name == "DNS_NAME_too_long"


def test_label_past_message() -> None:
    header = struct.pack("!6H", 18, 0, 1, 0, 0, 0)
    with pytest.raises(DecodeError) as e:
        parse_message(header + b"\x05ab")
    assert e.value.name == "DNS_label_len_gt_pkt"


def test_backward_pointer_ok() -> None:
    raw = response(19, "a.example", an=DNSRR(rrname="a.example", type="CNAME", ttl=1, rdata="b.a.example"))
    m = parse_message(raw)
    assert m.answers == ["b.a.example"]


# -- TCP framing -------------------------------------------------------------------------


def framed(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def test_tcp_split_across_feeds_and_two_in_one() -> None:
    d = DnsDecoder("tcp")
    q1, q2 = framed(query(20, "a.example")), framed(query(21, "b.example"))
    r1 = framed(response(20, "a.example", an=DNSRR(rrname="a.example", ttl=1, rdata="192.0.2.1")))
    r2 = framed(response(21, "b.example", an=DNSRR(rrname="b.example", ttl=2, rdata="192.0.2.2")))
    assert d.feed(True, q1 + q2, T0) == []  # two messages in one segment
    assert d.feed(False, r1[:1], T0 + 1) == []  # split inside the length prefix
    assert d.feed(False, r1[1:7], T0 + 1) == []
    recs = d.feed(False, r1[7:] + r2[:5], T0 + 2)
    assert [r["answers"] for r in recs] == [["192.0.2.1"]]
    recs = d.feed(False, r2[5:], T0 + 3)
    assert [(r["trans_id"], r["answers"]) for r in recs] == [(21, ["192.0.2.2"])]
    assert d.close(T0 + 4) == []


def test_tcp_gap_stops_direction() -> None:
    d = DnsDecoder("tcp")
    assert d.feed(True, framed(query(22, "a.example"))[:5], T0) == []
    assert d.gap(True, 100, T0) == []
    assert d.feed(True, b"garbage", T0) == []
    assert [r["query"] for r in d.close(T0 + 1)] == []


def test_bad_transport() -> None:
    with pytest.raises(ValueError):
        DnsDecoder("sctp")


# -- pairing --------------------------------------------------------------------------


def test_unanswered_query_at_close() -> None:
    d = DnsDecoder("udp")
    assert d.feed(True, query(30, "lost.example", "AAAA"), T0) == []
    recs = d.close(T0 + 10)
    assert len(recs) == 1
    r = recs[0]
    assert (r["ts"], r["query"], r["qtype_name"], r["RD"]) == (T0, "lost.example", "AAAA", True)
    assert r["rcode"] is None and r["rcode_name"] is None
    assert (r["AA"], r["RA"], r["answers"], r["ttls"], r["rejected"]) == (False, False, [], [], False)


def test_response_without_query() -> None:
    d = DnsDecoder("udp")
    an = DNSRR(rrname="Flip.Example", ttl=900, rdata="192.0.2.9")
    recs = d.feed(False, response(31, "flip.example", an=an, aa=1), T0 + 5)
    assert len(recs) == 1
    r = recs[0]
    assert r["ts"] == T0 + 5 and r["trans_id"] == 31
    assert r["query"] == "flip.example"  # Zeek: the owner of the first answer, lower-cased
    assert (r["qclass"], r["qtype"], r["qtype_name"]) == (None, None, None)
    assert (r["AA"], r["RA"], r["RD"]) == (True, True, False)
    assert d.close(T0 + 6) == []


def test_pairing_checks_question() -> None:
    d = DnsDecoder("udp")
    d.feed(True, query(40, "a.example"), T0)
    d.feed(True, query(40, "b.example"), T0 + 1)
    recs = d.feed(False, response(40, "b.example", an=DNSRR(rrname="b.example", rdata="192.0.2.2")), T0 + 2)
    assert [(r["query"], r["ts"]) for r in recs] == [("b.example", T0 + 1)]
    assert [r["query"] for r in d.close(T0 + 3)] == ["a.example"]


def test_mdns_unsolicited_response_not_paired() -> None:
    d = DnsDecoder("udp")
    d.feed(True, bytes(DNS(id=0, qr=0, qd=DNSQR(qname="q.local"))), T0)
    ann = bytes(DNS(id=0, qr=1, aa=1, an=DNSRR(rrname="other.local", ttl=120, rdata="192.168.0.2")))
    recs = d.feed(True, ann, T0 + 1)
    assert [(r["query"], r["answers"], r["qtype"]) for r in recs] == [("other.local", ["192.168.0.2"], None)]
    assert [r["query"] for r in d.close(T0 + 2)] == ["q.local"]


def test_pending_limit_flushes_oldest() -> None:
    d = DnsDecoder("udp")
    out = []
    for i in range(MAX_PENDING + 3):
        out += d.feed(True, query(i, f"h{i}.example"), T0 + i)
    assert [r["trans_id"] for r in out] == [0, 1, 2]
    assert len(d.close(T0 + 1000)) == MAX_PENDING


# -- Zeek corpus ------------------------------------------------------------------------

_SHARED_CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
CORPUS = Path(os.environ.get("EDGEAUDIT_CORPUS", _SHARED_CORPUS))


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _udp_checksum_ok(src: bytes, dst: bytes, udp: bytes) -> bool:
    """Zeek (without -C) drops UDP packets whose checksum is wrong."""
    if len(udp) < 8 or (len(src) == 4 and udp[6:8] == b"\0\0"):
        return True
    pseudo = (
        src
        + dst
        + (struct.pack("!BBH", 0, 17, len(udp)) if len(src) == 4 else struct.pack("!IxxxB", len(udp), 17))
    )
    return _csum(pseudo + udp) == 0xFFFF


def _udp_packets(path: Path, check_sums: bool) -> list[tuple[float, str, int, str, int, bytes]]:
    """(ts, src, sport, dst, dport, payload) for UDP packets, with naive IPv4/IPv6
    fragment reassembly and GRE decapsulation."""
    out: list[tuple[float, str, int, str, int, bytes]] = []
    frags: dict[tuple[Any, ...], dict[int, bytes]] = {}
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ip: Any = dpkt.ethernet.Ethernet(buf).data
            for _ in range(3):  # unwrap GRE
                if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.gre.GRE):
                    ip = ip.data.data
                else:
                    break
            if isinstance(ip, dpkt.ip6.IP6):
                fh = ip.extension_hdrs.get(dpkt.ip.IP_PROTO_FRAGMENT)
                if fh is not None:
                    key = (ip.src, ip.dst, fh.id)
                    parts = frags.setdefault(key, {})
                    parts[fh.frag_off * 8] = bytes(ip.data) if not isinstance(ip.data, bytes) else ip.data
                    if fh.m_flag:
                        continue
                    whole = b"".join(parts[k] for k in sorted(parts))
                    del frags[key]
                    try:
                        udp = dpkt.udp.UDP(whole)
                    except dpkt.UnpackError:
                        continue
                else:
                    udp = ip.data
                src, dst = ip.src, ip.dst
            elif isinstance(ip, dpkt.ip.IP):
                if ip.mf or ip.offset:
                    continue
                udp, src, dst = ip.data, ip.src, ip.dst
            else:
                continue
            if not isinstance(udp, dpkt.udp.UDP):
                continue
            if check_sums and not _udp_checksum_ok(src, dst, bytes(udp)):
                continue

            fam = socket.AF_INET6 if len(src) == 16 else socket.AF_INET
            out.append(
                (
                    ts,
                    socket.inet_ntop(fam, src),
                    udp.sport,
                    socket.inet_ntop(fam, dst),
                    udp.dport,
                    bytes(udp.data),
                )
            )
    return out




def _fmt(rec: dict[str, Any]) -> dict[str, str]:
    def b(v: bool) -> str:
        return "T" if v else "F"

    def opt(v: Any) -> str:
        return "-" if v is None else str(v)

    return {
        "trans_id": str(rec["trans_id"]),
        "query": opt(rec["query"]),
        "qtype_name": opt(rec["qtype_name"]),
        "rcode_name": opt(rec["rcode_name"]),
        "answers": ",".join(rec["answers"]) or "-",
        "TTLs": ",".join(f"{t:.6f}" for t in rec["ttls"]) or "-",
        "AA": b(rec["AA"]),
        "TC": b(rec["TC"]),
        "RD": b(rec["RD"]),
        "RA": b(rec["RA"]),
        "rejected": b(rec["rejected"]),
    }


def _corpus_cases() -> list[tuple[str, str, bool]]:
    manifest = CORPUS / "manifest.json"
    if not manifest.exists():
        return []
    cases = []
    for entry in json.loads(manifest.read_text())["zeek"]:
        for exp in entry["expected"]:
            if exp["path"].endswith("/dns.log") and len(entry["traces"]) == 1:
                check_sums = not any(" -C " in cmd for cmd in entry["exec"])
                cases.append((entry["traces"][0]["path"], exp["path"], check_sums))
    return cases


def _run_pcap(pcap: Path, check_sums: bool) -> list[dict[str, Any]]:
    decoders: dict[frozenset[tuple[str, int]], tuple[tuple[str, int], DnsDecoder]] = {}
    recs: list[dict[str, Any]] = []
    for ts, src, sport, dst, dport, payload in _udp_packets(pcap, check_sums):
        if 53 not in (sport, dport) and 5353 not in (sport, dport):
            continue
        key = frozenset({(src, sport), (dst, dport)})
        if key not in decoders:
            decoders[key] = ((src, sport), DnsDecoder("udp"))
        orig, dec = decoders[key]
        try:
            recs += dec.feed((src, sport) == orig, payload, ts)
        except DecodeError:
            continue
    for _, dec in decoders.values():
        recs += dec.close(0.0)
    return recs


@pytest.mark.skipif(not (CORPUS / "manifest.json").exists(), reason="Zeek corpus absent")
def test_zeek_corpus_match_rate() -> None:
    total = matched = 0
    mismatches: list[str] = []
    for trace, log, check_sums in _corpus_cases():
        ours = [_fmt(r) for r in _run_pcap(CORPUS / trace, check_sums)]
        for row in zeek_rows(CORPUS / log):
            total += 1
            want = {k: row[k] for k in _fmt_keys()}
            if want["answers"] != "-":  # an answer longer than the wire takes is cut, as ours are
                want["answers"] = ",".join(a[:MAX_LIST_ITEM_LEN] for a in want["answers"].split(","))
            if want in ours:
                ours.remove(want)
                matched += 1
            else:
                mismatches.append(f"{trace}: {want} not in {ours}")
    rate = matched / total if total else 1.0
    print(f"\nDNS vs Zeek dns.log: {matched}/{total} rows match ({rate:.0%})")
    for m in mismatches:
        print("  MISMATCH", m[:600])
    assert total >= 10
    assert rate >= 0.9, mismatches


def _fmt_keys() -> list[str]:
    return [
        "query",
        "qtype_name",
        "rcode_name",
        "answers",
        "TTLs",
        "AA",
        "TC",
        "RD",
        "RA",
        "rejected",
        "trans_id",
    ]


def test_mutated_messages_raise_only_decode_error() -> None:
    import random

    rng = random.Random(1035)
    an = [
        DNSRR(rrname="www.example.com", type="CNAME", ttl=10, rdata="a.example.net"),
        DNSRR(rrname="a.example.net", type="TXT", ttl=5, rdata=[b"x" * 20, b"y"]),
        DNSRRMX(rrname="example.com", ttl=1, preference=1, exchange="mx.example.com"),
        DNSRR(rrname="a.example.net", type="AAAA", ttl=5, rdata="2001:db8::1"),
    ]
    seed = response(50, "www.example.com", an=an)
    for _ in range(3000):
        buf = bytearray(seed)
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        data = bytes(buf[: rng.randint(0, len(buf))]) if rng.random() < 0.3 else bytes(buf)
        d = DnsDecoder("udp")
        try:
            recs = d.feed(False, data, T0) + d.close(T0)
        except DecodeError:
            continue
        for r in recs:
            assert isinstance(r["answers"], list) and len(r["answers"]) == len(r["ttls"])
