"""Community ID v1 against the spec's baseline, pycommunityid's vectors and Suricata's logs."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.flows.community_id import community_id, icmp_port_equivalents

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"


def ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# community-id-spec baseline/baseline_deflt.json (seed 0): the flows of the
# spec's sample pcaps. For ICMP the "ports" there are type and code.
SPEC_BASELINE = [
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 135, 136, "1:zavyT/cezQr1fmImYCwYnMXbgck="),
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 136, 135, "1:zavyT/cezQr1fmImYCwYnMXbgck="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="),
    (
        58,
        "3ffe:501:410:0:2c0:dfff:fe47:33e",
        "3ffe:507:0:1:200:86ff:fe05:80da",
        1,
        4,
        "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
    ),
    (58, "3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 128, 129, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="),
    (58, "3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 129, 128, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg="),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="),
    (58, "fe80::260:97ff:fe07:69ea", "ff02::1", 134, 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (
        6,
        "2607:f8b0:400c:c03::1a",
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        25,
        63943,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (132, "192.168.170.56", "192.168.170.8", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (46, "10.1.12.1", "10.1.12.2", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (46, "10.1.12.2", "10.1.12.1", 0, 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
]


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "expected"), SPEC_BASELINE)
def test_spec_baseline(proto: int, src: str, dst: str, sport: int, dport: int, expected: str) -> None:
    assert community_id(proto, ip(src), ip(dst), sport, dport) == expected


# pycommunityid tests/communityid_test.py, one vector a line: proto src dst
# sport/type dport/code, then base64 (seed 0), hex digest (seed 0), base64 (seed 1).
PYCOMMUNITYID_TABLE = """
1 192.168.0.89 192.168.0.1 8 0 1:X0snYXpgwiv9TZtqg64sgzUn6Dk= 5f4b27617a60c22bfd4d9b6a83ae2c833527e839 1:03g6IloqVBdcZlPyX8r0hgoE7kA=
1 192.168.0.1 192.168.0.89 0 8 1:X0snYXpgwiv9TZtqg64sgzUn6Dk= 5f4b27617a60c22bfd4d9b6a83ae2c833527e839 1:03g6IloqVBdcZlPyX8r0hgoE7kA=
# Type 20 has no counterpart: one-way, so the code is hashed.
1 192.168.0.89 192.168.0.1 20 0 1:3o2RFccXzUgjl7zDpqmY7yJi8rI= de8d9115c717cd482397bcc3a6a998ef2262f2b2 1:lCXHHxavE1Vq3oX9NH5ladQg02o=
1 192.168.0.89 192.168.0.1 20 1 1:tz/fHIDUHs19NkixVVoOZywde+I= b73fdf1c80d41ecd7d3648b1555a0e672c1d7be2 1:Ie3wmFyxiEyikbsbcO03d2nh+PM=
# Echo reply: the code is ignored, so this pairs with the echo request above.
1 192.168.0.1 192.168.0.89 0 20 1:X0snYXpgwiv9TZtqg64sgzUn6Dk= 5f4b27617a60c22bfd4d9b6a83ae2c833527e839 1:03g6IloqVBdcZlPyX8r0hgoE7kA=
58 fe80::200:86ff:fe05:80da fe80::260:97ff:fe07:69ea 135 0 1:dGHyGvjMfljg6Bppwm3bg0LO8TY= 7461f21af8cc7e58e0e81a69c26ddb8342cef136 1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=
58 fe80::260:97ff:fe07:69ea fe80::200:86ff:fe05:80da 136 0 1:dGHyGvjMfljg6Bppwm3bg0LO8TY= 7461f21af8cc7e58e0e81a69c26ddb8342cef136 1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=
# One-way ICMPv6 (time exceeded) keeps its direction: two different IDs.
58 3ffe:507:0:1:260:97ff:fe07:69ea 3ffe:507:0:1:200:86ff:fe05:80da 3 0 1:NdobDX8PQNJbAyfkWxhtL2Pqp5w= 35da1b0d7f0f40d25b0327e45b186d2f63eaa79c 1:OlOWx9psIbBFi7lOCw/4MhlKR9M=
58 3ffe:507:0:1:200:86ff:fe05:80da 3ffe:507:0:1:260:97ff:fe07:69ea 3 0 1:/OGBt9BN1ofenrmSPWYicpij2Vc= fce181b7d04dd687de9eb9923d66227298a3d957 1:Ij4ZxnC87/MXzhOjvH2vHu7LRmE=
132 192.168.170.8 192.168.170.56 7 80 1:jQgCxbku+pNGw8WPbEc/TS/uTpQ= 8d0802c5b92efa9346c3c58f6c473f4d2fee4e94 1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU=
132 192.168.170.56 192.168.170.8 80 7 1:jQgCxbku+pNGw8WPbEc/TS/uTpQ= 8d0802c5b92efa9346c3c58f6c473f4d2fee4e94 1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU=
6 128.232.110.120 66.35.250.204 34855 80 1:LQU9qZlK+B5F3KDmev6m5PMibrg= 2d053da9994af81e45dca0e67afea6e4f3226eb8 1:3V71V58M3Ksw/yuFALMcW0LAHvc=
6 66.35.250.204 128.232.110.120 80 34855 1:LQU9qZlK+B5F3KDmev6m5PMibrg= 2d053da9994af81e45dca0e67afea6e4f3226eb8 1:3V71V58M3Ksw/yuFALMcW0LAHvc=
# pycommunityid issue 3: ports compared as numbers, not as strings.
6 10.0.0.1 10.0.0.2 10 11569 1:SXBGMX1lBOwhhoDrZynfROxnhnM= 497046317d6504ec218680eb6729df44ec678673 1:HmBRGR+fUyXF4t8WEtal7Y0gEAo=
17 192.168.1.52 8.8.8.8 54585 53 1:d/FP5EW3wiY1vCndhwleRRKHowQ= 77f14fe445b7c22635bc29dd87095e451287a304 1:Q9We8WO3piVF8yEQBNJF4uiSVrI=
17 8.8.8.8 192.168.1.52 53 54585 1:d/FP5EW3wiY1vCndhwleRRKHowQ= 77f14fe445b7c22635bc29dd87095e451287a304 1:Q9We8WO3piVF8yEQBNJF4uiSVrI=
# Port-less protocol: ports are not hashed, whatever is passed.
46 10.1.24.4 10.1.12.1 0 0 1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4= fe7408e1187f4ed63799fd11da0245064565812e 1:BK3BVW3U2eemuwVQVN3zd/GULno=
46 10.1.12.1 10.1.24.4 1234 80 1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4= fe7408e1187f4ed63799fd11da0245064565812e 1:BK3BVW3U2eemuwVQVN3zd/GULno=
"""  # noqa: E501 (test vectors read better one a line)
PYCOMMUNITYID = [
    (int(p), src, dst, int(sp), int(dp), b64, hexd, seed1)
    for p, src, dst, sp, dp, b64, hexd, seed1 in (
        line.split() for line in PYCOMMUNITYID_TABLE.splitlines() if line and not line.startswith("#")
    )
]


@pytest.mark.parametrize(
    ("proto", "src", "dst", "sport", "dport", "b64", "hexdigest", "seed1"), PYCOMMUNITYID
)
def test_pycommunityid_vectors(
    proto: int, src: str, dst: str, sport: int, dport: int, b64: str, hexdigest: str, seed1: str
) -> None:
    got = community_id(proto, ip(src), ip(dst), sport, dport)
    assert got == b64
    assert base64.b64decode(got[2:]).hex() == hexdigest
    assert community_id(proto, ip(src), ip(dst), sport, dport, seed=1) == seed1


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus absent")
def test_suricata_logged_community_ids() -> None:
    """Every community_id Suricata logged in the corpus, with the seed its test configured."""
    checked = 0
    for test_json in sorted(CORPUS.glob("suricata-verify/**/test.json")):
        config = test_json.parent / "suricata.yaml"
        seed = 0
        if config.exists():
            for line in config.read_text().splitlines():
                if line.strip().startswith("community-id-seed:"):
                    seed = int(line.split(":", 1)[1])
        for check in json.loads(test_json.read_text()).get("checks", []):
            match = check.get("filter", {}).get("match", {})
            if "community_id" not in match or "src_port" not in match:
                continue
            proto = {"TCP": 6, "UDP": 17, "SCTP": 132}[match["proto"]]
            got = community_id(
                proto, ip(match["src_ip"]), ip(match["dest_ip"]), match["src_port"], match["dest_port"], seed
            )
            assert got == match["community_id"], test_json
            checked += 1
    assert checked >= 4


def test_icmp_port_equivalents() -> None:
    assert icmp_port_equivalents(1, 8, 0) == (8, 0, False)
    assert icmp_port_equivalents(1, 0, 0) == (0, 8, False)
    assert icmp_port_equivalents(1, 10, 0) == (10, 9, False)
    assert icmp_port_equivalents(1, 3, 1) == (3, 1, True)  # unreachable: one-way
    assert icmp_port_equivalents(58, 128, 0) == (128, 129, False)
    assert icmp_port_equivalents(58, 145, 0) == (145, 144, False)
    assert icmp_port_equivalents(58, 1, 4) == (1, 4, True)
    # ICMPv4 numbering does not leak into ICMPv6.
    assert icmp_port_equivalents(58, 8, 0) == (8, 0, True)


def test_bad_inputs() -> None:
    v4, v6 = ip("10.0.0.1"), ip("::1")
    with pytest.raises(ValueError):
        community_id(6, v4, v6, 1, 2)
    with pytest.raises(ValueError):
        community_id(6, b"\0" * 5, b"\0" * 5, 1, 2)
    with pytest.raises(ValueError):
        community_id(6, v4, v4, 70000, 2)
    with pytest.raises(ValueError):
        community_id(256, v4, v4, 1, 2)
    with pytest.raises(ValueError):
        community_id(6, v4, v4, 1, 2, seed=-1)


addresses = st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16))
ports = st.integers(0, 65535)


@given(st.sampled_from([6, 17, 132, 47, 50]), addresses, ports, ports, st.integers(0, 65535), st.data())
def test_direction_does_not_matter(
    proto: int, a: bytes, pa: int, pb: int, seed: int, data: st.DataObject
) -> None:
    b = data.draw(st.binary(min_size=len(a), max_size=len(a)))
    forward = community_id(proto, a, b, pa, pb, seed)
    assert forward == community_id(proto, b, a, pb, pa, seed)
    assert forward.startswith("1:") and len(base64.b64decode(forward[2:])) == 20


@given(st.sampled_from([1, 58]), addresses, st.integers(0, 255), st.integers(0, 255), st.data())
def test_icmp_request_and_reply_pair_up(
    proto: int, a: bytes, mtype: int, code: int, data: st.DataObject
) -> None:
    b = data.draw(st.binary(min_size=len(a), max_size=len(a)))
    _, counterpart, one_way = icmp_port_equivalents(proto, mtype, code)
    if one_way:
        # Kept as sent: the reverse tuple is a different flow unless it is symmetric.
        assert community_id(proto, a, b, mtype, code) == community_id(proto, a, b, mtype, code)
    else:
        assert community_id(proto, a, b, mtype, code) == community_id(proto, b, a, counterpart, 0)


@given(st.sampled_from([1, 58]), addresses, st.integers(0, 255), st.integers(0, 255), st.data())
def test_already_mapped_icmp_ports_give_the_same_id(
    proto: int, a: bytes, mtype: int, code: int, data: st.DataObject
) -> None:
    """The flow table stores ICMP flows under icmp_port_equivalents' ports."""
    b = data.draw(st.binary(min_size=len(a), max_size=len(a)))
    sport, dport, _ = icmp_port_equivalents(proto, mtype, code)
    assert community_id(proto, a, b, sport, dport) == community_id(proto, a, b, mtype, code)
