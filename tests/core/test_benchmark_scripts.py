"""Smoke test of the memory and CLI-threads benchmarks: smallest settings, tables of the
expected shape (no timing or memory thresholds)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def load() -> Iterator[object]:
    threads, path = torch.get_num_threads(), list(sys.path)
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import _common from their folder

    def _load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"specdip_bench_{name}",
                                                      BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    yield _load
    torch.set_num_threads(threads)
    sys.path[:] = path


def test_memory_benchmark_smoke(load: object, capsys: pytest.CaptureFixture[str]) -> None:
    memory = load("memory")  # type: ignore[operator]
    rows = memory.main(["--sizes", "48", "--widths", "8", "--channels", "1", "--iterations", "2"])
    out = capsys.readouterr().out
    assert len(rows) == 1, out
    row = rows[0]
    assert row["measured"] > 0 and row["total"] > 0 and row["ratio"] > 0
    assert row["total"] == sum(row[k] for k in ("parameters", "activations", "backward",
                                                 "buffers", "allocator"))
    assert "| denoise | 48 | 1 | 8 |" in out and "measured / estimate: min" in out


def test_cli_threads_benchmark_smoke(load: object, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("cli_threads")  # type: ignore[operator]
    rows = bench.main(["--size", "32", "--width", "4", "--iterations", "3", "--repeats", "1",
                       "--threads", "1", "--busy", "0"])
    out = capsys.readouterr().out
    assert [(r["busy"], r["threads"]) for r in rows] == [(0, 1)]
    assert rows[0]["seconds"] > 0 and rows[0]["ratio"] == 1.0
    assert "| busy cores | torch threads | s / iteration | vs 1 thread | auto chose |" in out


def test_estimate_accuracy_smoke(load: object, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Path) -> None:
    bench = load("estimate_accuracy")  # type: ignore[operator]
    assert bench.main(["--size", "32", "--cases", "2", "--iterations", "5",
                       "--out", str(tmp_path / "est")]) == 0
    out = capsys.readouterr().out
    assert "| camera | 32 | paper | denoise | 1 |" in out and "within 1.5x:" in out
    rows = (tmp_path / "est.json").read_text()
    assert '"iterations": 5' in rows and '"ratio"' in rows
    # --large also estimates on the whole image, and leaves the crop's threshold as it was
    from napari_specdip.core import estimate as est

    share = est.TIMING_CROP_SHARE
    assert bench.main(["--large", "--size", "32", "--cases", "1", "--iterations", "2",
                       "--out", str(tmp_path / "large")]) == 0
    assert est.TIMING_CROP_SHARE == share
    assert "| whole-image estimate ms/it |" in capsys.readouterr().out
    assert '"whole_s_per_it"' in (tmp_path / "large.json").read_text()


def test_region_preview_smoke(load: object, capsys: pytest.CaptureFixture[str],
                              tmp_path: Path) -> None:
    bench = load("region_preview")  # type: ignore[operator]
    assert bench.main(["--size", "48", "--images", "camera", "--presets", "quick",
                       "--max-iterations", "20", "--out", str(tmp_path / "region")]) == 0
    out = capsys.readouterr().out
    import json

    (row,) = json.loads((tmp_path / "region.json").read_text())
    assert row["side"] == 48 and row["preview_iterations"] == 20 == row["whole_iterations"]
    # the region is the whole 48 px image here: the two runs are the same run (same seed)
    assert row["difference"] == pytest.approx(0.0, abs=1e-6)
    assert "within 1 dB:" in out


def test_norm_speed_smoke(load: object, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("norm_speed")  # type: ignore[operator]
    assert bench.main(["--sizes", "32", "--presets", "quick", "--iterations", "2",
                       "--warmup", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("| 32 | quick |")]
    assert float(row.split("|")[-2]) > 0
    # the previous norm is swapped back afterwards
    from napari_specdip.core.layers import MeanOnlyBatchNorm

    y = MeanOnlyBatchNorm(2)(torch.ones(1, 2, 4, 4, requires_grad=True))
    assert "MeanOnlyNorm" in type(y.grad_fn).__name__


def test_uncertainty_pooling_smoke(load: object, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    bench = load("uncertainty_pooling")  # type: ignore[operator]
    assert bench.main(["--size", "32", "--images", "camera", "--members", "2", "--width", "8",
                       "--max-iterations", "20", "--out", str(tmp_path / "pool")]) == 0
    import json

    (row,) = json.loads((tmp_path / "pool.json").read_text())
    assert row["split"] == "tune" and row["iterations"] == 20
    corr = row["corr"]
    assert set(corr) == {str(s) for s in bench.SIGMAS}
    assert all(-1.0 <= c <= 1.0 for c in corr.values())
    assert "| tune | 1 |" in capsys.readouterr().out
    from napari_specdip.core import ensemble

    assert ensemble.POOL_SIGMA == 0.5  # put back after the per-pixel runs


def test_uncertainty_ceiling_smoke(load: object, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    bench = load("uncertainty_ceiling")  # type: ignore[operator]
    assert bench.main(["--size", "32", "--cases", "camera/sigma25", "--realizations", "2",
                       "--members", "2", "--width", "8", "--max-iterations", "10",
                       "--out", str(tmp_path / "ceiling")]) == 0
    import json

    (row,) = json.loads((tmp_path / "ceiling.json").read_text())
    assert row["image"] == "camera" and row["noise"] == "sigma25"
    assert all(-1.0 <= row[k] <= 1.0 for k in ("ceiling", "ours", "ours_vs_scale"))
    assert 0.0 <= row["bias_share"] <= 1.0
    assert "| mean |" in capsys.readouterr().out


def test_uncertainty_ceiling_camera_mode(load: object, tmp_path: Path) -> None:
    """--camera: photon.py's image through its camera, the map brought to the clean scale."""
    bench = load("uncertainty_ceiling")  # type: ignore[operator]
    assert bench.main(["--camera", "--size", "48", "--cases", "nuclei/pg10r2",
                       "--realizations", "2", "--members", "2", "--width", "8",
                       "--max-iterations", "10", "--out", str(tmp_path / "ceiling")]) == 0
    import json

    (row,) = json.loads((tmp_path / "ceiling.json").read_text())
    assert row["image"] == "nuclei" and row["kind"] == "camera exposure"
    assert all(-1.0 <= row[k] <= 1.0 for k in ("ceiling", "ours", "ours_vs_scale"))
    assert 0.0 < row["psnr"] < 60.0  # scored on photons / peak, not on ADU
    with pytest.raises(ValueError, match="Poisson-Gaussian"):
        bench.draws("nuclei", "sigma25", size=32, realizations=2, members=2, width=8,
                    max_iterations=5, camera=True)


def test_tiling_benchmark_smoke(load: object, capsys: pytest.CaptureFixture[str],
                                tmp_path: Path) -> None:
    bench = load("tiling")  # type: ignore[operator]
    assert bench.main(["--size", "48", "--cases", "camera/sigma25", "--tile", "32",
                       "--overlap", "4", "--width", "8", "--max-iterations", "8",
                       "--threads", "1", "--out", str(tmp_path / "tiles")]) == 0
    import json

    (row,) = json.loads((tmp_path / "tiles.json").read_text())
    assert row["image"] == "camera" and row["tiled"]["iterations"] == 4 * 8
    assert row["whole"]["iterations"] == 8 and np.isfinite(row["seam_db"])
    assert "mean tiles - whole" in capsys.readouterr().out
    band = bench.blend_band(48, 48, 32, 4)
    assert band[:, 20:28].all() and not band[:16, :16].any()
    # cold tiles against warm ones: both tiled, the warm tiles after the first handed on
    assert bench.main(["--size", "48", "--cases", "camera/sigma25", "--tile", "32",
                       "--overlap", "4", "--width", "8", "--max-iterations", "30",
                       "--compare", "warm", "--threads", "1", "--out", str(tmp_path / "w")]) == 0
    (row,) = json.loads((tmp_path / "w.json").read_text())
    assert row["compare"] == "warm" and np.isfinite(row["seam_db"])
    assert 0 < row["tiled"]["iterations"] <= 4 * 30 and 0 < row["whole"]["iterations"] <= 4 * 30
    assert "mean warm tiles - cold tiles" in capsys.readouterr().out


def test_uncertainty_ceiling_of_a_known_error_scale(load: object) -> None:
    """Draws of N(0, s^2) with s known per pixel: the oracle's correlation is the
    closed form sqrt(2/pi) sd(s) / sqrt(E s^2 - 2/pi (E s)^2), and a map of s scores it."""
    bench = load("uncertainty_ceiling")  # type: ignore[operator]
    rng = np.random.default_rng(0)
    scale = np.where(np.arange(64 * 64).reshape(64, 64, 1) % 2 == 0, 0.01, 0.05)
    errors = rng.normal(0.0, 1.0, (400, 64, 64, 1)) * scale
    maps = np.broadcast_to(scale, errors.shape)
    row = bench.score(errors, maps)
    k = np.sqrt(2 / np.pi)
    closed = k * scale.std() / np.sqrt((scale**2).mean() - k**2 * scale.mean() ** 2)
    assert row["ceiling"] == pytest.approx(closed, abs=0.01)
    assert row["ours"] == pytest.approx(closed, abs=0.01)
    assert row["ours_vs_scale"] == pytest.approx(1.0, abs=0.01)
    assert row["bias_share"] < 0.01


def test_float_units_smoke(load: object, capsys: pytest.CaptureFixture[str],
                           tmp_path: Path) -> None:
    from napari_specdip.core import imaging

    bench = load("float_units")  # type: ignore[operator]
    kept = imaging.FLOAT_FULL_SPAN
    assert bench.main(["--images", "camera", "--spans", "0.01", "0.5", "--draws", "1",
                       "--size", "32", "--width", "4", "--max-iterations", "6",
                       "--out", str(tmp_path / "units")]) == 0
    assert imaging.FLOAT_FULL_SPAN == kept  # the script's "before" mode is undone
    out = capsys.readouterr().out
    assert "| camera | 0.01 | 0 |" in out and "| 0.5 | 1 |" in out
    rows = {r["span"]: r for r in json.loads((tmp_path / "units.json").read_text())}
    # below the threshold the two modes fit different data; above it the same
    assert rows[0.01]["[0, 1] units"]["range"] == [0.0, 1.0]
    assert rows[0.01]["own range"]["range"][1] < 0.02
    assert rows[0.5]["[0, 1] units"] == rows[0.5]["own range"]


def test_signal_dependence_benchmark_smoke(load: object, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    script = load("signal_dependence")  # type: ignore[operator]
    prefix = tmp_path / "sd"
    assert script.main(["--sizes", "64", "--peaks", "30", "--reads", "2", "--sigmas", "5",
                        "--out", str(prefix)]) == 0
    text = capsys.readouterr().out
    assert "| 30 | 3/3 | 3/3 |" in text  # the three exposures at 30 photons
    assert "Fired on: none" in text
    records = json.loads((tmp_path / "sd.json").read_text())
    assert len(records["camera"]) == 3
    fired = [r for r in records["camera"] if r["outcome"] == "fires"]
    assert all(r["growth"] >= 2.0 and r["structure"] <= 1.3 for r in fired)
    assert {r["outcome"] for r in records["gaussian"]} == {"none"}
    assert any(r["clipped"] for r in records["gaussian"])  # checked through clipped moments
    clipped = records["clipped photons"]
    assert len(clipped) == 9 and all(r["clipped"] for r in clipped)
    assert any(r["outcome"] == "fires" for r in clipped)
