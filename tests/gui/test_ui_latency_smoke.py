"""Smoke test of benchmarks/ui_latency.py: a tiny run in the test's viewer gives every
figure the benchmark prints (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gui

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_ui_latency_measures_gaps_redraws_and_slots(make_napari_viewer_proxy: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # for its `_common` import
    spec = importlib.util.spec_from_file_location("specdip_bench_ui_latency",
                                                  BENCHMARKS / "ui_latency.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)

    viewer = make_napari_viewer_proxy(show=True)
    result = module.measure(size=32, width=4, iterations=6, viewer=viewer)
    assert result["iterations"] == 6
    # the slot is timed from the moment the benchmark hooks it (a first report may pass)
    assert 1 <= len(result["slots"]) <= 6 and all(t >= 0 for t in result["slots"])
    assert result["redraws"] and all(t >= 0 for t in result["redraws"])
    # a tiny run may end before the 50 ms timer's second tick: gaps may be few or none
    assert all(g > 0 for g in result["gaps"]) and result["seconds"] > 0
    rows = module.summary_rows(result)
    assert [r[0] for r in rows] == ["timer gap (50 ms asked)", "chart redraw",
                                    "chart plot paint (pyqtgraph)", "worker slot"]
