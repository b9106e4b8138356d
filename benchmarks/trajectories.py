"""Record whole restoration runs, every signal and the PSNR at each evaluated step.

One JSON line per run (image, size, degradation, width, optimiser settings):
the clean reference makes the engine record the PSNR/SSIM of the last iterate
and of the moving average at every evaluated step, next to every reference-free
signal (blur/sharpness ratio, ES-WMV variance, hold-out loss, band
correspondence). ``stopping.py`` replays stopping rules on these records
offline, and optimiser settings are compared on them the same way, so one run
serves every rule and every question about it.

Runs go to their iteration cap (``stop="none"``) and are spread over worker
processes; on a GPU several processes share the device, which keeps it busy
while each waits on kernel launches. Results are appended as they finish, so
an interrupted sweep keeps what it has (``--resume`` skips finished runs).
With ``--stage``, denoising runs also record the PSNR of the engine's own stage after the
fit (``refine``: what the user gets) applied to the moving average of every evaluated step,
``curves["psnr_stage"]``, so that ``stopping.py`` can tell what the stop costs the result.

Examples
--------
python benchmarks/trajectories.py --plan smoke --device cpu --out /tmp/smoke.jsonl
python benchmarks/trajectories.py --plan explore --device cuda --workers 12 --out explore.jsonl
python benchmarks/trajectories.py --plan heldout --seed 1 --max-size 128 --out seed1.jsonl
python benchmarks/trajectories.py --plan heldout --seed 2 --max-size 128 --stage --out staged.jsonl
python benchmarks/trajectories.py --plan heldout-balanced --workers 2 --stage --out balanced.jsonl
python benchmarks/trajectories.py --plan unseen-balanced --workers 2 --stage --out unseen.jsonl
python benchmarks/trajectories.py --plan unseen-quick --workers 2 --stage --out unseen-quick.jsonl
python benchmarks/trajectories.py --plan heldout --seed 2 --max-size 128 --stage --widths 128 --cap 1500 --out w128.jsonl
python benchmarks/trajectories.py --plan deblock --split held-out --seed 1 --out deblock1.jsonl
python benchmarks/trajectories.py --plan deblock --device cpu --workers 2 --no-baselines --out deblock.jsonl
python benchmarks/trajectories.py --plan deblock-long --workers 2 --no-baselines --out long.jsonl
python benchmarks/trajectories.py --plan deblock-balanced --workers 2 --no-baselines --out bal.jsonl
python benchmarks/trajectories.py --plan deblock-balanced-light --workers 2 --no-baselines --out light.jsonl
python benchmarks/trajectories.py --plan deblock-dark --workers 2 --no-baselines --out dark.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _evalset  # noqa: E402

#: history columns kept per evaluated step
COLUMNS = ("signal_iteration", "psnr", "psnr_ema", "ssim_ema", "ratio", "variance",
           "holdout_loss", "holdout_loss_ema", "fit_loss", "fit_loss_ema", "error_estimate",
           "error_estimate_ema", "fbc1", "fbc5", "blockiness", "blockiness_ema",
           "jpeg_excess", "jpeg_excess_ema")


@dataclass(frozen=True)
class Config:
    image: str
    size: int
    degradation: str
    width: int
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_warmup: int = 0
    lr_halflife: int = 1000
    holdout: float = 0.05
    max_iterations: int = 3000
    signal_every: int = 5
    upsampler: str = "bilinear"
    depth: int | None = None
    seed: int = 0
    # the quick and balanced presets' (records made before 2026-12-04, evening, lack the
    # field: those runs had none)
    input_jitter: float = 0.1

    @property
    def key(self) -> str:
        return "|".join(str(v) for v in asdict(self).values())


# optimiser settings explored: (learning rate, schedule, warm-up, half-life, cap)
OPTIMISERS = {
    "paper": (1e-3, "constant", 0, 1000, 4000),
    "lr3e-3": (3e-3, "constant", 50, 1000, 3000),
    "lr1e-2": (1e-2, "constant", 50, 1000, 2000),
    "lr1e-2-exp": (1e-2, "exponential", 50, 500, 2000),
}


def _optimised(image: str, size: int, degradation: str, width: int, name: str,
               **extra: Any) -> Config:
    lr, schedule, warmup, halflife, cap = OPTIMISERS[name]
    if name == "paper":
        extra.setdefault("depth", 5)
    return Config(image, size, degradation, width, lr, schedule, warmup, halflife,
                  max_iterations=extra.pop("max_iterations", cap), **extra)


def plan(name: str) -> list[Config]:
    """The named list of runs."""
    if name == "smoke":
        return [Config("camera", 64, "sigma25", 8, max_iterations=30),
                Config("nuclei1", 64, "inpaint0.5", 8, 1e-2, "exponential", 5, 10,
                       max_iterations=30)]
    if name == "main":
        return _main_plan()
    if name == "heldout":
        return _heldout_plan()
    if name == "tune128":
        return _tune128_plan()
    if name == "heldout-balanced":
        return _heldout_balanced_plan()
    if name == "unseen-balanced":
        return _unseen_balanced_plan()
    if name == "unseen-quick":
        return _unseen_quick_plan()
    if name == "deblock":
        return _deblock_plan()
    if name == "deblock-long":
        return _deblock_long_plan()
    if name == "deblock-balanced":
        return _deblock_balanced_plan()
    if name == "deblock-balanced-light":
        return _deblock_balanced_light_plan()
    if name == "deblock-consistency":
        return _deblock_consistency_plan()
    if name == "deblock-consistency-light":
        return _deblock_consistency_light_plan()
    if name == "deblock-dark":
        return _deblock_dark_plan()
    if name == "holdout":
        return [_optimised(n, 128, "sigma25", w, "lr1e-2", holdout=f, max_iterations=1000)
                for n, w in (("cell", 32), ("camera", 16), ("brick", 64), ("nuclei1", 32),
                             ("puncta1", 32), ("astronaut", 32))
                for f in (0.05, 0.1, 0.2)]
    raise ValueError(f"unknown plan {name!r}")


def _main_plan() -> list[Config]:
    """Both halves of the evaluation set, in priority order (a deadline cuts the tail)."""
    every = list(_evalset.IMAGES)
    tune = [n for n in every if _evalset.split(n) == "tune"]
    held = [n for n in every if _evalset.split(n) == "held-out"]
    four = tune[::2] + held[::3]  # a few of each kind and half for the costly rows
    big = ["camera", "astronaut", "brick", "nuclei1", "moon", "grass", "nuclei2", "hubble"]
    configs: list[Config] = []
    configs += [_optimised(n, 128, "sigma25", w, "lr1e-2") for n in every for w in (16, 32, 64, 128)]
    configs += [_optimised(n, 128, d, w, "lr1e-2") for d in ("sigma10", "sigma50", "pg30r2",
                                                             "jpeg10", "inpaint0.5")
                for n in four for w in (32, 64)]
    configs += [_optimised(n, 512, "sigma25", w, "lr1e-2") for n in big for w in (16, 64)]
    configs += [_optimised(n, 128, "sigma25", 128, "paper") for n in big]
    configs += [_optimised(n, 64, "sigma25", w, "lr1e-2") for n in big for w in (16, 32)]
    configs += [_optimised(n, 256, "sigma25", 32, "lr1e-2") for n in big]
    configs += [_optimised(n, 512, "sigma25", 128, "paper") for n in big[::2]]
    configs += [_optimised(n, 128, "sigma25", w, "lr1e-2-exp") for n in every for w in (16, 64)]
    configs += [_optimised(n, 128, "sigma25", 64, "lr3e-3") for n in every]
    configs += [_optimised(n, 512, "sigma25", 32, "lr1e-2") for n in big]
    return configs


def _heldout_plan() -> list[Config]:
    """The held-out half at the presets' optimiser (CPU-sized), in priority order."""
    held = [n for n in _evalset.IMAGES if _evalset.split(n) == "held-out"]
    six = ["nuclei2", "puncta2", "hubble", "moon", "chelsea", "grass"]

    def at(image: str, size: int, deg: str, width: int, cap: int) -> Config:
        return _optimised(image, size, deg, width, "lr1e-2", holdout=0.1, max_iterations=cap)

    configs = [at(n, 128, "sigma25", 32, 1000) for n in held]
    configs += [at(n, 128, "sigma25", 64, 800) for n in six]
    configs += [at(n, 128, "sigma25", 16, 1200) for n in six]
    configs += [at(n, 128, d, 32, 1000) for d, images in (
        ("pg30r2", ("nuclei2", "puncta2", "hubble")), ("sigma10", ("chelsea", "grass")),
        ("sigma50", ("moon", "nuclei2")), ("jpeg10", ("chelsea", "coins")),
        ("inpaint0.5", ("rocket", "filaments2"))) for n in images]
    configs += [at(n, 64, "sigma25", 32, 1000) for n in six]
    configs += [at(n, 256, "sigma25", 32, 1000) for n in ("nuclei2", "chelsea", "gravel")]
    configs += [at(n, 512, "sigma25", 16, 1200) for n in ("moon", "nuclei2")]
    configs += [at(n, 128, "sigma25", 128, 600) for n in ("nuclei2", "chelsea", "grass")]
    return configs


def _heldout_balanced_plan() -> list[Config]:
    """The held-out half at 128 px at the balanced preset (the default: width 64, Adam
    3e-3), Gaussian sigma 25 on every image and Poisson-Gaussian noise on the three sparse
    fluorescence ones, up to 1200 iterations (CPU-sized)."""
    held = [n for n in _evalset.IMAGES if _evalset.split(n) == "held-out"]

    def at(image: str, deg: str) -> Config:
        return _optimised(image, 128, deg, 64, "lr3e-3", holdout=0.1, max_iterations=1200)

    return ([at(n, "sigma25") for n in held]
            + [at(n, "pg30r2") for n in ("nuclei2", "puncta2", "hubble")])


#: the unseen set's noise: Gaussian levels that neither half was recorded at
UNSEEN_DEGRADATIONS = ("sigma15", "sigma35")


def _unseen_balanced_plan() -> list[Config]:
    """The unseen set (``_evalset.UNSEEN``: no default was chosen or reported on it) at
    128 px at the balanced preset, Gaussian sigma 15 and 35 (levels neither half was
    recorded at), up to 1200 iterations; the RGB photo at sigma 15, whose rule fires
    later at this preset, up to 2200."""
    def at(image: str, deg: str) -> Config:
        cap = 2200 if (image, deg) == ("motorcycle", "sigma15") else 1200
        return _optimised(image, 128, deg, 64, "lr3e-3", holdout=0.1, max_iterations=cap)

    return [at(n, d) for d in UNSEEN_DEGRADATIONS for n in _evalset.UNSEEN]


def _unseen_quick_plan() -> list[Config]:
    """The unseen set at 128 px at the quick preset's step, as the held-out plan runs it:
    widths 32 and 16 at Gaussian sigma 15 and 35 on every image, and width 128 on a
    sparse and a smooth image, in priority order."""
    def at(image: str, deg: str, width: int, cap: int) -> Config:
        return _optimised(image, 128, deg, width, "lr1e-2", holdout=0.1, max_iterations=cap)

    return ([at(n, d, 32, 1000) for d in UNSEEN_DEGRADATIONS for n in _evalset.UNSEEN]
            + [at(n, d, 16, 1200) for d in UNSEEN_DEGRADATIONS for n in _evalset.UNSEEN]
            + [at("blobs", "sigma35", 128, 1000), at("clock", "sigma15", 128, 1000)])


def _deblock_plan() -> list[Config]:
    """JPEG deblocking over both halves at the deblocking presets' optimiser and cap (1000):
    quality 10 on photos, fluorescence, microscopy and textures of each half at 128 px,
    width 32, and three images of each half at quality 30, widths 16 and 64, 64 and 256 px."""
    def at(image: str, size: int, quality: int, width: int) -> Config:
        return _optimised(image, size, f"jpeg{quality}", width, "lr1e-2", holdout=0.1,
                          max_iterations=1000)

    # per half: its quality-10 images (not all of the half: a CPU-sized plan), and the
    # two photos and the microscopy image that also run at quality 30, other widths, sizes
    halves = (
        (("camera", "astronaut", "coffee", "nuclei1", "brick", "cell", "filaments1"),
         ("camera", "astronaut", "cell")),
        (("chelsea", "coins", "moon", "grass", "gravel", "nuclei2", "hubble", "rocket"),
         ("chelsea", "coins", "nuclei2")),
    )
    configs: list[Config] = []
    for images, (a, b, c) in halves:
        configs += [at(n, 128, 10, 32) for n in images]
        configs += [at(n, 128, 30, 32) for n in (a, b, c)]
        configs += [at(n, 128, 10, w) for n in (b, c) for w in (16, 64)]
        configs += [at(n, 64, 10, 32) for n in (a, c)]
        configs += [at(a, 256, 10, 32)]
    return configs


def _deblock_long_plan() -> list[Config]:
    """JPEG deblocking past the 1000-iteration cap, where the deblocking plan's lightly
    compressed and large runs peak: quality 20, 30 and 50 at 128 px (the deblocking plan's
    three images of each half), width 16 at quality 10, and 256 px at quality 10, up to
    2500 iterations."""
    def at(image: str, size: int, quality: int, width: int) -> Config:
        return _optimised(image, size, f"jpeg{quality}", width, "lr1e-2", holdout=0.1,
                          max_iterations=2500)

    configs: list[Config] = []
    for a, b, c in (("camera", "astronaut", "cell"), ("chelsea", "coins", "nuclei2")):
        configs += [at(a, 256, 10, 32)]
        configs += [at(n, 128, q, 32) for q in (30, 50, 20) for n in (a, b, c)]
        configs += [at(n, 128, 10, 16) for n in (b, c)]
    return configs


def _deblock_balanced_plan() -> list[Config]:
    """JPEG deblocking at the balanced preset's optimiser (width 64, Adam 3e-3), which
    fits at another pace than the quick one's: quality 10 at 128 px on four images of
    each half, quality 30 on two, quality 10 at 64 px on two, up to 2500 iterations
    (1000 at 64 px)."""
    def at(image: str, size: int, quality: int, cap: int) -> Config:
        return _optimised(image, size, f"jpeg{quality}", 64, "lr3e-3", holdout=0.1,
                          max_iterations=cap)

    configs: list[Config] = []
    for four, two in ((("camera", "brick", "nuclei1", "coffee"), ("astronaut", "cell")),
                      (("moon", "coins", "nuclei2", "rocket"), ("chelsea", "grass"))):
        configs += [at(n, 128, 10, 2500) for n in four]
        configs += [at(n, 128, 30, 2500) for n in two]
        configs += [at(n, 64, 10, 1000) for n in two]
    return configs


def _tune128_plan() -> list[Config]:
    """The tuning half at 128 px as the held-out plan runs it: widths 32 and 16, sigma 25
    and 50 (a second noise draw of it with ``--seed``)."""
    tune = [n for n in _evalset.IMAGES if _evalset.split(n) == "tune"]

    def at(image: str, deg: str, width: int, cap: int) -> Config:
        return _optimised(image, 128, deg, width, "lr1e-2", holdout=0.1, max_iterations=cap)

    return ([at(n, "sigma25", 32, 1000) for n in tune]
            + [at(n, "sigma50", 32, 1000) for n in tune]
            + [at(n, "sigma25", 16, 1200) for n in tune])


def _deblock_balanced_light_plan() -> list[Config]:
    """JPEG deblocking at the balanced preset (the default: width 64, Adam 3e-3, at most
    3000 iterations) on lightly compressed JPEGs, whose budget runs longest: quality 50 on
    two images of each half and quality 30 on the sparse fluorescence one, at 128 px, up to
    the preset's cap."""
    def at(image: str, quality: int) -> Config:
        return _optimised(image, 128, f"jpeg{quality}", 64, "lr3e-3", holdout=0.1,
                          max_iterations=3000)

    return ([at(n, 50) for n in ("nuclei2", "chelsea", "camera", "cell")]
            + [at("nuclei2", 30)])


def _deblock_consistency_plan() -> list[Config]:
    """JPEG deblocking at 128 px, recorded with the output's consistency with its JPEG
    (``jpeg_excess_ema``, measured since 2026-12-07), just past the quick preset's
    budget (the consistency rule only ever ends a run sooner): quality 10 on every image
    of the deblocking plan, quality 30 on its three of each half, and quality 10 at the
    balanced preset's optimiser on two images of each half."""
    def at(image: str, quality: int, optimiser: str, width: int, cap: int) -> Config:
        return _optimised(image, 128, f"jpeg{quality}", width, optimiser, holdout=0.1,
                          max_iterations=cap)

    tune = ("camera", "astronaut", "coffee", "nuclei1", "brick", "cell", "filaments1")
    held = ("chelsea", "coins", "moon", "grass", "gravel", "nuclei2", "hubble", "rocket")
    return ([at(n, 10, "lr3e-3", 64, 600) for n in ("moon", "nuclei2", "camera", "nuclei1")]
            + [at(n, 30, "lr1e-2", 32, 1400)
               for n in ("camera", "astronaut", "cell", "chelsea", "coins", "nuclei2")]
            + [at(n, 10, "lr1e-2", 32, 500) for n in (*held, *tune)])


def _deblock_consistency_light_plan() -> list[Config]:
    """Lightly compressed JPEGs at the balanced preset (the default), recorded with the
    output's consistency with its JPEG just past their budget: quality 50 on the cell
    (tune), the cat and nuclei2 (held-out), nuclei2 at quality 30; 128 px."""
    def at(image: str, quality: int, cap: int) -> Config:
        return _optimised(image, 128, f"jpeg{quality}", 64, "lr3e-3", holdout=0.1,
                          max_iterations=cap)

    return [at("cell", 50, 1800), at("nuclei2", 50, 1800), at("chelsea", 50, 1800),
            at("nuclei2", 30, 1300)]


def _deblock_dark_plan() -> list[Config]:
    """JPEG deblocking of the sparse fluorescence images with their dark end cut to black
    (``-dark``: the JPEG rings below 0 around every bright object, so the blocks with
    detail have clipped pixels), at the quick preset's optimiser: quality 10 and 30 at
    128 px, quality 10 at 64 px, just past the budget."""
    def at(image: str, size: int, quality: int, cap: int) -> Config:
        return _optimised(f"{image}{_evalset.DARK}", size, f"jpeg{quality}", 32, "lr1e-2",
                          holdout=0.1, max_iterations=cap)

    images = ("nuclei1", "filaments1", "puncta1", "nuclei2", "filaments2", "puncta2", "hubble")
    return ([at(n, 128, 10, 700) for n in images] + [at(n, 128, 30, 1500) for n in images]
            + [at(n, 64, 10, 400) for n in images])


def _observation_blockiness(observation: np.ndarray) -> float:
    """The JPEG's own blockiness on the grid the engine measures its outputs on."""
    import torch

    from napari_specdip.core.jpeg import blockiness, estimate_jpeg, likely_grid
    from napari_specdip.metrics import to_gray_torch

    planes = observation if observation.ndim == 3 else observation[..., None]
    gray = to_gray_torch(torch.from_numpy(planes.transpose(2, 0, 1)).float()).numpy()
    found = estimate_jpeg(observation)
    return blockiness(gray, found.grid if found is not None else likely_grid(gray))


def run(config: Config, device: str, stage: bool = False) -> dict[str, Any]:
    """One run to its cap; returns the JSON-ready record. ``stage``: for denoising, also
    the PSNR of the engine's stage after the fit at every evaluated step
    (``curves["psnr_stage"]``)."""
    from napari_specdip import RestoreParameters
    from napari_specdip.core.engine import plan_restore, run_to_end

    degradation = _evalset.parse_degradation(config.degradation)
    clean = _evalset.load(config.image, config.size)
    observation, missing = degradation.apply(clean, seed=config.seed)
    axis = -1 if clean.ndim == 3 else None
    params = RestoreParameters.for_task(
        degradation.task, track_variance=True, holdout=config.holdout,
        lr_schedule=config.lr_schedule, lr_warmup=config.lr_warmup,
        lr_halflife=config.lr_halflife, upsampler=config.upsampler,
        input_jitter=config.input_jitter)
    staged = stage and degradation.task == "denoise"
    # the moving average at every evaluated step, for the stage after the fit
    outputs: dict[int, np.ndarray] = {}

    def keep(report: Any) -> None:
        if report.preview is not None and report.iteration % config.signal_every == 0:
            outputs[report.iteration] = np.asarray(report.preview, dtype=np.float64)

    start = time.perf_counter()
    job = plan_restore(
        observation, degradation.task, channel_axis=axis, reference=clean, parameters=params,
        mask=missing, max_iterations=config.max_iterations, stop="none", seed=config.seed,
        device=device, width=config.width, learning_rate=config.learning_rate, output="ema",
        signal_every=config.signal_every, preview_every=config.signal_every if staged else 0,
        depth=config.depth)
    result = run_to_end(job.run(), keep if staged else None)
    seconds = time.perf_counter() - start
    h = result.history
    record: dict[str, Any] = {"config": asdict(config), "key": config.key,
                              "kind": _evalset.kind(config.image),
                              "split": _evalset.split(config.image), "task": degradation.task,
                              "seconds": seconds, "device": result.device,
                              "iterations": result.iterations,
                              "depth": result.parameters["depth"],
                              "observation_psnr": _evalset.psnr(observation, clean),
                              "stop_noise_variance": result.parameters["stop_noise_variance"],
                              "stop_noise_shares": result.parameters["stop_noise_shares"]}
    if degradation.task == "deblock":
        record["observation_blockiness"] = _observation_blockiness(observation)
    record["curves"] = {c: [_round(v) for v in np.asarray(h[c], dtype=float)]
                        for c in COLUMNS if c in h}
    loss = np.asarray(h["loss"], dtype=float)
    every = config.signal_every
    record["curves"]["loss"] = [_round(v) for v in loss[every - 1::every]]
    elapsed = np.asarray(h["elapsed"], dtype=float)
    record["curves"]["elapsed"] = [round(float(v), 3) for v in elapsed[every - 1::every]]
    if staged:
        start = time.perf_counter()
        stop_noise = result.parameters["stop_noise_variance"]
        record["curves"]["psnr_stage"] = _stage_psnrs(
            job, outputs, record["curves"]["signal_iteration"], stop_noise, clean,
            result.device)
        record["stage_seconds"] = time.perf_counter() - start
        record["stage"] = result.parameters.get("refined")
    return record


def _stage_psnrs(job: Any, outputs: dict[int, np.ndarray], iterations: list[Any],
                 stop_noise: float | None, clean: np.ndarray, device: str
                 ) -> list[float | None]:
    """The PSNR of the engine's denoising stage (``refine``, on the run's ``device``)
    applied to the moving average of every evaluated step of the run of ``job``: what the
    user would get had the run returned that step (the engine's own result where the stop
    returns it)."""
    import torch

    from napari_specdip.core import stage

    if job.layout.natural_range() != (0.0, 1.0):
        raise ValueError("the stage replay needs an observation on [0, 1]")
    shape = job.observation.shape
    psnrs: list[float | None] = []
    with _memoised_observation_filters():  # what depends on the observation alone, once
        for iteration in iterations:
            out = outputs.get(int(iteration))
            if out is None:
                psnrs.append(None)
                continue
            staged, _, _ = stage.apply_stage(job, out.reshape(shape), None, stop_noise,
                                             torch.device(device), 1)
            psnrs.append(_round(_evalset.psnr(staged.reshape(clean.shape), clean)))
    return psnrs


@contextlib.contextmanager
def _memoised_observation_filters() -> Iterator[None]:
    """The stage's block matching first step, WNNM and photon-noise check see only the
    observation: computed once per run instead of once per step."""
    from napari_specdip.core import stage

    originals = {name: getattr(stage, name) for name in (
        "hard_threshold_estimate", "low_rank_estimate", "signal_dependence")}
    memo: dict[tuple[Any, ...], Any] = {}

    def memoised(name: str) -> Any:
        def call(obs: np.ndarray, *args: Any, **kwargs: Any) -> Any:
            key = (name, obs.tobytes(),
                   tuple(a.tobytes() if isinstance(a, np.ndarray) else repr(a) for a in args),
                   tuple(sorted((k, str(v)) for k, v in kwargs.items())))
            if key not in memo:
                memo[key] = originals[name](obs, *args, **kwargs)
            return memo[key]
        return call

    for name in originals:
        setattr(stage, name, memoised(name))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(stage, name, function)


def baselines(image: str, size: int, degradation: str, seed: int = 0) -> dict[str, Any]:
    """Classical baselines and the estimated noise level of one observation."""
    deg = _evalset.parse_degradation(degradation)
    clean = _evalset.load(image, size)
    observation, missing = deg.apply(clean, seed=seed)
    axis = -1 if clean.ndim == 3 else None
    out: dict[str, Any] = {"key": f"{image}|{size}|{degradation}|{seed}",
                           "sigma_estimate": _evalset.estimated_sigma(observation)}
    if deg.task in ("denoise", "deblock"):
        start = time.perf_counter()
        known = deg.level / 255.0 if deg.kind == "gaussian" else None
        with contextlib.suppress(ValueError):  # no noise level known nor estimated
            out["nl_means"] = _evalset.psnr(_evalset.nl_means(observation, known), clean)
            out["nl_means_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        restored = _evalset.bm3d(observation)
        if restored is not None:
            out["bm3d"] = _evalset.psnr(restored, clean)
            out["bm3d_seconds"] = time.perf_counter() - start
    if deg.task == "inpaint" and missing is not None:
        from skimage.restoration import inpaint_biharmonic

        start = time.perf_counter()
        filled = inpaint_biharmonic(observation, missing, channel_axis=axis)
        out["biharmonic"] = _evalset.psnr(filled, clean)
        out["biharmonic_seconds"] = time.perf_counter() - start
    return out


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else float(f"{value:.6g}")


def _work(item: tuple[str, Any, str]) -> dict[str, Any]:
    kind, payload, device = item
    import torch

    torch.set_num_threads(1)
    try:
        if kind in ("run", "run-stage"):
            return {"type": "run", **run(payload, device, stage=kind == "run-stage")}
        return {"type": "baseline", **baselines(*payload)}
    except Exception as exc:  # noqa: BLE001  (one failure must not end the sweep)
        return {"type": "error", "item": repr(payload), "error": repr(exc)}


def _items(configs: list[Config], device: str, done: set[str],
           with_baselines: bool, stage: bool = False) -> Iterator[tuple[str, Any, str]]:
    if with_baselines:
        seen = sorted({(c.image, c.size, c.degradation, c.seed) for c in configs})
        for b in seen:
            if "|".join(map(str, b)) not in done:
                yield "baseline", b, device
    # in the plan's order of priority, so a deadline cuts its tail
    for c in configs:
        if c.key not in done:
            yield "run-stage" if stage else "run", c, device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", default="smoke")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=math.inf,
                        help="seconds after which no new run starts")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--shard", default="0/1", help="k/n: run every n-th item from k")
    parser.add_argument("--seed", type=int, default=None,
                        help="run the plan with this seed (noise, held-out pixels, network) "
                             "instead of each run's own")
    parser.add_argument("--max-iterations", type=int, default=None,
                        help="record each run up to at most this many iterations (enough "
                             "past a stop that comes before it: e.g. a deblocking budget)")
    parser.add_argument("--cap", type=int, default=None,
                        help="record each run to this many iterations instead of the plan's "
                             "cap (e.g. a preset's, where the plan's is CPU-sized)")
    parser.add_argument("--max-size", type=int, default=None,
                        help="leave out the plan's runs on larger images")
    parser.add_argument("--split", choices=("tune", "held-out", "unseen"), default=None,
                        help="only the runs on that half's images")
    parser.add_argument("--degradations", nargs="+", default=None,
                        help="only the runs with these degradations (e.g. pg30r2)")
    parser.add_argument("--images", nargs="+", default=None,
                        help="only the runs on these images (e.g. nuclei2 chelsea)")
    parser.add_argument("--widths", nargs="+", type=int, default=None,
                        help="only the runs at these network widths")
    parser.add_argument("--stage", action="store_true",
                        help="denoising runs also record the PSNR of the engine's stage after "
                             "the fit (refine) applied at every evaluated step")
    parser.add_argument("--input-jitter", type=float, default=None,
                        help="run the plan with this input jitter instead of the presets' "
                             "(0: none, as before 2026-12-04, evening)")
    args = parser.parse_args(argv)
    configs = plan(args.plan)
    if args.seed is not None:
        configs = [replace(c, seed=args.seed) for c in configs]
    if args.input_jitter is not None:
        configs = [replace(c, input_jitter=args.input_jitter) for c in configs]
    if args.max_size is not None:
        configs = [c for c in configs if c.size <= args.max_size]
    if args.cap is not None:
        configs = [replace(c, max_iterations=args.cap) for c in configs]
    if args.max_iterations is not None:
        configs = [replace(c, max_iterations=min(c.max_iterations, args.max_iterations))
                   for c in configs]
    if args.split is not None:
        configs = [c for c in configs if _evalset.split(c.image) == args.split]
    if args.degradations is not None:
        configs = [c for c in configs if c.degradation in args.degradations]
    if args.images is not None:
        configs = [c for c in configs if c.image in args.images]
    if args.widths is not None:
        configs = [c for c in configs if c.width in args.widths]
    done: set[str] = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("type") in ("run", "baseline"):
                done.add(rec["key"])
    k, n = (int(v) for v in args.shard.split("/"))
    items = [it for i, it in enumerate(_items(configs, args.device, done,
                                              not args.no_baselines, args.stage))
             if i % n == k]
    print(f"{len(items)} items ({len(done)} already done), {args.workers} workers", flush=True)
    start = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        if args.workers <= 1:
            results: Iterator[dict[str, Any]] = (
                _work(it) for it in itertools.takewhile(
                    lambda _: time.perf_counter() - start < args.deadline, items))
            _drain(results, fh, start)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(args.workers, maxtasksperchild=8) as pool:
                finished = pool.imap_unordered(_work, items)
                for _ in items:
                    remaining = args.deadline - (time.perf_counter() - start)
                    try:
                        rec = finished.next(timeout=max(remaining, 0.0) if math.isfinite(remaining)
                                            else None)
                    except (mp.TimeoutError, StopIteration):
                        break
                    _drain(iter([rec]), fh, start)
                pool.terminate()
    print(f"finished in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


def _drain(results: Iterator[dict[str, Any]], fh: Any, start: float) -> None:
    for rec in results:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        label = rec.get("key", rec.get("item"))
        extra = (f"{rec['seconds']:.0f} s" if rec["type"] == "run"
                 else rec.get("error", "baseline"))
        print(f"[{time.perf_counter() - start:6.0f} s] {rec['type']} {label} {extra}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
