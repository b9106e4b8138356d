"""How a file's array splits into 2D images for the engine: channel, stack and spatial axes.

The engine restores one 2D image (gray, or with a channel axis) at a time; a
stack (``ZYX``, ``TYX``, ``TZCYX``...) is restored slice by slice and put back
together in the file's axis order. An alpha channel (RGBA, gray + alpha) is not
restored: it is carried over unchanged (repeated for super-resolution).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_specdip.cli.errors import UsageError
from napari_specdip.core.imaging import MIN_SIDE

AUTO = "auto"
NONE = "none"


def parse_axis(text: str) -> str | int:
    """argparse type for ``--channel-axis`` / ``--stack-axis``: auto, none or an integer."""
    value = text.strip().lower()
    if value in (AUTO, NONE):
        return value
    try:
        return int(value)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'none' or an integer, got {text!r}") from None


@dataclass(frozen=True)
class StackLayout:
    """The roles of a file array's axes."""

    shape: tuple[int, ...]
    channel_axis: int | None  # in the file's array, non-negative
    spatial: tuple[int, int]  # (row axis, column axis)
    stack: tuple[int, ...]  # axes restored slice by slice, in order
    alpha: bool = False  # the last channel is alpha: kept, not restored

    @property
    def perm(self) -> tuple[int, ...]:
        """File order -> canonical order (stack..., Y, X[, C])."""
        tail = () if self.channel_axis is None else (self.channel_axis,)
        return self.stack + self.spatial + tail

    @property
    def stack_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in self.stack)

    @property
    def spatial_shape(self) -> tuple[int, int]:
        return self.shape[self.spatial[0]], self.shape[self.spatial[1]]

    @property
    def channels(self) -> int | None:
        return None if self.channel_axis is None else self.shape[self.channel_axis]

    @property
    def n_slices(self) -> int:
        return int(np.prod(self.stack_shape, dtype=np.int64))

    @property
    def is_stack(self) -> bool:
        return bool(self.stack)

    def indices(self) -> Iterator[tuple[int, ...]]:
        """Index of every slice in the stack axes (one empty index for a single image)."""
        return iter(np.ndindex(*self.stack_shape)) if self.stack else iter([()])

    def canonical(self, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.transpose(data, self.perm)

    def engine_image(self, canonical: npt.NDArray[Any], index: tuple[int, ...]
                     ) -> tuple[npt.NDArray[Any], int | None, npt.NDArray[Any] | None]:
        """(image for the engine, its channel_axis, alpha plane or None) of one slice."""
        image = canonical[index]
        alpha = None
        if self.alpha:
            image, alpha = image[..., :-1], image[..., -1]
            if image.shape[-1] == 1:
                image = image[..., 0]
        return np.ascontiguousarray(image), (-1 if image.ndim == 3 else None), alpha

    def output_slice_shape(self, scale: int) -> tuple[int, ...]:
        h, w = self.spatial_shape
        tail = () if self.channel_axis is None else (self.shape[self.channel_axis],)
        return (h * scale, w * scale) + tail

    def output_shape(self, scale: int) -> tuple[int, ...]:
        out = list(self.shape)
        for a in self.spatial:
            out[a] *= scale
        return tuple(out)

    def new_canonical_output(self, scale: int, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
        return np.zeros(self.stack_shape + self.output_slice_shape(scale), dtype=dtype)

    def put(self, out: npt.NDArray[Any], index: tuple[int, ...], restored: npt.NDArray[Any],
            alpha: npt.NDArray[Any] | None, scale: int) -> None:
        """Store one restored slice (and its alpha, upscaled if needed) in ``out``."""
        if self.alpha:
            if restored.ndim == 2:
                restored = restored[..., None]
            assert alpha is not None
            if scale > 1:
                alpha = np.repeat(np.repeat(alpha, scale, axis=0), scale, axis=1)
            restored = np.concatenate([restored, alpha[..., None].astype(restored.dtype)], axis=-1)
        out[index] = restored

    def to_file_order(self, canonical_out: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return np.ascontiguousarray(np.transpose(canonical_out, np.argsort(self.perm)))

    def short_axis_problem(self) -> str | None:
        """Why the file's layout cannot be restored when one of its spatial axes is
        shorter than an image may be, with the ``--channel-axis`` that likely fits,
        in the file's own axis numbers (None when both are long enough)."""
        short = [a for a in self.spatial if self.shape[a] < MIN_SIDE]
        if not short:
            return None
        axis = short[-1]
        sizes = " x ".join(str(self.shape[a]) for a in self.spatial)
        problem = (f"image of shape {self.shape} taken as {sizes} pixels (axes "
                   f"{self.spatial[0]} and {self.spatial[1]}), need at least {MIN_SIDE} x "
                   f"{MIN_SIDE}")
        # as channels, that axis must leave two axes long enough to be the image's
        if sum(n >= MIN_SIDE for a, n in enumerate(self.shape) if a != axis) < 2:
            return problem
        if self.channel_axis is None:
            hint = f"if axis {axis} ({self.shape[axis]} values) holds channels"
        else:
            hint = (f"if axis {axis} ({self.shape[axis]} values) holds the channels, not "
                    f"axis {self.channel_axis}")
        return f"{problem}; {hint}, pass --channel-axis {axis}"

    def describe(self) -> dict[str, Any]:
        return {"channel_axis": self.channel_axis, "stack_axes": list(self.stack),
                "spatial_axes": list(self.spatial), "alpha": self.alpha}


def resolve_layout(shape: tuple[int, ...], *, kind: str, axes: str | None = None,
                   channel_axis: str | int = AUTO, stack_axis: str | int = AUTO) -> StackLayout:
    """Decide the channel, stack and spatial axes of an array read from a file.

    ``channel_axis``: ``"auto"`` (PNG/JPEG: a last axis of 2, 3 or 4; TIFF: the
    samples axis ``S`` of RGB files), ``"none"`` or an axis. ``stack_axis``:
    ``"auto"`` (every axis that is neither channel nor one of the two spatial
    axes, which are TIFF's ``Y``/``X`` or else the last two), ``"none"`` (a
    single image) or one axis.
    """
    ndim = len(shape)
    if ndim < 2:
        raise UsageError(f"an image needs at least 2 axes, got shape {shape}")

    def norm(axis: int, option: str) -> int:
        if not -ndim <= axis < ndim:
            raise UsageError(f"{option} {axis} is out of range for an image of shape {shape}")
        return axis % ndim

    if channel_axis == AUTO:
        c: int | None = None
        if kind in ("png", "jpeg"):
            if ndim == 3 and shape[-1] in (2, 3, 4):
                c = ndim - 1
        elif axes and "S" in axes:
            c = axes.index("S")
        elif not axes and ndim == 3 and shape[-1] in (3, 4):
            c = ndim - 1
    elif channel_axis == NONE:
        c = None
    else:
        c = norm(int(channel_axis), "--channel-axis")
    rest = [a for a in range(ndim) if a != c]

    if stack_axis == NONE:
        if len(rest) != 2:
            raise UsageError(f"image of shape {shape} is not a single 2D image"
                             + (f" (channel axis {c})" if c is not None else "")
                             + "; drop --stack-axis none to restore it slice by slice, or set "
                             "--channel-axis")
        spatial = (rest[0], rest[1])
    elif stack_axis == AUTO:
        if len(rest) < 2:
            raise UsageError(f"image of shape {shape} has no two spatial axes besides channel "
                             f"axis {c}")
        if (axes and "Y" in axes and "X" in axes and axes.index("Y") in rest
                and axes.index("X") in rest):
            spatial = (axes.index("Y"), axes.index("X"))
        else:
            spatial = (rest[-2], rest[-1])
    else:
        s = norm(int(stack_axis), "--stack-axis")
        if s == c:
            raise UsageError(f"--stack-axis and --channel-axis are the same axis ({s})")
        others = [a for a in rest if a != s]
        if len(others) != 2:
            raise UsageError(f"image of shape {shape} with stack axis {s}"
                             + (f" and channel axis {c}" if c is not None else "")
                             + f" leaves {len(others)} axes, not 2 spatial ones; "
                             "use --stack-axis auto for several stack axes")
        spatial = (others[0], others[1])
    stack = tuple(a for a in rest if a not in spatial)

    alpha = False
    if c is not None:
        n = shape[c]
        png_alpha = kind in ("png", "jpeg") and n in (2, 4)
        tiff_alpha = (kind == "tiff" and bool(axes)
                      and axes[c] == "S" and n == 4)  # type: ignore[index]
        alpha = png_alpha or (tiff_alpha and channel_axis == AUTO)
    return StackLayout(shape=tuple(shape), channel_axis=c, spatial=spatial, stack=stack,
                       alpha=alpha)


def split_mask(mask: npt.NDArray[Any], layout: StackLayout, *, mask_kind: str
               ) -> tuple[npt.NDArray[np.bool_] | None, npt.NDArray[np.bool_] | None]:
    """Check a mask against the image: (mask shared by every slice, per-slice canonical mask).

    A colour mask file (PNG/JPEG RGB/RGBA) counts a pixel as masked when any
    colour channel is nonzero. Accepted shapes: the image's spatial shape (one
    mask for every slice) or the image's shape without its channel axis (one
    mask per slice).
    """
    raw = np.asarray(mask)
    if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
        bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
        raise UsageError(f"mask contains {bad} NaN or infinite value(s): mark the pixels to fill "
                         "with nonzero values and the known pixels with 0")
    if raw.ndim == 3 and mask_kind in ("png", "jpeg") and raw.shape[-1] in (2, 3, 4):
        raw = raw[..., : 1 if raw.shape[-1] == 2 else 3]
        m: npt.NDArray[np.bool_] = np.any(raw != 0, axis=-1)
    else:
        m = np.asarray(raw != 0)
    if m.shape == layout.spatial_shape:
        return m, None
    no_channel = tuple(n for a, n in enumerate(layout.shape) if a != layout.channel_axis)
    if layout.is_stack and m.shape == no_channel:
        # file order without the channel axis -> canonical (stack..., Y, X)
        order = [a for a in range(len(layout.shape)) if a != layout.channel_axis]
        perm = [order.index(a) for a in layout.stack + layout.spatial]
        return None, np.transpose(m, perm)
    expected = f"the image's spatial shape {layout.spatial_shape}"
    if layout.is_stack:
        expected += f" (or the stack's shape {no_channel})"
    raise UsageError(f"mask shape {m.shape} does not match {expected}")
