"""Smoke test of benchmarks/photon.py and benchmarks/ensemble.py: each main() runs with the
smallest settings, writes its files and prints tables of the expected shape."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"specdip_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
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
    found: dict[str, list[list[str]]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("|") and not line.startswith("|---"):
            found.setdefault(title, []).append([c.strip() for c in line.strip("|").split("|")])
    return found


def test_photon_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    photon = load("photon")
    code = photon.main(["--size", "48", "--width", "4", "--budget", "3", "--images", "nuclei",
                        "--peaks", "30", "--methods", "ours (gaussian)", "ours (weighted)",
                        "--no-bm3d", "--estimator-size", "64", "--estimator-seeds", "1",
                        "--out", str(tmp_path / "photon")])
    out = capsys.readouterr().out
    assert code == 0
    found = tables(out)
    header, *rows = found["PSNR dB / SSIM per exposure (ours: at the default stop)"]
    assert header == ["image", "peak", "read", "noisy", "NLM+GAT", "ours (gaussian)",
                      "ours (weighted)"]
    assert [r[:3] for r in rows] == [["nuclei", "30", "2"]]
    noisy, nlm = (float(c.split("/")[0]) for c in rows[0][3:5])
    assert nlm > noisy  # the classical denoiser with the transform beats the input
    estimator = found["Estimated / true camera values (64 px, median over 1 exposures; worst "
                      "in brackets)"]
    assert [r[2] for r in estimator[1:]] == ["1", "2", "3"]
    saved = json.loads((tmp_path / "photon.json").read_text())
    run = saved["records"][0]["ours"]["ours (weighted)"]
    assert run["iterations"] == 3 and run["noise_model"]["fit"] == "weighted"
    assert (tmp_path / "photon.md").read_text().startswith("machine:")


def test_photon_several_noise_seeds(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """--seed 0 1: one exposure of each case per seed, a seed column, and the comparison
    with BM3D+GAT per seed (BM3D stood in for by a Gaussian filter: not a CI dependency)."""
    from scipy.ndimage import gaussian_filter

    photon = load("photon")
    monkeypatch.setattr(photon, "bm3d_available", lambda: True)
    monkeypatch.setattr(photon, "_bm3d", lambda image, sigma: gaussian_filter(image, 1.0))
    code = photon.main(["--size", "48", "--width", "4", "--budget", "3", "--images", "nuclei",
                        "--peaks", "10", "--methods", "ours (weighted)", "--seed", "0", "1",
                        "--estimator-size", "0", "--out", str(tmp_path / "photon")])
    out = capsys.readouterr().out
    assert code == 0
    header, *rows = tables(out)["PSNR dB / SSIM per exposure (ours: at the default stop)"]
    assert header[:4] == ["image", "peak", "read", "seed"]
    assert [r[:4] for r in rows] == [["nuclei", "10", "2", "0"], ["nuclei", "10", "2", "1"]]
    assert rows[0][4] != rows[1][4]  # two exposures, two noisy scores
    saved = json.loads((tmp_path / "photon.json").read_text())
    assert [r["seed"] for r in saved["records"]] == [0, 1]
    per_seed = saved["summary"]["ours (weighted) - BM3D+GAT, peaks <= 30, per noise seed (mean dB)"]
    diffs = [float(d) for d in per_seed.split(" / ")]
    mean = saved["summary"]["ours (weighted) - BM3D+GAT, peaks <= 30 (mean dB)"]
    assert len(diffs) == 2 and sum(diffs) / 2 == pytest.approx(mean, abs=0.01)


def test_ensemble_smoke(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ensemble = load("ensemble")
    code = ensemble.main(["--size", "48", "--width", "4", "--max-iterations", "3", "--stop",
                          "none", "-k", "2", "--images", "nuclei", "camera",
                          "--out", str(tmp_path / "ensemble")])
    out = capsys.readouterr().out
    assert code == 0
    header, *rows = tables(out)["Ensemble vs single runs"]
    assert header[0] == "image" and header[2] == "K=2 PSNR" and len(header) == 10
    assert [r[0] for r in rows] == ["nuclei", "camera"]
    assert all(r[5] == "3 / 3" for r in rows)
    saved = json.loads((tmp_path / "ensemble.json").read_text())
    assert all(-1.0 <= r["corr_pixel"] <= 1.0 for r in saved["records"])


def test_photon_scores_what_the_engine_returns() -> None:
    """photon.py's score of our run is that of the result the engine returns at its own
    stop (the hold-out minimum), and an ensemble's record carries the uncertainty's
    correlation with the error."""
    from napari_specdip import RestoreParameters, restore

    photon = load("photon")
    case = {"image": "nuclei", "size": 48, "peak": 10.0, "read": 2.0, "seed": 0,
            "method": "ours (weighted, K=4)", "device": "cpu", "width": 4, "budget": 60,
            "lr": None, "threads": 0}
    record = photon.ours(case)
    micro = photon.micro
    clean = micro.load("nuclei", 48)
    camera = micro.Camera(peak=10.0, read=2.0)
    params = RestoreParameters.for_task("denoise", width=4).replace(
        max_iterations=60, seed=0, preview_every=0, **photon.OURS[case["method"]])
    engine = restore(camera.expose(clean, 0), parameters=params, output_dtype="float32")
    assert record["stop_iteration"] == engine.stop_iteration
    assert record["psnr"] == pytest.approx(micro.score(camera.to_unit(engine.image), clean)[0],
                                           abs=1e-3)
    assert record["best"] >= record["psnr"] and record["gap"] >= 0.0
    assert -1.0 <= record["uncertainty_corr"] <= 1.0
