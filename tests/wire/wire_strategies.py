"""Shared test data for tests/wire: one realistic example per record type, and hypothesis
strategies that generate valid records of any type straight from ``wire.spec.SPECS`` (so a
new field or type is covered without touching the tests)."""

from __future__ import annotations

import base64
import copy
from typing import Any

from hypothesis import strategies as st

from wire.addresses import canonical_ip, mac_from_bytes
from wire.constraints import Format
from wire.formats import PROTO_VALUES
from wire.limits import MAX_TS, MIN_TS
from wire.spec import SPECS, FieldSpec, RecordSpec
from wire.text import wire_text

FLOW = {
    "uid": "CHhAvVGS1DHFjwGM9",
    "proto": "tcp",
    "src_ip": "192.168.1.23",
    "src_port": 51234,
    "dst_ip": "2001:db8::1",
    "dst_port": 443,
    "vlan": 100,
    "inner_vlan": None,
}

_EXAMPLES: dict[str, dict[str, Any]] = {
    "session": {
        **FLOW, "type": "session", "ts": 1700000000.123456, "src_mac": "00:1b:21:3a:4f:5e",
        "dst_mac": "f4:8e:38:00:11:22", "service": "tls", "duration": 12.000731, "orig_bytes": 1523,
        "resp_bytes": 88213, "orig_pkts": 21, "resp_pkts": 70, "orig_ip_bytes": 2627,
        "resp_ip_bytes": 91853, "missed_bytes": 0, "community_id": "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "conn_state": "SF", "history": "ShADadFf", "nat_ip": "203.0.113.9", "nat_port": 40001,
        "account": "张三", "blocked": False, "interim": False,
    },
    "http": {
        **FLOW, "proto": "tcp", "dst_ip": "198.51.100.80", "dst_port": 80, "type": "http",
        "ts": 1700000001.5, "trans_depth": 1, "method": "POST", "host": "bbs.example.cn",
        "uri": "/post?title=%E4%BD%A0%E5%A5%BD", "referrer": None, "version": "1.1",
        "user_agent": "Mozilla/5.0", "status_code": 200, "status_msg": "OK", "request_body_len": 532,
        "response_body_len": 1024, "req_content_type": "application/x-www-form-urlencoded",
        "resp_content_type": "text/html; charset=gbk", "username": None, "account": "李四",
    },
    "dns": {
        **FLOW, "proto": "udp", "dst_ip": "8.8.8.8", "dst_port": 53, "type": "dns", "ts": 1700000002.0,
        "trans_id": 4242, "query": "www.example.cn", "qclass": 1, "qtype": 1, "qtype_name": "A",
        "rcode": 0, "rcode_name": "NOERROR", "AA": False, "TC": False, "RD": True, "RA": True,
        "answers": ["93.184.216.34", "www.example.cn.cdn.net"], "ttls": [300.0, 60.0], "rejected": False,
    },
    "tls": {
        **FLOW, "type": "tls", "ts": 1700000003.25, "server_name": "weibo.com", "version": "TLSv13",
        "next_protocol": "h2", "established": True,
    },
    "smtp": {
        **FLOW, "dst_port": 25, "type": "smtp", "ts": 1700000004.0, "trans_depth": 1,
        "helo": "mail.example.cn", "mailfrom": "<a@example.cn>", "rcptto": ["<b@example.org>"],
        "from": "\"王五\" <a@example.cn>", "to": ["b@example.org"], "cc": [], "subject": "会议通知",
        "user": "a@example.cn", "tls": False,
    },
    "mailbox": {
        **FLOW, "dst_port": 143, "type": "mailbox", "ts": 1700000005.0, "protocol": "imap",
        "user": "wangwu", "login_ok": None, "commands": ["CAPABILITY", "LOGIN", "SELECT"], "tls": False,
    },
    "ftp": {
        **FLOW, "dst_port": 21, "type": "ftp", "ts": 1700000006.0, "user": "anonymous",
        "command": "RETR", "arg": "/pub/文件.txt", "reply_code": 226, "reply_msg": "Transfer complete",
        "file_size": 1048576,
    },
    "ssh": {
        **FLOW, "dst_port": 22, "type": "ssh", "ts": 1700000006.5, "version": 2, "auth_success": True,
        "auth_attempts": 1, "direction": "OUTBOUND", "client": "SSH-2.0-OpenSSH_9.2p1",
        "server": "SSH-2.0-OpenSSH_8.4p1", "cipher_alg": "chacha20-poly1305@openssh.com",
        "mac_alg": "hmac-sha2-256", "compression_alg": "none", "kex_alg": "curve25519-sha256",
        "host_key_alg": "ssh-ed25519",
        "host_key_fingerprint": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
    },
    "dhcp": {
        "type": "dhcp", "ts": 1700000007.0, "uids": ["C1", "C2"], "client_addr": "192.168.1.23",
        "server_addr": "192.168.1.1", "mac": "00:1b:21:3a:4f:5e", "host_name": "laptop-7",
        "domain": "lan", "requested_addr": None, "assigned_addr": "192.168.1.23", "lease_time": 86400.0,
        "msg_types": ["DISCOVER", "OFFER", "REQUEST", "ACK"],
    },
    "radius": {
        **FLOW, "proto": "udp", "dst_ip": "10.0.0.2", "dst_port": 1813, "type": "radius",
        "ts": 1700000008.0, "code": "Accounting-Request", "status_type": "Start", "username": "zhangsan",
        "framed_addr": "100.64.3.7", "calling_station_id": "13800138000",
        "called_station_id": "00-1B-21-3A-4F-5E:CorpWiFi", "nas_ip": "10.0.0.1",
        "acct_session_id": "5F3A0001", "session_time": None, "input_octets": None, "output_octets": None,
        "result": "success",
    },
    "pppoe": {
        "type": "pppoe", "ts": 1700000009.0, "src_mac": "00:1b:21:3a:4f:5e", "dst_mac": "ff:ff:ff:ff:ff:ff",
        "code": "PADI", "session_id": 0, "service_name": "", "ac_name": None, "username": None,
    },
    "login": {
        "type": "login", "ts": 1700000010.0, "event": "logout", "account": "zhangsan",
        "ip": "100.64.3.7", "mac": "00:1b:21:3a:4f:5e", "calling_station": "13800138000",
        "source": "radius", "session_id": "5F3A0001", "duration": 3600.5,
    },
    "nat": {
        "type": "nat", "ts": 1700000011.0, "event": "create", "proto": "tcp", "inside_ip": "192.168.1.23",
        "inside_port": 51234, "outside_ip": "203.0.113.9", "outside_port": 40001,
        "remote_ip": "198.51.100.80", "remote_port": 80,
    },
    "alert": {
        **FLOW, "type": "alert", "ts": 1700000012.0, "rule_id": "gambling:17", "ruleset_version": "2024.06.1",
        "category": "gambling", "severity": 3, "action": "block", "blocked": True, "field": "http.uri",
        "keyword": "赌博", "encoding": "url", "snippet": "…title=赌博网站…", "account": None,
    },
    "weird": {"type": "weird", "ts": 1700000013.0, "name": "truncated_header", "detail": None},
    "audit": {
        "type": "audit", "ts": 1700000014.0, "actor": "admin", "action": "ruleset.swap",
        "target": "ruleset 2024.06.1", "detail": None, "result": "ok",
    },
    "registration": {
        "type": "registration", "ts": 1700000015.0, "account": "zhangsan", "name": "张三",
        "id_type": "居民身份证", "id_number": "110101199003070000", "phone": "13800138000",
        "mac": "00:1b:21:3a:4f:5e", "ip": None,
    },
    "publish": {
        "type": "publish", "ts": 1700000017.0, "uid": "CpUb1", "proto": "tcp", "src_ip": "10.0.0.9",
        "src_port": 52110, "dst_ip": "10.0.0.80", "dst_port": 80, "vlan": None, "inner_vlan": None,
        "trans_depth": 1, "method": "POST", "host": "bbs.example.cn", "uri": "/post.php",
        "content_type": "application/x-www-form-urlencoded", "charset": "gb18030", "body_len": 52,
        "fields": ["title", "body"], "text": "title=你好\nbody=今天天气很好", "text_len": 22,
        "fields_dropped": 0, "account": None,
    },
    "stats": {
        "type": "stats", "ts": 1700000016.0, "interval": 60.0, "packets": 1234567, "bytes": 987654321,
        "kernel_drops": 0, "flows_active": 3120, "records_out": 45678, "records_dropped": 0,
        "spool_records": 1200, "spool_bytes": 524288, "upload_lag_s": 0.8, "ruleset_version": "2024.06.1",
    },
}


def example(rtype: str) -> dict[str, Any]:
    """A fresh copy of the example record of ``rtype`` (safe to mutate)."""
    return copy.deepcopy(_EXAMPLES[rtype])


def all_examples() -> list[dict[str, Any]]:
    return [example(t) for t in _EXAMPLES]


# --- strategies derived from the spec ---------------------------------------------------------

#: Text without surrogates or NUL, often non-ASCII: Chinese, and strings decoded the way
#: SCHEMA.md asks (GB18030, or UTF-8 with backslashreplace for bytes that are neither; a NUL
#: byte written \x00: ``wire.text.wire_text``).
_text_chars = st.characters(codec="utf-8", blacklist_characters="\x00")
_chinese = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), max_size=20)
_undecodable = st.binary(max_size=20).map(wire_text)
_gb18030 = st.sampled_from(["你好世界".encode("gb18030"), b"\x81\x30\x81\x30abc"]).map(
    lambda b: b.decode("gb18030")
)
TEXT = st.one_of(st.text(_text_chars, max_size=40), _chinese, _undecodable, _gb18030)

FINITE = st.floats(allow_nan=False, allow_infinity=False)
#: Timestamps with microsecond precision, the way the agent takes them from packets.
TIMESTAMPS = st.integers(int(MIN_TS * 1e6), int(MAX_TS * 1e6)).map(lambda us: us / 1e6)


def _ip() -> st.SearchStrategy[str]:
    return st.ip_addresses().map(lambda a: canonical_ip(str(a)))


def value_strategy(f: FieldSpec) -> st.SearchStrategy[Any]:
    """Valid non-missing values of one field."""
    kind = f.types[0]
    base: st.SearchStrategy[Any]
    if f.name == "ts":
        base = TIMESTAMPS
    elif f.choices is not None:
        base = st.sampled_from(sorted(f.choices))
    elif f.fmt is Format.IP:
        base = _ip()
    elif f.fmt is Format.MAC:
        base = st.binary(min_size=6, max_size=6).map(mac_from_bytes)
    elif f.fmt is Format.PROTO:
        base = st.sampled_from(sorted(PROTO_VALUES))
    elif f.fmt is Format.COMMUNITY_ID:
        base = st.binary(min_size=20, max_size=20).map(lambda b: "1:" + base64.b64encode(b).decode())
    elif kind is str:
        base = TEXT
    elif kind is int:
        assert f.lo is not None and f.hi is not None  # wire.spec bounds every int field
        base = st.integers(int(f.lo), int(f.hi))
    elif kind is float:
        lo = -(2**53) if f.lo is None else int(f.lo)  # durations: >= 0
        hi = 2**53 if f.hi is None else min(2**53, int(f.hi))  # timestamps other than ts: <= MAX_TS
        floats = FINITE if f.lo is None and f.hi is None else st.floats(
            min_value=f.lo, max_value=f.hi, allow_nan=False, allow_infinity=False)
        base = floats | st.integers(lo, hi)
    elif kind is bool:
        base = st.booleans()
    elif f.items == (str,):
        base = st.lists(TEXT, max_size=5)
    else:
        base = st.lists(FINITE, max_size=5)
    return st.none() | base if f.nullable else base


def record_strategy(spec: RecordSpec) -> st.SearchStrategy[dict[str, Any]]:
    """Valid records of one type (optional fields sometimes absent)."""
    required = {n: (st.just(spec.name) if n == "type" else value_strategy(f))
                for n, f in spec.fields.items() if f.required}
    optional = {n: value_strategy(f) for n, f in spec.fields.items() if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


ANY_RECORD = st.one_of([record_strategy(s) for s in SPECS.values()])

#: Values of every JSON/msgpack-ish shape, plus Python-only ones, for mutation and fuzz tests.
WILD_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | st.binary(max_size=5)
    | st.sampled_from(["", "tcp", "6", "10.0.0.1", "010.0.0.1", "::1", "AA:BB:CC:DD:EE:FF", "\udcff",
                       "x" * 9000, "Start", "login", 2**63, -1, 65536, float("nan"), True]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
