"""Publishing host patterns: what agent.toml may say, and which Host fields they match."""

from __future__ import annotations

import pytest

from agent.publish.hosts import HostError, HostMatcher, normalize_pattern


@pytest.mark.parametrize(("written", "kept"), [
    ("BBS.Example.CN", "bbs.example.cn"),
    ("bbs.example.cn.", "bbs.example.cn"),
    (" news.example.cn:8080 ", "news.example.cn:8080"),
    ("*.Blog.example.cn", "*.blog.example.cn"),
    ("论坛.example.cn", "xn--kfsr23j.example.cn"),
    ("203.0.113.5", "203.0.113.5"),
    ("[2001:DB8:0::5]:81", "[2001:db8::5]:81"),
    ("[2001:db8::5]", "[2001:db8::5]"),
])
def test_patterns_are_kept_folded(written: str, kept: str) -> None:
    assert normalize_pattern(written) == kept


@pytest.mark.parametrize("bad", [
    "", "bbs.example.cn:http", "bbs.example.cn:0", "bbs.example.cn:70000", "bbs_example.cn", "*.cn2 x",
    "*", "*.cn", "http://bbs.example.cn/", "2001:db8::5", "[2001:db8::zz]", "[::1]x", "-bbs.example.cn",
    "a" * 64 + ".cn",
])
def test_what_is_no_host_is_refused(bad: str) -> None:
    with pytest.raises(HostError):
        normalize_pattern(bad)


@pytest.mark.parametrize(("host", "expected"), [
    ("bbs.example.cn", True),
    ("BBS.EXAMPLE.CN", True),
    ("bbs.example.cn.", True),
    ("bbs.example.cn:8000", True),  # a name without a port matches on every port
    ("www.bbs.example.cn", False),
    ("news.example.cn:8080", True),
    ("news.example.cn", False),  # port 80
    ("news.example.cn:80", False),
    ("a.blog.example.cn", True),
    ("a.b.blog.example.cn:8080", True),
    ("blog.example.cn", False),  # a wildcard names the hosts under the domain, not the domain
    ("xblog.example.cn", False),
    ("old.example.cn", True),  # :80 is what a Host without a port means
    ("old.example.cn:80", True),
    ("old.example.cn:81", False),
    ("xn--kfsr23j.example.cn", True),
    ("论坛.example.cn", True),
    ("203.0.113.5", True),
    ("[2001:db8:0:0::5]", True),
    ("[2001:db8::6]", False),
    ("", False),
    (None, False),
    ("bbs.example.cn:99999999", False),
])
def test_hosts_match_as_browsers_write_them(host: str | None, expected: bool) -> None:
    m = HostMatcher(["bbs.example.cn", "news.example.cn:8080", "*.blog.example.cn", "old.example.cn:80",
                     "论坛.example.cn", "203.0.113.5", "[2001:db8::5]"])
    assert m.matches(host) is expected


def test_a_matcher_without_patterns_is_false_and_matches_nothing() -> None:
    m = HostMatcher([])
    assert not m and not m.matches("bbs.example.cn")
    assert HostMatcher(["a.example.cn", "A.example.cn."]).patterns == ("a.example.cn",)


@pytest.mark.parametrize(("entry", "publishing", "hosts"), [
    ("新闻发布 news.example.cn", True, ["news.example.cn"]),
    ("读者论坛bbs.example.cn", True, ["bbs.example.cn"]),  # a name right after Chinese text
    ("BBS http://Forum.Example.cn:8080/board", True, ["forum.example.cn:8080"]),
    ("博客 *.blog.example.cn 与 203.0.113.5，blog.example.cn", True,
     ["*.blog.example.cn", "203.0.113.5", "blog.example.cn"]),
    ("电子公告服务", True, []),
    ("Guestbook v2.0 on 1.2.3", True, []),  # numbers are no hosts
    ("上网服务", False, []),
    ("电子邮件 mail.example.cn", False, ["mail.example.cn"]),  # a host, but no publishing service
])
def test_the_profiles_services_name_publishing_hosts(entry: str, publishing: bool, hosts: list[str]) -> None:
    from wire.unit import publishing_services, service_hosts

    assert publishing_services([entry]) == ([entry] if publishing else [])
    assert service_hosts(entry) == hosts
