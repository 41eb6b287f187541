"""validate_record: every rule accepts the valid and refuses, with a clear message, the invalid."""

from __future__ import annotations

import collections
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import ANY_RECORD, FLOW, WILD_VALUES, all_examples, example, record_strategy

from wire import ValidationError, validate_record
from wire.addresses import canonical_ip, ip_from_packed, is_canonical_ip, is_canonical_mac, mac_from_bytes
from wire.fastchecks import FAST_CHECKS
from wire.fastpath import GENERATED, fast_check_source, module_source
from wire.limits import MAX_FIELDS, MAX_LIST_ITEM_LEN, MAX_LIST_LEN, MAX_SNIPPET_LEN, MAX_STRING_LEN
from wire.spec import SPECS
from wire.validate import explain_record


def _reference_ok(rec: Any) -> bool:
    try:
        explain_record(rec)
    except ValidationError:
        return False
    return True


# --- valid records ---------------------------------------------------------------------------


@pytest.mark.parametrize("rec", all_examples(), ids=lambda r: r["type"])
def test_examples_are_valid_and_returned_unchanged(rec: dict[str, Any]) -> None:
    assert validate_record(rec) is rec
    assert FAST_CHECKS[rec["type"]](rec)


@pytest.mark.parametrize("name", sorted(SPECS))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_records_of_every_type_are_valid(name: str, data: st.DataObject) -> None:
    rec = data.draw(record_strategy(SPECS[name]))
    assert validate_record(rec) is rec
    assert FAST_CHECKS[name](rec), fast_check_source(SPECS[name])


def test_weird_without_flow_id_or_with_null_flow_id() -> None:
    bare = {"type": "weird", "ts": 1.0, "name": "bad_IP_checksum", "detail": None}
    validate_record(bare)
    validate_record({**bare, **{k: None for k in FLOW}})
    validate_record({**bare, **FLOW})
    validate_record({**bare, "uid": "C1", "src_ip": None})


def test_alert_without_flow_id() -> None:
    rec = {k: v for k, v in example("alert").items() if k not in FLOW}
    validate_record(rec)


def test_login_and_logout_share_the_login_type() -> None:
    rec = example("login")
    validate_record({**rec, "event": "login", "duration": None})
    validate_record({**rec, "event": "logout"})
    with pytest.raises(ValidationError, match="event"):
        validate_record({**rec, "event": "logon"})
    with pytest.raises(ValidationError, match="unknown record type 'logout'"):
        validate_record({**rec, "type": "logout"})


def test_int_is_accepted_for_float_fields() -> None:
    validate_record({**example("session"), "ts": 1700000000, "duration": 0})
    validate_record({**example("dns"), "ttls": [300, 1.5]})


def test_limits_are_inclusive() -> None:
    validate_record({**example("http"), "uri": "x" * MAX_STRING_LEN, "src_port": 0, "dst_port": 65535})
    validate_record({**example("alert"), "snippet": "字" * MAX_SNIPPET_LEN})
    validate_record({**example("dns"), "answers": ["a" * MAX_LIST_ITEM_LEN] * MAX_LIST_LEN})
    validate_record({**example("session"), "vlan": 4095, "inner_vlan": 0, "orig_bytes": 2**63 - 1})
    validate_record({**example("session"), "ts": 0.0})
    validate_record({**example("session"), "ts": 4102444800.0})


def test_dict_subclass_is_accepted_without_mutation() -> None:
    rec = collections.OrderedDict(example("tls"))
    assert validate_record(rec) is rec
    dd: collections.defaultdict[str, Any] = collections.defaultdict(lambda: None, example("tls"))
    del dd["server_name"]
    with pytest.raises(ValidationError, match="missing field 'server_name'"):
        validate_record(dd)
    assert "server_name" not in dd


# --- every rule, one failing example each -------------------------------------------------------

S = example("session")
BAD: list[tuple[str, Any, str]] = [
    # (id, record, expected message fragment)
    ("not a dict", [("type", "session")], "a record must be a map, got list"),
    ("None", None, "a record must be a map, got null"),
    ("no type", {"ts": 1.0}, "record has no 'type' field"),
    ("type not str", {**S, "type": 3}, "record field 'type' must be str, got int"),
    ("unknown type", {**S, "type": "sessions"}, "unknown record type 'sessions'"),
    ("too many fields", {**S, **{f"x{i}": 1 for i in range(MAX_FIELDS)}}, f"more than {MAX_FIELDS} fields"),
    ("unknown field", {**S, "password": "hunter2"}, "session record: unknown field 'password'"),
    ("non-str key", {**S, 7: 1}, "session record: unknown field 7"),
    ("missing field", {k: v for k, v in S.items() if k != "history"}, "session record: missing field 'histo"),
    ("missing fields", {k: v for k, v in S.items() if k not in ("uid", "ts")}, "missing fields 'ts', 'uid'"),
    ("missing flow field", {k: v for k, v in S.items() if k != "vlan"}, "missing field 'vlan'"),
    ("null not allowed", {**S, "uid": None}, "field 'uid' must be str, got null"),
    ("null flow id on session", {**S, "src_ip": None}, "field 'src_ip' must be str, got null"),
    ("str for int", {**S, "orig_bytes": "12"}, "field 'orig_bytes' must be int, got str"),
    ("bool for int", {**S, "src_port": True}, "field 'src_port' must be int, got bool"),
    ("bool for nullable int", {**S, "nat_port": False}, "field 'nat_port' must be int or null, got bool"),
    ("bool for float", {**S, "duration": True}, "field 'duration' must be float, got bool"),
    ("float for int", {**S, "resp_pkts": 3.0}, "field 'resp_pkts' must be int, got float"),
    ("int for bool", {**S, "blocked": 0}, "field 'blocked' must be bool, got int"),
    ("str for bool", {**S, "interim": "false"}, "field 'interim' must be bool, got str"),
    ("bytes for str", {**S, "history": b"ShAD"}, "field 'history' must be str, got bytes"),
    ("str subclass", {**S, "history": type("S", (str,), {})("x")}, "field 'history' must be str, got S"),
    ("ts NaN", {**S, "ts": float("nan")}, "field 'ts' must be within"),
    ("ts inf", {**S, "ts": float("inf")}, "field 'ts' must be within"),
    ("ts negative", {**S, "ts": -1.0}, "field 'ts' must be within"),
    ("ts in ms", {**S, "ts": 1700000000123.0}, "field 'ts' must be within"),
    ("ts str", {**S, "ts": "1700000000.1"}, "field 'ts' must be float, got str"),
    ("ts missing", {k: v for k, v in S.items() if k != "ts"}, "missing field 'ts'"),
    ("float NaN", {**S, "duration": float("nan")}, "field 'duration' must be finite"),
    ("float -inf", {**S, "duration": float("-inf")}, "field 'duration' must be finite"),
    ("float-field huge int", {**S, "duration": 10**400}, "field 'duration' must be finite"),
    ("unbounded float NaN", {**example("dhcp"), "lease_time": float("nan")}, "'lease_time' must be finite;"),
    # SCHEMA.md: a duration is last packet - first (session), logout - login: never negative
    ("negative duration", {**S, "duration": -10.0}, "'duration' must be finite and at least 0.0; got -10.0"),
    ("negative login duration", {**example("login"), "duration": -1}, "'duration' must be finite and at"),
    ("negative dhcp duration", {**example("dhcp"), "duration": -0.5}, "'duration' must be finite and at"),
    # no NUL in any string: a C-string consumer of the stored text would cut it there
    ("NUL", {**example("http"), "uri": "/a\x00b"}, "field 'uri' contains a NUL character"),
    ("NUL nullable", {**example("http"), "host": "\x00"}, "field 'host' contains a NUL character"),
    ("NUL non-ASCII", {**example("smtp"), "subject": "主题\x00"}, "field 'subject' contains a NUL"),
    ("NUL list item", {**example("smtp"), "rcptto": ["a@b", "c\x00@d"]}, "'rcptto[1]' contains a NUL"),
    ("NUL ip", {**S, "src_ip": "10.0.0.1\x00"}, "field 'src_ip' must be an IP"),
    ("NUL enum", {**S, "conn_state": "SF\x00"}, "field 'conn_state' must be one of"),
    ("NUL proto", {**S, "proto": "47\x00"}, "field 'proto' must be tcp"),
    ("int64 overflow", {**example("alert"), "severity": 2**63}, "field 'severity' must be within"),
    ("int64 underflow", {**example("alert"), "severity": -(2**63) - 1}, "field 'severity' must be within"),
    ("port > 65535", {**S, "dst_port": 65536}, "field 'dst_port' must be within 0..65535"),
    ("port < 0", {**S, "src_port": -1}, "field 'src_port' must be within 0..65535"),
    ("nat port", {**S, "nat_port": 70000}, "field 'nat_port' must be within 0..65535"),
    ("vlan > 4095", {**S, "vlan": 4096}, "field 'vlan' must be within 0..4095"),
    ("negative counter", {**S, "missed_bytes": -5}, "field 'missed_bytes' must be within 0.."),
    ("trans_depth 0", {**example("http"), "trans_depth": 0}, "field 'trans_depth' must be within 1.."),
    ("dns id", {**example("dns"), "trans_id": 65536}, "field 'trans_id' must be within 0..65535"),
    ("string too long", {**example("http"), "uri": "x" * (MAX_STRING_LEN + 1)}, "'uri' is longer than 8192"),
    ("snippet too long", {**example("alert"), "snippet": "x" * (MAX_SNIPPET_LEN + 1)}, "longer than 200"),
    ("lone surrogate", {**example("http"), "uri": "/a\udcff"}, "field 'uri' contains a lone surrogate"),
    ("enum", {**S, "conn_state": "sf"}, "field 'conn_state' must be one of OTH, REJ"),
    ("enum nullable", {**example("radius"), "status_type": "stop"}, "field 'status_type' must be one of"),
    ("enum mailbox", {**example("mailbox"), "protocol": "smtp"}, "must be one of imap, pop3"),
    ("enum login source", {**example("login"), "source": "ldap"}, "field 'source' must be one of"),
    ("enum pppoe", {**example("pppoe"), "code": "PADM"}, "field 'code' must be one of"),
    ("enum nat", {**example("nat"), "event": "update"}, "field 'event' must be one of"),
    ("enum alert", {**example("alert"), "action": "drop"}, "field 'action' must be one of"),
    ("ip leading zero", {**S, "src_ip": "192.168.001.23"}, "field 'src_ip' must be an IP address in canon"),
    ("ip v6 upper", {**S, "dst_ip": "2001:DB8::1"}, "field 'dst_ip' must be an IP address"),
    ("ip v6 uncompressed", {**S, "dst_ip": "2001:db8:0:0:0:0:0:1"}, "field 'dst_ip' must be an IP"),
    ("ip v6 one-group ::", {**S, "dst_ip": "2001:db8::1:1:1:1:1"}, "field 'dst_ip' must be an IP"),
    ("ip zone id", {**S, "dst_ip": "fe80::1%eth0"}, "field 'dst_ip' must be an IP"),
    ("ip mapped hex", {**S, "dst_ip": "::ffff:c000:207"}, "field 'dst_ip' must be an IP"),
    ("ip garbage", {**S, "src_ip": "example.com"}, "field 'src_ip' must be an IP"),
    ("ip spaces", {**S, "src_ip": " 10.0.0.1"}, "field 'src_ip' must be an IP"),
    ("ip v4 300", {**S, "src_ip": "10.0.0.300"}, "field 'src_ip' must be an IP"),
    ("ip nullable bad", {**S, "nat_ip": "203.0.113.009"}, "field 'nat_ip' must be an IP"),
    ("ip nat record", {**example("nat"), "outside_ip": ""}, "field 'outside_ip' must be an IP"),
    ("ip dhcp", {**example("dhcp"), "assigned_addr": "1.2.3"}, "field 'assigned_addr' must be an IP"),
    ("mac upper", {**S, "src_mac": "00:1B:21:3A:4F:5E"}, "field 'src_mac' must be a lower-case MAC"),
    ("mac dashes", {**S, "dst_mac": "00-1b-21-3a-4f-5e"}, "field 'dst_mac' must be a lower-case MAC"),
    ("mac short", {**example("pppoe"), "src_mac": "00:1b:21:3a:4f"}, "field 'src_mac' must be a lower-case"),
    ("proto number of named", {**S, "proto": "6"}, "field 'proto' must be tcp, udp, icmp, icmp6"),
    ("proto upper", {**S, "proto": "TCP"}, "field 'proto' must be tcp"),
    ("proto 256", {**example("nat"), "proto": "256"}, "field 'proto' must be tcp"),
    ("proto leading zero", {**S, "proto": "047"}, "field 'proto' must be tcp"),
    ("community id", {**S, "community_id": "1:abc"}, "field 'community_id' must be a Community ID"),
    ("list is tuple", {**example("dns"), "answers": ("a",)}, "field 'answers' must be list, got tuple"),
    ("list null", {**example("dns"), "answers": None}, "field 'answers' must be list, got null"),
    ("list too long", {**example("dns"), "answers": ["a"] * (MAX_LIST_LEN + 1)}, "more than 1024 items"),
    ("list item type", {**example("smtp"), "rcptto": ["a", 1]}, "field 'rcptto[1]' must be str, got int"),
    ("list item null", {**example("smtp"), "cc": [None]}, "field 'cc[0]' must be str, got null"),
    ("list item long", {**example("dhcp"), "uids": ["C" * (MAX_LIST_ITEM_LEN + 1)]}, "'uids[0]' is longer"),
    ("list item surrogate", {**example("mailbox"), "commands": ["\ud800"]}, "'commands[0]' contains a lone"),
    ("float list NaN", {**example("dns"), "ttls": [1.0, float("nan")]}, "field 'ttls[1]' must be finite"),
    ("float list bool", {**example("dns"), "ttls": [True]}, "field 'ttls[0]' must be float, got bool"),
    ("float list str", {**example("dns"), "ttls": ["300"]}, "field 'ttls[0]' must be float, got str"),
    ("nested dict", {**example("weird"), "detail": {"a": 1}}, "field 'detail' must be str or null, got dict"),
    ("weird flow bad", {**example("weird"), "src_port": 70000}, "field 'src_port' must be within"),
    ("weird flow type", {**example("weird"), "uid": 5}, "field 'uid' must be str or null, got int"),
    ("alert flow bad", {**example("alert"), "dst_ip": "1.2.3.04"}, "field 'dst_ip' must be an IP"),
    ("mailbox login_ok", {**example("mailbox"), "login_ok": 1}, "'login_ok' must be bool or null, got int"),
]


@pytest.mark.parametrize(("rec", "fragment"), [(r, f) for _, r, f in BAD], ids=[i for i, _, _ in BAD])
def test_rule_violation_is_refused_with_a_clear_message(rec: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_record(rec)
    assert fragment in str(info.value)
    assert not _reference_ok(rec)
    if isinstance(rec, dict) and rec.get("type") in FAST_CHECKS:
        assert not FAST_CHECKS[rec["type"]](rec)


def test_error_carries_record_type_and_field() -> None:
    with pytest.raises(ValidationError) as info:
        validate_record({**example("http"), "status_code": "200"})
    assert info.value.record_type == "http"
    assert info.value.field == "status_code"
    assert str(info.value) == "http record: field 'status_code' must be int or null, got str"


def test_messages_do_not_echo_free_text() -> None:
    secret = "110101199003071234" * 500
    with pytest.raises(ValidationError) as info:
        validate_record({**example("registration"), "id_number": secret})
    assert "1101011990" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        validate_record({**example("registration"), "id_number": 110101199003071234})
    assert "1101011990" not in str(info.value)


def test_long_bad_values_are_clipped_in_messages() -> None:
    with pytest.raises(ValidationError) as info:
        validate_record({**S, "conn_state": "Q" * 10_000})
    assert len(str(info.value)) < 300
    with pytest.raises(ValidationError) as info:
        validate_record({**S, "unknown" * 1000: 1})
    assert len(str(info.value)) < 300
    with pytest.raises(ValidationError) as info:
        validate_record({**example("alert"), "severity": 10**5000})
    assert "too large to show" in str(info.value)


# --- the fast path agrees with the reference interpreter -------------------------------------


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    rec=ANY_RECORD,
    action=st.sampled_from(["set", "delete", "add"]),
    pick=st.integers(0, 100),
    value=WILD_VALUES,
    key=st.one_of(st.text(max_size=12), st.integers()),
)
def test_fast_path_agrees_with_reference(
    rec: dict[Any, Any], action: str, pick: int, value: Any, key: Any
) -> None:
    keys = list(rec)
    target = keys[pick % len(keys)]
    if action == "set":
        rec[target] = value
    elif action == "delete":
        del rec[target]
    else:
        rec[key] = value
    ok = _reference_ok(rec)
    rtype = rec.get("type")
    if isinstance(rtype, str) and rtype in FAST_CHECKS:
        assert FAST_CHECKS[rtype](rec) == ok, (rec, fast_check_source(SPECS[rtype]))
    if ok:
        assert validate_record(rec) is rec
    else:
        with pytest.raises(ValidationError):
            validate_record(rec)


@settings(max_examples=300)
@given(obj=WILD_VALUES | st.dictionaries(st.sampled_from(["type", "ts", "uid", "x"]), WILD_VALUES))
def test_only_validation_error_escapes(obj: Any) -> None:
    with contextlib.suppress(ValidationError):
        validate_record(obj)


# --- addresses -------------------------------------------------------------------------------


@given(st.ip_addresses())
def test_canonical_ip_round_trip(addr: Any) -> None:
    text = canonical_ip(str(addr))
    assert is_canonical_ip(text)
    assert ip_from_packed(addr.packed) == text
    assert canonical_ip(text) == text


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0.0.0.0", True), ("255.255.255.255", True), ("1.2.3.4", True), ("01.2.3.4", False),
        ("1.2.3.256", False), ("1.2.3", False), ("::", True), ("::1", True), ("2001:db8::", True),
        ("2001:db8:0:1:1:1:1:1", True), ("2001:db8::1:1:1:1:1", False), ("::ffff:192.0.2.7", True),
        ("::ffff:c000:207", False), ("fe80::1%eth0", False), ("١.٢.٣.٤", False), ("1.2.3.4\n", False),
        ("x" * 100 + ":", False), ("", False),
    ],
)
def test_canonical_ip_cases(text: str, ok: bool) -> None:
    assert is_canonical_ip(text) is ok
    assert is_canonical_ip(text) is ok  # second time through the known-good set


def test_mac_helpers() -> None:
    assert mac_from_bytes(b"\x00\x1b\x21\x3a\x4f\x5e") == "00:1b:21:3a:4f:5e"
    assert is_canonical_mac("00:1b:21:3a:4f:5e") and is_canonical_mac("00:1b:21:3a:4f:5e")
    assert not is_canonical_mac("00:1b:21:3a:4f:5e:")
    with pytest.raises(ValueError):
        mac_from_bytes(b"\x00")
    with pytest.raises(ValueError):
        ip_from_packed(b"\x00" * 5)


def test_generated_fast_checks_are_current() -> None:
    """wire/fastchecks.py is what ``python -m wire.fastpath`` writes from today's schema."""
    assert GENERATED.read_text() == module_source(), "stale: run python -m wire.fastpath"
    assert set(FAST_CHECKS) == set(SPECS)
