"""``[publishing]`` in agent.toml: the unit's own news, publishing and bulletin-board hosts.

Keys (defaults in brackets; ``deploy/agent.toml`` documents them for the admin):

``hosts`` [[]]: host patterns (``agent.publish.hosts``: ``bbs.example.cn``, ``news.example.cn:8080``,
``*.example.cn``, an address); ``from_profile`` [true]: also the hosts named by the ``[unit]``
profile's ``services`` entries that are publishing services (``wire.unit.publishing_services``:
an entry naming 新闻, 出版, 发布, 论坛, 公告, 留言, 博客, BBS, forum, news ...; its host names,
``wire.unit.service_hosts``); ``max_body`` [65536]: decoded body bytes kept per request for its
text (1024..1048576).

A unit whose profile names a publishing host gets that host recorded without a
``[publishing]`` section (``from_profile`` defaults to true); a section that ends up with no
host at all is an error (it would record nothing, silently). Without hosts the agent makes no
``publish`` record and the HTTP decoder does nothing more than before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.publish.extract import MAX_BODY, MAX_BODY_SETTING, MIN_BODY_SETTING
from agent.publish.hosts import HostError, normalize_pattern
from wire.unit import publishing_services, service_hosts

if TYPE_CHECKING:
    from agent.config import _Section


@dataclass(frozen=True)
class PublishingConfig:
    hosts: tuple[str, ...] = ()  # from [publishing] hosts, normalized
    from_profile: bool = True
    profile_hosts: tuple[str, ...] = ()  # named by the profile's publishing services, normalized
    max_body: int = MAX_BODY

    @property
    def all_hosts(self) -> tuple[str, ...]:
        """Every host recorded: the section's, then the profile's (when taken), each once."""
        return tuple(dict.fromkeys(self.hosts + (self.profile_hosts if self.from_profile else ())))


def profile_hosts(services: Sequence[str]) -> tuple[list[str], list[str]]:
    """The host patterns the profile's publishing services name, normalized, and the problems
    of those that are not hosts (``service_hosts`` finds only well-formed names: rarely any)."""
    hosts: list[str] = []
    bad: list[str] = []
    for entry in publishing_services([s for s in services if isinstance(s, str)]):
        for h in service_hosts(entry):
            try:
                hosts.append(normalize_pattern(h))
            except HostError as e:
                bad.append(str(e))
    return list(dict.fromkeys(hosts)), bad


def publishing_from_hosts(hosts: Sequence[str], max_body: int = MAX_BODY) -> PublishingConfig:
    """A configuration of these hosts only (the replay command's ``--publishing-host``);
    HostError naming a bad one."""
    return PublishingConfig(hosts=tuple(dict.fromkeys(normalize_pattern(h) for h in hosts)),
                            from_profile=False, max_body=max_body)


def parse_publishing(doc: Any, problems: list[str], rel: Callable[[str], Path],
                     section: type[_Section], services: Sequence[str] = ()) -> PublishingConfig | None:
    """``[publishing]`` checked (problems appended as ``[publishing].key: ...``), with the hosts
    the profile's ``services`` name; None when no host is to be recorded. (``rel`` is the
    other sections' path resolver: this section has no path.)"""
    del rel
    from_services, _ = profile_hosts(services)  # a malformed name in free text is not a host
    if doc is None:
        return PublishingConfig(profile_hosts=tuple(from_services)) if from_services else None
    p = section("publishing", doc, problems, {"hosts", "from_profile", "max_body"})
    raw = p.get("hosts", [], list, "a list of host names", lambda v: all(isinstance(x, str) for x in v))
    hosts: list[str] = []
    for i, h in enumerate(raw):
        try:
            hosts.append(normalize_pattern(h))
        except HostError as e:
            p.bad(f"hosts[{i}]", str(e))
    from_profile = p.get("from_profile", True, bool, "true or false")
    max_body = p.get("max_body", MAX_BODY, int, f"bytes {MIN_BODY_SETTING}..{MAX_BODY_SETTING}",
                     lambda v: MIN_BODY_SETTING <= v <= MAX_BODY_SETTING)
    cfg = PublishingConfig(hosts=tuple(dict.fromkeys(hosts)), from_profile=from_profile,
                           profile_hosts=tuple(from_services), max_body=max_body)
    if not cfg.all_hosts and len(hosts) == len(raw):
        p.bad("hosts", "no host to record: list the publishing hosts here, or name them in [unit] services"
                       + ("" if from_profile else " with from_profile = true"))
    return cfg if cfg.all_hosts else None
