"""The publishing tests: frames from the flow tests' builder, and no publisher left installed.

A pipeline installs its publisher for the process (``agent.publish.extract.install``); a test
that made one with publishing hosts must not leave it to the next test of the same worker
(an inspector built without a pipeline would take it), so every test ends with none.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))  # tcp_frames, flow_paths

from agent.publish.extract import install  # noqa: E402


@pytest.fixture(autouse=True)
def _no_publisher_left() -> Iterator[None]:
    yield
    install(None)
