"""The portal's pages: plain HTML, one small stylesheet and one small script, no CDN.

Usable on a phone (one column, 16 px inputs so iOS does not zoom, buttons a thumb wide) and
by keyboard (every input has a ``<label>``, the message region is ``role=alert``, the focus
outline is kept). Everything works without JavaScript; the script only counts down the
resend wait and the time left. Every value put in a page goes through ``html.escape``.
"""

from __future__ import annotations

import time
from html import escape
from typing import Final
from urllib.parse import urlsplit

from agent.portal.texts import t

CSS: Final = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,"PingFang SC","Microsoft YaHei",sans-serif;
color:#1a1a1a;background:#f4f5f7}header{background:#1f4e8c;color:#fff;padding:12px 16px;display:flex;
justify-content:space-between;align-items:center}header h1{font-size:18px;margin:0}header a{color:#fff}
main{max-width:480px;margin:0 auto;padding:12px 16px}section{background:#fff;border-radius:8px;
padding:14px 16px;margin:12px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}h2{font-size:17px;margin:0 0 8px}
label{display:block;margin:10px 0 4px;font-weight:600}input,select{width:100%;font-size:16px;
padding:10px;border:1px solid #9aa3ad;border-radius:6px}input[type=checkbox]{width:auto;margin-right:8px}
.check{display:flex;align-items:flex-start;font-weight:400}button{font-size:16px;padding:11px 14px;
margin-top:12px;border:0;border-radius:6px;background:#1f4e8c;color:#fff;width:100%}
button.second{background:#e3e8ef;color:#1a1a1a}button:disabled{opacity:.6}
:focus{outline:3px solid #f0a000;outline-offset:2px}.msg{padding:10px 12px;border-radius:6px;margin:12px 0}
.err{background:#fde8e8;color:#8a1010}.ok{background:#e6f4ea;color:#0d5a24}.hint{color:#555;font-size:14px}
.voucher{font:700 28px/1.2 ui-monospace,monospace;letter-spacing:2px;text-align:center;padding:12px;
border:2px dashed #1f4e8c;border-radius:8px}.notice{font-size:14px;color:#333}
@media print{header,form,.noprint{display:none}}
"""

JS: Final = """
document.querySelectorAll('[data-countdown]').forEach(function (el) {
  var left = parseInt(el.getAttribute('data-countdown'), 10), b = el.closest('form') &&
      el.closest('form').querySelector('button[value=send]');
  function tick() {
    if (left <= 0) { el.textContent = ''; if (b) b.disabled = false; return; }
    el.textContent = ' (' + left + ')'; if (b) b.disabled = true; left -= 1; setTimeout(tick, 1000);
  }
  tick();
});
document.querySelectorAll('[data-left]').forEach(function (el) {
  var left = parseInt(el.getAttribute('data-left'), 10);
  function tick() {
    var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
    el.textContent = h + ':' + (m < 10 ? '0' : '') + m + ':' + (s < 10 ? '0' : '') + s;
    if (left > 0) { left -= 1; setTimeout(tick, 1000); }
  }
  tick();
});
document.querySelectorAll('[data-print]').forEach(function (b) {
  b.addEventListener('click', function () { window.print(); });
});
"""


def safe_next(url: str) -> str | None:
    """The page the guest wanted, when it is a plain web address (never javascript: etc.)."""
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.hostname and len(url) <= 2000:
        return url
    return None


def duration_text(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def layout(lang: str, body: str, unit: str, *, switch_to: str) -> str:
    other = "en" if lang == "zh" else "zh"
    return (f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{escape(t("title", lang))}</title><link rel="stylesheet" href="/static/portal.css">'
            f'</head><body><header><h1>{escape(unit or t("title", lang))}</h1>'
            f'<a href="{escape(switch_to)}lang={other}" lang="{other}">{escape(t("lang_switch", lang))}</a>'
            f'</header><main>{body}</main><script src="/static/portal.js"></script></body></html>')


def message(lang: str, key: str | None, ok: bool = False, **values: object) -> str:
    if key is None:
        return '<div role="alert" aria-live="assertive"></div>'
    cls = "ok" if ok else "err"
    return (f'<div role="alert" aria-live="assertive" class="msg {cls}" id="msg">'
            f'{escape(t(key, lang, **values))}</div>')


def notice(lang: str, extra: str) -> str:
    more = f"<p>{escape(extra)}</p>" if extra else ""
    return (f'<section class="notice" aria-labelledby="why">'
            f'<h2 id="why">{escape(t("notice_head", lang))}</h2>'
            f'<p>{escape(t("notice", lang))}</p>{more}</section>')


def index(lang: str, *, methods: tuple[str, ...], ask_name: bool, msg: str, phone: str = "", name: str = "",
          next_url: str = "", countdown: int = 0, notice_extra: str = "") -> str:
    hidden = f'<input type="hidden" name="url" value="{escape(next_url)}">'
    agree = (f'<label class="check"><input type="checkbox" name="agree" value="1" id="{{id}}" required>'
             f'{escape(t("agree", lang))}</label>')
    parts = [msg]
    if "sms" in methods:
        name_field = (f'<label for="name">{escape(t("name", lang))}</label>'
                      f'<input id="name" name="name" autocomplete="name" maxlength="50" '
                      f'value="{escape(name)}">') if ask_name else ""
        wait = f'<span data-countdown="{countdown}"></span>' if countdown > 0 else ""
        parts.append(
            f'<section aria-labelledby="sms-h"><h2 id="sms-h">{escape(t("sms_head", lang))}</h2>'
            f'<form method="post" action="/sms">{hidden}'
            f'<label for="phone">{escape(t("phone", lang))}</label>'
            f'<input id="phone" name="phone" type="tel" inputmode="numeric" autocomplete="tel" '
            f'maxlength="20" '
            f'value="{escape(phone)}" aria-describedby="phone-hint">'
            f'<div class="hint" id="phone-hint">{escape(t("phone_hint", lang))}</div>{name_field}'
            f'<button type="submit" name="action" value="send" id="send" class="second" formnovalidate>'
            f'{escape(t("send_code", lang))}{wait}</button>'
            f'<label for="code">{escape(t("code", lang))}</label>'
            f'<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8">'
            f'{agree.format(id="agree")}'
            f'<button type="submit" name="action" value="verify" id="verify">{escape(t("verify", lang))}'
            f'</button></form></section>')
    if "voucher" in methods:
        parts.append(
            f'<section aria-labelledby="v-h"><h2 id="v-h">{escape(t("voucher_head", lang))}</h2>'
            f'<form method="post" action="/voucher">{hidden}'
            f'<label for="voucher-code">{escape(t("voucher", lang))}</label>'
            f'<input id="voucher-code" name="voucher" autocomplete="off" autocapitalize="characters" '
            f'maxlength="24" aria-describedby="v-hint"><div class="hint" id="v-hint">'
            f'{escape(t("voucher_hint", lang))}</div>{agree.format(id="agree-v")}'
            f'<button type="submit" id="redeem">{escape(t("redeem", lang))}</button></form></section>')
    elif "desk" in methods:
        parts.append(f'<section><p>{escape(t("desk_hint", lang))}</p></section>')
    parts.append(notice(lang, notice_extra))
    return "".join(parts)


def online(lang: str, *, account: str, seconds: float, next_url: str | None, msg: str) -> str:
    cont = ""
    if next_url:
        cont = (f'<p><a href="{escape(next_url)}" id="continue">'
                f'{escape(t("continue", lang, url=next_url))}</a></p>')
    left = f'<span data-left="{int(seconds)}">{duration_text(seconds)}</span>'
    text = escape(t("online", lang, account="{account}", left="{left}")).replace(
        "{account}", f'<b id="account">{escape(account)}</b>').replace("{left}", left)
    return (f'{msg}<section aria-labelledby="on-h"><h2 id="on-h">{escape(t("online_head", lang))}</h2>'
            f'<p>{text}</p>{cont}<form method="post" action="/logout">'
            f'<button type="submit" id="logout" class="second">{escape(t("logout", lang))}</button>'
            f'</form></section>')


def logged_out(lang: str) -> str:
    return (f'{message(lang, "logged_out", ok=True)}<section><p><a href="/" id="back">'
            f'{escape(t("back", lang))}</a></p></section>')


def desk_sign_in(lang: str, msg: str) -> str:
    return (f'{msg}<section aria-labelledby="d-h"><h2 id="d-h">{escape(t("desk_title", lang))}</h2>'
            f'<form method="post" action="/desk/sign-in">'
            f'<label for="user">{escape(t("desk_user", lang))}</label>'
            f'<input id="user" name="user" autocomplete="username" maxlength="64" required>'
            f'<label for="password">{escape(t("password", lang))}</label>'
            f'<input id="password" name="password" type="password" autocomplete="current-password" required>'
            f'<button type="submit" id="sign-in">{escape(t("sign_in", lang))}</button></form></section>')


def desk_form(lang: str, *, user: str, csrf: str, msg: str, max_days: int,
              values: dict[str, str] | None = None) -> str:
    v = values or {}

    def field(key: str, label: str, attrs: str = "") -> str:
        return (f'<label for="g-{key}">{escape(t(label, lang))}</label>'
                f'<input id="g-{key}" name="{key}" value="{escape(v.get(key, ""))}" {attrs}>')

    opts = "".join(f'<option value="{k}"{" selected" if v.get("id_type", "resident") == k else ""}>'
                   f'{escape(t("id_" + k, lang))}</option>' for k in ("resident", "passport", "other"))
    return (f'{msg}<section aria-labelledby="d-h"><h2 id="d-h">{escape(t("desk_title", lang))}</h2>'
            f'<p class="hint">{escape(t("signed_in_as", lang, user=user))}</p>'
            f'<form method="post" action="/desk/register">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'{field("name", "g_name", "required maxlength=50 autocomplete=off")}'
            f'<label for="g-id-type">{escape(t("g_id_type", lang))}</label>'
            f'<select id="g-id-type" name="id_type">{opts}</select>'
            f'{field("id_number", "g_id_number", "required maxlength=40 autocomplete=off")}'
            f'{field("room", "g_room", "maxlength=40")}'
            f'{field("phone", "g_phone", "type=tel inputmode=numeric maxlength=20")}'
            f'<label for="g-days">{escape(t("g_days", lang))}</label>'
            f'<input id="g-days" name="days" type="number" min="1" max="{max_days}" '
            f'value="{escape(v.get("days", "1"))}">'
            f'<button type="submit" id="register">{escape(t("register", lang))}</button></form>'
            f'<form method="post" action="/desk/sign-out">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<button type="submit" class="second" id="sign-out">{escape(t("sign_out", lang))}</button>'
            f'</form></section>')


def desk_voucher(lang: str, *, account: str, voucher: str, valid_until: float) -> str:
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(valid_until))
    return (f'<section aria-labelledby="dv-h"><h2 id="dv-h">{escape(t("desk_title", lang))}</h2>'
            f'<p class="msg ok" role="status">'
            f'{escape(t("desk_registered", lang, account=account, until=until))}'
            f'</p><p class="voucher" id="voucher">{escape(voucher)}</p>'
            f'<p class="hint">{escape(t("voucher_hint", lang))}</p>'
            f'<button type="button" data-print="1" class="noprint">{escape(t("print", lang))}</button>'
            f'<p class="noprint"><a href="/desk" id="next">{escape(t("next_guest", lang))}</a></p></section>')
