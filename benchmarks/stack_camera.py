"""Camera values of a stack: estimated slice by slice, or once over the slices.

A stack's slices come from one camera. Each case exposes ``--slices`` views of one
clean microscopy image (turned and mirrored, so the slices differ) through one camera
(``_microscopy.Camera``: gain 2 ADU per photon, read noise ``--read`` photons, offset
100 ADU), each with its own noise draw, and estimates the gain and read noise of every
slice alone (what a run of one slice does) and of the stack at once
(``core.noise.estimate_camera``, what the CLI and the widget do for a stack). Printed
per case: the range of the per-slice ratios to the truth and how many lie within 20%,
and the stack's ratios.

    python benchmarks/stack_camera.py [--sizes 64 128] [--slices 8] [--peaks 5 10 30]
        [--images cell nuclei puncta] [--read 2] [--out PREFIX]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _microscopy as micro  # noqa: E402

WITHIN = 0.2


def _alone(adu: np.ndarray) -> dict[str, float]:
    from napari_specdip.core.noise import estimate_poisson_gaussian

    values = adu.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    found = estimate_poisson_gaussian((values - low) / (high - low))
    return found.model.to_camera(low=low, high=high)


def one(name: str, size: int, peak: float, read: float, slices: int) -> dict[str, Any]:
    from napari_specdip.core.noise import estimate_camera

    clean = micro.load(name, size)
    camera = micro.Camera(peak=peak, read=read)
    stack = []
    for k in range(slices):
        view = np.rot90(clean, k % 4)
        view = view[::-1] if (k // 4) % 2 else view
        stack.append(camera.expose(np.ascontiguousarray(view), 1000 + k))
    truth = camera.truth()
    alone = [_alone(s) for s in stack]
    together = estimate_camera(stack)
    return {
        "image": name, "size": size, "peak": peak, "read": read, "slices": slices,
        "gain_alone": [a["gain"] / truth["gain"] for a in alone],
        "read_alone": [a["read_sigma"] / truth["read_sigma"] for a in alone],
        "gain_stack": together.gain / truth["gain"],
        "read_stack": together.read_sigma / truth["read_sigma"],
        "offset_from": together.black_from,
    }


def _within(ratios: list[float]) -> int:
    return sum(abs(r - 1.0) <= WITHIN for r in ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--peaks", type=float, nargs="+", default=[5.0, 10.0, 30.0])
    parser.add_argument("--images", nargs="+", default=["cell", "nuclei", "puncta"])
    parser.add_argument("--read", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write PREFIX.md and PREFIX.json")
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    records = [one(name, size, peak, args.read, args.slices) for size in args.sizes
               for name in args.images for peak in args.peaks]
    rows = []
    for r in records:
        ga, ra = r["gain_alone"], r["read_alone"]
        rows.append([r["image"], r["size"], f"{r['peak']:g}",
                     f"{min(ga):.2f}-{max(ga):.2f} ({_within(ga)}/{len(ga)})",
                     f"{min(ra):.2f}-{max(ra):.2f} ({_within(ra)}/{len(ra)})",
                     f"{r['gain_stack']:.2f}", f"{r['read_stack']:.2f}"])
    lines = [*_common.machine_lines("cpu"),
             f"{args.slices} slices per stack, read noise {args.read:g} photons; ratio to the "
             f"truth, (count within {WITHIN:.0%})", "",
             "## gain and read noise over the truth",
             _common.format_table(["image", "px", "photons", "gain, each slice alone",
                                   "read noise, each slice alone", "gain, stack",
                                   "read noise, stack"], rows, markdown=True)]
    for size in args.sizes:
        mine = [r for r in records if r["size"] == size]
        alone = sum(_within(r["gain_alone"]) for r in mine)
        stack = sum(abs(r["gain_stack"] - 1.0) <= WITHIN for r in mine)
        lines.append(f"{size} px: gain within {WITHIN:.0%} on {alone} of "
                     f"{sum(len(r['gain_alone']) for r in mine)} slices alone, on {stack} of "
                     f"{len(mine)} stacks")
    _common.write_report(args.out, lines, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
