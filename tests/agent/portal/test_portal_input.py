"""What a guest or the desk types: GB 11643 check digits, mobile numbers, documents, names;
the desk's password hashes and the portal's codes and vouchers (agent.portal.identity_check,
agent.portal.tokens)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.portal.identity_check import (
    InputError,
    id_document,
    mobile_number,
    person_name,
    resident_id,
    resident_id_check,
    short_text,
)
from agent.portal.tokens import (
    VOUCHER_ALPHABET,
    Keyed,
    check_password,
    hash_password,
    new_code,
    new_voucher,
    normal_voucher,
    voucher_text,
)


def test_gb11643_samples_of_the_standard() -> None:
    # the standard's own example and a widely published one
    assert resident_id("11010519491231002X") == "11010519491231002X"
    assert resident_id("11010519491231002x") == "11010519491231002X"
    assert resident_id(" 440524198001010013 ") == "440524198001010013"  # born 1980


@pytest.mark.parametrize("number, key", [
    ("110105194912310021", "bad_id_check"),  # one digit off: the check character catches it
    ("11010519491231003X", "bad_id_check"),  # a changed sequence digit
    ("11010519491321002X", "bad_id_check"),  # swapped digits
    ("1101051949123100", "bad_id_format"),
    ("11010519491231002Y", "bad_id_format"),
    ("１１０１０５１９４９１２３１００２X", "bad_id_format"),  # full-width digits are not ASCII digits
    ("", "bad_id_format"),
])
def test_gb11643_refuses(number: str, key: str) -> None:
    with pytest.raises(InputError) as e:
        resident_id(number)
    assert e.value.key == key


def test_gb11643_refuses_an_impossible_birth_date_even_with_a_right_check() -> None:
    first = "11010519490231002"  # 31 February
    with pytest.raises(InputError) as e:
        resident_id(first + resident_id_check(first))
    assert e.value.key == "bad_id_birth"
    tomorrow = datetime.date.today() + datetime.timedelta(days=400)
    first = f"110105{tomorrow:%Y%m%d}002"
    with pytest.raises(InputError):
        resident_id(first + resident_id_check(first))


@given(st.dates(datetime.date(1900, 1, 1), datetime.date(2020, 12, 31)), st.integers(0, 999))
def test_gb11643_every_right_number_passes_and_any_single_change_fails(born: datetime.date, seq: int) -> None:
    first = f"110105{born:%Y%m%d}{seq:03d}"
    good = first + resident_id_check(first)
    assert resident_id(good) == good
    for i in range(17):  # MOD 11-2 detects every single-digit error
        d = str((int(good[i]) + 7) % 10)
        bad = good[:i] + d + good[i + 1:]
        with pytest.raises(InputError):
            resident_id(bad)


@pytest.mark.parametrize("typed", ["13800138000", "+86 138 0013 8000", "86-138-0013-8000", "0086 13800138000",
                                   "19912345678"])
def test_mainland_mobile_numbers(typed: str) -> None:
    assert mobile_number(typed) in ("13800138000", "19912345678")


@pytest.mark.parametrize("typed", ["12800138000", "1380013800", "138001380001", "010-12345678",
                                   "+1 415 555 0100", "abc", ""])
def test_not_mainland_mobile_numbers(typed: str) -> None:
    with pytest.raises(InputError) as e:
        mobile_number(typed)
    assert e.value.key == "bad_phone"


def test_documents_and_names() -> None:
    assert id_document("passport", "e 1234 5678") == "E12345678"
    assert id_document("other", "c12345678/hk") == "C12345678/HK"
    for kind, bad in (("passport", "E1"), ("passport", "E1234567<"), ("other", "x"), ("nope", "E12345678")):
        with pytest.raises(InputError):
            id_document(kind, bad)
    assert person_name("  张  三 ") == "张 三" and person_name("", required=False) is None
    for bad in ("", "a" * 51, "bob\x00"):
        with pytest.raises(InputError):
            person_name(bad)
    assert short_text(" 1208 ") == "1208" and short_text("") is None
    with pytest.raises(InputError):
        short_text("r" * 41)


def test_desk_password_hashes() -> None:
    h = hash_password("front-desk-1")
    assert h.startswith("scrypt$16384$8$1$") and "front-desk-1" not in h
    assert check_password("front-desk-1", h)
    assert not check_password("front-desk-2", h)
    assert not check_password("x", "scrypt$garbage")
    assert hash_password("front-desk-1") != h  # salted


def test_codes_and_vouchers() -> None:
    codes = {new_code() for _ in range(200)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 150
    v = new_voucher()
    assert len(v) == 10 and set(v) <= set(VOUCHER_ALPHABET) and not set(v) & set("01ILO")
    printed = voucher_text(v)
    assert printed[5] == "-" and normal_voucher(printed.lower()) == v
    assert normal_voucher(f" {v[:3]} {v[3:]}") == v
    keyed = Keyed(b"k" * 32)
    assert keyed("phone", "13800138000") == keyed("phone", "13800138000") != keyed("code", "13800138000")
    assert Keyed(b"j" * 32)("phone", "13800138000") != keyed("phone", "13800138000")
