"""The captive portal's HTTP side and its rules, fast, on loopback (issue 19).

A real ``PortalServer`` on 127.0.0.1 with the real ``Portal`` service and state file, a real
local HTTP server standing in for the unit's SMS provider (the codes are read from what it
received, as a phone would get them), ``MemoryAdmission`` for the packet filter (loopback
forwards nothing, so there is nothing to filter: its idle clock is driven by the test) and
the portal's ``clock`` driven by the test. Devices are loopback source addresses
(127.0.0.1, 127.0.0.2, ...), each with a MAC of its own (``mac_of``), as the gateway's neighbour
table would give.

Covered: the SMS send limits (resend wait, per number and per device an hour), wrong codes
(tries left, used up), single use, expiry; vouchers (wrong, expired, devices per guest); the
desk (CSRF refused, sign-in throttled after 5 wrong passwords, the resident ID's check digit
in Chinese and English); a returning device recognised within its registration's validity
and not after; logout forgetting the device; the sweep's idle and time-up logouts with their
durations; redirected traffic (302 to the portal, connection closed) and the captive probes
and RFC 8908 API before and after; every record valid by the wire; no phone, ID number,
name, code or voucher in the state file; the English toggle; malformed bodies answered with a
page, never a stack trace.
"""

from __future__ import annotations

import html
import http.client
import http.server
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from agent.portal.admission import MemoryAdmission
from agent.portal.config import DeskUser, PortalConfig, SmsConfig
from agent.portal.identity_check import resident_id_check
from agent.portal.server import PortalServer
from agent.portal.service import Portal
from agent.portal.sms import HttpSms
from agent.portal.store import PortalStore
from agent.portal.tokens import hash_password
from wire.validate import validate_record

DESK_PASSWORD = "desk-password-1"
DESK_HASH = hash_password(DESK_PASSWORD)
MACS = {f"127.0.0.{n}": f"02:00:00:00:00:{n:02x}" for n in range(1, 10)}
PHONE, PHONE2, PHONE3 = "13912345678", "13912345679", "13700001111"
NAME = "王小明"
ROOM = "北楼305"
ID_FIRST17 = "11010519900307123"
ID_NUMBER = ID_FIRST17 + resident_id_check(ID_FIRST17)
ID_WRONG = ID_FIRST17 + ("0" if ID_NUMBER[-1] != "0" else "1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def message(self) -> str:
        m = re.search(r'id="msg">(.*?)</div>', self.text, re.S)
        return html.unescape(m.group(1)) if m else ""


@dataclass
class Harness:
    portal: Portal
    cfg: PortalConfig
    clock: Clock
    admission: MemoryAdmission
    sms: list[dict[str, Any]]
    records: list[dict[str, Any]]
    state: Path
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)  # per source address

    def request(self, method: str, path: str, form: dict[str, str] | None = None, *, src: str = "127.0.0.1",
                host: str | None = None, body: bytes | None = None, ctype: str | None = None,
                headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection(self.cfg.address, self.cfg.http_port, timeout=10,
                                          source_address=(src, 0))
        hdrs = {"Host": host or f"{self.cfg.address}:{self.cfg.http_port}", **(headers or {})}
        jar = self.cookies.setdefault(src, {})
        if jar:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            ctype = "application/x-www-form-urlencoded"
        if ctype:
            hdrs["Content-Type"] = ctype
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        for cookie in resp.headers.get_all("Set-Cookie") or []:
            k, _, v = cookie.split(";", 1)[0].partition("=")
            if v in ('""', ""):
                jar.pop(k.strip(), None)
            else:
                jar[k.strip()] = v
        return Reply(resp.status, resp.headers, text)

    # -- what a guest does --

    def send(self, phone: str = PHONE, src: str = "127.0.0.1") -> Reply:
        return self.request("POST", "/sms", {"action": "send", "phone": phone, "name": NAME}, src=src)

    def code(self, phone: str = PHONE) -> str:
        """The code in the newest SMS to ``phone``."""
        for req in reversed(self.sms):
            if req["json"]["to"] == phone:
                return str(req["json"]["code"])
        raise AssertionError(f"no SMS to {phone}")

    def verify(self, code: str, phone: str = PHONE, src: str = "127.0.0.1", agree: bool = True) -> Reply:
        form = {"action": "verify", "phone": phone, "name": NAME, "code": code}
        if agree:
            form["agree"] = "1"
        return self.request("POST", "/sms", form, src=src)

    def register(self, phone: str = PHONE, src: str = "127.0.0.1") -> Reply:
        assert self.send(phone, src).status == 200
        r = self.verify(self.code(phone), phone, src)
        assert r.status == 200 and 'id="account"' in r.text, r.message
        return r

    def api(self, src: str = "127.0.0.1") -> dict[str, Any]:
        r = self.request("GET", "/api/captive", src=src)
        assert r.status == 200 and r.headers["Content-Type"] == "application/captive+json", r
        assert r.headers["Cache-Control"] == "private"
        return dict(json.loads(r.text))

    def desk_sign_in(self, password: str = DESK_PASSWORD, src: str = "127.0.0.9") -> Reply:
        return self.request("POST", "/desk/sign-in", {"user": "front1", "password": password}, src=src)

    def desk_register(self, id_number: str = ID_NUMBER, *, src: str = "127.0.0.9", csrf: str | None = None,
                      query: str = "", days: str = "1") -> Reply:
        page = self.request("GET", "/desk", src=src)
        m = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert m is not None, page.text
        form = {"csrf": m.group(1) if csrf is None else csrf, "name": NAME, "id_type": "resident",
                "id_number": id_number, "room": ROOM, "phone": "", "days": days}
        return self.request("POST", f"/desk/register{query}", form, src=src)

    def voucher(self) -> str:
        assert self.desk_sign_in().status in (200, 303)
        r = self.desk_register()
        m = re.search(r'id="voucher">([^<]+)<', r.text)
        assert r.status == 200 and m is not None, r.text
        return m.group(1)

    def redeem(self, voucher: str, src: str) -> Reply:
        return self.request("POST", "/voucher", {"voucher": voucher, "agree": "1"}, src=src)

    def of(self, rtype: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records
                if r["type"] == rtype and all(r.get(k) == v for k, v in match.items())]


@pytest.fixture
def sms_provider() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            got.append({"path": self.path, "json": json.loads(self.rfile.read(n))})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/send", got
    finally:
        srv.shutdown()
        srv.server_close()


def make(tmp_path: Path, sms_provider: tuple[str, list[dict[str, Any]]], **over: Any) -> Iterator[Harness]:
    url, got = sms_provider
    sms_over = {k[4:]: over.pop(k) for k in list(over) if k.startswith("sms_")}
    sms = replace(SmsConfig(url=url, body='{"to": "{phone}", "code": "{code}", "minutes": "{minutes}"}',
                            timeout_s=5, code_ttl_s=300, code_tries=3, resend_after_s=60,
                            sends_per_number_hour=3, sends_per_device_hour=5, fails_per_device_hour=6),
                  **sms_over)
    cfg = replace(PortalConfig(interfaces=("lo",), address="127.0.0.1", http_port=_free_port(),
                               hostname="portal.test", session_s=600, idle_s=120, valid_s=3600,
                               devices_per_guest=2, sweep_s=1, sms=sms,
                               desk_users=(DeskUser("front1", DESK_HASH),)), **over)
    clock = Clock()
    records: list[dict[str, Any]] = []
    store = PortalStore(tmp_path / "portal.sqlite")
    admission = MemoryAdmission(cfg.idle_s)
    portal = Portal(cfg, store, admission, HttpSms(sms), records.extend, mac_of=MACS.get, clock=clock)
    portal.start()
    server = PortalServer(portal, cfg, "测试宾馆")
    server.start()
    try:
        yield Harness(portal, cfg, clock, admission, got, records, tmp_path / "portal.sqlite")
    finally:
        server.stop()
        portal.stop()
        store.close()
    for r in records:  # whatever a test did, every record is one the spool takes
        validate_record(r)


@pytest.fixture
def h(tmp_path: Path, sms_provider: tuple[str, list[dict[str, Any]]]) -> Iterator[Harness]:
    yield from make(tmp_path, sms_provider)


# -- SMS --


def test_sms_registration_admits_and_records(h: Harness) -> None:
    assert h.api()["captive"] is True
    sent = h.send()
    assert sent.status == 200 and sent.message == "验证码已发送，5分钟内有效。"
    assert h.sms[-1]["json"] == {"to": PHONE, "code": h.code(), "minutes": "5"}
    r = h.verify(h.code())
    assert "登记成功" in r.message and re.search(r'id="account">guest-\d{6}<', r.text)
    (reg,) = h.of("registration")
    (login,) = h.of("login", event="login")
    assert (reg["method"], reg["phone"], reg["name"], reg["mac"], reg["ip"]) == (
        "sms", PHONE, NAME, MACS["127.0.0.1"], "127.0.0.1")
    assert reg["valid_until"] == pytest.approx(h.clock.now + 3600)
    assert (login["event"], login["source"], login["account"], login["ip"]) == (
        "login", "portal", reg["account"], "127.0.0.1")
    api = h.api()
    assert api["captive"] is False and api["seconds-remaining"] == 600 and api["can-extend-session"] is False
    assert api["user-portal-url"] == f"http://portal.test:{h.cfg.http_port}/"  # no TLS configured
    assert h.admission.present() == {(MACS["127.0.0.1"], "127.0.0.1"): 120}
    # the same number again, another day: the same account
    h.request("POST", "/logout")
    h.clock.now += 120
    h.register()
    assert len({r["account"] for r in h.of("registration")}) == 1


def test_resend_wait_and_sends_per_number_and_device(h: Harness) -> None:
    assert h.send().status == 200
    again = h.send()
    assert again.status == 429 and again.message == "请在61秒后再获取验证码。"
    assert 'data-countdown="60"' in again.text
    h.clock.now += 61
    assert h.send().status == 200
    h.clock.now += 61
    assert h.send().status == 200  # the third this hour
    h.clock.now += 61
    r = h.send()
    assert r.status == 429 and r.message == "验证码发送次数过多，请一小时后再试，或到前台登记。"
    assert len(h.sms) == 3
    h.clock.now += 3600  # an hour after the first ones
    assert h.send().status == 200
    # per device, over every number: 5 an hour (1 sent in this hour so far)
    for phone in ("13800000001", "13800000002", "13800000003", "13800000004"):
        assert h.send(phone).status == 200, phone
    r = h.send("13800000005")
    assert r.status == 429 and "发送次数过多" in r.message
    assert h.send("13800000005", src="127.0.0.2").status == 200  # another device may
    assert not h.of("registration")


def test_wrong_codes_tries_left_then_used_up(h: Harness) -> None:
    h.send()
    code = h.code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = h.verify(wrong)
    assert r.status == 403 and r.message == "验证码错误，还可以尝试2次。"
    assert h.verify(wrong).message == "验证码错误，还可以尝试1次。"
    assert h.verify(wrong).message == "验证码错误次数过多，已失效，请重新获取。"
    r = h.verify(code)  # the right one, too late: the code is gone
    assert r.status == 400 and r.message == "请先获取验证码。"
    assert not h.of("login", event="login")


def test_a_code_is_single_use_and_expires(h: Harness) -> None:
    h.send()
    code = h.code()
    assert h.verify(code).status == 200
    r = h.verify(code, src="127.0.0.2")  # the same code from another device
    assert r.status == 400 and r.message == "请先获取验证码。"
    h.send(PHONE2, src="127.0.0.2")
    h.clock.now += 301
    r = h.verify(h.code(PHONE2), PHONE2, src="127.0.0.2")
    assert r.status == 403 and r.message == "验证码已过期，请重新获取。"
    assert len(h.of("login", event="login")) == 1


def test_brute_force_across_numbers_is_stopped(h: Harness) -> None:
    # 6 wrong codes an hour from one device, over several numbers: then refused, even a right code
    for phone in (PHONE, PHONE2, PHONE3):
        assert h.send(phone).status == 200
    for phone in (PHONE, PHONE2):
        for _ in range(3):
            h.verify(f"{(int(h.code(phone)) + 7) % 10**6:06d}", phone)
    r = h.verify(h.code(PHONE3), PHONE3)
    assert r.status == 429 and r.message == "错误次数过多，请一小时后再试，或到前台登记。"
    r = h.send("13800000009")
    assert r.status == 429 and "错误次数过多" in r.message
    assert h.portal.counters["wrong_codes"] == 6 and not h.of("registration")
    h.clock.now += 3601
    h.send(PHONE3)
    assert h.verify(h.code(PHONE3), PHONE3).status == 200


def test_must_agree_and_bad_input_are_messages(h: Harness) -> None:
    h.send()
    r = h.verify(h.code(), agree=False)
    assert r.status == 400 and r.message == "请先阅读并勾选同意登记说明。"
    r = h.send("12345")
    assert r.status == 400 and r.message == "请输入正确的中国大陆手机号码（11位）。"
    r = h.request("POST", "/sms", {"action": "send", "phone": PHONE}, src="127.0.0.99")  # no MAC known
    assert r.status == 403 and "无法识别您的设备" in r.message


# -- the desk and vouchers --


def test_desk_registration_voucher_devices_and_expiry(h: Harness) -> None:
    voucher = h.voucher()
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{5}-[2-9A-HJ-NP-Z]{5}", voucher)
    (reg,) = h.of("registration")
    assert (reg["method"], reg["name"], reg["id_type"], reg["id_number"], reg["room"], reg["desk_user"]) == (
        "desk", NAME, "resident", ID_NUMBER, ROOM, "front1")
    assert reg["mac"] is None and reg["valid_until"] == pytest.approx(h.clock.now + 86400)
    r = h.redeem("ABCDE-FGHJK", "127.0.0.1")
    assert r.status == 400 and r.message == "凭证号码无效，请核对后重新输入。"
    r = h.redeem(voucher.lower().replace("-", " "), "127.0.0.1")  # as typed on a phone
    assert r.status == 200 and reg["account"] in r.text
    assert h.redeem(voucher, "127.0.0.2").status == 200
    r = h.redeem(voucher, "127.0.0.3")  # devices_per_guest = 2: 403, waiting does not help
    assert r.status == 403 and r.message == "该账号登记的设备数量已达上限。"
    assert [x["ip"] for x in h.of("login", event="login", account=reg["account"])] == [
        "127.0.0.1", "127.0.0.2"]
    h.clock.now += 86401
    r = h.redeem(voucher, "127.0.0.4")
    assert r.status == 403 and r.message == "凭证已过期，请到前台重新登记。"


def test_desk_checks_the_resident_id_in_chinese_and_english(h: Harness) -> None:
    h.desk_sign_in()
    r = h.desk_register(ID_WRONG)
    assert r.status == 400 and r.message == "居民身份证号码校验位不正确，请核对。"
    assert ID_WRONG in r.text  # the form keeps what was typed, to be corrected
    r = h.desk_register(ID_WRONG, query="?lang=en")
    assert r.status == 400 and r.message == "The resident ID number's check digit is wrong: check the number."
    r = h.desk_register(days="31")
    assert r.status == 400 and r.message == "Days valid: 1 to 30."  # the language stays (cookie)
    assert not h.of("registration")


def test_desk_refuses_a_wrong_csrf_and_no_session(h: Harness) -> None:
    h.desk_sign_in()
    r = h.desk_register(csrf="forged")
    assert r.status == 400 and r.message == "请求无效，请返回重试。"
    r = h.request("POST", "/desk/register", {"csrf": "x", "name": NAME, "id_type": "resident",
                                             "id_number": ID_NUMBER, "days": "1"}, src="127.0.0.8")
    assert r.status == 403 and 'action="/desk/sign-in"' in r.text  # not signed in: the sign-in form
    assert not h.of("registration")


def test_desk_sign_in_is_throttled_after_five_wrong_passwords(h: Harness) -> None:
    r = h.desk_sign_in()
    assert r.status == 303 and "desk" in h.cookies["127.0.0.9"]
    for _ in range(5):
        r = h.desk_sign_in("wrong-password", src="127.0.0.8")
        assert r.status == 403 and r.message == "工号或密码错误，或尝试次数过多，请稍后再试。"
    r = h.desk_sign_in(src="127.0.0.8")  # the right password, refused for 15 minutes
    assert r.status == 403 and "desk" not in h.cookies["127.0.0.8"]
    assert h.portal.counters["desk_sign_in_throttled"] == 1
    h.clock.now += 901
    assert h.desk_sign_in(src="127.0.0.8").status == 303


# -- returning devices, logout, the sweep --


def test_a_returning_device_is_recognised_within_its_validity_only(h: Harness) -> None:
    h.register()
    account = h.of("login", event="login")[0]["account"]
    h.clock.now += 600
    h.portal.sweep()  # time up: logged out, the device remembered
    assert h.of("login", event="logout")[0]["duration"] == pytest.approx(600)
    assert h.admission.present() == {}
    # the phone's own probe, through the filter's redirect: admitted again, the open answer
    r = h.request("GET", "/generate_204", host="connectivitycheck.gstatic.com")
    assert r.status == 204
    assert [x["account"] for x in h.of("login", event="login")] == [account, account]
    h.clock.now += 600
    h.portal.sweep()
    h.clock.now += 2401  # past the registration's hour
    h.portal.sweep()
    r = h.request("GET", "/generate_204", host="connectivitycheck.gstatic.com")
    assert r.status == 302 and r.headers["Location"].startswith(f"http://portal.test:{h.cfg.http_port}/?url=")
    assert len(h.of("login", event="login")) == 2 and h.api()["captive"] is True


def test_logout_forgets_the_device(h: Harness) -> None:
    h.register()
    r = h.request("POST", "/logout")
    assert r.status == 200 and r.message == "您已下线。再次上网需要重新登记。"
    (out,) = h.of("login", event="logout")
    assert out["source"] == "portal" and out["session_id"] == h.of("login", event="login")[0]["session_id"]
    assert h.admission.present() == {}
    r = h.request("GET", "/hotspot-detect.html", host="captive.apple.com")
    assert r.status == 302 and h.api()["captive"] is True and len(h.of("login", event="login")) == 1


def test_sweep_idle_and_time_up_logouts_with_durations(h: Harness) -> None:
    h.register()
    h.register(PHONE2, src="127.0.0.2")
    h.portal.sweep()  # both present: the sweep notes when idleness would end them
    h.clock.now += 100
    h.admission.traffic((MACS["127.0.0.2"], "127.0.0.2"))  # .2 keeps sending, .1 is quiet
    h.admission.advance(100)
    h.portal.sweep()
    assert not h.of("login", event="logout")
    h.clock.now += 21
    h.admission.traffic((MACS["127.0.0.2"], "127.0.0.2"))
    h.admission.advance(21)  # .1 idle 121 s > idle_s 120
    h.portal.sweep()
    (idle,) = h.of("login", event="logout")
    assert idle["ip"] == "127.0.0.1" and idle["duration"] == pytest.approx(120)
    for _ in range(5):
        h.clock.now += 100
        h.admission.traffic((MACS["127.0.0.2"], "127.0.0.2"))
        h.portal.sweep()
    (up,) = h.of("login", event="logout", ip="127.0.0.2")
    assert up["duration"] == pytest.approx(600)  # ended at its hard end, not at the sweep
    assert h.portal.counters["ended_idle"] == 1 and h.portal.counters["ended_time_up"] == 1


# -- the HTTP side --


def test_redirected_traffic_and_probes_before_and_after(h: Harness) -> None:
    page = f"http://portal.test:{h.cfg.http_port}/"
    r = h.request("GET", "/news?id=1", host="www.example.test")
    assert r.status == 302 and r.headers["Location"] == page + "?url=" + urllib.parse.quote(
        "http://www.example.test/news?id=1", safe="")
    # the connection the filter translated is closed, so the next request after admission is
    # a new connection (which goes out) instead of this one again
    assert r.headers["Connection"] == "close" and r.headers["Cache-Control"] == "no-store"
    for path, host in (("/generate_204", "connectivitycheck.gstatic.com"),
                       ("/hotspot-detect.html", "captive.apple.com"),
                       ("/connecttest.txt", "www.msftconnecttest.com")):
        assert h.request("GET", path, host=host).status == 302, path
        assert h.request("GET", path).status == 302, path  # on the portal's own address too
    landing = h.request("GET", "/?url=" + urllib.parse.quote("http://www.example.test/news?id=1"))
    assert landing.status == 200 and 'value="http://www.example.test/news?id=1"' in landing.text
    h.register()
    assert h.request("GET", "/generate_204", host="connectivitycheck.gstatic.com").status == 204
    r = h.request("GET", "/hotspot-detect.html", host="captive.apple.com")
    assert r.status == 200 and "<TITLE>Success</TITLE>" in r.text
    r = h.request("GET", "/connecttest.txt", host="www.msftconnecttest.com")
    assert (r.status, r.text) == (200, "Microsoft Connect Test")
    assert h.request("GET", "/generate_204").status == 204
    r = h.request("GET", "/", src="127.0.0.1")
    assert "已连接互联网" in r.text and 'id="logout"' in r.text


def test_a_javascript_url_is_never_a_continue_link(h: Harness) -> None:
    r = h.request("GET", "/?url=" + urllib.parse.quote("javascript:alert(1)"))
    assert r.status == 200 and "javascript:" not in r.text


def test_english_toggle_is_kept(h: Harness) -> None:
    r = h.request("GET", "/?lang=en")
    assert '<html lang="en">' in r.text and "Register with your mobile number" in r.text
    assert h.cookies["127.0.0.1"]["lang"] == "en"
    r = h.send("12")
    assert r.message == "Enter a mainland China mobile number (11 digits)."
    r = h.request("GET", "/?lang=zh")
    assert '<html lang="zh-CN">' in r.text and "手机号码登记" in r.text
    r = h.request("GET", "/", src="127.0.0.2", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert "Register with your mobile number" in r.text


@pytest.mark.parametrize("path", ["/sms", "/voucher", "/desk/sign-in", "/desk/register", "/desk/sign-out"])
def test_malformed_bodies_get_a_page_not_a_stack_trace(h: Harness, path: str) -> None:
    h.desk_sign_in(src="127.0.0.1")
    for body, ctype in ((b"x" * (20 * 1024), "application/x-www-form-urlencoded"),  # over 16 KiB
                        (b"phone=\xff\xfe&action=send", "application/x-www-form-urlencoded"),
                        (b"--b\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n1",
                         "multipart/form-data; boundary=b"),  # cut short
                        (b"{}", "application/json")):
        r = h.request("POST", path, body=body, ctype=ctype)
        assert r.status in (200, 303, 400, 403, 413), (path, body[:20], r.status, r.text[:300])
        assert "Traceback" not in r.text and "Internal Server Error" not in r.text, (path, r.text[:300])
        if r.status != 303:
            assert r.text.startswith("<!doctype html>"), (path, r.text[:300])
    assert not h.of("registration") and not h.of("login", event="login")


def test_the_state_file_holds_no_personal_data(h: Harness) -> None:
    h.register()
    voucher = h.voucher()
    h.redeem(voucher, "127.0.0.2")
    h.send(PHONE3, src="127.0.0.3")  # a code still outstanding
    code = h.code(PHONE3)
    h.portal.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    data = b"".join(p.read_bytes() for p in h.state.parent.glob("portal.sqlite*"))
    # the keyed hashes (64 hex digits) may hold any short run of digits by chance: not a leak
    data = re.sub(rb"[0-9a-f]{64}", b"", data)
    for secret in (PHONE, PHONE3, NAME, ID_NUMBER, code, voucher, voucher.replace("-", ""), ROOM,
                   DESK_PASSWORD):
        for enc in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(enc) not in data, (secret, enc)
    assert (h.state.stat().st_mode & 0o777) == 0o600


def test_records_are_valid_by_the_wire(h: Harness) -> None:
    h.register()
    h.redeem(h.voucher(), "127.0.0.2")
    h.request("POST", "/logout", src="127.0.0.2")
    h.clock.now += 601
    h.portal.sweep()
    kinds = sorted({(r["type"], r.get("event") or r.get("method")) for r in h.records})
    assert kinds == [("login", "login"), ("login", "logout"), ("registration", "desk"),
                     ("registration", "sms")]
    for r in h.records:
        assert validate_record(r) == r


def test_stop_logs_everyone_out(tmp_path: Path, sms_provider: tuple[str, list[dict[str, Any]]]) -> None:
    gen = make(tmp_path, sms_provider)
    h = next(gen)
    h.register()
    h.clock.now += 30
    next(gen, None)  # server and portal stop
    (out,) = h.of("login", event="logout")
    assert out["duration"] == pytest.approx(30) and not h.admission.installed
