"""Weighted nuclear norm minimisation (WNNM; Gu, Zhang, Zuo and Feng, "Weighted nuclear norm
minimization with application to image denoising", CVPR 2014), written from the paper for
the Wiener stage.

Patches like each other, stacked as the columns of a matrix, make a matrix of low rank;
noise spreads over all its singular values. Each group of a reference patch and its most
similar patches nearby is centred on its mean column and its singular values are shrunk,
the large ones (structure) less than the small ones (noise): the weights are inverse to
the estimated clean singular values, which the paper's closed form solves by a short
fixed-point iteration. The patches come back averaged into the image. The whole is run
several times, each time on the last estimate with a tenth of the observation added back
(iterative regularisation), with the noise left in each group estimated from how far the
estimate has moved from the observation, the groups matched again on the estimate every
second time and shrinking by ten patches every second time.

It errs elsewhere than the early-stopped network and BM3D's steps: low-rank groups keep
the fine repeated detail of photos and the sparse structure of fluorescence that both
smooth. The stage blends it into its output (``refine.LOW_RANK_SHARE``,
benchmarks/README.md, *Low-rank groups*).

Colour (3 channels) is denoised in opponent colours with groups matched on the
luminance, each channel's group shrunk on its own; other channel counts match on the
channels' mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from napari_specdip.core.refine import from_group_planes, group_planes, matching_guide


@dataclass(frozen=True)
class Profile:
    """The authors' settings for noise up to ``up_to`` (0-255 scale)."""

    up_to: float
    patch: int  # side of the square patches
    group: int  # patches per group in the first iteration, ten more than the paper's first
    iterations: int
    noise_left: float  # lambda: the share of the estimated remaining noise that is shrunk


#: the authors' settings by noise level (the group shrinks by ten patches every second
#: iteration, from ten under ``group``)
PROFILES = (Profile(20.0, 5, 70, 8, 0.56), Profile(40.0, 7, 90, 12, 0.56),
            Profile(60.0, 7, 120, 14, 0.58), Profile(math.inf, 9, 140, 14, 0.58))
#: reference patches every STEP px (the authors' every 1-2 px: every 3 px gave the coins
#: the same PSNR to 0.01 dB, every 4 px 0.03 dB less on average at two thirds of that
#: time), matched within RADIUS px (the authors': half that lost 0.2 dB on average, up to
#: 0.8 on sparse fluorescence; benchmarks/README.md, *Low-rank groups*)
STEP = 4
RADIUS = 30
#: the share of the observation added back to the estimate before each iteration
FEEDBACK = 0.1
#: the weight constant of the paper (sqrt(2) * 2) and its fixed-point iterations
WEIGHT = 2.0 * math.sqrt(2.0)
FIXED_POINT = 3
#: references whose groups are matched at once: a square TILE x TILE of them against every
#: patch within RADIUS of any of them (one matrix product)
TILE = 16
# matrices per thread, at least, for the eigendecompositions to be split over threads
_PER_WORKER = 64
# matched patch indices kept from one iteration to the next, at most (4 bytes each): an
# image of 2048 px keeps them, one of 4096 px matches again every iteration
_KEPT_INDICES = 1 << 25


def profile_for(sigma: float) -> Profile:
    """The settings for white noise of deviation ``sigma`` on the [0, 1] scale."""
    level = sigma * 255.0
    return next(p for p in PROFILES if level <= p.up_to)


def group_sizes(profile: Profile) -> list[int]:
    """Patches per group at each iteration: ten under the profile's, ten fewer every
    second iteration (matched again at those)."""
    return [profile.group - 10 - 10 * (k // 2) for k in range(profile.iterations)]


def low_rank_estimate(observation: npt.ArrayLike, sigma: float, *,
                      device: torch.device | str = "cpu") -> npt.NDArray[np.float64]:
    """WNNM's estimate of an ``(H, W, C)`` image with white Gaussian noise of deviation
    ``sigma`` (same scale as the image; the settings by noise level assume an image on
    the [0, 1] scale, as the engine's).

    Images smaller than a patch, or without noise, come back unchanged.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tile = rng.random((7, 7))
    >>> clean = np.tile(tile, (6, 6))[..., None]        # a patch that repeats
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape)
    >>> estimate = low_rank_estimate(noisy, 0.1)
    >>> bool(np.mean((estimate - clean) ** 2) < np.mean((noisy - clean) ** 2) / 4)
    True
    """
    y = np.asarray(observation, dtype=np.float64)
    if y.ndim != 3:
        raise ValueError(f"observation must be (H, W, C), got shape {y.shape}")
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    profile = profile_for(sigma)
    height, width, channels = y.shape
    if sigma == 0 or min(height, width) < profile.patch:
        return y.copy()
    noisy = group_planes(y, device).reshape(channels, -1)
    estimate = noisy.clone()
    grid = _Grid(height, width, profile.patch, noisy.device)
    sizes = group_sizes(profile)
    # the groups are kept for the next iteration where they fit in memory (the whole
    # image's), and matched again otherwise
    keep = len(grid.rows) * len(grid.columns) * sizes[0] <= _KEPT_INDICES
    kept: list[torch.Tensor] = []
    for k, size in enumerate(sizes):
        estimate = estimate + FEEDBACK * (noisy - estimate)
        # matched again every second iteration as the group shrinks, on the estimate
        fresh = k % 2 == 0 or not keep
        groups = (_matched_tiles(matching_guide(estimate).reshape(height, width), grid, size)
                  if fresh else iter(kept))
        kept = []
        total = torch.zeros_like(estimate)
        count = torch.zeros_like(estimate[0])
        for matched in groups:
            if keep and fresh:
                kept.append(matched.to(torch.int32))
            members = matched.long()
            left = None if k == 0 else profile.noise_left * _noise_left(
                estimate, noisy, members[:, 0], grid, sigma)
            _shrink_groups(estimate, members, grid, sigma if left is None else left, total,
                           count)
        estimate = torch.where(count > 0, total / count.clamp_min(1.0), estimate)
    return from_group_planes(estimate.reshape(channels, height, width))


class _Grid:
    """Patch positions of one image: each patch by the flat index of its top-left pixel,
    the flat offsets of its pixels from there, and the reference patches' rows and columns
    (every STEP px and the last)."""

    def __init__(self, height: int, width: int, patch: int, device: torch.device) -> None:
        self.height, self.width, self.patch = height, width, patch
        self.inside = (torch.arange(patch, device=device)[:, None] * width
                       + torch.arange(patch, device=device)[None, :]).reshape(-1)
        self.rows = _references(height - patch)
        self.columns = _references(width - patch)


def _references(last: int) -> list[int]:
    starts = list(range(0, last + 1, STEP))
    return starts + ([last] if starts[-1] != last else [])


def _matched_tiles(guide: torch.Tensor, grid: _Grid, size: int) -> Iterator[torch.Tensor]:
    """For TILE x TILE reference patches at a time, the flat top-left indices of the
    ``size`` patches within RADIUS px most like each (squared distance on ``guide``), the
    reference itself first: ``(references, size)``."""
    patch, width = grid.patch, grid.width
    last_y, last_x = grid.height - patch, width - patch
    for a in range(0, len(grid.rows), TILE):
        rows = grid.rows[a:a + TILE]
        y0, y1 = max(0, rows[0] - RADIUS), min(last_y, rows[-1] + RADIUS)
        for b in range(0, len(grid.columns), TILE):
            columns = grid.columns[b:b + TILE]
            x0, x1 = max(0, columns[0] - RADIUS), min(last_x, columns[-1] + RADIUS)
            region = guide[y0:y1 + patch, x0:x1 + patch]
            span_y, span_x = y1 - y0 + 1, x1 - x0 + 1
            candidates = F.unfold(region[None, None], patch)[0].T  # (span_y * span_x, P)
            ry = torch.tensor(rows, device=guide.device) - y0
            rx = torch.tensor(columns, device=guide.device) - x0
            own = (ry[:, None] * span_x + rx[None, :]).reshape(-1)  # references' candidates
            # |a - b|^2 less |a|^2, which does not change the order of a row
            score = candidates.square().sum(1)[None, :] - 2.0 * candidates[own] @ candidates.T
            cy = torch.arange(span_y, device=guide.device)
            cx = torch.arange(span_x, device=guide.device)
            near_y = (cy[None, :] - ry[:, None]).abs() <= RADIUS  # (refs along y, span_y)
            near_x = (cx[None, :] - rx[:, None]).abs() <= RADIUS
            near = (near_y[:, None, :, None] & near_x[None, :, None, :]).reshape(len(own), -1)
            score = score.masked_fill(~near, math.inf)
            score[torch.arange(len(own), device=guide.device), own] = -math.inf
            k = min(size, span_y * span_x)
            where = torch.topk(score, k, dim=1, largest=False).indices
            yield (where // span_x + y0) * width + where % span_x + x0


def _noise_left(estimate: torch.Tensor, noisy: torch.Tensor, references: torch.Tensor,
                grid: _Grid, sigma: float) -> torch.Tensor:
    """The noise deviation left in each reference patch of ``estimate``, per channel: the
    noise's variance less the patch's mean squared distance from the observation
    (``(C, references)``; scaled by lambda by the caller, as in the paper)."""
    pixels = references[:, None] + grid.inside
    distance = (estimate[:, pixels] - noisy[:, pixels]).square().mean(-1)
    return (sigma * sigma - distance).abs().sqrt()


def _shrink_groups(estimate: torch.Tensor, members: torch.Tensor, grid: _Grid,
                   deviation: float | torch.Tensor, total: torch.Tensor,
                   count: torch.Tensor) -> None:
    """Shrink each group's singular values (the weighted nuclear norm's closed form) and
    add its patches to ``total`` and ``count``."""
    channels = estimate.shape[0]
    size = members.shape[1]
    pixels = members[..., None] + grid.inside  # (references, size, P)
    patches = estimate[:, pixels]  # (C, references, size, P)
    mean = patches.mean(2, keepdim=True)
    centred = (patches - mean).transpose(-1, -2)  # (C, references, P, size)
    # the singular values from the P x P Gram matrix: P is 25-81, the groups 30-130 wide
    eigenvalues, basis = _eigh(centred @ centred.transpose(-1, -2))
    singular = eigenvalues.clamp_min(0.0).sqrt()
    noise = torch.as_tensor(deviation, dtype=estimate.dtype, device=estimate.device)
    noise = noise.expand(channels, members.shape[0])[..., None].square()  # (C, refs, 1)
    shrunk = shrink_singular_values(singular, noise, size)
    gain = torch.where(singular > 0, shrunk / singular.clamp_min(1e-30),
                       torch.zeros_like(singular))
    low_rank = basis @ (gain[..., None] * (basis.transpose(-1, -2) @ centred))
    restored = low_rank.transpose(-1, -2) + mean  # (C, references, size, P)
    index = pixels.reshape(-1)
    for c in range(channels):
        total[c].index_add_(0, index, restored[c].reshape(-1))
    count.index_add_(0, index, torch.ones_like(index, dtype=count.dtype))


def _eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh`` of a batch of symmetric matrices, split over torch's CPU
    threads: its CPU kernel solves a batch one matrix after another on one core, and it
    is most of WNNM's time."""
    workers_before = torch.get_num_threads()
    workers = min(workers_before, gram.shape[0] * gram.shape[1] // _PER_WORKER)
    if gram.device.type != "cpu" or workers < 2:
        return _robust_eigh(gram)
    side = gram.shape[-1]
    parts = gram.reshape(-1, side, side).chunk(workers)
    # one intra-op thread each while they run: a solve on two threads is no faster, and
    # two solves on two threads each contend for the cores
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:  # each solve releases the GIL
            solved = list(pool.map(_robust_eigh, parts))
    finally:
        torch.set_num_threads(workers_before)
    values = torch.cat([v for v, _ in solved]).reshape(gram.shape[:-1])
    vectors = torch.cat([u for _, u in solved]).reshape(gram.shape)
    return values, vectors


def _robust_eigh(gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh``, again in float64 where single precision fails to converge:
    groups that are flat to within rounding (a constant alpha plane) leave Gram matrices
    of subnormal values, on which LAPACK's single-precision solver gives up."""
    try:
        values, vectors = torch.linalg.eigh(gram)
    except torch.linalg.LinAlgError:  # type: ignore[attr-defined]  # exported, not typed
        values, vectors = torch.linalg.eigh(gram.double())
    return values.to(gram.dtype), vectors.to(gram.dtype)


def shrink_singular_values(singular: torch.Tensor, noise_variance: torch.Tensor,
                           columns: int) -> torch.Tensor:
    """The weighted nuclear norm's shrinkage of a group's singular values ``singular``
    (any order, last axis) for noise of variance ``noise_variance`` (broadcast) per entry
    of a matrix of ``columns`` columns: each is soft-thresholded by
    ``WEIGHT * sqrt(columns) * noise_variance / (clean + eps)``, with the clean singular
    value first estimated as ``sqrt(max(s**2 - columns * noise_variance, 0))`` and then
    the shrunk one, FIXED_POINT times.

    Examples
    --------
    >>> s = torch.tensor([10.0, 0.5, 0.1])
    >>> shrink_singular_values(s, torch.tensor(0.01), 50)  # the small ones go
    tensor([9.9800, 0.0000, 0.0000])
    """
    scale = WEIGHT * math.sqrt(columns) * noise_variance
    clean = (singular.square() - columns * noise_variance).clamp_min(0.0).sqrt()
    for _ in range(FIXED_POINT):
        clean = (singular - scale / (clean + 1e-16)).clamp_min(0.0)
    return clean
