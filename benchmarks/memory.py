"""How good is the memory estimate? Measured peak against ``memory_needed``.

Each setting runs in a fresh child process: a warm-up run at 32 px (imports,
kernels), then the measured run of a few iterations. CPU: growth of the peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over the
resident set before the run. CUDA: ``torch.cuda.max_memory_allocated`` over
what was allocated before the run. The table prints the estimate's parts, the
measured peak and the ratio measured / estimated (below 1: the estimate is
on the safe side).

    python benchmarks/memory.py --device cpu --sizes 128 256 512 --widths 32 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from _common import machine_lines


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(size: int, width: int, channels: int, device: str, iterations: int, task: str) -> None:
    """Run one setting here and print a JSON line with the estimate and the measured peak."""
    import gc

    import numpy as np
    import torch

    from napari_specdip import plan_restore
    from napari_specdip.core.engine import run_to_end
    from napari_specdip.core.estimate import memory_needed

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def job(side: int, w: int) -> object:
        shape = (side, side) if channels == 1 else (side, side, channels)
        image = rng.random(shape)
        mask = (rng.random((side, side)) < 0.2) if task == "inpaint" else None
        return plan_restore(image, task, mask=mask, channel_axis=None if channels == 1 else -1,
                            width=w, max_iterations=iterations, stop="wmv", wmv_window=2,
                            wmv_patience=1000, device=device, preview_every=0,
                            check_memory=False)

    run_to_end(job(32, 8).run())  # type: ignore[attr-defined]
    measured = job(size, width)
    estimate = memory_needed(measured)  # type: ignore[arg-type]
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run_to_end(measured.run())  # type: ignore[attr-defined]
        peak = torch.cuda.max_memory_allocated() - before
    else:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # reset VmHWM to the current resident set
        before = _status("VmRSS:")
        run_to_end(measured.run())  # type: ignore[attr-defined]
        peak = _status("VmHWM:") - before
    print(json.dumps({**estimate.as_dict(), "measured": peak}))


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--tasks", nargs="+", default=["denoise"])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--child", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        size, width, channels, device, iterations, task = args.child
        child(int(size), int(width), int(channels), device, int(iterations), task)
        return []

    print("\n".join(machine_lines(args.device)))
    print(f"settings: {args.iterations} iterations, ES-WMV window 2 (its buffers counted), "
          "one torch thread; MB = 1e6 bytes")
    print("\n| task | size | channels | width | estimate MB (params / activations / backward / "
          "buffers / allocator) | measured MB | measured / estimate |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for task in args.tasks:
        for size in args.sizes:
            for channels in args.channels:
                for width in args.widths:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--child", str(size), str(width),
                         str(channels), args.device, str(args.iterations), task],
                        capture_output=True, text=True, check=False, env=env)
                    if proc.returncode != 0:
                        print(f"| {task} | {size} | {channels} | {width} | failed: "
                              f"{proc.stderr.strip().splitlines()[-1:]} | | |")
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    ratio = r["measured"] / r["total"]
                    rows.append({"task": task, "size": size, "channels": channels,
                                 "width": width, "ratio": ratio, **r})
                    mb = [r[k] / 1e6 for k in ("total", "parameters", "activations",
                                               "backward", "buffers", "allocator")]
                    parts = " / ".join(f"{v:.1f}" for v in mb[1:])
                    print(f"| {task} | {size} | {channels} | {width} | {mb[0]:.1f} ({parts}) | "
                          f"{r['measured'] / 1e6:.1f} | {ratio:.2f} |", flush=True)
    if rows:
        ratios = [r["ratio"] for r in rows]
        print(f"\nmeasured / estimate: min {min(ratios):.2f}, max {max(ratios):.2f}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
