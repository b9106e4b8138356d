"""WNNM (core/low_rank.py): matching, the singular values' shrinkage, the groups' low-rank
estimates against an SVD by hand, and the whole on small images. No network."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data, img_as_float

from napari_specdip.core import low_rank as lr
from napari_specdip.core.low_rank import low_rank_estimate, shrink_singular_values
from napari_specdip.samples import center_crop


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def test_the_profile_follows_the_noise_level() -> None:
    """The authors' settings: 5 px patches and 8 iterations up to 20/255, then 7 px."""
    assert lr.profile_for(10 / 255).patch == 5 and lr.profile_for(10 / 255).iterations == 8
    assert lr.profile_for(25 / 255).patch == 7 and lr.profile_for(25 / 255).group == 90
    assert lr.profile_for(50 / 255).group == 120 and lr.profile_for(50 / 255).iterations == 14
    assert lr.profile_for(80 / 255).patch == 9
    assert lr.group_sizes(lr.profile_for(10 / 255)) == [60, 60, 50, 50, 40, 40, 30, 30]


def test_groups_hold_the_nearest_patches_within_the_radius() -> None:
    """Each group starts with its reference, and its members are the ``size`` patches
    within RADIUS (both axes) nearest to it (brute force over every patch)."""
    rng = np.random.default_rng(0)
    height, width, patch, size = 50, 45, 5, 12
    image = rng.random((height, width)).astype(np.float32)
    grid = lr._Grid(height, width, patch, torch.device("cpu"))
    assert grid.rows[-1] == height - patch and grid.columns[-1] == width - patch
    groups = torch.cat(list(lr._matched_tiles(torch.from_numpy(image), grid, size)))
    refs = [(y, x) for y in grid.rows for x in grid.columns]
    assert groups.shape == (len(refs), size)
    for (y, x), members in zip(refs, groups.tolist(), strict=True):
        assert members[0] == y * width + x
        ref = image[y:y + patch, x:x + patch]
        distance = {(v, u): float(np.sum((image[v:v + patch, u:u + patch] - ref) ** 2))
                    for v in range(max(0, y - lr.RADIUS), min(height - patch, y + lr.RADIUS) + 1)
                    for u in range(max(0, x - lr.RADIUS), min(width - patch, x + lr.RADIUS) + 1)}
        found = sorted(distance[(m // width, m % width)] for m in members)
        assert found == pytest.approx(sorted(distance.values())[:size], abs=1e-4)


def test_the_shrinkage_solves_the_papers_fixed_point() -> None:
    """Large singular values lose about WEIGHT * sqrt(n) * var / s, those under the noise's
    sqrt(n) * sigma go to zero, and the order is kept."""
    singular = torch.tensor([40.0, 12.0, 1.2, 0.5])
    variance, columns = torch.tensor(0.04), 60
    shrunk = shrink_singular_values(singular, variance, columns)
    assert shrunk[2:].tolist() == [0.0, 0.0]  # under sqrt(60) * 0.2 = 1.55: noise alone
    assert 0.0 < float(shrunk[1]) < 12.0
    scale = lr.WEIGHT * math.sqrt(columns) * 0.04
    assert float(shrunk[0]) == pytest.approx(40.0 - scale / float(shrunk[0]), rel=1e-3)
    assert bool(torch.all(shrunk[:-1] >= shrunk[1:])) and bool(torch.all(shrunk <= singular))


def test_each_group_is_shrunk_as_an_svd_by_hand() -> None:
    """The Gram-matrix route of _shrink_groups gives each group's centred patches
    ``U diag(shrunk) V^T`` plus their mean, added back into the image (numpy SVD)."""
    rng = np.random.default_rng(1)
    height, width, patch, channels = 20, 18, 5, 2
    image = rng.random((channels, height, width))
    grid = lr._Grid(height, width, patch, torch.device("cpu"))
    members = torch.tensor([[0, 3, 40, 100, 122, 205, 7], [57, 1, 60, 150, 200, 33, 90]])
    deviation = torch.tensor([[0.05, 0.2], [0.1, 0.02]])  # per channel and reference
    flat = torch.from_numpy(image.reshape(channels, -1)).float()
    total, count = torch.zeros_like(flat), torch.zeros_like(flat[0])
    lr._shrink_groups(flat, members, grid, deviation, total, count)
    want, seen = np.zeros_like(image.reshape(channels, -1)), np.zeros(height * width)
    offsets = grid.inside.numpy()
    for r, group in enumerate(members.tolist()):
        pixels = np.array(group)[:, None] + offsets  # (members, P)
        for c in range(channels):
            block = image.reshape(channels, -1)[c][pixels].T  # (P, members)
            mean = block.mean(1, keepdims=True)
            u, s, vt = np.linalg.svd(block - mean, full_matrices=False)
            kept = shrink_singular_values(torch.from_numpy(s), torch.tensor(
                float(deviation[c, r]) ** 2, dtype=torch.float64), len(group)).numpy()
            np.add.at(want[c], pixels.T.reshape(-1), ((u * kept) @ vt + mean).reshape(-1))
        np.add.at(seen, pixels.reshape(-1), 1.0)
    np.testing.assert_allclose(count.numpy(), seen)
    np.testing.assert_allclose(total.numpy(), want, atol=2e-4)


def test_denoises_repeated_structure_gray_and_colour() -> None:
    """Far better than the observation on a photo; colour in opponent colours is better
    than each channel on its own (chroma is flat); the result is reproducible."""
    clean = img_as_float(center_crop(data.astronaut(), 40))
    rng = np.random.default_rng(2)
    sigma = 25 / 255
    noisy = clean + rng.normal(0, sigma, clean.shape)
    colour = low_rank_estimate(noisy, sigma)
    assert colour.shape == noisy.shape and colour.dtype == np.float64
    assert _mse(colour, clean) < _mse(noisy, clean) / 4
    apart = np.concatenate([low_rank_estimate(noisy[..., c:c + 1], sigma) for c in range(3)],
                           axis=-1)
    assert _mse(colour, clean) < _mse(apart, clean)
    np.testing.assert_array_equal(low_rank_estimate(noisy, sigma), colour)
    gray = noisy[..., :2]  # other channel counts: matched on their mean, each shrunk alone
    assert _mse(low_rank_estimate(gray, sigma), clean[..., :2]) < _mse(gray, clean[..., :2]) / 3


def test_small_or_noiseless_images_come_back_and_bad_input_is_refused() -> None:
    image = np.random.default_rng(3).random((4, 30, 1))
    np.testing.assert_array_equal(low_rank_estimate(image, 0.1), image)  # under a patch
    np.testing.assert_array_equal(low_rank_estimate(image.reshape(12, 10, 1), 0.0),
                                  image.reshape(12, 10, 1))
    with pytest.raises(ValueError, match="sigma"):
        low_rank_estimate(image, float("nan"))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        low_rank_estimate(image[..., 0], 0.1)


def test_flat_groups_do_not_break_the_eigendecomposition() -> None:
    """A constant alpha plane beside noisy colour leaves groups flat to within rounding,
    whose Gram matrices single-precision LAPACK cannot solve: solved in double instead."""
    rng = np.random.default_rng(0)
    image = rng.random((40, 48, 4))
    image[..., 3] = 1.0
    image[:10, :12, 3] = 0.0
    image[20:, 30:, 3] = 0.5
    out = low_rank_estimate(image, 0.3)
    assert np.all(np.isfinite(out)) and out.shape == image.shape
    # inside its flat regions the plane stays flat (at this noise level its edges blur)
    assert float(np.median(np.abs(out[..., 3] - image[..., 3]))) < 0.02


def test_groups_too_many_to_keep_are_matched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the whole image's groups would not fit in _KEPT_INDICES (a 4096 px image),
    they are matched again every iteration instead of every second one: nearly the same
    estimate."""
    clean = img_as_float(center_crop(data.camera(), 48))[..., None]
    noisy = clean + np.random.default_rng(4).normal(0, 0.1, clean.shape)
    kept = low_rank_estimate(noisy, 0.1)
    monkeypatch.setattr(lr, "_KEPT_INDICES", 0)
    matched = low_rank_estimate(noisy, 0.1)
    assert not np.array_equal(kept, matched)
    assert _mse(matched, clean) == pytest.approx(_mse(kept, clean), rel=0.1)
