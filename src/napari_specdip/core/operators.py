"""Degradations as operators y = A(x); the one fitting loop minimises ||A(G(z)) - y||^2."""

from __future__ import annotations

import torch
from torch import nn

from napari_specdip.core.layers import downsample


class Operator(nn.Module):
    """A forward model ``A``: the network's output ``x`` -> what was observed.

    ``scale`` is the factor between the canvas the generator works on and the
    observation (super-resolution: the factor; otherwise 1).
    """

    scale: int = 1

    def loss(self, x: torch.Tensor, y: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error between ``A(x)`` and the observation ``y``; with a
        ``weight`` map (1, 1, h, w) of the observation's size, the weighted mean."""
        squared = (self(x) - y) ** 2
        if weight is None:
            return torch.mean(squared)
        return torch.sum(squared * weight) / (torch.sum(weight) * squared.shape[1])


class Identity(Operator):
    """Denoising, JPEG deblocking and detail enhancement: ``A(x) = x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Inpainting(Operator):
    """``A(x) = m * x`` with ``m`` 1 on known pixels, 0 on the pixels to fill."""

    known: torch.Tensor

    def __init__(self, known: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("known", known)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.known


class Downsampling(Operator):
    """Super-resolution: ``A(x)`` is anti-aliased downsampling by ``factor``."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.scale = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return downsample(x, self.scale)
