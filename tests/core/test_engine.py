"""The fitting loop end to end, on small images and few iterations."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage import data, img_as_float
from skimage.metrics import peak_signal_noise_ratio

import napari_specdip
from napari_specdip import RestoreParameters, iter_restore, plan_restore, restore
from napari_specdip.samples import add_gaussian_noise, center_crop
from napari_specdip.stopping import HoldoutRule

FAST = {"width": 8, "depth": 3, "stop": "none"}


@pytest.fixture(scope="module")
def camera64() -> np.ndarray:
    return center_crop(img_as_float(data.camera()), 64)


def test_denoising_gains_three_db(camera64: np.ndarray) -> None:
    # width 16 and depth 3 gain 4.5-6.0 dB over seeds 0-7 in 200 steps, a third of the
    # CPU time of width 32, depth 5 and 300 steps (which gained 3.5 dB with seed 0)
    noisy = add_gaussian_noise(camera64, seed=0)
    result = restore(noisy, "denoise", width=16, depth=3, max_iterations=200, stop="none", seed=0)
    before = peak_signal_noise_ratio(camera64, noisy, data_range=1.0)
    after = peak_signal_noise_ratio(camera64, result.image, data_range=1.0)
    assert after - before >= 3.0, (before, after)
    assert result.iterations == 200 and result.stop_reason == "max_iterations"


def test_same_seed_same_output_other_seed_differs(camera64: np.ndarray) -> None:
    a = restore(camera64, "denoise", max_iterations=4, seed=3, **FAST)
    b = restore(camera64, "denoise", max_iterations=4, seed=3, **FAST)
    c = restore(camera64, "denoise", max_iterations=4, seed=4, **FAST)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    assert not np.array_equal(a.image, c.image)


def test_the_thread_count_a_repeat_needs_is_recorded(camera64: np.ndarray) -> None:
    # the same seed with another CPU thread count sums in another order, so a run records
    # the count it used, given or torch's own
    given = restore(camera64, "denoise", max_iterations=2, num_threads=2, **FAST)
    assert given.parameters["threads_used"] == 2
    assert torch.get_num_threads() == 1  # the caller's setting (conftest) is put back
    own = restore(camera64, "denoise", max_iterations=2, **FAST)
    assert own.parameters["num_threads"] is None and own.parameters["threads_used"] == 1
    tiled = restore(np.tile(camera64, (2, 2)), "denoise", max_iterations=2, tile=64,
                    num_threads=2, **FAST)
    assert tiled.parameters["tiles_restored"] == 4 and tiled.parameters["threads_used"] == 2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_shape_dtype_and_range_preserved(dtype: type) -> None:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "u":
        image = rng.integers(1000 if dtype == np.uint16 else 10, 3000 if dtype == np.uint16 else 240,
                             (40, 36, 3)).astype(dtype)
    else:
        image = (rng.random((40, 36, 3)) * 7 - 2).astype(dtype)
    result = restore(image, "denoise", channel_axis=-1, max_iterations=3, **FAST)
    assert result.image.shape == image.shape
    assert result.image.dtype == image.dtype
    if dtype != np.uint8:
        assert result.image.min() >= image.min() and result.image.max() <= image.max()
    assert result.intensity_range == ((0.0, 255.0) if dtype == np.uint8
                                      else (float(image.min()), float(image.max())))


def test_channel_axis_first_and_output_dtype() -> None:
    image = np.random.default_rng(1).random((3, 33, 47))
    result = restore(image, "denoise", channel_axis=0, max_iterations=2, output_dtype="float32", **FAST)
    assert result.image.shape == (3, 33, 47) and result.image.dtype == np.float32


def test_padding_keeps_every_pixel() -> None:
    # an odd-sized image is padded to multiples of 2**depth and cropped back
    image = np.linspace(0, 1, 37 * 45).reshape(37, 45)
    result = restore(image, "denoise", max_iterations=2, **FAST)
    assert result.image.shape == (37, 45)


def test_inpainting_fills_masked_pixels(camera64: np.ndarray) -> None:
    mask = np.random.default_rng(0).random(camera64.shape) < 0.5
    damaged = np.where(mask, 0.0, camera64)
    # at 1e-2 the sigmoid output of this dark crop could saturate at 0 for a while (or for
    # good), and when it escaped depended on CPU kernels: the output now starts at the mean
    result = restore(damaged, "inpaint", mask=mask, width=16, depth=3, max_iterations=150,
                     stop="none", seed=0)
    err_before = np.abs(damaged[mask] - camera64[mask]).mean()
    err_after = np.abs(result.image[mask] - camera64[mask]).mean()
    assert err_after < 0.5 * err_before, (err_before, err_after)


def test_inpainting_keeps_the_known_pixels_unless_asked_or_noisy(camera64: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    mask = rng.random(camera64.shape) < 0.3
    image = (camera64 * 255).astype(np.uint8)
    run = {"width": 8, "depth": 3, "max_iterations": 20, "stop": "none", "seed": 0}
    kept = restore(image, "inpaint", mask=mask, **run)
    assert np.array_equal(kept.image[~mask], image[~mask])  # exactly, in the input's dtype
    assert not np.array_equal(kept.image[mask], image[mask])
    assert kept.parameters["kept_known"] is True and kept.parameters["keep_known"] is None
    assert kept.parameters["filled_pixels"] == np.count_nonzero(mask)
    fitted = restore(image, "inpaint", mask=mask, keep_known=False, **run)
    assert not np.array_equal(fitted.image[~mask], image[~mask])
    np.testing.assert_array_equal(fitted.image[mask], kept.image[mask])  # same fit
    # the paper's output is the network's everywhere; camera noise: the known pixels are noisy
    paper = RestoreParameters.for_task("inpaint", preset="paper")
    assert paper.keeps_known is False
    noisy = RestoreParameters.for_task("inpaint", noise="poisson-gaussian")
    assert noisy.keeps_known is False and noisy.replace(keep_known=True).keeps_known
    with pytest.raises(ValueError, match="only makes sense for task inpaint"):
        restore(image, "denoise", keep_known=True, max_iterations=2, **FAST)


def test_inpaintings_quality_signals_score_what_the_run_returns(camera64: np.ndarray) -> None:
    mask = np.random.default_rng(3).random(camera64.shape) < 0.4
    run = {"width": 8, "depth": 3, "max_iterations": 20, "stop": "none", "seed": 0,
           "output": "ema", "signal_every": 5, "reference": camera64}
    for keep in (True, False):
        result = restore(camera64, "inpaint", mask=mask, keep_known=keep, **run)
        # the charts' last PSNR is the result's (the known pixels put back or not)
        assert result.history["psnr_ema"][-1] == pytest.approx(result.metrics["psnr"], abs=0.02)


def test_every_parameters_field_is_a_keyword_of_restore() -> None:
    image = np.random.default_rng(2).random((32, 32))
    result = restore(image, holdout_return="minimum", holdout_patience=40, preset="quick",
                     width=8, depth=3, max_iterations=10)
    assert result.parameters["holdout_return"] == "minimum"
    assert result.parameters["holdout_patience"] == 40
    with pytest.raises(TypeError, match=r"holdout_retrun \(did you mean holdout_return\?\)"):
        restore(image, holdout_retrun="minimum")
    # and help() shows them: restore's signature is iter_restore's, not (image, task, **options)
    import inspect

    shown = inspect.signature(restore).parameters
    assert "max_iterations" in shown and "preset" in shown and "options" not in shown


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_super_resolution_has_high_res_shape(factor: int) -> None:
    low = np.random.default_rng(0).random((16, 20, 3))
    result = restore(low, "super-resolve", factor=factor, channel_axis=-1, max_iterations=2, **FAST)
    assert result.image.shape == (16 * factor, 20 * factor, 3)
    assert result.parameters["factor"] == factor


def test_super_resolution_fits_the_observation(camera64: np.ndarray) -> None:
    from skimage.transform import resize

    low = resize(camera64, (32, 32), anti_aliasing=True)
    result = restore(low, "super-resolve", factor=2, width=16, depth=3, max_iterations=120,
                     stop="none", learning_rate=0.01)
    bicubic = resize(low, (64, 64), order=3)
    ours = peak_signal_noise_ratio(camera64, result.image, data_range=1.0)
    assert ours > peak_signal_noise_ratio(camera64, bicubic, data_range=1.0) - 3.0


def test_enhance_adds_both_signs_of_detail(camera64: np.ndarray) -> None:
    # 20 iterations fit little, so most pixels clip: the warning says so
    with pytest.warns(UserWarning, match=r"clipped.*smaller gain, or let the fit run longer "
                      r"\(it ended at iteration 20, the method fits 100\)"):
        result = restore(camera64, "enhance", width=8, depth=3, max_iterations=20, gain=1.5)
    diff = result.image - camera64
    assert (diff > 0.01).any() and (diff < -0.01).any()
    assert result.stop_reason == "max_iterations" and result.iterations == 20
    assert result.parameters["lipschitz"] == 1.0


def test_enhance_warning_names_a_tiles_own_fit() -> None:
    """A tiled run's iterations add up its tiles: the warning names one tile's fit."""
    image = np.random.default_rng(0).random((150, 170))
    with pytest.warns(UserWarning, match=r"it ended at iteration 20, the method fits 100"):
        result = restore(image, "enhance", width=8, depth=3, max_iterations=20, tile=64, gain=3.0)
    assert len(result.parameters["tiles"]) > 1 and result.iterations > 100


@pytest.mark.filterwarnings("ignore:enhance with gain:UserWarning")  # 2 iterations fit nothing
@pytest.mark.parametrize("task", ["deblock", "enhance"])
def test_identity_tasks_run(task: str) -> None:
    image = (np.random.default_rng(2).random((32, 32)) * 255).astype(np.uint8)
    assert restore(image, task, max_iterations=2, **FAST).image.dtype == np.uint8


@pytest.mark.parametrize("network", ["skip", "convnet"])
def test_comparison_networks_run(network: str) -> None:
    image = np.random.default_rng(2).random((32, 32))
    result = restore(image, network=network, max_iterations=2, **FAST)
    assert result.image.shape == (32, 32)


def test_reports_previews_and_history() -> None:
    image = np.random.default_rng(0).random((32, 32))
    reference = np.clip(image + 0.01, 0, 1)
    gen = iter_restore(image, max_iterations=6, preview_every=3, signal_every=2,
                       reference=reference, **FAST)
    reports = []
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as done:
            result = done.value
            break
    assert [r.iteration for r in reports] == [1, 2, 3, 4, 5, 6]
    assert [r.preview is not None for r in reports] == [False, False, True, False, False, True]
    assert reports[2].preview is not None and reports[2].preview.shape == (32, 32)
    assert reports[0].signals == {} and "fbc5" in reports[1].signals
    for key in ("fbc1", "fbc5", "blur", "sharpness", "ratio", "psnr", "ssim", "fbc_clean1"):
        assert key in reports[1].signals
    assert list(result.history["iteration"]) == [1, 2, 3, 4, 5, 6]
    assert list(result.history["signal_iteration"]) == [2, 4, 6]
    assert len(result.history["fbc3"]) == 3
    assert "psnr" in result.metrics and result.metrics["psnr"] > 0
    meta = result.metadata()["specdip"]
    assert meta["seed"] == 0 and meta["iterations"] == 6 and meta["device"] == "cpu"
    assert meta["versions"]["torch"] and meta["parameters"]["task"] == "denoise"


def test_ratio_rule_stops_the_run() -> None:
    image = np.random.default_rng(0).random((32, 32))
    result = restore(image, width=8, depth=3, stop="ratio", max_iterations=400, seed=0,
                     parameters=RestoreParameters.for_task("denoise", stop_window=5, stop_epsilon=1e9,
                                                           signal_every=1))
    assert result.stop_reason == "ratio"
    assert result.iterations == 11  # first possible step: t > 2n


def test_wmv_rule_and_best_output() -> None:
    image = np.random.default_rng(0).random((32, 32))
    params = RestoreParameters.for_task("denoise", wmv_window=3, wmv_patience=4)
    result = restore(image, width=8, depth=3, stop="wmv", output="best", max_iterations=300,
                     parameters=params, learning_rate=0.05)
    assert result.stop_reason == "wmv"
    assert 1 <= result.stop_iteration < result.iterations
    assert "variance" in result.history


def test_ema_output_differs_from_last() -> None:
    image = np.random.default_rng(0).random((32, 32))
    last = restore(image, max_iterations=5, output="last", **FAST)
    ema = restore(image, max_iterations=5, output="ema", **FAST)
    assert not np.array_equal(last.image, ema.image)


def test_interrupt_returns_result_so_far() -> None:
    image = np.random.default_rng(0).random((32, 32))
    stop = threading.Event()
    gen = iter_restore(image, max_iterations=1000, interrupt=stop, **FAST)
    for report in gen:
        if report.iteration == 3:
            stop.set()
    # the loop above ended because the generator returned
    result = napari_specdip.core.engine.run_to_end(
        iter_restore(image, max_iterations=1000, interrupt=stop, **FAST))
    assert result.stop_reason == "stopped" and result.iterations == 0
    stop.clear()
    gen = iter_restore(image, max_iterations=1000, interrupt=stop, **FAST)
    next(gen)
    next(gen)
    stop.set()
    with pytest.raises(StopIteration) as done:
        next(gen)
    res = done.value.value
    assert res.stop_reason == "stopped" and res.iterations == 2 and res.image.shape == (32, 32)


@pytest.mark.parametrize("options", [{}, {"task": "super-resolve", "factor": 2},
                                     {"tile": 32, "tile_overlap": 8}, {"ensemble": 2}])
def test_a_run_stopped_before_its_first_step_returns_the_input(options: dict) -> None:
    image = np.random.default_rng(1).random((80, 80))  # tiled: 32 px cores, 8 px overlap
    stop = threading.Event()
    stop.set()
    result = napari_specdip.core.engine.run_to_end(
        iter_restore(image, max_iterations=50, interrupt=stop, **{**FAST, **options}))
    assert result.stop_reason == "stopped" and result.iterations == 0
    factor = options.get("factor", 1)
    expected = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    # not the untrained network's near-flat output, which would read as a result
    np.testing.assert_allclose(result.image, expected, atol=1e-6)
    if options.get("ensemble"):
        assert result.uncertainty is not None and np.isnan(result.uncertainty).all()
    assert ("tiles" in result.parameters) == ("tile" in options)


def test_closing_the_generator_stops_work() -> None:
    image = np.random.default_rng(0).random((32, 32))
    gen = iter_restore(image, max_iterations=10_000, **FAST)
    next(gen)
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)


def test_backtracking_restores_weights() -> None:
    image = np.random.default_rng(0).random((32, 32))
    # an absurd learning rate makes the fit diverge; backtracking must kick in
    # (on this image and seed the jittered input happens to keep the PSNR from falling)
    params = RestoreParameters.for_task("denoise", backtrack_every=1, lr_warmup=0,
                                        input_jitter=0.0)
    result = restore(image, parameters=params, max_iterations=30, learning_rate=1.0, **FAST)
    assert result.parameters["backtracks"] >= 1
    off = restore(image, parameters=params.replace(backtrack=False), max_iterations=30,
                  learning_rate=1.0, **FAST)
    assert off.parameters["backtracks"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": np.full((32, 32), np.nan)}, "NaN or infinite"),
        ({"image": np.array([[1.0, np.inf] * 16] * 32)}, "NaN or infinite"),
        ({"image": np.zeros((0, 32))}, "empty"),
        ({"image": np.zeros((4, 32, 32, 3))}, "slice by slice"),
        ({"image": np.random.rand(32, 32, 3)}, "channel_axis=-1"),
        ({"image": np.random.rand(32, 32), "channel_axis": -1}, "must be 3D"),
        ({"image": np.random.rand(12, 40)}, "too small"),
        ({"image": np.full((32, 32), 7.0)}, "constant"),
        # whatever the dtype: a uint8 or [0, 1] float image has a natural range, but a
        # constant one has nothing to restore either
        ({"image": np.zeros((32, 32), np.uint8)}, "constant"),
        ({"image": np.zeros((32, 32), np.float32)}, "constant"),
        ({"image": np.ones((32, 32, 3)), "channel_axis": -1}, "constant"),
        ({"image": np.random.rand(32, 32), "learning_rate": 1e9}, r"learning_rate must be in"),
        ({"image": np.random.rand(32, 32), "reference": np.random.rand(32, 32) * 255},
         r"2\d\d times the image's: e.g. a 0-255 reference of a 0-1 image, divide it by 255"),
        ({"image": np.random.rand(32, 32) * 255, "reference": np.random.rand(32, 32)},
         "in the image's units"),
        ({"image": np.random.rand(32, 32), "reference": np.random.rand(32, 32) + 5.0},
         "in the image's units"),
        ({"image": np.array([["a"] * 32] * 32)}, "numbers"),
        ({"image": np.random.rand(32, 32), "task": "inpaint"}, "needs a mask"),
        ({"image": np.random.rand(32, 32), "task": "inpaint", "mask": np.zeros((30, 32))},
         "does not match"),
        ({"image": np.random.rand(32, 32), "task": "inpaint", "mask": np.ones((32, 32))},
         "covers every pixel"),
        ({"image": np.random.rand(32, 32), "task": "inpaint", "mask": np.zeros((32, 32))},
         "marks no pixel to fill"),
        ({"image": np.random.rand(32, 32), "mask": np.ones((32, 32))}, "only makes sense"),
        ({"image": np.random.rand(32, 32), "task": "sharpen"}, "unknown task"),
        ({"image": np.random.rand(32, 32), "stop": "never"}, "unknown stop"),
        ({"image": np.random.rand(32, 32), "task": "super-resolve", "factor": 3}, "factor"),
        ({"image": np.random.rand(32, 32), "device": "cuda"}, "not available"),
        ({"image": np.random.rand(32, 32), "device": "tpu"}, "device"),
        ({"image": np.random.rand(32, 32), "reference": np.random.rand(16, 16)}, "reference shape"),
        ({"image": np.random.rand(32, 32), "lipschitz": -1.0}, "lipschitz"),
    ],
)
def test_bad_input_is_refused_clearly(kwargs: dict, message: str) -> None:
    kwargs = dict(kwargs)
    image = kwargs.pop("image")
    task = kwargs.pop("task", "denoise")
    with pytest.raises(ValueError, match=message):
        # device errors surface when the run starts; everything else at the call
        napari_specdip.core.engine.run_to_end(iter_restore(image, task, max_iterations=1, **kwargs))


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        restore(np.random.rand(32, 32), colour="blue")  # type: ignore[call-arg]


def test_plan_snapshots_the_input() -> None:
    image = np.random.default_rng(0).random((32, 32))
    job = plan_restore(image, "denoise", max_iterations=2, width=8, depth=3, stop="none")
    image[:] = 0.5  # changing the caller's array after planning must not matter
    result = napari_specdip.core.engine.run_to_end(job.run())
    assert result.parameters["width"] == 8
    assert float(np.std(job.observation)) > 0.1


@pytest.mark.parametrize(("shape", "task", "factor"), [((32, 32), "denoise", None),
                                                        ((16, 16), "super-resolve", 8)])
def test_small_images_work_at_the_default_depth(shape: tuple[int, int], task: str,
                                                factor: int | None) -> None:
    # a 32 px image would leave a 1 px coarsest level, too small to reflect-pad
    result = restore(np.random.default_rng(0).random(shape), task, factor=factor, width=4,
                     max_iterations=1)
    assert result.image.shape == tuple(s * (factor or 1) for s in shape)


def test_auto_stop_returns_the_minimum_of_the_estimated_error() -> None:
    image = np.random.default_rng(0).random((32, 32))
    params = RestoreParameters.for_task("denoise", holdout_patience=10, signal_every=1)
    assert params.stop == "auto" and params.output == "ema" and params.holdout > 0
    result = restore(image, width=8, depth=3, max_iterations=300, parameters=params)
    history = result.history
    held_out = history["error_estimate_ema"]
    best = int(np.argmin(held_out))
    assert result.stop_reason == "holdout" and result.iterations < 300
    # the output of the minimum is returned, and the run stops 10 iterations after it
    assert result.stop_iteration == history["signal_iteration"][best]
    assert result.iterations == result.stop_iteration + 10
    assert len(held_out) == len(history["signal_iteration"]) == result.iterations


def test_the_error_estimate_follows_the_true_error() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    clean = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    noisy = clean + rng.normal(0, 0.1, clean.shape)
    params = RestoreParameters.for_task("denoise", width=8, depth=3, max_iterations=200,
                                        stop="none", learning_rate=0.01)
    result = restore(noisy, parameters=params, reference=clean)
    h = result.history
    low, high = result.intensity_range
    true_mse = 10 ** (-h["psnr_ema"] / 10) / (high - low) ** 2  # in the fitted [0, 1] units
    estimate = h["error_estimate_ema"]
    assert np.corrcoef(true_mse, estimate)[0, 1] > 0.95
    # its minimum lies within a few signal steps of the true error's
    assert abs(int(np.argmin(estimate)) - int(np.argmin(true_mse))) <= 5
    noise = result.parameters["stop_noise_variance"]
    assert noise * (high - low) ** 2 == pytest.approx(0.1**2, rel=0.2)
    # the fitted pixels' loss is what the estimate starts from
    assert np.all(h["fit_loss_ema"] > 0) and np.all(h["holdout_loss_ema"] > 0)


def test_without_a_noise_level_auto_watches_the_held_out_loss() -> None:
    image = np.random.default_rng(0).random((32, 32))
    mask = np.zeros((32, 32), bool)
    mask[10:14, 10:14] = True
    params = RestoreParameters.for_task("inpaint", holdout_patience=10, signal_every=1,
                                        stop="auto", holdout=0.1, output="ema")
    result = restore(image, "inpaint", mask=mask, width=8, depth=3, max_iterations=300,
                     parameters=params)
    assert result.parameters["stop_noise_variance"] is None
    assert "error_estimate_ema" not in result.history
    best = int(np.argmin(result.history["holdout_loss_ema"]))
    assert result.stop_iteration == result.history["signal_iteration"][best]


def test_auto_stop_returns_the_middle_of_the_minimum_s_plateau() -> None:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    image = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + rng.normal(0, 0.2, (32, 32))
    mask = np.zeros((32, 32), bool)
    mask[10:16, 10:16] = True
    params = RestoreParameters.for_task("inpaint", holdout_patience=60, signal_every=1,
                                        width=8, depth=3, max_iterations=400, stop="auto",
                                        holdout=0.1, output="ema")
    result = restore(image, "inpaint", mask=mask, parameters=params)
    h = result.history
    minimum = int(h["signal_iteration"][np.argmin(h["holdout_loss_ema"])])
    assert result.iterations == minimum + 60
    # the rule fed the recorded signal picks the same step, here not the minimum
    rule = HoldoutRule(patience=60)
    for iteration, value in zip(h["signal_iteration"], h["holdout_loss_ema"], strict=True):
        rule.update(int(iteration), float(value))
    assert result.stop_iteration == rule.returned_iteration != minimum
    # and what comes back is that step's moving average: a run that ends there
    upto = restore(image, "inpaint", mask=mask,
                   parameters=params.replace(stop="none", max_iterations=result.stop_iteration))
    np.testing.assert_array_equal(result.image, upto.image)
    at_minimum = restore(image, "inpaint", mask=mask,
                         parameters=params.replace(holdout_return="minimum"))
    assert at_minimum.stop_iteration == minimum
    assert at_minimum.iterations == result.iterations


def test_warm_started_run_waits_its_own_patience() -> None:
    """A run from warm_start weights stops holdout_patience_warm after its minimum."""
    image = np.random.default_rng(0).random((32, 32))
    params = RestoreParameters.for_task("denoise", holdout_patience=40,
                                        holdout_patience_warm=10, signal_every=1)
    first = restore(image, width=8, depth=3, max_iterations=300, parameters=params,
                    keep_state=True)
    assert first.stop_reason == "holdout"
    assert first.iterations == first.stop_iteration + 40 and first.state is not None
    second = restore(image, width=8, depth=3, max_iterations=300, parameters=params,
                     warm_start=first.state)
    assert second.stop_reason == "holdout"
    assert second.iterations == second.stop_iteration + 10


def test_stop_auto_needs_held_out_pixels() -> None:
    with pytest.raises(ValueError, match="holdout > 0"):
        RestoreParameters.for_task("denoise", holdout=0.0)
    assert RestoreParameters.for_task("denoise", holdout=0.0, stop="wmv").holdout == 0.0

def test_warm_start_continues_from_the_previous_fit(camera64: np.ndarray) -> None:
    noisy = add_gaussian_noise(camera64, seed=0)
    # quick's step: 40 iterations fit well past the start
    options = {"width": 8, "stop": "none", "signal_every": 1, "learning_rate": 1e-2}
    first = restore(noisy, max_iterations=40, keep_state=True, **options)
    assert first.state is not None and restore(noisy, max_iterations=2, **options).state is None
    cold = restore(noisy, max_iterations=1, **options)
    warm = restore(noisy, max_iterations=1, warm_start=first.state, **options)
    # the first step of a warm start already fits as well as the end of the first run
    assert warm.history["loss"][0] < 0.5 * cold.history["loss"][0]
    assert warm.history["loss"][0] == pytest.approx(first.history["loss"][-1], rel=0.2)
    assert warm.parameters["warm_start"] and not cold.parameters["warm_start"]
    with pytest.raises(ValueError, match="does not fit"):
        restore(noisy, max_iterations=1, warm_start=first.state, width=16, stop="none")
    # refused at the call, before the run's first step, whatever differs
    for other in ({"width": 16}, {"depth": 2}, {"ensemble": 2}, {"network": "skip"}):
        with pytest.raises(ValueError, match="does not fit"):
            plan_restore(noisy, warm_start=first.state, **{**options, **other})
    with pytest.raises(ValueError, match="does not fit"):
        plan_restore(np.dstack([noisy] * 3), channel_axis=-1, warm_start=first.state, **options)
    assert plan_restore(noisy, warm_start=first.state, **options).warm_start is first.state
    with pytest.raises(TypeError, match="keep_state"):
        restore(noisy, max_iterations=1, warm_start={"a": 1}, **options)


def test_presets_set_defaults_and_explicit_options_win() -> None:
    quick = RestoreParameters.for_task("denoise", preset="quick")
    balanced = RestoreParameters.for_task("denoise")
    paper = RestoreParameters.for_task("denoise", preset="paper")
    assert balanced.preset == "balanced" and quick.width < balanced.width < paper.width
    assert (paper.width, paper.depth, paper.learning_rate, paper.stop, paper.output,
            paper.holdout, paper.max_iterations) == (128, 5, 1e-3, "ratio", "last", 0.0, 10000)
    assert RestoreParameters.for_task("denoise", preset="quick", width=48).width == 48
    enhance = RestoreParameters.for_task("enhance", preset="quick")
    assert (enhance.max_iterations, enhance.learning_rate, enhance.stop) == (100, 1e-3, "none")
    # the paper's decoder and the paper's short enhancement fit take no input jitter
    assert quick.input_jitter == balanced.input_jitter == 0.1
    assert paper.input_jitter == enhance.input_jitter == 0.0
    image = np.random.default_rng(0).random((32, 32))
    result = restore(image, preset="quick", max_iterations=2, width=8, stop="none")
    assert result.parameters["preset"] == "quick" and result.parameters["width"] == 8
    with pytest.raises(ValueError, match="unknown preset"):
        RestoreParameters.for_task("denoise", preset="fast")
    with pytest.raises(ValueError, match="preset"):
        restore(image, parameters=balanced, preset="quick")


def test_parameters_built_without_for_task_are_the_default_preset_s() -> None:
    # RestoreParameters() once mixed the paper's fields with the auto stop and failed
    assert RestoreParameters() == RestoreParameters.for_task("denoise")
    image = np.random.default_rng(0).random((32, 32))
    mine = RestoreParameters(width=8, max_iterations=3)
    result = restore(image, parameters=mine)
    assert result.parameters["width"] == 8 and result.iterations <= 3


def test_input_jitter_changes_the_fit_and_stays_reproducible() -> None:
    image = np.random.default_rng(4).random((32, 32))
    options = {"width": 8, "max_iterations": 4, "stop": "none", "output": "last", "seed": 2}
    plain = restore(image, input_jitter=0.0, **options)
    jittered = restore(image, input_jitter=0.1, **options)
    again = restore(image, input_jitter=0.1, **options)
    assert plain.parameters["input_jitter"] == 0.0 and jittered.parameters["input_jitter"] == 0.1
    np.testing.assert_array_equal(jittered.image, again.image)
    # the first step's output is the same network on another input
    assert not np.array_equal(plain.image, jittered.image)
    assert plain.history["loss"][0] != jittered.history["loss"][0]
    with pytest.raises(ValueError, match="input_jitter"):
        RestoreParameters.for_task("denoise", input_jitter=-0.1)


def test_held_out_pixels_are_left_out_of_the_fit() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((32, 32))
    params = RestoreParameters.for_task("denoise", holdout=0.2, stop="none", signal_every=1)
    from napari_specdip.core.engine import _holdout_mask

    held = _holdout_mask(32, 32, 0.2, params.seed, None)
    changed = image.copy()
    changed[held] = rng.random(int(held.sum()))
    a = restore(image, parameters=params, max_iterations=3, width=8, output="last")
    b = restore(changed, parameters=params, max_iterations=3, width=8, output="last")
    # same fit (the held-out values never reach the loss), different held-out error
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-5)
    assert not np.allclose(a.history["holdout_loss"], b.history["holdout_loss"])


def test_a_dark_sparse_image_is_fitted_not_blacked_out() -> None:
    # bright spots on a dark background: with the output started at the data's mean the
    # large first steps no longer drive the sigmoid into saturation (a black result)
    rng = np.random.default_rng(1)
    clean = np.zeros((64, 64))
    clean[rng.integers(4, 60, 40), rng.integers(4, 60, 40)] = 1.0
    from scipy import ndimage

    clean = ndimage.gaussian_filter(clean, 1.5)
    clean = 0.03 + 0.9 * clean / clean.max()
    noisy = add_gaussian_noise(clean, seed=0)
    result = restore(noisy, width=16, max_iterations=120, stop="none", learning_rate=1e-2)
    assert result.image.std() > 0.5 * clean.std()
    assert peak_signal_noise_ratio(clean, result.image, data_range=1.0) > (
        peak_signal_noise_ratio(clean, noisy, data_range=1.0) + 3.0)


def test_depth_follows_the_image_size() -> None:
    image = np.random.default_rng(0).random((64, 96))
    result = restore(image, width=8, max_iterations=1, stop="none")
    assert result.parameters["depth"] == 3  # 64 px -> an 8 px coarsest grid
    assert restore(image, width=8, max_iterations=1, stop="none", depth=2).parameters["depth"] == 2
