"""Suite-wide setup.

EDGEAUDIT_TREE=build/compiled runs the tests against the mypyc-compiled tree
(`make compiled`) instead of the source tree, so the compiled packet path and
ingest path are held to the same tests (`make test` does this for the flow,
corpus, wire and SQLite layout tests).
The development install is editable and its import hook would keep serving the
source modules, so the hook is taken out first.
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
if _tree:
    _path = Path(_tree).resolve()
    if not (_path / ".built").exists():
        raise RuntimeError(f"EDGEAUDIT_TREE={_tree}: not a built tree (run `make compiled`)")
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(_path))
    import agent.flows.table
    import collector.storage.granules

    for _module in (agent.flows.table, collector.storage.granules):
        if not _module.__file__ or not _module.__file__.endswith(".so"):
            raise RuntimeError(f"EDGEAUDIT_TREE={_tree}: {_module.__name__} is not the compiled module")
