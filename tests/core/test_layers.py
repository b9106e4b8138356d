from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_specdip.core.layers import (
    GaussianUpsample,
    LipschitzConv2d,
    MeanOnlyBatchNorm,
    Upsample2x,
    _bilinear_x2_by_shifts,
    _pad_replicate_by_copies,
    downsample,
    gaussian_kernel,
    lanczos2_kernel,
    spectral_norm_exact,
)


def test_spectral_norm_matches_svd() -> None:
    w = torch.randn(128, 128, 3, 3, dtype=torch.float64)
    expected = torch.linalg.svdvals(w.reshape(128, -1))[0]
    assert torch.allclose(spectral_norm_exact(w), expected, rtol=1e-10)
    wide = torch.randn(4, 32, 3, 3)
    assert torch.allclose(spectral_norm_exact(wide), torch.linalg.svdvals(wide.reshape(4, -1))[0], rtol=1e-5)
    tall = torch.randn(64, 2, 1, 1)
    assert torch.allclose(spectral_norm_exact(tall), torch.linalg.svdvals(tall.reshape(64, -1))[0], rtol=1e-5)


@pytest.mark.parametrize("lam", [1.0, 1.4, 1.8])
def test_lc_conv_bound_holds_after_training(lam: float) -> None:
    torch.manual_seed(0)
    conv = LipschitzConv2d(8, 16, 3, lipschitz=lam, padding=1)
    opt = torch.optim.Adam(conv.parameters(), lr=0.05)
    x = torch.randn(2, 8, 16, 16)
    target = torch.randn(2, 16, 16, 16) * 10  # pulls the weights to grow
    for _ in range(30):
        loss = ((conv(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(spectral_norm_exact(conv.weight)) > lam  # stored weight is unconstrained
        assert float(spectral_norm_exact(conv.effective_weight())) <= lam + 1e-5


def test_lc_conv_leaves_small_kernels_alone_and_no_gradient_through_norm() -> None:
    conv = LipschitzConv2d(2, 2, 3, lipschitz=100.0)
    assert torch.equal(conv.effective_weight(), conv.weight)
    conv = LipschitzConv2d(2, 2, 3, lipschitz=0.01)
    w = conv.effective_weight()
    s = spectral_norm_exact(conv.weight).detach()
    # d(W / c)/dW with c constant is 1/c: the norm is treated as a constant
    (w.sum()).backward()
    assert conv.weight.grad is not None
    assert torch.allclose(conv.weight.grad, torch.full_like(conv.weight, 0.01 / float(s)), rtol=1e-5)


def test_lc_conv_rejects_bad_lambda() -> None:
    with pytest.raises(ValueError, match="lipschitz"):
        LipschitzConv2d(1, 1, 3, lipschitz=0.0)


def test_mean_only_bn() -> None:
    bn = MeanOnlyBatchNorm(3)
    x = torch.randn(2, 3, 8, 8) * 5 + 2
    y = bn(x)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(y - y.mean(dim=(2, 3), keepdim=True), x - x.mean(dim=(2, 3), keepdim=True))
    with torch.no_grad():
        bn.beta.copy_(torch.tensor([1.0, -1.0, 0.5]))
    assert torch.allclose(bn(x).mean(dim=(2, 3)), bn.beta.expand(2, 3), atol=1e-5)
    assert [n for n, _ in bn.named_parameters()] == ["beta"]
    assert len(list(bn.buffers())) == 0  # no running statistics


def test_mean_only_bn_gradient_is_autograd_s() -> None:
    """The written-out gradient equals autograd's on the plain expression (float64)."""
    torch.manual_seed(0)
    bn = MeanOnlyBatchNorm(4).double()
    with torch.no_grad():
        bn.beta.normal_()
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bn, (x,))
    weights = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    (bn(x) * weights).sum().backward()
    grad_x, grad_beta = x.grad.clone(), bn.beta.grad.clone()
    x.grad, bn.beta.grad = None, None
    plain = x - x.mean(dim=(2, 3), keepdim=True) + bn.beta.view(1, -1, 1, 1)
    (plain * weights).sum().backward()
    assert torch.allclose(grad_x, x.grad) and torch.allclose(grad_beta, bn.beta.grad)


def test_gaussian_kernel_sums_to_one_and_small_sigma_is_zero_insertion() -> None:
    for sigma in (0.1, 0.5, 1.0):
        assert float(gaussian_kernel(sigma).sum()) == pytest.approx(1.0, abs=1e-6)
    k = gaussian_kernel(0.1)
    assert float(k[2, 2]) == pytest.approx(1.0, abs=1e-4)  # exp(-12.5) leaks to neighbours
    up = GaussianUpsample(2, 0.1)
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    y = up(x)
    assert y.shape == (1, 2, 8, 8)
    assert torch.allclose(y[:, :, ::2, ::2], x, rtol=1e-4, atol=1e-4)
    assert float(y[:, :, 1::2, :].abs().max()) < 1e-4 * float(x.max())
    assert not any(p.requires_grad for p in up.parameters())


def test_wider_sigma_smooths_more() -> None:
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    narrow, wide = GaussianUpsample(1, 0.5)(x), GaussianUpsample(1, 1.0)(x)
    assert float(narrow.max()) > float(wide.max())


@pytest.mark.parametrize("up", [GaussianUpsample(3, 0.5), Upsample2x("bilinear"), Upsample2x("nearest")])
def test_upsampler_shapes(up: torch.nn.Module) -> None:
    assert up(torch.rand(2, 3, 5, 7)).shape == (2, 3, 10, 14)


def _value_and_gradient(f: object, x: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    y = f(x)  # type: ignore[operator]
    weights = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(seed))
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    return y.detach(), grad


@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 1, 1, 4), (1, 2, 8, 8), (1, 1, 1, 1)])
def test_accelerator_bilinear_is_torchs_in_value_and_gradient(shape: tuple[int, ...]) -> None:
    # the accelerators' deterministic path must be the CPU's interpolate, forward and back
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = _value_and_gradient(_bilinear_x2_by_shifts, x)
    torchs = _value_and_gradient(
        lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False), x)
    assert ours[0].shape == (shape[0], shape[1], 2 * shape[2], 2 * shape[3])
    for a, b in zip(ours, torchs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("shape", "pad"), [((1, 3, 5, 7), 1), ((2, 1, 1, 4), 3), ((1, 2, 4, 4), 6)])
def test_accelerator_replicate_pad_is_torchs_in_value_and_gradient(shape: tuple[int, ...],
                                                                   pad: int) -> None:
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = _value_and_gradient(lambda t: _pad_replicate_by_copies(t, pad), x)
    torchs = _value_and_gradient(lambda t: F.pad(t, (pad,) * 4, mode="replicate"), x)
    for a, b in zip(ours, torchs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsample_shape_and_constant(factor: int) -> None:
    x = torch.full((1, 3, 64, 64), 0.3)
    y = downsample(x, factor)
    assert y.shape == (1, 3, 64 // factor, 64 // factor)
    assert torch.allclose(y, torch.full_like(y, 0.3), atol=1e-5)
    assert float(lanczos2_kernel(factor).sum()) == pytest.approx(1.0, abs=1e-6)


def test_downsample_is_antialiased() -> None:
    # a checkerboard at the Nyquist frequency must vanish, not alias to a pattern
    checker = torch.from_numpy(np.indices((64, 64)).sum(0) % 2).float()[None, None]
    y = downsample(checker, 2)
    assert float(y.std()) < 0.02
