"""``specdip demo`` with tiny settings writes the result, the comparison and the charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import pytest
import tifffile
from specdip_cli_helpers import assert_clean_failure, run_cli

from napari_specdip.cli.demo import DEMO_PRESET


def test_demo_writes_pictures_and_charts(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = run_cli("demo", "-o", out, "--size", "64", "--iterations", "12", "--width", "8",
                   "--depth", "4")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "PSNR input" in proc.stdout and "dB" in proc.stdout
    names = {p.name for p in out.iterdir()}
    charts = {f"noisy_photo_{n}.png" for n in ("fbc", "ratio", "loss", "psnr")}
    pictures = {f"noisy_photo_{n}.png" for n in ("input", "restored", "comparison")}
    results = {"noisy_photo_restored.tif", "noisy_photo_restored.tif.json"}
    assert charts | pictures | results == names
    for name in charts | pictures:
        image = iio.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 50, name
        assert str(out / name) in proc.stdout
    assert tifffile.imread(out / "noisy_photo_restored.tif").shape == (64, 64, 3)
    meta = json.loads((out / "noisy_photo_restored.tif.json").read_text())["specdip"]
    assert meta["iterations"] == 12 and meta["sample"] == "noisy_photo"
    assert meta["parameters"]["preset"] == DEMO_PRESET and "preset quick" in proc.stdout
    assert meta["parameters"]["width"] == 8  # an explicit option wins over the preset
    assert meta["psnr_before"] > 0 and meta["psnr_after"] > 0


@pytest.mark.parametrize("sample", ["masked_image", "low_resolution"])
def test_demo_other_samples(sample: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    # in this process (the test above covers the subprocess): a fifth of the CPU time, most
    # of a fresh process goes to importing torch; and warnings are errors here
    from napari_specdip.cli.main import main

    code = main(["demo", "-o", str(tmp_path), "--sample", sample.replace("_", "-"), "--size",
                 "64", "--iterations", "3", "--width", "4", "--depth", "3"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / f"{sample}_comparison.png").is_file()
    assert (tmp_path / f"{sample}_psnr.png").is_file()


def test_demo_too_small_for_its_factor_says_which_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main

    code = main(["demo", "-o", str(tmp_path), "--sample", "low_resolution", "--size", "32"])
    err = capsys.readouterr().err
    assert code == 2 and "makes this sample's input 8 px" in err and "--size 64" in err


def test_demo_unknown_sample(tmp_path: Path) -> None:
    proc = run_cli("demo", "-o", tmp_path, "--sample", "kittens")
    assert_clean_failure(proc, 2, "unknown sample 'kittens'", "noisy_photo")


def test_demo_charts_mark_the_cap_and_an_earlier_result_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.cli import charts
    from napari_specdip.cli.main import main
    from napari_specdip.core import engine

    finish = engine.run_to_end

    def earlier_result(*args: Any, **kwargs: Any) -> Any:
        result = finish(*args, **kwargs)
        result.stop_iteration = 2  # as when the auto rule's minimum came before the cap
        return result

    marks: list[tuple[Any, ...]] = []
    marker = charts._stop_marker
    monkeypatch.setattr(engine, "run_to_end", earlier_result)
    monkeypatch.setattr(charts, "_stop_marker",
                        lambda ax, *args: marks.append(args) or marker(ax, *args))
    assert main(["demo", "-o", str(tmp_path), "--size", "64", "--iterations", "4", "--width",
                 "4", "--depth", "3"]) == 0
    # the run ended at its cap (4); the result is iteration 2: not "stop at 2: iteration cap"
    assert marks and set(marks) == {(4, "max_iterations", 2)}
