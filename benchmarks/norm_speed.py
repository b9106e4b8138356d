"""Step time with the mean-only norm's gradient written out, against autograd's, as ratios.

The decoder's mean-only batch norm, ``x - mean_{H,W}(x) + beta``, followed by a
LeakyReLU, is most of the elementwise work of a step at full resolution. The
engine computes the norm's gradient itself (``g - mean_{H,W}(g)``, one pass) and
applies the LeakyReLU in place on the norm's output; the previous version wrote
the norm as a plain expression (autograd: a negated copy of the gradient, an
expanded gradient of the mean and their sum) and a LeakyReLU that allocates its
output. Both loops are the engine itself (``iter_restore``, ``stop="none"``, no
previews), stepped alternately in one process (``speed.interleaved``); for the
previous version the norm and the activation are swapped back during its steps.

Run ``python benchmarks/norm_speed.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402
import speed  # noqa: E402


@contextlib.contextmanager
def autograd_norm() -> Iterator[None]:
    """The previous version: the norm as an autograd expression, LeakyReLU out of place."""
    import torch

    from napari_specdip.core import layers

    def plain(x: Any, beta: Any) -> Any:
        return x - x.mean(dim=(2, 3), keepdim=True) + beta.view(1, -1, 1, 1)

    def out_of_place(self: Any, x: Any) -> Any:
        return torch.nn.functional.leaky_relu(x, self.negative_slope, inplace=False)

    original_apply = layers._MeanOnlyNorm.apply
    original_relu = torch.nn.LeakyReLU.forward
    layers._MeanOnlyNorm.apply = plain  # type: ignore[method-assign, assignment]
    torch.nn.LeakyReLU.forward = out_of_place  # type: ignore[method-assign]
    try:
        yield
    finally:
        layers._MeanOnlyNorm.apply = original_apply  # type: ignore[method-assign]
        torch.nn.LeakyReLU.forward = original_relu  # type: ignore[method-assign]


def engine(noisy: np.ndarray, *, preset: str, iterations: int, previous: bool) -> Any:
    """Generator: one engine step per ``next()`` (the previous norm during its steps)."""
    from napari_specdip import iter_restore

    gen = iter_restore(noisy, "denoise", preset=preset, stop="none", preview_every=0,
                       max_iterations=iterations, seed=0, device="cpu")
    try:
        while True:
            with autograd_norm() if previous else contextlib.nullcontext():
                next(gen)
            yield
    finally:
        gen.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--presets", nargs="+", default=["quick", "balanced"])
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    _common.set_threads(args.threads)
    print("\n".join(_common.machine_lines("cpu")))
    print(f"torch threads {args.threads}; {args.iterations} timed steps after {args.warmup}, "
          f"{args.repeats} repeats, loops interleaved; camera, Gaussian sigma 25")
    print("\n| size | preset | previous ms/step | now ms/step | now / previous |")
    print("|---|---|---|---|---|")
    total = args.warmup + args.iterations + 1
    for size in args.sizes:
        clean = _common.crop(_common.load_image("camera", gray=True), size)
        from napari_specdip.samples import add_gaussian_noise

        noisy = np.asarray(add_gaussian_noise(clean, seed=0), dtype=np.float32)
        for preset in args.presets:
            times = speed.interleaved(
                {"previous": lambda p=preset: engine(noisy, preset=p, iterations=total,
                                                     previous=True),
                 "now": lambda p=preset: engine(noisy, preset=p, iterations=total,
                                                previous=False)},
                warmup=args.warmup, iterations=args.iterations, repeats=args.repeats,
                sync=lambda: None)
            print(f"| {size} | {preset} | {speed.median_ms(times['previous']):.0f} | "
                  f"{speed.median_ms(times['now']):.0f} | "
                  f"{speed.paired_ratio(times['now'], times['previous']):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
