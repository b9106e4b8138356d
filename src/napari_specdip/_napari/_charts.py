"""Live charts of a run: FBC bands, the stopping signal, the loss, PSNR/SSIM.

A matplotlib canvas (qtagg backend, imported when the widget is built) themed
with napari's current theme (re-themed on ``viewer.events.theme``). Data arrive
one :class:`StepReport` at a time; redraws are throttled (at most one every
``REDRAW_MS``, longer when drawing is slow, none while the canvas is hidden) so
that a fast run cannot flood the GUI thread. Line artists are kept in
:attr:`ChartsWidget.lines` (``lines["fbc1"].get_ydata()``) for tests and scripting.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.lines import Line2D

    from napari_specdip.core.results import StepReport

REDRAW_MS = 250
BANDS = ("fbc1", "fbc2", "fbc3", "fbc4", "fbc5")
# low (blue) to high (red) frequency; readable on dark and light themes
BAND_COLORS = ("#4575b4", "#5aaed6", "#4daf4a", "#f39c34", "#d73027")
SERIES = (*BANDS, "ratio", "ratio_mean_previous", "ratio_mean_recent", "loss", "psnr", "ssim")
PANELS = ("fbc", "ratio", "loss", "quality")

# margins of each panel in points: left, right, bottom, top
_MARGINS = (36.0, 8.0, 24.0, 16.0)
_QUALITY_RIGHT = 40.0


class ChartsWidget(QWidget):
    """Charts of the current run (of the current slice, for a stack)."""

    def __init__(self, viewer: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.setObjectName("specdip-charts")
        self._viewer = viewer
        self.figure = Figure(figsize=(8, 2.4), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)  # type: ignore[no-untyped-call]
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(160)
        self.title_label = QLabel("")
        self.title_label.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.title_label)
        layout.addWidget(self.canvas)
        self.setMinimumSize(320, 180)

        self.data: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in SERIES}
        self.axes: dict[str, Axes] = {}
        self.lines: dict[str, Line2D] = {}
        self.stop_iteration: int | None = None
        self.stop_reason: str | None = None
        self.has_reference = False
        self.redraw_count = 0  # data syncs
        self.draw_count = 0  # actual draws (only while the canvas is on screen)
        self._stale = False
        self.theme_name = "dark"
        self._colors: dict[str, str] = {}
        self._stop_lines: list[Any] = []
        self._legends: list[Any] = []
        self._build()

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)

        if viewer is not None:
            viewer.events.theme.connect(self._on_theme)
            self.apply_theme(viewer.theme)
        else:
            self.apply_theme("dark")
        self.canvas.mpl_connect("resize_event", self._on_resize)
        self._layout_axes()

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        fig = self.figure
        fbc = fig.add_axes((0, 0, 1, 1))
        ratio = fig.add_axes((0, 0, 1, 1))
        loss = fig.add_axes((0, 0, 1, 1))
        quality = fig.add_axes((0, 0, 1, 1))
        ssim_ax = quality.twinx()
        self.axes = {"fbc": fbc, "ratio": ratio, "loss": loss, "quality": quality,
                     "ssim": ssim_ax}
        for name, color in zip(BANDS, BAND_COLORS, strict=True):
            band = name[-1]
            label = {"1": "1 (low)", "5": "5 (high)"}.get(band, band)
            (self.lines[name],) = fbc.plot([], [], color=color, lw=1.3, label=label)
        fbc.set_title("FBC per band (low → high)")
        fbc.set_ylabel("FBC")
        (self.lines["ratio"],) = ratio.plot([], [], color="#3b9be0", lw=1.2, label="blur/sharpness")
        (self.lines["ratio_mean_previous"],) = ratio.plot(
            [], [], color="#f39c34", lw=1.2, ls="--", label="mean, previous window")
        (self.lines["ratio_mean_recent"],) = ratio.plot(
            [], [], color="#e05a9b", lw=1.2, ls=":", label="mean, recent window")
        ratio.set_title("stopping signal")
        _log_axis(ratio)
        (self.lines["loss"],) = loss.plot([], [], color="#f39c34", lw=1.0)
        loss.set_title("loss")
        _log_axis(loss)
        (self.lines["psnr"],) = quality.plot([], [], color="#4daf4a", lw=1.3, label="PSNR (dB)")
        (self.lines["ssim"],) = ssim_ax.plot([], [], color="#b07ee8", lw=1.3, label="SSIM")
        quality.set_title("PSNR / SSIM vs reference")
        quality.set_ylabel("PSNR (dB)")
        ssim_ax.set_ylabel("SSIM")
        for ax in (fbc, ratio, loss, quality):
            ax.set_xlabel("iteration")
        self._legends = [
            fbc.legend(loc="lower right", fontsize=6.5, ncol=5, handlelength=1.0,
                       columnspacing=0.8, borderpad=0.3, framealpha=0.5),
            ratio.legend(loc="upper right", fontsize=6.5, handlelength=1.6, borderpad=0.3,
                         framealpha=0.5),
            quality.legend(handles=[self.lines["psnr"], self.lines["ssim"]], loc="lower right",
                           fontsize=6.5, borderpad=0.3, framealpha=0.5),
        ]
        for ax in (*self.axes.values(),):
            ax.tick_params(labelsize=7, which="both")
            ax.title.set_fontsize(8.5)
            ax.xaxis.label.set_fontsize(7.5)
            ax.yaxis.label.set_fontsize(7.5)
        self._set_reference_visible(False)

    def _visible_panels(self) -> list[str]:
        return list(PANELS if self.has_reference else PANELS[:3])

    def _set_reference_visible(self, visible: bool) -> None:
        self.axes["quality"].set_visible(visible)
        self.axes["ssim"].set_visible(visible)

    def _layout_axes(self) -> None:
        """Place the panels in one row when wide, on a grid when narrow (pixel margins)."""
        width = max(float(self.figure.bbox.width), 1.0)
        height = max(float(self.figure.bbox.height), 1.0)
        px = self.figure.dpi / 72.0
        panels = self._visible_panels()
        n = len(panels)
        ncols = n if width >= 2.2 * height else 2 if n > 1 and width >= 0.8 * height else 1
        nrows = math.ceil(n / ncols)
        cw, ch = width / ncols, height / nrows
        left, right, bottom, top = (m * px for m in _MARGINS)
        for i, name in enumerate(panels):
            r, c = divmod(i, ncols)
            r_right = _QUALITY_RIGHT * px if name == "quality" else right
            x0 = c * cw + left
            y0 = (nrows - 1 - r) * ch + bottom
            w = max(cw - left - r_right, 1.0)
            h = max(ch - bottom - top, 1.0)
            box = (x0 / width, y0 / height, w / width, h / height)
            self.axes[name].set_position(box)
            if name == "quality":
                self.axes["ssim"].set_position(box)

    # ------------------------------------------------------------------ data

    def reset(self, *, has_reference: bool = False, title: str = "") -> None:
        """Forget the previous run; show the PSNR/SSIM panel only with a reference."""
        self._timer.stop()
        for xs, ys in self.data.values():
            xs.clear()
            ys.clear()
        for artist in self._stop_lines:
            artist.remove()
        self._stop_lines.clear()
        self.stop_iteration = None
        self.stop_reason = None
        self.has_reference = has_reference
        self._set_reference_visible(has_reference)
        self.set_title(title)
        self._layout_axes()
        self.redraw()

    def set_title(self, title: str) -> None:
        """A line above the charts (e.g. which slice of a stack is shown)."""
        self.title_label.setText(title)
        self.title_label.setVisible(bool(title))

    def add_report(self, report: StepReport) -> None:
        """Append one step; a redraw follows within ``REDRAW_MS``."""
        it = float(report.iteration)
        self._append("loss", it, report.loss)
        for key, value in report.signals.items():
            if key in self.data:
                self._append(key, it, value)
        if not self._timer.isActive():
            self._timer.start()

    def _append(self, key: str, x: float, y: float) -> None:
        xs, ys = self.data[key]
        xs.append(x)
        ys.append(float(y))

    def mark_stop(self, iteration: int, reason: str) -> None:
        """A vertical marker where the run stopped, on every panel."""
        for artist in self._stop_lines:
            artist.remove()
        self._stop_lines.clear()
        self.stop_iteration = int(iteration)
        self.stop_reason = reason
        color = self._colors.get("warning", "#e3b617")
        for name in ("fbc", "ratio", "loss", "quality"):
            self._stop_lines.append(self.axes[name].axvline(
                iteration, color=color, lw=1.0, ls="--", zorder=0))
        self._stop_lines.append(self.axes["ratio"].text(
            0.02, 0.04, f"stopped at {iteration} ({reason})", transform=self.axes["ratio"].transAxes,
            fontsize=7, color=color))
        self.redraw()

    def flush(self) -> None:
        """Draw now (end of a run)."""
        self.redraw()

    # ------------------------------------------------------------------ drawing

    def redraw(self) -> None:
        """Put the data in the lines, then draw if the canvas is on screen.

        A hidden canvas is only marked stale (drawn when shown). The next timed
        redraw waits at least ``4 x`` the last draw's duration, so that drawing
        never takes more than a fifth of the GUI thread.
        """
        self._timer.stop()
        self._sync()
        self.redraw_count += 1
        if not self.canvas.isVisible():
            self._stale = True
            return
        start = time.perf_counter()
        self.canvas.draw()  # type: ignore[no-untyped-call]
        self.draw_count += 1
        spent = time.perf_counter() - start
        self._stale = False
        self._timer.setInterval(max(REDRAW_MS, int(4000 * spent)))

    def _sync(self) -> None:
        for key, line in self.lines.items():
            xs, ys = self.data[key]
            line.set_data(xs, ys)
        last = max((xs[-1] for xs, _ in self.data.values() if xs), default=1.0)
        right = max(last, float(self.stop_iteration or 0), 1.0)
        for name in ("fbc", "ratio", "loss", "quality"):
            self.axes[name].set_xlim(0.0, right * 1.02)
        self._autoscale("fbc", BANDS, log=False)
        self._autoscale("ratio", ("ratio", "ratio_mean_previous", "ratio_mean_recent"), log=True)
        self._autoscale("loss", ("loss",), log=True)
        if self.has_reference:
            self._autoscale("quality", ("psnr",), log=False)
            self._autoscale("ssim", ("ssim",), log=False)

    def showEvent(self, event: Any) -> None:  # Qt API name
        super().showEvent(event)
        if self._stale:
            self._timer.start(0)

    def _autoscale(self, axis: str, keys: tuple[str, ...], *, log: bool) -> None:
        """Fit the y range to finite (positive, on a log axis) data, without matplotlib's
        autoscaling (which warns on empty log axes)."""
        values = [v for k in keys for v in self.data[k][1]
                  if math.isfinite(v) and (v > 0 or not log)]
        if not values:
            return
        low, high = min(values), max(values)
        ax = self.axes[axis]
        if log:
            lo, hi = math.log10(low), math.log10(high)
            pad = max((hi - lo) * 0.08, 0.05)
            ax.set_ylim(10 ** (lo - pad), 10 ** (hi + pad))
        else:
            pad = max((high - low) * 0.08, 1e-3 * max(abs(high), 1.0))
            ax.set_ylim(low - pad, high + pad)

    # ------------------------------------------------------------------ theme

    def _on_theme(self, event: Any = None) -> None:
        theme = getattr(event, "value", None) or (self._viewer.theme if self._viewer else "dark")
        try:
            self.apply_theme(theme)
        except RuntimeError:  # the Qt side is gone (viewer closing)
            return

    def apply_theme(self, theme_name: str) -> None:
        """Colour the figure with napari theme ``theme_name`` ('dark', 'light', ...)."""
        from napari.utils.theme import get_theme

        try:
            theme = get_theme(theme_name)
        except (ValueError, KeyError):
            theme = get_theme("dark")
        colors = {key: _hex(getattr(theme, key)) for key in
                  ("background", "foreground", "primary", "secondary", "highlight", "text",
                   "warning", "current", "canvas")}
        self.theme_name = str(theme_name)
        self._colors = colors
        fig = self.figure
        fig.set_facecolor(colors["background"])
        for name, ax in self.axes.items():
            if name != "ssim":
                ax.set_facecolor(colors["foreground"])
            for spine in ax.spines.values():
                spine.set_color(colors["secondary"])
            ax.tick_params(colors=colors["text"], which="both")
            ax.title.set_color(colors["text"])
            ax.xaxis.label.set_color(colors["text"])
            ax.yaxis.label.set_color(colors["text"])
        for legend in self._legends:
            frame = legend.get_frame()
            frame.set_facecolor(colors["background"])
            frame.set_edgecolor(colors["secondary"])
            for text in legend.get_texts():
                text.set_color(colors["text"])
        for artist in self._stop_lines:
            artist.set_color(colors["warning"])
        self._request_draw()

    @property
    def colors(self) -> dict[str, str]:
        """The theme colours in use (hex)."""
        return dict(self._colors)

    def _on_resize(self, event: Any = None) -> None:
        self._layout_axes()
        self._request_draw()

    def _request_draw(self) -> None:
        if self.canvas.isVisible():
            self.canvas.draw_idle()  # type: ignore[no-untyped-call]
        else:
            self._stale = True


def _hex(color: Any) -> str:
    """napari theme colours are pydantic ``Color`` objects; fall back to ``str``."""
    as_hex = getattr(color, "as_hex", None)
    if callable(as_hex):
        value = str(as_hex())
        if len(value) == 4:  # '#abc' short form
            value = "#" + "".join(c * 2 for c in value[1:])
        return value
    return str(color)


def _log_axis(ax: Any) -> None:
    """Log y axis with plain-text tick labels (mathtext labels are slow to draw)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    def minor(value: float, _pos: Any) -> str:
        low, high = ax.get_ylim()
        if value <= 0 or low <= 0 or high / low > 100.0:
            return ""  # two decades or more: the major ticks say enough
        mantissa = round(value / 10 ** math.floor(math.log10(value)))
        return f"{value:.3g}" if high / low < 3.0 or mantissa in (2, 5) else ""

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10.0, numticks=5))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))
