"""Per-iteration time of the engine against a reference-style loop, as ratios.

Timings on a shared machine are noisy, so every figure here is a ratio of two
loops run in the same process and interleaved at the iteration level: the two
loops are generators stepped alternately (A, B, A, B, ...), each step timed on
its own, and the medians of the step times are compared. ``--repeats`` builds
both loops afresh that many times, alternating which goes first.

1. Engine vs reference-style loop. The reference style (METHOD.md section 10):
   the same decoder (:class:`napari_specdip.core.networks.Decoder`, paper
   defaults, seeded alike) but with the LC-conv's spectral norm taken from a
   full SVD (``torch.linalg.svd``, the reference calls ``torch.svd``) in every
   forward of every LC-conv (``napari_specdip.core.layers.spectral_norm_exact``
   is swapped for an SVD version while the reference loop steps; the engine
   steps with the original), and after every step the output is copied to the
   host (``.cpu().numpy()``) and every signal is recomputed there with the
   numpy path of :mod:`napari_specdip.metrics`: FBC against the target (the
   noisy image), Crete blur, MLV sharpness, their ratio, plus PSNR against the
   observation. The engine runs as a user gets it: ``iter_restore`` with the
   task's defaults (signals on the device every step, ratio stop, which cannot
   fire before step 201), ``preview_every=0``.
2. Measurement overhead of the engine: all signals on (``signal_every=1``,
   ``track_variance=True``, a clean ``reference`` so PSNR, SSIM and the FBC
   against the clean image are measured too) vs all off (``signal_every`` larger
   than the run, ``stop="none"``, no reference), as a fraction of the bare
   (signals off) step time. A direct estimate is printed too, stepped in the same
   interleaved rotation: the time of the engine's per-step measurement alone (its
   ``core.signals.StepSignals.measure`` with every signal on) over the bare step time;
   with overheads of a few per cent it is far less noisy than the difference of
   two whole steps.
3. A bare loop (the same decoder and optimiser, the engine's spectral norm,
   nothing measured) is stepped in the same rotation as the first comparison:
   the floor that any implementation pays, to show where the time goes.

Run ``python benchmarks/speed.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

Step = Iterator[None]


def svd_spectral_norm(weight: Any, groups: int = 1) -> Any:
    """The reference's way: largest singular value from a full (reduced) SVD (one per
    group of a grouped kernel)."""
    import torch

    w = weight.reshape(groups, weight.shape[0] // groups, -1)
    largest = torch.linalg.svd(w, full_matrices=False)[1][:, 0]
    return largest[0] if groups == 1 else largest


@contextlib.contextmanager
def svd_norm() -> Iterator[None]:
    """Make every LC-conv take its spectral norm from a full SVD.

    The decoder hands each LC-conv its norm from ``spectral_norms`` (one batch
    for all kernels) before every forward; a conv called on its own uses
    ``spectral_norm_exact``. Both are looked up in
    :mod:`napari_specdip.core.layers` at each call, so replacing those module
    attributes with one SVD per kernel gives the reference's cost.
    """
    import torch

    from napari_specdip.core import layers

    original, original_batched = layers.spectral_norm_exact, layers.spectral_norms
    layers.spectral_norm_exact = svd_spectral_norm
    layers.spectral_norms = lambda ws, **_: torch.stack([svd_spectral_norm(w) for w in ws])
    try:
        yield
    finally:
        layers.spectral_norm_exact, layers.spectral_norms = original, original_batched


def reference_loop(noisy: np.ndarray, *, width: int, device: str, svd: bool = True,
                   cpu_metrics: bool = True) -> Step:
    """Generator: one reference-style iteration per ``next()``.

    ``svd=False, cpu_metrics=False`` gives the bare loop: the same decoder with the
    engine's spectral norm and nothing measured, the floor of any implementation.
    """
    import torch

    from napari_specdip import metrics
    from napari_specdip.core.devices import resolve_device
    from napari_specdip.core.networks import Decoder
    from napari_specdip.core.params import RestoreParameters

    p = RestoreParameters.for_task("denoise", preset="paper")
    dev = resolve_device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Decoder(noisy.shape[2], width=width, depth=p.depth, lipschitz=p.lipschitz,
                      upsampler=p.upsampler, sigmas=p.sigmas)
        z = net.make_input(noisy.shape[0], noisy.shape[1],
                           generator=torch.Generator().manual_seed(0))
    net, z = net.to(dev), z.to(dev)
    y = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1))).float()[None].to(dev)
    optimizer = torch.optim.Adam(net.parameters(), lr=p.learning_rate)
    while True:
        with svd_norm() if svd else contextlib.nullcontext():
            pred = net(z)
            loss = torch.nn.functional.mse_loss(pred, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if not cpu_metrics:
            yield
            continue
        out = pred.detach().cpu().numpy()[0].transpose(1, 2, 0)
        metrics.band_correspondence(out, noisy)
        b = metrics.blur(out)
        s = metrics.sharpness(out)
        _ = b / s if s else float("inf")
        metrics.psnr(out, noisy)
        yield


def engine_loop(noisy: np.ndarray, clean: np.ndarray | None, *, width: int, device: str,
                iterations: int, signals: str) -> Step:
    """Generator over the engine's steps. ``signals``: "default", "all" or "off"."""
    from napari_specdip import RestoreParameters, iter_restore

    options: dict[str, Any] = {}
    reference = None
    if signals == "all":
        options = {"parameters": RestoreParameters.for_task("denoise", preset="paper",
                                                            track_variance=True),
                   "signal_every": 1, "stop": "none"}
        reference = clean
    elif signals == "off":
        options = {"preset": "paper", "signal_every": iterations + 1000, "stop": "none"}
    else:
        options = {"preset": "paper"}
    gen = iter_restore(noisy, "denoise", channel_axis=-1, reference=reference, width=width,
                       device=device, max_iterations=iterations, preview_every=0, seed=0,
                       **options)
    try:
        for _ in gen:
            yield
    finally:
        gen.close()


def interleaved(makers: dict[str, Callable[[], Step]], *, warmup: int, iterations: int,
                repeats: int, sync: Callable[[], None]) -> dict[str, list[list[float]]]:
    """Per-step seconds of each loop, stepped alternately; ``[loop][repeat][step]``."""
    names = list(makers)
    times: dict[str, list[list[float]]] = {n: [] for n in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        loops = {n: makers[n]() for n in order}
        for n in order:
            times[n].append([])
        for step in range(warmup + iterations):
            for n in order:
                sync()
                t0 = time.perf_counter()
                next(loops[n])
                sync()
                if step >= warmup:
                    times[n][-1].append(time.perf_counter() - t0)
        for n in order:
            close = getattr(loops[n], "close", None)
            if close is not None:
                close()
    return times


def median_ms(runs: list[list[float]]) -> float:
    return 1000.0 * statistics.median([t for run in runs for t in run])


def paired_ratio(a: list[list[float]], b: list[list[float]]) -> float:
    """Median over repeats of median(a)/median(b)."""
    return statistics.median(statistics.median(x) / statistics.median(y)
                             for x, y in zip(a, b, strict=True))


def measurement_loop(noisy: np.ndarray, clean: np.ndarray, *, device: str) -> Step | None:
    """Generator: one call of the engine's per-step measurement with every signal on
    (``core.signals.StepSignals``; None if the engine changed)."""
    try:
        import torch

        from napari_specdip.core import engine
        from napari_specdip.core.operators import Identity
        from napari_specdip.core.signals import StepSignals

        job = engine.plan_restore(noisy, "denoise", channel_axis=-1, reference=clean,
                                  parameters=engine.RestoreParameters.for_task(
                                      "denoise", preset="paper", track_variance=True),
                                  device=device)
        dev = engine.resolve_device(job.params.device)
        y = engine._to_tensor(job.observation, dev)
        ref = engine._to_tensor(job.reference, dev)
        h, w = noisy.shape[:2]
        crop = (slice(0, h), slice(0, w))
        meter = StepSignals(job, y, Identity(), crop, crop, dev, ref, True, None)
        out = torch.rand(y.shape, generator=torch.Generator().manual_seed(1)).to(dev)
        meter.measure(out, out)
    except Exception as exc:  # noqa: BLE001  (a benchmark extra, never fatal)
        _common.echo(f"(direct measurement cost not available: {exc!r})")
        return None

    def loop() -> Step:
        while True:
            meter.measure(out, out)
            yield

    return loop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256],
                        help="RGB astronaut centre-crop sides in px (128 256)")
    parser.add_argument("--width", type=int, default=128, help="decoder width (128)")
    parser.add_argument("--iterations", type=int, default=10,
                        help="timed iterations per loop and repeat (10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first iterations (2)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="fresh interleaved repeats, alternating which loop goes first (2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--device", default="cpu", help="device of both loops (cpu)")
    parser.add_argument("--skip-overhead", action="store_true",
                        help="only the engine vs reference comparison")
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    args = parser.parse_args(argv)
    bad = [s for s in args.sizes if s % 32 or s < 64]
    if bad:  # the reference-style loop, like the reference, does not pad
        parser.error(f"sizes must be multiples of 32 and at least 64, got {bad}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _common.set_threads(args.threads)
    import torch

    from napari_specdip.core.devices import resolve_device
    from napari_specdip.samples import add_gaussian_noise

    dev = resolve_device(args.device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    _common.echo(*_common.machine_lines(args.device))
    _common.echo(
        f"settings: RGB astronaut centre crops {args.sizes} px + Gaussian noise sigma 25/255 seed "
        f"0, decoder width {args.width} (paper defaults otherwise), {args.warmup} warm-up + "
        f"{args.iterations} timed iterations per loop, {args.repeats} repeats, loops stepped "
        "alternately, medians of per-step times", "")
    speed_rows: list[list[Any]] = []
    overhead_rows: list[list[Any]] = []
    for size in args.sizes:
        clean = _common.crop(_common.load_image("astronaut"), size)
        noisy = add_gaussian_noise(clean, _common.NOISE_SIGMA, seed=0)
        total = args.warmup + args.iterations
        times = interleaved({
            "engine": lambda: engine_loop(noisy, None, width=args.width, device=args.device,
                                          iterations=total, signals="default"),
            "reference": lambda: reference_loop(noisy, width=args.width, device=args.device),
            "bare": lambda: reference_loop(noisy, width=args.width, device=args.device,
                                           svd=False, cpu_metrics=False),
        }, warmup=args.warmup, iterations=args.iterations, repeats=args.repeats, sync=sync)
        ours, ref = median_ms(times["engine"]), median_ms(times["reference"])
        bare = median_ms(times["bare"])
        speed_rows.append([size, f"{ref:.1f}", f"{ours:.1f}", f"{bare:.1f}", f"{ref / ours:.2f}x",
                           f"{paired_ratio(times['reference'], times['engine']):.2f}x",
                           f"{ours / bare:.2f}", f"{ref / bare:.2f}"])
        _common.echo(f"# {size}px: reference {ref:.1f} ms/it, engine {ours:.1f} ms/it, "
                     f"bare {bare:.1f} ms/it")
        if not args.skip_overhead:
            makers: dict[str, Callable[[], Step]] = {
                "all": lambda: engine_loop(noisy, clean, width=args.width, device=args.device,
                                           iterations=total, signals="all"),
                "off": lambda: engine_loop(noisy, None, width=args.width, device=args.device,
                                           iterations=total, signals="off"),
            }
            if measurement_loop(noisy, clean, device=args.device) is not None:
                makers["measure"] = lambda: measurement_loop(  # type: ignore[return-value]
                    noisy, clean, device=args.device)
            times = interleaved(makers, warmup=args.warmup, iterations=args.iterations,
                                repeats=args.repeats, sync=sync)
            on, off = median_ms(times["all"]), median_ms(times["off"])
            direct = median_ms(times["measure"]) / 1000 if "measure" in times else None
            overhead_rows.append([
                size, f"{off:.1f}", f"{on:.1f}", f"{(on - off) / off * 100:+.1f}%",
                f"{(paired_ratio(times['all'], times['off']) - 1) * 100:+.1f}%",
                "-" if direct is None else f"{direct * 1000:.2f}",
                "-" if direct is None else f"{direct * 1000 / off * 100:.1f}%"])
            _common.echo(f"# {size}px: signals off {off:.1f} ms/it, all on {on:.1f} ms/it")
    _common.echo("", "## Engine vs reference-style loop (ms per iteration, medians)", "",
                 _common.format_table(["px", "reference ms/it", "engine ms/it", "bare loop ms/it",
                                       "speed-up (ratio of medians)",
                                       "speed-up (median of per-repeat ratios)",
                                       "engine / bare", "reference / bare"],
                                      speed_rows, markdown=args.markdown), "")
    if overhead_rows:
        _common.echo("## Measurement overhead of the engine, all signals on vs off", "",
                     _common.format_table(["px", "off ms/it", "all on ms/it",
                                           "overhead (ratio of medians)",
                                           "overhead (median of per-repeat ratios)",
                                           "measure() ms (direct)", "direct / bare step"],
                                          overhead_rows, markdown=args.markdown), "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
