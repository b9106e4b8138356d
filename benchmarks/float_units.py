"""Float images in other units: a camera's counts as floats within [0, 1] that span little of it.

skimage's ``img_as_float`` of a 16-bit exposure divides its counts by 65535, so a dim
exposure spans well under 1% of [0, 1]. Floats within [0, 1] used to be fitted in those
units, integer data over its own min..max. This script restores the same noisy data
(``offset + span * (clean + noise)``, Gaussian noise of 0.06 of the signal's range) at
several spans both ways: fitted in the [0, 1] units (``FLOAT_FULL_SPAN`` patched to 0, as
before) and over the data's own range (the engine now, below ``FLOAT_FULL_SPAN``), and
prints the PSNR against the clean image in the signal's units and the stop's iteration.

    python benchmarks/float_units.py [--images nuclei2 coins ...] [--spans 0.003 0.01 0.1]
           [--draws 2] [--size 64] [--width 32] [--max-iterations 600] [--jobs 1]
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

#: images the threshold was not chosen on (it was chosen on camera, moon, the cell and a
#: nuclei crop at 64 px)
IMAGES = ["nuclei2", "filaments2", "puncta2", "hubble", "coins", "chelsea", "rocket", "grass",
          "brick"]
MODES = ("[0, 1] units", "own range")
OFFSET = 0.002  # a camera's pedestal, in [0, 1] units
NOISE = 0.06  # of the signal's range


def one(case: dict[str, Any]) -> dict[str, Any]:
    _common.set_threads(case["threads"])
    from napari_specdip import restore
    from napari_specdip.core import imaging

    clean = _evalset.load(case["image"], case["size"])
    rng = np.random.default_rng(case["draw"])
    data = np.maximum(OFFSET + case["span"] * (clean + rng.normal(0, NOISE, clean.shape)), 0.0)
    row = dict(case)
    kept = imaging.FLOAT_FULL_SPAN
    for mode in MODES:
        imaging.FLOAT_FULL_SPAN = 0.0 if mode == MODES[0] else kept  # 0: every float keeps [0, 1]
        try:
            result = restore(data, channel_axis=-1 if clean.ndim == 3 else None, seed=0,
                             width=case["width"], max_iterations=case["max_iterations"],
                             num_threads=case["threads"])
        finally:
            imaging.FLOAT_FULL_SPAN = kept
        estimate = np.clip((np.asarray(result.image, np.float64) - OFFSET) / case["span"], 0, 1)
        row[mode] = {"psnr": float(10 * np.log10(1 / np.mean((estimate - clean) ** 2))),
                     "stop": int(result.stop_iteration), "iterations": int(result.iterations),
                     "range": [float(v) for v in result.intensity_range]}
    _common.echo(f"# {case['image']} span {case['span']:g} draw {case['draw']}: "
                 + ", ".join(f"{m} {row[m]['psnr']:.2f} dB (stop {row[m]['stop']})"
                             for m in MODES))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", nargs="+", default=IMAGES)
    parser.add_argument("--spans", nargs="+", type=float, default=[0.003, 0.01, 0.1])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--max-iterations", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default=None, help="keep the report as OUT.md and OUT.json")
    args = parser.parse_args(argv)
    lines = _common.machine_lines("cpu")
    _common.echo(*lines)
    cases = [{"image": image, "span": span, "draw": draw, "size": args.size,
              "width": args.width, "max_iterations": args.max_iterations,
              "threads": args.threads}
             for span in args.spans for image in args.images for draw in range(args.draws)]
    rows = _common.map_cases(one, cases, args.jobs)
    from napari_specdip.core.imaging import FLOAT_FULL_SPAN

    report = [*lines, "", f"own range: below FLOAT_FULL_SPAN = {FLOAT_FULL_SPAN:g}; "
              f"{args.size} px, width {args.width}, at most {args.max_iterations} "
              f"iterations, default stop, seed 0; Gaussian noise {NOISE:g} of the signal's range, "
              f"offset {OFFSET:g}; {args.draws} noise draw(s) per image", "",
              "## Per image and span: PSNR dB (stop iteration)", ""]
    report += _common.format_table(
        ["image", "span", "draw", *MODES, "own range - [0, 1] units"],
        [[r["image"], f"{r['span']:g}", r["draw"],
          *[f"{r[m]['psnr']:.2f} ({r[m]['stop']})" for m in MODES],
          f"{r[MODES[1]]['psnr'] - r[MODES[0]]['psnr']:+.2f}"] for r in rows],
        markdown=True).splitlines()
    report += ["", "## Per span: mean PSNR dB, the difference's range, stops before 100", ""]
    summary = []
    for span in args.spans:
        got = [r for r in rows if r["span"] == span]
        diff = np.array([r[MODES[1]]["psnr"] - r[MODES[0]]["psnr"] for r in got])
        summary.append([f"{span:g}", len(got),
                        *[f"{np.mean([r[m]['psnr'] for r in got]):.2f}" for m in MODES],
                        f"{diff.mean():+.2f} ({diff.min():+.2f} to {diff.max():+.2f})",
                        *[sum(r[m]["stop"] < 100 for r in got) for m in MODES]])
    report += _common.format_table(
        ["span", "runs", *MODES, "own range - [0, 1] units", *[f"stops < 100, {m}" for m in MODES]],
        summary, markdown=True).splitlines()
    _common.write_report(args.out, report, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
