"""Stopping rules against the oracle: how close does each rule stop to the peak PSNR?

For every (image, network) one run of a fixed budget is made with ``stop="none"``,
the clean image as ``reference`` (so ``result.history["psnr"]`` holds the PSNR of
the last iterate at every iteration) and ``track_variance=True``. The stopping
rules of :mod:`napari_specdip.stopping` are then replayed OFFLINE on the recorded
histories, exactly as the engine feeds them (one value per evaluated step):

- ``auto``: the engine's default, whichever of ``ratio`` and ``wmv`` fires first.
- ``ratio``: :class:`~napari_specdip.stopping.RatioRule` (n=100, epsilon=0.01) on
  ``history["ratio"]``: the paper's rule.
- ``wmv``: :class:`~napari_specdip.stopping.WMVRule` (patience 1000) on
  ``history["variance"]`` (recorded once the 100-output window is full, as
  published); ``wmv@stop`` is the iterate when the rule fires, ``wmv@min`` the
  minimum-variance iterate that ES-WMV returns (engine ``output="best"``).
- ``budget``: the last iteration (what ``stop="none"`` returns).

For each rule: stop iteration, PSNR at the stop, the run's peak PSNR and its
iteration, and the gap (peak - PSNR at stop). A rule that never fires within the
budget is reported at the budget, marked ``*``.

The exponential moving average of the outputs (``output="ema"``, decay ramping up to 0.99 as in the engine) is
the same training trajectory, so it needs no second run: it is accumulated from
the step previews (``preview_every=1``) exactly as the engine does, and its PSNR
at each rule's stop and its gap to the EMA's own peak are reported too
(``--no-ema`` to skip).

Run ``python benchmarks/stopping.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

NETWORKS = ("decoder", "skip")
RULES = ("auto", "ratio", "wmv@stop", "wmv@min", "budget")
WMV_WINDOW = 100
DEFAULT_RULE = "auto"
GOAL_DB = 0.5


@dataclass
class Run:
    """Histories of one fixed-budget run."""

    image: str
    network: str
    iterations: np.ndarray  # signal iterations
    psnr: np.ndarray
    ratio: np.ndarray
    variance: np.ndarray
    ema_psnr: np.ndarray | None
    seconds_per_iteration: float
    backtracks: int
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)


def network_options(network: str) -> dict[str, Any]:
    """Engine options of each network: paper defaults for the decoder, DIP's for skip."""
    if network == "decoder":
        return {"network": "decoder"}
    if network == "skip":
        return {"network": "skip", "learning_rate": 0.01}
    raise ValueError(f"unknown network {network!r}")


def run_one(image_name: str, network: str, args: argparse.Namespace) -> Run:
    from napari_specdip import RestoreParameters, iter_restore
    from napari_specdip.core.engine import run_to_end
    from napari_specdip.core.results import StepReport
    from napari_specdip.samples import add_gaussian_noise

    clean = _common.crop(_common.load_image(image_name), args.size)
    noisy = add_gaussian_noise(clean, _common.NOISE_SIGMA, seed=0)
    axis = _common.channel_axis(clean)
    # track_variance is not an iter_restore keyword: it comes with the parameters object
    params = RestoreParameters.for_task("denoise", track_variance=True)
    gen = iter_restore(noisy, "denoise", channel_axis=axis, reference=clean, parameters=params,
                       max_iterations=args.budget, stop="none", seed=0, device=args.device,
                       width=args.width, output="last", signal_every=1,
                       preview_every=1 if args.ema else 0, num_threads=args.threads,
                       **network_options(network))
    ema = _common.EmaTracker()
    ema_by_iteration: dict[int, float] = {}
    start = time.perf_counter()

    def accumulate(report: StepReport) -> None:
        if report.preview is not None:
            ema_by_iteration[report.iteration] = _psnr(ema.update(report.iteration, report.preview),
                                                       clean)

    result = run_to_end(gen, accumulate)
    seconds = (time.perf_counter() - start) / max(1, result.iterations)
    h = result.history
    iterations = np.asarray(h["signal_iteration"], dtype=int)
    ema_psnr = (np.asarray([ema_by_iteration.get(int(i), math.nan) for i in iterations])
                if args.ema else None)
    return Run(image=image_name, network=network, iterations=iterations,
               psnr=np.asarray(h["psnr"], dtype=float), ratio=np.asarray(h["ratio"], dtype=float),
               # no column when the run ended before the variance window filled
               variance=np.asarray(h.get("variance", np.full(len(iterations), np.nan)), dtype=float),
               ema_psnr=ema_psnr,
               seconds_per_iteration=seconds,
               backtracks=int(result.parameters.get("backtracks", 0)))


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def replay_ratio(ratio: np.ndarray, *, window: int = 100, epsilon: float = 0.01) -> int | None:
    """Index of the step at which the paper's ratio rule fires, None if never."""
    from napari_specdip.stopping import RatioRule

    rule = RatioRule(window=window, epsilon=epsilon, every=1)
    for index, value in enumerate(ratio):
        if rule.update(index + 1, float(value)):
            return index
    return None


def replay_wmv(variance: np.ndarray, *, patience: int = 1000) -> tuple[int | None, int]:
    """(index where ES-WMV fires or None, index of the minimum variance so far)."""
    from napari_specdip.stopping import WMVRule

    rule = WMVRule(patience=patience, every=1)
    for index, value in enumerate(variance):
        if not np.isfinite(value):  # not recorded yet: the engine does not feed the rule
            continue
        if rule.update(index, float(value)):
            return index, rule.best_iteration
    return None, rule.best_iteration


def evaluate_rules(run: Run, *, window: int = 100, epsilon: float = 0.01,
                   patience: int = 1000) -> dict[str, dict[str, Any]]:
    last = len(run.iterations) - 1
    peak = int(np.nanargmax(run.psnr))
    ratio_at = replay_ratio(run.ratio, window=window, epsilon=epsilon)
    # the engine records the variance only for full windows (NaN before), as published
    wmv_at, wmv_min = replay_wmv(run.variance, patience=patience)
    fired = [at for at in (ratio_at, wmv_at) if at is not None]
    auto_at = min(fired) if fired else None
    picks = {
        "auto": (last if auto_at is None else auto_at, auto_at is not None),
        "ratio": (last if ratio_at is None else ratio_at, ratio_at is not None),
        "wmv@stop": (last if wmv_at is None else wmv_at, wmv_at is not None),
        "wmv@min": (wmv_min, wmv_at is not None),
        "budget": (last, True),
    }
    rules: dict[str, dict[str, Any]] = {}
    for name, (index, fired) in picks.items():
        entry = {
            "stop_iteration": int(run.iterations[index]),
            "fired": bool(fired),
            "psnr_at_stop": float(run.psnr[index]),
            "peak_psnr": float(run.psnr[peak]),
            "peak_iteration": int(run.iterations[peak]),
            "gap": float(run.psnr[peak] - run.psnr[index]),
        }
        if run.ema_psnr is not None:
            entry["ema_psnr_at_stop"] = float(run.ema_psnr[index])
            entry["ema_peak_psnr"] = float(np.nanmax(run.ema_psnr))
            entry["ema_gap"] = float(np.nanmax(run.ema_psnr) - run.ema_psnr[index])
            # what the default configuration returns (EMA output) against the best
            # PSNR the run ever showed, last iterate or EMA: the gap
            best = max(float(np.nanmax(run.psnr)), float(np.nanmax(run.ema_psnr)))
            entry["default_gap"] = float(best - run.ema_psnr[index])
        rules[name] = entry
    return rules


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=3000, help="iterations per run (3000)")
    parser.add_argument("--width", type=int, default=128, help="network width (128)")
    parser.add_argument("--size", type=int, default=128, help="centre-crop side in px (128)")
    parser.add_argument("--images", nargs="+", default=list(_common.IMAGES),
                        choices=_common.IMAGES)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--device", default="cpu", help="engine device (cpu)")
    parser.add_argument("--no-ema", dest="ema", action="store_false",
                        help="do not accumulate the EMA output from the previews")
    parser.add_argument("--sweep", action="store_true",
                        help="also replay the ratio rule for other windows/epsilons")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    parser.add_argument("--save-json", metavar="PATH", help="write per-run results and "
                        "subsampled curves to PATH")
    parser.add_argument("--json-every", type=int, default=10,
                        help="keep every k-th iteration of the curves in the JSON (10)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    _common.echo(*_common.machine_lines(args.device))
    _common.echo(
        f"settings: denoise, {args.size} px centre crops, Gaussian sigma 25/255 seed 0, "
        f"budget {args.budget} iterations, width {args.width}, stop=none + offline replay, "
        "signal_every=1, seed 0",
        "  decoder: paper defaults (lambda 1.4, bilinear, Adam 1e-3); "
        "skip: DIP skip net, Adam 0.01, input jitter 1/30",
        "  rules: auto (the default: first of ratio and wmv), ratio (n=100, eps=0.01, the paper's), "
        "wmv (window 100, patience 1000) at the stop and at its minimum-variance iterate, budget; "
        "'*' = never fired, reported at the budget",
        "")
    runs: list[Run] = []
    for network in args.networks:
        for name in args.images:
            t0 = time.perf_counter()
            run = run_one(name, network, args)
            run.rules = evaluate_rules(run)
            runs.append(run)
            _common.echo(f"# {name} / {network}: {len(run.iterations)} iterations in "
                         f"{time.perf_counter() - t0:.0f} s ({run.seconds_per_iteration * 1000:.0f}"
                         f" ms/it), backtracks {run.backtracks}, peak "
                         f"{run.rules['budget']['peak_psnr']:.2f} dB at "
                         f"{run.rules['budget']['peak_iteration']}")

    header = ["image", "network", "rule", "stop it", "PSNR@stop", "peak PSNR", "peak it",
              "gap dB"]
    if args.ema:
        header += ["EMA PSNR@stop", "EMA gap dB"]
    rows = []
    for run in runs:
        for rule in RULES:
            r = run.rules[rule]
            row: list[Any] = [run.image, run.network, rule,
                              f"{r['stop_iteration']}{'' if r['fired'] else '*'}",
                              r["psnr_at_stop"], r["peak_psnr"], r["peak_iteration"], r["gap"]]
            if args.ema:
                row += [r["ema_psnr_at_stop"], r["ema_gap"]]
            rows.append(row)
    _common.echo("", "## Stop iteration, PSNR at the stop and gap to the run's peak (dB)", "",
                 _common.format_table(header, rows, markdown=args.markdown), "")

    summary_rows = []
    for network in args.networks:
        mine = [r for r in runs if r.network == network]
        if not mine:
            continue
        for rule in RULES:
            gaps = [r.rules[rule]["gap"] for r in mine]
            row = [network, rule, float(np.mean(gaps)), float(np.max(gaps)),
                   f"{sum(g <= GOAL_DB for g in gaps)}/{len(gaps)}"]
            if args.ema:
                ema_gaps = [r.rules[rule]["ema_gap"] for r in mine]
                row += [float(np.mean([r.rules[rule]["ema_psnr_at_stop"] for r in mine])),
                        float(np.mean(ema_gaps)), float(np.max(ema_gaps)),
                        f"{sum(g <= GOAL_DB for g in ema_gaps)}/{len(ema_gaps)}"]
            summary_rows.append(row)
    summary_header = ["network", "rule", "mean gap", "max gap", f"gap <= {GOAL_DB}"]
    if args.ema:
        summary_header += ["mean EMA PSNR@stop", "mean EMA gap", "max EMA gap",
                           f"EMA gap <= {GOAL_DB}"]
    _common.echo("## Summary over images", "",
                 _common.format_table(summary_header, summary_rows, markdown=args.markdown), "")
    for network in args.networks:
        mine = [r for r in runs if r.network == network]
        if mine:
            key = "default_gap" if args.ema else "gap"
            gaps = [r.rules[DEFAULT_RULE][key] for r in mine]
            ok = all(g <= GOAL_DB for g in gaps)
            _common.echo(f"default configuration (stop={DEFAULT_RULE}, output={'ema' if args.ema else 'last'}) "
                         f"gap to the run's best PSNR, {network}: "
                         + ", ".join(f"{r.image} {g:.2f}" for r, g in zip(mine, gaps, strict=True))
                         + f" dB -> <= {GOAL_DB} dB on every image: {'yes' if ok else 'NO'}")

    if args.sweep:
        sweep_rows = []
        for network in args.networks:
            mine = [r for r in runs if r.network == network]
            for window in (50, 100, 200):
                for epsilon in (0.002, 0.005, 0.01, 0.02):
                    gaps, its = [], []
                    for run in mine:
                        at = replay_ratio(run.ratio, window=window, epsilon=epsilon)
                        index = len(run.iterations) - 1 if at is None else at
                        gaps.append(float(np.nanmax(run.psnr) - run.psnr[index]))
                        its.append(str(int(run.iterations[index])) + ("" if at is not None else "*"))
                    sweep_rows.append([network, window, epsilon, float(np.mean(gaps)),
                                       float(np.max(gaps)), " ".join(its)])
        _common.echo("", "## Ratio rule sensitivity (offline replay, same runs)", "",
                     _common.format_table(["network", "window", "epsilon", "mean gap", "max gap",
                                           "stop its (" + ", ".join(args.images) + ")"],
                                          sweep_rows, markdown=args.markdown), "")

    if args.save_json:
        k = max(1, args.json_every)
        payload = {
            "settings": {key: value for key, value in vars(args).items() if key != "save_json"},
            "machine": _common.machine_lines(args.device),
            "runs": [{
                "image": r.image, "network": r.network,
                "seconds_per_iteration": r.seconds_per_iteration, "backtracks": r.backtracks,
                "rules": r.rules,
                "curves": {
                    "iteration": r.iterations[::k].tolist(),
                    "psnr": np.round(r.psnr[::k], 4).tolist(),
                    "ratio": np.round(r.ratio[::k], 6).tolist(),
                    "variance": [float(f"{v:.6g}") for v in r.variance[::k]],
                    **({"ema_psnr": np.round(r.ema_psnr[::k], 4).tolist()}
                       if r.ema_psnr is not None else {}),
                },
            } for r in runs],
        }
        path = Path(args.save_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        _common.echo(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
