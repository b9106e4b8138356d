"""Warm start across the slices of a stack against cold starts.

A real-looking stack: synthetic nuclei drifting and changing size slowly along
z (what a confocal stack of a tissue looks like), with fresh Gaussian noise on
every slice. Each slice is restored twice with the same preset and seed: cold
(a fresh network) and warm (starting from the previous slice's final weights,
``warm_start=previous.state``), each with its own stop. Reported per slice and
in total: iterations, seconds, PSNR, and the ratio warm / cold of the time.

python benchmarks/warm_start.py --size 256 --slices 10 --preset balanced
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402


def drifting_stack(size: int, slices: int, seed: int = 3) -> np.ndarray:
    """(Z, H, W) nuclei whose centres drift and radii swell and shrink along z."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    count = int(0.35 * (size / 12) ** 2 / 6) + 3
    centres = rng.uniform(0, size, (count, 2))
    velocity = rng.normal(0, size / 256, (count, 2))
    radius = size / 128 * rng.uniform(7, 12, count)
    phase = rng.uniform(0, np.pi, count)
    brightness = rng.uniform(0.35, 1.0, count)
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.5)
    texture /= texture.std()
    out = np.zeros((slices, size, size))
    for z in range(slices):
        plane = np.zeros((size, size))
        for k in range(count):
            cy, cx = centres[k] + z * velocity[k]
            r = radius[k] * (0.75 + 0.25 * np.sin(phase[k] + z / max(1, slices) * np.pi))
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            plane[inside] = np.maximum(plane[inside], brightness[k] * (1 + 0.15 * texture[inside]))
        out[z] = 0.03 + 0.9 * ndimage.gaussian_filter(plane, 1.2 * size / 128)
    return np.clip(out, 0.0, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--stack-seed", type=int, default=3,
                        help="seed of the synthetic stack (3; another seed, another stack)")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON of every slice")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    from napari_specdip import restore
    from napari_specdip.samples import add_gaussian_noise

    # first calls pay for imports and allocator warm-up: not part of either timing
    restore(np.random.default_rng(0).random((32, 32)), width=8, max_iterations=2, stop="none",
            device=args.device)
    clean = drifting_stack(args.size, args.slices, seed=args.stack_seed)
    noisy = np.stack([add_gaussian_noise(c, seed=10 + z) for z, c in enumerate(clean)])
    options: dict[str, Any] = {"preset": args.preset, "device": args.device, "seed": 0,
                               "preview_every": 0}
    if args.width:
        options["width"] = args.width
    if args.max_iterations:
        options["max_iterations"] = args.max_iterations
    _common.echo(*_common.machine_lines(args.device),
                 f"stack {args.slices} x {args.size} px (drifting nuclei, sigma 25/255), "
                 f"preset {args.preset}", "")
    rows: list[list[Any]] = []
    records = []
    previous = None
    totals = {"cold": [0, 0.0, []], "warm": [0, 0.0, []]}
    for z in range(args.slices):
        cold = restore(noisy[z], **options)
        warm = restore(noisy[z], warm_start=None if previous is None else previous.state,
                       keep_state=True, **options)
        previous = warm
        entry = {}
        for name, result in (("cold", cold), ("warm", warm)):
            value = _evalset.psnr(result.image.astype(float), clean[z])
            totals[name][0] += result.iterations
            totals[name][1] += result.elapsed
            totals[name][2].append(value)
            entry[name] = {"iterations": result.iterations, "seconds": result.elapsed,
                           "psnr": value, "stop_reason": result.stop_reason}
        records.append(entry)
        rows.append([z, entry["cold"]["iterations"], f"{entry['cold']['seconds']:.0f}",
                     f"{entry['cold']['psnr']:.2f}", entry["warm"]["iterations"],
                     f"{entry['warm']['seconds']:.0f}", f"{entry['warm']['psnr']:.2f}"])
        _common.echo(f"z={z}: cold {entry['cold']['psnr']:.2f} dB in "
                     f"{entry['cold']['iterations']} it, warm {entry['warm']['psnr']:.2f} dB in "
                     f"{entry['warm']['iterations']} it")
    cold_t, warm_t = totals["cold"][1], totals["warm"][1]
    rows.append(["total", totals["cold"][0], f"{cold_t:.0f}", f"{np.mean(totals['cold'][2]):.2f}",
                 totals["warm"][0], f"{warm_t:.0f}", f"{np.mean(totals['warm'][2]):.2f}"])
    _common.echo("", _common.format_table(
        ["z", "cold it", "cold s", "cold PSNR", "warm it", "warm s", "warm PSNR"], rows,
        markdown=args.markdown), "",
        f"warm / cold time: {warm_t / cold_t:.2f}; iterations saved: "
        f"{1 - totals['warm'][0] / totals['cold'][0]:.0%}; mean PSNR warm - cold: "
        f"{np.mean(totals['warm'][2]) - np.mean(totals['cold'][2]):+.2f} dB "
        "(slice 0 is a cold start in both)")
    if args.out:
        args.out.write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
