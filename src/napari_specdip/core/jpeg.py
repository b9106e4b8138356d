"""How strongly a decoded JPEG was compressed, read from its pixels.

JPEG stores each 8x8 block's orthonormal DCT coefficients rounded to multiples of a
quantisation step per frequency. Decoding keeps them there, up to the decoder's rounding
to integers (a spread of about 0.3 grey levels per coefficient): so on the right block
grid the coefficients of a frequency sit on a lattice whose spacing is its step. The
steps, relative to the example luminance table of the JPEG standard (ITU-T T.81, Annex
K; libjpeg scales it by the quality setting), give one number for how much was thrown
away: 5 at libjpeg's quality 10, 1.67 at 30, 1 at 50, 0.5 at 75.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

#: The example luminance quantisation table of ITU-T T.81 (Annex K.1), row = vertical
#: frequency.
ANNEX_K_LUMINANCE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99]], dtype=np.float64)

#: JPEG codes colour as luminance (ITU-R BT.601, as JFIF) and two chroma planes: the
#: luminance's weights of R, G and B.
LUMA = (0.299, 0.587, 0.114)

# the lowest frequencies, the last to be zeroed (the mean, (0, 0), of every block)
_FREQUENCIES = ((0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2),
                (0, 3), (3, 0))
_STEPS = np.arange(3, 256, dtype=np.float64)  # 2 and 1 fit any set of coefficients
_TOLERANCE = 1.5  # grey levels: the decoder's rounding, through RGB for colour
_ON_LATTICE = 0.8  # share of a frequency's nonzero coefficients that must fit its step
_MIN_NONZERO = 10
_SIGNIFICANT = 6.0  # z-score of the share on the lattice against chance
_AGREEMENT = 0.25  # how far a frequency's step may stray from the table's scale
_GRID_FREQUENCIES = _FREQUENCIES[:3]  # enough to find the grid, a third of the time
_MAX_BLOCKS = 1024  # a central crop of larger images: plenty, and under a second
_RESTORE_ROUNDS = 30  # alternating projections per clipped block: most settle in ten
_SEARCH_BLOCKS = 256  # clipped blocks a table is tried on: enough to tell tables apart
_GRID_BLOCKS = 16  # clipped blocks each grid is tried on first
_QUALITY_SEARCHED = 90  # finer tables fit too much to be told from chance
# levels at or beyond which a decoded pixel was clipped to 0 or 255
_CLIPPED_LOW, _CLIPPED_HIGH = 0.5, 254.5


@dataclass(frozen=True)
class JpegEstimate:
    """What :func:`estimate_jpeg` found."""

    grid: tuple[int, int]  # (row, column) of the first whole block
    scale: float  # the steps over the Annex K table's (libjpeg: 50 / quality below 50)
    frequencies: int  # frequencies whose step was read
    # JPEG levels per unit of the values read (255 for values within [0, 1])
    levels_per_unit: float = 1.0

    def shifted(self, top: int, left: int) -> JpegEstimate:
        """The same JPEG seen from a crop whose first pixel is (``top``, ``left``)."""
        return replace(self, grid=((self.grid[0] - top) % 8, (self.grid[1] - left) % 8))

    def steps(self) -> npt.NDArray[np.float64]:
        """The 8 x 8 luminance steps of the table at this scale, as libjpeg rounds and
        bounds them (baseline: 1-255)."""
        return np.clip(np.floor(ANNEX_K_LUMINANCE * self.scale + 0.5), 1.0, 255.0)

    @property
    def quality(self) -> int:
        """The libjpeg quality setting (1-100) whose table has this scale."""
        percent = 100.0 * self.scale
        quality = 5000.0 / percent if percent >= 100.0 else (200.0 - percent) / 2.0
        return int(np.clip(round(quality), 1, 100))


def clipped_pixels(levels: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """(H, W): where an (H, W, C) image of JPEG levels was clipped to 0 or 255 in some
    channel (the clipping moved its block's coefficients off the lattice)."""
    clipped: npt.NDArray[np.bool_] = np.any((levels <= _CLIPPED_LOW) | (levels >= _CLIPPED_HIGH),
                                            axis=2)
    return clipped


def _blocks(z: npt.NDArray[Any], dy: int, dx: int) -> npt.NDArray[Any]:
    z = z[dy:, dx:]
    h, w = z.shape[0] // 8 * 8, z.shape[1] // 8 * 8
    return z[:h, :w].reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)


def _steps(blocks: npt.NDArray[np.float64], clipped: npt.NDArray[np.bool_],
           frequencies: tuple[tuple[int, int], ...] = _FREQUENCIES
           ) -> dict[tuple[int, int], tuple[float, float]]:
    """Per frequency: the largest step whose lattice holds its nonzero coefficients,
    and how far that is beyond chance (a z-score: a continuous coefficient falls within
    the tolerance of some multiple of ``q`` with probability ``2 tol / q``)."""
    from scipy.fft import dctn

    # a clipped pixel moved its block's coefficients off the lattice
    whole = ~clipped.any(axis=(1, 2))
    coefficients = dctn(blocks[whole], axes=(1, 2), norm="ortho")
    coefficients -= _level_shift()
    chance = np.minimum(2.0 * _TOLERANCE / _STEPS, 1.0 - 1e-9)
    found = {}
    for u, v in frequencies:
        c = np.abs(coefficients[:, u, v])
        # a step is judged on the coefficients it did not round to zero (those near zero
        # fit any step); its divisors fit too, so the largest step that fits is the one
        judged = c[:, None] >= _STEPS / 2.0
        count = judged.sum(axis=0)
        on = (np.abs(c[:, None] - _STEPS * np.round(c[:, None] / _STEPS)) < _TOLERANCE) & judged
        share = on.sum(axis=0) / np.maximum(count, 1)
        z = (share - chance) / np.sqrt(chance * (1.0 - chance) / np.maximum(count, 1))
        fits = np.flatnonzero((count >= _MIN_NONZERO) & (share >= _ON_LATTICE)
                              & (z >= _SIGNIFICANT))
        if fits.size:
            step = _STEPS[fits[-1]]
            # quantised coefficients take several multiples; one value repeated (a
            # synthetic ramp's) fits any of its divisors
            if np.unique(np.round(c[c >= step / 2.0] / step)).size >= 2:
                found[(u, v)] = (float(step), float(z[fits[-1]]))
    return found


def _level_shift() -> npt.NDArray[np.float64]:
    shift = np.zeros((8, 8))
    shift[0, 0] = 8.0 * 128.0  # JPEG centres the levels before the transform
    return shift


def _unclipped_coefficients(blocks: npt.NDArray[np.float64], steps: npt.NDArray[np.float64]
                            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """The coefficients a decoder had before it clipped (N, 8, 8) grey blocks of levels
    to [0, 255], on the lattice of ``steps`` ((8, 8), or (T, 1, 8, 8) for T tables at
    once): alternating projections between that lattice and the blocks that agree with
    the observed pixels and lie at or beyond the clipped ones' bound. Returns the
    coefficients ((..., N, 8, 8), level shift included, as the blocks' own transform)
    and which blocks reached a consistent point (within the decoder's rounding): on
    the wrong table almost none do."""
    from scipy.fft import dct

    basis = dct(np.eye(8), norm="ortho", axis=0)
    low, high = blocks <= _CLIPPED_LOW, blocks >= _CLIPPED_HIGH
    shift = _level_shift()
    values = np.broadcast_to(blocks, np.broadcast_shapes(blocks.shape, steps.shape))
    lattice = np.full(values.shape, np.nan)
    for _ in range(_RESTORE_ROUNDS):
        c = basis @ values @ basis.T - shift
        previous, lattice = lattice, steps * np.round(c / steps) + shift
        decoded = basis.T @ lattice @ basis
        if np.array_equal(previous, lattice):
            break
        values = np.where(low, np.minimum(decoded, 0.0),
                          np.where(high, np.maximum(decoded, 255.0), blocks))
    off = np.where(low | high, 0.0, np.abs(decoded - blocks)).max(axis=(-2, -1))
    beyond = np.maximum(np.where(low, decoded - _CLIPPED_LOW, 0.0),
                        np.where(high, _CLIPPED_HIGH - decoded, 0.0)).max(axis=(-2, -1))
    return lattice, (off <= _TOLERANCE) & (beyond <= _TOLERANCE)


@cache
def _libjpeg_tables() -> tuple[tuple[float, ...], npt.NDArray[np.float64]]:
    """The scales and (T, 1, 8, 8) steps of libjpeg's qualities 1 to
    :data:`_QUALITY_SEARCHED`, coarsest first; of qualities that round to the same
    table, the highest."""
    scales: list[float] = []
    tables: list[npt.NDArray[np.float64]] = []
    for quality in range(1, _QUALITY_SEARCHED + 1):
        scale = 50.0 / quality if quality < 50 else (200.0 - 2.0 * quality) / 100.0
        steps = JpegEstimate((0, 0), scale, 0).steps()
        if tables and np.array_equal(tables[-1], steps):
            scales.pop()
            tables.pop()
        scales.append(scale)
        tables.append(steps)
    stacked = np.stack(tables)[:, None]
    stacked.flags.writeable = False
    return tuple(scales), stacked


def _clipped_blocks_table(z: npt.NDArray[np.float64], clipped: npt.NDArray[np.bool_]
                          ) -> JpegEstimate | None:
    """The grid and scale of a grey JPEG read from its clipped blocks, where its whole
    ones hold too little to read (dark fluorescence: every block with detail has a
    pixel clipped at 0 by the ringing around it). The coarsest of libjpeg's tables on
    whose lattice the clipped blocks can be restored (:func:`_unclipped_coefficients`);
    a finer table than the JPEG's fits only where its steps divide the JPEG's. The
    grids are tried blockiest first (clipping hides the blocks' edges), each on a few
    blocks, and the first that fits is checked on more."""
    for grid in _grids_blockiest_first(z):
        cut = _blocks(clipped, *grid)
        partly = np.flatnonzero(cut.any(axis=(1, 2)) & ~cut.all(axis=(1, 2)))
        if partly.size < _MIN_NONZERO:
            continue
        blocks = _blocks(z, *grid)
        few = _coarsest_fitting_table(blocks[partly[:: max(1, partly.size // _GRID_BLOCKS)]])
        if few is None:
            continue
        spread = np.linspace(0, partly.size - 1, min(partly.size, _SEARCH_BLOCKS)).astype(int)
        found = _coarsest_fitting_table(blocks[partly[spread]])
        if found is not None:
            return replace(found, grid=grid)
    return None


def _coarsest_fitting_table(blocks: npt.NDArray[np.float64]) -> JpegEstimate | None:
    """The coarsest of libjpeg's tables on whose lattice 80% of these partly clipped
    blocks can be restored, if it uses more than one frequency (grid left at (0, 0))."""
    scales, steps = _libjpeg_tables()
    lattice, consistent = _unclipped_coefficients(blocks, steps)
    fitting = np.flatnonzero(consistent.mean(axis=1) >= _ON_LATTICE)
    if not fitting.size:
        return None
    first = int(fitting[0])
    multiples = np.round((lattice[first][consistent[first]] - _level_shift()) / steps[first])
    # a table scales the standard's as a whole: more than one frequency must be used
    used = sum(bool(np.any(multiples[:, u, v] != 0)) for u, v in _FREQUENCIES[1:])
    return JpegEstimate((0, 0), scales[first], used) if used >= 2 else None


def estimate_jpeg(image: npt.ArrayLike) -> JpegEstimate | None:
    """The block grid and quantisation strength of a decoded JPEG.

    Parameters
    ----------
    image : array_like
        (H, W) grey or (H, W, 3) RGB levels 0-255 as decoded (an image whose values
        are all within [0, 1] is taken as level / 255).

    Returns
    -------
    JpegEstimate or None
        None when no 8x8 grid holds quantised coefficients: not a JPEG, resampled or
        rescaled since, or compressed so lightly (libjpeg quality above about 85)
        that its steps cannot be told from the decoder's rounding.

    Notes
    -----
    The steps are read per frequency from the blocks without a clipped pixel. Where
    those hold too little (a dark grey image, whose detail sits in blocks that the
    ringing clipped at 0), libjpeg's tables are tried instead, coarsest first, on the
    clipped blocks: the first on whose lattice 80% of them can be restored is taken,
    the grids tried blockiest first. On a grey image that is not a JPEG but has
    clipped pixels, trying every grid and table takes up to about 2 s; the last few
    images read are remembered (by their pixels), so that a run after its estimate
    does not search again.

    Examples
    --------
    >>> import io, imageio.v3 as iio
    >>> from skimage import data
    >>> encoded = iio.imwrite("<bytes>", data.camera()[100:228, 200:328], extension=".jpg",
    ...                       quality=30)
    >>> found = estimate_jpeg(iio.imread(io.BytesIO(encoded), extension=".jpg"))
    >>> found.grid, found.quality
    ((0, 0), 30)
    """
    z = np.asarray(image, dtype=np.float64)
    if z.ndim == 3 and z.shape[2] == 3:
        rgb = z
    elif z.ndim == 2:
        rgb = z[..., None]
    else:
        raise ValueError(f"JPEG estimation needs a grey or RGB image, got shape {z.shape}")
    if min(rgb.shape[:2]) < 16 or not np.isfinite(rgb).all():
        return None
    unit = 255.0 if np.max(rgb) <= 1.0 else 1.0
    rgb = rgb * unit
    side = int(8 * np.sqrt(_MAX_BLOCKS))
    top, left = max(0, (rgb.shape[0] - side) // 2), max(0, (rgb.shape[1] - side) // 2)
    rgb = np.ascontiguousarray(rgb[top:top + side + 8, left:left + side + 8])
    # the same image is read again when it is run after its time was estimated, and the
    # clipped-block search can take a second or two: read it once
    key = (rgb.shape, hashlib.blake2b(rgb.tobytes(), digest_size=16).digest())
    with _READ_LOCK:
        known = key in _READ
        read = _READ.get(key)
    if not known:
        read = _read_crop(rgb)
        with _READ_LOCK:
            _READ[key] = read
            while len(_READ) > _READ_KEPT:
                _READ.popitem(last=False)
    if read is None:
        return None
    dy, dx = read.grid
    return replace(read, grid=((dy + top) % 8, (dx + left) % 8), levels_per_unit=unit)


_READ: OrderedDict[tuple[tuple[int, ...], bytes], JpegEstimate | None] = OrderedDict()
_READ_LOCK = threading.Lock()
_READ_KEPT = 8


def _read_crop(rgb: npt.NDArray[np.float64]) -> JpegEstimate | None:
    """:func:`estimate_jpeg` of an (H, W, C) crop of levels, its grid from the crop's
    corner."""
    clipped = clipped_pixels(rgb)
    z = luma(rgb)
    evidence = np.zeros((8, 8))
    for dy in range(8):
        for dx in range(8):
            steps = _steps(_blocks(z, dy, dx), _blocks(clipped, dy, dx), _GRID_FREQUENCIES)
            evidence[dy, dx] = sum(score for _, score in steps.values())
    dy, dx = (int(i) for i in np.unravel_index(np.argmax(evidence), evidence.shape))
    found = _steps(_blocks(z, dy, dx), _blocks(clipped, dy, dx))
    ratios = np.array([step / ANNEX_K_LUMINANCE[f] for f, (step, _) in found.items()])
    scale = float(np.median(ratios)) if ratios.size else 1.0  # none read: none agree
    # a quantisation table scales the standard's as a whole: the frequencies agree
    agreeing = int(np.sum(np.abs(ratios / scale - 1.0) <= _AGREEMENT))
    if agreeing >= 2:
        return JpegEstimate(grid=(dy, dx), scale=scale, frequencies=agreeing)
    return _clipped_blocks_table(z, clipped) if rgb.shape[2] == 1 else None


def block_references(levels: npt.NDArray[np.float64], found: JpegEstimate
                     ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Which 8 x 8 blocks of a decoded JPEG's luminance (on ``found``'s grid, row by
    row) tell where its quantisation intervals lie, and their centres: the blocks' own
    DCT coefficients (level shift included) where no pixel was clipped; in grey images
    also the coefficients the decoder had before it clipped a block, where they can be
    restored on the lattice of ``found``'s steps (in colour the clipping happened in
    RGB, after the transform back from YCbCr). ``levels`` is (H, W, C) in JPEG levels.
    Blocks clipped throughout say little and are left out with the rest."""
    from scipy.fft import dctn

    clipped = clipped_pixels(levels)
    z = luma(levels)
    blocks, cut = _blocks(z, *found.grid), _blocks(clipped, *found.grid)
    usable: npt.NDArray[np.bool_] = np.asarray(~cut.any(axis=(1, 2)))
    centres = dctn(blocks, axes=(1, 2), norm="ortho")
    if levels.shape[2] == 1:
        partly = np.flatnonzero(~usable & ~cut.all(axis=(1, 2)))
        lattice, consistent = _unclipped_coefficients(blocks[partly], found.steps())
        centres[partly[consistent]] = lattice[consistent]
        usable[partly[consistent]] = True
    return usable, centres[usable]


#: The deblocking budget (:func:`deblock_budget`): iterations at 128 px, at the scale of
#: libjpeg's quality 10, width 32 and Adam 1e-2 (the quick preset), and the powers of
#: the image's side, of the quantisation scale, of the network's width and of the step
#: by which it grows or shrinks. Chosen on the tuning half of benchmarks/trajectories.py's
#: deblocking plans (benchmarks/README.md: *A budget from the JPEG's own compression*):
#: the balanced preset (width 64, Adam 3e-3) peaked where the quick one did (camera 535
#: iterations against 485, brick 125 against 125), hence the small power of the step.
BUDGET_ITERATIONS = 450.0
BUDGET_SIDE = 128.0
BUDGET_SCALE = 5.0
BUDGET_WIDTH = 32
BUDGET_SIDE_POWER = 1.5
BUDGET_SCALE_POWER = 1.0
BUDGET_WIDTH_POWER = 0.5
BUDGET_LEARNING_RATE = 1e-2
BUDGET_LEARNING_RATE_POWER = 0.25
#: The power of the quantisation scale shrinks with the step: it is
#: ``BUDGET_SCALE_POWER x (learning_rate / BUDGET_LEARNING_RATE) ** BUDGET_SCALE_POWER_STEP``,
#: 1 at the quick preset's step and 0.8 at the balanced preset's (3e-3). At that preset
#: lightly compressed JPEGs peak sooner against the heavy ones than at the quick one
#: (quality 50 at 128 px: 1135-1720 iterations against 1325-2310). 0.8 was chosen on the
#: tuning half of the balanced recordings from 0.7-1 (1: 530 iterations past a peak;
#: 0.8: 305, and the fewest in all of those within 0.02 dB of the best mean gap); on the
#: held-out half the most past a peak went from 1015 to 425 iterations.
BUDGET_SCALE_POWER_STEP = 0.185
#: Without a quantisation found, at 128 px: the deblocking presets' cap until 2026-12-04
#: (within 0.2 dB of the best at 128 px and quality 10, benchmarks/stopping.py).
UNKNOWN_BUDGET = 1000


def deblock_budget(found: JpegEstimate | None, height: int, width_px: int, *, width: int,
                   learning_rate: float, cap: int) -> int:
    """Iterations a deblocking fit of a ``height`` x ``width_px`` image gets before its
    output is returned, at most ``cap``.

    JPEG's errors are shared by the pixels of a block, so the held-out pixels see them
    too and the hold-out stop rarely fires. The fit reaches its best later the larger the
    image and the lighter the compression (the less there is to undo): from about 100
    iterations for a 64 px image at quality 10 to past 2000 at 128 px and quality 50.
    The budget follows both, and the network's width and step, measured on the runs of
    benchmarks/trajectories.py; at a smaller step it grows less with the lightness of
    the compression (:data:`BUDGET_SCALE_POWER_STEP`). Without a quantisation found
    (not a JPEG, a very light one, or too few blocks to read it from):
    :data:`UNKNOWN_BUDGET` at 128 px, the fixed budget used before, grown with the
    image's side alike.

    Examples
    --------
    >>> light, heavy = JpegEstimate((0, 0), 1.0, 11), JpegEstimate((0, 0), 5.0, 11)
    >>> [deblock_budget(j, 128, 128, width=32, learning_rate=1e-2, cap=3000)
    ...  for j in (heavy, light, None)]
    [450, 2250, 1000]
    >>> [deblock_budget(j, 128, 128, width=64, learning_rate=3e-3, cap=3000)
    ...  for j in (heavy, light)]
    [430, 1560]
    """
    side = float(np.sqrt(height * width_px))
    size = (side / BUDGET_SIDE) ** BUDGET_SIDE_POWER
    if found is None:
        budget = UNKNOWN_BUDGET * size
    else:
        scale_power = (BUDGET_SCALE_POWER
                       * (learning_rate / BUDGET_LEARNING_RATE) ** BUDGET_SCALE_POWER_STEP)
        budget = (BUDGET_ITERATIONS * size
                  * (BUDGET_SCALE / max(found.scale, 1e-3)) ** scale_power
                  * (BUDGET_WIDTH / width) ** BUDGET_WIDTH_POWER
                  * (BUDGET_LEARNING_RATE / learning_rate) ** BUDGET_LEARNING_RATE_POWER)
    return int(min(cap, max(1, round(budget / 5.0) * 5)))


#: The deblocking auto stop's consistency rule (:class:`napari_specdip.stopping.ConsistencyRule`)
#: ends the run once the moving average's :func:`excess` is at most this many grey levels
#: at libjpeg's quality 10 (:data:`BUDGET_SCALE`), with the quantisation steps at others
#: (:func:`consistency_threshold`; None: the budget alone). Chosen on the tuning half of
#: benchmarks/trajectories.py's ``deblock-consistency`` and ``deblock-dark`` plans (22
#: runs, quality 10-50, 64 and 128 px) once clipped blocks counted
#: (:func:`block_references`): benchmarks/README.md, *The output's consistency with its
#: JPEG* and *Clipped blocks*.
CONSISTENT_EXCESS: float | None = 0.4
#: The threshold follows the steps to this power. In proportion (1), dark fluorescence at
#: quality 30 ran 565 iterations past its peak before its fit got within the narrower
#: intervals; the power is the one of the smallest mean gap among those that keep every
#: tuning run within 500 iterations of its peak (issue 9's bound), the threshold at
#: quality 10 unchanged (benchmarks/README.md, *The consistency threshold at lighter
#: JPEGs*).
CONSISTENCY_SCALE_POWER = 0.75
#: Grey levels by which a coefficient may stray beyond its quantisation interval and still
#: count as the JPEG's: the decoder's rounding, through RGB for colour.
EXCESS_TOLERANCE = _TOLERANCE


def consistency_threshold(found: JpegEstimate | None, at_reference: float | None
                          ) -> float | None:
    """The :func:`excess` at which a deblocking run on this JPEG counts as consistent
    with it: ``at_reference`` grey levels at the quantisation scale of libjpeg's quality
    10, scaled with the steps to the power :data:`CONSISTENCY_SCALE_POWER` (a lighter
    JPEG's intervals are narrower, and a flat, sparse image lies within them early while
    its few details are still being fitted; less than in proportion, since a fit gets
    within narrow intervals late). None without a JPEG or a threshold.

    Examples
    --------
    >>> [round(consistency_threshold(JpegEstimate((0, 0), s, 11), 0.2), 3) for s in (5.0, 1.0)]
    [0.2, 0.06]
    """
    if found is None or at_reference is None:
        return None
    return at_reference * float((found.scale / BUDGET_SCALE) ** CONSISTENCY_SCALE_POWER)


def luma(image: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(H, W) grey or (H, W, 1) as it is, (H, W, 3) RGB through :data:`LUMA`."""
    z = np.asarray(image, dtype=np.float64)
    if z.ndim == 3:
        z = z[..., 0] if z.shape[2] == 1 else z @ np.array(LUMA)
    return z


def excess(image: npt.ArrayLike, observation: npt.ArrayLike, found: JpegEstimate) -> float:
    """How far ``image`` lies outside the set of images whose JPEG is ``observation``:
    the RMS, in grey levels over every coefficient of the luminance blocks, of how far
    each 8 x 8 DCT coefficient lies beyond its quantisation interval around the
    observation's (widened by :data:`EXCESS_TOLERANCE`).

    The original image lies inside that set (0; in colour within a few hundredths of
    a level: the decoder's rounding through RGB), and so does the JPEG itself: a fit
    that has drawn back the detail the compression kept reaches 0, and from then on
    only moves towards the JPEG's own block steps. A block with a clipped pixel counts
    where the coefficients it had before the clipping can be restored
    (:func:`block_references`: grey images), and is left out otherwise. ``image``
    and ``observation`` are (H, W) or (H, W, 3) in the units the estimate was read
    in; NaN when no block holds.

    Examples
    --------
    >>> import io, imageio.v3 as iio
    >>> from skimage import data
    >>> clean = data.camera()[100:164, 200:264]
    >>> encoded = iio.imwrite("<bytes>", clean, extension=".jpg", quality=20)
    >>> decoded = iio.imread(io.BytesIO(encoded), extension=".jpg")
    >>> found = estimate_jpeg(decoded)
    >>> excess(clean, decoded, found), excess(decoded, decoded, found)
    (0.0, 0.0)
    >>> bool(excess(np.full_like(clean, clean.mean()), decoded, found) > 1.0)
    True
    """
    from scipy.fft import dctn

    unit = found.levels_per_unit
    z = luma(image) * unit
    levels = np.asarray(observation, dtype=np.float64) * unit
    if z.shape != levels.shape[:2]:
        raise ValueError(f"image {z.shape} and observation {levels.shape[:2]} differ in shape")
    usable, centres = block_references(levels if levels.ndim == 3 else levels[..., None],
                                       found)
    if not usable.any():
        return float("nan")
    difference = dctn(_blocks(z, *found.grid)[usable], axes=(1, 2), norm="ortho") - centres
    beyond = np.maximum(np.abs(difference) - found.steps() / 2.0 - EXCESS_TOLERANCE, 0.0)
    return float(np.sqrt(np.mean(beyond**2)))


def blockiness(gray: npt.ArrayLike, grid: tuple[int, int]) -> float:
    """How much an image steps at the edges of JPEG's 8x8 blocks: the mean squared
    difference between neighbours across a block edge over that within blocks (about 1
    for an image that knows nothing of the grid, larger for a blocky one).

    Parameters
    ----------
    gray : array_like
        (H, W) image.
    grid : tuple of int
        (row, column) of the first whole block, as :attr:`JpegEstimate.grid`.

    Examples
    --------
    >>> flat_blocks = np.kron(np.arange(16.0).reshape(4, 4), np.ones((8, 8)))
    >>> blockiness(flat_blocks + np.linspace(0, 1, 32), (0, 0)) > 100
    True
    """
    return _EdgeSums(np.asarray(gray, dtype=np.float64)).blockiness(grid)


def block_edges(height: int, width: int, grid: tuple[int, int]
                ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per axis, which neighbour differences (``z[i] - z[i-1]``, i from 1) cross an
    edge of the 8x8 blocks of ``grid``: (height - 1,) and (width - 1,) masks."""
    return ((np.arange(1, height) % 8) == grid[0] % 8,
            (np.arange(1, width) % 8) == grid[1] % 8)


class _EdgeSums:
    """An image's squared neighbour differences summed per row step and per column
    step: the blockiness of any grid from them alone (64 grids for the cost of one)."""

    def __init__(self, z: npt.NDArray[np.float64]) -> None:
        self.shape = z.shape
        self.rows = np.square(np.diff(z, axis=0)).sum(axis=1)  # per step down, (H - 1,)
        self.cols = np.square(np.diff(z, axis=1)).sum(axis=0)  # per step across, (W - 1,)

    def blockiness(self, grid: tuple[int, int]) -> float:
        height, width = self.shape
        rows, cols = block_edges(height, width, grid)
        across_n = rows.sum() * width + cols.sum() * height
        within_n = (~rows).sum() * width + (~cols).sum() * height
        across = (self.rows[rows].sum() + self.cols[cols].sum()) / across_n if across_n else 0.0
        within = (self.rows[~rows].sum() + self.cols[~cols].sum()) / within_n if within_n else 0.0
        return float(across / max(within, 1e-30))


def _grids_blockiest_first(gray: npt.ArrayLike) -> list[tuple[int, int]]:
    """The 64 grid offsets, the one at which ``gray`` is blockiest first (ties in row
    order)."""
    sums = _EdgeSums(np.asarray(gray, dtype=np.float64))
    return sorted(((dy, dx) for dy in range(8) for dx in range(8)),
                  key=lambda grid: -sums.blockiness(grid))


def likely_grid(gray: npt.ArrayLike) -> tuple[int, int]:
    """The 8x8 grid offset at which ``gray`` is blockiest: a JPEG's grid where
    :func:`estimate_jpeg` could not read the quantisation (too few blocks)."""
    return _grids_blockiest_first(gray)[0]
