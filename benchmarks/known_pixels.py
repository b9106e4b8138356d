"""Inpainting: the known pixels kept as given (``keep_known``, the default) or fitted.

Each image of the evaluation set (``_evalset.py``) loses a random share of its pixels
(``inpaint0.5``: half) and is inpainted once with ``keep_known=False``, the clean image
as the reference. The engine's own result is the network's output everywhere; the same
fit with the known pixels put back is what ``keep_known=True`` returns (the engine
composites exactly this: tests/core/test_engine.py checks that both share one fit).
Printed per image and as means per split and kind: PSNR fitted, kept, and the gain.

    python benchmarks/known_pixels.py [--split tune|held-out|all] [--images ...]
        [--size 128] [--degradation inpaint0.5] [--preset quick] [--max-iterations N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset as ev  # noqa: E402


def one(image: str, size: int, degradation: str, preset: str,
        max_iterations: int | None) -> dict[str, Any]:
    from napari_specdip import restore

    clean = ev.load(image, size)
    observed, missing = ev.parse_degradation(degradation).apply(clean)
    assert missing is not None, "an inpainting degradation (inpaintF)"
    options: dict[str, Any] = {} if max_iterations is None else {
        "max_iterations": max_iterations}
    fitted = restore(observed, "inpaint", mask=missing, channel_axis=-1 if clean.ndim == 3
                     else None, preset=preset, keep_known=False, seed=0, **options)
    known = ~missing if clean.ndim == 2 else (~missing)[..., None]
    kept = np.where(known, observed, fitted.image)
    return {"image": image, "kind": ev.kind(image), "split": ev.split(image),
            "fitted": ev.psnr(fitted.image, clean), "kept": ev.psnr(kept, clean),
            "iterations": fitted.iterations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "held-out", "all"), default="all")
    parser.add_argument("--images", nargs="*", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--degradation", default="inpaint0.5")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    images = args.images or [n for n in ev.IMAGES
                             if args.split == "all" or ev.split(n) == args.split]
    print(ev.describe({"size": args.size, "degradation": args.degradation,
                       "preset": args.preset}))
    rows = [one(n, args.size, args.degradation, args.preset, args.max_iterations)
            for n in images]
    print("\n## per image\n")
    print("| image | kind | split | iterations | fitted dB | kept dB | gain |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['kind']} | {r['split']} | {r['iterations']} | "
              f"{r['fitted']:.2f} | {r['kept']:.2f} | {r['kept'] - r['fitted']:+.2f} |")
    print("\n## means\n")
    print("| group | images | fitted dB | kept dB | gain |")
    print("|---|---|---|---|---|")
    groups: dict[str, list[dict[str, Any]]] = {"all": rows}
    for r in rows:
        groups.setdefault(f"split {r['split']}", []).append(r)
        groups.setdefault(f"kind {r['kind']}", []).append(r)
    for name, members in groups.items():
        fitted = float(np.mean([m["fitted"] for m in members]))
        kept = float(np.mean([m["kept"] for m in members]))
        print(f"| {name} | {len(members)} | {fitted:.2f} | {kept:.2f} | {kept - fitted:+.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
