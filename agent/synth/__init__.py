"""Synthetic edge-gateway captures for benchmarks and load tests.

``generate(out_path, packets, seed=1, concurrency=400) -> GenStats`` writes
an Ethernet/IPv4 pcap of interleaved concurrent sessions — HTTP/1.1 with
English and Chinese UTF-8 bodies, TLS with SNI, DNS, SMTP, QUIC-sized UDP —
with full TCP handshakes, delayed ACKs, timestamps, teardown, occasional
retransmissions and resets, and correct IPv4/TCP/UDP checksums. Same seed,
same bytes. Standard library only, so it runs anywhere the agent does.

Modules: ``checksum`` (RFC 1071 arithmetic), ``frames`` (header builders),
``content`` (corpora, domains), ``sessions`` (one script per protocol and the
mix), ``scheduler`` (interleaving), ``pcap`` (writer), ``generator`` (wiring).
CLI: ``python -m agent.synth OUT.pcap --packets N [--seed S] [--concurrency C]``.
"""

from agent.synth.generator import GenStats, generate

__all__ = ["GenStats", "generate"]
