"""Fuzzing the decode layer and the pipeline behind it (DESIGN.md standard 4).

Random bytes and mutated valid frames (bit flips, truncations, byte and
length-field corruption, insertions and deletions) of every link type and
header the decoder handles go through `link_layer`, `Decoder` and
`Pipeline.feed`: nothing may raise except `DecodeError` out of `link_layer`,
and every record the pipeline emits is a valid `session` or `weird` record
(`wire.validate_record`). The flow table's fast path and its in-place pcap
loop must give the same records as the general path on the same input.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import tempfile
from pathlib import Path
from typing import Any

import dpkt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_Router_Alert, fragment
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import GRE_PPTP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet as ScapyPacket
from scapy.packet import Raw

from agent.capture import linktypes as lt
from agent.capture import open_capture
from agent.decode.errors import DecodeError
from agent.decode.link import link_layer
from agent.decode.packet import Decoder
from agent.pipeline import Pipeline
from wire.jsonl import encode_line
from wire.validate import validate_record

MAC = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
A4, B4 = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
TEREDO = "2001:0:4136:e378:8000:63bf:3fff:fdd2"
TS = 1_700_000_000.0
LINKTYPES = sorted(lt.SUPPORTED) + [147]  # and one the decoder does not know

# EDGEAUDIT_FUZZ_SCALE=20 runs twenty times as many examples, randomized (a longer, nightly-style run);
# the default is a fixed, derandomized set that takes about 15 s.
SCALE = float(os.environ.get("EDGEAUDIT_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=500, deadline=None, derandomize=SCALE == 1,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


def b(p: ScapyPacket | bytes) -> bytes:
    return p if isinstance(p, bytes) else bytes(p)


# -- seeds: valid frames of every kind ---------------------------------------------------------------

_udp4 = IP(src=A4, dst=B4) / UDP(sport=5353, dport=53) / Raw(b"\x12\x34\x01\x00\x00\x01" + b"\0" * 6)
_tcp4 = (IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=2001)
         / Raw(b"GET / HTTP/1.1\r\n"))
_tcp6 = IPv6(src=A6, dst=B6) / TCP(sport=40000, dport=443, flags="PA") / Raw(b"\x16\x03\x01\x00\x05hello")
_inner4 = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=9) / Raw(b"inner payload")
_inner6 = IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=7, dport=9, flags="S")
_teredo_inner = b(IPv6(src=TEREDO, dst="2001:db8::80") / TCP(sport=1025, dport=80, flags="S"))
_origin = b"\x00\x00\x63\xbf\xc0\x00\x01\x02"
_auth = b"\x00\x01\x02\x03ididauth" + b"N" * 8 + b"\x00"


def _nflog(family: int, ip: bytes) -> bytes:
    return (struct.pack("<BBH", family, 0, 0) + struct.pack("<HH", 8, 1) + b"\x08\x00\x03\x00"
            + struct.pack("<HH", 4 + len(ip), 9) + ip + b"\0" * (-len(ip) % 4))


def _eth(*layers: ScapyPacket) -> bytes:
    p: ScapyPacket = Ether(**MAC)
    for layer in layers:
        p = p / layer
    return b(p)


SEEDS: list[tuple[str, int, bytes]] = [
    ("eth-udp4", lt.ETHERNET, _eth(_udp4)),
    ("eth-tcp4", lt.ETHERNET, _eth(_tcp4)),
    ("eth-tcp6", lt.ETHERNET, _eth(_tcp6)),
    ("eth-icmp", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / ICMP() / Raw(b"ping" * 4))),
    ("ipv4-options", lt.ETHERNET,
     _eth(IP(src=A4, dst=B4, options=[IPOption_Router_Alert()]) / UDP() / Raw(b"o"))),
    ("vlan", lt.ETHERNET, _eth(Dot1Q(vlan=10), _udp4)),
    ("qinq3", lt.ETHERNET, _eth(Dot1AD(vlan=1), Dot1Q(vlan=2), Dot1Q(vlan=3), _tcp4)),
    ("mpls", lt.ETHERNET, b(Ether(**MAC, type=0x8847)) + struct.pack("!II", 0x10000, 0x20140) + b(_udp4)),
    ("pppoe", lt.ETHERNET, _eth(PPPoE(sessionid=7), PPP(proto=0x21), _tcp4)),
    ("pppoe-compressed", lt.ETHERNET,
     b(Ether(**MAC, type=0x8864)) + struct.pack("!BBHH", 0x11, 0, 7, 1 + len(_tcp6)) + b"\x57" + b(_tcp6)),
    ("pppoe-qinq", lt.ETHERNET,
     _eth(Dot1AD(vlan=5), Dot1Q(vlan=6), PPPoE(sessionid=1), PPP(proto=0x57), _tcp6)),
    ("ipv6-ext", lt.ETHERNET,
     _eth(IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=[B6])
          / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=2) / Raw(b"ext"))),
    ("ipip", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / _inner4)),
    ("6in4", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / _inner6)),
    ("4in6", lt.RAW, b(IPv6(src=A6, dst=B6) / _inner4)),
    ("gre-key-seq-csum", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / GRE(chksum_present=1, key_present=1,
                                                                    seqnum_present=1) / _inner4)),
    ("gre-teb", lt.ETHERNET,
     _eth(IP(src=A4, dst=B4) / GRE(proto=0x6558) / Ether(**MAC) / Dot1Q(vlan=9) / _inner4)),
    ("erspan2", lt.ETHERNET,
     _eth(IP(src=A4, dst=B4) / GRE(seqnum_present=1, proto=0x88BE) / ERSPAN_II(session_id=1)
          / Ether(**MAC) / _inner6)),
    ("pptp", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / GRE_PPTP(seqnum_present=1, acknum_present=1)
                               / Raw(b"\xff\x03\x00\x21" + b(_inner4)))),
    ("teredo", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / UDP(sport=3544, dport=3544) / Raw(_teredo_inner))),
    ("teredo-origin", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / UDP(sport=50000, dport=3544)
                                        / Raw(_origin + _teredo_inner))),
    ("teredo-auth", lt.ETHERNET, _eth(IP(src=A4, dst=B4) / UDP(sport=3544, dport=50001)
                                      / Raw(_auth + _origin + _teredo_inner))),
    ("sll", lt.LINUX_SLL, b(CookedLinux() / _udp4)),
    ("sll2", lt.LINUX_SLL2, b(CookedLinuxV2(proto=0x86DD) / _tcp6)),
    ("null", lt.NULL, struct.pack("=I", 2) + b(_tcp4)),
    ("null-v6-swapped", lt.NULL, struct.pack(">I", 30) + b(_tcp6)),
    ("loop", lt.LOOP, struct.pack(">I", 2) + b(_udp4)),
    ("raw", lt.RAW, b(_tcp6)),
    ("raw12", lt.RAW_DLT12, b(_udp4)),
    ("raw14", lt.RAW_DLT14, b(_udp4)),
    ("ipv4", lt.IPV4, b(_tcp4)),
    ("ipv6", lt.IPV6, b(_tcp6)),
    ("ppp", lt.PPP, b"\xff\x03\x00\x21" + b(_udp4)),
    ("ppp-hdlc", lt.PPP_HDLC, b"\x21" + b(_tcp4)),
    ("cisco-hdlc", lt.PPP_HDLC, b"\x0f\x00\x86\xdd" + b(_tcp6)),
    ("ppp-ether", lt.PPP_ETHER, b(PPPoE(sessionid=2) / PPP(proto=0x21) / _udp4)),
    ("nflog4", lt.NFLOG, _nflog(2, b(_tcp4))),
    ("nflog6", lt.NFLOG, _nflog(10, b(_tcp6))),
]
_big4 = IP(src=A4, dst=B4, id=99) / UDP(sport=53, dport=5353) / Raw(bytes(range(256)) * 3)
SEEDS += [(f"frag4-{i}", lt.ETHERNET, _eth(Dot1Q(vlan=4), f)) for i, f in enumerate(fragment(_big4, 256))]
_big6 = IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(id=7) / UDP(sport=53, dport=5353) / Raw(b"\xee" * 1500)
SEEDS += [(f"frag6-{i}", lt.RAW, b(f)) for i, f in enumerate(fragment6(_big6, 1280))]
SEEDS += [(f"frag-ipip-{i}", lt.RAW, b(f))
          for i, f in enumerate(fragment(IP(src=A4, dst=B4, id=5) / IP(src="10.9.9.9", dst=B4) / UDP()
                                         / Raw(b"t" * 600), 256))]

# A TCP handshake that establishes the flow of "eth-tcp4", so mutated segments after it can take the
# flow table's fast path; and a UDP exchange that gives the flow of "eth-udp4" a service.
HANDSHAKE = [
    _eth(IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="S", seq=1000)),
    _eth(IP(src=B4, dst=A4) / TCP(sport=80, dport=40000, flags="SA", seq=2000, ack=1001)),
    _eth(IP(src=A4, dst=B4) / TCP(sport=40000, dport=80, flags="A", seq=1001, ack=2001)),
]
DNS_PAIR = [_eth(_udp4),
            _eth(IP(src=B4, dst=A4) / UDP(sport=53, dport=5353) / Raw(b"\x12\x34\x81\x80" + b"\0" * 8))]


def _fields(linktype: int, frame: bytes) -> list[tuple[int, int]]:
    """Offsets and widths of the length (and type) fields of a seed's outer headers."""
    out: list[tuple[int, int]] = []
    try:
        etype, l3, _, _, _ = link_layer(linktype, frame)
    except DecodeError:
        return out
    if linktype == lt.ETHERNET:
        out += [(o, 2) for o in range(12, l3 - 1, 4)]  # ethertype and each tag's type
        i = frame.find(b"\x88\x64", 12, l3)
        if i >= 0:
            out.append((i + 2 + 4, 2))  # PPPoE length
    elif linktype == lt.PPP_ETHER:
        out.append((4, 2))
    elif linktype == lt.NFLOG:
        out += [(4, 2), (l3 - 4, 2)]
    if etype == 0x0800 and l3 + 20 <= len(frame):
        out += [(l3, 1), (l3 + 2, 2), (l3 + 6, 2), (l3 + 9, 1)]
        l4, proto = l3 + (frame[l3] & 15) * 4, frame[l3 + 9]
    elif etype == 0x86DD and l3 + 40 <= len(frame):
        out += [(l3 + 4, 2), (l3 + 6, 1)]
        l4, proto = l3 + 40, frame[l3 + 6]
        if proto in (0, 43, 60):
            out.append((l4 + 1, 1))
    else:
        return out
    if proto == 17:
        out += [(l4 + 4, 2), (l4 + 12, 2), (l4 + 8, 2)]  # UDP length; Teredo inner payload length / type
    elif proto == 6:
        out.append((l4 + 12, 1))
    elif proto == 47:
        out += [(l4, 2), (l4 + 2, 2)]
    elif proto == 44:
        out += [(l4, 1), (l4 + 2, 2)]
    return [(o, w) for o, w in out if o + w <= len(frame)]


FIELDS = [_fields(linktype, frame) for _, linktype, frame in SEEDS]


def test_seeds_decode_cleanly() -> None:
    """The seeds themselves are valid: each gives a packet (or a pending fragment), no weird."""
    d = Decoder()
    got = 0
    for name, linktype, frame in SEEDS:
        pkt = d.decode(TS, linktype, frame)
        assert d.weirds == [], name
        got += pkt is not None
    pieces = sum(s[0].startswith("frag") for s in SEEDS)
    assert got == len(SEEDS) - pieces + 3  # each of the three datagrams completes on its last fragment
    assert all(FIELDS), [s[0] for s, f in zip(SEEDS, FIELDS, strict=True) if not f]
    assert {linktype for _, linktype, _ in SEEDS} == set(lt.SUPPORTED)


_INTERESTING = [0, 1, 2, 7, 8, 19, 20, 39, 40, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x7FFF, 0x8000, 0xFFFF]


@st.composite
def mutated_frame(draw: st.DrawFn) -> tuple[int, bytes]:
    i = draw(st.integers(0, len(SEEDS) - 1))
    _, linktype, frame = SEEDS[i]
    fields = FIELDS[i]
    buf = bytearray(frame)
    for _ in range(draw(st.integers(1, 3))):
        if not buf:
            break
        op = draw(st.sampled_from(["flip", "field", "field", "byte", "truncate", "insert", "delete"]))
        if op == "flip":
            pos = draw(st.integers(0, len(buf) - 1))
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "field" and fields:
            off, width = draw(st.sampled_from(fields))
            if off + width > len(buf):
                continue
            old = int.from_bytes(buf[off:off + width], "big")
            val = draw(st.sampled_from(_INTERESTING) | st.integers(max(old - 9, 0), old + 9)
                       | st.integers(0, (1 << 8 * width) - 1))
            buf[off:off + width] = (val & ((1 << 8 * width) - 1)).to_bytes(width, "big")
        elif op == "byte":
            pos = draw(st.integers(0, min(len(buf), 96) - 1))  # headers, mostly
            buf[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[draw(st.integers(0, len(buf) - 1)):]
        elif op == "insert":
            pos = draw(st.integers(0, len(buf)))
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            pos = draw(st.integers(0, len(buf) - 1))
            del buf[pos:pos + draw(st.integers(1, 8))]
    if draw(st.integers(0, 9)) == 0:  # sometimes read it as the wrong link type
        linktype = draw(st.sampled_from(LINKTYPES))
    return linktype, bytes(buf)


def _check_records(records: list[dict[str, Any]]) -> None:
    for r in records:
        assert isinstance(r, dict)
        assert isinstance(r["type"], str), r  # any record type; validate_record checks its schema
        if r["type"] == "weird":
            assert isinstance(r["name"], str) and r["name"]
            assert isinstance(r["detail"], str)
        validate_record(r)
        encode_line(r)


def _run(frames: list[tuple[int, bytes]], split: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    pipe = Pipeline(out.extend)
    batch = [(TS + i * 0.001, linktype, frame) for i, (linktype, frame) in enumerate(frames)]
    if split:
        pipe.feed(batch[:split])
        pipe.feed(batch[split:])
    else:
        pipe.feed(batch)
    pipe.finish()
    _check_records(out)
    pipe.stats_record(1.0)
    pipe.counters()
    return out


# -- properties ------------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=examples(500))
@given(st.sampled_from(LINKTYPES), st.binary(max_size=160))
def test_link_layer_raises_only_decode_error(linktype: int, frame: bytes) -> None:
    try:
        etype, off, vlan, inner, mac_off = link_layer(linktype, frame)
    except DecodeError as e:
        assert e.name and isinstance(e.detail, str)
        return
    assert isinstance(etype, int) and off >= 0 and mac_off in (0, -1)
    assert vlan is None or 0 <= vlan <= 4095
    assert inner is None or (vlan is not None and 0 <= inner <= 4095)


@settings(FUZZ, max_examples=examples(600))
@given(st.lists(st.tuples(st.sampled_from(LINKTYPES), st.binary(max_size=200)), min_size=1, max_size=6))
def test_random_bytes_through_the_pipeline(frames: list[tuple[int, bytes]]) -> None:
    _run(frames)


@settings(FUZZ, max_examples=examples(1200))
@given(mutated_frame())
def test_mutated_frame_through_decoder_and_pipeline(lf: tuple[int, bytes]) -> None:
    linktype, frame = lf
    d = Decoder()
    pkt = d.decode(TS, linktype, frame)
    if pkt is not None:
        assert len(pkt.src) in (4, 16) and len(pkt.dst) == len(pkt.src)
        assert 0 <= pkt.l4_off <= len(pkt.buf) and pkt.l4_len >= 0 and pkt.ip_len >= 0
    for w in d.weirds:
        assert isinstance(w[1], str) and w[1] and isinstance(w[2], str)
    _run([lf])


@settings(FUZZ, max_examples=examples(500))
@given(st.lists(st.one_of(mutated_frame(), st.sampled_from([(s[1], s[2]) for s in SEEDS])),
                min_size=2, max_size=8),
       st.integers(0, 8))
def test_mixed_batches_of_valid_and_mutated_frames(frames: list[tuple[int, bytes]], split: int) -> None:
    """Fragments of one datagram, some mutated; flows that see good and bad packets."""
    _run(frames, split=min(split, len(frames)))


@settings(FUZZ, max_examples=examples(300))
@given(st.sampled_from(["tcp", "udp"]), st.lists(mutated_frame(), min_size=1, max_size=4))
def test_mutated_packets_on_established_flows(kind: str, frames: list[tuple[int, bytes]]) -> None:
    """Mutants after a handshake / a DNS exchange: the flow table's fast path sees them first."""
    prefix = [(lt.ETHERNET, f) for f in (HANDSHAKE if kind == "tcp" else DNS_PAIR)]
    seed = next(s[2] for s in SEEDS if s[0] == ("eth-tcp4" if kind == "tcp" else "eth-udp4"))
    _run(prefix + [(lt.ETHERNET, seed)] + frames, split=len(prefix))


@settings(FUZZ, max_examples=examples(300))
@given(st.binary(max_size=120), st.booleans(), st.sampled_from([b"", _origin, _auth + _origin, _auth]))
def test_teredo_payloads(payload: bytes, teredo_port: bool, prefix: bytes) -> None:
    """decode_teredo on arbitrary UDP payloads, and on valid ones with a mutated inner packet."""
    relength = _teredo_inner[:4] + struct.pack("!H", len(payload)) + _teredo_inner[6:40]
    for data in (prefix + payload, prefix + _teredo_inner[:40] + payload, prefix + relength + payload):
        frame = _eth(IP(src=A4, dst=B4) / UDP(sport=3544, dport=40000) / Raw(data))
        d = Decoder()
        pkt = d.decode(TS, lt.ETHERNET, frame)
        assert pkt is not None
        inner = d.decode_teredo(TS, pkt, pkt.l4_off + 8, pkt.l4_off + pkt.l4_len, teredo_port)
        if inner is not None:
            assert len(inner.src) == 16 and inner.mac_off == -1
        _run([(lt.ETHERNET, frame)])


def _replay_pcap(path: Path, *, in_place: bool, fast_path: bool, chunk: int = 3) -> list[dict[str, Any]]:
    """Replay a pcap as the CLI does (in-place records, then batches), or in batches only."""
    out: list[dict[str, Any]] = []
    pipe = Pipeline(out.extend, fast_path=fast_path)
    with open_capture(path) as cap:
        region = cap.pcap_region() if in_place else None
        while region is not None:
            off, n, nbytes, snapped = pipe.feed_pcap(region, chunk)
            cap.consumed(off, n, nbytes, snapped)
            region = cap.pcap_region() if n == chunk else None
        for batch in cap.batches(2):
            pipe.feed(batch)
    pipe.finish()
    _check_records(out)
    return out


_ETH_SEEDS = [s[2] for s in SEEDS if s[1] == lt.ETHERNET]


@settings(FUZZ, max_examples=examples(300))
@given(st.sampled_from(["tcp", "udp"]),
       st.lists(st.one_of(mutated_frame().map(lambda lf: lf[1]), st.sampled_from(_ETH_SEEDS)),
                min_size=1, max_size=8),
       st.lists(st.sampled_from([0.0, 0.001, 1.0, 59.0, 301.0, 3601.0]), max_size=12))
def test_fast_path_and_in_place_pcap_match_the_general_path(kind: str, frames: list[bytes],
                                                            gaps: list[float]) -> None:
    """The flow table's fast path and its in-place pcap loop give the records the general path gives.

    Mutants follow an established TCP connection or UDP exchange, so the fast path sees them first.
    Records are compared as multisets: decoder and flow-table weirds of one batch drain in two groups,
    so their interleaving depends on where the batches end.
    """
    frames = (HANDSHAKE if kind == "tcp" else DNS_PAIR) + frames
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.pcap"
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f, linktype=lt.ETHERNET)
            t = TS
            for i, frame in enumerate(frames):
                t += gaps[i] if i < len(gaps) else 0.001
                w.writepkt(frame, ts=t)
        general = _replay_pcap(path, in_place=False, fast_path=False)
        in_place = _replay_pcap(path, in_place=True, fast_path=True)
        batched = _replay_pcap(path, in_place=False, fast_path=True)

    def key(records: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(r, sort_keys=True) for r in records)

    assert key(in_place) == key(general)
    assert key(batched) == key(general)


# -- found while fuzzing (regressions) ----------------------------------------------------------------------


def _nested_teredo(levels: int) -> bytes:
    def v6(payload: bytes) -> bytes:
        addrs = socket.inet_pton(socket.AF_INET6, TEREDO) + socket.inet_pton(socket.AF_INET6, "2001:db8::80")
        return struct.pack("!IHBB", 0x60000000, len(payload), 17, 64) + addrs + payload

    def udp(payload: bytes, sport: int = 3544, dport: int = 3544) -> bytes:
        return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload

    pkt = v6(udp(b"innermost", 1000, 2000))
    for _ in range(levels):
        pkt = v6(udp(pkt))
    return pkt


def test_a_few_nested_teredo_layers_decode() -> None:
    out = _run([(lt.RAW, _nested_teredo(3))])
    assert any(r["src_port"] == 1000 and r["dst_port"] == 2000 for r in out)


def test_deeply_nested_teredo_does_not_crash_the_pipeline() -> None:
    """~1300 Teredo layers in one 62 KB packet once exhausted the Python stack (RecursionError)."""
    _run([(lt.RAW, _nested_teredo(1300))])


def test_ipv4_compatible_ipv6_address_is_canonical() -> None:
    """socket.inet_ntop writes '::1.2.3.4'; the wire schema (RFC 5952) wants '::102:304'."""
    frame = b(IPv6(src="::102:304", dst=B6) / UDP(sport=1, dport=2) / Raw(b"x"))
    out: list[dict[str, Any]] = []
    pipe = Pipeline(out.extend)
    pipe.feed([(TS, lt.RAW, frame)])
    pipe.finish()
    assert [r["src_ip"] for r in out] == ["::102:304"]
    for r in out:
        validate_record(r)

