"""``[mail]`` in agent.toml: the documented example (uncommented) loads with every key, no section
means the defaults, bad keys and values are named, and the unit profile gives two defaults."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.filter.mail_config import DEFAULT, DEFAULT_INSIDE, Limits

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy" / "agent.toml"


def _config(tmp_path: Path, mail: str | None = None, edit: dict[str, str] | None = None) -> Path:
    """deploy/agent.toml with its commented [mail] example switched on (or `mail` instead of it)."""
    (tmp_path / "agent.token").write_text("eaa_secret-token\n")
    text = EXAMPLE.read_text().replace('"/etc/edgeaudit/agent.token"', '"agent.token"')
    if mail is None:
        _, sep, tail = text.partition("# [mail]\n")
        assert sep, "deploy/agent.toml documents [mail]"
        lines = ["[mail]"]
        for line in tail.splitlines():
            if not line.startswith("#"):
                break  # the end of the commented example
            m = re.match(r"# ((?:\[|[a-z_]+ = ).*)", line)
            if m:
                lines.append(re.sub(r"\s+#[^\"\n]*$", "", m.group(1)))
        mail = "\n".join(lines)
    for old, new in (edit or {}).items():
        assert old in mail, old
        mail = mail.replace(old, new)
    path = tmp_path / "agent.toml"
    path.write_text(text + "\n" + mail + "\n")
    return path


def test_the_documented_mail_example_loads(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path)).mail
    assert cfg.enabled and cfg.domains == ("library.example.cn",)
    assert cfg.inside == (ipaddress.ip_network("192.168.0.0/16"),) and cfg.relays == ("192.168.0.25",)
    assert cfg.server_names == ("mail.library.example.cn",) and cfg.severity == 4
    assert dict(cfg.actions) == {"rate": "block", "envelope_domain": "alert", "mailfrom_not_account": "alert",
                                 "from_not_account": "alert", "helo": "alert", "display_name": "alert"}
    assert cfg.sender == cfg.account == cfg.host == Limits(100, 500, 1000, 5000)
    assert cfg.senders == (("alice", ("office@library.example.cn",)),)
    # the example says the defaults: the same config as none at all, but for what it names
    assert (cfg.sender, cfg.account, cfg.host, cfg.actions, cfg.severity) == (
        DEFAULT.sender, DEFAULT.account, DEFAULT.host, DEFAULT.actions, DEFAULT.severity)


def test_no_mail_section_is_the_defaults_with_the_units_ranges_and_mail_servers(tmp_path: Path) -> None:
    path = _config(tmp_path, mail="")
    path.write_text(path.read_text().replace("mail_servers = []", 'mail_servers = ["192.168.0.25"]'))
    cfg = load_config(path).mail
    assert cfg.enabled and cfg.domains == () and cfg.relays == ("192.168.0.25",)
    assert [str(n) for n in cfg.inside] == [*DEFAULT_INSIDE, "192.168.0.0/16"]  # [unit] ip_ranges too
    assert cfg.sender == Limits(100, 500, 1000, 5000) and cfg.action("rate") == "block"


def test_limits_and_actions_are_set_key_by_key(tmp_path: Path) -> None:
    mail = ('[mail]\nenabled = false\nrate = "alert"\ndomains = ["Unit.CN."]\n'
            '[mail.account]\nmessages_per_minute = 0\n')
    cfg = load_config(_config(tmp_path, mail=mail)).mail
    assert not cfg.enabled and cfg.action("rate") == "alert" and cfg.domains == ("unit.cn",)
    assert cfg.account == Limits(0, 500, 1000, 5000) and cfg.sender == Limits()


def test_bad_mail_keys_and_values_are_all_named(tmp_path: Path) -> None:
    path = _config(tmp_path, edit={
        'domains = ["library.example.cn"]': 'domains = ["not a domain"]',
        'inside = ["192.168.0.0/16"]': 'inside = ["192.168.0.0/33"]',
        'relays = ["192.168.0.25"]': 'relays = ["mail"]',
        "severity = 4": "severity = 9",
        'rate = "block"': 'rate = "drop"\nrates = 1',
        "messages_per_minute = 100": "messages_per_minute = -1",
        'alice = ["office@library.example.cn"]': 'alice = ["office"]',
    })
    path.write_text(path.read_text() + "[mail.hosts]\nx = 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    for needle in ("[mail].domains", "[mail].inside", "[mail].relays", "[mail].severity",
                   "[mail].rate: must be one of off, alert, block", "[mail].rates: unknown key",
                   "[mail.sender].messages_per_minute", "[mail.senders].alice", "[mail].hosts: unknown key"):
        assert needle in msg, (needle, msg)
