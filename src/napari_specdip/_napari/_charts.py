"""Live charts of a run: FBC bands, the stopping signal, the loss, PSNR/SSIM.

Drawn with pyqtgraph (imported when the widget is built), which is made for live
data: an update hands each curve its new arrays, so the main thread never spends
long on a redraw (the first, matplotlib version blocked it for 0.3-1 s per redraw;
``benchmarks/ui_latency.py``). The plots do not repaint on their own when their
scene changes: each update repaints all of them in one pass (``_repaint``). Left
to themselves, the four views repainted one after the other, 6-7 passes per update,
and every pass makes Qt compose the whole window with napari's OpenGL canvas:
at 20-40 ms a pass in software OpenGL that blocked the main thread 150-300 ms.
What each panel shows, its labels and colours come from
:mod:`napari_specdip.chart_panels`, shared with the CLI's PNG charts.

Data arrive one :class:`StepReport` at a time into growing numpy buffers; the
curves are refreshed at most every ``REDRAW_MS`` and not at all while the dock is
hidden. Fonts and colours follow napari's theme (``viewer.events.theme``).
"""

from __future__ import annotations

import functools
import html
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QFont, QPainter
from qtpy.QtWidgets import (
    QGraphicsView,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from napari_specdip.chart_panels import (
    PANELS,
    Panel,
    Series,
    result_text,
    stop_text,
    window_note,
)

if TYPE_CHECKING:
    from napari_specdip.core.results import StepReport

REDRAW_MS = 1000
SERIES = tuple(s.key for p in PANELS.values() for s in p.series)
#: width (px) each panel needs in a row, its longest title whole; below it they go on a
#: 2 x 2 grid (with four panels at 1066 px, three titles were cut)
PANEL_MIN_WIDTH = 330
#: height a row of panels needs to show its title, legend and a readable plot: the 2 x 2
#: grid only where the dock has room for two of them (at 262 px each plot was 80 px tall)
PANEL_MIN_HEIGHT = 200
#: the smallest plot, and the charts' smallest height: napari's window cannot be shorter than
#: its left docks plus this dock, and with 200 px here it needed 744 px, more than a 768 px
#: laptop screen leaves below its taskbar (the dock opens taller where there is room)
PLOT_MIN_HEIGHT = 60
CHARTS_MIN_HEIGHT = 130
_STYLES = {"solid": Qt.PenStyle.SolidLine, "dashed": Qt.PenStyle.DashLine,
           "dotted": Qt.PenStyle.DotLine}
# the stop marker: strong on both themes
_STOP_COLORS = {"dark": "#ffb02e", "light": "#b3261e"}


class _Buffer:
    """Growing x/y arrays (amortised O(1) append)."""

    def __init__(self) -> None:
        self.x = np.empty(256)
        self.y = np.empty(256)
        self.n = 0
        self.dirty = False

    def append(self, x: float, y: float) -> None:
        if self.n == self.x.size:
            self.x = np.concatenate([self.x, np.empty(self.n)])
            self.y = np.concatenate([self.y, np.empty(self.n)])
        self.x[self.n] = x
        self.y[self.n] = y
        self.n += 1
        self.dirty = True

    def clear(self) -> None:
        self.n = 0
        self.dirty = True


def _mix(a: str, b: str, t: float) -> str:
    """Colour ``a`` moved a fraction ``t`` towards ``b`` (hex)."""
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _log_label(value: float) -> str:
    """``0.02``, ``500``; decades far from 1 as ``10⁴``, ``10⁻³``."""
    exponent = math.floor(math.log10(value) + 1e-9)
    if abs(exponent) >= 3 and round(value / 10.0 ** exponent) == 1:
        return "10" + str(exponent).translate(_SUPERSCRIPT)
    return f"{value:.3g}"


@functools.cache
def _log_axis_class() -> type:
    import pyqtgraph as pg

    class LogAxis(pg.AxisItem):  # type: ignore[misc]
        """Log axis labels that never crowd: decades, and 2 and 5 only when the range
        is short; pyqtgraph labels every minor tick otherwise."""

        def logTickStrings(self, values: list[float], scale: float, spacing: float
                           ) -> list[str]:
            low, high = self.range
            span = abs(high - low)  # in decades
            keep = (1,) if span > 2.0 else (1, 2, 5) if span > 0.6 else tuple(range(1, 10))
            out = []
            for v in values:
                value = 10.0 ** (float(v) * scale)
                mantissa = round(value / 10.0 ** math.floor(math.log10(value) + 1e-9))
                out.append(_log_label(value) if mantissa in keep else "")
            return out

    return LogAxis


def _LogAxis(**kwargs: Any) -> Any:  # noqa: N802 (a class factory, pyqtgraph imported late)
    return _log_axis_class()(**kwargs)


class _ElidedTitle(QLabel):
    """A one-line title that ends in "..." where the panel is too narrow for it (a wrapped
    or clipped title lost its end), whole in its tooltip then."""

    def __init__(self, text: str, help_text: str) -> None:
        super().__init__(text)
        self._help = help_text
        self.setToolTip(help_text)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def elided(self) -> str:
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             self.contentsRect().width())

    def resizeEvent(self, event: Any) -> None:  # Qt API name
        super().resizeEvent(event)
        cut = self.elided() != self.text()
        self.setToolTip(f"{self.text()}\n\n{self._help}" if cut else self._help)

    def paintEvent(self, event: Any) -> None:  # Qt API name
        painter = QPainter(self)
        painter.setFont(self.font())
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.drawText(self.contentsRect(),
                         int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                         self.elided())
        painter.end()


class ChartPanel(QWidget):
    """One chart: a title with a help button, a colour legend, and the plot."""

    def __init__(self, panel: Panel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg

        self.panel = panel
        self.setObjectName(f"specdip-chart-{panel.key}")
        self.title = _ElidedTitle(panel.title, panel.help)
        self.help_button = QToolButton()
        self.help_button.setText("?")
        self.help_button.setAutoRaise(True)
        self.help_button.setToolTip(panel.help)
        self.help_button.clicked.connect(self.show_help)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        self.legend.setToolTip(panel.help)
        head = QHBoxLayout()
        head.setContentsMargins(4, 0, 0, 0)
        head.setSpacing(2)
        head.addWidget(self.title, 1)
        head.addWidget(self.help_button)

        axes = {"left": _LogAxis(orientation="left")} if panel.log_y else None
        self.plot_widget = pg.PlotWidget(axisItems=axes)
        self.plot_widget.setToolTip(panel.help)
        self.plot_widget.setMinimumHeight(PLOT_MIN_HEIGHT)
        # repainted by the charts widget, all plots in one pass (see the module's text)
        self.plot_widget.setViewportUpdateMode(
            QGraphicsView.ViewportUpdateMode.NoViewportUpdate)
        self.plot_widget.setSizePolicy(QSizePolicy.Policy.Expanding,
                                       QSizePolicy.Policy.Expanding)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "iteration")
        self.plot.setLabel("left", panel.y_label)
        for name in ("left", "bottom", "right"):
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        if panel.log_y:
            self.plot.setLogMode(y=True)
        # ranges are set by the widget and only ever grow (in steps), so that most
        # updates repaint the curves alone, not the axes (whose text is dear to draw)
        self.plot.disableAutoRange()
        self.plot.setXRange(0.0, 10.0, padding=0.0)
        if panel.y_range is not None:
            self.plot.setYRange(*panel.y_range, padding=0.0)
        self.x_range = (0.0, 10.0)
        self.y_range: tuple[float, float] | None = panel.y_range
        self.right_range: tuple[float, float] | None = None
        self.right_view: Any = None
        if panel.right_label:
            self.right_view = pg.ViewBox()
            self.right_view.disableAutoRange()
            self.right_view.setZValue(10)  # above the left view's filled background
            self.plot.showAxis("right")
            self.plot.scene().addItem(self.right_view)
            self.plot.getAxis("right").linkToView(self.right_view)
            self.right_view.setXLink(self.plot)
            self.plot.setLabel("right", panel.right_label)
            self.plot.vb.sigResized.connect(self._sync_right_view)
        self.curves: dict[str, Any] = {}
        for series in panel.series:
            curve = pg.PlotDataItem([], [], connect="finite", name=series.label)
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
            if series.right and self.right_view is not None:
                self.right_view.addItem(curve)
            else:
                self.plot.addItem(curve)
            self.curves[series.key] = curve
        # notes in the plot's pixel coordinates (children of the view box, not of its data)
        self.note = pg.TextItem(panel.waiting, anchor=(0.5, 0.5))
        self.note.setParentItem(self.plot.vb)
        self.stop_label = pg.TextItem("", anchor=(1.0, 0.0))
        self.stop_label.setParentItem(self.plot.vb)
        self.stop_label.setVisible(False)
        self.plot.vb.sigResized.connect(self._place_notes)
        self.stop_line: Any = None
        self.result_line: Any = None  # the iteration the result holds, when not the stop

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(head)
        layout.addWidget(self.legend)
        layout.addWidget(self.plot_widget, 1)
        self._colors: dict[str, str] = {}
        self._drawn: frozenset[str] = frozenset()  # curves with points (see set_drawn)

    def set_x_max(self, right: float) -> None:
        if right != self.x_range[1]:
            self.x_range = (0.0, right)
            self.plot.setXRange(0.0, right, padding=0.0)

    def fit_y(self, values: npt.NDArray[np.float64], *, right: bool = False) -> None:
        """Grow the y range (log10 units on a log axis) to hold ``values``, with a margin;
        never shrink it during a run."""
        if self.panel.y_range is not None and not right:
            return
        finite = values[np.isfinite(values)]
        if self.panel.log_y and not right:
            finite = np.log10(finite[finite > 0])
        if finite.size == 0:
            return
        low, high = float(finite.min()), float(finite.max())
        current = self.right_range if right else self.y_range
        if current is not None and current[0] <= low and high <= current[1]:
            return
        if current is not None:
            low, high = min(low, current[0]), max(high, current[1])
        step = 0.25 if self.panel.log_y and not right else _nice_step(high - low)
        new = (math.floor(low / step - 0.5) * step, math.ceil(high / step + 0.5) * step)
        if right:
            new = (max(new[0], -0.05), min(new[1], 1.05))
            self.right_range = new
            if self.right_view is not None:
                self.right_view.setYRange(*new, padding=0.0)
        else:
            self.y_range = new
            self.plot.setYRange(*new, padding=0.0)

    def reset_ranges(self) -> None:
        self.x_range = (0.0, 0.0)
        self.set_x_max(10.0)
        self.y_range = self.panel.y_range
        self.right_range = None

    def show_help(self) -> None:
        QToolTip.showText(self.help_button.mapToGlobal(self.help_button.rect().bottomLeft()),
                          self.panel.help, self.help_button)

    def _sync_right_view(self) -> None:
        if self.right_view is not None:
            self.right_view.setGeometry(self.plot.vb.sceneBoundingRect())
            self.right_view.linkedViewChanged(self.plot.vb, self.right_view.XAxis)

    def _place_notes(self) -> None:
        rect = self.plot.vb.boundingRect()
        self.note.setPos(rect.center())
        self.stop_label.setPos(rect.right() - 6, rect.top() + 4)

    def set_note(self, text: str) -> None:
        """A line in the middle of the plot (why it is empty), or nothing."""
        self.note.setText(text)
        self.note.setVisible(bool(text))
        self._place_notes()

    def legend_labels(self) -> list[str]:
        return [s.label for s in self._legend_series()]

    def _legend_series(self) -> list[Series]:
        """The curves the legend names: those drawn once any is (a rule draws only its
        own, e.g. the held-out curves need the hold-out stop); all of them before."""
        if not self._drawn:
            return list(self.panel.series)
        return [s for s in self.panel.series if s.key in self._drawn]

    def set_drawn(self, keys: frozenset[str]) -> None:
        """Which curves have points: the legend names only those (see
        :meth:`_legend_series`)."""
        if keys != self._drawn:
            self._drawn = keys
            if self._colors:
                self.legend.setText(_legend_html(self._legend_series(), self._colors))

    def apply_theme(self, colors: dict[str, str], font: QFont) -> None:
        import pyqtgraph as pg

        self._colors = colors
        text, plot_bg = colors["text"], colors["plot"]
        self.plot_widget.setBackground(colors["background"])
        self.plot.vb.setBackgroundColor(plot_bg)
        axis_pen = pg.mkPen(_mix(text, colors["background"], 0.35))
        for name in ("left", "bottom", "right"):
            axis = self.plot.getAxis(name)
            axis.setPen(axis_pen)
            axis.setTextPen(pg.mkPen(text))
            axis.setStyle(tickFont=font)
            axis.label.setFont(font)
        size = f"{font.pointSizeF():g}pt"
        self.plot.setLabel("bottom", "iteration", color=text, size=size)
        self.plot.setLabel("left", self.panel.y_label, color=text, size=size)
        if self.panel.right_label:
            self.plot.setLabel("right", self.panel.right_label, color=text, size=size)
        for series in self.panel.series:
            self.curves[series.key].setPen(_pen(series, colors.get("light") == "1"))
        bold = QFont(font)
        bold.setBold(True)
        self.title.setFont(bold)
        self.legend.setFont(font)
        self.legend.setText(_legend_html(self._legend_series(), colors))
        self.note.setColor(_mix(text, colors["background"], 0.25))
        self.note.setFont(font)
        self.stop_label.setFont(bold)
        self.stop_label.setColor(text)
        self.stop_label.fill = pg.mkBrush(colors["background"] + "e6")
        self.stop_label.border = pg.mkPen(colors["stop"], width=1.5)
        for line in (self.stop_line, self.result_line):
            if line is not None:
                line.setPen(self._marker_pen(line is self.result_line))
        self.stop_label.update()

    def _marker_pen(self, result: bool) -> Any:
        """The stop marker dashed, the result marker dotted, in the stop colour."""
        import pyqtgraph as pg

        style = Qt.PenStyle.DotLine if result else Qt.PenStyle.DashLine
        return pg.mkPen(self._colors.get("stop", "#ffb02e"), width=1.5, style=style)

    def _marker(self, line: Any, iteration: int, *, result: bool) -> Any:
        import pyqtgraph as pg

        if line is None:
            line = pg.InfiniteLine(angle=90, movable=False)
            line.setZValue(-5)
            self.plot.addItem(line, ignoreBounds=True)
        line.setPen(self._marker_pen(result))
        line.setValue(iteration)
        line.setVisible(True)
        return line

    def mark_stop(self, iteration: int, label: str, result: int | None = None) -> None:
        """The stop marker at ``iteration`` and, when the result is an earlier
        iteration's output, a dotted one at ``result``."""
        self.stop_line = self._marker(self.stop_line, iteration, result=False)
        if result is not None:
            self.result_line = self._marker(self.result_line, result, result=True)
        elif self.result_line is not None:
            self.result_line.setVisible(False)
        self.stop_label.setText(label)
        self.stop_label.setVisible(bool(label))
        self._place_notes()

    def clear_stop(self) -> None:
        for line in (self.stop_line, self.result_line):
            if line is not None:
                line.setVisible(False)
        self.stop_label.setVisible(False)


def _pen(series: Series, light: bool) -> Any:
    import pyqtgraph as pg

    return pg.mkPen(series.color, width=series.width + (0.3 if light else 0.0),
                    style=_STYLES[series.style])


def _unbroken(text: str) -> str:
    return text.replace(" ", "&nbsp;").replace("-", "&#8209;")


def _legend_html(series: list[Series], colors: dict[str, str]) -> str:
    if len(series) < 2:
        return ""
    marks = {"solid": "━━", "dashed": "╍╍", "dotted": "┈┈"}
    # non-breaking spaces and hyphens inside an item: the legend wraps between items only
    items = [f'<span style="color:{s.color}">{marks[s.style]}</span>&nbsp;'
             f'{_unbroken(html.escape(s.label))}' for s in series]
    return f'<span style="color:{colors["text"]}">' + " &nbsp; ".join(items) + "</span>"


class ChartsWidget(QWidget):
    """Charts of the current run (of the current slice, for a stack)."""

    def __init__(self, viewer: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("specdip-charts")
        self._viewer = viewer
        self.title_label = QLabel("")
        self.title_label.setVisible(False)
        self.panels: dict[str, ChartPanel] = {key: ChartPanel(panel)
                                              for key, panel in PANELS.items()}
        self._grid = QGridLayout()
        self._grid.setContentsMargins(2, 2, 2, 2)
        self._grid.setHorizontalSpacing(8)
        self._grid.setVerticalSpacing(6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addWidget(self.title_label)
        layout.addLayout(self._grid, 1)
        self.setMinimumSize(360, CHARTS_MIN_HEIGHT)

        self.data: dict[str, _Buffer] = {key: _Buffer() for key in SERIES}
        self.stop_iteration: int | None = None
        self.stop_reason: str | None = None
        self.result_iteration: int | None = None  # marked when it is not the stop
        self.has_reference = False
        self.stop_window = 100
        self.signal_every = 1
        self.stop_rule = "ratio"
        self.redraw_count = 0  # data syncs
        self.draw_count = 0  # syncs while the charts were on screen
        self.draw_times: list[float] = []  # seconds spent in each on-screen sync
        self._stale = False
        self._columns = 0
        self.theme_name = "dark"
        self._colors: dict[str, str] = {}
        self._font = QFont()

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)

        if viewer is not None:
            viewer.events.theme.connect(self._on_theme)
            self.apply_theme(viewer.theme)
        else:
            self.apply_theme("dark")
        self._set_reference_visible(False)
        self._relayout(force=True)
        self._update_notes()

    # ------------------------------------------------------------------ layout

    def visible_panels(self) -> list[str]:
        return [k for k, p in PANELS.items() if self.has_reference or not p.needs_reference]

    def _set_reference_visible(self, visible: bool) -> None:
        self.panels["quality"].setVisible(visible)

    def _relayout(self, *, force: bool = False) -> None:
        """One row when the dock is wide or short, a 2 x 2 grid when it is narrow and tall."""
        keys = self.visible_panels()
        wide = self.width() >= PANEL_MIN_WIDTH * len(keys)
        short = self.height() < 2 * PANEL_MIN_HEIGHT
        columns = len(keys) if wide or short else 2
        if columns == self._columns and not force:
            return
        self._columns = columns
        for panel in self.panels.values():
            self._grid.removeWidget(panel)
        for i, key in enumerate(keys):
            row, col = divmod(i, columns)
            self._grid.addWidget(self.panels[key], row, col)
        for col in range(4):
            self._grid.setColumnStretch(col, 1 if col < columns else 0)

    def resizeEvent(self, event: Any) -> None:  # Qt API name
        super().resizeEvent(event)
        self._relayout()

    @property
    def columns(self) -> int:
        return self._columns

    # ------------------------------------------------------------------ data

    def reset(self, *, has_reference: bool = False, title: str = "",
              window: int | None = None, every: int | None = None,
              rule: str | None = None) -> None:
        """Forget the previous run; show the PSNR/SSIM panel only with a reference.

        ``window`` (iterations), ``every`` (iterations between two signals) and the stop
        ``rule`` tell the ratio panel what to say while its window means are empty.
        """
        self._timer.stop()
        for buffer in self.data.values():
            buffer.clear()
        self.stop_iteration = None
        self.stop_reason = None
        self.result_iteration = None
        for panel in self.panels.values():
            panel.clear_stop()
            panel.reset_ranges()
        if window is not None:
            self.stop_window = int(window)
        if every is not None:
            self.signal_every = max(1, int(every))
        if rule is not None:
            self.stop_rule = rule
        self.has_reference = has_reference
        self._set_reference_visible(has_reference)
        self.set_title(title)
        self._relayout(force=True)
        self.redraw()

    def set_title(self, title: str) -> None:
        """A line above the charts (e.g. which slice of a stack is shown)."""
        self.title_label.setText(title)
        self.title_label.setVisible(bool(title))

    def add_report(self, report: StepReport, *, schedule: bool = True) -> None:
        """Append one step; the curves follow within ``REDRAW_MS`` (``schedule=False``:
        at the caller's next :meth:`redraw`, to paint together with its own updates)."""
        it = float(report.iteration)
        self.data["loss"].append(it, report.loss)
        for key, value in report.signals.items():
            if key == "loss":  # the step's own loss, appended above
                continue
            buffer = self.data.get(key)
            if buffer is not None:
                buffer.append(it, value)
        if schedule and not self._timer.isActive():
            self._timer.start()

    def series(self, key: str) -> npt.NDArray[np.float64]:
        """The y values of one curve so far (a copy)."""
        buffer = self.data[key]
        return buffer.y[: buffer.n].copy()

    def iterations(self, key: str) -> npt.NDArray[np.float64]:
        buffer = self.data[key]
        return buffer.x[: buffer.n].copy()

    def shown_points(self, key: str) -> int:
        """Points the curve holds on screen (after the last sync)."""
        for panel in self.panels.values():
            curve = panel.curves.get(key)
            if curve is not None:
                x, _ = curve.getOriginalDataset()
                return 0 if x is None else len(x)
        raise KeyError(key)

    def mark_stop(self, iteration: int, reason: str, result: int | None = None) -> None:
        """A vertical marker where the run stopped, on every panel; words on the ratio panel.

        ``result``: the iteration the result holds when it is not the stop (a run that
        reached its cap returning the auto rule's earlier minimum), marked dotted and
        named under the stop's words (see :func:`~napari_specdip.chart_panels.stop_marks`).
        """
        self.stop_iteration = int(iteration)
        self.stop_reason = reason
        self.result_iteration = None if result is None else int(result)
        text = stop_text(iteration, reason)
        if result is not None:
            text += "\n" + result_text(result)
        # the words go on the panel of the signal that decided
        words = "loss" if reason == "holdout" else "ratio"
        for key, panel in self.panels.items():
            panel.mark_stop(iteration, text if key == words else "", self.result_iteration)
        self.redraw()

    def flush(self) -> None:
        """Draw now (end of a run)."""
        self.redraw()

    # ------------------------------------------------------------------ drawing

    def redraw(self) -> None:
        """Hand the curves their new data (only those that changed), if on screen.

        A hidden dock is only marked stale and synced when shown again.
        """
        self._timer.stop()
        self.redraw_count += 1
        if not self.isVisible():
            self._stale = True
            return
        start = time.perf_counter()
        last = max((b.x[b.n - 1] for b in self.data.values() if b.n), default=0.0)
        right = _nice_ceiling(max(last, float(self.stop_iteration or 0)) * 1.05)
        for panel in self.panels.values():
            panel.set_x_max(right)
            for series in panel.panel.series:
                buffer = self.data[series.key]
                if not buffer.dirty:
                    continue
                buffer.dirty = False
                x = buffer.x[: buffer.n]
                y = buffer.y[: buffer.n]
                panel.fit_y(y, right=series.right)
                if panel.panel.log_y:
                    y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
                panel.curves[series.key].setData(x, y, connect="finite")
        self._update_notes()
        self._repaint()
        self._stale = False
        self.draw_count += 1
        self.draw_times.append(time.perf_counter() - start)
        del self.draw_times[:-1000]

    def _repaint(self) -> None:
        """Schedule one repaint of every plot (they do not follow their scenes)."""
        for panel in self.panels.values():
            panel.plot_widget.viewport().update()

    def _update_notes(self) -> None:
        """Say why a panel is empty: no point yet, or window means not started."""
        for key, panel in self.panels.items():
            drawn = frozenset(k for k in panel.panel.series_keys() if self.data[k].n)
            panel.set_drawn(drawn)
            has_points = bool(drawn)
            note = "" if has_points else panel.panel.waiting
            if key == "ratio" and has_points and not self.data["ratio_mean_recent"].n \
                    and self.stop_iteration is None and self.stop_rule == "ratio":
                # the rule averages window / every values per window
                every = self.signal_every
                note = window_note(max(1, round(self.stop_window / every)), every)
            panel.set_note(note)

    def showEvent(self, event: Any) -> None:  # Qt API name
        super().showEvent(event)
        if self._stale:
            self._timer.start(0)

    # ------------------------------------------------------------------ theme

    def _on_theme(self, event: Any = None) -> None:
        theme = getattr(event, "value", None) or (self._viewer.theme if self._viewer else "dark")
        try:
            self.apply_theme(theme)
        except RuntimeError:  # the Qt side is gone (viewer closing)
            return

    def apply_theme(self, theme_name: str) -> None:
        """Colour the charts with napari theme ``theme_name`` ('dark', 'light', ...)."""
        from napari.utils.theme import get_theme

        try:
            theme = get_theme(theme_name)
        except (ValueError, KeyError):
            theme = get_theme("dark")
        colors = {key: _hex(getattr(theme, key)) for key in
                  ("background", "foreground", "primary", "secondary", "highlight", "text",
                   "warning", "current", "canvas")}
        light = (str(getattr(theme, "id", theme_name)) == "light"
                 or _luma(colors["background"]) > 0.5)
        colors["plot"] = _mix(colors["background"], colors["canvas"], 0.5)
        colors["stop"] = _STOP_COLORS["light" if light else "dark"]
        colors["light"] = "1" if light else "0"
        self.theme_name = str(theme_name)
        self._colors = colors
        self._font = _theme_font(str(getattr(theme, "font_size", "")))
        self.setStyleSheet(f"#specdip-charts {{ background: {colors['background']}; }}"
                           f"#specdip-charts QLabel {{ color: {colors['text']}; }}")
        self.title_label.setFont(self._font)
        for panel in self.panels.values():
            panel.apply_theme(colors, self._font)
        self._repaint()

    @property
    def colors(self) -> dict[str, str]:
        """The theme colours in use (hex)."""
        return dict(self._colors)

    @property
    def font_point_size(self) -> float:
        return float(self._font.pointSizeF())


def _hex(color: Any) -> str:
    """napari theme colours are pydantic ``Color`` objects; fall back to ``str``."""
    as_hex = getattr(color, "as_hex", None)
    if callable(as_hex):
        value = str(as_hex())
        if len(value) == 4:  # '#abc' short form
            value = "#" + "".join(c * 2 for c in value[1:])
        return value[:7]
    return str(color)


def _nice_ceiling(value: float) -> float:
    """The smallest round number (10, 20, 50, 100, 200, ...) not below ``value``: the
    x axis grows in a few steps, not at every point (a new range repaints every axis
    and grid, about 50 ms of the main thread for the four plots in software OpenGL)."""
    value = max(value, 10.0)
    decade = 10.0 ** math.floor(math.log10(value))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * decade >= value - 1e-9:
            return m * decade
    return 10.0 * decade


def _nice_step(span: float) -> float:
    """A round step of about a tenth of ``span`` (at least 0.01)."""
    span = max(span, 0.1)
    decade = 10.0 ** math.floor(math.log10(span / 10.0))
    return max(0.01, decade * (5.0 if span / decade > 50 else 2.0 if span / decade > 20 else 1.0))


def _luma(color: str) -> float:
    r, g, b = (int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _theme_font(size: str) -> QFont:
    """The application's font at napari's theme size (e.g. '9pt')."""
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    font = QFont(app.font()) if isinstance(app, QApplication) else QFont()
    try:
        points = float(size.removesuffix("pt"))
    except ValueError:
        points = math.nan
    if math.isfinite(points) and points > 0:
        font.setPointSizeF(points)
    return font

