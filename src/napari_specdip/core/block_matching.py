"""Block matching and collaborative filtering: the two steps of BM3D (Dabov, Foi, Katkovnik
and Egiazarian, "Image denoising by sparse 3-D transform-domain collaborative filtering",
IEEE TIP 16(8), 2007), written for the Wiener stage: the first step for its pilot, the
second for its filter.

Each reference block (8 x 8, every 3 px) is grouped with the blocks most like it within
19 px of it (a little further for some: references are matched 8 x 8 at a time, against the
blocks near any of them; on the luminance for colour), the group is transformed (BM3D's 2D
bior1.5 wavelet of each block, or the DCT, or each in turn with the estimates averaged; Haar
across the blocks), its coefficients under 2.7 sigma are set to zero, and
the blocks come back, averaged into the image with weights that favour sparse groups and a
Kaiser window. Blocks that repeat across the image, which an early-stopped network smooths, are
averaged with their like: the first estimate an image of repeated structure needs
(benchmarks/README.md, *The pilot*).

The second step (:func:`wiener_estimate`) groups the blocks by the pilot's (up to 32, matched
on the pilot, whose noise is small), and shrinks each coefficient of the noisy group by the
empirical Wiener weight ``P**2 / (P**2 + sigma**2)`` of the pilot's group ``P``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from napari_specdip.core.refine import (dct_matrix, from_group_planes, group_planes,
                                        matching_guide, observation_and_pilot)

#: BM3D's first-step settings (its "normal profile" for noise up to 40/255)
BLOCK = 8
STEP = 3
GROUP = 16
RADIUS = 19
#: references matched at once (a square of them): one matrix product each
TILE = 8
THRESHOLD = 2.7
#: mean squared difference per pixel of two blocks' clean values above which they are not
#: grouped: BM3D's 3000 (0-255 scale, noisy blocks) less the 2 sigma**2 that noise of 25/255
#: adds; the noise's own 2 sigma**2 is added back at each level
MATCH = (3000.0 - 2 * 25.0**2) / 255.0**2
KAISER_BETA = 2.0
#: the 2D transforms a block can be filtered in
BLOCK_TRANSFORMS = ("dct", "bior1.5")
#: BM3D's second-step settings: groups of up to 32, matched on the pilot under a mean squared
#: difference per pixel of 400 (0-255 scale), which its small noise is not added to
WIENER_GROUP = 32
WIENER_MATCH = 400.0 / 255.0**2
# references of a group of up to GROUP blocks handled at once: bounds the memory of the
# gathered groups at any image size (larger groups, fewer at once)
_CHUNK = 4096


def hard_threshold_estimate(observation: npt.ArrayLike, sigma: float, *,
                            transforms: Sequence[str] = ("bior1.5",),
                            device: torch.device | str = "cpu") -> npt.NDArray[np.float64]:
    """BM3D's first estimate of an ``(H, W, C)`` image with white Gaussian noise of
    deviation ``sigma`` (same scale as the image). Colour (3 channels) is filtered in
    opponent colours with groups matched on the luminance, other channels with groups
    matched on their mean.

    ``transforms`` names the 2D transform of each block: ``"bior1.5"`` (BM3D's, a
    biorthogonal spline wavelet) or ``"dct"``; with several, the mean of the estimates
    made with each from one block matching.

    Images smaller than a block, or without noise, come back unchanged.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tile = rng.random((8, 8))
    >>> clean = np.tile(tile, (6, 6))[..., None]        # a block that repeats
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> estimate = hard_threshold_estimate(noisy, 0.1)
    >>> bool(np.mean((estimate - clean) ** 2) < np.mean((noisy - clean) ** 2) / 4)
    True
    """
    names = tuple(transforms)
    if not names or any(name not in BLOCK_TRANSFORMS for name in names):
        raise ValueError(f"transforms must be among {BLOCK_TRANSFORMS}, got {names}")
    y = np.asarray(observation, dtype=np.float64)
    if y.ndim != 3:
        raise ValueError(f"observation must be (H, W, C), got shape {y.shape}")
    height, width, channels = y.shape
    if sigma <= 0 or min(height, width) < BLOCK:
        return y.copy()
    # the matched image's own noise adds 2 sigma**2 to two blocks' mean squared difference
    noise = sigma**2 if channels == 3 else sigma**2 / channels
    return _collaborative_filter(y, None, sigma, MATCH + 2.0 * noise, GROUP, device, names)


def wiener_estimate(observation: npt.ArrayLike, pilot: npt.ArrayLike, sigma: float, *,
                    device: torch.device | str = "cpu") -> npt.NDArray[np.float64]:
    """BM3D's second estimate of an ``(H, W, C)`` image with white Gaussian noise of
    deviation ``sigma``, given a first estimate ``pilot`` of the clean image (same shape
    and scale): collaborative empirical Wiener filtering of groups matched on the pilot.
    Colour (3 channels) is filtered in opponent colours with groups matched on the pilot's
    luminance, other channels with groups matched on the pilot's mean.

    Images smaller than a block, or without noise, come back unchanged.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tile = rng.random((8, 8))
    >>> clean = np.tile(tile, (6, 6))[..., None]        # a block that repeats
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> pilot = clean + rng.normal(0, 0.02, clean.shape)  # a good first estimate
    >>> estimate = wiener_estimate(noisy, pilot, 0.1)
    >>> bool(np.mean((estimate - clean) ** 2) < np.mean((noisy - clean) ** 2) / 10)
    True
    """
    y, p = observation_and_pilot(observation, pilot)
    if sigma <= 0 or min(y.shape[:2]) < BLOCK:
        return y.copy()
    return _collaborative_filter(y, p, sigma, WIENER_MATCH, WIENER_GROUP, device, ("dct",))


def _collaborative_filter(y: npt.NDArray[np.float64], pilot: npt.NDArray[np.float64] | None,
                          sigma: float, threshold: float, group: int,
                          device: torch.device | str, names: tuple[str, ...]
                          ) -> npt.NDArray[np.float64]:
    """Either step on an ``(H, W, C)`` image: hard thresholding of groups matched on the
    observation (``pilot`` None), or Wiener shrinkage of groups matched on the pilot; with
    the blocks in each 2D transform ``names``, the estimates averaged."""
    height, width, channels = y.shape
    images = group_planes(np.stack([y] if pilot is None else [y, pilot]), device)
    matched = images[-1]  # the pilot where there is one
    guide = matching_guide(matched)
    flat = images[0].reshape(channels, -1)
    first = None if pilot is None else matched.reshape(channels, -1)
    sums = [(torch.zeros_like(flat), torch.zeros_like(flat)) for _ in names]
    transforms = _Transforms(width, flat.device)
    # a band of references at a time: memory bounded by the image's width, not its area
    for groups, sizes in _matched_bands(guide, _reference_grid(height), _reference_grid(width),
                                        threshold, group):
        for name, (total, weight) in zip(names, sums, strict=True):
            _collaborate(flat, first, transforms, name, groups, sizes, float(sigma), total,
                         weight)
    out = torch.stack([torch.where(weight > 0, total / weight.clamp_min(1e-30), flat)
                       for total, weight in sums]).mean(0)
    return from_group_planes(out.reshape(channels, height, width))


def _reference_grid(length: int) -> torch.Tensor:
    """Top-left corners of the reference blocks along one axis: every STEP px and the last."""
    last = length - BLOCK
    starts = list(range(0, last + 1, STEP))
    return torch.tensor(starts + ([last] if starts[-1] != last else []))


def _matched_bands(luminance: torch.Tensor, refs_y: torch.Tensor, refs_x: torch.Tensor,
                   threshold: float, group: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """For each reference block, the flat positions (row * width + column of their top-left
    corners) of the ``group`` most similar blocks near it, nearest first, and how many of them
    to keep: those within ``threshold`` (mean squared difference per pixel), down to a
    power of 2 (the Haar transform's length).

    The references are taken TILE x TILE at a time, each tile against every block within
    RADIUS of any of its references, so that the distances are one matrix product
    (``|a|^2 + |b|^2 - 2 a.b``) per tile; yielded TILE rows of references at a time,
    row by row, as ``(positions, sizes)``.
    """
    height, width = luminance.shape
    device = luminance.device
    ny, nx = len(refs_y), len(refs_x)
    last_y, last_x = height - BLOCK, width - BLOCK
    area = BLOCK * BLOCK
    for a in range(0, ny, TILE):
        top, bottom = int(refs_y[a]), int(refs_y[min(a + TILE, ny) - 1])
        y0, y1 = max(0, top - RADIUS), min(last_y, bottom + RADIUS)
        rows = y1 - y0 + 1
        # the band's blocks, column by column: (columns, rows, 64), so that the blocks of
        # a range of columns are one contiguous matrix
        band = F.unfold(luminance[None, None, y0:y1 + BLOCK], BLOCK)[0]
        band = band.reshape(area, rows, last_x + 1).permute(2, 1, 0).contiguous()
        energy = band.square().sum(-1)  # (columns, rows)
        ry = refs_y[a:a + TILE].to(device) - y0
        best_i = torch.zeros((len(ry), nx, group), dtype=torch.long, device=device)
        best_d = torch.full((len(ry), nx, group), math.inf, device=device)
        for c in range(0, nx, TILE):
            left, right = int(refs_x[c]), int(refs_x[min(c + TILE, nx) - 1])
            x0, x1 = max(0, left - RADIUS), min(last_x, right + RADIUS)
            candidates = band[x0:x1 + 1].reshape(-1, area)
            rx = refs_x[c:c + TILE].to(device)
            refs = band[rx][:, ry].transpose(0, 1).reshape(-1, area)  # row by row
            ref_energy = energy[rx][:, ry].T.reshape(-1, 1)
            # |a - b|^2 less |a|^2, which does not change the order of a row
            score = torch.addmm(energy[x0:x1 + 1].reshape(1, -1), refs, candidates.T,
                                alpha=-2.0)
            k = min(group, score.shape[1])
            nearest, where = torch.topk(score, k, dim=1, largest=False)
            shape = (len(ry), len(rx), k)
            best_d[:, c:c + TILE, :k] = (
                (nearest + ref_energy).clamp_min(0.0) / area).reshape(shape)
            position = (where % rows + y0) * width + where // rows + x0
            best_i[:, c:c + TILE, :k] = position.reshape(shape)
        similar = (best_d <= threshold).sum(-1).clamp_min(1)
        sizes = 2 ** torch.floor(torch.log2(similar.float())).long()
        yield best_i.reshape(-1, group), sizes.reshape(-1)


def _haar(n: int, device: torch.device) -> torch.Tensor:
    """The orthonormal Haar matrix of size ``n`` (a power of 2), rows the basis."""
    h = torch.ones((1, 1), dtype=torch.float32)
    while h.shape[0] < n:
        m = h.shape[0]
        h = torch.cat([torch.kron(h, torch.tensor([[1.0, 1.0]])),
                       torch.kron(torch.eye(m), torch.tensor([[1.0, -1.0]]))]) / math.sqrt(2.0)
    return h.to(device)


#: bior1.5's analysis filters (low and high pass), as in the wavelet's definition
_BIOR15_LOW = np.array([3.0, -3.0, -22.0, 22.0, 128.0, 128.0, 22.0, -22.0, -3.0, 3.0]) / (
    128.0 * math.sqrt(2.0))
_BIOR15_HIGH = np.array([0.0, 0.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0]) / math.sqrt(2.0)


def bior15_matrix(n: int = BLOCK) -> npt.NDArray[np.float64]:
    """The ``n`` x ``n`` matrix of the full periodic bior1.5 wavelet decomposition
    (coarsest approximation first, then the details from coarse to fine, as
    PyWavelets' ``wavedec(..., mode="periodization")`` orders them), each row scaled to
    unit norm so that white noise of deviation sigma has deviation sigma in every
    coefficient; ``n`` a power of 2. Not orthogonal: invert it to go back.

    Examples
    --------
    >>> m = bior15_matrix(8)
    >>> bool(np.allclose(np.linalg.norm(m, axis=1), 1.0))
    True
    >>> np.round(m[0], 3)  # the coarsest approximation: the block's mean
    array([0.354, 0.354, 0.354, 0.354, 0.354, 0.354, 0.354, 0.354])
    """
    approximation = np.eye(n)
    details: list[npt.NDArray[np.float64]] = []
    size = n
    while size > 1:
        low, high = np.zeros((size // 2, size)), np.zeros((size // 2, size))
        for i in range(size // 2):  # the filters' alignment in PyWavelets' periodization
            for j, (a, b) in enumerate(zip(_BIOR15_LOW, _BIOR15_HIGH, strict=True)):
                low[i, (2 * i + 5 - j) % size] += a
                high[i, (2 * i + 5 - j) % size] += b
        details.insert(0, high @ approximation)
        approximation = low @ approximation
        size //= 2
    matrix = np.vstack([approximation, *details])
    return np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True), dtype=np.float64)


class _Transforms:
    """What every group of an image is filtered with, built once per image: the blocks'
    2D transforms (the orthonormal DCT and bior1.5, each with its inverse), the Haar
    matrix of each group size, the Kaiser window, and the flat offsets of a block's
    pixels from its top-left corner."""

    def __init__(self, width: int, device: torch.device) -> None:
        dct = torch.from_numpy(dct_matrix(BLOCK)).float().to(device)
        basis = torch.kron(dct, dct)  # row-major blocks: coefficients = basis @ block
        one_axis = bior15_matrix(BLOCK)
        wavelet = np.kron(one_axis, one_axis)
        # (forward, inverse): coefficients = forward @ block, block = inverse.T @ coefficients
        self.pairs = {
            "dct": (basis, basis),
            "bior1.5": (torch.from_numpy(wavelet).float().to(device),
                        torch.from_numpy(np.linalg.inv(wavelet).T.copy()).float().to(device))}
        self.haar = {2 ** k: _haar(2 ** k, device)
                     for k in range(max(GROUP, WIENER_GROUP).bit_length())}
        window = torch.from_numpy(np.kaiser(BLOCK, KAISER_BETA)).float()
        self.window = torch.outer(window, window).reshape(-1).to(device)
        self.inside = (torch.arange(BLOCK, device=device)[:, None] * width
                       + torch.arange(BLOCK, device=device)[None, :]).reshape(-1)


def _collaborate(flat: torch.Tensor, pilot: torch.Tensor | None, transforms: _Transforms,
                 name: str, groups: torch.Tensor, sizes: torch.Tensor, sigma: float,
                 total: torch.Tensor, weight: torch.Tensor) -> None:
    """Filter every group in the 3D transform (the blocks' 2D transform ``name``, Haar
    across them; hard thresholding, or Wiener shrinkage by the ``pilot``'s group where one
    is given) and add its blocks, weighted by the inverse of their remaining noise and the
    Kaiser window, to ``total`` and their weights to ``weight`` (all like ``flat``:
    channels, pixels)."""
    channels = flat.shape[0]
    window = transforms.window
    basis, inverse = transforms.pairs[name]
    threshold, variance = THRESHOLD * sigma, sigma * sigma
    for size in sorted(set(sizes.tolist())):
        haar = transforms.haar[size]
        chosen = torch.nonzero(sizes == size).reshape(-1)
        chunk = _CHUNK * GROUP // max(size, GROUP)
        for start in range(0, len(chosen), chunk):
            part = groups[chosen[start:start + chunk], :size]  # (n, size) corners
            pixels = part[..., None] + transforms.inside  # (n, size, 64)
            coeffs = torch.einsum("gk,cnkp,qp->cngq", haar, flat[:, pixels], basis)
            if pilot is None:
                coeffs = torch.where(coeffs.abs() >= threshold, coeffs, torch.zeros_like(coeffs))
                # the noise left: sigma**2 per coefficient kept
                remaining = variance * (coeffs != 0).sum(dim=(2, 3)).clamp_min(1).float()
            else:
                power = torch.einsum("gk,cnkp,qp->cngq", haar, pilot[:, pixels], basis).square()
                shrink = power / (power + variance)
                coeffs = coeffs * shrink
                remaining = (variance * shrink.square().sum(dim=(2, 3))).clamp_min(1e-30)
            estimate = torch.einsum("gk,cngq,qp->cnkp", haar, coeffs, inverse)
            w = (1.0 / remaining)[..., None, None] * window  # (C, n, 1, 64)
            # index_add_ adds in order on the CPU (index_put_'s accumulate does not, outside
            # torch's deterministic mode) and deterministically on CUDA in that mode
            index = pixels.reshape(-1)
            for c in range(channels):
                total[c].index_add_(0, index, (w[c] * estimate[c]).reshape(-1))
                weight[c].index_add_(0, index, w[c].expand_as(estimate[c]).reshape(-1))
