"""The traceback names the guest (issue 19): on every backend, the answer's ``registration`` is
the registration behind the identity's account — the agent's own (another portal's
``guest-000123`` is someone else), made at or before the queried time, the newest one in force
then, else the newest — and null for an account nobody registered."""

from __future__ import annotations

from typing import Any

from storage_records import DAY, MIDNIGHT, login, nat, session

from collector.query.handlers import traceback
from collector.storage import Storage
from wire.validate import validate_record

OUT = ("192.0.2.1", 40000)
T = MIDNIGHT + 3600.0  # the queried time; registrations straddle earlier day files
GUEST = "guest-000123"


def registration(ts: float, name: str | None, *, method: str = "desk", valid_until: float | None = None,
                 account: str = GUEST) -> dict[str, Any]:
    return validate_record({
        "type": "registration", "ts": ts, "account": account, "name": name, "id_type": "resident",
        "id_number": "11010119900307123X", "phone": "13912348000", "mac": "02:00:00:00:00:05",
        "ip": "10.0.0.5", "method": method, "room": "305", "valid_until": valid_until, "desk_user": "desk1"})


def _guest_connection(store: Storage, *regs: dict[str, Any], account: str = GUEST) -> None:
    store.insert_batch("gw", "u", 1, [
        nat(T - 5, "create", ("10.0.0.5", 50000), OUT),
        session(T - 4, "CGuest1", nat_ip=OUT[0], nat_port=OUT[1]),
        login(T - 600, "login", "10.0.0.5", account, source="portal", session_id="p1"),
    ])
    store.insert_batch("gw", "u", 2, sorted(regs, key=lambda r: r["ts"]))


def _named(store: Storage) -> Any:
    ans = traceback(store, *OUT, T)
    assert ans["identity"]["account"] == GUEST and ans["identity"]["source"] == "portal"
    return ans["registration"]


def test_the_registration_in_force_names_the_guest(store: Storage) -> None:
    _guest_connection(
        store,
        # registered at the desk 40 days before, for two months (older than any login lookback)
        registration(T - 40 * DAY, "王小明", valid_until=T + 20 * DAY),
        # a newer one that had run out by then does not hide the one in force
        registration(T - 2 * DAY, "过期的", method="sms", valid_until=T - DAY),
        # one made after the queried time says nothing of it
        registration(T + 60, "后来的", valid_until=T + DAY),
    )
    # the same account registered by another agent's portal: another person
    store.insert_batch("gw-other", "u2", 1, [registration(T - 60, "别处的", valid_until=T + DAY)])
    reg = _named(store)
    assert (reg["name"], reg["method"], reg["room"], reg["_agent"]) == ("王小明", "desk", "305", "gw")
    assert reg["id_number"] == "11010119900307123X"  # storage answers unmasked: the handler masks


def test_without_one_in_force_the_newest_names_who_it_was(store: Storage) -> None:
    _guest_connection(store, registration(T - 3 * DAY, "第一次", valid_until=T - 2 * DAY),
                      registration(T - DAY, "第二次", method="sms", valid_until=T - 60),
                      registration(T, "同一时刻", valid_until=None))  # at the queried time: in force
    assert _named(store)["name"] == "同一时刻"


def test_an_account_nobody_registered_has_no_registration(store: Storage) -> None:
    _guest_connection(store, registration(T - 60, "别人", account="guest-000999"), account=GUEST)
    assert _named(store) is None
    # nobody behind the port: no identity, no registration
    assert traceback(store, OUT[0], OUT[1] + 1, T)["registration"] is None
