"""Which pixels a region preview restores (no Qt, no torch).

The region is what the canvas shows of the image (or a Shapes rectangle),
clipped to the image, at most ``side`` pixels a side: a larger view gives its
centre. On the CPU a wide network makes every pixel dear, so the side shrinks
with the width to keep the preview within its time budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from napari_specdip._napari._planning import Box

#: largest region side, in input pixels
MAX_SIDE = 128
#: smallest region side (the network pads smaller crops anyway)
MIN_SIDE = 32
#: a region preview stops after this many seconds (the result so far is kept)
BUDGET_S = 15.0
#: and after this many iterations (the stop rule may end it sooner)
MAX_ITERATIONS = 1000
#: preview image every this many iterations during a region preview
PREVIEW_EVERY = 5


def side_for(width: int, *, on_cpu: bool) -> int:
    """Region side that a run of network ``width`` can fit usefully within the budget.

    Measured on a 2-core CPU (one torch thread): 128 px at width 32, 96 px at
    width 64 and 64 px at width 128 each take 0.1-0.2 s per iteration, i.e. about
    100 iterations in the budget. Accelerators take the full side.
    """
    if not on_cpu or width <= 32:
        return MAX_SIDE
    return 96 if width <= 64 else 64


def pixel_box(corners: npt.ArrayLike, plane_shape: Sequence[int]) -> Box | None:
    """The pixels of a plane of ``plane_shape`` inside a rectangle given by two corners
    in the plane's data coordinates (pixel centres are integers); None if outside."""
    c = np.asarray(corners, dtype=float).reshape(2, 2)
    low, high = c.min(axis=0), c.max(axis=0)
    h, w = int(plane_shape[0]), int(plane_shape[1])
    y0 = max(0, math.floor(low[0] + 0.5))
    x0 = max(0, math.floor(low[1] + 0.5))
    y1 = min(h, math.ceil(high[0] + 0.5))
    x1 = min(w, math.ceil(high[1] + 0.5))
    if y1 <= y0 or x1 <= x0:
        return None
    return Box(y0, y1, x0, x1)


def fit(box: Box, plane_shape: Sequence[int], *, side: int = MAX_SIDE,
        minimum: int = MIN_SIDE) -> Box:
    """``box`` cut to at most ``side`` (its centre) and grown to ``minimum`` (within the
    plane) along each axis.

    Examples
    --------
    >>> fit(Box(0, 500, 10, 20), (512, 512), side=128, minimum=32)
    Box(y0=186, y1=314, x0=0, x1=32)
    """
    def one(a: int, b: int, n: int) -> tuple[int, int]:
        length = b - a
        want = min(max(length, minimum), side, n)
        centre = (a + b) / 2.0
        start = int(round(centre - want / 2.0))
        start = min(max(start, 0), n - want)
        return start, start + want

    y0, y1 = one(box.y0, box.y1, int(plane_shape[0]))
    x0, x1 = one(box.x0, box.x1, int(plane_shape[1]))
    return Box(y0, y1, x0, x1)


def view_corners(center: Sequence[float], zoom: float, canvas_hw: Sequence[int]
                 ) -> npt.NDArray[np.float64]:
    """World (y, x) corners of what a 2D canvas shows: centre +- half the canvas / zoom."""
    half = np.asarray(canvas_hw[-2:], dtype=float) / (2.0 * max(float(zoom), 1e-12))
    mid = np.asarray(center[-2:], dtype=float)
    return np.stack([mid - half, mid + half])
