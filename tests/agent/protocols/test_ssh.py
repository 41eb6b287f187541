"""The SSH decoder: version strings, negotiated algorithms, the host key fingerprint as
ssh-keygen prints it, authentication inferred from encrypted packet sizes (Zeek's rules), the
direction, and the weirds; against Zeek's ssh.log on the corpus."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from protocol_streams import zeek_rows

from agent.capture import open_capture
from agent.decode.errors import DecodeError
from agent.pipeline import Pipeline
from agent.protocols.ssh import NEGOTIATION_FAILED, SshDecoder
from wire.validate import validate_record

T0 = 1_700_000_000.0
CLIENT = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SERVER = b"SSH-2.0-OpenSSH_8.4p1\r\n"


def string(b: bytes) -> bytes:
    return struct.pack("!I", len(b)) + b


def packet(payload: bytes) -> bytes:
    """An SSH binary packet (RFC 4253 §6) with the padding a sender would add."""
    pad = 8 - (len(payload) + 5) % 8
    pad = pad + 8 if pad < 4 else pad
    return struct.pack("!IB", len(payload) + pad + 1, pad) + payload + b"\0" * pad


def kexinit(kex: str, hostkey: str, cipher: str, mac: str, comp: str = "none",
            cipher_s2c: str | None = None) -> bytes:
    lists = [kex, hostkey, cipher, cipher_s2c or cipher, mac, mac, comp, comp, "", ""]
    body = b"".join(string(x.encode()) for x in lists)
    return packet(bytes([20]) + b"\x11" * 16 + body + b"\0" + b"\0" * 4)


HOSTKEY = string(b"ssh-ed25519") + string(bytes(range(32)))


def handshake(d: SshDecoder, *, kex: str = "curve25519-sha256", server_kex: str | None = None,
              comp: str = "none", reply: int = 31, blob: bytes = HOSTKEY) -> float:
    ts = T0
    steps = [
        (True, CLIENT), (False, SERVER),
        (True, kexinit(f"{kex},diffie-hellman-group14-sha256", "ssh-ed25519,rsa-sha2-512",
                       "chacha20-poly1305@openssh.com,aes128-ctr", "hmac-sha2-256", comp)),
        (False, kexinit(server_kex or kex, "rsa-sha2-512,ssh-ed25519",
                        "aes128-ctr,chacha20-poly1305@openssh.com", "hmac-sha2-256", comp)),
        (True, packet(bytes([30]) + string(b"e" * 32))),
        (False, packet(bytes([reply]) + string(blob) + string(b"f" * 32) + string(b"sig"))
         + packet(bytes([21]))),
        (True, packet(bytes([21]))),
    ]
    for is_orig, data in steps:
        assert d.feed(is_orig, data, ts) == []
        ts += 0.01
    return ts


def test_versions_algorithms_fingerprint_and_a_successful_login_after_a_failure() -> None:
    d = SshDecoder()
    d.flow_addresses("192.168.1.20", "203.0.113.5")
    ts = handshake(d)
    # encrypted: SERVICE_REQUEST, SERVICE_ACCEPT (44), a failure (60), another (60), success (28)
    for is_orig, size in ((True, 44), (False, 44), (True, 80), (False, 60), (True, 300), (False, 60),
                          (True, 300), (False, 28), (False, 500)):
        assert d.feed(is_orig, b"\xaa" * size, ts) == []
        ts += 0.01
    [rec] = d.close(ts)
    assert rec == {
        "type": "ssh", "ts": T0, "version": 2, "auth_success": True, "auth_attempts": 2,
        "direction": "OUTBOUND", "client": CLIENT.decode().strip(), "server": SERVER.decode().strip(),
        "cipher_alg": "chacha20-poly1305@openssh.com", "mac_alg": "hmac-sha2-256", "compression_alg": "none",
        "kex_alg": "curve25519-sha256", "host_key_alg": "ssh-ed25519",
        "host_key_fingerprint": "SHA256:" + base64.b64encode(__import__("hashlib").sha256(HOSTKEY).digest())
        .decode().rstrip("="),
    }
    flow = {"uid": "C1", "proto": "tcp", "src_ip": "192.168.1.20", "src_port": 50000, "dst_ip": "203.0.113.5",
            "dst_port": 22, "vlan": None, "inner_vlan": None}
    validate_record({**flow, **rec})
    assert d.close(ts + 1) == []  # once


def test_no_agreement_and_failed_logins_only() -> None:
    d = SshDecoder()
    d.flow_addresses("198.51.100.7", "10.0.0.5")
    ts = handshake(d, kex="curve25519-sha256", server_kex="sntrup761x25519-sha512@openssh.com")
    for is_orig, size in ((True, 44), (False, 44), (True, 80), (False, 60), (True, 300), (False, 60),
                          (True, 300), (False, 60)):
        d.feed(is_orig, b"\xaa" * size, ts)
    [rec] = d.close(ts)
    assert rec["kex_alg"] == NEGOTIATION_FAILED and rec["direction"] == "INBOUND"
    assert rec["host_key_fingerprint"] is not None  # (the reply's number is 31 unless group exchange)
    assert (rec["auth_success"], rec["auth_attempts"]) == (False, 2)


def test_group_exchange_takes_the_host_key_from_its_own_reply() -> None:
    d = SshDecoder()
    handshake(d, kex="diffie-hellman-group-exchange-sha256", reply=31)  # 31 is GEX_GROUP here
    [rec] = d.close(T0 + 1)
    assert rec["host_key_fingerprint"] is None
    d = SshDecoder()
    handshake(d, kex="diffie-hellman-group-exchange-sha256", reply=33)
    [rec] = d.close(T0 + 1)
    assert rec["host_key_fingerprint"] is not None


def test_compression_leaves_authentication_undecided_and_a_cipher_per_direction() -> None:
    d = SshDecoder()
    ts = T0
    d.feed(True, CLIENT, ts)
    d.feed(False, b"a banner line\r\n" + SERVER, ts)  # lines before the server's version (§4.2)
    d.feed(True, kexinit("curve25519-sha256", "ssh-ed25519", "aes128-ctr,aes256-ctr", "hmac-sha2-256",
                         "zlib", cipher_s2c="aes256-ctr"), ts)
    d.feed(False, kexinit("curve25519-sha256", "ssh-ed25519", "aes256-ctr,aes128-ctr", "hmac-sha2-256",
                          "zlib"), ts)
    d.feed(False, packet(bytes([21])), ts)
    d.feed(True, packet(bytes([21])), ts)
    for is_orig, size in ((True, 44), (False, 44), (False, 28)):
        d.feed(is_orig, b"\xaa" * size, ts)
    [rec] = d.close(ts)
    assert rec["cipher_alg"] == "To server: aes128-ctr, to client: aes256-ctr"
    assert rec["compression_alg"] == "zlib" and rec["auth_success"] is None and rec["auth_attempts"] == 0
    assert rec["direction"] is None  # never told the addresses


def test_ssh1_versions_only_and_version_weirds() -> None:
    d = SshDecoder()
    d.feed(True, b"SSH-1.5-OpenSSH_2.1\n", T0)
    d.feed(False, b"SSH-1.99-OpenSSH_3.1p1\n" + b"\x00\x01binary ssh-1 stuff", T0)
    [rec] = d.close(T0)
    assert (rec["version"], rec["client"], rec["server"], rec["kex_alg"]) == (
        1, "SSH-1.5-OpenSSH_2.1", "SSH-1.99-OpenSSH_3.1p1", None)
    d = SshDecoder()
    d.feed(True, b"SSH-2.0-x\r\n", T0)
    d.feed(False, b"SSH-1.5-y\r\n", T0)
    weird, rec = d.close(T0)
    assert (weird["type"], weird["name"], rec["version"]) == ("weird", "SSH_version_mismatch", None)


@pytest.mark.parametrize("is_orig, data, name", [
    (True, b"GET / HTTP/1.1\r\n", "SSH_bad_version_line"),
    (True, b"SSH-2.0-" + b"x" * 300, "SSH_version_line_too_long"),
])
def test_malformed_version_lines_are_decode_errors(is_orig: bool, data: bytes, name: str) -> None:
    with pytest.raises(DecodeError) as e:
        SshDecoder().feed(is_orig, data, T0)
    assert e.value.name == name


def test_a_bad_packet_length_is_a_decode_error_and_a_gap_stops_the_parsing() -> None:
    d = SshDecoder()
    d.feed(True, CLIENT, T0)
    d.feed(False, SERVER, T0)
    with pytest.raises(DecodeError) as e:
        d.feed(True, struct.pack("!IB", 1 << 20, 4), T0)
    assert e.value.name == "SSH_bad_packet_length"
    d = SshDecoder()
    d.feed(True, CLIENT, T0)
    d.feed(False, SERVER, T0)
    d.gap(False, 100, T0)
    assert d.feed(False, b"\xff" * 64, T0) == []  # not parsed after the gap
    [rec] = d.close(T0)
    assert rec["server"] == SERVER.decode().strip() and rec["kex_alg"] is None


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen (openssh-client) not installed")
@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_the_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path, kind: str) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    blob = base64.b64decode((tmp_path / "key.pub").read_text().split()[1])
    printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key) + ".pub"], check=True,
                             capture_output=True, text=True).stdout.split()[1]
    d = SshDecoder()
    handshake(d, blob=blob)
    [rec] = d.close(T0 + 1)
    assert rec["host_key_fingerprint"] == printed


# -- corpus: Zeek's ssh.log --------------------------------------------------------------------

_SHARED_CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"  # ../shared, by path
CORPUS = Path(os.environ.get("EDGEAUDIT_CORPUS", _SHARED_CORPUS))
ZEEK = CORPUS / "zeek"


def replay(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend)
    with open_capture(path) as cap:
        for batch in cap.batches(4096):
            p.feed(batch)
    p.finish()
    return out


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus absent")
def test_zeek_gre_tunnel_ssh_log() -> None:
    [row] = zeek_rows(ZEEK / "Baseline/core.tunnels.gre/ssh.log")
    recs = replay(ZEEK / "Traces/tunnels/gre-sample.pcap")
    [rec] = [r for r in recs if r["type"] == "ssh"]
    for flow, zeek in (("src_ip", "id.orig_h"), ("src_port", "id.orig_p"), ("dst_ip", "id.resp_h"),
                       ("dst_port", "id.resp_p")):
        assert str(rec[flow]) == row[zeek]
    for field in ("client", "server", "cipher_alg", "mac_alg", "compression_alg", "kex_alg", "host_key_alg",
                  "direction"):
        assert rec[field] == row[field], field
    assert str(rec["version"]) == row["version"] and str(rec["auth_attempts"]) == row["auth_attempts"]
    assert rec["auth_success"] is None and row["auth_success"] == "-"
    # Zeek cuts the fingerprint's base64 to 32 characters; ours is whole (what ssh-keygen prints)
    fp = row["host_key_fingerprint"]
    ours = rec["host_key_fingerprint"]
    assert len(ours) == len("SHA256:") + 43 and ours.startswith(fp)
    session = next(r for r in recs if r["type"] == "session" and r["uid"] == rec["uid"])
    assert session["service"] == "ssh"
    validate_record(rec)
