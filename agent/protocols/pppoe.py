"""Sans-IO PPPoE decoder: discovery records and the user name of each PPP session.

Design (RFC 2516 "A Method for Transmitting PPP Over Ethernet", RFC 1661 "The
Point-to-Point Protocol", RFC 1334 §2 "Password Authentication Protocol",
RFC 1994 "PPP Challenge Handshake Authentication Protocol"):

* Input comes from the link decoder (`agent.decode.packet.Decoder`, attribute
  `pppoe`), not from a flow: PPPoE is below IP, so there is no connection and
  this class does not follow the `StreamDecoder` shape. Two entry points:
  `discovery()` gets the PPPoE header and tags of an ethertype 0x8863 frame;
  `session_control()` gets the PPP payload of an ethertype 0x8864 frame whose
  PPP protocol is not IPv4/IPv6 (LCP, PAP, CHAP, IPCP, ...).
* Discovery (RFC 2516 §4, §5): header ``VER=1 | TYPE=1 | CODE | SESSION_ID |
  LENGTH`` then TLV tags (§4 and Appendix A). One `pppoe` record per PADI
  (0x09), PADO (0x07), PADR (0x19), PADS (0x65) and PADT (0xa7), with the
  Service-Name (0x0101) and AC-Name (0x0102) tags of *that* packet: ``None``
  when the tag is absent, ``""`` when present and empty (an empty Service-Name
  means "any service", §A). Host-Uniq, AC-Cookie, Relay-Session-Id, vendor
  tags and the error tags (Service-Name-Error 0x0201, AC-System-Error 0x0202,
  Generic-Error 0x0203) are walked over: an error tag is a normal protocol
  answer, not malformed input. End-Of-List (0x0000) ends the tag list.
* User names (the session stage, RFC 1661 §3.5 Authenticate phase): the
  Peer-ID of a PAP Authenticate-Request (RFC 1334 §2.2.1) and the Name of a
  CHAP Response (RFC 1994 §4.1) are remembered in `users` under
  ``(session_id, client MAC)``; the PAP Authenticate-Ack/Nak (§2.2.2) and the
  CHAP Success/Failure (§4.2) set the result. The client is the sender of the
  Request/Response and the receiver of the Ack/Nak/Success/Failure.
  **Secrets are never read into a string**: neither the PAP Password nor the
  CHAP Value (a hash of the secret) leaves this module, only their lengths are
  used to find the fields after them.
* Where the user name goes: discovery happens before authentication, so the
  only discovery packet that can carry it is the PADT that ends the session;
  that `pppoe` record gets ``username`` and the session leaves `users`. For
  the identity table, which must know the account as soon as the session is
  up, the decoder also queues plain-dict *events* drained with
  `auth_events()`:
  ``{"ts", "event": "auth", "method": "pap"|"chap", "session_id",
  "client_mac", "server_mac", "username", "ok"}`` when an authentication
  result is seen (``ok`` True on Ack/Success, False on Nak/Failure;
  ``username`` None when the request was not captured), and
  ``{... "event": "end", "method": None, "ok": None}`` when a PADT ends a
  session that had a user. A repeated identical result (retransmission) does
  not queue a second event. A PADS for a session id forgets any earlier user
  of that ``(session_id, client)`` pair (session ids are reused).
* Malformed input raises `DecodeError` (Zeek-style weird names, the link
  decoder turns it into a weird): ``truncated_pppoe_header``,
  ``bad_pppoe_version_type`` (VER/TYPE not 1/1), ``pppoe_wrong_code`` (an
  unknown discovery code), ``truncated_pppoe_payload`` (LENGTH past the
  captured bytes), ``pppoe_malformed_tags`` (a tag running past LENGTH),
  ``ppp_pap_malformed`` and ``ppp_chap_malformed`` (a PAP/CHAP length field
  pointing past its packet).

Limits: `MAX_SESSIONS` (session, client) pairs in `users`, the oldest is
forgotten first (`counters["users_evicted"]`); `MAX_PENDING_EVENTS` events
between drains (`counters["events_dropped"]`); names and tag strings are cut
to `MAX_NAME` characters. Bytes are decoded as UTF-8 with backslash escapes
for anything else, as the other decoders do.
"""

from __future__ import annotations

import struct
from typing import Any, Literal, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Record
from agent.protocols.spec import ProtocolSpec
from wire.records import PppoeRecord
from wire.text import escaped_text

# --- limits (every table is bounded) ----------------------------------------
# One entry per authenticated PPP session seen on the link; an access
# concentrator offers at most 65535 session ids per MAC, and a unit's gateway
# serves far fewer users. Beyond it the oldest session is forgotten.
MAX_SESSIONS = 65_536
# Events waiting for `auth_events()`; the pipeline drains once per batch.
MAX_PENDING_EVENTS = 10_000
# User names and tag strings kept; RFC 1334/1994 allow 255 octets, tags 65535.
MAX_NAME = 256

# --- constants ----------------------------------------------------------------
PPP_LCP = 0xC021
PPP_PAP = 0xC023
PPP_CHAP = 0xC223
PPP_IPCP = 0x8021
IPCP_CONFIGURE_ACK = 2  # RFC 1661 §5.2
IPCP_IP_ADDRESS = 3  # RFC 1332 §3.3

CODES: dict[int, Literal["PADI", "PADO", "PADR", "PADS", "PADT"]] = {
    0x09: "PADI", 0x07: "PADO", 0x19: "PADR", 0x65: "PADS", 0xA7: "PADT"}
CODE_PADS = 0x65
CODE_PADT = 0xA7

TAG_END_OF_LIST = 0x0000
TAG_SERVICE_NAME = 0x0101
TAG_AC_NAME = 0x0102

PAP_REQUEST, PAP_ACK, PAP_NAK = 1, 2, 3
CHAP_CHALLENGE, CHAP_RESPONSE, CHAP_SUCCESS, CHAP_FAILURE = 1, 2, 3, 4

_HDR = struct.Struct("!BBHH")  # VER/TYPE, CODE, SESSION_ID, LENGTH
_TAG = struct.Struct("!HH")
_CTRL = struct.Struct("!BBH")  # PAP/CHAP: Code, Identifier, Length

UserEntry = tuple[str, float, bool | None]  # (username, ts of the last message, result)


def _text(raw: bytes) -> str:
    return escaped_text(raw[:MAX_NAME * 4])[:MAX_NAME]


class PppoeDecoder:
    """PPPoE discovery and PPP authentication of every session on one link (see module doc)."""

    name = "pppoe"

    def __init__(self) -> None:
        self.users: dict[tuple[int, str], UserEntry] = {}
        self._events: list[dict[str, Any]] = []
        self.counters: dict[str, int] = {
            "discovery": 0,
            "session_control": 0,
            "auth_requests": 0,
            "auth_results": 0,
            "users_evicted": 0,
            "events_dropped": 0,
        }

    # -- discovery stage ----------------------------------------------------------
    def discovery(self, ts: float, src_mac: str, dst_mac: str, payload: bytes) -> list[Record]:
        """The PPPoE header and tags of an ethertype 0x8863 frame -> one `pppoe` record."""
        self.counters["discovery"] += 1
        avail = len(payload)
        if avail < _HDR.size:
            raise DecodeError("truncated_pppoe_header", f"{avail} bytes")
        vt, code, sid, length = _HDR.unpack_from(payload, 0)
        if vt != 0x11:
            raise DecodeError("bad_pppoe_version_type", f"0x{vt:02x}")
        cname = CODES.get(code)
        if cname is None:
            raise DecodeError("pppoe_wrong_code", f"0x{code:02x}")
        end = _HDR.size + length
        if end > avail:
            raise DecodeError("truncated_pppoe_payload", f"length {length}, {avail - _HDR.size} captured")
        service: str | None = None
        ac_name: str | None = None
        p = _HDR.size
        while p < end:
            if p + 4 > end:
                raise DecodeError("pppoe_malformed_tags", f"{end - p} bytes left at offset {p}")
            ttype, tlen = _TAG.unpack_from(payload, p)
            p += 4
            if p + tlen > end:
                raise DecodeError("pppoe_malformed_tags", f"tag 0x{ttype:04x} of {tlen} bytes past the end")
            if ttype == TAG_END_OF_LIST:
                break
            if ttype == TAG_SERVICE_NAME and service is None:
                service = _text(payload[p:p + tlen])
            elif ttype == TAG_AC_NAME and ac_name is None:
                ac_name = _text(payload[p:p + tlen])
            p += tlen
        username: str | None = None
        if code == CODE_PADS:
            # a new session: whatever an earlier session with this id told us is stale
            self.users.pop((sid, dst_mac), None)
        elif code == CODE_PADT:
            username = self._end(ts, sid, src_mac, dst_mac)
        rec: PppoeRecord = {"type": "pppoe", "ts": ts, "src_mac": src_mac, "dst_mac": dst_mac,
                            "code": cname, "session_id": sid, "service_name": service, "ac_name": ac_name,
                            "username": username}
        return [cast(Record, rec)]

    def _end(self, ts: float, sid: int, src_mac: str, dst_mac: str) -> str | None:
        """A PADT from either side: forget the session's user and say who it was."""
        for client, server in ((src_mac, dst_mac), (dst_mac, src_mac)):
            entry = self.users.pop((sid, client), None)
            if entry is not None:
                self._event({"ts": ts, "event": "end", "method": None, "session_id": sid,
                             "client_mac": client, "server_mac": server, "username": entry[0],
                             "ok": None})
                return entry[0]
        return None

    # -- session stage ---------------------------------------------------------------
    def session_control(self, ts: float, src_mac: str, dst_mac: str, session_id: int, ppp_proto: int,
                        payload: bytes) -> list[Record]:
        """The PPP payload (after the protocol field) of a non-IP session frame.

        Produces no record itself: PAP and CHAP fill `users` and queue events.
        """
        self.counters["session_control"] += 1
        if ppp_proto == PPP_PAP:
            self._pap(ts, src_mac, dst_mac, session_id, payload)
        elif ppp_proto == PPP_CHAP:
            self._chap(ts, src_mac, dst_mac, session_id, payload)
        elif ppp_proto == PPP_IPCP:
            self._ipcp(ts, src_mac, dst_mac, session_id, payload)
        return []

    def _ipcp(self, ts: float, src_mac: str, dst_mac: str, sid: int, payload: bytes) -> None:
        """IPCP Configure-Ack (RFC 1332 §3.3, RFC 1661 §5.2): the IP-Address option it acknowledges
        is the address of the side it is sent to. An ``ipcp`` event says which address the
        receiver got; the identity table keeps the one given to the host of a PPPoE session."""
        code, end = self._control_header(payload, "ppp_ipcp_malformed")
        if code != IPCP_CONFIGURE_ACK:
            return
        pos = _CTRL.size
        while pos + 2 <= end:
            otype, olen = payload[pos], payload[pos + 1]
            if olen < 2 or pos + olen > end:
                raise DecodeError("ppp_ipcp_malformed", f"option {otype} of length {olen}")
            if otype == IPCP_IP_ADDRESS and olen == 6:
                addr = payload[pos + 2:pos + 6]
                if addr != b"\0\0\0\0":
                    self._event({"ts": ts, "event": "ipcp", "method": None, "session_id": sid,
                                 "client_mac": dst_mac, "server_mac": src_mac, "username": None, "ok": None,
                                 "ip": ".".join(str(b) for b in addr)})
                return
            pos += olen

    def _control_header(self, payload: bytes, weird: str) -> tuple[int, int]:
        """(code, end of the packet) of a PAP/CHAP packet (RFC 1334 §2.2, RFC 1994 §4)."""
        if len(payload) < _CTRL.size:
            raise DecodeError(weird, f"{len(payload)} bytes")
        code, _ident, length = _CTRL.unpack_from(payload, 0)
        if length < _CTRL.size or length > len(payload):
            raise DecodeError(weird, f"length {length} of {len(payload)} bytes")
        return code, length

    def _pap(self, ts: float, src_mac: str, dst_mac: str, sid: int, payload: bytes) -> None:
        code, end = self._control_header(payload, "ppp_pap_malformed")
        if code == PAP_REQUEST:
            # Peer-ID Length, Peer-ID, Passwd-Length, Password: only the Peer-ID is read
            if end < 5:
                raise DecodeError("ppp_pap_malformed", "no Peer-ID length")
            n = payload[4]
            if 5 + n > end:
                raise DecodeError("ppp_pap_malformed", f"Peer-ID of {n} bytes past the end")
            self._user(ts, sid, src_mac, _text(payload[5:5 + n]))
        elif code in (PAP_ACK, PAP_NAK):
            self._result(ts, sid, dst_mac, src_mac, code == PAP_ACK, "pap")

    def _chap(self, ts: float, src_mac: str, dst_mac: str, sid: int, payload: bytes) -> None:
        code, end = self._control_header(payload, "ppp_chap_malformed")
        if code == CHAP_RESPONSE:
            # Value-Size, Value (the hash: skipped, never read), Name up to the packet's end
            if end < 5:
                raise DecodeError("ppp_chap_malformed", "no Value-Size")
            vsize = payload[4]
            if 5 + vsize > end:
                raise DecodeError("ppp_chap_malformed", f"Value of {vsize} bytes past the end")
            self._user(ts, sid, src_mac, _text(payload[5 + vsize:end]))
        elif code in (CHAP_SUCCESS, CHAP_FAILURE):
            self._result(ts, sid, dst_mac, src_mac, code == CHAP_SUCCESS, "chap")
        # a Challenge's Name is the authenticator's, not a user's

    def _user(self, ts: float, sid: int, client: str, username: str) -> None:
        self.counters["auth_requests"] += 1
        key = (sid, client)
        users = self.users
        if key in users:
            del users[key]  # re-insert: the dict's order is the eviction order
        elif len(users) >= MAX_SESSIONS:
            del users[next(iter(users))]
            self.counters["users_evicted"] += 1
        users[key] = (username, ts, None)

    def _result(self, ts: float, sid: int, client: str, server: str, ok: bool, method: str) -> None:
        self.counters["auth_results"] += 1
        key = (sid, client)
        entry = self.users.get(key)
        username: str | None = None
        if entry is not None:
            username = entry[0]
            if entry[2] is ok:
                return  # a retransmitted answer
            self.users[key] = (username, ts, ok)
        self._event({"ts": ts, "event": "auth", "method": method, "session_id": sid, "client_mac": client,
                     "server_mac": server, "username": username, "ok": ok})

    def _event(self, event: dict[str, Any]) -> None:
        if len(self._events) < MAX_PENDING_EVENTS:
            self._events.append(event)
        else:
            self.counters["events_dropped"] += 1

    def auth_events(self) -> list[dict[str, Any]]:
        """Authentication results and session ends since the last call (see module doc)."""
        out, self._events = self._events, []
        return out


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec("pppoe", ("link",), None, records=("pppoe",), link=PppoeDecoder)
