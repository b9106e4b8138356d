"""Shared helpers of the command-line tests (imported by name: tests/ has no packages)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: the smallest settings that still run the whole pipeline
FAST = ["--width", "8", "--depth", "4", "--max-iterations", "5", "--stop", "none"]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONWARNINGS"] = "default"
    return env


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 180
            ) -> subprocess.CompletedProcess[str]:
    """``python -m napari_specdip.cli ARGS`` with captured output."""
    return subprocess.run([sys.executable, "-m", "napari_specdip.cli", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=cli_env())


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Non-zero exit, a one-line ``specdip: error:`` message naming ``needles``, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def batch_status(stdout: str, name: str) -> str:
    """The status (ok, skipped, failed) of file ``name`` in ``batch``'s summary table."""
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) >= 2 and Path(cells[0]).name == name:
            return cells[1]
    raise AssertionError(f"{name} not in the table:\n{stdout}")


def ramp(shape: tuple[int, ...], dtype: Any = np.uint16) -> np.ndarray:
    """A small array whose every value tells where it lies (a wrapped ramp)."""
    return (np.arange(int(np.prod(shape))) % 251).reshape(shape).astype(dtype)


def write_like_cli(source: Path, out: Path, *, scale: int = 1) -> np.ndarray:
    """What ``specdip restore`` writes for ``source``, with the pixels unchanged (upscaled
    ``scale`` times, as super-resolution would); the array written."""
    from napari_specdip.cli.files import read_image, write_image
    from napari_specdip.cli.layout import resolve_layout

    image = read_image(source)
    layout = resolve_layout(image.data.shape, kind=image.kind, axes=image.axes)
    meta = image.tiff.scaled(scale) if image.tiff is not None else None
    data = image.data
    for axis in layout.spatial:
        data = np.repeat(data, scale, axis=axis)
    write_image(out, data, channel_axis=layout.channel_axis, axes=image.axes, tiff=meta)
    return data


def camera_stack(count: int, size: int) -> np.ndarray:
    """ZYX uint16 slices of one camera (gain 3, read noise 2 photons, offset 100)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    slices = []
    for _ in range(count):
        clean = np.full((size, size), 0.05)
        for _ in range(6):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(4, 10)]
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            clean = np.maximum(clean, disc * rng.uniform(0.3, 1))
        photons = rng.poisson(10 * clean) + rng.normal(0, 2.0, clean.shape)
        slices.append(np.rint(100 + 3 * photons))
    return np.asarray(slices, dtype=np.uint16)
