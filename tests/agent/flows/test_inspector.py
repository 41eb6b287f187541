"""The inspector: TCP reassembly, service detection and decoders behind the flow table.

Frames are built with struct (`tcp_frames`) and run through the real
`Pipeline(..., decoders=True)`: as one batch and one packet per `feed`, with
the fast path on and off; all four runs must give identical records and
inspector counters (`run`). Every record must pass `wire.validate`.

Covered (DESIGN.md data path steps 3-4): an HTTP transaction with its flow id
fields (IPv4, 802.1Q, IPv6); out-of-order, retransmitted and overlapping
segments (first copy wins); capture loss acknowledged by the peer (a gap the
decoder is told about); mid-stream pickup; one-sided captures; detection by
content on non-standard ports and no record without a content match; the
inspection depth; SMTP STARTTLS handing the stream to TLS; FTP data channels
announced by PASV and PORT; DecodeError -> `weird` and the end of decoding;
DNS over UDP and TCP.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from flow_paths import four_ways
from tcp_frames import Conn, client_hello, server_hello, udp_frame

from agent.protocols.http import BODY_KEEP, HttpDecoder
from agent.protocols.registry import decoder_kind

Record = dict[str, Any]
T0 = 1_700_000_000.0
STEP = 0.01

REQ = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello"
CLIENT, SERVER = "192.0.2.10", "198.51.100.80"


# -- running and reading ------------------------------------------------------------------------------


def ts_of(i: int) -> float:
    return T0 + i * STEP


def run(frames: list[bytes], **kw: Any) -> tuple[list[Record], dict[str, int]]:
    """All records and the inspector's counters; the four ways of feeding must agree exactly."""
    return four_ways([(ts_of(i), 1, f) for i, f in enumerate(frames)], **kw)


def of(recs: list[Record], rtype: str) -> list[Record]:
    return [r for r in recs if r["type"] == rtype]


def one(recs: list[Record], rtype: str) -> Record:
    found = of(recs, rtype)
    assert len(found) == 1, found
    return found[0]


def session_of(recs: list[Record], dst_port: int) -> Record:
    found = [r for r in of(recs, "session") if r["dst_port"] == dst_port]
    assert len(found) == 1, found
    return found[0]


def ids(c: Conn, uid: str, proto: str = "tcp") -> Record:
    return {"uid": uid, "proto": proto, "src_ip": c.client, "src_port": c.cport, "dst_ip": c.server,
            "dst_port": c.sport, "vlan": c.vlan, "inner_vlan": None}


def http(ts: float, **fields: Any) -> Record:
    rec: Record = {"type": "http", "ts": ts, "trans_depth": 1, "method": "GET", "host": "example.com",
                   "uri": "/index.html", "referrer": None, "version": "1.1", "user_agent": "t/1",
                   "status_code": 200, "status_msg": "OK", "request_body_len": 0, "response_body_len": 5,
                   "req_content_type": None, "resp_content_type": "text/html", "username": None,
                   "account": None}
    rec.update(fields)
    return rec


def talk(c: Conn, lines: list[tuple[bool, bytes]]) -> list[bytes]:
    """Each payload from the client (True) or server, acknowledged by the other side."""
    frames: list[bytes] = []
    for from_client, data in lines:
        frames += [c.c(data), c.s()] if from_client else [c.s(data), c.c()]
    return frames


def without_ts(r: Record) -> Record:
    return {k: v for k, v in r.items() if k != "ts"}


# -- HTTP: the flow id fields, reordering, retransmission, loss -------------------------------------


@pytest.mark.parametrize("client,server,vlan", [(CLIENT, SERVER, None), (CLIENT, SERVER, 42),
                                                ("2001:db8::10", "2001:db8::80", None)])
def test_http_transaction_carries_the_sessions_flow_ids(client: str, server: str, vlan: int | None) -> None:
    c = Conn(client, 40001, server, 80, vlan=vlan)
    recs, counters = run(c.handshake() + c.exchange(REQ, RESP) + c.close())
    sess = one(recs, "session")
    assert sess["service"] == "http" and sess["missed_bytes"] == 0
    assert one(recs, "http") == {**http(ts_of(3)), **ids(c, sess["uid"])}
    assert counters["inspect_decoded_flows"] == 1 and counters["inspect_records"] == 1


def test_out_of_order_segments_give_the_in_order_record() -> None:
    cuts = [(0, 20), (20, 45), (45, len(REQ))]

    def http_records(order: list[int]) -> list[Record]:
        c = Conn(CLIENT, 40001, SERVER, 80)
        fr = c.handshake()
        segs = [c.c(REQ[a:b], off=a) for a, b in cuts]
        fr += [segs[i] for i in order] + [c.s(), c.s(RESP), c.c()] + c.close()
        recs, _ = run(fr)
        sess = one(recs, "session")
        assert sess["missed_bytes"] == 0
        # the request starts being decoded when its first bytes arrive: the 4th frame in order, the 5th
        # when sent as 3, 1, 2
        assert of(recs, "http") == [{**http(ts_of(3 + order.index(0))), **ids(c, sess["uid"])}]
        return of(recs, "http")

    shuffled, in_order = http_records([2, 0, 1]), http_records([0, 1, 2])
    assert [without_ts(r) for r in shuffled] == [without_ts(r) for r in in_order]


def test_retransmissions_and_overlaps_keep_the_first_copy() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    n = len(REQ)
    fr = c.handshake() + [
        c.c(REQ[20:40], off=20),  # out of order: buffered
        c.c(REQ[10:20] + b"X" * 10, off=10),  # overlaps the buffered block with other bytes: ignored
        c.c(REQ[0:15], off=0),  # fills the hole: 0..40 delivered, with the first copies
        c.c(b"Y" * 30 + REQ[40:], off=10),  # 10..40 again (different bytes, already delivered), then the rest
        c.c(REQ, off=0),  # the whole request retransmitted
        c.s(),
    ]
    response = c.s(RESP)
    fr += [response, response, c.c(), response] + c.close()  # the response three times
    recs, counters = run(fr)
    assert of(recs, "http") == [{**http(ts_of(5)), **ids(c, one(recs, "session")["uid"])}]
    assert counters["inspect_retransmitted_bytes"] == 30 + n + 2 * len(RESP)
    assert one(recs, "session")["missed_bytes"] == 0


def test_acknowledged_loss_is_a_gap_the_decoder_is_told_about() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    body = bytes(range(256)) * 12  # 3072 bytes
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 3072\r\n\r\n"
    fr = c.handshake() + [c.c(REQ), c.s(), c.s(head + body[:1000])]
    c.s(body[1000:2000])  # never captured; the client got it and acknowledges it
    fr += [c.s(body[2000:]), c.c()]
    req2 = b"GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n"
    resp2 = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    fr += c.exchange(req2, resp2)  # no FIN: the connection is flushed at the end of the capture
    recs, counters = run(fr)
    sess = one(recs, "session")
    assert sess["missed_bytes"] == 1000
    assert counters["inspect_gap_bytes"] == 1000
    # the body's framing survives the hole: 2072 body bytes were seen (Zeek counts no gap bytes in
    # response_body_len either) and the next transaction on the connection is decoded
    assert of(recs, "http") == [
        {**http(ts_of(3), response_body_len=2072, resp_content_type="application/octet-stream"),
         **ids(c, sess["uid"])},
        {**http(ts_of(8), trans_depth=2, uri="/next", user_agent=None, status_code=404,
                status_msg="Not Found", response_body_len=0, resp_content_type=None), **ids(c, sess["uid"])},
    ]


def test_a_cleanly_closed_connection_has_no_gap() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    recs, counters = run(c.handshake() + c.exchange(REQ, RESP) + c.close())
    assert one(recs, "session")["missed_bytes"] == 0
    assert counters["inspect_gap_bytes"] == 0


def test_a_command_sent_with_the_fin_still_gets_its_reply() -> None:
    c, fr = ftp_control([(b"USER u\r\n", b"230 Logged in\r\n")])
    fr += [c.c(b"QUIT\r\n", flags="FPA"), c.s(), c.s(b"221 Goodbye\r\n", flags="FPA"), c.c()]
    recs, _ = run(fr)
    assert [(r["command"], r["reply_code"]) for r in of(recs, "ftp")] == [("USER", 230), ("QUIT", 221)]


def test_a_request_carried_by_the_syn() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    fr = [c.seg(True, "S", REQ), c.s(flags="SA"), c.c(), c.s(RESP), c.c()] + c.close()
    recs, _ = run(fr)
    assert of(recs, "http") == [{**http(ts_of(0)), **ids(c, one(recs, "session")["uid"])}]


def test_mid_stream_pickup_at_a_request_boundary() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    c.sent[True], c.sent[False] = 730, 18250  # earlier requests and responses, before the capture began
    req = b"GET /second HTTP/1.1\r\nHost: example.com\r\n\r\n"
    fr = [c.s(), *c.exchange(req, RESP), *c.close()]  # a server ACK first: roles from the ports
    recs, _ = run(fr)
    sess = one(recs, "session")
    assert sess["src_ip"] == CLIENT and sess["service"] == "http" and not sess["history"].startswith("S")
    assert of(recs, "http") == [{**http(ts_of(1), uri="/second", user_agent=None), **ids(c, sess["uid"])}]


def test_only_the_client_side_captured() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    fr = [c.seg(True, "S"), c.c(), c.c(REQ), c.c(flags="FA")]
    recs, _ = run(fr)
    sess = one(recs, "session")
    assert sess["resp_pkts"] == 0 and sess["service"] == "http"
    assert of(recs, "http") == [{**http(ts_of(2), version=None, status_code=None, status_msg=None,
                                         response_body_len=0, resp_content_type=None), **ids(c, sess["uid"])}]


# -- detection by content -------------------------------------------------------------------------------


def test_http_on_a_non_standard_port() -> None:
    c = Conn(CLIENT, 40001, SERVER, 8000)
    recs, _ = run(c.handshake() + c.exchange(REQ, RESP) + c.close())
    sess = one(recs, "session")
    assert sess["service"] == "http"
    assert of(recs, "http") == [{**http(ts_of(3)), **ids(c, sess["uid"])}]


def test_smtp_on_port_587() -> None:
    c = Conn("10.0.0.1", 40002, "10.0.0.25", 587)
    msg = b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\nHi Bob.\r\n.\r\n"
    fr = c.handshake() + talk(c, [
        (False, b"220 mail.example.org ESMTP ready\r\n"), (True, b"EHLO client.example\r\n"),
        (False, b"250-mail.example.org\r\n250 PIPELINING\r\n"), (True, b"MAIL FROM:<alice@example.com>\r\n"),
        (False, b"250 OK\r\n"), (True, b"RCPT TO:<bob@example.org>\r\n"), (False, b"250 OK\r\n"),
        (True, b"DATA\r\n"), (False, b"354 go ahead\r\n"), (True, msg), (False, b"250 queued\r\n"),
        (True, b"QUIT\r\n"), (False, b"221 bye\r\n"),
    ]) + c.close()
    recs, _ = run(fr)
    sess = one(recs, "session")
    assert sess["service"] == "smtp"
    assert one(recs, "smtp") == {
        "type": "smtp", "ts": ts_of(9), **ids(c, sess["uid"]), "trans_depth": 1, "helo": "client.example",
        "mailfrom": "alice@example.com", "rcptto": ["bob@example.org"], "from": "Alice <alice@example.com>",
        "to": ["bob@example.org"], "cc": [], "subject": "hello", "user": None, "tls": False}


def test_a_standard_port_without_matching_content_gets_no_decoder() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    junk = [(i % 2 == 0, bytes([0x17, i]) + b"\x00\xff binary" * 4) for i in range(10)]
    recs, counters = run(c.handshake() + talk(c, junk) + c.close())
    assert [r["type"] for r in recs] == ["session"]
    assert recs[0]["service"] is None
    assert counters["inspect_undecoded_flows"] == 1 and counters["inspect_decoded_flows"] == 0
    assert counters["inspect_records"] == 0


# -- the inspection depth ---------------------------------------------------------------------------------


def test_bytes_beyond_the_depth_are_not_decoded_and_are_counted() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    req1 = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"  # 28 bytes
    req2 = b"GET /second-request-past-the-depth-limit HTTP/1.1\r\nHost: h\r\n\r\n"
    resp1 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"  # 40 bytes
    resp2 = b"HTTP/1.1 404 Resource Not Found Here\r\nContent-Length: 0\r\n\r\n"
    depth = 64  # neither second start line is complete within it
    fr = c.handshake() + [c.c(req1), c.c(req2), c.s(), c.s(resp1), c.s(resp2), c.c()] + c.close()
    recs, counters = run(fr, depth=depth)
    sess = one(recs, "session")
    assert of(recs, "http") == [{**http(ts_of(3), uri="/a", host="h", user_agent=None, response_body_len=2,
                                         resp_content_type=None), **ids(c, sess["uid"])}]
    beyond = (len(req1) + len(req2) - depth) + (len(resp1) + len(resp2) - depth)
    assert counters["inspect_beyond_depth_bytes"] == beyond
    assert counters["inspect_depth_reached"] == 1
    assert counters["inspect_records"] == 1
    # with the default depth the same frames give both transactions
    full, _ = run(fr)
    assert [r["uri"] for r in of(full, "http")] == ["/a", "/second-request-past-the-depth-limit"]


def test_bodies_are_kept_only_for_a_content_filter_and_records_do_not_change() -> None:
    """Without a content filter (the default) HTTP bodies are only counted, so the fast path
    skips them from the first byte; with one, a prefix is kept first, on the filter's own budget
    (it does not use up the connection's inspection depth). Same records either way."""
    c = Conn(CLIENT, 40002, SERVER, 80)
    body = bytes(range(256)) * 100  # 25,600 bytes: past the kept prefix
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    resp = head + body
    segs = [resp[i:i + 1400] for i in range(0, len(resp), 1400)]
    fr = c.handshake() + [c.c(REQ)] + [c.s(s) for s in segs] + [c.c()] + c.close()
    counted, counted_ctr = run(fr)
    kept, kept_ctr = run(fr, keep_bodies=True)
    assert counted == kept
    [rec] = of(counted, "http")
    assert rec["response_body_len"] == len(body)
    # skipped: the whole body less what the header segment carried, against the body past
    # the kept prefix
    assert counted_ctr["inspect_skipped_bytes"] == len(body) - (1400 - len(head))
    assert kept_ctr["inspect_skipped_bytes"] < counted_ctr["inspect_skipped_bytes"] - BODY_KEEP + 1400


def test_the_registry_builds_body_counting_decoders_without_a_filter() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    for keep, expect in ((3, b"hel"), (0, b""), (-1, b"hello")):
        kind = decoder_kind("http", "tcp", keep)
        assert kind is not None
        factory = kind.factory
        assert factory is not None
        dec = factory()
        assert isinstance(dec, HttpDecoder)
        dec.feed(True, REQ, 1.0)
        [rec] = dec.feed(False, resp, 1.1)
        assert rec["response_body_len"] == 5
        assert dec.last_response_body == expect


# -- STARTTLS -----------------------------------------------------------------------------------------------


def test_smtp_starttls_hands_the_stream_to_tls() -> None:
    c = Conn("10.0.0.1", 40003, "10.0.0.25", 25)
    fr = c.handshake() + talk(c, [
        (False, b"220 mx.example.org ESMTP\r\n"), (True, b"EHLO client.example\r\n"),
        (False, b"250-mx.example.org\r\n250 STARTTLS\r\n"), (True, b"STARTTLS\r\n"),
        (False, b"220 2.0.0 Ready to start TLS\r\n"), (True, client_hello("mail.example.org")),
        (False, server_hello()),
    ]) + c.close()
    recs, counters = run(fr)
    sess = one(recs, "session")
    assert sess["service"] == "smtp"
    assert one(recs, "smtp") == {
        "type": "smtp", "ts": ts_of(11), **ids(c, sess["uid"]), "trans_depth": 1, "helo": "client.example",
        "mailfrom": None, "rcptto": [], "from": None, "to": [], "cc": [], "subject": None, "user": None,
        "tls": True}
    assert one(recs, "tls") == {"type": "tls", "ts": ts_of(13), **ids(c, sess["uid"]),
                                "server_name": "mail.example.org", "version": "TLSv12", "next_protocol": None,
                                "established": False}
    assert counters["inspect_starttls"] == 1


def test_starttls_seen_from_the_client_only_still_gives_the_sni() -> None:
    c = Conn("10.0.0.1", 40003, "10.0.0.25", 25)
    fr = [c.seg(True, "S"), c.c(), c.c(b"EHLO client.example\r\n"), c.c(b"STARTTLS\r\n"),
          c.c(client_hello("mail.example.org")), c.c(flags="FA")]
    recs, counters = run(fr)
    assert one(recs, "smtp")["tls"] is True and counters["inspect_starttls"] == 1
    assert one(recs, "tls") == {"type": "tls", "ts": ts_of(4), **ids(c, one(recs, "session")["uid"]),
                                "server_name": "mail.example.org", "version": None, "next_protocol": None,
                                "established": False}


# -- FTP data channels ---------------------------------------------------------------------------------------


def ftp_control(commands: list[tuple[bytes, bytes]], cport: int = 40100) -> tuple[Conn, list[bytes]]:
    c = Conn("10.0.0.1", cport, "10.0.0.2", 21)
    lines: list[tuple[bool, bytes]] = [(False, b"220 FTP server ready\r\n")]
    for cmd, reply in commands:
        lines += [(True, cmd), (False, reply)]
    return c, c.handshake() + talk(c, lines)


def data_conn(initiator: str, iport: int, target: str, tport: int, payload: bytes) -> list[bytes]:
    d = Conn(initiator, iport, target, tport)
    return d.handshake() + [d.c(payload), d.s()] + d.close()


def test_ftp_pasv_announces_the_data_connection() -> None:
    c, fr = ftp_control([(b"USER anonymous\r\n", b"331 Password required\r\n"),
                         (b"PASS secret\r\n", b"230 Logged in\r\n"),
                         (b"PASV\r\n", b"227 Entering Passive Mode (10,0,0,2,195,80).\r\n")])
    looks_like_http = b"GET / HTTP/1.0\r\n\r\n"  # a file that starts like HTTP: content is not probed
    fr += data_conn("10.0.0.1", 40101, "10.0.0.2", 50000, looks_like_http)
    fr += data_conn("10.0.0.1", 40102, "10.0.0.2", 50001, looks_like_http)  # never announced
    recs, counters = run(fr)
    assert session_of(recs, 21)["service"] == "ftp"
    assert session_of(recs, 50000)["service"] == "ftp-data"
    assert session_of(recs, 50001)["service"] == "http"
    assert [r["dst_port"] for r in of(recs, "http")] == [50001]
    ftp = of(recs, "ftp")
    assert [(r["command"], r["arg"], r["reply_code"], r["user"]) for r in ftp] == [
        ("USER", "anonymous", 331, "anonymous"), ("PASS", "<hidden>", 230, "anonymous"),
        ("PASV", None, 227, "anonymous")]
    assert all(r["uid"] == session_of(recs, 21)["uid"] for r in ftp)
    assert counters["inspect_ftp_data_expected"] == 1 and counters["inspect_ftp_data_matched"] == 1


def test_ftp_accepted_port_announces_the_server_initiated_connection() -> None:
    _, fr = ftp_control([(b"USER u\r\n", b"230 Logged in\r\n"),
                         (b"PORT 10,0,0,1,156,64\r\n", b"200 PORT command successful\r\n"),
                         (b"PORT 10,0,0,1,156,65\r\n", b"500 Illegal PORT command\r\n")])
    fr += data_conn("10.0.0.2", 20, "10.0.0.1", 40000, b"file contents\n")  # 156 * 256 + 64
    fr += data_conn("10.0.0.2", 20, "10.0.0.1", 40001, b"file contents\n")  # the refused PORT
    recs, counters = run(fr)
    assert session_of(recs, 40000)["service"] == "ftp-data"
    assert session_of(recs, 40000)["src_ip"] == "10.0.0.2"
    assert session_of(recs, 40001)["service"] is None
    assert [(r["command"], r["reply_code"]) for r in of(recs, "ftp")] == [("USER", 230), ("PORT", 200),
                                                                        ("PORT", 500)]
    assert counters["inspect_ftp_data_expected"] == 1 and counters["inspect_ftp_data_matched"] == 1


# -- DecodeError -> weird, and decoding of the flow ends -----------------------------------------------


def test_http_decode_error_is_a_weird_and_ends_decoding() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    bad = b"GET /x HTTP/1.1\r\nHost example.com\r\n\r\n"  # detected as HTTP by its method; no colon
    fr = c.handshake() + c.exchange(REQ, RESP) + c.exchange(bad, RESP)
    fr += c.exchange(b"GET /after HTTP/1.1\r\nHost: example.com\r\n\r\n", RESP) + c.close()
    recs, counters = run(fr)
    sess = one(recs, "session")
    # the request before the error is logged, then the one in progress (flushed by the last `close`)
    assert of(recs, "http") == [
        {**http(ts_of(3)), **ids(c, sess["uid"])},
        {**http(ts_of(7), trans_depth=2, uri="/x", host=None, user_agent=None, version=None, status_code=None,
                status_msg=None, response_body_len=0, resp_content_type=None), **ids(c, sess["uid"])}]
    assert one(recs, "weird") == {"type": "weird", "ts": ts_of(7), **ids(c, sess["uid"]),
                                  "name": "bad_HTTP_header", "detail": "Host example.com"}
    assert counters["inspect_decode_errors"] == 1
    assert sess["service"] == "http" and sess["conn_state"] == "SF"


def test_a_flow_ended_by_a_decode_error_is_counted_once() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    bad = b"GET /x HTTP/1.1\r\nHost example.com\r\n\r\n"
    fr = c.handshake() + c.exchange(REQ, RESP) + [c.c(REQ, off=0)] + c.exchange(bad, RESP)
    _, counters = run(fr)
    assert counters["inspect_decode_errors"] == 1 and counters["inspect_decoded_flows"] == 1
    assert counters["inspect_undecoded_flows"] == 0
    assert counters["inspect_retransmitted_bytes"] == len(REQ)


def test_a_decoders_own_weird_gets_the_flow_ids() -> None:
    c = Conn(CLIENT, 40001, SERVER, 80)
    fr = c.handshake() + c.exchange(REQ, RESP) + c.exchange(b"GET / HTTP/1.1 and more\r\n\r\n", RESP)
    recs, _ = run(fr + c.close())
    weird = one(recs, "weird")
    assert weird["ts"] == ts_of(7) and weird["name"].startswith("bad_HTTP_request")
    assert {k: weird[k] for k in ids(c, "")} == ids(c, one(recs, "session")["uid"])
    assert of(recs, "http")[0] == {**http(ts_of(3)), **ids(c, weird["uid"])}


def test_ftp_line_too_long_is_a_weird_and_ends_decoding() -> None:
    c = Conn("10.0.0.1", 40100, "10.0.0.2", 21)
    line = b"USER " + b"a" * 9000 + b"\r\n"
    fr = c.handshake() + talk(c, [(False, b"220 FTP server ready\r\n")])
    fr += [c.c(line[i:i + 1400]) for i in range(0, len(line), 1400)] + [c.s()]
    fr += talk(c, [(False, b"500 Line too long\r\n"), (True, b"PASV\r\n"),
                   (False, b"227 Entering Passive Mode (10,0,0,2,195,81).\r\n")])
    fr += data_conn("10.0.0.1", 40101, "10.0.0.2", 50001, b"data\n")  # not expected: decoding had stopped
    recs, counters = run(fr)
    sess = session_of(recs, 21)
    assert one(recs, "weird") == {"type": "weird", "ts": ts_of(10), **ids(c, sess["uid"]),
                                  "name": "FTP_line_too_long", "detail": "8400 bytes without a line end"}
    assert of(recs, "ftp") == []
    assert session_of(recs, 50001)["service"] is None
    assert counters["inspect_decode_errors"] == 1 and counters["inspect_ftp_data_expected"] == 0


# -- DNS over UDP and TCP ---------------------------------------------------------------------------------


def _question(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return labels + b"\x00" + struct.pack("!HH", 1, 1)


def dns_query(tid: int, name: str) -> bytes:
    return struct.pack("!6H", tid, 0x0100, 1, 0, 0, 0) + _question(name)


def dns_reply(tid: int, name: str, addr: str) -> bytes:
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + ipaddress.ip_address(addr).packed
    return struct.pack("!6H", tid, 0x8180, 1, 1, 0, 0) + _question(name) + answer


def dns_record(ts: float, tid: int) -> Record:
    return {"type": "dns", "ts": ts, "trans_id": tid, "query": "example.com", "qclass": 1, "qtype": 1,
            "qtype_name": "A", "rcode": 0, "rcode_name": "NOERROR", "AA": False, "TC": False, "RD": True,
            "RA": True, "answers": ["93.184.216.34"], "ttls": [300.0], "rejected": False}


def test_dns_over_udp() -> None:
    q, r = dns_query(0x1234, "example.com"), dns_reply(0x1234, "example.com", "93.184.216.34")
    fr = [udp_frame("10.0.0.1", 33333, "10.0.0.53", 53, q), udp_frame("10.0.0.53", 53, "10.0.0.1", 33333, r)]
    recs, _ = run(fr)
    sess = one(recs, "session")
    assert sess["service"] == "dns"
    assert one(recs, "dns") == {**dns_record(ts_of(0), 0x1234), "uid": sess["uid"], "proto": "udp",
                                "src_ip": "10.0.0.1", "src_port": 33333, "dst_ip": "10.0.0.53",
                                "dst_port": 53, "vlan": None, "inner_vlan": None}


def test_dns_over_tcp_is_length_prefixed() -> None:
    c = Conn("10.0.0.1", 40500, "10.0.0.53", 53)
    q, r = dns_query(0x4321, "example.com"), dns_reply(0x4321, "example.com", "93.184.216.34")
    framed_r = struct.pack("!H", len(r)) + r
    fr = c.handshake() + [c.c(struct.pack("!H", len(q)) + q), c.s(), c.s(framed_r[:5]), c.s(framed_r[5:]),
                          c.c()] + c.close()  # the reply in two segments
    recs, _ = run(fr)
    sess = one(recs, "session")
    assert sess["service"] == "dns"
    assert one(recs, "dns") == {**dns_record(ts_of(3), 0x4321), **ids(c, sess["uid"])}


def test_a_dns_flow_seen_from_its_reply_first_is_flipped_but_not_towards_multicast() -> None:
    """Zeek's DNS analyzer (dns53.pcap): port 53 to port 53, the reply first -> the replier is the
    responder; an mDNS announcement (a response sent to 224.0.0.251) keeps its sender as originator."""
    r = dns_reply(0x77, "example.com", "93.184.216.34")
    recs, _ = run([udp_frame("10.0.0.53", 53, "10.0.0.1", 53, r)])
    sess, dns = one(recs, "session"), one(recs, "dns")
    # the D was written for the packet before the decoder flipped the roles (Zeek: the UDP analyzer
    # updates the history, then the DNS analyzer calls FlipRoles, which appends ^)
    assert (sess["src_ip"], sess["dst_ip"], sess["history"], sess["conn_state"]) == \
        ("10.0.0.1", "10.0.0.53", "D^", "SHR")
    assert (dns["src_ip"], dns["dst_ip"], dns["trans_id"], dns["answers"]) == \
        ("10.0.0.1", "10.0.0.53", 0x77, ["93.184.216.34"])
    announce = dns_reply(0, "printer.local", "10.0.0.7")
    recs, _ = run([udp_frame("10.0.0.7", 5353, "224.0.0.251", 5353, announce)])
    assert one(recs, "session")["src_ip"] == "10.0.0.7"
