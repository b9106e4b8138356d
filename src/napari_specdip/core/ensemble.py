"""Ensembles of decoders fitted together: K seeds in one grouped network, and their spread.

Member k of an ensemble seeded ``seed`` starts as the single run seeded
``seed + k``: same initial weights, same input, same held-out pixels (the engine
draws one mask per member). The grouped convolutions round differently from a single
network's, and training amplifies that: the fits agree to float rounding for the first
steps and part after a few dozen (0.16 at 100 steps on a [0, 1] image, 32 px). The
members share nothing but the forward pass: their convolutions are grouped, their
Lipschitz bounds computed per member, and the loss is the sum of the members' own
losses, so that Adam (elementwise) takes each member's own steps. The stop watches the
members' mean error on their own held-out pixels. With a mask each, the mean averages
fits that each saw a different 90% of the pixels: the mean of K = 4 gained 0.1-1.2 dB
over members sharing one mask on the photon-level benchmark at 128 px, and 0.35 dB on
average at 64 px (benchmarks/README.md: photon.py, uncertainty_pooling.py). The
uncertainty is the members' spread plus each member's own movement over the steps
around the returned output (:class:`SnapshotWindow`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from napari_specdip.core.imaging import Layout
from napari_specdip.core.networks import Decoder


def stack_decoders(nets: Sequence[Decoder]) -> Decoder:
    """One grouped decoder computing ``nets`` side by side (their weights copied).

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> nets = [Decoder(1, width=4, depth=2) for _ in range(3)]
    >>> gens = [torch.Generator().manual_seed(k) for k in range(3)]
    >>> both = stack_decoders(nets)
    >>> z = both.make_input(16, 16, generator=gens)
    >>> both(z).shape
    torch.Size([3, 1, 16, 16])
    """
    if not nets:
        raise ValueError("an ensemble needs at least one decoder")
    first = nets[0]
    if any(n.settings != first.settings or n.members != 1 for n in nets):
        raise ValueError("stacked decoders must be single decoders of the same shape")
    grouped = Decoder(first.out_channels, width=first.width, depth=first.depth,
                      lipschitz=first.lipschitz, upsampler=first.upsampler, sigmas=first.sigmas,
                      members=len(nets))
    sources = [dict(n.named_parameters()) for n in nets]
    with torch.no_grad():
        for name, target in grouped.named_parameters():
            target.copy_(torch.cat([s[name] for s in sources], dim=0))
    return grouped


def ensemble_mean(output: torch.Tensor) -> torch.Tensor:
    """The ensemble's output: the members' mean, ``(1, C, H, W)`` (a single run: itself)."""
    return output if output.shape[0] == 1 else output.mean(dim=0, keepdim=True)


#: Gaussian sigma (pixels) over which the variance is pooled before the square root: four
#: members give each pixel's value from a few samples. 0.5 was the best of 0-2 on the 12
#: tuning cases of benchmarks/uncertainty_pooling.py (0.386; 0.75: 0.385, per pixel 0.376).
POOL_SIGMA = 0.5

#: Iterations either side of the returned one whose outputs count as snapshots of each
#: member. The members share most of their error (two thirds of it is a bias, the same
#: for every noise draw: benchmarks/uncertainty_ceiling.py), which their spread cannot
#: see; but where the image is still being fitted each member's output still moves from
#: step to step. Probed on the tuning half of benchmarks/uncertainty_pooling.py, windows
#: of 25, 50 and 100 iterations either side scored within 0.01 of each other (0.389-0.395,
#: the spread alone 0.326); the shortest is kept (fewest snapshots held). Built, the map's
#: correlation went from 0.32 to 0.38 on the held-out half at 64 px, and from 0.33 to 0.44
#: on the photon-level benchmark at 128 px (0.54 on its fluorescence images).
SNAPSHOT_HALF_WINDOW = 25
#: Iterations between snapshots (and the returned one itself).
SNAPSHOT_STRIDE = 5

#: What ``result.uncertainty`` holds, for layer metadata and sidecars.
UNCERTAINTY_WHAT = (
    "standard deviation of the ensemble members' outputs, over the members and over each "
    f"member's outputs within {SNAPSHOT_HALF_WINDOW} iterations of the returned one (each "
    f"pixel's variance pooled over its neighbours: Gaussian sigma {POOL_SIGMA:g} px)")


class SnapshotWindow:
    """The members' raw outputs every ``stride`` iterations within ``half_window``
    iterations of the one returned.

    Fed outputs with their iteration, and told whether that output became the one to
    return; keeps those up to ``half_window`` iterations before it, it, and those up to
    ``half_window`` after it (fewer when the run ends sooner).

    Examples
    --------
    >>> window = SnapshotWindow(half_window=10, stride=5)
    >>> for it in range(5, 45, 5):
    ...     window.add(it, torch.full((1, 1, 1, 1), float(it)), chosen=it == 20)
    >>> [int(t) for t in window.snapshots()]
    [10, 15, 20, 25, 30]
    """

    def __init__(self, *, half_window: int = SNAPSHOT_HALF_WINDOW,
                 stride: int = SNAPSHOT_STRIDE) -> None:
        self.half_window = max(0, int(half_window))
        self.stride = max(1, int(stride))
        self._recent: deque[tuple[int, torch.Tensor]] = deque()
        self._kept: list[torch.Tensor] = []
        self._until = -1

    def add(self, iteration: int, output: torch.Tensor, *, chosen: bool) -> None:
        if not chosen and iteration % self.stride:
            return
        snapshot = output.detach().clone()
        self._recent.append((iteration, snapshot))
        while self._recent[0][0] < iteration - self.half_window:
            self._recent.popleft()
        if chosen:
            self._kept = [t for _, t in self._recent]
            self._until = iteration + self.half_window
        elif iteration <= self._until:
            self._kept.append(snapshot)

    def snapshots(self) -> list[torch.Tensor]:
        """Around the chosen output; the latest ones when none was chosen."""
        return self._kept or [t for _, t in self._recent]


def pool_spread(variance_hwc: npt.NDArray[np.float64], sigma: float = POOL_SIGMA
                ) -> npt.NDArray[np.float64]:
    """Standard deviation from a per-pixel (H, W, C) variance pooled over neighbouring
    pixels of the same channel (Gaussian weights; ``sigma`` 0: per pixel)."""
    if sigma > 0:
        from scipy.ndimage import gaussian_filter

        variance_hwc = gaussian_filter(variance_hwc, sigma=(sigma, sigma, 0), mode="reflect")
    return np.sqrt(np.maximum(variance_hwc, 0.0))


def spread_to_user(members_hwc: Sequence[npt.NDArray[np.float64]], layout: Layout,
                   snapshots_hwc: Sequence[Sequence[npt.NDArray[np.float64]]] = ()
                   ) -> npt.NDArray[np.float32]:
    """Standard deviation across members' [0, 1] (H, W, C) images, plus each member's
    own variance over its ``snapshots_hwc`` (one sequence of members per evaluated
    step around the returned one), pooled over neighbouring pixels
    (:data:`POOL_SIGMA`), in the input's layout and intensity units (float32: a
    spread, not an intensity)."""
    stack = np.stack([np.clip(m, 0.0, 1.0) for m in members_hwc])
    variance = stack.var(axis=0, ddof=1)
    if len(snapshots_hwc) > 1:
        steps = np.stack([np.stack([np.clip(m, 0.0, 1.0) for m in step])
                          for step in snapshots_hwc])  # (steps, members, H, W, C)
        variance = variance + steps.var(axis=0).mean(axis=0)
    return std_to_user(pool_spread(variance, POOL_SIGMA), layout)


def std_to_user(std_hwc: npt.NDArray[np.float64], layout: Layout) -> npt.NDArray[np.float32]:
    """A (H, W, C) standard deviation in [0, 1] units in the input's layout and
    intensity units (float32); an alpha channel, copied and not restored, gets 0
    (as in the command line's uncertainty file), so the map has the result's shape."""
    std = std_hwc * (layout.high - layout.low)
    if layout.alpha is not None:
        std = np.concatenate([std, np.zeros(std.shape[:2] + (1,), std.dtype)], axis=-1)
    out = std[..., 0] if layout.channel_axis is None else np.moveaxis(std, -1, layout.channel_axis)
    return np.asarray(out, dtype=np.float32)
