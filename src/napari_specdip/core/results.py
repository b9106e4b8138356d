"""What the engine hands back: a report per step and a result at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_specdip.core.imaging import is_constant

#: ``stop_reason`` of a slice of a stack copied through, not restored: constant (nothing
#: to restore), or, when inpainting, with a mask that marks no pixel of it
CONSTANT = "constant"
NOTHING_TO_FILL = "nothing_to_fill"
COPIED = (CONSTANT, NOTHING_TO_FILL)


def copy_reason(image: npt.ArrayLike, mask: npt.ArrayLike | None = None) -> str | None:
    """Why a slice of a stack is copied through, not restored: :data:`CONSTANT` (nothing
    to restore) or :data:`NOTHING_TO_FILL` (inpainting, and ``mask`` marks no pixel of it:
    fitting it anyway would only smooth it); None for a slice to restore. The CLI and
    the widget both ask it.

    Examples
    --------
    >>> copy_reason(np.zeros((4, 4))), copy_reason(np.eye(4), np.zeros((4, 4), bool))
    ('constant', 'nothing_to_fill')
    >>> copy_reason(np.eye(4)) is None
    True
    """
    if is_constant(image):
        return CONSTANT
    if mask is not None and not np.asarray(mask).any():
        return NOTHING_TO_FILL
    return None


@dataclass(frozen=True)
class StepReport:
    """One iteration of a running restoration.

    Attributes
    ----------
    iteration : int
        1-based iteration just finished.
    loss : float
        Data-fit loss of this iteration.
    elapsed : float
        Seconds since the run started (setup included).
    signals : dict of str to float
        Signals evaluated at this iteration (empty on iterations where the
        spectral signals were skipped, see ``signal_every``). Keys: ``fbc1`` ..
        ``fbc5``, ``blur``, ``sharpness``, ``ratio``, ``ratio_mean_previous``,
        ``ratio_mean_recent``, ``variance`` and, with a clean reference, ``psnr``,
        ``ssim`` and ``fbc_clean1`` .. ``fbc_clean5``.
    preview : numpy.ndarray or None
        The current output, in the input's layout, range and dtype, every
        ``preview_every`` iterations; None otherwise.
    max_iterations : int
        The run's iteration cap, for progress bars (a tiled run: over all tiles).
    tile, tiles : int
        A tiled run (``tile`` > 0): the index of the tile being fitted, and how
        many there are; iterations and the preview are then the whole image's.
    """

    iteration: int
    loss: float
    elapsed: float
    signals: dict[str, float] = field(default_factory=dict)
    preview: np.ndarray | None = None
    max_iterations: int = 0
    tile: int = 0
    tiles: int = 1


@dataclass
class RestoreResult:
    """Outcome of a restoration.

    Attributes
    ----------
    image : numpy.ndarray
        The restored image, same layout as the input (super-resolution: the
        spatial axes multiplied by the factor), in the input's dtype and
        intensity range unless another dtype was asked for.
    iterations : int
        Iterations run.
    stop_reason : str
        The rule that fired (``"holdout"``, ``"ratio"`` or ``"wmv"``),
        ``"max_iterations"``, ``"deblock_budget"`` (deblocking's auto stop: the
        iterations the JPEG's compression and the image's size call for, in
        ``parameters["deblock_budget"]``, the quantisation found in
        ``parameters["jpeg"]``), or ``"stopped"`` when asked to stop; a tiled run
        whose tiles ended differently lists each reason with its count of tiles.
    stop_iteration : int
        Iteration whose output the result holds: the minimum found by the
        ``"auto"`` (hold-out) or ``"wmv"`` rule, the best for ``output="best"``,
        otherwise the last iteration; a tiled run: ``iterations`` (each tile's
        is in ``parameters["tiles"]``).
    history : dict of str to numpy.ndarray
        ``iteration`` and ``loss`` for every step; ``signal_iteration`` with
        each signal for the evaluated steps.
    parameters : dict
        Every resolved option of the run.
    device : str
        Where the run happened, e.g. ``"cpu"`` or ``"cuda:0 (NVIDIA H100)"``.
    elapsed : float
        Seconds, setup included.
    intensity_range : (float, float)
        The input intensities mapped to [0, 1] for the fit.
    metrics : dict of str to float
        Blur, sharpness and their ratio of the result; PSNR and SSIM with a reference.
    uncertainty : numpy.ndarray or None
        With ``ensemble`` = K > 1: the standard deviation of the K members'
        outputs, over the members and over each member's outputs within
        :data:`~napari_specdip.core.ensemble.SNAPSHOT_HALF_WINDOW` iterations of
        the returned one, each pixel's variance pooled over its neighbours
        (Gaussian weights, sigma :data:`~napari_specdip.core.ensemble.POOL_SIGMA`
        px), in the result's layout (its shape) and intensity units (float32): an
        alpha channel, copied and not restored, has 0 there, as in the command
        line's uncertainty file; None for a single run.
    state : dict or None
        The network weights (CPU tensors) of the iteration the result holds, when
        the run was asked to ``keep_state``: pass them as ``warm_start`` to the next
        slice.
    """

    image: np.ndarray
    iterations: int
    stop_reason: str
    stop_iteration: int
    history: dict[str, np.ndarray]
    parameters: dict[str, Any]
    device: str
    elapsed: float
    intensity_range: tuple[float, float] = (0.0, 1.0)
    metrics: dict[str, float] = field(default_factory=dict)
    uncertainty: np.ndarray | None = None
    state: dict[str, Any] | None = None

    def metadata(self) -> dict[str, Any]:
        """JSON-ready provenance for ``layer.metadata`` and CLI sidecars."""
        from napari_specdip.core.devices import versions

        return {
            "specdip": {
                "parameters": self.parameters,
                "seed": self.parameters.get("seed"),
                "device": self.device,
                "versions": versions(),
                "iterations": self.iterations,
                "stop_reason": self.stop_reason,
                "stop_iteration": self.stop_iteration,
                "elapsed_seconds": round(self.elapsed, 3),
                "intensity_range": list(self.intensity_range),
                "metrics": self.metrics,
                "ensemble": self.parameters.get("ensemble", 1),
                "noise_model": self.parameters.get("noise_model",
                                                   {"model": self.parameters.get("noise", "gaussian")}),
            }
        }
