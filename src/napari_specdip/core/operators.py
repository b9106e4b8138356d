"""Degradations as operators y = A(x); the one fitting loop minimises ||A(G(z)) - y||^2."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from napari_specdip.core.layers import downsample


class Operator(nn.Module):
    """A forward model ``A``: the network's output ``x`` -> what was observed.

    ``scale`` is the factor between the canvas the generator works on and the
    observation (super-resolution: the factor; otherwise 1).
    """

    scale: int = 1

    def loss(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None, *,
             weights: Callable[[torch.Tensor], torch.Tensor | None] | None = None) -> torch.Tensor:
        """Mean squared error between ``A(x)`` and the observation ``y``.

        ``weight`` is a fixed (1, 1, h, w) map of the observation's size (0 on
        pixels left out of the fit), or one such map per member (K, 1, h, w): the
        loss is then each member's weighted mean.
        ``weights`` maps ``A(x)`` to per-pixel weights of the squared error (a
        signal-dependent noise variance), or to None. ``x`` may hold an
        ensemble's members along its batch axis: the loss is then the sum of the
        members' own losses, so each member's gradient is that of its own fit.
        """
        predicted = self(x)
        squared = (predicted - y) ** 2
        w = None if weights is None else weights(predicted)
        if w is not None:
            squared = squared * w
        if weight is None:
            if x.shape[0] == 1:
                return torch.mean(squared)
            per_member = squared.flatten(1).mean(dim=1)
        else:
            per_member = (squared * weight).flatten(1).sum(dim=1) / (
                weight.flatten(1).sum(dim=1) * squared.shape[1])
        total: torch.Tensor = per_member.sum()
        return total


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
