"""Ensembles: the K-member mean against single runs, its cost, and its uncertainty map.

For each image, ``restore(..., ensemble=K)`` (seed 0: members seeded 0..K-1, fitted
together as one grouped network) and the K single runs with seeds 0..K-1, all with the
engine's defaults. Reported:

- PSNR / SSIM of the ensemble's result, the single runs' mean PSNR, and the mean of the
  K single results (an ensemble made of sequential runs);
- cost: the ensemble's wall time over one single run's (mean), and per member-iteration
  (ensemble seconds / (K x its iterations) over single seconds / iterations);
- uncertainty: Pearson correlation of ``result.uncertainty`` with the absolute error of
  the result against the clean image, per pixel and over 4x4 blocks (block means).

Images: the microscopy set of ``photon.py`` at a peak of 30 photons, read noise 2
(``noise="poisson-gaussian"``, camera values estimated), and the gray camera man with
Gaussian noise sigma 25/255 (``noise="gaussian"``).

Run ``python benchmarks/ensemble.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _microscopy as micro  # noqa: E402

IMAGES = (*micro.MICROSCOPY_IMAGES, "camera")
RESULTS = Path(__file__).resolve().parent / "results"


def observation(name: str, size: int, peak: float) -> tuple[np.ndarray, np.ndarray, Any, dict[str, Any]]:
    """(noisy input, clean [0, 1], map from the result to [0, 1], restore options)."""
    if name == "camera":
        from napari_specdip.samples import add_gaussian_noise

        clean = _common.crop(_common.load_image("camera", gray=True), size)
        return add_gaussian_noise(clean, seed=0), clean, np.asarray, {"noise": "gaussian"}
    clean = micro.load(name, size)
    camera = micro.Camera(peak=peak, read=2.0)
    return (camera.expose(clean, 0), clean, camera.to_unit,
            {"noise": "poisson-gaussian", "output_dtype": "float32"})


def run(case: dict[str, Any]) -> dict[str, Any]:
    from napari_specdip import restore

    if case["threads"]:
        _common.set_threads(case["threads"])
    noisy, clean, to_unit, options = observation(case["image"], case["size"], case["peak"])
    extra = {k: v for k, v in (("width", case["width"]), ("max_iterations", case["max_iterations"]),
                               ("learning_rate", case["lr"]), ("stop", case["stop"]))
             if v is not None}
    start = time.perf_counter()
    result = restore(noisy, seed=case["seed"], ensemble=case["k"], device=case["device"],
                     **options, **extra)
    seconds = time.perf_counter() - start
    image = np.asarray(to_unit(result.image), dtype=np.float64)
    psnr, ssim = micro.score(image, clean)
    out: dict[str, Any] = {**case, "psnr": psnr, "ssim": ssim, "iterations": result.iterations,
                           "stop": result.stop_reason, "seconds": seconds, "image_unit": image}
    if result.uncertainty is not None:
        unit_std = np.asarray(to_unit(result.uncertainty), dtype=np.float64) \
            - np.asarray(to_unit(np.zeros_like(result.uncertainty)), dtype=np.float64)
        error = np.abs(np.clip(image, 0, 1) - clean)
        out["corr_pixel"] = float(np.corrcoef(unit_std.ravel(), error.ravel())[0, 1])
        b = 4
        h, w = (s - s % b for s in error.shape)

        def blocks(x: np.ndarray) -> np.ndarray:
            return x[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3)).ravel()

        out["corr_block"] = float(np.corrcoef(blocks(unit_std), blocks(error))[0, 1])
        out["mean_std"] = float(unit_std.mean())
    _common.echo(f"# {case['image']} K={case['k']} seed {case['seed']}: {psnr:.2f} dB, "
                 f"{result.iterations} it ({result.stop_reason}), {seconds:.1f} s"
                 + (f", corr {out['corr_pixel']:.2f}" if "corr_pixel" in out else ""))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", nargs="+", default=list(IMAGES), choices=IMAGES)
    parser.add_argument("--members", "-k", type=int, default=4, help="ensemble size K (4)")
    parser.add_argument("--peak", type=float, default=30.0, help="photons at the peak (30)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--stop", default=None,
                        help="stop rule (engine default); 'none' compares at --max-iterations")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="small CPU check: 64 px, width 16, 300 iterations, K=2, two images")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.width = 64, args.width or 16
        args.max_iterations = args.max_iterations or 300
        args.members = 2 if args.members == 4 else args.members
        args.images = ["nuclei", "camera"] if args.images == list(IMAGES) else args.images
    if args.out is None:
        args.out = str(RESULTS / ("ensemble_quick" if args.quick else "ensemble"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    lines = _common.machine_lines(args.device) + [
        f"settings: {args.size} px, K={args.members}, microscopy at peak {args.peak:g} photons "
        f"(read noise 2, noise='poisson-gaussian'), camera with Gaussian sigma 25/255; width "
        f"{args.width or 'default'}, max iterations {args.max_iterations or 'default'}, "
        f"stop {args.stop or 'default'}, engine defaults otherwise; {args.jobs} process(es)", ""]
    _common.echo(*lines)
    common = {"size": args.size, "peak": args.peak, "width": args.width, "lr": args.lr,
              "stop": args.stop,
              "max_iterations": args.max_iterations, "device": args.device,
              "threads": args.threads}
    cases = [{**common, "image": i, "k": args.members, "seed": 0} for i in args.images]
    cases += [{**common, "image": i, "k": 1, "seed": s} for i in args.images
              for s in range(args.members)]
    start = time.perf_counter()
    outs = _common.map_cases(run, cases, args.jobs)
    wall = time.perf_counter() - start

    rows, records = [], []
    for name in args.images:
        _, clean, _, _ = observation(name, args.size, args.peak)
        ens = next(o for o in outs if o["image"] == name and o["k"] > 1)
        singles = [o for o in outs if o["image"] == name and o["k"] == 1]
        single_psnr = float(np.mean([s["psnr"] for s in singles]))
        averaged = micro.score(np.mean([s["image_unit"] for s in singles], axis=0), clean)
        single_s = float(np.mean([s["seconds"] for s in singles]))
        single_it = float(np.mean([s["iterations"] for s in singles]))
        per_member_it = (ens["seconds"] / (args.members * ens["iterations"])) / (single_s / single_it)
        record = {"image": name, "ensemble_psnr": ens["psnr"], "ensemble_ssim": ens["ssim"],
                  "single_psnr": single_psnr, "single_psnrs": [s["psnr"] for s in singles],
                  "averaged_singles_psnr": averaged[0], "gain_db": ens["psnr"] - single_psnr,
                  "cost_ratio": ens["seconds"] / single_s, "per_member_iteration": per_member_it,
                  "ensemble_iterations": ens["iterations"], "single_iterations": single_it,
                  "corr_pixel": ens["corr_pixel"], "corr_block": ens["corr_block"]}
        records.append(record)
        rows.append([name, f"{single_psnr:.2f}", f"{ens['psnr']:.2f}", f"{record['gain_db']:+.2f}",
                     f"{averaged[0]:.2f}", f"{ens['iterations']} / {single_it:.0f}",
                     f"{record['cost_ratio']:.2f}x", f"{per_member_it:.2f}x",
                     f"{ens['corr_pixel']:.2f}", f"{ens['corr_block']:.2f}"])
    header = ["image", "single PSNR (mean)", f"K={args.members} PSNR", "gain dB",
              "mean of singles", "its ens / single", "time ratio", "per member-it",
              "corr(std, abs error) px", "corr 4x4 blocks"]
    summary = {
        "mean gain dB (ensemble - single)": float(np.mean([r["gain_db"] for r in records])),
        "mean time ratio": float(np.mean([r["cost_ratio"] for r in records])),
        "mean per member-iteration cost": float(np.mean([r["per_member_iteration"] for r in records])),
        "mean corr per pixel": float(np.mean([r["corr_pixel"] for r in records])),
        "mean corr 4x4 blocks": float(np.mean([r["corr_block"] for r in records])),
        "wall seconds": round(wall, 1),
    }
    text = "\n".join(["## Ensemble vs single runs", "",
                      _common.format_table(header, rows, markdown=True), "", "## Summary", ""]
                     + [f"- {k}: {v:.2f}" for k, v in summary.items()])
    _common.echo(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n" + text + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps({"settings": vars(args), "machine": lines,
                                                    "records": records, "summary": summary},
                                                   indent=1, default=str), encoding="utf-8")
    _common.echo(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
