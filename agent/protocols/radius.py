"""Sans-IO RADIUS decoder: one `radius` record per request/response exchange (SCHEMA.md).

Design
------
* Wire format is RFC 2865 section 3: Code, Identifier, Length (20..4096) and a
  16-octet Authenticator, followed by attributes (section 5: Type, Length >= 2,
  Value).  Each `feed` is one whole UDP datagram.  Octets past Length are
  padding and ignored (section 3); a datagram shorter than Length, a Length
  outside 20..4096, or an attribute shorter than 2 octets or running past
  Length raises `DecodeError` (the RFC says "silently discard"; the pipeline
  turns the error into a `weird` record, as Zeek reports a protocol violation).
* Codes: Access-Request/Accept/Reject/Challenge (RFC 2865 section 4),
  Accounting-Request/Response (RFC 2866 section 4), Status-Server (RFC 5997),
  Disconnect-Request/ACK/NAK and CoA-Request/ACK/NAK (RFC 5176 section 3).
  Other codes are counted and ignored.
* Pairing.  A response travels the other way from its request and carries the
  request's Identifier (RFC 2865 section 3), so requests wait in a table keyed
  by (direction, Identifier).  A request repeating a waiting one's Identifier
  and Request Authenticator is a retransmission (RFC 2865 section 3, RFC 2866
  section 5.2 note on Acct-Delay-Time) and is ignored; the same Identifier with
  a new Authenticator means the client gave up on the old request (it reuses
  the Identifier), so the old one is emitted with `result` null.  A request or
  response repeating an exchange already finished (the server answers a late
  retransmission from its duplicate cache) is recognised by its Authenticators
  and ignored, so a retransmitted request never makes a second record.
* Access-Challenge (RFC 2865 section 4.4; RFC 3579 section 2.6.1 for EAP) does
  not end the exchange, as in Zeek's base/protocols/radius/main.zeek: the
  client answers with a new Access-Request (new Identifier) echoing the State
  attribute (RFC 2865 section 5.24), which continues the same record.  Without
  State, the next Access-Request with the same User-Name and
  Calling-Station-Id continues it.  Access-Accept, Access-Reject,
  Accounting-Response, CoA/Disconnect ACK/NAK end it.
* Fields (Zeek semantics: the first value seen wins): `username` (User-Name,
  1) from the requests, except that a User-Name in the Access-Accept replaces
  it (RFC 2865 section 5.1: the NAS must use that name in accounting, e.g. the
  inner identity behind an anonymous EAP outer identity); `framed_addr`
  (Framed-IP-Address 8, else Framed-IPv6-Address 168, RFC 6911) from the
  requests, an Access-Challenge (as Zeek) or the Access-Accept, logged as sent
  (0xFFFFFFFE "NAS should select" included, as Zeek);
  `calling_station_id` (31; Zeek's `mac` is normalize_mac() of it),
  `called_station_id` (30), `nas_ip` (NAS-IP-Address 4, else
  NAS-IPv6-Address 95, RFC 3162 section 2.1), `acct_session_id` (44),
  `status_type` (Acct-Status-Type 40), `session_time` (46) and the octet
  counters (42/43 plus Gigawords 52/53 shifted left 32, RFC 2869 section 5.1)
  come from the requests.  `ts` is the first request's time; a response seen
  without its request makes a record of its own at the response's time, with
  the request code it answers.
* No secret ever reaches a record: only the attributes above are read.
  User-Password (2), CHAP-Password (3), Message-Authenticator (80),
  EAP-Message (79), Tunnel-Password (69), Vendor-Specific (26) and the
  Authenticators are never copied; State is kept in memory only to link
  challenge rounds and dropped with the exchange.
* Text is UTF-8, else GB18030 (SCHEMA convention); trailing NULs that some
  NASes append (RFC 2865 section 5 forbids them) are stripped.  A typed
  attribute with the wrong length (an address that is not 4/16 octets, an
  integer that is not 4) is ignored and counted, not fatal.
* Every table is bounded (`MAX_PENDING`, `MAX_CHALLENGED`, `MAX_FINISHED`);
  `counters` says what was evicted or ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, TypeAlias, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Record
from agent.protocols.spec import Probe, ProtocolSpec
from wire.addresses import ip_from_packed
from wire.records import RadiusFields, RadiusStatusType
from wire.text import wire_text

# -- limits -----------------------------------------------------------------
HEADER_LEN = 20  # RFC 2865 section 3: code, identifier, length, authenticator
MAX_PACKET_LEN = 4096  # RFC 2865 section 3: maximum Length
# Requests waiting for a response on one flow.  A NAS multiplexes many users
# over one source port but the Identifier is 8 bits, so more than 256 per
# direction cannot be outstanding; beyond this the oldest is emitted unanswered.
MAX_PENDING = 512
# Exchanges waiting for the client's next round after an Access-Challenge.
# EAP conversations finish within seconds; the oldest is emitted unanswered.
MAX_CHALLENGED = 256
# Finished exchanges remembered (by Identifier and Authenticators) to ignore
# late retransmissions and the server's duplicate answers: one per Identifier
# and direction covers every Identifier the client can reuse.
MAX_FINISHED = 512

# -- codes (RFC 2865 s3, 2866 s3, 5997, 5176 s3.x; IANA RADIUS Packet Type Codes) --
CODES: dict[int, str] = {
    1: "Access-Request",
    2: "Access-Accept",
    3: "Access-Reject",
    4: "Accounting-Request",
    5: "Accounting-Response",
    11: "Access-Challenge",
    12: "Status-Server",
    40: "Disconnect-Request",
    41: "Disconnect-ACK",
    42: "Disconnect-NAK",
    43: "CoA-Request",
    44: "CoA-ACK",
    45: "CoA-NAK",
}
ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_CHALLENGE = 1, 2, 11
REQUEST_CODES = frozenset({1, 4, 12, 40, 43})
Result: TypeAlias = Literal["success", "failed"]
# response code -> (the request codes it answers, result); None = not final
RESPONSES: dict[int, tuple[frozenset[int], Result | None]] = {
    2: (frozenset({1, 12}), "success"),
    3: (frozenset({1}), "failed"),
    11: (frozenset({1}), None),
    5: (frozenset({4, 12}), "success"),
    41: (frozenset({40}), "success"),
    42: (frozenset({40}), "failed"),
    44: (frozenset({43}), "success"),
    45: (frozenset({43}), "failed"),
}
# the request a response answers, for a response seen without its request
ANSWERS: dict[int, int] = {2: 1, 3: 1, 11: 1, 5: 4, 41: 40, 42: 40, 44: 43, 45: 43}

STATUS_TYPES: dict[int, RadiusStatusType] = {  # Acct-Status-Type, RFC 2866 section 5.1
    1: "Start",
    2: "Stop",
    3: "Interim-Update",
    7: "Accounting-On",
    8: "Accounting-Off",
}

# -- attribute types read (everything else, secrets included, is skipped) ------
A_USER_NAME = 1
A_NAS_IP = 4
A_FRAMED_IP = 8
A_STATE = 24
A_CALLED = 30
A_CALLING = 31
A_STATUS_TYPE = 40
A_IN_OCTETS = 42
A_OUT_OCTETS = 43
A_SESSION_ID = 44
A_SESSION_TIME = 46
A_IN_GIGA = 52
A_OUT_GIGA = 53
A_NAS_IPV6 = 95
A_FRAMED_IPV6 = 168
_WANTED = frozenset(
    {
        A_USER_NAME, A_NAS_IP, A_FRAMED_IP, A_STATE, A_CALLED, A_CALLING, A_STATUS_TYPE,
        A_IN_OCTETS, A_OUT_OCTETS, A_SESSION_ID, A_SESSION_TIME, A_IN_GIGA, A_OUT_GIGA,
        A_NAS_IPV6, A_FRAMED_IPV6,
    }
)  # fmt: skip


@dataclass
class Packet:
    code: int
    identifier: int
    authenticator: bytes
    attrs: dict[int, bytes]  # first value of each wanted attribute type


def parse_packet(data: bytes) -> Packet:
    """Parse one RADIUS datagram (RFC 2865 section 3 and 5)."""
    if len(data) < HEADER_LEN:
        raise DecodeError("radius_truncated_header", f"{len(data)} octets")
    code, ident, length = struct.unpack_from("!BBH", data)
    if length < HEADER_LEN or length > MAX_PACKET_LEN:
        raise DecodeError("radius_bad_length", f"Length {length}")
    if length > len(data):
        raise DecodeError("radius_bad_length", f"Length {length} > datagram of {len(data)}")
    attrs: dict[int, bytes] = {}
    pos = HEADER_LEN
    while pos < length:
        if pos + 2 > length:
            raise DecodeError("radius_bad_attribute_length", f"attribute header at {pos}")
        atype, alen = data[pos], data[pos + 1]
        if alen < 2 or pos + alen > length:
            raise DecodeError("radius_bad_attribute_length", f"type {atype} length {alen} at {pos}")
        if atype in _WANTED and atype not in attrs:
            attrs[atype] = bytes(data[pos + 2 : pos + alen])
        pos += alen
    return Packet(code, ident, bytes(data[4:20]), attrs)


@dataclass
class _Exchange:
    ts: float
    code: int
    status_type: RadiusStatusType | None = None
    username: str | None = None
    framed_addr: str | None = None
    calling_station_id: str | None = None
    called_station_id: str | None = None
    nas_ip: str | None = None
    acct_session_id: str | None = None
    session_time: int | None = None
    input_octets: int | None = None
    output_octets: int | None = None
    result: Result | None = None
    # raw User-Name and Calling-Station-Id of the latest request: links a
    # challenge round when the server sends no State (never emitted)
    user_key: tuple[bytes | None, bytes | None] = (None, None)


@dataclass
class _Waiting:
    exchange: _Exchange
    authenticator: bytes


def _text(raw: bytes) -> str:
    return wire_text(raw.rstrip(b"\0"))


class RadiusDecoder:
    """RADIUS over UDP: one whole datagram per `feed`; one instance per flow."""

    name = "radius"

    def __init__(self) -> None:
        self._pending: dict[tuple[bool, int], _Waiting] = {}
        self._challenged: dict[tuple[object, ...], _Exchange] = {}
        # (request direction, identifier) -> (request authenticator, response authenticator)
        self._finished: dict[tuple[bool, int], tuple[bytes, bytes]] = {}
        self.counters: dict[str, int] = {
            "pending_evicted": 0,
            "challenged_evicted": 0,
            "retransmissions": 0,
            "duplicate_responses": 0,
            "unknown_codes": 0,
            "bad_attribute_values": 0,
        }

    # -- StreamDecoder ---------------------------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        pkt = parse_packet(bytes(data))
        if pkt.code in REQUEST_CODES:
            return self._request(is_orig, pkt, ts)
        if pkt.code in RESPONSES:
            return self._response(is_orig, pkt, ts)
        self.counters["unknown_codes"] += 1
        return []

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        return []  # datagrams: a lost one simply never arrives

    def close(self, ts: float) -> list[Record]:
        left = [w.exchange for w in self._pending.values()] + list(self._challenged.values())
        left.sort(key=lambda e: e.ts)  # stable: insertion order among equal times
        self._pending.clear()
        self._challenged.clear()
        self._finished.clear()
        return [self._record(e) for e in left]

    # -- requests ---------------------------------------------------------------
    def _request(self, is_orig: bool, pkt: Packet, ts: float) -> list[Record]:
        key = (is_orig, pkt.identifier)
        out: list[Record] = []
        waiting = self._pending.get(key)
        if waiting is not None:
            if waiting.authenticator == pkt.authenticator:
                self.counters["retransmissions"] += 1
                return []
            # Identifier reused with a new request: the old one was abandoned.
            del self._pending[key]
            out.append(self._record(waiting.exchange))
        done = self._finished.get(key)
        if done is not None:
            if done[0] == pkt.authenticator:
                self.counters["retransmissions"] += 1
                return out
            del self._finished[key]
        exchange = self._continued(is_orig, pkt) if pkt.code == ACCESS_REQUEST else None
        if exchange is None:
            exchange = _Exchange(ts=ts, code=pkt.code)
        self._fill_request(exchange, pkt)
        if len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending))
            self.counters["pending_evicted"] += 1
            out.append(self._record(self._pending.pop(oldest).exchange))
        self._pending[key] = _Waiting(exchange, pkt.authenticator)
        return out

    def _continued(self, is_orig: bool, pkt: Packet) -> _Exchange | None:
        """The exchange an Access-Request continues after an Access-Challenge, if any."""
        state = pkt.attrs.get(A_STATE)
        if state is not None:
            ex = self._challenged.pop((is_orig, "state", state), None)
            if ex is not None:
                return ex
        return self._challenged.pop(self._user_key(is_orig, pkt), None)

    @staticmethod
    def _user_key(is_orig: bool, pkt: Packet) -> tuple[object, ...]:
        return (is_orig, "user", pkt.attrs.get(A_USER_NAME), pkt.attrs.get(A_CALLING))

    def _fill_request(self, ex: _Exchange, pkt: Packet) -> None:
        a = pkt.attrs
        ex.user_key = (a.get(A_USER_NAME), a.get(A_CALLING))
        if ex.username is None and A_USER_NAME in a:
            ex.username = _text(a[A_USER_NAME])
        if ex.calling_station_id is None and A_CALLING in a:
            ex.calling_station_id = _text(a[A_CALLING])
        if ex.called_station_id is None and A_CALLED in a:
            ex.called_station_id = _text(a[A_CALLED])
        if ex.acct_session_id is None and A_SESSION_ID in a:
            ex.acct_session_id = _text(a[A_SESSION_ID])
        if ex.nas_ip is None:
            ex.nas_ip = self._addr(a, A_NAS_IP, A_NAS_IPV6)
        if ex.framed_addr is None:
            ex.framed_addr = self._addr(a, A_FRAMED_IP, A_FRAMED_IPV6)
        if ex.status_type is None and A_STATUS_TYPE in a:
            st = self._int(a[A_STATUS_TYPE])
            ex.status_type = STATUS_TYPES.get(st) if st is not None else None
        if ex.session_time is None and A_SESSION_TIME in a:
            ex.session_time = self._int(a[A_SESSION_TIME])
        if ex.input_octets is None:
            ex.input_octets = self._octets(a, A_IN_OCTETS, A_IN_GIGA)
        if ex.output_octets is None:
            ex.output_octets = self._octets(a, A_OUT_OCTETS, A_OUT_GIGA)

    # -- responses --------------------------------------------------------------
    def _response(self, is_orig: bool, pkt: Packet, ts: float) -> list[Record]:
        key = (not is_orig, pkt.identifier)  # the request went the other way
        answers, result = RESPONSES[pkt.code]
        waiting = self._pending.get(key)
        if waiting is None or waiting.exchange.code not in answers:
            done = self._finished.get(key)
            if done is not None and done[1] == pkt.authenticator:
                self.counters["duplicate_responses"] += 1
                return []
            # A response without its request: a record of its own.
            ex = _Exchange(ts=ts, code=ANSWERS[pkt.code])
            return self._answer(ex, not is_orig, pkt, result)
        del self._pending[key]
        self._remember(key, waiting.authenticator, pkt.authenticator)
        return self._answer(waiting.exchange, not is_orig, pkt, result)

    def _answer(self, ex: _Exchange, req_dir: bool, pkt: Packet, result: Result | None) -> list[Record]:
        a = pkt.attrs
        if pkt.code in (ACCESS_ACCEPT, ACCESS_CHALLENGE) and ex.framed_addr is None:
            ex.framed_addr = self._addr(a, A_FRAMED_IP, A_FRAMED_IPV6)
        if pkt.code == ACCESS_ACCEPT and A_USER_NAME in a:
            ex.username = _text(a[A_USER_NAME])  # RFC 2865 5.1: the name to account under
        if pkt.code != ACCESS_CHALLENGE:
            ex.result = result
            return [self._record(ex)]
        out: list[Record] = []
        state = a.get(A_STATE)
        if state is not None:
            ckey: tuple[object, ...] = (req_dir, "state", state)
        else:
            ckey = (req_dir, "user", *ex.user_key)
        old = self._challenged.pop(ckey, None)
        if old is not None and old is not ex:
            out.append(self._record(old))
        if len(self._challenged) >= MAX_CHALLENGED:
            oldest = next(iter(self._challenged))
            self.counters["challenged_evicted"] += 1
            out.append(self._record(self._challenged.pop(oldest)))
        self._challenged[ckey] = ex
        return out

    def _remember(self, key: tuple[bool, int], req_auth: bytes, resp_auth: bytes) -> None:
        self._finished.pop(key, None)
        if len(self._finished) >= MAX_FINISHED:
            del self._finished[next(iter(self._finished))]
        self._finished[key] = (req_auth, resp_auth)

    # -- values -----------------------------------------------------------------
    def _int(self, raw: bytes) -> int | None:
        if len(raw) != 4:
            self.counters["bad_attribute_values"] += 1
            return None
        return int(struct.unpack("!I", raw)[0])

    def _addr(self, a: dict[int, bytes], v4: int, v6: int) -> str | None:
        for t, n in ((v4, 4), (v6, 16)):
            raw = a.get(t)
            if raw is None:
                continue
            if len(raw) == n:
                return ip_from_packed(raw)
            self.counters["bad_attribute_values"] += 1
        return None

    def _octets(self, a: dict[int, bytes], low: int, giga: int) -> int | None:
        lo = self._int(a[low]) if low in a else None
        hi = self._int(a[giga]) if giga in a else None
        if lo is None and hi is None:
            return None
        if hi is not None and hi >= 1 << 31:
            # 2**63 bytes and more: no session moves that much; the record's counter is a signed
            # 64-bit integer (wire), so such a value is a bad attribute, not a number to keep
            self.counters["bad_attribute_values"] += 1
            hi = None
            if lo is None:
                return None
        return ((hi or 0) << 32) + (lo or 0)

    @staticmethod
    def _record(ex: _Exchange) -> Record:
        rec: RadiusFields = {
            "type": "radius",
            "ts": ex.ts,
            "code": CODES[ex.code],
            "status_type": ex.status_type,
            "username": ex.username,
            "framed_addr": ex.framed_addr,
            "calling_station_id": ex.calling_station_id,
            "called_station_id": ex.called_station_id,
            "nas_ip": ex.nas_ip,
            "acct_session_id": ex.acct_session_id,
            "session_time": ex.session_time,
            "input_octets": ex.input_octets,
            "output_octets": ex.output_octets,
            "result": ex.result,
        }
        return cast(Record, rec)


_CODES = frozenset({1, 2, 3, 4, 5, 11, 12, 13, 40, 41, 42, 43, 44, 45})  # RFC 2865, 2866, 5176


def plausible_packet(p: bytes) -> bool:
    """The probe: a known code and a length field that is the datagram's."""
    return len(p) >= 20 and p[0] in _CODES and int.from_bytes(p[2:4], "big") == len(p)


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec(
    "radius", ("udp",), RadiusDecoder, records=("radius",),
    # authentication/accounting (RFC 2865/2866, and the old 1645/1646), dynamic authorization
    # (CoA/Disconnect, RFC 5176: 3799, and 1700 as Cisco and others use it)
    ports=frozenset({1812, 1813, 1645, 1646, 3799, 1700}),
    probe=Probe(datagram=plausible_packet),
)
