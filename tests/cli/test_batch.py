"""``specdip batch`` on Dask distributed: failures, interruption and resuming, --scheduler."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from specdip_cli_helpers import FAST, assert_clean_failure, camera_stack, cli_env, run_cli

from napari_specdip.cli.files import TEMP_MARK, expand_inputs


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A 2-worker LocalCluster (processes, 1 thread each) shared by this module's tests."""
    from distributed import LocalCluster

    # ":0", not None: with None the scheduler's HTTP server still wants port 8787 and warns
    # (an error here) when another Dask cluster on the machine holds it
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _table(stdout: str) -> dict[str, list[str]]:
    """file name -> the summary table's cells."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) >= 2 and cells[1] in ("ok", "skipped", "failed", "interrupted"):
            rows[Path(cells[0]).name] = cells
    return rows


def _loads(path: Path) -> np.ndarray:
    return tifffile.imread(path) if path.suffix == ".tif" else iio.imread(path)


def test_corrupt_file_fails_alone_on_a_running_cluster(images: dict[str, Path], tmp_path: Path,
                                                      scheduler: str) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("gray", "rgb", "stack", "corrupt"):
        shutil.copy(images[name], inputs / images[name].name)
    out = tmp_path / "out"
    proc = run_cli("batch", inputs, tmp_path / "missing_*.png", "-o", out,
                   "--scheduler", scheduler, *FAST)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    rows = _table(proc.stdout)
    assert rows["gray.png"][1] == "ok" and rows["rgb.png"][1] == "ok"
    assert rows["stack.tif"][1] == "ok" and rows["stack.tif"][2] == "15"
    assert rows["corrupt.tif"][1] == "failed" and "cannot read" in " ".join(rows["corrupt.tif"])
    assert rows["missing_*.png"][1] == "failed"
    assert "3 ok" in proc.stdout and "2 failed" in proc.stdout
    stack = tifffile.imread(out / "stack.tif")
    assert stack.shape == (3, 32, 32) and stack.dtype == np.uint16
    assert iio.imread(out / "rgb.png").shape == (40, 48, 3)
    meta = json.loads((out / "stack.tif.json").read_text())["specdip"]
    assert meta["command"] == "batch" and len(meta["slices"]) == 3
    assert sorted(p.name for p in out.iterdir()) == [
        "gray.png", "gray.png.json", "rgb.png", "rgb.png.json", "stack.tif", "stack.tif.json"]


def test_scheduler_run_skips_what_is_done(images: dict[str, Path], tmp_path: Path,
                                          scheduler: str) -> None:
    out = tmp_path / "out"
    first = run_cli("batch", images["gray"], "-o", out, "--scheduler", scheduler,
                    "--suffix", "_r", *FAST)
    assert first.returncode == 0, first.stderr
    assert "Dask scheduler" in first.stderr and "(2 workers)" in first.stderr
    mtime = (out / "gray_r.png").stat().st_mtime_ns
    again = run_cli("batch", images["gray"], "-o", out, "--scheduler", scheduler,
                    "--suffix", "_r", *FAST)
    assert again.returncode == 0
    assert _table(again.stdout)["gray.png"][1] == "skipped"
    assert (out / "gray_r.png").stat().st_mtime_ns == mtime


def test_unreachable_scheduler_is_a_clean_error(images: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("batch", images["gray"], "-o", tmp_path, "--scheduler", "tcp://127.0.0.1:9",
                   "--connect-timeout", "2",
                   *FAST, timeout=120)
    assert_clean_failure(proc, 2, "cannot connect", "tcp://127.0.0.1:9")


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended (code {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow  # three batch processes, each starting its own Dask cluster
def test_interrupt_and_resume(tmp_path: Path) -> None:
    """Ctrl-C, then a hard kill of every process mid-stack, then a run that finishes the rest."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        iio.imwrite(inputs / f"img{i}.png", (rng.random((64, 64)) * 255).astype(np.uint8))
    tifffile.imwrite(inputs / "zstack.tif",
                     (rng.random((4, 64, 64)) * 4000 + 100).astype(np.uint16),
                     photometric="minisblack")
    out = tmp_path / "out"
    partial = out / ".specdip-partial"
    args = [sys.executable, "-m", "napari_specdip.cli", "batch", str(inputs), "-o", str(out),
            "--workers", "1", "--width", "8", "--depth", "4", "--max-iterations", "40",
            "--stop", "none"]

    def start(log: Path) -> subprocess.Popen:
        with open(log, "w") as f:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=cli_env(),
                                    start_new_session=True)

    # 1. Ctrl-C (to the whole process group, as a terminal does) once img0 is written
    proc = start(tmp_path / "run1.txt")
    try:
        _wait_for(lambda: (out / "img0.png.json").exists(), proc, "the first output")
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log1 = (tmp_path / "run1.txt").read_text()
    assert proc.returncode == 130, log1
    assert "Traceback" not in log1 and "interrupted" in log1
    assert _table(log1)["img0.png"][1] == "ok"
    first_mtime = (out / "img0.png").stat().st_mtime_ns

    # 2. SIGKILL every process of the batch once a slice of the stack is checkpointed
    proc = start(tmp_path / "run2.txt")
    try:
        _wait_for(lambda: partial.is_dir() and any(partial.rglob("slice_*.npz")), proc,
                  "a finished slice of the stack")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert "Traceback" not in (tmp_path / "run2.txt").read_text()
    # whatever is under an output name loads completely
    for path in out.iterdir():
        if path.is_file() and not path.name.startswith("."):
            if path.suffix == ".json":
                json.loads(path.read_text())
            else:
                assert _loads(path).size > 0
    assert not (out / "zstack.tif").exists()
    saved = {p.name: json.loads(str(np.load(p)["meta"])) for p in partial.rglob("slice_*.npz")}
    assert saved

    # 3. resume: nothing finished is recomputed, the stack reuses its finished slices
    proc3 = run_cli("batch", inputs, "-o", out, "--workers", "1", "--width", "8", "--depth", "4",
                    "--max-iterations", "40", "--stop", "none")
    assert proc3.returncode == 0, proc3.stdout + proc3.stderr
    rows = _table(proc3.stdout)
    assert rows["img0.png"][1] == "skipped"
    assert all(rows[name][1] in ("ok", "skipped")
               for name in ("img1.png", "img2.png", "zstack.tif"))
    assert rows["zstack.tif"][1] == "ok"
    assert (out / "img0.png").stat().st_mtime_ns == first_mtime
    meta = json.loads((out / "zstack.tif.json").read_text())["specdip"]
    for name, slice_meta in saved.items():
        index = int(name.removeprefix("slice_").removesuffix(".npz"))
        # the very same run, not a recomputation
        assert meta["slices"][index]["elapsed_seconds"] == slice_meta["elapsed_seconds"]
        assert meta["slices"][index]["iterations"] == slice_meta["iterations"] == 40
    stack = tifffile.imread(out / "zstack.tif")
    assert stack.shape == (4, 64, 64) and stack.dtype == np.uint16
    # no temporary files and no checkpoints are left
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name]
    assert not partial.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}{ext}" for n in ("img0.png", "img1.png", "img2.png", "zstack.tif")
        for ext in ("", ".json"))


def test_local_workers_are_counted_by_the_threads_each_restoration_takes() -> None:
    from argparse import Namespace

    from napari_specdip.cli.batch import open_client

    # --threads 2 gave each restoration 2 threads, but the workers were counted for 1
    # (2 workers x 2 threads on 2 cores) and the banner said 1
    args = Namespace(scheduler=None, workers=None, threads=2, threads_per_worker=1,
                     dashboard=None)
    with open_client(args) as (client, banner):
        workers = len(client.nthreads())
    assert workers == max(1, (os.cpu_count() or 1) // 2)
    assert f"({workers} worker(s), 2 torch thread(s) each)" in banner


def test_inputs_expand_folders_and_globs(tmp_path: Path) -> None:
    for name in ("b.png", "a.tif", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    found = expand_inputs([str(tmp_path), str(tmp_path / "*.png"), str(tmp_path / "x*.tif")])
    assert found == [tmp_path / "a.tif", tmp_path / "b.png", str(tmp_path / "x*.tif")]


def test_batch_ensemble_writes_uncertainties_and_starts_slices_cold(images: dict[str, Path],
                                                                    tmp_path: Path,
                                                                    scheduler: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("gray", "stack"):
        shutil.copy(images[name], folder / images[name].name)
    args = ["batch", folder, "-o", folder, "--suffix", "_dn", "--scheduler", scheduler,
            "--ensemble", "2", *FAST]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    # a stack's estimate is per slice, and says so (it read like the whole file's)
    line = next(x for x in proc.stderr.splitlines() if "stack.tif: estimate:" in x)
    assert "per slice, 3 slices" in line, line
    spread = tifffile.imread(folder / "stack_dn_uncertainty.tif")
    assert spread.shape == (3, 32, 32) and spread.dtype == np.float32 and spread.max() > 0
    assert tifffile.imread(folder / "gray_dn_uncertainty.tif").shape == (48, 40)
    meta = json.loads((folder / "stack_dn.tif.json").read_text())["specdip"]
    assert meta["warm_start"] is False and meta["uncertainty"]["members"] == 2
    assert not any(s["parameters"]["warm_start"] for s in meta["slices"])
    # a rerun skips both and takes neither the outputs nor the uncertainties for inputs
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    rows = _table(again.stdout)
    assert rows["gray.png"][1] == rows["stack.tif"][1] == "skipped"
    assert not [name for name in rows if "_dn" in name], again.stdout
    assert "2 skipped" in again.stdout
    # an output whose uncertainty went missing is not finished
    (folder / "gray_dn_uncertainty.tif").unlink()
    third = run_cli(*args)
    assert third.returncode == 0, third.stderr
    assert _table(third.stdout)["gray.png"][1] == "ok"
    assert (folder / "gray_dn_uncertainty.tif").is_file()


def test_batch_series_reads_the_same_series_of_every_file(images: dict[str, Path],
                                                         tmp_path: Path, scheduler: str) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for k, (low, high) in enumerate(((200, 3000), (300, 6000))):
        with tifffile.TiffWriter(folder / f"plate{k}.tif") as tif:
            tif.write(np.full((40, 36), low, np.uint16))
            tif.write((np.random.default_rng(k).normal(high, high / 10, (32, 32)))
                      .astype(np.uint16))
    shutil.copy(images["gray"], folder / "gray.png")
    args = ["batch", folder, "-o", out, "--scheduler", scheduler, "--series", "1", *FAST]
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr  # the PNG holds no series 1: it fails alone
    rows = _table(proc.stdout)
    assert rows["plate0.tif"][1] == rows["plate1.tif"][1] == "ok"
    assert rows["gray.png"][1] == "failed" and "only --series 0" in proc.stdout
    for k, high in enumerate((3000, 6000)):
        result = tifffile.imread(out / f"plate{k}.tif")
        assert result.shape == (32, 32) and 0.8 * high < result.mean() < 1.2 * high
        assert json.loads((out / f"plate{k}.tif.json").read_text())["specdip"]["series"] == 1
    # outputs of series 1 are not what --series 0 would make
    again = run_cli("batch", folder / "plate0.tif", "-o", out, "--scheduler", scheduler,
                    "--series", "0", *FAST)
    assert_clean_failure(again, 2, "made with other options", "series 1 -> 0")


def test_batch_hands_a_stack_one_camera_estimate(tmp_path: Path, scheduler: str) -> None:
    """The slices run in parallel on the workers, each with the camera values estimated
    once over the whole stack on the client."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "z.tif", camera_stack(4, 48), imagej=True,
                     metadata={"axes": "ZYX"})
    proc = run_cli("batch", folder, "-o", tmp_path / "out", "--scheduler", scheduler, *FAST,
                   "--max-iterations", "2", "--noise", "poisson-gaussian")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "out" / "z.tif.json").read_text())["specdip"]
    models = [s["noise_model"] for s in meta["slices"]]
    assert [m["estimated_over"]["slices"] for m in models] == [4] * 4
    assert all(m["gain"] == pytest.approx(models[0]["gain"], rel=1e-9) for m in models)


def test_batch_inpainting_without_a_mask_fills_each_files_nan_pixels(tmp_path: Path,
                                                                     scheduler: str) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(4)
    stack = rng.random((2, 32, 32)).astype(np.float32)
    stack[0, 4:8, 4:8] = np.nan  # slice 1 has nothing to fill
    tifffile.imwrite(folder / "gaps.tif", stack, photometric="minisblack",
                     metadata={"axes": "ZYX"})
    tifffile.imwrite(folder / "whole.tif", rng.random((32, 32)).astype(np.float32))
    args = ["batch", folder, "-o", out, "--scheduler", scheduler, "--task", "inpaint", *FAST]
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr  # the file without NaN fails alone
    rows = _table(proc.stdout)
    assert rows["gaps.tif"][1] == "ok"
    assert rows["whole.tif"][1] == "failed" and "needs --mask FILE" in proc.stdout
    filled = tifffile.imread(out / "gaps.tif")
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[1], stack[1])
    meta = json.loads((out / "gaps.tif.json").read_text())["specdip"]
    assert [s["stop_reason"] for s in meta["slices"]] == ["max_iterations", "nothing_to_fill"]
    assert meta["mask"] is None and meta["holes"] == "nan"
    # a rerun skips what is done; with a mask file it would be other options
    again = run_cli(*args)
    assert _table(again.stdout)["gaps.tif"][1] == "skipped", again.stdout
    mask = tmp_path / "mask.png"
    marked = np.zeros((32, 32), np.uint8)
    marked[4:8, 4:8] = 255
    iio.imwrite(mask, marked)
    other = run_cli(*args, "--mask", mask)
    assert_clean_failure(other, 2, "made with other options", "mask None ->")
