"""Service detection: the registered protocols' probes, and the in-order prefix they look at.

The probes live in the protocols' specs (agent.protocols.spec.Probe); `Classifier` tries them in
the registry's order. Through the pipeline, a request split into one-byte segments, sent out of
order or overlapped by a retransmission must be named, decoded and filtered exactly as the same
request in one segment.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from flow_paths import both_paths
from hypothesis import given
from hypothesis import strategies as st
from tcp_frames import Conn

from agent.filter.compiled import compile_rules
from agent.flows.classify import MAX_PROBE_SEGMENTS, PROBE_BYTES, Classifier, classifier
from agent.protocols import registry
from rulesets.model import FIELDS, Category, Phrase, Ruleset

Record = dict[str, Any]
T0 = 1_700_000_000.0
CLIENT, SERVER = "192.0.2.10", "198.51.100.80"
REQ = b"GET /forbidden-word/index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"

CLIENT_HELLO = b"\x16\x03\x01\x00\x50\x01\x00\x00\x4c\x03\x03" + b"\x00" * 70
SERVER_HELLO = b"\x16\x03\x03\x00\x30\x02\x00\x00\x2c\x03\x03" + b"\x00" * 40
DNS_QUERY = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00\x00\x01\x00\x01"


# -- the probes, one direction at a time --------------------------------------------------------------


@pytest.mark.parametrize("opening,is_orig,port,service", [
    (b"GET / HTTP/1.1\r\n", True, 8081, "http"),
    (b"PROPFIND /dav/ HTTP/1.1\r\n", True, 8081, "http"),
    (b"HTTP/1.1 200 OK\r\n", False, 8081, "http"),
    (CLIENT_HELLO, True, 4433, "tls"),
    (SERVER_HELLO, False, 4433, "tls"),
    (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + b"\x00" * 40, True, 4433, "tls"),  # SSLv2-compatible
    (b"SSH-2.0-OpenSSH_9.2\r\n", True, 2200, "ssh"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", False, 2200, "ssh"),
    (b"220 files.example ready\r\n", False, 21, "ftp"),
    (b"220 files.example FTP server ready\r\n", False, 2600, "ftp"),
    (b"220 files.example FTP server ready\r\n", False, 25, "ftp"),  # FTP before SMTP: it names FTP
    (b"USER anonymous\r\n", True, 21, "ftp"),
    (b"220 mx.example ESMTP\r\n", False, 2526, "smtp"),
    (b"220 mx.example ready\r\n", False, 587, "smtp"),
    (b"EHLO client.example\r\n", True, 2526, "smtp"),
    (b"+OK POP3 ready\r\n", False, 1100, "pop3"),
    (b"* OK IMAP4rev1 ready\r\n", False, 1430, "imap"),
    (b"* PREAUTH ready\r\n", False, 1430, "imap"),
    (struct.pack("!H", len(DNS_QUERY)) + DNS_QUERY, True, 53, "dns"),
])
def test_each_protocols_probe_names_its_opening(opening: bytes, is_orig: bool, port: int,
                                                 service: str) -> None:
    assert classifier().stream(opening, is_orig, port) == service


@pytest.mark.parametrize("opening,is_orig,port", [
    (b"USER anonymous\r\n", True, 2600),  # USER is POP3's too: only on FTP's ports alone
    (b"220 hello\r\n", False, 2600),  # a bare greeting on no mail or FTP port
    (b"G", True, 80), (b"GET", True, 80),  # not yet a method and its space
    (struct.pack("!H", len(DNS_QUERY)) + DNS_QUERY, True, 5300),  # DNS over TCP only on its ports
    (struct.pack("!H", len(DNS_QUERY) + 10) + DNS_QUERY, True, 53),  # not a whole message yet
    (b"\x16\x03\x01\x00", True, 443),  # a handshake header without its type
    (b"\x00\x01binary", True, 80), (b"", False, 80),
])
def test_what_the_probes_do_not_name(opening: bytes, is_orig: bool, port: int) -> None:
    assert classifier().stream(opening, is_orig, port) is None


def test_a_greeting_answered_names_the_protocol() -> None:
    c = classifier()
    assert c.pair(b"USER anonymous\r\n", b"220 hello\r\n") == "ftp"
    assert c.pair(b"EHLO client\r\n", b"220 hello\r\n") == "smtp"
    assert c.pair(b"HELLO\r\n", b"220 hello\r\n") is None
    assert c.pair(b"USER anonymous\r\n", b"+OK hello\r\n") is None


@pytest.mark.parametrize("datagram,oport,rport,service", [
    (DNS_QUERY, 40000, 53, "dns"),
    (DNS_QUERY, 5353, 5353, "dns"),
    (b"\x01" + b"\x00" * 235 + b"\x63\x82\x53\x63" + b"\x35\x01\x01\xff", 68, 67, "dhcp"),
    (b"\x01\x07\x00\x14" + b"\x00" * 16, 40000, 1812, "radius"),
    (bytes([0x23]) + b"\x00" * 47, 40000, 123, "ntp"),
    (b"\x30\x26\x02\x01\x01", 40000, 161, "snmp"),
    (b"INVITE sip:bob@example.org SIP/2.0\r\n", 5060, 5060, "sip"),
    (b"<13>Dec  7 16:00:00 host app: hi", 40000, 514, "syslog"),
    (b"\xc3\x00\x00\x00\x01" + b"\x00" * 1195, 40000, 443, "quic"),
    (DNS_QUERY, 40000, 5300, None),  # a DNS header on no DNS port
    (b"\x01\x07\x00\x15" + b"\x00" * 16, 40000, 1812, None),  # RADIUS length that is not the datagram's
    (b"\x01" + b"\x00" * 250, 68, 67, None),  # BOOTP without the DHCP cookie
])
def test_datagram_probes(datagram: bytes, oport: int, rport: int, service: str | None) -> None:
    assert classifier().datagram(datagram, oport, rport) == service


def test_every_decoded_service_has_a_probe_in_its_spec() -> None:
    for spec in registry.specs():
        if "link" in spec.transports:
            continue
        assert spec.probe is not None, spec.name
        c = Classifier([spec])
        if "tcp" in spec.transports:
            assert [e.name for e in c.tcp] == [spec.name]
        if spec.probe.datagram is not None:
            assert [name for name, _, _ in c.udp] == [spec.name] and spec.ports
    # the registry's order is the probes' order
    assert [e.name for e in classifier().tcp] == [s for s in registry.MODULES
                                                  if s in {e.name for e in classifier().tcp}]


def every_probe_in_order(p: bytes, is_orig: bool, port: int) -> str | None:
    """What `Classifier.stream` must answer, without its first-byte tables: each protocol's whole
    probe, in the registry's order."""
    for e in classifier().tcp:
        if p.startswith(e.client if is_orig else e.server) and (
                not is_orig or not e.client_on_port or port in e.ports):
            return e.name
        if e.stream is not None and (not e.stream_on_port or port in e.ports) and e.stream(p, is_orig, port):
            return e.name
        if not is_orig and e.greeting and p.startswith(e.greeting) and (
                port in e.ports or any(w in p[:200].upper() for w in e.names)):
            return e.name
    return None


LITERALS = sorted({x for e in classifier().tcp for x in (*e.client, *e.server, e.greeting) if x}
                  | {CLIENT_HELLO[:11], SERVER_HELLO[:11], struct.pack("!H", len(DNS_QUERY)) + DNS_QUERY})


@given(st.one_of(st.binary(max_size=40), st.tuples(st.sampled_from(LITERALS), st.binary(max_size=30)).map(
    lambda t: t[0] + t[1])), st.booleans(), st.sampled_from([21, 25, 53, 80, 443, 2600, 8081]))
def test_the_first_byte_tables_answer_as_every_probe_would(p: bytes, is_orig: bool, port: int) -> None:
    assert classifier().stream(p, is_orig, port) == every_probe_in_order(p, is_orig, port)


# -- through the pipeline: the in-order prefix ----------------------------------------------------------


def run(frames: list[bytes], **kw: Any) -> list[Record]:
    return both_paths(frames, T0, **kw)


def comparable(recs: list[Record]) -> list[Record]:
    """The records without what depends on packet counts and times."""
    drop = {"ts", "uid", "duration", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes", "history",
            "src_port"}
    return [{k: v for k, v in r.items() if k not in drop} for r in recs]


def rules() -> Any:
    words = [Phrase("forbidden-word", "t.txt", 1)]
    return compile_rules(Ruleset(name="t", version=1, categories=[
        Category(id="c", action="alert", severity=3, keywords=words, fields=frozenset(FIELDS))]))


def one_segment(port: int, cport: int) -> list[bytes]:
    c = Conn(CLIENT, cport, SERVER, port)
    return c.handshake() + [c.c(REQ), c.s(), c.s(RESP), c.c()] + c.close()


def one_byte_segments(port: int, cport: int) -> list[bytes]:
    c = Conn(CLIENT, cport, SERVER, port)
    frames = c.handshake()
    for i in range(len(REQ)):
        frames += [c.c(REQ[i:i + 1]), c.s()]
    return frames + [c.s(RESP), c.c()] + c.close()


def reordered(port: int, cport: int) -> list[bytes]:
    """The request's pieces arrive last first; the first one is retransmitted with other bytes
    under it (the first copy counts, for the probe as for the decoder)."""
    c = Conn(CLIENT, cport, SERVER, port)
    frames = c.handshake()
    late = [c.c(REQ[i:i + 3], off=i) for i in range(0, 12, 3)]
    frames += [c.c(REQ[12:], off=12)] + late[::-1] + [c.c(b"XXXXXX", off=0), c.s(), c.s(RESP), c.c()]
    return frames + c.close()


@pytest.mark.parametrize("shape", [one_byte_segments, reordered])
@pytest.mark.parametrize("port", [80, 8081])
def test_a_split_or_reordered_request_is_named_decoded_and_filtered_as_one_segment(shape: Any,
                                                                                   port: int) -> None:
    whole = run(one_segment(port, 40001), rules=rules())
    split = run(shape(port, 40001), rules=rules())
    assert sorted(r["type"] for r in whole) == ["alert", "http", "session"]
    session = next(r for r in split if r["type"] == "session")
    assert session["service"] == "http"
    assert comparable([r for r in split if r["type"] != "session"]) == \
        comparable([r for r in whole if r["type"] != "session"])


def test_a_greeting_split_across_segments_and_answered_off_port() -> None:
    c = Conn(CLIENT, 40002, SERVER, 2600)
    frames = c.handshake() + [c.s(b"2"), c.s(b"20 he"), c.s(b"llo\r\n"), c.c()]
    frames += [c.c(b"US"), c.c(b"ER anonymous\r\n"), c.s(b"331 password please\r\n"), c.c()]
    frames += [c.c(b"QUIT\r\n"), c.s(b"221 bye\r\n"), c.c()] + c.close()
    recs = run(frames)
    assert next(r for r in recs if r["type"] == "session")["service"] == "ftp"
    assert [(r["command"], r["arg"]) for r in recs if r["type"] == "ftp"] == [("USER", "anonymous"),
                                                                                ("QUIT", None)]


def test_probing_gives_up_and_the_flow_is_still_counted() -> None:
    """Unknown bytes, one at a time from the client and never answered: probing stops after
    MAX_PROBE_SEGMENTS segments (or once the prefix is full) and nothing is decoded."""
    c = Conn(CLIENT, 40003, SERVER, 80)
    n = MAX_PROBE_SEGMENTS + PROBE_BYTES
    frames = c.handshake() + [c.c(bytes([0x01 + i % 7])) for i in range(n)] + c.close()
    recs = run(frames)
    assert [r["type"] for r in recs] == ["session"]
    assert recs[0]["service"] is None and recs[0]["orig_bytes"] == n


def test_an_answered_opening_is_complete() -> None:
    """A client opening the server has answered is over: later bytes do not rename the flow."""
    c = Conn(CLIENT, 40004, SERVER, 8081)
    frames = c.handshake() + [c.c(b"HELLO\r\n"), c.s(b"WHAT\r\n"), c.c(REQ), c.s(RESP), c.c()] + c.close()
    recs = run(frames)
    assert [r["type"] for r in recs] == ["session"] and recs[0]["service"] is None
