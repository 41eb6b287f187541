"""wire.session_line gives exactly the general encoder's text, or declines."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wire.jsonl import encode_line
from wire.session_line import SESSION_KEYS, session_line

GENERAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False)

BASE: dict[str, Any] = {
    "type": "session", "ts": 1700000000.123456, "uid": "CAbcd-_12345678901", "proto": "tcp",
    "src_ip": "10.0.0.1", "src_port": 40000, "dst_ip": "2001:db8::1", "dst_port": 80, "vlan": None,
    "inner_vlan": 7, "src_mac": "00:11:22:33:44:55", "dst_mac": None, "service": "http",
    "duration": 0.211484, "orig_bytes": 136, "resp_bytes": 5007, "orig_pkts": 7, "resp_pkts": 7,
    "orig_ip_bytes": 512, "resp_ip_bytes": 5379, "missed_bytes": 0,
    "community_id": "1:yvyB8h+3dnggTZW0UEITWCst97w=", "conn_state": "SF", "history": "ShADadFf",
    "nat_ip": None, "nat_port": None, "account": "张三", "blocked": False, "interim": True,
}
assert tuple(BASE) == SESSION_KEYS

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(['a"b', "a\\b", "\x00", "\x7f", "é", "tab\t", "ok"]),
    st.lists(st.integers(), max_size=2),
)


def test_typical_record_matches() -> None:
    r = dict(BASE, account="alice")
    assert session_line(r) == GENERAL.encode(r)
    assert encode_line(r) == (GENERAL.encode(r) + "\n").encode()


def test_non_ascii_and_escapes_fall_back_to_the_general_encoder() -> None:
    assert session_line(BASE) is None  # "张三" is not ASCII
    assert encode_line(BASE) == (GENERAL.encode(BASE) + "\n").encode("utf-8")
    for bad in ('x"y', "x\\y", "x\ny"):
        assert session_line(dict(BASE, history=bad)) is None


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SESSION_KEYS[1:]), VALUES)
def test_any_single_change_matches_or_declines(key: str, value: Any) -> None:
    r = dict(BASE, account=None)
    r[key] = value
    fast = session_line(r)
    if fast is not None:
        assert fast == GENERAL.encode(r)


@settings(max_examples=100, deadline=None)
@given(st.permutations(list(SESSION_KEYS)))
def test_other_key_orders_decline(order: list[str]) -> None:
    r = {k: BASE[k] for k in order}
    r["account"] = None
    fast = session_line(r)
    assert fast is None or (tuple(r) == SESSION_KEYS and fast == GENERAL.encode(r))


def test_missing_or_extra_fields_decline() -> None:
    r = dict(BASE, account=None)
    del r["history"]
    assert session_line(r) is None
    assert session_line(dict(BASE, account=None, extra=1)) is None
