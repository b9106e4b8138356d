"""``specdip demo``: restore a bundled sample and write the result, a comparison and charts."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_specdip.cli.errors import EXIT_OK, UsageError, check_stop, one_line

#: defaults sized for about a minute on a 2-core CPU (128 px RGB photo, one torch thread):
#: the quick preset stops the noisy photo after about 650 iterations (50 s, +6.8 dB);
#: balanced gains 0.4 dB more in six times the time
DEMO_SIZE = 128
DEMO_PRESET = "quick"
#: a 128 px image gains little from more torch threads and loses a lot when the cores are
#: busy (OpenMP threads spin against other processes: 20x slower measured on 2 shared cores)
DEMO_THREADS = 1


def _unit(image: npt.NDArray[Any], low: float, high: float) -> npt.NDArray[np.float64]:
    return np.clip((np.asarray(image, dtype=np.float64) - low) / max(high - low, 1e-12), 0.0, 1.0)


def _display(image: npt.NDArray[Any], channel_axis: int | None, low: float, high: float
             ) -> npt.NDArray[np.float64]:
    """(H, W) or (H, W, 3) floats in [0, 1] for pictures."""
    unit = _unit(image, low, high)
    if channel_axis is not None:
        unit = np.moveaxis(unit, channel_axis, -1)
        if unit.shape[-1] == 1:
            unit = unit[..., 0]
        elif unit.shape[-1] > 3:
            unit = unit[..., :3]
    return unit


def _to_uint8(unit: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    return np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _baseline(sample: Any, low: float, high: float) -> tuple[npt.NDArray[np.float64], str]:
    """The degraded image on the clean image's grid, and what to call it."""
    unit = _unit(sample.image, low, high)
    if sample.task == "super-resolve" and sample.clean is not None:
        from skimage.transform import resize

        upscaled = resize(unit, np.shape(sample.clean), order=3,  # type: ignore[no-untyped-call]
                          mode="reflect", anti_aliasing=False)
        return np.asarray(upscaled, dtype=np.float64), "bicubic"
    return unit, "input"


def run_demo(args: Any) -> int:
    from napari_specdip import metrics
    from napari_specdip.chart_panels import stop_marks
    from napari_specdip.cli import charts
    from napari_specdip.cli.files import sidecar_path, write_image, write_json
    from napari_specdip.cli.progress import Progress, progress_wanted
    from napari_specdip.cli.runner import check_device, now_iso
    from napari_specdip.core.engine import plan_restore, run_to_end
    from napari_specdip.core.imaging import MIN_SIDE
    from napari_specdip.core.results import StepReport
    from napari_specdip.samples import SAMPLES

    key = args.sample.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in SAMPLES:
        raise UsageError(f"unknown sample {args.sample!r}; choose one of {', '.join(SAMPLES)}")
    check_device(args.device)
    try:
        sample = SAMPLES[key](size=args.size)
    except ValueError as exc:
        raise UsageError(f"sample {key} at --size {args.size}: {one_line(exc)}") from exc
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output folder {out_dir} is a file; give a folder for the demo's "
                         "files")
    out_dir.mkdir(parents=True, exist_ok=True)

    options = {"preset": args.preset or DEMO_PRESET, "max_iterations": args.max_iterations,
               "width": args.width, "depth": args.depth, "stop": args.stop,
               "seed": args.seed, "device": args.device,
               "num_threads": args.threads or DEMO_THREADS}
    options = {k: v for k, v in options.items() if v is not None}
    try:
        job = plan_restore(sample.image, sample.task, mask=sample.mask, factor=sample.factor,
                           channel_axis=sample.channel_axis, reference=sample.clean,
                           preview_every=0, **options)
    except ValueError as exc:
        problem = one_line(exc)
        if "too small" in problem and sample.factor:  # the input is the size / the factor
            problem += (f" (--size {args.size} makes this sample's input "
                        f"{args.size // sample.factor} px, 1/{sample.factor} of it: use "
                        f"--size {MIN_SIDE * sample.factor} or more)")
        raise UsageError(problem) from exc
    p = job.params
    shape = "x".join(map(str, np.shape(sample.image)))
    dtype = np.asarray(sample.image).dtype
    print(f"specdip demo: {sample.name} ({sample.description}), {shape} {dtype}")
    depth = "auto" if p.depth is None else p.depth
    print(f"  task {p.task}, preset {p.preset}: width {p.width}, depth {depth}, lambda "
          f"{p.lipschitz}, stop {p.stop}, at most {p.max_iterations} iterations", flush=True)

    started = now_iso()
    clock = time.perf_counter()
    bar = Progress(p.max_iterations, desc=key, enabled=progress_wanted(args.progress))
    def step(report: StepReport) -> None:
        check_stop()
        bar.update(report.iteration, loss=report.loss, ratio=report.signals.get("ratio"))

    try:
        result = run_to_end(job.run(), step)
    finally:
        bar.close()
    seconds = time.perf_counter() - clock

    low, high = result.intensity_range
    axis = sample.channel_axis
    written: list[Path] = []
    restored_tif = out_dir / f"{key}_restored.tif"
    write_image(restored_tif, result.image, channel_axis=axis)
    written.append(restored_tif)
    for name, image in (("input", sample.image), ("restored", result.image)):
        png = out_dir / f"{key}_{name}.png"
        write_image(png, _to_uint8(_display(image, axis, low, high)),
                    channel_axis=-1 if axis is not None else None)
        written.append(png)

    before = after = None
    before_label = "input"
    panels = [("degraded input", _display(sample.image, axis, low, high))]
    restored_unit = _display(result.image, axis, low, high)
    if sample.clean is not None:
        clean_unit = _display(sample.clean, axis, low, high)
        baseline, before_label = _baseline(sample, low, high)
        baseline = _display(baseline, axis, 0.0, 1.0)
        before = metrics.psnr(baseline, clean_unit)
        after = metrics.psnr(restored_unit, clean_unit)
        panels[0] = (f"degraded input\n{before_label} PSNR {before:.2f} dB", panels[0][1])
        panels.append((f"restored ({result.iterations} it.)\nPSNR {after:.2f} dB", restored_unit))
        panels.append(("clean", clean_unit))
    else:
        panels.append((f"restored ({result.iterations} it.)", restored_unit))
    written.append(charts.comparison_figure(panels, out_dir / f"{key}_comparison.png"))

    reason = result.stop_reason
    # a run that reached its cap may hold an earlier iteration: both are marked
    stop_at, returned = stop_marks(result.iterations, result.stop_iteration, reason)
    for path in (charts.fbc_chart(result.history, out_dir / f"{key}_fbc.png",
                                  stop_iteration=stop_at, stop_reason=reason, returned=returned),
                 charts.ratio_chart(result.history, out_dir / f"{key}_ratio.png",
                                    window=p.stop_window, stop_iteration=stop_at,
                                    stop_reason=reason, returned=returned),
                 charts.loss_chart(result.history, out_dir / f"{key}_loss.png",
                                   stop_iteration=stop_at, stop_reason=reason, returned=returned),
                 charts.psnr_chart(result.history, out_dir / f"{key}_psnr.png", before=before,
                                   before_label=before_label, stop_iteration=stop_at,
                                   stop_reason=reason, returned=returned)):
        if path is not None:
            written.append(path)

    meta = result.metadata()
    meta["specdip"].update({
        "command": "demo", "sample": key, "sample_description": sample.description,
        "task": p.task, "output": str(restored_tif.resolve()), "started": started,
        "wall_seconds": round(seconds, 3), "psnr_before": before, "psnr_before_of": before_label,
        "psnr_after": after,
    })
    write_json(sidecar_path(restored_tif), meta)
    written.append(sidecar_path(restored_tif))

    print(f"restored in {result.iterations} iterations (stop: {result.stop_reason}) "
          f"in {seconds:.1f} s on {result.device}")
    if before is not None and after is not None:
        print(f"PSNR {before_label} {before:.2f} dB -> restored {after:.2f} dB "
              f"({after - before:+.2f} dB)")
    print(f"wrote {len(written)} files to {out_dir}:")
    for path in written:
        print(f"  {path}")
    sys.stdout.flush()
    return EXIT_OK
