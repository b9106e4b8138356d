"""The files at an output's names: never the user's, found again after a kill; a batch's
rerun compares every option that changes the result."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from specdip_cli_helpers import FAST, assert_clean_failure, batch_status, run_cli


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _main(args: list[str | Path], capsys: pytest.CaptureFixture[str]
          ) -> subprocess.CompletedProcess[str]:
    """``specdip ARGS`` in this process (for refusals: they come before torch is needed)."""
    from napari_specdip.cli.main import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# ------------------------------------------------------------------ restore


def test_restore_never_replaces_a_file_specdip_did_not_write(
        images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    shutil.copy(images["gray"], source)
    out = tmp_path / "in_restored.png"  # the default output
    shutil.copy(images["rgb"], out)  # the user's own image under that name
    before = _contents(tmp_path)
    proc = _main(["restore", source, *FAST], capsys)
    assert_clean_failure(proc, 2, f"{out} exists and was not written by specdip",
                         "choose another -o", "--overwrite")
    assert _contents(tmp_path) == before

    out.unlink()
    notes = tmp_path / "in_restored.png.json"  # the user's JSON where the sidecar goes
    notes.write_text('{"mine": true}')
    proc = _main(["restore", source, *FAST], capsys)
    assert_clean_failure(proc, 2, f"{notes} exists", "--overwrite")
    assert notes.read_text() == '{"mine": true}' and not out.exists()
    notes.unlink()

    # an earlier result is replaced: the same command runs again
    for _ in range(2):
        proc = run_cli("restore", source, *FAST)
        assert proc.returncode == 0, proc.stderr
    assert json.loads(notes.read_text())["specdip"]["iterations"] == 5

    # that run had one network, so an uncertainty file next to it is the user's
    spread = tmp_path / "in_restored_uncertainty.tif"
    theirs = np.full((4, 4), 7, np.uint16)
    tifffile.imwrite(spread, theirs)
    proc = _main(["restore", source, "--ensemble", "2", *FAST], capsys)
    assert_clean_failure(proc, 2, f"{spread} exists", "--overwrite")
    np.testing.assert_array_equal(tifffile.imread(spread), theirs)

    proc = run_cli("restore", source, "--ensemble", "2", "--overwrite", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert tifffile.imread(spread).shape == (48, 40)
    assert json.loads(notes.read_text())["specdip"]["uncertainty"]["members"] == 2
    assert not list(tmp_path.glob(".*specdip-writing"))


def test_a_write_stopped_before_its_sidecar_leaves_files_specdip_knows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.cli import files, runner
    from napari_specdip.cli.batch import is_finished
    from napari_specdip.cli.errors import Interrupted, RunError

    source = tmp_path / "in.tif"
    tifffile.imwrite(source, (np.random.default_rng(0).random((32, 32)) * 1000)
                     .astype(np.uint16))
    out = tmp_path / "out.tif"
    spread_path = runner.uncertainty_path(out)
    marker = runner.writing_marker(out)
    job = runner.prepare(source, out, task="denoise",
                         options={"width": 4, "max_iterations": 1, "ensemble": 2})
    spread = np.zeros((32, 32), np.float32)

    def killed(path: Path, payload: object) -> None:
        raise Interrupted(signal.SIGTERM)

    with monkeypatch.context() as m:
        m.setattr(runner, "write_json", killed)
        with pytest.raises(Interrupted):
            runner.write_outputs(job, job.source.data, {"specdip": {}}, spread)
    assert out.is_file() and spread_path.is_file() and not job.sidecar.exists()
    assert marker.is_file()
    # the rerun takes them for its own, and a batch does not take them for finished
    assert runner.foreign_files(out, ensemble=True) == []
    assert is_finished(out) is None

    record = {"specdip": {"uncertainty": {"members": 2}}}
    runner.write_outputs(job, job.source.data, record, spread)
    assert not marker.exists() and is_finished(out) is not None
    assert runner.foreign_files(out, ensemble=True) == []
    runner.write_outputs(job, job.source.data, {"specdip": {}}, spread)
    assert runner.foreign_files(out, ensemble=True) == [spread_path]  # not that record's
    job.sidecar.unlink()  # without a record or a marker they are someone else's
    assert runner.foreign_files(out, ensemble=True) == [out, spread_path]
    assert runner.foreign_files(out, ensemble=False) == [out]

    def full(path: Path, writer: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "write_atomic", full)
    with pytest.raises(RunError, match="No space left"):
        runner.write_outputs(job, job.source.data, {"specdip": {}}, spread)
    assert not marker.exists()  # nothing was put in place: nothing to claim
    # nor when a signal (a second Ctrl-C) ends the first write: a marker left behind
    # would vouch for a file of the user's put under that name later
    out.unlink()
    spread_path.unlink()

    def interrupted(path: Path, writer: object) -> None:
        raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(files, "write_atomic", interrupted)
    with pytest.raises(Interrupted):
        runner.write_outputs(job, job.source.data, {"specdip": {}}, spread)
    assert not marker.exists()
    out.write_bytes(b"the user's own file")
    assert runner.foreign_files(out, ensemble=False) == [out]


# ------------------------------------------------------------------ batch


def test_batch_never_replaces_a_file_specdip_did_not_write(images: dict[str, Path],
                                                           tmp_path: Path,
                                                           scheduler: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(images["rgb"], out / "gray.png")  # the user's image under an output name
    (out / "rgb.png.json").write_text("[1, 2]")  # and their JSON where a sidecar goes
    before = _contents(out)
    base = ["batch", images["gray"], images["rgb"], "-o", out, "--scheduler", scheduler, *FAST]
    proc = run_cli(*base)
    assert_clean_failure(proc, 2, "2 file(s) under output names were not written by specdip",
                         str(out / "gray.png"), str(out / "rgb.png.json"), "--overwrite")
    assert "specdip batch:" not in proc.stderr  # refused before any work
    assert _contents(out) == before

    # a run stopped between an image and its sidecar left its marker: the image is its own
    (out / "rgb.png.json").unlink()
    shutil.copy(images["gray"], out / "gray.png")
    marker = out / ".gray.png.specdip-writing"
    marker.write_text("")
    proc = run_cli(*base)
    assert proc.returncode == 0, proc.stderr
    assert batch_status(proc.stdout, "gray.png") == "ok" and not marker.exists()
    assert json.loads((out / "gray.png.json").read_text())["specdip"]["command"] == "batch"

    # --overwrite replaces the user's file
    shutil.copy(images["gray"], out / "rgb.png")
    (out / "rgb.png.json").unlink()
    proc = run_cli(*base, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert iio.imread(out / "rgb.png").shape == (40, 48, 3)


def test_batch_rerun_with_other_axes_or_output_dtype_is_refused(images: dict[str, Path],
                                                                tmp_path: Path,
                                                                scheduler: str) -> None:
    out = tmp_path / "out"
    base = ["batch", images["stack"], "-o", out, "--scheduler", scheduler, *FAST]
    proc = run_cli(*base, "--output-dtype", "float32")
    assert proc.returncode == 0, proc.stderr
    made = _contents(out)

    proc = run_cli(*base)  # without --output-dtype: the input's uint16
    assert_clean_failure(proc, 2, "made with other options", "output dtype float32 -> uint16")
    proc = run_cli(*base, "--output-dtype", "float32", "--channel-axis", "0")
    assert_clean_failure(proc, 2, "made with other options", "channel_axis None -> 0",
                         "stack_axes [0] -> []")
    assert _contents(out) == made

    # the axes that auto resolves to, given by number: the same output
    same = run_cli(*base, "--output-dtype", "float32", "--stack-axis", "0", "--format", "tif")
    assert same.returncode == 0, same.stderr
    assert batch_status(same.stdout, "stack.tif") == "skipped"


def test_batch_rerun_with_other_mask_pixels_is_refused(images: dict[str, Path], tmp_path: Path,
                                                       scheduler: str) -> None:
    mask = tmp_path / "mask.png"
    shutil.copy(images["mask"], mask)
    out = tmp_path / "out"
    base = ["batch", images["gray"], "-o", out, "--scheduler", scheduler, "--task", "inpaint",
            *FAST]
    proc = run_cli(*base, "--mask", mask)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((out / "gray.png.json").read_text())["specdip"]["mask_sha256"]) == 64

    moved = tmp_path / "moved.png"  # the same pixels elsewhere: the same mask
    shutil.copy(mask, moved)
    same = run_cli(*base, "--mask", moved)
    assert same.returncode == 0, same.stderr
    assert batch_status(same.stdout, "gray.png") == "skipped"

    other = iio.imread(mask)
    other[30:40, 5:15] = 255
    iio.imwrite(mask, other)  # edited in place: same path, other pixels
    proc = run_cli(*base, "--mask", mask)
    assert_clean_failure(proc, 2, "made with other options", "(other pixels)")


def test_option_changes_compare_axes_output_dtype_and_mask_pixels() -> None:
    from napari_specdip.cli.batch import option_changes
    from napari_specdip.cli.runner import mask_digest

    marked = np.zeros((8, 8), np.uint8)
    marked[2:4, 2:6] = 255
    meta = {"task": "inpaint", "mask": "/a/mask.png", "mask_sha256": mask_digest(marked),
            "input": "/a/rgb.png", "input_shape": [8, 8, 3], "input_axes": None,
            "input_dtype": "uint8", "output_dtype": "uint8", "channel_axis": 2,
            "stack_axes": [], "spatial_axes": [0, 1], "alpha": False}
    mask = Path("/b/moved.png")
    assert option_changes(meta, "inpaint", {}, mask, mask_sha256=mask_digest(marked > 0)) == []
    assert option_changes(meta, "inpaint", {}, mask, mask_sha256=mask_digest(marked.T)) == [
        "mask /a/mask.png -> /b/moved.png (other pixels)"]
    old_sidecar = {k: v for k, v in meta.items() if k != "mask_sha256"}  # compared by path
    assert option_changes(old_sidecar, "inpaint", {}, mask, mask_sha256="0") == [
        "mask /a/mask.png -> /b/moved.png"]
    keep = {"mask": Path("/a/mask.png"), "mask_sha256": mask_digest(marked)}
    assert option_changes(meta, "inpaint", {"output_dtype": "float32"}, **keep) == [
        "output dtype uint8 -> float32"]
    assert option_changes({**meta, "output_dtype": "uint16"}, "inpaint", {}, **keep) == [
        "output dtype uint16 -> uint8"]
    assert option_changes(meta, "inpaint", {}, channel_axis=-1, **keep) == []
    assert option_changes(meta, "inpaint", {}, channel_axis="none", **keep) == [
        "channel_axis 2 -> None", "stack_axes [] -> [0]", "spatial_axes [0, 1] -> [1, 2]"]
    assert "out of range" in option_changes(meta, "inpaint", {}, stack_axis=5, **keep)[0]
