"""Smoke test of the benchmark scripts: each main() runs with the smallest settings
and prints tables of the expected shape (no timing thresholds)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SIZE = "32"  # the engine pads small images reflectively for its coarsest level
SPEED_SIZE = "64"  # the reference-style loop does not pad: >= 2 px at the coarsest level


def load(name: str) -> ModuleType:
    # as `python benchmarks/NAME.py` would (they import `_common`); keep_threads restores it
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"specdip_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    path = list(sys.path)
    yield
    torch.set_num_threads(threads)
    sys.path[:] = path


def tables(text: str) -> dict[str, list[list[str]]]:
    """Markdown tables of the output by the '## ' title above them: header row first."""
    found: dict[str, list[list[str]]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("|") and not line.startswith("|---"):
            found.setdefault(title, []).append([c.strip() for c in line.strip("|").split("|")])
    return found


def psnr_of(cell: str) -> float:
    return float(cell.split("/")[0])


def test_quality_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    quality = load("quality")
    code = quality.main(["--sizes", SIZE, "--images", "astronaut", "camera", "--width", "8",
                         "--max-iterations", "3", "--threads", "1", "--no-bm3d", "--markdown"])
    out = capsys.readouterr().out
    assert code == 0
    assert "machine:" in out and "torch" in out and "device: cpu" in out
    found = tables(out)
    expected = {
        "denoise (PSNR dB / SSIM)": ["noisy", "NL-means", "TV"],
        "inpaint (PSNR dB / SSIM)": ["masked", "biharmonic"],
        "deblock (PSNR dB / SSIM)": ["JPEG q10"],
    }
    assert set(found) == set(expected)
    for title, baselines in expected.items():
        header, *rows = found[title]
        assert header == ["image", "px", *baselines, "ours (last)", "ours (EMA)", "our stop",
                          "our time s"]
        # deblocking is gray, as in the paper; camera is gray anyway
        names = ["astronaut (gray)" if title.startswith("deblock") else "astronaut", "camera"]
        assert [r[0] for r in rows] == names
        assert all(r[1] == SIZE for r in rows)
        for row in rows:
            assert all(len(c.split("/")) == 2 for c in row[2:-2])  # "PSNR / SSIM"
            assert row[-2] == "3 (max_iterations)"
    denoise = found["denoise (PSNR dB / SSIM)"][1:]
    for row in denoise:  # the classical denoisers beat the noisy input
        assert psnr_of(row[3]) > psnr_of(row[2]) and psnr_of(row[4]) > psnr_of(row[2])
    assert "best: output=" in out


def test_trajectories_then_stopping_replay(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    import json

    import numpy as np

    trajectories = load("trajectories")
    runs = tmp_path / "runs.jsonl"
    assert trajectories.main(["--plan", "smoke", "--device", "cpu", "--out", str(runs)]) == 0
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert sorted(r["type"] for r in records) == ["baseline", "baseline", "run", "run"]
    run = next(r for r in records if r["type"] == "run" and r["task"] == "denoise")
    curves = run["curves"]
    assert len(curves["signal_iteration"]) == len(curves["psnr_ema"]) == 6  # every 5th of 30
    assert curves["holdout_loss_ema"][-1] > 0
    # a second call resumes: nothing left to do
    assert trajectories.main(["--plan", "smoke", "--device", "cpu", "--out", str(runs)]) == 0
    assert len(runs.read_text().splitlines()) == 4
    # some runs again, to another cap: the camera man's alone
    again = tmp_path / "again.jsonl"
    assert trajectories.main(["--plan", "smoke", "--device", "cpu", "--images", "camera",
                              "--widths", "8", "--cap", "10", "--no-baselines",
                              "--out", str(again)]) == 0
    (rerun,) = [json.loads(line) for line in again.read_text().splitlines()]
    assert (rerun["config"]["image"], rerun["iterations"]) == ("camera", 10)
    assert rerun["curves"]["signal_iteration"] == [5, 10]
    assert trajectories.main(["--plan", "smoke", "--device", "cpu", "--widths", "16",
                              "--out", str(tmp_path / "none.jsonl")]) == 0
    assert (tmp_path / "none.jsonl").read_text() == ""
    capsys.readouterr()

    stopping = load("stopping")
    rows_json = tmp_path / "rows.json"
    assert stopping.main([str(runs), "--markdown", "--json", str(rows_json),
                          "--noise-scales", "0.9", "1.1"]) == 0
    out = capsys.readouterr().out
    found = tables(out)
    header, *scaled = found["Sensitivity to the noise variance"]
    assert [r[0] for r in scaled] == ["1", "0.9", "1.1"] and all(r[1] == "1" for r in scaled)
    # without a noise level (Poisson-Gaussian model, inpainting) the rule watches the
    # held-out loss, as the engine does
    unknown = {**run, "stop_noise_variance": None}
    assert stopping.noise_variance_of(unknown) is None
    np.testing.assert_array_equal(stopping.auto_signal(unknown),
                                  stopping._column(curves, "holdout_loss_ema"))
    assert not np.array_equal(stopping.auto_signal(run), stopping.auto_signal(unknown))
    doubled = stopping.auto_signal(run, noise_scale=2.0)
    assert not np.allclose(doubled, stopping.auto_signal(run))
    assert stopping.noise_sensitivity([unknown], "all", [0.9]) == []  # nothing to scale
    # the held-out pixels' own noise draw: recorded by the engine, or the one really made
    v = stopping.noise_variance_of(run)
    for shares in (stopping.noise_shares_of(run), stopping.true_noise_shares(run)):
        assert shares is not None and all(0.5 * v < share < 2.0 * v for share in shares)
    assert stopping.true_noise_shares(run) != stopping.noise_shares_of(run)
    with_draw = stopping.auto_signal(run)
    for flag, draw in (("--without-draw", "none"), ("--true-draw", "true"),
                       ("--true-noise", "true-noise")):
        assert stopping.main([str(runs), flag]) == 0 and stopping.DRAW == draw
        assert not np.allclose(stopping.auto_signal(run), with_draw)
    assert stopping.main([str(runs)]) == 0 and stopping.DRAW == "estimated"
    capsys.readouterr()
    header, *rows = found["All runs"]
    assert header[:4] == ["rule", "runs", "mean gap", "max gap"]
    assert [r[0] for r in rows] == list(stopping.RULES)
    rows = json.loads(rows_json.read_text())
    for row in rows:
        for rule in stopping.RULES:
            assert row[rule]["gap"] >= -1e-9  # nothing beats the run's own best
            assert row[rule]["stop"] <= 30
    # the paper's ratio rule cannot fire within 30 iterations (it needs 2 x 100)
    assert all(not row["ratio"]["fired"] for row in rows)


def test_replay_matches_the_engine(tmp_path: Path) -> None:
    """The replayed hold-out rule stops where the engine's own run stops, and the stage
    replayed on the recorded step gives the engine's result."""
    from napari_specdip import RestoreParameters, restore
    import numpy as np

    stopping = load("stopping")
    trajectories = load("trajectories")
    # the balanced preset's optimiser and hold-out, as the engine's defaults
    balanced = RestoreParameters.for_task("denoise")
    config = trajectories.Config("camera", 64, "sigma25", 8, learning_rate=balanced.learning_rate,
                                 lr_warmup=balanced.lr_warmup, holdout=balanced.holdout,
                                 max_iterations=400)
    record = trajectories.run(config, "cpu", stage=True)
    outcome = stopping.replay(record, "auto")
    evalset = load("_evalset")
    clean = evalset.load("camera", 64)
    observation, _ = evalset.parse_degradation("sigma25").apply(clean, seed=0)
    engine = restore(observation, width=8, max_iterations=400, seed=0, preview_every=0,
                     reference=clean)
    assert engine.stop_reason == ("holdout" if outcome.fired else "max_iterations")
    assert (engine.iterations, engine.stop_iteration) == (outcome.stop, outcome.returned)
    # the replay scores the network's own output; the stage comes after it
    assert engine.metrics["psnr_unrefined"] == pytest.approx(outcome.psnr, abs=0.02)
    assert np.isfinite(outcome.psnr)
    staged = record["curves"]["psnr_stage"]
    assert len(staged) == len(record["curves"]["signal_iteration"])
    returned = record["curves"]["signal_iteration"].index(outcome.returned)
    assert engine.metrics["psnr"] == pytest.approx(staged[returned], abs=0.02)
    assert engine.metrics["psnr"] > engine.metrics["psnr_unrefined"]
    row = stopping.evaluate({**record, "type": "run"}, {})
    best = max(max(v for v in staged if v is not None), row["best"])
    assert row["auto"]["stage_gap"] == pytest.approx(best - staged[returned])
    assert "stage_gap" not in row["ratio"]  # the paper's rule returns the last iterate
    assert stopping.summarise_stage([row], (), "auto")[0][0] == 1


def test_time_to_quality_and_warm_start_smoke(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    import json

    ttq = load("time_to_quality")
    out = tmp_path / "ttq"
    assert ttq.main(["--sizes", "32", "--cases", "gray inpaint", "--presets", "quick",
                     "--budget", "2", "--out", str(out)]) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [r["preset"] for r in saved["runs"]] == ["quick"]
    assert "biharmonic" in saved["baselines"]["camera|inpaint0.5|32"]
    assert out.with_suffix(".png").stat().st_size > 1000
    capsys.readouterr()
    warm = load("warm_start")
    assert warm.main(["--size", "32", "--slices", "2", "--width", "8",
                      "--max-iterations", "6", "--out", str(tmp_path / "w.json")]) == 0
    text = capsys.readouterr().out
    assert "warm / cold time:" in text
    slices = json.loads((tmp_path / "w.json").read_text())
    assert len(slices) == 2 and all(s["warm"]["iterations"] == 6 for s in slices)


def test_gpu_presets_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    presets = load("gpu_presets")
    out = tmp_path / "gp"
    assert presets.main(["--device", "cpu", "--sizes", SIZE, "--rgb-sizes", SIZE, "--presets",
                         "quick", "--steps", "2", "--ensemble-size", SIZE, "--threads", "1",
                         "--out", str(out)]) == 0
    text = capsys.readouterr().out
    header, *rows = tables(text)["seconds per iteration"]
    assert header[:3] == ["px", "channels", "preset"] and len(header) == 9
    assert [r[:3] for r in rows] == [[SIZE, "gray", "quick"], [SIZE, "RGB", "quick"]]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 and float(r[5]) > 0 for r in rows)
    saved = json.loads(out.with_suffix(".json").read_text())
    # one seed, one result on the CPU; the sync count exists on CUDA only
    assert saved["same_seed_identical"] and saved["same_seed_identical_ensemble2"]
    assert saved["ensemble4_s"] > 0 and "host_syncs_per_step" not in saved


def test_speed_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    speed = load("speed")
    code = speed.main(["--sizes", SPEED_SIZE, "--width", "8", "--iterations", "2", "--warmup", "1",
                       "--repeats", "2", "--threads", "1", "--markdown"])
    out = capsys.readouterr().out
    assert code == 0
    found = tables(out)
    header, *rows = found["Engine vs reference-style loop (ms per iteration, medians)"]
    assert header[0] == "px" and len(header) == 8
    assert [r[0] for r in rows] == [SPEED_SIZE]
    assert all(float(c) > 0 for c in rows[0][1:4]) and rows[0][4].endswith("x")
    header, *rows = found["Measurement overhead of the engine, all signals on vs off"]
    assert len(header) == 7 and [r[0] for r in rows] == [SPEED_SIZE]
    assert rows[0][3].endswith("%") and rows[0][5] != "-"  # the direct estimate worked


def test_svd_patch_is_restored_and_exact() -> None:
    speed = load("speed")
    from napari_specdip.core import layers

    original = layers.spectral_norm_exact
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    with speed.svd_norm():
        assert layers.spectral_norm_exact is speed.svd_spectral_norm
        conv = layers.LipschitzConv2d(8, 16, 3, lipschitz=0.5)
        conv.weight.data.copy_(w)
        bounded = conv.effective_weight().detach()
    assert layers.spectral_norm_exact is original
    assert float(speed.svd_spectral_norm(w)) == pytest.approx(float(original(w)), rel=1e-5)
    assert float(original(bounded)) <= 0.5 + 1e-5


@pytest.mark.slow  # runs torch on every core by design: 10-100x slower when they are busy
def test_threads_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    threads = load("threads")
    rows = threads.main(["--size", "32", "--width", "4", "--iterations", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    settings = sorted({1, os.cpu_count() or 1})
    assert [(r["gui"], r["threads"]) for r in rows] == [
        (gui, n) for gui in ("idle", "throttled", "busy") for n in settings]
    assert all(r["ms"] > 0 for r in rows)
    # a 4-step run can end before the drawing thread finishes its first figure (seen with
    # matplotlib cold or the cores busy): 0 redraws/s is a measurement, not a failure
    assert all(r["fps"] >= 0 for r in rows if r["gui"] != "idle")
    assert "| torch threads | main thread | ms / iteration | vs 1 thread | redraws / s |" in out


def test_noise_level_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    noise_level = load("noise_level")
    assert noise_level.main(["--images", "camera", "nuclei1", "astronaut", "--sizes", "48",
                             "--sigmas", "25", "--tile-sizes", "64", "--tile", "24",
                             "--overlap", "4", "--seeds", "0", "1", "--markdown"]) == 0
    found = tables(capsys.readouterr().out)
    header, *rows = found["Whole images: estimate / noise drawn"]
    assert header[:4] == ["px", "sigma", "images", "median"] and len(rows) == 1
    assert rows[0][2] == "3" and 0.5 < float(rows[0][3]) < 2.0  # sigma 25 is well estimated
    title = "Tiles (24 px, overlap 4): estimate / noise drawn in the tile"
    header, *rows = found[title]
    # three 24 px cores a side: 9 tiles per image, estimated per tile and on the whole image
    assert [(r[0], r[3]) for r in rows][-2:] == [("all", "per tile"), ("all", "whole")]
    assert rows[-1][2] == "27"
    header, *rows = found["Held-out pixels' noise draw (0.1 held out): their noise energy / "
                          "the image's - 1, and its estimate"]
    assert header[-2:] == ["error taking 0 (RMS)", "error of the estimate (RMS)"]
    assert [r[0] for r in rows] == ["seed 0", "seed 1", "sigma 25", "48 px", "other kinds", "all"]
    assert all(r[1] == "3" for r in rows[:2]) and rows[-1][1] == "6"
    # the evaluation set draws one noise field per size and seed: the seeds differ
    assert rows[0][4] != rows[1][4]
    assert all(0.0 <= float(r[5]) < 0.5 for r in rows)


def test_stopping_replays_the_deblocking_budget() -> None:
    import numpy as np

    stopping = load("stopping")
    iterations = list(range(5, 1505, 5))
    peak = np.exp(-((np.asarray(iterations) - 150.0) / 300.0) ** 2)
    record = {"task": "deblock", "kind": "gray photo", "split": "tune",
              "stop_noise_variance": None, "stop_noise_shares": None,
              "config": {"image": "camera", "size": 64, "degradation": "jpeg10", "width": 32,
                         "learning_rate": 0.01, "seed": 0, "holdout": 0.1, "signal_every": 5},
              "curves": {"signal_iteration": iterations,
                         "psnr_ema": list(25.0 + peak), "psnr": list(25.0 + peak),
                         # the held-out loss keeps falling: only the budget ends the run
                         "holdout_loss_ema": list(1.0 / np.asarray(iterations, float))}}
    budget = stopping.deblock_budget_of(record)
    assert budget is not None and 5 < budget < 1000
    out = stopping.replay(record, "auto")
    assert out.fired and out.stop == out.returned == budget - budget % 5
    assert type(out.fired) is bool  # written out by --json
    # the paper's rule runs on to the recording's end
    assert stopping.replay(record, "ratio").stop == 1500
    assert stopping.deblock_budget_of({**record, "task": "denoise"}) is None


def test_stopping_replays_the_consistency_with_the_jpeg(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    stopping = load("stopping")
    iterations = np.arange(5, 1505, 5)
    record = {"task": "deblock", "kind": "gray photo", "split": "tune",
              "stop_noise_variance": None, "stop_noise_shares": None,
              "config": {"image": "camera", "size": 64, "degradation": "jpeg10", "width": 32,
                         "learning_rate": 0.01, "seed": 0, "holdout": 0.1, "signal_every": 5},
              "curves": {"signal_iteration": list(iterations),
                         "psnr_ema": list(25.0 - iterations / 1e3),
                         "psnr": list(25.0 - iterations / 1e3),
                         "holdout_loss_ema": list(1.0 / iterations),
                         # within the JPEG's intervals from iteration 100 on
                         "jpeg_excess_ema": list(np.maximum(10.0 - iterations / 10.0, 0.0))}}
    budget = stopping.deblock_budget_of(record)
    assert budget is not None and budget > 100
    monkeypatch.setattr(stopping, "CONSISTENCY", 0.2)
    assert stopping.consistent_at(record) == 100
    out = stopping.replay(record, "auto")
    assert out.fired and out.stop == out.returned == 100
    assert out.psnr == pytest.approx(24.9)
    monkeypatch.setattr(stopping, "CONSISTENCY", None)  # --consistency -1: the budget alone
    assert stopping.consistent_at(record) is None
    assert stopping.replay(record, "auto").stop == budget - budget % 5
    # recorded before the engine measured it: the budget alone
    monkeypatch.setattr(stopping, "CONSISTENCY", 0.2)
    older = {**record, "curves": {k: v for k, v in record["curves"].items()
                                  if k != "jpeg_excess_ema"}}
    assert stopping.consistent_at(older) is None


def test_stopping_caps_the_budget_at_the_presets_iterations() -> None:
    stopping = load("stopping")
    assert stopping.preset_cap(1e-2) == 1500  # quick
    assert stopping.preset_cap(3e-3) == 3000  # balanced
    assert stopping.preset_cap(1e-3) == 10**9  # the paper's step: its stop is not the budget
    # a light JPEG at 128 px calls for 2250 iterations at the quick preset's step, but a
    # user of that preset stops at its 1500
    record = {"task": "deblock",
              "config": {"image": "camera", "size": 128, "degradation": "jpeg50", "width": 32,
                         "learning_rate": 0.01, "seed": 0, "holdout": 0.1, "signal_every": 5}}
    assert stopping.deblock_budget_of(record) == 1500
    balanced = {**record, "config": {**record["config"], "width": 64, "learning_rate": 3e-3}}
    assert 1500 < stopping.deblock_budget_of(balanced) < 3000


def test_trajectories_plans_at_the_default_preset() -> None:
    trajectories = load("trajectories")
    for name in ("heldout-balanced", "deblock-balanced-light", "unseen-balanced"):
        configs = trajectories.plan(name)
        assert len({c.key for c in configs}) == len(configs) > 0
        # the balanced preset's width and step, held-out runs on the held-out half only
        assert {(c.width, c.learning_rate, c.lr_warmup) for c in configs} == {(64, 3e-3, 50)}
    held = trajectories.plan("heldout-balanced")
    assert {c.degradation for c in held} == {"sigma25", "pg30r2"}
    assert all(trajectories._evalset.split(c.image) == "held-out" for c in held)
    unseen = trajectories.plan("unseen-balanced")
    assert {c.image for c in unseen} == set(trajectories._evalset.UNSEEN)
    assert {c.degradation for c in unseen} == {"sigma15", "sigma35"}
    assert {c.max_iterations for c in unseen} == {1200, 2200}
    quick = trajectories.plan("unseen-quick")
    assert len({c.key for c in quick}) == len(quick) == 34
    assert {c.width for c in quick} == {16, 32, 128} and {c.learning_rate for c in quick} == {1e-2}
    assert all(trajectories._evalset.split(c.image) == "unseen" for c in quick)
    light = trajectories.plan("deblock-balanced-light")
    assert {c.degradation for c in light} == {"jpeg50", "jpeg30"}
    assert {c.max_iterations for c in light} == {3000}  # the balanced preset's cap
    consistency = trajectories.plan("deblock-consistency")
    assert len({c.key for c in consistency}) == len(consistency) == 25
    assert {c.size for c in consistency} == {128}
    assert "jpeg_excess_ema" in trajectories.COLUMNS


def test_the_dark_variant_and_its_deblocking_plan() -> None:
    trajectories = load("trajectories")
    evalset = trajectories._evalset
    image, dark = evalset.load("nuclei1", 64), evalset.load("nuclei1-dark", 64)
    assert evalset.split("nuclei1-dark") == "tune" and evalset.kind("puncta2-dark") == (
        "fluorescence")
    # the dark end cut to black, the rest stretched over the range
    cut = image <= evalset.DARK_CUT
    assert cut.any() and np.all(dark[cut] == 0.0)
    np.testing.assert_allclose(dark[~cut], (image[~cut] - evalset.DARK_CUT)
                               / (1.0 - evalset.DARK_CUT))
    configs = trajectories.plan("deblock-dark")
    assert len({c.key for c in configs}) == len(configs) == 21
    assert all(c.image.endswith("-dark") for c in configs)
    assert {c.degradation for c in configs} == {"jpeg10", "jpeg30"}


def test_the_unseen_set_loads_offline_beside_the_evaluation_set() -> None:
    evalset = load("_evalset")
    assert not set(evalset.UNSEEN) & set(evalset.IMAGES)
    for name, kind in evalset.UNSEEN.items():
        image = evalset.load(name, 48)
        assert image.shape[:2] == (48, 48) and image.ndim == (3 if "RGB" in kind else 2)
        assert 0.0 <= image.min() < image.max() <= 1.0
        assert evalset.split(name) == "unseen" and evalset.kind(name) == kind
    blobs = evalset.load("blobs", 64)  # sparse: mostly dark background
    assert np.mean(blobs <= 0.03) > 0.3
    np.testing.assert_array_equal(blobs, evalset.load("blobs", 64))


def test_trajectories_records_up_to_a_lower_cap(tmp_path: Path) -> None:
    import json

    trajectories = load("trajectories")
    runs = tmp_path / "runs.jsonl"
    assert trajectories.main(["--plan", "smoke", "--max-iterations", "10", "--no-baselines",
                              "--device", "cpu", "--out", str(runs)]) == 0
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert len(records) == 2  # the smoke plan records 30 iterations; cut to 10 here
    assert all(r["iterations"] == r["config"]["max_iterations"] == 10 for r in records)


def test_trajectories_keeps_one_half(tmp_path: Path) -> None:
    trajectories = load("trajectories")
    runs = tmp_path / "runs.jsonl"
    # the smoke plan's two images are both on the tuning half
    assert trajectories.main(["--plan", "smoke", "--split", "held-out", "--no-baselines",
                              "--out", str(runs)]) == 0
    assert not runs.exists() or not runs.read_text().strip()


def test_stack_camera_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    stack_camera = load("stack_camera")
    code = stack_camera.main(["--sizes", "48", "--slices", "3", "--peaks", "10",
                              "--images", "nuclei"])
    out = capsys.readouterr().out
    assert code == 0
    header, *rows = tables(out)["gain and read noise over the truth"]
    assert header[:3] == ["image", "px", "photons"] and len(rows) == 1
    assert rows[0][:3] == ["nuclei", "48", "10"] and rows[0][3].endswith("/3)")
    assert 0.5 < float(rows[0][5]) < 1.5  # the stack's gain over the truth
    assert "48 px: gain within 20% on" in out


def test_refine_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    refine = load("refine")
    out = tmp_path / "refine"
    code = refine.main(["--images", "camera", "nuclei1", "--size", "32", "--degradations",
                        "sigma25", "pg30r2", "--max-iterations", "20", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    header, *rows = tables(text)["per case"]
    assert header[:5] == ["image", "noise", "network dB", "Wiener dB", "refined dB"]
    assert len(rows) == 4
    saved = json.loads(out.with_suffix(".json").read_text())
    assert {r["record"]["method"] for r in saved} == {"wiener"}
    # nuclei1 is a dark background clipped at 0, under either noise
    declipped = {(r["image"], r["degradation"]) for r in saved if "declipped" in r["record"]}
    assert {("nuclei1", "sigma25"), ("nuclei1", "pg30r2")} <= declipped
    for r in saved:
        assert (r["wiener"] != r["refined"]) == ("declipped" in r["record"])
    for r in saved:  # the gain column is the two PSNRs of one run
        assert f"{r['refined'] - r['network']:+.2f}" in text
    _, *means = tables(text)["means (gain: refined - network; worst margins over NL-means: "
                             "network, refined)"]
    assert {m[0] for m in means} >= {"split tune", "noise sigma25", "noise pg30r2"}


def test_known_pixels_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    known_pixels = load("known_pixels")
    code = known_pixels.main(["--images", "camera", "nuclei1", "--size", "32",
                              "--max-iterations", "10"])
    text = capsys.readouterr().out
    assert code == 0
    header, *rows = tables(text)["per image"]
    assert header == ["image", "kind", "split", "iterations", "fitted dB", "kept dB", "gain"]
    assert [r[0] for r in rows] == ["camera", "nuclei1"]
    for r in rows:  # the known pixels are exact here: putting them back cannot lose
        assert float(r[5]) >= float(r[4])
        assert float(r[6]) == pytest.approx(float(r[5]) - float(r[4]), abs=0.011)
    assert {m[0] for m in tables(text)["means"][1:]} >= {"all", "split tune"}
