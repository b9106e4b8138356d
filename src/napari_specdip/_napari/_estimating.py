"""Before Run: how long a run will take and how much memory it needs (no Qt).

The widget snapshots one plane of the input and the settings on the main thread
(:class:`EstimateRequest`); :func:`run_estimate` runs on a worker thread, where
the core's :func:`~napari_specdip.estimate` times a few real steps (cached per
size, width and device); :func:`estimate_text` says the answer in one line.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from napari_specdip.core.estimate import Estimate
    from napari_specdip.core.params import RestoreParameters

#: Iterations after which the ``auto`` (hold-out) rule usually ends a run of the quick
#: or balanced preset. Measured on the 128 px samples (balanced, seed 0, CPU): noisy
#: photo 1680, noisy microscopy 215 (235 with the Poisson-Gaussian model), masked
#: image 925, JPEG-blocked 195; the quick preset on the photo 655. The rule waits
#: 150-400 iterations past the minimum of the held-out error, so 200 is about the least.



@dataclass(frozen=True)
class EstimateRequest:
    """What an estimate needs, snapshotted on the main thread."""

    plane: npt.NDArray[Any]  # one plane of the input, as the run will see it
    channel_axis: int | None
    mask: npt.NDArray[np.bool_] | None
    # the settings as one object: typed out as options, the task's unused fields (gain
    # for a denoise) would count as given, which the engine refuses
    parameters: RestoreParameters
    planes: int = 1  # how many planes the run restores
    handed_on: bool = False  # slices warm-started one from another (tile="auto": whole)
    # set by a closing widget: the timing ends at its next step
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def task(self) -> str:
        return self.parameters.task

    @property
    def options(self) -> dict[str, Any]:
        """The settings' fields but the task."""
        options = self.parameters.as_dict()
        del options["task"]
        return options


def request_for(plane: npt.NDArray[Any], params: RestoreParameters, *, rgb: bool,
                mask: npt.NDArray[np.bool_] | None, planes: int,
                handed_on: bool = False) -> EstimateRequest:
    """An :class:`EstimateRequest` for ``params``."""
    return EstimateRequest(plane=plane, channel_axis=-1 if rgb else None, mask=mask,
                           parameters=params, planes=planes, handed_on=handed_on)


def run_estimate(request: EstimateRequest) -> Estimate:
    """Worker body: the core's estimate (a few real steps on the device; seconds at most
    on a small image, free when the same size and settings were measured before)."""
    from napari_specdip.core.estimate import estimate

    return estimate(request.plane, request.task, channel_axis=request.channel_axis,
                    mask=request.mask, keep_state=request.handed_on,
                    parameters=request.parameters, cancel=request.cancel)


def rough_seconds(seconds: float) -> str:
    """A duration as a person says it: ``'0.4 s'``, ``'35 s'``, ``'12 min'``, ``'2 h 10 min'``.

    Examples
    --------
    >>> rough_seconds(0.42), rough_seconds(35.2), rough_seconds(725), rough_seconds(7800)
    ('0.4 s', '35 s', '12 min', '2 h 10 min')
    """
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def rough_range(low: float, high: float) -> str:
    """Two durations in one unit: ``'1-4 min'``, ``'20-50 s'``.

    Examples
    --------
    >>> rough_range(70, 230), rough_range(20, 50), rough_range(4, 12)
    ('1-4 min', '20-50 s', '4-12 s')
    """
    if high < 90:
        return f"{low:.0f}-{high:.0f} s"
    if high < 3600:
        return f"{max(1, round(low / 60))}-{round(high / 60)} min"
    return f"{low / 3600:.1f}-{high / 3600:.1f} h"


def rough_bytes(n: float) -> str:
    """``'310 MB'``, ``'2.4 GB'``.

    Examples
    --------
    >>> rough_bytes(3.1e8), rough_bytes(2.44e9), rough_bytes(5e5)
    ('310 MB', '2.4 GB', '0.5 MB')
    """
    if n < 1e6:
        return f"{n / 1e6:.1f} MB"
    if n < 1e9:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e9:.1f} GB"


def estimate_text(found: Estimate, params: RestoreParameters, planes: int = 1) -> str:
    """The estimate in one line, e.g. ``'≈ 35 s per 100 it · at most 12 min · usually
    1-4 min · 310 MB'``; what to change when the run will not fit."""
    if not found.fits:
        return f"Will not fit: {found.advice}"
    per_step = found.seconds_per_iteration
    where = f" for {planes} slices" if planes > 1 else ""
    parts = [f"≈ {rough_seconds(100 * per_step)} per 100 it",
             f"at most {rough_seconds(found.seconds * planes)}{where}"]
    from napari_specdip.core.estimate import suggests_tiles, typical_stop
    from napari_specdip.core.params import AUTO_TILE

    if params.stops_at_jpeg_budget:
        quality = found.jpeg_quality
        parts.append(f"{found.iterations} it for JPEG quality ≈ {quality}" if quality
                     else f"{found.iterations} it (no JPEG blocks found)")
    typical = typical_stop(params, *found.canvas)
    if typical is not None and math.isfinite(per_step):
        fixed = planes * found.tiles * found.setup_seconds  # each fit's own setup
        low, high = (t * per_step * planes * found.tile_load + fixed for t in typical)
        parts.append(f"usually {rough_range(low, high)}")
    parts.append(rough_bytes(found.peak_memory_bytes))
    if suggests_tiles(found, params):
        parts.append(f"tile {AUTO_TILE} would finish sooner on this CPU")
    return " · ".join(parts)
