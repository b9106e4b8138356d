"""The fitting loop: one generator for every task."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import os
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from napari_specdip.core.devices import describe_device, free_device_memory, resolve_device
from napari_specdip.core.ensemble import (SnapshotWindow, ensemble_mean, spread_to_user,
                                          stack_decoders, std_to_user)
from napari_specdip.core.imaging import (Layout, as_array, as_hwc, intensity_range, pad_amounts,
                                         pad_reflect)
from napari_specdip.core.jpeg import (CONSISTENT_EXCESS, JpegEstimate, consistency_threshold,
                                      deblock_budget, estimate_jpeg)
from napari_specdip.core.networks import Decoder, SkipNet, build_network
from napari_specdip.core.noise import (CameraEstimate, NoiseFit, check_camera_units,
                                       check_noise_estimable, check_sigma_units, held_out_noise,
                                       plan_noise)
from napari_specdip.core.operators import Downsampling, Identity, Inpainting, Operator
from napari_specdip.core.params import (AUTO_TILE, AUTO_TILE_FROM, ENHANCE_ITERATIONS,
                                        PAPER_DEPTH, RestoreParameters, ignored_option,
                                        network_depth)
from napari_specdip.core.results import RestoreResult, StepReport
from napari_specdip.core.signals import StepSignals
from napari_specdip.core.stage import apply_stage, white_noise_variance
from napari_specdip.core.tiling import BlendCanvas, Tile, tile_grid
from napari_specdip.stopping import PLATEAU_MAX_KEPT, ConsistencyRule, HoldoutRule, make_rules

RestoreGenerator = Generator[StepReport, None, RestoreResult]


class Interrupt(Protocol):
    """Anything with ``is_set()``, e.g. ``threading.Event``."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class RestoreJob:
    """A checked, self-contained restoration: snapshot of the data and every option.

    Built on the caller's thread by :func:`plan_restore` (all input errors are
    raised there); :meth:`run` does the heavy work and may run on any thread.
    """

    observation: npt.NDArray[np.float64]  # (H, W, C) in [0, 1]
    known: npt.NDArray[np.bool_] | None  # (H, W) True where observed (inpainting)
    reference: npt.NDArray[np.float64] | None  # (H*s, W*s, C) in [0, 1]
    layout: Layout
    params: RestoreParameters
    output_dtype: np.dtype[Any] | None
    interrupt: Interrupt | None
    warm_start: Mapping[str, torch.Tensor] | None = None
    keep_state: bool = False
    # deblocking: the JPEG's quantisation, read from the input, and its grey levels at
    # the fit's 0 and per unit of the fit's [0, 1] (a tile's data keeps the whole's units)
    jpeg: JpegEstimate | None = None
    jpeg_levels: tuple[float, float] = (0.0, 255.0)
    # a slice of a stack: the camera values estimated over the whole stack
    noise_camera: CameraEstimate | None = None

    @property
    def scale(self) -> int:
        return _output_scale(self.params)

    @property
    def kept_known(self) -> npt.NDArray[np.bool_] | None:
        """The observed pixels an inpainting result returns as given (``keep_known``);
        None where the result is the network's output everywhere."""
        p = self.params
        return self.known if p.task == "inpaint" and p.keeps_known else None

    @property
    def tile_side(self) -> int:
        """The tile the run uses (0: the whole image), ``tile="auto"`` decided: tiles on
        a CPU for a large image, unless the run hands its network on."""
        p = self.params
        if p.tile != "auto":
            return int(p.tile)
        if self.warm_start is not None or self.keep_state:
            return 0
        if max(self.observation.shape[:2]) < AUTO_TILE_FROM:
            return 0
        return AUTO_TILE if resolve_device(p.device).type == "cpu" else 0

    @property
    def tiles(self) -> list[Tile]:
        """The tiles the run fits one after another (one: the whole image)."""
        height, width = self.observation.shape[:2]
        side = self.tile_side
        if not side:
            return tile_grid(height, width, tile=max(height, width), overlap=0)
        return tile_grid(height, width, tile=side, overlap=self.params.tile_overlap)

    def tile_job(self, tile: Tile) -> RestoreJob:
        """The job of one tile: its part of the data, in [0, 1] units and (H, W, C)
        layout, so that the tiles' outputs blend before the user's layout is made."""
        rows, cols = tile.slices()
        out_rows, out_cols = tile.slices(self.scale)
        observation = self.observation[rows, cols]
        layout = Layout(shape=observation.shape, channel_axis=-1, dtype=np.dtype(np.float64),
                        low=0.0, high=1.0)
        sigma = self.params.noise_sigma  # in the input's units: the tile's are [0, 1]
        if sigma is not None:
            sigma = sigma / (self.layout.high - self.layout.low)
        return dataclasses.replace(
            self, observation=observation, layout=layout, output_dtype=np.dtype(np.float64),
            known=None if self.known is None else self.known[rows, cols],
            reference=None if self.reference is None else self.reference[out_rows, out_cols],
            params=self.params.replace(tile=0, noise_sigma=sigma),
            jpeg=None if self.jpeg is None else self.jpeg.shifted(rows.start or 0,
                                                                  cols.start or 0))

    def run(self) -> RestoreGenerator:
        """Generator of :class:`StepReport`; returns the :class:`RestoreResult`."""
        return _run(self)


#: the share of the pixels to fill that border a known one, below which a mask that fills
#: most of the image looks inverted (random masks: 1 - fill**4, 0.34 at 90% filled)
INVERTED_MASK_BORDER = 0.05


def _output_scale(params: RestoreParameters) -> int:
    """How many output pixels per observed pixel along each side."""
    return params.factor if params.task == "super-resolve" and params.factor else 1


def plan_restore(image: Any, task: str = "denoise", *, mask: Any = None, factor: int | None = None,
                 channel_axis: int | None = None, reference: Any = None,
                 parameters: RestoreParameters | None = None, output_dtype: Any = None,
                 interrupt: Interrupt | None = None, alpha: bool | None = None,
                 check_memory: bool = True,
                 warm_start: Mapping[str, torch.Tensor] | None = None, keep_state: bool = False,
                 noise_camera: CameraEstimate | None = None, **options: Any) -> RestoreJob:
    """Check the input and options and snapshot them into a :class:`RestoreJob`.

    Takes the same arguments as :func:`iter_restore`; raises ``ValueError`` (or
    ``TypeError`` for an unknown option) with a message fit for a user, and
    ``MemoryError`` with the estimate and what to change when the run would not
    fit into the device's memory (``check_memory=False`` skips that check).
    """
    options = {k: v for k, v in options.items() if v is not None}
    if factor is not None:
        options["factor"] = factor
    if "sigmas" in options:
        try:
            options["sigmas"] = tuple(float(s) for s in options["sigmas"])
        except (TypeError, ValueError):
            raise ValueError(f"sigmas must be a sequence of numbers, got {options['sigmas']!r}"
                             ) from None
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, got {task!r}")
    if parameters is None:
        params = RestoreParameters.for_task(task, **options)
    else:
        if not isinstance(parameters, RestoreParameters):
            raise ValueError("parameters must be a RestoreParameters, got "
                             f"{type(parameters).__name__}")
        if task != parameters.task and task != "denoise":
            raise ValueError(f"task {task!r} disagrees with parameters.task {parameters.task!r}")
        if "preset" in options:
            raise ValueError("preset= chooses the defaults; with parameters= given, build them "
                             "with RestoreParameters.for_task(task, preset=...)")
        params = parameters.replace(**options)
    # an option the task or noise model ignores was most likely meant for another task
    problem = ignored_option(options, params.task, params.noise)
    if problem is not None:
        name, ignoring, needed = problem
        if ignoring == "noise":
            raise ValueError(f"{name}= only makes sense with noise={needed!r}, not "
                             f"{params.noise!r}; leave it out or pass noise={needed!r}")
        raise ValueError(f"{name}= only makes sense for task {needed}, not {params.task!r}; "
                         "leave it out or change the task")
    # numpy scalars (np.int64 seeds...) become Python numbers: torch and JSON want those
    plain = {f: v.item() for f, v in params.as_dict().items() if isinstance(v, np.generic)}
    if plain:
        params = params.replace(**plain)
    resolve_device(params.device)  # an unavailable device is the caller's error, said now
    if channel_axis is not None and (isinstance(channel_axis, bool)
                                     or not isinstance(channel_axis, int | np.integer)):
        raise ValueError(f"channel_axis must be an integer or None, got {channel_axis!r}")
    for name, given in (("image", image), ("mask", mask), ("reference", reference)):
        if isinstance(given, str | os.PathLike):  # np.asarray would make a 0-d string array
            raise ValueError(f"{name} must be an array, got the path {os.fspath(given)!r}: "
                             "read the file first (e.g. imageio.v3.imread or tifffile.imread)")
    image, masked = _unmasked(image, channel_axis)
    image = as_array(image)  # computed once, when lazy
    holes = None
    finite = np.isfinite(image) if params.task == "inpaint" and image.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        if not finite.any():
            raise ValueError("every value of the image is NaN or infinite: nothing is left "
                             "to fit")
        # NaN is how missing pixels are often stored: they are holes to fill, not data
        image, holes = _unmasked(np.ma.masked_invalid(image), channel_axis)
        if holes is not None:
            masked = holes if masked is None else masked | holes
    values, axis = as_hwc(image, channel_axis=channel_axis)
    dtype = image.dtype
    height, width = values.shape[:2]
    # RGBA: the alpha channel is carried over untouched, never restored as a colour. Only
    # guessed where RGBA is stored: channels last, and 8 bits (PNG's) or a fourth plane
    # that is opaque or a cut-out. Four channels first, or a fourth float plane of
    # intensities, are a microscopy stack's (DAPI, GFP, ...), whose fourth would otherwise
    # come back unrestored
    if alpha is None:
        alpha = axis == 2 and values.shape[2] == 4 and (
            dtype == np.uint8 or looks_like_alpha(values[..., 3], dtype))
    elif not isinstance(alpha, bool | np.bool_):
        raise ValueError(f"alpha must be True, False or None, got {alpha!r}")
    alpha_plane = None
    if alpha:
        if axis is None or values.shape[2] < 2:
            raise ValueError("alpha=True needs a channel axis with at least 2 channels "
                             "(the last one is alpha)")
        alpha_plane = np.moveaxis(image, axis, -1)[..., -1].copy()
        values = values[..., :-1]

    known = None
    if masked is not None and params.task != "inpaint":
        raise ValueError(f"image is a masked array with {int(masked.sum())} masked pixel(s): "
                         "their values are not data. Fill them with task='inpaint' (the "
                         "masked pixels become the mask), or restore image.filled(value)")
    if params.task == "inpaint":
        if mask is None and masked is None:
            raise ValueError("inpainting needs a mask: True/nonzero where pixels are to be "
                             "filled (or NaN in a float image, or a numpy masked array)")
        m = np.asarray(mask if mask is not None else masked)
        if m.shape != (height, width):
            raise ValueError(f"mask shape {m.shape} does not match the image's spatial shape "
                             f"{(height, width)}")
        if m.dtype.kind not in "uifb":
            raise ValueError(f"mask must be boolean or numeric, got dtype {m.dtype}")
        if m.dtype.kind == "f" and not np.all(np.isfinite(m)):
            bad = int(m.size - np.count_nonzero(np.isfinite(m)))
            raise ValueError(f"mask contains {bad} NaN or infinite value(s): mark the pixels to "
                             "fill with 1 (or True) and the known pixels with 0")
        known = ~(m.astype(bool))
        if holes is not None and mask is not None and (holes & known).any():
            warnings.warn(f"{int((holes & known).sum())} pixel(s) outside the mask are NaN or "
                          "infinite: they are filled as well", UserWarning, stacklevel=2)
        if masked is not None:  # a masked array's masked pixels are to be filled as well
            known &= ~masked
        if not known.any():
            raise ValueError("the mask covers every pixel: nothing is left to fit")
        if known.all():  # the fit would only smooth the image, which was not asked for
            raise ValueError("the mask marks no pixel to fill: nothing to inpaint (nonzero "
                             "marks the pixels to fill; to smooth the image, use denoise)")
    elif mask is not None:
        raise ValueError(f"a mask only makes sense for inpainting, not for task {params.task!r}")

    out_side = min(height, width) * _output_scale(params)
    # the canvas is padded to a multiple of 2**depth: a little is fine (the paper's depth 5
    # on a 20 px image), a depth far beyond the image only pads it into a memory blow-up
    if params.depth is not None and 2 ** params.depth > max(2 ** PAPER_DEPTH, 4 * out_side):
        raise ValueError(f"depth {params.depth} pads the image to {2 ** params.depth} px on a "
                         f"side, and this output is {out_side} px on its short side: use "
                         f"depth <= {max(PAPER_DEPTH, (4 * out_side).bit_length() - 1)}, "
                         "or leave depth unset")
    low, high = intensity_range(values, dtype, known)
    check_camera_units(params, low, high, values, known)
    check_sigma_units(params, low, high)
    observation = np.clip((values - low) / (high - low), 0.0, 1.0)
    if noise_camera is not None and not isinstance(noise_camera, CameraEstimate):
        raise TypeError("noise_camera must be a CameraEstimate (from estimate_camera), got "
                        f"{type(noise_camera).__name__}")
    if noise_camera is not None and params.noise != "poisson-gaussian":
        raise ValueError(f"noise_camera= only makes sense with noise='poisson-gaussian', not "
                         f"{params.noise!r}; leave it out or pass noise='poisson-gaussian'")
    if params.noise != "gaussian" and noise_camera is None:
        check_noise_estimable(params, observation, known)
    layout = Layout(shape=np.shape(image), channel_axis=axis, dtype=dtype, low=low, high=high,
                    alpha=alpha_plane)

    ref = None
    if reference is not None:
        ref_values, _ = as_hwc(reference, channel_axis=channel_axis, name="reference")
        if alpha_plane is not None and ref_values.shape[2] == values.shape[2] + 1:
            ref_values = ref_values[..., :-1]
        scale = _output_scale(params)
        expected = (height * scale, width * scale, values.shape[2])
        if ref_values.shape != expected:
            raise ValueError(f"reference shape {ref_values.shape} (channels last) does not match "
                             f"the output's {expected}")
        _check_reference_units(ref_values, values if known is None else values[known])
        ref = np.clip((ref_values - low) / (high - low), 0.0, 1.0)
    try:
        out_dtype = None if output_dtype is None else np.dtype(output_dtype)
    except TypeError:
        raise ValueError(f"output_dtype {output_dtype!r} is not a dtype: give e.g. 'uint8', "
                         "'uint16', 'float32' or a numpy dtype") from None
    if out_dtype is not None and out_dtype.kind not in "uif":
        raise ValueError(f"output_dtype must be an integer or float dtype, got {out_dtype}")
    if out_dtype is not None and out_dtype.kind == "f" and not layout.holds(out_dtype):
        raise ValueError(f"output_dtype {out_dtype} cannot hold this image's values (up to "
                         f"{max(abs(low), abs(high)):g}); choose float32 or float64")
    if interrupt is not None and not callable(getattr(interrupt, "is_set", None)):
        raise TypeError("interrupt must have an is_set() method, e.g. threading.Event")
    if warm_start is not None and not (isinstance(warm_start, Mapping) and all(
            isinstance(v, torch.Tensor) for v in warm_start.values())):
        raise TypeError("warm_start must be a network state: a previous result's .state "
                        "(run it with keep_state=True)")
    jpeg = None
    if params.task == "deblock" and values.shape[2] in (1, 3):
        # in the input's own levels: a JPEG's quantisation lattice lives there (the auto
        # stop's budget and consistency rule; the output's consistency is measured for
        # every stop)
        jpeg = estimate_jpeg(values[..., 0] if values.shape[2] == 1 else values)
    unit = 1.0 if jpeg is None else jpeg.levels_per_unit
    job = RestoreJob(observation=observation, known=known, reference=ref, layout=layout,
                     params=params, output_dtype=out_dtype, interrupt=interrupt,
                     warm_start=warm_start, keep_state=bool(keep_state), jpeg=jpeg,
                     jpeg_levels=(unit * layout.low, unit * (layout.high - layout.low)),
                     noise_camera=noise_camera)
    tiles = job.tiles
    if len(tiles) > 1 and (warm_start is not None or keep_state):
        raise ValueError(f"this image is fitted as {len(tiles)} tiles, each by its own "
                         "network: warm_start and keep_state need one network (tile=0)")
    if warm_start is not None:
        _check_warm_start(job, warm_start)
    if known is not None and len(tiles) > 1:
        for t in tiles:
            if not known[t.slices()].any():
                top, bottom, left, right = t.as_list()
                raise ValueError(f"the tile at rows {top}-{bottom}, columns {left}-{right} lies "
                                 "wholly inside the mask: nothing there to fit; use larger "
                                 "tiles or tile=0")
    if check_memory:
        from napari_specdip.core.estimate import check_memory as refuse_if_too_big

        refuse_if_too_big(job)
    inverted = _looks_inverted(known) if known is not None else None
    if inverted:  # said once nothing refuses the run: a warning before an error is noise
        warnings.warn(inverted, UserWarning, stacklevel=2)
    return job


#: share of a plane's pixels that must be transparent or opaque for it to pass as alpha;
#: an anti-aliased cut-out's edges are a few percent of it (more on a small image)
ALPHA_EXTREME_SHARE = 0.9


def looks_like_alpha(plane: npt.NDArray[Any], dtype: np.dtype[Any]) -> bool:
    """Whether a fourth channel stored last looks like an alpha channel: constant (all
    opaque), or nearly all of it transparent (0) or opaque (the integer dtype's maximum,
    1 for floats and booleans) with some of it opaque.

    Examples
    --------
    >>> opaque = np.full((8, 8), 255, np.uint8)
    >>> looks_like_alpha(opaque, opaque.dtype)
    True
    >>> intensities = np.random.default_rng(0).random((8, 8))
    >>> looks_like_alpha(intensities, intensities.dtype)
    False
    """
    flat = np.asarray(plane).ravel()
    if flat.size == 0:
        return False
    if np.all(flat == flat[0]):
        return True
    full = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1
    opaque = np.count_nonzero(flat == full)
    extremes = opaque + np.count_nonzero(flat == 0)
    return bool(opaque > 0 and extremes >= ALPHA_EXTREME_SHARE * flat.size)


def _looks_inverted(known: npt.NDArray[np.bool_]) -> str | None:
    """Why a mask looks inverted (None when it does not): most pixels to fill, in large
    regions, as when white marks the known pixels (GIMP, Fiji). Scattered missing pixels,
    even 90% of them, border a known pixel in a third of cases or more; a rectangle
    left known in a filled image only along its rim."""
    fill = ~known
    share = float(fill.mean())
    if share <= 0.5:
        return None
    border = np.zeros_like(fill)
    border[1:] |= known[:-1]
    border[:-1] |= known[1:]
    border[:, 1:] |= known[:, :-1]
    border[:, :-1] |= known[:, 1:]
    if float((fill & border).sum()) >= INVERTED_MASK_BORDER * float(fill.sum()):
        return None
    return (f"the mask marks {int(fill.sum())} of {fill.size} pixels ({100 * share:.1f}%) to "
            "fill, in large regions: "
            "nonzero (white) marks the pixels to fill; if white marks the known pixels in "
            "your mask, invert it")


def _unmasked(image: Any, channel_axis: int | None) -> tuple[Any, npt.NDArray[np.bool_] | None]:
    """A numpy masked array's data, its masked elements filled with a valid value (they
    are not data: NaN or a fill value of 1e20, say), and its masked pixels (H, W: any
    channel masked); None when nothing is masked. Any other image is returned as it is."""
    if not isinstance(image, np.ma.MaskedArray):
        return image, None
    flags = np.ma.getmaskarray(image)
    data = np.ma.getdata(image)
    if not flags.any():
        return data, None
    valid = data[~flags]
    valid = valid[np.isfinite(valid)] if valid.dtype.kind in "fc" else valid
    if valid.size == 0:
        raise ValueError("image is a masked array with every value masked (or not finite): "
                         "nothing is left to fit")
    pixels, _ = as_hwc(flags.astype(np.uint8), channel_axis=channel_axis, name="image's mask")
    masked_pixels: npt.NDArray[np.bool_] = np.asarray(pixels.any(axis=2))
    return np.where(flags, valid.min(), data), masked_pixels


def _check_warm_start(job: RestoreJob, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse at the call a ``warm_start`` whose entries or shapes differ from this run's
    network, which ``load_state_dict`` would only find after the noise estimate and the
    network's construction. The network is built on the meta device: shapes, no memory."""
    p = job.params
    height, width, channels = job.observation.shape
    with torch.device("meta"):
        net = build_network(p.network, channels, width=p.width,
                            depth=network_depth(p, height, width, job.scale),
                            lipschitz=p.lipschitz, upsampler=p.upsampler, sigmas=p.sigmas,
                            members=p.ensemble)
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    given = {name: tuple(t.shape) for name, t in state.items()}
    missing = sorted(expected.keys() - given.keys())
    extra = sorted(given.keys() - expected.keys())
    resized = [name for name in expected.keys() & given.keys() if expected[name] != given[name]]
    if missing or extra or resized:
        first = (f"{resized[0]} is {given[resized[0]]}, this run's is {expected[resized[0]]}"
                 if resized else f"{len(missing)} entries missing, {len(extra)} unexpected")
        raise ValueError("warm_start does not fit this run's network (another size, width, "
                         f"depth, ensemble or number of channels): {first}")


def _check_reference_units(reference: npt.NDArray[np.float64],
                           observed: npt.NDArray[np.float64]) -> None:
    """Refuse a reference that cannot be in the image's units (a 0-255 reference for a
    0-1 image, or the other way round): it would be clipped into the image's range and
    every PSNR against it would be meaningless. Noise widens the observed range, so
    only a tenfold mismatch is refused, or a [0, 1] reference fifty times narrower than
    an image of integer-like values."""
    low, high = float(observed.min()), float(observed.max())
    span = high - low  # > 0: a constant image is refused before
    r_low, r_high = float(reference.min()), float(reference.max())
    r_span = r_high - r_low
    zero_one = 0.0 <= r_low and r_high <= 1.0 and high - low > 2.0  # [0, 1] for 0-255
    if (r_span > 10 * span or (zero_one and r_span < span / 50)
            or r_low > high + span or r_high < low - span):
        raise ValueError(f"reference values span {r_low:g}..{r_high:g} but the image's span "
                         f"{low:g}..{high:g}: give the clean reference in the image's units "
                         f"({_units_hint(r_low, r_high, low, high)})")


def _units_hint(r_low: float, r_high: float, low: float, high: float) -> str:
    """The likely slip between a reference's range and the image's, in its direction."""
    r_span, span = r_high - r_low, high - low
    if r_span > 3 * span:
        return (f"its range is {r_span / span:.3g} times the image's: e.g. a 0-255 "
                "reference of a 0-1 image, divide it by 255")
    if 0 < r_span < span / 3:
        return (f"its range is 1/{span / r_span:.3g} of the image's: e.g. a 0-1 reference "
                "of a 0-255 image, multiply it by 255")
    return "it lies far outside the image's range"


def iter_restore(image: Any, task: str = "denoise", *, mask: Any = None, factor: int | None = None,
                 channel_axis: int | None = None, reference: Any = None,
                 parameters: RestoreParameters | None = None, preset: str | None = None,
                 max_iterations: int | None = None,
                 stop: str | None = None, seed: int | None = None, device: str | None = None,
                 width: int | None = None, depth: int | None = None, lipschitz: float | None = None,
                 upsampler: str | None = None, sigmas: tuple[float, ...] | None = None,
                 learning_rate: float | None = None, network: str | None = None,
                 output: str | None = None, gain: float | None = None,
                 holdout: float | None = None, input_jitter: float | None = None,
                 preview_every: int | None = None, signal_every: int | None = None,
                 num_threads: int | None = None, noise: str | None = None,
                 noise_sigma: float | None = None,
                 noise_gain: float | None = None, noise_read_sigma: float | None = None,
                 noise_offset: float | None = None, noise_fit: str | None = None,
                 refine: str | None = None, keep_known: bool | None = None,
                 ensemble: int | None = None, tile: int | None = None,
                 tile_overlap: int | None = None, output_dtype: Any = None,
                 interrupt: Interrupt | None = None, alpha: bool | None = None,
                 check_memory: bool = True,
                 warm_start: Mapping[str, torch.Tensor] | None = None,
                 keep_state: bool = False,
                 noise_camera: CameraEstimate | None = None,
                 **fields: Any) -> RestoreGenerator:
    """Restore ``image`` step by step: a generator of reports that returns the result.

    Input errors are raised at the call, before the generator starts. Closing the
    generator stops the work at once; setting ``interrupt`` ends it at the next
    step with a result (``stop_reason="stopped"``).

    Parameters
    ----------
    image : array_like
        2D gray image, or 3D with ``channel_axis`` (RGB, multichannel); any
        integer or float dtype. A numpy masked array's masked pixels are filled
        by ``task="inpaint"`` (added to ``mask``) and refused by the other tasks.
    task : str
        ``"denoise"``, ``"deblock"``, ``"inpaint"``, ``"super-resolve"`` or ``"enhance"``.
    mask : array_like, optional
        Inpainting only: the image's spatial shape, True/nonzero on pixels to fill;
        at least one pixel, and not all of them.
    factor : int, optional
        Super-resolution factor (2, 4 or 8; default 4).
    channel_axis : int, optional
        Axis of the colour channels; None for a 2D gray image.
    reference : array_like, optional
        Clean image of the output's shape: adds PSNR/SSIM to the signals. With
        ``output="best"`` it also picks the result (the iterate closest to it): an
        oracle, for evaluation only.
    parameters : RestoreParameters, optional
        A whole snapshot of options; the keyword options below override it.
    preset : str, optional
        ``"quick"``, ``"balanced"`` (default) or ``"paper"``: the defaults the
        other options start from (see :meth:`RestoreParameters.for_task`, which
        says what each costs and gives). Options given explicitly override it.
    max_iterations, stop, seed, device, width, depth, lipschitz, upsampler, sigmas,
    learning_rate, network, output, gain, holdout, input_jitter, preview_every, signal_every,
    num_threads
        See :class:`~napari_specdip.RestoreParameters`; None takes the preset's
        or the task's default.
    noise, noise_gain, noise_read_sigma, noise_offset, noise_fit
        The noise model: ``noise="poisson-gaussian"`` for photon-counting cameras
        (microscopy), with the camera's gain, read noise and offset in the input's
        units, each estimated from the image when None; see
        :class:`~napari_specdip.RestoreParameters`.
    refine : str, optional
        Denoising: ``"wiener"`` (the quick and balanced presets) filters the
        observation once more with the network's output as the pilot of an
        empirical Wiener filter; ``"none"`` (paper) returns the network's output.
        See :class:`~napari_specdip.RestoreParameters`.
    keep_known : bool, optional
        Inpainting: True returns the observed pixels unchanged and the network's
        output where ``mask`` says to fill; False (paper) the network's output
        everywhere. Default: True, but False under the Poisson-Gaussian model (noisy
        known pixels).
    noise_sigma : float, optional
        Gaussian noise of a denoising run: its standard deviation in the input's
        units, for the auto stop's estimate of the error (default: estimated from
        the image); at most the range the image is fitted on.
    ensemble : int, optional
        Fit K members (seeds ``seed .. seed + K - 1``) together; the result is their
        mean and ``result.uncertainty`` their standard deviation, over the members
        and over each member's outputs around the returned iteration (each
        pixel's, pooled over its neighbours).
    tile, tile_overlap : int, optional
        Fit an image larger than ``tile`` px as overlapping tiles, each with its
        own network and stop, blended over ``tile_overlap`` px (default 16); 0
        (default): one network for the whole image. A small image fits in far
        fewer steps, so a large one finishes sooner; see
        :class:`~napari_specdip.RestoreParameters`.
    output_dtype : dtype, optional
        dtype of the result; default the input's. The values keep the input's units
        where the dtype holds them (a float dtype; an integer dtype whose range holds
        the input's integer dtype's); otherwise the input's range (an integer dtype's
        whole range, a bool or float image's [0, 1] or its own min..max) is mapped
        onto the integer dtype's, as skimage's ``img_as_ubyte`` does: a [0, 1] float
        image as uint8 spans 0-255 (a bool one too: False 0, True 255, as the command
        line's PNG files), a uint16 one is divided by 257. As skimage's ``img_as_int``
        and ``img_as_uint``, data without negatives (unsigned, bool, [0, 1] float) into
        a signed dtype fills its non-negative half (uint16 as int16: halved), and a
        signed image into an unsigned dtype loses its negatives.
    interrupt : threading.Event-like, optional
        Set it to stop early and keep the result so far; set before the first step,
        the result is the input (``iterations`` 0, ``stop_reason`` "stopped").
    alpha : bool, optional
        Whether the last channel is alpha, carried over untouched and not
        restored; default: True for 4 channels on the last axis (RGBA, as PNGs
        and napari's RGB layers store it) of 8 bits, or of another dtype where the
        fourth looks like alpha (constant, or nearly all 0 or opaque:
        :func:`looks_like_alpha`), False otherwise.
    check_memory : bool
        Refuse with ``MemoryError`` (estimate and advice) a run that will not
        fit into the device's memory, before any work.
    warm_start : mapping, optional
        Start from these network weights (``result.state`` of a run of the same
        size, width and channels, made with ``keep_state=True``) instead of a
        fresh initialisation: the slices of a stack are alike, so each starts
        close to its fit (``benchmarks/warm_start.py`` measures what it saves).
    keep_state : bool
        Put the network weights (on the CPU) in ``result.state``: those of the
        iteration the result holds when a stop rule kept one, else the last.
    noise_camera : CameraEstimate, optional
        ``noise="poisson-gaussian"``: the camera values estimated over the stack this
        image is a slice of (:func:`~napari_specdip.core.noise.estimate_camera`),
        used for those of ``noise_gain``, ``noise_read_sigma`` and ``noise_offset``
        that are None instead of an estimate from this image alone; the record
        says so (``noise_model["estimated_over"]``).
    **fields
        Any other field of :class:`~napari_specdip.RestoreParameters` (e.g.
        ``holdout_return="minimum"``, ``holdout_patience=500``, ``ema_decay``),
        over the preset's value like the options above.

    Returns
    -------
    generator
        Yields :class:`~napari_specdip.StepReport`; its return value is a
        :class:`~napari_specdip.RestoreResult`.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_specdip import iter_restore
    >>> noisy = np.random.default_rng(0).random((32, 32))
    >>> run = iter_restore(noisy, "denoise", width=8, max_iterations=3, stop="none")
    >>> [report.iteration for report in run]
    [1, 2, 3]
    """
    job = plan_restore(
        image, task, mask=mask, factor=factor, channel_axis=channel_axis, reference=reference,
        parameters=parameters, output_dtype=output_dtype, interrupt=interrupt, preset=preset,
        alpha=alpha, check_memory=check_memory, warm_start=warm_start, keep_state=keep_state,
        noise_camera=noise_camera, max_iterations=max_iterations, stop=stop, seed=seed,
        device=device, width=width,
        depth=depth, lipschitz=lipschitz, upsampler=upsampler, sigmas=sigmas,
        learning_rate=learning_rate, network=network, output=output, gain=gain, holdout=holdout,
        input_jitter=input_jitter, preview_every=preview_every, signal_every=signal_every,
        num_threads=num_threads,
        noise=noise, noise_sigma=noise_sigma, noise_gain=noise_gain,
        noise_read_sigma=noise_read_sigma, noise_offset=noise_offset, noise_fit=noise_fit,
        refine=refine, keep_known=keep_known, ensemble=ensemble, tile=tile,
        tile_overlap=tile_overlap, **fields,
    )
    return job.run()


def restore(image: Any, task: str = "denoise", **options: Any) -> RestoreResult:
    """Restore ``image`` and return a :class:`~napari_specdip.RestoreResult`.

    Takes exactly the arguments of :func:`iter_restore`.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_specdip import restore
    >>> noisy = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    >>> result = restore(noisy, "denoise", channel_axis=-1, width=8, max_iterations=5, stop="none")
    >>> result.image.shape, result.image.dtype, result.iterations, result.stop_reason
    ((32, 32, 3), dtype('uint8'), 5, 'max_iterations')
    """
    return run_to_end(iter_restore(image, task, **options))


# help(), IDEs and notebooks show iter_restore's keywords, not a bare **options
restore.__signature__ = inspect.signature(iter_restore).replace(  # type: ignore[attr-defined]
    return_annotation=RestoreResult)


def run_to_end(gen: RestoreGenerator,
               on_step: Callable[[StepReport], None] | None = None) -> RestoreResult:
    """Drain a restoration generator, calling ``on_step`` with each report, and
    return its result. The generator is closed (its work stopped and memory
    freed) also when ``on_step`` raises, e.g. on a user's interrupt."""
    try:
        while True:
            try:
                report = next(gen)
            except StopIteration as done:
                result: RestoreResult = done.value
                return result
            if on_step is not None:
                on_step(report)
    finally:
        gen.close()


# --------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _run_scope(device: torch.device, num_threads: int | None) -> Iterator[None]:
    """Thread count and deterministic kernels for the run; restored afterwards."""
    threads = torch.get_num_threads()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    algorithms = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
    try:
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        if device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
            # cuDNN's flag alone left one seed giving two results on an H200 (gradients
            # differing by 1e-11 at the first step, 1e-3 after 25); torch's deterministic
            # kernels made them bit for bit equal (tests/core/test_cuda_determinism.py).
            # Warn only: an operation with no such kernel must not end a user's run
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.use_deterministic_algorithms(algorithms[0], warn_only=algorithms[1])
        free_device_memory(device)


def _to_tensor(hwc: npt.NDArray[Any], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(hwc, -1, 0))).float()[None].to(device)


def learning_rate_factor(params: RestoreParameters, iteration: int) -> float:
    """Multiplier of ``learning_rate`` at a 1-based ``iteration``: linear warm-up,
    then the schedule.

    Examples
    --------
    >>> p = RestoreParameters(lr_schedule="exponential", lr_halflife=100, lr_warmup=10)
    >>> [round(learning_rate_factor(p, t), 3) for t in (1, 10, 110, 1000)]
    [0.1, 1.0, 0.5, 0.05]
    """
    p = params
    if iteration <= p.lr_warmup:
        return float(iteration / p.lr_warmup)
    t = iteration - p.lr_warmup
    if p.lr_schedule == "cosine":
        horizon = max(1, p.max_iterations - p.lr_warmup)
        decay = 0.5 * (1.0 + math.cos(math.pi * min(1.0, t / horizon)))
        return p.lr_floor + (1.0 - p.lr_floor) * decay
    if p.lr_schedule == "exponential":
        return max(p.lr_floor, float(0.5 ** (t / p.lr_halflife)))
    return 1.0


def _jittered(z: torch.Tensor, generators: Sequence[torch.Generator], std: float
              ) -> torch.Tensor:
    """``z`` plus Gaussian noise of ``std``: one generator per member, whose inputs lie
    side by side on the channel axis."""
    shape = (z.shape[0], z.shape[1] // len(generators), *z.shape[2:])
    noise = [torch.randn(shape, generator=g, device=z.device) for g in generators]
    return z + torch.cat(noise, dim=1) * std


def _holdout_mask(height: int, width: int, fraction: float, seed: int,
                  known: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_]:
    """A seeded random ``fraction`` of the observed pixels, left out of the fit."""
    rng = np.random.default_rng([seed, 2])
    chosen = rng.random((height, width)) < fraction
    if known is None:
        return chosen
    chosen &= known
    if not (known & ~chosen).any():  # a few known pixels, all drawn: fit them, hold none
        chosen[:] = False
    return chosen


def _holdout_masks(p: RestoreParameters, height: int, width: int,
                   known: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_] | None:
    """(members, H, W): member k holds out the pixels a single run seeded seed + k would."""
    if p.holdout <= 0:
        return None
    return np.stack([_holdout_mask(height, width, p.holdout, p.seed + k, known)
                     for k in range(p.ensemble)])


def _run(job: RestoreJob) -> RestoreGenerator:
    p = job.params
    start = time.perf_counter()
    device = resolve_device(p.device)
    scale = job.scale
    try:
        with _run_scope(device, p.num_threads):
            noise = _plan_noise(job)  # once, from the whole image, for every tile
            if len(job.tiles) > 1:
                result = yield from _fit_tiled(job, device, scale, start, noise)
            else:
                result = yield from _fit(job, device, scale, start, noise)
            # another CPU thread count sums in another order: what a repeat needs
            result.parameters["threads_used"] = torch.get_num_threads()
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if not isinstance(exc, torch.OutOfMemoryError) and not _is_allocation_failure(exc):
            raise
        raise MemoryError(_out_of_memory_message(job, device)) from exc
    if job.layout.alpha is not None:
        result.parameters["alpha"] = True
    _warn_if_clipped(job, result)
    return result


def _is_allocation_failure(exc: RuntimeError) -> bool:
    """torch's CPU allocator (and some backends) report a failed malloc as RuntimeError."""
    text = str(exc)
    return any(marker in text for marker in (
        "can't allocate memory", "DefaultCPUAllocator", "not enough memory",
        "out of memory", "Out of memory"))


def _out_of_memory_message(job: RestoreJob, device: torch.device) -> str:
    from napari_specdip.core.estimate import (
        available_memory,
        format_bytes,
        memory_advice,
        memory_needed,
    )

    p = job.params
    height, width = job.observation.shape[:2]
    head = (f"out of memory on {describe_device(device)} restoring a {height}x{width} image at "
            f"width {p.width}")
    try:
        needed = memory_needed(job, device).total
        available = available_memory(device)
        if available is not None:
            return f"{head}: {memory_advice(job, needed, max(available, 1), device)}"
        return (f"{head} (needs about {format_bytes(needed)}): try a smaller width, a crop "
                "(or tiles), or another device")
    except Exception:  # noqa: BLE001  (the advice must not hide the error)
        return f"{head}: try a smaller width, a crop (or tiles), or another device"


def _warn_if_clipped(job: RestoreJob, result: RestoreResult) -> None:
    """Enhancement: say so when most output pixels sit at the ends of the range
    (a large ``gain`` turns the detail layer into a black-and-white picture)."""
    if job.params.task != "enhance":
        return
    values = np.asarray(result.image, dtype=np.float64)
    if job.layout.alpha is not None and job.layout.channel_axis is not None:
        values = np.moveaxis(values, job.layout.channel_axis, -1)[..., :-1]
    low, high = job.layout.low, job.layout.high
    tol = 1e-6 * (high - low)
    clipped = float(np.mean((values <= low + tol) | (values >= high - tol)))
    before = float(np.mean((job.observation <= 1e-6) | (job.observation >= 1 - 1e-6)))
    if clipped > 0.5 and clipped > before + 0.1:
        # a fit ended early is still blurry: its detail layer holds the edges too. A tiled
        # run's iterations add up its tiles' fits: the shortest fit is the one to name
        tiles = result.parameters.get("tiles") or [{"iterations": result.iterations}]
        fitted = min(int(t["iterations"]) for t in tiles)
        short = (f", or let the fit run longer (it ended at iteration {fitted}, "
                 f"the method fits {ENHANCE_ITERATIONS})" if fitted < ENHANCE_ITERATIONS else "")
        warnings.warn(
            f"enhance with gain {job.params.gain:g}: {100 * clipped:.0f}% of the output pixels "
            f"are clipped to the ends of the intensity range ({100 * before:.0f}% in the input); "
            f"use a smaller gain{short}", UserWarning, stacklevel=2)


def stop_noise_variance(job: RestoreJob) -> float | None:
    """The noise variance (in the fitted space) from which the auto stop of ``job``
    estimates the output's error, or None where it watches the held-out loss alone
    (benchmarks replay the rule with it)."""
    return _stop_noise_variance(job.params, job.observation, job.layout)


def _stop_noise_variance(p: RestoreParameters, obs: npt.NDArray[np.float64],
                         layout: Layout) -> float | None:
    """The noise variance of a denoising run with Gaussian noise and held-out pixels:
    ``noise_sigma`` in the fitted space where given, else estimated from ``obs`` (the
    fitted image: with Gaussian noise, the observation); None for other tasks (their
    degradation is not white noise), for images too small to estimate it, and with
    the Poisson-Gaussian model: there the fit's loss is weighted by a variance that
    changes from pixel to pixel, and the estimate, measured with Gaussian noise only,
    lost 1.9 dB on a 5-photon cell (64 px) where the held-out loss did not."""
    if p.task != "denoise" or p.holdout <= 0 or p.noise != "gaussian":
        return None
    return white_noise_variance(p, obs, layout)


def stop_noise_shares(job: RestoreJob) -> tuple[float, float] | None:
    """The noise variance on the held-out and on the fitted pixels of ``job`` (its
    members' mean; the whole image's: a tiled run has its tiles' own) from which the auto
    stop estimates the error, or None where it watches the held-out loss alone
    (benchmarks replay the rule with it)."""
    height, width = job.observation.shape[:2]
    return _noise_shares(job.observation, _holdout_masks(job.params, height, width, job.known),
                         stop_noise_variance(job))


def _noise_shares(obs: npt.NDArray[np.float64], held: npt.NDArray[np.bool_] | None,
                  noise_variance: float | None) -> tuple[float, float] | None:
    """The noise variance on the held-out and the fitted pixels, averaged over the
    members (each holds out its own pixels; their losses are averaged too)."""
    if noise_variance is None or held is None:
        return None
    return held_out_noise(obs, held, noise_variance)


def _host_reads_are_free(device: torch.device) -> bool:
    """Whether reading a value back costs nothing (the CPU): then each step's loss is
    read at once; elsewhere only at steps that need it."""
    return device.type == "cpu"


#: Memory for the outputs a hold-out run may still return (its plateau).
TRAIL_BYTES = 256 * 2**20


def trail_length(values: int) -> int:
    """How many outputs of ``values`` float32 values the hold-out rule may keep: at most
    :data:`~napari_specdip.stopping.PLATEAU_MAX_KEPT`, fewer for large outputs (within
    :data:`TRAIL_BYTES`), at least 4.

    >>> trail_length(128 * 128), trail_length(4096 * 4096 * 3)
    (32, 4)
    """
    return max(4, min(PLATEAU_MAX_KEPT, TRAIL_BYTES // max(1, 4 * values)))


def iteration_limit(job: RestoreJob, height: int, width: int) -> int:
    """The iterations a fit of ``height`` x ``width`` pixels of ``job`` may take: its
    ``max_iterations``, or for deblocking with the auto stop the budget the JPEG's
    compression and the image's size call for (:func:`core.jpeg.deblock_budget`)."""
    p = job.params
    if not p.stops_at_jpeg_budget:
        return int(p.max_iterations)
    return deblock_budget(job.jpeg, height, width, width=p.width,
                          learning_rate=p.learning_rate, cap=p.max_iterations)


def tile_iteration_limits(job: RestoreJob) -> list[int]:
    """:func:`iteration_limit` of each of ``job``'s tiles, in order (one entry for an
    untiled run): what the run's fits may take in all, and what its estimate counts."""
    return [iteration_limit(job, *tile.shape) for tile in job.tiles]


def _jpeg_record(found: JpegEstimate | None) -> dict[str, Any] | None:
    """What the run record says of the JPEG's quantisation (None: none found)."""
    if found is None:
        return None
    return {"grid": list(found.grid), "scale": round(found.scale, 3),
            "quality": found.quality, "frequencies": found.frequencies}


def _fit(job: RestoreJob, device: torch.device, scale: int, start: float,
         noise: NoiseFit | None) -> RestoreGenerator:
    p = job.params
    obs = job.observation if noise is None else noise.to_fit(job.observation)
    height, width_px, channels = obs.shape
    depth = network_depth(p, height, width_px, scale)
    members = p.ensemble
    with torch.random.fork_rng(devices=[]):
        nets = []
        for k in range(members):  # member k starts exactly as a single run seeded seed + k
            torch.manual_seed(p.seed + k)
            nets.append(build_network(p.network, channels, width=p.width, depth=depth,
                                      lipschitz=p.lipschitz, upsampler=p.upsampler,
                                      sigmas=p.sigmas))
        gens = [torch.Generator().manual_seed(p.seed + k) for k in range(members)]
        net, gen = nets[0], gens[0]
        multiple = net.multiple
        lr_multiple = max(1, multiple // scale)
        # the coarsest level needs 2 px for its reflection padding
        pads = pad_amounts(height, width_px, lr_multiple, minimum=-(-2 * multiple // scale))
        obs_padded = pad_reflect(obs, pads)
        ph, pw = obs_padded.shape[:2]
        if (ph * scale) % multiple or (pw * scale) % multiple:
            raise ValueError(f"super-resolution factor {scale} does not divide the network's "
                             f"multiple {multiple}")
        if members > 1:
            net = stack_decoders([n for n in nets if isinstance(n, Decoder)])
            z = net.make_input(ph * scale, pw * scale, generator=gens)
        else:
            z = net.make_input(ph * scale, pw * scale, generator=gen)
        del nets
        # (masks, H, W): member k holds out the pixels a single run seeded seed + k would
        held = _holdout_masks(p, height, width_px, job.known)
        if p.start_at_mean and isinstance(net, Decoder):
            fitted = np.ones((height, width_px), bool) if job.known is None else job.known.copy()
            masks = [fitted] if held is None else [fitted & ~h for h in held]
            net.start_at(torch.from_numpy(np.stack(
                [obs[m].reshape(-1, channels).mean(0) for m in masks])).float())
    if job.warm_start is not None:
        try:
            net.load_state_dict(dict(job.warm_start))
        except (RuntimeError, KeyError) as exc:
            raise ValueError("warm_start does not fit this run's network (another size, width, "
                             f"depth, ensemble or number of channels): {exc}") from exc
    net = net.to(device)
    z = z.to(device)
    y = _to_tensor(obs_padded, device)
    op: Operator
    if p.task == "inpaint" and job.known is not None:
        known = pad_reflect(job.known[..., None].astype(np.float32), pads)
        op = Inpainting(_to_tensor(known, device)).to(device)
        y = y * op.known
    elif scale > 1:
        op = Downsampling(scale)
    else:
        op = Identity()
    top, _, left, _ = pads
    obs_crop = (slice(top, top + height), slice(left, left + width_px))
    crop = (slice(top * scale, (top + height) * scale), slice(left * scale, (left + width_px) * scale))
    reference = _to_tensor(job.reference, device) if job.reference is not None else None
    # pixels left out of the fit, and their reflected copies in the padding
    fit_weight: torch.Tensor | None = None
    holdout: torch.Tensor | None = None
    if held is not None:
        holdout = torch.cat([_to_tensor(pad_reflect(h[..., None].astype(np.float32), pads),
                                        device) for h in held])
        fit_weight = 1.0 - holdout
        if isinstance(op, Inpainting):
            fit_weight = op.known * fit_weight
    need_variance = (p.track_variance or p.stop == "wmv"
                     or (p.output == "best" and reference is None))
    stop_noise = _stop_noise_variance(p, obs, job.layout)
    stop_shares = _noise_shares(obs, held, stop_noise)
    signals_meter = StepSignals(job, y, op, crop, obs_crop, device, reference, need_variance,
                                holdout, noise, stop_noise, stop_shares)
    # with the noise variance known, the auto rule watches the estimated error of the
    # whole output; without it, the held-out pixels' loss
    watched = "holdout_loss" if stop_noise is None else "error_estimate"
    rules = make_rules(p.stop, window=p.stop_window, epsilon=p.stop_epsilon,
                       patience=p.wmv_patience, every=p.signal_every,
                       holdout_patience=(p.holdout_patience if job.warm_start is None
                                         else p.holdout_patience_warm),
                       holdout_signal=watched + ("_ema" if p.output == "ema" else ""),
                       # an ensemble's snapshot window is anchored where the minimum is seen
                       holdout_plateau=p.holdout_return == "plateau" and members == 1,
                       holdout_kept=trail_length(members * channels * height * width_px
                                                 * scale * scale))
    consistency = (consistency_threshold(job.jpeg, CONSISTENT_EXCESS) if p.stops_at_jpeg_budget
                   and signals_meter.jpeg_excess is not None else None)
    if consistency is not None:
        rules.append(ConsistencyRule(threshold=consistency, signal="jpeg_excess" + (
            "_ema" if p.output == "ema" else "")))
    # the outputs the hold-out rule may still return (its plateau around the minimum)
    plateau = next((r for r in rules if isinstance(r, HoldoutRule) and r.plateau), None)
    trail: dict[int, torch.Tensor] = {}
    optimizer = torch.optim.Adam(net.parameters(), lr=p.learning_rate)
    limit = iteration_limit(job, height, width_px)
    # the skip network keeps the original DIP's own jitter; member k jitters its input
    # as the single run seeded seed + k would
    jitter_std = SkipNet.input_jitter if isinstance(net, SkipNet) else p.input_jitter
    jitter_gens = ([torch.Generator(device=device).manual_seed(p.seed + k + 1)
                    for k in range(members)] if jitter_std > 0 else [])

    history: dict[str, list[float]] = {"iteration": [], "loss": [], "elapsed": []}
    signal_rows: list[dict[str, float]] = []
    ema: torch.Tensor | None = None
    best: torch.Tensor | None = None
    best_iteration = 0
    best_score = -math.inf
    # the output at a rule's detected minimum (ES-WMV, hold-out), returned in the end
    candidate: torch.Tensor | None = None
    candidate_iteration = 0
    candidate_state: dict[str, torch.Tensor] | None = None
    # an ensemble's uncertainty also takes in how each member still moves around then
    window = SnapshotWindow() if members > 1 else None
    last_good = [t.detach().clone() for t in net.parameters()] if p.backtrack else []
    last_good_psnr = -math.inf
    backtracks = 0
    stop_reason = "max_iterations" if limit == p.max_iterations else "deblock_budget"
    out = torch.zeros(1)
    iteration = 0
    # losses stay on the device until a step that needs them: no host read per step
    pending: list[torch.Tensor] = []
    loss_value = math.nan

    try:
        for iteration in range(1, limit + 1):
            if job.interrupt is not None and job.interrupt.is_set():
                iteration -= 1
                stop_reason = "stopped"
                break
            for group in optimizer.param_groups:
                group["lr"] = p.learning_rate * learning_rate_factor(p, iteration)
            net_in = _jittered(z, jitter_gens, jitter_std) if jitter_gens else z
            pred = net(net_in)
            loss = op.loss(pred, y, fit_weight,
                           weights=None if noise is None else noise.loss_weights)
            evaluate = iteration % p.signal_every == 0 or iteration == limit
            checkpoint = p.backtrack and iteration % p.backtrack_every == 0
            pending.append(loss.detach() / members)  # a member's mean, for reports
            out = pred.detach()
            # the decay ramps up to ema_decay (as TensorFlow's num_updates) so that a
            # short run is not dominated by its first, still blank outputs
            decay = min(p.ema_decay, (1.0 + iteration) / (10.0 + iteration))
            ema_next = ema
            if p.output == "ema" and evaluate:  # kept apart until the step is taken
                ema_next = out.clone() if ema is None else ema.mul(decay).add_(out, alpha=1 - decay)
            signals: dict[str, float] = {}
            synced: list[float] = []
            if evaluate:  # this step's output is measured before the update: one read
                signals, synced = signals_meter.measure(out, ema_next, also=torch.stack(pending))
            elif checkpoint or _host_reads_are_free(device):
                synced = torch.stack(pending).tolist()
            if synced:
                history["loss"].extend(synced)
                history["iteration"].extend(range(iteration - len(synced) + 1, iteration + 1))
                history["elapsed"].extend([time.perf_counter() - start] * len(synced))
                pending.clear()
                loss_value = synced[-1]
                if p.backtrack and not all(math.isfinite(v) for v in synced):
                    checkpoint = True
            if checkpoint:
                finite = math.isfinite(loss_value)
                psnr_obs = -10.0 * math.log10(max(loss_value, 1e-12)) if finite else -math.inf
                if psnr_obs < last_good_psnr - p.backtrack_db:
                    # DIP's fallback to the last good weights
                    with torch.no_grad():
                        for t, good in zip(net.parameters(), last_good, strict=True):
                            t.copy_(good)
                    if not finite:  # NaN moments would poison every later step
                        optimizer.state.clear()
                    backtracks += 1
                    yield StepReport(iteration=iteration, loss=loss_value,
                                     elapsed=time.perf_counter() - start,
                                     max_iterations=limit)
                    continue
                with torch.no_grad():
                    for good, t in zip(last_good, net.parameters(), strict=True):
                        good.copy_(t)
                last_good_psnr = psnr_obs
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if p.output == "ema":
                ema = ema_next if evaluate else (
                    out.clone() if ema is None else ema.mul_(decay).add_(out, alpha=1 - decay))

            stop_now = False
            if evaluate:
                signals["loss"] = loss_value
                for rule in rules:
                    if rule.signal in signals:  # the variance exists once its window is full
                        if rule.update(iteration, signals[rule.signal]) and not stop_now:
                            stop_now, stop_reason = True, rule.name
                        signals.update(rule.signals)
                        if getattr(rule, "improved", False):
                            if plateau is None:
                                candidate = _chosen(p.output, out, ema, None).clone()
                                candidate_iteration = iteration
                            if job.keep_state:  # the next slice starts from the minimum's fit
                                candidate_state = {k: v.detach().clone()
                                                   for k, v in net.state_dict().items()}
                if plateau is not None and plateau.kept:
                    trail = {i: t for i, t in trail.items() if i in plateau.kept}
                    if iteration in plateau.kept:
                        trail[iteration] = _chosen(p.output, out, ema, None).clone()
                    candidate_iteration = plateau.returned_iteration
                    candidate = trail[candidate_iteration]
                score = (signals["psnr"] if "psnr" in signals
                         else -signals["variance"] if "variance" in signals else None)
                if p.output == "best" and score is not None and score > best_score:
                    best_score, best_iteration, best = score, iteration, out.clone()
                signal_rows.append({"signal_iteration": iteration, **signals})
            if window is not None:
                window.add(iteration, out, chosen=iteration == (
                    best_iteration if p.output == "best" else candidate_iteration))
            preview = None
            if p.preview_every and (iteration % p.preview_every == 0 or stop_now
                                    or iteration == limit):
                shown = candidate if stop_now and candidate is not None else _chosen(
                    p.output, out, ema, best)
                preview = _to_user(job, ensemble_mean(shown), crop, noise)
            yield StepReport(iteration=iteration, loss=loss_value,
                             elapsed=time.perf_counter() - start, signals=signals,
                             preview=preview, max_iterations=limit)
            if stop_now:
                break
        if pending:  # losses of the last steps of a stopped run
            synced = torch.stack(pending).tolist()
            history["loss"].extend(synced)
            history["iteration"].extend(range(iteration - len(synced) + 1, iteration + 1))
            history["elapsed"].extend([time.perf_counter() - start] * len(synced))
        before_declipping = None
        if iteration == 0:
            # nothing fitted: the input itself (upsampled for super-resolution), as a
            # tiled run returns for the tiles it did not reach; the untrained network's
            # near-flat output would read as a (bad) result
            composite = np.repeat(np.repeat(job.observation, scale, axis=0), scale, axis=1)
            network_output = composite
            refined = None if p.task != "denoise" else {
                "method": "none", "reason": "stopped before the first step"}
        else:
            if candidate is not None and p.output != "best":
                chosen, best_iteration = candidate, candidate_iteration
            else:
                chosen = _chosen(p.output, out, ema, best)
                if p.output == "best" and best is None:
                    best_iteration = iteration
            network_output = _composite(job, ensemble_mean(chosen), crop, noise)
            composite, refined, before_declipping = apply_stage(
                job, network_output, noise, stop_noise, device, members)
        image = job.layout.to_user(composite, dtype=job.output_dtype)
        metrics = _metrics_of(job, composite)
        if job.reference is not None and composite is not network_output:
            from napari_specdip import metrics as quality

            metrics["psnr_unrefined"] = float(quality.psnr(network_output, job.reference))
            if before_declipping is not None:  # what the declipping adds (benchmarks)
                metrics["psnr_before_declipping"] = float(
                    quality.psnr(before_declipping, job.reference))
        uncertainty = None
        if members > 1 and iteration == 0:
            uncertainty = std_to_user(np.full_like(composite, np.nan), job.layout)
        elif members > 1:
            assert window is not None
            snapshots = [[_composite(job, step[k : k + 1], crop, noise) for k in range(members)]
                         for step in window.snapshots()]
            uncertainty = spread_to_user([_composite(job, chosen[k : k + 1], crop, noise)
                                          for k in range(members)], job.layout, snapshots)
        hist = {k: np.asarray(v) for k, v in history.items()}
        # one row per evaluated step; a signal not yet defined there (the WMV variance
        # before its window fills) is NaN, so every column lines up with signal_iteration
        keys = dict.fromkeys(k for row in signal_rows for k in row if k != "loss")
        hist.update({k: np.asarray([row.get(k, math.nan) for row in signal_rows]) for k in keys})
        hist.setdefault("signal_iteration", np.zeros(0, dtype=int))
        params = _recorded(job)
        state = None
        if job.keep_state:
            kept = candidate_state if candidate_state is not None else net.state_dict()
            state = {k: v.detach().cpu().clone() for k, v in kept.items()}
        return RestoreResult(
            image=image,
            iterations=iteration,
            stop_reason=stop_reason,
            stop_iteration=(best_iteration if p.output == "best" or candidate is not None
                            else iteration),
            history=hist,
            parameters={**params, "depth": depth, "backtracks": backtracks,
                        "warm_start": job.warm_start is not None,
                        "tile_used": job.tile_side,
                        "channel_axis": job.layout.channel_axis,
                        "input_shape": list(job.layout.shape),
                        "input_dtype": str(job.layout.dtype),
                        "stop_noise_variance": stop_noise,
                        "stop_noise_shares": (None if stop_shares is None
                                              else list(stop_shares)),
                        **({} if refined is None else {"refined": refined}),
                        **({"deblock_budget": limit, "jpeg": _jpeg_record(job.jpeg),
                            "jpeg_consistent_excess": consistency}
                           if p.stops_at_jpeg_budget else {}),
                        **({} if noise is None else {"noise_model": noise.record})},
            device=describe_device(device),
            elapsed=time.perf_counter() - start,
            intensity_range=(job.layout.low, job.layout.high),
            metrics=metrics,
            uncertainty=uncertainty,
            state=state,
        )
    finally:
        # drop device tensors before the scope empties the allocator cache
        del net, optimizer, z, y, out, ema, best, candidate, candidate_state, last_good, trail
        del signals_meter, pending


def _fit_tiled(job: RestoreJob, device: torch.device, scale: int, start: float,
               noise: NoiseFit | None) -> RestoreGenerator:
    """Fit the tiles one after another, each with its own network and stop, and
    blend their outputs (core/tiling.py). Reports count iterations over all tiles;
    a stop keeps the tiles done so far and the observation elsewhere."""
    p = job.params
    tiles = job.tiles
    height, width, channels = job.observation.shape
    fallback = np.repeat(np.repeat(job.observation, scale, axis=0), scale, axis=1)
    canvas = BlendCanvas(height, width, channels, scale=scale)
    spread = BlendCanvas(height, width, channels, scale=scale) if p.ensemble > 1 else None
    cap = sum(tile_iteration_limits(job))
    results: list[RestoreResult] = []
    done = 0  # iterations of the tiles before this one
    handed: dict[str, torch.Tensor] | None = None  # the network the tile before ended with
    for index, tile in enumerate(tiles):
        if job.interrupt is not None and job.interrupt.is_set():
            break
        tile_job = job.tile_job(tile)
        if p.warm_starts_tiles:
            if handed is not None and (network_depth(p, *tile.shape, scale)
                                       != results[-1].parameters["depth"]):
                handed = None  # a tile of another depth has another network
            tile_job = dataclasses.replace(tile_job, warm_start=handed, keep_state=True)

        # a tile's report as the whole image's: iterations over all tiles, the blend so far
        def whole_image(report: StepReport, tile: Tile = tile, index: int = index,
                        done: int = done) -> StepReport:
            preview = None
            if report.preview is not None:
                preview = job.layout.to_user(canvas.image(fallback, (tile, report.preview)),
                                             dtype=job.output_dtype)
            return StepReport(iteration=done + report.iteration, loss=report.loss,
                              elapsed=report.elapsed, signals=report.signals, preview=preview,
                              max_iterations=cap, tile=index, tiles=len(tiles))

        result = yield from _relayed(_fit(tile_job, device, scale, start, noise), whole_image)
        if result.iterations == 0:  # stopped before its first step: nothing to blend
            break
        handed, result = result.state, dataclasses.replace(result, state=None)
        canvas.add(tile, result.image)
        if spread is not None and result.uncertainty is not None:
            spread.add(tile, result.uncertainty)  # [0, 1] units: the tile's layout
        results.append(result)
        done += result.iterations
        if result.stop_reason == "stopped":
            break
    final = canvas.image(fallback)
    uncertainty = None
    if spread is not None:
        uncertainty = std_to_user(spread.image(np.full_like(fallback, np.nan)), job.layout)
    reasons = [r.stop_reason for r in results]
    if len(results) < len(tiles) or "stopped" in reasons:
        stop_reason = "stopped"
    elif len(set(reasons)) == 1:
        stop_reason = reasons[0]
    else:  # e.g. "holdout (14 of 16 tiles), max_iterations (2 of 16 tiles)"
        stop_reason = ", ".join(f"{r} ({reasons.count(r)} of {len(tiles)} tiles)"
                                for r in dict.fromkeys(reasons))
    tile_records = [{"box": tile.as_list(), "iterations": r.iterations,
                     "stop_reason": r.stop_reason, "stop_iteration": r.stop_iteration,
                     "depth": r.parameters["depth"], "warm_start": r.parameters["warm_start"],
                     "stop_noise_variance": r.parameters["stop_noise_variance"],
                     "stop_noise_shares": r.parameters["stop_noise_shares"],
                     **({"refined": r.parameters["refined"]} if "refined" in r.parameters
                        else {}),
                     **({"deblock_budget": r.parameters["deblock_budget"]}
                        if "deblock_budget" in r.parameters else {})}
                    for tile, r in zip(tiles, results, strict=False)]
    return RestoreResult(
        image=job.layout.to_user(final, dtype=job.output_dtype),
        iterations=done,
        stop_reason=stop_reason,
        stop_iteration=done,
        history=_merged_history(results),
        parameters={**_recorded(job),
                    "depth": max((int(r.parameters["depth"]) for r in results), default=p.depth),
                    "backtracks": sum(int(r.parameters["backtracks"]) for r in results),
                    "warm_start": False, "channel_axis": job.layout.channel_axis,
                    "input_shape": list(job.layout.shape), "input_dtype": str(job.layout.dtype),
                    "tiles": tile_records, "tiles_restored": len(results),
                    "tile_used": job.tile_side,
                    **({"jpeg": _jpeg_record(job.jpeg)}
                       if p.stops_at_jpeg_budget else {}),
                    **({} if noise is None else {"noise_model": noise.record})},
        device=describe_device(device),
        elapsed=time.perf_counter() - start,
        intensity_range=(job.layout.low, job.layout.high),
        metrics=_metrics_of(job, final),
        uncertainty=uncertainty,
    )


def _relayed(run: RestoreGenerator,
             convert: Callable[[StepReport], StepReport]) -> RestoreGenerator:
    """Yield ``convert(report)`` for each of ``run``'s reports and return its result;
    ``run`` is closed (its memory freed) also when the caller closes this generator."""
    try:
        while True:
            try:
                report = next(run)
            except StopIteration as end:
                result: RestoreResult = end.value
                return result
            yield convert(report)
    finally:
        run.close()


def _merged_history(results: list[RestoreResult]) -> dict[str, np.ndarray]:
    """The tiles' histories one after another, iterations counted over all tiles;
    ``signal_tile`` says which tile each evaluated step belongs to."""
    steps = ("iteration", "loss", "elapsed")
    signal_keys = dict.fromkeys(k for r in results for k in r.history if k not in steps)
    merged: dict[str, list[np.ndarray]] = {k: [] for k in (*steps, *signal_keys, "signal_tile")}
    done = 0
    for index, r in enumerate(results):
        h = r.history
        rows = len(h["signal_iteration"])
        for k in steps:
            merged[k].append(np.asarray(h[k]) + (done if k == "iteration" else 0))
        for k in signal_keys:
            value = np.asarray(h[k], dtype=float) if k in h else np.full(rows, math.nan)
            merged[k].append(value + done if k == "signal_iteration" else value)
        merged["signal_tile"].append(np.full(rows, index))
        done += r.iterations
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in merged.items()}


def _chosen(output: str, last: torch.Tensor, ema: torch.Tensor | None,
            best: torch.Tensor | None) -> torch.Tensor:
    """The output the result is made of: the last iterate, the moving average or the best."""
    if output == "ema" and ema is not None:
        return ema
    if output == "best" and best is not None:
        return best
    return last


def _plan_noise(job: RestoreJob) -> NoiseFit | None:
    """The run's Poisson-Gaussian model (camera values given or estimated), or None."""
    p = job.params
    if p.noise == "gaussian":
        return None
    return plan_noise(job.observation, job.known, low=job.layout.low, high=job.layout.high,
                      gain=p.noise_gain, read_sigma=p.noise_read_sigma, offset=p.noise_offset,
                      fit=p.noise_fit, camera=job.noise_camera)


def _recorded(job: RestoreJob) -> dict[str, Any]:
    """The parameters for a run's record, with what their defaults decided."""
    p = job.params
    params = p.as_dict()
    if p.task == "inpaint":
        params["kept_known"] = p.keeps_known
        if job.known is not None:  # the mask's, a masked array's and NaN pixels together
            params["filled_pixels"] = int(job.known.size - np.count_nonzero(job.known))
    return params


def _composite(job: RestoreJob, out: torch.Tensor, crop: tuple[slice, slice],
               noise: NoiseFit | None = None) -> npt.NDArray[np.float64]:
    """(H, W, C) in [0, 1] of an output, back from the space the network fits; the
    enhancement task adds the detail layer back."""
    fitted: npt.NDArray[np.float64] = out[0][(..., *crop)].permute(1, 2, 0).cpu().double().numpy()
    if noise is not None:
        fitted = noise.to_data(fitted)
    if job.params.task == "enhance":
        # both signs of detail, unlike the reference which keeps only positive detail
        return np.clip(job.observation + job.params.gain * (job.observation - fitted), 0.0, 1.0)
    if job.kept_known is not None:
        # the fit only approximates the pixels it was given; they are known exactly
        return np.where(job.kept_known[..., None], job.observation, fitted)
    return fitted


def _to_user(job: RestoreJob, out: torch.Tensor, crop: tuple[slice, slice],
             noise: NoiseFit | None = None) -> npt.NDArray[Any]:
    return job.layout.to_user(_composite(job, out, crop, noise), dtype=job.output_dtype)


def _metrics_of(job: RestoreJob, final: npt.NDArray[np.float64]) -> dict[str, float]:
    """Blur, sharpness, their ratio and (with a reference) PSNR and SSIM of the
    [0, 1] (H, W, C) result."""
    from napari_specdip import metrics

    gray = metrics.to_gray(final[..., 0] if final.shape[2] == 1 else final) if final.shape[2] in (1, 3) else final.mean(-1)
    values = {"blur": metrics.blur(gray), "sharpness": metrics.sharpness(gray)}
    values["ratio"] = values["blur"] / max(values["sharpness"], 1e-12)
    if job.reference is not None:
        values["psnr"] = metrics.psnr(final, job.reference)
        values["ssim"] = metrics.ssim(final[..., 0] if final.shape[2] == 1 else final,
                                      job.reference[..., 0] if final.shape[2] == 1 else job.reference)
    return {k: float(v) for k, v in values.items()}
