"""Suite-wide setup.

EDGEAUDIT_TREE=installed runs the tests against the package installed in the
interpreter's environment instead of the checkout: `make test` runs the flow,
decoder, capture, corpus, wire and SQLite layout tests with the pytest of a
fresh venv into which the wheel `pip wheel .` built was installed, so the
mypyc-compiled packet and ingest paths a user gets are held to the same tests.
pytest puts the checkout (this file's directory) first on sys.path, where the
same package names exist as source, so it is moved behind site-packages, and
PYTHONSAFEPATH keeps `python -m agent.cli` children started in the checkout
from importing the source too. The installed modules must be machine code.

EDGEAUDIT_TREE=build/compiled (a directory) does the same with an unpacked
build (the benchmarks' tree). The development install is editable and its
import hook would keep serving the source modules, so the hook is taken out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Hypothesis' per-example deadline (200 ms) fails a test whose first example waited on the
# machine (imports, a busy core under `pytest -n auto`) though nothing is wrong: timings are
# the benchmarks' business, not the property tests'.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # the suite's own dependency; absent only outside `make test`
    pass
else:
    _hypothesis_settings.register_profile("edgeaudit", deadline=None)
    _hypothesis_settings.load_profile("edgeaudit")

_tree = os.environ.get("EDGEAUDIT_TREE")
if _tree == "installed":
    _checkout = Path(__file__).resolve().parent
    _here = [p for p in sys.path if Path(p or ".").resolve() == _checkout]
    sys.path[:] = [p for p in sys.path if p not in _here] + _here
    os.environ["PYTHONSAFEPATH"] = "1"
elif _tree:
    _path = Path(_tree).resolve()
    if not (_path / ".built").exists():
        raise RuntimeError(f"EDGEAUDIT_TREE={_tree}: not a built tree (run `make compiled`)")
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(_path))
if _tree:
    import agent.flows.table
    import collector.storage.granules

    for _module in (agent.flows.table, collector.storage.granules):
        _file = _module.__file__ or ""
        if not _file.endswith(".so") or (_tree == "installed" and "site-packages" not in _file):
            raise RuntimeError(f"EDGEAUDIT_TREE={_tree}: {_module.__name__} is {_file}, not compiled")


try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - pytest runs this file
    pass
else:
    @_pytest.fixture(params=["vectorscan", "aho-corasick"])
    def keyword_engine(request: _pytest.FixtureRequest) -> object:
        """Run a filter test once with each keyword engine (`pytestmark = usefixtures(...)`):
        the default engine of every PatternSet the test builds is set to the param, so both
        engines must give the same answers (issue 16's differential test)."""
        import agent.filter.patterns as patterns

        saved = patterns.DEFAULT_ENGINE
        patterns.DEFAULT_ENGINE = request.param
        yield request.param
        patterns.DEFAULT_ENGINE = saved
