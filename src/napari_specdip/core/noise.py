"""Poisson-Gaussian noise of photon-counting cameras: estimation and variance stabilisation.

Model, in the input's intensity units (e.g. ADU of a uint16 camera image)::

    z = offset + gain * Poisson(x / gain) + N(0, read_sigma**2)
    var(z) = gain * (E[z] - offset) + read_sigma**2

``x / gain`` is the expected photon (electron) count, ``gain`` the camera's
conversion factor in intensity units per photon, ``offset`` its pedestal (the
value of zero photons) and ``read_sigma`` its read noise. The engine works on
the image mapped to [0, 1] by its intensity range ``(low, high)``; there the
variance is affine in the mean, ``var = a * mean + b`` with ``a = gain / R`` and
``b = (read_sigma**2 - gain * (offset - low)) / R**2``, ``R = high - low``.

Only ``a`` and ``b`` can be read off the variance of one image (Foi et al.
2008): the pedestal and the read noise trade against each other. The third
cumulant tells them apart: Gaussian read noise has none, while ``gain *
Poisson(n)`` has ``gain**3 * n``, so the noise's skewness at a level counts the
photons it holds and places the pedestal below it. When that count is too
uncertain to pin the read noise, the offset is taken as the image's black level
(its darkest smooth level is assumed to receive no photons), which makes the
reported read noise an upper bound when the darkest region still receives
light. The variance-stabilising transform needs ``a`` and ``b`` only.

References: Foi, Trimeche, Katkovnik, Egiazarian, "Practical Poissonian-Gaussian
noise modeling and fitting for single-image raw-data", IEEE TIP 17(10), 2008;
Makitalo, Foi, "Optimal inversion of the generalized Anscombe transformation for
Poisson-Gaussian noise", IEEE TIP 22(1), 2013.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

Array = npt.NDArray[np.float64]

NOISE_MODELS: tuple[str, ...] = ("gaussian", "poisson-gaussian")

# The fewest neighbourhoods the estimator fits a curve to (a 46 x 46 image).
_MIN_SAMPLES = 1500
_WINDOW = 7  # local mean over 7 x 7 pixels: its own noise is 1/7 of the pixels'
_RING = 6  # a 2x2 block's bin is picked by the 32 pixels around it in a 6x6 window
# The skewness's black level replaces the darkest level's when its standard error in
# read variance is at most this share of the read variance the darkest level implies
# (an upper bound): a looser count moves the read noise by more than it corrects.
SKEW_TRUST = 0.3
_SKEW_CLIP = 6.0  # robust deviations kept, on both sides alike
# z-score of the fourth cumulant's excess over Poisson's above which the skewness is not
# trusted: clean synthetic exposures reach 3.0 (2 of 108 at 256 px fall back); 0.2% of pixels
# raised by 5 read-noise sigmas reach 3.7-6.5 (30 and 10 photons)
_POISSON_CHECK = 3.0
_SKEW_BINS = 16  # intensity bins of the skewness (its dark ones carry nearly all the weight)
BLACK_METHODS: tuple[str, ...] = ("given", "skewness", "darkest level")
# Per channel, a larger image is sampled in evenly spaced bands of rows holding about this
# many pixels: a 16 MP image took 4x the time and 2.2 GB whole; the fit needs far fewer.
SAMPLED_PIXELS = 1 << 22
_BAND_ROWS = 256
_BAND_MARGIN = 16  # rows either side of a band that its filters and erosions read


@dataclass(frozen=True)
class PoissonGaussian:
    """``var = a * mean + b`` on the [0, 1] scale, and the black level ``black``
    (the [0, 1] value of zero photons).

    Examples
    --------
    >>> model = PoissonGaussian.from_camera(gain=2.0, read_sigma=3.0, offset=100.0,
    ...                                     low=90.0, high=1090.0)
    >>> round(model.a, 6), round(model.black, 6)
    (0.002, 0.01)
    >>> model.to_camera(low=90.0, high=1090.0)["read_sigma"]
    3.0
    """

    a: float
    b: float
    black: float

    @property
    def read_variance(self) -> float:
        """Variance of the Gaussian part on the [0, 1] scale: ``b + a * black``."""
        return max(self.b + self.a * self.black, 0.0)

    @property
    def read_photons(self) -> float:
        """Read noise in photons: ``read_sigma / gain``."""
        return math.sqrt(self.read_variance) / self.a if self.a > 0 else math.inf

    def variance(self, mean: npt.ArrayLike) -> Array:
        """Noise variance at a given expected [0, 1] intensity (floored at a tiny value)."""
        return np.maximum(self.a * np.asarray(mean, dtype=np.float64) + self.b, 1e-12)

    def photons(self, mean: npt.ArrayLike) -> Array:
        """Expected photon count of an expected [0, 1] intensity."""
        return (np.asarray(mean, dtype=np.float64) - self.black) / self.a

    @classmethod
    def from_camera(cls, *, gain: float, read_sigma: float, offset: float, low: float,
                    high: float) -> PoissonGaussian:
        """Model from camera values in input units and the [0, 1] mapping ``low..high``."""
        span = high - low
        a = gain / span
        black = (offset - low) / span
        return cls(a=a, b=(read_sigma / span) ** 2 - a * black, black=black)

    def to_camera(self, *, low: float, high: float) -> dict[str, float]:
        """``gain``, ``read_sigma``, ``offset`` in input units (JSON-ready floats)."""
        span = high - low
        return {"gain": float(self.a * span), "read_sigma": float(math.sqrt(self.read_variance) * span),
                "offset": float(low + self.black * span)}


@dataclass(frozen=True)
class NoiseEstimate:
    """What :func:`estimate_poisson_gaussian` found, with the points it fitted."""

    model: PoissonGaussian
    means: Array  # per intensity bin: mean of the local means
    variances: Array  # per intensity bin: noise variance
    counts: npt.NDArray[np.int64]  # samples per bin
    samples: int  # pixels used in all
    black_from: str = "darkest level"  # one of BLACK_METHODS


def _local_mean(z: Array, size: int) -> Array:
    from scipy.ndimage import uniform_filter

    out: Array = uniform_filter(z, size=size, mode="reflect")
    return out


Rows = tuple[int, int]  # [first, last) rows of a band whose samples are kept


def _bands(height: int, width: int) -> list[Rows]:
    """The rows sampled: the whole image up to :data:`SAMPLED_PIXELS`, else evenly spaced
    bands that hold about that many."""
    if height * width <= SAMPLED_PIXELS:
        return [(0, height)]
    rows = max(_BAND_MARGIN, min(_BAND_ROWS, SAMPLED_PIXELS // (8 * width)))
    starts = range(0, height, rows)
    picks = np.linspace(0, len(starts) - 1, max(1, SAMPLED_PIXELS // (rows * width)))
    return [(starts[i], min(starts[i] + rows, height)) for i in np.unique(picks.round()).astype(int)]


def _in_bands(sample: Callable[[Array, npt.NDArray[np.bool_], Rows], tuple[Array, ...]],
              z: Array, valid: npt.NDArray[np.bool_]) -> tuple[Array, ...]:
    """``sample(z, valid, rows)`` over the bands of :func:`_bands`, concatenated: each
    band read with its margins, its samples kept for its own rows (a whole image: as is)."""
    parts = []
    for top, bottom in _bands(z.shape[0], z.shape[1]):
        low, high = max(top - _BAND_MARGIN, 0), min(bottom + _BAND_MARGIN, z.shape[0])
        parts.append(sample(z[low:high], valid[low:high], (top - low, bottom - low)))
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))


def _keep_rows(ok: npt.NDArray[np.bool_], rows: Rows) -> npt.NDArray[np.bool_]:
    ok[:rows[0]] = False
    ok[rows[1]:] = False
    return ok


def _level_samples(z: Array, valid: npt.NDArray[np.bool_], rows: Rows
                   ) -> tuple[Array, Array, Array, Array]:
    """Per 2x2 neighbourhood (those starting in ``rows``): noise sample (diagonal Haar
    detail), the mean of the ring around it (the 6x6 window less the block) that picks its
    intensity bin, the block's own mean that places the bin's level, and a roughness.

    The detail ``(z00 - z01 - z10 + z11) / 2`` has the pixels' variance for white
    noise and cancels constant, linear and axis-aligned-edge signal. The ring shares no
    pixel with the block, so the choice of bin neither skews the block's noise nor its
    level: a mean over the block's own pixels picks the blocks whose noise put them in
    an extreme bin, which inflated those bins' variance (the diagonal detail's two
    ``+`` pixels share a checkerboard colour, so a mean over one colour did too: gain
    1.3-1.6x on sparse spots at 5 photons), and a mean that picks a bin and also
    places it flattens the fitted slope at low photon counts (regression dilution).
    Within a bin, ``E[detail**2] = a * E[block mean] + b`` for any such choice."""
    detail = 0.5 * (z[:-1, :-1] - z[:-1, 1:] - z[1:, :-1] + z[1:, 1:])
    quad = 0.25 * (z[:-1, :-1] + z[:-1, 1:] + z[1:, :-1] + z[1:, 1:])
    # an even window's filter at (i + 1, j + 1) covers rows and columns i - 2 .. i + 3
    side = _RING
    ring = (_local_mean(z, side)[1:, 1:] * side**2 - 4.0 * quad) / (side**2 - 4)
    small = _local_mean(quad, 3)
    roughness = _local_mean((small - _local_mean(quad, _WINDOW - 1)) ** 2, _WINDOW - 1)
    ok = _keep_rows(_usable_neighbourhoods(valid), rows)
    return detail[ok], ring[ok], quad[ok], roughness[ok]


def _flat_bins(select: Array, roughness: Array | None, count: int
               ) -> list[npt.NDArray[np.intp]]:
    """Indices of the samples in each of ``count`` equal intensity bins of ``select``
    (between its 0.2% and 99.8% quantiles; bins of fewer than 60 left out), less the
    roughest fifth of each bin (edges, texture) when a ``roughness`` is given. Keeping
    only the flattest half measured no better on synthetic cells and nuclei (fewer
    samples)."""
    lo, hi = np.quantile(select, [0.002, 0.998])
    index = np.clip(np.searchsorted(np.linspace(lo, hi, count + 1), select, side="right") - 1,
                    0, count - 1)
    index[(select < lo) | (select > hi)] = -1
    out = []
    for k in range(count):
        members = np.flatnonzero(index == k)
        if members.size < 60:
            continue
        if roughness is None:
            out.append(members)
            continue
        rough = roughness[members]
        out.append(members[rough <= np.quantile(rough, 0.8)])
    return out


def _skew_samples(z: Array, valid: npt.NDArray[np.bool_], rows: Rows
                  ) -> tuple[Array, Array, Array]:
    """Per pixel (of ``rows``): its residual against the mean of its 8 neighbours, the
    mean of the ring around them (the 7x7 window less the 3x3), and the pixel.

    The residual keeps ``63/64`` of a pixel's third cumulant (a symmetric detail such as
    the diagonal Haar one cancels it) and cancels constant and linear signal. The ring
    picks the level without touching the nine pixels the residual is made of, so the
    choice does not skew their noise; the pixel itself then measures the level."""
    nine = _local_mean(z, 3) * 9.0
    ring = (_local_mean(z, _WINDOW) * _WINDOW**2 - nine) / (_WINDOW**2 - 9)
    residual = z - (nine - z) / 8.0
    ok = _keep_rows(_eroded(valid, _WINDOW, border=False), rows)
    return residual[ok], ring[ok], z[ok]


def _dark_samples(z: Array, valid: npt.NDArray[np.bool_], rows: Rows) -> tuple[Array]:
    """The 7x7 means of the channels' mean (of ``rows``), where the darkest level is read."""
    return (_local_mean(z.mean(axis=2), _WINDOW)[_keep_rows(valid.copy(), rows)],)


def _black_from_skewness(samples: Sequence[tuple[Array, ...]], a: float,
                         bins: int = _SKEW_BINS) -> tuple[float, float] | None:
    """Black level and its standard error from the third cumulant of the noise.

    At a level ``m`` holding ``n`` photons, ``kappa3 = a**3 * n`` and ``m - black =
    a * n``, so ``black = m - kappa3 / a**2`` per intensity bin;
    the bins are combined with the inverse squares of their standard errors (from the
    third moment's influence function ``d**3 - 3 kappa2 d``), which favours the dark,
    quiet levels.

    Poisson counts also have ``kappa4 = a * kappa3``; outliers that skew the noise (warm
    pixels raised by ``h``) add ``kappa4`` about ``h`` times their ``kappa3``. None where the
    fourth cumulant's excess over ``a * kappa3`` (pooled over the bins likewise) is
    significant, or without a usable bin."""
    residual, ring, pixel = (np.concatenate([s[i] for s in samples]) for i in range(3))
    if residual.size < _MIN_SAMPLES:
        return None
    centre = float(np.median(residual))
    mad = 1.4826 * float(np.median(np.abs(residual - centre)))
    # symmetric, so that it drops hot pixels without skewing the rest
    keep = np.abs(residual - centre) <= _SKEW_CLIP * max(mad, 1e-12)
    residual, ring, pixel = residual[keep], ring[keep], pixel[keep]
    kept = 63.0 / 64.0
    weights, blacks, excess, excess_weights = [], [], [], []
    # no roughness cut: a roughness takes in the pixel's own noise, so cutting the roughest
    # fifth drops the noise's right tail (read noise 1.15x on a ramp, 1.03x kept whole;
    # median over 72 synthetic cases 1.01-1.03x, 0.99-1.01x kept whole)
    for flat in _flat_bins(ring, None, bins):
        d = residual[flat] - residual[flat].mean()
        m2, m3, m4 = (float(np.mean(d**k)) for k in (2, 3, 4))
        error = float(np.std(d**3 - 3.0 * m2 * d)) / math.sqrt(d.size) / kept / a**2
        error4 = float(np.std(d**4 - 6.0 * m2 * d * d - 4.0 * m3 * d)) / math.sqrt(d.size)
        if error <= 0.0 or error4 <= 0.0:
            continue
        blacks.append(float(pixel[flat].mean()) - m3 / kept / a**2)
        weights.append(error**-2)
        # the residual keeps 1 + 1/512 of kappa4: left as is
        excess.append(m4 - 3.0 * m2 * m2 - a * m3 / kept)
        excess_weights.append(error4**-2)
    if not weights:
        return None
    v = np.asarray(excess_weights)
    if np.sum(v * np.asarray(excess)) / np.sum(v) > _POISSON_CHECK * np.sum(v) ** -0.5:
        return None
    w = np.asarray(weights)
    return float(np.sum(w * np.asarray(blacks)) / np.sum(w)), float(np.sum(w) ** -0.5)


def _usable_neighbourhoods(valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """(H-1, W-1): the 2x2 neighbourhoods whose whole window is usable (mask, clipping)."""
    ok = valid[:-1, :-1] & valid[:-1, 1:] & valid[1:, :-1] & valid[1:, 1:]
    return _eroded(ok, _WINDOW, border=True)


def _eroded(mask: npt.NDArray[np.bool_], size: int, *, border: bool) -> npt.NDArray[np.bool_]:
    """``mask`` eroded by a ``size`` square, outside the image counted as ``border``."""
    from scipy.ndimage import binary_erosion

    # a square window erodes as a column then a row: several times faster
    for shape in ((size, 1), (1, size)):
        mask = binary_erosion(mask, structure=np.ones(shape, bool), border_value=int(border))
    return np.asarray(mask, dtype=bool)


def usable_samples(image: npt.ArrayLike, known: npt.ArrayLike | None = None, *,
                   at_least: int | None = None) -> int:
    """How many noise samples :func:`estimate_poisson_gaussian` can draw from ``image``
    ((H, W) or (H, W, C), [0, 1] scale) before it drops outliers: the count it needs at
    least ``_MIN_SAMPLES`` of, from the rows it samples (:func:`_bands`). With
    ``at_least``, counting stops once that many are found (the check before a run, on
    the GUI thread: a band of rows, not the image)."""
    z = np.asarray(image, dtype=np.float64)
    if z.ndim == 2:
        z = z[..., None]
    mask = np.ones(z.shape[:2], bool) if known is None else np.asarray(known, bool)
    rows = z.shape[0] - 1  # of 2x2 neighbourhoods
    band, reach = 128, _WINDOW // 2  # a band's rows see this far into its neighbours
    sampled = [(first, min(last, rows)) for first, last in _bands(z.shape[0], z.shape[1])]
    total = 0
    for c in range(z.shape[2]):
        valid = mask & _unclipped(z[..., c])
        for first, last in sampled:
            for top in range(first, last, band):
                bottom = min(top + band, last)
                low, high = max(top - reach, 0), min(bottom + reach, rows)
                ok = _usable_neighbourhoods(valid[low:high + 1])
                total += int(ok[top - low:bottom - low].sum())
                if at_least is not None and total >= at_least:
                    return total
    return total


def _unclipped(z: Array) -> npt.NDArray[np.bool_]:
    """False on pixels at the image's extreme values when many share them (saturation
    or a floor at zero), where the variance is squeezed and the model does not hold."""
    ok = np.ones(z.shape, bool)
    for value in (z.min(), z.max()):
        at = z == value
        if at.mean() > 1e-3:
            ok &= ~at
    return ok


def _fit_line(x: Array, v: Array, n: Array, *, slope: float | None = None,
              intercept: float | None = None) -> tuple[float, float]:
    """Weighted least squares of ``v = a x + b`` with the sample variance's own
    uncertainty as weights (var of a variance estimate ~ 2 v^2 / n), iterated."""
    a, b = (0.0, float(np.median(v))) if slope is None else (slope, float(np.median(v - slope * x)))
    if intercept is not None:
        b = intercept
    for _ in range(6):
        fitted = np.maximum(a * x + b, 1e-3 * float(np.max(v)) + 1e-15)
        w = n / fitted**2
        if slope is None and intercept is None:
            design = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
            a, b = (float(c) for c in np.linalg.lstsq(design, v * np.sqrt(w), rcond=None)[0])
        elif slope is None:
            a = float(np.sum(w * x * (v - b)) / np.sum(w * x * x))
        elif intercept is None:
            b = float(np.sum(w * (v - a * x)) / np.sum(w))
    return a, b


def estimate_poisson_gaussian(image: npt.ArrayLike, known: npt.ArrayLike | None = None, *,
                              gain: float | None = None, intercept: float | None = None,
                              black: float | None = None, bins: int | None = None
                              ) -> NoiseEstimate:
    """Estimate ``var = a * mean + b`` of an image on the [0, 1] scale.

    A robust form of Foi et al. (2008): the finest diagonal wavelet detail gives a
    noise sample per 2x2 block, the mean of the pixels around the block chooses its
    intensity bin and the block's own mean places the bin's level; within bins of
    intensity, the flatter four fifths of the neighbourhoods (lowest spread of local
    means) give the noise variance of that level; a line is fitted to the levels
    by least squares weighted with each level's own precision. Unless ``black`` is
    given, the black level (zero photons) is placed below the levels by the photons
    their noise's skewness counts (see the module's notes), or, where that count is
    too uncertain, at the darkest smooth level.

    Parameters
    ----------
    image : array_like
        (H, W) or (H, W, C) float image on the [0, 1] scale; channels are pooled
        (one camera).
    known : array_like of bool, optional
        (H, W), False on pixels to ignore (inpainting's missing pixels); or (H, W, C),
        one mask per channel (a stack's slices, each with its own holes).
    gain, intercept, black : float, optional
        Known ``a``, ``b`` or black level (the [0, 1] scale); the others are fitted.
    bins : int, optional
        Intensity levels (default: from the number of pixels, 8 to 32).

    Returns
    -------
    NoiseEstimate

    Raises
    ------
    ValueError
        When the image has too few usable pixels to fit the model.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.05, 1.0, 256), (256, 1))
    >>> photons = 50.0  # photons at intensity 1
    >>> noisy = (rng.poisson(clean * photons) + rng.normal(0, 2.0, clean.shape)) / photons
    >>> fit = estimate_poisson_gaussian(noisy)
    >>> round(fit.model.a * photons, 1)  # 1 / photons, relative to the peak
    1.0
    """
    z = np.asarray(image, dtype=np.float64)
    if z.ndim == 2:
        z = z[..., None]
    if z.ndim != 3:
        raise ValueError(f"noise estimation needs a 2D image (+ channels), got shape {z.shape}")
    mask = np.ones(z.shape[:2], bool) if known is None else np.asarray(known, bool)
    valid = [(mask[..., c] if mask.ndim == 3 else mask) & _unclipped(z[..., c])
             for c in range(z.shape[2])]
    parts = [_in_bands(_level_samples, z[..., c], valid[c]) for c in range(z.shape[2])]
    detail, ring, level, roughness = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if detail.size < _MIN_SAMPLES:
        raise ValueError(
            f"too few usable pixels ({detail.size}, {_MIN_SAMPLES} needed) to estimate the "
            "noise from the image (masked or NaN pixels, pixels at its extreme values and "
            "their neighbours do not count); give the camera's gain and read noise, or use "
            "a larger image")
    # a robust scale to drop isolated outliers (hot pixels, cosmic rays)
    mad = 1.4826 * float(np.median(np.abs(detail)))
    keep = np.abs(detail) <= 8.0 * max(mad, 1e-12)
    detail, ring, level, roughness = detail[keep], ring[keep], level[keep], roughness[keep]

    count = bins or int(np.clip(detail.size // 1500, 8, 32))
    bin_mean, bin_var, bin_n = [], [], []
    for flat in _flat_bins(ring, roughness, count):
        d = detail[flat]
        bin_mean.append(float(level[flat].mean()))
        bin_var.append(float(np.mean(d * d)))
        bin_n.append(int(d.size))
    if len(bin_mean) < 2:
        raise ValueError("the image has too few intensity levels to fit a signal-dependent "
                         "noise model; give the camera's gain and read noise")
    x, v, n = np.asarray(bin_mean), np.asarray(bin_var), np.asarray(bin_n, dtype=np.int64)
    a, b = _fit_line(x, v, n.astype(np.float64), slope=gain, intercept=intercept)
    if a <= 0.0:  # no signal dependence: Gaussian noise of one level
        a = 1e-9
        b = float(np.sum(n * v) / np.sum(n))
    source = "given"
    if black is None:
        source = "darkest level"
        if mask.ndim == 2:
            dark = _in_bands(_dark_samples, z, mask)[0]
        else:  # the mean of the channels known at each pixel, where most of them are
            count = mask.sum(axis=2)
            known_mean = (np.where(mask, z, 0.0).sum(axis=2) / np.maximum(count, 1))[..., None]
            dark = _in_bands(_dark_samples, known_mean, 2 * count >= z.shape[2])[0]
        pedestal = float(np.quantile(dark, 0.001))
        # not above the darkest level fitted, nor implying a negative read variance
        pedestal = max(min(pedestal, float(np.min(x))), -b / a)
        skew = None if a <= 1e-9 else _black_from_skewness(
            [_in_bands(_skew_samples, z[..., c], valid[c]) for c in range(z.shape[2])], a)
        # trusted when precise and implying a positive read variance: outliers that skew
        # the noise (a percent of warm pixels) push it below, to a read noise of zero
        if skew is not None and a * skew[1] <= SKEW_TRUST * (b + a * pedestal) \
                and -b / a < skew[0] <= float(np.min(x)) + 2.0 * skew[1]:
            pedestal = max(min(skew[0], float(np.min(x))), -b / a)
            source = "skewness"
    else:
        pedestal = float(black)
    return NoiseEstimate(model=PoissonGaussian(a=a, b=b, black=pedestal), means=x, variances=v,
                         counts=n, samples=int(detail.size), black_from=source)


# Noise that clearly grows with the signal, under the Gaussian model (benchmarks/README.md,
# *Camera data under the Gaussian model*; benchmarks/signal_dependence.py). Four tests: the
# variance at the bright end at least twice that at the dark end; one level misfitting the
# measured levels by a reduced chi-square of at least 10; a line removing at least 90% of
# that misfit; and, in the brighter half of the image, horizontal and vertical detail no
# stronger than diagonal detail (squared ratio of mean magnitudes at most 1.3), as for
# white noise. Textures and fine structure at low noise pass the first three (filaments,
# the Hubble field, coins, a photo at sigma 2-10/255) but not the last (1.97 and up). Over
# camera exposures (5-1000 photons, read noise 1-3, 64-512 px) and Gaussian noise (the
# evaluation set and scikit-image's photos, sigma 1-50/255, 64-512 px) it fires on 105 of
# 180 exposures (30 photons: 35 of 36; at 1000 photons their own structure outweighs the
# noise) and on none of 1164 Gaussian images, 227 of them clipped (read through the
# clipped moments, as are photon counts clipped to [0, 1]: 63 of 108 fire at 30 photons,
# *Clipped camera data under the Gaussian model*). The ends are the 1st and 99th percentiles of
# the smoothed intensity: the 5th and 95th missed sparse bright structure (the bundled
# microscopy sample: 1.8x) and gained 0.19 dB less on photon.py's exposures.
GROWTH_MIN = 2.0
GROWTH_QUANTILES = (0.01, 0.99)  # the dark and bright ends of the smoothed intensity
FLAT_MISFIT_MIN = 10.0
LINE_SHARE_MAX = 0.1
STRUCTURE_MAX = 1.3


_SIGMA_FLOOR = 1e-100  # squares of the ends stay finite: (2 / 1e-100)**2 = 4e200


def clipped_moments(x: npt.ArrayLike, sigma: float | npt.ArrayLike, *, low: bool, high: bool
                    ) -> tuple[Array, Array]:
    """Mean and variance of ``x + n`` clipped to [0, 1] at the ends marked, ``n`` Gaussian
    of deviation ``sigma`` (one, or one per value of ``x``): the moments a clipped image
    shows instead of ``x`` and ``sigma**2`` (Foi, "Clipped noisy images: heteroskedastic
    modeling and practical denoising", Signal Processing 89(12), 2009).

    Examples
    --------
    >>> mean, variance = clipped_moments(np.array([0.0, 0.5]), 0.1, low=True, high=True)
    >>> np.round(mean, 4), np.round(variance / 0.01, 3)  # black: half the draws clipped
    (array([0.0399, 0.5   ]), array([0.341, 1.   ]))
    """
    from scipy.special import ndtr

    y = np.asarray(x, dtype=np.float64)
    # a vanishing deviation (a fit's search reaching zero noise) is a step at the ends,
    # not a division by zero
    s = np.broadcast_to(np.maximum(np.asarray(sigma, dtype=np.float64), _SIGMA_FLOOR), y.shape)
    # the standardised ends, infinite where that end is not clipped
    a = -y / s if low else np.full_like(y, -np.inf)
    b = (1.0 - y) / s if high else np.full_like(y, np.inf)

    def density(t: Array) -> Array:
        finite = np.isfinite(t)
        return np.where(finite, np.exp(-0.5 * np.square(np.where(finite, t, 0.0))), 0.0
                        ) / math.sqrt(2.0 * math.pi)

    below, above = ndtr(a), ndtr(b)
    pa, pb = density(a), density(b)
    inside = above - below
    mean = y * inside + s * (pa - pb) + (1.0 - above)
    # E[(y + s t)^2] over the unclipped part: t^2 integrates to inside + a pa - b pb
    tails = np.where(np.isfinite(a), a, 0.0) * pa - np.where(np.isfinite(b), b, 0.0) * pb
    square = y * y * inside + 2.0 * y * s * (pa - pb) + s * s * (inside + tails) + (1.0 - above)
    return np.asarray(mean, dtype=np.float64), np.maximum(square - mean * mean, 0.0)


def _structure_ratio(z: Array) -> float:
    """Haar detail of the brighter half of the 2x2 blocks: the mean magnitude of the
    horizontal and vertical details over the diagonal's, squared. White noise puts the
    same variance in each (1); image structure puts more in the first two."""
    diagonal, straight, level = [], [], []
    for c in range(z.shape[2]):
        x = z[: z.shape[0] // 2 * 2, : z.shape[1] // 2 * 2, c]
        a, b, d, e = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
        diagonal.append(np.abs(a - b - d + e).ravel())
        straight.append(np.stack([np.abs(a + b - d - e), np.abs(a - b + d - e)]).reshape(2, -1))
        level.append((a + b + d + e).ravel())
    diag, flat, mean = (np.concatenate(parts, axis=-1) for parts in (diagonal, straight, level))
    bright = mean >= np.median(mean)
    cap = 5.0 * float(np.mean(diag[bright])) + 1e-30  # a few edges do not decide it
    ratio = float(np.mean(np.minimum(flat[:, bright], cap))
                  / np.mean(np.minimum(diag[bright], cap)))
    return ratio * ratio


@dataclass(frozen=True)
class SignalDependence:
    """Noise found to grow with the intensity as ``var = a * mean + b`` (photon noise)."""

    model: PoissonGaussian
    growth: float  # variance at the image's bright end over that at its dark end
    line_misfit: float  # reduced chi-square of the line through the levels
    flat_misfit: float  # reduced chi-square of one level for all
    structure: float  # horizontal and vertical over diagonal detail (white noise: 1)

    def record(self) -> dict[str, float]:
        """JSON-ready values for the run record."""
        return {"growth": self.growth, "a": self.model.a, "b": self.model.b,
                "line_misfit": self.line_misfit, "flat_misfit": self.flat_misfit,
                "structure": self.structure}


def _clipped_levels(z: Array, known: npt.ArrayLike | None) -> tuple[Array, Array, Array]:
    """The estimator's intensity levels (:func:`estimate_poisson_gaussian`) with clipped
    pixels kept: per bin the block means' mean, the diagonal details' mean square and
    their count. Outliers are dropped per bin: one robust scale for the whole image is
    set by the clipped background's squeezed noise and would cut the bright levels'."""
    mask = np.ones(z.shape[:2], bool) if known is None else np.asarray(known, bool)
    parts = [_in_bands(_level_samples, z[..., c], mask[..., c] if mask.ndim == 3 else mask)
             for c in range(z.shape[2])]
    detail, ring, level, roughness = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if detail.size < _MIN_SAMPLES:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    x, v, n = [], [], []
    for flat in _flat_bins(ring, roughness, int(np.clip(detail.size // 1500, 8, 32))):
        d = detail[flat]
        mad = 1.4826 * float(np.median(np.abs(d)))
        d = d[np.abs(d) <= 8.0 * mad] if mad > 0 else d
        x.append(float(level[flat].mean()))
        v.append(float(np.mean(d * d)))
        n.append(float(d.size))
    return np.asarray(x), np.asarray(v), np.asarray(n)


_CLIP_GRID = np.linspace(-1.0, 2.0, 3001)  # clean values whose clipped moments are tabled


def _clipped_misfit(a: float, b: float, x: Array, v: Array, n: Array, *, low: bool,
                    high: bool) -> float:
    """Chi-square of the levels ``(x, v)`` against the clipped moments of ``var = a y + b``
    (zero photons at the low end): the variance the model predicts at each measured mean."""
    mean, variance = clipped_moments(_CLIP_GRID, np.sqrt(a * np.maximum(_CLIP_GRID, 0.0) + b),
                                     low=low, high=high)
    order = np.argsort(mean, kind="stable")
    predicted = np.maximum(np.interp(x, mean[order], variance[order]), 1e-30)
    return float(np.sum(n / 2 * ((v - predicted) / predicted) ** 2))


def _one_clipped_level(x: Array, v: Array, n: Array, *, low: bool, high: bool
                       ) -> tuple[float, float]:
    """``(b, chi-square)``: the one noise variance ``b`` whose clipped moments fit the
    levels ``(x, v)`` best."""
    from scipy.optimize import minimize_scalar

    flat = minimize_scalar(
        lambda log_b: _clipped_misfit(0.0, math.exp(log_b), x, v, n, low=low, high=high),
        bounds=(math.log(float(np.min(v)) / 10 + 1e-30), math.log(float(np.max(v)) * 10)),
        method="bounded")
    return math.exp(float(flat.x)), float(flat.fun)


def _positive(log_value: float) -> float:
    """``exp`` of a search's log-parameter, kept in float range wherever the search
    wanders (``math.exp`` raises past about 709)."""
    return math.exp(min(max(float(log_value), -700.0), 700.0))


def _fit_clipped(x: Array, v: Array, n: Array, *, low: bool, high: bool
                 ) -> tuple[float, float, float, float]:
    """``(a, b, line chi-square, one level's chi-square)`` of noise clipped at the ends
    marked, by least squares on the clipped moments (both parameters positive)."""
    from scipy.optimize import minimize

    typical = float(np.median(v))
    _, flat_square = _one_clipped_level(x, v, n, low=low, high=high)
    best: Any = None
    for slope in (0.1, 1.0, 10.0):  # the misfit has local minima: start from three slopes
        found = minimize(
            lambda p: _clipped_misfit(_positive(p[0]), _positive(p[1]), x, v, n, low=low,
                                      high=high),
            np.log([typical * slope, typical]), method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-3, "maxiter": 400})
        if best is None or found.fun < best.fun:
            best = found
    a, b = (_positive(t) for t in best.x)
    return a, b, float(best.fun), flat_square


def clipped_noise_variance(image: npt.ArrayLike, known: npt.ArrayLike | None = None, *,
                           low: bool, high: bool) -> float | None:
    """Variance of white Gaussian noise that was clipped at 0 (``low``) and at 1
    (``high``), before the clipping.

    The noise of a pixel near a clipped end is squeezed, so an estimate from the image's
    variance errs low. Patch estimators keep away from the clipped values, but on a small
    sparse image little is left: at 128 px and sigma 25-50/255,
    :func:`estimate_white_noise_variance` gives 0.5-0.95 of the noise's variance on the
    evaluation set's clipped fluorescence. Here the image's intensity levels, with the
    clipped pixels kept (the flattest 2 x 2 blocks by level, their diagonal detail), are
    fitted by the clipped moments of one noise level (:func:`clipped_moments`, Foi
    2009): 0.95-1.07 of it on the same images. Fine structure at low noise raises the
    levels' variance, and the fit with it (the astronaut at sigma 10: 1.8x).

    Parameters
    ----------
    image : array_like
        (H, W) or (H, W, C) float image on the [0, 1] scale, its channels sharing the level.
    known : array_like of bool, optional
        False on pixels left out of the levels (inpainting's missing pixels).
    low, high : bool
        The ends at which the noise was clipped, 0 and 1 (``refine.clipped_ends``); an end
        not clipped leaves the variance there as it is.

    Returns
    -------
    float or None
        The variance on the [0, 1] scale; None when the image has too few levels.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.0, 0.6, 128), (128, 1))
    >>> dark = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    >>> round(clipped_noise_variance(dark, low=True, high=False) ** 0.5, 2)
    0.1
    """
    z = np.asarray(image, dtype=np.float64)
    z = z[..., None] if z.ndim == 2 else z
    x, v, n = _clipped_levels(z, known)
    if x.size < 3 or not np.all(v > 0):
        return None
    return _one_clipped_level(x, v, n, low=low, high=high)[0]


def signal_dependence(image: npt.ArrayLike, known: npt.ArrayLike | None = None, *,
                      low: bool = False, high: bool = False) -> SignalDependence | None:
    """The noise's growth with intensity, where the image clearly shows one.

    Fits :func:`estimate_poisson_gaussian` and keeps the result only when the noise
    variance at the image's bright end (a high percentile of the smoothed intensity,
    :data:`GROWTH_QUANTILES`) is at least :data:`GROWTH_MIN` times that at its dark end
    (a low percentile), one level for all intensities misfits the measured levels
    (:data:`FLAT_MISFIT_MIN`), the line explains that misfit (:data:`LINE_SHARE_MAX`) and
    the brighter half of the image looks like white noise at the finest scale
    (:data:`STRUCTURE_MAX`): textures and fine structure at low noise raise the variance
    of the bright levels too. Noise clipped at an end of the range (``low``, ``high``)
    squeezes the variance there: the levels keep the clipped pixels and both the line
    and the one level are fitted through the clipped moments (:func:`clipped_moments`).
    The Gaussian model's denoising stage calls it (``stage.apply_stage``) to filter photon
    noise with the growth found.

    Parameters
    ----------
    image : array_like
        (H, W) or (H, W, C) float image on the [0, 1] scale.
    known : array_like of bool, optional
        False on pixels to ignore.
    low, high : bool
        Whether the noise was clipped at 0 and at 1 (``refine.clipped_ends``).

    Returns
    -------
    SignalDependence or None
        None when the noise looks like one level, or cannot be estimated.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.05, 1.0, 128), (128, 1))
    >>> photons = (rng.poisson(clean * 30) + rng.normal(0, 2.0, clean.shape)) / 40 + 0.1
    >>> signal_dependence(photons) is not None
    True
    >>> signal_dependence(clean * 0.8 + 0.1 + rng.normal(0, 0.05, clean.shape)) is None
    True
    >>> dark = np.tile(np.linspace(0.0, 0.8, 128), (128, 1))  # the noise clipped at black
    >>> counts = np.clip((rng.poisson(dark * 30) + rng.normal(0, 2.0, dark.shape)) / 30, 0, 1)
    >>> signal_dependence(counts, low=True) is not None
    True
    """
    from scipy.ndimage import gaussian_filter

    z = np.asarray(image, dtype=np.float64)
    z = z[..., None] if z.ndim == 2 else z
    if low or high:
        x, v, n = _clipped_levels(z, known)
        if x.size < 3 or not np.all(v > 0):
            return None
        a, b, line_square, flat_square = _fit_clipped(x, v, n, low=low, high=high)
        model = PoissonGaussian(a=a, b=b, black=0.0)
    else:
        try:
            found = estimate_poisson_gaussian(z, known)
        except ValueError:
            return None
        model, x, v, n = found.model, found.means, found.variances, found.counts.astype(np.float64)
        if model.a <= 1e-9 or x.size < 3:
            return None
        # a sample variance of n values has a variance of about 2 v^2 / n
        line = model.variance(x)
        line_square = float(np.sum(n / 2 * ((v - line) / line) ** 2))
        level = float(np.sum(n * v) / np.sum(n))
        flat_square = float(np.sum(n / 2 * ((v - level) / level) ** 2))
    line_misfit = line_square / (x.size - 2)
    flat_misfit = flat_square / (x.size - 1)
    smooth = gaussian_filter(z.mean(axis=2), 2.0)
    if known is not None:
        seen = np.asarray(known, bool)
        smooth = smooth[seen if seen.ndim == 2 else seen.all(axis=2)]
    dark, bright = np.quantile(smooth, GROWTH_QUANTILES)
    growth = float(model.variance(bright) / model.variance(max(float(dark), 0.0)))
    if (growth < GROWTH_MIN or flat_misfit < FLAT_MISFIT_MIN
            or line_misfit > LINE_SHARE_MAX * flat_misfit):
        return None
    structure = _structure_ratio(z)
    if structure > STRUCTURE_MAX:
        return None
    return SignalDependence(model=model, growth=growth, line_misfit=line_misfit,
                            flat_misfit=flat_misfit, structure=structure)


# --------------------------------------------------------------------------- stabilisation


def anscombe(z: npt.ArrayLike, model: PoissonGaussian) -> Array:
    """Generalized Anscombe transform: noise of unit variance for any intensity.

    ``f(z) = 2 sqrt(max(z / a + 3/8 + b / a^2, 0))``, the GAT of Starck, Murtagh
    and Bijaoui in photon units (z / a counts photons).
    """
    inner = np.asarray(z, dtype=np.float64) / model.a + 0.375 + model.b / model.a**2
    return 2.0 * np.sqrt(np.maximum(inner, 0.0))


def _expected_anscombe(photons: Array, read: float) -> Array:
    """E[2 sqrt(max(P + n + 3/8 + read^2, 0))], P ~ Poisson(photons), n ~ N(0, read^2):
    the exact expectation of the transform (in photon units), summed over counts."""
    from scipy.stats import norm, poisson

    top = float(photons.max())
    kmax = int(top + 12.0 * math.sqrt(top + 1.0) + 30.0)
    k = np.arange(kmax + 1, dtype=np.float64)
    if read > 0:
        nodes = np.linspace(-8.0, 8.0, 321)
        weights = norm.pdf(nodes)
        weights /= weights.sum()
        inner = k[:, None] + read * nodes[None, :] + 0.375 + read**2
        per_count = 2.0 * np.sqrt(np.maximum(inner, 0.0)) @ weights
    else:
        per_count = 2.0 * np.sqrt(k + 0.375)
    pmf = poisson.pmf(k[None, :], photons[:, None])
    expected: Array = pmf @ per_count
    return expected


@dataclass(frozen=True)
class AnscombeInverse:
    """Exact unbiased inverse of the GAT (Makitalo & Foi 2013), tabulated.

    ``E[f(z) | photons]`` is computed exactly on a grid of photon counts up to
    ``EXACT`` and inverted by linear interpolation; above it the closed-form
    asymptote ``D^2 / 4 - 1/8 - read^2`` holds to better than 1e-4 photons.
    """

    expected: Array  # E[f] at ``photons``, increasing
    photons: Array
    read: float  # read noise in photons

    EXACT = 400.0

    @classmethod
    def build(cls, read_photons: float, top_photons: float) -> AnscombeInverse:
        top = min(max(top_photons, 1.0) * 1.2 + 10.0, cls.EXACT)
        grid = np.linspace(0.0, math.sqrt(top), 1200) ** 2
        return cls(expected=_expected_anscombe(grid, read_photons), photons=grid,
                   read=read_photons)

    def __call__(self, d: npt.ArrayLike) -> Array:
        d = np.asarray(d, dtype=np.float64)
        out: Array = np.asarray(np.interp(d, self.expected, self.photons, left=0.0))
        high = d > self.expected[-1]
        if np.any(high):
            out = np.where(high, np.maximum(d**2 / 4.0 - 0.125 - self.read**2, 0.0), out)
        return out

    def torch(self, d: torch.Tensor) -> torch.Tensor:
        """The same map on a tensor (any device), by a search in the table."""
        table = torch.as_tensor(self.expected, dtype=d.dtype, device=d.device)
        grid = torch.as_tensor(self.photons, dtype=d.dtype, device=d.device)
        i = torch.searchsorted(table, d.contiguous()).clamp(1, table.numel() - 1)
        x0, x1 = table[i - 1], table[i]
        y0, y1 = grid[i - 1], grid[i]
        inside = y0 + (d - x0) / (x1 - x0).clamp_min(1e-12) * (y1 - y0)
        inside = torch.where(d <= table[0], torch.zeros_like(d), inside)
        asymptote = (d * d / 4.0 - 0.125 - self.read**2).clamp_min(0.0)
        return torch.where(d > table[-1], asymptote, inside)


@dataclass(frozen=True)
class StabilisedDomain:
    """The space the network fits: the GAT of the [0, 1] observation, mapped to [0, 1].

    ``forward`` takes the observation there; ``inverse`` (numpy) and
    ``inverse_torch`` bring fitted values back to expected [0, 1] intensities with
    the exact unbiased inverse.

    The inverse is that of pure Poisson counts ``z / a + b / a^2`` (the read noise
    folded into a shifted pedestal), which needs ``a`` and ``b`` only, like the
    transform itself: it never clips a real intensity to a guessed black level, and
    its bias against the exact Poisson-Gaussian inverse is below 0.04 photons for read
    noise of 1-3 photons at any count (computed with :func:`_expected_anscombe`).
    """

    model: PoissonGaussian
    low: float  # f value mapped to 0
    high: float  # f value mapped to 1
    table: AnscombeInverse

    @classmethod
    def for_observation(cls, observation: Array, model: PoissonGaussian,
                        known: npt.NDArray[np.bool_] | None = None) -> StabilisedDomain:
        values = observation if known is None else observation[np.asarray(known, bool)]
        f = anscombe(values, model)
        low, high = float(f.min()), float(f.max())
        if high - low < 1e-6:
            raise ValueError("the stabilised image is constant: nothing to restore")
        top = float(np.max(values)) / model.a + model.b / model.a**2
        return cls(model=model, low=low, high=high, table=AnscombeInverse.build(0.0, top))

    @property
    def noise_sigma(self) -> float:
        """Noise standard deviation in the fitted space (the GAT makes it 1)."""
        return 1.0 / (self.high - self.low)

    @property
    def pedestal(self) -> float:
        """[0, 1] intensity of zero counts of the folded model: ``-b / a``."""
        return -self.model.b / self.model.a

    def forward(self, observation: Array) -> Array:
        return (anscombe(observation, self.model) - self.low) / (self.high - self.low)

    def inverse(self, fitted: npt.ArrayLike) -> Array:
        d = self.low + np.asarray(fitted, dtype=np.float64) * (self.high - self.low)
        return self.pedestal + self.model.a * self.table(d)

    def inverse_torch(self, fitted: torch.Tensor) -> torch.Tensor:
        d = self.low + fitted * (self.high - self.low)
        return self.pedestal + self.model.a * self.table.torch(d)


def describe(model: PoissonGaussian, *, low: float, high: float,
             given: dict[str, bool]) -> dict[str, Any]:
    """JSON-ready record of the noise model used, in input units and on the [0, 1] scale."""
    camera = model.to_camera(low=low, high=high)
    return {
        "model": "poisson-gaussian",
        **camera,
        "read_photons": float(model.read_photons),
        "source": {k: ("given" if v else "estimated") for k, v in given.items()},
        "normalised": {"a": float(model.a), "b": float(model.b), "black": float(model.black)},
    }


# --------------------------------------------------------------------------- in the engine


def check_noise_estimable(params: Any, observation: Array,
                          known: npt.NDArray[np.bool_] | None) -> None:
    """Refuse, before any work, an image with too few usable pixels (size, mask,
    saturated or zero-clipped pixels) to estimate the camera values from."""
    if not params.estimates_camera:
        return
    h, w = observation.shape[:2]
    usable = usable_samples(observation, known, at_least=_MIN_SAMPLES)
    if usable < _MIN_SAMPLES:
        counted = h * w if known is None else int(np.count_nonzero(known))
        # a large image can fail too: a binary or saturated one has no pixel between
        what = ("is too small" if counted < _MIN_SAMPLES
                else "has too few pixels between its extreme values")
        raise ValueError(
            f"this {h}x{w} image {what} to estimate its Poisson-Gaussian noise: "
            f"{usable} usable pixels, {_MIN_SAMPLES} needed (masked pixels, pixels at the "
            "image's extreme values and their neighbours do not count); give noise_gain, "
            "noise_read_sigma and noise_offset, or choose noise='gaussian'")


#: a given offset above more than this share of the pixels is refused: even an image of
#: dark background alone has about half its values below the camera's offset (read noise)
OFFSET_ABOVE_SHARE = 0.9


def check_camera_units(params: Any, low: float, high: float,
                       values: npt.NDArray[np.float64] | None = None,
                       known: npt.NDArray[np.bool_] | None = None) -> None:
    """Refuse, before any work, given camera values that cannot be in the units of an
    image spanning ``low..high`` (a gain or read noise in electrons, an offset above
    every pixel, or above nearly all of ``values``, the (H, W, C) image, where ``known``
    is True when given): they would overflow the loss weights or give negative photons."""
    for name in ("noise_gain", "noise_read_sigma"):
        given = getattr(params, name)
        # noise widens the image's range: a value a hundred times that range is a unit slip
        if given is not None and given > 100 * (high - low):
            raise ValueError(f"{name}={given:g} is far larger than the image's whole range "
                             f"({low:g}..{high:g}): give it in the image's units (ADU)")
    if params.noise_offset is not None and params.noise_offset >= high:
        raise ValueError(f"noise_offset={params.noise_offset:g} is at or above the image's "
                         f"brightest value ({high:g}): the offset is the camera's dark level, "
                         "in the image's units")
    if params.noise_offset is not None and params.noise_offset < low - 100 * (high - low):
        # as far below the darkest value as a hundred ranges: in other units (or a sign
        # slip); taken, it flattened the result
        raise ValueError(f"noise_offset={params.noise_offset:g} is far below the image's "
                         f"darkest value ({low:g}; the image spans {low:g}..{high:g}): the "
                         "offset is the camera's dark level, in the image's units")
    if params.noise_offset is not None and values is not None and values.size:
        observed = values if known is None else values[known]  # a copy: only when needed
        below = float(np.mean(observed < params.noise_offset))
        if below > OFFSET_ABOVE_SHARE:
            raise ValueError(f"noise_offset={params.noise_offset:g} is above {below:.1%} of the "
                             "image's values: at the camera's dark level about half of the "
                             "darkest pixels fall below it (read noise), so it is too high; "
                             "give the pedestal in the image's units (a dark frame's mean) or "
                             "leave it to the estimate")


def check_sigma_units(params: Any, low: float, high: float) -> None:
    """Refuse, before any work, a given Gaussian ``noise_sigma`` larger than the range
    ``low..high`` the image is fitted on (a sigma of 25 given for a [0, 1] image): the
    fit takes every detail for noise and returns a flat image."""
    sigma = params.noise_sigma
    # values within low..high have a standard deviation of at most half that range, so
    # no noise in the image can be as wide as the whole range: the value is in other units
    if sigma is not None and sigma > high - low:
        raise ValueError(f"noise_sigma={sigma:g} is larger than the image's whole range "
                         f"({low:g}..{high:g}): give it in the image's units")


@dataclass(frozen=True)
class NoiseFit:
    """How a run takes the Poisson-Gaussian model into account: the space the network
    fits (the stabilised one, or the [0, 1] observation itself), the way back, and
    the loss weights of the ``"weighted"`` fit.

    Build it with :func:`plan_noise`; the engine calls :meth:`to_fit` on the
    observation, :meth:`to_data` / :meth:`to_data_torch` on every output it shows
    or scores, and :meth:`loss_weights` in the loss.
    """

    model: PoissonGaussian
    domain: StabilisedDomain | None  # None: the "weighted" fit, in the data's own space
    record: dict[str, Any]

    def to_fit(self, observation: Array) -> Array:
        return observation if self.domain is None else self.domain.forward(observation)

    def to_data(self, fitted: Array) -> Array:
        return fitted if self.domain is None else self.domain.inverse(fitted)

    def to_data_torch(self, fitted: torch.Tensor) -> torch.Tensor:
        return fitted if self.domain is None else self.domain.inverse_torch(fitted)

    def loss_weights(self, predicted: torch.Tensor) -> torch.Tensor | None:
        """Per-pixel weights of the squared error: the mean noise variance over the
        variance at the predicted intensity (1 on average, so that the loss stays on
        the scale of a mean squared error); None for the stabilised fit."""
        if self.domain is not None:
            return None
        m = self.model
        floor = max(m.read_variance, 1e-3 * m.a)
        variance = (m.a * predicted.detach() + m.b).clamp_min(floor)
        return float(self.record["mean_variance"]) / variance


def _fit_camera(observation: Array, known: npt.NDArray[np.bool_] | None, *, low: float,
                high: float, gain: float | None, read_sigma: float | None,
                offset: float | None) -> tuple[PoissonGaussian, int, str]:
    """The model on the [0, 1] scale ``low..high`` of ``observation`` from the camera
    values given (input units) and the rest estimated: (model, samples, black_from)."""
    span = high - low
    a_given = None if gain is None else gain / span
    black_given = None if offset is None else (offset - low) / span
    if gain is not None and read_sigma is not None and offset is not None:
        model = PoissonGaussian.from_camera(gain=gain, read_sigma=read_sigma, offset=offset,
                                            low=low, high=high)
        return model, 0, "given"
    found = estimate_poisson_gaussian(observation, known, gain=a_given, black=black_given)
    model = found.model
    if read_sigma is not None:
        b = (read_sigma / span) ** 2 - model.a * model.black
        if a_given is None:  # the slope that goes with the given read noise
            refit = estimate_poisson_gaussian(observation, known, intercept=b,
                                              black=model.black)
            model = PoissonGaussian(a=refit.model.a, b=(read_sigma / span) ** 2
                                    - refit.model.a * model.black, black=model.black)
        else:
            model = PoissonGaussian(a=model.a, b=b, black=model.black)
    return model, found.samples, found.black_from


#: A stack's camera values are estimated from at most this many of its values, read
#: from evenly spaced slices: what the estimator samples of one large image. 40 slices
#: of 512 px: 16 of them, 5 s and about 0.7 GB (twice this: 11 s and 1.3 GB, values
#: within 2%).
STACK_SAMPLED_VALUES = 1 << 22


@dataclass(frozen=True)
class CameraEstimate:
    """Camera values in input units, estimated once over the slices of a stack.

    A stack's slices come from one camera, so they share its gain, read noise and
    offset; estimated slice by slice, small slices scatter. Build it with
    :func:`estimate_camera` and hand it to each slice's run (``noise_camera=``).
    """

    gain: float
    read_sigma: float
    offset: float
    black_from: str  # one of BLACK_METHODS
    samples: int  # noise samples the fit used
    slices: int  # slices they came from
    of: int  # slices in the stack

    def record(self) -> dict[str, int]:
        """What the run record keeps of where the values came from."""
        return {"slices": self.slices, "of": self.of, "samples": self.samples}


def _finite_hwc(raw: Any, channel_axis: int | None
                ) -> tuple[Array, npt.NDArray[np.bool_] | None]:
    """A slice as float64 (H, W, C), its NaN or infinite values set to its least finite
    one (as the engine fills holes), and its (H, W) pixels whose every value is finite
    (None: all of them)."""
    from napari_specdip.core.imaging import as_hwc

    arr = np.asarray(raw)
    if arr.dtype.kind == "f":
        ok = np.isfinite(arr)
        if not ok.all():  # as_hwc refuses them; the mask leaves them out of the fit
            finite = np.asarray(as_hwc(ok, channel_axis=channel_axis)[0].all(axis=2), bool)
            fill = arr[ok].min() if ok.any() else 0
            return as_hwc(np.where(ok, arr, fill), channel_axis=channel_axis)[0], finite
    return as_hwc(arr, channel_axis=channel_axis)[0], None


class LazySlices(Sequence[Any]):
    """``count`` slices of a stack, slice ``i`` read by ``read(i)`` only when asked for:
    :func:`estimate_camera` reads a few of a long (or lazy) stack."""

    def __init__(self, count: int, read: Callable[[int], Any]) -> None:
        self._count, self._read = count, read

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._read(k) for k in range(*i.indices(self._count))]
        if not -self._count <= i < self._count:
            raise IndexError(i)
        return self._read(i % self._count)


def estimate_camera(slices: Sequence[Any], *, channel_axis: int | None = None,
                    known: npt.ArrayLike | None = None, gain: float | None = None,
                    read_sigma: float | None = None, offset: float | None = None
                    ) -> CameraEstimate:
    """Estimate a stack's camera values (input units) from its slices together.

    Parameters
    ----------
    slices : sequence of array_like
        The stack's images (2D, or with ``channel_axis``), all of one shape. Only the
        evenly spaced slices that hold up to :data:`STACK_SAMPLED_VALUES` values
        between them are read (lazy arrays too).
    channel_axis : int, optional
        Axis of each slice's channels (pooled: one camera).
    known : array_like of bool, optional
        (H, W), False on pixels to ignore in every slice (inpainting's mask). A slice's
        NaN or infinite pixels are ignored in that slice as well (missing pixels, as
        inpainting takes them).
    gain, read_sigma, offset : float, optional
        The camera values that are known; the others are estimated.

    Returns
    -------
    CameraEstimate

    Raises
    ------
    ValueError
        When the slices differ in shape or hold too few usable pixels between them.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0.05, 1.0, 64), (64, 1))
    >>> stack = [100 + 2.0 * (rng.poisson(clean * 40) + rng.normal(0, 3, clean.shape))
    ...          for _ in range(8)]
    >>> camera = estimate_camera(stack)
    >>> camera.slices, round(camera.gain, 1)
    (8, 2.0)
    """
    count = len(slices)
    if count == 0:
        raise ValueError("no slices to estimate the camera values from")
    first, first_finite = _finite_hwc(slices[0], channel_axis)  # always picked
    shape = first.shape
    take = int(np.clip(STACK_SAMPLED_VALUES // max(1, first.size), 1, count))
    picks = [int(i) for i in np.unique(np.linspace(0, count - 1, take).round())]
    planes: list[Array] = []
    valid_of: list[npt.NDArray[np.bool_] | None] = []
    for i in picks:
        values, valid = ((first, first_finite) if i == 0
                         else _finite_hwc(slices[i], channel_axis))
        if values.shape != shape:
            raise ValueError(f"slice {i} has shape {values.shape}, slice 0 {shape} (channels "
                             "last): a stack's slices share one")
        usable = values if valid is None else values[valid]
        if usable.size and np.ptp(usable) > 0:  # a constant slice holds no noise to measure
            planes.append(np.asarray(values, dtype=np.float64))
            valid_of.append(valid)
    if not planes:
        raise ValueError("the slices are constant: there is no noise to estimate the camera "
                         "values from")
    data = np.concatenate(planes, axis=2)  # (H, W, slices x channels): channels pool
    mask = None if known is None else np.asarray(known, bool)
    if any(valid is not None for valid in valid_of):
        # each slice's own missing pixels: their union could leave no window whole
        per_channel = [np.ones(shape[:2], bool) if valid is None else valid
                       for valid in valid_of for _ in range(shape[2])]
        mask = np.stack(per_channel, axis=2) & (True if mask is None else mask[..., None])
    seen = data if mask is None else data[mask]
    finite = seen[np.isfinite(seen)]
    if finite.size == 0 or float(finite.min()) == float(finite.max()):
        raise ValueError("the slices are constant: there is no noise to estimate the camera "
                         "values from")
    low, high = float(finite.min()), float(finite.max())
    observation = np.clip((data - low) / (high - low), 0.0, 1.0)
    model, samples, black_from = _fit_camera(observation, mask, low=low, high=high, gain=gain,
                                             read_sigma=read_sigma, offset=offset)
    camera = model.to_camera(low=low, high=high)
    return CameraEstimate(gain=camera["gain"], read_sigma=camera["read_sigma"],
                          offset=camera["offset"], black_from=black_from, samples=samples,
                          slices=len(planes), of=count)


def plan_noise(observation: Array, known: npt.NDArray[np.bool_] | None, *, low: float,
               high: float, gain: float | None, read_sigma: float | None,
               offset: float | None, fit: str, camera: CameraEstimate | None = None
               ) -> NoiseFit:
    """The noise model of a run: the camera values given (input units), the others
    taken from ``camera`` (estimated over the stack the image belongs to) or else
    estimated from the [0, 1] ``observation``; and how it enters the fit."""
    if camera is None:
        model, samples, black_from = _fit_camera(observation, known, low=low, high=high,
                                                 gain=gain, read_sigma=read_sigma,
                                                 offset=offset)
    else:
        model = PoissonGaussian.from_camera(
            gain=camera.gain if gain is None else gain,
            read_sigma=camera.read_sigma if read_sigma is None else read_sigma,
            offset=camera.offset if offset is None else offset, low=low, high=high)
        samples = camera.samples
        black_from = "given" if offset is not None else camera.black_from
    values = observation if known is None else observation[np.asarray(known, bool)]
    record = describe(model, low=low, high=high, given={
        "gain": gain is not None, "read_sigma": read_sigma is not None,
        "offset": offset is not None})
    record["fit"] = fit
    record["samples"] = samples
    record["offset_from"] = black_from  # how the black level was found (BLACK_METHODS)
    if camera is not None and not (gain is not None and read_sigma is not None
                                   and offset is not None):
        record["estimated_over"] = camera.record()
    record["mean_variance"] = float(np.mean(model.variance(values)))
    record["peak_photons"] = float(np.max(model.photons(values)))
    domain = None
    if fit == "anscombe":
        domain = StabilisedDomain.for_observation(observation, model, known)
        record["fitted_sigma"] = domain.noise_sigma
    # the loss of a fit that reproduces the noise exactly (discrepancy principle)
    record["noise_loss"] = (record["mean_variance"] if domain is None
                            else domain.noise_sigma**2)
    return NoiseFit(model=model, domain=domain, record=record)


# --------------------------------------------------------------------------- white noise

WHITE_NOISE_PATCH = 7
_MAX_PATCHES = 40_000
# The weak-texture pass replaces the patch PCA's estimate only when that is this many times
# larger: texture then filled the smallest directions, while a smaller disagreement is as
# likely the few weak patches' own error. The smallest ratio that moved no estimate of the
# evaluation set's tuning half 2% further from the noise drawn (1.2 took brick at 64 px,
# sigma 10 from 1.02 to 0.79; benchmarks/noise_level.py, 2026-12-04).
TEXTURE_RATIO = 1.3
_WEAK_QUANTILE = 0.999  # of a pure-noise patch's gradient energy: the weak-texture threshold
_WEAK_MIN_PATCHES = 200  # fewer weakly textured patches than this: no second estimate
_WEAK_MAX_PATCHES = 10_000  # of them in one covariance (evenly spaced)
_CLIP_MARGIN = 3.0  # noise deviations a patch's mean keeps from a clipped bound


def estimate_white_noise_variance(image: npt.ArrayLike, *, patch: int = WHITE_NOISE_PATCH,
                                  max_patches: int = _MAX_PATCHES, seed: int = 0,
                                  texture_ratio: float = TEXTURE_RATIO) -> float:
    """Variance of additive white noise in an (H, W, C) image, from its patches.

    The covariance of the image's ``patch`` x ``patch`` patches (all channels
    pooled) has the noise variance as the eigenvalue of every direction that
    the image's structure leaves empty. Following Chen, Zhu and Heng, the
    largest eigenvalues are dropped one by one until the mean of those left
    is no larger than their median, the sign that only noise remains; that
    mean is the estimate. Texture fills every direction and that estimate then
    errs high, the more so the weaker the noise (scikit-image's grass at 128 px:
    1.26x at sigma 25/255, 2.6x at 10, 7x at 5; benchmarks/noise_level.py);
    saturated pixels carry less noise and it errs low on dark, clipped images. Up to
    ``max_patches`` patches are drawn at random (``seed``) on large images.

    A second pass estimates the variance again from the weakly
    textured patches only, after Liu, Tanaka and Okutomi: those whose gradient energy
    stays under what pure noise of the current estimate reaches with probability
    0.999, iterated from the first estimate, away from clipped values (the mean at
    least three noise deviations from a bound that many pixels share), with the
    same eigenvalue rule divided by its own bias on pure noise of as many patches
    (few patches make it err low). It replaces the first estimate only when that is
    more than ``texture_ratio`` times larger, the mark of texture in the smallest
    directions (grass at 128 px, sigma 10: 2.5-2.6x -> 1.0-1.3x the noise drawn), so that the
    estimates that were right stay as they were.

    References: Chen, Zhu, Heng, "An efficient statistical method for image
    noise level estimation", ICCV 2015; Liu, Tanaka, Okutomi, "Single-image noise
    level estimation for blind denoising", IEEE TIP 22(12), 2013.

    Parameters
    ----------
    image : array_like
        (H, W) or (H, W, C) image; channels share the noise level.
    patch : int
        Side of the square patches.
    max_patches : int
        Patches drawn at most (at random, ``seed``) on large images.
    seed : int
        Seed of that draw.
    texture_ratio : float
        How many times the weakly textured patches' estimate the first one must be for
        the second to replace it (default ``TEXTURE_RATIO``); ``math.inf``: the patch PCA
        alone (the estimator before 2026-12-04); 0: the second wherever enough patches
        qualify.

    Returns
    -------
    float
        The noise variance, in the image's units squared.

    Raises
    ------
    ValueError
        When the image is smaller than a patch.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.linspace(0.2, 0.8, 64)[None, :, None] * np.ones((64, 1, 1))
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> round(estimate_white_noise_variance(noisy) ** 0.5, 2)
    0.1
    """
    from numpy.lib.stride_tricks import sliding_window_view

    data = np.asarray(image, dtype=np.float64)
    if data.ndim == 2:
        data = data[..., None]
    h, w, channels = data.shape
    if h < patch or w < patch:
        raise ValueError(f"a {h}x{w} image is smaller than a {patch}x{patch} patch")
    windows = sliding_window_view(data, (patch, patch), axis=(0, 1))  # (h', w', C, p, p)
    count = windows.shape[0] * windows.shape[1] * channels
    chosen = np.arange(count)
    if count > max_patches:
        chosen = np.sort(np.random.default_rng(seed).choice(count, max_patches, replace=False))
    # gathers the chosen patches only (a reshape of the view would copy every patch)
    where = np.unravel_index(chosen, windows.shape[:3])
    rows = windows[where].reshape(-1, patch * patch)
    estimate = _noise_eigenvalue(rows)
    if math.isinf(texture_ratio) or patch < 3:
        return estimate
    weak = _weak_texture_variance(data, rows, where[2], patch, estimate)
    # only a large disagreement is texture: the weak patches' estimate is the noisier one
    if weak is not None and estimate > texture_ratio * weak:
        return weak
    return estimate


def _noise_eigenvalue(rows: Array) -> float:
    """Chen, Zhu and Heng's rule on the covariance of ``rows`` (one patch a row)."""
    centred = rows - rows.mean(axis=0)
    return _tail_mean(np.linalg.eigvalsh(centred.T @ centred / len(centred)))


def _tail_mean(eigenvalues: Array) -> float:
    """Drop the largest eigenvalues until the mean of those left is at most their median."""
    ordered = np.sort(eigenvalues)[::-1]
    for first in range(len(ordered)):
        tail = ordered[first:]
        mean = float(np.mean(tail))
        if mean <= float(np.median(tail)):
            return max(mean, 0.0)
    return max(float(ordered[-1]), 0.0)


@lru_cache(maxsize=512)
def _tail_mean_bias(count: int, dims: int) -> float:
    """What :func:`_tail_mean` returns on the sample covariance of ``count`` patches of pure
    unit noise in ``dims`` dimensions (below 1: 0.80 for 400 patches of 49 pixels, 0.97
    for 3000), averaged over 32 Wishart draws (Bartlett's construction: no patches drawn)."""
    rng = np.random.default_rng(dims * 100_003 + count)
    dof = count - 1  # the patches' mean is removed
    values = []
    for _ in range(32):
        lower = np.tril(rng.standard_normal((dims, dims)), -1)
        lower[np.diag_indices(dims)] = np.sqrt(rng.chisquare(dof - np.arange(dims)))
        values.append(_tail_mean(np.asarray(np.linalg.eigvalsh(lower @ lower.T / count),
                                            dtype=np.float64)))
    return float(np.mean(values))


@lru_cache(maxsize=8)
def _gradient_energy_threshold(patch: int) -> float:
    """The 0.999 quantile of a ``patch`` x ``patch`` patch's gradient energy (central
    differences, as Liu et al.) for pure noise of unit variance: the gamma law with the
    quadratic form's mean and rank (their approximation)."""
    from scipy.stats import gamma

    n = patch * patch
    index = np.arange(n).reshape(patch, patch)
    rows = []
    for i in range(patch):
        for j in range(1, patch - 1):
            for ahead, behind in ((index[i, j + 1], index[i, j - 1]),
                                  (index[j + 1, i], index[j - 1, i])):
                row = np.zeros(n)
                row[ahead], row[behind] = 0.5, -0.5
                rows.append(row)
    gram = np.asarray(rows).T @ np.asarray(rows)
    rank, trace = int(np.linalg.matrix_rank(gram)), float(np.trace(gram))
    return float(gamma.ppf(_WEAK_QUANTILE, rank / 2.0, scale=2.0 * trace / rank))


def _weak_texture_variance(data: Array, rows: Array, channel: npt.NDArray[np.intp],
                           patch: int, start: float) -> float | None:
    """Noise variance from the weakly textured patches among ``rows`` (one patch a row,
    of channel ``channel`` of ``data``) after Liu, Tanaka and Okutomi (2013), iterated from
    ``start``; None when too few patches qualify."""
    if start <= 0:
        return None
    square = rows.reshape(-1, patch, patch)
    # each patch's gradient energy: central differences inside it, both directions
    energy = (np.sum((0.5 * (square[:, :, 2:] - square[:, :, :-2])) ** 2, axis=(1, 2))
              + np.sum((0.5 * (square[:, 2:] - square[:, :-2])) ** 2, axis=(1, 2)))
    # clipped values carry less noise and fill the flattest patches of dark images
    low, high = np.full(data.shape[2], -np.inf), np.full(data.shape[2], np.inf)
    for c in range(data.shape[2]):
        z = data[..., c]
        if np.mean(z == z.min()) > 1e-3:
            low[c] = z.min()
        if np.mean(z == z.max()) > 1e-3:
            high[c] = z.max()
    means = rows.mean(axis=1)
    margin = _CLIP_MARGIN * math.sqrt(start)
    usable = (means >= low[channel] + margin) & (means <= high[channel] - margin)
    threshold = _gradient_energy_threshold(patch)
    variance, found = start, None
    for _ in range(10):
        weak = np.flatnonzero(usable & (energy < variance * threshold))
        if weak.size < _WEAK_MIN_PATCHES:
            break
        weak = weak[::-(-weak.size // _WEAK_MAX_PATCHES)]  # every k-th: bounded time
        variance = _noise_eigenvalue(rows[weak]) / _tail_mean_bias(weak.size, rows.shape[1])
        converged = found is not None and abs(variance - found) <= 1e-3 * found
        found = variance
        if converged:
            break
    return found


def held_out_noise(image: npt.ArrayLike, held: npt.ArrayLike, noise_variance: float
                   ) -> tuple[float, float]:
    """The noise variance on the held-out pixels ``held`` of an (H, W, C) image and on
    the others, given the whole image's ``noise_variance`` ``v``; for a (K, H, W) stack
    of masks (an ensemble's members, each holding out its own), their means.

    A tenth of a 128 px image is about 1600 pixels, whose noise draw differs from the
    image's by a few percent (its mean square has a relative spread of
    ``sqrt(2 / 1600)``, 3.5%): on a smooth image at high noise, enough to move the
    estimated-error stop by a dB. Each pixel's squared residual against the mean of
    its 8 neighbours holds its own noise squared plus terms that do not depend on the
    pixel set, so the held-out pixels' mean residual less the image's estimates their
    draw. It is shrunk by how much of the residual is noise: the regression of the
    noise's squares on the residuals' squares, ``2 v**2 / (C var r**2)`` (0.79 on
    pure noise; near 0 on a texture, whose residuals are mostly the image's own).
    Over the evaluation set (19 images at 64 and 128 px, sigma 5-50/255, four seeds,
    ``v`` estimated) the held-out draw is known to 3.5% RMS this way, against 4.4%
    taking it as the image's (2.8% against 4.8% at sigma 50, equal at 5; at the seed
    whose draws are smallest, 2.6% against 2.2%): ``benchmarks/noise_level.py``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> noisy = 0.5 + rng.normal(0, 0.1, (128, 128, 1))
    >>> held = rng.random((128, 128)) < 0.1
    >>> drawn = float(np.mean((noisy[held] - 0.5) ** 2)) / 0.01
    >>> estimated = held_out_noise(noisy, held, 0.01)[0] / 0.01
    >>> abs(estimated - drawn) < abs(1.0 - drawn)
    True
    """
    from scipy.ndimage import convolve

    data = np.asarray(image, dtype=np.float64)
    if data.ndim == 2:
        data = data[..., None]
    # a mask that holds out nothing or everything tells nothing: its member keeps v
    masks = list(np.asarray(held, dtype=bool).reshape(-1, *data.shape[:2]))
    usable = [m for m in masks if m.any() and not m.all()]
    v = float(noise_variance)
    if not usable or v <= 0:
        return v, v
    neighbours = np.full((3, 3), 1.0 / 8.0)
    neighbours[1, 1] = 0.0
    residual = np.mean([(data[..., c] - convolve(data[..., c], neighbours, mode="reflect")) ** 2
                        for c in range(data.shape[2])], axis=0)
    spread = float(residual.var()) * data.shape[2]
    shrink = 2.0 * v * v / spread if spread > 0 else 0.0
    overall = float(residual.mean())
    held_shift = sum(float(residual[m].mean()) - overall for m in usable) / len(masks)
    fit_shift = sum(float(residual[~m].mean()) - overall for m in usable) / len(masks)
    return v + shrink * held_shift, v + shrink * fit_shift
