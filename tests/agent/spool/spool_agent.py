"""A stand-in for the live agent's data path, for the reliability tests: one process with a
writer thread appending numbered records to the spool and the drain thread uploading them.

    python spool_agent.py SPOOL URL TOKEN TOTAL CHUNK RATE [BAD_EVERY]

The writer appends records 0..TOTAL-1 (`weird` records whose `detail` is the number), CHUNK
per `append`, at about RATE records/s; after a restart it resumes after the newest record
in the spool (an `append` either committed or did not). With BAD_EVERY, every record whose
number is a multiple of it carries a field the schema does not know (spooled unchecked, as
by an agent older than the collector's checks): the collector refuses its batch with 400 and
the drain quarantines it. The process runs until it is killed.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from agent.spool.store import Spool
from agent.uploader.client import CollectorClient
from agent.uploader.drain import SpoolDrain


def record(n: int, bad_every: int = 0) -> dict[str, object]:
    rec: dict[str, object] = {"type": "weird", "ts": time.time(), "name": "spool_test", "detail": str(n)}
    if bad_every and n % bad_every == 0:
        rec["not_in_the_schema"] = True
    return rec


def write(path: str, total: int, chunk: int, rate: float, bad_every: int) -> None:
    spool = Spool(path, validate=not bad_every)
    newest = spool.newest()
    n = 0 if newest is None else int(str(newest["detail"])) + 1
    start = time.monotonic()
    first = n
    while n < total:
        k = min(chunk, total - n)
        assert spool.append(record(i, bad_every) for i in range(n, n + k)) == k
        n += k
        ahead = (n - first) / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # pacing a producer, not synchronization
    print("writer done", flush=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    path, url, token, total, chunk, rate = sys.argv[1:7]
    bad_every = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    writer = threading.Thread(target=write, args=(path, int(total), int(chunk), float(rate), bad_every),
                              daemon=True)
    writer.start()
    drain = SpoolDrain(Spool(path), CollectorClient(url, token, timeout=10), backoff_cap_s=0.5, linger_s=0.2)
    drain.run(threading.Event())


if __name__ == "__main__":
    main()
