"""Tests for agent.protocols.pppoe and the Decoder's PPPoE hook.

Hand-built frames (struct, RFC 2516/1334/1994 layouts) for every discovery
code, tag, PAP and CHAP exchange and malformed variant; then the captures of
../shared/corpus (skipped when absent) against the values tshark/tcpdump print.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.capture import linktypes as lt
from agent.capture.pcapfile import open_capture
from agent.decode import packet as packet_mod
from agent.decode.errors import DecodeError
from agent.decode.packet import Decoder
from agent.protocols import pppoe as pppoe_mod
from agent.protocols.pppoe import (
    CODES,
    MAX_NAME,
    PPP_CHAP,
    PPP_IPCP,
    PPP_LCP,
    PPP_PAP,
    PppoeDecoder,
)
from wire.validate import validate_record

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus absent")

TS = 1_700_000_000.0
CLIENT = "02:00:00:00:00:01"
BRAS = "02:00:00:00:00:02"
BCAST = "ff:ff:ff:ff:ff:ff"
SECRET = "s3cr3t-Pa55w0rd"
CODE_OF = {name: code for code, name in CODES.items()}


# --- builders ---------------------------------------------------------------------------------
def tag(ttype: int, value: bytes) -> bytes:
    return struct.pack("!HH", ttype, len(value)) + value


def disc(code: str | int, sid: int = 0, tags: bytes = b"", vt: int = 0x11,
         length: int | None = None) -> bytes:
    c = CODE_OF[code] if isinstance(code, str) else code
    return struct.pack("!BBHH", vt, c, sid, len(tags) if length is None else length) + tags


def pap_request(peer: bytes, password: bytes, ident: int = 1) -> bytes:
    data = bytes([len(peer)]) + peer + bytes([len(password)]) + password
    return struct.pack("!BBH", 1, ident, 4 + len(data)) + data


def pap_answer(ok: bool, msg: bytes = b"", ident: int = 1) -> bytes:
    data = bytes([len(msg)]) + msg
    return struct.pack("!BBH", 2 if ok else 3, ident, 4 + len(data)) + data


def chap(code: int, value: bytes = b"", name: bytes = b"", ident: int = 7) -> bytes:
    data = bytes([len(value)]) + value + name if code in (1, 2) else name
    return struct.pack("!BBH", code, ident, 4 + len(data)) + data


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def eth(src: str, dst: str, etype: int, payload: bytes, tags: list[tuple[int, int]] | None = None) -> bytes:
    head = mac(dst) + mac(src)
    for tpid, vid in tags or []:
        head += struct.pack("!HH", tpid, vid)
    frame = head + struct.pack("!H", etype) + payload
    return frame + b"\x00" * max(0, 60 - len(frame))  # Ethernet padding after the PPPoE length


def session_frame(src: str, dst: str, sid: int, proto: int, ppp: bytes, compress: bool = False) -> bytes:
    pfield = bytes([proto]) if compress else struct.pack("!H", proto)
    body = pfield + ppp
    return eth(src, dst, 0x8864, struct.pack("!BBHH", 0x11, 0, sid, len(body)) + body)


def secret_free(things: list[Any], *secrets: str) -> None:
    text = repr(things)
    for s in secrets:
        assert s not in text


# --- discovery --------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["PADI", "PADO", "PADR", "PADS", "PADT"])
def test_each_discovery_code_makes_one_record(code: str) -> None:
    sid = 0x1234 if code in ("PADS", "PADT") else 0
    tags = tag(0x0101, b"internet") + tag(0x0102, b"BRAS-1") + tag(0x0103, b"\xde\xad\xbe\xef") \
        + tag(0x0104, b"cookie-bytes") + tag(0x0110, b"relay")
    recs = PppoeDecoder().discovery(TS, CLIENT, BRAS, disc(code, sid, tags))
    assert recs == [{"type": "pppoe", "ts": TS, "src_mac": CLIENT, "dst_mac": BRAS, "code": code,
                     "session_id": sid, "service_name": "internet", "ac_name": "BRAS-1", "username": None}]
    validate_record(recs[0])


def test_absent_tags_are_null_empty_service_name_is_empty() -> None:
    dec = PppoeDecoder()
    (r,) = dec.discovery(TS, CLIENT, BCAST, disc("PADI", tags=tag(0x0101, b"") + tag(0x0103, b"x")))
    assert r["service_name"] == "" and r["ac_name"] is None
    (r,) = dec.discovery(TS, CLIENT, BCAST, disc("PADI"))
    assert r["service_name"] is None and r["ac_name"] is None
    validate_record(r)


def test_first_service_name_wins_and_end_of_list_stops() -> None:
    tags = tag(0x0101, b"first") + tag(0x0101, b"second") + tag(0x0000, b"") + tag(0x0102, b"after-eol")
    (r,) = PppoeDecoder().discovery(TS, BRAS, CLIENT, disc("PADO", tags=tags))
    assert r["service_name"] == "first" and r["ac_name"] is None


def test_error_tags_are_not_malformed() -> None:
    tags = tag(0x0102, b"BRAS") + tag(0x0201, b"no such service") + tag(0x0202, b"") + tag(0x0203, b"busy")
    (r,) = PppoeDecoder().discovery(TS, BRAS, CLIENT, disc("PADS", 0, tags))
    assert r["code"] == "PADS" and r["ac_name"] == "BRAS" and r["session_id"] == 0


def test_ethernet_padding_after_length_is_ignored() -> None:
    payload = disc("PADI", tags=tag(0x0101, b"")) + b"\x00" * 20
    (r,) = PppoeDecoder().discovery(TS, CLIENT, BCAST, payload)
    assert r["service_name"] == ""


def test_non_utf8_and_long_names_are_bounded_text() -> None:
    tags = tag(0x0101, b"\xff\xfe" + b"a" * 2000) + tag(0x0102, "接入".encode())
    (r,) = PppoeDecoder().discovery(TS, BRAS, CLIENT, disc("PADO", tags=tags))
    assert r["service_name"].startswith("\\xff\\xfe") and len(r["service_name"]) == MAX_NAME
    assert r["ac_name"] == "接入"
    validate_record(r)


@pytest.mark.parametrize("name, payload", [
    ("truncated_pppoe_header", b"\x11\x09\x00"),
    ("bad_pppoe_version_type", disc("PADI", vt=0x21)),
    ("bad_pppoe_version_type", disc("PADI", vt=0x12)),
    ("pppoe_wrong_code", disc(0x00)),
    ("pppoe_wrong_code", disc(0x42)),
    ("truncated_pppoe_payload", disc("PADI", tags=tag(0x0101, b"x"), length=50)),
    ("pppoe_malformed_tags", disc("PADI", tags=struct.pack("!HH", 0x0101, 9) + b"abc")),
    ("pppoe_malformed_tags", disc("PADI", tags=tag(0x0101, b"") + b"\x01\x02")),
    ("pppoe_malformed_tags", disc("PADO", tags=tag(0x0102, b"BRAS"), length=6)),
])
def test_malformed_discovery_raises_decode_error(name: str, payload: bytes) -> None:
    with pytest.raises(DecodeError) as e:
        PppoeDecoder().discovery(TS, CLIENT, BCAST, payload)
    assert e.value.name == name


# --- PAP / CHAP -------------------------------------------------------------------------------
def test_pap_user_is_remembered_and_reported_on_padt_never_the_password() -> None:
    dec = PppoeDecoder()
    records = dec.discovery(TS, BRAS, CLIENT, disc("PADS", 0x11, tag(0x0101, b"")))
    assert dec.session_control(TS + 1, CLIENT, BRAS, 0x11, PPP_PAP,
                               pap_request(b"alice", SECRET.encode())) == []
    assert dec.users == {(0x11, CLIENT): ("alice", TS + 1, None)}
    dec.session_control(TS + 2, BRAS, CLIENT, 0x11, PPP_PAP, pap_answer(True, b"welcome"))
    assert dec.users == {(0x11, CLIENT): ("alice", TS + 2, True)}
    events = dec.auth_events()
    assert events == [{"ts": TS + 2, "event": "auth", "method": "pap", "session_id": 0x11,
                       "client_mac": CLIENT, "server_mac": BRAS, "username": "alice", "ok": True}]
    assert dec.auth_events() == []  # drained
    records += dec.discovery(TS + 9, CLIENT, BRAS, disc("PADT", 0x11))
    assert records[-1]["username"] == "alice" and records[-1]["code"] == "PADT"
    assert records[0]["username"] is None
    assert dec.users == {}
    end = dec.auth_events()
    assert end == [{"ts": TS + 9, "event": "end", "method": None, "session_id": 0x11, "client_mac": CLIENT,
                    "server_mac": BRAS, "username": "alice", "ok": None}]
    for r in records:
        validate_record(r)
    secret_free([records, events, end, dec.users, dec.counters], SECRET)


def test_pap_nak_is_a_failed_login_and_padt_from_the_server_still_names_the_user() -> None:
    dec = PppoeDecoder()
    dec.session_control(TS, CLIENT, BRAS, 5, PPP_PAP, pap_request(b"bob", SECRET.encode()))
    dec.session_control(TS + 1, BRAS, CLIENT, 5, PPP_PAP, pap_answer(False, b"bad password"))
    assert [(e["username"], e["ok"]) for e in dec.auth_events()] == [("bob", False)]
    (r,) = dec.discovery(TS + 2, BRAS, CLIENT, disc("PADT", 5))
    assert r["username"] == "bob" and r["src_mac"] == BRAS
    assert dec.auth_events()[0]["client_mac"] == CLIENT


def test_retransmitted_answer_gives_one_event() -> None:
    dec = PppoeDecoder()
    dec.session_control(TS, CLIENT, BRAS, 5, PPP_PAP, pap_request(b"bob", b"pw"))
    for i in range(3):
        dec.session_control(TS + i, BRAS, CLIENT, 5, PPP_PAP, pap_answer(True))
    assert len(dec.auth_events()) == 1


def test_answer_without_request_has_no_user() -> None:
    dec = PppoeDecoder()
    dec.session_control(TS, BRAS, CLIENT, 5, PPP_CHAP, chap(3, name=b"Welcome"))
    (e,) = dec.auth_events()
    assert e["username"] is None and e["ok"] is True and e["method"] == "chap"
    assert dec.users == {}


def test_chap_name_is_the_user_never_the_hash() -> None:
    dec = PppoeDecoder()
    challenge = bytes(range(16))
    value = hashlib.md5(b"\x07" + SECRET.encode() + challenge).digest()
    dec.session_control(TS, BRAS, CLIENT, 9, PPP_CHAP, chap(1, challenge, b"BRAS-1"))
    assert dec.users == {}  # a Challenge names the authenticator, not a user
    dec.session_control(TS + 1, CLIENT, BRAS, 9, PPP_CHAP, chap(2, value, b"carol@isp"))
    dec.session_control(TS + 2, BRAS, CLIENT, 9, PPP_CHAP, chap(3, name=b"Access granted"))
    assert dec.users == {(9, CLIENT): ("carol@isp", TS + 2, True)}
    events = dec.auth_events()
    assert [(e["method"], e["username"], e["ok"]) for e in events] == [("chap", "carol@isp", True)]
    (r,) = dec.discovery(TS + 3, CLIENT, BRAS, disc("PADT", 9))
    assert r["username"] == "carol@isp"
    leaked = [value.hex(), value.decode("utf-8", "backslashreplace"), value.decode("latin-1"), SECRET]
    secret_free([r, events, dec.auth_events()], *leaked)


def test_chap_failure() -> None:
    dec = PppoeDecoder()
    dec.session_control(TS, CLIENT, BRAS, 9, PPP_CHAP, chap(2, b"\x00" * 16, b"dave"))
    dec.session_control(TS + 1, BRAS, CLIENT, 9, PPP_CHAP, chap(4, name=b"E=691 R=0"))
    assert dec.users[(9, CLIENT)] == ("dave", TS + 1, False)
    assert dec.auth_events()[0]["ok"] is False


def test_pads_forgets_an_earlier_user_of_a_reused_session_id() -> None:
    dec = PppoeDecoder()
    dec.session_control(TS, CLIENT, BRAS, 3, PPP_PAP, pap_request(b"old", b"pw"))
    dec.discovery(TS + 1, BRAS, CLIENT, disc("PADS", 3))
    assert dec.users == {}
    (r,) = dec.discovery(TS + 2, CLIENT, BRAS, disc("PADT", 3))
    assert r["username"] is None


def test_sessions_are_kept_apart_by_id_and_mac() -> None:
    dec = PppoeDecoder()
    other = "02:00:00:00:00:09"
    dec.session_control(TS, CLIENT, BRAS, 1, PPP_PAP, pap_request(b"u1", b"p"))
    dec.session_control(TS, other, BRAS, 1, PPP_PAP, pap_request(b"u2", b"p"))
    dec.session_control(TS, CLIENT, BRAS, 2, PPP_PAP, pap_request(b"u3", b"p"))
    assert dec.discovery(TS, other, BRAS, disc("PADT", 1))[0]["username"] == "u2"
    assert dec.discovery(TS, BRAS, CLIENT, disc("PADT", 2))[0]["username"] == "u3"
    assert dec.discovery(TS, BRAS, CLIENT, disc("PADT", 1))[0]["username"] == "u1"


def test_other_ppp_protocols_are_ignored() -> None:
    dec = PppoeDecoder()
    for proto in (PPP_LCP, PPP_IPCP, 0x8057, 0xC025):  # (an IPCP Configure-Request: no event)
        assert dec.session_control(TS, CLIENT, BRAS, 1, proto, b"\x01\x01\x00\x04") == []
    assert dec.users == {} and dec.auth_events() == []


def test_users_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pppoe_mod, "MAX_SESSIONS", 3)
    dec = PppoeDecoder()
    for sid in range(5):
        dec.session_control(TS + sid, CLIENT, BRAS, sid, PPP_PAP, pap_request(b"u%d" % sid, b"p"))
    assert list(dec.users) == [(2, CLIENT), (3, CLIENT), (4, CLIENT)]
    assert dec.counters["users_evicted"] == 2
    dec.session_control(TS, CLIENT, BRAS, 2, PPP_PAP, pap_request(b"again", b"p"))  # refreshes, no eviction
    assert list(dec.users)[-1] == (2, CLIENT) and dec.counters["users_evicted"] == 2


def test_pending_events_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pppoe_mod, "MAX_PENDING_EVENTS", 2)
    dec = PppoeDecoder()
    for sid in range(4):
        dec.session_control(TS, BRAS, CLIENT, sid, PPP_PAP, pap_answer(True))
    assert len(dec.auth_events()) == 2 and dec.counters["events_dropped"] == 2


@pytest.mark.parametrize("name, proto, payload", [
    ("ppp_pap_malformed", PPP_PAP, b"\x01\x01\x00"),
    ("ppp_pap_malformed", PPP_PAP, b"\x01\x01\x00\x03"),  # length below the header
    ("ppp_pap_malformed", PPP_PAP, b"\x01\x01\x00\x20" + b"\x03abc\x02pw"),  # length past the packet
    ("ppp_pap_malformed", PPP_PAP, b"\x01\x01\x00\x04"),  # no Peer-ID length
    ("ppp_pap_malformed", PPP_PAP, b"\x01\x01\x00\x08\x09abc"),  # Peer-ID past the end
    ("ppp_chap_malformed", PPP_CHAP, b"\x02\x01"),
    ("ppp_chap_malformed", PPP_CHAP, b"\x02\x01\x00\x04"),  # no Value-Size
    ("ppp_chap_malformed", PPP_CHAP, b"\x02\x01\x00\x07\x10ab"),  # Value past the end
])
def test_malformed_authentication_raises_decode_error(name: str, proto: int, payload: bytes) -> None:
    dec = PppoeDecoder()
    with pytest.raises(DecodeError) as e:
        dec.session_control(TS, CLIENT, BRAS, 1, proto, payload)
    assert e.value.name == name
    assert dec.users == {}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from([PPP_PAP, PPP_CHAP, PPP_LCP]))
def test_only_decode_error_escapes(data: bytes, proto: int) -> None:
    dec = PppoeDecoder()
    calls: list[Callable[[], list[dict[str, Any]]]] = [
        lambda: dec.discovery(TS, CLIENT, BRAS, data),
        lambda: dec.discovery(TS, CLIENT, BRAS, b"\x11" + data[1:]),
        lambda: dec.session_control(TS, CLIENT, BRAS, 1, proto, data),
    ]
    for call in calls:
        try:
            for r in call():
                validate_record(r)
        except DecodeError:
            pass


# --- the Decoder hook -------------------------------------------------------------------------
def hooked() -> Decoder:
    d = Decoder()
    d.link = PppoeDecoder()
    return d


def test_decoder_hands_discovery_frames_to_the_pppoe_decoder() -> None:
    d = hooked()
    frame = eth(CLIENT, BCAST, 0x8863, disc("PADI", tags=tag(0x0101, b"") + tag(0x0103, b"\x01\x02")))
    assert d.decode(TS, lt.ETHERNET, frame) is None
    assert d.records == [{"type": "pppoe", "ts": TS, "src_mac": CLIENT, "dst_mac": BCAST, "code": "PADI",
                          "session_id": 0, "service_name": "", "ac_name": None, "username": None}]
    assert d.weirds == [] and d.counters["non_ip"] == 1


def test_decoder_hook_over_qinq() -> None:
    d = hooked()
    frame = eth(BRAS, CLIENT, 0x8863, disc("PADO", tags=tag(0x0102, b"BRAS")),
                tags=[(0x88A8, 100), (0x8100, 200)])
    d.decode(TS, lt.ETHERNET, frame)
    assert [(r["code"], r["ac_name"], r["src_mac"]) for r in d.records] == [("PADO", "BRAS", BRAS)]


def test_decoder_session_stage_end_to_end() -> None:
    d = hooked()
    frames = [
        eth(BRAS, CLIENT, 0x8863, disc("PADS", 0x2A, tag(0x0101, b"isp"))),
        session_frame(CLIENT, BRAS, 0x2A, PPP_LCP, b"\x01\x01\x00\x04"),
        session_frame(CLIENT, BRAS, 0x2A, PPP_PAP, pap_request(b"erin", SECRET.encode())),
        session_frame(BRAS, CLIENT, 0x2A, PPP_PAP, pap_answer(True)),
        eth(CLIENT, BRAS, 0x8863, disc("PADT", 0x2A)),
    ]
    for i, f in enumerate(frames):
        assert d.decode(TS + i, lt.ETHERNET, f) is None
    assert [(r["code"], r["session_id"], r["username"]) for r in d.records] == [
        ("PADS", 0x2A, None), ("PADT", 0x2A, "erin")]
    assert d.link is not None
    assert isinstance(d.link, PppoeDecoder)
    events = d.link.auth_events()
    assert [(e["event"], e["username"]) for e in events] == [("auth", "erin"), ("end", "erin")]
    secret_free([d.records, events, d.weirds], SECRET)


def test_decoder_compressed_ppp_protocol_reaches_the_hook() -> None:
    calls: list[tuple[int, int, bytes]] = []

    class Spy:
        def discovery(self, ts: float, src: str, dst: str, payload: bytes) -> list[dict[str, Any]]:
            return []

        def session_control(self, ts: float, src: str, dst: str, sid: int, proto: int,
                            payload: bytes) -> list[dict[str, Any]]:
            calls.append((sid, proto, payload))
            return []

    d = Decoder()
    d.link = Spy()
    d.decode(TS, lt.ETHERNET, session_frame(CLIENT, BRAS, 7, 0x3D, b"mp", compress=True))
    d.decode(TS, lt.ETHERNET, session_frame(CLIENT, BRAS, 7, PPP_LCP, b"\x09\x01\x00\x08abcd"))
    assert calls == [(7, 0x3D, b"mp"), (7, PPP_LCP, b"\x09\x01\x00\x08abcd")]  # padding cut at LENGTH


def test_decoder_ip_over_pppoe_never_calls_the_hook() -> None:
    class Refuse:
        def discovery(self, *a: Any) -> list[dict[str, Any]]:
            raise AssertionError("called")

        def session_control(self, *a: Any) -> list[dict[str, Any]]:
            raise AssertionError("called")

    d = Decoder()
    d.link = Refuse()
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, b"\xc0\x00\x02\x01", b"\xc6\x33\x64\x02")
    ip += struct.pack("!HHHH", 1234, 53, 8, 0)
    assert d.decode(TS, lt.ETHERNET, session_frame(CLIENT, BRAS, 1, 0x0021, ip)) is not None
    assert d.decode(TS, lt.ETHERNET, eth(CLIENT, BRAS, 0x0806, b"\x00" * 28)) is None  # ARP
    assert d.decode(TS, lt.ETHERNET, eth(CLIENT, BRAS, 0x0800, ip)) is not None
    assert d.records == [] and d.weirds == []


def test_decoder_without_hook_only_counts() -> None:
    d = Decoder()
    assert d.decode(TS, lt.ETHERNET, eth(CLIENT, BCAST, 0x8863, disc("PADI"))) is None
    assert d.records == [] and d.counters["non_ip"] == 1


def test_malformed_discovery_through_the_decoder_is_a_weird() -> None:
    d = hooked()
    bad = disc("PADI", tags=struct.pack("!HH", 0x0101, 30) + b"x")
    frame = eth(CLIENT, BCAST, 0x8863, bad)
    assert d.decode(TS, lt.ETHERNET, frame) is None
    assert d.records == []
    assert [(w[0], w[1]) for w in d.weirds] == [(TS, "pppoe_malformed_tags")]
    assert d.weirds[0][3:] == (None, None, None)  # no addresses, no flow
    assert d.counters["malformed"] == 1
    d.decode(TS, lt.ETHERNET, session_frame(CLIENT, BRAS, 1, PPP_PAP, b"\x01\x01\x00\x09\x09ab"))
    assert d.weirds[-1][1] == "ppp_pap_malformed"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0x8863, 0x8864]), st.binary(max_size=60), st.booleans())
def test_decoder_hook_gives_records_or_weirds_only(etype: int, body: bytes, qinq: bool) -> None:
    d = hooked()
    frame = mac(BRAS) + mac(CLIENT) + (b"\x81\x00\x00\x05" if qinq else b"") + struct.pack("!H", etype) + body
    d.decode(TS, lt.ETHERNET, frame)
    for r in d.records:
        validate_record(r)
    assert len(d.records) + len(d.weirds) <= 1


def test_pending_records_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packet_mod, "MAX_PENDING_RECORDS", 2)
    d = hooked()
    for _ in range(5):
        d.decode(TS, lt.ETHERNET, eth(CLIENT, BCAST, 0x8863, disc("PADI")))
    assert len(d.records) == 2 and d.counters["records_dropped"] == 3


def test_truncated_session_frames_are_ignored_by_the_hook() -> None:
    d = Decoder()
    d.link = p = PppoeDecoder()
    head = mac(BRAS) + mac(CLIENT) + b"\x88\x64"
    for frame in (head + struct.pack("!BBHH", 0x11, 0, 1, 0),
                  head + struct.pack("!BBHH", 0x11, 0, 1, 1) + b"\xc0"):
        d.decode(TS, lt.ETHERNET, frame)
    assert d.records == [] and p.counters["session_control"] == 0


# --- corpus -----------------------------------------------------------------------------------
def replay(rel: str) -> tuple[Decoder, PppoeDecoder]:
    d = Decoder()
    p = d.link = PppoeDecoder()
    with open_capture(CORPUS / rel) as cap:
        for ts, linktype, frame in cap:
            d.decode(ts, linktype, frame)
    for r in d.records:
        validate_record(r)
    return d, p


def rows(d: Decoder) -> list[tuple[str, str, str, int, str | None, str | None, str | None]]:
    return [(r["code"], r["src_mac"], r["dst_mac"], r["session_id"], r["service_name"], r["ac_name"],
             r["username"]) for r in d.records]


@needs_corpus
def test_corpus_zeek_pppoe_discovery_and_pap() -> None:
    # tshark: PADI, PADO/PADR/PADS with AC-Name 'BRAS', session 0x0011; PAP Peer-ID 'cisco', then Ack
    d, p = replay("zeek/Traces/pppoe.pcap")
    c, s = "cc:05:0e:88:00:00", "ca:01:0e:88:00:06"
    assert rows(d) == [
        ("PADI", c, BCAST, 0, "", None, None),
        ("PADO", s, c, 0, "", "BRAS", None),
        ("PADR", c, s, 0, "", "BRAS", None),
        ("PADS", s, c, 0x11, "", "BRAS", None),
    ]
    assert d.weirds == []
    user, ts, ok = p.users[(0x11, c)]
    assert (user, ok) == ("cisco", True)
    (e,) = [ev for ev in p.auth_events() if ev["event"] == "auth"]  # (and IPCP's addresses)
    assert (e["event"], e["method"], e["session_id"], e["client_mac"], e["server_mac"], e["username"],
            e["ok"], e["ts"]) == ("auth", "pap", 0x11, c, s, "cisco", True, ts)


@needs_corpus
def test_corpus_suricata_pppoe_two_sessions_and_padt() -> None:
    d, p = replay("suricata-verify/pppoe/input.pcap")
    c, s = "00:00:cd:38:13:43", "ee:86:e2:f9:70:57"
    one = [
        ("PADI", c, BCAST, 0, "", None, None),
        ("PADO", s, c, 0, "test", "test", None),
        ("PADR", c, s, 0, "", None, None),
    ]
    assert rows(d) == one + [("PADS", s, c, 1, "test", None, None),
                             ("PADT", c, s, 1, None, None, None), ("PADT", s, c, 1, None, None, None)] \
        + one + [("PADS", s, c, 2, "test", None, None)]
    assert d.weirds == []  # suricata-verify expects no decoder anomaly in this capture
    assert p.users == {} and [ev for ev in p.auth_events() if ev["event"] != "ipcp"] == []


@needs_corpus
@pytest.mark.parametrize("rel", ["zeek/Traces/pppoe-over-qinq.pcap",
                                 "suricata-verify/bug-4810/pppoe-session-http.pcap"])
def test_corpus_ip_only_sessions_make_no_pppoe_records(rel: str) -> None:
    d, p = replay(rel)
    assert d.records == [] and d.weirds == []
    assert p.counters["discovery"] == 0 and p.counters["session_control"] == 0


@needs_corpus
def test_corpus_tcpdump_padi() -> None:
    # pppoe.out: "PPPoE PADI [Service-Name] [PPP-Max-Payload 0x05DC] [Host-Uniq 0x16372C16]"
    out = (CORPUS / "tcpdump/pppoe.out").read_text()
    assert "PADI [Service-Name]" in out
    d, _ = replay("tcpdump/pppoe.pcap")
    assert rows(d) == [("PADI", "00:0c:29:90:3a:8b", BCAST, 0, "", None, None)]
    assert d.records[0]["ts"] == pytest.approx(1323535041.568643)


@needs_corpus
def test_corpus_tcpdump_pppoes_lcp_echo_reaches_session_stage() -> None:
    # pppoes.out: "[ses 0x17] LCP, Echo-Request", "[ses 0x3b] LCP, Echo-Request"
    seen: list[tuple[int, int]] = []

    class Spy(PppoeDecoder):
        def session_control(self, ts: float, src_mac: str, dst_mac: str, session_id: int, ppp_proto: int,
                            payload: bytes) -> list[dict[str, Any]]:
            seen.append((session_id, ppp_proto))
            return super().session_control(ts, src_mac, dst_mac, session_id, ppp_proto, payload)

    out = (CORPUS / "tcpdump/pppoes.out").read_text()
    expected = [(int(h, 16), PPP_LCP) for h in ("17", "3b") if f"[ses 0x{h}] LCP" in out]
    d = Decoder()
    d.link = Spy()
    with open_capture(CORPUS / "tcpdump/pppoes.pcap") as cap:
        for ts, linktype, frame in cap:
            d.decode(ts, linktype, frame)
    assert seen == expected == [(0x17, PPP_LCP), (0x3B, PPP_LCP)]
    assert d.records == [] and d.weirds == []


def _ipcp(code: int, options: bytes, ident: int = 3) -> bytes:
    return struct.pack("!BBH", code, ident, 4 + len(options)) + options


def test_ipcp_configure_ack_names_the_receivers_address() -> None:
    """RFC 1332 §3.3: the IP-Address option a Configure-Ack acknowledges is the receiver's."""
    dec = PppoeDecoder()
    addr = bytes([10, 0, 2, 16])
    # a request and a Nak carry proposals, not agreements; 0.0.0.0 asks for an address
    dec.session_control(TS, CLIENT, BRAS, 5, PPP_IPCP, _ipcp(1, b"\x03\x06" + bytes(4)))
    dec.session_control(TS, BRAS, CLIENT, 5, PPP_IPCP, _ipcp(3, b"\x03\x06" + addr))
    vj = b"\x02\x06\x00\x2d\x0f\x01"  # IP-Compression-Protocol first: options are walked
    dec.session_control(TS + 1, BRAS, CLIENT, 5, PPP_IPCP, _ipcp(2, vj + b"\x03\x06" + addr))
    (ev,) = dec.auth_events()
    assert (ev["event"], ev["client_mac"], ev["server_mac"], ev["session_id"], ev["ip"], ev["ts"]) == \
        ("ipcp", CLIENT, BRAS, 5, "10.0.2.16", TS + 1)
    with pytest.raises(DecodeError) as ei:
        dec.session_control(TS, BRAS, CLIENT, 5, PPP_IPCP, _ipcp(2, b"\x03\x09" + addr))
    assert ei.value.name == "ppp_ipcp_malformed"


@needs_corpus
def test_corpus_pppoe_session_gives_a_login_with_the_pap_user_and_the_ipcp_address() -> None:
    from agent.pipeline import Pipeline

    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend)
    with open_capture(CORPUS / "zeek/Traces/pppoe.pcap") as cap:
        for batch in cap.batches():
            p.feed(batch)
    p.finish()
    (login,) = [r for r in out if r["type"] == "login"]
    keys = ("event", "account", "ip", "mac", "calling_station", "source", "session_id")
    assert {k: login[k] for k in keys} == {
        "event": "login", "account": "cisco", "ip": "10.0.2.16", "mac": "cc:05:0e:88:00:00",
        "calling_station": "cc:05:0e:88:00:00", "source": "pppoe", "session_id": "17"}
