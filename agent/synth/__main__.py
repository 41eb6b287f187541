"""``python -m agent.synth OUT.pcap --packets N [--seed S] [--concurrency C] [--pps R]``."""

from __future__ import annotations

import argparse
import json
import sys

from agent.synth.generator import DEFAULT_CONCURRENCY, DEFAULT_PPS, generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m agent.synth",
        description="Write a synthetic edge-gateway capture (HTTP, TLS, DNS, SMTP, QUIC-like UDP).",
    )
    ap.add_argument("out", help="output pcap path")
    ap.add_argument("--packets", type=int, default=1_000_000, help="number of packets (default 1000000)")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed; same seed, same file (default 1)")
    ap.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="sessions in flight (default 400)"
    )
    ap.add_argument("--pps", type=float, default=DEFAULT_PPS, help="mean packet rate for timestamps")
    ap.add_argument("--json", action="store_true", help="print the statistics as JSON on stdout")
    args = ap.parse_args(argv)
    try:
        stats = generate(args.out, args.packets, seed=args.seed, concurrency=args.concurrency, pps=args.pps)
    except ValueError as e:
        ap.error(str(e))
    print(f"wrote {args.out}: {stats.summary()}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
