"""The restore widget: pick an image and a task, preview a region, Run, watch, save.

Sections, top to bottom: a header (what this does, link to the documentation),
*Input* (image, task and what the task needs), *Method* (the settings that
matter), *Advanced* (folded), *Run* (Run/Stop, Preview region, progress with
time left, status), *Result* (save with the run record, before/after).

Threading contract (see docs/architecture.md): the run's parameters and data are
snapshotted on the main thread (:meth:`RestoreWidget.plan`; a ``ValueError``
there is shown and nothing else happens); a :class:`~._session.RunSession` runs
the worker and makes every layer and chart change in its signal handlers, on the
main thread. Stop keeps the result so far. Closing the dock stops the run and
still keeps the result.

torch is imported when the widget is built (device list), not when this module
is imported; pyqtgraph when the charts are built.
"""

from __future__ import annotations

import os
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
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QLabel, QMainWindow, QSizePolicy, QWidget

from napari_specdip._napari import _planning, _region
from napari_specdip._napari._help import (
    HEADER,
    TOOLTIPS,
    docs_url,
    format_number,
    parse_number,
    toast,
)
from napari_specdip._napari._sample_data import SAMPLE_KEY
from napari_specdip._napari._session import Interrupt, RunSession, run_jobs
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

__all__ = ["RestoreWidget", "run_jobs", "default_num_threads", "CHARTS_NAME"]

CHARTS_NAME = "SpecDIP charts"
_ERROR_STYLE = "color: #e0524a;"
_INFO_STYLE = ""
_PREVIEW_SUFFIXES = ("[specdip preview]", "[specdip region preview]")
#: the settings a task sets: control attribute -> RestoreParameters field
_TASK_FIELDS = {
    "lipschitz": "lipschitz", "net_width": "width", "max_iterations": "max_iterations",
    "stop": "stop", "upsampler": "upsampler", "sigmas": "sigmas",
    "learning_rate": "learning_rate", "network": "network", "output": "output",
    "stop_window": "stop_window", "stop_epsilon": "stop_epsilon",
    "signal_every": "signal_every", "backtrack": "backtrack", "gain": "gain",
}
_FIELD_WORDS = {"lipschitz": "λ", "width": "width", "max_iterations": "iterations",
                "stop": "stop rule", "upsampler": "upsampler", "sigmas": "σ",
                "learning_rate": "learning rate", "network": "network", "output": "output",
                "stop_window": "stop window", "stop_epsilon": "stop ε",
                "signal_every": "signals every", "backtrack": "backtrack", "gain": "gain"}


def default_num_threads() -> int:
    """CPU threads for a run: all cores but one, so that the GUI keeps one."""
    return max(1, (os.cpu_count() or 1) - 1)


class _FitHeight(QObject):
    """Keeps a word-wrapped label tall enough for all of its lines.

    Inside napari's scrolling dock a wrapped ``QLabel`` is given the height of its
    first layout, and loses its first and last lines when the text grows; this
    sets its minimum height from ``heightForWidth`` at every resize and change.
    """

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:  # Qt API name
        if isinstance(obj, QLabel) and event is not None and event.type() in (
                QEvent.Type.Resize, QEvent.Type.Show):
            fit_label(obj)
        return False


class _DockWatch(QObject):
    """Tells the widget when it is hidden, to check whether its dock was closed.

    napari's close button takes the widget out of the window without deleting it
    (no ``destroyed`` signal): its parent changes and it is hidden, which this catches.
    """

    def __init__(self, widget: RestoreWidget) -> None:
        super().__init__()
        self._widget = widget

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:  # Qt API name
        if event is not None and event.type() in (QEvent.Type.Hide, QEvent.Type.ParentChange):
            QTimer.singleShot(0, self._widget._check_docked)
        elif event is not None and event.type() == QEvent.Type.Show:
            self._widget._unify_labels()  # napari's style sheet applies once docked
        return False


def fit_label(label: QLabel) -> None:
    width = label.width() if label.width() > 10 else label.sizeHint().width()
    need = label.heightForWidth(width) if label.wordWrap() else label.sizeHint().height()
    if need > 0 and label.minimumHeight() != need:
        label.setMinimumHeight(need)


def _section_title(text: str) -> Label:
    title = Label(value=text)
    font = title.native.font()
    font.setBold(True)
    title.native.setFont(font)
    return title


class RestoreWidget(Container[Widget]):
    """Restore an image layer with the spectral-bias-controlled Deep Image Prior."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._alive = True
        self._loading = False
        self._session: RunSession | None = None
        self._region_layer: Any = None
        self._expected_device = ""
        self._fitter = _FitHeight()
        self.last_output: Any = None  # the layer added by the last run
        self.last_error = ""
        self.last_saved: list[str] = []
        self._task_loaded = "denoise"
        self.defaults_message = ""
        tip = TOOLTIPS

        # ---------------------------------------------------------------- header
        self.header = Label(value="")
        self.header.native.setTextFormat(Qt.TextFormat.RichText)
        self.header.native.setOpenExternalLinks(True)
        self.header.native.setWordWrap(True)
        self._on_theme()

        # ---------------------------------------------------------------- input
        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True,
                              tooltip=tip["image"])
        self.task = ComboBox(label="task", choices=list(TASKS), value="denoise",
                             tooltip=tip["task"])
        self.defaults_note = Label(value="")
        self.mask = ComboBox(label="mask", choices=self._mask_choices, nullable=True,
                             tooltip=tip["mask"])
        self.factor = ComboBox(label="factor", choices=list(SR_FACTORS), value=4,
                               tooltip=tip["factor"])
        self.gain = FloatSpinBox(label="gain", value=1.0, min=0.0, max=10.0, step=0.1,
                                 tooltip=tip["gain"])
        self.reference = ComboBox(label="reference", choices=self._image_choices,
                                  nullable=True, tooltip=tip["reference"])
        self.stack = ComboBox(label="stack", choices=self._stack_choices, tooltip=tip["stack"])
        self.input_section = Container(labels=True, widgets=[
            self.image, self.task, self.mask, self.factor, self.gain, self.reference,
            self.stack])

        # ---------------------------------------------------------------- method
        self.lipschitz = FloatSpinBox(label="λ (Lipschitz)", min=0.1, max=10.0, step=0.05,
                                      tooltip=tip["lipschitz"])
        self.net_width = SpinBox(label="width", min=1, max=1024, step=8,
                                 tooltip=tip["net_width"])
        self.max_iterations = SpinBox(label="max iterations", min=1, max=1_000_000, step=100,
                                      tooltip=tip["max_iterations"])
        self.stop = ComboBox(label="stop rule", choices=list(STOP_RULES), tooltip=tip["stop"])
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1, tooltip=tip["seed"])
        self.preview_every = SpinBox(label="preview every", value=50, min=0, max=100_000,
                                     tooltip=tip["preview_every"])
        self.device = ComboBox(label="device", choices=self._device_choices,
                               tooltip=tip["device"])
        self.device_label = Label(value="")
        self.method_section = Container(labels=True, widgets=[
            *self._preset_controls(), self.lipschitz, self.net_width, self.max_iterations,
            self.stop, self.seed, self.preview_every, self.device])

        # ---------------------------------------------------------------- advanced
        self.show_advanced = CheckBox(text="Show advanced options", value=False,
                                      tooltip=tip["show_advanced"])
        self.upsampler = ComboBox(label="upsampler", choices=list(UPSAMPLERS),
                                  tooltip=tip["upsampler"])
        self.sigmas = LineEdit(label="Gaussian σ", tooltip=tip["sigmas"])
        self.learning_rate = LineEdit(label="learning rate", tooltip=tip["learning_rate"])
        self.network = ComboBox(label="network", choices=list(NETWORKS), tooltip=tip["network"])
        self.output = ComboBox(label="output", choices=list(OUTPUTS), tooltip=tip["output"])
        self.stop_window = SpinBox(label="stop window", min=1, max=100_000,
                                   tooltip=tip["stop_window"])
        self.stop_epsilon = LineEdit(label="stop ε", tooltip=tip["stop_epsilon"])
        self.signal_every = SpinBox(label="signals every", min=1, max=1000,
                                    tooltip=tip["signal_every"])
        self.backtrack = CheckBox(text="backtrack on divergence", tooltip=tip["backtrack"])
        self.advanced = Container(labels=True, widgets=[
            self.upsampler, self.sigmas, self.learning_rate, self.network, self.output,
            self.stop_window, self.stop_epsilon, self.signal_every, self.backtrack,
        ])
        self.advanced.visible = False

        # ---------------------------------------------------------------- run
        self.run_button = PushButton(text="Run", tooltip=tip["run_button"])
        self.preview_button = PushButton(text="Preview region", tooltip=tip["preview_button"])
        self.region = ComboBox(label="region", choices=self._region_choices,
                               tooltip=tip["region"])
        self.eta_label = Label(value="")
        self.status = Label(value="")
        self.run_section = Container(labels=True, widgets=[self.region])
        self.run_buttons = Container(layout="horizontal", labels=False,
                                     widgets=[self.run_button, self.preview_button])

        # ---------------------------------------------------------------- result
        self.save_button = PushButton(text="Save result…", tooltip=tip["save_button"])
        self.compare_button = PushButton(text="Show input", tooltip=tip["compare_button"])
        self.side_by_side = CheckBox(text="side by side", tooltip=tip["side_by_side"])
        self.result_row = Container(layout="horizontal", labels=False, widgets=[
            self.save_button, self.compare_button, self.side_by_side])

        noise = self._noise_model_section()
        self.extend([
            self.header,
            _section_title("Input"), self.input_section, self.defaults_note,
            *([noise] if noise is not None else []),
            _section_title("Method"), self.method_section, self.device_label,
            self.show_advanced, self.advanced,
            _section_title("Run"), self.run_section, self.run_buttons, self.eta_label,
            self.status,
            _section_title("Result"), self.result_row,
        ])
        for section in (self.input_section, self.method_section, self.advanced,
                        self.run_section, self.run_buttons, self.result_row):
            section.margins = (0, 0, 0, 0)
        self._unify_labels()
        self._controls: list[Widget] = [
            *self.input_section, *self.method_section, self.show_advanced, *self.advanced,
            self.region]
        self.native.setMinimumWidth(340)
        for label in (self.header, self.defaults_note, self.device_label, self.eta_label,
                      self.status):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored,
                                       QSizePolicy.Policy.MinimumExpanding)
            label.native.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse
                | Qt.TextInteractionFlag.LinksAccessibleByMouse)
            label.native.installEventFilter(self._fitter)
        for combo in (self.upsampler, self.network, self.output, self.stop, self.task):
            combo.native.setMinimumContentsLength(9)
        self.eta_label.visible = False
        self.defaults_note.visible = False
        self.native.setObjectName("specdip-restore")

        self.task.changed.connect(self._on_task)
        self.image.changed.connect(self._on_image)
        self.upsampler.changed.connect(self._on_upsampler)
        self.stop.changed.connect(self._on_stop_rule)
        self.device.changed.connect(self._update_device_label)
        self.show_advanced.changed.connect(self._on_advanced)
        self.run_button.changed.connect(self._on_run_clicked)
        self.preview_button.changed.connect(self._on_preview_clicked)
        self.save_button.changed.connect(lambda _v=None: self.save_result())
        self.compare_button.changed.connect(lambda _v=None: self.toggle_compare())
        self.side_by_side.changed.connect(self.set_side_by_side)
        for control in (self.image, self.task, self.net_width, self.max_iterations, self.device,
                        self.factor):
            control.changed.connect(self._update_estimate)
        self.native.destroyed.connect(self._on_destroyed)
        self._watch = _DockWatch(self)
        self.native.installEventFilter(self._watch)

        self._viewer.events.theme.connect(self._on_theme)
        layers = self._viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.reordered):
            event.connect(self._on_layers_changed)
        layers.removed.connect(self._on_layer_removed)

        self._load_defaults("denoise")
        self._on_layers_changed()
        self._on_image()
        self._update_device_label()
        self._update_result_buttons()
        self._charts: ChartsWidget | None = None
        self.ensure_charts()

    def _on_theme(self, _event: Any = None) -> None:
        """The header's link in the theme's text colour (Qt's default blue is unreadable
        on napari's dark theme)."""
        from napari.utils.theme import get_theme

        if not self._alive:
            return
        try:
            color = get_theme(self._viewer.theme).text.as_hex()
        except (ValueError, KeyError, AttributeError):
            color = "#f0f1f2"
        self.header.native.setText(
            f'{HEADER} <a href="{docs_url()}" style="color:{color}">Documentation</a>')

    def _unify_labels(self) -> None:
        """One label column width for every section, so the fields line up."""
        rows = [w for s in (self.input_section, self.method_section, self.advanced,
                            self.run_section) for w in s]
        labeled = [r for r in (w._labeled_widget() for w in rows) if r is not None]
        if labeled:
            widest = max(max(r._label_widget.native.sizeHint().width(),
                             r._label_widget.native.fontMetrics().horizontalAdvance(
                                 str(r._label_widget.value)) + 12) for r in labeled)
            for r in labeled:
                r.label_width = widest

    # ================================================================== hooks

    def _preset_controls(self) -> list[Widget]:
        """Hook: controls put at the top of the Method section (a preset combo:
        quick / balanced / paper). None yet."""
        return []

    def _noise_model_section(self) -> Container[Widget] | None:
        """Hook: a section between Input and Method (a noise model). None yet."""
        return None

    def _update_estimate(self, _value: Any = None) -> None:
        """Hook: refresh an estimate-before-Run label (time, memory) when the image or
        settings change. Nothing to show yet."""

    def _add_extra_outputs(self, session: RunSession) -> list[Any]:
        """Hook: layers added next to the result (an uncertainty map). None yet."""
        return []

    # ================================================================== choices

    def _layers(self) -> list[Any]:
        return list(self._viewer.layers)

    def _is_ours(self, layer: Any) -> bool:
        """A live preview (not an input)."""
        session = self._session
        return (session is not None and layer is session.preview_layer) or \
            str(layer.name).endswith(_PREVIEW_SUFFIXES)

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [(layer.name, layer) for layer in self._layers()
                if isinstance(layer, Image) and not self._is_ours(layer)]

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image, Labels, Shapes

        return [(layer.name, layer) for layer in self._layers()
                if isinstance(layer, Labels | Shapes | Image) and not self._is_ours(layer)]

    def _region_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        return [("what the canvas shows", None)] + [
            (f"last rectangle of {layer.name}", layer) for layer in self._layers()
            if isinstance(layer, Shapes)]

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

    def default_image(self) -> Any:
        """The image a user most likely means: the selected image layer if it is shown,
        else the topmost visible one (never a hidden layer such as a sample's clean
        reference); None if no image is visible."""
        candidates = [layer for _, layer in self._image_choices()]
        active = self._viewer.layers.selection.active
        if active in candidates and active.visible:
            return active
        shown = [layer for layer in reversed(candidates) if layer.visible]
        fresh = [layer for layer in shown if "specdip" not in layer.metadata]
        return (fresh or shown or [None])[0]

    # ================================================================== events

    def _on_layers_changed(self, event: Any = None) -> None:
        if not self._alive:
            return
        before = self.image.value
        self.reset_choices()
        layers = self._layers()
        if before is None or before not in layers or self.image.value is not before:
            chosen = self.default_image()
            if chosen is not self.image.value:
                self.image.value = chosen
            if chosen is None and before is not None:
                self._show_status("No visible image layer left to restore: open an image or "
                                  "make one visible, then choose it above.")
        elif getattr(event, "type", None) == "inserted" and not self.is_running:
            # a sample's mask/reference layer arriving after its image
            self._apply_hint(load_task=False, only=str(event.value.name))
        self._update_result_buttons()

    def _on_layer_removed(self, event: Any = None) -> None:
        if getattr(event, "value", None) is self.last_output:
            self.last_output = None
            self._update_result_buttons()

    def _on_image(self, _value: Any = None) -> None:
        """New input: refresh the stack choices, and take a sample's hints."""
        self.stack.reset_choices()
        self.stack.visible = bool(self.stack.choices)
        if not self.is_running:
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
        self._load_defaults(task, previous=self._task_loaded)

    def _control_value(self, name: str) -> Any:
        """A control's value in RestoreParameters terms (None if it cannot be read)."""
        control = getattr(self, name)
        try:
            if name == "sigmas":
                return self._parse_sigmas()
            if name in ("learning_rate", "stop_epsilon"):
                return parse_number(control.value, control.label)
        except ValueError:
            return None
        return control.value

    def _set_control(self, name: str, value: Any) -> None:
        control = getattr(self, name)
        if name == "sigmas":
            control.value = ", ".join(f"{s:g}" for s in value)
        elif name in ("learning_rate", "stop_epsilon"):
            control.value = format_number(float(value))
        else:
            control.value = value

    def _load_defaults(self, task: str, previous: str | None = None) -> None:
        """Put the paper's defaults for ``task`` in the controls the user has not changed.

        A control whose value differs from the previous task's default was changed by
        the user and is kept; the note under the task says what was loaded and kept.
        Seed, device, preview and the inputs are never touched.
        """
        old: RestoreParameters | None = None
        new = RestoreParameters.for_task(task)
        if previous is not None:
            # a user's upsampler carries over, with the lambda the paper pairs with it
            base = RestoreParameters.for_task(previous)
            upsampler = self.upsampler.value
            if upsampler != base.upsampler:
                old = RestoreParameters.for_task(previous, upsampler=upsampler)
                new = RestoreParameters.for_task(task, upsampler=upsampler)
            else:
                old = base
        kept: list[str] = []
        loaded: list[str] = []
        self._loading = True
        try:
            for name, field in _TASK_FIELDS.items():
                value = getattr(new, field)
                if old is not None:
                    current = self._control_value(name)
                    before = getattr(old, field)
                    if not _same(current, before):
                        kept.append(_describe(field, current))
                        continue
                    if _same(current, value):
                        continue
                self._set_control(name, value)
                loaded.append(_describe(field, value))
            if new.factor is not None:
                self.factor.value = new.factor
        finally:
            self._loading = False
        self._task_loaded = task
        self.mask.visible = task == "inpaint"
        self.factor.visible = task == "super-resolve"
        self.gain.visible = task == "enhance"
        self._on_upsampler(self.upsampler.value)
        self._on_stop_rule(self.stop.value)
        if previous is None:
            return
        parts = [f"{task} defaults loaded" + (f": {', '.join(loaded)}" if loaded else
                                              " (same values)")]
        if kept:
            parts.append(f"kept your {', '.join(kept)}")
        self.defaults_message = "; ".join(parts) + "."
        self.defaults_note.value = self.defaults_message
        self.defaults_note.visible = True
        fit_label(self.defaults_note.native)

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

    def _on_stop_rule(self, rule: str) -> None:
        """Window and ε belong to the blur/sharpness rule: shown only when it is in use."""
        uses_ratio = rule in ("auto", "ratio")
        self.stop_window.visible = uses_ratio
        self.stop_epsilon.visible = uses_ratio

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
        """The dock is closed: a run goes on to its result (stopped now), then says so."""
        self._alive = False
        session = self._session
        if session is not None and session.running:
            session.detach()

    def _check_docked(self) -> None:
        """Hidden: if the dock was closed (the widget left the viewer's window) while a
        run goes on, stop it; its result is still added and the user told. A dock
        only hidden (Window menu) keeps running: it can be shown again."""
        session = self._session
        if not self._alive or session is None or not session.running:
            return
        try:
            top = self.native.window()
        except RuntimeError:  # this widget is gone (destroyed handles that)
            return
        # docked, the widget's window is napari's main window; taken out, it is its own
        if not isinstance(top, QMainWindow):
            session.detach()

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

    # ================================================================== run state

    @property
    def session(self) -> RunSession | None:
        """The current or last run."""
        return self._session

    @property
    def is_running(self) -> bool:
        """True while a worker runs."""
        return self._session is not None and self._session.running

    @property
    def worker(self) -> Any:
        """The running worker (None when idle)."""
        return self._session.worker if self.is_running and self._session else None

    def _on_run_clicked(self, _value: Any = None) -> None:
        if self.is_running:
            self.request_stop()
        else:
            self.start()

    def _on_preview_clicked(self, _value: Any = None) -> None:
        if self.is_running:
            self.request_stop()
        else:
            self.start_region_preview()

    def request_stop(self) -> None:
        """Ask the run to stop; the result so far becomes a layer."""
        session = self._session
        if session is not None and session.running:
            session.request_stop()
            button = self.preview_button if session.is_region else self.run_button
            button.text = "Stopping…"
            button.enabled = False

    def _show_error(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self.last_error = message
        self.status.value = message
        self.status.native.setStyleSheet(_ERROR_STYLE)
        fit_label(self.status.native)
        show_error(toast("cannot run: see the Restore panel"))

    def _show_status(self, message: str) -> None:
        self.status.value = message
        self.status.native.setStyleSheet(_INFO_STYLE)
        fit_label(self.status.native)

    # ================================================================== parameters

    def _parse_sigmas(self) -> tuple[float, ...]:
        text = str(self.sigmas.value).replace(";", ",")
        try:
            return tuple(float(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise ValueError(f"Gaussian σ must be numbers separated by commas, got "
                             f"{self.sigmas.value!r}") from None

    def parameters(self) -> RestoreParameters:
        """The controls as a validated :class:`RestoreParameters` (ValueError if impossible).

        Only what is in use is read: σ with Gaussian upsampling, window and ε with a
        stop rule that uses them; hidden fields take the task's defaults.
        """
        task = self.task.value
        options: dict[str, Any] = {
            "lipschitz": float(self.lipschitz.value),
            "width": int(self.net_width.value),
            "max_iterations": int(self.max_iterations.value),
            "stop": self.stop.value,
            "seed": int(self.seed.value),
            "preview_every": int(self.preview_every.value),
            "upsampler": self.upsampler.value,
            "learning_rate": parse_number(self.learning_rate.value, "learning rate",
                                          positive=True),
            "network": self.network.value,
            "output": self.output.value,
            "signal_every": int(self.signal_every.value),
            "backtrack": bool(self.backtrack.value),
            "num_threads": default_num_threads(),
            "device": self._resolve_device(),
        }
        if self.stop.value in ("auto", "ratio"):
            options["stop_window"] = int(self.stop_window.value)
            options["stop_epsilon"] = parse_number(self.stop_epsilon.value, "stop ε")
        if self.upsampler.value == "gaussian":
            sigmas = self._parse_sigmas()
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
            show_warning(toast(f"device unavailable; running on {where}"))
            self._expected_device = where
            self.device_label.value = f"falls back to: {where} ({exc})"
            return "auto"
        self._expected_device = describe_device(device)
        return choice

    def plan(self, *, region: _planning.Box | None = None,
             params: RestoreParameters | None = None) -> _planning.RunPlan:
        """Snapshot the layers and controls into engine jobs (raises ValueError).

        ``region``: restore only these pixels of the plane in view (a region preview).
        """
        from napari_specdip import plan_restore

        layer = self.image.value
        if layer is None:
            raise ValueError("choose an image layer to restore")
        params = params if params is not None else self.parameters()
        info = _planning.image_info(layer)
        current = tuple([0] * info.n_leading)
        if info.n_leading:
            current = _planning.current_index(layer.world_to_data, self._viewer.dims.point,
                                              info.leading_shape)
        scale = params.factor if params.task == "super-resolve" and params.factor else 1
        mask = None
        if params.task == "inpaint":
            if self.mask.value is None:
                raise ValueError("inpainting needs a mask layer (Labels, Shapes or Image): "
                                 "nonzero where pixels are to be filled")
            mask = _planning.mask_array(self.mask.value, info)
        reference = None
        if self.reference.value is not None:
            reference = _planning.reference_array(self.reference.value, info, scale)
        full = info
        if region is not None:
            info = _planning.crop_info(full, region, current)
            lead = tuple(slice(i, i + 1) for i in current)
            if mask is not None:
                mask = mask[region.slices()] if mask.ndim == 2 else mask[lead + region.slices()]
                if not mask.any():
                    raise ValueError("the region holds no masked pixel to fill: move the view "
                                     "over the holes")
            if reference is not None:
                plane_ndim = 3 if info.rgb else 2
                reference = (reference[region.slices(scale)] if reference.ndim == plane_ndim
                             else reference[lead + region.slices(scale)])
            current = tuple([0] * info.n_leading)
        mode = (_planning.CURRENT if region is not None
                else self.stack.value if info.n_leading else None)
        planes, out_leading = _planning.planes(info, mode, current)
        interrupt = Interrupt()
        jobs = []
        plane_ref_ndim = 3 if info.rgb else 2
        for plane in planes:
            plane_mask = None
            if mask is not None:
                plane_mask = mask if mask.ndim == 2 else mask[plane.source]
            plane_ref = None
            if reference is not None:
                plane_ref = (reference if reference.ndim == plane_ref_ndim
                             else reference[plane.source])
            where = f"slice {plane.source}: " if info.n_leading and region is None else ""
            try:
                jobs.append(plan_restore(
                    info.data[plane.source], params.task, mask=plane_mask,
                    channel_axis=-1 if info.rgb else None, reference=plane_ref,
                    parameters=params, interrupt=interrupt,
                ))
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from exc
        label = dict(_planning.stack_choices(full)) if full.n_leading else {}
        mode_label = next((k for k, v in label.items() if v == mode), "")
        plan = _planning.RunPlan(
            info=info, params=params, planes=planes, jobs=jobs, out_leading=out_leading,
            fixed_index=current, iterated=_planning.iterated_axes(mode, info.n_leading),
            mode_label=mode_label, region=region,
        )
        plan.extra["interrupt"] = interrupt
        return plan

    # ================================================================== starting

    def start(self) -> Any:
        """Plan on this thread and start the worker; returns it (None when refused)."""
        if self.is_running:
            return self.worker
        try:
            plan = self.plan()
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        return self._launch(plan)

    def region_box(self) -> _planning.Box:
        """The pixels a region preview restores (raises ValueError when there are none)."""
        layer = self.image.value
        if layer is None:
            raise ValueError("choose an image layer to preview")
        info = self._current_info_shape()
        if info is None:
            raise ValueError(f"image {layer.name!r} is multiscale; a region preview needs a "
                             "single-scale layer")
        h, w = info.plane_shape
        shapes = self.region.value
        point = list(self._viewer.dims.point)
        if shapes is not None:
            if shapes.nshapes == 0:
                raise ValueError(f"Shapes layer {shapes.name!r} holds no shape: draw a "
                                 "rectangle, or preview what the canvas shows")
            selected = sorted(shapes.selected_data)
            vertices = np.asarray(shapes.data[selected[-1] if selected else -1], dtype=float)
            world = [shapes.data_to_world(v) for v in vertices]
            corners = []
            for v in world:
                full = point.copy()
                full[-2:] = list(np.asarray(v)[-2:])
                corners.append(np.asarray(layer.world_to_data(full))[-2:])
            corners_arr = np.asarray(corners)
            corners_arr = np.stack([corners_arr.min(axis=0), corners_arr.max(axis=0)])
        else:
            camera = self._viewer.camera
            canvas_hw = tuple(getattr(getattr(self._viewer, "canvas", None), "size", (600, 800)))
            view = _region.view_corners(camera.center, camera.zoom, canvas_hw)
            corners_arr = np.asarray([np.asarray(layer.world_to_data(
                point[:-2] + list(c)))[-2:] for c in view])
        box = _region.pixel_box(corners_arr, (h, w))
        if box is None:
            raise ValueError(f"image {layer.name!r} is not in view: pan or zoom to it first")
        on_cpu = "cpu" in self._expected_device.lower() or not self._expected_device
        side = _region.side_for(int(self.net_width.value), on_cpu=on_cpu)
        return _region.fit(box, (h, w), side=side)

    def start_region_preview(self) -> Any:
        """Restore the region in view with the current settings, for a quick look.

        The settings are the same :meth:`parameters` snapshot as Run, with a short
        preview interval and an iteration cap; a time budget stops it and keeps the
        result, shown over the input's pixels.
        """
        if self.is_running:
            return self.worker
        try:
            params = self.parameters()
            box = self.region_box()
            params = params.replace(
                preview_every=_region.PREVIEW_EVERY,
                max_iterations=min(params.max_iterations, _region.MAX_ITERATIONS))
            plan = self.plan(region=box, params=params)
        except ValueError as exc:
            self._show_error(str(exc))
            return None
        layer = self._region_layer
        reuse = layer if layer is not None and layer in self._viewer.layers else None
        return self._launch(plan, budget_s=_region.BUDGET_S, region_layer=reuse)

    def _launch(self, plan: _planning.RunPlan, *, budget_s: float | None = None,
                region_layer: Any = None) -> Any:
        self.last_error = ""
        if plan.region is None:
            self.last_output = None
            region = self._region_layer
            if region is not None and region in self._viewer.layers:
                region.visible = False  # the whole image is coming: do not cover it
        charts = self.ensure_charts()
        session = RunSession(self._viewer, plan, charts=charts, listener=self,
                             budget_s=budget_s, region_layer=region_layer)
        self._session = session
        if plan.region is not None:
            h, w = plan.region.shape
            self._show_status(
                f"Previewing a {h} x {w} px region with these settings; it stops after "
                f"{budget_s:g} s at most and shows over the image. Run restores the "
                f"whole image.")
        else:
            self._show_status(f"Running on {self._expected_device}. Stop keeps the result so "
                              "far; the progress line above says how long is left.")
        worker = session.start()
        for widget in self._controls:
            widget.enabled = False
        active, idle = ((self.preview_button, self.run_button) if plan.region is not None
                        else (self.run_button, self.preview_button))
        active.text = "Stop"
        active.enabled = True
        idle.enabled = False
        self.eta_label.value = "starting…"
        self.eta_label.visible = True
        self._update_result_buttons()
        return worker

    # ================================================================== session listener

    def run_progress(self, session: RunSession, text: str) -> None:
        if self._alive and session is self._session:
            self.eta_label.value = text

    def run_result(self, session: RunSession, message: str, *, error: bool) -> None:
        if not self._alive:
            return
        if error:
            self.last_error = message
            self.status.value = message
            self.status.native.setStyleSheet(_ERROR_STYLE)
            fit_label(self.status.native)
            return
        if session.is_region:
            self._region_layer = session.output
        elif session.output is not None:
            self.last_output = session.output
            self._add_extra_outputs(session)
        if session.output is not None:
            self.device_label.value = f"ran on: {session.output.metadata['specdip']['device']}"
        self._show_status(message)

    def run_ended(self, session: RunSession) -> None:
        if not self._alive:
            return
        for widget in self._controls:
            widget.enabled = True
        for button, text in ((self.run_button, "Run"), (self.preview_button, "Preview region")):
            button.text = text
            button.enabled = True
        self.eta_label.visible = False
        self.reset_choices()
        self._update_result_buttons()

    # ================================================================== result

    def _update_result_buttons(self) -> None:
        out = self.last_output
        has = out is not None and out in self._viewer.layers and not self.is_running
        self.save_button.enabled = has
        self.compare_button.enabled = has
        if has:
            self.compare_button.text = "Show input" if out.visible else "Show result"

    def save_result(self, path: str | os.PathLike[str] | None = None) -> list[str]:
        """Save the last result as TIFF + JSON sidecar (asks for a file when ``path`` is None).

        Returns the files written (empty when cancelled or failed; the status says why).
        """
        from napari_specdip._napari._writer import write_tiff

        layer = self.last_output
        if layer is None or layer not in self._viewer.layers:
            self._show_error("there is no result to save: run a restoration first")
            return []
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            start = os.path.join(os.getcwd(), f"{layer.name}.tif")
            chosen, _ = QFileDialog.getSaveFileName(
                self.native, "Save the result with its run record", start,
                "TIFF with run record (*.tif *.tiff)")
            if not chosen:
                return []
            path = chosen
        data, attributes, _ = layer.as_layer_data_tuple()
        try:
            written = write_tiff(os.fspath(path), data, attributes)
        except (OSError, ValueError) as exc:
            self._show_error(f"could not save {os.fspath(path)}: {exc}")
            return []
        self.last_saved = written
        self._show_status("Saved " + " and ".join(written) + " (pixel size, units and run "
                          "record included).")
        return written

    def toggle_compare(self) -> None:
        """Before/after: flip between the input and the result (one shown at a time)."""
        out = self.last_output
        if out is None or out not in self._viewer.layers:
            return
        source = self._source_of(out)
        out.visible = not out.visible
        if source is not None:
            source.visible = not out.visible
        self.compare_button.text = "Show input" if out.visible else "Show result"

    def set_side_by_side(self, on: bool) -> None:
        """The input and the result next to each other (napari's grid), or overlaid."""
        out = self.last_output
        source = self._source_of(out) if out is not None else None
        if on and out is not None:
            out.visible = True
            if source is not None:
                source.visible = True
        self._grid().enabled = bool(on)

    def _grid(self) -> Any:
        """napari's grid model (``viewer.canvas.grid`` since 0.9, ``viewer.grid`` before)."""
        canvas = getattr(self._viewer, "canvas", None)
        return canvas.grid if canvas is not None and hasattr(canvas, "grid") else self._viewer.grid

    def _source_of(self, layer: Any) -> Any:
        name = (layer.metadata.get("specdip") or {}).get("source_layer")
        return next((x for x in self._layers() if x.name == name), None)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, tuple | list) or isinstance(b, tuple | list):
        try:
            return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
        except TypeError:
            return False
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
    return bool(a == b)


def _describe(field: str, value: Any) -> str:
    word = _FIELD_WORDS.get(field, field)
    if isinstance(value, float):
        return f"{word} {format_number(value)}"
    if isinstance(value, tuple | list):
        return f"{word} {', '.join(format_number(float(v)) for v in value)}"
    return f"{word} {value}"
