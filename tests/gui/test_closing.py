"""Closing the viewer while the widget measures its estimate ends that thread first."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_closing_the_viewer_waits_for_the_estimate(make_napari_viewer_proxy: Any, qtbot: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import estimate

    measure = estimate.estimate
    started, ended, never = threading.Event(), threading.Event(), threading.Event()

    def slow(*args: Any, **kwargs: Any) -> Any:
        started.set()
        never.wait(2.0)  # a measurement still going when the viewer closes
        try:
            return measure(*args, **kwargs)  # cancelled by the closing widget
        finally:
            ended.set()

    monkeypatch.setattr(estimate, "estimate", slow)
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="a")
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.net_width.value = 8
    worker = widget.refresh_estimate()
    assert worker is not None and started.wait(30.0)
    returned: list[Any] = []
    worker.returned.connect(returned.append)
    viewer.close()
    qtbot.waitUntil(lambda: not widget._alive, timeout=30_000)
    # the thread ended before the widget was gone (left running, it printed "wrapped
    # C/C++ object ... has been deleted" tracebacks, and torch's while Python shut down)
    assert ended.is_set()
    qtbot.wait(50)
    assert returned == []  # its answer is dropped


def test_closing_the_viewer_cancels_a_long_estimate(make_napari_viewer_proxy: Any, qtbot: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from napari_specdip.core import estimate

    started, cancelled = threading.Event(), threading.Event()

    def long_steps(job: Any, cancel: Any = None) -> tuple[float, float]:
        started.set()  # a large image: seconds per step, many steps
        if cancel is not None and cancel.wait(30.0):
            cancelled.set()
            raise estimate.EstimateCancelled("the estimate was cancelled")
        return 1.0, 0.0

    monkeypatch.setattr(estimate, "_timed", long_steps)  # the estimate's timed steps
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.random.default_rng(2).random((32, 32)).astype(np.float32), name="b")
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.net_width.value = 8
    assert widget.refresh_estimate() is not None and started.wait(30.0)
    start = time.monotonic()
    viewer.close()
    qtbot.waitUntil(lambda: not widget._alive, timeout=30_000)
    assert cancelled.is_set() and time.monotonic() - start < 10.0  # not the 30 s limit
