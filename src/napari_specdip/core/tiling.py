"""Tiles: a large image restored as overlapping tiles, each fitted by its own network.

A network fits a small image in far fewer steps than a large one (at 512 px the
hold-out minimum comes after thousands of steps, at 128 px after a few hundred),
so on a CPU sixteen 128 px tiles finish well before one 512 px fit does
(``benchmarks/tiling.py``). Neighbouring tiles overlap and are blended with
linear ramps, so that no seam shows where one network's output meets the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Tile:
    """One tile in observed pixels: ``rows`` x ``cols`` of the image, its margins
    included; ``core`` is the part it owns before blending."""

    top: int
    bottom: int
    left: int
    right: int
    core: tuple[int, int, int, int]

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def slices(self, scale: int = 1) -> tuple[slice, slice]:
        """The tile's rows and columns on a grid ``scale`` times finer."""
        return (slice(self.top * scale, self.bottom * scale),
                slice(self.left * scale, self.right * scale))

    def as_list(self) -> list[int]:
        return [self.top, self.bottom, self.left, self.right]


def _edges(length: int, tile: int, overlap: int) -> list[int]:
    """Core boundaries along one axis: as few cores as keep each within ``tile``,
    of near-equal length (no sliver at the end)."""
    if length <= tile + 2 * overlap:
        return [0, length]
    count = math.ceil(length / tile)
    return [round(i * length / count) for i in range(count + 1)]


def tile_grid(height: int, width: int, *, tile: int, overlap: int) -> list[Tile]:
    """The tiles of a ``height`` x ``width`` image, row by row.

    Cores of at most ``tile`` px per side cover the image without overlap; each
    tile is its core widened by ``overlap`` px on every side that has a neighbour.
    An image no larger than one tile with its margins is a single tile.

    Examples
    --------
    >>> [t.as_list() for t in tile_grid(100, 40, tile=48, overlap=4)]
    [[0, 37, 0, 40], [29, 71, 0, 40], [63, 100, 0, 40]]
    >>> len(tile_grid(160, 160, tile=128, overlap=16))
    1
    """
    if tile < 1 or overlap < 0:
        raise ValueError(f"tile must be >= 1 and overlap >= 0, got {tile} and {overlap}")
    rows, cols = _edges(height, tile, overlap), _edges(width, tile, overlap)
    tiles = []
    for top, bottom in zip(rows[:-1], rows[1:], strict=True):
        for left, right in zip(cols[:-1], cols[1:], strict=True):
            tiles.append(Tile(top=max(0, top - overlap), bottom=min(height, bottom + overlap),
                              left=max(0, left - overlap), right=min(width, right + overlap),
                              core=(top, bottom, left, right)))
    return tiles


def _ramp(start: int, stop: int, core_start: int, core_stop: int, length: int,
          scale: int) -> npt.NDArray[np.float64]:
    """Weights along one axis of a tile: rising over the overlap it shares with the
    neighbour before it, falling over the one after, 1 in between and at the image's
    edges. A neighbour's ramp is the complement, so weights sum to 1."""
    n = (stop - start) * scale
    weight = np.ones(n)
    position = (np.arange(n) + 0.5) / scale + start  # pixel centres in observed px
    if start > 0 and core_start > start:
        width = 2.0 * (core_start - start)
        weight = np.minimum(weight, np.clip((position - start) / width, 0.0, 1.0))
    if stop < length and stop > core_stop:
        width = 2.0 * (stop - core_stop)
        weight = np.minimum(weight, np.clip((stop - position) / width, 0.0, 1.0))
    return weight


def blend_weights(tile: Tile, height: int, width: int, scale: int = 1
                  ) -> npt.NDArray[np.float64]:
    """(h * scale, w * scale) weights of ``tile``'s output in the blend."""
    top, bottom, left, right = tile.core
    rows = _ramp(tile.top, tile.bottom, top, bottom, height, scale)
    cols = _ramp(tile.left, tile.right, left, right, width, scale)
    return np.outer(rows, cols)


class BlendCanvas:
    """The weighted sum of the tiles' outputs so far, on the output grid."""

    def __init__(self, height: int, width: int, channels: int, *, scale: int = 1) -> None:
        self.height, self.width, self.scale = height, width, scale
        self.total = np.zeros((height * scale, width * scale, channels))
        self.weight = np.zeros((height * scale, width * scale, 1))

    def add(self, tile: Tile, values: npt.NDArray[np.float64]) -> None:
        """Blend in ``tile``'s (h * scale, w * scale, C) output."""
        w = blend_weights(tile, self.height, self.width, self.scale)[..., None]
        where = tile.slices(self.scale)
        self.total[where] += w * values
        self.weight[where] += w

    def image(self, fallback: npt.NDArray[np.float64],
              pending: tuple[Tile, npt.NDArray[np.float64]] | None = None
              ) -> npt.NDArray[np.float64]:
        """The blend, ``pending`` (a tile still being fitted) blended in too, and
        ``fallback`` where no tile has an output yet."""
        total, weight = self.total, self.weight
        if pending is not None:
            tile, values = pending
            w = blend_weights(tile, self.height, self.width, self.scale)[..., None]
            where = tile.slices(self.scale)
            total, weight = total.copy(), weight.copy()
            total[where] += w * values
            weight[where] += w
        covered = weight > 0
        out = np.where(covered, total / np.where(covered, weight, 1.0), fallback)
        return np.asarray(out, dtype=np.float64)
