"""Each preset's cost per step on a device: seconds per iteration at several sizes, gray
and RGB, against ``estimate()``'s prediction of it and of the peak memory; whether the
same seed gives the same result twice on the device; an ensemble of 4 against one run;
the host synchronisations per step (CUDA's sync debug mode).

python benchmarks/gpu_presets.py --device cuda --sizes 256 512 1024 --out benchmarks/results/gpu_presets
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402

PRESETS = ("quick", "balanced", "paper")
WARMUP = 10


def _image(size: int, rgb: bool) -> np.ndarray:
    clean = _evalset.load("astronaut" if rgb else "camera", size)
    noisy = clean + np.random.default_rng(0).normal(0.0, 25 / 255, clean.shape)
    return np.asarray(noisy, dtype=np.float32)


def _peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> float:
    import torch

    return float(torch.cuda.max_memory_allocated()) if device.startswith("cuda") else float("nan")


def seconds_per_step(image: np.ndarray, preset: str, device: str, steps: int,
                     **options: Any) -> tuple[float, float, float]:
    """Median and mean seconds of a step after ``WARMUP`` steps (the preset's own signal
    interval included, no stop), and the run's peak device memory in bytes. On a GPU the
    two differ: between signal steps the host only queues work, and it waits for all of
    it at the next signal step, so the mean is what a run costs."""
    from napari_specdip import iter_restore
    from napari_specdip.core.engine import run_to_end

    axis = -1 if image.ndim == 3 else None
    stamps: list[float] = []
    _peak_reset(device)
    run_to_end(iter_restore(image, "denoise", channel_axis=axis, preset=preset, device=device,
                            max_iterations=WARMUP + steps, stop="none", preview_every=0,
                            tile=0, **options),
               lambda report: stamps.append(time.perf_counter()))
    timed = np.diff(stamps[WARMUP - 1:])
    return float(np.median(timed)), float(np.mean(timed)), _peak(device)


def same_twice(device: str, **options: Any) -> tuple[bool, float]:
    """Two runs with one seed: identical, and the largest difference."""
    from napari_specdip import restore

    image = _image(64, False)
    a = restore(image, preset="quick", max_iterations=60, seed=3, device=device, **options)
    b = restore(image, preset="quick", max_iterations=60, seed=3, device=device, **options)
    return bool(np.array_equal(a.image, b.image)), float(np.max(np.abs(a.image - b.image)))


def syncs_per_step(device: str) -> dict[str, float]:
    """Host synchronisations per step that torch's sync debug mode reports (CUDA only),
    over 20 steps, with a signal at every step and at every 5th."""
    import torch

    from napari_specdip import restore

    image = _image(128, False)
    counts: dict[str, float] = {}
    for every in (1, 5):
        restore(image, width=16, max_iterations=3, stop="none", device=device)
        torch.cuda.set_sync_debug_mode(1)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                restore(image, width=16, max_iterations=20, stop="none", device=device,
                        signal_every=every, preview_every=0)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        counts[f"signal every {every}"] = len(caught) / 20
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024])
    parser.add_argument("--rgb-sizes", nargs="*", type=int, default=[512])
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--steps", type=int, default=100, help="timed steps per setting (100)")
    parser.add_argument("--ensemble-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json beside the table")
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    _common.echo(*_common.machine_lines(args.device), "")
    from napari_specdip import estimate, restore

    restore(_image(32, False), width=8, max_iterations=2, stop="none", device=args.device)
    records: list[dict[str, Any]] = []
    settings = [(s, False) for s in args.sizes] + [(s, True) for s in args.rgb_sizes]
    for size, rgb in settings:
        image = _image(size, rgb)
        axis = -1 if rgb else None
        for preset in args.presets:
            found = estimate(image, "denoise", channel_axis=axis, preset=preset,
                             device=args.device, tile=0)
            step, mean, peak = seconds_per_step(image, preset, args.device, args.steps)
            records.append({"size": size, "rgb": rgb, "preset": preset,
                            "seconds_per_iteration": step,
                            "mean_seconds_per_iteration": mean,
                            "estimated_seconds_per_iteration": found.seconds_per_iteration,
                            "max_iterations": found.iterations,
                            "peak_memory_bytes": peak,
                            "estimated_memory_bytes": found.peak_memory_bytes})
            r = records[-1]
            _common.echo(f"{size} px {'RGB' if rgb else 'gray'} {preset}: {step * 1e3:.1f} ms "
                         f"median, {mean * 1e3:.1f} mean (estimate "
                         f"{r['estimated_seconds_per_iteration'] * 1e3:.1f})")
    rows = [[r["size"], "RGB" if r["rgb"] else "gray", r["preset"],
             f"{r['seconds_per_iteration'] * 1e3:.1f}",
             f"{r['mean_seconds_per_iteration'] * 1e3:.1f}",
             f"{r['estimated_seconds_per_iteration'] / r['mean_seconds_per_iteration']:.2f}",
             f"{r['mean_seconds_per_iteration'] * r['max_iterations']:.0f}",
             f"{r['peak_memory_bytes'] / 2**20:.0f}",
             f"{r['peak_memory_bytes'] / r['estimated_memory_bytes']:.2f}"] for r in records]
    _common.echo("", "## seconds per iteration", _common.format_table(
        ["px", "channels", "preset", "median ms/it", "mean ms/it", "estimate / mean",
         "s at the cap",
         "peak MiB", "peak / estimate"], rows, markdown=True), "")

    _, single, _ = seconds_per_step(_image(args.ensemble_size, False), "quick", args.device,
                                    args.steps)
    _, four, _ = seconds_per_step(_image(args.ensemble_size, False), "quick", args.device,
                                  args.steps, ensemble=4)
    same, diff = same_twice(args.device)
    same_ens, diff_ens = same_twice(args.device, ensemble=2)
    extra: dict[str, Any] = {"ensemble_size": args.ensemble_size, "single_s": single,
                             "ensemble4_s": four, "same_seed_identical": same,
                             "same_seed_max_difference": diff,
                             "same_seed_identical_ensemble2": same_ens,
                             "same_seed_max_difference_ensemble2": diff_ens}
    if args.device.startswith("cuda"):
        extra["host_syncs_per_step"] = syncs_per_step(args.device)
    _common.echo(f"quick at {args.ensemble_size} px: ensemble=4 costs {four / single:.2f}x a "
                 f"single run per step ({four * 1e3:.1f} vs {single * 1e3:.1f} ms)",
                 f"same seed twice (quick, 64 px, 60 steps): identical {same} (largest "
                 f"difference {diff:.2e}); ensemble=2: identical {same_ens} ({diff_ens:.2e})")
    if "host_syncs_per_step" in extra:
        _common.echo("host synchronisations per step (sync debug mode, 20 steps): "
                     + ", ".join(f"{k}: {v:.2f}" for k, v in extra["host_syncs_per_step"].items()))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"runs": records, **extra},
                                                            indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
