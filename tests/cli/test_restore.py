"""``specdip restore`` end to end, as a subprocess: outputs, sidecars and clean errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from specdip_cli_helpers import FAST, assert_clean_failure, camera_stack, cli_env, run_cli


def _sidecar(path: Path) -> dict:
    meta = json.loads(Path(f"{path}.json").read_text())["specdip"]
    return meta


def test_console_script_is_installed() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("specdip") == "napari_specdip.cli.main:main"
    script = shutil.which("specdip") or str(Path(sys.executable).with_name("specdip"))
    assert Path(script).exists()
    proc = subprocess.run([script, "--version"], check=False, capture_output=True, text=True,
                          timeout=60, env=cli_env())
    assert proc.returncode == 0 and "specdip 0.1" in proc.stdout
    # python -m with the package's name, as users try it, runs the same command line
    proc = subprocess.run([sys.executable, "-m", "napari_specdip", "--version"], check=False,
                          capture_output=True, text=True, timeout=60, env=cli_env())
    assert proc.returncode == 0 and "specdip 0.1" in proc.stdout


def test_help_lists_the_commands() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("restore", "demo", "batch"):
        assert command in proc.stdout


def test_gray_png(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "gray_out.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--seed", "3", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "Warning" not in proc.stderr
    result = iio.imread(out)
    assert result.shape == (48, 40) and result.dtype == np.uint8
    meta = _sidecar(out)
    assert meta["iterations"] == 5 and meta["stop_reason"] == "max_iterations"
    assert meta["parameters"]["width"] == 8 and meta["parameters"]["seed"] == 3
    assert meta["seed"] == 3 and meta["device"] == "cpu"
    assert {"torch", "numpy", "napari-specdip"} <= set(meta["versions"])
    assert {"blur", "sharpness", "ratio"} <= set(meta["metrics"])
    assert meta["input"] == str(images["gray"].resolve())
    assert meta["output"] == str(out.resolve())
    assert meta["started"] and meta["finished"] and meta["wall_seconds"] > 0
    assert meta["input_shape"] == [48, 40] and meta["output_dtype"] == "uint8"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_rgb_png_and_rgba_alpha_kept(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rgb.png"
    proc = run_cli("restore", images["rgb"], "-o", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert iio.imread(out).shape == (40, 48, 3)
    assert _sidecar(out)["channel_axis"] == 2

    out = tmp_path / "rgba.tif"  # PNG in, TIFF out
    proc = run_cli("restore", images["rgba"], "-o", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    result = tifffile.imread(out)
    assert result.shape == (40, 48, 4) and result.dtype == np.uint8
    np.testing.assert_array_equal(result[..., 3], iio.imread(images["rgba"])[..., 3])
    assert _sidecar(out)["alpha"] is True


def test_uint16_stack_slice_by_slice(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stack_out.tif"
    proc = run_cli("restore", images["stack"], "-o", out, "--no-progress", *FAST)
    assert proc.returncode == 0, proc.stderr
    source = tifffile.imread(images["stack"])
    result = tifffile.imread(out)
    assert result.shape == (3, 32, 32) and result.dtype == np.uint16
    # each slice keeps its own intensity range
    assert result.min() >= source.min() and result.max() <= source.max()
    meta = _sidecar(out)
    assert meta["stack_axes"] == [0] and meta["slice_count"] == 3
    assert meta["iterations"] == 15 and meta["stop_reason"] == "max_iterations"
    assert [s["index"] for s in meta["slices"]] == [[0], [1], [2]]
    assert all(s["iterations"] == 5 for s in meta["slices"])
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX"


def test_super_resolution_and_progress_bar(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "sr.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--task", "super-resolve",
                   "--factor", "2", "--progress", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert iio.imread(out).shape == (96, 80)
    assert "5/5" in proc.stderr  # the bar reached the end
    assert _sidecar(out)["parameters"]["factor"] == 2


def test_inpainting_with_mask(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "filled.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--task", "inpaint", "--mask",
                   images["mask"], *FAST)
    assert proc.returncode == 0, proc.stderr
    assert iio.imread(out).shape == (48, 40)
    assert _sidecar(out)["mask"] == str(images["mask"].resolve())
    assert "holes" not in _sidecar(out)


def test_inpainting_without_a_mask_fills_the_nan_pixels(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    # as restore(image, "inpaint") does: a float image's NaN pixels are the holes
    from napari_specdip.cli.main import main

    rng = np.random.default_rng(3)
    stack = rng.random((3, 32, 32))
    stack[0, 4:8, 4:8] = np.nan
    stack[2, 10:12, :] = np.inf
    source = tmp_path / "holes.tif"
    tifffile.imwrite(source, stack, photometric="minisblack", metadata={"axes": "ZYX"})
    out = tmp_path / "filled.tif"
    assert main(["restore", str(source), "-o", str(out), "--task", "inpaint", *FAST]) == 0
    filled = tifffile.imread(out)
    assert filled.shape == stack.shape and np.isfinite(filled).all()
    finite = np.isfinite(stack)
    np.testing.assert_array_equal(filled[finite], stack[finite])  # the known pixels, kept
    meta = _sidecar(out)
    # the slice without a hole is copied, as a mask that marks none of it would have it
    assert [s["stop_reason"] for s in meta["slices"]] == ["max_iterations", "nothing_to_fill",
                                                        "max_iterations"]
    assert meta["mask"] is None and len(meta["mask_sha256"]) == 64 and meta["holes"] == "nan"
    # without NaN pixels there is nothing to fill: a mask is needed
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, rng.random((32, 32)))
    capsys.readouterr()
    assert main(["restore", str(plain), "-o", str(tmp_path / "x.tif"), "--task", "inpaint",
                 *FAST]) == 2
    assert "needs --mask FILE" in capsys.readouterr().err
    # and denoising a NaN image names the command line's option, not the API's keyword
    assert main(["restore", str(source), "-o", str(tmp_path / "y.tif"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "--task inpaint fills them" in err and "task='inpaint'" not in err


@pytest.mark.parametrize(
    ("case", "code", "needles", "subprocess_run"),
    [
        ("missing", 2, ["not found", "nope.png"], True),
        ("corrupt_tiff", 2, ["cannot read", "corrupt.tif"], True),
        ("corrupt_png", 2, ["cannot read", "corrupt.png"], False),
        ("mask_shape", 2, ["mask shape (20, 20)", "(48, 40)"], True),
        ("no_mask", 2, ["--mask"], False),
        ("device", 2, ["cuda"], True),
        ("png_stack", 2, ["PNG", ".tif"], False),
        ("bad_extension", 2, ["unsupported file type"], False),
        ("constant", 2, ["constant"], False),
    ],
)
def test_user_mistakes_give_one_line_and_code_2(case: str, code: int, needles: list[str],
                                                subprocess_run: bool, images: dict[str, Path],
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Through a subprocess, or in this process (faster; warnings are errors here)."""
    out = tmp_path / "out.png"
    args: list[str | Path]
    if case == "missing":
        args = ["restore", tmp_path / "nope.png", "-o", out]
    elif case == "corrupt_tiff":
        args = ["restore", images["corrupt"], "-o", out]
    elif case == "corrupt_png":
        args = ["restore", images["corrupt_png"], "-o", out]
    elif case == "mask_shape":
        args = ["restore", images["gray"], "-o", out, "--task", "inpaint", "--mask",
                images["small_mask"]]
    elif case == "no_mask":
        args = ["restore", images["gray"], "-o", out, "--task", "inpaint"]
    elif case == "device":
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        args = ["restore", images["gray"], "-o", out, "--device", "cuda"]
    elif case == "png_stack":
        args = ["restore", images["stack"], "-o", out]
    elif case == "bad_extension":
        args = ["restore", images["gray"], "-o", tmp_path / "out.bmp"]
    else:
        flat = tmp_path / "flat.tif"
        tifffile.imwrite(flat, np.full((16, 16), 7, np.uint16))
        args = ["restore", flat, "-o", tmp_path / "flat_out.tif"]
    if subprocess_run:
        proc = run_cli(*args, *FAST)
    else:
        from napari_specdip.cli.main import main

        returncode = main([str(a) for a in (*args, *FAST)])
        captured = capsys.readouterr()
        proc = subprocess.CompletedProcess(args, returncode, captured.out, captured.err)
    assert_clean_failure(proc, code, *needles)
    assert not out.exists()


def test_argparse_rejects_unknown_task(images: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("restore", images["gray"], "-o", tmp_path / "x.png", "--task", "sharpen")
    assert proc.returncode == 2
    assert_clean_failure(proc, 2, "invalid choice: 'sharpen'", "specdip restore --help")


def test_presets_and_explicit_options(images: dict[str, Path], tmp_path: Path) -> None:
    from napari_specdip.core.params import RestoreParameters, auto_depth

    few = ["--max-iterations", "5", "--stop", "none"]
    out = tmp_path / "quick.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--preset", "quick", *few)
    assert proc.returncode == 0, proc.stderr
    params = _sidecar(out)["parameters"]
    quick = RestoreParameters.for_task("denoise", preset="quick")
    assert params["preset"] == "quick" and params["width"] == quick.width
    assert params["learning_rate"] == quick.learning_rate and params["holdout"] == quick.holdout
    assert params["depth"] == auto_depth(48, 40)  # resolved for the image

    out = tmp_path / "paper.png"  # an explicit option wins over its preset's value
    proc = run_cli("restore", images["gray"], "-o", out, "--preset", "paper", "--width", "8",
                   *few)
    assert proc.returncode == 0, proc.stderr
    params = _sidecar(out)["parameters"]
    assert params["preset"] == "paper" and params["width"] == 8 and params["depth"] == 5
    assert params["signal_every"] == 1 and params["holdout"] == 0 and params["output"] == "last"

    out = tmp_path / "held.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--holdout", "0.2",
                   "--input-jitter", "0.25", *FAST)
    assert proc.returncode == 0, proc.stderr
    params = _sidecar(out)["parameters"]
    assert params["holdout"] == 0.2 and params["input_jitter"] == 0.25

    out = tmp_path / "rules.png"  # the stop rules' own settings, as the API takes them
    proc = run_cli("restore", images["gray"], "-o", out, "--stop-window", "20",
                   "--stop-epsilon", "0.002", "--patience", "40", "--holdout-return", "minimum",
                   *FAST)
    assert proc.returncode == 0, proc.stderr
    params = _sidecar(out)["parameters"]
    assert (params["stop_window"], params["stop_epsilon"]) == (20, 0.002)
    assert (params["holdout_patience"], params["holdout_return"]) == (40, "minimum")
    assert quick.input_jitter == 0.1  # the preset's, when not given
    assert params["refine"] == "wiener" and params["refined"]["method"] == "wiener"

    out = tmp_path / "plain.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--refine", "none", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert _sidecar(out)["parameters"]["refined"] == {"method": "none"}


def test_an_output_folder_is_refused_with_a_file_name_to_use(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main

    source = tmp_path / "in.tif"
    tifffile.imwrite(source, np.zeros((32, 32), np.uint16))
    for folder in (f"{tmp_path / 'new'}/", str(tmp_path)):
        assert main(["restore", str(source), "-o", folder]) == 2
        err = capsys.readouterr().err
        assert "it is a folder" in err and "in_restored.tif" in err, err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**62), "1.5"])
def test_a_bad_seed_is_refused_before_the_image_is_read(
        seed: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main

    # a missing input: argparse answers first, naming the option and not the file
    with pytest.raises(SystemExit) as stop:
        main(["restore", str(tmp_path / "absent.tif"), "--seed", seed])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --seed" in err and "absent.tif" not in err


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--stop", "auto", "--holdout", "0"], ["needs holdout > 0"]),
        (["--holdout", "0.7"], ["--holdout", "0.7"]),
        (["--noise-gain", "2"], ["--noise-gain", "--noise poisson-gaussian"]),
        (["--task", "deblock", "--noise", "poisson-gaussian"], ["--noise", "not deblock"]),
        (["--noise", "poisson-gaussian", "--noise-read-sigma", "-1"], ["--noise-read-sigma"]),
        (["--noise-sigma", "0"], ["--noise-sigma"]),
        (["--noise", "poisson-gaussian", "--noise-sigma", "3"],
         ["--noise-sigma", "--noise gaussian"]),
        (["--preset", "fast"], ["invalid choice: 'fast'"]),
        (["--ensemble", "0"], ["--ensemble"]),
    ],
)
def test_bad_new_options_give_one_line(extra: list[str], needles: list[str],
                                       images: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main

    out = tmp_path / "o.png"
    try:
        code = main(["restore", str(images["gray"]), "-o", str(out), "--width", "8",
                     "--max-iterations", "5", *extra])
    except SystemExit as exc:  # argparse's own checks
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert_clean_failure(subprocess.CompletedProcess([], code, captured.out, captured.err), 2,
                         *needles)
    assert not out.exists()


@pytest.mark.parametrize("command", ["restore", "batch"])
@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--factor", "2"], ["--factor only makes sense for --task super-resolve, not denoise"]),
        (["--task", "deblock", "--gain", "2"], ["--gain", "--task enhance", "not deblock"]),
        (["--task", "inpaint", "--mask", "MASK", "--factor", "4"], ["--factor", "not inpaint"]),
        (["--mask", "MASK"], ["--mask only makes sense for --task inpaint, not denoise"]),
        (["--task", "enhance", "--noise", "gaussian"], ["--noise", "denoise or inpaint"]),
        (["--task", "super-resolve", "--noise-fit", "weighted"], ["--noise-fit", "not super"]),
        (["--task", "inpaint", "--mask", "MASK", "--noise-sigma", "3"],
         ["--noise-sigma", "--task denoise"]),
        (["--noise-fit", "anscombe"], ["--noise-fit", "--noise poisson-gaussian, not gaussian"]),
        (["--noise-offset", "100"], ["--noise-offset", "--noise poisson-gaussian"]),
        (["--task", "deblock", "--refine", "none"], ["--refine", "--task denoise"]),
    ],
)
def test_options_the_task_ignores_are_refused(command: str, extra: list[str],
                                              needles: list[str], images: dict[str, Path],
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Typed on the command line but ignored by the task (or the noise model): refused
    before any file is read, by restore and batch alike."""
    from napari_specdip.cli.main import main

    out = tmp_path / "out"
    where = ["-o", str(out / "o.png")] if command == "restore" else ["-o", str(out)]
    extra = [str(images["mask"]) if a == "MASK" else a for a in extra]
    code = main([command, str(images["gray"]), *where, *FAST, *extra])
    captured = capsys.readouterr()
    assert_clean_failure(subprocess.CompletedProcess([], code, captured.out, captured.err), 2,
                         *needles, "leave it out")
    assert not out.exists()


def test_presets_and_defaults_never_count_as_options_given() -> None:
    from napari_specdip.cli.main import build_parser
    from napari_specdip.cli.runner import check_task_options
    from napari_specdip.core.params import PRESETS, TASKS

    parser = build_parser()
    for command in (["restore", "in.png"], ["batch", "in.png", "-o", "out"]):
        for task in TASKS:
            for preset in (None, *PRESETS):
                chosen = ["--preset", preset] if preset else []
                check_task_options(parser.parse_args([*command, "--task", task, *chosen]))
        for applies in (["--task", "super-resolve", "--factor", "2"],
                        ["--task", "enhance", "--gain", "2"],
                        ["--task", "inpaint", "--mask", "m.png", "--noise", "poisson-gaussian",
                         "--noise-fit", "anscombe", "--noise-gain", "2", "--noise-offset", "0"],
                        ["--noise", "gaussian", "--noise-sigma", "3"]):
            check_task_options(parser.parse_args([*command, *applies]))


def test_tile_takes_auto_or_a_side() -> None:
    from napari_specdip.cli.main import build_parser
    from napari_specdip.cli.runner import engine_options

    parser = build_parser()
    for given, expected in (("auto", "auto"), ("AUTO", "auto"), ("128", 128), ("0", 0)):
        args = parser.parse_args(["restore", "in.png", "--tile", given])
        assert engine_options(args)["tile"] == expected
    with pytest.raises(SystemExit):
        parser.parse_args(["restore", "in.png", "--tile", "big"])
    # warm-started tiles: the engine's default unless switched off
    assert "tile_warm_start" not in engine_options(parser.parse_args(["restore", "in.png"]))
    for flag, expected in (("--no-tile-warm-start", False), ("--tile-warm-start", True)):
        args = parser.parse_args(["restore", "in.png", "--tile", "64", flag])
        assert engine_options(args)["tile_warm_start"] is expected


def test_camera_noise_model_is_recorded(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "photons.tif"
    proc = run_cli("restore", images["stack"], "-o", out, "--noise", "poisson-gaussian",
                   "--noise-gain", "2.5", "--noise-read-sigma", "3", "--noise-offset", "100",
                   "--noise-fit", "anscombe", *FAST)
    assert proc.returncode == 0, proc.stderr
    meta = _sidecar(out)
    model = meta["slices"][0]["noise_model"]
    assert model["model"] == "poisson-gaussian" and model["fit"] == "anscombe"
    assert model["gain"] == pytest.approx(2.5) and model["read_sigma"] == pytest.approx(3.0)
    assert model["offset"] == pytest.approx(100.0)
    assert set(model["source"].values()) == {"given"}
    assert tifffile.imread(out).dtype == np.uint16


def test_a_given_noise_sigma_is_used_by_the_stop(images: dict[str, Path],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "sigma.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--noise-sigma", "12.75", *FAST)
    assert proc.returncode == 0, proc.stderr
    params = _sidecar(out)["parameters"]
    assert params["noise_sigma"] == 12.75  # input units: a uint8 PNG's 0..255
    assert params["stop_noise_variance"] == pytest.approx(0.05**2)


def test_ensemble_writes_the_uncertainty_next_to_the_output(images: dict[str, Path],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "rgba.png"
    proc = run_cli("restore", images["rgba"], "-o", out, "--ensemble", "2", *FAST)
    assert proc.returncode == 0, proc.stderr
    spread = tifffile.imread(tmp_path / "rgba_uncertainty.tif")
    assert spread.shape == (40, 48, 4) and spread.dtype == np.float32
    assert np.all(spread[..., 3] == 0) and spread[..., :3].max() > 0  # alpha is copied
    meta = _sidecar(out)
    assert meta["ensemble"] == 2 and meta["parameters"]["ensemble"] == 2
    assert meta["uncertainty"]["file"] == str((tmp_path / "rgba_uncertainty.tif").resolve())
    assert "uncertainty" in proc.stdout

    # a calibrated stack: the uncertainty keeps the axes, pixel size and z spacing
    source = tmp_path / "cal.tif"
    stack = (np.random.default_rng(4).random((2, 32, 40)) * 3000 + 100).astype(np.uint16)
    tifffile.imwrite(source, stack, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
    out = tmp_path / "cal_dn.tif"
    proc = run_cli("restore", source, "-o", out, "--ensemble", "2", *FAST)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "cal_dn_uncertainty.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].axes == "ZYX" and tif.series[0].dtype == np.float32
        assert tif.pages[0].get_resolution() == pytest.approx((4.0, 2.0))
        assert tif.imagej_metadata["spacing"] == 2.5 and tif.imagej_metadata["unit"] == "um"
    assert tifffile.imread(path).shape == (2, 32, 40)

    proc = run_cli("restore", images["gray"], "-o", tmp_path / "gray_uncertainty.tif",
                   "--ensemble", "1", *FAST)  # one network: no uncertainty file
    assert proc.returncode == 0 and "uncertainty" not in _sidecar(
        tmp_path / "gray_uncertainty.tif")


def test_stack_slices_warm_start_from_the_previous_one(images: dict[str, Path],
                                                       tmp_path: Path) -> None:
    warm, cold = tmp_path / "warm.tif", tmp_path / "cold.tif"
    assert run_cli("restore", images["stack"], "-o", warm, *FAST).returncode == 0
    proc = run_cli("restore", images["stack"], "-o", cold, "--no-warm-start", *FAST)
    assert proc.returncode == 0, proc.stderr
    meta_warm, meta_cold = _sidecar(warm), _sidecar(cold)
    assert meta_warm["warm_start"] is True and meta_cold["warm_start"] is False
    assert [s["parameters"]["warm_start"] for s in meta_warm["slices"]] == [False, True, True]
    assert [s["parameters"]["warm_start"] for s in meta_cold["slices"]] == [False] * 3
    a, b = tifffile.imread(warm), tifffile.imread(cold)
    np.testing.assert_array_equal(a[0], b[0])  # the first slice starts from scratch either way
    assert not np.array_equal(a[1:], b[1:])
    # each slice keeps its own stop: the iteration cap here, per slice
    assert all(s["iterations"] == 5 for s in meta_warm["slices"])
    single = tmp_path / "single.png"  # one image: nothing to start from
    assert run_cli("restore", images["gray"], "-o", single, *FAST).returncode == 0
    assert _sidecar(single)["warm_start"] is False


def test_warm_start_chains_each_channel_of_its_own(tmp_path: Path) -> None:
    """A ZCYX stack alternates channels from slice to slice: each slice starts from the
    last slice of its own channel, so channel 0 comes out as it does alone."""
    rng = np.random.default_rng(8)
    base = rng.normal(0, 1, (2, 2, 32, 32))
    stack = np.stack([np.stack([1000 + 300 * base[z, 0], 200 + 50 * base[z, 1] ** 2])
                      for z in range(2)]).astype(np.uint16)
    both, alone = tmp_path / "zc.tif", tmp_path / "z.tif"
    tifffile.imwrite(both, stack, imagej=True, metadata={"axes": "ZCYX"})
    tifffile.imwrite(alone, np.ascontiguousarray(stack[:, 0]), imagej=True,
                     metadata={"axes": "ZYX"})
    out_both, out_alone = tmp_path / "zc_out.tif", tmp_path / "z_out.tif"
    for source, out in ((both, out_both), (alone, out_alone)):
        proc = run_cli("restore", source, "-o", out, *FAST)
        assert proc.returncode == 0, proc.stderr
    slices = _sidecar(out_both)["slices"]
    assert [s["index"] for s in slices] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert [s["parameters"]["warm_start"] for s in slices] == [False, False, True, True]
    np.testing.assert_array_equal(tifffile.imread(out_both)[:, 0], tifffile.imread(out_alone))


def test_a_fixed_tile_says_it_turns_warm_start_off(images: dict[str, Path],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "tiled.tif"
    proc = run_cli("restore", images["stack"], "-o", out, "--tile", "32", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "warm start is off: with --tile 32" in proc.stderr
    assert _sidecar(out)["warm_start"] is False
    proc = run_cli("restore", images["stack"], "-o", tmp_path / "cold.tif", "--tile", "32",
                   "--no-warm-start", *FAST)  # asked for: nothing to say
    assert proc.returncode == 0 and "warm start is off" not in proc.stderr


# --------------------------------------------------------------------------- --series


def _two_series_tiff(path: Path) -> None:
    """Two positions of other shapes and far apart intensities (about 200 and 3000)."""
    rng = np.random.default_rng(5)
    with tifffile.TiffWriter(path) as tif:
        tif.write((rng.normal(200, 20, (40, 36))).astype(np.uint16))
        tif.write((rng.normal(3000, 200, (32, 32))).astype(np.uint16))
    with tifffile.TiffFile(path) as tif:
        assert [s.shape for s in tif.series] == [(40, 36), (32, 32)]


def test_series_restores_the_series_asked_for(tmp_path: Path) -> None:
    source, out = tmp_path / "two.tif", tmp_path / "second.tif"
    _two_series_tiff(source)
    proc = run_cli("restore", source, "-o", out, "--series", "1", *FAST)
    assert proc.returncode == 0, proc.stderr
    result = tifffile.imread(out)
    assert result.shape == (32, 32) and result.dtype == np.uint16
    assert 2500 < result.mean() < 3500  # series 1's intensities, not series 0's (about 200)
    meta = _sidecar(out)
    assert meta["series"] == 1 and meta["input_shape"] == [32, 32]
    assert "--series" in meta["argv"]


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ([], ["holds 2 image series", "series 0 (40, 36), series 1 (32, 32)", "--series N",
              "own TIFF"]),
        (["--series", "2"], ["--series 2 is out of range", "2 image series, 0 to 1",
                             "series 1 (32, 32)"]),
        (["--series", "-1"], ["argument --series", "expected a number >= 0"]),
        (["--series", "first"], ["argument --series", "expected a whole number"]),
    ],
)
def test_multi_series_without_a_fitting_series_is_refused(
        extra: list[str], needles: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main

    source, out = tmp_path / "two.tif", tmp_path / "o.tif"
    _two_series_tiff(source)
    try:
        code = main(["restore", str(source), "-o", str(out), *extra, *FAST])
    except SystemExit as exc:  # argparse's own checks
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    assert_clean_failure(subprocess.CompletedProcess([], code, captured.out, captured.err), 2,
                         *needles)
    assert not out.exists()


def test_series_of_a_png_is_0_only(images: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main

    refused = tmp_path / "refused.png"
    code = main(["restore", str(images["gray"]), "-o", str(refused), "--series", "1", *FAST])
    captured = capsys.readouterr()
    assert_clean_failure(subprocess.CompletedProcess([], code, captured.out, captured.err), 2,
                         "--series 1", "gray.png is a PNG file", "only --series 0")
    assert not refused.exists()
    out = tmp_path / "gray.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--series", "0", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert iio.imread(out).shape == (48, 40) and _sidecar(out)["series"] == 0


def test_a_multi_series_mask_gives_the_same_series(tmp_path: Path) -> None:
    from napari_specdip.cli.runner import mask_digest

    source, mask, out = tmp_path / "two.tif", tmp_path / "masks.tif", tmp_path / "filled.tif"
    _two_series_tiff(source)
    masks = [np.zeros((40, 36), np.uint8), np.zeros((32, 32), np.uint8)]
    masks[0][5:9, 5:9] = masks[1][10:20, 12:16] = 255
    with tifffile.TiffWriter(mask) as tif:
        for m in masks:
            tif.write(m)
    # series 0 of the mask, (40, 36), would not fit series 1 of the input
    proc = run_cli("restore", source, "-o", out, "--series", "1", "--task", "inpaint",
                   "--mask", mask, *FAST)
    assert proc.returncode == 0, proc.stderr
    meta = _sidecar(out)
    assert meta["series"] == 1 and meta["mask_sha256"] == mask_digest(masks[1])


def test_a_stack_with_camera_noise_shares_one_estimate(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from napari_specdip.cli.main import main

    src = tmp_path / "z.tif"
    tifffile.imwrite(src, camera_stack(4, 48), imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "z_out.tif"
    assert main(["restore", str(src), "-o", str(out), *FAST, "--max-iterations", "2",
                 "--noise", "poisson-gaussian", "--noise-offset", "100", "-q"]) == 0
    models = [s["noise_model"] for s in _sidecar(out)["slices"]]
    assert len(models) == 4
    for key in ("gain", "read_sigma", "offset"):
        assert all(m[key] == pytest.approx(models[0][key], rel=1e-9) for m in models), key
    for key in ("estimated_over", "offset_from", "samples"):
        assert all(m[key] == models[0][key] for m in models), key
    assert models[0]["estimated_over"]["slices"] == 4 and models[0]["offset"] == 100.0
    assert models[0]["source"] == {"gain": "estimated", "read_sigma": "estimated",
                                   "offset": "given"}
    assert models[0]["gain"] == pytest.approx(3.0, rel=0.3)
    # said before the first slice runs, with the values the sidecar then records
    assert main(["restore", str(src), "-o", str(out), *FAST, "--max-iterations", "2",
                 "--noise", "poisson-gaussian", "--noise-offset", "100", "--overwrite"]) == 0
    said = capsys.readouterr().err
    assert ("camera values for every slice (estimated over 4 slices, where not given): "
            f"gain {models[0]['gain']:.4g}, read noise {models[0]['read_sigma']:.4g}, "
            "offset 100") in said
    # inpainting masks that differ by slice: each slice is estimated on its own
    mask = np.zeros((4, 48, 48), np.uint8)
    for k in range(4):
        mask[k, 8 * k : 8 * k + 6, 10:20] = 1
    tifffile.imwrite(tmp_path / "m.tif", mask, imagej=True, metadata={"axes": "ZYX"})
    assert main(["restore", str(src), "-o", str(tmp_path / "i.tif"), *FAST,
                 "--max-iterations", "2", "--task", "inpaint", "--mask",
                 str(tmp_path / "m.tif"), "--noise", "poisson-gaussian", "-q"]) == 0
    models = [s["noise_model"] for s in _sidecar(tmp_path / "i.tif")["slices"]]
    assert not any("estimated_over" in m for m in models)
    assert len({m["gain"] for m in models}) == 4


def test_each_slice_of_a_stack_is_read_once(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm-started stack reads each slice from the file once (it was read twice: once
    to find each chain's last slice, once to restore it), and every slice after the first
    still starts from the one before."""
    from napari_specdip.cli.main import build_parser
    from napari_specdip.cli.runner import engine_options, prepare, restore_file

    source = tmp_path / "stack.tif"
    rng = np.random.default_rng(3)
    tifffile.imwrite(source, (1000 + 200 * rng.random((3, 24, 24))).astype(np.uint16),
                     imagej=True, metadata={"axes": "ZYX"})
    args = build_parser().parse_args(["restore", str(source), "-o", str(tmp_path / "o.tif"),
                                      *FAST])
    job = prepare(source, tmp_path / "o.tif", task="denoise", options=engine_options(args))
    reads: list[tuple[int, ...]] = []
    layout_type = type(job.layout)  # a frozen dataclass: patched on its class
    original = layout_type.engine_image

    def counted(self: object, data: np.ndarray, index: tuple[int, ...]) -> tuple:
        reads.append(tuple(index))
        return original(self, data, index)

    monkeypatch.setattr(layout_type, "engine_image", counted)
    done = restore_file(job, progress=False, warm_start=True)
    assert sorted(reads) == [(0,), (1,), (2,)]
    assert [run["parameters"]["warm_start"] for run in done.runs] == [False, True, True]
