"""GUI fixtures: a napari viewer (proxy: fails on any layer change from a worker thread)
with the restore widget opened from the manifest. Run under ``xvfb-run``.

napari 0.9.2 under Xvfb can segfault, taking the whole pytest run with it, when a layer
that is not on top of the layer list is removed (plain napari does it too; reproduced in a
shown viewer with a 3D image under a 2D one, removing the 3D one). Tests that delete layers
use ``remove_layer``, which moves the layer to the top and lets the canvas redraw first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

# small and fast: 64 px samples, width 8, a handful of iterations
FAST = {"width": 8, "preview_every": 3}


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.set_num_threads(1)
    # the widget leaves the GUI a core (cpu_count - 1); on CI keep it at one thread
    monkeypatch.setattr("napari_specdip._napari._widget.default_num_threads", lambda: 1)


@pytest.fixture
def notifications() -> Any:
    """Every napari notification shown during the test (their messages)."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def record(event: Any) -> None:
        seen.append(str(event.message))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


@pytest.fixture
def viewer(make_napari_viewer_proxy: Callable[..., Any]) -> Any:
    return make_napari_viewer_proxy()


@pytest.fixture
def open_widget(viewer: Any) -> Callable[..., Any]:
    """Dock the restore widget from the manifest and set it up for a quick run."""

    def _open(**values: Any) -> Any:
        _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
        _configure(widget, **values)
        return widget

    return _open


@pytest.fixture
def configure() -> Callable[..., None]:
    """Set up a widget for a quick run (as ``open_widget`` does)."""
    return _configure


def _configure(widget: Any, *, task: str | None = None, iterations: int = 6,
               **values: Any) -> None:
    """Set the task (loading its defaults) then the quick-run values."""
    if task is not None:
        widget.task.value = task
    from magicgui.widgets import LineEdit

    settings = {**FAST, "max_iterations": iterations, **values}
    names = {"width": "net_width"}
    for key, value in settings.items():
        control = getattr(widget, names.get(key, key))
        # number fields are text, shown as typed
        control.value = str(value) if isinstance(control, LineEdit) else value


class SessionReports(list[Any]):
    """The ``(slice, report)`` items a run's session received, in order; each of
    ``listeners`` is called with every item after the session's own slot."""

    def __init__(self) -> None:
        super().__init__()
        self.listeners: list[Callable[[Any], None]] = []


@pytest.fixture
def session_reports(monkeypatch: pytest.MonkeyPatch) -> SessionReports:
    """Every item a run's worker yields, as its session receives them, for the whole test:
    a slot connected to the worker after ``start()`` can miss the first ones (a tiny
    stack's slice check is over at once)."""
    from napari_specdip._napari._session import RunSession

    reports = SessionReports()
    on_yielded = RunSession._on_yielded

    def spy(session: RunSession, item: Any) -> None:
        reports.append(item)
        on_yielded(session, item)
        for listener in reports.listeners:
            listener(item)

    monkeypatch.setattr(RunSession, "_on_yielded", spy)
    return reports


@pytest.fixture
def wait_for_run(qtbot: Any) -> Callable[..., None]:
    """Block (processing Qt events) until the widget's worker has finished."""

    def _wait(widget: Any, timeout: int = 60_000) -> None:
        qtbot.waitUntil(lambda: not widget.is_running, timeout=timeout)

    return _wait


@pytest.fixture
def stop_from_the_worker(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``stop_from_the_worker(widget, when)``: the user's Stop, asked on the worker thread
    at the first report ``(k, report)`` that ``when`` accepts, before the engine takes its
    next step. Asked from the GUI thread it lands as late as the queued reports are
    handled, which a loaded machine delays by tens of iterations."""
    from napari_specdip._napari import _session

    run_jobs = _session.run_jobs

    def _arm(widget: Any, when: Callable[[int, Any], bool]) -> None:
        def stopping(*args: Any, **kwargs: Any) -> Any:
            jobs = run_jobs(*args, **kwargs)
            while True:
                try:
                    k, report = next(jobs)
                except StopIteration as done:
                    return done.value
                if when(k, report):
                    widget._session.request_stop()
                yield k, report

        monkeypatch.setattr(_session, "run_jobs", stopping)

    return _arm


@pytest.fixture
def remove_layer(qtbot: Any) -> Callable[[Any, Any], None]:
    """``remove_layer(viewer, layer)`` without napari's Xvfb crash: bring the layer to the
    top, let the canvas draw that, then remove it."""

    def _remove(viewer: Any, layer: Any) -> None:
        layers = viewer.layers
        index = layers.index(layer)
        if index != len(layers) - 1:
            layers.move(index, len(layers))
            qtbot.wait(50)  # removing before this draw still crashes
        layers.remove(layer)

    return _remove


@pytest.fixture
def preview_rectangle(wait_for_run: Callable[..., None]) -> Callable[..., None]:
    """``preview_rectangle(viewer, widget, corners)``: draw the rectangle on a Shapes
    layer, choose it as the preview region and run the region preview to its end."""

    def _preview(viewer: Any, widget: Any, corners: Any) -> None:
        import numpy as np

        shapes = viewer.add_shapes([np.asarray(corners, float)], shape_type="rectangle",
                                   name="roi")
        widget.region.reset_choices()
        widget.region.value = shapes
        assert widget.start_region_preview() is not None, widget.last_error
        wait_for_run(widget)

    return _preview
