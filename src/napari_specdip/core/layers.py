"""Network parts of the method: LC-conv, mean-only BN, Gaussian upsampling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def spectral_norm_exact(weight: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Largest singular value of ``weight`` reshaped to ``(C_out, C_in*k*k)``.

    Exact, via the largest eigenvalue of the small Gram matrix ``W W^T``: the
    same number as a full SVD at a tenth of the cost (METHOD.md section 3).
    Computed in float64 when the Gram matrix is badly scaled would not matter
    here: eigvalsh of a symmetric PSD matrix is accurate to ~1e-7 relative.
    With ``groups`` > 1 (a grouped convolution: an ensemble's members side by
    side) it returns one norm per group, shape ``(groups,)``, from one batched
    eigenvalue call.
    """
    if groups > 1:
        w = weight.reshape(groups, weight.shape[0] // groups, -1)
        gram = w @ w.transpose(1, 2) if w.shape[1] <= w.shape[2] else w.transpose(1, 2) @ w
    else:
        w = weight.reshape(weight.shape[0], -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    on_host = gram.device.type == "mps"  # eigvalsh is not implemented on MPS
    largest: torch.Tensor = torch.linalg.eigvalsh(gram.cpu() if on_host else gram)[..., -1]
    return largest.clamp_min(0).sqrt().to(gram.device)


def spectral_norms(weights: Sequence[torch.Tensor], *, squarings: int = 12) -> torch.Tensor:
    """:func:`spectral_norm_exact` of several kernels at once, by repeated
    squaring of their Gram matrices, batched over kernels.

    ``A = G / tr(G)`` squared ``squarings`` times (renormalised by the trace)
    is ``v v^T`` for the top eigenvector ``v`` of ``G = W W^T`` up to a factor
    ``(lambda_2 / lambda_1) ** (2 ** squarings)``; the Rayleigh quotient of its
    strongest column is then ``lambda_1`` to float32 rounding (2.5e-7 relative
    against a float64 eigendecomposition on trained decoders). Two nearly equal
    top eigenvalues leave a mix of their vectors, whose quotient lies between
    them, so the error never exceeds their tiny gap. Only matrix products: no
    eigenvalue routine, hence no host synchronisation on a GPU (where each
    ``eigvalsh`` call cost milliseconds and a sync), and no more work than
    ``eigvalsh`` on a CPU.

    Examples
    --------
    >>> ws = [torch.randn(8, 4, 3, 3), torch.randn(8, 8, 3, 3), torch.randn(64, 2, 1, 1)]
    >>> fast = spectral_norms(ws)
    >>> bool(torch.allclose(fast, torch.stack([spectral_norm_exact(w) for w in ws]), rtol=1e-5))
    True
    """
    found: list[torch.Tensor | None] = [None] * len(weights)
    groups: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for i, weight in enumerate(weights):
        w = weight.reshape(weight.shape[0], -1)
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        groups.setdefault(gram.shape[0], []).append((i, gram))
    for group in groups.values():
        g = torch.stack([gram for _, gram in group])
        a = g / _trace(g).clamp_min(1e-30)[:, None, None]
        for _ in range(squarings):
            a = torch.bmm(a, a)
            a = a / _trace(a).clamp_min(1e-30)[:, None, None]
        strongest = a.diagonal(dim1=1, dim2=2).argmax(-1)
        v = torch.gather(a, 2, strongest[:, None, None].expand(-1, a.shape[1], 1))
        quotient = (v.transpose(1, 2) @ g @ v)[:, 0, 0] / (v.transpose(1, 2) @ v)[:, 0, 0]
        for j, (i, _) in enumerate(group):
            found[i] = quotient[j].clamp_min(0).sqrt()
    return torch.stack([f for f in found if f is not None])


def _trace(a: torch.Tensor) -> torch.Tensor:
    return a.diagonal(dim1=1, dim2=2).sum(-1)


def refresh_lipschitz_norms(convs: Sequence[LipschitzConv2d]) -> None:
    """Compute the norms of ``convs`` in one batch for their next forward (one norm
    per group of a grouped conv: each ensemble member is bounded on its own)."""
    if not convs:
        return
    kernels: list[torch.Tensor] = []
    for conv in convs:
        w = conv.weight
        kernels += list(w.reshape(conv.groups, w.shape[0] // conv.groups, *w.shape[1:]).unbind(0))
    with torch.no_grad():
        norms = spectral_norms(kernels)
    start = 0
    for conv in convs:
        g = conv.groups
        conv.pending_norm = norms[start] if g == 1 else norms[start:start + g]
        start += g


class LipschitzConv2d(nn.Conv2d):
    """Conv2d whose reshaped kernel has spectral norm at most ``lipschitz``.

    The stored weight ``W_bar`` is rescaled at every forward,
    ``W = W_bar / max(1, s / lambda)``, with ``s`` the exact largest singular
    value of ``W_bar`` reshaped to ``(C_out, C_in*k*k)``; no gradient flows
    through ``s`` (the paper's definition).

    Examples
    --------
    >>> conv = LipschitzConv2d(4, 8, 3, lipschitz=1.0, padding=1)
    >>> float(spectral_norm_exact(conv.effective_weight().detach())) <= 1.0 + 1e-5
    True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 lipschitz: float, stride: int = 1, padding: int = 0, bias: bool = True,
                 groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, bias=bias, groups=groups)
        if lipschitz <= 0:
            raise ValueError(f"lipschitz must be positive, got {lipschitz}")
        self.lipschitz = float(lipschitz)
        # set by refresh_lipschitz_norms for the next forward only, so it is never stale
        self.pending_norm: torch.Tensor | None = None
        nn.init.kaiming_uniform_(self.weight, a=0.0, mode="fan_in")

    def effective_weight(self) -> torch.Tensor:
        norm, self.pending_norm = self.pending_norm, None
        with torch.no_grad():
            if norm is None:
                norm = spectral_norm_exact(self.weight, self.groups)
            scale = torch.clamp(norm / self.lipschitz, min=1.0)
            if self.groups > 1:  # each group (ensemble member) bounded on its own
                scale = scale.repeat_interleave(self.out_channels // self.groups).view(-1, 1, 1, 1)
        weight: torch.Tensor = self.weight / scale
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._conv_forward(x, self.effective_weight(), self.bias)
        return out

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.groups > 1 else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, lipschitz={self.lipschitz}{groups}")


class _MeanOnlyNorm(torch.autograd.Function):
    """``x - mean_{H,W}(x) + beta`` with its gradient written out.

    Autograd's version of the same expression makes three extra passes over the
    activation in the backward (the negated gradient of the subtraction, the
    expanded gradient of the mean, their sum); here the forward is one pass after
    the mean and the backward ``g - mean_{H,W}(g)`` one pass after its mean. With
    the in-place LeakyReLU after it, a quick step takes 0.89-0.90 of the time it
    took before (benchmarks/norm_speed.py).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return x - (x.mean(dim=(2, 3), keepdim=True) - beta.view(1, -1, 1, 1))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return grad - grad.mean(dim=(2, 3), keepdim=True), grad.sum(dim=(0, 2, 3))


class MeanOnlyBatchNorm(nn.Module):
    """``y = x - mean_{H,W}(x) + beta`` per sample and channel (Lipschitz <= 1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _MeanOnlyNorm.apply(x, self.beta)  # type: ignore[no-untyped-call]
        return out


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """5x5 Gaussian on offsets {-1, -0.5, 0, 0.5, 1} input pixels, summing to 1."""
    d = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    k = torch.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2.0 * sigma**2))
    return (k / k.sum()).float()


class GaussianUpsample(nn.Module):
    """Frozen depthwise transposed conv: x2 upsampling with a Gaussian kernel.

    With a tiny sigma (0.1) the kernel is a single 1 and the layer is zero
    insertion; larger sigma smooths more (METHOD.md section 5).
    """

    kernel: torch.Tensor

    def __init__(self, channels: int, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.channels = channels
        k = gaussian_kernel(self.sigma)
        self.register_buffer("kernel", k.expand(channels, 1, 5, 5).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.kernel, stride=2, padding=2, output_padding=1,
                                  groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, sigma={self.sigma}"


class Upsample2x(nn.Module):
    """Bilinear or nearest x2 upsampling."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"unknown upsampling mode {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            return upsample_bilinear_x2(x)
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def upsample_bilinear_x2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling of ``(N, C, H, W)``, half-pixel centres, edges clamped:
    ``F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)``.

    On an accelerator it is built from shifted copies and weighted sums, whose
    gradient is deterministic: CUDA's own backward adds with atomics and has no
    deterministic version (torch refuses it in deterministic mode, which a CUDA run
    turns on). The CPU keeps torch's kernel (deterministic there).

    Examples
    --------
    >>> upsample_bilinear_x2(torch.arange(4.0).view(1, 1, 2, 2))[0, 0, 0]
    tensor([0.0000, 0.2500, 0.7500, 1.0000])
    """
    if x.device.type == "cpu":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return _bilinear_x2_by_shifts(x)


def _bilinear_x2_by_shifts(x: torch.Tensor) -> torch.Tensor:
    for dim in (2, 3):  # separable: rows, then columns
        n = x.shape[dim]
        before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
        after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        # output 2i sits a quarter pixel before input i, output 2i+1 a quarter after
        x = torch.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after],
                        dim=dim + 1).flatten(dim, dim + 1)
    return x


def pad_replicate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """``F.pad(x, (pad,) * 4, mode="replicate")`` of ``(N, C, H, W)``; on an
    accelerator from expanded edge copies, whose gradient is deterministic (CUDA's
    replicate-pad backward is not).

    Examples
    --------
    >>> pad_replicate(torch.arange(4.0).view(1, 1, 2, 2), 1)[0, 0]
    tensor([[0., 0., 1., 1.],
            [0., 0., 1., 1.],
            [2., 2., 3., 3.],
            [2., 2., 3., 3.]])
    """
    if x.device.type == "cpu":
        return F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return _pad_replicate_by_copies(x, pad)


def _pad_replicate_by_copies(x: torch.Tensor, pad: int) -> torch.Tensor:
    for dim in (2, 3):
        shape = list(x.shape)
        shape[dim] = pad
        first = x.narrow(dim, 0, 1).expand(shape)
        last = x.narrow(dim, x.shape[dim] - 1, 1).expand(shape)
        x = torch.cat([first, x, last], dim)
    return x


def make_upsampler(kind: str, channels: int, sigma: float = 0.1) -> nn.Module:
    """x2 upsampler: ``"gaussian"`` (with ``sigma``), ``"bilinear"`` or ``"nearest"``."""
    if kind == "gaussian":
        return GaussianUpsample(channels, sigma)
    return Upsample2x(kind)


def lanczos2_kernel(factor: int) -> torch.Tensor:
    """1D Lanczos-2 anti-aliasing kernel for downsampling by ``factor`` (4*factor taps)."""
    taps = 4 * factor
    offsets = (torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2.0) / factor
    k = torch.sinc(offsets) * torch.sinc(offsets / 2.0)
    k = torch.where(offsets.abs() < 2.0, k, torch.zeros_like(k))
    return (k / k.sum()).float()


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Anti-aliased downsampling of ``(N, C, H, W)`` by an integer ``factor``.

    Separable Lanczos-2 filter with the half-pixel phase of DIP's downsampler, so
    output pixel j is centred on input pixels ``[j*f, (j+1)*f)``; edges replicate.
    """
    if factor == 1:
        return x
    k = lanczos2_kernel(factor).to(device=x.device, dtype=x.dtype)
    c = x.shape[1]
    pad = (3 * factor) // 2
    x = pad_replicate(x, pad)
    kh = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    x = F.conv2d(x, kh, stride=(factor, 1), groups=c)
    return F.conv2d(x, kw, stride=(1, factor), groups=c)


def kaiming_init_(module: nn.Module) -> None:
    """Kaiming-uniform (a=0, fan_in) on every conv weight, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=0.0, mode="fan_in")
            if m.bias is not None:
                bound = 1.0 / math.sqrt(max(1, m.weight[0].numel()))
                nn.init.uniform_(m.bias, -bound, bound)
