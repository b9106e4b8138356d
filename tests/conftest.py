"""Suite-wide settings: one torch thread keeps a 2-core CI machine from thrashing.

``mypy --strict`` (tests/test_typing.py) needs 20 s of CPU and no torch: when that test is
selected it starts here, right after collection, in its own process on the other core,
and the test only waits for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
MYPY_TEST = "test_typing.py::test_mypy_strict"
_mypy = pytest.StashKey[tuple[subprocess.Popen[str], str]]()


def start_mypy() -> tuple[subprocess.Popen[str], str]:
    """``mypy`` on the package with a fresh cache (the settings are in pyproject.toml)."""
    cache = tempfile.mkdtemp(prefix="specdip-mypy-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mypy", "--cache-dir", cache, "src/napari_specdip"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    return proc, cache


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(item.nodeid.endswith(MYPY_TEST) for item in session.items):
        session.config.stash[_mypy] = start_mypy()


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = session.config.stash.get(_mypy, None)
    if started is not None:
        proc, cache = started
        if proc.poll() is None:  # the run ended before the typing test
            proc.kill()
        proc.communicate()
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def mypy_output(request: pytest.FixtureRequest) -> tuple[int, str]:
    """Exit code and output of the mypy run started after collection."""
    started = request.config.stash.get(_mypy, None)
    if started is None:  # e.g. selected in a way the hook did not see
        started = request.config.stash[_mypy] = start_mypy()
    proc, _ = started
    output, _ = proc.communicate(timeout=600)
    return proc.returncode, output
