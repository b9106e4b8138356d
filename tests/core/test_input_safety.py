"""Honest errors at the call and nothing lost: alpha, NaN masks, option types, clipping."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from napari_specdip import RestoreParameters, iter_restore, plan_restore, restore

FAST = {"width": 8, "depth": 3, "stop": "none"}


@pytest.fixture(scope="module")
def rgba() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = (rng.random((40, 48, 4)) * 255).astype(np.uint8)
    image[..., 3] = 255
    image[:10, :12, 3] = 0
    image[20:, 30:, 3] = 128
    return image


# ------------------------------------------------------------------ 4: RGBA through the API


def test_rgba_alpha_passes_through_untouched(rgba: np.ndarray) -> None:
    result = restore(rgba, channel_axis=-1, max_iterations=3, **FAST)
    assert result.image.shape == rgba.shape and result.image.dtype == np.uint8
    np.testing.assert_array_equal(result.image[..., 3], rgba[..., 3])
    assert result.parameters["alpha"] is True


def test_rgba_channel_first_previews_and_super_resolution(rgba: np.ndarray) -> None:
    first = np.moveaxis(rgba, -1, 0)
    reports = list(iter_restore(first, channel_axis=0, alpha=True, max_iterations=2,
                                preview_every=1, **FAST))
    assert reports[-1].preview is not None
    np.testing.assert_array_equal(reports[-1].preview[3], first[3])
    result = restore(rgba, "super-resolve", factor=2, channel_axis=-1, max_iterations=2, **FAST)
    assert result.image.shape == (80, 96, 4)
    np.testing.assert_array_equal(result.image[::2, ::2, 3], rgba[..., 3])
    np.testing.assert_array_equal(result.image[1::2, 1::2, 3], rgba[..., 3])


def test_four_channels_first_are_all_restored() -> None:
    # a 4-channel microscopy stack (DAPI, GFP, ...) stores its channels first; RGBA is
    # guessed only where it is stored, channels last
    stack = np.random.default_rng(2).random((4, 40, 48))
    result = restore(stack, channel_axis=0, max_iterations=3, **FAST)
    assert "alpha" not in result.parameters
    assert not np.array_equal(result.image[3], stack[3])  # restored, not carried over
    # channels last too, where the fourth plane holds intensities, not opacity
    last = np.moveaxis(stack, 0, -1)
    result = restore(last, channel_axis=-1, max_iterations=2, **FAST)
    assert "alpha" not in result.parameters and not np.array_equal(result.image[..., 3],
                                                                    last[..., 3])
    assert restore(last, channel_axis=-1, alpha=True, max_iterations=2,
                   **FAST).parameters["alpha"] is True


@pytest.mark.parametrize(("dtype", "plane", "guessed"), [
    (np.uint8, "intensities", True),  # 8 bits on the last axis: a PNG's RGBA
    (np.uint16, "intensities", False), (np.float32, "intensities", False),
    (np.float32, "opaque", True), (np.uint16, "opaque", True), (np.float64, "cut-out", True),
    (np.float64, "constant", True)])
def test_alpha_is_guessed_from_the_fourth_plane(dtype: type, plane: str, guessed: bool) -> None:
    rng = np.random.default_rng(3)
    full = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1
    image = (rng.random((40, 40, 4)) * full).astype(dtype)
    if plane == "opaque":
        image[..., 3] = full
    elif plane == "cut-out":  # transparent outside a disc, anti-aliased at its edge
        yy, xx = np.mgrid[:40, :40]
        image[..., 3] = np.clip(15.5 - np.hypot(yy - 20, xx - 20), 0, 1)
    elif plane == "constant":
        image[..., 3] = 0.7
    job = plan_restore(image, channel_axis=-1, **FAST)
    assert (job.layout.alpha is not None) == guessed


def test_alpha_false_restores_four_channels_and_alpha_true_two(rgba: np.ndarray) -> None:
    result = restore(rgba, channel_axis=-1, alpha=False, max_iterations=3, **FAST)
    assert "alpha" not in result.parameters
    assert not np.array_equal(result.image[..., 3], rgba[..., 3])  # restored like a colour
    gray_alpha = rgba[..., 2:]
    result = restore(gray_alpha, channel_axis=-1, alpha=True, max_iterations=2, **FAST)
    np.testing.assert_array_equal(result.image[..., 1], gray_alpha[..., 1])
    with pytest.raises(ValueError, match="alpha=True needs a channel axis"):
        plan_restore(rgba[..., 0], alpha=True)
    with pytest.raises(ValueError, match="alpha must be"):
        plan_restore(rgba, channel_axis=-1, alpha="yes")


def test_alpha_is_left_out_of_the_intensity_range() -> None:
    rng = np.random.default_rng(1)
    image = np.concatenate([rng.random((32, 32, 3)) * 0.5 + 100, np.full((32, 32, 1), 1.0)], -1)
    job = plan_restore(image, channel_axis=-1, **FAST)
    assert job.layout.low >= 100.0  # the alpha plane (1.0) did not stretch the colour range
    result = restore(image, channel_axis=-1, max_iterations=2, **FAST)
    np.testing.assert_array_equal(result.image[..., 3], 1.0)


# ------------------------------------------------------------------ 7: NaN in a float mask


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_in_a_float_mask_is_an_error(bad: float) -> None:
    image = np.random.default_rng(2).random((32, 32))
    mask = np.zeros((32, 32))
    mask[4:8, 4:8] = 1.0
    mask[0, 0] = bad
    with pytest.raises(ValueError, match="mask contains 1 NaN or infinite"):
        plan_restore(image, "inpaint", mask=mask)
    mask[0, 0] = 0.0
    assert plan_restore(image, "inpaint", mask=mask).known is not None


# ------------------------------------------------------------------ 8: option types at the call


@pytest.mark.parametrize(("options", "needle"), [
    ({"seed": "abc"}, "seed must be a whole number, got 'abc'"),
    ({"seed": "7"}, "seed must be a whole number, got '7'"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"width": 8.0}, "width must be an int, got 8.0 (float): pass 8"),
    ({"stop": "ratio", "stop_epsilon": -0.01}, "stop_epsilon must be >= 0"),
    ({"backtrack_db": -1.0}, "backtrack_db must be >= 0"),
    ({"seed": True}, "seed must be a whole number"),
    ({"max_iterations": 2.5}, "max_iterations must be a whole number, got 2.5"),
    ({"width": "8"}, "width must be a whole number"),
    ({"num_threads": 2.0}, "num_threads must be an int"),
    ({"lipschitz": "1.4"}, "lipschitz must be a number"),
    ({"lipschitz": float("inf")}, "lipschitz must be finite"),
    ({"learning_rate": float("nan")}, "learning_rate must be finite"),
    ({"gain": None, "stop": 3}, "stop must be a string"),
    ({"backtrack": "no"}, "backtrack must be True or False"),
    ({"sigmas": (0.1, "a")}, "sigmas must be a sequence of numbers"),
    ({"device": 0}, "device must be a string"),
    ({"channel_axis": "-1"}, "channel_axis must be an integer or None"),
])
def test_wrong_option_types_are_value_errors_at_the_call(options: dict, needle: str) -> None:
    image = np.random.default_rng(3).random((32, 32, 3))
    channel_axis = options.pop("channel_axis", -1)
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        plan_restore(image, channel_axis=channel_axis, **options)  # what restore() calls first


@pytest.mark.parametrize("where", ["image", "mask", "reference"])
def test_a_file_name_instead_of_an_array_says_so(where: str) -> None:
    arrays: dict[str, Any] = {"image": np.random.default_rng(1).random((32, 32)),
                              "mask": np.eye(32, dtype=bool), "reference": None}
    arrays[where] = "photo.png"
    with pytest.raises(ValueError, match=f"{where} must be an array, got the path 'photo.png'"):
        plan_restore(arrays["image"], "inpaint", mask=arrays["mask"],
                     reference=arrays["reference"])


def test_type_checks_cover_parameters_objects_too() -> None:
    with pytest.raises(ValueError, match="seed must be a whole number"):
        RestoreParameters.for_task("denoise").replace(seed="7")
    with pytest.raises(ValueError, match="max_iterations must be a whole number"):
        RestoreParameters(max_iterations=2.5).validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be a whole number"):
        iter_restore(np.zeros((32, 32)) + np.eye(32), seed="7")  # at the call, not the first step
    with pytest.raises(ValueError, match="parameters must be a RestoreParameters"):
        plan_restore(np.zeros((32, 32)) + np.eye(32),
                     parameters={"seed": 1})  # type: ignore[arg-type]


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers() -> None:
    image = np.random.default_rng(4).random((32, 32))
    result = restore(image, seed=np.int64(3), max_iterations=np.int32(2),
                     learning_rate=np.float64(1e-3), **FAST)
    assert result.iterations == 2
    assert type(result.parameters["seed"]) is int and result.parameters["seed"] == 3
    assert type(result.parameters["learning_rate"]) is float
    same = restore(image, seed=3, max_iterations=2, learning_rate=1e-3, **FAST)
    np.testing.assert_array_equal(result.image, same.image)


# ------------------------------------------------------------------ 12: enhancement clipping


def test_enhance_with_a_huge_gain_warns_about_clipping() -> None:
    image = np.random.default_rng(5).random((32, 32)) * 0.5 + 0.25
    with pytest.warns(UserWarning, match=r"gain 1e\+06: 100% of the output pixels are clipped"):
        result = restore(image, "enhance", gain=1e6, max_iterations=3, **FAST)
    assert set(np.unique(result.image)) <= {0.0, 1.0}


def test_enhance_with_a_mild_gain_is_quiet() -> None:
    smooth = np.add.outer(np.linspace(0.3, 0.7, 32), np.linspace(0.0, 0.05, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restore(smooth, "enhance", gain=0.5, max_iterations=3, **FAST)


@pytest.mark.parametrize("gain", [0.0, -1.0, float("nan"), float("inf")])
def test_enhance_refuses_a_gain_that_leaves_nothing_to_do(gain: float) -> None:
    # 0 returned the input after the whole fit; NaN or inf an image of NaN or clipping
    with pytest.raises(ValueError, match="gain must be (positive for enhance|finite)"):
        restore(np.full((16, 16), 0.5), "enhance", gain=gain, max_iterations=3, **FAST)


def test_interrupted_run_still_refused_when_types_are_wrong() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(ValueError, match="seed"):
        restore(np.random.default_rng(6).random((32, 32)), seed="1", interrupt=stop, **FAST)


def test_a_reference_in_the_image_units_is_accepted_despite_the_noise() -> None:
    # noise widens the observed range well past the clean one; neither is refused
    rng = np.random.default_rng(5)
    flat = np.full((32, 32), 0.5) + 0.02 * rng.random((32, 32))
    noisy = flat + rng.normal(0.0, 0.2, flat.shape)
    assert plan_restore(noisy, reference=flat).reference is not None
    dark = (rng.random((32, 32)) * 20).astype(np.uint8)
    assert plan_restore(dark, reference=dark.astype(np.float64) * 0.9).reference is not None


# ------------------------------------------------------------------ output dtypes, odd options


@pytest.mark.parametrize(("image", "dtype", "expected"), [
    # [0, 1] floats span 0..255; uint16 is divided by 257; a float's own range is stretched
    (np.linspace(0.0, 1.0, 32 * 32).reshape(32, 32), "uint8", (0, 128, 255)),
    (np.linspace(100, 60100, 32 * 32).reshape(32, 32).astype(np.uint16), "uint8",
     (0, 117, 234)),
    (np.linspace(-1.0, 1.0, 32 * 32).reshape(32, 32), "uint16", (0, 32768, 65535)),
    # bool is [0, 1] too: 0/1 rounded every restored value away (the PNG writer gave 0/255)
    (np.add.outer(np.arange(32), np.arange(32)) % 3 == 0, "uint8", (0, 128, 255)),
])
def test_output_dtype_rescales_what_it_cannot_hold(image: np.ndarray, dtype: str,
                                                   expected: tuple[int, int, int]) -> None:
    layout = plan_restore(image, output_dtype=dtype, **FAST).layout
    restored = np.array([0.0, 0.5, 1.0]).reshape(1, 3, 1)  # darkest, middle, brightest
    out = layout.to_user(restored, dtype=np.dtype(dtype))
    assert out.dtype == np.dtype(dtype)
    assert out.ravel().tolist() == pytest.approx(
        [expected[0] if image.dtype.kind == "f" else round(float(image.min()) / 257),
         expected[1], expected[2]], abs=1)
    end = restore(image, output_dtype=dtype, max_iterations=2, **FAST).image
    assert end.dtype == np.dtype(dtype) and 0 < end.mean() < np.iinfo(end.dtype).max


@pytest.mark.parametrize(("dtype", "values", "target", "expected"), [
    # non-negative data into a signed dtype fills its non-negative half (skimage's img_as_int)
    ("uint16", (100, 1600, 3100), "int16", (50, 800, 1550)),
    ("float64", (0.0, 0.5, 1.0), "int16", (0, 16384, 32767)),
    # a signed image into an unsigned dtype loses its negatives (skimage's img_as_ubyte)
    ("int16", (-2000, 0, 32767), "uint8", (0, 0, 255)),
    # the same signedness: the whole range onto the whole range
    ("int16", (-32768, 0, 32767), "int8", (-128, 0, 127)),
])
def test_output_dtype_between_signed_and_unsigned_follows_skimage(
        dtype: str, values: tuple[float, ...], target: str, expected: tuple[int, ...]) -> None:
    image = np.resize(np.array(values, dtype=dtype), (32, 32))
    layout = plan_restore(image, output_dtype=target, **FAST).layout
    span = layout.high - layout.low
    restored = ((np.array(values, dtype=float) - layout.low) / span).reshape(1, 3, 1)
    assert layout.to_user(restored, dtype=np.dtype(target)).ravel().tolist() == pytest.approx(
        list(expected), abs=1)


def _dim_counts(seed: int = 7) -> np.ndarray:
    """A dim 16-bit exposure: 100-500 counts of a smooth pattern plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    counts = 100 + 400 * (0.5 + 0.5 * np.sin(5 * xx) * np.cos(3 * yy))
    return np.round(counts + rng.normal(0, 20, counts.shape)).astype(np.uint16)


def test_float_counts_over_65535_restore_as_the_counts_do() -> None:
    # skimage's img_as_float of a dim 16-bit exposure spans under 1% of [0, 1]: fitted in
    # those units the run stopped after a few dozen steps; fitted over its own range it
    # is the same fit as the counts' (and those of the same data in any other unit)
    counts = _dim_counts().astype(np.float64)
    options = {**FAST, "max_iterations": 30, "refine": "none", "num_threads": 1}
    as_counts = restore(counts, **options)
    as_float = restore(counts / 65535.0, **options)
    assert as_float.intensity_range == (counts.min() / 65535.0, counts.max() / 65535.0)
    np.testing.assert_allclose(as_float.image * 65535.0, as_counts.image, atol=1e-3)


@pytest.mark.parametrize(("low", "high", "kept"), [
    (0.0, 1.0, True), (0.2, 0.9, True), (0.1, 0.36, True),   # a photo's [0, 1] units
    (0.1, 0.3, False), (0.0015, 0.0077, False), (0.0, 1e-20, False)])
def test_floats_within_0_1_keep_it_only_where_they_fill_it(low: float, high: float,
                                                          kept: bool) -> None:
    image = np.linspace(low, high, 32 * 32).reshape(32, 32)
    layout = plan_restore(image, **FAST).layout
    assert (layout.low, layout.high) == ((0.0, 1.0) if kept else (low, high))
    # either way the values stand for [0, 1]: into an integer dtype they are not stretched
    restored = np.array([0.0, 1.0]).reshape(1, 2, 1)
    assert layout.to_user(restored, dtype=np.dtype(np.uint16)).ravel().tolist() == (
        [0, 65535] if kept else [round(low * 65535), round(high * 65535)])


def test_a_float_image_of_tiny_values_restores() -> None:
    # values near 1e-20 in [0, 1] units gave the Wiener stage a noise variance of 1e-41,
    # whose weights overflowed into NaN after the whole fit
    image = np.random.default_rng(8).random((32, 32)) * 1e-20
    result = restore(image, max_iterations=3, **FAST)
    assert np.isfinite(result.image).all()
    assert image.min() <= result.image.min() and result.image.max() <= image.max()


def test_output_dtype_keeps_units_where_it_can() -> None:
    image = (np.random.default_rng(6).random((32, 32)) * 3000 + 100).astype(np.uint16)
    as_float = restore(image, output_dtype="float32", max_iterations=3, **FAST).image
    assert 100 <= as_float.min() and as_float.max() <= 3100  # the camera's units, not [0, 1]
    as_int = restore(image, output_dtype="int32", max_iterations=3, **FAST).image
    assert as_int.max() > 1000
    # decided by the dtypes, not the values: dim uint16 data as uint8 is still divided by 257
    dim = (image // 100).astype(np.uint16)
    assert restore(dim, output_dtype="uint8", max_iterations=3, **FAST).image.max() <= 1
    eight = (image // 16).astype(np.uint8)
    assert restore(eight, output_dtype="uint16", max_iterations=3, **FAST).image.max() <= 255
    with pytest.raises(ValueError, match="float16 cannot hold"):
        plan_restore(image.astype(np.float64) * 1e3, output_dtype="float16")


def test_a_few_known_pixels_all_drawn_for_holding_out_are_fitted_instead() -> None:
    image = np.random.default_rng(7).random((32, 40))
    mask = np.ones((32, 40), bool)
    mask[0, 5] = mask[0, 6] = False  # two known pixels, both in seed 1's held-out draw
    with pytest.warns(UserWarning, match=r"marks 1278 of 1280 pixels \(99.8%\) to fill"):
        job = plan_restore(image, "inpaint", mask=mask, holdout=0.3, seed=1, **FAST)
    with pytest.warns(UserWarning, match="invert it"):
        result = restore(image, "inpaint", mask=mask, holdout=0.3, seed=1, max_iterations=3,
                         **FAST)
    assert job.known is not None and np.isfinite(result.image).all()


@pytest.mark.parametrize(("options", "needle"), [
    ({"sigmas": ()}, "sigmas needs at least one value"),
    ({"network": "skip", "depth": 0}, "needs depth >= 1"),
    ({"seed": -1}, "seed must be between 0 and 2\\*\\*62"),
    ({"seed": 2**64 - 1}, "seed must be between 0 and 2\\*\\*62"),
    ({"depth": 12}, "depth 12 pads the image to 4096 px"),
])
def test_odd_options_are_refused_at_the_call(options: dict, needle: str) -> None:
    image = np.random.default_rng(8).random((20, 20))
    with pytest.raises(ValueError, match=needle):
        iter_restore(image, **{"max_iterations": 1, **options})


def test_the_paper_depth_still_runs_on_a_small_image() -> None:
    image = np.random.default_rng(9).random((20, 24))
    assert restore(image, preset="paper", width=4, max_iterations=1).iterations == 1


def test_a_range_wider_than_float64_is_refused() -> None:
    image = np.zeros((32, 32))
    image[0, 0], image[1, 1] = -1.7e308, 1.7e308
    with pytest.raises(ValueError, match="more than float64"):
        plan_restore(image)


@pytest.mark.parametrize(("camera", "needle"), [
    ({"noise_gain": 2.0, "noise_read_sigma": 1e30}, r"noise_read_sigma=1e\+30 is far larger"),
    ({"noise_gain": 1e6, "noise_read_sigma": 2.0}, r"noise_gain=1e\+06 is far larger"),
    ({"noise_gain": 2.0, "noise_read_sigma": 2.0, "noise_offset": 70000.0},
     "noise_offset=70000 is at or above the image's brightest value"),
    # 50 photons at 2 ADU each above 100: 230 ADU is above nearly every pixel, not dark
    ({"noise_gain": 2.0, "noise_read_sigma": 2.0, "noise_offset": 230.0},
     r"noise_offset=230 is above 9\d\.\d% of the image's values"),
    # far below the darkest pixel: in other units (it flattened the result)
    ({"noise_gain": 2.0, "noise_read_sigma": 2.0, "noise_offset": -1e7},
     r"noise_offset=-1e\+07 is far below the image's darkest value"),
])
def test_camera_values_in_other_units_are_refused(camera: dict, needle: str) -> None:
    image = (np.random.default_rng(10).poisson(50.0, (64, 64)) * 2 + 100).astype(np.uint16)
    with pytest.raises(ValueError, match=needle):
        iter_restore(image, noise="poisson-gaussian", **{"noise_offset": 100.0, **camera})


@pytest.mark.parametrize(("image", "sigma", "needle"), [
    (np.linspace(95, 2181, 32 * 32).reshape(32, 32).astype(np.uint16), 1e9,
     r"noise_sigma=1e\+09 is larger than the image's whole range \(95\.\.2181\)"),
    (np.random.default_rng(13).random((32, 32)), 25.0,  # sigma/255 meant, [0, 1] image
     r"noise_sigma=25 is larger than the image's whole range \(0\.\.1\)"),
    ((np.random.default_rng(14).random((32, 32)) * 100).astype(np.uint8), 300.0,
     r"\(0\.\.255\): give it in the image's units"),
])
def test_a_noise_sigma_larger_than_the_range_is_refused(image: np.ndarray, sigma: float,
                                                        needle: str) -> None:
    # accepted: the auto stop fired at iteration 5 and returned a flat image
    with pytest.raises(ValueError, match=needle):
        iter_restore(image, noise_sigma=sigma)
    plausible = (float(image.max()) - float(image.min())) / 10
    assert plan_restore(image, noise_sigma=plausible).params.noise_sigma == plausible


def test_num_threads_far_above_the_cores_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # no upper bound: --threads 10000 (a typo) made a 48 px, 20-iteration run take more
    # than 9 minutes on 2 cores, where 1 thread took 6 s
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert RestoreParameters.for_task("denoise", num_threads=8).num_threads == 8
    with pytest.raises(ValueError, match=r"num_threads=9 is far more than this machine's 2 CPU "
                                         r"core\(s\): at most 8 \(4 per core\)"):
        RestoreParameters.for_task("denoise", num_threads=9)
    with pytest.raises(ValueError, match="num_threads=10000 is far more"):
        plan_restore(np.random.default_rng(11).random((32, 32)), num_threads=10000)


# ------------------------------------------------------------------ audit: odd inputs


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_64_bit_integer_outputs_keep_their_brightest_pixels(dtype: str) -> None:
    # float(2**63 - 1) is 2**63: cast back, the brightest pixels wrapped round to the
    # dtype's smallest value (uint64: 0), from a float input as from the dtype's own
    info = np.iinfo(dtype)
    image = np.random.default_rng(11).random((32, 32))
    ends = np.array([0.0, 0.5, 1.0]).reshape(1, 3, 1)
    layout = plan_restore(image, output_dtype=dtype, **FAST).layout
    out = layout.to_user(ends, dtype=np.dtype(dtype))
    # a [0, 1] float fills a signed dtype's non-negative half, as skimage's img_as_int
    assert out[0, 0] == max(info.min, 0) and out[0, 2] == info.max
    assert out[0, 0] < out[0, 1] < out[0, 2]
    full = np.zeros((32, 32), dtype)
    full[0, 0], full[1, 1] = info.max, info.min
    assert plan_restore(full, **FAST).layout.to_user(ends).ravel().tolist() == [
        info.min, pytest.approx((int(info.min) + int(info.max)) / 2, abs=4096), info.max]
    # enhance with a huge gain puts most pixels at the ends of the range
    with pytest.warns(UserWarning, match="clipped"):
        result = restore(image, "enhance", gain=1e3, output_dtype=dtype, max_iterations=2,
                         **FAST).image
    assert (result[image > 0.95] == info.max).all()  # not wrapped round to info.min


def test_a_numpy_channel_axis_gives_json_ready_metadata() -> None:
    import json

    image = np.random.default_rng(12).random((32, 32, 3))
    result = restore(image, channel_axis=np.int64(-1), max_iterations=2, **FAST)
    assert type(result.parameters["channel_axis"]) is int
    json.dumps(result.metadata())


@pytest.mark.parametrize(("shape", "axis", "hint"), [
    ((32, 40, 3), 0, "is the colour axis 2 (channel_axis=-1) instead?"),
    ((3, 32, 40), -1, "is the colour axis 0 (channel_axis=-3) instead?"),
])
def test_a_channel_axis_on_a_long_axis_says_which_axis_is_short(shape: tuple[int, ...],
                                                                 axis: int, hint: str) -> None:
    image = np.random.default_rng(13).random(shape)
    with pytest.raises(ValueError, match="too small") as info:
        plan_restore(image, channel_axis=axis)
    assert str(info.value).endswith(hint) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"too small: spatial shape \(3, 500\), need at least "
                                         r"16 x 16 pixels$"):
        plan_restore(np.random.default_rng(13).random((3, 500)))  # no channels: no hint


def test_a_mask_that_leaves_only_constant_pixels_says_so() -> None:
    image = np.random.default_rng(14).random((32, 32))
    mask = np.ones((32, 32), bool)
    mask[0, 0] = False  # one known pixel: the image is not constant, what is left of it is
    with pytest.raises(ValueError, match=r"every pixel outside the mask is .* \(1 known "
                                         r"pixel\(s\)\).*check the mask"):
        plan_restore(image, "inpaint", mask=mask)
    flat = np.where(mask, image, 0.5)
    flat[0, 0] = 0.5
    mask[:16] = False  # known pixels all 0.5
    flat[:16] = 0.5
    with pytest.raises(ValueError, match="every pixel outside the mask is 0.5"):
        plan_restore(flat, "inpaint", mask=mask)
    with pytest.raises(ValueError, match=r"image is constant \(every pixel is 0.5\)"):
        plan_restore(np.full((32, 32), 0.5), "inpaint", mask=~mask)


def test_an_all_infinite_slice_is_not_constant() -> None:
    from napari_specdip.core.imaging import is_constant

    assert is_constant(np.full((4, 4), 7.0)) and not is_constant(np.zeros((0, 4)))
    assert not is_constant(np.full((4, 4), np.inf)) and not is_constant(np.full((4, 4), -np.inf))
    assert not is_constant(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match="1024 NaN or infinite"):
        plan_restore(np.full((32, 32), np.inf))


@pytest.mark.parametrize("make", [
    lambda a: a[::-1, ::-1],  # negative strides
    lambda a: np.asfortranarray(a),
    lambda a: a.astype(">f8"),  # big-endian
    lambda a: a.tolist(),
    lambda a: torch.tensor(a, requires_grad=True),  # np.asarray refuses it
])
def test_odd_array_layouts_restore_like_the_plain_array(make: Any) -> None:
    rng = np.random.default_rng(15)
    plain = rng.random((32, 32))
    odd = make(plain)
    if isinstance(odd, torch.Tensor):
        as_numpy = odd.detach().numpy()
    else:
        as_numpy = np.asarray(odd)
    expected = restore(np.ascontiguousarray(as_numpy, dtype=np.float64), seed=3,
                       max_iterations=2, **FAST).image
    if isinstance(odd, np.ndarray):
        odd.setflags(write=False)  # read-only too: nothing is written into the input
        copy = odd.copy()
    result = restore(odd, seed=3, max_iterations=2, **FAST).image
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == as_numpy.dtype
    if isinstance(odd, np.ndarray):
        np.testing.assert_array_equal(odd, copy)


@pytest.mark.parametrize(("task", "options", "needle"), [
    ("denoise", {"factor": 4}, "factor= only makes sense for task super-resolve, not 'denoise'"),
    ("deblock", {"gain": 2.0}, "gain= only makes sense for task enhance"),
    ("super-resolve", {"factor": 2, "noise": "gaussian"}, "noise= only makes sense for task "
                                                           "denoise or inpaint"),
    ("denoise", {"noise_gain": 2.0}, "noise_gain, noise_read_sigma and noise_offset need "
                                      "noise='poisson-gaussian'"),
    ("denoise", {"noise": "poisson-gaussian", "noise_sigma": 0.1},
     "noise_sigma is the Gaussian noise level"),
    ("denoise", {"noise_fit": "anscombe"}, "noise_fit= only makes sense with "
                                           "noise='poisson-gaussian', not 'gaussian'"),
])
def test_an_option_the_task_ignores_is_refused_at_the_call(task: str, options: dict,
                                                           needle: str) -> None:
    # a forgotten task="super-resolve" would otherwise return an image of the wrong size
    image = np.random.default_rng(0).random((32, 32))
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        plan_restore(image, task, **options)


def test_presets_and_parameters_objects_never_count_as_options_given() -> None:
    image = np.random.default_rng(0).random((32, 32))
    for task in ("denoise", "deblock", "super-resolve", "enhance"):
        for preset in ("quick", "balanced", "paper"):
            plan_restore(image, task, preset=preset, check_memory=False)
        params = RestoreParameters.for_task(task)
        plan_restore(image, task, parameters=params, check_memory=False)


def test_an_output_dtype_that_is_no_dtype_names_the_option() -> None:
    image = np.random.default_rng(0).random((32, 32))
    with pytest.raises(ValueError, match="output_dtype 'garbage' is not a dtype"):
        plan_restore(image, output_dtype="garbage")


def test_a_lazy_image_is_read_once() -> None:
    reads = []

    class Lazy:  # what dask and zarr arrays offer numpy
        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            reads.append(1)
            return np.random.default_rng(0).random((32, 32, 4))

    plan_restore(Lazy(), channel_axis=-1, check_memory=False)
    assert len(reads) == 1


def _masked_photo(channel_axis: int | None = None) -> np.ma.MaskedArray:
    rng = np.random.default_rng(0)
    shape = (32, 32) if channel_axis is None else (32, 32, 3)
    data = rng.random(shape) * 200 + 20
    flags = np.zeros(shape, bool)
    flags[4:8, 10:14] = True  # a hole (every channel)
    if channel_axis is not None:
        flags[20, 20, 1] = True  # one channel of one pixel: the pixel is missing
    image = np.ma.MaskedArray(data, mask=flags)
    image.data[flags] = 1e20  # numpy's default fill value: not data
    return image


@pytest.mark.parametrize("channel_axis", [None, -1])
def test_a_masked_array_is_inpainted_where_it_is_masked(channel_axis: int | None) -> None:
    image = _masked_photo(channel_axis)
    result = restore(image, "inpaint", channel_axis=channel_axis, width=8, max_iterations=3,
                     stop="none")
    out = np.asarray(result.image)
    assert out.dtype == np.float64 and out.shape == image.shape
    # the masked values took no part: the range is the valid pixels' (20-220)
    assert result.intensity_range[1] <= 220 and out.max() <= 220
    pixels = np.ma.getmaskarray(image)
    if channel_axis is not None:
        pixels = pixels.any(axis=-1)
    # the same as inpainting the data with the masked pixels as the mask
    plain = restore(np.ma.getdata(image), "inpaint", mask=pixels, channel_axis=channel_axis,
                    width=8, max_iterations=3, stop="none")
    np.testing.assert_array_equal(out, plain.image)
    assert (image.data[4, 10] == 1e20).all()  # the caller's array is untouched


def test_a_masked_array_mask_adds_to_the_mask_given() -> None:
    image = _masked_photo()
    holes = np.zeros((32, 32), bool)
    holes[20:24, 20:24] = True
    job = plan_restore(image, "inpaint", mask=holes, width=8)
    assert job.known is not None
    assert not job.known[4:8, 10:14].any() and not job.known[20:24, 20:24].any()
    assert job.known.sum() == 32 * 32 - 32


def test_a_mask_that_looks_inverted_is_warned_about() -> None:
    image = np.random.default_rng(5).random((64, 64))
    hole = np.zeros((64, 64), bool)
    hole[20:30, 20:40] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the mask as meant, and scattered missing pixels
        plan_restore(image, "inpaint", mask=hole, **FAST)
        plan_restore(image, "inpaint", mask=np.random.default_rng(0).random((64, 64)) < 0.9,
                     **FAST)
    # white marking the known pixels (GIMP, Fiji): 95% to fill, in one block
    with pytest.warns(UserWarning, match=r"\(95.1%\) to fill, in large regions.*invert it"):
        plan_restore(image, "inpaint", mask=~hole, **FAST)


@pytest.mark.parametrize("channel_axis", [None, -1])
def test_nan_pixels_are_holes_to_inpaint(channel_axis: int | None) -> None:
    # NaN is a common way to store missing pixels: refused before, even inside the mask
    rng = np.random.default_rng(3)
    data = rng.random((32, 32) if channel_axis is None else (32, 32, 3))
    holes = np.zeros((32, 32), bool)
    holes[8:16, 10:20] = True
    image = data.copy()
    image[holes] = np.nan
    given = restore(image, "inpaint", mask=holes, channel_axis=channel_axis, width=8,
                    max_iterations=3, stop="none")
    alone = restore(image, "inpaint", channel_axis=channel_axis, width=8, max_iterations=3,
                    stop="none")  # the NaN pixels are the mask
    for result in (given, alone):
        out = np.asarray(result.image)
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[~holes], data[~holes])  # known pixels kept
    np.testing.assert_array_equal(given.image, alone.image)
    assert given.parameters["filled_pixels"] == alone.parameters["filled_pixels"] == 80
    assert np.isnan(image[holes]).all()  # the caller's array is untouched
    with pytest.raises(ValueError, match="every value of the image is NaN or infinite"):
        restore(np.full_like(image, np.nan), "inpaint", channel_axis=channel_axis)
    stray = image.copy()
    stray[0, 0] = np.inf
    with pytest.warns(UserWarning, match="1 pixel.* outside the mask are NaN or infinite"):
        both = restore(stray, "inpaint", mask=holes, channel_axis=channel_axis, width=8,
                       max_iterations=1, stop="none")
    assert both.parameters["filled_pixels"] == 81  # the record counts the stray one too
    with pytest.raises(ValueError, match=r"NaN or infinite.*task='inpaint' fills them"):
        restore(image, "denoise", channel_axis=channel_axis)


def test_a_masked_array_is_refused_for_other_tasks_and_when_all_masked() -> None:
    image = _masked_photo()
    with pytest.raises(ValueError, match="masked array with 16 masked pixel"):
        restore(image, "denoise")
    everything = np.ma.MaskedArray(np.random.default_rng(0).random((32, 32)), mask=True)
    with pytest.raises(ValueError, match="every value masked"):
        restore(everything, "inpaint")
    # nothing masked: a plain array
    unmasked = np.ma.MaskedArray(np.ma.getdata(image), mask=False)
    job = plan_restore(unmasked, "denoise", width=8)
    assert job.known is None
