"""Input checks and the round trip between a user's array and the network's canvas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MIN_SIDE = 16  # the blur and sharpness measures need a 16 px interior

#: A float image within [0, 1] that spans less than this share of it holds data in other
#: units (a camera's counts over 65535, as skimage's ``img_as_float`` makes them) and is
#: fitted over its own min..max, as integer data is. Fitted in [0, 1] units, spans of 0.003
#: stopped within 45 iterations and lost 0.2-2.6 dB (0.9 on average, 0.01 alike) on nine
#: held-out images; at 0.1 the two differ by under 0.35 dB either way, from 0.3 up not at all
#: (benchmarks/README.md, *float_units.py*).
FLOAT_FULL_SPAN = 0.25


@dataclass(frozen=True)
class Layout:
    """How to put a [0, 1] (H, W, C) float array back into the user's form."""

    shape: tuple[int, ...]
    channel_axis: int | None
    dtype: np.dtype[Any]
    low: float
    high: float
    # (H, W) alpha plane, carried over unrestored
    alpha: npt.NDArray[Any] | None = field(default=None, compare=False, repr=False)

    def natural_range(self) -> tuple[float, float]:
        """The range the input's dtype stands for: an integer dtype's whole range, a
        float image's [0, 1] where it lies within it (however little of it it spans)
        or else its own min..max (the range restored)."""
        if self.dtype.kind in "ui":
            info = np.iinfo(self.dtype)
            return float(info.min), float(info.max)
        if self.dtype.kind == "b" or (0.0 <= self.low and self.high <= 1.0):
            return 0.0, 1.0
        return self.low, self.high

    def holds(self, target: np.dtype[Any]) -> bool:
        """Whether ``target`` keeps the values in the input's units: a float dtype that
        reaches them, an integer dtype whose range holds the input dtype's (decided by
        the dtypes, not the values: every image of a batch is converted alike). A
        float or bool input into an integer dtype is always rescaled (its [0, 1] is not
        0..255): a restored bool image's values lie anywhere in [0, 1], and 0/1 would
        round them away and differ from the 0/255 of the PNG and JPEG writers."""
        if target.kind in "ui":
            if self.dtype.kind not in "ui":
                return False
            source, wanted = np.iinfo(self.dtype), np.iinfo(target)
            return bool(wanted.min <= source.min and source.max <= wanted.max)
        return _fits(self.low, self.high, target)

    def to_user(self, hwc: npt.NDArray[np.floating[Any]], *,
                dtype: npt.DTypeLike | None = None) -> npt.NDArray[Any]:
        """Map ``hwc`` in [0, 1] to the input's intensity range, layout and dtype
        (the alpha plane, if any, appended as it was; repeated for super-resolution)."""
        values = self.low + np.clip(hwc, 0.0, 1.0) * (self.high - self.low)
        if self.alpha is not None:
            plane = self.alpha.astype(np.float64)
            ry, rx = values.shape[0] // plane.shape[0], values.shape[1] // plane.shape[1]
            if ry > 1 or rx > 1:
                plane = np.repeat(np.repeat(plane, ry, axis=0), rx, axis=1)
            values = np.concatenate([values, plane[..., None]], axis=-1)
        out = values[..., 0] if self.channel_axis is None else np.moveaxis(values, -1, self.channel_axis)
        target = np.dtype(dtype) if dtype is not None else self.dtype
        result: npt.NDArray[Any]
        if target.kind in "ui":
            info = np.iinfo(target)
            if not self.holds(target):  # rescaled, as skimage's img_as_ubyte & co
                low, high = self.natural_range()
                bottom = float(info.min)
                if target.kind == "i" and (self.dtype.kind in "ub" or (low, high) == (0.0, 1.0)):
                    bottom = 0.0  # non-negative data stays non-negative (skimage's img_as_int)
                elif target.kind == "u" and self.dtype.kind == "i":
                    low = 0.0  # skimage's img_as_uint: a signed image's negatives become 0
                out = bottom + (out - low) * ((float(info.max) - bottom) / (high - low))
            result = _rint_into(out, target)
        elif target.kind == "b":
            result = np.asarray(out >= 0.5 * (self.low + self.high))
        elif target.kind == "f":
            result = out.astype(target)
        else:
            raise ValueError(f"cannot return a restoration as dtype {target}")
        return result


def _rint_into(values: npt.NDArray[np.floating[Any]], target: np.dtype[Any]) -> npt.NDArray[Any]:
    """``values`` rounded and clipped into the integer dtype ``target``. A 64-bit
    dtype's largest value has no float64 (``float(2**63 - 1)`` is ``2**63``, which the
    cast wraps round to the smallest value): values that reach it become it exactly."""
    info = np.iinfo(target)
    top = float(info.max)
    rounded = np.rint(values)
    result: npt.NDArray[Any]
    if int(top) <= info.max:
        result = np.clip(rounded, info.min, top).astype(target)
        return result
    result = np.clip(rounded, info.min, np.nextafter(top, 0.0)).astype(target)
    result[rounded >= top] = info.max
    return result


def _fits(low: float, high: float, target: np.dtype[Any]) -> bool:
    return target.kind != "f" or max(abs(low), abs(high)) <= float(np.finfo(target).max)


def is_constant(data: npt.ArrayLike) -> bool:
    """Every value the same: a slice of a stack with nothing to restore, copied through
    by the widget and the command line (a NaN or an infinity makes it not constant,
    an all-infinite slice too: the engine refuses those with its own message)."""
    flat = np.asarray(data).ravel()
    return bool(flat.size) and bool(np.isfinite(flat[0])) and bool(np.all(flat == flat[0]))


def missing_pixels(image: npt.ArrayLike, *, channels_last: bool = False
                   ) -> npt.NDArray[np.bool_]:
    """(H, W): the pixels of a (H, W) image, or (H, W, C) with ``channels_last``, with a
    NaN or infinite value in any channel: the holes inpainting fills without a mask.
    All False for integer images.

    Examples
    --------
    >>> image = np.ones((2, 3))
    >>> image[0, 1] = np.nan
    >>> missing_pixels(image).astype(int)
    array([[0, 1, 0],
           [0, 0, 0]])
    """
    arr = np.asarray(image)
    if arr.dtype.kind not in "fc":
        return np.zeros(arr.shape[:2], bool)
    missing: npt.NDArray[np.bool_] = ~np.isfinite(arr)
    return np.asarray(missing.any(axis=-1)) if channels_last else missing


def as_array(image: Any, name: str = "image") -> npt.NDArray[Any]:
    """``np.asarray(image)``, once: a lazy (dask, zarr) array is computed here and the
    result used from then on, a torch tensor is detached and copied to the host;
    ValueError naming ``name`` when it cannot be read."""
    try:
        if type(image).__module__.startswith("torch") and hasattr(image, "detach"):
            # a tensor that requires grad or lives on a GPU refuses np.asarray
            return np.asarray(image.detach().cpu())
        return np.asarray(image)
    except Exception as exc:  # a layer, a list of odd lengths...
        raise ValueError(f"{name} cannot be read as an array: {exc}") from exc


def as_hwc(image: Any, *, channel_axis: int | None, name: str = "image"
           ) -> tuple[npt.NDArray[np.float64], int | None]:
    """Check ``image`` and return it as float64 (H, W, C) with the normalised channel axis."""
    arr = as_array(image, name)
    if arr.dtype.kind not in "uifb":
        raise ValueError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if channel_axis is None:
        if arr.ndim != 2:
            hint = (" For colour images pass channel_axis=-1; restore stacks slice by slice."
                    if arr.ndim == 3 else " Restore stacks slice by slice.")
            raise ValueError(f"{name} must be 2D without channel_axis, got shape {arr.shape}.{hint}")
        hwc = arr[..., None]
        axis = None
    else:
        if arr.ndim != 3:
            raise ValueError(
                f"{name} with channel_axis={channel_axis} must be 3D (2 spatial axes + channels), "
                f"got shape {arr.shape}"
            )
        if not -3 <= channel_axis < 3:
            raise ValueError(f"channel_axis={channel_axis} is out of range for a 3D {name}")
        axis = int(channel_axis) % 3  # a Python int: it goes into the result's metadata
        hwc = np.moveaxis(arr, axis, -1)
    if min(hwc.shape[:2]) < MIN_SIDE:
        hint = ""
        if axis is not None and hwc.shape[2] >= MIN_SIDE and min(arr.shape) < MIN_SIDE:
            short = int(np.argmin(arr.shape))  # the channels are likely there
            hint = (f"; channel_axis={channel_axis} has {hwc.shape[2]} values: is the "
                    f"colour axis {short} (channel_axis={short - arr.ndim}) instead?")
        raise ValueError(f"{name} is too small: spatial shape {hwc.shape[:2]}, need at least "
                         f"{MIN_SIDE} x {MIN_SIDE} pixels{hint}")
    values = hwc.astype(np.float64)
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        hint = " (task='inpaint' fills them)" if name == "image" else ""
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); fill or crop them "
                         f"first{hint}")
    return values, axis


def intensity_range(values: npt.NDArray[np.float64], dtype: np.dtype[Any],
                    known: npt.NDArray[np.bool_] | None = None) -> tuple[float, float]:
    """The range mapped to [0, 1]: uint8 and floats that fill [0, 1] (at least
    :data:`FLOAT_FULL_SPAN` of it) keep their natural range, anything else (uint16
    microscopy, signed, arbitrary floats, a 16-bit camera's counts as floats over 65535)
    its own min..max, so that the fit does not depend on the data's unit."""
    sample = values if known is None else values[known]
    low, high = float(sample.min()), float(sample.max())
    if high <= low:  # whatever the dtype: a constant image has nothing to restore
        if known is not None and float(values.min()) < float(values.max()):  # the mask's
            raise ValueError(f"every pixel outside the mask is {low:g} ({int(known.sum())} "
                             "known pixel(s)): nothing to fit the holes to; check the mask "
                             "(True/nonzero marks the pixels to fill)")
        raise ValueError(f"image is constant (every pixel is {low:g}): nothing to restore")
    if not np.isfinite(high - low):
        raise ValueError(f"image values span {low:g}..{high:g}, more than float64 can take "
                         "the difference of: rescale the image first")
    if dtype == np.uint8:
        return 0.0, 255.0
    if dtype.kind == "b" or (dtype.kind == "f" and low >= 0.0 and high <= 1.0
                             and high - low >= FLOAT_FULL_SPAN):
        return 0.0, 1.0
    return low, high


def pad_amounts(height: int, width: int, multiple: int, *, minimum: int = 1
                ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) reflective padding up to multiples of ``multiple``
    and at least ``minimum`` pixels per side."""
    ph = max((-height) % multiple, minimum - height)
    pw = max((-width) % multiple, minimum - width)
    ph += (-(height + ph)) % multiple
    pw += (-(width + pw)) % multiple
    return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


def pad_reflect(hwc: npt.NDArray[Any], pads: tuple[int, int, int, int]) -> npt.NDArray[Any]:
    """Reflective padding (numpy repeats the reflection for pads wider than the image)."""
    top, bottom, left, right = pads
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (hwc.ndim - 2)
    return np.pad(hwc, widths, mode="reflect") if any(pads) else hwc
