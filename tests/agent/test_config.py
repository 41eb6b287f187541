"""agent.toml: the documented example loads; every unknown key and bad value is refused with
the key named, all problems at once; sizes, relative paths and the secret token."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, parse_size
from agent.spool.store import MIN_KEEP_DAYS

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "agent.toml"


def _example(tmp_path: Path, replace: dict[str, str] | None = None, append: str = "") -> Path:
    (tmp_path / "agent.token").write_text("eaa_secret-token\n")
    text = EXAMPLE.read_text().replace('"/etc/edgeaudit/agent.token"', '"agent.token"')
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "agent.toml"
    path.write_text(text + append)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    cfg = load_config(_example(tmp_path))
    assert cfg.capture.mode == "gateway" and cfg.capture.interfaces == ("lan0",)
    assert cfg.collector.token == "eaa_secret-token"  # read from token_file, relative to the file
    assert "secret" not in repr(cfg.collector)
    assert cfg.spool.quota == 20 * 2**30 and cfg.spool.keep_days == 180 and cfg.spool.sync == "FULL"
    assert cfg.inspection.pubkeys == (Path("/etc/edgeaudit/rules-signing.pub"),)
    assert cfg.nat.conntrack is True and cfg.metrics_listen == "127.0.0.1:9187"
    assert cfg.unit["name"] == "某某市图书馆"
    assert cfg.unit["security_officers"][0]["certificate_no"] == "GA-2024-000123"
    assert cfg.unit["ip_ranges"] == ["192.168.0.0/16"]


def test_unknown_keys_and_bad_values_are_all_named(tmp_path: Path) -> None:
    path = _example(tmp_path, {
        "workers = 0 ": "workers = -1 ",
        'quota = "20GiB"': 'quota = "lots"',
        "keep_days = 180": "keep_days = 30",
        'url = "https://collector.example.gov.cn:8443"': 'url = "ftp://collector"',
        'mode = "gateway"': 'mode = "bridge"',
        'postal_code = "100000"': 'postal_code = "1000"',
        "conntrack = true": 'conntrack = "yes"',
        'sync = "FULL"': 'sync = "OFF"',
    }, append='\n[spool2]\nx = 1\n')
    text = path.read_text().replace("batch_seconds = 1.0", "batch_seconds = 1.0\nbatch_size = 10")
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    for needle in ("[capture].workers", "[spool].quota", f"[spool].keep_days: 30 is under the legal minimum "
                   f"of {MIN_KEEP_DAYS}", "[collector].url", "[capture].mode", "[unit]: postal_code",
                   "[nat].conntrack", "[spool].sync", "[spool2]: unknown section", "[collector].batch_size: "
                   "unknown key"):
        assert needle in msg, (needle, msg)
    assert len(e.value.problems) == 10
    assert all(line.startswith(f"{path}: ") for line in msg.splitlines())


def test_token_rules(tmp_path: Path) -> None:
    both = _example(tmp_path, {'token_file = "agent.token"': 'token_file = "agent.token"\ntoken = "x"'})
    with pytest.raises(ConfigError, match=r"\[collector\].token: give exactly one"):
        load_config(both)
    (tmp_path / "agent.token").write_text("  \n")
    empty = tmp_path / "agent.toml"
    empty.write_text(empty.read_text().replace('\ntoken = "x"', ""))
    with pytest.raises(ConfigError, match=r"\[collector\].token_file: .*is empty"):
        load_config(empty)


def test_required_keys_and_modes(tmp_path: Path) -> None:
    minimal = tmp_path / "min.toml"
    minimal.write_text('[capture]\nmode = "inline"\n[collector]\nurl = "http://127.0.0.1:8080"\ntoken = "t"\n'
                       '[spool]\npath = "spool"\n[unit]\nname = "Reading room 3"\n')
    cfg = load_config(minimal)
    assert cfg.capture.interfaces == () and cfg.spool.path == tmp_path / "spool"
    assert cfg.nat.conntrack is False  # only gateway mode reads conntrack by default
    assert cfg.unit["legal_representative"] is None and cfg.unit["ip_ranges"] == []
    bare = tmp_path / "bare.toml"
    bare.write_text("[capture]\n")
    with pytest.raises(ConfigError) as e:
        load_config(bare)
    assert {p.split(":")[0] for p in e.value.problems} == {"[capture].interfaces", "[collector].url",
                                                           "[collector].token", "[spool].path", "[unit]"}
    assert "[unit]: name: a non-empty string is required" in e.value.problems
    bad = tmp_path / "bad.toml"
    bad.write_text("[capture\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_sizes() -> None:
    assert parse_size("10GiB") == 10 * 2**30
    assert parse_size("500 MB") == 500 * 10**6
    assert parse_size("1.5KiB") == 1536
    assert parse_size(4096) == 4096
    for bad in ("", "-1GB", "10 parsecs", 0):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_filter_engine_and_its_cache(tmp_path: Path) -> None:
    cfg = load_config(_example(tmp_path))
    assert cfg.filter.engine == "auto"
    # the compiled keyword database is cached beside the ruleset by default
    assert cfg.filter.cache_dir == Path("/var/lib/edgeaudit/rules.bundle.vectorscan")
    cfg = load_config(_example(tmp_path, {'engine = "auto"': 'engine = "aho-corasick"',
                                          '# cache_dir = "/var/lib/edgeaudit/rules.bundle.vectorscan"':
                                          'cache_dir = "db"'}))
    assert cfg.filter.engine == "aho-corasick" and cfg.filter.cache_dir == tmp_path / "db"
    cfg = load_config(_example(tmp_path, {'# cache_dir = "/var/lib/edgeaudit/rules.bundle.vectorscan"':
                                          'cache_dir = ""'}))
    assert cfg.filter.cache_dir is None  # "": compile at every start
    with pytest.raises(ConfigError) as e:
        load_config(_example(tmp_path, {'engine = "auto"': 'engine = "hyperscan"'}))
    assert "[filter].engine: must be one of auto, vectorscan, aho-corasick" in str(e.value)
