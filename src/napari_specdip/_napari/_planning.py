"""From napari layers to engine jobs and back (main thread only; no Qt, no torch).

Everything a run needs is read from the layers here, on the GUI thread, into
plain numpy arrays and tuples (:class:`ImageInfo`, :class:`RunPlan`); the
worker never touches a layer. :func:`assemble` turns the engine's results
back into layer data and keyword arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from napari_specdip.core.results import CONSTANT, COPIED, copy_reason

if TYPE_CHECKING:
    from napari_specdip.core.engine import RestoreJob
    from napari_specdip.core.params import RestoreParameters
    from napari_specdip.core.results import RestoreResult, StepReport

#: the stack choice that restores only the plane under the viewer's dims point
CURRENT = "current"
#: the stack choice that restores every plane of every leading axis
ALL = "all"

TASK_WORDS = {
    "denoise": "denoised",
    "deblock": "deblocked",
    "inpaint": "inpainted",
    "super-resolve": "super-resolved",
    "enhance": "enhanced",
}


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in values) + ")"


@dataclass(frozen=True)
class ImageInfo:
    """Snapshot of an image layer: its data and how it is placed and shown.

    ``ndim`` counts the layer's axes without the RGB channel (napari's
    ``layer.ndim``); the last two of them are the restored (spatial) axes, the
    ones before are *leading* axes (Z, T, ...) restored plane by plane.
    """

    name: str
    data: Any  # numpy, or a lazy (dask, zarr) array left unread: index it by plane
    rgb: bool
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[Any, ...] | None
    axis_labels: tuple[str, ...] | None
    contrast_limits: tuple[float, float] | None
    colormap: Any
    gamma: float
    #: napari's blending (a channel-axis image's channels blend additively)
    blending: str = "translucent_no_depth"
    #: the layer's rotation, shear and affine where not the identity (None otherwise)
    rotate: npt.NDArray[np.float64] | None = None
    shear: npt.NDArray[np.float64] | None = None
    affine: npt.NDArray[np.float64] | None = None

    @property
    def ndim(self) -> int:
        return int(self.data.ndim) - (1 if self.rgb else 0)

    @property
    def n_leading(self) -> int:
        return self.ndim - 2

    @property
    def leading_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[: self.n_leading])

    @property
    def plane_shape(self) -> tuple[int, int]:
        h, w = self.data.shape[self.n_leading : self.n_leading + 2]
        return int(h), int(w)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Every axis but the RGB channel."""
        return tuple(self.data.shape[: self.ndim])


def image_info(layer: Any) -> ImageInfo:
    """Read an image layer into an :class:`ImageInfo` (raises ValueError when unusable)."""
    if getattr(layer, "multiscale", False):
        raise ValueError(f"image {layer.name!r} is multiscale; restore one resolution level "
                         "(e.g. add layer.data[0] as its own layer) instead")
    data = layer.data
    if not all(hasattr(data, a) for a in ("shape", "dtype", "ndim", "__getitem__")):
        data = np.asarray(data)  # a lazy (dask, zarr) array stays lazy: read by the plane
    rgb = bool(getattr(layer, "rgb", False))
    ndim = data.ndim - (1 if rgb else 0)
    if ndim < 2:
        raise ValueError(f"image {layer.name!r} has shape {data.shape}: need at least 2 "
                         "spatial axes")
    colormap = None if rgb else layer.colormap.name
    limits = tuple(float(v) for v in layer.contrast_limits)
    units = getattr(layer, "units", None)
    labels = getattr(layer, "axis_labels", None)
    return ImageInfo(
        name=str(layer.name), data=data, rgb=rgb,
        scale=tuple(float(s) for s in layer.scale),
        translate=tuple(float(t) for t in layer.translate),
        units=tuple(units) if units is not None else None,
        axis_labels=tuple(str(a) for a in labels) if labels is not None else None,
        contrast_limits=(limits[0], limits[1]), colormap=colormap,
        gamma=float(getattr(layer, "gamma", 1.0)),
        blending=str(getattr(layer, "blending", "translucent_no_depth")),
        **_transform_of(layer, ndim),
    )


def _transform_of(layer: Any, ndim: int) -> dict[str, npt.NDArray[np.float64] | None]:
    """A layer's rotate, shear and affine, each None where it is the identity."""
    affine = getattr(layer, "affine", None)
    return non_identity(getattr(layer, "rotate", None), getattr(layer, "shear", None),
                        None if affine is None else affine.affine_matrix, ndim)


def non_identity(rotate: Any, shear: Any, affine: Any, ndim: int
                 ) -> dict[str, npt.NDArray[np.float64] | None]:
    """Rotation matrix, shear (napari's upper-triangular values or a matrix) and affine
    matrix of an ``ndim``-D layer, each None where absent, the identity, or not of
    ``ndim`` axes (a record of another layer's: nothing to place by)."""
    def kept(value: Any, neutral: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        if value is None:
            return None
        array = np.asarray(value, dtype=float)
        if array.shape != neutral.shape or np.allclose(array, neutral):
            return None
        return array

    shear_matrix = shear is not None and np.ndim(shear) == 2
    return {"rotate": kept(rotate, np.eye(ndim)),
            "shear": kept(shear, np.eye(ndim) if shear_matrix
                          else np.zeros(ndim * (ndim - 1) // 2)),
            "affine": kept(affine, np.eye(ndim + 1))}


def _physical(n: int, *, scale: Sequence[float] | None = None,
              translate: Sequence[float] | None = None, rotate: Any = None,
              shear: Any = None) -> Any:
    """napari's data-to-physical transform (``translate + R S diag(scale) x``)."""
    from napari.utils.transforms import CompositeAffine

    return CompositeAffine(
        scale=scale if scale is not None else np.ones(n),
        translate=translate if translate is not None else np.zeros(n),
        rotate=rotate if rotate is not None else np.eye(n),
        shear=shear if shear is not None else np.zeros(n * (n - 1) // 2), ndim=n)


def _linear(info: ImageInfo) -> npt.NDArray[np.float64]:
    """Rotation times shear (no scale) of the layer's data-to-physical transform."""
    if info.rotate is None and info.shear is None:
        return np.eye(info.ndim)
    return np.asarray(_physical(info.ndim, rotate=info.rotate, shear=info.shear).linear_matrix,
                      dtype=float)


def shifted_translate(info: ImageInfo, offset: Sequence[float]) -> tuple[float, ...]:
    """The translate that puts data index 0 where the image's index ``offset`` lies
    (the same scale, rotation and shear): ``translate + R S (scale * offset)``."""
    step = np.asarray(info.scale, dtype=float) * np.asarray(offset, dtype=float)
    return tuple(float(v) for v in np.asarray(info.translate, dtype=float) + _linear(info) @ step)


def data_to_world(info: ImageInfo) -> npt.NDArray[np.float64]:
    """The image's full data-to-world matrix (homogeneous, ``ndim + 1`` square)."""
    n = info.ndim
    physical = _physical(n, scale=info.scale, translate=info.translate, rotate=info.rotate,
                         shear=info.shear)
    affine = info.affine if info.affine is not None else np.eye(n + 1)
    return np.asarray(affine @ physical.affine_matrix, dtype=float)


def _layer_to_world(layer: Any) -> npt.NDArray[np.float64]:
    """Any layer's data-to-world matrix (homogeneous)."""
    physical = _physical(int(layer.ndim), scale=layer.scale, translate=layer.translate,
                         rotate=layer.rotate, shear=layer.shear)
    return np.asarray(layer.affine.affine_matrix @ physical.affine_matrix, dtype=float)


def _last_axes(matrix: npt.NDArray[np.float64], ndim: int) -> npt.NDArray[np.float64]:
    """The homogeneous transform of the last ``ndim`` axes of ``matrix``."""
    n = matrix.shape[0] - 1
    keep = [*range(n - ndim, n), n]
    return matrix[np.ix_(keep, keep)]


# --------------------------------------------------------------------------- stacks


def axis_name(info: ImageInfo, axis: int) -> str:
    labels = info.axis_labels
    if labels and axis < len(labels):
        label = labels[axis]
        # napari's defaults read "-3", "-2", "-1"
        if label and not label.lstrip("-").isdigit():
            return label
    return f"axis {axis}"


def short_axis_name(info: ImageInfo, axis: int) -> str:
    """A short name for a leading axis in titles: its label, else z (last), t, c, ..."""
    labels = info.axis_labels
    if labels and axis < len(labels):
        label = labels[axis]
        if label and not label.lstrip("-").isdigit():
            return label
    from_end = info.n_leading - 1 - axis
    return ("z", "t", "c")[from_end] if from_end < 3 else f"axis {axis}"


def slice_words(info: ImageInfo, source: Sequence[int]) -> str:
    """A slice of the leading axes for a message, e.g. ``"z = 0"`` or ``"t = 1, z = 3"``."""
    return ", ".join(f"{short_axis_name(info, a)} = {i}" for a, i in enumerate(source))


def stack_choices(info: ImageInfo) -> list[tuple[str, Any]]:
    """``(label, value)`` choices for the stack combo; empty for a plain 2D image."""
    if info.n_leading == 0:
        return []
    choices: list[tuple[str, Any]] = []
    if info.n_leading > 1:
        total = int(np.prod(info.leading_shape))
        choices.append((f"all {total} planes", ALL))
    for axis in range(info.n_leading):
        n = info.leading_shape[axis]
        rest = ", others at the current slice" if info.n_leading > 1 else ""
        choices.append((f"{axis_name(info, axis)}: all {n} slices{rest}", axis))
    choices.append(("current slice only", CURRENT))
    return choices


def current_index(layer_world_to_data: Any, point: Sequence[float],
                  leading_shape: Sequence[int]) -> tuple[int, ...]:
    """The leading-axis index under the viewer's dims ``point`` (world coordinates)."""
    coords = np.asarray(layer_world_to_data(point), dtype=float)
    lead = coords[: len(leading_shape)]
    return tuple(int(np.clip(np.round(c), 0, n - 1))
                 for c, n in zip(lead, leading_shape, strict=True))


def iterated_axes(mode: Any, n_leading: int) -> tuple[int, ...]:
    if n_leading == 0 or mode == CURRENT:
        return ()
    if mode == ALL or mode is None:
        return tuple(range(n_leading))
    axis = int(mode)
    if not 0 <= axis < n_leading:
        raise ValueError(f"stack axis {axis} is out of range")
    return (axis,)


@dataclass(frozen=True)
class Plane:
    """One 2D plane to restore: where it comes from and where it goes."""

    source: tuple[int, ...]  # index into the input's leading axes
    target: tuple[int, ...]  # index into the output's leading axes


def planes(info: ImageInfo, mode: Any, current: Sequence[int]
           ) -> tuple[list[Plane], tuple[int, ...]]:
    """The planes to restore and the output's leading shape."""
    axes = iterated_axes(mode, info.n_leading)
    lead = info.leading_shape
    out_lead = tuple(lead[a] if a in axes else 1 for a in range(info.n_leading))
    found = []
    for combo in itertools.product(*(range(lead[a]) for a in axes)):
        chosen = dict(zip(axes, combo, strict=True))
        source = tuple(chosen.get(a, int(current[a])) for a in range(info.n_leading))
        target = tuple(chosen.get(a, 0) for a in range(info.n_leading))
        found.append(Plane(source, target))
    return found, out_lead


# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Box:
    """A rectangle of pixels of one plane: rows ``y0:y1``, columns ``x0:x1``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def slices(self, scale: int = 1) -> tuple[slice, slice]:
        return (slice(self.y0 * scale, self.y1 * scale), slice(self.x0 * scale, self.x1 * scale))


def crop_info(info: ImageInfo, box: Box, index: Sequence[int]) -> ImageInfo:
    """The plane at leading ``index`` cropped to ``box``, placed where it lies in the image.

    Leading axes are kept with length 1 (translated to the slice), so the crop
    lines up with the input in any viewer dimensionality.
    """
    n = info.n_leading
    lead = tuple(slice(int(i), int(i) + 1) for i in index)
    data = np.asarray(info.data[lead + box.slices()])  # the crop only, of a lazy array
    translate = shifted_translate(info, [*(int(i) for i in index[:n]), box.y0, box.x0])
    return dataclasses.replace(info, data=data, translate=translate)


# --------------------------------------------------------------------------- masks


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=1e-6, atol=1e-9))


def check_aligned(what: str, layer: Any, info: ImageInfo, ndim: int) -> None:
    """Raise ValueError unless ``layer`` places its pixels where the image's are (its
    last ndim axes: scale, translate, rotation, shear and affine)."""
    scale = tuple(float(s) for s in layer.scale)[-ndim:]
    translate = tuple(float(t) for t in layer.translate)[-ndim:]
    want_scale, want_translate = info.scale[-ndim:], info.translate[-ndim:]
    if not (_same(scale, want_scale) and _same(translate, want_translate)):
        raise ValueError(
            f"{what} {layer.name!r} is not aligned with image {info.name!r}: scale "
            f"{_fmt(scale)} vs {_fmt(want_scale)}, translate {_fmt(translate)} vs "
            f"{_fmt(want_translate)}. Give the {what} the image's scale and translate."
        )
    mine = _last_axes(_layer_to_world(layer), ndim)
    want = _last_axes(data_to_world(info), ndim)
    if not np.allclose(mine, want, rtol=1e-6, atol=1e-9):
        raise ValueError(
            f"{what} {layer.name!r} is not aligned with image {info.name!r}: its rotation, "
            f"shear or affine differs. Give the {what} the image's transform.")


#: why inpainting cannot start without a mask layer
NEEDS_MASK = ("inpainting needs a mask layer (Labels, Shapes or Image): nonzero where pixels "
              "are to be filled; without one, a float image's NaN pixels are filled")


def missing_holes(info: ImageInfo, plane: Any) -> npt.NDArray[np.bool_]:
    """(H, W): the NaN or infinite pixels of one plane of the image, which inpainting
    fills when no mask layer is chosen, as the engine does (an RGBA layer's alpha is
    copied, not filled)."""
    from napari_specdip.core.imaging import missing_pixels

    data = np.asarray(plane)
    if info.rgb and data.shape[-1] == 4:
        data = data[..., :3]
    return missing_pixels(data, channels_last=info.rgb)


def nan_holes(info: ImageInfo, plane: Any) -> npt.NDArray[np.bool_]:
    """:func:`missing_holes` of a plane that must have some (ValueError otherwise)."""
    if np.dtype(info.data.dtype).kind != "f":
        raise ValueError(NEEDS_MASK)
    holes = missing_holes(info, plane)
    if not holes.any():
        raise ValueError(f"image {info.name!r} has no NaN pixel to fill: choose a mask layer "
                         "(Labels, Shapes or Image), nonzero where pixels are to be filled")
    return holes


def mask_array(layer: Any, info: ImageInfo) -> npt.NDArray[np.bool_]:
    """Boolean mask (True: fill) of the image's plane shape or of its whole stack.

    Labels and Image layers must have the image's shape and transform; a Shapes
    layer is rasterised on the image's pixel grid (its vertices are mapped
    through world coordinates, so any scale/translate works).
    """
    from napari.layers import Image, Labels, Shapes

    plane = info.plane_shape
    if isinstance(layer, Shapes):
        mask = _rasterise_shapes(layer, info)
    elif isinstance(layer, Labels | Image):
        if getattr(layer, "multiscale", False):
            raise ValueError(f"mask {layer.name!r} is multiscale; use a single-scale layer")
        if isinstance(layer, Image) and layer.rgb:
            raise ValueError(f"mask {layer.name!r} is an RGB image; use a Labels, Shapes or "
                             "single-channel image layer")
        data = np.asarray(layer.data)
        if data.shape == plane:
            check_aligned("mask", layer, info, 2)
        elif data.shape == info.spatial_shape:
            check_aligned("mask", layer, info, info.ndim)
        else:
            stack = (f" or {info.spatial_shape} (one mask per slice)"
                     if info.n_leading else "")
            raise ValueError(f"mask {layer.name!r} has shape {data.shape} but image "
                             f"{info.name!r} needs {plane}{stack}")
        if data.dtype.kind not in "uifb":
            raise ValueError(f"mask {layer.name!r} must be numeric, got dtype {data.dtype}")
        mask = data != 0
    else:
        # ValueError, like every other message for the user (the widget shows them)
        raise ValueError(  # noqa: TRY004
            f"mask {layer.name!r} must be a Labels, Shapes or Image layer")
    if not mask.any():
        raise ValueError(f"mask {layer.name!r} marks no pixel of image {info.name!r} to fill")
    return mask


def _rasterise_shapes(layer: Any, info: ImageInfo) -> npt.NDArray[np.bool_]:
    from napari.layers import Shapes

    if layer.nshapes == 0:
        raise ValueError(f"mask {layer.name!r} holds no shapes")
    shape: tuple[int, ...]
    if layer.ndim == 2:
        target_ndim, shape = 2, info.plane_shape
    elif layer.ndim == info.ndim:
        target_ndim, shape = info.ndim, info.spatial_shape
    else:
        raise ValueError(f"mask {layer.name!r} is a {layer.ndim}D Shapes layer; image "
                         f"{info.name!r} needs 2D shapes or {info.ndim}D shapes")
    # vertices -> world -> the image's pixels, through both layers' whole transforms
    to_pixels = np.linalg.inv(_last_axes(data_to_world(info), target_ndim)) @ _last_axes(
        _layer_to_world(layer), target_ndim)
    data = []
    for v in layer.data:
        points = np.asarray(v, dtype=float)
        homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1)
        data.append((homogeneous @ to_pixels.T)[:, :-1])
    grid = Shapes(data, shape_type=list(layer.shape_type), ndim=target_ndim)
    masks = np.asarray(grid.to_masks(mask_shape=shape), dtype=bool)
    return np.asarray(masks.any(axis=0), dtype=bool)


def reference_array(layer: Any, info: ImageInfo, scale: int) -> npt.NDArray[Any]:
    """Clean reference of one output plane, or of the whole (leading axes) stack."""
    if getattr(layer, "multiscale", False):
        raise ValueError(f"reference {layer.name!r} is multiscale; use a single-scale layer")
    data = np.asarray(layer.data)
    h, w = info.plane_shape
    plane = (h * scale, w * scale) + ((info.data.shape[-1],) if info.rgb else ())
    stack = info.leading_shape + plane
    if data.shape != plane and data.shape != stack:
        also = f" or {stack}" if info.n_leading else ""
        raise ValueError(f"reference {layer.name!r} has shape {data.shape} but the restored "
                         f"image will have shape {plane}{also}")
    return data


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class CopiedPlane:
    """A slice of a stack with nothing to restore, copied through as it is: a constant
    slice (a blank first plane, say), or one whose inpainting mask marks no pixel
    (fitting it anyway would only smooth it).

    Stands in the plan's jobs where a :class:`~napari_specdip.core.engine.RestoreJob`
    would; its run copies the slice (upscaled for super-resolution) at once, as the
    CLI does, instead of refusing the whole stack.
    """

    image: npt.NDArray[Any]
    factor: int = 1
    reason: str = CONSTANT
    reference: None = None

    def run(self) -> Generator[StepReport, None, RestoreResult]:
        from napari_specdip.core.results import RestoreResult

        image = self.image
        if self.factor > 1:
            image = np.repeat(np.repeat(image, self.factor, axis=0), self.factor, axis=1)
        yield from ()
        return RestoreResult(image=np.array(image, copy=True), iterations=0,
                             stop_reason=self.reason, stop_iteration=0, history={},
                             parameters={}, device="none", elapsed=0.0,
                             intensity_range=(float(np.min(image)), float(np.max(image))))


@dataclass(frozen=True)
class LazyJob:
    """A slice of a stack, checked at the click and planned when its turn comes.

    ``plan(plane)`` gives its :class:`~napari_specdip.core.engine.RestoreJob`; the
    plane is read from ``source[index]`` (the layer's array, a lazy one too) by the
    worker, so the run holds one slice's float64 copy at a time, not the stack's.
    """

    source: Any
    index: tuple[int, ...]
    plan: Callable[[npt.NDArray[Any]], RestoreJob]
    reference: npt.NDArray[Any] | None = None
    #: a part of a layer (a region, one slice) with Poisson-Gaussian noise: the whole
    #: layer, over which its camera values are estimated (its own pixels are too few)
    camera_from: CameraSource | None = None

    def make(self) -> RestoreJob:
        return self.plan(np.asarray(self.source[self.index]))

    def check(self, data: npt.NDArray[Any]) -> None:
        """Plan ``data`` (this job's plane, read) to refuse bad settings now; camera
        values from the whole layer, estimated later on the worker, are stood in for."""
        plan: Any = self.plan
        if self.camera_from is not None:
            plan = functools.partial(plan, noise_camera=checking_camera())
        plan(data)


@dataclass(frozen=True)
class StackSlice:
    """A slice of a stack not read yet: read and checked by the worker before any slice
    is restored (:func:`check_slices`), so that Run answers at once on a long (or lazy)
    stack and a bad slice is still named before any work.

    ``where`` names the slice in messages (``"slice z = 3: "``); ``mask`` is its
    inpainting mask (one that marks no pixel copies the slice through), or else
    ``holes_of`` finds it in the slice (:func:`missing_holes`: its NaN pixels).
    """

    source: Any
    index: tuple[int, ...]
    plan: Callable[[npt.NDArray[Any]], RestoreJob]
    where: str
    mask: npt.NDArray[np.bool_] | None = None
    factor: int = 1
    reference: npt.NDArray[Any] | None = None
    camera_from: CameraSource | None = None
    holes_of: Callable[[npt.NDArray[Any]], npt.NDArray[np.bool_]] | None = None

    def check(self) -> CopiedPlane | LazyJob:
        """Read the slice: a copy of it where there is nothing to restore, else a job
        planned again when its turn comes (raises ValueError naming the slice)."""
        data = np.asarray(self.source[self.index])  # a lazy (dask) plane: read once
        mask = self.mask if self.holes_of is None else self.holes_of(data)
        reason = copy_reason(data, mask)
        if reason is not None:
            return CopiedPlane(data, factor=self.factor, reason=reason)
        # planned again at its turn: a planned slice holds float64 copies, which for
        # every slice at once could outgrow the memory the stack itself takes
        job = LazyJob(self.source, self.index, self.plan, self.reference, self.camera_from)
        try:
            job.check(data)  # refuses a bad slice now, before any work
        except ValueError as exc:
            raise ValueError(f"{self.where}{exc}") from exc
        return job


#: what a run's plan holds for each plane once its slices are checked
Checked = Union["RestoreJob", CopiedPlane, LazyJob]
#: what a run's plan holds for each plane
Job = Union[Checked, StackSlice]


@dataclass(frozen=True)
class SliceCheck:
    """What the worker reports while it reads and checks a stack's slices: ``done`` of
    ``total`` (there are no iterations yet)."""

    done: int
    total: int


def check_slices(jobs: Sequence[Job], name: str
                 ) -> Generator[SliceCheck, None, list[Checked]]:
    """Read and check every :class:`StackSlice` of ``jobs``, reporting after each;
    returns the checked jobs (ValueError for a bad slice, or when every slice is copied
    through). ``name`` is the image's, for the message."""
    checked: list[Checked] = []
    for k, job in enumerate(jobs):
        if isinstance(job, StackSlice):
            checked.append(job.check())
            yield SliceCheck(k + 1, len(jobs))
        else:
            checked.append(job)
    refuse_if_all_copied(checked, name)
    return checked


def checking_camera() -> Any:
    """Stand-in camera values for checking a job on the main thread whose values come
    from its whole layer, estimated later on the worker (they enter no check)."""
    from napari_specdip.core.noise import CameraEstimate

    return CameraEstimate(gain=1.0, read_sigma=1.0, offset=0.0, black_from="given",
                          samples=0, slices=0, of=0)


@dataclass(frozen=True)
class CameraSource:
    """The planes a camera estimate reads: every plane of a layer, read when asked
    for, with its channel axis and the pixels to ignore (an inpainting mask's).

    ``data`` and ``mask`` are the layer's own arrays: the estimate of a layer is kept
    (:func:`layer_camera`) while they are alive, so that the next region preview of
    it starts at once instead of reading the whole layer again (5 s at 2048 px).
    """

    planes: Sequence[Any]
    channel_axis: int | None = None
    known: npt.NDArray[np.bool_] | None = None
    data: Any = None
    mask: Any = None

    @classmethod
    def of_layer(cls, info: ImageInfo, mask: npt.NDArray[np.bool_] | None) -> CameraSource:
        from napari_specdip.core.noise import LazySlices

        shape = info.leading_shape
        planes = LazySlices(int(np.prod(shape, dtype=np.int64)),
                            lambda k: info.data[np.unravel_index(k, shape)] if shape
                            else info.data)
        return cls(planes, -1 if info.rgb else None,
                   None if mask is None else ~np.asarray(mask, bool), info.data, mask)


#: the camera estimates of the layers last previewed: (weak references to the layer's
#: data and mask, the values given) -> estimate; a few, the latest last
_LAYER_CAMERAS: list[tuple[Any, Any, tuple[Any, ...], Any]] = []
_LAYER_CAMERAS_KEPT = 4


def _alive(ref: Any, obj: Any) -> bool:
    return (ref is None and obj is None) or (ref is not None and ref() is obj)


def layer_camera(source: CameraSource, params: RestoreParameters) -> Any:
    """The camera values of ``source``'s layer: estimated once while its data (and
    mask) stay the same objects, for the values ``params`` does not give."""
    import weakref

    from napari_specdip.core.noise import estimate_camera

    given = (params.noise_gain, params.noise_read_sigma, params.noise_offset)
    for data_ref, mask_ref, was_given, camera in _LAYER_CAMERAS:
        if was_given == given and _alive(data_ref, source.data) and _alive(mask_ref,
                                                                           source.mask):
            return camera
    camera = estimate_camera(source.planes, channel_axis=source.channel_axis,
                             known=source.known, gain=params.noise_gain,
                             read_sigma=params.noise_read_sigma, offset=params.noise_offset)
    try:
        refs = [None if obj is None else weakref.ref(obj) for obj in (source.data, source.mask)]
    except TypeError:  # an array type that takes no weak reference: not kept
        return camera
    _LAYER_CAMERAS.append((refs[0], refs[1], given, camera))
    del _LAYER_CAMERAS[:-_LAYER_CAMERAS_KEPT]
    return camera


def with_camera(checked: list[Checked]) -> list[Checked]:
    """Hand the camera values of the whole layer (:func:`layer_camera`) to every job
    of a plan that asks for them: a region preview, one slice or every slice of a
    stack, with Poisson-Gaussian noise (ValueError when the layer holds too little to
    estimate them from)."""
    done: list[Checked] = []
    for job in checked:
        if not isinstance(job, LazyJob) or job.camera_from is None:
            done.append(job)
            continue
        plan: Any = job.plan
        camera = layer_camera(job.camera_from, plan.keywords["parameters"])
        done.append(LazyJob(job.source, job.index, functools.partial(plan, noise_camera=camera),
                            job.reference))
    return done


def refuse_if_all_copied(jobs: Sequence[Job], name: str) -> None:
    """ValueError when every slice of image ``name`` is to be copied through."""
    if jobs and all(isinstance(j, CopiedPlane) for j in jobs):
        raise ValueError(f"every slice of image {name!r} is constant or has no pixel to "
                         "fill (masked or NaN): nothing to restore")


@dataclass
class RunPlan:
    """Everything one run needs, snapshotted on the main thread."""

    info: ImageInfo
    params: RestoreParameters
    planes: list[Plane]
    jobs: list[Job]
    out_leading: tuple[int, ...]
    fixed_index: tuple[int, ...]  # current index used on non-iterated leading axes
    iterated: tuple[int, ...]
    mode_label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the region of the input restored by a region preview (None: the whole image)
    region: Box | None = None
    #: each plane starts from the network weights of the plane before
    warm_start: bool = False
    #: inpainting's mask layer (None: the image's NaN pixels are the holes)
    mask_layer: str | None = None

    @property
    def task(self) -> str:
        return self.params.task

    @property
    def factor(self) -> int:
        return int(self.params.factor) if self.task == "super-resolve" and self.params.factor else 1

    @property
    def out_plane_shape(self) -> tuple[int, ...]:
        h, w = self.info.plane_shape
        f = self.factor
        return (h * f, w * f) + ((self.info.data.shape[-1],) if self.info.rgb else ())

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.out_leading + self.out_plane_shape

    @property
    def total_iterations(self) -> int:
        return len(self.jobs) * self.params.max_iterations

    def output_name(self) -> str:
        """The name of a finished result, e.g. ``"noisy photo denoised"``."""
        word = TASK_WORDS[self.task]
        name = f"{self.info.name} {word}"
        return f"{name} x{self.factor}" if self.task == "super-resolve" else name

    def result_name(self, results: Sequence[RestoreResult]) -> str:
        """The output's name; a stopped run's says so (``"... (stopped at 412)"``)."""
        if self.region is not None:
            return self.region_name()
        name = self.output_name()
        stopped = [k for k, r in enumerate(results) if r.stop_reason == "stopped"]
        if not stopped:
            if len(results) < len(self.jobs):
                return f"{name} (partial: {len(results)} of {len(self.jobs)} slices)"
            return name
        k = stopped[0]
        at = results[k].iterations
        if len(self.jobs) > 1:
            return f"{name} (stopped at {at} in slice {k + 1} of {len(self.jobs)})"
        return f"{name} (stopped at {at})"

    def preview_name(self) -> str:
        return f"{self.info.name} [specdip preview]"

    def region_name(self) -> str:
        return f"{self.info.name} [specdip region preview]"

    def plane_title(self, k: int) -> str:
        """Which plane the charts show, e.g. ``"z = 2 (3 of 5)"``; empty for one plane."""
        if len(self.jobs) < 2:
            return ""
        source = self.planes[k].source
        where = ", ".join(f"{short_axis_name(self.info, a)} = {source[a]}"
                          for a in (self.iterated or range(self.info.n_leading)))
        return f"{where} ({k + 1} of {len(self.jobs)})"

    def preview_canvas(self) -> PreviewStack | None:
        """The stack preview before any plane is restored: the input (planes not yet
        reached show as they are, not black); None for a single plane."""
        if self.info.n_leading == 0:
            return None
        return PreviewStack(self)

    def placement(self) -> dict[str, Any]:
        """scale/translate/units/axis_labels of the output (super-resolution: finer grid)."""
        info = self.info
        scale = list(info.scale)
        n = info.n_leading
        # where the output's index 0 lies, in the input's pixels: the current position
        # on the axes not iterated (a single slice), half a pixel in on a finer grid
        offset = [0.0 if a in self.iterated else float(self.fixed_index[a]) for a in range(n)]
        f = self.factor
        offset += [-0.5 + 0.5 / f] * 2
        if f > 1:
            for a in (n, n + 1):
                scale[a] = info.scale[a] / f
        kwargs: dict[str, Any] = {"scale": tuple(scale),
                                  "translate": shifted_translate(info, offset)}
        for key in ("rotate", "shear", "affine"):
            value = getattr(info, key)
            if value is not None:
                kwargs[key] = value
        if info.units is not None:
            kwargs["units"] = info.units
        if info.axis_labels is not None:
            kwargs["axis_labels"] = info.axis_labels
        return kwargs

    def display(self) -> dict[str, Any]:
        """How the input is shown: contrast limits, colormap, gamma, rgb."""
        info = self.info
        kwargs: dict[str, Any] = {"rgb": info.rgb, "gamma": info.gamma,
                                  "blending": info.blending}
        if info.contrast_limits is not None:
            kwargs["contrast_limits"] = info.contrast_limits
        if info.colormap is not None:
            kwargs["colormap"] = info.colormap
        return kwargs

    def world_point(self, plane: Plane) -> dict[int, float]:
        """World coordinate (per layer axis) of a plane, for the iterated axes."""
        return {a: self.info.translate[a] + self.info.scale[a] * plane.source[a]
                for a in self.iterated}

    def filler(self, plane: Plane) -> npt.NDArray[Any]:
        """Stand-in for a plane the run never reached: the input (upsampled when needed)."""
        data: npt.NDArray[Any] = np.asarray(self.info.data[plane.source])
        f = self.factor
        if f > 1:
            data = np.repeat(np.repeat(data, f, axis=0), f, axis=1)
        return data


class PreviewStack:
    """A stack's live preview as napari reads it: each plane the run has previewed,
    and the input's own plane (read when napari asks for it) everywhere else.

    An array-like (``shape``, ``dtype``, ``ndim``, indexing), so that the click on Run
    reads no plane and the preview holds only the planes previewed so far, not a copy
    of the whole stack. ``stack[target] = plane`` stores a plane's preview.
    """

    def __init__(self, plan: RunPlan) -> None:
        self._plan = plan
        self._planes = {plane.target: plane for plane in plan.planes}
        self._shown: dict[tuple[int, ...], npt.NDArray[Any]] = {}
        self.shape: tuple[int, ...] = plan.out_shape
        self.dtype = np.dtype(plan.info.data.dtype)
        self.ndim = len(self.shape)
        self._leading = len(plan.out_leading)

    def __len__(self) -> int:
        return self.shape[0]

    def plane(self, target: tuple[int, ...]) -> npt.NDArray[Any]:
        shown = self._shown.get(target)
        if shown is not None:
            return shown
        return np.asarray(self._plan.filler(self._planes[target]), dtype=self.dtype)

    def __setitem__(self, target: tuple[int, ...], plane: npt.ArrayLike) -> None:
        if target not in self._planes:
            raise IndexError(f"{target} is not a plane of the preview stack")
        self._shown[target] = np.asarray(plane, dtype=self.dtype)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        lead, rest = key[:self._leading], key[self._leading:]
        if not all(isinstance(k, slice | int | np.integer) for k in lead):
            whole: npt.NDArray[Any] = np.asarray(self)[key]  # fancy indexing: whole stack
            return whole
        ranges = [range(n)[k] if isinstance(k, slice) else [range(n)[k]]
                  for k, n in zip(lead, self.shape, strict=False)]
        kept = [len(r) for r, k in zip(ranges, lead, strict=True) if isinstance(k, slice)]
        planes = [self.plane(tuple(index))[rest] for index in itertools.product(*ranges)]
        if not planes:  # an empty selection: its shape from a plane that holds no data
            plane = np.broadcast_to(np.zeros((), self.dtype), self.shape[self._leading:])
            return np.empty(tuple(kept) + plane[rest].shape, dtype=self.dtype)
        return np.stack(planes).reshape(tuple(kept) + planes[0].shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype, copy=False)


#: a plane stopped before this many iterations holds nothing useful (a nearly flat image)
USEFUL_ITERATIONS = 20


def useful_results(results: Sequence[RestoreResult], *,
                   minimum: int = USEFUL_ITERATIONS) -> list[RestoreResult]:
    """The results worth a layer: a plane stopped by the user before ``minimum``
    iterations is dropped (it is nearly flat); nothing else is."""
    kept = list(results)
    if kept and kept[-1].stop_reason == "stopped" and kept[-1].iterations < minimum:
        kept.pop()
    return kept


def assemble(plan: RunPlan, results: list[RestoreResult]
             ) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    """Output array and metadata for the planes restored (others filled from the input)."""
    if not results:
        raise ValueError("the run ended before any result")
    info = plan.info
    if info.n_leading == 0:
        image = results[0].image
        meta = results[0].metadata()
        meta["specdip"]["source_layer"] = info.name
        if plan.task == "inpaint":
            meta["specdip"]["mask_layer"] = plan.mask_layer
        return image, _with_region(plan, meta)

    out = np.empty(plan.out_shape, dtype=results[0].image.dtype)
    for k, plane in enumerate(plan.planes):
        out[plane.target] = results[k].image if k < len(results) else plan.filler(plane)
    # the run record of a restored slice (a slice copied through has none)
    meta = next((r for r in results if r.stop_reason not in COPIED), results[0]).metadata()
    sd = meta["specdip"]
    missing = len(plan.planes) - len(results)
    sd["source_layer"] = info.name
    sd["iterations"] = [r.iterations for r in results] + [0] * missing
    sd["stop_reason"] = [r.stop_reason for r in results] + ["not run"] * missing
    sd["stop_iteration"] = [r.stop_iteration for r in results] + [0] * missing
    sd["metrics"] = [r.metrics for r in results] + [{}] * missing
    sd["intensity_range"] = [list(r.intensity_range) for r in results] + [None] * missing
    sd["elapsed_seconds"] = round(sum(r.elapsed for r in results), 3)
    sd["stack"] = {
        "mode": plan.mode_label,
        "axes": list(plan.iterated),
        "planes": [list(p.source) for p in plan.planes],
        "input_shape": list(info.data.shape),
        "warm_start": plan.warm_start,
        # which slices really started from the slice before's weights
        "warm_started": [bool(r.parameters.get("warm_start")) for r in results]
                        + [False] * missing,
    }
    models = [r.parameters.get("noise_model") for r in results]
    if any(m is not None for m in models):
        sd["noise_model_per_slice"] = models + [None] * missing
    if plan.task == "inpaint":
        sd["mask_layer"] = plan.mask_layer
        # the parameters are one slice's: each slice's holes are its own
        sd["filled_pixels_per_slice"] = ([int(r.parameters.get("filled_pixels", 0))
                                          for r in results] + [0] * missing)
    return out, _with_region(plan, meta)


def assemble_uncertainty(plan: RunPlan, results: Sequence[RestoreResult]
                         ) -> npt.NDArray[np.float32] | None:
    """An ensemble's standard deviation laid out as the output, one value per
    pixel (RGB: root mean square over the channels; planes not restored: 0); None
    without an ensemble."""
    maps = [r.uncertainty for r in results]
    if not maps or all(m is None for m in maps):
        return None

    shape = plan.out_plane_shape[:2]

    def per_pixel(r: RestoreResult) -> npt.NDArray[np.float32]:
        if r.uncertainty is None:
            return np.zeros(shape, np.float32)
        values = np.asarray(r.uncertainty, dtype=np.float32)
        if plan.info.rgb:
            if r.parameters.get("alpha"):  # its 0 would only dilute the colours' spread
                values = values[..., :-1]
            values = np.sqrt(np.mean(np.square(values), axis=-1))
        return values.reshape(shape)

    if plan.info.n_leading == 0:
        return per_pixel(results[0])
    out = np.zeros(plan.out_leading + plan.out_plane_shape[:2], dtype=np.float32)
    for k, plane in enumerate(plan.planes[: len(maps)]):
        out[plane.target] = per_pixel(results[k])
    return out


def _with_region(plan: RunPlan, meta: dict[str, Any]) -> dict[str, Any]:
    """Record which pixels of the input a region preview restored."""
    if plan.region is not None:
        b = plan.region
        meta["specdip"]["region"] = {"rows": [b.y0, b.y1], "columns": [b.x0, b.x1]}
    return meta
