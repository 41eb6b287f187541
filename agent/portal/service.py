"""The captive portal's logic: register a guest, admit their device, end the admission.

What: ``Portal`` is what the HTTP side (``agent.portal.server``) calls, with the client's
address; it checks input (``identity_check``), keeps state (``store``), sends codes (``sms``),
opens the packet filter (``admission``) and emits records through ``emit``:

- ``registration`` (SCHEMA.md, 1.5 additions) when a guest registers: by SMS (a mainland
  mobile number proved with a one-time code, and the name when ``ask_name``) or at the front
  desk (name, ID type and number checked — GB 11643 for resident IDs —, room or seat; the desk
  hands over a voucher code). One account per guest (``guest-NNNNNN``); a number that
  registers again keeps its account.
- ``login`` (source ``portal``) when a device is admitted: by a verified code, by a voucher, or
  because it is a device this guest registered before, still within the registration's
  validity (recognised by MAC on its next plain-HTTP request, e.g. the phone's own captive
  probe); ``logout`` when the admission ends: the session time is up (``session_s``, never
  past the registration's validity), the device was idle ``idle_s`` (the packet filter's
  timer: ``admission``), the guest logged out (the device is then forgotten), or the agent
  stopped or restarted.

Limits (each refusal is the guest's message, never a stack trace): a code lives
``code_ttl_s``, is single-use and allows ``code_tries`` wrong tries; a number gets a code at
most every ``resend_after_s`` and ``sends_per_number_hour`` times an hour, a device
``sends_per_device_hour``; a device with ``fails_per_device_hour`` wrong codes or vouchers in an
hour is refused for the rest of it (brute force across numbers or vouchers); a guest may
have ``devices_per_guest`` devices; desk sign-in allows 5 wrong passwords per name and 20 per
address in 15 minutes.

Personal data: names, ID and phone numbers exist only in the ``registration`` record (to the
spool) and in memory while a request is handled; logs name accounts only.

Threads: the HTTP side calls from its event loop's executor threads, the sweep from its own:
one lock around the state. The SMS request is sent outside the lock.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agent.identity.login import login_record
from agent.portal.admission import Admission, AdmissionError
from agent.portal.config import PortalConfig
from agent.portal.identity_check import (
    ID_TYPES,
    InputError,
    id_document,
    mobile_number,
    person_name,
    short_text,
)
from agent.portal.sms import SmsError, SmsSender
from agent.portal.store import PortalStore, Session
from agent.portal.tokens import Keyed, check_password, new_code, new_voucher, normal_voucher, voucher_text

log = logging.getLogger("edgeaudit.portal")

HOUR: Final = 3600.0
DAY: Final = 86400.0
#: Desk sign-in: wrong passwords allowed per name and per address in the window.
DESK_FAILS_PER_USER: Final = 5
DESK_FAILS_PER_ADDRESS: Final = 20
DESK_FAIL_WINDOW_S: Final = 900.0
#: A desk sign-in lasts a shift.
DESK_SESSION_S: Final = 12 * HOUR
#: Open desk sign-ins kept (each a few hundred bytes).
MAX_DESK_SESSIONS: Final = 256
PRUNE_EVERY_S: Final = 600.0


@dataclass(frozen=True)
class Outcome:
    """What the page tells the guest: ``key`` names the message (``agent.portal.texts``)."""

    ok: bool
    key: str
    account: str | None = None
    voucher: str | None = None
    valid_until: float | None = None
    seconds: float | None = None  # seconds left: of the admission, or before a code may be resent
    tries_left: int | None = None


@dataclass
class DeskSession:
    user: str
    csrf: str
    expires: float


def neighbour_mac(ip: str, arp: Path = Path("/proc/net/arp")) -> str | None:
    """The MAC the gateway's neighbour table has for ``ip`` (the guest network is one hop)."""
    try:
        lines = arp.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) >= 4 and f[0] == ip and f[3] != "00:00:00:00:00:00":
            return f[3].lower()
    return None


class Portal:
    def __init__(self, cfg: PortalConfig, store: PortalStore, admission: Admission,
                 sms: SmsSender | None, emit: Callable[[list[dict[str, Any]]], None], *,
                 mac_of: Callable[[str], str | None] = neighbour_mac,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.admission = admission
        self.sms = sms
        self.emit = emit
        self.mac_of = mac_of
        self.clock = clock
        self.keyed = Keyed(store.key)
        self._lock = threading.RLock()
        self._desk: dict[str, DeskSession] = {}
        self._ends: dict[str, float] = {}  # session id -> when the filter's idle timer would end it
        self._pruned = 0.0
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- start and stop --

    def start(self) -> None:
        """Install the filter (nobody admitted) and end what a previous run left open."""
        with self._lock:
            self.admission.setup()
            now = self.clock()
            ended = [self._end(s, now, forget=False) for s in self.store.open_sessions()]
            if ended:
                log.info("portal: %d admission(s) of the previous run ended at start", len(ended))
                self.emit(ended)

    def stop(self) -> None:
        with self._lock:
            now = self.clock()
            out = []
            for s in self.store.open_sessions():
                out.append(self._end(s, now, forget=False))
            if out:
                self.emit(out)
            self.admission.teardown()

    # -- what a client is --

    def session_of(self, ip: str) -> Session | None:
        with self._lock:
            for s in self.store.open_sessions():
                if s.ip == ip:
                    return s
        return None

    def seconds_remaining(self, ip: str) -> float | None:
        s = self.session_of(ip)
        return None if s is None else max(0.0, s.hard_end - self.clock())

    def recognise(self, ip: str) -> Session | None:
        """Admit a device its guest registered before (still valid); the open session if any."""
        with self._lock:
            s = self.session_of(ip)
            if s is not None:
                return s
            mac = self.mac_of(ip)
            if mac is None:
                return None
            now = self.clock()
            account = self.store.device(mac, now)
            if account is None:
                return None
            until = self.store.device_valid_until(mac)
            out = self._admit(account, mac, ip, until, now)
            if not out.ok:
                return None
            self._count("recognised")
            return self.session_of(ip)

    # -- SMS --

    def send_code(self, ip: str, phone_text: str) -> Outcome:
        sms = self.sms
        if sms is None or "sms" not in self.cfg.methods or self.cfg.sms is None:
            return Outcome(False, "method_off")
        limits = self.cfg.sms
        try:
            phone = mobile_number(phone_text)
        except InputError as e:
            return Outcome(False, e.key)
        mac = self.mac_of(ip)
        if mac is None:
            return Outcome(False, "no_device")
        with self._lock:
            now = self.clock()
            pkey = self.keyed("phone", phone)
            last = self.store.last("send-number", pkey)
            if last is not None and now - last < limits.resend_after_s:
                return Outcome(False, "wait_resend", seconds=limits.resend_after_s - (now - last))
            if self.store.count("send-number", pkey, now - HOUR) >= limits.sends_per_number_hour \
                    or self.store.count("send-device", mac, now - HOUR) >= limits.sends_per_device_hour:
                self._count("sms_refused_limit")
                return Outcome(False, "too_many_sends")
            if self._device_blocked(mac, now):
                return Outcome(False, "too_many_tries")
            code = new_code()
            self.store.put_code(pkey, self.keyed("code", f"{phone}:{code}"), now + limits.code_ttl_s,
                                limits.code_tries, now)
            self.store.note("send-number", pkey, now)
            self.store.note("send-device", mac, now)
        try:
            sms.send(phone, code, max(1, limits.code_ttl_s // 60))
        except SmsError as e:
            with self._lock:
                self.store.drop_code(pkey)
            self._count("sms_failed")
            log.error("portal: SMS not sent: %s", e)
            return Outcome(False, "sms_failed")
        self._count("sms_sent")
        return Outcome(True, "code_sent", seconds=float(limits.resend_after_s))

    def verify_code(self, ip: str, phone_text: str, code_text: str, name_text: str, agreed: bool) -> Outcome:
        if "sms" not in self.cfg.methods or self.cfg.sms is None:
            return Outcome(False, "method_off")
        try:
            phone = mobile_number(phone_text)
            name = person_name(name_text, required=self.cfg.ask_name)
        except InputError as e:
            return Outcome(False, e.key)
        if not agreed:
            return Outcome(False, "must_agree")
        mac = self.mac_of(ip)
        if mac is None:
            return Outcome(False, "no_device")
        code = "".join(code_text.split())
        with self._lock:
            now = self.clock()
            if self._device_blocked(mac, now):
                return Outcome(False, "too_many_tries")
            pkey = self.keyed("phone", phone)
            row = self.store.code(pkey)
            if row is None:
                return Outcome(False, "no_code")
            code_key, expires, tries_left, _sent = row
            if now >= expires:
                self.store.drop_code(pkey)
                return Outcome(False, "code_expired")
            if not secrets.compare_digest(self.keyed("code", f"{phone}:{code}"), code_key):
                self.store.note("fail-device", mac, now)
                self._count("wrong_codes")
                if tries_left <= 1:
                    self.store.drop_code(pkey)  # used up: a new code must be asked for
                    return Outcome(False, "code_used_up")
                self.store.spend_try(pkey)
                return Outcome(False, "wrong_code", tries_left=tries_left - 1)
            self.store.drop_code(pkey)  # single use
            valid_until = now + self.cfg.valid_s
            account = self.store.account_of_phone(pkey)
            if account is None:
                account = self.store.new_account("sms", pkey, now, valid_until, None)
            else:
                self.store.extend_guest(account, valid_until)
            if self._too_many_devices(account, mac, now):
                return Outcome(False, "too_many_devices")
            self.emit([self._registration(now, account, "sms", name=name, phone=phone, mac=mac, ip=ip,
                                          valid_until=valid_until)])
            self._count("registered_sms")
            return self._admit(account, mac, ip, valid_until, now)

    # -- vouchers and the desk --

    def redeem(self, ip: str, typed: str, agreed: bool) -> Outcome:
        if "voucher" not in self.cfg.methods:
            return Outcome(False, "method_off")
        if not agreed:
            return Outcome(False, "must_agree")
        mac = self.mac_of(ip)
        if mac is None:
            return Outcome(False, "no_device")
        with self._lock:
            now = self.clock()
            if self._device_blocked(mac, now):
                return Outcome(False, "too_many_tries")
            vkey = self.keyed("voucher", normal_voucher(typed))
            row = self.store.voucher(vkey)
            if row is None:
                self.store.note("fail-device", mac, now)
                self._count("wrong_vouchers")
                return Outcome(False, "bad_voucher")
            account, valid_until, _used = row
            if now >= valid_until:
                return Outcome(False, "voucher_expired")
            if self._too_many_devices(account, mac, now):
                return Outcome(False, "too_many_devices")
            self.store.use_voucher(vkey)
            self._count("vouchers_redeemed")
            return self._admit(account, mac, ip, valid_until, now)

    def desk_sign_in(self, user: str, password: str, ip: str) -> tuple[str, DeskSession] | None:
        """(token, session) for ``user`` when the password is right and the limits allow."""
        with self._lock:
            now = self.clock()
            since = now - DESK_FAIL_WINDOW_S
            if self.store.count("desk-fail-user", user, since) >= DESK_FAILS_PER_USER \
                    or self.store.count("desk-fail-addr", ip, since) >= DESK_FAILS_PER_ADDRESS:
                self._count("desk_sign_in_throttled")
                return None
        known = next((u for u in self.cfg.desk_users if u.name == user), None)
        # the KDF runs for unknown names too, so timing does not tell which names exist
        ok = check_password(password, known.password_hash if known else _DUMMY_HASH) and known is not None
        with self._lock:
            now = self.clock()
            if not ok:
                self.store.note("desk-fail-user", user, now)
                self.store.note("desk-fail-addr", ip, now)
                self._count("desk_sign_in_failed")
                return None
            if len(self._desk) >= MAX_DESK_SESSIONS:
                for tok in sorted(self._desk, key=lambda t: self._desk[t].expires)[:len(self._desk) // 4]:
                    del self._desk[tok]
            token = secrets.token_urlsafe(32)
            sess = self._desk[token] = DeskSession(user, secrets.token_urlsafe(16), now + DESK_SESSION_S)
            self._count("desk_sign_ins")
            log.info("portal: desk user %s signed in", user)
            return token, sess

    def desk_session(self, token: str | None) -> DeskSession | None:
        if not token:
            return None
        with self._lock:
            sess = self._desk.get(token)
            if sess is None or sess.expires <= self.clock():
                self._desk.pop(token, None)
                return None
            return sess

    def desk_sign_out(self, token: str | None) -> None:
        with self._lock:
            if token:
                self._desk.pop(token, None)

    def desk_register(self, desk: DeskSession, *, name: str, id_type: str, id_number: str, room: str,
                      phone: str, days: str) -> Outcome:
        if "desk" not in self.cfg.methods:
            return Outcome(False, "method_off")
        try:
            who = person_name(name)
            if id_type not in ID_TYPES:
                raise InputError("bad_id_type")
            number = id_document(id_type, id_number)
            where = short_text(room)
            tel = mobile_number(phone) if phone.strip() else None
            stay = int(days) if days.strip().isdigit() else 0
            if not 1 <= stay <= self.cfg.desk_max_days:
                raise InputError("bad_days")
        except InputError as e:
            return Outcome(False, e.key)
        with self._lock:
            now = self.clock()
            valid_until = now + stay * DAY
            account = self.store.new_account("desk", self.keyed("phone", tel) if tel else None, now,
                                             valid_until, desk.user)
            code = new_voucher()
            self.store.put_voucher(self.keyed("voucher", code), account, valid_until)
            self.emit([self._registration(now, account, "desk", name=who, id_type=id_type,
                                          id_number=number, phone=tel, room=where, valid_until=valid_until,
                                          desk_user=desk.user)])
            self._count("registered_desk")
            log.info("portal: desk user %s registered %s", desk.user, account)
            return Outcome(True, "desk_registered", account=account, voucher=voucher_text(code),
                           valid_until=valid_until)

    # -- the end of an admission --

    def logout(self, ip: str) -> Outcome:
        with self._lock:
            s = self.session_of(ip)
            if s is None:
                return Outcome(False, "not_admitted")
            with_error = self._revoke(s)
            self.emit([self._end(s, self.clock(), forget=True)])
            self._count("logouts_page")
            return Outcome(not with_error, "logged_out")

    def sweep(self) -> None:
        """End admissions whose time is up or whose device went idle (called every ``sweep_s``)."""
        with self._lock:
            now = self.clock()
            sessions = self.store.open_sessions()
            if not sessions:
                self._maybe_prune(now)
                return
            try:
                present = self.admission.present()
            except AdmissionError as e:
                log.error("portal: cannot read the admitted set: %s", e)
                return
            out = []
            for s in sessions:
                left = present.get((s.mac, s.ip))
                if now >= s.hard_end:
                    self._revoke(s)
                    out.append(self._end(s, s.hard_end, forget=False))
                    self._count("ended_time_up")
                elif left is None:
                    # the filter dropped it after idle_s without a packet: it ended about when the
                    # last look said it would (within one sweep)
                    ended = min(now, self._ends.get(s.id, now))
                    self._revoke(s)  # its MAC's IPv6 pass (refreshed by IPv6 alone) must end with it
                    out.append(self._end(s, max(s.since, ended), forget=False))
                    self._count("ended_idle")
                else:
                    self._ends[s.id] = now + left
            if out:
                self.emit(out)
            self._maybe_prune(now)

    # -- inside --

    def _maybe_prune(self, now: float) -> None:
        if now - self._pruned >= PRUNE_EVERY_S:
            self._pruned = now
            self.store.prune(now)
            for tok in [t for t, s in self._desk.items() if s.expires <= now]:
                del self._desk[tok]

    def _device_blocked(self, mac: str, now: float) -> bool:
        limits = self.cfg.sms
        most = limits.fails_per_device_hour if limits is not None else 20
        if self.store.count("fail-device", mac, now - HOUR) >= most:
            self._count("device_refused_tries")
            return True
        return False

    def _too_many_devices(self, account: str, mac: str, now: float) -> bool:
        if self.store.device(mac, now) == account:
            return False
        return self.store.devices_of(account, now) >= self.cfg.devices_per_guest

    def _admit(self, account: str, mac: str, ip: str, valid_until: float, now: float) -> Outcome:
        out: list[dict[str, Any]] = []
        for s in self.store.open_sessions():
            if s.ip == ip or s.mac == mac:  # the address or the device changed hands: end the old one
                self._revoke(s)
                out.append(self._end(s, now, forget=False))
        hard_end = min(now + self.cfg.session_s, valid_until)
        try:
            self.admission.admit((mac, ip))
        except AdmissionError as e:
            log.error("portal: cannot admit %s: %s", account, e)
            self.emit(out)
            return Outcome(False, "admission_failed")
        sess = Session(f"portal-{secrets.token_hex(8)}", account, mac, ip, now, hard_end)
        self.store.open_session(sess)
        self.store.remember_device(mac, account, valid_until)
        out.append(login_record(ts=now, event="login", account=account, ip=ip, mac=mac, calling_station=None,
                                source="portal", session_id=sess.id))
        self.emit(out)
        self._count("admitted")
        log.info("portal: %s admitted until %s", account, time.strftime("%H:%M:%S", time.localtime(hard_end)))
        return Outcome(True, "admitted", account=account, seconds=hard_end - now, valid_until=valid_until)

    def _revoke(self, s: Session) -> bool:
        try:
            self.admission.revoke((s.mac, s.ip))
        except AdmissionError as e:
            log.error("portal: cannot revoke %s: %s", s.account, e)
            return True
        return False

    def _end(self, s: Session, ts: float, *, forget: bool) -> dict[str, Any]:
        self.store.end_session(s.id, ts)
        self._ends.pop(s.id, None)
        if forget:
            self.store.forget_device(s.mac)
        return login_record(ts=ts, event="logout", account=s.account, ip=s.ip, mac=s.mac,
                            calling_station=None, source="portal", session_id=s.id, duration=ts - s.since)

    @staticmethod
    def _registration(ts: float, account: str, method: str, *, name: str | None = None,
                      id_type: str | None = None, id_number: str | None = None, phone: str | None = None,
                      mac: str | None = None, ip: str | None = None, room: str | None = None,
                      valid_until: float | None = None, desk_user: str | None = None) -> dict[str, Any]:
        return {"type": "registration", "ts": ts, "account": account, "name": name, "id_type": id_type,
                "id_number": id_number, "phone": phone, "mac": mac, "ip": ip, "method": method, "room": room,
                "valid_until": valid_until, "desk_user": desk_user}


#: Compared against when a desk name does not exist (same cost as a real check).
_DUMMY_HASH: Final = ("scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$"
                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
