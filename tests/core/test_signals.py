"""The loop's per-step measurements (core/signals.py) against plain computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_specdip.core.jpeg import block_edges, blockiness
from napari_specdip.core.signals import RunningVariance, _blockiness, error_estimate


def test_the_running_variance_is_the_windows_variance() -> None:
    gen = torch.Generator().manual_seed(0)
    steps = [torch.rand(1, 2, 6, 5, generator=gen) for _ in range(25)]
    meter = RunningVariance(7)
    for k, x in enumerate(steps):
        value = meter.push(x)
        window = torch.stack(steps[max(0, k - 6):k + 1]).double()
        expected = window.var(dim=0, correction=0).mean()
        assert meter.full == (k >= 6)
        assert float(value) == pytest.approx(float(expected), rel=1e-5)


def test_the_device_blockiness_is_the_jpeg_modules() -> None:
    rng = np.random.default_rng(2)
    blocks = np.kron(rng.random((5, 6)), np.ones((8, 8)))  # steps at every block edge
    image = blocks[3:, 5:] + rng.normal(0.0, 0.02, blocks[3:, 5:].shape)
    grid = (5, 3)  # the first whole block's row and column
    height, width = image.shape
    rows, cols = block_edges(height, width, grid)
    ours = _blockiness(torch.from_numpy(image), (torch.from_numpy(rows), torch.from_numpy(cols)))
    assert float(ours) == pytest.approx(blockiness(image, grid), rel=1e-9)
    assert float(ours) > 10.0


def test_the_error_estimate_at_both_ends_of_the_self_influence() -> None:
    v, held = 0.01, torch.tensor(0.015)
    # a fit as far from its pixels as from unseen ones follows none of their noise
    assert float(error_estimate(held, held, v, 0.1)) == pytest.approx(0.005)
    # a fit through its pixels: its error there is the noise itself
    through = float(error_estimate(torch.tensor(0.0), held, v, 0.1))
    assert through == pytest.approx(0.9 * v + 0.1 * (0.015 - v))
