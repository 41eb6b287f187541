"""Build script: the hot paths compiled with mypyc; everything else stays Python.

`pip install .` (a wheel, what a gateway or a collector runs) compiles
COMPILED_MODULES with mypyc from the same typed source: the agent's packet path
(about 2.5x the packets per CPU second of the interpreted code) and the
collector's ingest workers (validation and packing; bench/README.md). The development install sets
EDGEAUDIT_PURE=1 (see the Makefile): an editable install compiled in place
would leave machine code beside the sources that a later edit would not
change. `make compiled` builds the same modules into build/compiled for the
benchmarks and for `make test`, which runs the flow, decoder, capture, corpus,
wire and ingest tests against them.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

COMPILED_MODULES = [
    "agent/flows/table.py", "agent/flows/tcp.py", "agent/flows/side.py", "agent/flows/classify.py",
    "agent/flows/ports.py", "agent/flows/community_id.py", "agent/decode/packet.py", "agent/decode/link.py",
    "agent/decode/defrag.py", "agent/decode/errors.py", "agent/pipeline.py", "agent/capture/pcapfile.py",
    "agent/capture/linktypes.py", "wire/jsonl.py", "wire/addresses.py", "wire/text.py",
    # the payload path: reassembly, the inspector and the decoders the traffic mix is made of
    "agent/flows/reassembly.py", "agent/flows/inspector.py", "agent/protocols/http.py",
    "agent/protocols/dns.py", "agent/protocols/tls.py", "agent/protocols/smtp.py",
    "agent/identity/table.py", "agent/identity/state.py", "agent/identity/history.py",
    "agent/identity/fields.py", "agent/identity/apps.py", "agent/identity/dhcp.py",
    "agent/identity/radius.py", "agent/identity/pppoe.py", "agent/identity/login.py",
    "agent/identity/roster.py",
    # the keyword filter: it sees every inspected byte when a ruleset is loaded
    "agent/filter/engine.py", "agent/filter/compiled.py", "agent/filter/automaton.py",
    "agent/filter/normalize.py", "agent/filter/forms.py",
    # the collector's ingest workers: validation (the generated checks) and packing into granules
    "wire/fastchecks.py", "wire/fastpath.py", "wire/formats.py", "wire/validate.py", "wire/envelope.py",
    "collector/storage/scanners.py", "collector/storage/granules.py", "collector/storage/keys.py",
]


def ext_modules() -> list[object]:
    if os.environ.get("EDGEAUDIT_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("edgeaudit: mypyc is not available; building the interpreted (slower) agent", file=sys.stderr)
        return []
    return list(mypycify(COMPILED_MODULES, opt_level="3"))


setup(ext_modules=ext_modules())
