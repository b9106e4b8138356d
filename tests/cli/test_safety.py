"""Data safety of the command line: nothing overwritten, nothing dropped, no late surprises."""

from __future__ import annotations

import contextlib
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
from specdip_cli_helpers import FAST, assert_clean_failure, batch_status, cli_env, run_cli


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _sidecar(path: Path) -> dict:
    return json.loads(Path(f"{path}.json").read_text())["specdip"]


# ------------------------------------------------------------------ 1: never over the input


def test_restore_refuses_its_input_as_output(images: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "a.png"
    shutil.copy(images["gray"], source)
    before = source.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(source)
    hard = tmp_path / "hard.png"
    os.link(source, hard)
    for target in (source, link, hard, tmp_path / "." / "a.png"):
        proc = run_cli("restore", source, "-o", target, *FAST)
        assert_clean_failure(proc, 2, "is the input file", "--overwrite")
        assert source.read_bytes() == before
    assert not Path(f"{source}.json").exists()

    proc = run_cli("restore", source, "-o", source, "--overwrite", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert source.read_bytes() != before and iio.imread(source).shape == (48, 40)
    assert _sidecar(source)["iterations"] == 5


def test_restore_refuses_to_write_over_its_mask(images: dict[str, Path], tmp_path: Path) -> None:
    mask = tmp_path / "mask.png"
    shutil.copy(images["mask"], mask)
    proc = run_cli("restore", images["gray"], "-o", mask, "--task", "inpaint", "--mask", mask,
                   "--overwrite", *FAST)
    assert_clean_failure(proc, 2, "would overwrite the mask file")
    assert mask.read_bytes() == images["mask"].read_bytes()


def test_batch_in_place_needs_overwrite_and_skips_its_own_outputs(images: dict[str, Path],
                                                                  tmp_path: Path,
                                                                  scheduler: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(images["gray"], folder / "gray.png")
    before = (folder / "gray.png").read_bytes()
    proc = run_cli("batch", folder, "-o", folder, "--scheduler", scheduler, *FAST)
    assert_clean_failure(proc, 2, "would replace their input", "gray.png", "--overwrite")
    assert (folder / "gray.png").read_bytes() == before

    # outputs next to the inputs: a rerun does not take its own outputs for inputs
    proc = run_cli("batch", folder, "-o", folder, "--suffix", "_dn", "--scheduler", scheduler,
                   *FAST)
    assert proc.returncode == 0, proc.stderr
    again = run_cli("batch", folder, "-o", folder, "--suffix", "_dn", "--scheduler", scheduler,
                    *FAST)
    assert again.returncode == 0, again.stderr
    assert batch_status(again.stdout, "gray.png") == "skipped"
    rows = [line.split()[0] for line in again.stdout.splitlines()[2:-1]]
    assert [Path(r).name for r in rows] == ["gray.png"], again.stdout
    assert not (folder / "gray_dn_dn.png").exists()

    proc = run_cli("batch", folder / "gray.png", "-o", folder, "--overwrite",
                   "--scheduler", scheduler, *FAST)
    assert proc.returncode == 0, proc.stderr
    assert (folder / "gray.png").read_bytes() != before
    assert _sidecar(folder / "gray.png")["command"] == "batch"


# ------------------------------------------------------------------ 2: unwritable outputs, at once


@contextlib.contextmanager
def _read_only_mount(path: Path) -> Iterator[None]:
    path.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                          capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip("cannot mount a read-only file system here (needs root)")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True, check=False)


@pytest.mark.parametrize("where", ["proc", "proc_folder", "output_is_a_folder", "read_only"])
def test_unwritable_output_is_reported_before_any_work(where: str, images: dict[str, Path],
                                                       tmp_path: Path) -> None:
    slow = ["--width", "8", "--max-iterations", "100000", "--stop", "none"]
    context: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if where == "proc":
        out = Path("/proc/specdip_out.png")
    elif where == "proc_folder":
        out = Path("/proc/specdip/out.png")
    elif where == "output_is_a_folder":
        out = tmp_path
    else:
        out = tmp_path / "ro" / "out.png"
        context = _read_only_mount(tmp_path / "ro")
    with context:
        start = time.monotonic()
        proc = run_cli("restore", images["gray"], "-o", out, *slow, timeout=120)
        assert_clean_failure(proc, 2, f"cannot write output {out}")
        assert time.monotonic() - start < 60  # not after 100000 iterations
        assert "specdip-tmp" not in proc.stderr and "estimate:" not in proc.stderr
        if where == "read_only":
            assert "Read-only file system" in proc.stderr
            batch = run_cli("batch", images["gray"], "-o", out.parent, *slow, timeout=120)
            assert_clean_failure(batch, 2, f"cannot write into output folder {out.parent}")


def test_late_write_errors_name_the_users_path(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.cli import files, runner
    from napari_specdip.cli.errors import RunError

    def fail(path: Path, writer: object) -> None:
        raise OSError(30, "Read-only file system", str(files.temp_name(path)))

    monkeypatch.setattr(files, "write_atomic", fail)
    job = runner.prepare(_gray_file(tmp_path), tmp_path / "out.tif", task="denoise",
                         options={"width": 4, "max_iterations": 1})
    with pytest.raises(RunError) as info:
        runner.write_outputs(job, job.source.data, {"specdip": {}})
    assert str(info.value) == f"cannot write {tmp_path / 'out.tif'}: Read-only file system"


def _gray_file(folder: Path) -> Path:
    path = folder / "in.tif"
    tifffile.imwrite(path, (np.random.default_rng(0).random((32, 32)) * 1000).astype(np.uint16))
    return path


# ------------------------------------------------------------------ 3: memory, said before any work


def test_memory_refusal_before_any_work(images: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from napari_specdip.cli.main import main
    from napari_specdip.core import estimate

    monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": 1_000_000)
    out = tmp_path / "out.png"
    code = main(["restore", str(images["gray"]), "-o", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "will not fit" in err and "needs about" in err and "1.0 MB" in err
    assert "smaller width" in err or "another device" in err
    assert not out.exists()


def test_estimate_is_printed_before_the_run(images: dict[str, Path], tmp_path: Path) -> None:
    proc = run_cli("restore", images["stack"], "-o", tmp_path / "s.tif", *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    first = next(k for k, x in enumerate(lines) if x.startswith("estimate:"))
    line, memory = lines[first], lines[first + 1]
    assert "per 100 iterations" in line and "5 iterations per slice" in line
    assert "3 slices" in line and "usually" not in line  # --stop none: the cap, exactly
    assert "at most" not in line
    assert memory.startswith("  peak memory") and "available on cpu" in memory
    assert "torch thread" in memory
    # the hold-out stop: the cap, and the typical range, said to be typical
    auto = run_cli("restore", images["gray"], "-o", tmp_path / "a.png", "--width", "8",
                   "--max-iterations", "5000")
    assert auto.returncode == 0, auto.stderr
    line = next(x for x in auto.stderr.splitlines() if x.startswith("estimate:"))
    assert "at most" in line and "(5000 iterations)" in line
    assert "usually stops after" in line and "typical, not a promise" in line
    quiet = run_cli("restore", images["gray"], "-o", tmp_path / "q.png", "-q", *FAST)
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_batch_prints_each_files_estimate(images: dict[str, Path], tmp_path: Path,
                                          scheduler: str) -> None:
    proc = run_cli("batch", images["gray"], images["rgb"], "-o", tmp_path / "out",
                   "--scheduler", scheduler, *FAST)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if "estimate:" in x]
    assert len(lines) == 2 and all("peak memory" in x for x in lines), proc.stderr
    assert any("gray.png" in x for x in lines) and any("rgb.png" in x for x in lines)


# ------------------------------------------------------------------ 5: TIFF calibration kept


def _calibration(path: Path) -> tuple[tuple[float, float], int, dict, str]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        meta = dict(tif.imagej_metadata or {})
        if not meta and tif.shaped_metadata:
            meta = dict(tif.shaped_metadata[0])
        return page.get_resolution(), int(page.resolutionunit), meta, tif.series[0].axes


def test_imagej_stack_keeps_pixel_size_spacing_unit_and_axes(tmp_path: Path,
                                                             scheduler: str) -> None:
    stack = (np.random.default_rng(2).random((2, 32, 40)) * 3000 + 100).astype(np.uint16)
    source = tmp_path / "cal.tif"
    tifffile.imwrite(source, stack, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.5, "unit": "um", "axes": "ZYX"})
    out = tmp_path / "cal_out.tif"
    proc = run_cli("restore", source, "-o", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    (x, y), unit, meta, axes = _calibration(out)
    assert (x, y) == pytest.approx((4.0, 2.0)) and axes == "ZYX"
    assert meta["spacing"] == 2.5 and meta["unit"] == "um"
    assert tifffile.imread(out).dtype == np.uint16
    assert _sidecar(out)["calibration"]["pixel_size"] == pytest.approx([0.25, 0.5])

    sr = tmp_path / "cal_x2.tif"
    proc = run_cli("restore", source, "-o", sr, "--task", "super-resolve", "--factor", "2",
                   "--width", "8", "--depth", "4", "--max-iterations", "2", "--stop", "none")
    assert proc.returncode == 0, proc.stderr
    (x, y), _, meta, axes = _calibration(sr)
    assert (x, y) == pytest.approx((8.0, 4.0))  # pixels twice as small
    assert meta["spacing"] == 2.5 and axes == "ZYX"
    assert tifffile.imread(sr).shape == (2, 64, 80)

    batch_out = tmp_path / "batch"
    proc = run_cli("batch", source, "-o", batch_out, "--scheduler", scheduler, *FAST)
    assert proc.returncode == 0, proc.stderr
    (x, y), _, meta, axes = _calibration(batch_out / "cal.tif")
    assert (x, y) == pytest.approx((4.0, 2.0)) and meta["spacing"] == 2.5 and axes == "ZYX"


def test_plain_tiff_resolution_and_float64_imagej_fallback(tmp_path: Path) -> None:
    image = np.random.default_rng(3).random((32, 32)) * 50.0
    source = tmp_path / "plain.tif"
    tifffile.imwrite(source, image, resolution=(300.0, 150.0), resolutionunit="CENTIMETER",
                     metadata={"axes": "YX"})
    out = tmp_path / "plain_out.tif"
    assert run_cli("restore", source, "-o", out, *FAST).returncode == 0
    (x, y), unit, _, axes = _calibration(out)
    assert (x, y) == pytest.approx((300.0, 150.0)) and unit == 3 and axes == "YX"
    assert tifffile.imread(out).dtype == np.float64

    ij = tmp_path / "ij32.tif"
    tifffile.imwrite(ij, image.astype(np.float32), imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 1.0, "unit": "micron", "axes": "YX"})
    out64 = tmp_path / "ij64.tif"  # ImageJ cannot hold float64: shaped TIFF, same calibration
    proc = run_cli("restore", ij, "-o", out64, "--output-dtype", "float64", *FAST)
    assert proc.returncode == 0, proc.stderr
    (x, y), _, meta, _ = _calibration(out64)
    assert (x, y) == pytest.approx((2.0, 2.0)) and meta["unit"] == "micron"
    assert tifffile.imread(out64).dtype == np.float64


# ------------------------------------------------------------------ 6: resuming with other options


def test_batch_rerun_with_other_options_is_refused(images: dict[str, Path], tmp_path: Path,
                                                   scheduler: str) -> None:
    out = tmp_path / "out"
    base = ["batch", images["gray"], images["rgb"], "-o", out, "--scheduler", scheduler]
    assert run_cli(*base, *FAST).returncode == 0
    made = {p.name: p.read_bytes() for p in out.iterdir()}

    proc = run_cli(*base, *FAST, "--task", "enhance")
    assert_clean_failure(proc, 2, "2 output(s) already there were made with other options",
                         "task denoise -> enhance", "--overwrite")
    proc = run_cli(*base, *FAST[:-2], "--stop", "auto", "--seed", "4")
    assert_clean_failure(proc, 2, "stop none -> auto", "seed 0 -> 4")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == made

    same = run_cli(*base, *FAST, "--threads", "2")  # where and how fast: not a change
    assert same.returncode == 0, same.stderr
    assert batch_status(same.stdout, "gray.png") == "skipped"

    redo = run_cli(*base, *FAST, "--task", "enhance", "--overwrite")
    assert redo.returncode == 0, redo.stderr
    assert _sidecar(out / "gray.png")["task"] == "enhance"


# ------------------------------------------------------------------ 7: NaN in a float mask file


def test_nan_in_a_mask_file_is_a_usage_error(images: dict[str, Path], tmp_path: Path) -> None:
    mask = np.zeros((48, 40), np.float32)
    mask[5:9, 5:9] = 1.0
    mask[0, 0] = np.nan
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, mask)
    proc = run_cli("restore", images["gray"], "-o", tmp_path / "o.png", "--task", "inpaint",
                   "--mask", path, *FAST)
    assert_clean_failure(proc, 2, "mask contains 1 NaN")


# ------------------------------------------------------------------ 9: Ctrl-C keeps the result


#: ``specdip`` with a slow disk: writing the result waits 10 s first
_SLOW_WRITE = """
import sys, time
from napari_specdip.cli import runner
write = runner.write_outputs
def slow(*args, **kwargs):
    time.sleep(10)
    return write(*args, **kwargs)
runner.write_outputs = slow
from napari_specdip.cli.main import main
sys.exit(main())
"""


def _start_and_interrupt(args: list[str], log: Path, presses: int,
                         slow_write: bool = False) -> subprocess.Popen[bytes]:
    command = ["-c", _SLOW_WRITE, *args] if slow_write else ["-m", "napari_specdip.cli", *args]
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, *command],
                                stdout=subprocess.DEVNULL, stderr=err, env=cli_env())
        try:
            deadline = time.monotonic() + 90
            while "/100000" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)  # until the fit runs (the progress bar is on stderr)
            time.sleep(1.0)
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.05)
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc


def test_first_ctrl_c_writes_the_result_so_far(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out" / "partial.tif"
    log = tmp_path / "stderr.txt"
    proc = _start_and_interrupt(
        ["restore", str(images["stack"]), "-o", str(out), "--width", "8", "--depth", "4",
         "--max-iterations", "100000", "--stop", "none", "--progress"], log, presses=1)
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "writing the result so far" in text and "wrote the result so far" in text
    assert "Traceback" not in text
    result = tifffile.imread(out)
    source = tifffile.imread(images["stack"])
    assert result.shape == source.shape and result.dtype == source.dtype
    meta = _sidecar(out)
    assert meta["partial"] is True and meta["stop_reason"] == "stopped"
    assert meta["iterations"] > 0
    slices = meta["slices"]
    assert slices[0]["stop_reason"] == "stopped" and slices[0]["iterations"] > 0
    assert [s["stop_reason"] for s in slices[1:]] == ["not_run", "not_run"]
    np.testing.assert_array_equal(result[1:], source[1:])  # not reached: copied unrestored
    assert meta["not_run_slices"] == 2


def test_second_ctrl_c_quits_without_writing(images: dict[str, Path], tmp_path: Path) -> None:
    """The second press comes while the first is still winding down: a step at this size
    takes milliseconds, so the writing is made slow (10 s) for the press to land before
    it, as it does for a large image or a slow disk."""
    out = tmp_path / "out" / "never.png"
    log = tmp_path / "stderr.txt"
    proc = _start_and_interrupt(
        ["restore", str(images["gray"]), "-o", str(out), "--width", "8", "--depth", "4",
         "--max-iterations", "100000", "--stop", "none", "--progress"], log, presses=2,
        slow_write=True)
    text = log.read_text()
    assert proc.returncode == 130, text
    assert "specdip: interrupted" in text and "Traceback" not in text
    assert not out.parent.exists() or not list(out.parent.iterdir())


# ------------------------------------------------------------------ 10: threads


def test_auto_threads_follow_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from napari_specdip.cli import runner

    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    cases = [(0.1, 1), (0.9, 1), (1.95, 2), (7.6, 7), (15.9, runner.MAX_AUTO_THREADS)]
    for idle, expected in cases:
        monkeypatch.setattr(runner, "idle_cores", lambda interval=0.2, idle=idle: idle)
        assert runner.default_threads() == expected
    monkeypatch.setattr(runner, "idle_cores", lambda interval=0.2: None)
    assert 1 <= runner.default_threads() <= runner.MAX_AUTO_THREADS
    assert runner.idle_cores(0.05) is None or runner.idle_cores(0.05) >= 0


def test_threads_are_recorded(images: dict[str, Path], tmp_path: Path) -> None:
    auto = tmp_path / "auto.png"
    assert run_cli("restore", images["gray"], "-o", auto, *FAST).returncode == 0
    threads = _sidecar(auto)["parameters"]["num_threads"]
    assert isinstance(threads, int) and threads >= 1
    one = tmp_path / "one.png"
    assert run_cli("restore", images["gray"], "-o", one, "--threads", "1", *FAST).returncode == 0
    assert _sidecar(one)["parameters"]["num_threads"] == 1
    proc = run_cli("restore", images["gray"], "-o", one, "--threads", "many")
    assert_clean_failure(proc, 2, "--threads")


def test_threads_far_above_the_cores_are_refused_before_any_work(
        images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # --threads 10000 (a typo) ran for more than 9 minutes on a 48 px image, 20 iterations
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    out = tmp_path / "t.png"
    proc = _main(["restore", images["gray"], "-o", out, "--threads", "9", *FAST], capsys)
    assert_clean_failure(proc, 2, "num_threads=9", "2 CPU core(s)", "at most 8")
    assert not out.exists() and not Path(f"{out}.json").exists()
    folder = tmp_path / "batch"
    proc = _main(["batch", images["gray"], "-o", folder, "--threads-per-worker", "9", *FAST],
                 capsys)
    assert_clean_failure(proc, 2, "num_threads=9", "at most 8")
    assert not folder.exists() or not any(folder.iterdir())
    proc = _main(["restore", images["gray"], "-o", out, "--threads", "8", *FAST], capsys)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ 12: clipping said out loud


def test_enhance_gain_warning_reaches_the_user(images: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "e.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--task", "enhance", "--gain", "1e6",
                   *FAST)
    assert proc.returncode == 0, proc.stderr
    warning = [x for x in proc.stderr.splitlines() if x.startswith("specdip: warning:")]
    assert len(warning) == 1 and "clipped" in warning[0] and "smaller gain" in warning[0]
    assert "UserWarning" not in proc.stderr
    assert "clipped" in _sidecar(out)["warnings"][0]


# ------------------------------------------------------------------ batch: stopping running tasks


def _wait_for_stop(name: str, started: str) -> float:
    """Wait on a worker for the stop named ``name``; the time it was seen (-1: never)."""
    from napari_specdip.cli.batch import RemoteStop

    stop = RemoteStop(name, every=0.1)
    Path(started).touch()  # the task runs: the test may set the stop now
    start = time.monotonic()
    while not stop.is_set():
        time.sleep(0.02)
        if time.monotonic() - start > 60:
            return -1.0
    return time.time()


def test_remote_stop_reaches_a_running_task_without_a_worker_client(scheduler: str,
                                                                    tmp_path: Path) -> None:
    from distributed import Client, Event

    from napari_specdip.cli.batch import RemoteStop

    assert RemoteStop("specdip-test-nowhere", every=0.0).is_set() is False  # not on a worker
    started = tmp_path / "started"
    with Client(scheduler) as client:
        fut = client.submit(_wait_for_stop, "specdip-test-stop", str(started), pure=False)
        # set once the task is waiting (a fixed sleep raced a slow worker start)
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        set_at = time.time()
        Event("specdip-test-stop", client=client).set()
        seen_at = fut.result(timeout=60)
        assert seen_at >= set_at  # the running task saw the stop set after it started
        # the task asked through the worker's connection: no worker Client was made
        made = client.run(lambda dask_worker: dask_worker._client is not None)
        assert not any(made.values())


def test_a_16_bit_colour_png_is_refused_before_any_work(tmp_path: Path) -> None:
    rgb16 = tmp_path / "rgb16.tif"
    tifffile.imwrite(rgb16, (np.random.default_rng(3).random((32, 40, 3)) * 60000)
                     .astype(np.uint16), photometric="rgb")
    proc = run_cli("restore", rgb16, "-o", tmp_path / "out.png", "--max-iterations", "500")
    assert_clean_failure(proc, 2, "PNG stores 16-bit gray only", "write .tif")
    assert not (tmp_path / "out.png").exists()
    as_bytes = run_cli("restore", rgb16, "-o", tmp_path / "out8.png", "--output-dtype", "uint8",
                       *FAST)
    assert as_bytes.returncode == 0, as_bytes.stderr


def test_a_batch_never_takes_a_users_file_for_an_earlier_output(tmp_path: Path,
                                                                scheduler: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(4)
    tifffile.imwrite(folder / "a.tif", (rng.random((20, 20)) * 255).astype(np.uint8))
    theirs = np.full((17, 19), 99, np.uint16)  # the user's own file, named like a's output
    tifffile.imwrite(folder / "a_dn.tif", theirs)
    proc = run_cli("batch", folder, "-o", folder, "--suffix", "_dn", "--scheduler", scheduler,
                   *FAST)
    assert_clean_failure(proc, 2, "a_dn.tif is an input", "a.tif")
    np.testing.assert_array_equal(tifffile.imread(folder / "a_dn.tif"), theirs)


def test_alpha_to_jpeg_is_refused_before_any_work_and_png_records_what_it_wrote(
        tmp_path: Path) -> None:
    rgba = tmp_path / "rgba.png"
    iio.imwrite(rgba, (np.random.default_rng(5).random((32, 32, 4)) * 255).astype(np.uint8))
    proc = run_cli("restore", rgba, "-o", tmp_path / "out.jpg", "--max-iterations", "500")
    assert_clean_failure(proc, 2, "JPEG cannot hold an alpha channel")
    floats = tmp_path / "f.tif"
    tifffile.imwrite(floats, np.random.default_rng(6).random((32, 32)).astype(np.float32))
    out = tmp_path / "f.png"
    assert run_cli("restore", floats, "-o", out, *FAST).returncode == 0
    meta = _sidecar(out)
    assert meta["output_dtype"] == "float32" and meta["written_dtype"] == "uint8"
    assert iio.imread(out).dtype == np.uint8


def test_impossible_options_stop_a_batch_before_any_work(images: dict[str, Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("batch", images["gray"], "-o", out, "--tile", "16", *FAST)
    assert_clean_failure(proc, 2, "tile must be 0")
    assert not out.exists() or not any(out.iterdir())


def test_a_noise_sigma_beyond_the_range_is_refused_before_any_work(
        images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --noise-sigma 1e9 on a uint8 PNG was accepted and wrote a flat image
    out = tmp_path / "n.png"
    proc = _main(["restore", images["gray"], "-o", out, "--noise-sigma", "1e9", *FAST], capsys)
    assert_clean_failure(proc, 2, "noise_sigma=1e+09 is larger than the image's whole range "
                                  "(0..255)")
    assert not out.exists() and not Path(f"{out}.json").exists()


def test_demo_into_a_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "a_file"
    target.write_text("mine")
    proc = run_cli("demo", "-o", target, "--max-iterations", "2")
    assert_clean_failure(proc, 2, "is a file")
    assert target.read_text() == "mine"


def test_a_suffix_with_a_path_separator_is_refused(images: dict[str, Path],
                                                   tmp_path: Path) -> None:
    proc = run_cli("batch", images["gray"], "-o", tmp_path / "out", "--suffix", "/../../escaped",
                   *FAST)
    assert_clean_failure(proc, 2, "--suffix", "path separator")
    assert not list(tmp_path.rglob("escaped*"))


# ------------------------------------------------------------------ audit: every slice, first


def _main(args: list[str | Path], capsys: pytest.CaptureFixture[str]
          ) -> subprocess.CompletedProcess[str]:
    """``specdip ARGS`` in this process (faster than a subprocess), as a CompletedProcess."""
    from napari_specdip.cli.main import main

    argv = [str(a) for a in args]
    code = main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, captured.out, captured.err)


@pytest.mark.parametrize("bad", ["one_nan", "all_inf", "reference"])
def test_a_bad_later_slice_of_a_stack_is_refused_before_any_work(
        bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # only the first slice went through the engine's checks: the run failed at the bad
    # slice, after restoring those before it, and wrote nothing (an all-infinite slice
    # passed for constant and was copied, infinities and all, into the output)
    stack = np.random.default_rng(7).random((3, 32, 32)).astype(np.float32)
    source, reference = tmp_path / "stack.tif", tmp_path / "clean.tif"
    zyx = {"photometric": "minisblack", "metadata": {"axes": "ZYX"}}
    clean = stack.copy()
    if bad == "one_nan":
        stack[2, 5, 5] = np.nan
    elif bad == "all_inf":
        stack[1] = np.inf
    else:
        clean[1, 0, 0] = np.nan
    tifffile.imwrite(source, stack, **zyx)
    tifffile.imwrite(reference, clean, **zyx)
    out = tmp_path / "out.tif"
    proc = _main(["restore", source, "-o", out, "--reference", reference, "--width", "8",
                  "--depth", "3", "--max-iterations", "200", "--stop", "none"], capsys)
    where = "(slice 2)" if bad == "one_nan" else "(slice 1)"
    named = str(reference if bad == "reference" else source)
    assert_clean_failure(proc, 2, named, where, "NaN or infinite")
    assert "estimate:" not in proc.stderr and not out.exists()


def _write_zyx(path: Path, data: np.ndarray) -> None:
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "ZYX"})


def _stack_and_mask(tmp_path: Path, holes: np.ndarray, *, seed: int
                    ) -> tuple[np.ndarray, Path, Path]:
    """A random uint16 ZYX stack shaped like ``holes``, and ``holes`` as its mask, as TIFFs."""
    stack = (np.random.default_rng(seed).random(holes.shape) * 1000).astype(np.uint16)
    source, mask = tmp_path / "stack.tif", tmp_path / "mask.tif"
    _write_zyx(source, stack)
    _write_zyx(mask, holes)
    return stack, source, mask


def test_a_slice_with_nothing_to_fill_is_copied_through(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holes = np.zeros((3, 32, 32), np.uint8)
    holes[[0, 2], 4:8, 4:8] = 1  # slice 1 has no hole: fitting it would only smooth it
    stack, source, mask = _stack_and_mask(tmp_path, holes, seed=9)
    out = tmp_path / "out.tif"
    proc = _main(["restore", source, "-o", out, "--task", "inpaint", "--mask", mask, *FAST],
                 capsys)
    assert proc.returncode == 0, proc.stderr
    restored = tifffile.imread(out)
    np.testing.assert_array_equal(restored[1], stack[1])
    assert (restored[0] != stack[0]).any()
    meta = _sidecar(out)
    assert meta["stop_reason"] == "max_iterations,nothing_to_fill"
    assert [s["stop_reason"] for s in meta["slices"]] == [
        "max_iterations", "nothing_to_fill", "max_iterations"]
    # a mask that marks no pixel anywhere is refused before any work
    _write_zyx(mask, np.zeros_like(holes))
    out.unlink()
    proc = _main(["restore", source, "-o", out, "--task", "inpaint", "--mask", mask, *FAST],
                 capsys)
    assert_clean_failure(proc, 2, "marks no pixel to fill in any slice")
    assert not out.exists()


def test_nan_pixels_under_the_mask_are_filled_not_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holes = np.zeros((3, 32, 32), np.uint8)
    holes[:, 4:8, 4:12] = 1
    stack = np.random.default_rng(4).random(holes.shape).astype(np.float32)
    stack[holes.astype(bool)] = np.nan  # missing pixels stored as NaN
    source, mask = tmp_path / "stack.tif", tmp_path / "mask.tif"
    _write_zyx(source, stack)
    _write_zyx(mask, holes)
    out = tmp_path / "out.tif"
    proc = _main(["restore", source, "-o", out, "--task", "inpaint", "--mask", mask, *FAST],
                 capsys)
    assert proc.returncode == 0, proc.stderr
    restored = tifffile.imread(out)
    assert np.isfinite(restored).all()
    known = ~holes.astype(bool)
    np.testing.assert_array_equal(restored[known], stack[known])
    # a slice with nothing but NaN and holes is refused before any work, named
    stack[1] = np.nan
    _write_zyx(source, stack)
    out.unlink()
    proc = _main(["restore", source, "-o", out, "--task", "inpaint", "--mask", mask, *FAST],
                 capsys)
    assert_clean_failure(proc, 2, "(slice 1): every pixel of this slice is NaN or under the mask")
    assert "estimate:" not in proc.stderr and not out.exists()


def test_a_mask_covering_a_later_slice_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holes = np.zeros((3, 32, 32), np.uint8)
    holes[:, 4:8, 4:8] = 1
    holes[1] = 1
    stack, source, mask = _stack_and_mask(tmp_path, holes, seed=8)
    out = tmp_path / "out.tif"
    proc = _main(["restore", source, "-o", out, "--task", "inpaint", "--mask", mask,
                  "--width", "8", "--depth", "3", "--max-iterations", "200", "--stop", "none"],
                 capsys)
    assert_clean_failure(proc, 2, str(source), "(slice 1)", "covers every pixel")
    assert "estimate:" not in proc.stderr and not out.exists()
    stack[1] = 9  # a constant slice is copied: its mask is never used
    _write_zyx(source, stack)
    proc = _main(["restore", source, "-o", out, "--task", "inpaint", "--mask", mask, *FAST],
                 capsys)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(tifffile.imread(out)[1], 9)


def test_a_stack_of_constant_slices_is_refused_like_a_constant_image(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # every slice constant: first an AttributeError (exit code 1), then exit 0 with a copy
    # and a record of no parameters ("on None", seed null), which a later batch with other
    # options skipped as already done
    stack = np.stack([np.full((32, 32), v, np.uint16) for v in (0, 7, 7)])
    source = tmp_path / "blank.tif"
    tifffile.imwrite(source, stack, photometric="minisblack", metadata={"axes": "ZYX"})
    out = tmp_path / "out.tif"
    proc = _main(["restore", source, "-o", out, "--warm-start", *FAST], capsys)
    assert_clean_failure(proc, 2, str(source), "each of the stack's 3 slices is constant",
                         "nothing to restore")
    assert not out.exists() and not Path(f"{out}.json").exists()
    folder = tmp_path / "batch"
    proc = _main(["batch", source, "-o", folder, *FAST], capsys)
    assert proc.returncode == 1, proc.stderr
    assert batch_status(proc.stdout, "blank.tif") == "failed"
    assert "each of the stack's 3 slices is constant" in proc.stdout + proc.stderr
    assert not folder.exists() or not any(folder.iterdir())


def test_a_bool_stack_as_uint8_spans_0_to_255_like_its_png(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --output-dtype uint8 gave 0/1 (the PNG and JPEG writers 0/255), and a constant bool
    # slice copied through gave 1 for True
    rng = np.random.default_rng(10)
    stack = np.stack([rng.random((32, 32)) > 0.5, np.ones((32, 32), bool)])
    source, out = tmp_path / "bool.tif", tmp_path / "out.tif"
    _write_zyx(source, stack)
    proc = _main(["restore", source, "-o", out, "--output-dtype", "uint8", *FAST], capsys)
    assert proc.returncode == 0, proc.stderr
    written = tifffile.imread(out)
    assert written.dtype == np.uint8 and written[0].max() > 1
    np.testing.assert_array_equal(written[1], 255)
    single, png = tmp_path / "slice.tif", tmp_path / "slice.png"
    tifffile.imwrite(single, stack[0])
    proc = _main(["restore", single, "-o", png, *FAST], capsys)
    assert proc.returncode == 0, proc.stderr
    assert set(np.unique(iio.imread(png)).tolist()) == {0, 255}


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_a_cmyk_image_is_refused_not_restored_with_black_as_alpha(
        suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # four samples read as RGBA: the K (black ink) channel was carried over as alpha,
    # unrestored, and C, M, Y restored as if they were R, G, B
    from PIL import Image

    inks = (np.random.default_rng(9).random((32, 32, 4)) * 255).astype(np.uint8)
    source = tmp_path / f"cmyk{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(source, inks, photometric="separated")
    else:
        Image.fromarray(inks[..., :3]).convert("CMYK").save(source)
    out = tmp_path / "out.tif"
    proc = _main(["restore", source, "-o", out, *FAST], capsys)
    assert_clean_failure(proc, 2, str(source), "is a CMYK image", "convert it to RGB")
    assert not out.exists()


def test_a_short_axis_gets_a_channel_axis_hint_in_the_file_s_axes(tmp_path: Path) -> None:
    # (64, 64, 5) without axes metadata: read as 64 slices of 64 x 5 pixels
    rng = np.random.default_rng(0)
    wide = tmp_path / "five.tif"
    tifffile.imwrite(wide, rng.random((64, 64, 5)).astype(np.float32))
    proc = run_cli("restore", wide, "-o", tmp_path / "out.tif", *FAST)
    assert_clean_failure(proc, 2, "taken as 64 x 5 pixels", "pass --channel-axis 2")
    assert "channel_axis=" not in proc.stderr  # the engine's name for a slice's axis
    assert not (tmp_path / "out.tif").exists()
    proc = run_cli("restore", wide, "-o", tmp_path / "out.tif", "--channel-axis", "2", *FAST)
    assert proc.returncode == 0, proc.stderr
    # no axis can be the channels of a 64 x 8 image: no hint
    narrow = tmp_path / "narrow.tif"
    tifffile.imwrite(narrow, rng.random((64, 8)).astype(np.float32))
    proc = run_cli("restore", narrow, "-o", tmp_path / "out2.tif", *FAST)
    assert_clean_failure(proc, 2, "taken as 64 x 8 pixels")
    assert "--channel-axis" not in proc.stderr


def test_a_name_too_long_for_the_files_written_with_it_is_refused_before_any_work(
        images: dict[str, Path], tmp_path: Path) -> None:
    from napari_specdip.cli.files import name_max

    limit = name_max(tmp_path)
    # the name fits, its hidden temporary sidecar (NAME.json.XXXXXXXX.specdip-tmp.json) not
    long = tmp_path / ("a" * (limit - 20) + ".png")
    proc = run_cli("restore", images["gray"], "-o", long, *FAST)
    assert_clean_failure(proc, 2, "bytes shorter", f"takes {limit}")
    assert not any(tmp_path.iterdir())
    # an ensemble's uncertainty file is longer than its output's name
    spread = tmp_path / ("b" * (limit - 14) + ".tif")
    proc = run_cli("restore", images["gray"], "-o", spread, "--ensemble", "2", *FAST)
    assert_clean_failure(proc, 2, "bytes shorter")
    assert not any(tmp_path.iterdir())


def test_a_phone_photo_is_read_upright_by_its_exif_orientation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    stored = (np.random.default_rng(2).random((32, 48, 3)) * 255).astype(np.uint8)
    photo = Image.fromarray(stored)
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": shown 32 wide, 48 tall
    source = tmp_path / "phone.jpg"
    photo.save(source, exif=exif, quality=95)
    out = tmp_path / "out.png"
    proc = _main(["restore", source, "-o", out, *FAST], capsys)
    assert proc.returncode == 0, proc.stderr
    # the result is as every viewer shows the photo (it came out turned on its side)
    assert iio.imread(out).shape == (48, 32, 3)
    assert _sidecar(out)["input_exif_orientation"] == 6
    # a mask drawn on the photo as shown lines up with it
    mask = np.zeros((48, 32), np.uint8)
    mask[30:36, 4:12] = 255
    iio.imwrite(tmp_path / "mask.png", mask)
    proc = _main(["restore", source, "-o", tmp_path / "filled.png", "--task", "inpaint",
                  "--mask", tmp_path / "mask.png", *FAST], capsys)
    assert proc.returncode == 0, proc.stderr


def test_deblocking_an_image_with_no_jpeg_in_it_says_so(images: dict[str, Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "d.png"
    proc = run_cli("restore", images["gray"], "-o", out, "--task", "deblock", "--width", "8",
                   "--depth", "4", "--max-iterations", "5")
    assert proc.returncode == 0, proc.stderr
    warning = [x for x in proc.stderr.splitlines() if x.startswith("specdip: warning:")]
    assert len(warning) == 1 and "no JPEG block grid" in warning[0]
    assert "no JPEG block grid" in _sidecar(out)["warnings"][0]


def test_inpainting_keeps_the_known_pixels_unless_told(images: dict[str, Path],
                                                      tmp_path: Path) -> None:
    image = iio.imread(images["gray"])
    mask = iio.imread(images["mask"]) > 0
    for flag, same in (([], True), (["--no-keep-known"], False)):
        out = tmp_path / f"i{len(flag)}.png"
        proc = run_cli("restore", images["gray"], "-o", out, "--task", "inpaint", "--mask",
                       images["mask"], *flag, *FAST)
        assert proc.returncode == 0, proc.stderr
        assert np.array_equal(iio.imread(out)[~mask], image[~mask]) == same
        assert _sidecar(out)["parameters"]["kept_known"] is same


def test_batch_names_that_collide_are_told_what_can_part_them(tmp_path: Path) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        iio.imwrite(tmp_path / folder / "im.png", np.zeros((32, 32), np.uint8) + 9)
    proc = run_cli("batch", tmp_path / "x" / "im.png", tmp_path / "y" / "im.png", "-o",
                   tmp_path / "out", "--suffix", "_dn", *FAST)
    assert_clean_failure(proc, 2, "would both be written", "separate -o folders")
    assert "--suffix" not in proc.stderr
