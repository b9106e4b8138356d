"""The Wiener stage after a denoising fit (``refine="wiener"``): what it adds, per image.

Each case restores one image of the evaluation set (``_evalset.py``) with one
degradation at one preset, once, with the clean image as the reference: the engine
reports the PSNR of its result (refined) and of the network's own output
(``metrics["psnr_unrefined"]``), so both come from the same fit; where the observation
was clipped, also the Wiener filter's before the declipping
(``metrics["psnr_before_declipping"]``). NL-means (noise level
estimated, or the true one without PyWavelets) and, where installed, BM3D are run on the
same observation. Printed per case
and as means per split, kind and degradation: the network's PSNR, the refined one, the
gain, and the margins over NL-means and BM3D.

    python benchmarks/refine.py [--split tune|held-out|all|unseen] [--images ...] [--size 128]
        [--degradations sigma10 sigma25 sigma50] [--preset quick] [--jobs 1]
        [--max-iterations N] [--out PREFIX]
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


def one(case: dict[str, Any]) -> dict[str, Any]:
    _common.set_threads(case["threads"])
    from napari_specdip import RestoreParameters, restore

    clean = ev.load(case["image"], case["size"])
    degradation = ev.parse_degradation(case["degradation"])
    observation, _ = degradation.apply(clean, case["seed"])
    axis = -1 if observation.ndim == 3 else None
    options: dict[str, Any] = {"seed": case["seed"]}
    if case["max_iterations"]:
        options["max_iterations"] = case["max_iterations"]
    if degradation.kind == "poisson-gaussian":  # the true camera: the stage, not the estimate
        options.update(noise="poisson-gaussian", noise_gain=1 / degradation.level,
                       noise_read_sigma=degradation.read / degradation.level, noise_offset=0.0)
    params = RestoreParameters.for_task("denoise", preset=case["preset"], **options)
    start = time.perf_counter()
    result = restore(observation, parameters=params, reference=clean, channel_axis=axis)
    seconds = time.perf_counter() - start
    # the true overall noise level where PyWavelets (for the estimate) is missing
    if degradation.kind == "poisson-gaussian":
        level = float(np.sqrt(np.mean(clean) / degradation.level
                              + (degradation.read / degradation.level) ** 2))
    else:
        level = degradation.level / 255.0
    nlm = ev.psnr(np.clip(ev.nl_means(observation, level), 0, 1), clean)
    bm3d = ev.bm3d(observation)
    return {**case, "kind": ev.kind(case["image"]), "split": ev.split(case["image"]),
            "network": result.metrics["psnr_unrefined"], "refined": result.metrics["psnr"],
            # the Wiener filter alone: before the declipping of a clipped observation
            "wiener": result.metrics.get("psnr_before_declipping", result.metrics["psnr"]),
            "nl_means": nlm,
            "bm3d": None if bm3d is None else ev.psnr(np.clip(bm3d, 0, 1), clean),
            "iterations": result.iterations, "seconds": seconds,
            "record": result.parameters["refined"]}


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    values = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(values)) if values else float("nan")


def _summary(label: str, rows: list[dict[str, Any]]) -> list[Any]:
    gains = [r["refined"] - r["network"] for r in rows]
    over_nlm = [r["refined"] - r["nl_means"] for r in rows]
    net_nlm = [r["network"] - r["nl_means"] for r in rows]
    return [label, len(rows), f"{_mean(rows, 'network'):.2f}", f"{_mean(rows, 'wiener'):.2f}",
            f"{_mean(rows, 'refined'):.2f}",
            f"{np.mean(gains):+.2f} ({min(gains):+.2f} to {max(gains):+.2f})",
            f"{min(net_nlm):+.2f}", f"{min(over_nlm):+.2f}",
            f"{_mean(rows, 'refined') - _mean(rows, 'bm3d'):+.2f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "held-out", "all", "unseen"), default="held-out")
    parser.add_argument("--images", nargs="+", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--degradations", nargs="+", default=["sigma10", "sigma25", "sigma50"])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=None, help="write PREFIX.md and PREFIX.json")
    args = parser.parse_args(argv)
    images = args.images or ([*ev.UNSEEN] if args.split == "unseen" else
                             [n for n in ev.IMAGES if args.split in ("all", ev.split(n))])
    cases = [{"image": n, "degradation": d, "size": args.size, "preset": args.preset,
              "seed": args.seed, "max_iterations": args.max_iterations,
              "threads": args.threads} for n in images for d in args.degradations]
    records = _common.map_cases(one, cases, args.jobs)
    header = ["image", "noise", "network dB", "Wiener dB", "refined dB", "gain", "vs NL-means",
              "vs BM3D", "iterations", "s"]
    rows = [[r["image"], r["degradation"], f"{r['network']:.2f}", f"{r['wiener']:.2f}",
             f"{r['refined']:.2f}",
             f"{r['refined'] - r['network']:+.2f}", f"{r['refined'] - r['nl_means']:+.2f}",
             "-" if r["bm3d"] is None else f"{r['refined'] - r['bm3d']:+.2f}",
             r["iterations"], f"{r['seconds']:.0f}"] for r in records]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        for key in (f"split {r['split']}", f"kind {r['kind']}", f"noise {r['degradation']}"):
            groups.setdefault(key, []).append(r)
    summary = [_summary(k, v) for k, v in sorted(groups.items())]
    lines = [*_common.machine_lines("cpu"), ev.describe(unseen=args.split == "unseen"),
             f"preset {args.preset}, {args.size} px, seed {args.seed}", "",
             "## per case", _common.format_table(header, rows, markdown=True), "",
             "## means (gain: refined - network; worst margins over NL-means: network, refined)",
             _common.format_table(["group", "cases", "network dB", "Wiener dB", "refined dB",
                                   "gain",
                                   "min network - NL-means", "min refined - NL-means",
                                   "refined - BM3D (mean)"], summary, markdown=True)]
    _common.write_report(args.out, lines, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
