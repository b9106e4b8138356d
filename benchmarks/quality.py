"""Restoration quality: napari-specdip next to classical methods on bundled photos.

For scikit-image's bundled astronaut, camera, coffee and chelsea (centre crops;
the gray camera stays gray, the RGB photos stay RGB) it prints PSNR / SSIM of

- denoise (Gaussian noise sigma 25/255, seed 0): the noisy input, ours, non-local
  means (``skimage.restoration.denoise_nl_means``: ``estimate_sigma``,
  ``fast_mode=True``, ``h=0.8*sigma_est``, 5x5 patches, distance 6, as in the
  scikit-image gallery), TV (``denoise_tv_chambolle``, weight 0.08) and BM3D when
  ``import bm3d`` works (optional, non-commercial licence, benchmark only;
  ``bm3d.bm3d``/``bm3d.bm3d_rgb`` with the true sigma);
- inpaint (50% of the pixels missing, Bernoulli mask seed 0): the masked input
  (missing = 0), ours, ``skimage.restoration.inpaint_biharmonic``;
- deblock (JPEG quality 10 via ``napari_specdip.samples.jpeg_compress``; gray as
  in the paper, ``--jpeg-rgb`` for the RGB photos as they are): the JPEG, ours.

"Ours" is ``napari_specdip.restore`` with the paper's defaults for the task
(decoder, lambda per task, bilinear upsampling, Adam 1e-3, the default ``auto`` stop), with
``--width`` and ``--max-iterations`` as given. One run gives two outputs: the
last iterate (``output="last"``, the paper's) and the exponential moving average
of the outputs (``output="ema"``, the engine's default, decay ramping up to 0.99), which
is the same training trajectory and is accumulated here from the step previews
exactly as the engine does. Both are reported; the summary says which is better.

PSNR and SSIM are :func:`napari_specdip.metrics.psnr` / ``ssim`` on float images in
[0, 1] (SSIM: Gaussian window sigma 1.5, as ``skimage.metrics.structural_similarity``
with ``gaussian_weights=True, use_sample_covariance=False``; mean over channels).

Run ``python benchmarks/quality.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

TASKS = ("denoise", "inpaint", "deblock")
Array = npt.NDArray[np.float64]


def score(image: Array, clean: Array) -> tuple[float, float]:
    from napari_specdip import metrics

    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    return metrics.psnr(image, clean), metrics.ssim(image, clean)


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except Exception:  # noqa: BLE001  (any import failure means: skip it)
        return False
    return True


def ours(observation: Array, task: str, args: argparse.Namespace, *,
         mask: npt.NDArray[np.bool_] | None = None) -> dict[str, Any]:
    """One engine run; returns the last iterate, the EMA, iterations and stop reason."""
    from napari_specdip import iter_restore
    from napari_specdip.core.engine import run_to_end
    from napari_specdip.core.results import StepReport

    options: dict[str, Any] = {}
    if args.max_iterations is not None:
        options["max_iterations"] = args.max_iterations
    gen = iter_restore(observation, task, mask=mask, channel_axis=_common.channel_axis(observation),
                       seed=0, device=args.device, width=args.width, output="last",
                       preview_every=1, num_threads=args.threads, **options)
    ema = _common.EmaTracker()
    start = time.perf_counter()

    def accumulate(report: StepReport) -> None:
        if report.preview is not None:
            ema.update(report.iteration, report.preview)

    result = run_to_end(gen, accumulate)
    seconds = time.perf_counter() - start
    last = np.asarray(result.image, dtype=np.float64)
    return {"last": last, "ema": last if ema.value is None else ema.value, "iterations": result.iterations,
            "stop": result.stop_reason, "seconds": seconds}


#: How NL-means got its sigma: "estimate_sigma" or the true sigma (estimate_sigma
#: needs PyWavelets, an optional dependency of scikit-image).
SIGMA_SOURCE: set[str] = set()


def noise_sigma(noisy: Array) -> float:
    from skimage.restoration import estimate_sigma

    try:
        sigma = float(np.mean(estimate_sigma(noisy, channel_axis=_common.channel_axis(noisy))))
    except ImportError:
        SIGMA_SOURCE.add("true sigma 25/255 (PyWavelets missing, so no estimate_sigma)")
        return _common.NOISE_SIGMA
    SIGMA_SOURCE.add("estimate_sigma")
    return sigma


def nl_means(noisy: Array) -> Array:
    from skimage.restoration import denoise_nl_means

    axis = _common.channel_axis(noisy)
    sigma_est = noise_sigma(noisy)
    out: Array = denoise_nl_means(noisy, h=0.8 * sigma_est, sigma=sigma_est, fast_mode=True,
                                  patch_size=5, patch_distance=6, channel_axis=axis)
    return out


def tv(noisy: Array) -> Array:
    from skimage.restoration import denoise_tv_chambolle

    out: Array = denoise_tv_chambolle(noisy, weight=0.08, channel_axis=_common.channel_axis(noisy))
    return out


def bm3d_denoise(noisy: Array) -> Array:
    import bm3d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if noisy.ndim == 3:
            return np.asarray(bm3d.bm3d_rgb(noisy, _common.NOISE_SIGMA), dtype=np.float64)
        return np.asarray(bm3d.bm3d(noisy, _common.NOISE_SIGMA), dtype=np.float64)


def biharmonic(masked: Array, mask: npt.NDArray[np.bool_]) -> Array:
    from skimage.restoration import inpaint_biharmonic

    out: Array = inpaint_biharmonic(masked, mask, channel_axis=_common.channel_axis(masked))
    return out


def timed(fn: Callable[[], Array]) -> tuple[Array, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cell(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.2f} / {pair[1]:.3f}"


def run_task(task: str, args: argparse.Namespace, use_bm3d: bool) -> tuple[list[str], list[list[Any]], list[dict[str, Any]]]:
    from napari_specdip.samples import add_gaussian_noise, jpeg_compress

    baselines: list[str]
    if task == "denoise":
        baselines = ["noisy", "NL-means", "TV"] + (["BM3D"] if use_bm3d else [])
    elif task == "inpaint":
        baselines = ["masked", "biharmonic"]
    else:
        baselines = ["JPEG q10"]
    header = ["image", "px", *baselines, "ours (last)", "ours (EMA)", "our stop", "our time s"]
    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    for size in args.sizes:
        for name in args.images:
            variants = [False]
            if task == "deblock" and args.jpeg_rgb and name != "camera":
                variants = [True, False]
            for rgb in variants:
                gray = task == "deblock" and not rgb
                clean = _common.crop(_common.load_image(name, gray=gray), size)
                label = name + (" (gray)" if gray and clean.ndim == 2 and name != "camera" else "")
                mask = None
                scores: dict[str, tuple[float, float]] = {}
                if task == "denoise":
                    observation = add_gaussian_noise(clean, _common.NOISE_SIGMA, seed=0)
                    scores["noisy"] = score(observation, clean)
                    scores["NL-means"] = score(nl_means(observation), clean)
                    scores["TV"] = score(tv(observation), clean)
                    if use_bm3d:
                        scores["BM3D"] = score(bm3d_denoise(observation), clean)
                elif task == "inpaint":
                    mask = np.random.default_rng(0).random(clean.shape[:2]) < 0.5
                    observation = clean.copy()
                    observation[mask] = 0.0
                    scores["masked"] = score(observation, clean)
                    scores["biharmonic"] = score(biharmonic(observation, mask), clean)
                else:
                    observation = jpeg_compress(clean, 10).astype(np.float64) / 255.0
                    clean = np.round(clean * 255.0) / 255.0  # what the JPEG encoder saw
                    scores["JPEG q10"] = score(observation, clean)
                run = ours(observation, task, args, mask=mask)
                scores["ours (last)"] = score(run["last"], clean)
                scores["ours (EMA)"] = score(run["ema"], clean)
                row: list[Any] = [label, size, *(cell(scores[b]) for b in baselines),
                                  cell(scores["ours (last)"]), cell(scores["ours (EMA)"]),
                                  f"{run['iterations']} ({run['stop']})", f"{run['seconds']:.0f}"]
                rows.append(row)
                records.append({"task": task, "image": label, "size": size, "scores": scores,
                                "iterations": run["iterations"], "stop": run["stop"]})
                _common.echo(f"# {task} {label} {size}px: " + ", ".join(
                    f"{k} {v[0]:.2f} dB/{v[1]:.3f}" for k, v in scores.items())
                    + f"; ours {run['iterations']} it ({run['stop']}) in {run['seconds']:.0f} s")
    return header, rows, records


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                        help="centre-crop sides in px (128 256)")
    parser.add_argument("--images", nargs="+", default=list(_common.IMAGES),
                        choices=_common.IMAGES)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--width", type=int, default=128, help="network width (128, the paper's)")
    parser.add_argument("--max-iterations", type=int, default=None,
                        help="iteration cap of our runs (default: the task's, 3000/5000)")
    parser.add_argument("--device", default="cpu", help="engine device (cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--jpeg-rgb", action="store_true",
                        help="also deblock the RGB photos in colour (the paper: gray only)")
    parser.add_argument("--no-bm3d", dest="bm3d", action="store_false",
                        help="skip BM3D even when the bm3d package is importable")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    from napari_specdip import RestoreParameters

    use_bm3d = args.bm3d and bm3d_available()
    _common.echo(*_common.machine_lines(args.device))
    caps = {t: args.max_iterations or RestoreParameters.for_task(t).max_iterations
            for t in args.tasks}
    _common.echo(
        f"settings: sizes {args.sizes} px centre crops, width {args.width}, seed 0, "
        "paper defaults per task (decoder, bilinear, Adam 1e-3, lambda 1.4 denoise/deblock, "
        "1.6 inpaint), stop auto (ratio n=100 eps=0.01, or ES-WMV), iteration caps "
        + ", ".join(f"{t} {c}" for t, c in caps.items()),
        "  noise sigma 25/255 seed 0; inpainting mask 50% Bernoulli seed 0; JPEG quality 10 "
        + ("(gray and RGB)" if args.jpeg_rgb else "(gray, as in the paper)"),
        "  cells: PSNR dB / SSIM against the clean crop; 'ours (last)' = output='last' "
        "(the paper's), 'ours (EMA)' = output='ema' (the default) of the same run",
        "  BM3D: " + ("bm3d package (non-commercial licence; benchmark only), true sigma"
                      if use_bm3d else "not run (bm3d not importable or --no-bm3d)"),
        "")
    summary: list[dict[str, Any]] = []
    for task in args.tasks:
        header, rows, records = run_task(task, args, use_bm3d)
        summary += records
        _common.echo("", f"## {task} (PSNR dB / SSIM)", "",
                     _common.format_table(header, rows, markdown=args.markdown), "")
    if summary:
        wins = {"last": 0, "EMA": 0}
        diffs = []
        for record in summary:
            last = record["scores"]["ours (last)"][0]
            ema = record["scores"]["ours (EMA)"][0]
            diffs.append(ema - last)
            wins["EMA" if ema > last else "last"] += 1
        mean_diff = float(np.mean(diffs))
        best = "ema" if mean_diff > 0 else "last"
        _common.echo(f"output option: EMA better than last on {wins['EMA']}/{len(summary)} "
                     f"cases, mean PSNR difference EMA - last {mean_diff:+.2f} dB -> best: "
                     f"output={best!r}")
        if SIGMA_SOURCE:
            _common.echo("NL-means sigma from: " + ", ".join(sorted(SIGMA_SOURCE)))
        not_stopped = [r for r in summary if r["stop"] == "max_iterations"]
        if not_stopped:
            _common.echo("no stopping rule fired within the cap for: " + ", ".join(
                f"{r['task']} {r['image']} {r['size']}px" for r in not_stopped))
    if any(math.isnan(v[0]) for r in summary for v in r["scores"].values()):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
