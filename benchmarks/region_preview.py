"""Region preview against the whole-image run: same settings, same pixels.

The widget's "Preview region" restores at most ``_region.side_for(width)`` px of
the image in view with the current settings, stopped by the hold-out rule or by
its time budget (``_region.BUDGET_S``, 15 s), whichever comes first, and keeps
the result so far. Here the same is done without a window: the centre crop of
that side is restored exactly as the preview's worker does (the widget's
parameters, ``preview_every=_region.PREVIEW_EVERY``, the iteration cap of
``_region.MAX_ITERATIONS``, the budget through the engine's interrupt), and the
whole image is restored with the same settings to its own stop. Printed per
image and preset: PSNR of the region preview and of the same pixels cut from the
whole-image result (both against the clean image), their difference (target of
issue 10: within 1 dB), and the seconds of each.

    python benchmarks/region_preview.py [--size 256] [--presets quick balanced]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402

IMAGES = ("camera", "astronaut", "nuclei2")


def _run(noisy: np.ndarray, axis: int | None, params: Any, budget_s: float | None
         ) -> tuple[np.ndarray, float, int, str]:
    """One run as the widget's worker does it: the time budget through the interrupt."""
    result, seconds = _common.restore_within(budget_s, noisy, channel_axis=axis,
                                             parameters=params)
    return np.asarray(result.image, dtype=np.float64), seconds, result.iterations, result.stop_reason


def one(name: str, size: int, preset: str, sigma: float, max_iterations: int | None = None
        ) -> dict[str, Any]:
    from napari_specdip import RestoreParameters
    from napari_specdip._napari import _region

    clean = _evalset.load(name, size)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, sigma / 255, clean.shape), 0, 1)
    axis = -1 if clean.ndim == 3 else None
    params = RestoreParameters.for_task("denoise", preset=preset, seed=0, device="cpu",
                                        num_threads=1)
    if max_iterations is not None:
        params = params.replace(max_iterations=max_iterations)
    side = min(size, _region.side_for(params.width, on_cpu=True))
    top = (size - side) // 2
    box = (slice(top, top + side), slice(top, top + side))
    region_params = params.replace(preview_every=_region.PREVIEW_EVERY, ensemble=1,
                                   max_iterations=min(params.max_iterations,
                                                      _region.MAX_ITERATIONS))
    preview, preview_s, preview_it, preview_stop = _run(noisy[box], axis, region_params,
                                                        _region.BUDGET_S)
    whole, whole_s, whole_it, whole_stop = _run(noisy, axis, params, None)
    row = {"image": name, "size": size, "preset": preset, "width": params.width, "side": side,
           "preview_psnr": _evalset.psnr(preview, clean[box]), "preview_s": preview_s,
           "preview_iterations": preview_it, "preview_stop": preview_stop,
           "whole_psnr_region": _evalset.psnr(whole[box], clean[box]),
           "whole_psnr": _evalset.psnr(whole, clean), "whole_s": whole_s,
           "whole_iterations": whole_it, "whole_stop": whole_stop,
           "noisy_psnr_region": _evalset.psnr(noisy[box], clean[box])}
    row["difference"] = row["whole_psnr_region"] - row["preview_psnr"]
    _common.echo(f"# {name} {size} px {preset}: preview {side} px {row['preview_psnr']:.2f} dB in "
                 f"{preview_s:.1f} s ({preview_it} it, {preview_stop}); whole image on that region "
                 f"{row['whole_psnr_region']:.2f} dB in {whole_s:.0f} s ({whole_it} it, "
                 f"{whole_stop}); difference {row['difference']:+.2f} dB")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sigma", type=float, default=25.0, help="Gaussian noise, in 1/255")
    parser.add_argument("--images", nargs="+", default=list(IMAGES))
    parser.add_argument("--presets", nargs="+", default=["quick", "balanced"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-iterations", type=int, default=None,
                        help="iteration cap of both runs (a quick check; default: the preset's)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"
                                             / "region_preview_cpu"))
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    lines = _common.machine_lines("cpu")
    _common.echo(*lines)
    rows = [one(name, args.size, preset, args.sigma, args.max_iterations)
            for preset in args.presets
            for name in args.images]
    table = _common.format_table(
        ["image", "preset", "region px", "preview dB", "preview s", "preview it",
         "whole run on the region dB", "difference dB", "whole run s", "whole run it"],
        [[r["image"], r["preset"], r["side"], f"{r['preview_psnr']:.2f}",
          f"{r['preview_s']:.1f}", f"{r['preview_iterations']} ({r['preview_stop']})",
          f"{r['whole_psnr_region']:.2f}", f"{r['difference']:+.2f}", f"{r['whole_s']:.0f}",
          f"{r['whole_iterations']} ({r['whole_stop']})"] for r in rows], markdown=True)
    diffs = np.asarray([r["difference"] for r in rows])
    summary = (f"whole-image run minus region preview, on the region: mean {diffs.mean():+.2f} dB, "
               f"max {diffs.max():+.2f} dB; within 1 dB: {int(np.sum(diffs <= 1.0))}/{len(rows)}")
    _common.write_report(args.out, [*lines, f"{args.size} px images, Gaussian sigma "
                         f"{args.sigma:g}/255, {args.threads} torch thread(s)", "", table, "",
                         summary], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
