"""``[publishing]`` in agent.toml: the documented example loads, the unit profile's publishing
services name hosts, and every bad key or value is named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.publish.config import PublishingConfig, profile_hosts, publishing_from_hosts
from agent.publish.hosts import HostError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy" / "agent.toml"
NO_HOST = ("[publishing].hosts: no host to record: list the publishing hosts here, or name them in "
           "[unit] services")


def _config(tmp_path: Path, publishing: str | None = None, services: list[str] | None = None) -> Path:
    """deploy/agent.toml with its commented [publishing] example switched on (or `publishing`
    instead of it), and the profile's services replaced when given."""
    (tmp_path / "agent.token").write_text("eaa_secret-token\n")
    text = EXAMPLE.read_text().replace('"/etc/edgeaudit/agent.token"', '"agent.token"')
    if services is not None:
        assert 'services = ["上网服务"]' in text
        listed = ", ".join(f'"{s}"' for s in services)
        text = text.replace('services = ["上网服务"]', f"services = [{listed}]")
    if publishing is None:
        _, sep, tail = text.partition("# [publishing]\n")
        assert sep, "deploy/agent.toml documents [publishing]"
        lines = ["[publishing]"]
        for line in tail.splitlines():
            if not line.startswith("#"):
                break  # the end of the commented example
            m = re.match(r"# ((?:\[|[a-z_]+ = ).*)", line)
            if m:
                lines.append(re.sub(r"\s+#[^\"\n]*$", "", m.group(1)))
        publishing = "\n".join(lines)
    path = tmp_path / "agent.toml"
    path.write_text(text + "\n" + publishing + "\n")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return e.value.problems


def test_the_documented_example_loads(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path)).publishing
    assert cfg == PublishingConfig(
        hosts=("bbs.library.example.cn", "news.library.example.cn:8080", "*.blog.library.example.cn"),
        from_profile=True, profile_hosts=(), max_body=65536)
    assert cfg.all_hosts == cfg.hosts


def test_without_the_section_nothing_is_recorded(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path, publishing="")).publishing is None


def test_the_profiles_publishing_services_name_hosts_without_a_section(tmp_path: Path) -> None:
    services = ["上网服务", "论坛 BBS.library.example.cn", "新闻发布 http://news.library.example.cn:8080/",
                "电子邮件 mail.library.example.cn"]  # mail is no publishing service
    cfg = load_config(_config(tmp_path, publishing="", services=services)).publishing
    assert cfg is not None and cfg.hosts == ()
    assert cfg.all_hosts == ("bbs.library.example.cn", "news.library.example.cn:8080")


def test_the_section_and_the_profile_together_and_from_profile_false(tmp_path: Path) -> None:
    services = ["留言板 guestbook.library.example.cn"]
    section = '[publishing]\nhosts = ["bbs.library.example.cn"]'
    both = load_config(_config(tmp_path, section, services)).publishing
    assert both is not None and both.all_hosts == ("bbs.library.example.cn", "guestbook.library.example.cn")
    only = load_config(_config(tmp_path, section + "\nfrom_profile = false", services)).publishing
    assert only is not None and only.all_hosts == ("bbs.library.example.cn",)


def test_bad_keys_and_values_are_named(tmp_path: Path) -> None:
    got = problems(_config(tmp_path, '[publishing]\nhosts = ["bbs.example.cn", "bad host", "a.cn:0"]\n'
                                     'max_body = 10\nfrom_profile = "yes"\nhost = "x"'))
    assert any(p.startswith("[publishing].host: unknown key") for p in got), got
    assert any(p.startswith("[publishing].hosts[1]: 'bad host': not a host name") for p in got), got
    assert any(p.startswith("[publishing].hosts[2]: 'a.cn:0': the port must be 1..65535") for p in got), got
    assert any(p.startswith("[publishing].max_body: must be bytes 1024..1048576") for p in got), got
    assert any(p.startswith("[publishing].from_profile: must be true or false") for p in got), got
    assert problems(_config(tmp_path, '[publishing]\nhosts = "bbs.example.cn"')) == [
        "[publishing].hosts: must be a list of host names, not 'bbs.example.cn'", NO_HOST]


def test_a_section_with_no_host_anywhere_is_refused(tmp_path: Path) -> None:
    assert problems(_config(tmp_path, "[publishing]\nmax_body = 4096")) == [NO_HOST]
    got = problems(_config(tmp_path, "[publishing]\nfrom_profile = false", ["论坛 bbs.library.example.cn"]))
    assert got == [NO_HOST + " with from_profile = true"]


def test_profile_hosts_and_the_command_lines_hosts() -> None:
    assert profile_hosts(["论坛 bbs.example.cn 与 *.blog.example.cn", "上网服务 proxy.example.cn", 7]) == (  # type: ignore[list-item]
        ["bbs.example.cn", "*.blog.example.cn"], [])
    cfg = publishing_from_hosts(["BBS.example.cn", "bbs.example.cn", "news.example.cn:8080"])
    assert cfg.all_hosts == ("bbs.example.cn", "news.example.cn:8080") and not cfg.from_profile
    with pytest.raises(HostError):
        publishing_from_hosts(["not a host"])
