"""Which torch thread count should ``specdip restore`` use by default?

Runs the engine in this process at 128 px (the CLI's default width, 128, unless
``--width``) with 1, 2, ... all cores' threads, on an idle machine and with
competing CPU-bound processes (one spinning process per ``--busy`` core), and
prints the median seconds per iteration and the ratio to one thread in the same
load. Settings alternate within each repeat, so the ratios hold on a noisy
machine even where the absolute times do not. The last column is what the
CLI's default (``--threads auto``) chose in that load.

    python benchmarks/cli_threads.py --size 128 --iterations 12 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

import numpy as np

from _common import machine_lines

SPIN = "import time\nwhile True:\n    sum(range(10000))\n"


def _per_iteration(image: np.ndarray, *, threads: int, width: int, iterations: int) -> float:
    from napari_specdip import iter_restore

    gen = iter_restore(image, "denoise", channel_axis=-1, width=width, stop="none",
                       max_iterations=iterations, num_threads=threads, preview_every=0,
                       device="cpu")
    stamps = [report.elapsed for report in gen]
    return statistics.median(np.diff(stamps[1:]))  # the first step warms up


def _spinners(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (default: 1, 2 and every core)")
    parser.add_argument("--busy", type=int, nargs="+", default=None,
                        help="numbers of busy cores to try (default: 0, 1 and every core)")
    args = parser.parse_args(argv)

    from skimage import data, img_as_float

    from napari_specdip.cli.runner import default_threads
    from napari_specdip.samples import add_gaussian_noise, center_crop

    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    threads = args.threads or sorted({1, 2, cores})
    busy_levels = args.busy if args.busy is not None else sorted({0, 1, cores})
    image = add_gaussian_noise(center_crop(img_as_float(data.astronaut()), args.size))
    print("\n".join(machine_lines("cpu")))
    print(f"settings: {args.size} px RGB, width {args.width}, {args.iterations} iterations "
          f"(median step after the first), {args.repeats} interleaved repeats, medians; "
          "busy = processes spinning on that many cores")
    samples: dict[tuple[int, int], list[float]] = {}
    chosen: dict[int, int] = {}
    for busy in busy_levels:
        spinners = _spinners(busy)
        try:
            time.sleep(1.5 if busy else 0.0)  # let the load average notice them
            chosen[busy] = default_threads()
            for _ in range(args.repeats):
                for t in threads:
                    samples.setdefault((busy, t), []).append(
                        _per_iteration(image, threads=t, width=args.width,
                                       iterations=args.iterations))
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    print("\n| busy cores | torch threads | s / iteration | vs 1 thread | auto chose |")
    print("|---|---|---|---|---|")
    rows = []
    for busy in busy_levels:
        base = statistics.median(samples[(busy, 1)])
        for t in threads:
            s = statistics.median(samples[(busy, t)])
            rows.append({"busy": busy, "threads": t, "seconds": s, "ratio": s / base})
            print(f"| {busy} | {t} | {s:.3f} | {s / base:.2f}x | {chosen[busy]} |")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
