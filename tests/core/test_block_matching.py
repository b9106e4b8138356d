"""BM3D's two steps (core/block_matching.py): grouping, collaborative hard thresholding (the
pilot it gives the Wiener stage), collaborative Wiener filtering. Small images, no network."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import data, img_as_float

from napari_specdip.core import block_matching as bm
from napari_specdip.core.block_matching import hard_threshold_estimate, wiener_estimate
from napari_specdip.core.refine import wiener_refine
from napari_specdip.samples import center_crop


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


def _match(image: torch.Tensor, refs_y: torch.Tensor, refs_x: torch.Tensor,
           threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every band's groups and sizes, in order."""
    bands = list(bm._matched_bands(image, refs_y, refs_x, threshold, bm.GROUP))
    return torch.cat([g for g, _ in bands]), torch.cat([s for _, s in bands])


def test_groups_hold_the_nearest_blocks_of_the_search_window() -> None:
    """Each group starts with its reference block, its distances are sorted, and its k-th
    distance is no larger than the k-th among the blocks within RADIUS (brute force)."""
    rng = np.random.default_rng(0)
    image = rng.random((40, 37)).astype(np.float32)
    refs_y, refs_x = bm._reference_grid(40), bm._reference_grid(37)
    assert int(refs_y[-1]) == 40 - bm.BLOCK and int(refs_x[-1]) == 37 - bm.BLOCK
    groups, sizes = _match(torch.from_numpy(image), refs_y, refs_x, threshold=1.0)
    width = image.shape[1]
    blocks = {(y, x): image[y:y + bm.BLOCK, x:x + bm.BLOCK]
              for y in range(40 - bm.BLOCK + 1) for x in range(37 - bm.BLOCK + 1)}
    for n, (ry, rx) in enumerate((int(y), int(x)) for y in refs_y for x in refs_x):
        chosen = [divmod(int(p), width) for p in groups[n]]
        assert chosen[0] == (ry, rx)
        ref = blocks[(ry, rx)]
        got = [float(np.mean((blocks[c] - ref) ** 2)) for c in chosen]
        assert got == sorted(got)
        window = sorted(float(np.mean((b - ref) ** 2)) for (y, x), b in blocks.items()
                        if abs(y - ry) <= bm.RADIUS and abs(x - rx) <= bm.RADIUS)
        assert np.all(np.array(got) <= np.array(window[:bm.GROUP]) + 1e-5)
    # every block is within a mean squared difference of 1 of any other here
    assert torch.all(sizes == bm.GROUP)


def test_group_sizes_are_powers_of_two_of_the_similar_blocks() -> None:
    image = torch.zeros((24, 24))
    image[10:13, 10:13] = 1.0  # a spot: each block holding it holds it in its own place
    groups, sizes = _match(image, bm._reference_grid(24), bm._reference_grid(24), 1e-4)
    assert set(sizes.tolist()) <= {1, 2, 4, 8, 16}
    assert int(sizes.max()) == bm.GROUP and int(sizes.min()) < bm.GROUP


def test_haar_is_orthonormal() -> None:
    for n in (1, 2, 4, 8, 16, 32):
        h = bm._haar(n, torch.device("cpu"))
        torch.testing.assert_close(h @ h.T, torch.eye(n), atol=1e-6, rtol=0)


@pytest.mark.parametrize("rgb", [False, True])
def test_it_denoises_a_photo_better_than_smoothing(rgb: bool) -> None:
    clean = img_as_float(data.astronaut())[100:164, 180:244] if rgb else \
        img_as_float(center_crop(data.camera(), 64))
    clean = clean if rgb else clean[..., None]
    sigma = 25 / 255
    noisy = clean + np.random.default_rng(2).normal(0, sigma, clean.shape)
    estimate = hard_threshold_estimate(noisy, sigma)
    assert estimate.shape == noisy.shape and estimate.dtype == np.float64
    from scipy.ndimage import gaussian_filter

    smoothed = gaussian_filter(noisy, (1.0, 1.0, 0))
    assert _mse(estimate, clean) < 0.8 * _mse(smoothed, clean)
    assert _mse(estimate, clean) < _mse(noisy, clean) / 3
    np.testing.assert_array_equal(estimate, hard_threshold_estimate(noisy, sigma))


def test_the_bior15_transform_is_the_normalised_wavelet_decomposition() -> None:
    m = bm.bior15_matrix(8)
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0)
    np.testing.assert_allclose(m[0], np.full(8, 8 ** -0.5))  # the block's mean
    # bior1.5's high pass is Haar's: the finest details are pairs' differences
    haar = np.kron(np.eye(4), [2 ** -0.5, -(2 ** -0.5)])
    np.testing.assert_allclose(m[4:], haar, atol=1e-12)
    # the coarsest detail: the analysis low pass of length 10 smears it over the block
    np.testing.assert_allclose(m[1], [0.21942, 0.44928, 0.44928, 0.21942,
                                      -0.21942, -0.44928, -0.44928, -0.21942], atol=5e-5)
    assert np.linalg.cond(m) < 10  # invertible, and the inverse is well behaved


def test_the_bior15_transform_is_pywavelets_decomposition() -> None:
    pywt = pytest.importorskip("pywt")
    rows = []
    for i in range(8):
        with warnings.catch_warnings():  # three levels of 8 values: all boundary, as BM3D has it
            warnings.simplefilter("ignore", UserWarning)
            rows.append(np.concatenate(pywt.wavedec(np.eye(8)[i], "bior1.5",
                                                    mode="periodization", level=3)))
    expected = np.array(rows).T
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(bm.bior15_matrix(8), expected, atol=1e-12)


def test_several_transforms_average_their_estimates_from_one_matching() -> None:
    clean = img_as_float(center_crop(data.camera(), 48))[..., None]
    noisy = clean + np.random.default_rng(3).normal(0, 0.1, clean.shape)
    dct = hard_threshold_estimate(noisy, 0.1, transforms=("dct",))
    wavelet = hard_threshold_estimate(noisy, 0.1)  # BM3D's own: bior1.5
    np.testing.assert_array_equal(wavelet, hard_threshold_estimate(noisy, 0.1,
                                                                   transforms=("bior1.5",)))
    assert not np.allclose(dct, wavelet)
    both = hard_threshold_estimate(noisy, 0.1, transforms=("dct", "bior1.5"))
    np.testing.assert_allclose(both, (dct + wavelet) / 2, atol=1e-6)
    for error in (_mse(dct, clean), _mse(wavelet, clean), _mse(both, clean)):
        assert error < _mse(noisy, clean) / 3
    with pytest.raises(ValueError, match="transforms must be among"):
        hard_threshold_estimate(noisy, 0.1, transforms=("haar",))


def test_small_or_noiseless_images_come_back_unchanged() -> None:
    tiny = np.random.default_rng(0).random((6, 30, 1))
    np.testing.assert_array_equal(hard_threshold_estimate(tiny, 0.1), tiny)
    image = np.random.default_rng(1).random((16, 16, 1))
    np.testing.assert_array_equal(hard_threshold_estimate(image, 0.0), image)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        hard_threshold_estimate(image[..., 0], 0.1)


def test_estimates_are_the_same_on_every_call() -> None:
    """Blocks are added back in order: the same input gives the same bits, on any number
    of threads (index_put_'s accumulate gave differences of 1e-6 from call to call)."""
    clean = img_as_float(center_crop(data.camera(), 128))[..., None]
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape)
    first = hard_threshold_estimate(noisy, 0.1)
    second = wiener_estimate(noisy, first, 0.1)
    for _ in range(3):
        np.testing.assert_array_equal(hard_threshold_estimate(noisy, 0.1), first)
        np.testing.assert_array_equal(wiener_estimate(noisy, first, 0.1), second)


@pytest.mark.parametrize("rgb", [False, True])
def test_the_second_step_improves_on_its_pilot_and_on_the_patch_filter(rgb: bool) -> None:
    """Groups matched on the pilot average structure that repeats across the image (the
    bricks), which the Wiener filter on single patches cannot (on a face's detail, which
    does not repeat, the patches may do better: the stage blends both)."""
    if rgb:
        clean = img_as_float(data.astronaut())[100:164, 180:244]
    else:
        clean = img_as_float(center_crop(data.brick(), 64))[..., None]
    sigma = 25 / 255
    noisy = clean + np.random.default_rng(3).normal(0, sigma, clean.shape)
    before = noisy.copy()
    pilot = hard_threshold_estimate(noisy, sigma)
    pilot_before = pilot.copy()
    estimate = wiener_estimate(noisy, pilot, sigma)
    np.testing.assert_array_equal(noisy, before)
    np.testing.assert_array_equal(pilot, pilot_before)
    assert estimate.shape == noisy.shape and estimate.dtype == np.float64
    patches = wiener_refine(noisy, pilot, sigma ** 2)
    assert _mse(estimate, clean) < 0.95 * _mse(pilot, clean)
    assert rgb or _mse(estimate, clean) < _mse(patches, clean)


def test_the_second_step_checks_its_inputs() -> None:
    image = np.random.default_rng(1).random((16, 16, 1))
    np.testing.assert_array_equal(wiener_estimate(image, image, 0.0), image)
    tiny = image[:6]
    np.testing.assert_array_equal(wiener_estimate(tiny, tiny, 0.1), tiny)
    with pytest.raises(ValueError, match="one shape"):
        wiener_estimate(image, image[:8], 0.1)
