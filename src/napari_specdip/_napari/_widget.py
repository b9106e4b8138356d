"""The restore widget: pick an image and a task, press Run, watch, keep the result.

Threading contract (see docs/architecture.md): the run's parameters and data are
snapshotted on the main thread with :func:`napari_specdip.plan_restore` (a
``ValueError`` there is shown to the user and nothing else happens); the
worker thread only iterates ``job.run()`` and yields the engine's reports; every
layer and chart change happens in the worker's signal handlers, on the main
thread. Stop sets a ``threading.Event``-like interrupt: the engine then returns
the result so far (``stop_reason == "stopped"``), which is added as a layer.

torch is imported when the widget is built (device list), not when this module
is imported; matplotlib when the charts are built.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
    Widget,
)
from qtpy.QtWidgets import QWidget

from napari_specdip._napari import _planning
from napari_specdip._napari._sample_data import SAMPLE_KEY
from napari_specdip.core.params import (
    NETWORKS,
    OUTPUTS,
    SR_FACTORS,
    STOP_RULES,
    TASKS,
    UPSAMPLERS,
    RestoreParameters,
)

if TYPE_CHECKING:
    import napari

    from napari_specdip._napari._charts import ChartsWidget
    from napari_specdip.core.engine import RestoreJob
    from napari_specdip.core.results import RestoreResult, StepReport

CHARTS_NAME = "SpecDIP charts"
PROGRESS_MS = 0.05  # seconds between two progress-bar / label updates
_ERROR_STYLE = "color: #e0524a;"
_INFO_STYLE = ""


def default_num_threads() -> int:
    """CPU threads for a run: all cores but one, so that the GUI keeps one."""
    return max(1, (os.cpu_count() or 1) - 1)


class _Interrupt:
    """Stop request for the engine that never fires before a plane's first step.

    The engine checks ``is_set()`` at the top of every iteration; arming it only
    after the first report guarantees that a stopped run always has a result.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.armed = threading.Event()

    def is_set(self) -> bool:
        return self.requested.is_set() and self.armed.is_set()


def run_jobs(jobs: list[RestoreJob], interrupt: _Interrupt
             ) -> Generator[tuple[int, StepReport], None, list[RestoreResult]]:
    """Worker body: run the jobs one after the other, yielding ``(job index, report)``.

    Runs on the worker thread and touches no napari object. Returns the
    results of the jobs that ran (a stop skips the remaining ones).
    """
    results: list[RestoreResult] = []
    for k, job in enumerate(jobs):
        if k and interrupt.requested.is_set():
            break
        interrupt.armed.clear()
        gen = job.run()
        while True:
            try:
                report = next(gen)
            except StopIteration as done:
                results.append(done.value)
                break
            interrupt.armed.set()
            yield k, report
    return results


class RestoreWidget(Container[Widget]):
    """Restore an image layer with the spectral-bias-controlled Deep Image Prior."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self._viewer = napari_viewer
        self._alive = True
        self._loading = False
        self._plan: _planning.RunPlan | None = None
        self._worker: Any = None
        self._interrupt: _Interrupt | None = None
        self._progress: Any = None
        self._preview_layer: Any = None
        self._preview_data: np.ndarray | None = None
        self._plane = -1
        self._queue: list[RestoreJob] = []
        self._done = 0
        self._in_progress_update = False
        self._last_ui = 0.0
        self._expected_device = ""
        self.last_output: Any = None  # the layer added by the last run
        self.last_error = ""

        # ---------------------------------------------------------------- inputs
        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True,
                              tooltip="The image layer to restore (never modified).")
        self.task = ComboBox(label="task", choices=list(TASKS), value="denoise",
                             tooltip="Loads the paper's defaults for the task.")
        self.mask = ComboBox(label="mask", choices=self._mask_choices, nullable=True,
                             tooltip="Inpainting: Labels, Shapes or Image layer; nonzero/inside "
                                     "marks the pixels to fill. Must be aligned with the image.")
        self.factor = ComboBox(label="factor", choices=list(SR_FACTORS), value=4,
                               tooltip="Super-resolution factor.")
        self.gain = FloatSpinBox(label="gain", value=1.0, min=0.0, max=10.0, step=0.1,
                                 tooltip="Enhancement: out = I + gain (I - G).")
        self.reference = ComboBox(label="reference", choices=self._image_choices, nullable=True,
                                  tooltip="Optional clean image of the output's shape: adds "
                                          "PSNR/SSIM curves.")
        self.stack = ComboBox(label="stack", choices=self._stack_choices,
                              tooltip="Which planes of a Z/T stack to restore (slice by slice).")

        # ---------------------------------------------------------------- method
        self.lipschitz = FloatSpinBox(label="λ (Lipschitz)", min=0.1, max=10.0, step=0.05,
                                      tooltip="Bound on every layer's spectral norm: larger "
                                              "lets more high frequency through.")
        self.net_width = SpinBox(label="width", min=1, max=1024, step=8,
                             tooltip="Channels per layer (smaller is faster).")
        self.max_iterations = SpinBox(label="iterations", min=1, max=1_000_000, step=100,
                                      tooltip="Iteration cap.")
        self.stop = ComboBox(label="stop rule", choices=list(STOP_RULES),
                             tooltip="ratio: the paper's blur/sharpness rule; wmv: ES-WMV; "
                                     "none: run the cap.")
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.preview_every = SpinBox(label="preview every", value=50, min=0, max=100_000,
                                     tooltip="Update the preview layer every N iterations "
                                             "(0: no preview).")
        self.device = ComboBox(label="device", choices=self._device_choices,
                               tooltip="Where the run happens.")
        self.device_label = Label(label="", value="")

        # ---------------------------------------------------------------- advanced
        self.show_advanced = CheckBox(text="advanced options", value=False)
        self.upsampler = ComboBox(label="upsampler", choices=list(UPSAMPLERS))
        self.sigmas = LineEdit(label="Gaussian σ", tooltip="One sigma per level, coarse to fine.")
        self.learning_rate = FloatSpinBox(label="learning rate", min=1e-6, max=1.0, step=1e-4)
        self.network = ComboBox(label="network", choices=list(NETWORKS))
        self.output = ComboBox(label="output", choices=list(OUTPUTS),
                               tooltip="last iterate, moving average, or best (PSNR with a "
                                       "reference, else lowest ES-WMV variance).")
        self.stop_window = SpinBox(label="stop window", min=1, max=100_000,
                                   tooltip="Window n of the ratio rule, in iterations.")
        self.stop_epsilon = FloatSpinBox(label="stop ε", min=0.0, max=1e9, step=0.001)
        self.signal_every = SpinBox(label="signals every", min=1, max=1000,
                                    tooltip="Evaluate the spectral signals every k iterations.")
        self.backtrack = CheckBox(text="backtrack on divergence")
        self.advanced = Container(labels=True, widgets=[
            self.upsampler, self.sigmas, self.learning_rate, self.network, self.output,
            self.stop_window, self.stop_epsilon, self.signal_every, self.backtrack,
        ])
        self.advanced.margins = (0, 0, 0, 0)
        self.advanced.visible = False

        # ---------------------------------------------------------------- run
        self.run_button = PushButton(text="Run")
        self.status = Label(value="")

        self.extend([
            self.image, self.task, self.mask, self.factor, self.gain, self.reference, self.stack,
            self.lipschitz, self.net_width, self.max_iterations, self.stop, self.seed,
            self.preview_every, self.device, self.device_label, self.show_advanced,
            self.advanced, self.run_button, self.status,
        ])
        self._controls = [w for w in self if w not in (self.run_button, self.status,
                                                       self.device_label)]
        self.native.setMinimumWidth(300)
        self.status.native.setWordWrap(True)
        self.device_label.native.setWordWrap(True)

        self.task.changed.connect(self._on_task)
        self.image.changed.connect(self._on_image)
        self.upsampler.changed.connect(self._on_upsampler)
        self.device.changed.connect(self._update_device_label)
        self.show_advanced.changed.connect(self._on_advanced)
        self.run_button.changed.connect(self._on_run_clicked)
        self.native.destroyed.connect(self._on_destroyed)

        layers = self._viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered):
            event.connect(self._on_layers_changed)

        self._load_defaults("denoise")
        self._on_layers_changed()
        self._on_image()
        self._update_device_label()
        self._charts: ChartsWidget | None = None
        self.ensure_charts()

    # ================================================================== choices

    def _layers(self) -> list[Any]:
        return list(self._viewer.layers)

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._layers()
                if isinstance(layer, Image) and layer is not self._preview_layer
                and not str(layer.name).endswith("[specdip preview]")]

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image, Labels, Shapes

        return [(layer.name, layer) for layer in self._layers()
                if isinstance(layer, Labels | Shapes | Image)
                and not str(layer.name).endswith("[specdip preview]")]

    def _stack_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        info = self._current_info_shape()
        return _planning.stack_choices(info) if info is not None else []

    def _device_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from napari_specdip.core.devices import available_devices

        found = available_devices()
        auto = found[0][1] if found else "CPU"
        return [(f"Auto ({auto})", "auto")] + [(desc, dev) for dev, desc in found]

    def _current_info_shape(self) -> _planning.ImageInfo | None:
        """A cheap ImageInfo for choices (no data copy: shape only)."""
        layer = self.image.value
        if layer is None or getattr(layer, "multiscale", False):
            return None
        shape = tuple(layer.data.shape)
        labels = getattr(layer, "axis_labels", None)
        return _planning.ImageInfo(
            name=str(layer.name), data=np.broadcast_to(np.zeros((), np.uint8), shape),
            rgb=bool(layer.rgb), scale=tuple(layer.scale), translate=tuple(layer.translate),
            units=None, axis_labels=tuple(str(a) for a in labels) if labels is not None else None,
            contrast_limits=None, colormap=None, gamma=1.0)

    # ================================================================== events

    def _on_layers_changed(self, event: Any = None) -> None:
        if not self._alive:
            return
        self.reset_choices()
        if self.image.value is None:
            choices = self._image_choices()
            if choices:
                self.image.value = choices[0][1]
        elif getattr(event, "type", None) == "inserted" and not self._running:
            # a sample's mask/reference layer arriving after its image
            self._apply_hint(load_task=False, only=str(event.value.name))

    def _on_image(self, _value: Any = None) -> None:
        """New input: refresh the stack choices, and take a sample's hints."""
        self.stack.reset_choices()
        self.stack.visible = bool(self.stack.choices)
        if not self._running:
            self._apply_hint(load_task=True)

    def _apply_hint(self, *, load_task: bool, only: str | None = None) -> None:
        """Follow ``metadata["specdip_sample"]`` of the input: task, factor, mask, reference."""
        layer = self.image.value
        hint = layer.metadata.get(SAMPLE_KEY) if layer is not None else None
        if not isinstance(hint, dict):
            return
        if load_task:
            task = hint.get("task")
            if task in TASKS and task != self.task.value:
                self.task.value = task  # loads that task's defaults
            if hint.get("factor") in SR_FACTORS:
                self.factor.value = hint["factor"]
        by_name = {layer.name: layer for layer in self._layers()}
        for key, combo in (("mask", self.mask), ("reference", self.reference)):
            name = hint.get(key)
            if name in by_name and (only is None or only == name):
                combo.value = by_name[name]

    def _on_task(self, task: str) -> None:
        self._load_defaults(task)

    def _load_defaults(self, task: str) -> None:
        """Put the paper's defaults for ``task`` in the controls (seed, device and preview kept)."""
        p = RestoreParameters.for_task(task)
        self._loading = True
        try:
            self.lipschitz.value = p.lipschitz
            self.net_width.value = p.width
            self.max_iterations.value = p.max_iterations
            self.stop.value = p.stop
            self.upsampler.value = p.upsampler
            self.sigmas.value = ", ".join(f"{s:g}" for s in p.sigmas)
            self.learning_rate.value = p.learning_rate
            self.network.value = p.network
            self.output.value = p.output
            self.stop_window.value = p.stop_window
            self.stop_epsilon.value = p.stop_epsilon
            self.signal_every.value = p.signal_every
            self.backtrack.value = p.backtrack
            self.gain.value = p.gain
            if p.factor is not None:
                self.factor.value = p.factor
        finally:
            self._loading = False
        self.mask.visible = task == "inpaint"
        self.factor.visible = task == "super-resolve"
        self.gain.visible = task == "enhance"
        self._on_upsampler(self.upsampler.value)

    def _on_upsampler(self, upsampler: str) -> None:
        self.sigmas.visible = upsampler == "gaussian"
        if self._loading:
            return
        # the paper loosens lambda with Gaussian upsampling: follow it if untouched
        task = self.task.value
        plain = RestoreParameters.for_task(task).lipschitz
        gaussian = RestoreParameters.for_task(task, upsampler="gaussian").lipschitz
        current = float(self.lipschitz.value)
        if upsampler == "gaussian" and abs(current - plain) < 1e-9:
            self.lipschitz.value = gaussian
        elif upsampler != "gaussian" and abs(current - gaussian) < 1e-9:
            self.lipschitz.value = plain

    def _on_advanced(self, show: bool) -> None:
        self.advanced.visible = bool(show)

    def _update_device_label(self, _value: Any = None) -> None:
        from napari_specdip.core.devices import describe_device, resolve_device

        try:
            where = describe_device(resolve_device(self.device.value or "auto"))
        except ValueError as exc:
            self.device_label.value = f"unavailable: {exc}"
            return
        self._expected_device = where
        self.device_label.value = f"runs on: {where}"

    def _on_destroyed(self, *_: Any) -> None:
        self._alive = False
        if self._interrupt is not None:
            self._interrupt.requested.set()
            self._interrupt.armed.set()

    # ================================================================== charts

    @property
    def charts(self) -> ChartsWidget:
        """The charts widget (docked on demand)."""
        return self.ensure_charts()

    def ensure_charts(self) -> ChartsWidget:
        """Build the charts on first use and make sure they are docked and shown.

        One charts dock per window: a restore widget opened again reuses it.
        """
        from napari_specdip._napari._charts import ChartsWidget

        window = getattr(self._viewer, "window", None)
        try:
            docked = window.dock_widgets if window is not None else None
        except AttributeError:  # no Qt window (headless ViewerModel)
            docked = None
        if docked is not None and CHARTS_NAME in docked:
            # napari's proxies wrap anything from a module named napari*: unwrap
            existing = getattr(docked[CHARTS_NAME], "__wrapped__", docked[CHARTS_NAME])
            if isinstance(existing, ChartsWidget):
                self._charts = existing
        if self._charts is None:
            self._charts = ChartsWidget(self._viewer)
        if docked is None or window is None:
            return self._charts
        if CHARTS_NAME not in docked:
            window.add_dock_widget(self._charts, name=CHARTS_NAME, area="bottom",
                                   add_vertical_stretch=False)
        else:
            dock = self._charts.parent()
            if isinstance(dock, QWidget) and not dock.isVisible():
                dock.show()
        return self._charts

    # ================================================================== run

    @property
    def _running(self) -> bool:
        return self._worker is not None

    @property
    def is_running(self) -> bool:
        """True while a worker runs."""
        return self._running

    @property
    def worker(self) -> Any:
        """The running worker (None when idle)."""
        return self._worker

    def _on_run_clicked(self, _value: Any = None) -> None:
        if self._running:
            self.request_stop()
        else:
            self.start()

    def request_stop(self) -> None:
        """Ask the run to stop; the result so far becomes a layer."""
        if self._interrupt is not None:
            self._interrupt.requested.set()
            self.run_button.text = "Stopping…"
            self.run_button.enabled = False

    def _show_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.last_error = message
        self.status.value = message
        self.status.native.setStyleSheet(_ERROR_STYLE)
        show_error(f"SpecDIP: {message}")

    def _show_status(self, message: str) -> None:
        self.status.value = message
        self.status.native.setStyleSheet(_INFO_STYLE)

    def parameters(self) -> RestoreParameters:
        """The controls as a validated :class:`RestoreParameters` (ValueError if impossible)."""
        task = self.task.value
        try:
            sigmas = tuple(float(s) for s in str(self.sigmas.value).replace(";", ",").split(",")
                           if s.strip())
        except ValueError:
            raise ValueError(f"Gaussian σ must be numbers separated by commas, got "
                             f"{self.sigmas.value!r}") from None
        options: dict[str, Any] = {
            "lipschitz": float(self.lipschitz.value),
            "width": int(self.net_width.value),
            "max_iterations": int(self.max_iterations.value),
            "stop": self.stop.value,
            "seed": int(self.seed.value),
            "preview_every": int(self.preview_every.value),
            "upsampler": self.upsampler.value,
            "learning_rate": float(self.learning_rate.value),
            "network": self.network.value,
            "output": self.output.value,
            "stop_window": int(self.stop_window.value),
            "stop_epsilon": float(self.stop_epsilon.value),
            "signal_every": int(self.signal_every.value),
            "backtrack": bool(self.backtrack.value),
            "num_threads": default_num_threads(),
            "device": self._resolve_device(),
        }
        if sigmas:
            options["sigmas"] = sigmas
        if task == "super-resolve":
            options["factor"] = int(self.factor.value)
        if task == "enhance":
            options["gain"] = float(self.gain.value)
        try:
            return RestoreParameters.for_task(task, **options)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def _resolve_device(self) -> str:
        """The chosen device, or 'auto' with a notification when it is not available."""
        from napari.utils.notifications import show_warning

        from napari_specdip.core.devices import describe_device, resolve_device

        choice = self.device.value or "auto"
        try:
            device = resolve_device(choice)
        except ValueError as exc:
            device = resolve_device("auto")
            where = describe_device(device)
            show_warning(f"SpecDIP: {exc}; running on {where} instead")
            self._expected_device = where
            self.device_label.value = f"falls back to: {where}"
            return "auto"
        self._expected_device = describe_device(device)
        return choice

    def plan(self) -> _planning.RunPlan:
        """Snapshot the layers and controls into engine jobs (raises ValueError)."""
        from napari_specdip import plan_restore

        layer = self.image.value
        if layer is None:
            raise ValueError("choose an image layer to restore")
        params = self.parameters()
        info = _planning.image_info(layer)
        mode = self.stack.value if info.n_leading else None
        current = tuple([0] * info.n_leading)
        if info.n_leading:
            current = _planning.current_index(layer.world_to_data, self._viewer.dims.point,
                                              info.leading_shape)
        planes, out_leading = _planning.planes(info, mode, current)
        mask = None
        if params.task == "inpaint":
            if self.mask.value is None:
                raise ValueError("inpainting needs a mask layer (Labels, Shapes or Image): "
                                 "nonzero where pixels are to be filled")
            mask = _planning.mask_array(self.mask.value, info)
        scale = params.factor if params.task == "super-resolve" and params.factor else 1
        reference = None
        if self.reference.value is not None:
            reference = _planning.reference_array(self.reference.value, info, scale)
        interrupt = _Interrupt()
        jobs = []
        plane_ref_ndim = 3 if info.rgb else 2
        for plane in planes:
            plane_mask = None
            if mask is not None:
                plane_mask = mask if mask.ndim == 2 else mask[plane.source]
            plane_ref = None
            if reference is not None:
                plane_ref = reference if reference.ndim == plane_ref_ndim else reference[plane.source]
            where = f"slice {plane.source}: " if info.n_leading else ""
            try:
                jobs.append(plan_restore(
                    info.data[plane.source], params.task, mask=plane_mask,
                    channel_axis=-1 if info.rgb else None, reference=plane_ref,
                    parameters=params, interrupt=interrupt,
                ))
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from exc
        label = dict(_planning.stack_choices(info)) if info.n_leading else {}
        mode_label = next((k for k, v in label.items() if v == mode), "")
        plan = _planning.RunPlan(
            info=info, params=params, planes=planes, jobs=jobs, out_leading=out_leading,
            fixed_index=current, iterated=_planning.iterated_axes(mode, info.n_leading),
            mode_label=mode_label,
        )
        plan.extra["interrupt"] = interrupt
        return plan

    def start(self) -> Any:
        """Plan on this thread and start the worker; returns it (None when refused)."""
        if self._running:
            return self._worker
        try:
            plan = self.plan()
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        return self._launch(plan)

    def _launch(self, plan: _planning.RunPlan) -> Any:
        from napari.qt.threading import create_worker
        from napari.utils import progress

        self._plan = plan
        self._interrupt = plan.extra.pop("interrupt")
        self._plane = -1
        self._done = 0
        self._preview_layer = None
        self._preview_data = None
        self.last_output = None
        self.last_error = ""
        charts = self.ensure_charts()
        charts.reset(has_reference=self.reference.value is not None, title=self._plane_title(0))
        n = len(plan.jobs)
        self._progress = progress(total=plan.total_iterations,
                                  desc=f"SpecDIP {plan.task}" + (f" ({n} slices)" if n > 1 else ""))
        self._show_status(f"starting on {self._expected_device}…")
        # napari keeps every worker (its cancel callback) for the session: hand it a list
        # that is emptied at the end, so the data snapshots do not outlive the run
        self._queue = list(plan.jobs)
        worker = create_worker(
            run_jobs, self._queue, self._interrupt, _start_thread=False,
            _connect={"yielded": self._on_yielded, "returned": self._on_returned,
                      "errored": self._on_errored, "finished": self._on_finished},
        )
        self._worker = worker
        for widget in self._controls:
            widget.enabled = False
        self.run_button.text = "Stop"
        self.run_button.enabled = True
        worker.start()
        return worker

    def _plane_title(self, k: int) -> str:
        plan = self._plan
        if plan is None or len(plan.jobs) < 2:
            return ""
        return f"{plan.info.name}: slice {plan.planes[k].source} ({k + 1} of {len(plan.jobs)})"

    # ---------------------------------------------------------------- worker slots (main thread)

    def _on_yielded(self, item: tuple[int, StepReport]) -> None:
        # napari's progress bar and notifications process pending events, so any slot
        # may run nested inside another: each slot finishes its own state changes
        # first and only then calls into the progress bar (last).
        plan = self._plan
        if not self._alive or plan is None:
            return
        k, report = item
        charts = self.ensure_charts() if self._charts is None else self._charts
        if k != self._plane:
            self._plane = k
            if k:
                charts.reset(has_reference=charts.has_reference, title=self._plane_title(k))
            self._follow_plane(k)
        charts.add_report(report)
        if report.preview is not None:
            self._update_preview(k, report.preview)
        self._done = k * plan.params.max_iterations + report.iteration
        now = time.perf_counter()
        if now - self._last_ui >= PROGRESS_MS or report.iteration >= report.max_iterations:
            self._last_ui = now
            where = f"slice {k + 1}/{len(plan.jobs)}, " if len(plan.jobs) > 1 else ""
            self._show_status(f"{where}iteration {report.iteration}/{report.max_iterations}"
                              f" · loss {report.loss:.4g}")
            self._tick_progress()

    def _tick_progress(self) -> None:
        """Bring napari's progress bar to the iteration count (never re-entered)."""
        bar = self._progress
        if bar is None or self._in_progress_update:
            return
        self._in_progress_update = True
        try:
            bar.update(max(0, min(self._done, bar.total) - bar.n))
        finally:
            self._in_progress_update = False
        if self._progress is None:  # the run finished while the bar processed events
            bar.close()

    def _follow_plane(self, k: int) -> None:
        """Move the viewer's dims to the slice being restored, so the preview is in view."""
        plan = self._plan
        if plan is None or not plan.iterated:
            return
        dims = self._viewer.dims
        offset = dims.ndim - plan.info.ndim
        for axis, value in plan.world_point(plan.planes[k]).items():
            if 0 <= axis + offset < dims.ndim:
                dims.set_point(axis + offset, value)

    def _update_preview(self, k: int, preview: np.ndarray) -> None:
        plan = self._plan
        if plan is None:
            return
        layer = self._preview_layer
        if layer is not None and layer not in self._viewer.layers:
            return  # the user deleted the preview: stop previewing
        if plan.info.n_leading == 0:
            data = preview
        else:
            if self._preview_data is None:
                self._preview_data = np.zeros(plan.out_shape, dtype=preview.dtype)
            self._preview_data[plan.planes[k].target] = preview
            data = self._preview_data
        if layer is None:
            self._preview_layer = self._viewer.add_image(
                data, name=plan.preview_name(), **plan.placement(), **plan.display())
        elif data is self._preview_data:
            layer.refresh()
        else:
            layer.data = data

    def _on_returned(self, results: list[RestoreResult]) -> None:
        if not self._alive or self._plan is None:
            return
        from napari.utils.notifications import show_info, show_warning

        plan = self._plan
        if not results:
            return
        image, metadata = _planning.assemble(plan, results)
        self.last_output = self._viewer.add_image(
            image, name=plan.output_name(), metadata=metadata, **plan.placement(),
            **plan.display())
        last = results[-1]
        charts = self._charts
        if charts is not None:
            charts.mark_stop(last.stop_iteration if last.stop_reason != "stopped"
                             else last.iterations, last.stop_reason)
            charts.flush()
        self.device_label.value = f"ran on: {last.device}"
        requested = plan.params.device
        reasons = sorted({r.stop_reason for r in results})
        iterations = sum(r.iterations for r in results)
        elapsed = sum(r.elapsed for r in results)
        slices = f" over {len(results)} slices" if len(plan.jobs) > 1 else ""
        message = (f"{plan.output_name()}: {iterations} iterations{slices} in {elapsed:.1f} s "
                   f"on {last.device} (stop: {', '.join(reasons)})")
        self._show_status(message)
        # notifications process events: keep them last
        if requested not in ("auto", last.device) and not last.device.startswith(requested):
            show_warning(f"SpecDIP: asked for {requested}, ran on {last.device}")
        show_info(f"SpecDIP: {message}")

    def _on_errored(self, exc: BaseException) -> None:
        if not self._alive:
            return
        self._show_error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError | MemoryError)
                         else str(exc))

    def _on_finished(self) -> None:
        bar, self._progress = self._progress, None
        if bar is not None and not self._in_progress_update:
            bar.close()  # else _tick_progress closes it once its update returns
        self._worker = None
        self._interrupt = None
        self._plan = None  # drop the jobs (data snapshots) now
        self._queue.clear()
        self._preview_data = None
        if not self._alive:
            return
        layer = self._preview_layer
        self._preview_layer = None
        if layer is not None and layer in self._viewer.layers:
            self._viewer.layers.remove(layer)
        for widget in self._controls:
            widget.enabled = True
        self.run_button.text = "Run"
        self.run_button.enabled = True
        self.reset_choices()
