"""Tiles against one network for the whole image: PSNR, time and seams.

For each image, the same preset restores the whole image with one network
(``tile=0``) and as overlapping tiles (``tile=N``), one run after the other in
this process. ``--compare warm`` puts tiles fitted from scratch
(``tile_warm_start=False``) in the whole image's place, against tiles that each
start from the network the tile before ended with (the default). The whole-image
(or cold-tiles) run gets a time budget (``--budget``; 0: none, it runs to its own
stop); the tiled run always runs to the tiles' own stops. Both PSNRs are against
the clean image; ``seam`` is the PSNR of the tiled result on the pixels where
tiles are blended minus its PSNR elsewhere, each relative to the whole-image
result on the same pixels (so that what lies in the bands does not count; a
visible seam would make it clearly negative). NL-means (skimage, sigma estimated)
is the classical point of reference (noise level estimated; without PyWavelets
the true Gaussian sigma, and none for other noise).

Run ``python benchmarks/tiling.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset as ev  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: the tuning half's kinds (gray photo, fluorescence, RGB photo, texture); ``--cases`` takes
#: others, e.g. the held-out half's moon, nuclei2, chelsea, grass
CASES = ("camera/sigma25", "nuclei1/sigma25", "astronaut/sigma25", "brick/sigma25")
#: per ``--compare``: the names of the baseline run and of the tiled run it is compared with
LABELS = {"whole": ("whole", "tiles"), "warm": ("cold tiles", "warm tiles")}


def blend_band(height: int, width: int, tile: int, overlap: int) -> npt.NDArray[np.bool_]:
    """True on the pixels where two or more tiles are blended."""
    from napari_specdip.core.tiling import tile_grid

    count = np.zeros((height, width), int)
    for t in tile_grid(height, width, tile=tile, overlap=overlap):
        count[t.slices()] += 1
    return count > 1


def _run(observed: npt.NDArray[Any], clean: npt.NDArray[Any], options: dict[str, Any],
         budget: float) -> dict[str, Any]:
    result, seconds = _common.restore_within(budget, observed, **options)
    image = np.clip(np.asarray(result.image, dtype=np.float64), 0.0, 1.0)
    return {"psnr": ev.psnr(image, clean), "seconds": seconds,
            "iterations": result.iterations, "stop": result.stop_reason, "image": image}


def case(spec: dict[str, Any]) -> dict[str, Any]:
    """One image: the baseline run (the whole image, or cold tiles), the tiled run,
    NL-means."""
    _common.set_threads(spec["threads"])
    name, label = spec["case"].split("/")
    size, tile, overlap = spec["size"], spec["tile"], spec["overlap"]
    clean = ev.load(name, size)
    degradation = ev.parse_degradation(label)
    observed, _ = degradation.apply(clean, seed=0)
    observed = observed.astype(np.float32)
    options = {"preset": spec["preset"], "seed": 0, "num_threads": spec["threads"],
               "channel_axis": -1 if observed.ndim == 3 else None,
               **ev.engine_options(degradation, spec["max_iterations"])}
    if spec["width"] is not None:
        options["width"] = spec["width"]
    tiles = {**options, "tile": tile, "tile_overlap": overlap}
    compare = spec.get("compare", "whole")
    if compare == "warm":  # tiles from scratch, then warm-started
        whole = _run(observed, clean, {**tiles, "tile_warm_start": False}, spec["budget"])
        tiled = _run(observed, clean, {**tiles, "tile_warm_start": True}, 0.0)
    else:
        whole = _run(observed, clean, options, spec["budget"])
        tiled = _run(observed, clean, tiles, 0.0)
    band = blend_band(size, size, tile, overlap)
    a, b = tiled.pop("image"), whole.pop("image")
    seam = ((ev.psnr(a[band], clean[band]) - ev.psnr(b[band], clean[band]))
            - (ev.psnr(a[~band], clean[~band]) - ev.psnr(b[~band], clean[~band])))
    start = time.perf_counter()
    # the estimated noise level; the true one for Gaussian noise where PyWavelets is missing
    known = degradation.level / 255.0 if degradation.kind == "gaussian" else None
    nlm = math.nan
    if known is not None or ev.estimated_sigma(observed) is not None:
        nlm = ev.psnr(np.clip(ev.nl_means(observed, known), 0, 1), clean)
    row = {"image": name, "noise": label, "kind": ev.kind(name), "size": size,
           "preset": spec["preset"], "compare": compare, "tile": tile,
           "overlap": overlap, "budget": spec["budget"],
           "whole": whole, "tiled": tiled, "seam_db": seam, "nl_means": nlm,
           "nl_means_seconds": time.perf_counter() - start}
    base, new = LABELS[compare]
    _common.echo(f"# {name}/{label} {size} px: {base} {whole['psnr']:.2f} dB in "
                 f"{whole['seconds']:.0f} s, {new} {tiled['psnr']:.2f} dB in "
                 f"{tiled['seconds']:.0f} s, seam {seam:+.2f} dB, NL-means {nlm:.2f}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cases", nargs="+", default=list(CASES),
                        help="image/degradation, e.g. camera/sigma25 nuclei1/pg30r2")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--budget", type=float, default=0.0,
                        help="seconds for the whole-image run (0: to its own stop)")
    parser.add_argument("--width", type=int, default=None, help="default: the preset's")
    parser.add_argument("--max-iterations", type=int, default=None,
                        help="default: the preset's")
    parser.add_argument("--compare", choices=tuple(LABELS), default="whole",
                        help="the baseline: whole (one network for the whole image) or warm "
                             "(the same tiles, each fitted from scratch, against warm-started "
                             "tiles)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="cases run in this many processes")
    parser.add_argument("--out", default=str(RESULTS / "tiling_cpu256"))
    args = parser.parse_args(argv)
    cases = [{"case": c, "size": args.size, "preset": args.preset, "tile": args.tile,
              "overlap": args.overlap, "budget": args.budget, "threads": args.threads,
              "width": args.width, "max_iterations": args.max_iterations,
              "compare": args.compare}
             for c in args.cases]
    rows = _common.map_cases(case, cases, args.jobs)
    base, new = LABELS[args.compare]
    header = ["image", "noise", "kind", "px", f"{base} dB", f"{base} s (it, stop)", f"{new} dB",
              f"{new} s (it)", f"{new} - {base} dB", "time ratio", "seam dB", "NL-means dB"]
    table = [[r["image"], r["noise"], r["kind"], r["size"], f"{r['whole']['psnr']:.2f}",
              f"{r['whole']['seconds']:.0f} ({r['whole']['iterations']}, {r['whole']['stop']})",
              f"{r['tiled']['psnr']:.2f}",
              f"{r['tiled']['seconds']:.0f} ({r['tiled']['iterations']})",
              f"{r['tiled']['psnr'] - r['whole']['psnr']:+.2f}",
              f"{r['tiled']['seconds'] / r['whole']['seconds']:.2f}",
              f"{r['seam_db']:+.2f}", f"{r['nl_means']:.2f}"] for r in rows]
    gain = [r["tiled"]["psnr"] - r["whole"]["psnr"] for r in rows]
    ratio = [r["tiled"]["seconds"] / r["whole"]["seconds"] for r in rows]
    lines = [*_common.machine_lines("cpu"),
             f"settings: {args.size} px, preset {args.preset}, tiles of {args.tile} px with "
             f"{args.overlap} px overlap; {base} against {new}; {base} budget "
             f"{'none (its own stop)' if not args.budget else f'{args.budget:.0f} s'}; torch "
             f"threads {args.threads}, {args.jobs} process(es)", "",
             _common.format_table(header, table, markdown=True), "",
             f"mean {new} - {base}: {np.mean(gain):+.2f} dB; mean time ratio ({new} / {base}): "
             f"{np.mean(ratio):.2f}"]
    _common.write_report(args.out, lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
