"""Photon-level denoising: our Poisson-Gaussian noise model against BM3D and NL-means.

Fluorescence-like images (``_microscopy.py``: skimage's bundled ``cell``, synthetic
nuclei and synthetic puncta), exposed by a simulated camera:
``100 + 2 * (Poisson(clean * peak) + N(0, read^2))`` ADU, uint16, at peaks of 5, 10,
30 and 100 photons. Methods, all scored on the photon scale divided by the peak
(PSNR with data range 1, SSIM):

- ``noisy``: the exposure itself;
- ``BM3D``: ``bm3d.bm3d`` on the ADU image with the noise's overall sigma (the root
  of its mean variance; what a Gaussian denoiser is given);
- ``BM3D+GAT``: generalized Anscombe transform with the TRUE camera values, BM3D at
  sigma 1, the exact unbiased inverse (Makitalo & Foi 2013; the package's
  ``StabilisedDomain``);
- ``NLM+GAT``: the same with ``skimage.restoration.denoise_nl_means`` (h = 0.8,
  sigma 1, 5x5 patches, distance 6, fast mode) in place of BM3D;
- ``ours (gaussian)``: ``napari_specdip.restore`` with the engine's defaults;
- ``ours (GAT)``: ``noise="poisson-gaussian"`` (camera values ESTIMATED from the
  image, the GAT before the fit and its exact unbiased inverse after);
- ``ours (weighted)``: ``noise="poisson-gaussian", noise_fit="weighted"`` (squared
  error weighted by the inverse signal-dependent variance, in the data's space);
- ``ours (weighted, K=4)``: the same with ``ensemble=4`` (the mean of four seeds,
  fitted as one grouped network).

Our runs use seed 0 and the engine's defaults (width, stop rule, EMA output) unless
``--width``, ``--max-iterations`` or ``--lr`` say otherwise; each run stops with the
engine's default rule and its result is scored as returned. The output of every
signal step (every 5th iteration) is scored too, so the table also says how far the
automatic stop landed from the best output of its own run ("gap"). A separate table
checks the noise estimator: gain and read noise estimated from each exposure against
the truth, for every peak and read noise 1-3, with the offset estimated (black level)
and given.

BM3D (``pip install bm3d``; non-commercial licence, benchmark only) is skipped when
it cannot be imported. Work runs in ``--jobs`` processes (our runs on ``--device``,
the classical methods on the CPU cores). ``--quick`` is a small CPU check.

Run ``python benchmarks/photon.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _microscopy as micro  # noqa: E402

OURS = {"ours (gaussian)": {"noise": "gaussian"},
        "ours (GAT)": {"noise": "poisson-gaussian", "noise_fit": "anscombe"},
        "ours (weighted)": {"noise": "poisson-gaussian", "noise_fit": "weighted"},
        "ours (weighted, K=4)": {"noise": "poisson-gaussian", "noise_fit": "weighted",
                                 "ensemble": 4}}
CLASSICAL = ("noisy", "BM3D", "BM3D+GAT", "NLM+GAT")
RESULTS = Path(__file__).resolve().parent / "results"


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except Exception:  # noqa: BLE001  (any import failure means: skip it)
        return False
    return True


def _bm3d(image: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(bm3d.bm3d(image, sigma_psd=sigma), dtype=np.float64)


def classical(case: dict[str, Any]) -> dict[str, Any]:
    """Every non-DIP method on one exposure."""
    from skimage.restoration import denoise_nl_means

    clean = micro.load(case["image"], case["size"])
    camera = micro.Camera(peak=case["peak"], read=case["read"])
    adu = camera.expose(clean, case["seed"])
    out: dict[str, Any] = {"noisy": micro.score(camera.to_unit(adu), clean)}
    domain, unit, low, high = micro.gat_pair(adu, camera)
    fitted = domain.forward(unit)
    scale = high - low
    start = time.perf_counter()
    nlm = denoise_nl_means(fitted, h=0.8 * domain.noise_sigma, sigma=domain.noise_sigma,
                           fast_mode=True, patch_size=5, patch_distance=6)
    out["NLM+GAT"] = micro.score(camera.to_unit(low + scale * domain.inverse(nlm)), clean)
    if case["bm3d"]:
        expected = camera.offset + camera.gain * camera.peak * clean
        sigma = math.sqrt(float(np.mean(camera.gain * (expected - camera.offset)
                                        + (camera.gain * camera.read) ** 2)))
        out["BM3D"] = micro.score(camera.to_unit(_bm3d(adu.astype(np.float64), sigma)), clean)
        gat = _bm3d(fitted, domain.noise_sigma)
        out["BM3D+GAT"] = micro.score(camera.to_unit(low + scale * domain.inverse(gat)), clean)
    out["seconds"] = time.perf_counter() - start
    return out


def replay_discrepancy(result: Any, sigma2: float | None, window: int = 20) -> int | None:
    """First iteration where the loss, averaged over ``window`` steps, reaches the noise
    variance of the space the network fits (Morozov's discrepancy principle), or None."""
    if sigma2 is None:
        return None
    loss = np.asarray(result.history["loss"], dtype=np.float64)
    if loss.size < window:
        return None
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    below = np.flatnonzero(smooth <= sigma2)
    return None if below.size == 0 else int(result.history["iteration"][below[0] + window - 1])


def ours(case: dict[str, Any]) -> dict[str, Any]:
    """One engine run with its default stop (at most the budget): the result is exactly
    what a user gets, scored as returned (and the ensemble's uncertainty map is that of
    the returned output). The output of every signal step (where a stop rule can return
    one) is scored too, so the best output of the run up to the stop is known."""
    from napari_specdip import RestoreParameters, iter_restore
    from napari_specdip.core.engine import run_to_end
    from napari_specdip.core.results import StepReport

    if case["threads"]:
        _common.set_threads(case["threads"])
    clean = micro.load(case["image"], case["size"])
    camera = micro.Camera(peak=case["peak"], read=case["read"])
    adu = camera.expose(clean, case["seed"])
    options = {k: v for k, v in (("width", case["width"]), ("learning_rate", case["lr"]))
               if v is not None}
    defaults = RestoreParameters.for_task("denoise", **options)
    budget = case["budget"] or defaults.max_iterations
    params = defaults.replace(max_iterations=budget, track_variance=True,
                              preview_every=defaults.signal_every, seed=0, device=case["device"],
                              **OURS[case["method"]])
    curve: dict[int, float] = {}

    def follow(report: StepReport) -> None:
        if report.preview is not None and report.iteration % defaults.signal_every == 0:
            curve[report.iteration] = micro.score(
                camera.to_unit(report.preview).astype(np.float32), clean)[0]

    start = time.perf_counter()
    result = run_to_end(iter_restore(adu, parameters=params, output_dtype="float32"), follow)
    seconds = time.perf_counter() - start
    image = camera.to_unit(result.image)
    psnr, ssim = micro.score(image, clean)
    stop = int(result.stop_iteration)
    curve.setdefault(stop, psnr)  # a run shorter than one signal interval
    best_iteration = max(curve, key=lambda k: curve[k])
    best = max(curve[best_iteration], psnr)
    record = result.parameters.get("noise_model") or {}
    sigma2 = (record.get("fitted_sigma", 0.0) ** 2 if record.get("fit") == "anscombe"
              else record.get("mean_variance"))
    discrepancy = replay_discrepancy(result, sigma2)
    scored = np.asarray(sorted(curve))
    out = {"psnr": psnr, "ssim": ssim,
           "stop_iteration": stop, "fired_iteration": int(result.iterations),
           "fired": result.stop_reason not in ("max_iterations", "stopped"),
           "best": best, "best_iteration": best_iteration if best > psnr else stop,
           "gap": best - psnr, "last": curve.get(int(result.iterations), math.nan),
           "discrepancy_iteration": discrepancy,
           "discrepancy_psnr": None if discrepancy is None else curve[
               int(scored[scored <= max(discrepancy, int(scored[0]))][-1])],
           "seconds": seconds, "iterations": result.iterations,
           "ms_per_iteration": 1000 * seconds / max(result.iterations, 1),
           "device": result.device, "noise_model": record or None,
           "width": result.parameters["width"]}
    if result.uncertainty is not None:
        # a spread in ADU, on the photons / peak scale of the scores
        spread = camera.spread_to_unit(result.uncertainty)
        error = np.abs(np.clip(image, 0.0, 1.0) - clean)
        out["uncertainty_corr"] = float(np.corrcoef(spread.ravel(), error.ravel())[0, 1])
    _common.echo(f"# {case['image']} peak {case['peak']:g} read {case['read']:g} {case['method']}: "
                 f"stop {stop} -> {out['psnr']:.2f} dB, best {out['best']:.2f} at "
                 f"{out['best_iteration']}, discrepancy stop {discrepancy} -> "
                 f"{out['discrepancy_psnr'] or math.nan:.2f} dB; {seconds:.0f} s "
                 f"({out['ms_per_iteration']:.1f} ms/it)"
                 + (f", corr(std, |error|) {out['uncertainty_corr']:.2f}"
                    if "uncertainty_corr" in out else ""))
    return out


def estimator_rows(images: list[str], size: int, peaks: list[float], reads: list[float],
                   seeds: int) -> list[dict[str, Any]]:
    """Camera values estimated from exposures vs the truth (median over seeds)."""
    from napari_specdip.core.noise import estimate_poisson_gaussian

    rows = []
    for name in images:
        clean = micro.load(name, size)
        for peak in peaks:
            for read in reads:
                camera = micro.Camera(peak=peak, read=read)
                ratios: dict[str, list[float]] = {"gain": [], "read noise": [], "read noise (offset given)": []}
                for seed in range(seeds):
                    adu = camera.expose(clean, 1000 + seed).astype(np.float64)
                    low, high = float(adu.min()), float(adu.max())
                    unit = (adu - low) / (high - low)
                    found = estimate_poisson_gaussian(unit).model.to_camera(low=low, high=high)
                    given = estimate_poisson_gaussian(
                        unit, black=(camera.offset - low) / (high - low)).model.to_camera(
                        low=low, high=high)
                    truth = camera.truth()
                    ratios["gain"].append(found["gain"] / truth["gain"])
                    ratios["read noise"].append(found["read_sigma"] / truth["read_sigma"])
                    ratios["read noise (offset given)"].append(given["read_sigma"] / truth["read_sigma"])
                rows.append({"image": name, "size": size, "peak": peak, "read": read,
                             **{k: float(np.median(v)) for k, v in ratios.items()},
                             **{f"{k} worst": float(max(v, key=lambda r: abs(r - 1)))
                                for k, v in ratios.items()}})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="image side in px (128)")
    parser.add_argument("--images", nargs="+", default=list(micro.MICROSCOPY_IMAGES),
                        choices=micro.MICROSCOPY_IMAGES)
    parser.add_argument("--peaks", type=float, nargs="+", default=[5, 10, 30, 100],
                        help="photons at the brightest clean pixel (5 10 30 100)")
    parser.add_argument("--reads", type=float, nargs="+", default=[2.0],
                        help="read noise in photons for the denoising runs (2)")
    parser.add_argument("--methods", nargs="+", default=list(OURS), choices=list(OURS),
                        help="our variants to run (all three)")
    parser.add_argument("--width", type=int, default=None, help="network width (engine default)")
    parser.add_argument("--budget", "--max-iterations", dest="budget", type=int, default=None,
                        help="the most iterations each of our runs makes (it stops with the "
                             "engine's default rule); default: the engine's cap")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (engine default)")
    parser.add_argument("--device", default="cpu", help="device of our runs (cpu; cuda)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="CPU worker processes: classical methods, and our runs on the CPU (1)")
    parser.add_argument("--gpu-procs", type=int, default=1,
                        help="processes sharing the GPU for our runs when --device is not cpu (1; "
                             "measured: 15 processes sharing one H100 ran 30x slower each)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1)")
    parser.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=[0],
                        help="noise seeds: one exposure of each image and peak per seed (0); "
                             "the tables average over them")
    parser.add_argument("--no-bm3d", dest="bm3d", action="store_false")
    parser.add_argument("--estimator-size", type=int, default=256,
                        help="image side of the estimator check (256; 0 skips it)")
    parser.add_argument("--estimator-seeds", type=int, default=3)
    parser.add_argument("--estimator-only", action="store_true",
                        help="only the estimator check (seconds; no denoising)")
    parser.add_argument("--quick", action="store_true",
                        help="small CPU check: 64 px, width 16, 300 iterations, peaks 5 and 30, "
                             "cell and nuclei, estimator at 128 px with 1 seed")
    parser.add_argument("--out", default=None,
                        help="prefix of the .md and .json written (benchmarks/results/photon"
                             "[_quick])")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.width = 64, args.width or 16
        args.budget = args.budget or 300
        args.peaks, args.images = [5.0, 30.0], ["cell", "nuclei"]
        args.estimator_size = min(args.estimator_size, 128)
        args.estimator_seeds = 1
    if args.out is None:
        args.out = str(RESULTS / ("photon_quick" if args.quick else "photon"))
    return args


def _cell(pair: Any) -> str:
    return "-" if pair is None else f"{pair[0]:.2f} / {pair[1]:.3f}"


def _execute(args: argparse.Namespace, dip: list[dict[str, Any]],
             classic: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Our runs and the classical methods, in parallel where asked: on a GPU our runs
    get their own few processes (sharing one GPU among many processes is slow), the
    classical methods the CPU pool."""
    import multiprocessing as mp

    on_cpu = args.device == "cpu"
    cpu_jobs = max(1, args.jobs)
    gpu_jobs = 0 if on_cpu else max(1, args.gpu_procs)
    if cpu_jobs == 1 and gpu_jobs <= 1:
        return [ours(d) for d in dip], [classical(c) for c in classic]
    spawn = mp.get_context("spawn")
    with ProcessPoolExecutor(cpu_jobs, mp_context=spawn) as cpu_pool:
        if on_cpu:
            dip_futures = [cpu_pool.submit(ours, d) for d in dip]
            classic_futures = [cpu_pool.submit(classical, c) for c in classic]
            return [f.result() for f in dip_futures], [f.result() for f in classic_futures]
        classic_futures = [cpu_pool.submit(classical, c) for c in classic]
        with ProcessPoolExecutor(gpu_jobs, mp_context=spawn) as gpu_pool:
            dip_out = list(gpu_pool.map(ours, dip))
        return dip_out, [f.result() for f in classic_futures]


def _estimator_table(args: argparse.Namespace, est_rows: list[dict[str, Any]],
                     summary: dict[str, Any]) -> list[str]:
    est_rows += estimator_rows(args.images, args.estimator_size, args.peaks, [1.0, 2.0, 3.0],
                               args.estimator_seeds)
    md = [f"## Estimated / true camera values ({args.estimator_size} px, median over "
          f"{args.estimator_seeds} exposures; worst in brackets)", ""]
    keys = ("gain", "read noise", "read noise (offset given)")
    header = ["image", "peak", "read", "gain", "read noise (offset estimated)",
              "read noise (offset given)"]
    rows = [[e["image"], f"{e['peak']:g}", f"{e['read']:g}",
             *(f"{e[k]:.2f} ({e[k + ' worst']:.2f})" for k in keys)] for e in est_rows]
    md += [_common.format_table(header, rows, markdown=True), ""]
    for k in keys:
        within = sum(abs(e[k] - 1) <= 0.2 for e in est_rows)
        worst = sum(abs(e[k + " worst"] - 1) <= 0.2 for e in est_rows)
        summary[f"estimated {k} within 20%: median of exposures / every exposure"] = (
            f"{within}/{len(est_rows)} / {worst}/{len(est_rows)}")
    return md


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    from napari_specdip import RestoreParameters

    use_bm3d = args.bm3d and bm3d_available()
    defaults = RestoreParameters.for_task("denoise")
    lines = _common.machine_lines(args.device)
    lines += [
        f"settings: {args.size} px, peaks {args.peaks} photons, read noise {args.reads} photons, "
        f"camera gain {micro.GAIN_ADU} ADU/photon, offset {micro.OFFSET_ADU} ADU, uint16, "
        f"noise seed(s) {' '.join(map(str, args.seeds))}; "
        f"ours: seed 0, width {args.width or defaults.width}, "
        f"lr {args.lr or defaults.learning_rate}, "
        f"at most {args.budget or defaults.max_iterations} "
        f"iterations, the default stop ({defaults.stop!r}) and output ({defaults.output!r}): "
        f"the returned result scored, and the output of every signal step "
        f"({defaults.signal_every} iterations) up to the stop; "
        f"{args.jobs} CPU process(es), {args.gpu_procs if args.device != 'cpu' else 0} GPU "
        "process(es)",
        "  scores: PSNR dB / SSIM on photons / peak (data range 1); BM3D: "
        + ("bm3d package, noise sigma and GAT from the TRUE camera values"
           if use_bm3d else "not run (bm3d not importable or --no-bm3d)"),
        "  ours (GAT/weighted): camera values estimated from the image", ""]
    _common.echo(*lines)

    if args.estimator_only:
        start = time.perf_counter()
        summary: dict[str, Any] = {}
        est_rows: list[dict[str, Any]] = []
        md = _estimator_table(args, est_rows, summary)
        summary["wall seconds"] = round(time.perf_counter() - start, 1)
        return _write(args, lines, md, summary, [], est_rows)

    cases = [{"image": i, "size": args.size, "peak": p, "read": r, "seed": s}
             for s in args.seeds for i in args.images for p in args.peaks for r in args.reads]
    dip = [{**c, "method": m, "device": args.device, "width": args.width, "budget": args.budget,
            "lr": args.lr, "threads": args.threads} for c in cases for m in args.methods]
    start = time.perf_counter()
    dip_out, classic_out = _execute(args, dip, [{**c, "bm3d": use_bm3d} for c in cases])
    wall = time.perf_counter() - start

    methods = [m for m in CLASSICAL if m not in ("BM3D", "BM3D+GAT") or use_bm3d] + args.methods
    records = []
    for case, scores in zip(cases, classic_out, strict=True):
        runs = {d["method"]: r for d, r in zip(dip, dip_out, strict=True)
                if all(d[k] == case[k] for k in ("image", "peak", "read", "seed"))}
        record = {**case, "scores": {m: list(scores[m]) for m in CLASSICAL if m in scores},
                  "ours": runs}
        for name, run in runs.items():
            record["scores"][name] = [run["psnr"], run["ssim"]]
        records.append(record)

    md: list[str] = ["## PSNR dB / SSIM per exposure (ours: at the default stop)", ""]
    draws = len(args.seeds) > 1  # a column for the noise seed only when there are several
    header = ["image", "peak", "read", *(["seed"] if draws else []), *methods]
    rows = [[r["image"], f"{r['peak']:g}", f"{r['read']:g}", *([str(r["seed"])] if draws else []),
             *(_cell(r["scores"].get(m)) for m in methods)] for r in records]
    md += [_common.format_table(header, rows, markdown=True), ""]

    md += [f"## Mean PSNR dB over images{' and noise seeds' if draws else ''}, per peak", ""]
    header = ["peak", *methods, *(f"{m} best" for m in args.methods)]
    rows = []
    for peak in args.peaks:
        sel = [r for r in records if r["peak"] == peak]
        rows.append([f"{peak:g}", *(f"{np.mean([r['scores'][m][0] for r in sel]):.2f}"
                                    for m in methods),
                     *(f"{np.mean([r['ours'][m]['best'] for r in sel]):.2f}"
                       for m in args.methods)])
    md += [_common.format_table(header, rows, markdown=True), ""]

    summary = {}
    if use_bm3d:
        low_peaks = [r for r in records if r["peak"] <= 30]
        for m in args.methods:
            diff = [r["scores"][m][0] - r["scores"]["BM3D+GAT"][0] for r in low_peaks]
            summary[f"{m} - BM3D+GAT, peaks <= 30 (mean dB)"] = float(np.mean(diff)) if diff else math.nan
            diff = [r["ours"][m]["best"] - r["scores"]["BM3D+GAT"][0] for r in low_peaks]
            summary[f"{m} best-of-run - BM3D+GAT, peaks <= 30 (mean dB)"] = (
                float(np.mean(diff)) if diff else math.nan)
            if draws:  # how much one exposure of each case moves the comparison
                by_seed = [np.mean([r["scores"][m][0] - r["scores"]["BM3D+GAT"][0]
                                    for r in low_peaks if r["seed"] == seed])
                           for seed in args.seeds]
                summary[f"{m} - BM3D+GAT, peaks <= 30, per noise seed (mean dB)"] = " / ".join(
                    f"{d:+.2f}" for d in by_seed)
    for m in args.methods:
        if m != "ours (gaussian)" and "ours (gaussian)" in args.methods:
            diff = [r["scores"][m][0] - r["scores"]["ours (gaussian)"][0] for r in records]
            summary[f"{m} - ours (gaussian), all (mean dB)"] = float(np.mean(diff))
    md += ["## Stops: the default rule and the discrepancy principle (replayed), against the "
           "run's best output up to the stop", ""]
    header = ["method", "default: mean gap dB", "max gap", "gap <= 0.5", "fired",
              "mean returned it", "mean fired it",
              "discrepancy: mean gap dB", "max gap", "gap <= 0.5", "mean stop it", "ms / it"]
    rows = []
    for m in args.methods:
        runs = [r["ours"][m] for r in records]
        gaps = [run["gap"] for run in runs]
        dgaps = [run["best"] - run["discrepancy_psnr"] for run in runs
                 if run["discrepancy_psnr"] is not None]
        dits = [run["discrepancy_iteration"] for run in runs
                if run["discrepancy_iteration"] is not None]
        rows.append([m, f"{np.mean(gaps):.2f}", f"{np.max(gaps):.2f}",
                     f"{sum(g <= 0.5 for g in gaps)}/{len(gaps)}",
                     f"{sum(run['fired'] for run in runs)}/{len(runs)}",
                     f"{np.mean([run['stop_iteration'] for run in runs]):.0f}",
                     f"{np.mean([run.get('fired_iteration', math.nan) for run in runs]):.0f}",
                     f"{np.mean(dgaps):.2f}" if dgaps else "-",
                     f"{np.max(dgaps):.2f}" if dgaps else "-",
                     f"{sum(g <= 0.5 for g in dgaps)}/{len(runs)}" if dgaps else "-",
                     f"{np.mean(dits):.0f}" if dits else "-",
                     f"{np.mean([run['ms_per_iteration'] for run in runs]):.1f}"])
    md += [_common.format_table(header, rows, markdown=True), ""]
    corr_rows = []
    for m in args.methods:
        by_peak = {peak: [r["ours"][m]["uncertainty_corr"] for r in records
                          if r["peak"] == peak and "uncertainty_corr" in r["ours"][m]]
                   for peak in args.peaks}
        if any(by_peak.values()):
            every = [c for cs in by_peak.values() for c in cs]
            summary[f"{m} corr(uncertainty, |error|) (mean)"] = float(np.mean(every))
            corr_rows.append([m, *(f"{np.mean(c):.2f}" if c else "-" for c in by_peak.values()),
                              f"{np.mean(every):.2f}"])
    if corr_rows:
        md += ["## Uncertainty: Pearson correlation of `result.uncertainty` with the result's "
               "absolute error (per pixel, mean over images)", "",
               _common.format_table(["method", *(f"peak {p:g}" for p in args.peaks), "all"],
                                    corr_rows, markdown=True), ""]

    est_dip = [run["noise_model"] for r in records for run in r["ours"].values()
               if run.get("noise_model")]
    if est_dip:
        summary["gain estimated in our runs / true (median)"] = float(np.median(
            [n["gain"] / micro.GAIN_ADU for n in est_dip]))
    summary["wall seconds (runs)"] = round(wall, 1)
    est_rows = []
    if args.estimator_size:
        md += _estimator_table(args, est_rows, summary)
    return _write(args, lines, md, summary, records, est_rows)


def _write(args: argparse.Namespace, lines: list[str], md: list[str], summary: dict[str, Any],
           records: list[dict[str, Any]], est_rows: list[dict[str, Any]]) -> int:
    md += ["## Summary", ""] + [f"- {k}: {v:.2f}" if isinstance(v, float) else f"- {k}: {v}"
                                for k, v in summary.items()]
    text = "\n".join(md)
    _common.echo(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n" + text + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(
        {"settings": vars(args), "machine": lines, "records": records, "estimator": est_rows,
         "summary": summary}, indent=1, default=str), encoding="utf-8")
    _common.echo(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
