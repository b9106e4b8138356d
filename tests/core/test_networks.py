from __future__ import annotations

import pytest
import torch

from napari_specdip.core.layers import LipschitzConv2d, MeanOnlyBatchNorm
from napari_specdip.core.networks import (
    Decoder,
    PlainConvNet,
    SkipNet,
    build_network,
    count_parameters,
)


def _input(net: Decoder | SkipNet | PlainConvNet, h: int, w: int) -> torch.Tensor:
    return net.make_input(h, w, generator=torch.Generator().manual_seed(0))


def test_decoder_matches_the_paper() -> None:
    net = Decoder(3)
    convs = [m for m in net.modules() if isinstance(m, LipschitzConv2d)]
    assert len(convs) == 12
    assert all(c.lipschitz == 1.4 for c in convs)
    assert sum(isinstance(m, MeanOnlyBatchNorm) for m in net.modules()) == 12
    assert 1.6e6 < count_parameters(net) < 1.7e6
    z = _input(net, 64, 96)
    assert z.shape == (1, 32, 2, 3)
    assert torch.allclose(z[:, :16] ** 2 + z[:, 16:] ** 2, torch.ones(1, 16, 2, 3), atol=1e-6)


@pytest.mark.parametrize("upsampler", ["bilinear", "nearest", "gaussian"])
def test_decoder_shapes_and_range(upsampler: str) -> None:
    net = Decoder(2, width=8, depth=3, upsampler=upsampler)
    out = net(_input(net, 32, 48))
    assert out.shape == (1, 2, 32, 48)
    assert float(out.detach().min()) >= 0.0 and float(out.detach().max()) <= 1.0


def test_skip_and_convnet_shapes() -> None:
    skip = SkipNet(3, width=8, depth=5)
    assert skip(_input(skip, 64, 64)).shape == (1, 3, 64, 64)
    assert 2.0e6 < count_parameters(SkipNet(3)) < 2.4e6
    plain = PlainConvNet(1, width=8, depth=2, lipschitz=1.4)
    assert plain(_input(plain, 20, 24)).shape == (1, 1, 20, 24)
    assert plain.multiple == 1


def test_build_network_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown network"):
        build_network("unet", 3, width=8, depth=2, lipschitz=1.0, upsampler="bilinear", sigmas=(0.1,))


def test_every_lc_conv_stays_within_lambda_after_training() -> None:
    torch.manual_seed(0)
    net = Decoder(3, width=16, depth=3, lipschitz=1.4)
    z = _input(net, 32, 32)
    target = torch.rand(1, 3, 32, 32)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(15):
        loss = ((net(z) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    convs = [m for m in net.modules() if isinstance(m, LipschitzConv2d)]
    with torch.no_grad():
        norms = [float(torch.linalg.svdvals(c.effective_weight().reshape(c.out_channels, -1))[0])
                 for c in convs]
    assert len(norms) == 8
    assert max(norms) <= 1.4 + 1e-5
    assert max(norms) > 1.0  # the bound is reached, not just trivially satisfied
