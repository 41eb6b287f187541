"""``[portal]`` in agent.toml: the documented example (uncommented) loads, every bad key is
named, and the SMS provider request is what the templates say (a real HTTP server receives it)."""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, load_config
from agent.portal.config import SmsConfig
from agent.portal.sms import HttpSms, SmsError
from agent.portal.tokens import hash_password

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "deploy" / "agent.toml"


def _portal_example(tmp_path: Path, edit: dict[str, str] | None = None) -> Path:
    """deploy/agent.toml with its commented [portal] example switched on."""
    (tmp_path / "agent.token").write_text("eaa_secret-token\n")
    (tmp_path / "portal.crt").write_text("cert")
    (tmp_path / "portal.key").write_text("key")
    text = EXAMPLE.read_text().replace('"/etc/edgeaudit/agent.token"', '"agent.token"')
    head, sep, tail = text.partition("# [portal]\n")
    assert sep, "deploy/agent.toml documents [portal]"
    lines = ["[portal]"]
    for line in tail.splitlines():
        m = re.match(r"# ((?:\[|[a-z_]+ = ).*)", line)
        if m:
            lines.append(m.group(1))
    body = "\n".join(lines).replace("/etc/edgeaudit/portal.", "portal.").replace(
        '"scrypt$..."', json.dumps(hash_password("front-desk-pw")))
    body = re.sub(r"\s+#[^\"'\n]*$", "", body, flags=re.M)  # the trailing explanations
    for old, new in (edit or {}).items():
        assert old in body, old
        body = body.replace(old, new)
    path = tmp_path / "agent.toml"
    path.write_text(head + body + "\n")
    return path


def test_the_documented_portal_example_loads(tmp_path: Path) -> None:
    cfg = load_config(_portal_example(tmp_path)).portal
    assert cfg is not None
    assert cfg.interfaces == ("br-guest",) and cfg.address == "192.168.60.1" and cfg.methods == (
        "sms", "desk", "voucher")
    assert cfg.session_s == 28800 and cfg.idle_s == 1800 and cfg.valid_s == 86400 and cfg.ask_name
    assert cfg.tls_cert == tmp_path / "portal.crt"
    assert cfg.api_url == "https://portal.example-hotel.cn:8443/api/captive"
    assert cfg.page_url == "http://portal.example-hotel.cn:8080/"
    assert cfg.sms is not None and cfg.sms.code_ttl_s == 300 and cfg.sms.fails_per_device_hour == 20
    assert dict(cfg.sms.headers)["Authorization"].startswith("Bearer ")
    assert [u.name for u in cfg.desk_users] == ["front1"]


def test_no_portal_section_no_portal(tmp_path: Path) -> None:
    (tmp_path / "agent.token").write_text("t\n")
    path = tmp_path / "agent.toml"
    path.write_text(EXAMPLE.read_text().replace('"/etc/edgeaudit/agent.token"', '"agent.token"'))
    assert load_config(path).portal is None


def test_bad_portal_keys_are_each_named(tmp_path: Path) -> None:
    path = _portal_example(tmp_path, {
        'interfaces = ["br-guest"]': 'interfaces = ["br guest"]',
        'address = "192.168.60.1"': 'address = "192.168.60"',
        "idle_s = 1800": "idle_s = 0",
        'methods = ["sms", "desk", "voucher"]': 'methods = ["sms", "voucher", "facebook"]',
        "code_tries = 5": "code_tries = 50\nretries = 3",
        'password_hash = "scrypt': 'password_hash = "plain-password" #',
    })
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    for needle in ("[portal].interfaces", "[portal].address", "[portal].idle_s", "[portal].methods",
                   "[portal.sms].code_tries", "[portal.sms].retries: unknown key",
                   "[portal].desk_users[0].password_hash", "never the password"):
        assert needle in msg, (needle, msg)


def test_voucher_needs_the_desk_and_sms_needs_a_provider(tmp_path: Path) -> None:
    text = _portal_example(tmp_path).read_text()
    text = text.replace('methods = ["sms", "desk", "voucher"]', 'methods = ["sms", "voucher"]')
    text = text.split("[portal.sms]")[0]
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert '"voucher" redeems codes the desk prints' in str(e.value)
    assert "[portal].sms: is required" in str(e.value)


def test_the_portal_needs_gateway_mode(tmp_path: Path) -> None:
    path = _portal_example(tmp_path, {})
    path.write_text(path.read_text().replace('mode = "gateway"', 'mode = "mirror"', 1))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "[portal]: the captive portal needs gateway mode" in str(e.value)


@pytest.fixture
def provider() -> Iterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A stand-in SMS provider: records each request; answers the status at the list's head."""
    got: list[dict[str, Any]] = []
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            got.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                        "body": self.rfile.read(n).decode()})
            self.send_response(status[0])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        do_GET = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", got, status
    finally:
        srv.shutdown()
        srv.server_close()


def test_sms_json_body_and_headers(provider: tuple[str, list[dict[str, Any]], list[int]]) -> None:
    url, got, _ = provider
    sms = HttpSms(SmsConfig(url=f"{url}/v1/send", headers=(("Authorization", "Bearer k"),),
                            body='{"to": "{phone}", "text": "您的验证码 {code}，{minutes}分钟内有效"}'))
    sms.send("13800138000", "042137", 5)
    (req,) = got
    assert req["method"] == "POST" and req["path"] == "/v1/send"
    assert req["headers"]["Authorization"] == "Bearer k"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"to": "13800138000", "text": "您的验证码 042137，5分钟内有效"}


def test_sms_form_body_and_get_url(provider: tuple[str, list[dict[str, Any]], list[int]]) -> None:
    url, got, _ = provider
    HttpSms(SmsConfig(url=f"{url}/send", content_type="application/x-www-form-urlencoded",
                      body="mobile={phone}&msg=code {code}")).send("13800138000", "000111", 5)
    assert urllib.parse.parse_qs(got[-1]["body"]) == {"mobile": ["13800138000"], "msg": ["code 000111"]}
    HttpSms(SmsConfig(url=f"{url}/send?to={{phone}}&c={{code}}", method="GET")).send("13800138000", "9", 5)
    assert got[-1]["method"] == "GET" and got[-1]["path"] == "/send?to=13800138000&c=9"


def test_sms_failures_say_why_without_the_number_or_code(
        provider: tuple[str, list[dict[str, Any]], list[int]]) -> None:
    url, _got, status = provider
    status[0] = 503
    sms = HttpSms(SmsConfig(url=f"{url}/send?to={{phone}}", body='{"c": "{code}"}'))
    with pytest.raises(SmsError) as e:
        sms.send("13800138000", "424242", 5)
    assert "503" in str(e.value) and "13800138000" not in str(e.value) and "424242" not in str(e.value)
    dead = HttpSms(SmsConfig(url="http://127.0.0.1:9/send?to={phone}", timeout_s=1))
    with pytest.raises(SmsError) as e:
        dead.send("13800138000", "424242", 5)
    assert "13800138000" not in str(e.value)
