"""Tests for agent.protocols.dhcp: hand-built messages, Zeek timing, fuzzing and the corpus."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_streams import zeek_rows

from agent.decode.errors import DecodeError
from agent.protocols import dhcp
from agent.protocols.dhcp import DhcpTracker, parse_message
from wire.validate import validate_record

T0 = 1_700_000_000.0
MAC = "02:00:5e:10:00:01"
COOKIE = b"\x63\x82\x53\x63"


def opt(code: int, value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return bytes([code, len(raw)]) + raw


def ip(a: str) -> bytes:
    return socket.inet_aton(a)


def msg(
    mtype: int | None,
    xid: int = 0x1234,
    *opts: bytes,
    op: int | None = None,
    yiaddr: str = "0.0.0.0",
    chaddr: str = MAC,
    sname: bytes = b"",
    file: bytes = b"",
    end: bool = True,
) -> bytes:
    if op is None:
        op = 2 if mtype in (2, 5, 6) else 1
    hw = bytes.fromhex(chaddr.replace(":", ""))
    head = struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0) + ip("0.0.0.0") + ip(yiaddr) + ip("0.0.0.0") * 2
    head += hw.ljust(16, b"\0") + sname.ljust(64, b"\0") + file.ljust(128, b"\0")
    body = (opt(53, bytes([mtype])) if mtype is not None else b"") + b"".join(opts)
    return head + COOKIE + body + (b"\xff" if end else b"")


def valid(rec: dict[str, Any]) -> dict[str, Any]:
    validate_record(rec)
    return rec


def feed(t: DhcpTracker, *msgs: tuple[float, str, bytes, str | None, str | None]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ts, uid, data, src, dst in msgs:
        out += t.message(ts, uid, data, src, dst)
    return [valid(r) for r in out]


def dora(xid: int = 0x1234, t0: float = T0) -> list[tuple[float, str, bytes, str | None, str | None]]:
    c, s = "Cclient", "Cserver"
    return [
        (t0, c, msg(1, xid, opt(12, "laptop"), opt(50, ip("10.1.0.50"))), "0.0.0.0", "255.255.255.255"),
        (
            t0 + 0.1,
            s,
            msg(2, xid, opt(51, struct.pack("!I", 600)), yiaddr="10.1.0.50"),
            "10.1.0.1",
            "10.1.0.50",
        ),
        (t0 + 1.0, c, msg(3, xid, opt(12, "laptop"), opt(50, ip("10.1.0.50"))), "0.0.0.0", "255.255.255.255"),
        (
            t0 + 1.1,
            s,
            msg(5, xid, opt(51, struct.pack("!I", 3600)), opt(15, "corp.example\0"), yiaddr="10.1.0.50"),
            "10.1.0.1",
            "10.1.0.50",
        ),
    ]


# -- Zeek's field rules ----------------------------------------------------------------


def test_dora_one_record() -> None:
    t = DhcpTracker()
    assert feed(t, *dora()) == []  # written at the aggregate timeout, not on ACK
    (r,) = [valid(x) for x in t.close(T0 + 2)]
    assert r == {
        "type": "dhcp",
        "ts": T0,
        "uids": ["Cclient", "Cserver"],
        "client_addr": "10.1.0.50",  # the assigned address: the client never used one
        "server_addr": "10.1.0.1",
        "mac": MAC,
        "host_name": "laptop",
        "domain": "corp.example",  # trailing NUL stripped
        "requested_addr": "10.1.0.50",
        "assigned_addr": "10.1.0.50",
        "lease_time": 3600.0,  # the last server message wins
        "msg_types": ["DISCOVER", "OFFER", "REQUEST", "ACK"],
    }


def test_extras() -> None:
    t = DhcpTracker(extras=True)
    relay = opt(82, opt(1, "eth0/1/2:vlan10") + opt(2, b"\x13") + opt(6, "-subID-"))
    fqdn = opt(81, b"\x05\x00\x00" + b"\x04host\x07example\x00")
    feed(t, (T0, "C1", msg(3, 7, fqdn, relay), "10.9.0.1", "10.1.0.1"))
    feed(t, (T0 + 0.5, "C1", msg(5, 7, yiaddr="10.9.0.7"), "10.1.0.1", "10.9.0.1"))
    (r,) = t.close(T0 + 1)
    assert r["client_fqdn"] == "host.example"
    assert (r["circuit_id"], r["agent_remote_id"], r["subscriber_id"]) == (
        "eth0/1/2:vlan10",
        "\x13",
        "-subID-",
    )
    assert r["duration"] == 0.5
    assert r["client_addr"] == "10.9.0.1"  # the relay's address, as Zeek


def test_client_id_mac_wins_over_chaddr() -> None:
    t = DhcpTracker()
    feed(
        t,
        (T0, "C1", msg(1, 9, opt(61, b"\x01" + bytes.fromhex("00163e000001")), chaddr=MAC), "0.0.0.0", None),
    )
    feed(t, (T0 + 1, "C2", msg(2, 9, yiaddr="10.0.0.9", chaddr="00:16:3e:00:00:02"), "10.0.0.1", None))
    (r,) = t.close(T0 + 2)
    assert r["mac"] == "00:16:3e:00:00:01"


def test_non_ethernet_client_id_falls_back_to_chaddr() -> None:
    t = DhcpTracker()
    feed(t, (T0, "C1", msg(7, 10, opt(61, b"\x00opaque-duid")), "10.0.0.9", "10.0.0.1"))
    (r,) = t.close(T0 + 1)
    assert (r["mac"], r["client_addr"], r["msg_types"]) == (MAC, "10.0.0.9", ["RELEASE"])


def test_server_reply_without_yiaddr_sets_no_server() -> None:
    t = DhcpTracker()
    feed(
        t,
        (T0, "C1", msg(8, 11), "10.0.0.9", "10.0.0.1"),
        (T0 + 0.01, "C1", msg(5, 11, opt(51, struct.pack("!I", 60))), "10.0.0.1", "10.0.0.9"),
    )
    (r,) = t.close(T0 + 1)
    assert (r["client_addr"], r["server_addr"], r["assigned_addr"]) == ("10.0.0.9", None, None)
    assert (r["msg_types"], r["lease_time"]) == (["INFORM", "ACK"], 60.0)


def test_unknown_and_missing_type_names() -> None:
    t = DhcpTracker()
    feed(t, (T0, "C1", msg(None, 12), None, None), (T0, "C1", msg(77, 12), None, None))
    (r,) = t.close(T0 + 1)
    assert r["msg_types"] == ["unknown-message-type-0", "unknown-message-type-77"]


def test_option_overload_and_concatenation() -> None:
    # host name split over two options (RFC 3396), the second one in the `file` field (RFC 2132 9.3)
    m = msg(1, 13, opt(52, b"\x01"), opt(12, "long-"), file=opt(12, "name") + b"\xff")
    assert parse_message(m).options[12] == b"long-name"
    t = DhcpTracker()
    feed(t, (T0, "C1", m, "0.0.0.0", None))
    assert t.close(T0 + 1)[0]["host_name"] == "long-name"


def test_missing_end_tolerated() -> None:
    assert parse_message(msg(1, 14, opt(12, "x"), end=False)).options[12] == b"x"


def test_gb18030_host_name() -> None:
    t = DhcpTracker()
    feed(t, (T0, "C1", msg(1, 15, opt(12, "王的电脑".encode("gbk"))), "0.0.0.0", None))
    assert t.close(T0 + 1)[0]["host_name"] == "王的电脑"


# -- when records are written (join_data expiration) -----------------------------------


def test_written_after_aggregate_interval() -> None:
    t = DhcpTracker()
    feed(t, (T0, "C1", msg(1, 20), "0.0.0.0", None))
    assert t.expire(T0 + 9.9) == []
    (r,) = t.expire(T0 + 10)
    assert r["msg_types"] == ["DISCOVER"]
    assert t.close(T0 + 11) == []


def test_busy_transaction_rechecked_every_5s() -> None:
    t = DhcpTracker()
    for i in range(4):  # 0, 4, 8, 12
        feed(t, (T0 + 4 * i, "C1", msg(3, 21), "0.0.0.0", None))
    assert t.expire(T0 + 19.9) == []  # checks at 10 (idle 2) and 15 (idle 3)
    (r,) = t.expire(T0 + 20)  # idle 8 > 5
    assert len(r["msg_types"]) == 4


def test_max_watch_time() -> None:
    t = DhcpTracker()
    out = []
    for i in range(20):  # a message every 2 s: never idle
        out += t.message(T0 + 2 * i, "C1", msg(3, 22), "0.0.0.0", None)
    # checks at 10, 15, ... 35: 35 - 0 > 30 writes; the messages after it start a new one
    assert [len(r["msg_types"]) for r in out] == [18]
    assert [len(r["msg_types"]) for r in t.close(T0 + 100)] == [2]


def test_message_runs_due_expiry() -> None:
    t = DhcpTracker()
    feed(t, (T0, "C1", msg(1, 23), "0.0.0.0", None))
    recs = feed(t, (T0 + 60, "C1", msg(1, 23), "0.0.0.0", None))
    assert [r["ts"] for r in recs] == [T0]  # the old one; the same xid now starts anew
    assert [r["ts"] for r in t.close(T0 + 61)] == [T0 + 60]


def test_uid_cap_writes_at_once() -> None:
    t = DhcpTracker()
    out = []
    for i in range(dhcp.MAX_UIDS_PER_RECORD):
        out += t.message(T0 + i * 0.1, f"C{i}", msg(1, 24), "0.0.0.0", None)
    assert [len(r["uids"]) for r in out] == [dhcp.MAX_UIDS_PER_RECORD]
    assert t.counters["written_at_cap"] == 1


def test_msg_type_cap_writes_at_once() -> None:
    t = DhcpTracker()
    out = []
    for i in range(dhcp.MAX_MSG_TYPES_PER_RECORD):
        out += t.message(T0 + i * 0.01, "C1", msg(1, 25), "0.0.0.0", None)
    assert [len(r["msg_types"]) for r in out] == [dhcp.MAX_MSG_TYPES_PER_RECORD]


def test_transaction_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dhcp, "MAX_TRANSACTIONS", 2)
    t = DhcpTracker()
    out = []
    for xid in range(4):
        out += t.message(T0, "C1", msg(1, xid, opt(12, f"h{xid}")), "0.0.0.0", None)
    assert [r["host_name"] for r in out] == ["h0", "h1"]
    assert [r["host_name"] for r in t.close(T0)] == ["h2", "h3"]
    assert t.counters["transactions_evicted"] == 2


# -- secrets and malformed input --------------------------------------------------------

SECRET = b"S3cr3t-DHCP-auth"


def test_no_secret_option_reaches_a_record() -> None:
    t = DhcpTracker(extras=True)
    m = msg(
        3,
        30,
        opt(90, b"\x01\x01\x00" + b"\0" * 8 + SECRET),  # RFC 3118 Authentication
        opt(43, SECRET),
        opt(60, SECRET),
        opt(77, SECRET),
        opt(125, SECRET),
        sname=SECRET,
        file=SECRET,
    )
    feed(t, (T0, "C1", m, "10.0.0.9", None))
    text = json.dumps(t.close(T0 + 1))
    assert SECRET.decode() not in text and SECRET.hex() not in text


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\x01" * 100, "DHCP_truncated"),
        (msg(1)[:239], "DHCP_truncated"),
        (msg(1)[:236] + b"\x00\x00\x00\x00" + msg(1)[240:], "DHCP_bad_cookie"),
        (msg(1, 1, b"\x0c\x09abc", end=False), "DHCP_option_past_end"),
        (msg(1, 1, b"\x0c", end=False), "DHCP_option_past_end"),
        (msg(1, 1, opt(50, b"\x01\x02\x03")), "DHCP_bad_option_length"),
        (msg(1, 1, opt(51, b"")), "DHCP_bad_option_length"),
        (msg(1, 1, opt(53, b"\x01")), "DHCP_bad_option_length"),  # two type options concatenate
        (msg(1, 1, opt(61, b"\x01")), "DHCP_bad_option_length"),
        (msg(1, 1, opt(81, b"\x00\x00")), "DHCP_bad_option_length"),
        (msg(1, 1, opt(82, b"\x01\x05ab")), "DHCP_relay_suboption_past_end"),
    ],
)
def test_malformed(data: bytes, name: str) -> None:
    with pytest.raises(DecodeError) as e:
        DhcpTracker().message(T0, "C1", data, "0.0.0.0", None)
    assert e.value.name == name


_option = st.tuples(
    st.sampled_from([1, 12, 15, 50, 51, 52, 53, 61, 81, 82, 90, 255, 0]), st.binary(max_size=12)
)
_message = st.builds(
    lambda mtype, xid, opts, cut, op, yi: msg(
        mtype, xid, *[bytes([c, len(v)]) + v for c, v in opts], op=op, yiaddr=yi
    )[: cut or None],
    st.one_of(st.none(), st.integers(0, 20)),
    st.integers(0, 3),
    st.lists(_option, max_size=6),
    st.one_of(st.just(0), st.integers(200, 300)),
    st.sampled_from([1, 2, 3]),
    st.sampled_from(["0.0.0.0", "10.0.0.5"]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 40),
            st.sampled_from(["C1", "C2"]),
            st.one_of(_message, st.binary(max_size=300)),
            st.sampled_from([None, "0.0.0.0", "10.0.0.1"]),
        ),
        max_size=10,
    ),
    st.booleans(),
)
def test_fuzz_only_decode_error(msgs: list[tuple[float, str, bytes, str | None]], extras: bool) -> None:
    t = DhcpTracker(extras=extras)
    out: list[dict[str, Any]] = []
    for dt, uid, data, src in sorted(msgs, key=lambda m: m[0]):
        with contextlib.suppress(DecodeError):
            out += t.message(T0 + dt, uid, data, src, None)
    out += t.expire(T0 + 45)
    out += t.close(T0 + 100)
    for r in out:
        if not extras:
            valid(r)


# -- corpus -------------------------------------------------------------------------

_SHARED_CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
CORPUS = Path(os.environ.get("EDGEAUDIT_CORPUS", _SHARED_CORPUS))
ZEEK = CORPUS / "zeek"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus absent")


def replay(path: Path, extras: bool = True, errors: list[str] | None = None) -> list[dict[str, Any]]:
    """Feed every UDP payload of an Ethernet pcap to one tracker; a uid per flow
    (5-tuple in either direction), as the pipeline gives.  DecodeErrors are
    collected in `errors` when given, else raised."""
    t = DhcpTracker(extras=extras)
    uids: dict[tuple[str, int, str, int], str] = {}
    out: list[dict[str, Any]] = []
    last = 0.0
    with path.open("rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            ipkt = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ipkt, dpkt.ip.IP) or not isinstance(ipkt.data, dpkt.udp.UDP):
                continue
            udp = ipkt.data
            src, dst = socket.inet_ntoa(ipkt.src), socket.inet_ntoa(ipkt.dst)
            fwd, rev = (src, udp.sport, dst, udp.dport), (dst, udp.dport, src, udp.sport)
            uid = uids.get(fwd) or uids.get(rev) or uids.setdefault(fwd, f"F{len(uids)}")
            try:
                out += t.message(ts, uid, bytes(udp.data), src, dst)
            except DecodeError as e:
                if errors is None:
                    raise
                errors.append(e.name)
            last = ts
    out += t.close(last + 1)
    return out


def zeek_escape(v: Any) -> str:
    """Render one of our values as Zeek's ASCII log writer does."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6f}"
    if isinstance(v, list):
        return ",".join(v) if v else "(empty)"
    s = str(v)
    return "".join(c if 0x20 <= ord(c) < 0x7F else "".join(f"\\x{b:02x}" for b in c.encode()) for c in s)


COLUMNS = [
    "client_addr", "server_addr", "mac", "host_name", "client_fqdn", "domain", "requested_addr",
    "assigned_addr", "lease_time", "msg_types", "duration", "circuit_id", "agent_remote_id", "subscriber_id",
]  # fmt: skip


def compare(recs: list[dict[str, Any]], rows: list[dict[str, str]]) -> None:
    """Row by row, every column Zeek logged; uids by count (their text is Zeek's own)."""
    assert len(recs) == len(rows)
    for r, z in zip(recs, rows, strict=True):
        for col in COLUMNS:
            if col in z:
                assert zeek_escape(r[col]) == z[col], col
        assert len(z["uids"].split(",")) == len(set(r["uids"])) == len(r["uids"])
    assert len({u for z in rows for u in z["uids"].split(",")}) == len({u for r in recs for u in r["uids"]})


@needs_corpus
@pytest.mark.parametrize(
    ("pcap", "baseline"),
    [
        ("dhcp.pcap", "dhcp-all-msg-types"),
        ("dhcp_inform.pcap", "inform"),
        ("dhcp_discover_param_req_and_client_id.pcap", "dhcp-discover-msg-types"),
        ("dhcp_ack_subscriber_id_and_agent_remote_id.pcap", "dhcp-ack-msg-types"),
        ("dhcp_ack_subscriber_id_and_agent_remote_id.pcap", "dhcp-sub-opts"),
    ],
)
def test_zeek_baselines(pcap: str, baseline: str) -> None:
    recs = replay(ZEEK / "Traces/dhcp" / pcap)
    rows = zeek_rows(ZEEK / "Baseline" / f"scripts.base.protocols.dhcp.{baseline}" / "dhcp.log")
    compare(recs, rows)
    for r in replay(ZEEK / "Traces/dhcp" / pcap, extras=False):
        valid(r)


@needs_corpus
def test_zeek_all_msg_types_details() -> None:
    first, release, inform = replay(ZEEK / "Traces/dhcp/dhcp.pcap", extras=False)
    assert len(first["uids"]) == 4  # the broadcast flow and three server flows
    assert release["uids"] == inform["uids"] == [first["uids"][0]]
    assert inform["lease_time"] is None  # the client's lease option is not the server's


@needs_corpus
def test_suricata_dhcp_eve_extended() -> None:
    (r,) = replay(CORPUS / "suricata-verify/dhcp-eve-extended/input.pcap", extras=False)
    assert (r["mac"], r["host_name"]) == ("00:11:32:17:49:f0", "nas1")  # Suricata: "nas1\u0000"
    assert (r["client_addr"], r["assigned_addr"], r["server_addr"]) == ("10.16.1.4", "10.16.1.4", "10.16.1.1")
    assert (r["lease_time"], r["msg_types"]) == (3600.0, ["REQUEST", "ACK"])
    (r,) = replay(CORPUS / "suricata-verify/dhcp-eve-extended-option-60/input.pcap", extras=False)
    assert (r["mac"], r["host_name"], r["requested_addr"]) == (
        "28:cf:da:dc:8d:76",
        "NicksMacBook",
        "192.168.1.111",
    )
    assert (r["client_addr"], r["msg_types"]) == (None, ["REQUEST"])


@needs_corpus
@pytest.mark.parametrize(
    "pcap", ["dhcp-rfc3004.pcap", "dhcp-rfc5859.pcap", "dhcp-option-33.pcap", "dhcp-mud.pcap"]
)
def test_tcpdump_captures_decode(pcap: str) -> None:
    recs = replay(CORPUS / "tcpdump" / pcap, extras=False)
    assert recs and all(r["mac"] for r in recs)


@needs_corpus
def test_tcpdump_leasequery_with_two_mangled_packets() -> None:
    errors: list[str] = []
    recs = replay(CORPUS / "tcpdump/dhcp-rfc4388.pcap", extras=False, errors=errors)
    assert errors == ["DHCP_bad_cookie", "DHCP_bad_cookie"]  # tcpdump: "Vendor-#0x53633501", "#0x82536335"
    types = {t for r in recs for t in r["msg_types"]}
    assert {"LEASEQUERY", "LEASEACTIVE", "LEASEUNKNOWN"} <= types
    for r in recs:
        valid(r)
