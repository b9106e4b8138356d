"""PNG charts of a run, drawn with matplotlib's Agg canvas (no display, no pyplot).

Titles, axis labels, curve labels and colours come from
:mod:`napari_specdip.chart_panels`, the description the napari dock draws too.
matplotlib is imported only inside these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_specdip.chart_panels import (
    BAND_LABELS,
    FBC,
    LOSS,
    QUALITY,
    RATIO,
    Series,
    result_text,
    stop_text,
)

FBC_LABELS = BAND_LABELS
#: the loss chart's signals of the ``auto`` stop: the held-out pixels' error, and, when
#: denoising, the whole output's estimated error (then the one the rule watches)
HELD_OUT = Series("holdout_loss", "held-out pixels", "#3b6fb6", "dashed", 1.5)
ESTIMATE = Series("error_estimate", "estimated error", "#c0392b", "dashed", 1.5)
_LINESTYLES = {"solid": "-", "dashed": "--", "dotted": ":"}


def _plot(ax: Any, x: Any, y: Any, series: Series, label: str | None = None) -> None:
    ax.plot(x, y, color=series.color, linestyle=_LINESTYLES[series.style],
            linewidth=series.width, label=label or series.label)


def _figure(width: float = 6.4, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    from napari_specdip.cli.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _signal_x(history: dict[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    """Iterations of the evaluated steps; every signal column is aligned on them
    (NaN where a signal was not defined yet)."""
    return np.asarray(history["signal_iteration"])


def _stop_marker(ax: Any, stop_iteration: int | None, stop_reason: str,
                 returned: int | None = None) -> None:
    """The stop at ``stop_iteration`` and, when the result is an earlier iteration's
    output, ``returned`` (see :func:`~napari_specdip.chart_panels.stop_marks`)."""
    if stop_iteration:
        ax.axvline(stop_iteration, color="crimson", linestyle=":", linewidth=1.2,
                   label=stop_text(stop_iteration, stop_reason))
    if returned:
        ax.axvline(returned, color="crimson", linestyle="-.", linewidth=1.0,
                   label=result_text(returned))


def fbc_chart(history: dict[str, npt.NDArray[Any]], path: Path, *,
              stop_iteration: int | None = None, stop_reason: str = "",
              returned: int | None = None) -> Path | None:
    """Frequency-band correspondence of the output with the observation (and the clean image)."""
    if "fbc1" not in history:
        return None
    clean = "fbc_clean1" in history
    fig = _figure(10.0 if clean else 6.4, 4.0)
    axes = fig.subplots(1, 2 if clean else 1, sharey=True, squeeze=False)[0]
    for ax, prefix, title in zip(axes, ("fbc", "fbc_clean"),
                                 ("against the input", "against the clean image"),
                                 strict=False):
        for band, series in enumerate(FBC.series, start=1):
            key = f"{prefix}{band}"
            if key in history:
                _plot(ax, _signal_x(history), history[key], series)
        _stop_marker(ax, stop_iteration, stop_reason, returned)
        ax.set_title(f"{FBC.title} {title}", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(FBC.y_label)
    axes[-1].legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def ratio_chart(history: dict[str, npt.NDArray[Any]], path: Path, *,
                stop_iteration: int | None = None, stop_reason: str = "",
                window: int | None = None, returned: int | None = None) -> Path | None:
    """Blur/sharpness ratio with the two window means of the stopping rule."""
    if "ratio" not in history:
        return None
    fig = _figure()
    ax = fig.subplots()
    suffix = f" ({window} iterations)" if window else ""
    for series in RATIO.series:
        if series.key in history:
            label = series.label + (suffix if series.key != "ratio" else "")
            _plot(ax, _signal_x(history), history[series.key], series, label)
    _stop_marker(ax, stop_iteration, stop_reason, returned)
    values = np.asarray(history["ratio"], dtype=float)
    if values.size and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
    ax.set_title(RATIO.title, fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel(RATIO.y_label)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def loss_chart(history: dict[str, npt.NDArray[Any]], path: Path, *,
               stop_iteration: int | None = None, stop_reason: str = "",
               returned: int | None = None) -> Path | None:
    if "loss" not in history or len(history["loss"]) == 0:
        return None
    fig = _figure()
    ax = fig.subplots()
    loss = np.asarray(history["loss"], dtype=float)
    _plot(ax, history["iteration"], loss, LOSS.series[0])
    # the auto stop's signals (of the moving average when the result is one); it
    # watches the estimated error when there is one, else the held-out pixels' error
    keys = {series: next((k for k in (f"{series.key}_ema", series.key) if k in history), None)
            for series in (HELD_OUT, ESTIMATE)}
    drawn = {series: key for series, key in keys.items() if key is not None}
    watched = ESTIMATE if ESTIMATE in drawn else HELD_OUT
    for series, key in drawn.items():
        values = np.asarray(history[key], dtype=float)
        label = series.label + (" (the auto stop's signal)" if series is watched else "")
        _plot(ax, _signal_x(history), values, series, label)
        loss = np.concatenate([loss, values])
    if np.all(loss[np.isfinite(loss)] > 0):
        ax.set_yscale("log")
    _stop_marker(ax, stop_iteration, stop_reason, returned)
    ax.set_title(LOSS.title, fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel(LOSS.y_label)
    ax.grid(alpha=0.3, which="both")
    if stop_iteration or drawn:
        ax.legend(fontsize=8)
    return _save(fig, path)


def psnr_chart(history: dict[str, npt.NDArray[Any]], path: Path, *, before: float | None = None,
               before_label: str = "input", stop_iteration: int | None = None,
               stop_reason: str = "", returned: int | None = None) -> Path | None:
    """PSNR against the clean image (only when it is known)."""
    if "psnr" not in history:
        return None
    fig = _figure()
    ax = fig.subplots()
    _plot(ax, _signal_x(history), history["psnr"], QUALITY.series[0], "restoration")
    if before is not None and np.isfinite(before):
        ax.axhline(before, color="0.4", linestyle="--", linewidth=1.0,
                   label=f"{before_label}: {before:.2f} dB")
    _stop_marker(ax, stop_iteration, stop_reason, returned)
    ax.set_title(f"{QUALITY.series[0].label.split()[0]} against the clean image", fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel(QUALITY.y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def comparison_figure(panels: list[tuple[str, npt.NDArray[Any]]], path: Path) -> Path:
    """Images side by side (2D gray or (H, W, 3) RGB, floats in [0, 1])."""
    fig = _figure(3.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, image) in zip(axes, panels, strict=True):
        if image.ndim == 2:
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    return _save(fig, path)
