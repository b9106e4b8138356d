"""The run's estimate: memory from shapes, time from a few cached steps, refusals before work."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

import napari_specdip
from napari_specdip import estimate, plan_restore, restore
from napari_specdip.core import engine
from napari_specdip.core import estimate as est
from napari_specdip.core.signals import StepSignals

FAST = {"width": 8, "depth": 3, "stop": "none"}


@pytest.fixture()
def little_memory(monkeypatch: pytest.MonkeyPatch) -> int:
    """Pretend the CPU has 150 MB available."""
    available = 150_000_000
    monkeypatch.setattr(est, "available_memory", lambda device="cpu": available)
    return available


def test_estimate_is_exported_lazily_and_fields() -> None:
    assert napari_specdip.estimate is estimate
    assert "estimate" in dir(napari_specdip)
    image = np.random.default_rng(0).random((40, 36))
    e = estimate(image, "denoise", width=8, depth=3, max_iterations=50, device="cpu")
    assert dataclasses.is_dataclass(e)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.seconds = 1.0  # type: ignore[misc]
    assert e.iterations == 50 and e.device == "cpu" and e.fits and e.advice == ""
    assert e.seconds_per_iteration > 0
    # the fit's own cost besides its steps (noise estimate, first steps, Wiener stage)
    assert e.setup_seconds > 0
    assert e.seconds == pytest.approx(50 * e.seconds_per_iteration + e.setup_seconds)
    assert e.peak_memory_bytes > 0 and e.memory is not None
    assert e.peak_memory_bytes == e.memory.total
    assert e.available_memory_bytes is None or e.available_memory_bytes > e.peak_memory_bytes
    assert e.canvas == (40, 40)  # padded to multiples of 2**3, as the engine pads
    text = e.describe()
    assert "50 iterations" in text and "peak memory" in text and "cpu" in text


def test_time_calibration_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    image = np.random.default_rng(1).random((32, 32))
    first = estimate(image, width=8, depth=3, max_iterations=10, device="cpu", seed=5)
    assert first.seconds > 0
    calls: list[int] = []
    real = engine.run_to_end

    def counting(gen: Any, on_step: Any = None) -> Any:
        calls.append(1)
        return real(gen, on_step)

    monkeypatch.setattr(engine, "run_to_end", counting)
    # same device, size, channels, width, depth, network, upsampler, threads: no new steps
    second = estimate(image * 0.5, width=8, depth=3, max_iterations=20, device="cpu", seed=6)
    assert calls == []
    assert second.seconds_per_iteration == first.seconds_per_iteration
    assert second.setup_seconds == first.setup_seconds
    assert second.seconds - second.setup_seconds == pytest.approx(
        2 * (first.seconds - first.setup_seconds))
    estimate(image, width=16, depth=3, max_iterations=10, device="cpu")  # another width: timed
    assert calls == [1]
    # the Wiener stage (timed with the setup) on or off, another noise model: timed again
    estimate(image, width=8, depth=3, max_iterations=10, device="cpu", refine="none")
    assert calls == [1, 1]
    estimate(image, width=8, depth=3, max_iterations=10, device="cpu",
             noise="poisson-gaussian", noise_gain=0.01, noise_read_sigma=0.01,
             noise_offset=0.0)
    assert calls == [1, 1, 1]


def test_options_flow_through_like_restore() -> None:
    image = (np.random.default_rng(2).random((32, 32, 4)) * 255).astype(np.uint8)
    e = estimate(image, "super-resolve", channel_axis=-1, factor=2, device="cpu",
                 **FAST, max_iterations=3)
    assert e.canvas == (64, 64)
    with pytest.raises(TypeError, match="unknown restoration option"):
        estimate(image, channel_axis=-1, colour=True)
    with pytest.raises(ValueError, match="seed"):
        estimate(image, channel_axis=-1, seed="abc")


def test_memory_estimate_counts_exactly_what_autograd_saves() -> None:
    """The meta-device trace against the tensors a real step saves (64 px, real data)."""
    image = np.random.default_rng(3).random((64, 64, 3))
    job = plan_restore(image, channel_axis=-1, width=16, depth=4, device="cpu")
    height, width, channels = job.observation.shape
    canvas = est.canvas_shape(job.params, height, width)
    saved, largest, *_ = est._trace("decoder", channels, 16, 4, "bilinear",
                                    tuple(job.params.sigmas), canvas, 1, False)
    net = engine.build_network("decoder", channels, width=16, depth=4, lipschitz=1.4,
                               upsampler="bilinear", sigmas=job.params.sigmas)
    z = net.make_input(*canvas, generator=torch.Generator().manual_seed(0))
    y = torch.rand(1, channels, *canvas)
    params = {p.data_ptr() for p in net.parameters()}
    real: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:
            real[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        engine.Identity().loss(net(z), y)
    assert saved == sum(real.values())
    assert largest == max(real.values())


def test_canvas_shape_is_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, ...]] = []
    real = engine.build_network

    def spy(*args: Any, **kwargs: Any) -> Any:
        net = real(*args, **kwargs)
        net.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[-2:])))
        return net

    monkeypatch.setattr(engine, "build_network", spy)
    for shape, options in [((37, 50), {"depth": 3}), ((20, 24), {"depth": 5}),
                           ((33, 17), {"network": "convnet", "depth": 1})]:
        image = np.random.default_rng(4).random(shape)
        job = plan_restore(image, width=4, max_iterations=1, stop="none", **options)
        engine.run_to_end(job.run())
        assert seen[-1] == est.canvas_shape(job.params, *shape)
    job = plan_restore(np.random.default_rng(5).random((20, 22)), "super-resolve", factor=4,
                       width=4, depth=4, max_iterations=1, stop="none")
    engine.run_to_end(job.run())
    assert seen[-1] == est.canvas_shape(job.params, 20, 22, 4)


def test_memory_grows_with_size_and_width_and_counts_the_variance_window() -> None:
    rng = np.random.default_rng(6)
    small = plan_restore(rng.random((64, 64)), width=16, stop="none", device="cpu")
    large = plan_restore(rng.random((128, 128)), width=16, stop="none", device="cpu")
    wide = plan_restore(rng.random((64, 64)), width=64, stop="none", device="cpu")
    wmv = plan_restore(rng.random((64, 64)), width=16, stop="wmv", device="cpu")
    m = {name: est.memory_needed(job) for name, job in
         [("small", small), ("large", large), ("wide", wide), ("wmv", wmv)]}
    assert m["large"].activations > 3.5 * m["small"].activations
    assert m["wide"].activations > 3.5 * m["small"].activations
    # float64 copies of the output, one per evaluated step of the window, and the
    # float32 output kept at the variance minimum (what ES-WMV returns)
    window = round(wmv.params.wmv_window / wmv.params.signal_every)
    assert m["wmv"].buffers - m["small"].buffers == (window + 2) * 64 * 64 * 8 + 64 * 64 * 4


def test_refused_before_any_work_with_estimate_and_advice(little_memory: int,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    monkeypatch.setattr(engine, "build_network", lambda *a, **k: built.append(1))
    image = np.random.default_rng(7).random((256, 256))
    with pytest.raises(MemoryError) as info:
        restore(image, width=128, device="cpu")
    message = str(info.value)
    assert "256x256" in message and "width 128" in message
    assert "150.0 MB" in message and "needs about" in message
    assert "smaller width" in message and "crop" in message and "another device" in message
    assert built == []  # refused in plan, before the network exists
    with pytest.raises(MemoryError):
        plan_restore(image, width=128, device="cpu")
    e = estimate(image, width=128, device="cpu")
    assert not e.fits and e.advice and np.isnan(e.seconds) and e.advice in e.describe()
    assert plan_restore(image, width=128, device="cpu", check_memory=False).params.width == 128


def test_advice_names_a_width_and_a_crop_that_fit(little_memory: int) -> None:
    image = np.random.default_rng(8).random((256, 256))
    job = plan_restore(image, width=128, device="cpu", check_memory=False)
    needed = est.memory_needed(job).total
    advice = est.memory_advice(job, needed, little_memory, "cpu")
    width = int(advice.split("smaller width (")[1].split(" instead")[0])
    budget = est.SAFETY_SHARE * little_memory
    assert est.memory_needed(est._with(job, width=width)).total <= budget
    assert est.memory_needed(est._with(job, width=2 * width)).total > budget
    side = int(advice.split("at most ")[1].split(" x")[0])
    assert est.memory_needed(est._with(job, side=side)).total <= budget
    assert side < 256


@pytest.mark.parametrize("text", ["[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: "
                                  "can't allocate memory: you tried to allocate 7516192768 bytes.",
                                  "MPS backend out of memory (MPS allocated: 1 GB)"])
def test_allocation_failures_become_memory_errors(text: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(text)

    monkeypatch.setattr(StepSignals, "measure", fail)
    image = np.random.default_rng(9).random((32, 32))
    with pytest.raises(MemoryError, match="out of memory on cpu restoring a 32x32 image") as info:
        restore(image, max_iterations=2, **FAST)
    assert "smaller width" in str(info.value) or "try" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_other_runtime_errors_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("shape mismatch somewhere")

    monkeypatch.setattr(StepSignals, "measure", fail)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        restore(np.random.default_rng(9).random((32, 32)), max_iterations=2, **FAST)


def test_available_memory_takes_the_tightest_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(est, "_system_available", lambda: 8_000_000_000)
    monkeypatch.setattr(est, "_cgroup_available", lambda: None)
    monkeypatch.setattr(est, "_address_space_available", lambda: None)
    assert est.available_memory("cpu") == 8_000_000_000
    monkeypatch.setattr(est, "_cgroup_available", lambda: 2_000_000_000)
    assert est.available_memory("cpu") == 2_000_000_000
    monkeypatch.setattr(est, "_address_space_available", lambda: 1_000_000_000)
    assert est.available_memory("cpu") == 1_000_000_000
    monkeypatch.setattr(est, "_system_available", lambda: None)
    monkeypatch.setattr(est, "_cgroup_available", lambda: None)
    monkeypatch.setattr(est, "_address_space_available", lambda: None)
    assert est.available_memory("cpu") is None


def test_cgroup_limits_are_read(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1000000000\n")
    (v2 / "memory.current").write_text("600000000\n")
    (v2 / "memory.stat").write_text("anon 1\ninactive_file 100000000\n")
    unlimited = tmp_path / "unlimited"
    unlimited.mkdir()
    (unlimited / "memory.max").write_text("max\n")
    (unlimited / "memory.current").write_text("5\n")
    monkeypatch.setattr(est, "_cgroup_dirs", lambda: iter([("v2", str(v2)),
                                                          ("v2", str(unlimited))]))
    assert est._cgroup_available() == 1_000_000_000 - 500_000_000


def test_formatting() -> None:
    assert est.format_bytes(1536) == "1.5 KB"
    assert est.format_bytes(64_334_932_036) == "64.3 GB"
    assert est.format_seconds(0.0123) == "12 ms"
    assert est.format_seconds(75) == "1 min 15 s"
    assert est.format_seconds(7300) == "2 h 1 min"


def test_examples_run_as_written() -> None:
    import doctest

    result = doctest.testmod(est, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 3


def test_memory_counts_the_ensembles_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import ensemble

    job = plan_restore(np.random.default_rng(7).random((64, 64)), width=8, ensemble=3,
                       device="cpu")
    with_window = est.memory_needed(job).buffers
    # snapshots beyond the two a zero window still holds, for each of the 3 members
    held = 3 * ensemble.SNAPSHOT_HALF_WINDOW // ensemble.SNAPSHOT_STRIDE
    monkeypatch.setattr(ensemble, "SNAPSHOT_HALF_WINDOW", 0)
    without = est.memory_needed(job).buffers
    height, width = est.canvas_shape(job.params, 64, 64)
    assert held > 0 and with_window - without == held * 3 * height * width * 4


def test_memory_counts_a_held_out_mask_per_member() -> None:
    image = np.random.default_rng(8).random((64, 64))
    jobs = {h: plan_restore(image, width=8, ensemble=3, holdout=h, stop="none", device="cpu")
            for h in (0.0, 0.1)}
    height, width = est.canvas_shape(jobs[0.1].params, 64, 64)
    extra = est.memory_needed(jobs[0.1]).buffers - est.memory_needed(jobs[0.0]).buffers
    assert extra == 2 * 3 * height * width * 4  # the fit's weights and the mask, per member


@pytest.mark.parametrize(("config", "mib"), [(":4096:8", 32.0), (":4096:2:16:8", 8.125),
                                             (":16:8", 0.125), ("nonsense", 0.0)])
def test_cublas_workspace_follows_its_setting(config: str, mib: float,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", config)
    assert est.cublas_workspace_bytes() == mib * 2**20


def test_cuda_estimate_counts_the_cublas_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    # shapes alone: no GPU is needed to see what a CUDA run's estimate adds
    from napari_specdip.core import devices

    job = plan_restore(np.random.default_rng(0).random((64, 64)), width=8, device="cpu")
    monkeypatch.setattr(devices, "resolve_device", lambda name: torch.device(str(name)))
    on_cpu, on_cuda = est.memory_needed(job, "cpu"), est.memory_needed(job, "cuda")
    assert on_cuda.allocator == est.cublas_workspace_bytes() == 32 * 2**20
    assert on_cuda.activations == on_cpu.activations and on_cuda.buffers == on_cpu.buffers


def test_a_cancelled_estimate_ends_at_its_next_step_and_caches_nothing() -> None:
    import threading

    image = np.random.default_rng(3).random((48, 40))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(est.EstimateCancelled):
        estimate(image, width=8, depth=3, max_iterations=10, device="cpu", seed=6, cancel=cancel)
    job = plan_restore(image, width=8, depth=3, max_iterations=10, device="cpu", seed=6)
    assert est._calibration_key(job, torch.device("cpu")) not in est._CALIBRATION
    assert estimate(image, width=8, depth=3, max_iterations=10, device="cpu",
                    seed=6).seconds_per_iteration > 0


def test_the_warm_up_is_small_and_only_the_timed_trial_runs_the_wiener_stage(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The untimed first step warms imports and kernels on a small crop; the Wiener stage
    (block matching: seconds at 512 px) runs once, in the timed trial whose setup it is
    part of."""
    from napari_specdip.core import block_matching, stage

    monkeypatch.setattr(est, "_WARM", set())
    monkeypatch.setattr(est, "_CALIBRATION", {})
    stages: list[int] = []
    real = block_matching.hard_threshold_estimate

    def counting(*args: Any, **kwargs: Any) -> Any:
        stages.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "hard_threshold_estimate", counting)
    trials: list[tuple[bool, tuple[int, ...]]] = []
    real_trial = est._trial

    def recording(job: Any, steps: int, cancel: Any, **kwargs: Any) -> Any:
        trials.append((kwargs.get("stage", True), job.observation.shape))
        return real_trial(job, steps, cancel, **kwargs)

    monkeypatch.setattr(est, "_trial", recording)
    noisy = np.random.default_rng(4).normal(0.5, 0.1, (72, 90))
    found = estimate(noisy, width=8, depth=3, max_iterations=10, device="cpu", seed=2)
    assert found.setup_seconds > 0
    # the warm-up step on the centre 64 x 64, the timed steps on the whole image
    assert trials == [(False, (64, 64, 1)), (True, (72, 90, 1))]
    assert stages == [1]


def test_the_warm_up_crop_holds_pixels_to_fit_and_no_handed_on_network() -> None:
    image = np.random.default_rng(5).random((96, 80))
    mask = np.zeros(image.shape, dtype=bool)
    mask[2:10, 2:10] = True
    job = plan_restore(image, "inpaint", mask=mask, width=8, device="cpu")
    crop = est._warm_up_job(job)
    assert crop.observation.shape == (64, 64, 1) and crop.known is not None
    assert crop.known.all()  # the hole lies outside the centre
    # a centre wholly inside the mask has nothing to fit: the crop moves to the known
    # pixels nearest to it (the whole job would take minutes a step on a large image)
    mask = np.ones(image.shape, dtype=bool)
    mask[:4, :4] = False
    with pytest.warns(UserWarning, match="invert"):
        job = plan_restore(image, "inpaint", mask=mask, width=8, device="cpu")
    crop = est._warm_up_job(job)
    assert crop.observation.shape == (64, 64, 1) and crop.known is not None
    assert crop.known[:4, :4].all() and crop.known.sum() == 16
    mask[:4, :4] = True
    with pytest.raises(ValueError):  # no known pixel anywhere: refused before any crop
        plan_restore(image, "inpaint", mask=mask, width=8, device="cpu")
    state = restore(image[:32, :32], width=8, depth=3, max_iterations=2, device="cpu",
                    keep_state=True).state
    assert state is not None
    job = plan_restore(image, width=8, depth=3, device="cpu", warm_start=state, keep_state=True)
    crop = est._warm_up_job(job)
    assert crop.warm_start is None and not crop.keep_state
    small = plan_restore(image[:50, :60], width=8, device="cpu")
    assert est._warm_up_job(small) is small  # no larger than the crop: itself


def test_a_large_image_is_timed_on_a_crop_at_its_depth_and_scaled_by_its_pixels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU a step costs about the same per pixel at one depth, so a large image's
    few timed steps run on a centre crop (seconds instead of minutes at 1024 px)."""
    monkeypatch.setattr(est, "TIMING_CROP_SIDE", 48)
    monkeypatch.setattr(est, "_CALIBRATION", {})
    trials: list[tuple[tuple[int, ...], int | None]] = []
    real_trial = est._trial

    def recording(job: Any, steps: int, cancel: Any, **kwargs: Any) -> Any:
        if kwargs.get("stage", True):
            trials.append((job.observation.shape, job.params.depth))
        return real_trial(job, steps, cancel, **kwargs)

    monkeypatch.setattr(est, "_trial", recording)
    image = np.random.default_rng(6).random((96, 120))
    options = {"width": 8, "max_iterations": 10, "device": "cpu", "refine": "none"}
    found = estimate(image, **options)
    job = plan_restore(image, **options)
    depth = est.network_depth(job.params, 96, 120)
    assert trials == [((48, 48, 1), depth)]  # the crop only, at the image's depth
    crop = est._timing_crop(job)
    assert crop is not None and crop.params.depth == depth
    per_step, setup = est._CALIBRATION[est._calibration_key(crop, torch.device("cpu"))]
    share = (np.prod(est.canvas_shape(job.params, 96, 120))
             / np.prod(est.canvas_shape(crop.params, 48, 48)))
    assert found.seconds_per_iteration == pytest.approx(per_step * share)
    assert found.setup_seconds == pytest.approx(setup * share)
    # up to twice the crop's pixels: the whole image
    assert est._timing_crop(plan_restore(image[:64, :64], **options)) is None
    mask = np.zeros(image.shape, dtype=bool)
    mask[24:72, 32:80] = True  # the centre crop (on the 8 px grid), all holes
    inpaint = {k: v for k, v in options.items() if k != "refine"}
    job = plan_restore(image, "inpaint", mask=mask, **inpaint)
    crop = est._timing_crop(job)
    # around the nearest 12 px block with a known pixel (rows 36-47, columns 72-83, the
    # first of two as near as it): rows 18-65, columns 54-101
    assert crop is not None and crop.known is not None and crop.params.depth == depth
    np.testing.assert_array_equal(crop.known, ~mask[18:66, 54:102])
    np.testing.assert_array_equal(crop.observation[crop.known],
                                  job.observation[18:66, 54:102][crop.known])
    # a few known pixels in a corner of a large hole: the crop holds them
    mask[:] = True
    mask[90:92, 2:4] = False
    with pytest.warns(UserWarning, match="invert"):
        corner = est._crop_tile(plan_restore(image, "inpaint", mask=mask, **inpaint), 48)
    assert corner is not None and (corner.top, corner.left) == (48, 0)
    assert (~mask[corner.slices()]).sum() == 4
