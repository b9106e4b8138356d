"""What each chart of a run shows: one description for the dock and the CLI's PNGs.

The napari charts dock (:mod:`napari_specdip._napari._charts`, pyqtgraph) and
the command line's PNG charts (:mod:`napari_specdip.cli.charts`, matplotlib)
both draw these panels from these descriptions (titles, axis labels, series
labels and colours, the one-line help), so a fix to a chart lands in both.
Plain data: no Qt, no matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass

#: low (blue) to high (red) frequency; readable on dark and light backgrounds
BAND_COLORS: tuple[str, ...] = ("#3b6fb6", "#36a3d9", "#3fa34d", "#e8912d", "#d2352b")
BAND_LABELS: tuple[str, ...] = ("band 1 (lowest)", "band 2", "band 3", "band 4",
                                "band 5 (highest)")


@dataclass(frozen=True)
class Series:
    """One curve: the key of its values in a step report or a result's history."""

    key: str
    label: str
    color: str
    style: str = "solid"  # "solid", "dashed" or "dotted"
    width: float = 1.5
    #: the panel's second y axis (right side)
    right: bool = False


@dataclass(frozen=True)
class Panel:
    """One chart: its title, axes, curves and a line on how to read it.

    Examples
    --------
    >>> from napari_specdip.chart_panels import PANELS
    >>> PANELS["fbc"].title
    'Frequency-band correspondence (FBC)'
    >>> [s.label for s in PANELS["fbc"].series][0]
    'band 1 (lowest)'
    """

    key: str
    title: str
    y_label: str
    help: str
    series: tuple[Series, ...]
    log_y: bool = False
    y_range: tuple[float, float] | None = None
    right_label: str = ""
    #: what the panel says while it has no point yet
    waiting: str = "waiting for the first iteration…"
    #: needs a clean reference image
    needs_reference: bool = False

    def series_keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.series)


def window_note(window: int, every: int = 1) -> str:
    """Why the window means are still empty: they need two full windows."""
    return (f"the two window means start at iteration {2 * window * max(1, every) + 1}: "
            f"each averages {window} values of the ratio")


FBC = Panel(
    key="fbc",
    title="Frequency-band correspondence (FBC)",
    y_label="FBC (0 to 1)",
    help=("How much of each frequency band of the input the output already reproduces "
          "(1 = all of it). Low bands rise first; when the high bands (red) climb too, "
          "the network has started to fit the noise."),
    series=tuple(Series(f"fbc{k + 1}", BAND_LABELS[k], BAND_COLORS[k]) for k in range(5)),
    y_range=(0.0, 1.05),
)

RATIO = Panel(
    key="ratio",
    title="Blur / sharpness: the ratio rule's signal",
    y_label="blur / sharpness",
    help=("Blurriness divided by sharpness of the output: it falls while detail is added. "
          "With the ratio stop rule (the paper's, in the paper preset) the run stops when "
          "the mean of the recent window no longer drops below the mean of the previous "
          "one. The auto rule watches the held-out pixels instead (loss panel)."),
    series=(
        Series("ratio", "ratio", "#8c8c8c", width=1.2),
        Series("ratio_mean_previous", "mean, previous window", "#3b6fb6", "dashed", 2.0),
        Series("ratio_mean_recent", "mean, recent window", "#d2352b", "dotted", 2.2),
    ),
    log_y=True,
)

LOSS = Panel(
    key="loss",
    title="Loss: fit to the input",
    y_label="mean squared error",
    help=("Mean squared difference between the output and the degraded input. It keeps "
          "falling as the network reproduces more, noise included, so a low loss is not "
          "the goal. The held-out pixels (left out of the fit) fall, then rise again once "
          "the network reproduces noise. When denoising Gaussian noise, the auto stop "
          "rule watches the estimated error of the averaged output (from the held-out "
          "and the fitted pixels' loss and the noise level); otherwise the held-out "
          "pixels'. It returns the output from the middle of the plateau around that "
          "minimum."),
    series=(Series("loss", "loss", "#e8912d", width=1.2),
            Series("holdout_loss", "held-out pixels", "#36a3d9", "dotted", 1.2),
            Series("holdout_loss_ema", "held-out, averaged", "#3b6fb6", "dashed", 2.0),
            Series("error_estimate_ema", "estimated error, averaged", "#c0392b", "dashed", 2.0)),
    log_y=True,
)

QUALITY = Panel(
    key="quality",
    title="Quality against the clean reference",
    y_label="PSNR (dB)",
    right_label="SSIM",
    help=("PSNR (left axis, dB) and SSIM (right axis, 0 to 1) of the output against the "
          "clean reference you chose: higher is better. Their peak is where an oracle "
          "would stop. With the ema output the dashed curve is the PSNR of the moving "
          "average, which is what the result holds."),
    series=(
        Series("psnr", "PSNR (dB)", "#3fa34d", width=1.8),
        Series("ssim", "SSIM", "#9b6ddb", width=1.8, right=True),
        Series("psnr_ema", "PSNR, averaged output", "#58b368", "dashed", 1.8),
    ),
    needs_reference=True,
)

PANELS: dict[str, Panel] = {p.key: p for p in (FBC, RATIO, LOSS, QUALITY)}

#: the stop marker's words, by stop reason
STOP_WORDS: dict[str, str] = {
    "holdout": "error minimum (held-out)",
    "ratio": "blur/sharpness rule",
    "wmv": "ES-WMV (variance) rule",
    "max_iterations": "iteration cap",
    "deblock_budget": "JPEG's budget",
    "jpeg_consistent": "consistent with the JPEG",
    "stopped": "stopped by you",
}


def stop_text(iteration: int, reason: str) -> str:
    """The stop marker's label, e.g. ``"stop at 412: blur/sharpness rule"``.

    Examples
    --------
    >>> stop_text(412, "ratio")
    'stop at 412: blur/sharpness rule'
    """
    return f"stop at {iteration}: {STOP_WORDS.get(reason, reason)}"


#: stop reasons that name the iteration the result holds (the minimum the rule found),
#: where their marker goes; the others say why the run ended, at its last iteration
_MARKED_AT_RESULT = frozenset({"holdout", "wmv"})


def stop_marks(iterations: int, returned: int, reason: str) -> tuple[int, int | None]:
    """Where the stop marker goes, and the iteration the result holds when a second mark
    must say it (None: the stop marker says it all).

    ``iterations``: where the run ended; ``returned``: the iteration whose output the
    result is. A run that reaches its cap with the auto rule's minimum earlier ended at
    the cap: marking the cap at the returned iteration would say the cap was there.

    Examples
    --------
    >>> stop_marks(40, 10, "max_iterations"), stop_marks(40, 40, "max_iterations")
    ((40, 10), (40, None))
    >>> stop_marks(57, 37, "holdout")
    (37, None)
    """
    if reason in _MARKED_AT_RESULT:
        return returned, None
    return iterations, returned if 0 < returned < iterations else None


def result_text(iteration: int) -> str:
    """The result marker's label: ``'result: iteration 10'``."""
    return f"result: iteration {iteration}"
