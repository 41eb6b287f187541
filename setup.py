"""Build script: the hot paths compiled with mypyc; everything else stays Python.

`pip install .` (a wheel, what a gateway or a collector runs) compiles
COMPILED_MODULES with mypyc from the same typed source: the agent's packet path
(about 2.5x the packets per CPU second of the interpreted code) and the
collector's ingest workers (validation and packing; bench/README.md). An
editable install (`pip install -e .`, the development venv) is always the
interpreted build: machine code compiled in place beside the sources would keep
running after the next edit. `make test` builds the wheel with pip in a fresh
venv, installs it and runs the flow, decoder, capture, corpus, wire and ingest
tests against it; `make compiled` unpacks the same wheel into build/compiled
for the benchmarks.

What the build needs. mypyc type-checks the modules it compiles, following their imports, so
the isolated environment pip builds in (PEP 517) must hold the typed third-party modules those
modules call: `[build-system] requires` in pyproject.toml lists them (orjson, librt) beside
setuptools and mypy. Untyped ones (msgpack, zstandard, ahocorasick) are declared
`ignore_missing_imports` in the mypy configuration, so the compile step needs them neither
present nor stubbed. Declaring the typed ones, rather than checking with their types missing,
keeps their return types: mypyc then compiles, say, orjson.dumps() as a call known to return
bytes, exactly as in the development tree that mypy checks.

Without a working C compiler (or without Python's headers) there is nothing to compile with:
the build says so in one line and produces the interpreted build, which runs the same code
more slowly. `edgeaudit-agent --version` tells which build is installed. The probe compiles a
one-line C file that includes Python.h with the compiler setuptools would use ($CC honoured).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Final

from setuptools import setup

COMPILED_MODULES = [
    "agent/flows/table.py", "agent/flows/tcp.py", "agent/flows/side.py", "agent/flows/classify.py",
    "agent/flows/ports.py", "agent/flows/community_id.py", "agent/decode/packet.py", "agent/decode/link.py",
    "agent/decode/defrag.py", "agent/decode/errors.py", "agent/pipeline.py", "agent/capture/pcapfile.py",
    "agent/capture/linktypes.py", "wire/jsonl.py", "wire/addresses.py", "wire/text.py",
    # the payload path: reassembly, the inspector and the decoders the traffic mix is made of
    "agent/flows/reassembly.py", "agent/flows/inspector.py", "agent/flows/state.py", "agent/outbox.py",
    "agent/protocols/base.py",
    "agent/protocols/http.py", "agent/protocols/dns.py", "agent/protocols/tls.py", "agent/protocols/smtp.py",
    "agent/identity/table.py", "agent/identity/state.py", "agent/identity/history.py",
    "agent/identity/fields.py", "agent/identity/apps.py", "agent/identity/dhcp.py",
    "agent/identity/radius.py", "agent/identity/pppoe.py", "agent/identity/login.py",
    "agent/identity/roster.py", "agent/identity/portal.py",
    # the keyword filter: it sees every inspected byte when a ruleset is loaded
    "agent/filter/engine.py", "agent/filter/compiled.py", "agent/filter/automaton.py",
    "agent/filter/patterns.py", "agent/filter/vectorscan.py",
    "agent/filter/normalize.py", "agent/filter/forms.py",
    # the collector's ingest workers: validation (the generated checks) and packing into granules
    "wire/fastchecks.py", "wire/fastpath.py", "wire/formats.py", "wire/validate.py", "wire/envelope.py",
    "collector/storage/scanners.py", "collector/storage/granules.py", "collector/storage/keys.py",
]


def c_compiler_problem() -> str | None:
    """None when a C file including Python.h compiles here; else why not, in a few words."""
    from distutils.ccompiler import new_compiler  # setuptools' copy (imported above)
    from distutils.errors import CCompilerError, DistutilsError
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "edgeaudit_probe.c"
        src.write_text("#include <Python.h>\nint edgeaudit_probe(void) { return Py_IsInitialized(); }\n")
        # The compiler's own complaint would spread over several lines; the one line below says it.
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                compiler.compile([str(src)], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]])
        except (CCompilerError, DistutilsError, OSError) as e:
            return str(e).splitlines()[0] if str(e) else type(e).__name__
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return None


# Commands that only describe the package. pip runs setup.py once for each PEP 517 step; only
# the build itself needs mypyc's translation (a few minutes) and the compiler probe.
METADATA_ONLY: Final = {"egg_info", "dist_info", "sdist", "--name", "--version"}
# An editable install (`pip install -e .`) is for working on the source: machine code built in
# place beside the sources would keep running after the next edit, so it stays interpreted.
EDITABLE: Final = {"editable_wheel", "develop"}


def ext_modules() -> list[object]:
    if os.environ.get("EDGEAUDIT_PURE") == "1":
        return []
    first = next((a for a in sys.argv[1:] if not a.startswith("-") or a in METADATA_ONLY), None)
    if first in METADATA_ONLY:
        return []
    if first in EDITABLE:
        print("edgeaudit: editable install: the interpreted build (pip install . compiles)", file=sys.stderr)
        return []
    problem = c_compiler_problem()
    if problem is not None:
        print(f"edgeaudit: no working C compiler ({problem}); building the interpreted (slower) agent "
              "and collector", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("edgeaudit: mypyc is not available; building the interpreted (slower) agent", file=sys.stderr)
        return []
    return list(mypycify(COMPILED_MODULES, opt_level="3"))


setup(ext_modules=ext_modules())
