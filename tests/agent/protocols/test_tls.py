"""Tests for agent/protocols/tls.py: hand-built hellos, fuzzing, Zeek/Suricata corpus."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_streams import zeek_rows

from agent.decode.errors import DecodeError
from agent.protocols.tls import (
    HRR_RANDOM,
    MAX_HANDSHAKE,
    TlsDecoder,
    looks_like_tls,
    starttls_decoder,
    version_name,
)
from wire.addresses import ip_from_packed

# --------------------------------------------------------------- builders


def ext(etype: int, data: bytes) -> bytes:
    return struct.pack("!HH", etype, len(data)) + data


def sni_ext(name: bytes) -> bytes:
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return ext(0, struct.pack("!H", len(entry)) + entry)


def alpn_ext(*protos: bytes) -> bytes:
    body = b"".join(bytes([len(p)]) + p for p in protos)
    return ext(16, struct.pack("!H", len(body)) + body)


def sv_client(*versions: int) -> bytes:
    return ext(43, bytes([2 * len(versions)]) + b"".join(struct.pack("!H", v) for v in versions))


def sv_server(version: int) -> bytes:
    return ext(43, struct.pack("!H", version))


def handshake(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def client_hello(exts: bytes | None, version: int = 0x0303) -> bytes:
    body = struct.pack("!H", version) + b"\x11" * 32 + b"\x20" + b"\x22" * 32
    body += struct.pack("!H", 4) + b"\x13\x01\xc0\x2f" + b"\x01\x00"
    if exts is not None:
        body += struct.pack("!H", len(exts)) + exts
    return handshake(1, body)


def server_hello(exts: bytes | None, version: int = 0x0303, random: bytes = b"\x33" * 32) -> bytes:
    body = struct.pack("!H", version) + random + b"\x00" + b"\xc0\x2f" + b"\x00"
    if exts is not None:
        body += struct.pack("!H", len(exts)) + exts
    return handshake(2, body)


def record(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", ctype, version, len(payload)) + payload


def ccs() -> bytes:
    return record(20, b"\x01")


def appdata(n: int = 40) -> bytes:
    return record(23, b"\xaa" * n)


def encrypted_finished() -> bytes:
    return record(22, b"\x5a" * 40)


# ------------------------------------------------------------- unit tests


def test_tls12_sni_alpn_established() -> None:
    d = TlsDecoder()
    ch = client_hello(sni_ext(b"example.com") + alpn_ext(b"h2", b"http/1.1"))
    assert d.feed(True, record(22, ch, 0x0301), 1.0) == []
    sh = server_hello(alpn_ext(b"h2"))
    assert d.feed(False, record(22, sh) + record(22, handshake(14, b"")), 1.1) == []
    assert d.feed(True, record(22, handshake(16, b"\x00" * 66)) + ccs() + encrypted_finished(), 1.2) == []
    out = d.feed(False, ccs() + encrypted_finished(), 1.3)
    assert out == [
        {
            "type": "tls",
            "ts": 1.0,
            "server_name": "example.com",
            "version": "TLSv12",
            "next_protocol": "h2",
            "established": True,
        }
    ]
    # exactly one record per connection
    assert d.feed(True, appdata(), 1.4) == []
    assert d.close(2.0) == []


def test_tls12_not_established_without_server_ccs() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(sni_ext(b"a.example"))), 1.0)
    d.feed(False, record(22, server_hello(None, version=0x0301)), 1.1)
    d.feed(True, ccs() + encrypted_finished(), 1.2)
    [rec] = d.close(3.0)
    assert rec["version"] == "TLSv10"
    assert rec["established"] is False
    assert rec["next_protocol"] is None


def tls13_exchange(d: TlsDecoder, server_exts: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ch = client_hello(sni_ext(b"tls13.example") + alpn_ext(b"h2") + sv_client(0x3A3A, 0x0304, 0x0303))
    out += d.feed(True, record(22, ch, 0x0301), 5.0)
    out += d.feed(False, record(22, server_hello(server_exts)) + ccs() + appdata() + appdata(), 5.1)
    assert out == []
    out += d.feed(True, ccs(), 5.2)
    assert out == []  # Zeek ignores CCS under TLS 1.3
    out += d.feed(True, appdata(), 5.3)
    return out


def test_tls13_supported_versions() -> None:
    d = TlsDecoder(alpn_fallback_offered=False)  # Zeek's reading
    [rec] = tls13_exchange(d, sv_server(0x0304) + ext(51, b"\x00\x1d\x00\x00"))
    assert rec["version"] == "TLSv13"
    assert rec["server_name"] == "tls13.example"
    assert rec["next_protocol"] is None  # the server's choice is in EncryptedExtensions
    assert rec["established"] is True
    assert rec["ts"] == 5.0


def test_tls13_alpn_fallback_offered() -> None:
    d = TlsDecoder(alpn_fallback_offered=True)
    [rec] = tls13_exchange(d, sv_server(0x0304))
    assert rec["next_protocol"] == "h2"


def test_tls13_draft_version_names() -> None:
    d = TlsDecoder()
    [rec] = tls13_exchange(d, sv_server(0x7F1C))
    assert rec["version"] == "TLSv13-draft28"
    assert version_name(0x7F17) == "TLSv13-draft23"
    assert version_name(0x0300) == "SSLv3"
    assert version_name(0x0002) == "SSLv2"


def test_tls13_old_draft_server_hello_format() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(sv_client(0x7F12))), 1.0)
    body = struct.pack("!H", 0x7F12) + b"\x44" * 32 + b"\x13\x01" + struct.pack("!H", 0)
    d.feed(False, record(22, handshake(2, body)), 1.1)
    [rec] = d.close(2.0)
    assert rec["version"] == "TLSv13-draft18"


def test_hello_retry_request_then_server_hello() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(sni_ext(b"hrr.example") + sv_client(0x0304))), 1.0)
    hrr = server_hello(sv_server(0x0304), random=HRR_RANDOM)
    d.feed(False, record(22, hrr) + ccs(), 1.1)
    d.feed(True, ccs() + record(22, client_hello(sni_ext(b"hrr.example") + sv_client(0x0304))), 1.2)
    d.feed(False, record(22, server_hello(sv_server(0x0304) + alpn_ext(b"x"))) + appdata(), 1.3)
    assert d.feed(True, appdata(), 1.4)[0]["established"] is True


def test_client_hello_byte_by_byte() -> None:
    d = TlsDecoder()
    data = record(22, client_hello(sni_ext(b"slow.example") + alpn_ext(b"http/1.1")), 0x0301)
    for i in range(len(data)):
        assert d.feed(True, data[i : i + 1], 10.0 + i) == []
    [rec] = d.close(99.0)
    assert rec["server_name"] == "slow.example"
    assert rec["version"] is None  # no ServerHello
    assert rec["established"] is False
    assert rec["ts"] == 10.0 + len(data) - 1  # the time the hello was complete


def test_client_hello_across_three_records() -> None:
    d = TlsDecoder(alpn_fallback_offered=True)
    hs = client_hello(sni_ext(b"split.example") + alpn_ext(b"spdy/3") + b"\x00\x15\x01\x00" + b"\x00" * 256)
    cut1, cut2 = 7, len(hs) // 2
    stream = record(22, hs[:cut1]) + record(22, hs[cut1:cut2]) + record(22, hs[cut2:])
    for i in range(0, len(stream), 13):  # odd TCP segment size, not aligned to records
        d.feed(True, stream[i : i + 13], 1.0)
    d.feed(False, record(22, server_hello(None)), 2.0)
    [rec] = d.close(3.0)
    assert (rec["server_name"], rec["version"], rec["next_protocol"]) == ("split.example", "TLSv12", "spdy/3")


def test_server_hello_coalesced_with_certificate_in_one_record() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(None, version=0x0300)), 1.0)  # SSLv3: no extensions
    d.feed(False, record(22, server_hello(None, 0x0300) + handshake(11, b"\x00" * 900)), 1.1)
    [rec] = d.close(2.0)
    assert rec["version"] == "SSLv3"
    assert rec["server_name"] is None


def ssl2_client_hello(version: int = 0x0301) -> bytes:
    ciphers = b"\x01\x00\x80" + b"\x00\x00\x2f"
    challenge = b"\x77" * 16
    msg = b"\x01" + struct.pack("!HHHH", version, len(ciphers), 0, len(challenge)) + ciphers + challenge
    return struct.pack("!H", 0x8000 | len(msg)) + msg


def test_sslv2_compatible_client_hello_with_tls_server() -> None:
    d = TlsDecoder()
    assert looks_like_tls(ssl2_client_hello())
    d.feed(True, ssl2_client_hello(), 1.0)
    d.feed(False, record(22, server_hello(None, 0x0301), 0x0301), 1.1)
    d.feed(True, record(22, handshake(16, b"\x00" * 10), 0x0301) + ccs() + encrypted_finished(), 1.2)
    [rec] = d.feed(False, ccs() + encrypted_finished(), 1.3)
    assert rec["version"] == "TLSv10"
    assert rec["server_name"] is None
    assert rec["established"] is True


def test_pure_sslv2() -> None:
    d = TlsDecoder()
    d.feed(True, ssl2_client_hello(0x0002), 1.0)
    cert = b"\x30\x03\x02\x01\x00"
    sh = (
        b"\x04\x00\x01"
        + struct.pack("!HHHH", 0x0002, len(cert), 3, 16)
        + cert
        + b"\x01\x00\x80"
        + b"\x55" * 16
    )
    d.feed(False, struct.pack("!H", 0x8000 | len(sh)) + sh, 1.1)
    mk = b"\x02\x01\x00\x80" + b"\x00" * 12
    [rec] = d.feed(True, struct.pack("!H", 0x8000 | len(mk)) + mk, 1.2)
    assert rec["version"] == "SSLv2"
    assert rec["established"] is True


def test_starttls_decoder_fed_from_tls_start() -> None:
    d = starttls_decoder()
    d.feed(True, record(22, client_hello(sni_ext(b"mail.example"))), 7.0)
    d.feed(False, record(22, server_hello(None)), 7.1)
    [rec] = d.close(8.0)
    assert rec["server_name"] == "mail.example"
    assert rec["version"] == "TLSv12"


def test_gap_stops_direction_but_record_still_emitted() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(sni_ext(b"gap.example"))), 1.0)
    assert d.gap(False, 500, 1.1) == []
    assert d.feed(False, b"\xff\xfe garbage after the gap", 1.2) == []
    [rec] = d.close(2.0)
    assert rec["server_name"] == "gap.example"
    assert rec["established"] is False


def test_close_after_decode_error_keeps_the_hello() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(sni_ext(b"kept.example"))), 1.0)
    with pytest.raises(DecodeError):
        d.feed(False, b"HTTP/1.1 400 Bad Request\r\n\r\n", 1.1)
    assert d.feed(False, b"more", 1.2) == []
    [rec] = d.close(2.0)
    assert rec["server_name"] == "kept.example"
    assert rec["version"] is None


def test_no_record_without_hello() -> None:
    d = TlsDecoder()
    d.feed(True, record(22, client_hello(None))[:20], 1.0)  # truncated at close
    assert d.close(2.0) == []


def test_looks_like_tls() -> None:
    assert looks_like_tls(record(22, client_hello(None), 0x0301))
    assert not looks_like_tls(b"GET / HTTP/1.1\r\n")
    assert not looks_like_tls(record(22, server_hello(None)))


@pytest.mark.parametrize(
    ("is_orig", "data", "weird"),
    [
        (True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "SSL_invalid_record_type"),
        (True, b"\x16\x09\x01\x00\x05hello", "SSL_invalid_version"),
        (True, b"\x16\x03\x01\xff\xff", "SSL_record_too_long"),
        (True, record(22, b"\x01\x00\x00\x05\x03\x03\x00\x00\x00"), "SSL_malformed_client_hello"),
        (False, record(22, b"\x02\x00\x00\x03\x03\x03\x00"), "SSL_malformed_server_hello"),
        (True, record(22, (MAX_HANDSHAKE).to_bytes(4, "big")), "SSL_handshake_too_long"),
        (True, record(22, client_hello(ext(0, b"\x00\x09\x00\x00\x10ab"))), "SSL_malformed_extension"),
        (True, b"\x80\x03\x07\x00\x02", "SSLv2_unexpected_message"),
        (True, b"\x80\x04\x01\x00\x02\x00", "SSL_malformed_ssl2_message"),
    ],
)
def test_malformed_raises_decode_error(is_orig: bool, data: bytes, weird: str) -> None:
    d = TlsDecoder()
    with pytest.raises(DecodeError) as exc:
        d.feed(is_orig, data, 1.0)
    assert exc.value.name == weird


def _valid_session() -> list[tuple[bool, bytes]]:
    ch = client_hello(sni_ext(b"fuzz.example") + alpn_ext(b"h2") + sv_client(0x0304, 0x0303))
    return [
        (True, record(22, ch, 0x0301)),
        (False, record(22, server_hello(sv_server(0x0304) + alpn_ext(b"h2"))) + ccs() + appdata()),
        (True, ccs() + appdata()),
    ]


def _run(chunks: list[tuple[bool, bytes]]) -> list[dict[str, Any]]:
    d = TlsDecoder()
    out: list[dict[str, Any]] = []
    try:
        for is_orig, data in chunks:
            out += d.feed(is_orig, data, 1.0)
    except DecodeError:
        return out
    out += d.close(2.0)
    assert len(out) <= 1
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=8))
def test_fuzz_random_bytes_only_decode_error(chunks: list[tuple[bool, bytes]]) -> None:
    _run(chunks)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_session_only_decode_error(data: st.DataObject) -> None:
    chunks = _valid_session()
    i = data.draw(st.integers(0, len(chunks) - 1))
    is_orig, raw = chunks[i]
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    chunks[i] = (is_orig, bytes(buf[:cut]))
    chunks.insert(i + 1, (is_orig, bytes(buf[cut:])))
    _run(chunks)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=40))
def test_any_segmentation_gives_same_record(sizes: list[int]) -> None:
    session = _valid_session()
    chunks: list[tuple[bool, bytes]] = []
    for is_orig, raw in session:
        pos, k = 0, 0
        while pos < len(raw):
            n = sizes[k % len(sizes)]
            chunks.append((is_orig, raw[pos : pos + n]))
            pos, k = pos + n, k + 1
    [rec] = _run(chunks)
    assert (rec["server_name"], rec["version"], rec["next_protocol"], rec["established"]) == (
        "fuzz.example",
        "TLSv13",
        "h2",
        True,
    )


# ------------------------------------------------------------ corpus tests

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
STARTTLS_PORTS = {25, 110, 143, 587}
SURICATA_TLS_TESTS = ["community-id-ipv6", "bug-2646-01", "tls/tls13-draft28", "tls/tls-client-hello-frag-01"]

Key = tuple[str, int, str, int]

# The `event_type: tls` filter checks of the two test.yaml files that have no
# test.json (checks that `requires` JA3 are left out, as below).
SURICATA_YAML_CHECKS: dict[str, list[dict[str, Any]]] = {
    "tls/tls13-draft28": [
        {
            "filter": {
                "count": 2,
                "match": {"event_type": "tls", "tls.sni": "localhost", "tls.version": "TLS 1.3 draft-28"},
            }
        }
    ],
    "tls/tls-client-hello-frag-01": [
        {"filter": {"count": 1, "match": {"event_type": "tls", "tls.sni": "www.google.com"}}}
    ],
}


def _read_packets(path: Path) -> list[tuple[float, Any]]:
    """(ts, dpkt IP/IP6 packet) for every IP packet of a pcap/pcapng."""
    import dpkt

    with path.open("rb") as f:
        head = f.read(4)
        f.seek(0)
        reader: Any = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        dlt = reader.datalink()
        out: list[tuple[float, Any]] = []
        for ts, buf in reader:
            try:
                if dlt == 1:
                    ip = dpkt.ethernet.Ethernet(buf).data
                elif dlt == 0 or dlt == 108:
                    ip = dpkt.loopback.Loopback(buf).data
                elif dlt == 113:
                    ip = dpkt.sll.SLL(buf).data
                elif dlt in (101, 12, 14):
                    ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
                else:
                    continue
            except (dpkt.UnpackError, IndexError):
                continue
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                out.append((float(ts), ip))
        return out




class _Half:
    """One direction: in-order bytes from sequence numbers; stops at the first hole."""

    def __init__(self) -> None:
        self.next: int | None = None
        self.pending: dict[int, tuple[float, bytes]] = {}
        self.chunks: list[tuple[float, bytes]] = []
        self.stalled = False

    def add(self, ts: float, seq: int, syn: bool, payload: bytes) -> None:
        if syn:
            self.next = (seq + 1) & 0xFFFFFFFF
        if self.next is None and payload:
            self.next = seq
        if not payload or self.next is None:
            return
        self.pending.setdefault(seq, (ts, payload))
        progressed = True
        while progressed:
            progressed = False
            for s, (t, p) in list(self.pending.items()):
                off = (self.next - s) & 0xFFFFFFFF
                if off < 0x80000000:  # starts at or before next: keep the new tail, drop overlap
                    del self.pending[s]
                    if off < len(p):
                        self.chunks.append((t, p[off:]))
                        self.next = (self.next + len(p) - off) & 0xFFFFFFFF
                    progressed = True


def _connections(path: Path) -> dict[Key, tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]]:
    """Per TCP connection (keyed orig->resp), the in-order chunks of each direction."""
    import dpkt

    conns: dict[Key, tuple[_Half, _Half]] = {}
    for ts, ip in _read_packets(path):
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        a = (ip_from_packed(ip.src), tcp.sport)
        b = (ip_from_packed(ip.dst), tcp.dport)
        syn_only = tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK
        if (a + b) in conns:
            key, is_orig = a + b, True
        elif (b + a) in conns:
            key, is_orig = b + a, False
        else:
            # the SYN sender, else the lower port's peer (client ephemeral port is higher)
            is_orig = bool(syn_only) or (not tcp.flags & dpkt.tcp.TH_SYN and a[1] > b[1])
            key = a + b if is_orig else b + a
            conns[key] = (_Half(), _Half())
        half = conns[key][0 if is_orig else 1]
        half.add(ts, tcp.seq, bool(tcp.flags & dpkt.tcp.TH_SYN), bytes(tcp.data))
    return {k: (h[0].chunks, h[1].chunks) for k, h in conns.items()}


def _trim_to_tls(chunks: list[tuple[float, bytes]], hello_type: int) -> list[tuple[float, bytes]]:
    """STARTTLS: drop the plaintext protocol before the first TLS hello record."""
    stream = b"".join(c for _, c in chunks)
    pos = 0
    while True:
        pos = stream.find(b"\x16\x03", pos)
        if pos < 0 or (pos + 5 < len(stream) and stream[pos + 5] == hello_type):
            break
        pos += 1
    if pos < 0:
        return []
    out, off = [], 0
    for t, c in chunks:
        if off + len(c) > pos:
            out.append((t, c[max(0, pos - off) :]))
        off += len(c)
    return out


def decode_pcap(path: Path) -> dict[Key, dict[str, Any]]:
    """Run the decoder over every TCP connection of a pcap; one tls record per key."""
    result: dict[Key, dict[str, Any]] = {}
    for key, (orig, resp) in _connections(path).items():
        if key[3] in STARTTLS_PORTS:
            orig, resp = _trim_to_tls(orig, 1), _trim_to_tls(resp, 2)
        if not orig or not looks_like_tls(orig[0][1] + b"".join(c for _, c in orig[1:3])):
            continue
        merged = sorted([(t, 0, True, c) for t, c in orig] + [(t, 1, False, c) for t, c in resp])
        d = TlsDecoder(alpn_fallback_offered=False)  # the baselines are Zeek's reading
        recs: list[dict[str, Any]] = []
        try:
            for t, _, is_orig, c in merged:
                recs += d.feed(is_orig, c, t)
        except DecodeError as e:
            recs.append({"type": "weird", "name": e.name})
        recs += d.close(merged[-1][0])
        tls = [r for r in recs if r["type"] == "tls"]
        assert len(tls) <= 1
        if tls:
            result[key] = tls[0]
        else:
            result[key] = recs[0] if recs else {"type": "none"}
    return result




def _zeek_value(v: str) -> Any:
    return {"-": None, "(empty)": None, "T": True, "F": False}.get(v, v)


def _suricata_version(zeek_version: str | None) -> str | None:
    if zeek_version is None:
        return None
    if zeek_version.startswith("TLSv13-draft"):
        return "TLS 1.3 draft-" + zeek_version.removeprefix("TLSv13-draft")
    if zeek_version.startswith("TLSv1"):
        return f"TLS 1.{zeek_version[5]}"
    return zeek_version


def corpus_comparison() -> tuple[int, int, list[str]]:
    """(fields matched, fields compared, differences) over Zeek ssl.log and Suricata tls checks."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    matched = compared = 0
    diffs: list[str] = []
    for entry in manifest["zeek"]:
        for exp in entry["expected"]:
            if not exp["path"].endswith("/ssl.log"):
                continue
            got: dict[Key, dict[str, Any]] = {}
            for trace in entry["traces"]:
                got.update(decode_pcap(CORPUS / trace["path"]))
            for row in zeek_rows(CORPUS / exp["path"]):
                key = (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]))
                rec = got.get(key, {})
                for field in ("server_name", "version", "next_protocol", "established"):
                    compared += 1
                    want = _zeek_value(row[field])
                    if rec.get(field) == want:
                        matched += 1
                    else:
                        diffs.append(f"{exp['path']} {key} {field}: want {want!r} got {rec.get(field)!r}")
    for name in SURICATA_TLS_TESTS:
        test_dir = CORPUS / "suricata-verify" / name
        if (test_dir / "test.json").exists():
            checks = json.loads((test_dir / "test.json").read_text())["checks"]
        else:  # no YAML parser in the venv: the test.yaml tls checks, copied by hand
            checks = SURICATA_YAML_CHECKS[name]
        got = {}
        for pcap in sorted(test_dir.glob("*.pcap")):
            got.update(decode_pcap(pcap))
        for check in checks:
            flt = check.get("filter", {})
            match = flt.get("match", {})
            if match.get("event_type") != "tls" or "requires" in flt:
                continue
            n = 0
            for key, rec in got.items():
                if rec.get("type") != "tls":
                    continue
                if "src_port" in match and key[1] != match["src_port"]:
                    continue
                if "dest_port" in match and key[3] != match["dest_port"]:
                    continue
                ok = "tls.sni" not in match or rec["server_name"] == match["tls.sni"]
                ok = ok and (
                    "tls.version" not in match or _suricata_version(rec["version"]) == match["tls.version"]
                )
                n += ok
            compared += 1
            if n == flt["count"]:
                matched += 1
            else:
                diffs.append(
                    f"suricata-verify/{name} {match.get('tls.sni')}: want count {flt['count']} got {n}"
                )
    return matched, compared, diffs


@pytest.mark.skipif(not (CORPUS / "manifest.json").exists(), reason="corpus absent")
def test_corpus_matches_zeek_and_suricata() -> None:
    matched, compared, diffs = corpus_comparison()
    rate = matched / compared
    print(f"tls corpus: {matched}/{compared} fields match ({rate:.1%})")
    for d in diffs:
        print("  diff:", d)
    assert compared >= 40
    assert rate >= 0.95, diffs
