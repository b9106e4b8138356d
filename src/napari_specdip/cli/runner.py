"""One file through the engine: checks, slice-by-slice restoration, assembly, sidecar.

Shared by ``specdip restore`` (slices run here, with a progress bar) and
``specdip batch`` (slices run as Dask tasks through :func:`run_slice`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_specdip.cli.errors import RunError, UsageError, check_stop, one_line
from napari_specdip.cli.files import (
    ImageFile,
    TiffMeta,
    check_name_lengths,
    check_writable,
    check_writable_kind,
    is_ome_tiff,
    os_reason,
    read_image,
    read_sidecar,
    sidecar_path,
    split_name,
    stored_dtype,
    temp_name,
    write_image,
    write_json,
)
from napari_specdip.cli.layout import StackLayout, resolve_layout, split_mask
from napari_specdip.core.imaging import missing_pixels
from napari_specdip.core.results import CONSTANT
from napari_specdip.core.results import copy_reason as slice_copy_reason

#: ``--threads auto`` gives torch at most this many threads (see :func:`default_threads`)
MAX_AUTO_THREADS = 8
AUTO_THREADS = "auto"

#: deblocking an image in which no JPEG compression was read: said, since the stop then
#: knows the image's size only
NO_JPEG_FOUND = ("no JPEG block grid or quantisation was found in this image (not a JPEG, "
                 "resized or re-encoded since, compressed very lightly, or too few 8x8 blocks "
                 "to read them from): the auto stop used a budget of {budget} iterations "
                 "from the image's size alone")

SIDECAR_FORMAT = "napari-specdip sidecar"
SIDECAR_VERSION = 1

#: argparse dest -> keyword of :func:`napari_specdip.iter_restore`
ENGINE_OPTIONS = {
    "max_iterations": "max_iterations",
    "stop": "stop",
    "stop_window": "stop_window",
    "stop_epsilon": "stop_epsilon",
    "patience": "holdout_patience",
    "holdout_return": "holdout_return",
    "seed": "seed",
    "device": "device",
    "width": "width",
    "depth": "depth",
    "lipschitz": "lipschitz",
    "upsampler": "upsampler",
    "learning_rate": "learning_rate",
    "network": "network",
    "result": "output",
    "gain": "gain",
    "factor": "factor",
    "signal_every": "signal_every",
    "threads": "num_threads",
    "output_dtype": "output_dtype",
    "preset": "preset",
    "holdout": "holdout",
    "input_jitter": "input_jitter",
    "noise": "noise",
    "noise_sigma": "noise_sigma",
    "noise_gain": "noise_gain",
    "noise_read_sigma": "noise_read_sigma",
    "noise_offset": "noise_offset",
    "noise_fit": "noise_fit",
    "refine": "refine",
    "keep_known": "keep_known",
    "ensemble": "ensemble",
    "tile": "tile",
    "tile_overlap": "tile_overlap",
    "tile_warm_start": "tile_warm_start",
}

#: the uncertainty of an ensemble run goes next to the output as ``STEM`` + this + ``.tif``
#: (``.ome.tif`` beside an OME-TIFF output)
UNCERTAINTY_SUFFIX = "_uncertainty"
#: the hidden file that claims an output's names while they are written
WRITING_MARK = ".specdip-writing"

def uncertainty_path(output: Path) -> Path:
    """``OUT_uncertainty.tif`` next to ``output`` (``OUT_uncertainty.ome.tif`` next to an
    OME-TIFF): the ensemble's per-pixel spread, a float TIFF whatever the output's format."""
    stem, _ = split_name(output)
    ext = ".ome.tif" if is_ome_tiff(output) else ".tif"
    return output.with_name(f"{stem}{UNCERTAINTY_SUFFIX}{ext}")


def writing_marker(output: Path) -> Path:
    """``.OUT.specdip-writing`` next to ``output``: there from before the first of its
    files is written until its sidecar is."""
    return output.with_name(f".{output.name}{WRITING_MARK}")


def run_record(output: Path) -> dict[str, Any] | None:
    """The sidecar of ``output`` when it is a specdip run record, else None (missing,
    unreadable, or a JSON file of someone else's)."""
    payload = read_sidecar(sidecar_path(output))
    if payload is None or not isinstance(payload.get("specdip"), dict):
        return None
    return payload


def foreign_files(output: Path, *, ensemble: bool) -> list[Path]:
    """The files at ``output``, its sidecar and (``ensemble``) its uncertainty that exist
    but that no specdip run wrote: replacing them would lose the user's data.

    An earlier run's files are known by its run record, or by its writing marker
    when it stopped between writing the image and the sidecar.
    """
    spread = uncertainty_path(output)
    targets = [output, sidecar_path(output), *([spread] if ensemble else [])]
    existing = [p for p in targets if os.path.lexists(p)]
    if not existing or writing_marker(output).exists():
        return []
    record = run_record(output)
    if record is None:
        return existing
    # a single network's run wrote no uncertainty: a file there is someone else's
    return [spread] if spread in existing and not record["specdip"].get("uncertainty") else []


def check_task_options(args: Any) -> None:
    """Refuse an option typed on the command line that the task (or the noise model)
    ignores; options left out are None, so presets and defaults never count."""
    from napari_specdip.core.params import TASK_OPTIONS, RestoreParameters, ignored_option

    given = [dest for dest in TASK_OPTIONS if getattr(args, dest, None) is not None]
    model = args.noise
    if model is None:
        try:
            model = RestoreParameters.for_task(args.task, preset=args.preset).noise
        except ValueError as exc:
            raise UsageError(one_line(exc)) from exc
    problem = ignored_option(given, args.task, model)
    if problem is None:
        return
    dest, ignoring, needed = problem
    if ignoring == "noise":
        raise UsageError(f"{_flag(dest)} only makes sense with --noise {needed}, not "
                         f"{model}; leave it out or pass --noise {needed}")
    raise UsageError(f"{_flag(dest)} only makes sense for --task {needed}, not {args.task}; "
                     "leave it out or change --task")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def mask_digest(data: npt.NDArray[Any]) -> str:
    """SHA-256 of a mask's shape and nonzero pixels (what the run uses of it), whatever
    the file's format or the values of its marked pixels."""
    import hashlib

    marked = np.ascontiguousarray(np.asarray(data) != 0)
    digest = hashlib.sha256(repr(marked.shape).encode())
    digest.update(np.packbits(marked).tobytes())
    return digest.hexdigest()


def engine_options(args: Any) -> dict[str, Any]:
    """The engine keywords set on the command line (None: the task's default;
    ``--threads auto``: :func:`default_threads`)."""
    options = {kw: getattr(args, dest) for dest, kw in ENGINE_OPTIONS.items()
               if getattr(args, dest, None) is not None}
    if options.get("num_threads") == AUTO_THREADS:
        options["num_threads"] = default_threads()
    options["preview_every"] = 0  # the command line never shows previews
    return options


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_device(device: str | None) -> None:
    """Raise UsageError now if the device is unknown or absent on this machine."""
    from napari_specdip.core.devices import resolve_device

    try:
        resolve_device(device or "auto")
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


@dataclass
class FileJob:
    """A checked input file and everything needed to restore and write it."""

    source: ImageFile
    output: Path
    task: str
    options: dict[str, Any]
    layout: StackLayout
    scale: int
    output_dtype: np.dtype[Any]
    mask_path: Path | None = None
    mask_digest: str | None = None
    mask_shared: npt.NDArray[np.bool_] | None = None
    mask_canonical: npt.NDArray[np.bool_] | None = None
    reference_path: Path | None = None
    reference_canonical: npt.NDArray[Any] | None = None
    max_iterations: int = 1
    #: the resolved options of the first restored slice (set by :func:`prepare`)
    params: Any = None
    #: a stack's camera values, estimated once over its slices (Poisson-Gaussian noise)
    noise_camera: Any = None
    canonical: npt.NDArray[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.canonical = self.layout.canonical(self.source.data)

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.output)

    def slices(self) -> Iterator[SliceInput]:
        for index in self.layout.indices():
            image, channel_axis, alpha = self.layout.engine_image(self.canonical, index)
            mask = self.mask_shared if self.mask_canonical is None else self.mask_canonical[index]
            reference = None
            if self.reference_canonical is not None:
                reference, _, _ = self.layout.engine_image(self.reference_canonical, index)
            yield SliceInput(index, image, channel_axis, alpha, mask, reference)

    def chain_of(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """Which warm-start chain the slice at ``index`` belongs to: its position along
        the stack axes the file names as channels (``C`` in a TIFF's axes), so that each
        channel starts from its own previous slice (a ``TZCYX`` stack alternates
        channels from slice to slice, and one channel's weights are a poor start for
        another's image); ``()`` when the file names none."""
        axes = self.source.axes
        if not axes or len(axes) != len(self.layout.shape):
            return ()
        return tuple(i for i, a in zip(index, self.layout.stack, strict=True) if axes[a] == "C")

    def copy_reason(self, item: SliceInput) -> str | None:
        """Why a slice of a stack is copied, not restored: ``"constant"`` (nothing to
        restore) or ``"nothing_to_fill"`` (inpainting, and its mask marks no pixel of
        it: fitting it anyway would only smooth it); None for a slice to restore."""
        return slice_copy_reason(item.image, item.mask) if self.layout.is_stack else None

    def passthrough(self, item: SliceInput, reason: str) -> npt.NDArray[Any]:
        """The copy (upscaled, in the output dtype) of a slice :meth:`copy_reason` copies
        for ``reason``."""
        if reason != CONSTANT:
            return self.unrestored(item)
        shape = item.image.shape[:2]
        shape = (shape[0] * self.scale, shape[1] * self.scale) + item.image.shape[2:]
        return self._cast(np.full(shape, item.image.flat[0]))

    def unrestored(self, item: SliceInput) -> npt.NDArray[Any]:
        """The slice as it came in (upscaled by repetition), in the output dtype: what
        an interrupted run writes for the slices it did not reach."""
        image = item.image
        if self.scale > 1:
            image = np.repeat(np.repeat(image, self.scale, axis=0), self.scale, axis=1)
        if self.output_dtype.kind in "ui" and image.dtype.kind == "f":
            info = np.iinfo(self.output_dtype)
            image = np.clip(np.rint(image), info.min, info.max)
        return self._cast(np.asarray(image))

    def _cast(self, image: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """``image`` in the output dtype; bool into an integer dtype as the engine gives
        a restored slice: False its least value, True its greatest (uint8: 0/255)."""
        if image.dtype.kind == "b" and self.output_dtype.kind in "ui":
            info = np.iinfo(self.output_dtype)
            return np.where(image, info.max, info.min).astype(self.output_dtype)
        return image.astype(self.output_dtype)

    @property
    def tiff_meta(self) -> TiffMeta | None:
        """The input's calibration, corrected for super-resolution."""
        return None if self.source.tiff is None else self.source.tiff.scaled(self.scale)

    @property
    def ensemble(self) -> int:
        return int(self.options.get("ensemble") or 1)

    @property
    def uncertainty(self) -> Path | None:
        """Where the ensemble's uncertainty goes (None for a single network)."""
        return uncertainty_path(self.output) if self.ensemble > 1 else None

    def new_uncertainty(self) -> npt.NDArray[np.float32] | None:
        """The canonical float32 uncertainty of the whole file, zero (None without ensemble)."""
        if self.uncertainty is None:
            return None
        return self.layout.new_canonical_output(self.scale, np.dtype(np.float32))

    def put_uncertainty(self, out: npt.NDArray[np.float32] | None, item: SliceInput,
                        spread: npt.NDArray[Any] | None, *, fill: float = 0.0) -> None:
        """Store one slice's spread in ``out``; ``fill`` where there is none (0 for a
        constant slice, copied exactly; NaN for a slice an interruption did not reach).
        The alpha channel, copied untouched, has none."""
        if out is None:
            return
        if spread is None:
            shape = self.layout.output_slice_shape(self.scale)
            if self.layout.alpha:
                shape = shape[:-1] + (shape[-1] - 1,)
            spread = np.full(shape, fill, dtype=np.float32)
        alpha = np.zeros(self.layout.spatial_shape, np.float32) if self.layout.alpha else None
        self.layout.put(out, item.index, np.asarray(spread, dtype=np.float32), alpha, self.scale)

    def output_bytes(self) -> int:
        """Size of the output image, its uncertainty and its sidecar, uncompressed (for the
        free-space check)."""
        pixels = int(np.prod(self.layout.output_shape(self.scale), dtype=np.int64))
        spread = pixels * 4 if self.uncertainty is not None else 0
        return pixels * self.output_dtype.itemsize + spread + 65536


@dataclass
class SliceInput:
    index: tuple[int, ...]
    image: npt.NDArray[Any]
    channel_axis: int | None
    alpha: npt.NDArray[Any] | None
    mask: npt.NDArray[np.bool_] | None
    reference: npt.NDArray[Any] | None


def prepare(input_path: str | Path, output: Path, *, task: str, options: dict[str, Any],
            channel_axis: str | int = "auto", stack_axis: str | int = "auto",
            mask: ImageFile | None = None, reference_path: str | Path | None = None,
            local: bool = True, series: int | None = None) -> FileJob:
    """Read and check one input; every user mistake raises UsageError before any work.

    ``local``: the run happens in this process (``restore``), so the device and
    the memory estimate are checked here too; a batch's workers check them.
    ``series``: the image series of a multi-series TIFF to restore (``--series``);
    a multi-series reference gives the same one, a single-image one is read as it is.
    """
    source = read_image(input_path, series=series)
    layout = resolve_layout(source.data.shape, kind=source.kind, axes=source.axes,
                            channel_axis=channel_axis, stack_axis=stack_axis)
    mask_shared = mask_canonical = None
    digest = None
    if mask is not None:
        if task != "inpaint":
            raise UsageError(f"--mask only makes sense for --task inpaint, not {task}; "
                             "leave it out or change --task")
        mask_shared, mask_canonical = split_mask(mask.data, layout, mask_kind=mask.kind)
        digest = mask_digest(mask.data)
    elif task == "inpaint":  # without a mask file: the image's NaN pixels
        holes = non_finite_holes(source.data, layout)
        if holes is None:
            raise UsageError("--task inpaint needs --mask FILE (nonzero pixels are filled in), "
                             "or NaN pixels in a float image (they are filled)")
        if layout.is_stack:
            mask_canonical = holes
        else:
            mask_shared = holes
        digest = mask_digest(holes)

    dtype = np.dtype(options["output_dtype"]) if options.get("output_dtype") else source.data.dtype
    job = FileJob(source=source, output=output, task=task, options=options, layout=layout,
                  scale=1, output_dtype=dtype, mask_path=mask.path if mask else None,
                  mask_digest=digest,
                  mask_shared=mask_shared, mask_canonical=mask_canonical)
    _check_mask_marks_a_pixel(job)
    job.scale, job.max_iterations, job.params = _check_engine(job, local=local)
    float_range = ((float(source.data.min()), float(source.data.max())) if dtype.kind == "f"
                   else None)
    check_writable_kind(output, stack=layout.is_stack, channels=layout.channels, dtype=dtype,
                        float_range=float_range)
    check_writable(output, size=job.output_bytes())
    check_name_lengths(output, [temp_name(output), temp_name(sidecar_path(output)),
                                writing_marker(output)])
    if job.uncertainty is not None:
        check_writable(job.uncertainty, what="uncertainty output")
        check_name_lengths(job.uncertainty, [temp_name(job.uncertainty)],
                           what="uncertainty output")
    if reference_path is not None:
        ref = read_image(reference_path, what="reference", series=series, series_if_many=True)
        expected = layout.output_shape(job.scale)
        if ref.data.shape != expected:
            raise UsageError(f"reference shape {ref.data.shape} does not match the output's "
                             f"shape {expected}")
        job.reference_path = ref.path
        job.reference_canonical = layout.canonical(ref.data)
    _check_every_slice(job)
    job.noise_camera = stack_camera(job)
    return job


def non_finite_holes(data: npt.NDArray[Any], layout: StackLayout
                     ) -> npt.NDArray[np.bool_] | None:
    """Inpainting without a mask file: a float image's NaN or infinite pixels (any colour
    channel) are the holes, as the engine takes them: (Y, X), or a stack's canonical
    (stack..., Y, X); None where every value is finite."""
    if data.dtype.kind != "f":
        return None
    canonical = layout.canonical(data)
    colour = canonical[..., :-1] if layout.alpha else canonical  # alpha: copied, not filled
    holes = np.zeros(layout.stack_shape + layout.spatial_shape, bool)
    for index in np.ndindex(*layout.stack_shape):  # slice by slice: no copy of the stack
        holes[index] = missing_pixels(colour[index], channels_last=layout.channels is not None)
    return holes if holes.any() else None


def stack_camera(job: FileJob) -> Any:
    """The camera values of a stack with Poisson-Gaussian noise, estimated once over the
    slices it restores (one camera took them all) where any is not given; None for a
    single image, Gaussian noise, or inpainting masks that differ by slice."""
    p = job.params
    if (p is None or not p.estimates_camera or not job.layout.is_stack
            or job.mask_canonical is not None):
        return None
    from napari_specdip.core.noise import LazySlices, estimate_camera

    indices, channel_axis = [], None
    for item in job.slices():  # the images are read again, a few of them, by the estimate
        if job.copy_reason(item) is None:
            indices.append(item.index)
            channel_axis = item.channel_axis
    if len(indices) < 2:
        return None
    try:
        images = LazySlices(len(indices), lambda k: job.layout.engine_image(
            job.canonical, indices[k])[0])
        return estimate_camera(images, channel_axis=channel_axis,
                               known=None if job.mask_shared is None else ~job.mask_shared,
                               gain=p.noise_gain, read_sigma=p.noise_read_sigma,
                               offset=p.noise_offset)
    except ValueError as exc:
        raise UsageError(f"{job.source.path}: {one_line(exc)}") from exc


def first_restored(job: FileJob) -> SliceInput | None:
    """The first slice that will be restored (not one :meth:`FileJob.copy_reason` copies)."""
    for item in job.slices():
        if job.copy_reason(item) is None:
            return item
    return None


def _check_mask_marks_a_pixel(job: FileJob) -> None:
    """Refuse a stack's mask that marks no pixel of any slice (before the refusal of a
    stack with no slice to restore, which would blame the slices)."""
    masks = job.mask_shared if job.mask_canonical is None else job.mask_canonical
    if job.layout.is_stack and masks is not None and not masks.any():
        raise UsageError(f"{job.mask_path}: the mask marks no pixel to fill in any slice of "
                         f"{job.source.path}: nothing to inpaint (nonzero marks the pixels "
                         "to fill)")


def _slice_words(index: tuple[int, ...]) -> str:
    """A slice's place in the stack as a user reads it: "2", or "1, 3" with two stack axes
    (a tuple read "(2,)")."""
    return ", ".join(str(i) for i in index)


def _check_every_slice(job: FileJob) -> None:
    """Refuse before any work what the engine would refuse in a later slice of a stack
    (:func:`_check_engine` plans the first one only): NaN or infinite values, in the
    image or the reference, and a per-slice mask that covers a whole slice. Otherwise
    the run fails there, after the slices before it were restored, and writes nothing.
    Constant slices, and slices whose mask marks no pixel, are copied, not restored:
    their reference and mask are not used."""
    if not job.layout.is_stack:
        return
    data = job.canonical[..., :-1] if job.layout.alpha else job.canonical  # alpha: copied
    reference = job.reference_canonical
    bad: dict[Path | None, list[tuple[int, ...]]] = {job.source.path: [], job.reference_path: []}
    for index in np.ndindex(*job.layout.stack_shape):  # slice by slice: no copy of the stack
        mask = None if job.mask_canonical is None else job.mask_canonical[index]
        if slice_copy_reason(data[index], mask) is not None:
            continue  # copied as it is
        if (data.dtype.kind == "f" and job.task != "inpaint"  # inpainting fills them
                and not np.isfinite(data[index]).all()):
            bad[job.source.path].append(index)
        if (reference is not None and reference.dtype.kind == "f"
                and not np.isfinite(reference[index]).all()):
            bad[job.reference_path].append(index)
        if mask is not None and mask.all():
            raise UsageError(f"{job.source.path} (slice {_slice_words(index)}): the "
                             "mask covers every pixel of this slice: nothing is left to fit")
        if job.task == "inpaint" and data.dtype.kind == "f":
            # NaN pixels join the holes: a slice with nothing else left failed mid-run
            known = ~missing_pixels(data[index], channels_last=job.layout.channels is not None)
            if mask is not None:
                known &= ~mask.astype(bool)
            if not known.any():
                raise UsageError(f"{job.source.path} (slice {_slice_words(index)}): every "
                                 "pixel of this slice is NaN or under the mask: nothing is "
                                 "left to fit")
    for path, slices in bad.items():
        if slices:
            raise UsageError(f"{path} (slice {_slice_words(slices[0])}): contains NaN or "
                             f"infinite values (in "
                             f"{len(slices)} slice(s) of the stack); fill or crop them first"
                             + (" (--task inpaint fills them)" if path == job.source.path
                                else ""))


def _check_engine(job: FileJob, *, local: bool = True) -> tuple[int, int, Any]:
    """Let the engine check the options and the first slice to restore: (output scale,
    iteration cap, the resolved :class:`~napari_specdip.RestoreParameters`); a stack
    with no slice to restore is refused."""
    from napari_specdip.core.engine import plan_restore

    first = first_restored(job)
    if first is None:
        # refused like a single constant image: copying every slice would "succeed" with
        # a record of no parameters, which a later batch takes for any options' output
        what = ("constant (a single value)" if job.task != "inpaint"
                else "constant, or has no pixel to fill under the mask")
        raise UsageError(f"{job.source.path}: each of the stack's {job.layout.n_slices} "
                         f"slices is {what}: nothing to restore")
    # a batch's workers may have a device, memory or cores this machine lacks: they check those
    options = job.options if local else {k: v for k, v in job.options.items()
                                         if k not in ("device", "num_threads")}
    where = f" (slice {_slice_words(first.index)})" if job.layout.is_stack else ""
    try:
        with warnings.catch_warnings():  # the run records its warnings (the sidecar's)
            warnings.simplefilter("ignore", UserWarning)
            planned = plan_restore(first.image, job.task, mask=first.mask,
                                   channel_axis=first.channel_axis, alpha=False,
                                   check_memory=local, **options)
    except (ValueError, TypeError) as exc:
        # the engine names the slice's axes; the file's are the ones to pass
        short = job.layout.short_axis_problem()
        # the engine's words for its keyword, the command line's for its option
        said = one_line(exc).replace("task='inpaint'", "--task inpaint")
        raise UsageError(f"{job.source.path}: {short}" if short is not None
                         else f"{job.source.path}{where}: {said}") from exc
    except MemoryError as exc:
        raise RunError(f"{job.source.path}{where}: {one_line(exc)}") from exc
    return planned.scale, planned.params.max_iterations, planned.params


@dataclass
class SliceRun:
    """One restored slice: the image, ``result.metadata()["specdip"]``, the ensemble's
    spread (None for one network) and the network weights when asked to keep them."""

    image: npt.NDArray[Any]
    meta: dict[str, Any]
    uncertainty: npt.NDArray[Any] | None = None
    state: dict[str, Any] | None = None


def run_slice(image: npt.NDArray[Any], task: str, channel_axis: int | None,
              mask: npt.NDArray[np.bool_] | None, reference: npt.NDArray[Any] | None,
              options: dict[str, Any], on_step: Callable[[Any], None] | None = None,
              interrupt: Any = None, warm_start: Any = None,
              keep_state: bool = False, noise_camera: Any = None) -> SliceRun:
    """Restore one 2D image (from ``warm_start``'s weights when given; with a stack's
    ``noise_camera`` values when given).

    Runs wherever it is called: here for ``restore``, on a Dask worker for ``batch``.
    """
    from napari_specdip.core.engine import plan_restore, run_to_end

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        # the CLI carries alpha itself (layout.py): the engine gets colour channels only
        job = plan_restore(image, task, mask=mask, channel_axis=channel_axis, reference=reference,
                           interrupt=interrupt, alpha=False, warm_start=warm_start,
                           keep_state=keep_state, noise_camera=noise_camera, **options)
        result = run_to_end(job.run(), on_step)
    meta: dict[str, Any] = result.metadata()["specdip"]
    messages = list(dict.fromkeys(str(w.message) for w in caught
                                  if issubclass(w.category, UserWarning)))
    if job.params.stops_at_jpeg_budget and job.jpeg is None:
        messages.append(NO_JPEG_FOUND.format(budget=result.parameters.get("deblock_budget")))
    if messages:
        meta["warnings"] = messages
    return SliceRun(result.image, meta, result.uncertainty, result.state)


@dataclass
class FileRun:
    """A whole file restored: image (file order), each slice's metadata, uncertainty."""

    image: npt.NDArray[Any]
    runs: list[dict[str, Any]]
    uncertainty: npt.NDArray[np.float32] | None = None


def restore_file(job: FileJob, *, progress: bool, interrupt: Any = None,
                 warm_start: bool = True) -> FileRun:
    """Restore every slice of ``job`` here, one after the other, with a progress bar.

    With ``warm_start`` each slice after the first starts from the weights the
    previous one of its channel ended with (:meth:`FileJob.chain_of`; slices of a
    stack are alike, so the fit starts close to its goal); each still stops by its own
    rule. When ``interrupt`` (an Event) is set, the slice in progress ends with its
    result so far and the slices not reached are copied unrestored (``stop_reason``
    ``"not_run"``); a slice stopped before its first iteration counts as not reached.
    """
    from napari_specdip.cli.progress import Progress

    out = job.layout.new_canonical_output(job.scale, job.output_dtype)
    spread = job.new_uncertainty()
    runs: list[dict[str, Any]] = []
    n = job.layout.n_slices
    # the last weights of each chain; a chain's last slice keeps its weights too (a few MB)
    # rather than every slice being read twice to find which is last
    states: dict[tuple[int, ...], Any] = {}
    for k, item in enumerate(job.slices(), 1):
        reason = job.copy_reason(item)
        if reason is not None:
            job.layout.put(out, item.index, job.passthrough(item, reason), item.alpha,
                           job.scale)
            job.put_uncertainty(spread, item, None)
            runs.append(passthrough_meta(item.index, reason))
            continue
        chain = job.chain_of(item.index)
        if interrupt is not None and interrupt.is_set():
            job.layout.put(out, item.index, job.unrestored(item), item.alpha, job.scale)
            job.put_uncertainty(spread, item, None, fill=math.nan)
            runs.append({**passthrough_meta(item.index), "stop_reason": NOT_RUN})
            continue
        desc = f"slice {k}/{n}" if job.layout.is_stack else job.source.path.name
        bar = Progress(job.max_iterations, desc=desc, enabled=progress)

        def on_step(report: Any, bar: Progress = bar) -> None:
            check_stop()
            bar.set_total(report.max_iterations)
            bar.update(report.iteration, loss=report.loss, ratio=report.signals.get("ratio"))

        try:
            done = run_slice(item.image, job.task, item.channel_axis, item.mask, item.reference,
                             job.options, on_step=on_step, interrupt=interrupt,
                             warm_start=states.get(chain) if warm_start else None,
                             keep_state=warm_start,
                             noise_camera=job.noise_camera)
        finally:
            bar.close()
        states[chain] = done.state
        if done.meta.get("stop_reason") == "stopped" and not done.meta.get("iterations"):
            done = SliceRun(job.unrestored(item), {**passthrough_meta(item.index),
                                                   "stop_reason": NOT_RUN})
            job.put_uncertainty(spread, item, None, fill=math.nan)
        else:
            job.put_uncertainty(spread, item, done.uncertainty)
        job.layout.put(out, item.index, done.image, item.alpha, job.scale)
        runs.append({"index": list(item.index), **done.meta})
    return FileRun(job.layout.to_file_order(out), runs,
                   None if spread is None else job.layout.to_file_order(spread))


def estimate_file(job: FileJob, *, handed_on: bool = False) -> Any:
    """The engine's :class:`~napari_specdip.core.estimate.Estimate` of the first
    restored slice (None when every slice is constant); times a few steps.
    ``handed_on``: the slices are warm-started one from another (``tile="auto"`` then
    fits each whole)."""
    from napari_specdip.core.estimate import estimate

    first = first_restored(job)
    if first is None:
        return None
    return estimate(first.image, job.task, channel_axis=first.channel_axis, mask=first.mask,
                    reference=first.reference, alpha=False, keep_state=handed_on,
                    **job.options)


def rough_seconds(a: float, b: float | None = None) -> str:
    """``'40 s'``, ``'3 min'``, ``'1-4 min'``, ``'40 s-2 min'``: rough times, for ranges."""

    def split(s: float) -> tuple[str, str]:
        if s < 60:
            return f"{s:.0f}" if s >= 1 else f"{s:.1g}", "s"
        if s < 3600:
            return f"{s / 60:.0f}", "min"
        return f"{s / 3600:.1f}".removesuffix(".0"), "h"

    if not math.isfinite(a) or (b is not None and not math.isfinite(b)):
        return "unknown"
    first, unit = split(a)
    if b is None:
        return f"{first} {unit}"
    second, unit_b = split(b)
    if unit == unit_b:
        return f"{first}-{second} {unit}" if first != second else f"{first} {unit}"
    return f"{first} {unit}-{second} {unit_b}"


def describe_estimate(est: Any, slices: int = 1, *, params: Any = None,
                      size: tuple[int, int] | None = None, threads: int | None = None) -> str:
    """Two lines: time (per 100 iterations, at the cap, and, for the hold-out stop, the
    typical range) and memory, e.g.::

        estimate: 8.1 s per 100 iterations; at most 4 min 3 s (3000 iterations); usually
        stops after 350-1000 iterations (28 s-1 min), typical, not a promise
          peak memory 236.7 MB of 22.0 GB available on cpu, 2 torch thread(s)

    (the first line is one line). ``params`` and ``size`` (the output's height and
    width) give the typical range, :func:`napari_specdip.core.estimate.typical_stop`.
    """
    from napari_specdip.core.estimate import format_bytes, format_seconds

    available = ("unknown memory" if est.available_memory_bytes is None
                 else format_bytes(est.available_memory_bytes))
    per_slice = " per slice" if slices > 1 else ""
    many = f", {slices} slices" if slices > 1 else ""
    step = est.seconds_per_iteration
    exact = params is not None and params.stop == "none"
    cap = (f"{format_seconds(est.seconds * slices)} ({est.iterations} iterations{per_slice}"
           f"{many})")
    text = (f"estimate: {format_seconds(100 * step)} per 100 iterations; "
            f"{'' if exact else 'at most '}{cap}")
    from napari_specdip.core.estimate import typical_stop

    tiles = getattr(est, "tiles", 1)
    if tiles > 1:  # each tile stops on its own: the typical stop of the largest, per tile
        size = est.canvas
        per_slice = f" per tile ({tiles} tiles{', per slice' if slices > 1 else ''})"
    quality = getattr(est, "jpeg_quality", None)
    if quality is not None:  # deblocking: the budget is the stop
        text += f"; the budget for JPEG quality ≈ {quality}"
    typical = typical_stop(params, *size) if size is not None and params is not None else None
    if typical is not None:
        low, high = typical
        load = slices * getattr(est, "tile_load", 1.0)
        fixed = slices * tiles * getattr(est, "setup_seconds", 0.0)  # each fit's own setup
        text += (f"; usually stops after {low}-{high} iterations{per_slice} "
                 f"({rough_seconds(low * step * load + fixed, high * step * load + fixed)}"
                 f"{' in all' if slices > 1 or tiles > 1 else ''}), typical, not a promise")
    text += (f"\n  peak memory {format_bytes(est.peak_memory_bytes)} of {available} available "
             f"on {est.device}")
    if threads:
        text += f", {threads} torch thread(s)"
    from napari_specdip.core.estimate import suggests_tiles
    from napari_specdip.core.params import AUTO_TILE

    if params is not None and suggests_tiles(est, params):
        text += (f"\n  hint: --tile {AUTO_TILE} would finish sooner on this CPU "
                 "(benchmarks/tiling.py)")
    return text


def describe_job_estimate(job: FileJob, est: Any) -> str:
    """:func:`describe_estimate` of a file: its restored slices, options and size."""
    slices = sum(1 for item in job.slices() if job.copy_reason(item) is None)
    h, w = job.layout.spatial_shape
    text = describe_estimate(est, slices, params=job.params, size=(h * job.scale, w * job.scale),
                             threads=job.options.get("num_threads"))
    camera = job.noise_camera
    if camera is not None:  # the values every slice will run with, before the first
        over = f"{camera.slices} of {camera.of}" if camera.slices < camera.of else camera.of
        text += (f"\n  camera values for every slice (estimated over {over} slices, where "
                 f"not given): gain {camera.gain:.4g}, read noise {camera.read_sigma:.4g}, "
                 f"offset {camera.offset:.5g}")
    return text


#: ``stop_reason`` of a slice an interrupted run did not reach (copied unrestored)
NOT_RUN = "not_run"


def passthrough_meta(index: tuple[int, ...], reason: str = CONSTANT) -> dict[str, Any]:
    return {"index": list(index), "iterations": 0, "stop_reason": reason,
            "elapsed_seconds": 0.0, "metrics": {}}


def build_sidecar(job: FileJob, runs: list[dict[str, Any]], image: npt.NDArray[Any], *,
                  command: str, started: str, wall_seconds: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar: ``{"specdip": {...}}`` like ``RestoreResult.metadata()`` plus file facts.

    For a single image ``specdip`` is that run's metadata; for a stack the shared
    entries come from the first restored slice, ``iterations`` and
    ``elapsed_seconds`` are summed, ``stop_reason`` lists the distinct reasons
    (comma-separated), ``metrics`` are averaged, and ``slices`` holds each slice's
    own metadata with its ``index`` in the stack axes.
    """
    from napari_specdip.core.devices import versions

    restored = [r for r in runs if "parameters" in r]
    first = restored[0] if restored else {}
    if job.layout.is_stack:
        reasons = sorted({str(r.get("stop_reason")) for r in runs})
        metric_names = sorted({k for r in restored for k in r.get("metrics", {})})
        metrics = {k: _mean([r["metrics"][k] for r in restored if k in r.get("metrics", {})])
                   for k in metric_names}
        core: dict[str, Any] = {
            "parameters": first.get("parameters", {}),
            "seed": first.get("seed"),
            "device": first.get("device"),
            "versions": first.get("versions", versions()),
            "iterations": int(sum(r.get("iterations", 0) for r in runs)),
            "stop_reason": ",".join(reasons),
            "elapsed_seconds": round(sum(float(r.get("elapsed_seconds", 0.0)) for r in runs), 3),
            "metrics": metrics,
            "slices": runs,
        }
    else:
        core = {k: v for k, v in runs[0].items() if k != "index"}
    core.update({
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "command": command,
        "task": job.task,
        "input": str(job.source.path.resolve()),
        "output": str(job.output.resolve()),
        "mask": str(job.mask_path.resolve()) if job.mask_path else None,
        "mask_sha256": job.mask_digest,
        # inpainting without --mask: the holes are the input's own (their digest above)
        **({"holes": "nan"} if job.task == "inpaint" and job.mask_path is None else {}),
        "reference": str(job.reference_path.resolve()) if job.reference_path else None,
        "started": started,
        "finished": now_iso(),
        "wall_seconds": round(wall_seconds, 3),
        "input_shape": list(job.source.data.shape),
        "input_dtype": str(job.source.data.dtype),
        "input_axes": job.source.axes,
        # which image series of a multi-series TIFF was restored (--series), when given
        **({"series": job.source.series} if job.source.series is not None else {}),
        # read turned upright: the result is upright, without the tag
        **({"input_exif_orientation": job.source.orientation}
           if job.source.orientation != 1 else {}),
        "output_shape": list(image.shape),
        "output_dtype": str(image.dtype),
        # PNG and JPEG store floats in [0, 1] and booleans as uint8
        "written_dtype": str(stored_dtype(job.output, image.dtype)),
        **job.layout.describe(),
        "slice_count": job.layout.n_slices,
    })
    calibration = job.tiff_meta.describe() if job.tiff_meta is not None else {}
    if calibration:  # an uncalibrated ImageJ file carries display settings only
        core["calibration"] = calibration
    if job.uncertainty is not None:
        from napari_specdip.core.ensemble import UNCERTAINTY_WHAT

        core["uncertainty"] = {
            "file": str(job.uncertainty.resolve()),
            "members": job.ensemble,
            "what": f"{UNCERTAINTY_WHAT}, float32, in the output's layout, intensity units "
                    "and calibration (0 on constant slices and alpha, NaN on slices not "
                    "restored)",
        }
    said = list(dict.fromkeys(w for r in runs for w in r.get("warnings", [])))
    if said:
        core["warnings"] = said
    if extra:
        core.update(extra)
    return {"specdip": core}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def write_outputs(job: FileJob, image: npt.NDArray[Any], sidecar: dict[str, Any],
                  uncertainty: npt.NDArray[Any] | None = None) -> None:
    """The uncertainty (ensembles), the image, then the sidecar, each atomically: a
    sidecar means a finished output. A hidden marker (:func:`writing_marker`) stands
    from before the first file until the sidecar, so that a rerun after a kill in
    between knows those files for specdip's (:func:`foreign_files`)."""
    axes = job.source.axes if job.source.kind == "tiff" else None
    marker = writing_marker(job.output)
    target = job.output
    placed = False  # a file of this run is under an output name
    try:
        with open(marker, "wb") as fh:
            fh.write(f"specdip is writing {job.output.name}\n".encode())
            fh.flush()
            os.fsync(fh.fileno())
        if job.uncertainty is not None and uncertainty is not None:
            target = job.uncertainty
            write_image(target, uncertainty.astype(np.float32, copy=False),
                        channel_axis=job.layout.channel_axis, axes=axes, tiff=job.tiff_meta)
            placed = True
        target = job.output
        write_image(target, image, channel_axis=job.layout.channel_axis, axes=axes,
                    tiff=job.tiff_meta)
        placed = True
        write_json(job.sidecar, sidecar)
    except BaseException as exc:  # each write is atomic: the one that failed placed nothing
        # a marker with no file of this run behind it would vouch for whatever file the
        # user puts under that name later (a second Ctrl-C here left one)
        if not placed:
            with contextlib.suppress(OSError):
                marker.unlink()
        if isinstance(exc, OSError):
            raise RunError(f"cannot write {target}: {os_reason(exc)}") from exc
        raise
    # a signal (Ctrl-C, SIGTERM) skips this: a file may be in place, the marker stays
    with contextlib.suppress(OSError):
        marker.unlink()


def timed() -> Callable[[], float]:
    start = time.perf_counter()
    return lambda: time.perf_counter() - start



def _cpu_times(cores: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies per core of ``cores`` from /proc/stat."""
    times: dict[int, tuple[int, int]] = {}
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            index = int(name[3:])
            if index in cores:
                values = [int(v) for v in fields[:8]]
                times[index] = (values[3] + values[4], sum(values))  # idle + iowait
    return times


def idle_cores(interval: float = 0.2) -> float | None:
    """How many of this process's cores were idle over ``interval`` seconds (Linux), else None."""
    try:
        cores = set(os.sched_getaffinity(0))
        first = _cpu_times(cores)
        time.sleep(interval)
        second = _cpu_times(cores)
    except (AttributeError, OSError, ValueError):
        return None
    idle = 0.0
    for core, (idle_1, total_1) in second.items():
        idle_0, total_0 = first.get(core, (idle_1, total_1))
        if total_1 > total_0:
            idle += (idle_1 - idle_0) / (total_1 - total_0)
    return idle if second else None


def default_threads() -> int:
    """torch threads for ``--threads auto``: the cores idle right now, at most
    :data:`MAX_AUTO_THREADS`, at least 1.

    OpenMP threads that share a core with another busy process wait for each
    other at every layer: on a busy 2-core machine two threads ran 2.5-5 times
    slower per iteration than one (``benchmarks/cli_threads.py``), so only idle
    cores get a thread.
    """
    import torch

    idle = idle_cores()
    if idle is None:
        return max(1, min(torch.get_num_threads(), MAX_AUTO_THREADS))
    return max(1, min(int(idle + 0.2), torch.get_num_threads(), MAX_AUTO_THREADS))
