"""How close is the noise level the auto stop uses to the noise actually drawn?

The estimated-error stop (``stop="auto"`` when denoising Gaussian noise) needs the
noise variance ``v`` and is sensitive to it (``stopping.py --noise-scales``: 5% low
cost the moon at sigma 50 1.7 dB). This script measures, without fitting anything:

1. **Whole images**: the engine's estimate (:func:`estimate_white_noise_variance`,
   patch PCA after Chen, Zhu and Heng) against the mean squared noise drawn
   (observation minus clean image, clipping included), over the evaluation set
   (``_evalset``) at each size and sigma.
2. **Tiles**: a tiled run estimates ``v`` per tile. Per tile, that estimate and the
   whole image's against the noise drawn in the tile (clipping makes the effective
   noise differ from tile to tile on dark images).
3. **Texture check** (since 2026-12-04): the patch PCA alone (``texture_ratio=inf``, the
   estimator before), the weakly textured patches' estimate alone (``texture_ratio=0``) and
   the engine's (the second where the first is over ``TEXTURE_RATIO`` times it), by half of
   the evaluation set and sigma, over several seeds; a sweep of the ratio (chosen on the
   tuning half); the estimator's time at a few sizes (it runs on the GUI thread for
   previews).
4. **Held-out draw**: the noise energy on the pixels the engine holds out (its seeded
   mask) relative to all pixels, and the engine's estimate of it
   (:func:`~napari_specdip.core.noise.held_out_noise`), for each seed. The evaluation
   set draws the same standard-normal field for every image of one size and seed, so
   at one seed every gray image's held-out pixels carry nearly the same draw.

Examples
--------
python benchmarks/noise_level.py --markdown --out benchmarks/results/noise_level
python benchmarks/noise_level.py --sizes 128 --sigmas 10 25 --tile-sizes 256
python benchmarks/noise_level.py --ratios 1.1 1.2 1.3 1.5 --time-sizes 128 512 2048
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402


def _hwc(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else image[..., None]


def _observe(name: str, size: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    clean = _evalset.load(name, size)
    observation, _ = _evalset.Degradation("gaussian", sigma).apply(clean, seed=seed)
    return _hwc(observation), _hwc(clean)


def whole_images(images: Sequence[str], sizes: Sequence[int], sigmas: Sequence[float],
                 seed: int) -> list[dict[str, Any]]:
    from napari_specdip.core.noise import estimate_white_noise_variance

    rows = []
    for size in sizes:
        for name in images:
            for sigma in sigmas:
                observation, clean = _observe(name, size, sigma, seed)
                drawn = float(np.mean((observation - clean) ** 2))
                estimate = estimate_white_noise_variance(observation)
                rows.append({"image": name, "kind": _evalset.kind(name), "size": size,
                             "sigma": sigma, "ratio": estimate / drawn})
    return rows


def tiles(images: Sequence[str], sizes: Sequence[int], sigmas: Sequence[float], seed: int,
          tile: int, overlap: int) -> list[dict[str, Any]]:
    from napari_specdip.core.noise import estimate_white_noise_variance
    from napari_specdip.core.tiling import tile_grid

    rows = []
    for size in sizes:
        for name in images:
            for sigma in sigmas:
                observation, clean = _observe(name, size, sigma, seed)
                whole = estimate_white_noise_variance(observation)
                for t in tile_grid(size, size, tile=tile, overlap=overlap):
                    where = t.slices()
                    drawn = float(np.mean((observation[where] - clean[where]) ** 2))
                    own = estimate_white_noise_variance(observation[where])
                    rows.append({"image": name, "kind": _evalset.kind(name), "size": size,
                                 "sigma": sigma, "per_tile": own / drawn,
                                 "whole": whole / drawn})
    return rows


def held_out_draws(images: Sequence[str], sizes: Sequence[int], sigmas: Sequence[float],
                   seeds: Sequence[int], holdout: float) -> list[dict[str, Any]]:
    """The held-out pixels' noise draw (their mean squared noise over the image's, less 1)
    and the engine's estimate of it (:func:`held_out_noise` from the image's estimated
    noise variance)."""
    from napari_specdip.core.engine import _holdout_mask
    from napari_specdip.core.noise import estimate_white_noise_variance, held_out_noise

    rows = []
    for seed, size, name, sigma in _cases(seeds, sizes, images, sigmas):
        observation, clean = _observe(name, size, sigma, seed)
        noise = np.mean((observation - clean) ** 2, axis=-1)
        held = _holdout_mask(size, size, holdout, seed, None)
        v = estimate_white_noise_variance(observation)  # as the engine has it
        estimated = held_out_noise(observation, held, v)[0]
        rows.append({"image": name, "kind": _evalset.kind(name), "seed": seed,
                     "size": size, "sigma": sigma,
                     "drawn": float(noise[held].mean() / noise.mean()) - 1.0,
                     "estimated": estimated / v - 1.0})
    return rows


def _cases(seeds: Sequence[int], sizes: Sequence[int], images: Sequence[str],
           sigmas: Sequence[float]) -> Any:
    """Every (seed, size, image, sigma), in that nesting order."""
    import itertools

    return itertools.product(seeds, sizes, images, sigmas)


def texture_check(images: Sequence[str], sizes: Sequence[int], sigmas: Sequence[float],
                  seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Per image, size, sigma and seed: the patch PCA's estimate (``texture_ratio=inf``),
    the weakly textured patches' (``texture_ratio=0``; the PCA's where too few patches
    qualify) and the engine's, each over the noise drawn."""
    from napari_specdip.core.noise import estimate_white_noise_variance

    rows = []
    for seed, size, name, sigma in _cases(seeds, sizes, images, sigmas):
        observation, clean = _observe(name, size, sigma, seed)
        drawn = float(np.mean((observation - clean) ** 2))
        rows.append({
            "image": name, "kind": _evalset.kind(name), "split": _evalset.split(name),
            "size": size, "sigma": sigma, "seed": seed,
            "pca": estimate_white_noise_variance(observation, texture_ratio=math.inf)
            / drawn,
            "weak": estimate_white_noise_variance(observation, texture_ratio=0.0)
            / drawn,
            "new": estimate_white_noise_variance(observation) / drawn})
    return rows


def _gated(row: dict[str, Any], ratio: float) -> float:
    """The engine's estimate with another texture ratio, from the two estimates."""
    return float(row["weak"] if row["pca"] > ratio * row["weak"] else row["pca"])


def _against(old: Sequence[float], new: Sequence[float]) -> list[str]:
    """RMS log error and worst ratio of ``new``, how many moved >= 2% further from the
    noise drawn than ``old``, and the largest such move (log)."""
    a, b = np.log(np.asarray(old, dtype=float)), np.log(np.asarray(new, dtype=float))
    worse = np.abs(b) - np.abs(a)
    worst = float(np.exp(b[int(np.argmax(np.abs(b)))]))
    return [f"{np.sqrt(np.mean(b ** 2)):.3f}", f"{worst:.2f}", str(int(np.sum(worse >= 0.02))),
            f"{max(float(worse.max()), 0.0):.3f}"]


def estimator_times(images: Sequence[str], sizes: Sequence[int], sigma: float,
                    repeats: int) -> list[dict[str, Any]]:
    """Seconds per call (best of ``repeats``) of the patch PCA alone and of the engine's
    estimate; images above 512 px are the 512 px one repeated (nearest neighbour)."""
    from napari_specdip.core.noise import estimate_white_noise_variance

    rows = []
    for size in sizes:
        for name in images:
            base = min(size, 512)
            clean = _evalset.load(name, base)
            factor = size // base
            if factor > 1:
                clean = np.repeat(np.repeat(clean, factor, axis=0), factor, axis=1)
            observation, _ = _evalset.Degradation("gaussian", sigma).apply(clean, seed=0)
            row: dict[str, Any] = {"image": name, "size": size}
            for label, ratio in (("pca", math.inf), ("new", None)):
                best = math.inf
                for _ in range(repeats):
                    start = time.perf_counter()
                    if ratio is None:
                        estimate_white_noise_variance(observation)
                    else:
                        estimate_white_noise_variance(observation, texture_ratio=ratio)
                    best = min(best, time.perf_counter() - start)
                row[label] = best
            rows.append(row)
    return rows


def _spread(values: Sequence[float]) -> list[Any]:
    a = np.asarray(values, dtype=float)
    return [f"{np.median(a):.3f}", f"{a.min():.3f}", f"{a.max():.3f}",
            f"{np.mean(np.abs(a - 1.0) <= 0.05):.2f}", f"{np.sqrt(np.mean(np.log(a) ** 2)):.3f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=list(_evalset.IMAGES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[5, 10, 25, 50])
    parser.add_argument("--tile-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--holdout", type=float, default=0.1)
    parser.add_argument("--texture-seeds", type=int, nargs="+", default=[0, 1],
                        help="seeds of the texture check (at every size and sigma)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[1.1, 1.2, 1.3, 1.5, 2.0],
                        help="texture ratios swept (the weak patches' estimate is used where "
                             "the PCA's is over this many times it)")
    parser.add_argument("--time-sizes", type=int, nargs="*", default=[],
                        help="also time the estimator at these sizes (e.g. 128 512 2048)")
    parser.add_argument("--time-images", nargs="+", default=["camera", "astronaut", "grass"],
                        help="images timed (those among --images)")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--out", default=None, help="write PREFIX.md and PREFIX.json")
    args = parser.parse_args(argv)

    lines = [*_common.machine_lines("cpu"), ""]
    spread_header = ["median", "min", "max", "within 5%", "rms log"]

    whole = whole_images(args.images, args.sizes, args.sigmas, args.seeds[0])
    lines += ["## Whole images: estimate / noise drawn", ""]
    table = []
    for size in args.sizes:
        for sigma in args.sigmas:
            chosen = [r for r in whole if r["size"] == size and r["sigma"] == sigma]
            worst = max(chosen, key=lambda r: abs(np.log(r["ratio"])))
            table.append([size, f"{sigma:g}", len(chosen), *_spread([r["ratio"] for r in chosen]),
                          f"{worst['image']} {worst['ratio']:.2f}"])
    lines += [_common.format_table(["px", "sigma", "images", *spread_header, "worst"], table,
                                   markdown=args.markdown), ""]

    tiled = tiles(args.images, args.tile_sizes, args.sigmas, args.seeds[0], args.tile,
                  args.overlap)
    lines += [f"## Tiles ({args.tile} px, overlap {args.overlap}): estimate / noise drawn "
              "in the tile", ""]
    table = []
    for kind in sorted({r["kind"] for r in tiled}):
        for sigma in args.sigmas:
            chosen = [r for r in tiled if r["kind"] == kind and r["sigma"] == sigma]
            for source in ("per_tile", "whole"):
                table.append([kind, f"{sigma:g}", len(chosen), source.replace("_", " "),
                              *_spread([r[source] for r in chosen])])
    for source in ("per_tile", "whole"):
        table.append(["all", "all", len(tiled), source.replace("_", " "),
                      *_spread([r[source] for r in tiled])])
    lines += [_common.format_table(["kind", "sigma", "tiles", "estimated on", *spread_header],
                                   table, markdown=args.markdown), ""]

    checked = texture_check(args.images, args.sizes, args.sigmas, args.texture_seeds)
    lines += [f"## Texture check: patch PCA (old) and with the weak-texture pass (new), "
              f"estimate / noise drawn, seeds {' '.join(map(str, args.texture_seeds))}", "",
              "worse: estimates >= 2% further from the noise drawn than the old one; "
              "max worse: the largest such move (log)", ""]
    table = []
    for split in ("tune", "held-out"):
        for sigma in [*args.sigmas, None]:
            chosen = [r for r in checked if r["split"] == split
                      and (sigma is None or r["sigma"] == sigma)]
            if not chosen:
                continue
            old = [r["pca"] for r in chosen]
            table.append([split, "all" if sigma is None else f"{sigma:g}", len(chosen),
                          *_against(old, old)[:2], *_against(old, [r["new"] for r in chosen]),
                          *_against(old, [r["weak"] for r in chosen])[:2]])
    lines += [_common.format_table(["half", "sigma", "count", "old rms log", "old worst",
                                    "new rms log", "new worst", "worse", "max worse",
                                    "weak alone rms log", "weak alone worst"],
                                   table, markdown=args.markdown), ""]
    lines += ["## Texture ratio sweep (all sigmas, sizes and seeds above)", ""]
    table = []
    for split in ("tune", "held-out"):
        chosen = [r for r in checked if r["split"] == split]
        if not chosen:
            continue
        old = [r["pca"] for r in chosen]
        for ratio in args.ratios:
            table.append([split, f"{ratio:g}", len(chosen),
                          *_against(old, [_gated(r, ratio) for r in chosen]),
                          str(sum(_gated(r, ratio) != r["pca"] for r in chosen))])
    lines += [_common.format_table(["half", "ratio", "count", "rms log", "worst", "worse",
                                    "max worse", "replaced"], table,
                                   markdown=args.markdown), ""]
    moved = [r for r in checked if abs(np.log(r["new"] / r["pca"])) >= 0.02]
    lines += ["## Estimates the weak-texture pass moved by >= 2%", ""]
    table = [[r["split"], r["image"], r["size"], f"{r['sigma']:g}", r["seed"], f"{r['pca']:.3f}",
              f"{r['new']:.3f}"] for r in sorted(moved, key=lambda r: (
                  r["split"], r["image"], r["size"], r["sigma"], r["seed"]))]
    lines += [_common.format_table(["half", "image", "px", "sigma", "seed", "old", "new"], table,
                                   markdown=args.markdown), ""]
    times = estimator_times([i for i in args.time_images if i in args.images],
                            args.time_sizes, 10.0, 3)
    if times:
        lines += ["## Estimator time (sigma 10, best of 3, ms)", ""]
        table = [[r["image"], r["size"], f"{1000 * r['pca']:.0f}", f"{1000 * r['new']:.0f}"]
                 for r in times]
        lines += [_common.format_table(["image", "px", "patch PCA", "with the weak-texture pass"],
                                       table, markdown=args.markdown), ""]

    draw_sizes = [s for s in args.sizes if s <= 128] or args.sizes[:1]
    draws = held_out_draws(args.images, draw_sizes, args.sigmas, args.seeds, args.holdout)
    lines += [f"## Held-out pixels' noise draw ({args.holdout:g} held out): their noise "
              "energy / the image's - 1, and its estimate", "",
              "RMS over images; error: estimated minus drawn", ""]
    table = []

    def rms(values: Sequence[float]) -> str:
        return f"{np.sqrt(np.mean(np.square(values))):.3f}"

    groups = [(f"seed {seed}", lambda r, seed=seed: r["seed"] == seed) for seed in args.seeds]
    groups += [(f"sigma {sigma:g}", lambda r, sigma=sigma: r["sigma"] == sigma)
               for sigma in args.sigmas]
    groups += [(f"{size} px", lambda r, size=size: r["size"] == size) for size in draw_sizes]
    groups += [("texture", lambda r: r["kind"] == "texture"),
               ("other kinds", lambda r: r["kind"] != "texture"), ("all", lambda r: True)]
    for label, test in groups:
        chosen = [r for r in draws if test(r)]
        if not chosen:
            continue
        drawn = [r["drawn"] for r in chosen]
        table.append([label, len(chosen), f"{min(drawn):+.3f}", f"{max(drawn):+.3f}",
                      rms(drawn), rms([r["estimated"] - r["drawn"] for r in chosen])])
    lines += [_common.format_table(["runs", "count", "drawn min", "drawn max",
                                    "error taking 0 (RMS)", "error of the estimate (RMS)"],
                                   table, markdown=args.markdown), ""]
    records = {"whole": whole, "tiles": tiled, "texture_check": checked, "times": times,
               "held_out_draws": draws}
    _common.write_report(args.out, lines, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
