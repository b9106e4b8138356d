"""Is ``napari_specdip.estimate`` right? Its time per iteration against a real run.

For each case (preset, size, gray/RGB, task) one process-fresh calibration:
``estimate(...)`` (a few real steps, what the widget shows beside Run and the CLI
prints first), then the run itself with ``stop="none"`` for ``--iterations``
iterations and the same options, timed from the call to the result (setup,
signals, previews and the last conversion included). Printed per case: estimated
and measured seconds per iteration, their ratio (measured / estimated), and the
whole run's time against ``estimate.seconds`` for the same cap (which counts each fit's
setup: the small images' runs are mostly that at a short cap). Target (issue 10):
within a factor 1.5 on an idle machine. Say what else the machine was doing.

    python benchmarks/estimate_accuracy.py [--iterations 100] [--threads 1] [--large]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402

# (image, size, preset, task): gray and RGB, small to mid sizes, each preset, two tasks
CASES: list[tuple[str, int, str, str]] = [
    ("camera", 64, "paper", "denoise"),
    ("camera", 128, "quick", "denoise"),
    ("camera", 128, "balanced", "denoise"),
    ("astronaut", 128, "quick", "denoise"),
    ("astronaut", 128, "balanced", "inpaint"),
    ("nuclei1", 256, "quick", "denoise"),
    ("coffee", 256, "quick", "inpaint"),
    ("camera", 256, "balanced", "denoise"),
    # a stack's slices are often small: there a fit's setup weighs as much as its steps
    ("camera", 48, "quick", "denoise"),
    ("nuclei1", 64, "balanced", "denoise"),
]
# --large: images whose steps are timed on a centre crop (core.estimate.TIMING_CROP_SIDE)
LARGE_CASES: list[tuple[str, int, str, str]] = [
    ("camera", 640, "balanced", "denoise"),
    ("nuclei1", 768, "balanced", "denoise"),
    ("coffee", 640, "balanced", "inpaint"),
    ("astronaut", 768, "quick", "denoise"),  # tiled: its tiles are no larger than the crop
]


def one(image_name: str, size: int, preset: str, task: str, iterations: int, *,
        whole: bool = False) -> dict[str, Any]:
    """``whole``: also time the estimate on the whole image, as before the crop."""
    from napari_specdip import estimate, restore
    from napari_specdip.core import estimate as estimate_module

    def fresh() -> None:  # a fresh process would have neither
        estimate_module._CALIBRATION.clear()  # noqa: SLF001
        estimate_module._WARM.clear()  # noqa: SLF001

    fresh()
    clean = _evalset.load(image_name, size)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1)
    options: dict[str, Any] = {"preset": preset, "stop": "none", "max_iterations": iterations,
                               "seed": 0, "device": "cpu", "num_threads": 1}
    mask = None
    if task == "inpaint":
        mask = rng.random(clean.shape[:2]) < 0.5
        noisy = clean.copy()
        noisy[mask] = 0  # the holes (the mask marks the pixels to fill)
    axis = -1 if clean.ndim == 3 else None
    start = time.perf_counter()
    guess = estimate(noisy, task, channel_axis=axis, mask=mask, **options)
    estimate_seconds = time.perf_counter() - start
    uncropped: dict[str, float] = {}
    if whole:
        fresh()
        share = estimate_module.TIMING_CROP_SHARE
        estimate_module.TIMING_CROP_SHARE = math.inf
        try:
            start = time.perf_counter()
            full = estimate(noisy, task, channel_axis=axis, mask=mask, **options)
            uncropped = {"whole_s_per_it": full.seconds_per_iteration,
                         "whole_call_s": time.perf_counter() - start}
        finally:
            estimate_module.TIMING_CROP_SHARE = share
    start = time.perf_counter()
    result = restore(noisy, task, channel_axis=axis, mask=mask, **options)
    seconds = time.perf_counter() - start
    measured = seconds / result.iterations
    row = {"image": image_name, "size": size, "preset": preset, "task": task,
           "channels": 3 if axis is not None else 1, "iterations": result.iterations,
           "estimated_s_per_it": guess.seconds_per_iteration, "measured_s_per_it": measured,
           "ratio": measured / guess.seconds_per_iteration, "estimated_total": guess.seconds,
           "measured_total": seconds, "estimate_call_s": estimate_seconds,
           "total_ratio": seconds / guess.seconds, "setup_s": guess.setup_seconds,
           **uncropped}
    _common.echo(f"# {image_name} {size} px {preset} {task}: estimated "
                 f"{guess.seconds_per_iteration * 1000:.1f} ms/it, measured {measured * 1000:.1f} "
                 f"ms/it, ratio {row['ratio']:.2f} (estimate took {estimate_seconds:.1f} s)")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=None,
                        help="one image side for every case (a quick check; default: each case's)")
    parser.add_argument("--cases", type=int, default=None, help="the first N cases only")
    parser.add_argument("--large", action="store_true",
                        help="512-768 px cases, timed on a crop; each also estimated on the "
                             "whole image, as before the crop (minutes)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                             / "estimate_accuracy_cpu"))
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    lines = _common.machine_lines("cpu")
    _common.echo(*lines)
    cases = LARGE_CASES if args.large else CASES
    rows = [one(name, args.size or size, preset, task, iterations=args.iterations,
                whole=args.large)
            for name, size, preset, task in cases[: args.cases]]
    header = ["image", "px", "preset", "task", "ch", "estimated ms/it", "measured ms/it",
              "measured / estimated", "estimated s (setup)", "measured s",
              "measured / estimated s", "estimate took s"]
    if args.large:
        header += ["whole-image estimate ms/it", "measured / it", "it took s"]
    table = _common.format_table(
        header,
        [[r["image"], r["size"], r["preset"], r["task"], r["channels"],
          f"{1000 * r['estimated_s_per_it']:.1f}", f"{1000 * r['measured_s_per_it']:.1f}",
          f"{r['ratio']:.2f}", f"{r['estimated_total']:.1f} ({r['setup_s']:.1f})",
          f"{r['measured_total']:.1f}", f"{r['total_ratio']:.2f}", f"{r['estimate_call_s']:.1f}",
          *([f"{1000 * r['whole_s_per_it']:.1f}",
             f"{r['measured_s_per_it'] / r['whole_s_per_it']:.2f}",
             f"{r['whole_call_s']:.1f}"] if args.large else [])]
         for r in rows], markdown=True)
    ratios = np.asarray([r["ratio"] for r in rows])
    summary = (f"measured / estimated: median {np.median(ratios):.2f}, range "
               f"{ratios.min():.2f}-{ratios.max():.2f}; within 1.5x: "
               f"{int(np.sum((ratios <= 1.5) & (ratios >= 1 / 1.5)))}/{len(rows)}; whole runs: "
               + ", ".join(f"{r['total_ratio']:.2f}" for r in rows))
    _common.write_report(args.out, [*lines, f"runs of {args.iterations} iterations, stop none, "
                         f"{args.threads} torch thread(s)", "", table, "", summary], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
