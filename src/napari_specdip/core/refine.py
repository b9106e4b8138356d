"""A second, empirical Wiener stage for denoising, with the network's output as its pilot.

An early-stopped fit is a low-pass estimate: about two thirds of its squared error is
detail it has not reached yet (benchmarks/README.md, *uncertainty_ceiling.py*). BM3D's
second step recovers such detail from a first estimate: it shrinks each coefficient of
the noisy image's local transform by the weight ``P**2 / (P**2 + N)``, where ``P`` is
the pilot's coefficient and ``N`` the noise variance of that coefficient. Here the pilot
is the network's output (blended with BM3D's first step under Gaussian noise,
:data:`PILOT_NETWORK_SHARE`) and the transform an orthonormal 8 x 8 DCT of every patch,
the patches' estimates averaged back with weights inverse to their remaining noise. Under
Gaussian noise that filter is blended with BM3D's second step proper (:data:`GROUPED_SHARE`,
:func:`napari_specdip.core.block_matching.wiener_estimate`): the same shrinkage on groups
of similar blocks matched on the pilot, which a texture that repeats across the image
gains from. The output under Gaussian noise is then blended with WNNM's estimate of the
observation (:data:`LOW_RANK_SHARE`, :mod:`napari_specdip.core.low_rank`), whose errors
lie elsewhere. The noise may change from pixel to pixel (Poisson-Gaussian): each
coefficient's variance is then the patch's variance map seen through that basis
function, which is exact for independent noise.

Noise clipped at an end of the range (a dark background stored in 8 bits, saturation)
is not zero-mean there: the data's mean near that end is pushed inwards, and the fit and
the filter both return that mean. :func:`declip` maps the estimate back through the
clipped noise's mean (Foi 2009), for Gaussian noise of a known level, constant or
depending on the intensity (a camera's).

benchmarks/refine.py measures both (figures in benchmarks/README.md, *refine.py*).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

#: side of the DCT patches. On the tuning half (128 px, Gaussian sigma 10/25/50, quick
#: preset) 8 px gained +0.74 dB on average over the network's output, 12 px +0.58, 16 px +0.44
PATCH = 8
# coefficient maps per band of rows, at most: bounds the memory at any image size
_BAND_VALUES = 1 << 24

#: An orthonormal opponent transform of RGB (luminance, red-blue, green-magenta; rows),
#: used by both filters here and by block matching: white noise stays white with the same
#: variance, and the chroma channels, mostly flat, get their own, smaller Wiener weights.
#: Tuning half, RGB photos: +0.03-1.15 dB per channel, +0.66-2.21 dB in opponent colours.
OPPONENT = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]])
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)


def group_planes(images: npt.NDArray[np.float64], device: torch.device | str) -> torch.Tensor:
    """``(..., H, W, C)`` images as the group filters hold them (block matching, WNNM):
    float32 ``(..., C, H, W)`` planes on ``device``, in opponent colours where C is 3."""
    data = images @ OPPONENT.T if images.shape[-1] == 3 else images
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(data, -1, -3))).to(
        device=device, dtype=torch.float32)


def matching_guide(planes: torch.Tensor) -> torch.Tensor:
    """The ``(H, W)`` plane groups are matched on, of ``(C, H, W)`` planes from
    :func:`group_planes`: the luminance for colour, the channels' mean otherwise."""
    return planes[0] if planes.shape[0] == 3 else planes.mean(0)


def from_group_planes(planes: torch.Tensor) -> npt.NDArray[np.float64]:
    """The inverse of :func:`group_planes` for one image: ``(C, H, W)`` planes back as a
    float64 ``(H, W, C)`` image."""
    out = np.moveaxis(planes.cpu().double().numpy(), 0, -1)
    return np.asarray(out @ OPPONENT if out.shape[-1] == 3 else out, dtype=np.float64)


def dct_matrix(patch: int = PATCH) -> npt.NDArray[np.float64]:
    """The orthonormal 1D DCT-II as a ``(patch, patch)`` matrix (row k: frequency k)."""
    n = np.arange(patch)
    one = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * patch))
    one *= np.sqrt(2.0 / patch)
    one[0] /= np.sqrt(2.0)
    return one


class _Separable:
    """The 2D DCT of every patch as two 1D passes (along rows, then columns): 2 x patch
    multiplications per coefficient instead of patch**2, the same coefficients (their
    channels ordered column frequency first)."""

    def __init__(self, matrix: torch.Tensor, *, squared: bool = False) -> None:
        m = matrix ** 2 if squared else matrix
        patch = m.shape[0]
        self.patch = patch
        self.along_rows = m[:, None, None, :]  # (P, 1, 1, P): frequency along x
        self.along_columns = m.repeat(patch, 1)[:, None, :, None]  # (P*P, 1, P, 1), grouped

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, P*P, H-P+1, W-P+1): the coefficients of every patch."""
        return F.conv2d(F.conv2d(images, self.along_rows), self.along_columns, groups=self.patch)

    def backward(self, coefficients: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`forward`: each patch's inverse DCT, placed and summed."""
        return F.conv_transpose2d(F.conv_transpose2d(coefficients, self.along_columns,
                                                     groups=self.patch), self.along_rows)


def wiener_refine(observation: npt.ArrayLike, pilot: npt.ArrayLike,
                  noise_variance: float | npt.ArrayLike, *, patch: int = PATCH,
                  device: torch.device | str = "cpu") -> npt.NDArray[np.float64]:
    """Empirical Wiener filtering of ``observation`` with ``pilot`` as its estimate of
    the clean image.

    Parameters
    ----------
    observation, pilot : array_like
        ``(H, W, C)`` images on the same scale: the noisy data and a first estimate.
    noise_variance : float or array_like
        The noise variance, one value or one per pixel (broadcast to ``(H, W, C)``).
    patch : int
        Side of the square DCT patches.
    device : torch.device or str
        Where to compute (the run's device).

    Returns
    -------
    ndarray
        The filtered ``(H, W, C)`` image, float64.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0, 1, 32), (32, 1))[..., None]
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> pilot = clean + 0.02                      # a good first estimate, slightly off
    >>> refined = wiener_refine(noisy, pilot, 0.1 ** 2)
    >>> bool(np.mean((refined - clean) ** 2) < np.mean((noisy - clean) ** 2) / 10)
    True
    """
    y, p = observation_and_pilot(observation, pilot)
    v = np.broadcast_to(np.asarray(noise_variance, dtype=np.float64), y.shape)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError("noise_variance must be finite and >= 0")
    if y.shape[2] == 3:  # opponent colours; variances of independent channels add so
        y, p, v = y @ OPPONENT.T, p @ OPPONENT.T, v @ (OPPONENT ** 2).T
    if not np.any(v > 0):  # nothing to filter
        return np.asarray(observation, dtype=np.float64).copy()
    matrix = torch.from_numpy(dct_matrix(patch)).to(device=device, dtype=torch.float32)
    out = np.stack([_refine_channel(y[..., c], p[..., c], v[..., c], matrix)
                    for c in range(y.shape[2])], axis=-1)
    if out.shape[2] == 3:
        out = out @ OPPONENT
    return out


def observation_and_pilot(observation: npt.ArrayLike, pilot: npt.ArrayLike
                          ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both as float64 ``(H, W, C)`` arrays of one shape, or a ValueError that says so."""
    y = np.asarray(observation, dtype=np.float64)
    p = np.asarray(pilot, dtype=np.float64)
    if y.ndim != 3 or y.shape != p.shape:
        raise ValueError(f"observation and pilot must be (H, W, C) of one shape, got "
                         f"{y.shape} and {p.shape}")
    return y, p


def _refine_channel(y: npt.NDArray[np.float64], pilot: npt.NDArray[np.float64],
                    variance: npt.NDArray[np.float64],
                    matrix: torch.Tensor) -> npt.NDArray[np.float64]:
    height, width = y.shape
    patch = matrix.shape[0]
    pad = patch - 1
    # every patch that overlaps the image, so that border pixels get as many as the rest
    mode = "reflect" if min(height, width) > pad else "replicate"
    stacked = torch.from_numpy(np.stack([y, pilot, variance])).to(matrix)
    padded = F.pad(stacked[:, None], (pad, pad, pad, pad), mode=mode)[:, 0]
    constant = bool(np.all(variance == variance.flat[0]))
    rows = max(1, _BAND_VALUES // (patch * patch * (width + 2 * pad)))
    dct, dct_squared = _Separable(matrix), _Separable(matrix, squared=True)
    out = np.empty((height, width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        band = padded[:, top:bottom + 2 * pad]
        out[top:bottom] = _refine_band(band, dct, dct_squared, constant,
                                       float(variance.flat[0]))[
            pad:pad + bottom - top, pad:pad + width].cpu().double().numpy()
    return out


def _refine_band(band: torch.Tensor, dct: _Separable, dct_squared: _Separable,
                 constant: bool, level: float) -> torch.Tensor:
    """The band's rows, each the weighted mean of its patches' estimates (rows
    ``patch - 1`` from either edge of the band are incomplete and dropped)."""
    coeffs = dct.forward(band[:2, None])  # (2, K, h, w): observation, pilot
    if constant:
        noise = torch.full_like(coeffs[1], max(level, 0.0))
    else:
        noise = dct_squared.forward(band[2:3, None])[0]
    power = coeffs[1] ** 2
    weights = power / (power + noise).clamp_min(torch.finfo(power.dtype).tiny)
    # BM3D's aggregation: each patch estimate weighted by the inverse of its noise
    # (relative to the band's mean noise, which keeps float32 in range)
    scale = noise.mean().clamp_min(torch.finfo(noise.dtype).tiny)
    share = 1.0 / ((weights ** 2 * noise).sum(0, keepdim=True) / scale + 1e-6)
    estimate = dct.backward((share * weights * coeffs[0])[None])[0, 0]
    box = torch.ones((1, 1, dct.patch, dct.patch), dtype=share.dtype, device=share.device)
    norm = F.conv_transpose2d(share[None], box)[0, 0]
    return estimate / norm


#: share of the Wiener stage's pilot that is the network's output under Gaussian noise; the
#: rest is block matching with collaborative hard thresholding (BM3D's first step,
#: core/block_matching.py), which averages the repeated structure the early-stopped fit
#: smooths. Chosen with :data:`GROUPED_SHARE` on the tuning half (24 runs, 128 px, sigma
#: 10/25/50, quick): the largest mean gain within 0.02 dB of the best, then the smallest
#: worst loss. benchmarks/README.md, *The pilot* and *BM3D's second step*
PILOT_NETWORK_SHARE = 0.35
#: the 2D block transforms of that first step, whose two estimates are averaged: BM3D's
#: bior1.5 wavelet suits photos and textures, the DCT sparse fluorescence. Chosen with the
#: shares on the tuning half (24 runs, 128 px, sigma 10/25/50, quick; the rule above):
#: +0.04 dB over the DCT alone (worst -0.13; bior1.5 alone +0.04, worst -0.31). Held-out
#: half, 33 runs: +0.05 dB (quick) and +0.04 (balanced), worst -0.16. benchmarks/README.md,
#: *The first step's block transform*
PILOT_TRANSFORMS = ("dct", "bior1.5")
#: share of the filter's output that is BM3D's second step (groups of blocks matched on the
#: pilot, core/block_matching.py) under Gaussian noise; the rest is the Wiener filter on every
#: patch. With the pilot above, tuning half: +0.29 dB over the patches alone with the pilot
#: at 0.5 (worst -0.03); 1.0: +0.29 (worst -0.10), 0.5: +0.24. Held-out half (33 runs): +0.20
#: dB (-0.09 to +1.21), 0.64 dB above BM3D on average
GROUPED_SHARE = 0.75
#: share of the stage's output that is WNNM's estimate of the observation under Gaussian
#: noise (low-rank groups of similar patches, core/low_rank.py); the rest is the filter
#: above. Its errors lie elsewhere than the filter's: the two averaged beat either. Chosen on
#: the tuning half (24 runs, 128 px, sigma 10/25/50, quick; the rule above): +0.48 dB (worst
#: -0.00; 0.75: +0.47, worst -0.11; 0.5: +0.46; WNNM alone +0.34). Held-out half (33 runs):
#: +0.48 dB (-0.42 to +1.47), NL-means + 1 dB on 31 of 33 (26 without).
#: benchmarks/README.md, *Low-rank groups*
LOW_RANK_SHARE = 0.6


#: share of the observed pixels that must sit exactly at an end of the intensity range
#: for that end to count as clipped: noise near a clipped end piles values up there, an
#: image that was never clipped has only its single extreme pixels at its own min and max
CLIP_SHARE = 0.005


def clipped_ends(observation: npt.NDArray[np.float64], *,
                 share: float = CLIP_SHARE) -> tuple[bool, bool]:
    """Whether noise in ``observation`` (on the [0, 1] scale) was clipped at 0 and at 1.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> dark = np.clip(0.02 + rng.normal(0, 0.1, (64, 64)), 0, 1)
    >>> clipped_ends(dark)
    (True, False)
    """
    size = max(observation.size, 1)
    return (bool(np.count_nonzero(observation <= 0.0) >= share * size),
            bool(np.count_nonzero(observation >= 1.0) >= share * size))


def clipped_mean(x: npt.NDArray[np.float64], sigma: float | npt.NDArray[np.float64], *,
                 low: bool, high: bool) -> npt.NDArray[np.float64]:
    """The mean of ``x + n`` clipped to [0, 1] at the ends marked, ``n`` Gaussian of
    deviation ``sigma`` (one, or one per value of ``x``): what a denoiser fitted to
    clipped data estimates instead of ``x``."""
    from napari_specdip.core.noise import clipped_moments

    return clipped_moments(x, sigma, low=low, high=high)[0]


def declip(estimate: npt.ArrayLike,
           sigma: float | Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]], *,
           low: bool, high: bool) -> npt.NDArray[np.float64]:
    """Undo the bias that clipping put into a denoised image (Foi, "Clipped noisy
    images: heteroskedastic modeling and practical denoising", Signal Processing 89(12),
    2009): where noise of deviation ``sigma`` was clipped at 0 (``low``) or 1 (``high``),
    the data's mean near that end is pushed inwards, and the denoiser returns that mean.
    Each value is mapped back through the inverse of :func:`clipped_mean`, into [0, 1].
    ``sigma`` may be a function of the clean value (signal-dependent noise: a camera's).

    Examples
    --------
    >>> true = np.array([0.0, 0.05, 0.5])
    >>> biased = clipped_mean(true, 0.1, low=True, high=True)
    >>> bool(biased[0] > 0.03)                       # a black pixel's mean is not black
    True
    >>> np.round(declip(biased, 0.1, low=True, high=True), 3)
    array([0.  , 0.05, 0.5 ])
    """
    values = np.asarray(estimate, dtype=np.float64)
    grid = np.linspace(0.0, 1.0, 4097)
    spread = np.asarray(sigma(grid) if callable(sigma) else sigma, dtype=np.float64)
    if not (low or high) or not np.all(spread > 0):
        return values.copy()
    means = clipped_mean(grid, spread, low=low, high=high)  # increasing in x
    return np.asarray(np.interp(values, means, grid), dtype=np.float64)
