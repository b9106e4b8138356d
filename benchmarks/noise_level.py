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
3. **Held-out draw**: the noise energy on the pixels the engine holds out (its seeded
   mask) relative to all pixels, and the engine's estimate of it
   (:func:`~napari_specdip.core.noise.held_out_noise`), for each seed. The evaluation
   set draws the same standard-normal field for every image of one size and seed, so
   at one seed every gray image's held-out pixels carry nearly the same draw.

Examples
--------
python benchmarks/noise_level.py --markdown --out benchmarks/results/noise_level
python benchmarks/noise_level.py --sizes 128 --sigmas 10 25 --tile-sizes 256
"""

from __future__ import annotations

import argparse
import sys
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
    for seed in seeds:
        for size in sizes:
            for name in images:
                for sigma in sigmas:
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
    records = {"whole": whole, "tiles": tiled, "held_out_draws": draws}
    if args.out:
        _common.write_report(args.out, lines, records)
    else:
        _common.echo(*lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
