"""Does the napari window stay responsive while the widget runs?

Opens a real napari viewer (run it under a virtual display), docks the SpecDIP
restore widget and its charts at the screenshot's window size, and runs a short
real restoration (noisy photo with its clean reference, so all four chart panels
draw). Meanwhile a ``QTimer`` on the main thread asks for a tick every 50 ms; the
gaps between ticks say how long the main thread was blocked. Printed: the
largest, mean and 95th-percentile gap during the run, the time spent in each
chart update (matplotlib's full draw in the first version; pyqtgraph's data update
and, separately, its paints now) and in each worker slot (``_on_yielded``), and
how many gaps exceeded 100 and 500 ms.

Run it against another checkout (``PYTHONPATH=<other>/src``) for a before/after
on the same machine, alternating, since timings on a shared machine drift.
Under Xvfb (software OpenGL) Qt composes the whole window, vispy canvas included,
for every repaint: 20-40 ms idle on a 2-core VM, more under load, whoever asks
for the repaint.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/ui_latency.py \
        [--size 128] [--width 32] [--iterations 250] [--theme dark]

The run uses the widget's own defaults (preview every 50 iterations, stop rule)
except for the size, width and iteration cap, and one torch thread so that the
other core is the GUI's (what the widget does on a 2-core machine).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine_lines

TICK_MS = 50
WINDOW = (1500, 940)  # the README screenshot's window


def _timed(store: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            store.append(time.perf_counter() - start)

    return wrapper


def _time_pyqtgraph_paints(store: list[float]) -> Callable[[], None]:
    """Time every paint of a pyqtgraph view (nothing when pyqtgraph is not in use)."""
    if "pyqtgraph" not in sys.modules:
        return lambda: None
    from pyqtgraph.widgets.GraphicsView import GraphicsView

    original = GraphicsView.paintEvent
    GraphicsView.paintEvent = _timed(store, original)  # type: ignore[method-assign]

    def restore() -> None:
        GraphicsView.paintEvent = original  # type: ignore[method-assign]

    return restore


class MainThreadSampler:
    """Samples the main thread's Python stack every few ms from a second thread, so
    that a long gap between timer ticks can be attributed to the code that ran in
    it. A sample whose innermost frame is the event loop's ``exec`` means the main
    thread was inside Qt's C++ (painting, compositing) with no Python on top; a
    sampler that itself wakes late means the GIL was held elsewhere."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.main_id = threading.main_thread().ident
        self.samples: list[tuple[float, float, tuple[str, ...]]] = []  # (time, late, stack)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        expected = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            frame = sys._current_frames().get(self.main_id)  # noqa: SLF001
            if frame is not None:
                stack = tuple(f"{Path(fs.filename).name}:{fs.name}"
                              for fs in traceback.extract_stack(frame)[-12:])
                self.samples.append((now, now - expected, stack))
            expected = time.perf_counter() + self.interval_s
            time.sleep(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, ticks: Sequence[float], threshold_ms: float = 100.0,
               top: int = 6) -> list[str]:
        """What the main thread was doing in each gap over ``threshold_ms``."""
        lines: list[str] = []
        for a, b in zip(ticks, ticks[1:], strict=False):
            gap = 1000 * (b - a)
            if gap <= threshold_ms:
                continue
            inside = [(late, stack) for t, late, stack in self.samples if a < t < b]
            lines.append(f"gap {gap:.0f} ms at {a - ticks[0]:.1f} s: {len(inside)} samples, "
                         f"sampler late by up to {1000 * max((x[0] for x in inside), default=0):.0f} ms")
            counts = collections.Counter(" < ".join(reversed(stack[-4:])) for _, stack in inside)
            for stack_text, n in counts.most_common(top):
                lines.append(f"    {n:3d}  {stack_text}")
        return lines


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def measure(*, size: int, width: int, iterations: int, theme: str = "dark",
            stop: str = "none", timeout_s: float = 300.0, viewer: Any = None,
            profile: bool = False) -> dict[str, Any]:
    """One run in a fresh viewer (or ``viewer``, shown); returns the gaps and the
    redraw and slot times in milliseconds."""
    import napari
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_specdip import samples
    from napari_specdip._napari import _widget

    _widget.default_num_threads = lambda: 1  # type: ignore[assignment]
    app = QApplication.instance() or QApplication([])
    own_viewer = viewer is None
    if viewer is None:
        viewer = napari.Viewer(title="ui latency", show=True)
    viewer.theme = theme
    viewer.window.resize(*WINDOW)
    sample = samples.noisy_photo(size)
    image = viewer.add_image(sample.image, name="noisy", rgb=True)
    clean = viewer.add_image(sample.clean, name="noisy (clean)", rgb=True, visible=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.image.value = image
    widget.reference.value = clean
    widget.net_width.value = width
    widget.max_iterations.value = iterations
    widget.stop.value = stop
    charts = widget.charts
    redraws: list[float] = []
    slots: list[float] = []
    # every update of the charts: the widget's own record when it keeps one, else
    # matplotlib's full draw (the only way the first version painted)
    own = getattr(charts, "draw_times", None)
    if own is None:
        charts.canvas.draw = _timed(redraws, charts.canvas.draw)  # type: ignore[method-assign]
    # and Qt's painting of pyqtgraph's plots, which follows an update
    paints: list[float] = []
    restore_paint = _time_pyqtgraph_paints(paints)
    # as a user would, click Run once the estimate beside it is shown (its calibration
    # runs in a thread; the first meta-device trace imports torch._dynamo, about 1 s)
    deadline = time.perf_counter() + 60.0
    while (getattr(widget, "last_estimate", True) is None
           or getattr(widget, "_estimate_worker", None) is not None) \
            and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(TICK_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    clicked = time.perf_counter()
    worker = widget.start()
    click_s = time.perf_counter() - clicked
    if worker is None:
        raise SystemExit(f"the run was refused: {widget.last_error}")
    # the slot that handles each report: the widget's (first version) or its run session's
    owner = getattr(widget, "session", None) or widget
    worker.yielded.disconnect(owner._on_yielded)
    worker.yielded.connect(_timed(slots, owner._on_yielded))
    worker.finished.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    redraws.clear()  # count the run's paints only
    paints.clear()
    first = len(own) if own is not None else 0
    sampler = MainThreadSampler() if profile else None
    if sampler is not None:
        sampler.start()
    start = time.perf_counter()
    timer.start()
    loop.exec()
    timer.stop()
    if sampler is not None:
        sampler.stop()
    seconds = time.perf_counter() - start
    while widget.is_running:  # the timeout fired: stop and let the result arrive
        widget.request_stop()
        app.processEvents()
        time.sleep(0.01)
    output = widget.last_output
    done = output.metadata["specdip"]["iterations"] if output is not None else 0
    if own_viewer:
        viewer.close()
    app.processEvents()
    restore_paint()
    if own is not None:
        redraws = list(own[first:])
    gaps = [1000 * (b - a) for a, b in zip(ticks, ticks[1:], strict=False)]
    return {"gaps": gaps, "redraws": [1000 * r for r in redraws],
            "paints": [1000 * p for p in paints],
            "slots": [1000 * s for s in slots], "seconds": seconds, "iterations": done,
            "click_ms": 1000 * click_s,
            "profile": sampler.report(ticks) if sampler is not None else []}


def summary_rows(result: dict[str, Any]) -> list[tuple[str, int, float, float, float]]:
    """(what, count, mean, p95, max) in ms."""
    rows = []
    for label, key in (("timer gap (50 ms asked)", "gaps"), ("chart redraw", "redraws"),
                       ("chart plot paint (pyqtgraph)", "paints"), ("worker slot", "slots")):
        values = result[key]
        rows.append((label, len(values), statistics.fmean(values) if values else float("nan"),
                     _percentile(values, 95), max(values, default=float("nan"))))
    return rows


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--theme", default="dark")
    parser.add_argument("--profile", action="store_true",
                        help="sample the main thread's stack and say what ran in each long gap")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    print("\n".join(machine_lines("cpu")))
    print(f"settings: {args.size} px RGB noisy photo + clean reference, width {args.width}, "
          f"{args.iterations} iterations (stop none), window {WINDOW[0]}x{WINDOW[1]}, "
          f"{args.theme} theme, timer every {TICK_MS} ms")
    result = measure(size=args.size, width=args.width, iterations=args.iterations,
                     theme=args.theme, profile=args.profile)
    print(f"run: {result['iterations']} iterations in {result['seconds']:.1f} s; the Run click "
          f"(plan, preview layer, worker start) took {result['click_ms']:.0f} ms")
    print("\n| what | count | mean ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    for label, count, mean, p95, largest in summary_rows(result):
        print(f"| {label} | {count} | {mean:.1f} | {p95:.1f} | {largest:.1f} |")
    gaps = result["gaps"]
    blocked = max(gaps, default=float("nan")) - TICK_MS
    long = [g for g in gaps if g > 100.0]
    frozen = sum(g - TICK_MS for g in long) / 1000.0
    print(f"\nlongest main-thread block: about {blocked:.0f} ms (largest gap minus the 50 ms "
          "interval)")
    print(f"gaps over 100 ms: {len(long)} ({60.0 * len(long) / result['seconds']:.0f} a minute), "
          f"{100.0 * frozen / result['seconds']:.0f}% of the run's time; over 500 ms: "
          f"{sum(g > 500.0 for g in gaps)}")
    if result["profile"]:
        print("\nwhat the main thread ran in each gap over 100 ms (innermost frame first):")
        print("\n".join(result["profile"]))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["gaps"] else 1)
