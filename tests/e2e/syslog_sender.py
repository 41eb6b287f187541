"""A router's NAT syslog for the agent reliability test: numbered lines over TCP, resent from
where the agent's spool stops whenever the agent went away.

    python syslog_sender.py HOST PORT SPOOL_FILE TOTAL RATE

Line ``n`` (0 <= n < TOTAL) is a Cisco ASA 302013 "Built" line whose inside address encodes
``n`` (``number_of``). TCP delivery ends in the agent's memory, not its spool: a line the
agent read but had not spooled when it was killed is lost with it. So whenever the connection
breaks (the agent died), the sender reconnects once an agent listens again and resumes after
the newest numbered record in the spool (``SPOOL_FILE``, read-only), as a syslog relay that
tracks acknowledgements would. Lines go at about RATE per second; once all are sent the sender
waits until the spool holds line TOTAL - 1 (resending if the agent died first), then exits 0.
"""

from __future__ import annotations

import select
import socket
import sqlite3
import sys
import time

import msgpack  # type: ignore[import-untyped]

OUTSIDE = "203.0.113.7"
REMOTE = "198.51.100.9"


def line(n: int, stamp: str) -> bytes:
    inside = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    return (f"<166>1 {stamp} asa1 - - - - %ASA-6-302013: Built outbound TCP connection {n} for "
            f"outside:{REMOTE}/443 ({REMOTE}/443) to inside:{inside}/40000 "
            f"({OUTSIDE}/{20000 + n % 40000})\n").encode()


def number_of(rec: dict[str, object]) -> int:
    """The line number a spooled or stored ``nat`` record came from."""
    _, a, b, c = str(rec["inside_ip"]).split(".")
    return (int(a) << 16) | (int(b) << 8) | int(c)


def spooled_next(spool: str) -> int:
    """One past the newest numbered ``nat`` record in the spool (0 if none)."""
    try:
        conn = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return 0
    try:
        row = conn.execute("SELECT body FROM records WHERE type = 'nat' ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:  # not created yet
        return 0
    finally:
        conn.close()
    return 0 if row is None else number_of(msgpack.unpackb(row[0], raw=False)) + 1


def connect(host: str, port: int) -> socket.socket:
    while True:
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError:
            time.sleep(0.05)  # the agent is restarting: retry until it listens


def closed(s: socket.socket) -> bool:
    """True once the agent's end of the connection went away (it never sends: readable means
    end of stream or an error)."""
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def main() -> int:
    host, port, spool, total, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
        float(sys.argv[5])
    chunk = 100
    reconnects = 0
    while True:
        s = connect(host, port)
        n = spooled_next(spool)
        start, first = time.monotonic(), n
        try:
            while n < total:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                k = min(chunk, total - n)
                s.sendall(b"".join(line(i, stamp) for i in range(n, n + k)))
                n += k
                ahead = (n - first) / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the router's log rate, not synchronization
                if closed(s):
                    raise ConnectionError("the agent went away")
            while spooled_next(spool) < total:
                if closed(s):
                    raise ConnectionError("the agent went away before spooling the last lines")
                time.sleep(0.05)  # polling the spool for the last line
            print(f"all {total} lines spooled; {reconnects} reconnects", flush=True)
            return 0
        except OSError as e:
            reconnects += 1
            print(f"resuming: {e}", flush=True)
        finally:
            s.close()


if __name__ == "__main__":
    sys.exit(main())
