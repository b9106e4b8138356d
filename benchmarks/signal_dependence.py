"""Which images does the Gaussian model's stage treat as photon noise?

Under ``noise="gaussian"`` with no noise sigma given, a denoising run's Wiener stage
filters noise that clearly grows with the signal with the camera model it estimates
(:func:`napari_specdip.core.noise.signal_dependence`), instead of one level read off the
dark pixels. This script measures, without fitting anything, how often the check fires:

- **Camera exposures** (``_microscopy.py``: cell, nuclei, puncta; photon.py's camera,
  ``100 + 2 * (Poisson(clean * peak) + N(0, read^2))`` ADU, uint16): it should fire.
- **Gaussian noise** on the evaluation set's images (``_evalset``: photos, textures,
  microscopy, fluorescence; kept as drawn and clipped to [0, 1]) and on crops of
  scikit-image's bundled photos (not clipped): it must not.
- **Clipped photon counts** (``_evalset``'s Poisson-Gaussian noise on its fluorescence
  and microscopy images, counts over the peak clipped to [0, 1], as an 8-bit export
  keeps them): it should fire.

Each image is checked as a run sees it (the engine's observation: the image's own
intensity range on [0, 1]), with the ends where its noise is clipped (the check then fits
the clipped moments); the tables say how many of the cases were clipped.

Examples
--------
python benchmarks/signal_dependence.py --out benchmarks/results/signal_dependence
python benchmarks/signal_dependence.py --sizes 64 128 --peaks 10 30 --sigmas 5 25
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402
import _microscopy as micro  # noqa: E402

PHOTOS = ("coins", "brick", "camera", "grass", "moon", "astronaut", "coffee", "chelsea",
          "rocket", "text", "page", "clock", "horse")


def check(image: np.ndarray) -> dict[str, Any]:
    """The engine's check on an image as a run sees it (its observation on the [0, 1]
    scale of its intensity range, with the ends where its noise is clipped): whether
    it was clipped, the seconds it took and what it found."""
    from napari_specdip.core.engine import plan_restore
    from napari_specdip.core.noise import signal_dependence
    from napari_specdip.core.refine import clipped_ends

    z = plan_restore(image, "denoise", channel_axis=-1 if image.ndim == 3 else None,
                     check_memory=False).observation
    low, high = clipped_ends(z)
    start = time.perf_counter()
    found = signal_dependence(z, low=low, high=high)
    seconds = time.perf_counter() - start
    row = {"clipped": low or high, "seconds": seconds}
    if found is None:
        return {"outcome": "none", **row}
    return {"outcome": "fires", **row, **found.record()}


def camera_cases(sizes: Sequence[int], peaks: Sequence[float], reads: Sequence[float],
                 seed: int) -> list[dict[str, Any]]:
    rows = []
    for image in ("cell", "nuclei", "puncta"):
        for size in sizes:
            clean = micro.load(image, size)
            for peak in peaks:
                for read in reads:
                    adu = micro.Camera(peak=peak, read=read).expose(clean, seed)
                    rows.append({"image": image, "size": size, "peak": peak, "read": read,
                                 **check(adu)})
    return rows


def clipped_photon_cases(sizes: Sequence[int], peaks: Sequence[float],
                         reads: Sequence[float], seed: int) -> list[dict[str, Any]]:
    rows = []
    names = [n for n in _evalset.IMAGES if _evalset.kind(n).startswith(("fluorescence",
                                                                          "microscopy"))]
    for size in sizes:
        for name in names:
            clean = _evalset.load(name, size)
            for peak in peaks:
                for read in reads:
                    observed, _ = _evalset.Degradation("poisson-gaussian", peak, read).apply(
                        clean, seed)
                    rows.append({"image": name, "size": size, "peak": peak, "read": read,
                                 **check(observed)})
    return rows


def gaussian_cases(sizes: Sequence[int], sigmas: Sequence[float], seed: int
                   ) -> list[dict[str, Any]]:
    from skimage import data, img_as_float

    from napari_specdip.samples import center_crop

    rows = []
    for size in sizes:
        for name in _evalset.IMAGES:
            try:
                clean = _evalset.load(name, size)
            except (OSError, ValueError):  # an image that needs a download
                continue
            for sigma in sigmas:
                noisy = clean + np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)
                for kept, image in (("as drawn", noisy), ("clipped", np.clip(noisy, 0, 1))):
                    rows.append({"set": "evaluation set", "image": name, "size": size,
                                 "sigma": sigma, "values": kept, **check(image)})
        for name in PHOTOS:
            photo = img_as_float(getattr(data, name)())
            if min(photo.shape[:2]) < size:
                continue
            clean = center_crop(photo, size)
            for sigma in sigmas:
                noisy = clean + np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)
                rows.append({"set": "scikit-image crops", "image": name, "size": size,
                             "sigma": sigma, "values": "as drawn", **check(noisy)})
    return rows


def _share(rows: Sequence[dict[str, Any]]) -> str:
    fired = sum(r["outcome"] == "fires" for r in rows)
    clipped = [r for r in rows if r["clipped"]]
    return f"{fired}/{len(rows)}" + (
        f" (clipped {sum(r['outcome'] == 'fires' for r in clipped)}/{len(clipped)})"
        if clipped else "")


def _photon_table(title: str, cases: list[dict[str, Any]]) -> list[str]:
    lines = [f"## {title}: cases where the check fires", ""]
    peaks = sorted({r["peak"] for r in cases})
    reads = sorted({r["read"] for r in cases})
    rows = [[f"{peak:g}", *(_share([r for r in cases if r["peak"] == peak
                                    and r["read"] == read]) for read in reads),
             _share([r for r in cases if r["peak"] == peak])] for peak in peaks]
    lines += [_common.format_table(["photons", *(f"read {r:g}" for r in reads), "all"], rows,
                                   markdown=True), ""]
    sizes = sorted({r["size"] for r in cases})
    return lines + ["By size: " + ", ".join(
        f"{s} px {_share([r for r in cases if r['size'] == s])}" for s in sizes), ""]


def report(camera: list[dict[str, Any]], clipped: list[dict[str, Any]],
           gaussian: list[dict[str, Any]]) -> list[str]:
    lines = _photon_table("Camera exposures", camera)
    lines += _photon_table("Clipped photon counts (evaluation set)", clipped)
    sizes = sorted({r["size"] for r in camera + clipped + gaussian})
    lines += ["## Gaussian noise: cases where the check fires (must be none)", ""]
    sigmas = sorted({r["sigma"] for r in gaussian})
    sets = sorted({r["set"] for r in gaussian})
    rows = [[name, *(_share([r for r in gaussian if r["set"] == name and r["sigma"] == s])
                     for s in sigmas)] for name in sets]
    lines += [_common.format_table(["set", *(f"sigma {s:g}" for s in sigmas)], rows,
                                   markdown=True), ""]
    fired = [r for r in gaussian if r["outcome"] == "fires"]
    named = [f"{r['image']} sigma {r['sigma']:g} {r['size']} px" for r in fired]
    lines += ["Fired on: " + (", ".join(named) or "none")]
    seconds = [r["seconds"] for r in camera + clipped + gaussian]
    by_size = {s: [r["seconds"] for r in camera + clipped + gaussian if r["size"] == s]
               for s in sizes}
    lines += ["", "Seconds per check (median): " + ", ".join(
        f"{s} px {_common.median(v):.3f}" for s, v in by_size.items() if v)
        + f"; {len(seconds)} checks"]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--peaks", type=float, nargs="+", default=[5, 10, 30, 100, 1000])
    parser.add_argument("--reads", type=float, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1, 2, 5, 10, 25, 50])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write PREFIX.md and PREFIX.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    camera = camera_cases(args.sizes, args.peaks, args.reads, args.seed)
    clipped = clipped_photon_cases(args.sizes, args.peaks, args.reads, args.seed)
    gaussian = gaussian_cases(args.sizes, args.sigmas, args.seed)
    lines = [*_common.machine_lines("cpu"),
             f"settings: sizes {args.sizes}, photons {args.peaks}, read noise {args.reads}, "
             f"Gaussian sigma {args.sigmas} (/255), seed {args.seed}", "",
             *report(camera, clipped, gaussian)]
    _common.write_report(args.out, lines, {"camera": camera, "clipped photons": clipped,
                                           "gaussian": gaussian})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
