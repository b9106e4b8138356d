"""PNG charts of a run, drawn with matplotlib's Agg canvas (no display, no pyplot).

matplotlib is imported only inside these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FBC_LABELS = ("band 1 (lowest)", "band 2", "band 3", "band 4", "band 5 (highest)")


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


def _stop_marker(ax: Any, stop_iteration: int | None, stop_reason: str) -> None:
    if stop_iteration:
        what = "iteration cap" if stop_reason == "max_iterations" else f"stop ({stop_reason})"
        ax.axvline(stop_iteration, color="crimson", linestyle=":", linewidth=1.2,
                   label=f"{what} at {stop_iteration}")


def fbc_chart(history: dict[str, npt.NDArray[Any]], path: Path, *,
              stop_iteration: int | None = None, stop_reason: str = "") -> Path | None:
    """Frequency-band correspondence of the output with the observation (and the clean image)."""
    if "fbc1" not in history:
        return None
    clean = "fbc_clean1" in history
    fig = _figure(10.0 if clean else 6.4, 4.0)
    axes = fig.subplots(1, 2 if clean else 1, sharey=True, squeeze=False)[0]
    colors = ("#08306b", "#2171b5", "#6baed6", "#fd8d3c", "#d94801")
    for ax, prefix, title in zip(axes, ("fbc", "fbc_clean"),
                                 ("against the observation", "against the clean image"),
                                 strict=False):
        for band in range(1, 6):
            key = f"{prefix}{band}"
            if key in history:
                ax.plot(_signal_x(history), history[key], color=colors[band - 1],
                        label=FBC_LABELS[band - 1], linewidth=1.2)
        _stop_marker(ax, stop_iteration, stop_reason)
        ax.set_title(f"Frequency-band correspondence {title}", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FBC")
    axes[-1].legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def ratio_chart(history: dict[str, npt.NDArray[Any]], path: Path, *,
                stop_iteration: int | None = None, stop_reason: str = "",
                window: int | None = None) -> Path | None:
    """Blur/sharpness ratio with the two window means of the stopping rule."""
    if "ratio" not in history:
        return None
    fig = _figure()
    ax = fig.subplots()
    ax.plot(_signal_x(history), history["ratio"], color="0.55", linewidth=0.8,
            label="ratio r = blur / sharpness")
    suffix = f" (window {window})" if window else ""
    if "ratio_mean_previous" in history:
        ax.plot(_signal_x(history), history["ratio_mean_previous"],
                color="#2171b5", linewidth=1.4, label="mean of the previous window" + suffix)
    if "ratio_mean_recent" in history:
        ax.plot(_signal_x(history), history["ratio_mean_recent"],
                color="#d94801", linewidth=1.4, label="mean of the recent window" + suffix)
    _stop_marker(ax, stop_iteration, stop_reason)
    values = np.asarray(history["ratio"], dtype=float)
    if values.size and np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
    ax.set_title("Blurriness / sharpness ratio (stopping signal)", fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("ratio")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def loss_chart(history: dict[str, npt.NDArray[Any]], path: Path, *,
               stop_iteration: int | None = None, stop_reason: str = "") -> Path | None:
    if "loss" not in history or len(history["loss"]) == 0:
        return None
    fig = _figure()
    ax = fig.subplots()
    loss = np.asarray(history["loss"], dtype=float)
    ax.plot(history["iteration"], loss, color="#08306b", linewidth=1.0)
    if np.all(loss[np.isfinite(loss)] > 0):
        ax.set_yscale("log")
    _stop_marker(ax, stop_iteration, stop_reason)
    ax.set_title("Data-fit loss (MSE against the observation)", fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3, which="both")
    if stop_iteration:
        ax.legend(fontsize=8)
    return _save(fig, path)


def psnr_chart(history: dict[str, npt.NDArray[Any]], path: Path, *, before: float | None = None,
               before_label: str = "input", stop_iteration: int | None = None,
               stop_reason: str = "") -> Path | None:
    """PSNR against the clean image (only when it is known)."""
    if "psnr" not in history:
        return None
    fig = _figure()
    ax = fig.subplots()
    ax.plot(_signal_x(history), history["psnr"], color="#238b45", linewidth=1.2,
            label="restoration")
    if before is not None and np.isfinite(before):
        ax.axhline(before, color="0.4", linestyle="--", linewidth=1.0,
                   label=f"{before_label}: {before:.2f} dB")
    _stop_marker(ax, stop_iteration, stop_reason)
    ax.set_title("PSNR against the clean image", fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("PSNR (dB)")
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
