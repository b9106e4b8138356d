"""Ensembles of decoders fitted together: K seeds in one grouped network, and their spread.

Member k of an ensemble seeded ``seed`` is exactly the single run seeded
``seed + k``: same initial weights, same input, same held-out pixels (the engine
draws one mask per member). The members share nothing but the forward pass: their
convolutions are grouped, their Lipschitz bounds computed per member, and the loss
is the sum of the members' own losses, so that Adam (elementwise) takes each
member's own steps. The stop watches the members' mean error on their own
held-out pixels. With a mask each, the mean averages fits that each saw a
different 90% of the pixels: the mean of K = 4 gained 0.1-1.2 dB over members
sharing one mask on the photon-level benchmark at 128 px, and 0.35 dB on average
at 64 px (benchmarks/README.md: photon.py, uncertainty_pooling.py).
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
#: tuning cases of benchmarks/uncertainty_pooling.py (0.375; 0.75: 0.374, per pixel 0.364).
POOL_SIGMA = 0.5

#: Iterations either side of the returned one whose outputs count as snapshots of each
#: member. The members share most of their error (two thirds of it is a bias, the same
#: for every noise draw: benchmarks/uncertainty_ceiling.py), which their spread cannot
#: see; but where the image is still being fitted each member's output still moves from
#: step to step. Adding that movement to the spread raised the map's correlation with the
#: error from 0.32 to 0.36 on the held-out half at 64 px and from 0.33 to 0.42 on the
#: photon-level benchmark at 128 px (benchmarks/README.md: uncertainty_pooling.py).
SNAPSHOT_HALF_WINDOW = 10

#: What ``result.uncertainty`` holds, for layer metadata and sidecars.
UNCERTAINTY_WHAT = (
    "standard deviation of the ensemble members' outputs, over the members and over each "
    f"member's outputs within {SNAPSHOT_HALF_WINDOW} iterations of the returned one (each "
    f"pixel's variance pooled over its neighbours: Gaussian sigma {POOL_SIGMA:g} px)")


def snapshot_steps(signal_every: int) -> int:
    """Evaluated steps either side of the returned one whose outputs the map takes in."""
    return max(1, round(SNAPSHOT_HALF_WINDOW / max(1, signal_every)))


class SnapshotWindow:
    """The members' raw outputs at the evaluated steps around the returned one.

    Fed every evaluated step's output, and told whether that step's output became
    the one to return; keeps the ``steps`` outputs before it, it, and the ``steps``
    after it (fewer when the run ends sooner).

    Examples
    --------
    >>> window = SnapshotWindow(steps=1)
    >>> for step, chosen in enumerate([False, False, True, False, False]):
    ...     window.add(torch.full((1, 1, 1, 1), float(step)), chosen=chosen)
    >>> [float(t) for t in window.snapshots()]
    [1.0, 2.0, 3.0]
    """

    def __init__(self, steps: int) -> None:
        self.steps = max(1, int(steps))
        self._recent: deque[torch.Tensor] = deque(maxlen=self.steps + 1)
        self._kept: list[torch.Tensor] = []
        self._after = 0

    def add(self, output: torch.Tensor, *, chosen: bool) -> None:
        snapshot = output.detach().clone()
        self._recent.append(snapshot)
        if chosen:
            self._kept, self._after = list(self._recent), self.steps
        elif self._after > 0:
            self._kept.append(snapshot)
            self._after -= 1

    def snapshots(self) -> list[torch.Tensor]:
        """Around the chosen output; the latest ones when none was chosen."""
        return list(self._kept or self._recent)


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
    std = pool_spread(variance, POOL_SIGMA) * (layout.high - layout.low)
    out = std[..., 0] if layout.channel_axis is None else np.moveaxis(std, -1, layout.channel_axis)
    return np.asarray(out, dtype=np.float32)
