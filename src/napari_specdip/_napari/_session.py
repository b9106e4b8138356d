"""One run on the main thread: the worker, its progress, the live preview, the result.

A :class:`RunSession` is started by the restore widget but does not depend on it:
if the dock is closed mid-run the session stops the run, still adds the result
so far as a layer and says so (the widget is only a listener). Threading: the
plan (data snapshots) is made on the main thread; the worker thread only
iterates the jobs (:func:`run_jobs`); every layer, chart and label change happens
in the worker's signal handlers here, on the main thread.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from napari_specdip._napari import _planning
from napari_specdip._napari._eta import Progress
from napari_specdip._napari._help import toast
from napari_specdip.chart_panels import STOP_WORDS, stop_marks
from napari_specdip.core.results import CONSTANT, COPIED, NOTHING_TO_FILL

if TYPE_CHECKING:
    from napari_specdip._napari._charts import ChartsWidget
    from napari_specdip.core.results import RestoreResult, StepReport

#: seconds between two updates of the charts and the progress line, made together so
#: that they share one repaint of the window (dear on a software-rendered display,
#: where Qt composes the whole window, vispy canvas included, for any repaint)
UI_TICK_S = 1.0

# No napari progress bar (activity dock): its spinner repaints the whole window about
# 20 times a second and, in napari 0.9.2, keeps spinning after the bar is closed
# unless the activity dialog was opened; under a software-rendered display that took
# 70% of the main thread (benchmarks/ui_latency.py). The widget shows the progress,
# speed and time left itself.
#: seconds between two region-preview image updates (the first one is shown at once)
REGION_PREVIEW_S = 0.5


class Interrupt:
    """Stop request for the engine (``is_set()``); ``budget`` says the time budget fired."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.budget = threading.Event()

    def is_set(self) -> bool:
        return self.requested.is_set()


def run_jobs(jobs: Sequence[_planning.Job], interrupt: Interrupt,
             budget_s: float | None = None, warm_start: bool = False, name: str = "image"
             ) -> Generator[tuple[int, StepReport | _planning.SliceCheck], None,
                            list[RestoreResult]]:
    """Worker body: run the jobs one after the other, yielding ``(job index, report)``.

    Runs on the worker thread and touches no napari object. A stack's slices are
    all read and checked first (:func:`_planning.check_slices`, reported as
    ``(-1, SliceCheck)``: a bad slice stops the run before any work, named in the
    error; ``name`` is the image's). A time budget stops the run through the
    interrupt (the engine then returns its result so far). ``warm_start``: each job
    starts from the network weights the job before ended with (planned with
    ``keep_state=True``); the weights are handed on, not kept. Returns the results
    of the jobs that ran (a stop skips the remaining ones).
    """
    results: list[RestoreResult] = []
    checking = _planning.check_slices(jobs, name)
    while True:
        try:
            progress = next(checking)
        except StopIteration as done:
            checked: list[_planning.Checked] = done.value
            break
        if interrupt.requested.is_set():  # stopped while checking
            return results
        yield -1, progress
    checked = _planning.with_camera(checked)
    handed: dict[str, Any] | None = None  # the last fit's weights (over constant slices too)
    for k, job in enumerate(checked):
        if k and interrupt.requested.is_set():
            break
        if isinstance(job, _planning.LazyJob):
            job = job.make()
        if warm_start and handed is not None and not isinstance(job, _planning.CopiedPlane):
            job, handed = dataclasses.replace(job, warm_start=handed), None
        gen = job.run()
        while True:
            try:
                report = next(gen)
            except StopIteration as done:
                result = done.value
                if result.state is not None:
                    handed, result.state = result.state, None
                results.append(result)
                break
            if budget_s is not None and report.elapsed >= budget_s:
                interrupt.budget.set()
                interrupt.requested.set()
            yield k, report
    return results


class RunListener(Protocol):
    """What the widget hears of a run."""

    def run_progress(self, session: RunSession, text: str) -> None: ...

    def run_result(self, session: RunSession, message: str, *, error: bool) -> None: ...

    def run_ended(self, session: RunSession) -> None: ...


class RunSession:
    """A run (the whole image) or a region preview, from start to result layer."""

    def __init__(self, viewer: Any, plan: _planning.RunPlan, *, charts: ChartsWidget | None,
                 listener: RunListener | None, budget_s: float | None = None,
                 region_layer: Any = None, source_layer: Any = None) -> None:
        self.viewer = viewer
        #: the input layer the plan was read from (by reference: it may be renamed)
        self.source_layer = source_layer
        self.plan: _planning.RunPlan | None = plan
        self.charts = charts
        self.listener = listener
        self.budget_s = budget_s
        self.is_region = plan.region is not None
        interrupt = plan.extra.pop("interrupt", None)
        self.interrupt: Interrupt = interrupt if isinstance(interrupt, Interrupt) else Interrupt()
        self.progress = Progress(plan.params.max_iterations, len(plan.jobs), budget_s=budget_s)
        self.worker: Any = None
        self.output: Any = None  # the layer the run added (or updated, for a region)
        #: the engine's results the output was made of (set when the run returns)
        self.results: list[RestoreResult] = []
        self.message = ""
        self.error = ""
        self.detached = False
        self.stop_requested_by = ""
        self.preview_layer: Any = region_layer if self.is_region else None
        self._reused_region = region_layer is not None
        self._preview_data: _planning.PreviewStack | None = None
        self._plane = -1
        # a tiled run's charts show one tile at a time, on that tile's own iterations
        self._tile = -1
        self._tile_offset = 0
        self._last_ui = 0.0
        self._last_region_preview = -1.0
        self._queue: list[_planning.Job] = []
        self._steps: deque[Callable[[], None]] = deque()
        self._pumping = False

    # ------------------------------------------------------------------ control

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self) -> Any:
        from napari.qt.threading import create_worker

        plan = self.plan
        assert plan is not None
        if self.charts is not None:
            self.charts.reset(has_reference=any(j.reference is not None for j in plan.jobs),
                              title=plan.plane_title(0), window=plan.params.stop_window,
                              every=plan.params.signal_every, rule=plan.params.stop)
        # napari keeps every worker (its cancel callback) for the session: hand it a list
        # that is emptied at the end, so the data snapshots do not outlive the run
        self._queue = list(plan.jobs)
        self._add_preview_layer()
        self.worker = create_worker(
            run_jobs, self._queue, self.interrupt, self.budget_s, plan.warm_start,
            plan.info.name,
            _start_thread=False,
            _connect={"yielded": self._on_yielded, "returned": self._on_returned,
                      "errored": self._on_errored, "finished": self._on_finished},
        )
        self.worker.start()
        return self.worker

    def _add_preview_layer(self) -> None:
        """The preview layer, showing the input until the first preview.

        Made here, at the click, not at the first preview: napari's ``add_image``
        (layer list events, layer controls, vispy visuals) blocked the main thread for
        110-215 ms on a software-rendered display, longer than any of the run's own
        updates (benchmarks/ui_latency.py).
        """
        plan = self.plan
        if plan is None or self.preview_layer is not None or plan.params.preview_every <= 0:
            return  # (a region preview may reuse the last region's layer)
        stack = plan.preview_canvas()
        self._preview_data = stack
        canvas = stack if stack is not None else np.array(plan.filler(plan.planes[0]), copy=True)
        name = plan.region_name() if self.is_region else plan.preview_name()
        self.preview_layer = self.viewer.add_image(
            canvas, name=name, **plan.placement(), **plan.display())

    def request_stop(self, by: str = "you") -> None:
        """Ask the run to stop; the result so far becomes a layer."""
        if not self.stop_requested_by:
            self.stop_requested_by = by
        self.interrupt.requested.set()

    def detach(self) -> None:
        """The widget is gone: stop the run, keep the result so far, tell the user."""
        self.listener = None
        self.detached = True
        self.request_stop("closing the SpecDIP dock")

    # ------------------------------------------------------------------ worker slots

    def _on_yielded(self, item: tuple[int, StepReport | _planning.SliceCheck]) -> None:
        plan = self.plan
        if plan is None:
            return
        k, report = item
        if isinstance(report, _planning.SliceCheck):
            self._checking(report)
            return
        try:
            self._chart_report(plan, k, report)
        except RuntimeError:  # the charts dock was deleted with the viewer (Qt objects gone)
            self.charts = None
        self.progress.update(k, report.iteration, report.elapsed, cap=report.max_iterations,
                             tile=report.tile, tiles=report.tiles)
        if report.preview is not None:
            self._update_preview(k, report.preview)
        now = time.perf_counter()
        if (now - self._last_ui >= UI_TICK_S or report.iteration >= report.max_iterations
                or report.iteration <= 2):
            self._last_ui = now
            if self.charts is not None:
                try:
                    self.charts.redraw()
                except RuntimeError:
                    self.charts = None
            if self.listener is not None:
                self.listener.run_progress(self, self.progress.text())

    def _checking(self, check: _planning.SliceCheck) -> None:
        now = time.perf_counter()
        if self.listener is not None and (now - self._last_ui >= UI_TICK_S
                                          or check.done == check.total):
            self._last_ui = now
            self.listener.run_progress(
                self, f"reading and checking the slices: {check.done} of {check.total}…")

    def _chart_report(self, plan: _planning.RunPlan, k: int, report: StepReport) -> None:
        """A new plane or tile resets the charts (and the dims follow the plane); every
        report adds its signals."""
        charts = self.charts
        if k != self._plane:
            self._plane = k
            self._tile = -1
            if k and charts is not None:
                charts.reset(has_reference=charts.has_reference, title=plan.plane_title(k))
            self._follow_plane(k)
        if report.tiles > 1 and report.tile != self._tile:
            self._tile, self._tile_offset = report.tile, report.iteration - 1
            if charts is not None:
                charts.reset(has_reference=charts.has_reference,
                             title=_tile_title(plan.plane_title(k), report.tile, report.tiles))
        if charts is not None:
            charts.add_report(report if report.tiles <= 1 else dataclasses.replace(
                report, iteration=report.iteration - self._tile_offset), schedule=False)

    def _follow_plane(self, k: int) -> None:
        """Move the viewer's dims to the slice being restored, so the preview is in view."""
        plan = self.plan
        if plan is None or not plan.iterated:
            return
        dims = self.viewer.dims
        offset = dims.ndim - plan.info.ndim
        for axis, value in plan.world_point(plan.planes[k]).items():
            if 0 <= axis + offset < dims.ndim:
                dims.set_point(axis + offset, value)

    def _update_preview(self, k: int, preview: np.ndarray) -> None:
        plan = self.plan
        if plan is None:
            return
        if self.is_region:
            now = time.perf_counter()
            since = now - self._last_region_preview
            if self._last_region_preview >= 0 and since < REGION_PREVIEW_S:
                return
            self._last_region_preview = now
        layer = self.preview_layer
        if layer is not None and layer not in self.viewer.layers:
            if self.is_region:
                self.preview_layer = layer = None  # deleted: make a new one
            else:
                return  # the user deleted the preview: stop previewing
        data: np.ndarray | _planning.PreviewStack
        if plan.info.n_leading == 0:
            data = preview
        else:
            if self._preview_data is None:
                self._preview_data = plan.preview_canvas()
            assert self._preview_data is not None
            self._preview_data[plan.planes[k].target] = preview
            data = self._preview_data
        name = plan.region_name() if self.is_region else plan.preview_name()
        if layer is None:
            self.preview_layer = self.viewer.add_image(
                data, name=name, **plan.placement(), **plan.display())
        elif layer.data is data:
            layer.refresh()
        else:
            if self.is_region and self._reused_region:
                self._reused_region = False
                self._place(layer, plan, name)
            layer.data = data

    @staticmethod
    def _place(layer: Any, plan: _planning.RunPlan, name: str) -> None:
        """Name and place a preview layer as the plan's output."""
        where = plan.placement()
        layer.name = name
        layer.scale = where["scale"]
        layer.translate = where["translate"]

    # The end of a run is handled in steps, one per pass of Qt's event loop (charts,
    # result layer, status and toast, controls), so that the window repaints and
    # answers input between them instead of blocking for their sum.

    def _later(self, step: Callable[[], None]) -> None:
        self._steps.append(step)
        if not self._pumping:
            self._pumping = True
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self._pump)

    def _pump(self) -> None:
        step = self._steps.popleft()
        try:
            step()
        finally:
            if self._steps:
                from qtpy.QtCore import QTimer

                QTimer.singleShot(0, self._pump)
            else:
                self._pumping = False

    def _on_returned(self, results: list[RestoreResult]) -> None:
        self._later(lambda: self._mark_stop(results))
        self._later(lambda: self._show_result(results))

    def _mark_stop(self, results: list[RestoreResult]) -> None:
        last = results[-1] if results else None
        charts = self.charts
        if charts is not None and last is not None and self.plan is not None:
            # a tiled result: the charts show its last tile, on that tile's iterations
            shown = last.parameters.get("tiles") or [{
                "stop_reason": last.stop_reason, "stop_iteration": last.stop_iteration,
                "iterations": last.iterations}]
            tile = shown[-1]
            reason = "stopped" if last.stop_reason == "stopped" else tile["stop_reason"]
            # a capped run may hold an earlier iteration: the stop and the result apart
            stop, result = stop_marks(tile["iterations"], tile["stop_iteration"], reason)
            try:
                charts.mark_stop(stop, self._reason(reason), result)
                charts.flush()
            except RuntimeError:  # the charts dock was deleted with the viewer
                self.charts = None

    def _show_result(self, results: list[RestoreResult]) -> None:
        plan = self.plan
        if plan is None:
            return
        kept = _planning.useful_results(results)
        if all(r.stop_reason in COPIED for r in kept):
            kept = []  # only slices copied through: the input again
        last = results[-1] if results else None
        if not kept:
            done = last.iterations if last is not None else 0
            self.message = (f"Stopped after {done} iteration{'s' * (done != 1)}, before a "
                            f"useful result: no layer was added.")
            self._finish(self.message, toast_text="stopped before a useful result")
            return
        image, metadata = _planning.assemble(plan, kept)
        name = plan.result_name(kept)
        # the preview layer becomes the result (no layer is removed, none flickers)
        layer = self.preview_layer
        if layer is None or layer not in self.viewer.layers:
            layer = self.viewer.add_image(image, name=name, metadata=metadata,
                                          **plan.placement(), **plan.display())
        else:
            if self._reused_region:
                self._reused_region = False
            self._place(layer, plan, name)
            layer.data = image
            layer.metadata = metadata
        self.output = layer
        self.results = kept
        self.preview_layer = None
        # next, before the run's end (already queued: it clears the results)
        self._steps.appendleft(lambda: self._report_result(plan, kept))

    def _report_result(self, plan: _planning.RunPlan, kept: list[RestoreResult]) -> None:
        from napari.utils.notifications import show_info, show_warning

        # napari renames a layer whose name is taken ("... [1]"): say the one it has
        name = self.output.name if self.output is not None else plan.result_name(kept)
        restored = [r for r in kept if r.stop_reason not in COPIED]
        reasons = sorted({self._words(r.stop_reason) for r in restored})
        iterations = sum(r.iterations for r in restored)
        elapsed = sum(r.elapsed for r in restored)
        slices = (f" over {len(restored)} slice{'s' * (len(restored) != 1)}"
                  if len(plan.jobs) > 1 else "")
        device = restored[-1].device if restored else "none"
        what = "Region preview" if self.is_region else f"{name!r}"
        message = (f"{what}: {iterations} iterations{slices} in {elapsed:.1f} s on {device}; "
                   f"stop: {', '.join(reasons) or 'none'}.")
        for reason, why in ((CONSTANT, "constant"),
                            (NOTHING_TO_FILL, "no pixel to fill")):
            copied = sum(r.stop_reason == reason for r in kept)
            if copied:
                message += (f" {copied} slice{'s were' if copied > 1 else ' was'} copied "
                            f"through ({why}): nothing to restore there.")
        # a slice stopped too early to keep was dropped: say where the stop came
        if (len(kept) < len(plan.jobs) and self.stop_requested_by
                and not any(r.stop_reason == "stopped" for r in kept)):
            who = self._reason("stopped")
            message += (f" {'Stopped by you' if who == 'stopped' else who.capitalize()} in "
                        f"slice {len(kept) + 1} of {len(plan.jobs)}: the "
                        "slices not finished show the input.")
        p = plan.params
        # (tile="auto" fits a small image whole by design: nothing to say)
        if p.tile not in (0, "auto") and restored and not any(
                r.parameters.get("tiles") for r in restored):
            message += (f" Fitted whole: the image is no larger than a tile ({p.tile} px "
                        f"plus {p.tile_overlap} px of overlap on each side).")
        if len(kept) == 1 and kept[0].stop_iteration < kept[0].iterations:
            # the auto and wmv rules return the output of their minimum, not the last one
            message += f" The result is the output of iteration {kept[0].stop_iteration}."
        if self.is_region and self.interrupt.budget.is_set():
            message += (f" A preview stops at its time budget ({self.budget_s:g} s); Run "
                        "restores the whole image with the same settings.")
        if self.detached:
            message = f"The dock was closed during the run: it stopped; {message}"
        self.message = message
        requested = plan.params.device
        if restored and requested not in ("auto", device) and not device.startswith(requested):
            show_warning(toast(f"asked for {requested}, ran on {device}"))
        short = ("dock closed: run stopped, result kept" if self.detached
                 else "region preview done" if self.is_region else f"done: {name}")
        self._finish(message, toast_text=short, info=show_info)

    def _words(self, reason: str) -> str:
        """A stop reason for the status line."""
        if reason == "holdout":
            return "the error estimated from the held-out pixels at its minimum"
        if reason == "stopped":
            return self._reason(reason)
        return STOP_WORDS.get(reason, reason)

    def _reason(self, reason: str) -> str:
        if reason == "stopped" and self.interrupt.budget.is_set():
            return "time budget"
        if reason == "stopped" and self.stop_requested_by and self.stop_requested_by != "you":
            return f"stopped by {self.stop_requested_by}"
        return reason

    def _finish(self, message: str, *, toast_text: str, info: Any = None) -> None:
        if self.listener is not None:
            self.listener.run_result(self, message, error=False)
        if info is not None:
            info(toast(toast_text))  # notifications process pending events: keep them last
        elif self.detached:
            from napari.utils.notifications import show_info

            show_info(toast(toast_text))

    def _on_errored(self, exc: BaseException) -> None:
        self._later(lambda: self._report_error(exc))

    def _report_error(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        message = (str(exc) if isinstance(exc, ValueError | MemoryError)
                   else f"{type(exc).__name__}: {exc}")
        self.error = message
        if self.listener is not None:
            self.listener.run_result(self, message, error=True)
        show_error(toast("the run failed: " + ("out of memory" if isinstance(exc, MemoryError)
                                              else "see the Restore panel")))

    def _on_finished(self) -> None:
        self._later(self._finished)

    def _finished(self) -> None:
        self.worker = None
        self.plan = None  # drop the jobs (data snapshots) now
        self.results = []  # and the results' arrays (the layers hold what is needed)
        self._queue.clear()
        self._preview_data = None
        # a preview that did not become a result (error, nothing useful) goes, unless it
        # is a region preview of an earlier run that this one was to replace
        layer, self.preview_layer = self.preview_layer, None
        if layer is not None and not self._reused_region and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        listener = self.listener
        if listener is not None:
            listener.run_ended(self)


def _tile_title(plane: str, tile: int, tiles: int) -> str:
    """The charts' title during a tiled run, e.g. ``"z = 2 (3 of 5), tile 4 of 9"``."""
    where = f"tile {tile + 1} of {tiles}"
    return f"{plane}, {where}" if plane else where
