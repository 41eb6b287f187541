"""The admin roster CSV: parsing, normalisation, errors with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.identity import IdentityTable, Roster, RosterError, load_roster, parse_roster

GOOD = """\
# unit roster, exported 2024-05-01
account,name,mac,ip

zhangsan,张三,00:11:22:33:44:55,
  # indented comment
lisi,李四,,192.168.1.20
wangwu,"Wang, Wu #2",00-11-22-33-44-66,192.168.1.21
wangwu,Wang Wu,0011.2233.4477,
nodevice,No Device,,
v6,V6,,2001:DB8::0:1
"""


def test_parse_good_roster(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    path.write_text(GOOD, encoding="utf-8")
    roster = load_roster(path)
    assert len(roster) == 6
    assert roster.account_for_mac("00:11:22:33:44:55") == "zhangsan"
    assert roster.account_for_mac("00:11:22:33:44:66") == "wangwu"
    assert roster.account_for_mac("00:11:22:33:44:77") == "wangwu"
    assert roster.account_for_ip("192.168.1.20") == "lisi"
    assert roster.account_for_ip("2001:db8::1") == "v6"
    assert roster.account_for(mac="00:11:22:33:44:55", ip="192.168.1.20") == "zhangsan"
    assert roster.account_for(mac=None, ip="192.168.1.20") == "lisi"
    assert roster.account_for(mac=None, ip=None) is None
    e = roster.entries[2]
    assert (e.account, e.name, e.mac, e.ip, e.line) == (
        "wangwu",
        "Wang, Wu #2",
        "00:11:22:33:44:66",
        "192.168.1.21",
        7,
    )


def test_bom_and_gb18030_files(tmp_path: Path) -> None:
    text = "account,name,mac,ip\nzhangsan,张三,,10.0.0.1\n"
    p1 = tmp_path / "bom.csv"
    p1.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    p2 = tmp_path / "gbk.csv"
    p2.write_bytes(text.encode("gb18030"))
    for p in (p1, p2):
        roster = load_roster(p)
        assert roster.entries[0].name == "张三" and roster.account_for_ip("10.0.0.1") == "zhangsan"


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = (
        "account,name,mac,ip\n"
        "ok,OK,,10.0.0.1\n"
        "# comment\n"
        "badip,X,,10.0.0.300\n"
        "badmac,X,00:11:22:33:44,\n"
        ",Nobody,,10.0.0.9\n"
        "short,X\n"
        "clash,X,,10.0.0.1\n"
        "zero,X,,0.0.0.0\n"
    )
    path = tmp_path / "r.csv"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(RosterError) as info:
        load_roster(path)
    problems = info.value.problems
    assert problems == [
        f"{path}:4: bad IP address '10.0.0.300'",
        f"{path}:5: bad MAC address '00:11:22:33:44' (want aa:bb:cc:dd:ee:ff)",
        f"{path}:6: missing account",
        f"{path}:7: expected 4 fields (account,name,mac,ip), got 2",
        f"{path}:8: IP 10.0.0.1 is already the account 'ok''s (line 2)",
        f"{path}:9: bad IP address '0.0.0.0'",
    ]
    assert str(info.value).startswith(f"{path}:4: ")


def test_header_is_required() -> None:
    with pytest.raises(RosterError, match=r"^r.csv:2: the first line must be the header"):
        parse_roster("# c\nzhangsan,张三,,\n", "r.csv")
    with pytest.raises(RosterError, match="header .* is missing"):
        parse_roster("# only comments\n\n", "r.csv")
    assert len(parse_roster("ACCOUNT, Name ,MAC,IP\n")) == 0


def test_same_mac_for_same_account_twice_is_fine() -> None:
    roster = parse_roster("account,name,mac,ip\na,,00:11:22:33:44:55,\na,,00:11:22:33:44:55,\n")
    assert roster.account_for_mac("00:11:22:33:44:55") == "a"


def test_missing_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load_roster(tmp_path / "absent.csv")


def test_roster_fixed_address_answers_when_nothing_dynamic_does() -> None:
    table = IdentityTable(roster=parse_roster("account,name,mac,ip\nlisi,,,192.168.1.20\n"))
    assert table.account_at("192.168.1.20", 1.0) == "lisi"
    assert table.account_at("192.168.1.21", 1.0) is None
    assert IdentityTable(roster=Roster()).account_at("192.168.1.20", 1.0) is None
