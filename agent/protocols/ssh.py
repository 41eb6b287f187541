"""SSH (RFC 4253) on one TCP connection -> one `ssh` record, with Zeek ssh.log's semantics.

What the record says (Zeek's ssh.log fields the wire carries):
- `client`, `server`: the version strings each side sent (``SSH-2.0-OpenSSH_9.2p1 ...``);
  `version` the protocol major version they agree on (Zeek's `set_version`: "1.99" is 2 with
  a 2.0 peer; null when it cannot be decided, with a weird `SSH_version_mismatch` or
  `SSH_cannot_determine_version`).
- The algorithms negotiated from the two SSH_MSG_KEXINITs (RFC 4253 §7.1: the first of the
  client's list the server also lists): `kex_alg`, `host_key_alg`, and for the two directions
  `cipher_alg`, `mac_alg`, `compression_alg` ("To server: a, to client: b" when they differ;
  "Algorithm negotiation failed" when nothing is common), as Zeek writes them.
- `host_key_fingerprint`: ``SHA256:`` and the unpadded base64 of the SHA-256 of the server's
  host key blob (K_S of SSH_MSG_KEXDH_REPLY / KEX_ECDH_REPLY, or KEX_DH_GEX_REPLY for group
  exchange), what ``ssh-keygen -l`` prints. Zeek cuts the base64 to 32 characters
  (ssh-analyzer.pac `fingerprint_sha256` resizes to 39); we write all 43.
- `auth_success`, `auth_attempts`: inferred from the sizes of the server's encrypted packets,
  as Zeek's SSH analyzer does (SSH.cc `ProcessEncrypted`): once the client has sent encrypted
  data, the server's first encrypted packet is SSH_MSG_SERVICE_ACCEPT; a later one 16 bytes
  shorter is SSH_MSG_USERAUTH_SUCCESS; the first other one is a USERAUTH_FAILURE (a long one,
  more than 256 bytes longer, is taken for a banner, once) and each later one of that size a
  failed attempt. Null and 0 when undecided, and always with compression on (zlib) before
  authentication, whose packets do not have those sizes.
- `direction`: ``OUTBOUND`` when the client is inside (a private, loopback or link-local
  address: a gateway's inside network) and the server is not, ``INBOUND`` for the reverse,
  null otherwise (Zeek's `Site::local_nets` comparison; the decoder is told the addresses:
  the `Addressed` capability).
No password, key or session content is ever read: after SSH_MSG_NEWKEYS a direction's bytes
are only counted.

How: per direction, the version line (a server may send other lines first, RFC 4253 §4.2),
then cleartext binary packets (uint32 length, padding length, payload, padding) up to
SSH_MSG_NEWKEYS, then encrypted bytes whose delivery sizes stand for packet sizes (one
TCP segment per packet, as Zeek assumes). SSH-1 (``SSH-1.5``) peers give the version strings
only. The record is written when the connection ends.

Limits: version lines of `MAX_LINE` bytes, `MAX_BANNER_LINES` lines before the server's; a
cleartext packet of `MAX_PACKET` bytes (RFC 4253 §6.1 asks implementations to take 35000);
name-lists of `MAX_NAMES` names. Malformed input raises `DecodeError` (a `weird`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct
from typing import Final, Literal, cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Addressed, Record, weird
from agent.protocols.spec import Probe, ProtocolSpec
from wire.records import SshFields
from wire.text import wire_text

MAX_LINE = 255  # RFC 4253 §4.2: a version line is at most 255 bytes with CR LF
MAX_BANNER_LINES = 64  # lines a server may send before its version line that we skip
MAX_PACKET = 35000  # RFC 4253 §6.1
MAX_NAMES = 128  # names in one name-list
MAX_ALG = 256  # characters of an algorithm field

MSG_KEXINIT = 20
MSG_NEWKEYS = 21
MSG_KEXDH_REPLY = 31  # also KEX_ECDH_REPLY; KEX_DH_GEX_GROUP for group exchange
MSG_KEX_DH_GEX_REPLY = 33
COMPRESSION_ALGORITHMS = frozenset({"zlib", "zlib@openssh.com"})  # Zeek's: auth undecidable
NEGOTIATION_FAILED = "Algorithm negotiation failed"

_U32 = struct.Struct("!I")
_VERSION, _WAIT, _CLEAR, _ENCRYPTED, _DONE = range(5)


class _Dir:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.stage = _VERSION
        self.lines = 0  # lines before the version line
        self.kexinit: list[list[str]] | None = None  # the name-lists of its KEXINIT


class SshDecoder:
    """SSH on one TCP connection -> one `ssh` record (see the module docstring)."""

    name = "ssh"

    def __init__(self) -> None:
        self._dirs = {True: _Dir(), False: _Dir()}
        self._ts: float | None = None
        self._client: str | None = None
        self._server: str | None = None
        self._major: int | None = None  # the version both speak, once both lines are in
        self._algs: dict[str, str] = {}
        self._fingerprint: str | None = None
        self._direction: Literal["INBOUND", "OUTBOUND"] | None = None
        # auth inference (Zeek's SSH.cc)
        self._client_encrypted = False
        self._accept_size = 0
        self._failure_size = 0
        self._skipped_banner = False
        self._decided = False
        self._auth_success: bool | None = None
        self._auth_attempts = 0
        self._closed = False

    # --- the Addressed capability --------------------------------------------
    def flow_addresses(self, orig_ip: str, resp_ip: str) -> None:
        inside_o, inside_r = _inside(orig_ip), _inside(resp_ip)
        if inside_o and not inside_r:
            self._direction = "OUTBOUND"
        elif inside_r and not inside_o:
            self._direction = "INBOUND"

    # --- StreamDecoder interface ---------------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        if self._closed or not data:
            return []
        if self._ts is None:
            self._ts = ts
        d = self._dirs[is_orig]
        if d.stage == _ENCRYPTED:
            self._encrypted(is_orig, len(data))
            return []
        if d.stage == _DONE:
            return []
        d.buf += data
        out: list[Record] = []
        if d.stage == _VERSION:
            out += self._version(is_orig, d, ts)
        if d.stage == _WAIT and len(d.buf) > 2 * MAX_PACKET:
            raise DecodeError("SSH_no_peer_version", f"{len(d.buf)} bytes before the peer's version line")
        if d.stage == _CLEAR:
            self._packets(is_orig, d)
        if d.stage == _ENCRYPTED and d.buf:
            self._encrypted(is_orig, len(d.buf))  # the rest of this delivery is encrypted
            d.buf.clear()
        return out

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        # bytes are missing: packet boundaries are lost for good in this direction
        d = self._dirs[is_orig]
        d.buf.clear()
        if d.stage != _ENCRYPTED:
            d.stage = _DONE
        return []

    def close(self, ts: float) -> list[Record]:
        if self._closed or self._ts is None or (self._client is None and self._server is None):
            self._closed = True
            return []
        self._closed = True
        version, weirds = self._agreed_version(ts)
        rec: SshFields = {
            "type": "ssh", "ts": self._ts, "version": version, "auth_success": self._auth_success,
            "auth_attempts": self._auth_attempts, "direction": self._direction,
            "client": self._client, "server": self._server,
            "cipher_alg": self._algs.get("cipher"), "mac_alg": self._algs.get("mac"),
            "compression_alg": self._algs.get("compression"), "kex_alg": self._algs.get("kex"),
            "host_key_alg": self._algs.get("host_key"), "host_key_fingerprint": self._fingerprint,
        }
        return [*weirds, cast(Record, rec)]

    # --- version lines --------------------------------------------------------
    def _version(self, is_orig: bool, d: _Dir, ts: float) -> list[Record]:
        while d.stage == _VERSION:
            nl = d.buf.find(b"\n")
            if nl < 0:
                if len(d.buf) > MAX_LINE:
                    raise DecodeError("SSH_version_line_too_long", f"{len(d.buf)} bytes without a line end")
                return []
            line = bytes(d.buf[:nl]).rstrip(b"\r")
            del d.buf[:nl + 1]
            if line.startswith(b"SSH-"):
                text = wire_text(line[:MAX_LINE])
                if is_orig:
                    self._client = text
                else:
                    self._server = text
                # binary packets follow when both sides speak SSH-2 ("1.99" speaks either):
                # decided once both version lines are in; SSH-1 is not read further
                d.stage = _WAIT
                self._settle()
                return []
            if is_orig:  # a client starts with its version line (RFC 4253 §4.2)
                raise DecodeError("SSH_bad_version_line", wire_text(line[:60]))
            d.lines += 1
            if d.lines > MAX_BANNER_LINES:
                raise DecodeError("SSH_too_many_banner_lines", f"more than {MAX_BANNER_LINES}")
        return []

    def _settle(self) -> None:
        """Both version lines known: the directions waiting go on to binary packets (SSH-2)
        or stop (SSH-1, or no agreement)."""
        if self._client is None or self._server is None:
            return
        self._major = self._agreed_major()
        two = self._major == 2
        for is_orig, d in self._dirs.items():
            if d.stage == _WAIT:
                d.stage = _CLEAR if two else _DONE
                if two:
                    self._packets(is_orig, d)
                else:
                    d.buf.clear()

    # --- cleartext binary packets ---------------------------------------------
    def _packets(self, is_orig: bool, d: _Dir) -> None:
        buf = d.buf
        while d.stage == _CLEAR and len(buf) >= 5:
            plen = _U32.unpack_from(buf, 0)[0]
            if plen < 5 or plen > MAX_PACKET:
                raise DecodeError("SSH_bad_packet_length", str(plen))
            if len(buf) < 4 + plen:
                return
            pad = buf[4]
            if pad >= plen:
                raise DecodeError("SSH_bad_padding_length", f"{pad} of {plen}")
            payload = bytes(buf[5:4 + plen - pad])
            del buf[:4 + plen]
            if payload:
                self._message(is_orig, d, payload)

    def _message(self, is_orig: bool, d: _Dir, payload: bytes) -> None:
        msg = payload[0]
        if msg == MSG_KEXINIT:
            d.kexinit = _kexinit(payload)
            self._negotiate()
        elif msg == MSG_NEWKEYS:
            d.stage = _ENCRYPTED
        elif not is_orig and msg in (MSG_KEXDH_REPLY, MSG_KEX_DH_GEX_REPLY) and self._fingerprint is None:
            gex = "group-exchange" in self._algs.get("kex", "")
            if msg == (MSG_KEX_DH_GEX_REPLY if gex else MSG_KEXDH_REPLY):
                blob = _string(payload, 1)[0]
                digest = hashlib.sha256(blob).digest()
                self._fingerprint = "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")

    def _negotiate(self) -> None:
        c, s = self._dirs[True].kexinit, self._dirs[False].kexinit
        if c is None or s is None:
            return
        # name-lists: kex, host key, cipher c2s, s2c, mac c2s, s2c, compression c2s, s2c
        self._algs = {
            "kex": _find(c[0], s[0]), "host_key": _find(c[1], s[1]),
            "cipher": _both(c[2], s[2], c[3], s[3]), "mac": _both(c[4], s[4], c[5], s[5]),
            "compression": _both(c[6], s[6], c[7], s[7]),
        }

    # --- encrypted bytes: authentication from packet sizes (Zeek's SSH.cc) --------------
    def _encrypted(self, is_orig: bool, size: int) -> None:
        if self._decided or self._major != 2:
            return
        if self._algs.get("compression") in COMPRESSION_ALGORITHMS:
            return  # sizes say nothing with compression on (Zeek's ssh_auth_attempted)
        if is_orig:
            self._client_encrypted = True
            return
        if not self._client_encrypted:
            return
        if not self._accept_size:
            self._accept_size = size  # SSH_MSG_SERVICE_ACCEPT
            return
        if not self._failure_size and size + 16 == self._accept_size:
            self._attempt(True)  # USERAUTH_SUCCESS right away ("none" authentication)
            return
        if not self._failure_size:
            if not self._skipped_banner and size - self._accept_size > 256:
                self._skipped_banner = True  # a pre-authentication banner
                return
            self._failure_size = size  # the first USERAUTH_FAILURE (lists the methods)
            return
        if size == self._failure_size:
            self._attempt(False)
        elif size - self._accept_size == -16:
            self._attempt(True)

    def _attempt(self, ok: bool) -> None:
        self._auth_attempts += 1
        self._auth_success = ok
        if ok:
            self._decided = True

    # --- the version both sides speak (Zeek's set_version) ----------------------------
    def _agreed_major(self) -> int | None:
        c, s = self._client, self._server
        if not c or not s or len(c) <= 4 or len(s) <= 4:
            return None
        c99, s99 = c[6:8] == "99", s[6:8] == "99"
        if c[4] == "2" and s[4] == "2":
            return 2
        if c[4] == "1" and s[4] == "2":
            return 2 if len(c) > 7 and c99 else None
        if c[4] == "2" and s[4] == "1":
            return 2 if len(s) > 7 and s99 else None
        if c[4] == "1" and s[4] == "1":
            return 2 if (len(s) > 7 and s99 and len(c) > 7 and c99) else 1
        return None

    def _agreed_version(self, ts: float) -> tuple[int | None, list[Record]]:
        if not self._client or not self._server:
            return None, []
        major = self._agreed_major()
        if major is not None:
            return major, []
        c, s = self._client, self._server
        name = "SSH_version_mismatch" if len(c) > 4 and len(s) > 4 and {c[4], s[4]} == {"1", "2"} \
            else "SSH_cannot_determine_version"
        return None, [weird(ts, name, f"{s} vs {c}"[:200])]


#: A unit's inside networks as a gateway sees them (Zeek's Site::local_nets): RFC 1918, shared
#: address space (RFC 6598: a carrier's inside), loopback, link-local, IPv6 unique local. Not
#: Python's `is_private`, which also takes the documentation ranges for inside.
_INSIDE: Final = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "fc00::/7", "fe80::/10", "::1/128"))


def _inside(ip: str) -> bool:
    """An address of a unit's inside network (`_INSIDE`)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(a.version == n.version and a in n for n in _INSIDE)


def _string(p: bytes, off: int) -> tuple[bytes, int]:
    """An SSH `string` (uint32 length, bytes) at `off`: (the bytes, the offset after it)."""
    if off + 4 > len(p):
        raise DecodeError("SSH_truncated_string", f"at {off} of {len(p)}")
    n = _U32.unpack_from(p, off)[0]
    end = off + 4 + n
    if end > len(p):
        raise DecodeError("SSH_truncated_string", f"{n} bytes at {off} of {len(p)}")
    return p[off + 4:end], end


def _kexinit(p: bytes) -> list[list[str]]:
    """The ten name-lists of an SSH_MSG_KEXINIT payload (after its 16-byte cookie)."""
    off = 17
    lists: list[list[str]] = []
    for _ in range(10):
        raw, off = _string(p, off)
        names = [wire_text(n[:MAX_ALG]) for n in raw.split(b",")[:MAX_NAMES] if n] if raw else []
        lists.append(names)
    return lists


def _find(client: list[str], server: list[str]) -> str:
    """The first algorithm of the client's list the server also lists (RFC 4253 §7.1)."""
    offered = set(server)
    for a in client:
        if a in offered:
            return a
    return NEGOTIATION_FAILED


def _both(c_to_s: list[str], s_to_s: list[str], c_to_c: list[str], s_to_c: list[str]) -> str:
    """An algorithm negotiated per direction, written once when both agree (as Zeek does)."""
    to_server, to_client = _find(c_to_s, s_to_s), _find(c_to_c, s_to_c)
    return to_server if to_server == to_client else f"To server: {to_server}, to client: {to_client}"


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec(
    "ssh", ("tcp",), SshDecoder, records=("ssh",), ports=frozenset({22, 2222}), capabilities=(Addressed,),
    probe=Probe(client=(b"SSH-",), server=(b"SSH-",)),
)
