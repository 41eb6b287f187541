"""Classic BPF capture filters: a tcpdump expression -> kernel socket filter.

What
    ``compile_filter("tcp port 80 or udp port 53", ifname="eth0")`` runs
    ``tcpdump -ddd`` (libpcap's compiler, the same one every pcap tool uses) and returns
    the program as a ``BpfProgram`` (a tuple of ``(code, jt, jf, k)`` instructions);
    ``attach_filter(sock, program)`` installs it on a packet socket with
    ``SO_ATTACH_FILTER`` (a ``struct sock_fprog`` pointing at the packed
    ``struct sock_filter`` array).  Frames the filter rejects never enter the ring: they
    cost no copy and no Python.

Why
    Operators know tcpdump's filter language; a gateway may want to leave out bulk
    traffic it has no duty to record (backups to a known host, a video CDN).  Writing a
    BPF compiler is out of scope, and libpcap's is exactly the reference, so tcpdump is
    run once at start-up (a Debian package the agent already depends on).

How
    ``tcpdump -ddd`` prints the instruction count, then one instruction per line as four
    decimal numbers.  With ``ifname`` the expression is compiled for that interface
    (``-i IF``): on Linux libpcap then reads VLAN tags from the kernel's ancillary data
    (the receive path strips the outer tag before the filter runs), which is what the
    filter sees on a live socket.  Without it, tcpdump assumes Ethernet and ``vlan``
    tests look at the frame bytes, which only a tag the kernel left inline will match.

Limits
    * Classic BPF only (no eBPF), at most 4096 instructions (BPF_MAXINSNS).
    * Needs the ``tcpdump`` binary on PATH (or ``tcpdump=``); compiling for an interface
      opens it, which needs CAP_NET_RAW.
    * Errors (bad expression, missing tcpdump) raise ``BpfError`` with tcpdump's message.
"""

from __future__ import annotations

import ctypes
import shutil
import socket
import struct
import subprocess
from typing import Final

__all__ = ["BpfError", "BpfProgram", "attach_filter", "compile_filter", "parse_ddd"]

SO_ATTACH_FILTER: Final = 26
BPF_MAXINSNS: Final = 4096
_INSN: Final = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_FPROG: Final = struct.Struct("@HP")  # struct sock_fprog: len, pointer to the instructions

BpfProgram = tuple[tuple[int, int, int, int], ...]


class BpfError(ValueError):
    """A capture filter that could not be compiled or attached."""


def parse_ddd(text: str) -> BpfProgram:
    """Parse ``tcpdump -ddd`` output: a count line, then ``code jt jf k`` per line."""
    lines = [ln.split() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or len(lines[0]) != 1:
        raise BpfError(f"not tcpdump -ddd output: {text[:80]!r}")
    try:
        count = int(lines[0][0])
        insns = tuple((int(a), int(b), int(c), int(d)) for a, b, c, d in lines[1:])
    except ValueError as e:
        raise BpfError(f"not tcpdump -ddd output: {e}") from e
    if count != len(insns) or not 0 < count <= BPF_MAXINSNS:
        raise BpfError(f"tcpdump -ddd: {count} instructions announced, {len(insns)} read "
                       f"(at most {BPF_MAXINSNS})")
    for code, jt, jf, k in insns:
        if not (0 <= code <= 0xFFFF and 0 <= jt <= 0xFF and 0 <= jf <= 0xFF and 0 <= k <= 0xFFFFFFFF):
            raise BpfError(f"tcpdump -ddd: instruction out of range: {code} {jt} {jf} {k}")
    return insns


def compile_filter(expr: str, *, ifname: str | None = None, tcpdump: str = "tcpdump") -> BpfProgram:
    """Compile a tcpdump filter expression (for `ifname`'s link type and VLAN handling, if given)."""
    exe = shutil.which(tcpdump)
    if exe is None:
        raise BpfError(f"capture filter {expr!r}: {tcpdump} not found (install tcpdump)")
    cmd = [exe, "-ddd"]
    if ifname is not None:
        cmd += ["-i", ifname]
    cmd += ["--", expr]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BpfError(f"capture filter {expr!r}: cannot run {exe}: {e}") from e
    if res.returncode != 0:
        msg = " ".join(ln for ln in res.stderr.splitlines() if not ln.startswith("Warning"))
        raise BpfError(f"capture filter {expr!r}: {msg.strip() or f'tcpdump exit {res.returncode}'}")
    return parse_ddd(res.stdout)


def attach_filter(sock: socket.socket, program: BpfProgram) -> None:
    """Install `program` on `sock` (SO_ATTACH_FILTER); the kernel copies it, so nothing is kept."""
    code = b"".join(_INSN.pack(*insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _FPROG.pack(len(program), ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as e:
        raise BpfError(f"cannot attach the capture filter: {e.strerror or e}") from e
