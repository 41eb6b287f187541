"""The agent's configuration file, ``agent.toml``: read, checked, and turned into ``AgentConfig``.

What: ``load_config(path)`` parses the TOML file (``tomllib``) and checks every key against the
schema below; ``ConfigError`` lists *every* problem as ``FILE: [section].key: what is wrong``,
so an admin fixes the file in one go, and the agent refuses to start. Unknown sections and
keys are errors too (a misspelt ``quota`` must not silently leave the default in force). The
documented example is ``deploy/agent.toml``; ``tests/agent/test_config.py`` loads it.

Sections and keys (defaults in brackets):

``[capture]``
    ``mode`` ["gateway"]: "gateway" (the agent runs on the NAT gateway: capture on the
    inside interfaces, NAT from conntrack), "mirror" (a mirror/SPAN port: NAT from the
    router's syslog), "inline" (NFQUEUE: packets are judged before they are forwarded).
    ``interfaces`` [required unless inline]: interface names. ``workers`` [0 = one per
    core]: capture processes in one ``PACKET_FANOUT_HASH`` group. ``bpf`` [""]: a tcpdump
    filter expression. ``ring_mb`` [64]: ring size per worker. ``queue`` [0]: the NFQUEUE
    number (inline).
``[inspection]``
    ``depth`` [16384]: payload bytes inspected per direction (SMTP, POP3, IMAP and FTP
    control connections are followed to their end; 0 turns inspection off). ``rules`` [none]: a ruleset
    directory or signed bundle. ``pubkeys`` [[]]: trusted ruleset signing keys (needed for a
    bundle, and for updates). ``update_interval_s`` [300; 0 = never]: how often the agent
    asks the collector for a newer signed bundle.
``[filter]``
    ``engine`` ["auto"]: the keyword engine: "vectorscan" (the ``hyperscan`` package),
    "aho-corasick" (pyahocorasick, the reference), or "auto": Vectorscan when it imports and
    compiles the ruleset, else Aho-Corasick (``agent.filter.patterns``). ``cache_dir``
    [beside the ruleset: ``RULES.vectorscan``; "" = no cache]: where compiled Vectorscan
    databases are kept, so a restart does not recompile the ruleset.
``[collector]``
    ``url`` [required]: http(s)://host:port. ``token`` or ``token_file`` (exactly one): the
    agent's token (``edgeaudit-collector agents add``). ``ca_file`` [system CAs]: the CA to
    verify an https collector with. ``batch_records`` [5000], ``batch_seconds`` [1.0]: a
    batch is sent when either is reached.
``[spool]``
    ``path`` [required]: a directory. ``quota`` ["10GiB"]: bytes, as an integer or with a
    unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB). ``keep_days`` [60]: how long sent records are
    kept as the local backup; under 60 is refused (the law's minimum). ``sync`` ["FULL"]:
    "FULL" survives power loss (an fsync per append), "NORMAL" survives a crash of the
    agent but may lose the last appends on power loss (``agent.spool.store``).
``[nat]``
    ``conntrack`` [true in gateway mode]: read connection-tracking events. ``syslog_listen``
    [""]: host:port to receive a router's NAT syslog on (mirror mode). ``syslog_protocols``
    [["udp", "tcp"]]. ``syslog_timezone`` ["UTC"]: zone of BSD-style timestamps.
``[identity]``
    ``roster`` [none]: the admin's CSV roster (account,name,mac,ip).
``[metrics]``
    ``listen`` [""]: host:port for the Prometheus text endpoint (off when empty).
``[portal]`` [none]
    The captive portal for a guest network: ``agent.portal.config`` lists its keys.
``[mail]`` [the defaults]
    The mail policy (mass mail, forged or hidden senders): ``agent.filter.mail_config`` lists
    its keys; ``[unit]`` ``ip_ranges`` and ``mail_servers`` give two of its defaults.
``[publishing]`` [the hosts ``[unit]`` ``services`` names]
    The unit's news, publishing and bulletin-board hosts, whose requests become ``publish``
    records: ``agent.publish.config`` lists its keys.
``[unit]``
    The unit's registration profile (备案): the fields of ``wire.unit``; ``name`` is
    required, any other missing text field is null and a missing list is empty, and the whole
    profile is checked by ``wire.unit.validate_unit_profile``.

Why strict and complete: the agent runs unattended for months; a config mistake found at
start, with the key named, is cheap, while one found by the police centre months later is not.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from agent.filter.mail_config import MailConfig, parse_mail
from agent.filter.patterns import ENGINES
from agent.portal.config import PortalConfig, parse_portal
from agent.publish.config import PublishingConfig, parse_publishing
from agent.spool.store import MIN_KEEP_DAYS  # the law's minimum for keeping records (days)
from wire.errors import ValidationError
from wire.limits import MAX_BATCH_RECORDS
from wire.unit import FIELDS as UNIT_FIELDS
from wire.unit import IP_LISTS, TEXT_FIELDS, TEXT_LISTS, validate_unit_profile

MODES: Final = ("gateway", "mirror", "inline")
_UNITS: Final = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                 "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*\Z")
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}\Z")


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one line per problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


@dataclass(frozen=True)
class CaptureConfig:
    mode: str = "gateway"
    interfaces: tuple[str, ...] = ()
    workers: int = 0
    bpf: str = ""
    ring_mb: int = 64
    queue: int = 0


@dataclass(frozen=True)
class InspectionConfig:
    depth: int = 16384
    rules: Path | None = None
    pubkeys: tuple[Path, ...] = ()
    update_interval_s: int = 300


@dataclass(frozen=True)
class FilterConfig:
    engine: str = "auto"
    cache_dir: Path | None = None  # None: no cache (no ruleset, or cache_dir = "")


@dataclass(frozen=True)
class CollectorConfig:
    url: str = ""
    token: str = field(default="", repr=False)  # a secret: never printed
    ca_file: Path | None = None
    batch_records: int = 5000
    batch_seconds: float = 1.0


@dataclass(frozen=True)
class SpoolConfig:
    path: Path = Path()
    quota: int = 10 * 2**30
    keep_days: int = MIN_KEEP_DAYS
    sync: str = "FULL"


@dataclass(frozen=True)
class NatConfig:
    conntrack: bool = True
    syslog_listen: str = ""
    syslog_protocols: tuple[str, ...] = ("udp", "tcp")
    syslog_timezone: str = "UTC"


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    capture: CaptureConfig
    inspection: InspectionConfig
    collector: CollectorConfig
    spool: SpoolConfig
    nat: NatConfig
    roster: Path | None
    metrics_listen: str
    unit: dict[str, Any]
    filter: FilterConfig = FilterConfig()
    portal: PortalConfig | None = None
    mail: MailConfig = MailConfig()
    publishing: PublishingConfig | None = None  # None: no publishing host to record


def default_cache_dir(rules: Path | None) -> Path | None:
    """Where compiled keyword databases are cached by default: beside the ruleset, as
    ``RULES.vectorscan`` (a directory; RULES is the ruleset directory or bundle file)."""
    if rules is None:
        return None
    return rules.with_name(rules.name + ".vectorscan")


class _Section:
    """Typed reads of one table, recording problems instead of raising."""

    def __init__(self, name: str, table: Any, problems: list[str], known: set[str]) -> None:
        self.name = name
        self.problems = problems
        if not isinstance(table, dict):
            problems.append(f"[{name}]: must be a table")
            table = {}
        self.table: dict[str, Any] = table
        for key in sorted(set(table) - known):
            problems.append(f"[{name}].{key}: unknown key (known: {', '.join(sorted(known))})")

    def bad(self, key: str, what: str) -> None:
        self.problems.append(f"[{self.name}].{key}: {what}")

    def get(self, key: str, default: Any, kind: type | tuple[type, ...], what: str,
            check: Callable[[Any], bool] = lambda _v: True) -> Any:
        if key not in self.table:
            return default
        v = self.table[key]
        # bool is an int in Python: an int key must not take true/false
        if not isinstance(v, kind) or (isinstance(v, bool) and bool not in _as_tuple(kind)) or not check(v):
            self.bad(key, f"must be {what}, not {v!r}")
            return default
        return v


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def parse_size(text: str | int) -> int:
    """Bytes from an integer or a size like "10GiB", "512 MB"; ValueError when it is not one."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError("a size must be positive")
        return text
    m = _SIZE.match(str(text))
    if m is None or m.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (write e.g. 10GiB or 500MB)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise ValueError("a size must be positive")
    return n


def _hostport(v: str) -> bool:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host) is not None
    return True


def _path_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def load_config(path: Path) -> AgentConfig:
    """Read and check ``path``; ``ConfigError`` with every problem when it is not usable."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror or e}"]) from e
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(path, [f"not valid TOML: {e}"]) from e
    return check_config(doc, path)


def check_config(doc: dict[str, Any], path: Path) -> AgentConfig:
    """``load_config`` after parsing: check the document, resolve relative paths against ``path``."""
    problems: list[str] = []
    base = path.parent
    sections = {"capture", "inspection", "filter", "collector", "spool", "nat", "identity", "metrics", "unit",
                "portal", "mail", "publishing"}
    for key in sorted(set(doc) - sections):
        problems.append(f"[{key}]: unknown section (known: {', '.join(sorted(sections))})")

    def rel(p: str) -> Path:
        return (base / p) if not os.path.isabs(p) else Path(p)

    c = _Section("capture", doc.get("capture", {}), problems,
                 {"mode", "interfaces", "workers", "bpf", "ring_mb", "queue"})
    mode = c.get("mode", "gateway", str, f"one of {', '.join(MODES)}", lambda v: v in MODES)
    interfaces = c.get("interfaces", [], list, "a list of interface names",
                       lambda v: all(isinstance(x, str) and _IFNAME.match(x) for x in v))
    if mode != "inline" and not interfaces:
        c.bad("interfaces", f"at least one interface is required in {mode} mode")
    capture = CaptureConfig(
        mode=mode, interfaces=tuple(interfaces),
        workers=c.get("workers", 0, int, "an integer from 0 (one per core) to 64", lambda v: 0 <= v <= 64),
        bpf=c.get("bpf", "", str, "a tcpdump filter expression"),
        ring_mb=c.get("ring_mb", 64, int, "an integer from 1 to 4096", lambda v: 1 <= v <= 4096),
        queue=c.get("queue", 0, int, "an NFQUEUE number 0..65535", lambda v: 0 <= v <= 65535),
    )

    i = _Section("inspection", doc.get("inspection", {}), problems,
                 {"depth", "rules", "pubkeys", "update_interval_s"})
    rules = i.get("rules", None, str, "a path", lambda v: bool(v))
    inspection = InspectionConfig(
        depth=i.get("depth", 16384, int, "an integer >= 0", lambda v: v >= 0),
        rules=rel(rules) if rules else None,
        pubkeys=tuple(rel(p) for p in i.get("pubkeys", [], list, "a list of paths", _path_list)),
        update_interval_s=i.get("update_interval_s", 300, int, "seconds >= 0", lambda v: v >= 0),
    )

    fl = _Section("filter", doc.get("filter", {}), problems, {"engine", "cache_dir"})
    engine = fl.get("engine", "auto", str, f"one of {', '.join(ENGINES)}", lambda v: v in ENGINES)
    cache = fl.get("cache_dir", None, str, 'a path, or "" for no cache')
    if cache is None:
        cache_dir = default_cache_dir(inspection.rules)
    else:
        cache_dir = rel(cache) if cache else None
    filter_cfg = FilterConfig(engine=engine, cache_dir=cache_dir)

    k = _Section("collector", doc.get("collector", {}), problems,
                 {"url", "token", "token_file", "ca_file", "batch_records", "batch_seconds"})
    url = k.get("url", "", str, "an http:// or https:// URL",
                lambda v: urlsplit(v).scheme in ("http", "https") and bool(urlsplit(v).hostname))
    if "url" not in k.table:
        k.bad("url", "is required")
    token = k.get("token", "", str, "the agent's token", lambda v: bool(v.strip()))
    token_file = k.get("token_file", "", str, "a path", lambda v: bool(v))
    if bool(token) == bool(token_file):
        k.bad("token", "give exactly one of token and token_file")
    elif token_file:
        try:
            token = rel(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            k.bad("token_file", f"cannot read {rel(token_file)}: {e}")
        else:
            if not token:
                k.bad("token_file", f"{rel(token_file)} is empty")
    ca = k.get("ca_file", "", str, "a path", lambda v: bool(v))
    collector = CollectorConfig(
        url=url, token=token, ca_file=rel(ca) if ca else None,
        batch_records=k.get("batch_records", 5000, int, f"1..{MAX_BATCH_RECORDS}",
                            lambda v: 1 <= v <= MAX_BATCH_RECORDS),
        batch_seconds=float(k.get("batch_seconds", 1.0, (int, float), "seconds > 0 and <= 60",
                                  lambda v: 0 < v <= 60)),
    )

    s = _Section("spool", doc.get("spool", {}), problems, {"path", "quota", "keep_days", "sync"})
    spool_path = s.get("path", "", str, "a directory path", lambda v: bool(v))
    if not spool_path:
        s.bad("path", "is required")
    quota = 10 * 2**30
    if "quota" in s.table:
        try:
            quota = parse_size(s.table["quota"])
        except (ValueError, TypeError) as e:
            s.bad("quota", str(e))
    keep = s.get("keep_days", MIN_KEEP_DAYS, int, "an integer", lambda v: True)
    if keep < MIN_KEEP_DAYS:
        s.bad("keep_days", f"{keep} is under the legal minimum of {MIN_KEEP_DAYS} days")
    sync = s.get("sync", "FULL", str, '"FULL" or "NORMAL"', lambda v: v in ("FULL", "NORMAL"))
    spool = SpoolConfig(path=rel(spool_path) if spool_path else Path(), quota=quota, keep_days=keep,
                        sync=sync)

    n = _Section("nat", doc.get("nat", {}), problems,
                 {"conntrack", "syslog_listen", "syslog_protocols", "syslog_timezone"})
    nat = NatConfig(
        conntrack=n.get("conntrack", mode == "gateway", bool, "true or false"),
        syslog_listen=n.get("syslog_listen", "", str, "host:port", lambda v: v == "" or _hostport(v)),
        syslog_protocols=tuple(n.get("syslog_protocols", ["udp", "tcp"], list, 'a list of "udp" and "tcp"',
                                     lambda v: bool(v) and all(x in ("udp", "tcp") for x in v))),
        syslog_timezone=n.get("syslog_timezone", "UTC", str, "a time zone name", lambda v: bool(v)),
    )

    d = _Section("identity", doc.get("identity", {}), problems, {"roster"})
    roster = d.get("roster", "", str, "a path", lambda v: bool(v))

    m = _Section("metrics", doc.get("metrics", {}), problems, {"listen"})
    metrics = m.get("listen", "", str, "host:port", lambda v: v == "" or _hostport(v))

    portal = parse_portal(doc.get("portal"), problems, rel, _Section)
    if portal is not None and mode != "gateway":
        problems.append("[portal]: the captive portal needs gateway mode (the gateway's packet filter)")

    mail = parse_mail(doc.get("mail"), problems, rel, _Section)

    u = _Section("unit", doc.get("unit", {}), problems, set(UNIT_FIELDS))
    profile: dict[str, Any] = {f: None for f in TEXT_FIELDS}
    profile.update({f: [] for f in (*IP_LISTS, *TEXT_LISTS, "security_officers", "ip_ranges")})
    profile.update({key: v for key, v in u.table.items() if key in UNIT_FIELDS})
    try:
        profile = validate_unit_profile(profile)
    except ValidationError as e:
        problems.append(f"[unit]: {e}")
    publishing = parse_publishing(doc.get("publishing"), problems, rel, _Section,
                                  profile.get("services") or [])

    if problems:
        raise ConfigError(path, problems)
    return AgentConfig(path=path, capture=capture, inspection=inspection, collector=collector, spool=spool,
                       nat=nat, roster=rel(roster) if roster else None, metrics_listen=metrics, unit=profile,
                       filter=filter_cfg, portal=portal, mail=mail.with_unit(profile),
                       publishing=publishing)
