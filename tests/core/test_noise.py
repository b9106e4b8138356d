"""The Poisson-Gaussian noise model: estimator, stabilising transform, engine runs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_specdip import restore
from napari_specdip.core.noise import (
    BLACK_METHODS,
    AnscombeInverse,
    PoissonGaussian,
    StabilisedDomain,
    CameraEstimate,
    anscombe,
    clipped_moments,
    clipped_noise_variance,
    estimate_camera,
    estimate_poisson_gaussian,
    estimate_white_noise_variance,
    held_out_noise,
    signal_dependence,
)
from napari_specdip.samples import noisy_microscopy

FAST = {"width": 8, "depth": 3, "stop": "none"}


def nuclei(size: int, seed: int = 0) -> np.ndarray:
    """Blurred discs of several brightnesses on a dim background, in [0.03, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size))
    for _ in range(12):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(size / 16, size / 7)
        image = np.maximum(image, ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * rng.uniform(0.3, 1))
    image = ndi.gaussian_filter(image, 1.5) + 0.03
    return image / image.max()


def expose(clean: np.ndarray, *, peak: float, read: float, gain: float, offset: float,
           seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    photons = rng.poisson(clean * peak) + rng.normal(0.0, read, clean.shape)
    return np.rint(offset + gain * photons).astype(np.uint16)


@pytest.mark.parametrize(("peak", "read"), [(10.0, 2.0), (30.0, 3.0)])
def test_estimator_finds_gain_and_read_noise(peak: float, read: float) -> None:
    gain, offset = 3.0, 100.0
    adu = expose(nuclei(192), peak=peak, read=read, gain=gain, offset=offset).astype(float)
    low, high = adu.min(), adu.max()
    unit = (adu - low) / (high - low)
    found = estimate_poisson_gaussian(unit).model.to_camera(low=low, high=high)
    assert found["gain"] == pytest.approx(gain, rel=0.2)
    assert found["read_sigma"] == pytest.approx(read * gain, rel=0.2)
    given = estimate_poisson_gaussian(unit, black=(offset - low) / (high - low))
    assert given.model.to_camera(low=low, high=high)["read_sigma"] == pytest.approx(read * gain,
                                                                                   rel=0.2)


@pytest.mark.parametrize(("peak", "read"), [(60.0, 1.0), (5.0, 1.0)])
def test_estimator_counts_the_photons_of_a_lit_background(peak: float, read: float) -> None:
    # the background holds 3% of the peak: 1.8 photons at 60, whose shot noise the darkest
    # level would count as read noise (1.45x); at 5 photons that level's 7x7 mean dips
    # below the pedestal by its own noise (0.8x)
    gain, offset = 2.0, 100.0
    adu = expose(nuclei(192), peak=peak, read=read, gain=gain, offset=offset).astype(float)
    low, high = adu.min(), adu.max()
    found = estimate_poisson_gaussian((adu - low) / (high - low))
    assert found.black_from == "skewness"
    camera = found.model.to_camera(low=low, high=high)
    assert camera["read_sigma"] == pytest.approx(read * gain, rel=0.2)
    assert camera["offset"] == pytest.approx(offset, abs=0.5 * gain)


def test_estimator_falls_back_to_the_darkest_level_when_outliers_skew_the_noise() -> None:
    gain, offset, read = 2.0, 100.0, 2.0
    adu = expose(nuclei(192), peak=30.0, read=read, gain=gain, offset=offset).astype(float)
    warm = np.random.default_rng(9).random(adu.shape) < 0.005  # warm pixels, 5 sigmas up
    adu[warm] += 5 * read * gain
    low, high = adu.min(), adu.max()
    found = estimate_poisson_gaussian((adu - low) / (high - low))
    # their skew alone would count as photons (read noise 0.27x); their fourth cumulant,
    # far above a Poisson count's, gives them away
    assert found.black_from == "darkest level"
    assert found.model.to_camera(low=low, high=high)["read_sigma"] == pytest.approx(
        read * gain, rel=0.2)


def test_estimator_samples_a_large_image_in_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import noise

    gain, offset, read = 2.0, 100.0, 2.0
    adu = expose(nuclei(256), peak=30.0, read=read, gain=gain, offset=offset).astype(float)
    low, high = adu.min(), adu.max()
    unit = (adu - low) / (high - low)
    whole = estimate_poisson_gaussian(unit).model.to_camera(low=low, high=high)
    monkeypatch.setattr(noise, "SAMPLED_PIXELS", 256 * 96)
    bands = noise._bands(256, 256)
    assert len(bands) > 1 and bands[0][0] == 0 and bands[-1][1] == 256
    assert all(b1 <= t2 for (_, b1), (t2, _) in zip(bands, bands[1:]))  # spread, no overlap
    assert sum(b - t for t, b in bands) * 256 <= 256 * 96
    sampled = estimate_poisson_gaussian(unit).model.to_camera(low=low, high=high)
    assert sampled["gain"] == pytest.approx(whole["gain"], rel=0.1)
    assert sampled["read_sigma"] == pytest.approx(read * gain, rel=0.2)
    # the check before a run counts the rows the estimator samples, not the image's
    known = np.zeros(unit.shape, bool)
    known[20:44] = True  # between the first two bands: over 1500 samples, none sampled
    assert noise.usable_samples(unit, known) == 0
    with pytest.raises(ValueError, match="too few usable pixels"):
        estimate_poisson_gaussian(unit, known)
    monkeypatch.setattr(noise, "SAMPLED_PIXELS", 1 << 22)
    assert noise.usable_samples(unit, known) > 1500


def test_estimator_sees_plain_gaussian_noise_as_flat() -> None:
    rng = np.random.default_rng(1)
    noisy = nuclei(128) * 0.8 + 0.1 + rng.normal(0, 0.02, (128, 128))
    model = estimate_poisson_gaussian(noisy).model
    # the variance changes little across the range (a Poisson image: a * 1 >> b)
    assert model.a < 0.4 * model.b
    assert float(np.sqrt(model.variance(0.5))) == pytest.approx(0.02, rel=0.15)


@pytest.mark.parametrize("peak", [10.0, 30.0])
def test_signal_dependence_finds_photon_noise(peak: float) -> None:
    adu = expose(nuclei(128), peak=peak, read=1.0, gain=2.0, offset=100.0).astype(float)
    low, high = adu.min(), adu.max()
    found = signal_dependence((adu - low) / (high - low))
    assert found is not None
    assert found.growth >= 2.0 and found.structure <= 1.3
    assert found.line_misfit <= 0.1 * found.flat_misfit
    # the slope is the camera's: gain 2 ADU per photon, on the image's [0, 1] scale
    assert found.model.a * (high - low) == pytest.approx(2.0, rel=0.2)
    assert set(found.record()) == {"growth", "a", "b", "line_misfit", "flat_misfit",
                                   "structure"}


@pytest.mark.parametrize(("low", "high"), [(True, False), (False, True), (True, True)])
def test_clipped_moments_match_clipped_draws(low: bool, high: bool) -> None:
    x = np.linspace(-0.2, 1.2, 29)
    sigma = 0.05 + 0.1 * x.clip(0, 1)  # one deviation per value, as a camera's
    draws = x + sigma * np.random.default_rng(0).standard_normal((100_000, x.size))
    draws = np.clip(draws, 0.0 if low else -np.inf, 1.0 if high else np.inf)
    mean, variance = clipped_moments(x, sigma, low=low, high=high)
    np.testing.assert_allclose(mean, draws.mean(0), atol=1e-3)
    np.testing.assert_allclose(variance, draws.var(0), rtol=0.03, atol=2e-5)
    # an end not clipped leaves the variance there as it was
    if not (low and high):
        far = x > 1.1 if low else x < -0.1
        np.testing.assert_allclose(variance[far], sigma[far] ** 2, rtol=1e-6)


def test_clipped_moments_without_noise_are_the_clipped_values() -> None:
    """A fit's search can reach zero noise: the moments are then the clipped values
    themselves, with no division by zero (warnings are errors here)."""
    x = np.array([-0.5, 0.0, 0.3, 1.0, 1.5])
    mean, variance = clipped_moments(x, 0.0, low=True, high=True)
    np.testing.assert_allclose(mean, [0.0, 0.0, 0.3, 1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(variance, 0.0, atol=1e-12)


def test_signal_dependence_on_uniform_integer_noise() -> None:
    """Full-range int8 noise piles a few pixels at both ends, which reads as clipped: the
    clipped fit's search then wanders to vanishing levels and must still answer."""
    rng = np.random.default_rng(0)
    rng.integers(0, 2, (40, 40))  # advances the generator to a draw whose fit reached zero noise
    values = rng.integers(-128, 127, (40, 40)).astype(np.float64)
    z = ((values - values.min()) / np.ptp(values))[..., None]
    found = signal_dependence(z, None, low=True, high=True)
    assert found is None or found.model.a > 0


def filaments(size: int, seed: int = 0) -> np.ndarray:
    """Thin blurred random curves on black, in [0, 1]: sparse fluorescence."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size, size))
    for _ in range(14):
        y, x = rng.uniform(0, size, 2)
        angle, brightness = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.0)
        for _ in range(3 * size):
            angle += rng.normal(0, 0.08)
            y, x = y + np.sin(angle) * 0.5, x + np.cos(angle) * 0.5
            if not (0 <= y < size and 0 <= x < size):
                break
            image[int(y), int(x)] = max(image[int(y), int(x)], brightness)
    image = ndi.gaussian_filter(image, 1.3)
    return image / image.max()


@pytest.mark.parametrize("sigma", [25.0, 50.0])
def test_clipped_noise_level_from_the_intensity_levels(sigma: float) -> None:
    """Filaments on black, the noise clipped at 0 (over a third of the pixels): the
    patches away from the clipped values find half the noise, the clipped moments of the
    intensity levels nearly all of it."""
    clean = filaments(128)
    noisy = np.clip(clean + np.random.default_rng(4).normal(0, sigma / 255, clean.shape), 0, 1)
    assert np.mean(noisy == 0.0) > 0.3
    true = (sigma / 255) ** 2
    fitted = clipped_noise_variance(noisy, low=True, high=False)
    assert fitted is not None and fitted == pytest.approx(true, rel=0.1)
    assert estimate_white_noise_variance(noisy[..., None], texture_ratio=0.0) < 0.6 * true
    # too few levels to fit
    assert clipped_noise_variance(noisy[:24, :24], low=True, high=False) is None


def test_the_stage_level_on_clipped_noise_takes_both_estimates() -> None:
    from napari_specdip.core.refine import clipped_ends

    clean = filaments(96, seed=1)
    noisy = np.clip(clean + np.random.default_rng(5).normal(0, 40 / 255, clean.shape), 0, 1)
    low, high = clipped_ends(noisy)
    patches = estimate_white_noise_variance(noisy[..., None], texture_ratio=0.0)
    levels = clipped_noise_variance(noisy, low=low, high=high)
    assert levels is not None and levels > 1.3 * patches
    record = restore(noisy, "denoise", max_iterations=10, **FAST).parameters["refined"]
    assert record["noise_variance"] == pytest.approx(math.sqrt(patches * levels), rel=1e-6)
    assert "clipped noise's moments" in record["noise_from"]
    # photon noise, clipped at black: no one level to fit, the patches' estimate alone
    clean = np.clip(nuclei(128) - 0.03, 0.0, None)
    rng = np.random.default_rng(3)
    counts = np.clip((rng.poisson(clean * 30) + rng.normal(0, 2.0, clean.shape)) / 30, 0, 1)
    record = restore(counts, "denoise", max_iterations=10, **FAST).parameters["refined"]
    assert "signal_dependent" in record
    assert record["noise_from"] == "estimated from the image away from its clipped values"
    assert record["noise_variance"] == pytest.approx(
        estimate_white_noise_variance(counts[..., None], texture_ratio=0.0), rel=1e-6)


@pytest.mark.parametrize("peak", [10.0, 30.0])
def test_signal_dependence_finds_clipped_photon_noise(peak: float) -> None:
    """Counts over the peak clipped to [0, 1] (an 8-bit export): a third of the pixels
    sit at 0, and the one level that would fit the squeezed dark variance is told apart
    from photon noise through the clipped moments."""
    clean = np.clip(nuclei(128) - 0.03, 0.0, None)
    rng = np.random.default_rng(3)
    counts = np.clip((rng.poisson(clean * peak) + rng.normal(0, 2.0, clean.shape)) / peak, 0, 1)
    assert np.mean(counts == 0.0) > 0.2
    found = signal_dependence(counts, low=True, high=True)
    assert found is not None and found.growth >= 2.0
    assert found.model.a == pytest.approx(1.0 / peak, rel=0.25)
    assert found.model.read_variance == pytest.approx((2.0 / peak) ** 2, rel=0.4)
    assert signal_dependence(counts) is None  # unclipped, the estimator has too few pixels


@pytest.mark.parametrize("name", ["camera", "coins", "moon"])
@pytest.mark.parametrize("sigma", [5.0, 25.0, 50.0])
def test_signal_dependence_sees_clipped_white_noise_as_none(name: str, sigma: float) -> None:
    """Gaussian noise clipped at both ends squeezes the variance of the dark and bright
    levels alike: one level through the clipped moments fits it."""
    from skimage import data, img_as_float

    from napari_specdip.samples import center_crop

    clean = center_crop(img_as_float(getattr(data, name)()), 96)
    clean = (clean - clean.min()) / np.ptp(clean)
    noisy = np.clip(clean + np.random.default_rng(1).normal(0, sigma / 255, clean.shape), 0, 1)
    assert signal_dependence(noisy, low=True, high=True) is None


@pytest.mark.parametrize("name", ["camera", "coins", "grass"])
@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0])
def test_signal_dependence_sees_texture_under_white_noise_as_none(name: str, sigma: float
                                                                  ) -> None:
    """Textures and fine structure at low noise raise the variance of some levels, which
    the estimator's line can follow (the camera's crop at sigma 5: the variance 13x from
    dark to bright); their detail is not white."""
    from skimage import data, img_as_float

    from napari_specdip.samples import center_crop

    clean = center_crop(img_as_float(getattr(data, name)()), 64)
    noisy = clean + np.random.default_rng(1).normal(0, sigma / 255, clean.shape)
    assert signal_dependence(noisy) is None
    flat = nuclei(64) * 0.8 + 0.1 + np.random.default_rng(2).normal(0, sigma / 255, (64, 64))
    assert signal_dependence(flat) is None


def test_estimator_refuses_tiny_images() -> None:
    with pytest.raises(ValueError, match="too few usable pixels"):
        estimate_poisson_gaussian(np.random.default_rng(0).random((30, 30)))


def test_camera_values_round_trip() -> None:
    model = PoissonGaussian.from_camera(gain=2.5, read_sigma=7.0, offset=100.0, low=80.0,
                                        high=4000.0)
    back = model.to_camera(low=80.0, high=4000.0)
    assert back == pytest.approx({"gain": 2.5, "read_sigma": 7.0, "offset": 100.0})
    # var = gain * (E - offset) + read^2, on the [0, 1] scale
    mean = 0.5
    expected = (2.5 * (80.0 + mean * 3920.0 - 100.0) + 49.0) / 3920.0**2
    assert model.variance(mean)[()] == pytest.approx(expected)


@pytest.mark.parametrize("read", [0.0, 2.0])
def test_exact_inverse_is_unbiased(read: float) -> None:
    rng = np.random.default_rng(0)
    model = PoissonGaussian(a=1.0, b=read**2, black=0.0)  # photon units
    inverse = AnscombeInverse.build(read, 60.0)
    for photons in (0.5, 2.0, 8.0, 40.0):
        z = rng.poisson(photons, 200_000) + rng.normal(0.0, read, 200_000)
        f = anscombe(z, model)
        if photons >= 8:  # stabilised (the transform cannot do it at the lowest counts)
            assert np.var(f) == pytest.approx(1.0, abs=0.1)
        assert inverse(f.mean()) == pytest.approx(photons, abs=0.03 + 0.005 * photons)
        # the algebraic inverse is biased at low counts; the exact one is not
    low_f = anscombe(rng.poisson(1.0, 200_000) + rng.normal(0.0, read, 200_000), model).mean()
    assert abs((low_f**2 / 4 - 0.375 - read**2) - 1.0) > 0.1


def test_stabilised_domain_round_trip_and_torch() -> None:
    clean = nuclei(64)
    adu = expose(clean, peak=20.0, read=1.5, gain=2.0, offset=100.0).astype(float)
    low, high = adu.min(), adu.max()
    unit = (adu - low) / (high - low)
    model = PoissonGaussian.from_camera(gain=2.0, read_sigma=3.0, offset=100.0, low=low, high=high)
    domain = StabilisedDomain.for_observation(unit, model)
    fitted = domain.forward(unit)
    assert fitted.min() == pytest.approx(0.0) and fitted.max() == pytest.approx(1.0)
    assert domain.noise_sigma == pytest.approx(1.0 / np.ptp(anscombe(unit, model)))
    back = domain.inverse(fitted)
    # the unbiased inverse of a single noisy value is not the value itself, but close
    assert np.abs(back - unit).max() < 2.0 * np.sqrt(model.variance(1.0)).max()
    tensor = domain.inverse_torch(torch.from_numpy(fitted))
    np.testing.assert_allclose(tensor.numpy(), back, rtol=1e-9, atol=1e-12)
    # the expected clean intensity survives the trip through E[f]
    expected = (100.0 + 2.0 * 20.0 * clean - low) / (high - low)
    table = domain.table
    e_f = np.interp(model.photons(expected) + (model.b + model.a * model.black) / model.a**2,
                    table.photons, table.expected)
    np.testing.assert_allclose(domain.inverse((e_f - domain.low) / (domain.high - domain.low)),
                               expected, atol=1e-4)


def test_restore_with_the_noise_model_keeps_dtype_and_records_it() -> None:
    sample = noisy_microscopy(64)
    result = restore(sample.image, noise="poisson-gaussian", max_iterations=20, **FAST)
    assert result.image.dtype == np.uint16 and result.image.shape == sample.image.shape
    assert sample.image.min() <= result.image.min() and result.image.max() <= sample.image.max()
    record = result.parameters["noise_model"]
    assert record["model"] == "poisson-gaussian" and record["fit"] == "weighted"
    assert record["noise_loss"] == pytest.approx(record["mean_variance"])
    assert record["source"] == {"gain": "estimated", "read_sigma": "estimated",
                                "offset": "estimated"}
    truth = sample.extra["noise"]
    assert record["gain"] == pytest.approx(truth["gain"], rel=0.3)
    assert result.metadata()["specdip"]["noise_model"]["gain"] == record["gain"]
    assert result.parameters["noise"] == "poisson-gaussian"
    assert record["offset_from"] in BLACK_METHODS[1:]


def test_given_camera_values_are_used_as_given() -> None:
    sample = noisy_microscopy(64)
    truth = sample.extra["noise"]
    result = restore(sample.image, noise="poisson-gaussian", noise_gain=truth["gain"],
                     noise_read_sigma=truth["read_sigma"], noise_offset=truth["offset"],
                     noise_fit="anscombe", max_iterations=5, **FAST)
    record = result.parameters["noise_model"]
    assert set(record["source"].values()) == {"given"} and record["offset_from"] == "given"
    for key in ("gain", "read_sigma", "offset"):
        assert record[key] == pytest.approx(truth[key])
    assert record["fit"] == "anscombe" and result.image.dtype == np.uint16
    assert record["noise_loss"] == pytest.approx(record["fitted_sigma"] ** 2)


@pytest.mark.parametrize("fit", ["weighted", "anscombe"])
def test_noise_model_denoises_photon_limited_image(fit: str) -> None:
    clean = nuclei(64)
    adu = expose(clean, peak=10.0, read=1.0, gain=2.0, offset=100.0)
    reference = 100.0 + 2.0 * 10.0 * clean
    result = restore(adu, noise="poisson-gaussian", noise_fit=fit, width=16, depth=3,
                     max_iterations=150, stop="none", learning_rate=0.01, output_dtype="float32")

    def error(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean((x.astype(float) - reference) ** 2)))

    assert error(result.image) < 0.6 * error(adu)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"noise": "poisson"}, "unknown noise"),
        ({"noise_gain": 2.0}, "need noise='poisson-gaussian'"),
        ({"noise": "poisson-gaussian", "noise_gain": -1.0}, "noise_gain must be positive"),
        ({"noise": "poisson-gaussian", "noise_fit": "vst"}, "unknown noise_fit"),
        ({"noise": "poisson-gaussian", "task": "super-resolve"}, "applies to denoise"),
    ],
)
def test_bad_noise_options_are_refused(options: dict, message: str) -> None:
    options = dict(options)
    task = options.pop("task", "denoise")
    with pytest.raises(ValueError, match=message):
        restore(np.random.default_rng(0).random((64, 64)), task, max_iterations=1, **options)


def test_too_small_to_estimate_is_refused_before_work() -> None:
    from napari_specdip import plan_restore

    small = (np.random.default_rng(0).random((32, 32)) * 1000).astype(np.uint16)
    with pytest.raises(ValueError, match="too small to estimate"):
        plan_restore(small, noise="poisson-gaussian")
    job = plan_restore(small, noise="poisson-gaussian", noise_gain=2.0, noise_read_sigma=3.0,
                       noise_offset=0.0)
    assert job.params.noise_gain == 2.0


def test_too_few_usable_pixels_are_refused_at_the_call() -> None:
    """Saturated pixels and scattered masked ones leave no window for the estimator:
    refused by plan_restore with the count, not by the run's first step."""
    from napari_specdip import plan_restore
    from napari_specdip.core.noise import usable_samples

    rng = np.random.default_rng(0)
    image = rng.poisson(rng.uniform(20, 200, (64, 64))).astype(np.uint16)
    assert usable_samples(image / image.max()) > 1500
    saturated = image.copy()
    saturated[rng.random(image.shape) < 0.3] = 4095
    with pytest.raises(ValueError, match=r"between its extreme values .* \d+ usable pixels, "
                                         "1500 needed"):
        plan_restore(saturated, noise="poisson-gaussian")
    with pytest.raises(ValueError, match="32x32 image is too small"):
        plan_restore(image[:32, :32], noise="poisson-gaussian")
    scattered = rng.random(image.shape) < 0.5  # True: missing
    with pytest.raises(ValueError, match="0 usable pixels"):
        plan_restore(image, "inpaint", mask=scattered, noise="poisson-gaussian")
    job = plan_restore(image, noise="poisson-gaussian")
    assert usable_samples(job.observation) >= 1500


def stack_of(count: int, size: int, *, gain: float = 3.0, offset: float = 100.0
             ) -> list[np.ndarray]:
    """Slices of one camera: different nuclei, each its own noise draw."""
    return [expose(nuclei(size, seed=k), peak=10.0, read=2.0, gain=gain, offset=offset,
                   seed=100 + k) for k in range(count)]


def alone(image: np.ndarray) -> dict[str, float]:
    values = image.astype(float)
    low, high = values.min(), values.max()
    found = estimate_poisson_gaussian((values - low) / (high - low))
    return found.model.to_camera(low=low, high=high)


def test_a_stack_is_estimated_once_over_its_slices() -> None:
    stack = stack_of(10, 48)
    camera = estimate_camera(stack)
    assert (camera.slices, camera.of) == (10, 10) and camera.samples > 10_000
    assert camera.gain == pytest.approx(3.0, rel=0.15)
    assert camera.read_sigma == pytest.approx(6.0, rel=0.25)
    assert camera.offset == pytest.approx(100.0, abs=6.0)
    # each 48 px slice alone: far less sure of the camera it shares with the others
    gains = [alone(image)["gain"] for image in stack]
    assert max(abs(g / 3.0 - 1.0) for g in gains) > 2 * abs(camera.gain / 3.0 - 1.0)
    # channels of one camera pool the same way (channels last, or first)
    rgb = estimate_camera([np.stack([a, b], axis=0) for a, b in zip(stack[::2], stack[1::2],
                                                                       strict=True)],
                          channel_axis=0)
    assert rgb.gain == pytest.approx(camera.gain, rel=1e-9) and rgb.samples == camera.samples


def test_a_long_stack_is_sampled_in_evenly_spaced_slices(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    import napari_specdip.core.noise as noise

    stack = stack_of(12, 48)
    read: list[int] = []

    class Counted(list):  # type: ignore[type-arg]
        def __getitem__(self, i: Any) -> Any:
            read.append(i)
            return super().__getitem__(i)

    monkeypatch.setattr(noise, "STACK_SAMPLED_VALUES", 4 * 48 * 48)
    camera = estimate_camera(Counted(stack))
    assert (camera.slices, camera.of) == (4, 12)
    assert sorted(set(read) - {0}) == [4, 7, 11]  # the first slice's shape is read too
    assert camera.gain == pytest.approx(3.0, rel=0.2)


def test_given_camera_values_stay_in_a_stack_estimate() -> None:
    camera = estimate_camera(stack_of(4, 48), offset=100.0, gain=3.0)
    assert (camera.offset, camera.gain) == (100.0, 3.0) and camera.black_from == "given"
    assert camera.read_sigma == pytest.approx(6.0, rel=0.25)


def test_a_blank_slice_adds_no_noise_samples() -> None:
    stack = stack_of(4, 48)
    with_blank = estimate_camera([np.zeros_like(stack[0]), *stack])
    assert (with_blank.slices, with_blank.of) == (4, 5)
    assert with_blank.gain == pytest.approx(estimate_camera(stack).gain, rel=1e-9)


def test_missing_pixels_are_left_out_of_a_stack_estimate() -> None:
    stack = [image.astype(np.float32) for image in stack_of(4, 48)]
    holes = np.zeros((48, 48), bool)
    holes[5:15, 5:20] = holes[30:40, 25:45] = True
    gappy = [image.copy() for image in stack]
    gappy[1][5:15, 5:20] = np.nan
    gappy[3][30:40, 25:45] = np.inf
    blank = np.full((48, 48), np.nan, np.float32)  # a slice with nothing in it
    camera = estimate_camera([*gappy, blank])
    assert (camera.slices, camera.of) == (4, 5)
    # each slice's holes are left out of that slice alone: more samples than with
    # those pixels left out of every slice, fewer than with none missing
    union = estimate_camera([*stack, blank], known=~holes)
    whole = estimate_camera([*stack, blank])
    assert union.samples < camera.samples < whole.samples
    for got, want in ((camera.gain, 3.0), (camera.read_sigma, 6.0), (camera.offset, 100.0)):
        assert got == pytest.approx(want, rel=0.12)
    assert np.isnan(gappy[1][5, 5])  # the input is not changed
    # each slice's own holes, not their union: bands that leave no pixel known in every
    # slice still leave most of each one
    banded = [image.astype(np.float64) for image in stack_of(3, 64)]
    for k, image in enumerate(banded):
        image[20 * k : 20 * k + 24] = np.nan
    camera = estimate_camera(banded)
    assert camera.gain == pytest.approx(3.0, rel=0.2)
    assert camera.read_sigma == pytest.approx(6.0, rel=0.25)
    assert camera.offset == pytest.approx(100.0, abs=6.0)


def test_bad_stacks_are_refused_by_the_estimate() -> None:
    stack = stack_of(3, 48)
    with pytest.raises(ValueError, match="share one"):
        estimate_camera([stack[0], stack[1][:40]])
    with pytest.raises(ValueError, match="constant"):
        estimate_camera([np.full((48, 48), 7.0)] * 3)
    with pytest.raises(ValueError, match="no slices"):
        estimate_camera([])
    with pytest.raises(ValueError, match="too few usable pixels"):
        estimate_camera([image[:20, :20] for image in stack])


def test_each_slice_runs_with_the_stack_camera_and_says_so() -> None:
    stack = stack_of(4, 48)
    camera = estimate_camera(stack)
    result = restore(stack[1], noise="poisson-gaussian", noise_camera=camera,
                     max_iterations=3, **FAST)
    record = result.parameters["noise_model"]
    for key in ("gain", "read_sigma", "offset"):
        assert record[key] == pytest.approx(getattr(camera, key))
    assert record["estimated_over"] == {"slices": 4, "of": 4, "samples": camera.samples}
    assert record["offset_from"] == camera.black_from and record["samples"] == camera.samples
    assert set(record["source"].values()) == {"estimated"}
    # a value given to the run wins over the stack's, and everything given needs no stack
    given = restore(stack[1], noise="poisson-gaussian", noise_camera=camera,
                    noise_offset=90.0, max_iterations=3, **FAST).parameters["noise_model"]
    assert given["offset"] == pytest.approx(90.0) and given["offset_from"] == "given"
    assert given["gain"] == pytest.approx(camera.gain) and "estimated_over" in given
    every = restore(stack[1], noise="poisson-gaussian", noise_camera=camera, noise_gain=3.0,
                    noise_read_sigma=6.0, noise_offset=100.0, max_iterations=3,
                    **FAST).parameters["noise_model"]
    assert "estimated_over" not in every and every["gain"] == pytest.approx(3.0)
    # a slice too small to estimate alone runs with its stack's values
    small = restore(stack[1][:20, :20], noise="poisson-gaussian", noise_camera=camera,
                    max_iterations=3, **FAST)
    assert small.parameters["noise_model"]["gain"] == pytest.approx(camera.gain)
    with pytest.raises(TypeError, match="CameraEstimate"):
        restore(stack[1], noise="poisson-gaussian", noise_camera={"gain": 3.0},
                max_iterations=3, **FAST)
    with pytest.raises(ValueError, match="only makes sense with noise='poisson-gaussian'"):
        restore(stack[1], noise_camera=camera, max_iterations=3, **FAST)
    assert isinstance(camera, CameraEstimate)


@pytest.mark.parametrize("name", ["napari_specdip.core.noise", "napari_specdip.samples"])
def test_examples(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("sigma", [0.02, 0.1])
@pytest.mark.parametrize("channels", [1, 3])
def test_white_noise_variance_of_a_smooth_image(sigma: float, channels: int) -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    clean = 0.5 + 0.3 * np.sin(4 * xx + 2 * yy)[..., None] * np.linspace(0.5, 1, channels)
    noisy = clean + rng.normal(0, sigma, clean.shape)
    estimate = estimate_white_noise_variance(noisy if channels > 1 else noisy[..., 0])
    assert estimate == pytest.approx(sigma**2, rel=0.1)


def test_white_noise_variance_samples_large_images_reproducibly() -> None:
    noisy = np.random.default_rng(2).normal(0.5, 0.05, (300, 300, 3))
    first = estimate_white_noise_variance(noisy, max_patches=5000)
    assert first == estimate_white_noise_variance(noisy, max_patches=5000)
    assert first == pytest.approx(0.05**2, rel=0.1)
    with pytest.raises(ValueError, match="smaller than"):
        estimate_white_noise_variance(np.zeros((5, 40)))


def fine_texture_with_a_smooth_strip(seed: int) -> np.ndarray:
    """128 px: a fine random texture (std 0.1, like grass) everywhere but a smooth strip of
    a fifth of the image on the left, over a gentle gradient."""
    rng = np.random.default_rng(seed)
    texture = ndi.gaussian_filter(rng.standard_normal((128, 128)), 0.7)
    texture *= 0.1 / texture.std()
    envelope = np.clip((np.arange(128) - 24) / 8, 0, 1)[None, :]
    return 0.5 + 0.1 * np.sin(np.arange(128) / 20)[:, None] + envelope * texture


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_variance_sees_past_a_fine_texture(seed: int) -> None:
    # the texture fills the patch covariance's smallest directions: the patch PCA alone
    # returns 2.5-3.7 times the noise; the weakly textured patches (the strip) do not
    clean = fine_texture_with_a_smooth_strip(seed)
    noisy = clean + np.random.default_rng(10 + seed).normal(0, 0.02, clean.shape)
    assert estimate_white_noise_variance(noisy, texture_ratio=math.inf) > 2.0 * 0.02**2
    assert estimate_white_noise_variance(noisy) == pytest.approx(0.02**2, rel=0.15)
    # the weak patches' estimate alone is the same here: it replaced the first one
    assert estimate_white_noise_variance(noisy, texture_ratio=0.0) \
        == estimate_white_noise_variance(noisy)


@pytest.mark.parametrize("sigma", [0.02, 0.1])
def test_white_noise_variance_keeps_the_first_estimate_where_no_texture_misleads_it(
        sigma: float) -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    smooth = 0.5 + 0.3 * np.sin(4 * xx + 2 * yy)
    # dark and clipped: the flattest patches are the background, whose noise clipping
    # lowered; they are left out (too near the clipped bound), so nothing moves either
    for clean in (smooth, 0.9 * nuclei(128)):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0.0, 1.0)
        assert estimate_white_noise_variance(noisy) \
            == estimate_white_noise_variance(noisy, texture_ratio=math.inf)


def test_held_out_noise_follows_the_draw_of_the_held_out_pixels() -> None:
    # a tenth of a 96 px image: the held-out draw is a few percent off the image's
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    clean = (0.5 + 0.2 * np.sin(4 * xx + 2 * yy))[..., None]
    taking_v, estimated = [], []
    for _ in range(12):
        noise = rng.normal(0, 0.1, clean.shape)
        held = rng.random((96, 96)) < 0.1
        drawn_held = float(np.mean(noise[held] ** 2))
        drawn_fit = float(np.mean(noise[~held] ** 2))
        v_held, v_fit = held_out_noise(clean + noise, held, 0.01)
        taking_v.append(drawn_held - 0.01)
        estimated.append(v_held - drawn_held)
        # the fitted pixels' share moves the other way, by a ninth as much
        assert (v_fit - 0.01) * (v_held - 0.01) <= 0
        assert abs(v_fit - drawn_fit) < 0.01 * 0.05
    assert np.sqrt(np.mean(np.square(estimated))) < 0.6 * np.sqrt(np.mean(np.square(taking_v)))


def test_held_out_noise_leaves_texture_alone() -> None:
    # on a fine texture the residuals are the image's own: the shares stay near v
    rng = np.random.default_rng(5)
    texture = rng.random((64, 64, 3))
    noisy = texture + rng.normal(0, 0.01, texture.shape)
    held = rng.random((64, 64)) < 0.1
    v_held, v_fit = held_out_noise(noisy, held, 1e-4)
    assert v_held == pytest.approx(1e-4, rel=0.02) and v_fit == pytest.approx(1e-4, rel=0.02)
    # an ensemble's stack of masks: the members' mean, a member holding out nothing at v
    members = np.stack([held, rng.random((64, 64)) < 0.1, np.zeros((64, 64), bool)])
    singles = np.array([held_out_noise(noisy, m, 1e-4) for m in members])
    assert held_out_noise(noisy, members, 1e-4) == pytest.approx(tuple(singles.mean(axis=0)))
    # nothing held out, or no noise: nothing to correct
    assert held_out_noise(noisy, np.zeros((64, 64), bool), 1e-4) == (1e-4, 1e-4)
    assert held_out_noise(noisy, held, 0.0) == (0.0, 0.0)


def test_a_given_noise_sigma_replaces_the_estimate() -> None:
    rng = np.random.default_rng(6)
    noisy = np.clip(128 + rng.normal(0, 20, (48, 48)), 0, 255).astype(np.uint8)
    result = restore(noisy, width=8, depth=3, max_iterations=3, noise_sigma=30.0)
    assert result.parameters["stop_noise_variance"] == pytest.approx((30 / 255) ** 2)
    assert result.parameters["noise_sigma"] == 30.0
    # tiles work in the whole image's [0, 1] units: the same level in each
    wide = noisy.astype(float) * 2 + 500
    tiled = restore(wide, width=8, depth=3, max_iterations=3, noise_sigma=40.0, tile=32,
                    tile_overlap=4)
    low, high = tiled.intensity_range
    assert len(tiled.parameters["tiles"]) == 4
    for tile in tiled.parameters["tiles"]:
        assert tile["stop_noise_variance"] == pytest.approx((40.0 / (high - low)) ** 2)
    with pytest.raises(ValueError, match="positive"):
        restore(noisy, max_iterations=1, noise_sigma=0.0)
    with pytest.raises(ValueError, match="Gaussian noise level of a denoising run"):
        restore(noisy, "inpaint", mask=np.eye(48, dtype=bool), max_iterations=1,
                noise_sigma=5.0)


def test_denoising_records_the_noise_level_of_its_stop() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    noisy = 0.5 + 0.2 * np.cos(3 * xx) * np.sin(2 * yy) + rng.normal(0, 0.08, (48, 48))
    result = restore(noisy, width=8, depth=3, max_iterations=5)
    assert result.parameters["stop_noise_variance"] == pytest.approx(
        estimate_white_noise_variance(noisy), rel=1e-9)
    # the fitted space is the image scaled to its own range
    low, high = result.intensity_range
    assert result.parameters["stop_noise_variance"] * (high - low) ** 2 == pytest.approx(
        0.08**2, rel=0.15)
    inpainted = restore(noisy, "inpaint", mask=np.zeros((48, 48), bool) | (xx > 0.9),
                        width=8, depth=3, max_iterations=2)
    v_held, v_fit = result.parameters["stop_noise_shares"]
    assert v_held == pytest.approx(result.parameters["stop_noise_variance"], rel=0.2)
    assert v_fit == pytest.approx(result.parameters["stop_noise_variance"], rel=0.03)
    assert inpainted.parameters["stop_noise_variance"] is None
    assert inpainted.parameters["stop_noise_shares"] is None
    # the Poisson-Gaussian fit keeps the held-out loss (its loss is variance-weighted)
    counts = (noisy.clip(0, 1) * 1000 + 100).astype(np.uint16)
    photon = restore(counts, width=8, depth=3, max_iterations=5, noise="poisson-gaussian",
                     noise_gain=2.0, noise_read_sigma=3.0, noise_offset=100.0)
    assert photon.parameters["stop_noise_variance"] is None
    assert photon.parameters["stop_noise_shares"] is None
    assert "error_estimate_ema" not in photon.history


@pytest.mark.parametrize("shape", [(300, 257), (129, 40), (2, 9), (140, 60, 3)])
def test_usable_samples_counts_in_bands_what_the_whole_image_gives(shape: tuple[int, ...]
                                                                  ) -> None:
    """The check before a run counts band by band (and stops once enough are found):
    the same count as the estimator's windows over the whole image."""
    from napari_specdip.core.noise import _unclipped, _usable_neighbourhoods, usable_samples

    rng = np.random.default_rng(1)
    image = rng.random(shape)
    image[rng.random(shape) < 0.01] = 1.0  # saturated pixels, excluded with their windows
    known = rng.random(shape[:2]) > 0.01
    planes = image if image.ndim == 3 else image[..., None]
    whole = sum(int(_usable_neighbourhoods(known & _unclipped(planes[..., c])).sum())
                for c in range(planes.shape[2]))
    assert usable_samples(image, known) == whole
    enough = usable_samples(image, known, at_least=100)
    assert enough == whole if whole < 100 else 100 <= enough <= whole


def test_lazy_slices_read_only_what_is_asked_for() -> None:
    from napari_specdip.core.noise import LazySlices

    read: list[int] = []
    slices = LazySlices(5, lambda k: read.append(k) or np.full((2, 2), k))
    assert len(slices) == 5 and read == []
    assert slices[-1][0, 0] == 4 and [s[0, 0] for s in slices[1:3]] == [1, 2]
    assert read == [4, 1, 2]
    with pytest.raises(IndexError):
        slices[5]
