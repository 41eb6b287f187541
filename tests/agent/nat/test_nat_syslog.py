"""NAT logs over syslog (agent/nat/syslog.py): header and ASA line parsing, malformed input,
RFC 6587 framing, and a real UDP/TCP listener on loopback fed by a test client and by
util-linux ``logger`` when it is installed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agent.nat.syslog import MAX_MESSAGE, Malformed, SyslogNatListener, SyslogNatParser, TcpFramer
from wire.text import without_nul
from wire.validate import validate_record

BUILT_TCP = ("%ASA-6-302013: Built outbound TCP connection 4711 for outside:198.51.100.9/443 "
             "(198.51.100.9/443) to inside:10.0.0.5/51234 (203.0.113.7/40001)")
TEARDOWN_TCP = ("%ASA-6-302014: Teardown TCP connection 4711 for outside:198.51.100.9/443 to "
                "inside:10.0.0.5/51234 duration 0:00:31 bytes 6120 TCP FINs")
BUILT_UDP = ("%ASA-6-302015: Built outbound UDP connection 4712 for outside:192.0.2.53/53 "
             "(192.0.2.53/53) to inside:10.0.0.5/5353 (203.0.113.7/5353)")
TEARDOWN_UDP = ("%ASA-6-302016: Teardown UDP connection 4712 for outside:192.0.2.53/53 to "
                "inside:10.0.0.5/5353 duration 0:00:01 bytes 120")
NOW = datetime(2026, 11, 22, 15, 30, 5, tzinfo=UTC).timestamp()

TCP_FIELDS = {"proto": "tcp", "inside_ip": "10.0.0.5", "inside_port": 51234, "outside_ip": "203.0.113.7",
              "outside_port": 40001, "remote_ip": "198.51.100.9", "remote_port": 443}


def feed(p: SyslogNatParser, line: str, peer: str = "192.0.2.1",
         received: float = NOW) -> list[dict[str, Any]]:
    out = [dict(r) for r in p.feed(line.encode(), peer, received)]
    for r in out:
        validate_record(r)
    return out


def test_rfc5424_built_and_teardown() -> None:
    p = SyslogNatParser()
    (c,) = feed(p, f"<166>1 2026-11-22T15:30:01.250+08:00 asa1 - - - - {BUILT_TCP}")
    assert c == {"type": "nat", "event": "create", "ts": datetime(2026, 11, 22, 7, 30, 1, 250000,
                                                                  tzinfo=UTC).timestamp(), **TCP_FIELDS}
    (d,) = feed(p, f"<166>1 2026-11-22T07:30:32Z asa1 - - - - {TEARDOWN_TCP}")
    assert d == {**c, "event": "destroy", "ts": datetime(2026, 11, 22, 7, 30, 32, tzinfo=UTC).timestamp()}
    assert p.counters["router_ts"] == 2 and p.counters["malformed"] == 0


def test_rfc5424_structured_data_bom_and_nil_timestamp() -> None:
    p = SyslogNatParser()
    sd = '[timeQuality tzKnown="1" isSynced="0"][ex@32473 note="a \\] b"]'
    (c,) = feed(p, f"<134>1 - fw1 asa 99 302015 {sd} \ufeff{BUILT_UDP}")
    assert c["ts"] == NOW and c["proto"] == "udp" and (c["inside_port"], c["outside_port"]) == (5353, 5353)
    assert (c["outside_ip"], c["remote_ip"], c["remote_port"]) == ("203.0.113.7", "192.0.2.53", 53)
    assert p.counters["receipt_ts"] == 1
    (d,) = feed(p, f"<134>1 2026-11-22T15:30:06Z fw1 asa - - - {TEARDOWN_UDP}")
    assert d["event"] == "destroy" and d["inside_port"] == 5353


def test_rfc3164_headers_bsd_and_asa_variants() -> None:
    p = SyslogNatParser()
    (c,) = feed(p, f"<166>Nov 22 15:30:01 asa1 {BUILT_TCP}")
    assert c["ts"] == datetime(2026, 11, 22, 15, 30, 1, tzinfo=UTC).timestamp()
    (d,) = feed(p, f"<166>Nov 22 2026 15:30:04 asa1 : {TEARDOWN_TCP}")  # ASA: "HOST : MSG", with a year
    assert d["event"] == "destroy" and d["ts"] == datetime(2026, 11, 22, 15, 30, 4, tzinfo=UTC).timestamp()
    # ASA without hostname ("Mmm dd yyyy hh:mm:ss: MSG"); the sender's address names the router
    (c2,) = feed(p, f"<166>Nov  2 2026 01:02:03: {BUILT_UDP}", peer="192.0.2.77")
    assert c2["ts"] == datetime(2026, 11, 2, 1, 2, 3, tzinfo=UTC).timestamp()
    (d2,) = feed(p, f"<166>{TEARDOWN_UDP}", peer="192.0.2.77")  # no timestamp at all: receipt time
    assert d2["event"] == "destroy" and d2["ts"] == NOW


def test_bsd_year_is_the_one_nearest_receipt_and_tz_is_configurable() -> None:
    p = SyslogNatParser(tz=timezone(timedelta(hours=8)))
    new_year = datetime(2027, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp()
    (c,) = feed(p, f"<166>Dec 31 23:59:58 asa1 {BUILT_TCP}", received=new_year)  # read in UTC+8
    assert c["ts"] == datetime(2026, 12, 31, 15, 59, 58, tzinfo=UTC).timestamp()


def test_icmp_ipv6_and_untranslated() -> None:
    p = SyslogNatParser()
    (c,) = feed(p, "<166>1 2026-11-22T15:30:01Z asa1 - - - - %ASA-6-302020: Built outbound ICMP connection "
                   "for faddr 198.51.100.9/0 gaddr 203.0.113.7/21 laddr 10.0.0.5/77 type 8 code 0")
    assert (c["proto"], c["inside_port"], c["outside_port"], c["remote_ip"], c["remote_port"]) == (
        "icmp", 77, 21, "198.51.100.9", None)
    (d,) = feed(p, "<166>1 2026-11-22T15:30:02Z asa1 - - - - %ASA-6-302021: Teardown ICMP connection "
                   "for faddr 198.51.100.9/0 gaddr 203.0.113.7/21 laddr 10.0.0.5/77 type 0 code 0")
    assert d["event"] == "destroy" and d["inside_port"] == 77
    (v6,) = feed(p, "<166>1 2026-11-22T15:30:01Z asa1 - - - - %ASA-6-302013: Built outbound TCP connection "
                    "9 for outside:2001:db8::9/443 (2001:db8::9/443) to inside:fd00::5/50000 "
                    "(2001:db8:1::7/40000)")
    assert (v6["inside_ip"], v6["outside_ip"], v6["remote_ip"]) == ("fd00::5", "2001:db8:1::7", "2001:db8::9")
    # an identity "translation" (mapped == real) is not NAT: nothing, and its teardown is unknown
    assert feed(p, "<166>1 - asa1 - - - - %ASA-6-302013: Built inbound TCP connection 10 for outside:"
                   "198.51.100.9/5000 (198.51.100.9/5000) to dmz:192.0.2.80/80 (192.0.2.80/80)") == []
    assert feed(p, "<166>1 - asa1 - - - - %ASA-6-302014: Teardown TCP connection 10 for outside:"
                   "198.51.100.9/5000 to dmz:192.0.2.80/80 duration 0:00:01 bytes 10 TCP FINs") == []
    assert p.counters["untranslated"] == 1 and p.counters["teardown_unknown"] == 1


def test_teardown_is_matched_per_router() -> None:
    p = SyslogNatParser()
    feed(p, f"<166>1 - asa1 - - - - {BUILT_TCP}")
    assert feed(p, f"<166>1 - asa2 - - - - {TEARDOWN_TCP}") == []  # same id, other router
    assert len(feed(p, f"<166>1 - asa1 - - - - {TEARDOWN_TCP}")) == 1


MALFORMED = [
    "",
    "no pri at all",
    "<999>1 - h - - - - x",
    b"\xff\xfe\x00garbage".decode("latin-1"),
    "<166>1 2026-13-45T99:00:00Z asa1 - - - - " + BUILT_TCP,  # bad RFC 3339 date
    "<166>1 - asa1 - - - [unterminated sd " + BUILT_TCP,
    "<166>1 - asa1 - - - x " + BUILT_TCP,  # SD neither '-' nor '['
    "<166>Feb 30 10:00:00 asa1 " + BUILT_TCP,  # no such day
    "<166>1 - asa1 - - - - %ASA-6-302013: Built outbound TCP connection 1 for outside:1.2.3/4",
    "<166>1 - asa1 - - - - %ASA-6-302013: Built outbound TCP connection 1 for outside:999.1.1.1/4 "
    "(999.1.1.1/4) to inside:10.0.0.5/1 (203.0.113.7/2)",  # bad address
    "<166>1 - asa1 - - - - %ASA-6-302015: Built outbound UDP connection 1 for outside:1.1.1.1/99999 "
    "(1.1.1.1/99999) to inside:10.0.0.5/1 (203.0.113.7/2)",  # bad port
    "<166>1 - asa1 - - - - %ASA-6-302014: Teardown TCP connection x",
    "<166>1 - asa1 - - - - %ASA-6-302020: Built outbound ICMP connection for faddr nothing",
]


@pytest.mark.parametrize("line", MALFORMED)
def test_malformed_lines_are_counted_and_reported(line: str) -> None:
    p = SyslogNatParser()
    assert feed(p, line) == []
    assert p.counters["malformed"] == 1, p.counters
    ((reason, snippet),) = p.recent_errors
    assert reason and snippet == without_nul(line.rstrip("\r\n\0"))[:120]  # (a NUL written \x00)


def test_other_messages_are_ignored_not_malformed() -> None:
    p = SyslogNatParser()
    for line in ("<13>1 2026-11-22T15:30:01Z host user - - - hello world",
                 "<166>Nov 22 15:30:01 asa1 %ASA-6-305011: Built dynamic TCP translation from "
                 "inside:10.0.0.5/51234 to outside:203.0.113.7/40001",
                 "<30>Nov 22 15:30:01 router kernel: something else"):
        assert feed(p, line) == []
    assert p.counters["ignored"] == 3 and p.counters["malformed"] == 0


def test_tcp_framing_octet_counting_and_newlines() -> None:
    f = TcpFramer()
    msg = b"<13>1 - h - - - - hello"
    frame = str(len(msg)).encode() + b" " + msg
    assert f.feed(frame[:5]) == []
    assert f.feed(frame[5:] + frame + b"<13>plain line\r\n<13>par") == [msg, msg, b"<13>plain line"]
    assert f.feed(b"tial\n") == [b"<13>partial"]
    with pytest.raises(Malformed):
        TcpFramer(limit=100).feed(b"101 " + b"x" * 101)
    with pytest.raises(Malformed):
        TcpFramer(limit=100).feed(b"<13>" + b"y" * 200)
    with pytest.raises(Malformed):
        TcpFramer().feed(b"12x34 abc")


# -- the listener on loopback -----------------------------------------------------------------


def drain(lst: SyslogNatListener, n: int, what: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(out) < n:
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {out} {lst.stats()}"
        out += [dict(r) for r in lst.poll(0.2)]
    for r in out:
        validate_record(r)
    return out


def test_listener_udp_and_tcp_from_a_test_client() -> None:
    with SyslogNatListener("127.0.0.1", 0) as lst:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(f"<166>1 2026-11-22T15:30:01Z asa1 - - - - {BUILT_TCP}".encode(), ("127.0.0.1", lst.port))
        (c,) = drain(lst, 1, "the UDP datagram")
        assert c["event"] == "create" and c["outside_port"] == 40001
        t = socket.create_connection(("127.0.0.1", lst.port))
        # one octet-counted frame and one LF-terminated line, split across two sends
        m1 = f"<166>1 2026-11-22T15:30:32Z asa1 - - - - {TEARDOWN_TCP}".encode()
        m2 = f"<166>Nov 22 15:30:33 asa1 {BUILT_UDP}\n".encode()
        data = str(len(m1)).encode() + b" " + m1 + m2
        t.sendall(data[:37])
        t.sendall(data[37:])
        d, c2 = drain(lst, 2, "the two TCP frames")
        assert (d["event"], d["inside_port"], c2["event"], c2["proto"]) == ("destroy", 51234, "create", "udp")
        # garbage and an oversize frame: counted, the connection is closed, the listener lives on
        u.sendto(b"\x00\x01 not syslog", ("127.0.0.1", lst.port))
        t.sendall(str(MAX_MESSAGE + 1).encode() + b" " + b"z" * 100)
        deadline = time.monotonic() + 10
        while lst.stats()["oversize"] < 1 or lst.stats()["malformed"] < 2:
            assert time.monotonic() < deadline, lst.stats()
            lst.poll(0.2)
        t.settimeout(5)
        assert t.recv(10) == b""  # closed by the listener
        t.close()
        u.sendto(f"<166>1 - asa1 - - - - {TEARDOWN_UDP}".encode(), ("127.0.0.1", lst.port))
        (d2,) = drain(lst, 1, "a datagram after the bad input")
        assert d2["event"] == "destroy" and d2["proto"] == "udp"
        u.close()


@pytest.mark.parametrize("mode", [["--udp"], ["--tcp"], ["--tcp", "--octet-count"]])
def test_listener_with_util_linux_logger(mode: list[str]) -> None:
    logger = shutil.which("logger")
    if logger is None:
        pytest.skip("logger (util-linux) is not installed")
    with SyslogNatListener("127.0.0.1", 0) as lst:
        for msg in (BUILT_TCP, TEARDOWN_TCP):
            before = time.time()
            argv = [logger, "--server", "127.0.0.1", "--port", str(lst.port), "--rfc5424", *mode, "-t", "asa"]
            res = subprocess.run([*argv, msg], capture_output=True, text=True, timeout=10)
            assert res.returncode == 0, res.stderr
            (r,) = drain(lst, 1, f"logger {mode}: {msg[:20]}")
            assert {k: r[k] for k in TCP_FIELDS} == TCP_FIELDS
            assert r["event"] == ("create" if msg is BUILT_TCP else "destroy")
            assert before - 1 <= r["ts"] <= time.time() + 1  # logger's own RFC 3339 timestamp
        assert lst.stats()["router_ts"] == 2 and lst.stats()["malformed"] == 0


def test_listener_blocking_loop_stops_on_request() -> None:
    import threading

    from agent.nat.syslog import POLL_S

    with SyslogNatListener("127.0.0.1", 0, tcp=False) as lst:
        got: list[dict[str, Any]] = []
        stop = threading.Event()
        th = threading.Thread(target=lst.run, args=(lambda r: got.append(dict(r)), stop), daemon=True)
        th.start()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(f"<166>1 - asa1 - - - - {BUILT_TCP}".encode(), ("127.0.0.1", lst.port))
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline, lst.stats()
            time.sleep(0.02)
        assert got[0]["event"] == "create"
        stop.set()
        th.join(POLL_S + 2)
        assert not th.is_alive()
        u.close()
