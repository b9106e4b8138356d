"""Shared helpers of the benchmark scripts: machine description, images, tables.

Not part of the package: the scripts put this folder on ``sys.path`` (Python does
that for ``python benchmarks/<script>.py``) and import it as ``_common``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: The bundled scikit-image photos of the issues; gray ones stay gray.
IMAGES: tuple[str, ...] = ("astronaut", "camera", "coffee", "chelsea")
NOISE_SIGMA = 25.0 / 255.0


def set_threads(threads: int | None) -> None:
    """Torch (and BLAS) threads for the whole benchmark process."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set in this process (e.g. a second main() in tests)
        pass


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_lines(device: str) -> list[str]:
    """Lines describing the machine and software, printed above every table."""
    import skimage
    import torch

    from napari_specdip.core.devices import describe_device, resolve_device

    resolved = describe_device(resolve_device(device))
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()}",
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"scikit-image {skimage.__version__}",
        f"device: {resolved}, torch threads {torch.get_num_threads()}",
    ]


def load_image(name: str, *, gray: bool = False) -> npt.NDArray[np.float64]:
    """A bundled scikit-image photo as float64 in [0, 1]; ``gray`` converts RGB to gray."""
    from skimage import color, data, img_as_float

    image = img_as_float(getattr(data, name)())
    if gray and image.ndim == 3:
        image = color.rgb2gray(image)
    return np.asarray(image, dtype=np.float64)


def crop(image: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    from napari_specdip.samples import center_crop

    return np.ascontiguousarray(center_crop(image, size))


def channel_axis(image: npt.NDArray[Any]) -> int | None:
    return -1 if image.ndim == 3 else None


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *,
                 markdown: bool = False) -> str:
    """Plain fixed-width table, or a Markdown table."""
    cells = [[_cell(v) for v in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return str(value)


def map_cases(function: Callable[[dict[str, Any]], Any], cases: Sequence[dict[str, Any]],
              jobs: int) -> list[Any]:
    """``function`` of each case, in ``jobs`` spawned processes (in this one for 1)."""
    if jobs <= 1:
        return [function(dict(case)) for case in cases]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(function, cases))


def restore_within(budget_s: float | None, image: Any, task: str = "denoise",
                   **options: Any) -> tuple[Any, float]:
    """``restore`` with a time budget, as the widget's worker does it: the engine's
    interrupt is set once a report's elapsed time reaches ``budget_s`` (None or 0:
    none), and the result so far comes back; with the wall seconds of the call."""
    import threading

    from napari_specdip import iter_restore
    from napari_specdip.core.engine import run_to_end

    stop = threading.Event()

    def watch(report: Any) -> None:
        if budget_s and report.elapsed >= budget_s:
            stop.set()

    start = time.perf_counter()
    result = run_to_end(iter_restore(image, task, interrupt=stop, **options), watch)
    return result, time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def echo(*lines: str) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


def write_report(prefix: str | None, lines: Sequence[str], records: Any) -> None:
    """Print ``lines`` and keep them as ``prefix.md``, the ``records`` as ``prefix.json``
    (``prefix`` None: print only)."""
    if prefix is None:
        echo(*lines)
        return
    text = "\n".join([*lines, ""])
    print(text)
    with open(prefix + ".md", "w") as md:
        md.write(text)
    with open(prefix + ".json", "w") as raw:
        raw.write(json.dumps(records, indent=1))


class EmaTracker:
    """The engine's moving average of outputs (decay ramping up to 0.99 as
    ``min(0.99, (1 + t) / (10 + t))``), rebuilt from per-step previews so that one
    run gives both the last iterate and the EMA."""

    def __init__(self, decay: float = 0.99) -> None:
        self.decay = decay
        self.value: npt.NDArray[np.float64] | None = None

    def update(self, iteration: int, output: npt.ArrayLike) -> npt.NDArray[np.float64]:
        out = np.asarray(output, dtype=np.float64)
        decay = min(self.decay, (1.0 + iteration) / (10.0 + iteration))
        self.value = out.copy() if self.value is None else self.value * decay + out * (1.0 - decay)
        return self.value
