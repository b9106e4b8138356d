"""How far to pool an ensemble's spread: correlation of the uncertainty map with the error.

``result.uncertainty`` of ``restore(..., ensemble=K)`` is the standard deviation of
the members' outputs, over the members and over each member's outputs around the
returned iteration (``napari_specdip.core.ensemble.SnapshotWindow``). From a few
samples each pixel's value is itself a noisy estimate, so the engine pools the
variance over neighbouring pixels (Gaussian weights,
``napari_specdip.core.ensemble.POOL_SIGMA``) before the square root. This script
runs the ensembles once with pooling off, pools the per-pixel variance with each
candidate sigma itself, and reports the Pearson correlation of
each map with the absolute error of the result (clean image known), per image, on
the evaluation set's tuning half (where sigma was chosen) and its held-out half.

Images: ``_evalset`` at 64 px with Gaussian noise sigma 25/255, and the fluorescence
and microscopy ones also with Poisson-Gaussian noise at a peak of 30 photons, read
noise 2 (camera values given). Width 32, K = 4, engine defaults otherwise.

Run ``python benchmarks/uncertainty_pooling.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset as ev  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)


def degradations(name: str) -> list[str]:
    fluorescent = ev.kind(name) in ("fluorescence", "microscopy")
    return ["sigma25", "pg30r2"] if fluorescent else ["sigma25"]


def run(name: str, label: str, *, size: int, members: int, width: int,
        max_iterations: int | None) -> dict[str, Any]:
    from napari_specdip import restore
    from napari_specdip.core import ensemble

    clean = ev.load(name, size)
    degradation = ev.parse_degradation(label)
    observed, _ = degradation.apply(clean, seed=0)
    options = ev.engine_options(degradation, max_iterations)
    pooled = ensemble.POOL_SIGMA
    ensemble.POOL_SIGMA = 0.0  # the per-pixel spread; pooled below with each sigma
    start = time.perf_counter()
    try:
        result = restore(observed.astype(np.float32), seed=0, ensemble=members, width=width,
                         channel_axis=-1 if observed.ndim == 3 else None, **options)
    finally:
        ensemble.POOL_SIGMA = pooled
    seconds = time.perf_counter() - start
    assert result.uncertainty is not None
    image = np.clip(np.asarray(result.image, dtype=np.float64), 0.0, 1.0)
    error = np.abs(image - clean)
    spread = np.asarray(result.uncertainty, dtype=np.float64)
    if spread.ndim == 2:
        spread = spread[..., None]
    shape = error.shape
    corr = {str(s): float(np.corrcoef(
        ensemble.pool_spread(spread**2, s).reshape(shape).ravel(), error.ravel())[0, 1])
        for s in SIGMAS}
    row = {"image": name, "split": ev.split(name), "kind": ev.kind(name), "noise": label,
           "psnr": ev.psnr(image, clean), "iterations": result.iterations,
           "seconds": seconds, "corr": corr}
    _common.echo(f"# {name} {label}: {row['psnr']:.2f} dB, {result.iterations} it, "
                 f"{seconds:.0f} s, corr " + " ".join(f"{s}:{c:.3f}" for s, c in corr.items()))
    return row


def _case(case: dict[str, Any]) -> dict[str, Any]:
    """One case in a worker process (its own torch threads)."""
    _common.set_threads(case.pop("threads"))
    return run(**case)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", nargs="+", default=list(ev.IMAGES))
    parser.add_argument("--members", "-k", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="cases run in this many processes")
    parser.add_argument("--out", default=str(RESULTS / "uncertainty_pooling_cpu64"))
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    cases = [{"name": name, "label": label, "size": args.size, "members": args.members,
              "width": args.width, "max_iterations": args.max_iterations,
              "threads": args.threads}
             for name in args.images for label in degradations(name)]
    rows = _common.map_cases(_case, cases, args.jobs)
    lines = [*_common.machine_lines("cpu"),
             f"settings: {args.size} px, K={args.members}, width {args.width}, torch threads "
             f"{args.threads}, {args.jobs} process(es); corr = Pearson correlation of the "
             "pooled spread with |result - clean| per pixel value", "",
             "| split | cases | " + " | ".join(f"sigma {s:g}" for s in SIGMAS) + " |",
             "|---|---|" + "---|" * len(SIGMAS)]
    for split in ("tune", "held-out"):
        chosen = [r for r in rows if r["split"] == split]
        if chosen:
            means = [np.mean([r["corr"][str(s)] for r in chosen]) for s in SIGMAS]
            lines.append(f"| {split} | {len(chosen)} | " + " | ".join(f"{m:.3f}" for m in means)
                         + " |")
    lines += ["", "| image | split | noise | PSNR dB | " + " | ".join(f"{s:g}" for s in SIGMAS)
              + " |", "|---|---|---|---|" + "---|" * len(SIGMAS)]
    lines += [f"| {r['image']} | {r['split']} | {r['noise']} | {r['psnr']:.2f} | "
              + " | ".join(f"{r['corr'][str(s)]:.3f}" for s in SIGMAS) + " |" for r in rows]
    _common.write_report(args.out, lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
