"""Checksum arithmetic, frame builders and content of the synthetic capture generator."""

from __future__ import annotations

import random
import struct

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from agent.synth.checksum import internet_checksum
from agent.synth.content import CJK, make_text_corpus
from agent.synth.frames import ACK, PROTO_TCP, PROTO_UDP, PSH, Direction, FrameBuilder, MacPair
from agent.synth.sessions.tls import client_hello

CIP, SIP = bytes((192, 168, 1, 2)), bytes((1, 2, 3, 4))
MACS = MacPair.of(b"\x02\x00" + CIP, bytes.fromhex("00163e0a0b01"))


def rfc1071(data: bytes) -> int:
    """Word-by-word reference implementation."""
    if len(data) & 1:
        data += b"\x00"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@given(st.binary(max_size=3000))
def test_checksum_matches_rfc1071(data: bytes) -> None:
    assert internet_checksum(data) == rfc1071(data)


def test_checksum_edge_cases() -> None:
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\x00\x00\x00") == 0xFFFF
    assert internet_checksum(b"\xff\xff") == rfc1071(b"\xff\xff") == 0
    assert internet_checksum(b"\x12") == rfc1071(b"\x12")


@given(
    payload=st.binary(max_size=1448),
    seq=st.integers(0, 2**32 - 1),
    ack=st.integers(0, 2**32 - 1),
    tsval=st.integers(0, 2**32 - 1),
    tsecr=st.integers(0, 2**32 - 1),
    ipid=st.integers(0, 0xFFFF),
    sport=st.integers(1, 0xFFFF),
    dport=st.integers(1, 0xFFFF),
)
def test_tcp_ts_frame_parses_with_valid_checksums(
    payload: bytes, seq: int, ack: int, tsval: int, tsecr: int, ipid: int, sport: int, dport: int
) -> None:
    b = FrameBuilder(ipid)
    frame = b.tcp_ts(Direction(MACS.from_client, CIP, SIP, sport, dport, 64, PROTO_TCP),
                     seq, ack, ACK | PSH, 502, tsval, tsecr, payload)
    ip = dpkt.ethernet.Ethernet(frame).data
    tcp = ip.data
    assert (ip.src, ip.dst, ip.ttl, ip.id, ip.df) == (CIP, SIP, 64, (ipid + 1) & 0xFFFF, 1)
    fields = (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.win)
    assert fields == (sport, dport, seq, ack, ACK | PSH, 502)
    assert bytes(tcp.data) == payload
    opts = dpkt.tcp.parse_opts(tcp.opts)
    assert (dpkt.tcp.TCP_OPT_TIMESTAMP, struct.pack("!II", tsval, tsecr)) in opts
    raw = frame[14:]
    assert dpkt.in_cksum(raw[:20]) == 0
    pseudo = CIP + SIP + struct.pack("!BBH", 0, 6, len(raw) - 20)
    assert dpkt.in_cksum(pseudo + raw[20:]) == 0


@given(payload=st.binary(max_size=1400), sport=st.integers(1, 0xFFFF))
def test_udp_frame_checksum(payload: bytes, sport: int) -> None:
    frame = FrameBuilder(0).udp(Direction(MACS.to_client, SIP, CIP, sport, 53, 55, PROTO_UDP), payload)
    ip = dpkt.ethernet.Ethernet(frame).data
    assert bytes(ip.data.data) == payload and ip.data.sum != 0
    raw = frame[14:]
    pseudo = SIP + CIP + struct.pack("!BBH", 0, 17, len(raw) - 20)
    assert dpkt.in_cksum(pseudo + raw[20:]) == 0
    assert dpkt.in_cksum(raw[:20]) == 0


def test_client_hello_is_padded_and_carries_sni() -> None:
    rec = client_hello(random.Random(5), "www.example.com.cn")
    # The reference generator's padding arithmetic (kept for an identical mix) gives a
    # 510-byte handshake message in a 515-byte record, whatever the SNI length.
    assert len(rec) == 515
    assert len(client_hello(random.Random(6), "a.cn")) == 515
    hello = dpkt.ssl.TLSHandshake(dpkt.ssl.TLSRecord(rec).data).data
    types = [t for t, _ in hello.extensions]
    assert types[0] == 0 and 0x0010 in types and 0x002B in types and 0x0033 in types
    assert b"www.example.com.cn" in bytes(hello.extensions[0][1])


def test_text_corpus_mixes_english_and_chinese_utf8() -> None:
    text = make_text_corpus(random.Random(7), 50_000).decode("utf-8", errors="ignore")
    cjk = set(CJK)
    assert sum(1 for ch in text if ch in cjk) > 2000
    assert "。" in text and "<p>" in text
    assert sum(ch.isascii() and ch.isalpha() for ch in text) > 5000
    assert "\r\n.\r\n" not in text  # SMTP bodies must not end DATA early
