"""Tests for agent.protocols.radius: hand-built packets, fuzzing and the Zeek/tcpdump corpus."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_streams import zeek_rows

from agent.decode.errors import DecodeError
from agent.protocols import radius
from agent.protocols.radius import MAX_PENDING, RadiusDecoder, parse_packet
from wire.validate import validate_record

T0 = 1_700_000_000.0
AUTH = bytes(range(16))


def attr(t: int, v: bytes | str) -> bytes:
    raw = v.encode() if isinstance(v, str) else v
    return bytes([t, len(raw) + 2]) + raw


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def ip4(a: str) -> bytes:
    return socket.inet_aton(a)


def pkt(code: int, ident: int, *attrs: bytes, auth: bytes = AUTH) -> bytes:
    body = b"".join(attrs)
    return struct.pack("!BBH", code, ident, 20 + len(body)) + auth + body


FLOW_ID = {
    "uid": "Cradius1",
    "proto": "udp",
    "src_ip": "192.0.2.1",
    "src_port": 1645,
    "dst_ip": "192.0.2.2",
    "dst_port": 1812,
    "vlan": None,
    "inner_vlan": None,
}


def valid(rec: dict[str, Any]) -> dict[str, Any]:
    """The record with the flow id the pipeline adds passes the wire contract."""
    validate_record({**FLOW_ID, **rec})
    return rec


def run(*msgs: tuple[bool, bytes], close: bool = True) -> list[dict[str, Any]]:
    d = RadiusDecoder()
    out: list[dict[str, Any]] = []
    for i, (is_orig, data) in enumerate(msgs):
        out += d.feed(is_orig, data, T0 + i)
    if close:
        out += d.close(T0 + 100)
    return [valid(r) for r in out]


# -- accounting (RFC 2866) -------------------------------------------------------


def test_accounting_start_and_stop_with_gigawords() -> None:
    start = pkt(
        4, 1,
        attr(40, u32(1)), attr(1, "张三@isp"), attr(4, ip4("10.0.0.1")), attr(8, ip4("100.64.1.2")),
        attr(31, "00-14-22-E9-54-5E"), attr(30, "AP1:SSID"), attr(44, "sess-0001"),
    )  # fmt: skip
    stop = pkt(
        4, 2,
        attr(40, u32(2)), attr(1, "张三@isp"), attr(44, "sess-0001"), attr(46, u32(3600)),
        attr(42, u32(5)), attr(52, u32(2)), attr(43, u32(7)), attr(53, u32(0)),
    )  # fmt: skip
    recs = run((True, start), (False, pkt(5, 1, auth=b"\x01" * 16)), (True, stop), (False, pkt(5, 2)))
    assert recs[0] == {
        "type": "radius",
        "ts": T0,
        "code": "Accounting-Request",
        "status_type": "Start",
        "username": "张三@isp",
        "framed_addr": "100.64.1.2",
        "calling_station_id": "00-14-22-E9-54-5E",
        "called_station_id": "AP1:SSID",
        "nas_ip": "10.0.0.1",
        "acct_session_id": "sess-0001",
        "session_time": None,
        "input_octets": None,
        "output_octets": None,
        "result": "success",
    }
    r = recs[1]
    assert (r["ts"], r["status_type"], r["session_time"]) == (T0 + 2, "Stop", 3600)
    assert (r["input_octets"], r["output_octets"]) == ((2 << 32) + 5, 7)
    assert len(recs) == 2


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (1, "Start"),
        (2, "Stop"),
        (3, "Interim-Update"),
        (7, "Accounting-On"),
        (8, "Accounting-Off"),
        (9, None),
    ],
)
def test_status_types(value: int, name: str | None) -> None:
    (r,) = run((True, pkt(4, 9, attr(40, u32(value)))), (False, pkt(5, 9)))
    assert r["status_type"] == name


def test_gbk_username_and_trailing_nul() -> None:
    (r,) = run((True, pkt(4, 3, attr(1, "李四".encode("gbk") + b"\0"))), (False, pkt(5, 3)))
    assert r["username"] == "李四"


# -- authentication (RFC 2865, 3579) -----------------------------------------------


def test_access_accept_sets_framed_addr_and_username() -> None:
    req = pkt(1, 7, attr(1, "anonymous@realm"), attr(2, b"\xaa" * 16), attr(4, ip4("10.0.0.1")))
    acc = pkt(2, 7, attr(8, ip4("100.64.9.9")), attr(1, "alice@realm"))
    (r,) = run((True, req), (False, acc), close=False)
    assert (r["code"], r["result"], r["framed_addr"]) == ("Access-Request", "success", "100.64.9.9")
    assert r["username"] == "alice@realm"  # RFC 2865 5.1: the name to account under
    assert r["nas_ip"] == "10.0.0.1"


def test_access_reject_is_failed() -> None:
    (r,) = run((True, pkt(1, 8, attr(1, "bob"))), (False, pkt(3, 8)), close=False)
    assert (r["username"], r["result"], r["framed_addr"]) == ("bob", "failed", None)


def test_challenge_rounds_linked_by_state() -> None:
    state = b"\x5a" * 16
    msgs = [
        (
            True,
            pkt(1, 10, attr(1, "carol"), attr(31, "aa-bb-cc-dd-ee-ff"), attr(79, b"\x02\x01\x00\x05\x01")),
        ),
        (False, pkt(11, 10, attr(8, ip4("255.255.255.254")), attr(24, state), attr(79, b"\x01\x02\x00\x04"))),
        (True, pkt(1, 11, attr(1, "carol"), attr(24, state), attr(79, b"\x02\x02\x00\x04"))),
        (False, pkt(2, 11)),
    ]
    d = RadiusDecoder()
    assert d.feed(*msgs[0], T0) == []
    assert d.feed(*msgs[1], T0 + 1) == []  # a challenge does not end the exchange
    assert d.feed(*msgs[2], T0 + 2) == []
    (r,) = d.feed(*msgs[3], T0 + 3)
    assert (r["ts"], r["username"], r["result"]) == (T0, "carol", "success")
    assert r["framed_addr"] == "255.255.255.254"  # from the challenge, as Zeek
    assert d.close(T0 + 4) == []


def test_challenge_without_state_linked_by_user() -> None:
    recs = run(
        (True, pkt(1, 20, attr(1, "dave"), attr(31, "m1"))),
        (False, pkt(11, 20)),
        (True, pkt(1, 21, attr(1, "erin"), attr(31, "m2"))),
        (True, pkt(1, 22, attr(1, "dave"), attr(31, "m1"))),
        (False, pkt(3, 22)),
        (False, pkt(2, 21)),
    )
    assert [(r["username"], r["result"], r["ts"]) for r in recs] == [
        ("dave", "failed", T0),
        ("erin", "success", T0 + 2),
    ]


def test_unanswered_challenge_flushed_at_close() -> None:
    (r,) = run((True, pkt(1, 30, attr(1, "frank"))), (False, pkt(11, 30, attr(24, b"s"))))
    assert (r["username"], r["result"]) == ("frank", None)


# -- pairing ----------------------------------------------------------------------


def test_retransmission_makes_one_record() -> None:
    req = pkt(1, 40, attr(1, "steve"))
    recs = run((True, req), (True, req), (True, req))
    assert len(recs) == 1 and recs[0]["result"] is None and recs[0]["ts"] == T0


def test_late_retransmission_and_duplicate_answer_ignored() -> None:
    req = pkt(4, 41, attr(40, u32(1)), attr(1, "gina"))
    resp = pkt(5, 41, auth=b"\x02" * 16)
    recs = run((True, req), (False, resp), (True, req), (False, resp))
    assert [(r["username"], r["result"]) for r in recs] == [("gina", "success")]


def test_identifier_reused_by_new_request() -> None:
    recs = run(
        (True, pkt(1, 42, attr(1, "old"), auth=b"\x01" * 16)),
        (True, pkt(1, 42, attr(1, "new"), auth=b"\x02" * 16)),
        (False, pkt(2, 42)),
    )
    assert [(r["username"], r["result"]) for r in recs] == [("old", None), ("new", "success")]


def test_response_without_request() -> None:
    (r,) = run((False, pkt(44, 50)), close=False)
    assert (r["code"], r["result"], r["ts"]) == ("CoA-Request", "success", T0)


def test_response_must_come_from_the_other_side() -> None:
    recs = run((True, pkt(1, 51, attr(1, "h"))), (True, pkt(2, 51)))
    assert [(r["username"], r["result"]) for r in recs] == [(None, "success"), ("h", None)]


def test_interleaved_users_on_one_flow() -> None:
    recs = run(
        (True, pkt(4, 1, attr(1, "u1"), attr(40, u32(1)))),
        (True, pkt(4, 2, attr(1, "u2"), attr(40, u32(1)))),
        (False, pkt(5, 2)),
        (False, pkt(5, 1)),
    )
    assert [(r["username"], r["ts"]) for r in recs] == [("u2", T0 + 1), ("u1", T0)]


def test_status_server_and_unknown_code() -> None:
    recs = run((True, pkt(12, 60)), (False, pkt(2, 60)), (True, pkt(99, 61)))
    assert [(r["code"], r["result"]) for r in recs] == [("Status-Server", "success")]


def test_identifier_space_fills_pending_table() -> None:
    d = RadiusDecoder()
    out = []
    for i in range(MAX_PENDING):  # every (direction, Identifier) once: nothing flushed
        out += d.feed(i % 2 == 0, pkt(4, i // 2, attr(44, f"s{i}")), T0 + i)
    assert out == []
    assert len(d.close(T0 + 10_000)) == MAX_PENDING


def test_pending_limit_flushes_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(radius, "MAX_PENDING", 3)
    d = RadiusDecoder()
    out = []
    for i in range(5):
        out += d.feed(True, pkt(4, i, attr(44, f"s{i}")), T0 + i)
    assert [r["acct_session_id"] for r in out] == ["s0", "s1"]
    assert [r["acct_session_id"] for r in d.close(T0 + 10)] == ["s2", "s3", "s4"]
    assert d.counters["pending_evicted"] == 2


# -- secrets -------------------------------------------------------------------------

SECRET = b"S3cr3t-P4ssw0rd!"


def test_no_secret_attribute_reaches_a_record() -> None:
    secrets = [SECRET, b"CHAPpw" + SECRET, b"MsgAuth" + SECRET, b"EAPpayload" + SECRET, b"STATE" + SECRET]
    req = pkt(
        1, 70,
        attr(1, "ivan"), attr(2, secrets[0]), attr(3, b"\x01" + secrets[1]), attr(80, secrets[2][:16]),
        attr(79, secrets[3]), attr(24, secrets[4]), attr(69, b"\x00" + SECRET), attr(26, u32(311) + SECRET),
        auth=SECRET,
    )  # fmt: skip
    acc = pkt(
        2, 70, attr(79, secrets[3]), attr(80, SECRET), attr(26, u32(311) + attr(16, SECRET)), auth=SECRET
    )
    recs = run((True, req), (False, acc))
    text = json.dumps(recs, ensure_ascii=False)
    for s in [*secrets, SECRET[:8]]:
        assert s.decode("latin-1") not in text
        assert s.hex() not in text
        assert s.hex()[:16] not in text
    assert recs[0]["username"] == "ivan"


# -- malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\x01\x02\x00", "radius_truncated_header"),
        (pkt(1, 1)[:19], "radius_truncated_header"),
        (struct.pack("!BBH", 1, 1, 19) + AUTH, "radius_bad_length"),
        (struct.pack("!BBH", 1, 1, 4097) + AUTH + b"\0" * 4077, "radius_bad_length"),
        (pkt(1, 1, attr(1, "x"))[:-1], "radius_bad_length"),
        (pkt(1, 1, b"\x01\x01"), "radius_bad_attribute_length"),
        (pkt(1, 1, b"\x01\x00"), "radius_bad_attribute_length"),
        (pkt(1, 1, b"\x01\x09abc"), "radius_bad_attribute_length"),
        (pkt(1, 1, b"\x01"), "radius_bad_attribute_length"),
    ],
)
def test_malformed(data: bytes, name: str) -> None:
    with pytest.raises(DecodeError) as e:
        RadiusDecoder().feed(True, data, T0)
    assert e.value.name == name


def test_padding_after_length_ignored() -> None:
    p = parse_packet(pkt(1, 1, attr(1, "x")) + b"\xff\xff\xff")
    assert p.attrs == {1: b"x"}


def test_bad_typed_values_ignored() -> None:
    d = RadiusDecoder()
    d.feed(True, pkt(4, 1, attr(4, b"\x01\x02\x03"), attr(46, b"\x00\x01"), attr(1, "j")), T0)
    (r,) = d.close(T0 + 1)
    assert (r["nas_ip"], r["session_time"], r["username"]) == (None, None, "j")
    assert d.counters["bad_attribute_values"] == 2


_attribute = st.tuples(st.integers(0, 255), st.binary(max_size=40)).map(lambda t: attr(t[0], t[1]))
_packet = st.builds(
    lambda code, ident, attrs, cut: pkt(code, ident, *attrs)[: cut or None],
    st.sampled_from([1, 2, 3, 4, 5, 11, 12, 40, 41, 42, 43, 44, 45, 99]),
    st.integers(0, 3),
    st.lists(_attribute, max_size=6),
    st.integers(0, 60),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.one_of(_packet, st.binary(max_size=80))), max_size=12))
def test_fuzz_only_decode_error(msgs: list[tuple[bool, bytes]]) -> None:
    d = RadiusDecoder()
    out: list[dict[str, Any]] = []
    for i, (is_orig, data) in enumerate(msgs):
        with contextlib.suppress(DecodeError):
            out += d.feed(is_orig, data, T0 + i)
    out += d.close(T0 + 100)
    for r in out:
        valid(r)


# -- corpus -------------------------------------------------------------------------

_SHARED_CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
CORPUS = Path(os.environ.get("EDGEAUDIT_CORPUS", _SHARED_CORPUS))
ZEEK = CORPUS / "zeek"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus absent")

Flow = tuple[str, int, str, int]


def udp_flows(path: Path) -> dict[Flow, list[tuple[float, bool, bytes]]]:
    """UDP payloads grouped by flow (keyed by the originator's 4-tuple), for the
    link types the corpus uses: Ethernet, BSD loopback (NULL) and Linux SLL."""
    flows: dict[Flow, list[tuple[float, bool, bytes]]] = {}
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = reader.datalink()
        for ts, buf in reader:
            frame: Any
            if link == dpkt.pcap.DLT_NULL:
                frame = dpkt.loopback.Loopback(buf)
            elif link == dpkt.pcap.DLT_LINUX_SLL:
                frame = dpkt.sll.SLL(buf)
            else:
                frame = dpkt.ethernet.Ethernet(buf)
            ip = frame.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            fam = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            src, dst = socket.inet_ntop(fam, ip.src), socket.inet_ntop(fam, ip.dst)
            udp = ip.data
            fwd: Flow = (src, udp.sport, dst, udp.dport)
            rev: Flow = (dst, udp.dport, src, udp.sport)
            key, is_orig = (rev, False) if rev in flows else (fwd, True)
            flows.setdefault(key, []).append((ts, is_orig, bytes(udp.data)))
    return flows


def decode_pcap(path: Path) -> list[tuple[Flow, dict[str, Any]]]:
    out: list[tuple[Flow, dict[str, Any]]] = []
    for key, pkts in udp_flows(path).items():
        d = RadiusDecoder()
        for ts, is_orig, data in pkts:
            out += [(key, valid(r)) for r in d.feed(is_orig, data, ts)]
        out += [(key, valid(r)) for r in d.close(pkts[-1][0] + 1)]
    return out


def normalize_mac(text: str | None) -> str:
    """Zeek's base/utils/addrs.zeek normalize_mac()."""
    digits = re.sub(r"[^0-9a-f]", "", (text or "").lower())
    if len(digits) in (12, 16):
        return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    return ""


def _opt(v: str) -> str | None:
    return None if v == "-" else v


def zeek_view(rows: list[dict[str, str]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """(orig_h, orig_p, resp_h, resp_p) -> (username, mac, result); Zeek's "unknown" is our null."""
    return {
        (r["id.orig_h"], int(r["id.orig_p"]), r["id.resp_h"], int(r["id.resp_p"])): (
            _opt(r["username"]), _opt(r["mac"]), None if r["result"] == "unknown" else r["result"],
        )
        for r in rows
    }  # fmt: skip


def our_view(recs: list[tuple[Flow, dict[str, Any]]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {k: (r["username"], normalize_mac(r["calling_station_id"]) or None, r["result"]) for k, r in recs}


def check_framed_addr(recs: list[tuple[Flow, dict[str, Any]]], rows: list[dict[str, str]]) -> list[int]:
    """Zeek takes framed_addr from an Access-Challenge only; we also take it from the
    Access-Accept (SCHEMA: the address the user gets).  Where Zeek has one, ours is equal;
    returns the originator ports where only we have one."""
    zeek = {int(r["id.orig_p"]): _opt(r["framed_addr"]) for r in rows}
    extra = []
    for k, r in recs:
        if zeek[k[1]] is not None:
            assert r["framed_addr"] == zeek[k[1]]
        elif r["framed_addr"] is not None:
            extra.append(k[1])
    return sorted(extra)


@needs_corpus
def test_zeek_auth_baseline() -> None:
    recs = decode_pcap(ZEEK / "Traces/radius/radius.pcap")
    rows = zeek_rows(ZEEK / "Baseline/scripts.base.protocols.radius.auth/radius.log")
    assert len(recs) == len(rows) == 1
    assert our_view(recs) == zeek_view(rows)
    assert check_framed_addr(recs, rows) == []
    r = recs[0][1]
    assert (r["nas_ip"], r["called_station_id"], r["calling_station_id"]) == (
        "10.0.0.1",
        "00-19-06-EA-B8-8C",
        "00-14-22-E9-54-5E",
    )


@needs_corpus
def test_zeek_multiple_attempts_baseline_null_linktype() -> None:
    recs = decode_pcap(ZEEK / "Traces/radius/radius_localhost.pcap")
    rows = zeek_rows(ZEEK / "Baseline/scripts.base.protocols.radius.radius-multiple-attempts/radius.log")
    assert len(recs) == len(rows) == 7  # three retransmissions of one request: one record
    assert our_view(recs) == zeek_view(rows)
    # the three exchanges without a challenge get 172.16.3.33 from their Access-Accept
    assert check_framed_addr(recs, rows) == [53127, 57717, 64691]
    assert {r["nas_ip"] for _, r in recs} == {"192.168.0.28"}


@needs_corpus
def test_tcpdump_rfc5176_coa_disconnect() -> None:
    recs = decode_pcap(CORPUS / "tcpdump/RADIUS-RFC5176.pcap")
    got = sorted((r["ts"], r["code"], r["result"]) for _, r in recs)
    # six packets, all with different identifiers: two unanswered requests, four lone answers
    assert [(c, res) for _, c, res in got] == [
        ("Disconnect-Request", None),
        ("Disconnect-Request", "success"),
        ("Disconnect-Request", "failed"),
        ("CoA-Request", None),
        ("CoA-Request", "success"),
        ("CoA-Request", "failed"),
    ]


@needs_corpus
@pytest.mark.parametrize(
    ("pcap", "expect"),
    [
        ("RADIUS.pcap", [("John.McGuirk", "10.0.0.1", "success")]),
        (
            "RADIUS-RFC4675.pcap",
            [("bob-tagged", "127.0.0.1", "success"), ("bob-untagged", "127.0.0.1", "success"),
             ("bob-invalid", "127.0.0.1", "success")],
        ),
        ("RADIUS-RFC3162.pcap", [("bob", "2001:db8:a0b:12f0::1", None)]),
        ("RADIUS-RFC5580.pcap", [(None, None, None)]),
        ("RADIUS-port1700.pcap", [("bob", None, None)]),
    ],
)  # fmt: skip
def test_tcpdump_attribute_values(pcap: str, expect: list[tuple[Any, ...]]) -> None:
    recs = decode_pcap(CORPUS / "tcpdump" / pcap)
    assert [(r["username"], r["nas_ip"], r["result"]) for _, r in recs] == expect


# -- a real peer: freeradius + radclient in a private network namespace -------------------

PEER_SCRIPT = r"""
set -e
trap 'kill $TD $FR 2>/dev/null || true' EXIT
ip link set lo up
tcpdump -i lo -n -U -Z root --immediate-mode -w "$OUT/radius.pcap" udp 2>"$OUT/tcpdump.err" &
TD=$!
freeradius -f -l "$OUT/fr.log" &
FR=$!
until grep -q 'Ready to process' "$OUT/fr.log" 2>/dev/null; do sleep 0.05; done
until grep -q 'listening on' "$OUT/tcpdump.err"; do sleep 0.05; done
radclient -q 127.0.0.1:1812 auth testing123 <"$OUT/auth.txt" || true  # rejected: unknown user
radclient -q 127.0.0.1:1813 acct testing123 <"$OUT/start.txt"
radclient -q 127.0.0.1:1813 acct testing123 <"$OUT/stop.txt"
# six packets (three exchanges) must be on disk before capture stops
until [ "$(tcpdump -r "$OUT/radius.pcap" 2>/dev/null | wc -l)" -ge 6 ]; do sleep 0.05; done
kill -INT $TD
wait $TD || true
kill $FR
wait $FR || true
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(p) for p in ("unshare", "freeradius", "radclient", "tcpdump")),
    reason="needs root, unshare, freeradius, radclient and tcpdump",
)
def test_freeradius_accounting_start_stop(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # freeradius drops privileges
    nas = 'NAS-IP-Address = 127.0.0.1\nUser-Name = "bob"\nAcct-Session-Id = "S1"\n'
    (tmp_path / "auth.txt").write_text('User-Name = "bob"\nUser-Password = "hunter2-secret"\n')
    (tmp_path / "start.txt").write_text(
        nas + "Acct-Status-Type = Start\nFramed-IP-Address = 10.9.8.7\n"
        'Calling-Station-Id = "02-00-00-00-00-01"\n'
    )
    (tmp_path / "stop.txt").write_text(
        nas + "Acct-Status-Type = Stop\nAcct-Session-Time = 42\nAcct-Input-Octets = 1000\n"
        "Acct-Input-Gigawords = 1\nAcct-Output-Octets = 2000\n"
    )
    # its own process group, so a hung run is killed whole (sh, freeradius, tcpdump)
    proc = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", PEER_SCRIPT],
        env={**os.environ, "OUT": str(tmp_path)},
        start_new_session=True,
    )
    try:
        assert proc.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    recs = [r for _, r in decode_pcap(tmp_path / "radius.pcap")]
    assert "hunter2" not in json.dumps(recs)
    assert [(r["code"], r["status_type"], r["result"]) for r in recs] == [
        ("Access-Request", None, "failed"),  # bob is not a configured user
        ("Accounting-Request", "Start", "success"),
        ("Accounting-Request", "Stop", "success"),
    ]
    start, stop = recs[1], recs[2]
    assert (start["username"], start["acct_session_id"], start["framed_addr"]) == ("bob", "S1", "10.9.8.7")
    assert (start["calling_station_id"], start["nas_ip"]) == ("02-00-00-00-00-01", "127.0.0.1")
    assert recs[0]["nas_ip"] is None and recs[0]["username"] == "bob"
    assert (stop["session_time"], stop["input_octets"], stop["output_octets"]) == (42, (1 << 32) + 1000, 2000)


def test_dynamic_authorization_ports_are_found_by_the_pipeline() -> None:
    """RFC 5176 CoA/Disconnect on 3799, and 1700 as Cisco uses it (tcpdump's RADIUS-port1700.pcap)."""
    from agent.pipeline import Pipeline

    req = struct.pack("!BBH16s", 43, 9, 20 + 5, bytes(16)) + bytes([1, 5]) + b"bob"  # CoA-Request
    frames = []
    for i, port in enumerate((1700, 3799)):
        udp = struct.pack("!HHHH", 42172 + i, port, 8 + len(req), 0) + req
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes([127, 0, 0, 1]),
                         bytes([127, 0, 0, 1])) + udp
        frames.append((1_450_201_047.0 + i, 1, bytes(12) + b"\x08\x00" + ip))
    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend)
    p.feed(frames)
    p.finish()
    recs = sorted((r["dst_port"], r["code"], r["username"]) for r in out if r["type"] == "radius")
    assert recs == [(1700, "CoA-Request", "bob"), (3799, "CoA-Request", "bob")]


def test_gigawords_that_would_overflow_the_counter_are_a_bad_value() -> None:
    """Acct-Input-Gigawords of 2**31 or more would make input_octets >= 2**63 (the wire's int64)."""
    dec = RadiusDecoder()
    attrs = [bytes([40, 6, 0, 0, 0, 1]), bytes([42, 6, 0, 0, 0, 7]), bytes([52, 6, 0x80, 0, 0, 0]),
             bytes([43, 6, 0, 0, 0, 9]), bytes([53, 6, 0, 0, 0, 2])]
    body = b"".join(attrs)
    req = struct.pack("!BBH16s", 4, 5, 20 + len(body), bytes(16)) + body
    dec.feed(True, req, 1.0)
    (rec,) = dec.close(2.0)
    assert (rec["input_octets"], rec["output_octets"]) == (7, (2 << 32) + 9)
    assert dec.counters["bad_attribute_values"] == 1
