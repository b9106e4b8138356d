"""How many torch threads should the napari worker use?

The plugin runs the engine on a worker thread while Qt's main thread draws the
preview and the charts. This script runs the engine on a worker thread with 1
and with all CPU threads, once with an idle main thread and once with the main
thread redrawing a matplotlib figure of the charts' size without pause (the
GUI's worst case), and prints the median ms per iteration and the main thread's
redraws per second. Settings alternate within the process, so the ratios hold
on a noisy machine even where the absolute times do not.

    python benchmarks/threads.py --size 128 --width 64 --iterations 20 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np

from _common import machine_lines

THROTTLE_S = 0.25  # the charts dock redraws at most this often
GUI_MODES = {"idle": "idle", "throttled": "charts every 0.25 s", "busy": "redrawing without pause"}


def _redraw_loop(stop: threading.Event, counter: list[int], pause: float) -> None:
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(14, 2.5), dpi=100)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    x = np.arange(500)
    lines = [ax.plot(x, np.sin(x / (10 + i)))[0] for i, ax in enumerate(axes)]
    while not stop.is_set():
        for line in lines:
            line.set_ydata(np.roll(line.get_ydata(), 1))
        canvas.draw()
        counter[0] += 1
        if pause:
            stop.wait(pause)


def _run(image: np.ndarray, *, threads: int, width: int, iterations: int, gui: str
         ) -> tuple[float, float]:
    """Median ms per iteration on a worker thread, and main-thread redraws per second."""
    from napari_specdip import iter_restore

    times: list[float] = []

    def work() -> None:
        gen = iter_restore(image, "denoise", channel_axis=-1, width=width, stop="none",
                           max_iterations=iterations, num_threads=threads, preview_every=0)
        last = None
        for report in gen:
            if last is not None and report.iteration > 2:  # skip warm-up steps
                times.append(report.elapsed - last)
            last = report.elapsed

    stop = threading.Event()
    counter = [0]
    worker = threading.Thread(target=work)
    start = time.perf_counter()
    worker.start()
    if gui != "idle":
        pause = THROTTLE_S if gui == "throttled" else 0.0
        drawer = threading.Thread(target=_redraw_loop, args=(stop, counter, pause))
        drawer.start()
    worker.join()
    stop.set()
    if gui != "idle":
        drawer.join()
    seconds = time.perf_counter() - start
    return 1000 * statistics.median(times), counter[0] / seconds


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from skimage import data, img_as_float

    from napari_specdip.samples import add_gaussian_noise, center_crop

    image = add_gaussian_noise(center_crop(img_as_float(data.astronaut()), args.size))
    cores = os.cpu_count() or 1
    settings = sorted({1, cores})
    print("\n".join(machine_lines("cpu")))
    print(f"settings: {args.size} px RGB, width {args.width}, {args.iterations} iterations, "
          f"{args.repeats} interleaved repeats, medians")
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for gui in GUI_MODES:
            for threads in settings:
                samples.setdefault((gui, threads), []).append(
                    _run(image, threads=threads, width=args.width,
                         iterations=args.iterations, gui=gui))
    print("\n| torch threads | main thread | ms / iteration | vs 1 thread | redraws / s |")
    print("|---|---|---|---|---|")
    rows = []
    for gui, label in GUI_MODES.items():
        base = statistics.median(v[0] for v in samples[(gui, 1)])
        for threads in settings:
            values = samples[(gui, threads)]
            ms = statistics.median(v[0] for v in values)
            fps = statistics.median(v[1] for v in values)
            rows.append({"gui": gui, "threads": threads, "ms": ms, "fps": fps})
            print(f"| {threads} | {label} | {ms:.1f} | {ms / base:.2f}x | "
                  + (f"{fps:.1f} |" if gui != "idle" else "- |"))
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
