"""The Wiener stage after a denoising fit: the filter itself, and the engine's use of it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.fft import dctn, idctn
from skimage import data, img_as_float

from napari_specdip import RestoreParameters, restore
from napari_specdip.core import refine
from napari_specdip.core.block_matching import hard_threshold_estimate, wiener_estimate
from napari_specdip.core.low_rank import low_rank_estimate
from napari_specdip.core.refine import dct_matrix, wiener_refine
from napari_specdip.samples import add_gaussian_noise, center_crop

FAST = {"width": 8, "depth": 3, "stop": "none", "max_iterations": 30}


def _basis(patch: int) -> np.ndarray:
    """The 2D DCT basis functions, (patch**2, patch, patch), from the 1D matrix."""
    one = dct_matrix(patch)
    return np.einsum("ka,lb->klab", one, one).reshape(patch * patch, patch, patch)


def _reference_wiener(y: np.ndarray, pilot: np.ndarray, variance: np.ndarray,
                      patch: int) -> np.ndarray:
    """The same filter written patch by patch with scipy's DCT (one channel)."""
    pad = patch - 1
    yp, pp, vp = (np.pad(a, pad, mode="reflect") for a in (y, pilot, variance))
    out, norm = np.zeros_like(yp), np.zeros_like(yp)
    basis_sq = _basis(patch) ** 2
    for i in range(yp.shape[0] - pad):
        for j in range(yp.shape[1] - pad):
            window = (slice(i, i + patch), slice(j, j + patch))
            coeff_y = dctn(yp[window], norm="ortho")
            coeff_p = dctn(pp[window], norm="ortho")
            noise = (basis_sq * vp[window]).sum((-2, -1)).reshape(patch, patch)
            weights = coeff_p ** 2 / (coeff_p ** 2 + noise)
            share = 1.0 / (weights ** 2 * noise).sum()
            out[window] += share * idctn(weights * coeff_y, norm="ortho")
            norm[window] += share
    return (out / norm)[pad:-pad, pad:-pad]


def test_dct_basis_is_orthonormal() -> None:
    basis = _basis(8).reshape(64, 64)
    np.testing.assert_allclose(basis @ basis.T, np.eye(64), atol=1e-12)


@pytest.mark.parametrize("constant", [True, False])
def test_filter_matches_a_patch_by_patch_reference(monkeypatch: pytest.MonkeyPatch,
                                                   constant: bool) -> None:
    rng = np.random.default_rng(1)
    clean = np.clip(np.add.outer(np.linspace(0, 1, 20), np.linspace(0, 0.5, 23)), 0, 1)
    y = clean + rng.normal(0, 0.05, clean.shape)
    pilot = clean + rng.normal(0, 0.01, clean.shape)
    variance = np.full_like(y, 0.05 ** 2) if constant else 0.001 + 0.004 * clean
    expected = _reference_wiener(y, pilot, variance, 6)
    # bands of three rows: the band seams must not show
    monkeypatch.setattr(refine, "_BAND_VALUES", 36 * 3 * (23 + 10))
    banded = wiener_refine(y[..., None], pilot[..., None], variance[..., None], patch=6)
    monkeypatch.undo()
    whole = wiener_refine(y[..., None], pilot[..., None], variance[..., None], patch=6)
    np.testing.assert_allclose(banded, whole, atol=1e-5)  # float32 sums in another order
    np.testing.assert_allclose(whole[..., 0], expected, atol=2e-5)


def test_filter_restores_detail_a_blurred_pilot_lost() -> None:
    clean = center_crop(img_as_float(data.camera()), 64)[..., None]
    noisy = add_gaussian_noise(clean, seed=0)
    from scipy.ndimage import gaussian_filter

    pilot = gaussian_filter(noisy, (1.5, 1.5, 0))  # a low-pass first estimate
    refined = wiener_refine(noisy, pilot, (25 / 255) ** 2)
    error = [float(np.mean((a - clean) ** 2)) for a in (noisy, pilot, refined)]
    # measured: 0.0062, 0.0025, 0.0015
    assert error[2] < 0.7 * error[1] and error[2] < 0.3 * error[0], error


def test_rgb_is_filtered_in_opponent_colours() -> None:
    clean = center_crop(img_as_float(data.astronaut()), 48)
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0, 0.08, clean.shape)
    pilot = clean + rng.normal(0, 0.01, clean.shape)
    joint = wiener_refine(noisy, pilot, 0.08 ** 2)
    apart = np.stack([wiener_refine(noisy[..., c:c + 1], pilot[..., c:c + 1], 0.08 ** 2)[..., 0]
                      for c in range(3)], axis=-1)
    assert not np.allclose(joint, apart)
    # the chroma channels, nearly flat, are smoothed harder
    assert np.mean((joint - clean) ** 2) < np.mean((apart - clean) ** 2)


def test_no_noise_returns_the_observation_and_bad_input_is_refused() -> None:
    y = np.random.default_rng(0).random((16, 16, 1))
    np.testing.assert_array_equal(wiener_refine(y, y * 0.5, 0.0), y)
    with pytest.raises(ValueError, match="one shape"):
        wiener_refine(y, y[:8], 0.01)
    with pytest.raises(ValueError, match="finite"):
        wiener_refine(y, y, -1.0)
    with pytest.raises(ValueError, match="finite"):
        wiener_refine(y, y, np.nan)


@pytest.fixture(scope="module")
def noisy_camera() -> tuple[np.ndarray, np.ndarray]:
    clean = center_crop(img_as_float(data.camera()), 48)
    return clean, add_gaussian_noise(clean, seed=0)


def test_run_refines_with_the_estimated_noise(noisy_camera: tuple[np.ndarray, np.ndarray]
                                              ) -> None:
    clean, noisy = noisy_camera
    on = restore(noisy, "denoise", reference=clean, **FAST)
    off = restore(noisy, "denoise", reference=clean, refine="none", **FAST)
    record = on.parameters["refined"]
    # the camera's dark coat is clipped at black: estimated away from the clipped values
    assert record["method"] == "wiener"
    assert record["noise_from"].startswith("estimated from the image")
    assert 0.5 < record["noise_variance"] / (25 / 255) ** 2 < 2.0
    assert off.parameters["refined"] == {"method": "none"}
    # one fit, the stage after it: the same seed's network output is the unrefined PSNR
    assert on.metrics["psnr_unrefined"] == pytest.approx(off.metrics["psnr"], abs=1e-9)
    assert "psnr_unrefined" not in off.metrics
    assert on.metrics["psnr"] > off.metrics["psnr"]
    assert on.image.dtype == noisy.dtype and on.image.shape == noisy.shape
    given = restore(noisy, "denoise", refine="wiener", noise_sigma=25 / 255, **FAST)
    assert given.parameters["refined"]["noise_from"] == "given"
    assert given.parameters["refined"]["noise_variance"] == pytest.approx((25 / 255) ** 2)


def test_the_pilot_blends_the_network_with_block_matching() -> None:
    """Under Gaussian noise the filter's pilot is PILOT_NETWORK_SHARE of the network's
    output and the rest BM3D's first step on the observation, and the filter is
    GROUPED_SHARE BM3D's second step with that pilot, the rest the Wiener filter on every
    patch, and LOW_RANK_SHARE of the output is WNNM's estimate of the observation, the rest
    that filter (noise not clipped here)."""
    clean = 0.2 + 0.6 * center_crop(img_as_float(data.camera()), 48)
    noisy = clean + np.random.default_rng(1).normal(0, 0.05, clean.shape)
    sigma = 0.05
    on = restore(noisy, "denoise", noise_sigma=sigma, **FAST)
    off = restore(noisy, "denoise", noise_sigma=sigma, refine="none", **FAST)
    share, grouped = refine.PILOT_NETWORK_SHARE, refine.GROUPED_SHARE
    low_rank = refine.LOW_RANK_SHARE
    assert 0 < share < 1 and 0 < grouped <= 1 and 0 < low_rank < 1
    record = on.parameters["refined"]
    assert record["pilot"] == (
        f"{share:g} x the network's output + {1 - share:g} x block matching "
        "(BM3D's first step, blocks in dct and bior1.5, averaged)")
    assert record["filter"] == (
        f"{grouped:g} x BM3D's second step (groups matched on the pilot) + "
        f"{1 - grouped:g} x the Wiener filter on every 8 x 8 patch")
    assert record["low_rank"] == (
        f"{low_rank:g} x WNNM (weighted nuclear norm minimisation of groups of similar "
        f"patches) + {1 - low_rank:g} x the filter")
    obs = noisy[..., None]
    # the mean of the two transforms' estimates (test_block_matching.py checks that)
    assert refine.PILOT_TRANSFORMS == ("dct", "bior1.5")
    first = hard_threshold_estimate(obs, sigma, transforms=refine.PILOT_TRANSFORMS)
    pilot = share * off.image[..., None] + (1 - share) * first
    filtered = (grouped * wiener_estimate(obs, pilot, sigma)
                + (1 - grouped) * wiener_refine(obs, pilot, sigma ** 2))
    expected = np.clip(low_rank * low_rank_estimate(obs, sigma) + (1 - low_rank) * filtered,
                       0, 1)[..., 0]
    np.testing.assert_allclose(on.image, expected, atol=1e-6)
    # the pilot is better than the network's output alone, and so is the result
    net_only = np.clip(wiener_refine(obs, off.image[..., None], sigma ** 2), 0, 1)[..., 0]
    assert np.mean((on.image - clean) ** 2) < np.mean((net_only - clean) ** 2)


def test_presets_and_tasks() -> None:
    assert RestoreParameters.for_task("denoise", preset="quick").refine == "wiener"
    assert RestoreParameters.for_task("denoise").refine == "wiener"
    assert RestoreParameters.for_task("denoise", preset="paper").refine == "none"
    with pytest.raises(ValueError, match="refine"):
        RestoreParameters.for_task("denoise", refine="bm3d")
    image = center_crop(img_as_float(data.camera()), 32)
    mask = np.zeros((32, 32), bool)
    mask[10:14, 10:14] = True
    other = restore(image, "inpaint", mask=mask, **FAST)
    assert "refined" not in other.parameters


def test_camera_noise_is_refined_with_the_model(noisy_camera: tuple[np.ndarray, np.ndarray]
                                                ) -> None:
    clean, _ = noisy_camera
    rng = np.random.default_rng(0)
    adu = (rng.poisson(clean * 50) * 4.0 + 100 + rng.normal(0, 4.0, clean.shape))
    result = restore(adu.astype(np.uint16), "denoise", noise="poisson-gaussian", noise_gain=4.0,
                     noise_read_sigma=4.0, noise_offset=100.0, **FAST)
    record = result.parameters["refined"]
    assert record["method"] == "wiener" and record["noise_from"] == "the camera model at the output"
    # block matching assumes white noise of one level: the camera's is neither
    assert record["pilot"] == "the network's output"
    assert record["filter"] == "the Wiener filter on every 8 x 8 patch"
    assert "low_rank" not in record  # WNNM too wants white noise of one level
    assert result.image.dtype == np.uint16


def test_photon_noise_under_the_gaussian_model_is_filtered_as_camera_noise() -> None:
    """Left to the Gaussian model, camera counts whose noise grows with the signal are
    filtered with the growth found where it lifts the variance above the level read off
    the dark pixels; a given noise sigma is taken at its word, and white noise keeps the
    Gaussian stage."""
    clean = 0.05 + 0.95 * center_crop(img_as_float(data.camera()), 64)
    rng = np.random.default_rng(0)
    adu = np.rint(100 + 2.0 * (rng.poisson(clean * 30) + rng.normal(0, 1.0, clean.shape)))
    reference = 100 + 60.0 * clean
    result = restore(adu.astype(np.uint16), "denoise", reference=reference, **FAST)
    record = result.parameters["refined"]
    assert record["noise_from"] == "estimated from the image"
    assert record["signal_dependent"]["growth"] >= 2.0
    assert 0.0 < record["signal_dependent"]["camera_share"] <= 1.0
    assert "camera_stage" in record and "low_rank" in record
    assert result.metrics["psnr"] > result.metrics["psnr_unrefined"]
    assert result.image.dtype == np.uint16
    given = restore(adu.astype(np.uint16), "denoise", noise_sigma=6.0, **FAST)
    assert given.parameters["refined"]["noise_from"] == "given"
    assert "signal_dependent" not in given.parameters["refined"]
    both = restore(adu.astype(np.uint16), "denoise", ensemble=2, **FAST)
    assert both.parameters["refined"]["method"] == "wiener"  # the mean is refined too
    assert both.parameters["refined"]["signal_dependent"]["growth"] >= 2.0
    white = restore(clean + rng.normal(0, 0.05, clean.shape), "denoise", **FAST)
    assert "signal_dependent" not in white.parameters["refined"]
    assert white.parameters["refined"]["pilot"] != "the network's output"


def test_clipped_photon_noise_under_the_gaussian_model_is_followed_and_declipped() -> None:
    """Photon counts clipped to [0, 1] (an 8-bit export of a dark fluorescence field):
    the growth is found through the clipped moments, the camera stage takes the bright
    nuclei and the Gaussian stage the black background, and both are declipped."""
    yy, xx = np.mgrid[:64, :64]
    clean = np.zeros((64, 64))
    for cy, cx, r, level in ((18, 20, 12, 0.8), (44, 40, 14, 0.6), (14, 50, 9, 0.7),
                             (50, 12, 8, 0.5)):
        clean = np.maximum(clean, ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * level)
    clean = ndi.gaussian_filter(clean, 2.0)
    rng = np.random.default_rng(0)
    counts = np.clip((rng.poisson(clean * 30) + rng.normal(0, 2.0, clean.shape)) / 30, 0, 1)
    result = restore(counts, "denoise", reference=clean, **FAST)
    record = result.parameters["refined"]
    found = record["signal_dependent"]
    assert found["a"] == pytest.approx(1 / 30, rel=0.3) and found["growth"] >= 2.0
    assert 0.0 < found["camera_share"] < 0.8  # the background stays with the Gaussian stage
    assert "low" in record["declipped"]
    assert result.metrics["psnr"] > result.metrics["psnr_unrefined"]
    assert result.metrics["psnr"] > result.metrics["psnr_before_declipping"]


def test_an_ensembles_mean_is_refined_under_gaussian_noise_only(
        noisy_camera: tuple[np.ndarray, np.ndarray]) -> None:
    clean, noisy = noisy_camera
    both = restore(noisy, "denoise", reference=clean, ensemble=2, **FAST)
    assert both.parameters["refined"]["method"] == "wiener"
    assert both.metrics["psnr"] > both.metrics["psnr_unrefined"]
    rng = np.random.default_rng(0)
    adu = (rng.poisson(clean * 50) * 4.0 + 100 + rng.normal(0, 4.0, clean.shape))
    camera = restore(adu.astype(np.uint16), "denoise", noise="poisson-gaussian", noise_gain=4.0,
                     noise_read_sigma=4.0, noise_offset=100.0, ensemble=2, **FAST)
    assert camera.parameters["refined"] == {"method": "none",
                                            "reason": "an ensemble's mean, camera noise"}


def test_tiles_record_their_stage(noisy_camera: tuple[np.ndarray, np.ndarray]) -> None:
    _, noisy = noisy_camera
    result = restore(np.tile(noisy, (2, 1)), "denoise", tile=48, tile_overlap=8, **FAST)
    assert [t["refined"]["method"] for t in result.parameters["tiles"]] == ["wiener"] * 2


@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.3])
@pytest.mark.parametrize(("low", "high"), [(True, False), (False, True), (True, True)])
def test_declipping_inverts_the_clipped_mean(sigma: float, low: bool, high: bool) -> None:
    true = np.linspace(0.0, 1.0, 201)
    biased = refine.clipped_mean(true, sigma, low=low, high=high)
    assert np.all(np.diff(biased) > 0)  # one clean value per mean
    np.testing.assert_allclose(refine.declip(biased, sigma, low=low, high=high), true,
                               atol=2e-3)
    # the mean of many clipped draws is what the map says
    rng = np.random.default_rng(0)
    x = np.array([0.0, 0.03, 0.5, 0.97, 1.0])
    draws = x + rng.normal(0, sigma, (200_000, 5))
    draws = np.clip(draws, 0 if low else -np.inf, 1 if high else np.inf)
    np.testing.assert_allclose(draws.mean(0), refine.clipped_mean(x, sigma, low=low, high=high),
                               atol=4 * sigma / np.sqrt(200_000) + 1e-4)
    # nothing clipped or no noise: values unchanged
    np.testing.assert_array_equal(refine.declip(biased, sigma, low=False, high=False), biased)
    np.testing.assert_array_equal(refine.declip(biased, 0.0, low=low, high=high), biased)


def test_clipped_ends_are_those_where_values_pile_up() -> None:
    rng = np.random.default_rng(1)
    dark = 0.03 + rng.normal(0, 0.1, (64, 64))
    assert refine.clipped_ends(np.clip(dark, 0, 1)) == (True, False)
    assert refine.clipped_ends(np.clip(1 - dark, 0, 1)) == (False, True)
    # its own min and max only: an image scaled to its range was never clipped
    unclipped = (dark - dark.min()) / (dark.max() - dark.min())
    assert refine.clipped_ends(unclipped) == (False, False)


def test_a_clipped_dark_background_is_declipped() -> None:
    # bright discs on black, noise clipped at 0 as an 8-bit camera stores it
    yy, xx = np.mgrid[:48, :48]
    clean = np.zeros((48, 48))
    for cy, cx in ((12, 14), (32, 30), (20, 38)):
        clean += 0.6 * (np.hypot(yy - cy, xx - cx) < 7)
    rng = np.random.default_rng(2)
    noisy = np.clip(clean + rng.normal(0, 40 / 255, clean.shape), 0, 1)
    result = restore(noisy, "denoise", reference=clean, noise_sigma=40 / 255, **FAST)
    record = result.parameters["refined"]
    assert record["declipped"] == ["low"] and "psnr_before_declipping" not in record
    # the background's mean is pulled back towards black: the error falls
    assert result.metrics["psnr"] > result.metrics["psnr_before_declipping"] + 1.0
    background = clean == 0
    assert result.image[background].mean() < 0.7 * noisy[background].mean()
    # its noise estimated: from the patches away from the clipped values, which the
    # whole image's estimate takes for less noise
    estimated = restore(noisy, "denoise", **FAST).parameters["refined"]
    assert estimated["noise_from"].startswith(
        "estimated from the image away from its clipped values")
    assert 0.7 < np.sqrt(estimated["noise_variance"]) / (40 / 255) < 1.3
    # the same scene on a grey floor: never clipped, never declipped
    floor = restore(np.clip(noisy * 0.5 + 0.25, 0, 1), "denoise", **FAST)
    assert "declipped" not in floor.parameters["refined"]
    assert floor.parameters["refined"]["noise_from"] == "estimated from the image"
    # camera noise, clipped at black by its read noise: declipped with the camera's
    # signal-dependent deviation; the same exposure with its offset kept is not clipped
    counts = rng.poisson(clean * 30) / 30 + rng.normal(0, 2 / 30, clean.shape)
    camera = restore(np.clip(counts, 0, 1), "denoise", reference=clean,
                     noise="poisson-gaussian", noise_gain=1 / 30, noise_read_sigma=2 / 30,
                     noise_offset=0.0, **FAST)
    assert camera.parameters["refined"]["declipped"] == ["low"]
    assert camera.metrics["psnr"] > camera.metrics["psnr_before_declipping"]
    raw = restore(counts + 0.2, "denoise", noise="poisson-gaussian", noise_gain=1 / 30,
                  noise_read_sigma=2 / 30, noise_offset=0.2, **FAST)
    assert "declipped" not in raw.parameters["refined"]
