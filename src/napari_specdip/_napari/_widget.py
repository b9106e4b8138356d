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

import functools
import math
import os
import threading
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
from qtpy.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QSizePolicy,
    QWidget,
)

from napari_specdip._napari import _estimating, _planning, _region
from napari_specdip._napari._help import (
    HEADER,
    TOOLTIPS,
    docs_link,
    format_number,
    parse_number,
    toast,
)
from napari_specdip._napari._parts import LayerComboBox, scroll_content
from napari_specdip._napari._sample_data import SAMPLE_KEY
from napari_specdip._napari._session import Interrupt, RunSession, run_jobs
from napari_specdip.core.params import (
    DEFAULT_PRESET,
    NETWORKS,
    NOISE_FITS,
    NOISE_MODELS,
    NOISE_TASKS,
    OUTPUTS,
    PRESETS,
    REFINES,
    SR_FACTORS,
    STOP_RULES,
    TASK_OPTIONS,
    TASKS,
    UPSAMPLERS,
    RestoreParameters,
)

if TYPE_CHECKING:
    import napari

    from napari_specdip._napari._charts import ChartsWidget
    from napari_specdip.core.estimate import Estimate

__all__ = ["RestoreWidget", "run_jobs", "default_num_threads", "CHARTS_NAME"]

CHARTS_NAME = "SpecDIP charts"
_ERROR_STYLE = "color: #e0524a;"
_INFO_STYLE = ""
#: the engine's option names, as the panel labels them (its messages are the API's)
_PANEL_WORDS = {"noise_gain": "camera gain", "noise_read_sigma": "read noise",
                "noise_offset": "offset", "noise_sigma": "noise sigma",
                "noise_fit": "noise fit", "noise='gaussian'": "noise: gaussian",
                "task='inpaint'": "task: inpaint"}


def in_panel_words(message: str) -> str:
    """An engine message with its option names as the panel shows them."""
    import re

    pattern = "|".join(re.escape(name) for name in sorted(_PANEL_WORDS, key=len, reverse=True))
    return re.sub(rf"\b(?:{pattern})(?![\w'])", lambda m: _PANEL_WORDS[m.group(0)], message)


_PREVIEW_SUFFIXES = ("[specdip preview]", "[specdip region preview]")
#: the settings a task and a preset set: control attribute -> RestoreParameters field
_TASK_FIELDS = {
    "lipschitz": "lipschitz", "net_width": "width", "max_iterations": "max_iterations",
    "stop": "stop", "upsampler": "upsampler", "sigmas": "sigmas",
    "learning_rate": "learning_rate", "network": "network", "output": "output",
    "stop_window": "stop_window", "stop_epsilon": "stop_epsilon",
    "signal_every": "signal_every", "holdout": "holdout", "backtrack": "backtrack",
    "gain": "gain", "tile": "tile", "input_jitter": "input_jitter", "refine": "refine",
    "keep_known": "keep_known",
}
_FIELD_WORDS = {"lipschitz": "λ", "width": "width", "max_iterations": "iterations",
                "stop": "stop rule", "upsampler": "upsampler", "sigmas": "σ",
                "learning_rate": "learning rate", "network": "network", "output": "output",
                "stop_window": "stop window", "stop_epsilon": "stop ε",
                "signal_every": "signals every", "holdout": "held-out pixels",
                "backtrack": "backtrack", "gain": "gain", "tile": "tiles",
                "input_jitter": "input jitter", "refine": "refine",
                "keep_known": "known pixels"}
#: the known-pixels control: its text, and RestoreParameters.keep_known
KNOWN_PIXELS: list[tuple[str, str]] = [("auto", "auto"), ("kept as given", "kept"),
                                       ("fitted", "fitted")]
_KEEP_KNOWN = {"auto": None, "kept": True, "fitted": False}


def _known_choice(keep_known: bool | None) -> str:
    """The known-pixels control's value for ``RestoreParameters.keep_known``."""
    return next(k for k, v in _KEEP_KNOWN.items() if v is keep_known)


#: what to do when the auto rule has no held-out pixels to watch
AUTO_NEEDS_HOLDOUT = ("The auto stop rule watches held-out pixels, but 'held-out pixels' "
                      "(Advanced) is 0: set it to e.g. 0.1, or choose the stop rule ratio, "
                      "wmv or none.")
#: milliseconds without a change before the estimate is measured again
ESTIMATE_DELAY_MS = 500
#: seconds a closing widget waits at most for the estimate being measured
ESTIMATE_CLOSE_WAIT_S = 30.0
#: the line under Run while the estimate is measured
ESTIMATING = "estimating time and memory…"
#: the tiles control: the whole image, the engine's choice, or a tile side
TILE_CHOICES: list[tuple[str, int | str]] = [
    ("whole image", 0), ("auto (CPU, 512 px up)", "auto"),
    *((f"{n} px", n) for n in (32, 64, 96, 128, 192, 256, 384, 512, 1024))]
#: how the camera values of the noise model are named for the user
_CAMERA_WORDS = (("gain", "gain"), ("read_sigma", "read noise"), ("offset", "offset"))


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
    before = label.minimumHeight()
    # QLabel never reports less than its minimum height: without this, a height set at a
    # narrow width would stay after the label widens (gaps around short notes)
    label.setMinimumHeight(0)
    need = label.heightForWidth(width) if label.wordWrap() else label.sizeHint().height()
    label.setMinimumHeight(need if need > 0 else before)


def _section_title(text: str) -> Label:
    title = Label(value=text)
    font = title.native.font()
    font.setBold(True)
    title.native.setFont(font)
    return title


#: the charts dock's share of napari's window height when it is first docked
CHARTS_SHARE = 0.26

#: the status when the last image to restore has left the viewer (cleared once one is chosen)
NO_IMAGE_LEFT = ("No visible image layer left to restore: open an image or make one "
                 "visible, then choose it above.")


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
        self.last_uncertainty: Any = None  # the uncertainty layer of the last ensemble run
        # (input layer, noise_model record) of the last run that used a noise model
        self._noise_used: tuple[Any, dict[str, Any]] = (None, {})
        self._output_source: Any = None  # the input layer of last_output
        #: the mask / reference layers a sample's hint chose (cleared with another image)
        self._hinted: dict[str, Any] = {}
        #: the noise model a sample's hint chose (put back for an image without one)
        self._hinted_noise: str | None = None
        self.last_error = ""
        self.last_saved: list[str] = []
        self._task_loaded = "denoise"
        self._preset_loaded = DEFAULT_PRESET
        self.defaults_message = ""
        self.last_estimate: Estimate | None = None
        self._estimate_worker: Any = None
        self._estimate_done = threading.Event()  # set when the worker's body has returned
        self._estimate_cancel = threading.Event()  # ends the timing of the one measured
        self._estimate_generation = 0
        self._estimate_pending = False
        self._estimate_shown: tuple[str, str] = ("", "")  # the estimate line under Run
        tip = TOOLTIPS

        # ---------------------------------------------------------------- header
        self.header = Label(value="")
        self.header.native.setTextFormat(Qt.TextFormat.RichText)
        self.header.native.setOpenExternalLinks(True)
        self.header.native.setWordWrap(True)
        self._on_theme()

        # ---------------------------------------------------------------- input
        self.image = LayerComboBox(label="image", choices=self._image_choices, nullable=True,
                                   tooltip=tip["image"])
        self.task = ComboBox(label="task", choices=list(TASKS), value="denoise",
                             tooltip=tip["task"])
        self.defaults_note = Label(value="")
        self.mask = LayerComboBox(label="mask", choices=self._mask_choices, nullable=True,
                                  tooltip=tip["mask"])
        self.keep_known = ComboBox(label="known pixels", choices=KNOWN_PIXELS, value="auto",
                                   tooltip=tip["keep_known"])
        self.factor = ComboBox(label="factor", choices=list(SR_FACTORS), value=4,
                               tooltip=tip["factor"])
        self.gain = FloatSpinBox(label="gain", value=1.0, min=0.1, max=10.0, step=0.1,
                                 tooltip=tip["gain"])
        self.reference = LayerComboBox(label="reference", choices=self._image_choices,
                                       nullable=True, tooltip=tip["reference"])
        self.stack = ComboBox(label="stack", choices=self._stack_choices, tooltip=tip["stack"])
        self.warm_start = CheckBox(text="warm start slices", value=True,
                                   tooltip=tip["warm_start"])
        self.input_section = Container(labels=True, widgets=[
            self.image, self.task, self.mask, self.keep_known, self.factor, self.gain,
            self.reference,
            self.stack, self.warm_start])

        # ---------------------------------------------------------------- method
        self.lipschitz = FloatSpinBox(label="λ (Lipschitz)", min=0.1, max=10.0, step=0.05,
                                      tooltip=tip["lipschitz"])
        self.net_width = SpinBox(label="width", min=1, max=1024, step=8,
                                 tooltip=tip["net_width"])
        self.max_iterations = SpinBox(label="max iterations", min=1, max=1_000_000, step=100,
                                      tooltip=tip["max_iterations"])
        self.stop = ComboBox(label="stop rule", choices=list(STOP_RULES), tooltip=tip["stop"])
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1, tooltip=tip["seed"])
        self.ensemble = SpinBox(label="ensemble", value=1, min=1, max=8,
                                tooltip=tip["ensemble"])
        self.tile = ComboBox(label="tiles", value=0, choices=TILE_CHOICES, tooltip=tip["tile"])
        self.preview_every = SpinBox(label="preview every", value=50, min=0, max=100_000,
                                     tooltip=tip["preview_every"])
        self.device = ComboBox(label="device", choices=self._device_choices,
                               tooltip=tip["device"])
        self.device_label = Label(value="")
        self.stop_note = Label(value="")
        self.method_section = Container(labels=True, widgets=[
            *self._preset_controls(), self.lipschitz, self.net_width, self.max_iterations,
            self.stop, self.seed, self.ensemble, self.tile, self.preview_every, self.device])

        # ---------------------------------------------------------------- advanced
        self.show_advanced = CheckBox(text="Show advanced options", value=False,
                                      tooltip=tip["show_advanced"])
        self.upsampler = ComboBox(label="upsampler", choices=list(UPSAMPLERS),
                                  tooltip=tip["upsampler"])
        self.sigmas = LineEdit(label="Gaussian σ", tooltip=tip["sigmas"])
        self.learning_rate = LineEdit(label="learning rate", tooltip=tip["learning_rate"])
        self.network = ComboBox(label="network", choices=list(NETWORKS), tooltip=tip["network"])
        self.output = ComboBox(label="output", choices=list(OUTPUTS), tooltip=tip["output"])
        self.refine = ComboBox(label="refine", choices=list(REFINES), tooltip=tip["refine"])
        self.stop_window = SpinBox(label="stop window", min=1, max=100_000,
                                   tooltip=tip["stop_window"])
        self.stop_epsilon = LineEdit(label="stop ε", tooltip=tip["stop_epsilon"])
        self.signal_every = SpinBox(label="signals every", min=1, max=1000,
                                    tooltip=tip["signal_every"])
        self.holdout = FloatSpinBox(label="held-out pixels", min=0.0, max=0.45, step=0.05,
                                    tooltip=tip["holdout"])
        self.input_jitter = FloatSpinBox(label="input jitter", min=0.0, max=1.0, step=0.05,
                                         tooltip=tip["input_jitter"])
        self.backtrack = CheckBox(text="backtrack on divergence", tooltip=tip["backtrack"])
        self.tile_overlap = SpinBox(label="tile overlap (px)", value=16, min=0, max=4096,
                                    step=4, tooltip=tip["tile_overlap"])
        self.tile_warm_start = CheckBox(text="warm start tiles", value=True,
                                        tooltip=tip["tile_warm_start"])
        self.advanced = Container(labels=True, widgets=[
            self.upsampler, self.sigmas, self.learning_rate, self.network, self.output,
            self.refine, self.stop_window, self.stop_epsilon, self.signal_every, self.holdout,
            self.input_jitter, self.backtrack, self.tile_overlap, self.tile_warm_start,
        ])
        self.advanced.visible = False

        # ---------------------------------------------------------------- run
        self.run_button = PushButton(text="Run", tooltip=tip["run_button"])
        self.preview_button = PushButton(text="Preview region", tooltip=tip["preview_button"])
        # under the buttons, named for the one it serves: Run restores the whole image
        self.region = LayerComboBox(label="preview region", choices=self._region_choices,
                                    tooltip=tip["region"])
        # one line under Run: the estimate before a run, the progress and time left during
        # it (one label, not two swapped: showing or hiding a label re-lays out the dock,
        # 20 ms each on the click that starts a run)
        self.estimate_label = Label(value="")
        self.estimate_label.tooltip = tip["estimate"]
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
            _section_title("Method"), self.method_section, self.stop_note, self.device_label,
            self.show_advanced, self.advanced,
            _section_title("Run"), self.run_buttons, self.run_section, self.estimate_label,
            self.status,
            _section_title("Result"), self.result_row,
        ])
        for section in (self.input_section, self.method_section, self.advanced,
                        self.run_section, self.run_buttons, self.result_row,
                        self.noise_section, self.noise_fields):
            section.margins = (0, 0, 0, 0)
        self._unify_labels()
        self._controls: list[Widget] = [
            *self.input_section, *self.noise_fields, *self.method_section, self.show_advanced,
            *self.advanced, self.region]
        # the dock may be shorter than all of this (small screens, advanced options): it
        # scrolls, and the Run buttons stay in view under it
        self.scroll = scroll_content(self.native, pinned=[self.run_buttons.native])
        for label in (self.header, self.defaults_note, self.device_label,
                      self.status, self.stop_note, self.estimate_label, self.noise_note):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored,
                                       QSizePolicy.Policy.MinimumExpanding)
            label.native.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse
                | Qt.TextInteractionFlag.LinksAccessibleByMouse)
            label.native.installEventFilter(self._fitter)
        for combo in (self.upsampler, self.network, self.output, self.stop, self.task,
                      self.preset, self.noise, self.noise_fit):
            combo.native.setMinimumContentsLength(9)
        self.defaults_note.visible = False
        self.stop_note.visible = False
        self.stop_note.native.setStyleSheet(_ERROR_STYLE)
        self.estimate_label.visible = False
        self.noise_note.visible = False
        self._estimate_timer = QTimer()
        self._estimate_timer.setSingleShot(True)
        self._estimate_timer.setInterval(ESTIMATE_DELAY_MS)
        self._estimate_timer.timeout.connect(self.refresh_estimate)
        self.native.setObjectName("specdip-restore")

        self.task.changed.connect(self._on_task)
        self.preset.changed.connect(self._on_preset)
        self.image.changed.connect(self._on_image)
        self.upsampler.changed.connect(self._on_upsampler)
        self.stop.changed.connect(self._on_stop_rule)
        self.holdout.changed.connect(self._update_stop_note)
        self.stack.changed.connect(self._update_warm_start)
        self.noise.changed.connect(self._on_noise_model)
        self.device.changed.connect(self._update_device_label)
        self.show_advanced.changed.connect(self._on_advanced)
        self.run_button.changed.connect(self._on_run_clicked)
        self.preview_button.changed.connect(self._on_preview_clicked)
        self.save_button.changed.connect(lambda _v=None: self.save_result())
        self.compare_button.changed.connect(lambda _v=None: self.toggle_compare())
        self.side_by_side.changed.connect(self.set_side_by_side)
        for control in (self.image, self.task, self.preset, self.net_width,
                        self.max_iterations, self.device, self.factor, self.ensemble,
                        self.tile, self.tile_overlap, self.stack, self.mask, self.stop,
                        self.holdout, self.output, self.signal_every, self.network,
                        self.upsampler, self.noise):
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
        words, url = docs_link()
        self.header.native.setText(f'{HEADER} <a href="{url}" style="color:{color}">{words}</a>')

    def _unify_labels(self) -> None:
        """One label column width for every section, so the fields line up."""
        rows = [w for s in (self.input_section, self.noise_fields, self.method_section,
                            self.advanced, self.run_section) for w in s]
        labeled = [r for r in (w._labeled_widget() for w in rows) if r is not None]
        if labeled:
            widest = max(max(r._label_widget.native.sizeHint().width(),
                             r._label_widget.native.fontMetrics().horizontalAdvance(
                                 str(r._label_widget.value)) + 12) for r in labeled)
            for r in labeled:
                r.label_width = widest

    # ================================================================== sections

    def _preset_controls(self) -> list[Widget]:
        """The preset combo, at the top of the Method section."""
        self.preset = ComboBox(label="preset", choices=list(PRESETS), value=DEFAULT_PRESET,
                               tooltip=TOOLTIPS["preset"])
        return [self.preset]

    def _noise_model_section(self) -> Container[Widget]:
        """The noise model (denoising and inpainting): the kind of noise and, for a camera's
        Poisson-Gaussian noise, its gain, read noise and offset (empty: estimated)."""
        tip = TOOLTIPS
        self.noise = ComboBox(label="noise", choices=list(NOISE_MODELS), value="gaussian",
                              tooltip=tip["noise"])
        self.noise_sigma = LineEdit(label="noise sigma", tooltip=tip["noise_sigma"])
        self.noise_gain = LineEdit(label="camera gain", tooltip=tip["noise_gain"])
        self.noise_read_sigma = LineEdit(label="read noise", tooltip=tip["noise_read_sigma"])
        self.noise_offset = LineEdit(label="offset", tooltip=tip["noise_offset"])
        for edit in (self.noise_sigma, self.noise_gain, self.noise_read_sigma,
                     self.noise_offset):
            edit.native.setPlaceholderText("estimate from the image")
        self.noise_fit = ComboBox(label="noise fit", choices=list(NOISE_FITS),
                                  tooltip=tip["noise_fit"])
        self.noise_fields = Container(labels=True, widgets=[
            self.noise, self.noise_sigma, self.noise_gain, self.noise_read_sigma,
            self.noise_offset, self.noise_fit])
        self.noise_note = Label(value="")
        self.noise_section = Container(labels=False, widgets=[
            _section_title("Noise model"), self.noise_fields, self.noise_note])
        return self.noise_section

    def _add_extra_outputs(self, session: RunSession) -> list[Any]:
        """Layers added next to the result: an ensemble's uncertainty map (hidden)."""
        plan, out = session.plan, session.output
        if plan is None or out is None or not session.results:
            return []
        spread = _planning.assemble_uncertainty(plan, session.results)
        if spread is None:
            return []
        finite = spread[np.isfinite(spread)]
        high = float(np.percentile(finite, 99)) if finite.size else 0.0
        if not high > 0:
            high = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        members = int(session.results[0].parameters.get("ensemble", 1))
        from napari_specdip.core.ensemble import UNCERTAINTY_WHAT  # torch is loaded by now

        what = (f"{UNCERTAINTY_WHAT} ({members} members), in the image's units"
                + (" (root mean square over the colour channels)" if plan.info.rgb else ""))
        metadata = {"specdip": {"uncertainty_of": out.name, "source_layer": plan.info.name,
                                "ensemble": members, "what": what,
                                "seed": session.results[0].parameters.get("seed")}}
        layer = self._viewer.add_image(
            spread, name=f"{out.name} uncertainty", colormap="magma",
            contrast_limits=(0.0, high), visible=False, metadata=metadata,
            **plan.placement())
        self.last_uncertainty = layer
        return [layer]

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

        image = getattr(self, "image", None)  # the image to fill is never its own mask
        current = image.value if image is not None else None
        return [(layer.name, layer) for layer in self._layers()
                if isinstance(layer, Labels | Shapes | Image) and not self._is_ours(layer)
                and layer is not current]

    def _region_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Shapes

        return [("what the canvas shows", None)] + [
            (f"a shape of {layer.name}", layer) for layer in self._layers()
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
                self._show_status(NO_IMAGE_LEFT)
        elif getattr(event, "type", None) == "inserted" and not self.is_running:
            added = event.value
            if (added in layers and added.visible
                    and isinstance(added.metadata.get(SAMPLE_KEY), dict)):
                # a sample opened with the dock already open: it is what the user means
                self.image.value = added
            else:  # a sample's mask/reference layer arriving after its image
                self._apply_hint(load_task=False, only=str(added.name))
        self._update_result_buttons()

    def _on_layer_removed(self, event: Any = None) -> None:
        removed = getattr(event, "value", None)
        ours = removed is self._output_source or removed is self.last_output
        if removed is self._output_source:
            self._output_source = None  # no reference to a layer the user removed
        if removed is self.last_output:
            self.last_output = None
        if ours:  # Save, or only before/after, has nothing left to serve
            self._update_result_buttons()

    def _on_image(self, _value: Any = None) -> None:
        """New input: refresh the stack choices, and take a sample's hints."""
        self.stack.reset_choices()
        self.stack.visible = bool(self.stack.choices)
        if self.image.value is not None and self.status.value == NO_IMAGE_LEFT:
            self._show_status("")  # said while there was none: an image is chosen now
        self.mask.reset_choices()  # the new image leaves the mask list, the old one joins
        self._update_warm_start()
        if not self.is_running:
            self._apply_hint(load_task=True)
        self._update_noise_note()

    def _update_warm_start(self, _value: Any = None) -> None:
        """The warm-start box belongs to runs over several slices."""
        self.warm_start.visible = bool(self.stack.choices) and self.stack.value != \
            _planning.CURRENT

    def _sample_noise(self) -> dict[str, Any] | None:
        """The true camera values a sample layer carries (its hint's ``noise``)."""
        layer = self.image.value
        hint = layer.metadata.get(SAMPLE_KEY) if layer is not None else None
        noise = hint.get("noise") if isinstance(hint, dict) else None
        return noise if isinstance(noise, dict) else None

    def _apply_hint(self, *, load_task: bool, only: str | None = None) -> None:
        """Follow ``metadata["specdip_sample"]`` of the input: task, factor, mask, reference."""
        layer = self.image.value
        hint = layer.metadata.get(SAMPLE_KEY) if layer is not None else None
        if load_task:
            # a mask or reference a sample's hint chose belongs to that sample, not to the
            # next image (its clean reference would score another image's PSNR)
            for key, combo in (("mask", self.mask), ("reference", self.reference)):
                chosen = self._hinted.pop(key, None)
                if chosen is not None and combo.value is chosen and (
                        not isinstance(hint, dict) or hint.get(key) != chosen.name):
                    combo.value = None
            # a camera noise model belongs to its sample too: left on, it would make the
            # next image's run estimate camera values that image may not have
            hinted_noise, self._hinted_noise = self._hinted_noise, None
            own = hint.get("noise") if isinstance(hint, dict) else None
            if (hinted_noise is not None and self.noise.value == hinted_noise
                    and not isinstance(own, dict)):
                self.noise.value = "gaussian"
        if not isinstance(hint, dict):
            return
        if load_task:
            task = hint.get("task")
            if task in TASKS and task != self.task.value:
                self.task.value = task  # loads that task's defaults
            if hint.get("factor") in SR_FACTORS:
                self.factor.value = hint["factor"]
            noise = hint.get("noise")
            if isinstance(noise, dict) and noise.get("model") in NOISE_MODELS:
                self.noise.value = noise["model"]
                self._hinted_noise = noise["model"]
        by_name = {layer.name: layer for layer in self._layers()}
        for key, combo in (("mask", self.mask), ("reference", self.reference)):
            name = hint.get(key)
            if name in by_name and (only is None or only == name):
                combo.value = by_name[name]
                self._hinted[key] = by_name[name]

    def _on_task(self, task: str) -> None:
        self._load_defaults(task, self.preset.value,
                            previous=(self._task_loaded, self._preset_loaded))

    def _on_preset(self, preset: str) -> None:
        self._load_defaults(self.task.value, preset,
                            previous=(self._task_loaded, self._preset_loaded))

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
        if name == "keep_known":
            return _KEEP_KNOWN[control.value]
        return control.value

    def _set_control(self, name: str, value: Any) -> None:
        control = getattr(self, name)
        if name == "sigmas":
            control.value = ", ".join(f"{s:g}" for s in value)
        elif name in ("learning_rate", "stop_epsilon"):
            control.value = format_number(float(value))
        elif name == "keep_known":
            control.value = _known_choice(value)
        else:
            control.value = value

    def _load_defaults(self, task: str, preset: str = DEFAULT_PRESET,
                       previous: tuple[str, str] | None = None) -> None:
        """Put the defaults of ``task`` under ``preset`` in the controls the user has not
        changed.

        A control whose value differs from the previous task's and preset's default was
        changed by the user and is kept; the note under the task says what was loaded
        and kept. Seed, device, preview, ensemble, the noise model and the inputs are
        never touched.
        """
        old: RestoreParameters | None = None
        new = RestoreParameters.for_task(task, preset=preset)
        if previous is not None:
            # a user's upsampler carries over, with the lambda the paper pairs with it
            before_task, before_preset = previous
            base = RestoreParameters.for_task(before_task, preset=before_preset)
            upsampler = self.upsampler.value
            if upsampler != base.upsampler:
                old = RestoreParameters.for_task(before_task, preset=before_preset,
                                                 upsampler=upsampler)
                new = RestoreParameters.for_task(task, preset=preset, upsampler=upsampler)
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
                        if task in TASK_OPTIONS.get(field, (task,)):
                            kept.append(_describe(field, current))
                        continue
                    if _same(current, value):
                        continue
                self._set_control(name, value)
                if task in TASK_OPTIONS.get(field, (task,)):  # the note names what the task uses
                    loaded.append(_describe(field, value))
            if new.factor is not None and previous is None:
                # the factor is the user's choice of output, like the mask: a later
                # preset or task change keeps it
                self.factor.value = new.factor
        finally:
            self._loading = False
        self._task_loaded = task
        self._preset_loaded = preset
        self.mask.visible = self.keep_known.visible = task == "inpaint"
        self.factor.visible = task == "super-resolve"
        self.gain.visible = task == "enhance"
        self.refine.visible = task == "denoise"
        self.noise_section.visible = task in NOISE_TASKS
        self._on_noise_model(self.noise.value)
        self._on_upsampler(self.upsampler.value)
        self._on_stop_rule(self.stop.value)
        self._update_estimate()
        if previous is None:
            return
        changed = [f"{task} defaults" if task != previous[0] else "",
                   f"{preset} preset" if preset != previous[1] else ""]
        what = " and ".join(c for c in changed if c) or f"{task} defaults"
        parts = [f"{what} loaded" + (f": {', '.join(loaded)}" if loaded else " (same values)")]
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
        uses_ratio = rule == "ratio"
        self.stop_window.visible = uses_ratio
        self.stop_epsilon.visible = uses_ratio
        self._update_stop_note()

    def _update_stop_note(self, _value: Any = None) -> None:
        """Say at once what to do when the auto rule has no held-out pixels to watch."""
        missing = self.stop.value == "auto" and not float(self.holdout.value) > 0
        self.stop_note.value = AUTO_NEEDS_HOLDOUT if missing else ""
        self.stop_note.visible = missing
        if missing:
            fit_label(self.stop_note.native)

    def _on_noise_model(self, model: str) -> None:
        """The camera's values belong to the Poisson-Gaussian model, the noise sigma to
        the Gaussian one (the denoising stop's noise level)."""
        camera = model == "poisson-gaussian"
        for control in (self.noise_gain, self.noise_read_sigma, self.noise_offset,
                        self.noise_fit):
            control.visible = camera
        self.noise_sigma.visible = self._gaussian_denoising()
        self._update_noise_note()

    def _gaussian_denoising(self) -> bool:
        """Whether the noise sigma applies: denoising with the Gaussian model."""
        return bool(self.noise.value == "gaussian" and self.task.value == "denoise")

    def _update_noise_note(self, _value: Any = None) -> None:
        """Under the noise model: the camera values the last run on this image used
        (given or estimated) and, for a sample, its true values to compare with."""
        lines = []
        used_on, used = self._noise_used
        this_image = used_on is not None and used_on is self.image.value
        if this_image and used.get("model") == "gaussian" and self._gaussian_denoising():
            lines.append(f"last run used: noise sigma {_g(used.get('sigma'))} "
                         f"({used.get('source', 'estimated')})")
            if isinstance(used.get("growth"), float):
                lines.append(f"(its noise grows with the signal, {used['growth']:.3g}x from dark "
                             "to bright: the Wiener stage followed that; poisson-gaussian "
                             "fits it too)")
        if this_image and used.get("model") == "poisson-gaussian":
            source = used.get("source") or {}
            values = ", ".join(f"{word} {_g(used.get(key))} ({source.get(key, 'estimated')})"
                               for key, word in _CAMERA_WORDS)
            lines.append(f"last run used: {values}")
            over = used.get("estimated_over")
            if isinstance(over, dict):  # one camera: estimated over the whole layer
                shown = (f"{over.get('slices')} of its {over.get('of')}"
                         if over.get("slices") != over.get("of") else f"its {over.get('of')}")
                lines.append("(estimated over the whole image)" if over.get("of") == 1
                             else f"(estimated once over {shown} slices, for every slice)")
            offset_from = used.get("offset_from", "darkest level")
            if "given" not in (source.get("read_sigma"), source.get("offset")):
                if offset_from == "darkest level":
                    # the noise's skewness was too uncertain to count the photons there
                    lines.append("(with the offset estimated as the darkest level, the read "
                                 "noise is an upper bound: give the offset to measure it)")
                elif offset_from == "skewness":
                    lines.append("(offset placed below the darkest level by the photons its "
                                 "noise's skewness counts)")
        truth = self._sample_noise()
        if truth is not None and self.noise.value == truth.get("model") == "poisson-gaussian":
            values = ", ".join(f"{word} {_g(truth.get(key))}" for key, word in _CAMERA_WORDS)
            units = f" ({truth['units']})" if truth.get("units") else ""
            lines.append(f"sample truth: {values}{units}")
        elif (truth is not None and truth.get("model") == "gaussian"
              and self._gaussian_denoising()):
            after = truth.get("sigma_clipped")
            clipped = f" ({_g(after)} after clipping)" if after is not None else ""
            lines.append(f"sample truth: noise sigma {_g(truth.get('sigma'))}{clipped}")
        self.noise_note.value = "\n".join(lines)
        self.noise_note.visible = bool(lines)
        if lines:
            fit_label(self.noise_note.native)

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
        """The dock is closed: a run goes on to its result (stopped now), then says so;
        the estimate being measured is dropped."""
        self._alive = False
        session = self._session
        if session is not None and session.running:
            session.detach()
        self._quit_estimate()

    def _quit_estimate(self) -> None:
        """Drop the estimate being measured and wait for its thread (seconds at most): left
        running, it emits through Qt objects deleted with the viewer and runs torch while
        Python shuts down, printing tracebacks. (No Qt call here: at exit this runs after
        the timer's Qt object is gone; a pending timer finds the widget not alive.)"""
        worker = self._estimate_worker
        if worker is None:
            return
        worker.quit()  # its answer is not wanted: no `returned`
        self._estimate_cancel.set()  # its timing ends at the next step
        self._estimate_done.wait(ESTIMATE_CLOSE_WAIT_S)

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
        from napari_specdip._napari._charts import CHARTS_MIN_HEIGHT, ChartsWidget

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
            # from the charts (their parent is the dock): napari's window object is a
            # proxy to a plugin
            main, dock = self._charts.window(), self._charts.parent()
            if isinstance(main, QMainWindow) and isinstance(dock, QDockWidget):
                # Qt gave the charts nearly half the window, which pushed Run below the
                # fold of the restore dock on a 1000 px screen: a quarter, then the user's
                height = max(CHARTS_MIN_HEIGHT, round(CHARTS_SHARE * main.height()))
                main.resizeDocks([dock], [height], Qt.Orientation.Vertical)
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

        self._error_status(message)
        self.scroll.ensureWidgetVisible(self.status.native)  # the toast points there
        show_error(toast("cannot run: see the Restore panel"))

    def _error_status(self, message: str) -> None:
        """An error in the status line, in the panel's words."""
        message = in_panel_words(message)
        self.last_error = message
        self.status.value = message
        self.status.native.setStyleSheet(_ERROR_STYLE)
        fit_label(self.status.native)

    def _show_status(self, message: str) -> None:
        self.status.value = message
        self.status.native.setStyleSheet(_INFO_STYLE)
        fit_label(self.status.native)

    # ================================================================== parameters

    def _parse_sigmas(self) -> tuple[float, ...]:
        text = str(self.sigmas.value).replace(";", ",")
        try:
            values = tuple(float(s) for s in text.split(",") if s.strip())
        except ValueError:
            values = (math.nan,)
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"Gaussian σ must be positive numbers separated by commas, got "
                             f"{self.sigmas.value!r}")
        return values

    def _parse_learning_rate(self) -> float:
        value = parse_number(self.learning_rate.value, "learning rate", positive=True)
        if value > 1.0:
            raise ValueError(f"learning rate must be at most 1 (Adam's step; the presets use "
                             f"0.001-0.01), got {self.learning_rate.value!r}")
        return value

    def parameters(self, *, notify: bool = True) -> RestoreParameters:
        """The controls as a validated :class:`RestoreParameters` (ValueError if impossible).

        Built as ``RestoreParameters.for_task(task, preset=..., **controls)``. Only what
        is in use is read: σ with Gaussian upsampling, window and ε with the ratio rule,
        the noise model for denoising and inpainting; hidden fields take the preset's
        defaults. ``notify=False``: no notification when the device falls back.
        """
        task = self.task.value
        holdout = float(self.holdout.value)
        if self.stop.value == "auto" and not holdout > 0:
            raise ValueError(AUTO_NEEDS_HOLDOUT)
        options: dict[str, Any] = {
            "lipschitz": float(self.lipschitz.value),
            "width": int(self.net_width.value),
            "max_iterations": int(self.max_iterations.value),
            "stop": self.stop.value,
            "seed": int(self.seed.value),
            "ensemble": int(self.ensemble.value),
            "tile": self.tile.value,
            "tile_overlap": int(self.tile_overlap.value),
            "tile_warm_start": bool(self.tile_warm_start.value),
            "preview_every": int(self.preview_every.value),
            "upsampler": self.upsampler.value,
            "learning_rate": self._parse_learning_rate(),
            "network": self.network.value,
            "output": self.output.value,
            **({"refine": self.refine.value} if task == "denoise" else {}),
            **({"keep_known": _KEEP_KNOWN[self.keep_known.value]} if task == "inpaint"
               else {}),
            "signal_every": int(self.signal_every.value),
            "holdout": holdout,
            "input_jitter": float(self.input_jitter.value),
            "backtrack": bool(self.backtrack.value),
            "num_threads": default_num_threads(),
            "device": self._resolve_device(notify=notify),
        }
        if self.stop.value == "ratio":
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
        sigma_text = str(self.noise_sigma.value).strip()
        if self._gaussian_denoising() and sigma_text:
            options["noise_sigma"] = _parse_camera(sigma_text, "noise sigma", least="positive")
        if task in NOISE_TASKS and self.noise.value != "gaussian":
            options["noise"] = self.noise.value
            options["noise_fit"] = self.noise_fit.value
            for name, words in (("noise_gain", "camera gain"), ("noise_read_sigma", "read noise"),
                                ("noise_offset", "offset")):
                text = str(getattr(self, name).value).strip()
                if text:
                    options[name] = _parse_camera(text, words, least={
                        "noise_gain": "positive", "noise_read_sigma": "zero"}.get(name))
        try:
            return RestoreParameters.for_task(task, preset=self.preset.value, **options)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def _resolve_device(self, *, notify: bool = True) -> str:
        """The chosen device, or 'auto' with a notification when it is not available."""
        from napari.utils.notifications import show_warning

        from napari_specdip.core.devices import describe_device, resolve_device

        choice = self.device.value or "auto"
        try:
            device = resolve_device(choice)
        except ValueError as exc:
            device = resolve_device("auto")
            where = describe_device(device)
            if notify:
                show_warning(toast(f"device unavailable; running on {where}"))
            self._expected_device = where
            self.device_label.value = f"falls back to: {where} ({exc})"
            return "auto"
        self._expected_device = describe_device(device)
        return choice

    def plan(self, *, region: _planning.Box | None = None,
             params: RestoreParameters | None = None) -> _planning.RunPlan:
        """Snapshot the layers and controls into engine jobs (raises ValueError, or
        MemoryError with what to change when a plane will not fit into memory).

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
        mask = layer_mask = None
        # without a mask layer a float image's NaN pixels are the holes, as in restore():
        # a stack's slices are searched as the worker reads them, one plane's now
        holes_of = None
        if params.task == "inpaint":
            if self.mask.value is not None:
                mask = layer_mask = _planning.mask_array(self.mask.value, info)
            elif info.n_leading == 0 or region is not None:
                mask = _planning.nan_holes(info, info.data[current] if current else info.data)
            elif np.dtype(info.data.dtype).kind != "f":
                raise ValueError(_planning.NEEDS_MASK)
            else:
                holes_of = functools.partial(_planning.missing_holes, info)
        reference = None
        if self.reference.value is not None:
            reference = _planning.reference_array(self.reference.value, info, scale)
        full = info
        # a region, a slice or every slice of a stack takes the camera values of the whole
        # layer (one camera took it): a part's own few pixels would give others, and a
        # preview, a slice and the whole stack then run with the same values
        camera_from = None
        if ((region is not None or info.n_leading > 0) and params.estimates_camera
                and (layer_mask is None or layer_mask.ndim == 2)):
            # NaN holes need no mask there: the estimate leaves them out by itself
            camera_from = _planning.CameraSource.of_layer(full, layer_mask)
        if region is not None:
            info = _planning.crop_info(full, region, current)
            lead = tuple(slice(i, i + 1) for i in current)
            if mask is not None:
                mask = mask[region.slices()] if mask.ndim == 2 else mask[lead + region.slices()]
                if not mask.any():
                    raise ValueError("the region holds no pixel to fill (masked or NaN): "
                                     "move the view over the holes")
            if reference is not None:
                plane_ndim = 3 if info.rgb else 2
                reference = (reference[region.slices(scale)] if reference.ndim == plane_ndim
                             else reference[lead + region.slices(scale)])
            current = tuple([0] * info.n_leading)
        mode = (_planning.CURRENT if region is not None
                else self.stack.value if info.n_leading else None)
        planes, out_leading = _planning.planes(info, mode, current)
        warm = self._warm_starts(params, len(planes))
        interrupt = Interrupt()
        jobs: list[_planning.Job] = []
        plane_ref_ndim = 3 if info.rgb else 2
        stacked = info.n_leading > 0 and region is None
        factor = (params.factor or 1) if params.task == "super-resolve" else 1
        for k, plane in enumerate(planes):
            plane_mask = None
            if mask is not None:
                plane_mask = mask if mask.ndim == 2 else mask[plane.source]
            plane_ref = None
            if reference is not None:
                plane_ref = (reference if reference.ndim == plane_ref_ndim
                             else reference[plane.source])
            where = f"slice {_planning.slice_words(info, plane.source)}: " if stacked else ""
            job = functools.partial(
                plan_restore, task=params.task, mask=plane_mask,
                channel_axis=-1 if info.rgb else None, reference=plane_ref, parameters=params,
                # napari takes an RGB layer's fourth channel as alpha, whatever its values
                alpha=info.rgb and info.data.shape[-1] == 4,
                interrupt=interrupt, keep_state=warm and k < len(planes) - 1)
            if stacked:
                # read and checked by the worker before it restores any slice (the
                # first one here, so that a setting no slice can take is refused now)
                pending = _planning.StackSlice(info.data, plane.source, job, where, plane_mask,
                                               factor, plane_ref, camera_from, holes_of)
                jobs.append(pending.check() if k == 0 else pending)
                continue
            data = np.asarray(info.data[plane.source])
            try:
                if camera_from is None:
                    jobs.append(job(data))
                    continue
                lazy = _planning.LazyJob(data, (), job, plane_ref, camera_from)
                lazy.check(data)
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from exc
            jobs.append(lazy)
        if len(jobs) == 1:
            _planning.refuse_if_all_copied(jobs, info.name)  # a constant slice alone: now
        label = dict(_planning.stack_choices(full)) if full.n_leading else {}
        mode_label = next((k for k, v in label.items() if v == mode), "")
        plan = _planning.RunPlan(
            info=info, params=params, planes=planes, jobs=jobs, out_leading=out_leading,
            fixed_index=current, iterated=_planning.iterated_axes(mode, info.n_leading),
            mode_label=mode_label, region=region, warm_start=warm,
            mask_layer=(None if params.task != "inpaint" or self.mask.value is None
                        else str(self.mask.value.name)),
        )
        plan.extra["interrupt"] = interrupt
        return plan

    # ================================================================== estimate

    def _update_estimate(self, _value: Any = None) -> None:
        """Measure the estimate again once the settings have been still for a moment."""
        if not self._alive or not hasattr(self, "_estimate_timer"):
            return
        if self._loading:
            return  # a task or preset load changes many fields: one estimate after it
        self._estimate_timer.start()

    def _warm_starts(self, params: RestoreParameters, planes: int) -> bool:
        """Whether each slice starts from the weights the slice before ended with."""
        return bool(self.warm_start.value) and planes > 1 and params.can_warm_start

    def _estimate_request(self) -> _estimating.EstimateRequest | None:
        """One plane of the input and the settings, for an estimate (None: nothing to
        estimate yet; ValueError: the settings are impossible)."""
        layer = self.image.value
        info = self._current_info_shape()
        if layer is None or info is None:
            return None
        params = self.parameters(notify=False)
        current = tuple([0] * info.n_leading)
        if info.n_leading:
            current = _planning.current_index(layer.world_to_data, self._viewer.dims.point,
                                              info.leading_shape)
        plane = np.asarray(layer.data[current] if current else layer.data)
        mask = None
        if params.task == "inpaint":
            if self.mask.value is not None:
                mask = _planning.mask_array(self.mask.value, info)
                if mask.ndim > 2:
                    mask = mask[current]
            else:  # a float image's NaN pixels
                mask = _planning.missing_holes(info, plane)
                if not mask.any():
                    return None
        mode = self.stack.value if info.n_leading else None
        planes, _ = _planning.planes(info, mode, current)
        return _estimating.request_for(plane, params, rgb=info.rgb, mask=mask,
                                       planes=len(planes),
                                       handed_on=self._warm_starts(params, len(planes)))

    def refresh_estimate(self) -> Any:
        """Measure time and memory of a run with the current settings in a worker thread;
        the label under Run shows the answer. Returns the worker (None: nothing to do)."""
        from napari.qt.threading import create_worker

        self._estimate_timer.stop()
        if not self._alive:
            return None
        if self.is_running or self._estimate_worker is not None:
            self._estimate_pending = True  # one measurement at a time, none during a run
            return None
        self._estimate_pending = False
        try:
            request = self._estimate_request()
        except (ValueError, MemoryError):
            request = None  # Run says what is wrong
        if request is None:
            self.last_estimate = None
            self._estimate_shown = ("", _INFO_STYLE)
            self.estimate_label.value = ""
            self.estimate_label.visible = False
            return None
        self._estimate_generation += 1
        generation = self._estimate_generation
        self._show_estimate(ESTIMATING, _INFO_STYLE)
        params = self.parameters(notify=False)
        planes = request.planes

        def done(found: Estimate) -> None:
            self._on_estimate(generation, found, params, planes)

        def failed(exc: BaseException) -> None:
            self._on_estimate_failed(generation, exc)

        self._estimate_done = ended = threading.Event()
        self._estimate_cancel = request.cancel

        def measure() -> Estimate:
            try:
                return _estimating.run_estimate(request)
            finally:
                ended.set()  # for a closing widget to wait on

        worker = create_worker(measure, _start_thread=False,
                               _connect={"returned": done, "errored": failed,
                                         "finished": self._on_estimate_finished})
        self._estimate_worker = worker
        worker.start()
        return worker

    def _on_estimate(self, generation: int, found: Estimate, params: RestoreParameters,
                     planes: int) -> None:
        if not self._alive or generation != self._estimate_generation:
            return
        self.last_estimate = found
        try:
            self._show_estimate(_estimating.estimate_text(found, params, planes),
                                _INFO_STYLE if found.fits else _ERROR_STYLE)
        except RuntimeError:  # the widget was deleted with its viewer
            self._alive = False

    def _show_estimate(self, text: str, style: str) -> None:
        """The estimate under Run (kept for the run's end while the label shows progress)."""
        self._estimate_shown = (text, style)
        if self.is_running:
            return
        self._set_run_line(text, style)
        fit_label(self.estimate_label.native)

    def _set_run_line(self, text: str, style: str) -> None:
        """The line under Run, touching only what changes (a style or visibility change
        re-lays out the dock)."""
        label = self.estimate_label
        if label.native.styleSheet() != style:
            label.native.setStyleSheet(style)
        label.value = text
        if label.visible != bool(text):
            label.visible = bool(text)

    def _on_estimate_failed(self, generation: int, exc: BaseException) -> None:
        if not self._alive or generation != self._estimate_generation:
            return
        self.last_estimate = None
        try:
            self._show_estimate(f"no estimate: {in_panel_words(str(exc))}", _INFO_STYLE)
        except RuntimeError:
            self._alive = False

    def _on_estimate_finished(self) -> None:
        self._estimate_worker = None
        if self._alive and self._estimate_pending and not self.is_running:
            self._update_estimate()

    # ================================================================== starting

    def start(self) -> Any:
        """Plan on this thread and start the worker; returns it (None when refused)."""
        if self.is_running:
            return self.worker
        self._hold_estimate()
        try:
            plan = self.plan()
        except (ValueError, MemoryError) as exc:
            self._refuse(str(exc))
            return None
        return self._launch(plan)

    def _drop_estimate(self) -> None:
        """A run starting ends the estimate being measured at its next step (it would
        share the cores with the run), and a new one is measured when the run ends."""
        if self._estimate_worker is None:
            return
        self._estimate_generation += 1  # its answer, cut short, is not shown
        self._estimate_cancel.set()
        self._estimate_pending = True
        if self._estimate_shown[0] == ESTIMATING:
            self._estimate_shown = ("", _INFO_STYLE)

    def _hold_estimate(self) -> None:
        """No measuring while a run starts; one that was due is made when the run ends
        (Run pressed right after a change left the line blank)."""
        if self._estimate_timer.isActive():
            self._estimate_pending = True
        self._estimate_timer.stop()

    def _refuse(self, message: str) -> None:
        """A run that could not start: say why, and measure the estimate held for it."""
        self._show_error(message)
        if self._estimate_pending:
            self._update_estimate()

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
            self._check_plane_shown()
            # napari >= 0.9 keeps the camera on the scene (viewer.camera is deprecated there)
            scene = getattr(self._viewer, "scene", None)
            camera = scene.camera if scene is not None else self._viewer.camera
            canvas_hw = tuple(getattr(getattr(self._viewer, "canvas", None), "size", (600, 800)))
            view = _region.view_corners(camera.center, camera.zoom, canvas_hw)
            corners_arr = np.asarray([np.asarray(layer.world_to_data(
                point[:-2] + list(c)))[-2:] for c in view])
        box = _region.pixel_box(corners_arr, (h, w))
        if box is None and shapes is not None:
            raise ValueError(f"the rectangle in Shapes layer {shapes.name!r} does not overlap "
                             f"image {layer.name!r}: draw it over the image")
        if box is None:
            raise ValueError(f"image {layer.name!r} is not in view: pan or zoom to it first")
        on_cpu = "cpu" in self._expected_device.lower() or not self._expected_device
        side = _region.side_for(int(self.net_width.value), on_cpu=on_cpu)
        return _region.fit(box, (h, w), side=side)

    def _check_plane_shown(self) -> None:
        """The canvas must show the y-x plane: the camera's centre is read as (y, x), so
        another pair of axes or a 3D view would restore an area that is not on screen."""
        dims = self._viewer.dims
        if dims.ndisplay == 2 and tuple(dims.displayed) == (dims.ndim - 2, dims.ndim - 1):
            return
        shown = "a 3D view" if dims.ndisplay != 2 else "other axes than the image's y-x plane"
        raise ValueError(f"the canvas shows {shown}: a region preview restores part of the "
                         "y-x plane, so show that plane in 2D (axes in their order), or "
                         "draw a rectangle in a Shapes layer and choose it as the region")

    def start_region_preview(self) -> Any:
        """Restore the region in view with the current settings, for a quick look.

        The settings are the same :meth:`parameters` snapshot as Run, with a short
        preview interval, an iteration cap and one ensemble member; a time budget
        stops it and keeps the result, shown over the input's pixels.
        """
        if self.is_running:
            return self.worker
        self._hold_estimate()
        try:
            params = self.parameters()
            box = self.region_box()
            params = params.replace(
                preview_every=_region.PREVIEW_EVERY, ensemble=1,
                max_iterations=min(params.max_iterations, _region.MAX_ITERATIONS))
            plan = self.plan(region=box, params=params)
        except (ValueError, MemoryError) as exc:
            self._refuse(str(exc))
            return None
        layer = self._region_layer
        # the last region layer is replaced in place if it shows a region of this image
        # (another image's region stays; its shape and colour may not fit this one)
        same = (layer is not None and layer in self._viewer.layers
                and (layer.metadata.get("specdip") or {}).get("source_layer") == plan.info.name
                and bool(layer.rgb) == plan.info.rgb and layer.ndim == plan.info.ndim)
        return self._launch(plan, budget_s=_region.BUDGET_S,
                            region_layer=layer if same else None)

    def _launch(self, plan: _planning.RunPlan, *, budget_s: float | None = None,
                region_layer: Any = None) -> Any:
        self.last_error = ""
        self._drop_estimate()
        if plan.region is None:
            # last_output stays until this run adds its own: a run stopped before a
            # useful result, or one that fails, leaves the last result (and Save) as it was
            region = self._region_layer
            if region is not None and region in self._viewer.layers:
                region.visible = False  # the whole image is coming: do not cover it
        charts = self.ensure_charts()
        self.defaults_note.visible = False  # what a preset loaded: stale once fields are edited
        session = RunSession(self._viewer, plan, charts=charts, listener=self,
                             budget_s=budget_s, region_layer=region_layer,
                             source_layer=self.image.value)
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
        # armed after a double-click interval: the second click of a double click on
        # Run would otherwise stop the run it has just started
        active.enabled = False
        idle.enabled = False
        QTimer.singleShot(QApplication.doubleClickInterval(),
                          lambda: self._arm_stop(session, active))
        unread = sum(isinstance(j, _planning.StackSlice) for j in plan.jobs)
        self._set_run_line(f"reading and checking {unread + 1} slices…" if unread
                           else "starting…", _INFO_STYLE)
        self._update_result_buttons()
        return worker

    def _arm_stop(self, session: RunSession, button: PushButton) -> None:
        if (self._alive and session is self._session and session.running
                and not session.stop_requested_by):
            button.enabled = True

    # ================================================================== session listener

    def run_progress(self, session: RunSession, text: str) -> None:
        if self._alive and session is self._session:
            self.estimate_label.value = text

    def run_result(self, session: RunSession, message: str, *, error: bool) -> None:
        if not self._alive:
            return
        if error:
            self._error_status(message)
            return
        extra: list[Any] = []
        if session.is_region:
            self._region_layer = session.output
        elif session.output is not None:
            self.last_output = session.output
            # by reference, not by name: the input may be renamed, another layer may
            # take its name
            self._output_source = session.source_layer
            self.last_uncertainty = None
            extra = self._add_extra_outputs(session)
        if session.output is not None:
            self.device_label.value = f"ran on: {session.output.metadata['specdip']['device']}"
            used = session.output.metadata["specdip"].get("noise_model")
            if session.results:  # what this run used, or nothing said (no stale values)
                if not isinstance(used, dict) or used.get("model") == "gaussian":
                    used = _gaussian_noise_used(session.results[0])
                self._noise_used = (session.source_layer, used if isinstance(used, dict) else {})
                self._update_noise_note()
        for layer in extra:
            message += (f" Its uncertainty (the ensemble's standard deviation) is "
                        f"the hidden layer {layer.name!r}.")
        self._show_status(message)

    def run_ended(self, session: RunSession) -> None:
        if not self._alive:
            return
        for widget in self._controls:
            widget.enabled = True
        for button, text in ((self.run_button, "Run"), (self.preview_button, "Preview region")):
            button.text = text
            button.enabled = True
        self._show_estimate(*self._estimate_shown)
        self.reset_choices()
        self._update_result_buttons()
        if self._estimate_pending:
            self._update_estimate()

    # ================================================================== result

    def _update_result_buttons(self) -> None:
        out = self.last_output
        has = out is not None and out in self._viewer.layers and not self.is_running
        self.save_button.enabled = has
        # before/after needs the input layer, which the user may have removed
        both = has and self._source_of(out) is not None
        self.compare_button.enabled = both
        self.side_by_side.enabled = both or bool(self.side_by_side.value)  # may be turned off
        if has:
            self.compare_button.text = "Show input" if out.visible else "Show result"
        gone = has and not both
        self.compare_button.tooltip = (
            "The input layer of this result was removed: there is nothing to compare it with."
            if gone else TOOLTIPS["compare_button"])

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
        self._viewer.reset_view()  # the grid's cells (or the single view) seen whole

    def _grid(self) -> Any:
        """napari's grid model (``viewer.canvas.grid`` since 0.9, ``viewer.grid`` before)."""
        canvas = getattr(self._viewer, "canvas", None)
        return canvas.grid if canvas is not None and hasattr(canvas, "grid") else self._viewer.grid

    def _source_of(self, layer: Any) -> Any:
        """The input layer of the last result (None once it has left the viewer)."""
        source = self._output_source if layer is self.last_output else None
        return source if source is not None and source in self._viewer.layers else None


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


def _parse_camera(text: str, words: str, *, least: str | None) -> float:
    """A camera value typed by the user: ``least`` "positive", "zero" (>= 0) or None (any
    finite number: an offset may be negative)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{words}: {text!r} is not a number; leave it empty to estimate it "
                         "from the image") from None
    if (not math.isfinite(value) or (least == "positive" and value <= 0)
            or (least == "zero" and value < 0)):
        need = {"positive": "a positive number", "zero": "a number >= 0"}.get(least or "",
                                                                            "a number")
        raise ValueError(f"{words} must be {need}, got {text!r}")
    return value


def _gaussian_noise_used(result: Any) -> dict[str, Any] | None:
    """The Gaussian noise level a denoising run's stop used, in the input's units (a
    tiled run's: the median of its tiles'), given or estimated; None when it used none."""
    import math

    params = result.parameters
    variances = [params.get("stop_noise_variance")]
    if isinstance(params.get("tiles"), list):  # tiles work in the whole image's [0, 1]
        variances = [t.get("stop_noise_variance") for t in params["tiles"]]
    known = sorted(float(v) for v in variances if isinstance(v, int | float))
    if not known:
        return None
    low, high = result.intensity_range
    sigma = math.sqrt(known[len(known) // 2]) * (high - low)
    used: dict[str, Any] = {
        "model": "gaussian", "sigma": sigma,
        "source": "given" if params.get("noise_sigma") is not None else "estimated"}
    refined = params.get("refined")
    grows = refined.get("signal_dependent") if isinstance(refined, dict) else None
    if isinstance(grows, dict) and isinstance(grows.get("growth"), int | float):
        used["growth"] = float(grows["growth"])  # the stage found photon noise
    return used


def _g(value: Any) -> str:
    """A camera value for the user: 3 significant digits (``'18.9'``, ``'544'``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{float(value):.3g}" if abs(float(value)) < 1000 else f"{float(value):.0f}"
    return "?"


def _describe(field: str, value: Any) -> str:
    word = _FIELD_WORDS.get(field, field)
    if field == "tile":
        return f"{word} {dict((v, k) for k, v in TILE_CHOICES).get(value, value)}"
    if field == "keep_known":
        return f"{word} {_known_choice(value)}"
    if isinstance(value, float):
        return f"{word} {format_number(value)}"
    if isinstance(value, tuple | list):
        return f"{word} {', '.join(format_number(float(v)) for v in value)}"
    return f"{word} {value}"
