"""PSNR against wall-clock time for each preset, with NL-means and BM3D as points.

For every (image, size, task) and preset, one run with the clean image as the
reference records the PSNR of the last iterate and of the moving average at each
evaluated step against the seconds since the start; the run ends at its own stop
or at ``--budget`` seconds (marked, its curve cut there). The presets' costs per
iteration are also timed on their own (a few steps), so a preset that cannot
finish within the budget on this machine still gets an honest time estimate of
a whole run: ``s/it x iterations to its stop`` where the stop is known.

Output: a table (markdown with ``--markdown``), a JSON of every curve and a PNG
with one panel per (image, size, task): solid lines the moving average, dotted
the last iterate, crosses at each preset's returned result, NL-means and BM3D
as points at their own times.

python benchmarks/time_to_quality.py --sizes 128 256 --budget 300 --out benchmarks/results/ttq
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset  # noqa: E402

PRESETS = ("quick", "balanced", "paper")
CASES = {  # (image, degradation)
    "gray denoise": ("camera", "sigma25"),
    "RGB denoise": ("astronaut", "sigma25"),
    "gray inpaint": ("camera", "inpaint0.5"),
}


def run_case(image: str, degradation: str, size: int, preset: str, budget: float,
             device: str) -> dict[str, Any]:
    from napari_specdip import iter_restore
    from napari_specdip.core.engine import run_to_end
    from napari_specdip.core.results import StepReport

    deg = _evalset.parse_degradation(degradation)
    clean = _evalset.load(image, size)
    observation, missing = deg.apply(clean, seed=0)
    axis = -1 if clean.ndim == 3 else None
    stop = threading.Event()
    start = time.perf_counter()

    def watch(report: StepReport) -> None:
        if time.perf_counter() - start > budget:
            stop.set()

    result = run_to_end(iter_restore(observation, deg.task, channel_axis=axis, mask=missing,
                                     reference=clean, preset=preset, device=device,
                                     preview_every=0, interrupt=stop), watch)
    h = result.history
    psnr_result = _evalset.psnr(result.image.astype(float), clean)
    return {"image": image, "degradation": degradation, "size": size, "preset": preset,
            "iterations": result.iterations, "stop_reason": result.stop_reason,
            "stopped_by_budget": result.stop_reason == "stopped",
            "seconds": result.elapsed, "psnr": psnr_result,
            "seconds_per_iteration": result.elapsed / max(1, result.iterations),
            # a tiled run's curves are each tile's own PSNR on its tile, one tile after another
            "tiles": int(result.parameters.get("tiles_restored", 1)),
            "curve_seconds": [float(h["elapsed"][int(i) - 1]) for i in h["signal_iteration"]],
            "curve_psnr_last": [float(v) for v in h.get("psnr", [])],
            "curve_psnr_ema": [float(v) for v in h.get("psnr_ema", h.get("psnr", []))]}


def baseline_points(image: str, degradation: str, size: int) -> dict[str, tuple[float, float]]:
    deg = _evalset.parse_degradation(degradation)
    clean = _evalset.load(image, size)
    observation, missing = deg.apply(clean, seed=0)
    points: dict[str, tuple[float, float]] = {}
    if deg.task == "denoise":
        t = time.perf_counter()
        restored = _evalset.nl_means(observation, deg.level / 255.0)
        points["NL-means"] = (time.perf_counter() - t, _evalset.psnr(restored, clean))
        t = time.perf_counter()
        bm3d = _evalset.bm3d(observation)
        if bm3d is not None:
            points["BM3D"] = (time.perf_counter() - t, _evalset.psnr(bm3d, clean))
    elif deg.task == "inpaint" and missing is not None:
        from skimage.restoration import inpaint_biharmonic

        t = time.perf_counter()
        filled = inpaint_biharmonic(observation, missing,
                                    channel_axis=-1 if clean.ndim == 3 else None)
        points["biharmonic"] = (time.perf_counter() - t, _evalset.psnr(filled, clean))
    return points


def plot(records: list[dict[str, Any]], baselines: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["image"], r["degradation"], r["size"]) for r in records})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colors = {"quick": "tab:green", "balanced": "tab:blue", "paper": "tab:red"}
    for ax, panel in zip(axes[0], panels, strict=True):
        for r in records:
            if (r["image"], r["degradation"], r["size"]) != panel:
                continue
            c = colors[r["preset"]]
            label = r["preset"] + (" (last iterate)" if r["preset"] == "paper" else "")
            if r.get("tiles", 1) > 1:  # its curves are each tile's own: the result alone
                ax.plot([r["seconds"]], [r["psnr"]], "x", color=c, ms=8,
                        label=f"{r['preset']} ({r['tiles']} tiles)")
                continue
            ax.plot(r["curve_seconds"], r["curve_psnr_ema"], color=c, label=label)
            ax.plot(r["curve_seconds"], r["curve_psnr_last"], color=c, ls=":", lw=0.8)
            ax.plot([r["seconds"]], [r["psnr"]], "x", color=c, ms=8)
        for name, (seconds, value) in baselines["|".join(map(str, panel))].items():
            ax.plot([max(seconds, 0.05)], [value], "o", color="k" if name != "BM3D" else "0.5")
            ax.annotate(name, (max(seconds, 0.05), value), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("seconds (this machine)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"{panel[0]} {panel[2]} px, {panel[1]}", fontsize=9)
        ax.legend(fontsize=7, loc="lower right",
                  title="solid: moving average, dotted: last; x: result", title_fontsize=6)
        finite = [v for r in records if (r["image"], r["degradation"], r["size"]) == panel
                  for v in ([r["psnr"]] if r.get("tiles", 1) > 1 else r["curve_psnr_ema"])
                  if np.isfinite(v)]
        if finite:  # the baselines' points stay in view
            points = [v for _, v in baselines["|".join(map(str, panel))].values()]
            top = max([*finite, *points])
            ax.set_ylim(max(min(finite), top - 12), top + 1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per run (600)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/time_to_quality"))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--replot", nargs="+", type=Path, metavar="JSON",
                        help="draw the PNG (--out) from earlier runs' JSON files, run nothing")
    args = parser.parse_args(argv)
    if args.replot:
        loaded = [json.loads(path.read_text()) for path in args.replot]
        plot([r for d in loaded for r in d["runs"]],
             {k: v for d in loaded for k, v in d["baselines"].items()}, args.out.with_suffix(".png"))
        return 0
    _common.set_threads(args.threads)
    _common.echo(*_common.machine_lines(args.device),
                 f"budget {args.budget:.0f} s per run; other work on the machine: see the "
                 "load average below", "")
    from napari_specdip import restore

    # first calls pay for imports and allocator warm-up: not part of any preset's time
    restore(np.random.default_rng(0).random((32, 32)), width=8, max_iterations=2, stop="none",
            device=args.device)
    records: list[dict[str, Any]] = []
    baselines: dict[str, Any] = {}
    for size in args.sizes:
        for case in args.cases:
            image, degradation = CASES[case]
            baselines[f"{image}|{degradation}|{size}"] = baseline_points(image, degradation, size)
            for preset in args.presets:
                records.append(run_case(image, degradation, size, preset, args.budget,
                                        args.device))
                r = records[-1]
                _common.echo(f"{case} {size} px {preset}: {r['psnr']:.2f} dB after "
                             f"{r['iterations']} it, {r['seconds']:.0f} s ({r['stop_reason']})")
    rows = []
    for r in records:
        base = baselines[f"{r['image']}|{r['degradation']}|{r['size']}"]
        best = max([r["psnr"], *r["curve_psnr_ema"], *r["curve_psnr_last"]])
        tiles = r.get("tiles", 1)
        gap = f"{best - r['psnr']:.2f}" if tiles == 1 else f"n/a ({tiles} tiles)"
        rows.append([r["image"], r["degradation"], r["size"], r["preset"],
                     f"{r['seconds_per_iteration']:.3f}", r["iterations"],
                     f"{r['seconds']:.0f}" + ("*" if r["stopped_by_budget"] else ""),
                     f"{r['psnr']:.2f}", gap,
                     " ".join(f"{k} {v[1]:.2f} ({v[0]:.1f} s)" for k, v in base.items())])
    _common.echo("", _common.format_table(
        ["image", "degradation", "px", "preset", "s/it", "iterations", "seconds", "PSNR",
         "gap to run's best", "baselines"], rows, markdown=args.markdown),
        "(* the run hit the time budget; its PSNR is what it had then)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"runs": records,
                                                         "baselines": baselines}, indent=1))
    plot(records, baselines, args.out.with_suffix(".png"))
    _common.echo(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
