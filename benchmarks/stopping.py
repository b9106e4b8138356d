"""Stopping rules against the oracle: how close does each rule land to the run's best?

Reads runs recorded by ``trajectories.py`` (every signal and the PSNR of the
last iterate and of the moving average at every evaluated step, each run to
its cap) and replays the engine's own rule objects on them, fed exactly as the
engine feeds them, one value per evaluated step:

- ``auto`` (the default of the quick and balanced presets):
  :class:`~napari_specdip.stopping.HoldoutRule` on the held-out error of the
  moving average; the result is the moving average in the middle of the
  plateau around the rule's minimum (``HoldoutRule.returned_iteration``).
  When denoising it watches, as the engine does, the estimated error of the
  moving average (``error_estimate_ema``, recorded by ``trajectories.py`` since
  2026-12-03, or computed from the recorded losses; records without the fitted
  pixels' loss fall back to the held-out loss).
- ``minimum``: ``auto`` returning the moving average at the minimum itself
  (``holdout_return="minimum"``; the default until 2026-12-05) instead of the
  middle of the minimum's plateau.
- ``plain``: the same rule on the held-out loss alone (the engine's choice until
  2026-12-03, and still for inpainting and deblocking), for comparison.
- ``ratio`` (the paper's rule, paper preset): the blur/sharpness ratio rule
  (window 100, epsilon 0.01); the result is the last iterate when it fires.
- ``wmv`` (ES-WMV as published): the moving average at the variance minimum
  once the patience (1000) runs out.

For each run and rule: the gap (the run's best PSNR, moving average or last
iterate, minus the PSNR of what the rule returns), the iterations spent after
the run's peak, and for denoising the margin over NL-means. A rule that never
fires returns at the cap, marked ``*``. Runs recorded with ``trajectories.py --stage``
also give the gap of the result after the engine's denoising stage (``refine``, what
the user gets) to the best any evaluated step offers, with the stage or without it (the
*stage gap*), and the staged result's margin over NL-means. Tables are grouped by split (tune /
held-out), image kind, width and size. ``--without-draw`` replays the estimate
as it was before it took in the held-out pixels' own noise draw, ``--true-draw`` with the
draw actually made (from the clean image), ``--true-noise`` with the noise level drawn
too (what a known ``noise_sigma`` gives). ``--recompute-noise`` recomputes the noise
variance and the held-out pixels' draw from each run's observation with the current
estimator instead of taking the recorded ones (how a change of the estimator moves the
stop). ``--noise-scales``
adds the auto rule's gaps with the noise variance it uses scaled by each factor (how
much a misestimated noise level costs).

Examples
--------
python benchmarks/trajectories.py --plan heldout --out runs.jsonl
python benchmarks/stopping.py runs.jsonl --split held-out --markdown
python benchmarks/stopping.py runs.jsonl --split held-out --noise-scales 0.9 1.1
python benchmarks/stopping.py runs.jsonl --split held-out --without-draw
python benchmarks/stopping.py runs.jsonl --split held-out --recompute-noise
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from napari_specdip.core.jpeg import CONSISTENT_EXCESS

RULES = ("auto", "minimum", "plain", "ratio", "wmv")
GOALS = {"mean_gap": 0.3, "max_gap": 0.6, "past_peak": 500, "over_nl_means": 1.0}


@dataclass
class Outcome:
    """What one rule returns on one run."""

    stop: int  # iteration at which the run ends
    returned: int  # iteration whose output is returned
    psnr: float
    fired: bool


def _column(curves: dict[str, Any], name: str) -> np.ndarray:
    values = curves.get(name)
    if values is None:
        return np.full(len(curves["signal_iteration"]), np.nan)
    return np.asarray([math.nan if v is None else v for v in values], dtype=float)


_JOBS: dict[str, Any] = {}
#: the held-out pixels' own noise draw in the estimate: "estimated" as the engine does,
#: "none" as it did before 2026-12-03, evening (``--without-draw``), "true", the noise
#: actually drawn on each set (``--true-draw``, from the clean image: a diagnosis, not a
#: rule), or "true-noise", that and the image's noise level too (``--true-noise``: what a
#: user's ``noise_sigma`` gives)
DRAW = "estimated"
#: recompute the noise variance from the observation with the current estimator instead of
#: taking the one the run recorded (``--recompute-noise``: how a change of the estimator
#: moves the stop)
RECOMPUTE_NOISE = False
#: the deblocking consistency rule's threshold in the replay (None: the budget alone; the
#: engine's by default, ``--consistency``)
CONSISTENCY: float | None = CONSISTENT_EXCESS


_OBSERVED: dict[str, Any] = {}


def _observed(record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, Any]:
    """(clean, observation, missing pixels) of this run, regenerated from its config."""
    c = record["config"]
    key = f"{c['image']}|{c['size']}|{c['degradation']}|{c['seed']}"
    if key not in _OBSERVED:
        import _evalset

        clean = _evalset.load(c["image"], c["size"])
        _OBSERVED[key] = (clean, *_evalset.parse_degradation(c["degradation"]).apply(
            clean, seed=c["seed"]))
    return _OBSERVED[key]


def _job_of(record: dict[str, Any]) -> Any:
    """The engine's job for this run's observation (regenerated from its config)."""
    c = record["config"]
    key = f"{c['image']}|{c['size']}|{c['degradation']}|{c['seed']}|{c['holdout']}"
    if key not in _JOBS:
        import _evalset

        from napari_specdip import RestoreParameters
        from napari_specdip.core.engine import plan_restore

        task = _evalset.parse_degradation(c["degradation"]).task
        clean, observation, missing = _observed(record)
        params = RestoreParameters.for_task(task, holdout=c["holdout"], seed=c["seed"])
        _JOBS[key] = plan_restore(observation, task, mask=missing,
                                  channel_axis=-1 if clean.ndim == 3 else None,
                                  parameters=params, check_memory=False)
    return _JOBS[key]


def _drawn_noise(record: dict[str, Any]) -> np.ndarray:
    """Each pixel's squared noise actually drawn (its channels' mean), in the data's units."""
    clean, observation, _ = _observed(record)
    noise = (observation - clean) ** 2
    return noise.mean(axis=-1) if noise.ndim == 3 else noise


def noise_variance_of(record: dict[str, Any]) -> float | None:
    """The noise variance the engine's auto stop uses on this run's observation (None:
    it watches the held-out loss)."""
    if "stop_noise_variance" in record and not RECOMPUTE_NOISE:
        value = record["stop_noise_variance"]
        return None if value is None else float(value)
    from napari_specdip.core.engine import stop_noise_variance

    return stop_noise_variance(_job_of(record))  # an older record: the same computation


def noise_shares_of(record: dict[str, Any]) -> tuple[float, float] | None:
    """The noise variance on the held-out and on the fitted pixels that the engine's
    auto stop uses on this run (recomputed for records made before it did)."""
    if "stop_noise_shares" in record and not RECOMPUTE_NOISE:
        value = record["stop_noise_shares"]
        return None if value is None else (float(value[0]), float(value[1]))
    from napari_specdip.core.engine import stop_noise_shares

    return stop_noise_shares(_job_of(record))


def true_noise_variance(record: dict[str, Any]) -> float | None:
    """The noise variance actually drawn on this run's observation, in the fitted space
    (None where the engine's stop watches the held-out loss)."""
    if noise_variance_of(record) is None:
        return None
    layout = _job_of(record).layout
    return float(_drawn_noise(record).mean()) / (layout.high - layout.low) ** 2


def true_noise_shares(record: dict[str, Any]) -> tuple[float, float] | None:
    """The engine's noise variance (or with ``DRAW == "true-noise"`` the drawn one) scaled
    by the noise actually drawn on the held-out and on the fitted pixels, relative to the
    whole image's (regenerated from the config)."""
    from napari_specdip.core.engine import _holdout_masks

    v = true_noise_variance(record) if DRAW == "true-noise" else noise_variance_of(record)
    if v is None:
        return None
    noise = _drawn_noise(record)
    job = _job_of(record)
    masks = _holdout_masks(job.params, *noise.shape, job.known)
    if masks is None:
        return None
    overall = float(noise.mean())
    return (v * float(np.mean([noise[m].mean() for m in masks])) / overall,
            v * float(np.mean([noise[~m].mean() for m in masks])) / overall)


def auto_signal(record: dict[str, Any], noise_scale: float = 1.0) -> np.ndarray:
    """What the engine's auto rule watches in this run: the recorded estimated error, or
    one computed from the recorded losses with the engine's formula (records made
    before the engine took in the held-out pixels' own noise draw on 2026-12-03 are
    recomputed), else the held-out loss. ``noise_scale`` multiplies the noise variance
    (recomputing the estimate): how much a misestimated noise level moves the stop."""
    import torch

    from napari_specdip.core.signals import error_estimate

    curves = record["curves"]
    fit = _column(curves, "fit_loss_ema")
    held = _column(curves, "holdout_loss_ema")
    noise = noise_variance_of(record) if np.isfinite(fit).any() else None
    if noise is None:
        return held
    if DRAW == "true-noise":
        noise = true_noise_variance(record) or noise
    recorded = _column(curves, "error_estimate_ema")
    if (np.isfinite(recorded).any() and noise_scale == 1.0 and DRAW == "estimated"
            and "stop_noise_shares" in record and not RECOMPUTE_NOISE):
        return recorded
    shares = {"estimated": noise_shares_of, "true": true_noise_shares,
              "true-noise": true_noise_shares}.get(DRAW, lambda _: None)(record)
    scaled = None if shares is None else (shares[0] * noise_scale, shares[1] * noise_scale)
    return error_estimate(torch.from_numpy(fit), torch.from_numpy(held), noise * noise_scale,
                          float(record["config"]["holdout"]), noise_shares=scaled).numpy()


def replay(record: dict[str, Any], rule: str, noise_scale: float = 1.0) -> Outcome:
    """Feed ``rule`` the recorded signals of one run, as the engine does (``noise_scale``:
    see :func:`auto_signal`)."""
    from napari_specdip import RestoreParameters
    from napari_specdip.stopping import make_rules

    c = record["config"]
    curves = record["curves"]
    iterations = _column(curves, "signal_iteration").astype(int)
    budget = deblock_budget_of(record) if rule in ("auto", "minimum", "plain") else None
    if budget is not None:  # or the output's consistency with the JPEG, where it comes first
        budget = min(budget, consistent_at(record) or budget)
    if budget is not None and budget < iterations[-1]:  # the budget ends the run there
        curves = {k: v[:int(np.searchsorted(iterations, budget, side="right"))]
                  if isinstance(v, list) and len(v) == len(iterations) else v
                  for k, v in curves.items()}
        record = {**record, "curves": curves}
        iterations = _column(curves, "signal_iteration").astype(int)
    p = RestoreParameters.for_task("denoise")
    every = int(c["signal_every"])
    built = make_rules("auto" if rule in ("plain", "minimum") else rule, window=p.stop_window,
                       epsilon=p.stop_epsilon, patience=p.wmv_patience, every=every,
                       holdout_patience=p.holdout_patience, holdout_plateau=rule != "minimum")
    made = built[0]
    signal = {"plain": "holdout_loss_ema", "ratio": "ratio", "wmv": "variance"}.get(rule)
    values = auto_signal(record, noise_scale) if signal is None else _column(curves, signal)
    # what the rule's output choice returns: the moving average, or the paper's last iterate
    psnr = _column(curves, "psnr" if rule == "ratio" else "psnr_ema")
    returned = len(iterations) - 1
    for index, (iteration, value) in enumerate(zip(iterations, values, strict=True)):
        if not math.isfinite(value):  # the engine feeds a signal only once it exists
            continue
        fired = made.update(int(iteration), float(value))
        if rule != "ratio" and getattr(made, "improved", False):
            returned = index
        if fired:
            chosen = index if rule == "ratio" else _returned(made, iterations, returned)
            return Outcome(int(iteration), int(iterations[chosen]), float(psnr[chosen]), True)
    chosen = len(iterations) - 1 if rule == "ratio" else _returned(made, iterations, returned)
    ended = bool(budget is not None and iterations[-1] >= budget)  # the budget is the rule's
    return Outcome(int(iterations[-1]), int(iterations[chosen]), float(psnr[chosen]), ended)


def consistent_at(record: dict[str, Any]) -> int | None:
    """The first evaluated step at which the engine's deblocking consistency rule
    (``ConsistencyRule``) ends this run, at the threshold replayed (:data:`CONSISTENCY`,
    at quality 10's quantisation scale, in proportion to the run's); None where it does not fire, is off, or the run was recorded
    before the engine measured ``jpeg_excess_ema`` (2026-12-07)."""
    if CONSISTENCY is None or record["task"] != "deblock":
        return None
    curves = record["curves"]
    if "jpeg_excess_ema" not in curves:
        return None
    from napari_specdip.core.jpeg import consistency_threshold
    from napari_specdip.stopping import ConsistencyRule

    threshold = consistency_threshold(_job_of(record).jpeg, CONSISTENCY)
    if threshold is None:
        return None
    rule = ConsistencyRule(threshold=threshold)
    for iteration, value in zip(_column(curves, "signal_iteration"),
                                _column(curves, "jpeg_excess_ema"), strict=True):
        if rule.update(int(iteration), float(value)):
            return int(iteration)
    return None


def _returned(rule: Any, iterations: np.ndarray, minimum: int) -> int:
    """Index of the step whose output the rule returns: the hold-out rule's own pick (the
    middle of its plateau), else its minimum."""
    from napari_specdip.stopping import HoldoutRule

    if isinstance(rule, HoldoutRule):
        return int(np.searchsorted(iterations, rule.returned_iteration))
    return minimum


def deblock_budget_of(record: dict[str, Any]) -> int | None:
    """The iterations the engine's deblocking stop allows this run (the engine's own
    plan of the regenerated observation, at the run's width and step, within the cap of
    the preset whose step it was recorded with), or None for other tasks."""
    if record["task"] != "deblock":
        return None
    from napari_specdip.core.engine import iteration_limit

    c = record["config"]
    job = _job_of(record)
    job = replace(job, params=job.params.replace(
        width=int(c["width"]), learning_rate=float(c["learning_rate"]),
        max_iterations=preset_cap(float(c["learning_rate"]))))
    height, width = job.observation.shape[:2]
    return iteration_limit(job, height, width)


def preset_cap(learning_rate: float) -> int:
    """``max_iterations`` of the preset that steps at ``learning_rate`` (quick 1500,
    balanced 3000): where a user of that preset's run ends, whatever its budget. Other
    steps (explored settings no preset has): no cap."""
    from napari_specdip import RestoreParameters
    from napari_specdip.core.params import PRESETS

    for name in PRESETS:
        p = RestoreParameters.for_task("deblock", preset=name)
        if p.stop == "auto" and math.isclose(p.learning_rate, learning_rate):
            return int(p.max_iterations)
    return 10**9


def evaluate(record: dict[str, Any], baselines: dict[str, Any]) -> dict[str, Any]:
    """Per-rule gap, iterations past the peak, margin over NL-means of one run."""
    c = record["config"]
    curves = record["curves"]
    iterations = _column(curves, "signal_iteration")
    best_ema, best_last = _column(curves, "psnr_ema"), _column(curves, "psnr")
    best = max(np.nanmax(best_ema), np.nanmax(best_last))
    peak_iteration = float(iterations[int(np.nanargmax(best_ema))])
    base = baselines.get(f"{c['image']}|{c['size']}|{c['degradation']}|{c['seed']}", {})
    row: dict[str, Any] = {"image": c["image"], "kind": record["kind"], "split": record["split"],
                           "task": record["task"], "degradation": c["degradation"],
                           "size": c["size"], "width": c["width"], "best": float(best),
                           "peak_iteration": peak_iteration, "nl_means": base.get("nl_means"),
                           "bm3d": base.get("bm3d"), "biharmonic": base.get("biharmonic"),
                           "seconds_per_iteration": record["seconds"] / record["iterations"]}
    staged = _column(curves, "psnr_stage")
    has_stage = bool(np.isfinite(staged).any())
    # the best any evaluated step offers, with the stage or without it (refine="none")
    row["stage_best"] = float(max(np.nanmax(staged), best)) if has_stage else None
    for rule in RULES:
        out = replay(record, rule)
        row[rule] = {"gap": float(best - out.psnr), "psnr": out.psnr, "stop": out.stop,
                     "returned": out.returned, "fired": out.fired,
                     "past_peak": float(out.stop - peak_iteration)}
        # the stage is applied to the moving average: not to the paper rule's last iterate
        at = np.flatnonzero(iterations == out.returned)
        if has_stage and rule != "ratio" and len(at) and np.isfinite(staged[at[0]]):
            row[rule]["stage_psnr"] = float(staged[at[0]])
            row[rule]["stage_gap"] = float(row["stage_best"] - staged[at[0]])
    return row


def load(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    baselines: dict[str, Any] = {}
    for path in paths:
        text = (gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz"
                else path.read_text())
        for line in text.splitlines():
            record = json.loads(line)
            if record["type"] == "run":
                runs.append(record)
            elif record["type"] == "baseline":
                baselines[record["key"]] = record
    return _longest(runs), baselines


def _longest(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per run: a longer recording of the same run (same settings but the cap,
    under a schedule that does not depend on the cap) supersedes a shorter one, whose
    steps it repeats, and a later one of the same length (a file given after another: a
    rerun with a newer engine) an earlier one."""
    kept: dict[str, dict[str, Any]] = {}
    for record in runs:
        c = record["config"]
        key = record["key"]
        if c.get("lr_schedule") in ("constant", "exponential"):
            key = json.dumps({k: v for k, v in c.items() if k != "max_iterations"},
                             sort_keys=True)
        if key not in kept or record["iterations"] >= kept[key]["iterations"]:
            kept[key] = record
    return list(kept.values())


def _grouped(rows: list[dict[str, Any]], keys: tuple[str, ...]
             ) -> list[tuple[tuple[Any, ...], list[dict[str, Any]]]]:
    """``rows`` grouped by their values of ``keys``, the groups in order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    return sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0])))


def summarise(rows: list[dict[str, Any]], keys: tuple[str, ...], rule: str) -> list[list[Any]]:
    table = []
    for group, members in _grouped(rows, keys):
        gaps = [m[rule]["gap"] for m in members]
        past = [m[rule]["past_peak"] for m in members]
        margins = [m[rule]["psnr"] - m["nl_means"] for m in members
                   if m["task"] == "denoise" and m["nl_means"] is not None]
        table.append([*group, len(members), f"{np.mean(gaps):.2f}", f"{np.max(gaps):.2f}",
                      f"{max(past):.0f}", f"{min(margins):+.2f}" if margins else "-"])
    return table


def summarise_stage(rows: list[dict[str, Any]], keys: tuple[str, ...], rule: str
                    ) -> list[list[Any]]:
    """As :func:`summarise`, for the result after the denoising stage: the gap to the best
    any evaluated step offers (the stage's output or the network's own), the network's gap
    on those runs, and the margin of the staged result over NL-means."""
    table = []
    for group, members in _grouped([r for r in rows if "stage_gap" in r[rule]], keys):
        gaps = [m[rule]["stage_gap"] for m in members]
        network = [m[rule]["gap"] for m in members]
        margins = [m[rule]["stage_psnr"] - m["nl_means"] for m in members
                   if m["nl_means"] is not None]
        table.append([*group, len(members), f"{np.mean(gaps):.2f}", f"{np.max(gaps):.2f}",
                      f"{np.mean(network):.2f}", f"{np.max(network):.2f}",
                      f"{min(margins):+.2f}" if margins else "-",
                      f"{sum(m >= GOALS['over_nl_means'] for m in margins)} of {len(margins)}"])
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="JSON-lines files of trajectories.py")
    parser.add_argument("--split", choices=("tune", "held-out", "unseen", "all"),
                        default="all")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--noise-scales", type=float, nargs="*", default=[],
                        help="also replay auto with the noise variance times each of these")
    parser.add_argument("--without-draw", action="store_true",
                        help="replay auto's estimate with the image's noise variance on the "
                             "held-out pixels too, not their own draw (the engine before "
                             "2026-12-03, evening)")
    parser.add_argument("--true-draw", action="store_true",
                        help="replay auto's estimate with the noise actually drawn on the "
                             "held-out and the fitted pixels (from the clean image)")
    parser.add_argument("--true-noise", action="store_true",
                        help="as --true-draw, and the image's noise level the one drawn too "
                             "(what a known noise_sigma gives)")
    parser.add_argument("--consistency", type=float, default=CONSISTENT_EXCESS,
                        help="the deblocking consistency rule's threshold replayed (grey "
                             "levels at quality 10's quantisation, in proportion to a run's; "
                             "default the engine's); negative: the budget alone")
    parser.add_argument("--recompute-noise", action="store_true",
                        help="recompute the noise variance (and the held-out pixels' draw) "
                             "from each run's observation with the current estimator instead "
                             "of the recorded one")
    args = parser.parse_args(argv)
    global DRAW, RECOMPUTE_NOISE, CONSISTENCY
    RECOMPUTE_NOISE = args.recompute_noise
    CONSISTENCY = None if args.consistency is None or args.consistency < 0 else args.consistency
    DRAW = ("none" if args.without_draw else "true-noise" if args.true_noise
            else "true" if args.true_draw else "estimated")
    runs, baselines = load(args.runs)
    # a run that never rose 3 dB above its observation failed to fit: reported apart
    rows = [evaluate(r, baselines) for r in runs
            if args.split in ("all", r["split"])]
    if not rows:
        _common.echo("no runs")
        return 1
    _common.echo(f"{len(rows)} runs ({args.split}); gap = best PSNR of the run (moving average "
                 "or last iterate) - PSNR of what the rule returns; past peak = iterations "
                 "run after the moving average's peak; vs NL-means = the smallest margin of the "
                 "result over NL-means (denoising)", "")
    header = ["rule", "runs", "mean gap", "max gap", "max past peak", "min vs NL-means"]
    overall = []
    for rule in RULES:
        overall += [[rule, *row] for row in summarise(rows, (), rule)]
    _common.echo("## All runs", "", _common.format_table(header, overall,
                                                         markdown=args.markdown), "")
    for keys in (("kind",), ("width",), ("size",), ("degradation",)):
        table = []
        for rule in ("auto", "minimum", "plain", "ratio"):
            table += [[rule, *row] for row in summarise(rows, keys, rule)]
        _common.echo(f"## By {keys[0]}", "", _common.format_table(
            ["rule", *keys, *header[1:]], table, markdown=args.markdown), "")
    if any("stage_gap" in r["auto"] for r in rows):
        stage_header = ["rule", "runs", "mean stage gap", "max stage gap", "mean network gap",
                        "max network gap", "min staged vs NL-means", "NL-means + 1 dB"]
        for keys in ((), ("kind",), ("width",), ("degradation",)):
            table = []
            for rule in ("auto", "minimum", "plain"):
                table += [[rule, *row] for row in summarise_stage(rows, keys, rule)]
            _common.echo(f"## The result after the stage{f' by {keys[0]}' if keys else ''}",
                         "", _common.format_table([stage_header[0], *keys, *stage_header[1:]],
                                                  table, markdown=args.markdown), "")
    detail = [[r["image"], r["kind"], r["degradation"], r["size"], r["width"],
               f"{r['best']:.2f}", f"{r['peak_iteration']:.0f}",
               f"{r['auto']['psnr']:.2f}", f"{r['auto']['gap']:.2f}",
               f"{r['auto']['stop']}{'' if r['auto']['fired'] else '*'}",
               f"{r['plain']['gap']:.2f}",
               f"{r['ratio']['psnr']:.2f}", f"{r['ratio']['gap']:.2f}",
               f"{r['ratio']['stop']}{'' if r['ratio']['fired'] else '*'}",
               "-" if r["nl_means"] is None else f"{r['nl_means']:.2f}",
               "-" if r["bm3d"] is None else f"{r['bm3d']:.2f}",
               f"{r['auto']['stage_psnr']:.2f}" if "stage_psnr" in r["auto"] else "-",
               f"{r['auto']['stage_gap']:.2f}" if "stage_gap" in r["auto"] else "-"]
              for r in rows]
    _common.echo("## Every run", "", _common.format_table(
        ["image", "kind", "degradation", "px", "width", "best", "peak at", "auto PSNR",
         "auto gap", "auto stop", "plain gap", "paper PSNR", "paper gap", "paper stop",
         "NL-means", "BM3D", "auto staged", "stage gap"],
        detail, markdown=args.markdown), "")
    if args.noise_scales:
        _common.echo("## Sensitivity to the noise variance", "", _common.format_table(
            ["noise variance x", "runs", "mean gap", "max gap", "worst run"],
            noise_sensitivity(runs, args.split, args.noise_scales), markdown=args.markdown), "")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def noise_sensitivity(runs: list[dict[str, Any]], split: str, scales: Iterable[float]
                      ) -> list[list[str]]:
    """The auto rule's gap when the noise variance it uses is off by each factor, on the
    runs where it watches the estimated error."""
    chosen = [r for r in runs if split in ("all", r["split"])
              and r["task"] == "denoise" and noise_variance_of(r) is not None]
    table: list[list[str]] = []
    if not chosen:
        return table
    for scale in [1.0, *scales]:
        gaps = []
        for record in chosen:
            curves = record["curves"]
            best = float(max(np.nanmax(_column(curves, "psnr_ema")),
                             np.nanmax(_column(curves, "psnr"))))
            gaps.append(best - replay(record, "auto", scale).psnr)
        worst = int(np.argmax(gaps))
        c = chosen[worst]["config"]
        table.append([f"{scale:g}", str(len(gaps)), f"{np.mean(gaps):.2f}", f"{max(gaps):.2f}",
                      f"{c['image']} {c['size']} px {c['degradation']} w{c['width']}"])
    return table


if __name__ == "__main__":
    raise SystemExit(main())
