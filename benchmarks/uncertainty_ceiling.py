"""How well could any uncertainty map predict the error? A ceiling for the ensemble's spread.

``result.uncertainty`` of ``restore(..., ensemble=K)`` is judged by the Pearson
correlation, per pixel, of the map with the result's absolute error (clean image
known). That correlation has a ceiling below 1 that no map reaches: even a map of
each pixel's true error scale only says how large the error tends to be there,
not which sign and size this noise draw gave it. This script measures the ceiling
by restoring the same clean image from R noise draws (same seed, same settings):

- ``ceiling``: the correlation with draw n's absolute error of the per-pixel RMS
  error over the other R - 1 draws (an oracle map; with R - 1 draws it is itself a
  little noisy, so it slightly understates the ceiling);
- ``ours``: the correlation of draw n's own uncertainty map with its absolute error
  (what the benchmarks report), averaged over the draws;
- ``ours ~ scale``: the correlation of our map with the oracle's error scale;
- ``bias share``: the part of the mean squared error that is the same in every draw
  (squared mean error over the draws / mean squared error). Members differ by seed
  and held-out pixels, so their spread sees the part that varies, not this one.

Images: ``_evalset`` at 64 px, Gaussian noise sigma 25/255 or Poisson-Gaussian
noise (peak 30 photons, read noise 2, camera values given). Width 32, K = 4, engine
defaults otherwise. Those Poisson-Gaussian observations are clipped to [0, 1], which
biases a dark background at low photon counts; ``--camera`` instead exposes
``photon.py``'s images (``cell``, ``nuclei``, ``puncta``; cases such as
``nuclei/pg5r2``) through its simulated camera (uint16 ADU above a pedestal, nothing
clipped) and restores them as its ``ours (weighted, K=4)`` does: camera values
estimated from each exposure, the weighted fit.

Run ``python benchmarks/uncertainty_ceiling.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import _evalset as ev  # noqa: E402
import _microscopy as micro  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CASES = ("cell/pg30r2", "nuclei2/pg30r2", "puncta1/pg30r2", "camera/sigma25",
         "filaments2/sigma25", "grass/sigma25")


def _corr(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def draws(name: str, label: str, *, size: int, realizations: int, members: int, width: int,
          max_iterations: int | None, camera: bool = False
          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], list[float], float]:
    """Errors (R, H, W, C) and uncertainty maps of R noise draws, their PSNRs and seconds."""
    from napari_specdip import restore

    clean = micro.load(name, size) if camera else ev.load(name, size)
    degradation = ev.parse_degradation(label)
    errors, maps, psnrs = [], [], []
    start = time.perf_counter()
    for draw in range(realizations):
        if camera:
            if degradation.kind != "poisson-gaussian":
                raise ValueError(f"--camera takes Poisson-Gaussian cases, not {label!r}")
            exposure = micro.Camera(peak=degradation.level, read=degradation.read)
            adu = exposure.expose(clean, draw)
            extra = {} if max_iterations is None else {"max_iterations": max_iterations}
            result = restore(adu, seed=0, ensemble=members, width=width, **extra,
                             noise="poisson-gaussian", noise_fit="weighted",
                             output_dtype="float32")
            assert result.uncertainty is not None
            image = np.clip(exposure.to_unit(result.image), 0.0, 1.0)
            spread = exposure.spread_to_unit(result.uncertainty)
        else:
            observed, _ = degradation.apply(clean, seed=draw)
            result = restore(observed.astype(np.float32), seed=0, ensemble=members,
                             width=width, channel_axis=-1 if observed.ndim == 3 else None,
                             **ev.engine_options(degradation, max_iterations))
            assert result.uncertainty is not None
            image = np.clip(np.asarray(result.image, dtype=np.float64), 0.0, 1.0)
            spread = np.asarray(result.uncertainty, dtype=np.float64)
        errors.append((image - clean).reshape(size, size, -1))
        maps.append(spread.reshape(size, size, -1))
        psnrs.append(ev.psnr(image, clean))
    return np.stack(errors), np.stack(maps), psnrs, time.perf_counter() - start


def _case(case: dict[str, Any]) -> dict[str, Any]:
    """One image/degradation in a worker process (its own torch threads): its row."""
    _common.set_threads(case.pop("threads"))
    name, label = case.pop("case").split("/")
    errors, maps, psnrs, seconds = draws(name, label, **case)
    kind = "camera exposure" if case["camera"] else ev.kind(name)
    row = {"image": name, "noise": label, "kind": kind, "psnr": float(np.mean(psnrs)),
           "seconds": seconds, **score(errors, maps)}
    _common.echo(f"# {name}/{label}: ceiling {row['ceiling']:.3f}, ours {row['ours']:.3f}, "
                 f"bias share {row['bias_share']:.2f} ({seconds:.0f} s)")
    return row


def score(errors: npt.NDArray[np.float64], maps: npt.NDArray[np.float64]) -> dict[str, float]:
    """Ceiling, our correlation, our agreement with the error scale, the bias share."""
    ceiling, ours, scale = [], [], []
    for n in range(len(errors)):
        rms = np.sqrt(np.mean(np.delete(errors, n, axis=0) ** 2, axis=0))
        ceiling.append(_corr(rms, np.abs(errors[n])))
        ours.append(_corr(maps[n], np.abs(errors[n])))
        scale.append(_corr(maps[n], rms))
    bias = float(np.mean(errors.mean(axis=0) ** 2) / np.mean(errors**2))
    return {"ceiling": float(np.mean(ceiling)), "ours": float(np.mean(ours)),
            "ours_vs_scale": float(np.mean(scale)), "bias_share": bias}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--cases", nargs="+", default=list(CASES),
                        help="image/degradation, e.g. cell/pg30r2 camera/sigma25")
    parser.add_argument("--realizations", "-r", type=int, default=6)
    parser.add_argument("--members", "-k", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="cases run in this many processes")
    parser.add_argument("--camera", action="store_true",
                        help="photon.py's images and camera (cases like nuclei/pg5r2)")
    parser.add_argument("--out", default=str(RESULTS / "uncertainty_ceiling_cpu64"))
    args = parser.parse_args(argv)
    if args.realizations < 2:
        parser.error("--realizations must be at least 2 (the oracle needs the other draws)")
    _common.set_threads(args.threads)
    cases = [{"case": case, "size": args.size, "realizations": args.realizations,
              "members": args.members, "width": args.width,
              "max_iterations": args.max_iterations, "threads": args.threads,
              "camera": args.camera}
             for case in args.cases]
    rows = _common.map_cases(_case, cases, args.jobs)
    header = ["image", "noise", "kind", "PSNR dB", "ceiling", "ours", "ours ~ scale",
              "bias share"]
    table = [[r["image"], r["noise"], r["kind"], f"{r['psnr']:.2f}", f"{r['ceiling']:.3f}",
              f"{r['ours']:.3f}", f"{r['ours_vs_scale']:.3f}", f"{r['bias_share']:.2f}"]
             for r in rows]
    table.append(["mean", "", "", f"{np.mean([r['psnr'] for r in rows]):.2f}",
                  *(f"{np.mean([r[k] for r in rows]):.3f}"
                    for k in ("ceiling", "ours", "ours_vs_scale")),
                  f"{np.mean([r['bias_share'] for r in rows]):.2f}"])
    lines = [*_common.machine_lines("cpu"),
             f"settings: {args.size} px, K={args.members}, width {args.width}, "
             f"{args.realizations} noise draws per case, "
             + ("photon.py's images and camera, camera values estimated, weighted fit, "
                if args.camera else "")
             + f"torch threads {args.threads}, "
             f"{args.jobs} process(es); "
             "correlations per pixel value, averaged over the draws", "",
             _common.format_table(header, table, markdown=True)]
    _common.write_report(args.out, lines, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
