"""A guest's phone on the lab's guest network: headless Chromium registers through the portal.

Run inside the guest's network namespace (``ip netns exec NS python guest_browser.py ...``) by
``deploy/lab/lab.py`` (``make demo``) and the e2e tests. Debian's ``chromium`` driven by
Playwright (its own browser download is not used), a phone-sized viewport (390x844), Chinese
locale, the user agent given (so the web server's log tells this guest's page view apart).

``register``: open ``--url`` (an ordinary ``http://`` page) -> the gateway redirects it to the
portal (the landing page must be the portal's) -> type the mobile number and name, ask for a
code -> read the code the SMS provider's stand-in received (``--sms-log``: one JSON request per
line, as the lab's ``smsd`` writes them; the newest for this number) -> type it, tick the
notice, register -> the portal's "online" page names the account -> follow its "continue" link
to the page first asked for, which now comes from the web server.

``desk``: the front desk's page (``--portal``): sign in, register a guest with a resident ID
and room, read the voucher it prints.

Prints one JSON object: what each page showed (URL, message, account or voucher), the
screenshots saved in ``--shots`` (``portal-landing.png``, ``portal-code-sent.png``,
``portal-online.png``, ``web-page.png``; ``desk-*.png``), and the final page's text. Exit
status 1 with ``{"error": ...}`` when a step did not show what a guest would expect.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 390, 844  # a phone's viewport (CSS pixels)


class StepError(Exception):
    pass


def sms_code(log: Path, phone: str, after: float, timeout: float = 15.0) -> str:
    """The code in the newest request for ``phone`` received after ``after`` (the phone's SMS)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lines = log.read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        for line in reversed(lines):
            try:
                req = json.loads(line)
            except ValueError:
                continue
            body = req.get("json") or {}
            if req.get("ts", 0) >= after and body.get("to") == phone and body.get("code"):
                return str(body["code"])
        time.sleep(0.1)
    raise StepError(f"no SMS for {phone} in {log} within {timeout:.0f} s")


def _shot(page: Any, shots: Path, name: str, out: dict[str, Any]) -> None:
    shots.mkdir(parents=True, exist_ok=True)
    path = shots / f"{name}.png"
    page.screenshot(path=str(path))
    out.setdefault("shots", []).append(str(path))


def _message(page: Any) -> str:
    loc = page.locator("#msg")
    return str(loc.inner_text()) if loc.count() else ""


def register(page: Any, a: argparse.Namespace, out: dict[str, Any]) -> None:
    page.goto(a.url, wait_until="load")
    out["landing_url"] = page.url
    out["landing_title"] = page.title()
    if not page.url.startswith(a.portal) or page.locator("#phone").count() == 0:
        raise StepError(f"{a.url} did not land on the portal {a.portal}: {page.url}")
    _shot(page, a.shots, "portal-landing", out)
    page.fill("#phone", a.phone)
    page.fill("#name", a.name)
    asked = time.time()
    with page.expect_navigation():
        page.click("#send")
    out["code_sent_message"] = _message(page)
    if "验证码已发送" not in out["code_sent_message"]:
        raise StepError(f"no code sent: {out['code_sent_message']!r}")
    _shot(page, a.shots, "portal-code-sent", out)
    code = sms_code(a.sms_log, a.phone, asked - 1)
    out["code_length"] = len(code)
    page.fill("#code", code)
    page.check("#agree")
    with page.expect_navigation():
        page.click("#verify")
    out["online_message"] = _message(page)
    if page.locator("#account").count() == 0:
        raise StepError(f"not online after the code: {out['online_message']!r}")
    out["account"] = page.inner_text("#account")
    out["online_text"] = page.inner_text("main")
    _shot(page, a.shots, "portal-online", out)
    with page.expect_navigation():
        page.click("#continue")  # back to the page first asked for, now from the internet
    out["final_url"] = page.url
    out["final_text"] = page.inner_text("body")
    _shot(page, a.shots, "web-page", out)


def desk(page: Any, a: argparse.Namespace, out: dict[str, Any]) -> None:
    page.goto(f"{a.portal}desk", wait_until="load")
    page.fill("#user", a.desk_user)
    page.fill("#password", a.desk_password)
    with page.expect_navigation():
        page.click("#sign-in")
    if page.locator("#g-name").count() == 0:
        raise StepError(f"desk sign-in refused: {_message(page)!r}")
    page.fill("#g-name", a.name)
    page.select_option("#g-id-type", "resident")
    page.fill("#g-id_number", a.id_number)
    page.fill("#g-room", a.room)
    _shot(page, a.shots, "desk-form", out)
    with page.expect_navigation():
        page.click("#register")
    if page.locator("#voucher").count() == 0:
        raise StepError(f"desk registration refused: {_message(page)!r}")
    out["voucher"] = page.inner_text("#voucher")
    out["desk_text"] = page.inner_text("main")
    _shot(page, a.shots, "desk-voucher", out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("action", choices=["register", "desk"])
    ap.add_argument("--portal", required=True, help="the portal page, e.g. http://portal.example.test:8080/")
    ap.add_argument("--url", default="http://www.example.test/", help="register: the page the guest opens")
    ap.add_argument("--phone", default="")
    ap.add_argument("--name", default="")
    ap.add_argument("--sms-log", type=Path, help="register: the SMS stand-in's request log")
    ap.add_argument("--desk-user", default="")
    ap.add_argument("--desk-password", default="")
    ap.add_argument("--id-number", default="")
    ap.add_argument("--room", default="")
    ap.add_argument("--user-agent", default="")
    ap.add_argument("--shots", type=Path, required=True, help="directory for the screenshots")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per page step")
    a = ap.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print(json.dumps({"error": "Debian's chromium is not installed"}))
        return 1
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            ctx = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, locale="zh-CN",
                                      timezone_id="Asia/Shanghai",
                                      user_agent=a.user_agent or None)
            page = ctx.new_page()
            page.set_default_timeout(a.timeout * 1000)
            (register if a.action == "register" else desk)(page, a, out)
        except (StepError, PlaywrightError) as e:
            out["error"] = f"{type(e).__name__}: {e}"
            try:
                out["error_page"] = {"url": page.url, "text": page.inner_text("body")[:2000]}
                _shot(page, a.shots, f"error-{a.action}", out)
            except Exception:  # the page itself may be gone: the error above says why
                pass
        finally:
            browser.close()
    print(json.dumps(out, ensure_ascii=False))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
