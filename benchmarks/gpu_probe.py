"""Where a GPU step's time goes: per-layer vs batched spectral norms, signal interval,
and the host synchronisations per step (torch's sync debug mode counts them).

python benchmarks/gpu_probe.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def per_layer_norms() -> Iterator[None]:
    """Every LC-conv takes its norm from its own eigenvalue call (the previous way)."""
    from napari_specdip.core import layers

    original = layers.spectral_norms
    layers.spectral_norms = lambda ws, **_: __import__("torch").stack(  # type: ignore[assignment]
        [layers.spectral_norm_exact(w) for w in ws])
    try:
        yield
    finally:
        layers.spectral_norms = original


def seconds_per_step(size: int, width: int, device: str, signal_every: int,
                     iterations: int) -> float:
    from napari_specdip import restore

    rng = np.random.default_rng(0)
    image = rng.random((size, size))
    common = dict(width=width, stop="none", device=device, signal_every=signal_every,
                  preview_every=0, output="ema")
    restore(image, "denoise", max_iterations=10, **common)  # warm-up (cuDNN, allocator)
    start = time.perf_counter()
    restore(image, "denoise", max_iterations=iterations, **common)
    return (time.perf_counter() - start) / iterations


def count_syncs(device: str, signal_every: int) -> int:
    import torch

    from napari_specdip import restore

    image = np.random.default_rng(0).random((128, 128))
    torch.cuda.set_sync_debug_mode(1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            restore(image, "denoise", width=16, max_iterations=20, stop="none", device=device,
                    signal_every=signal_every, preview_every=0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return len(caught)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    import torch

    print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    for every in (1, 10):
        print(f"host syncs in 20 steps, signal_every={every}: {count_syncs(args.device, every)}",
              flush=True)
    print("size width every  squaring ms  per-layer eigvalsh ms", flush=True)
    for size, width in ((128, 32), (128, 128), (512, 32), (512, 128), (1024, 64)):
        for every in (1, 10):
            batched = seconds_per_step(size, width, args.device, every, args.iterations)
            with per_layer_norms():
                single = seconds_per_step(size, width, args.device, every, args.iterations)
            print(f"{size:5d} {width:5d} {every:5d} {batched * 1e3:10.2f} {single * 1e3:12.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
