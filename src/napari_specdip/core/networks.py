"""Generators: the paper's decoder and the two comparison networks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from napari_specdip.core.layers import (
    LipschitzConv2d,
    MeanOnlyBatchNorm,
    make_upsampler,
    refresh_lipschitz_norms,
    upsample_bilinear_x2,
)

INPUT_CHANNELS = 32


class DecoderBlock(nn.Sequential):
    """2 x [ReflectionPad(1) -> LC-Conv3x3 -> mean-only BN -> LeakyReLU(0.01)].

    ``cin`` and ``cout`` are per member; ``members`` > 1 puts that many
    independent blocks side by side as grouped convolutions.
    """

    def __init__(self, cin: int, cout: int, lipschitz: float, members: int = 1) -> None:
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers += [
                nn.ReflectionPad2d(1),
                LipschitzConv2d(c * members, cout * members, 3, lipschitz=lipschitz,
                                groups=members),
                MeanOnlyBatchNorm(cout * members),
                nn.LeakyReLU(0.01, inplace=True),  # on the norm's own output
            ]
        super().__init__(*layers)


class Decoder(nn.Module):
    """The paper's generator: a decoder with Lipschitz-controlled convolutions.

    Block(32 -> width), then ``depth`` x [x2 upsample -> Block(width -> width)],
    then a plain 1x1 conv to ``out_channels`` and a sigmoid (METHOD.md section 2).

    With ``members`` = K > 1 the network is K independent decoders run as one
    (grouped convolutions, each member its own weights, norms and input): the
    input has K * 32 channels and the output is a batch of K images,
    ``(K, out_channels, H, W)``. Build it from K seeded decoders with
    :func:`napari_specdip.core.ensemble.stack_decoders`.

    Examples
    --------
    >>> net = Decoder(3, width=16, depth=2)
    >>> net(net.make_input(64, 64, generator=torch.Generator().manual_seed(0))).shape
    torch.Size([1, 3, 64, 64])
    """

    def __init__(self, out_channels: int, *, width: int = 128, depth: int = 5,
                 lipschitz: float = 1.4, upsampler: str = "bilinear",
                 sigmas: Sequence[float] = (0.1, 0.1, 0.1, 0.5, 0.5), members: int = 1) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.depth = depth
        self.members = members
        self.out_channels = out_channels
        self.width = width
        self.lipschitz = float(lipschitz)
        self.upsampler = upsampler
        self.sigmas = tuple(float(s) for s in sigmas)
        k = members
        layers: list[nn.Module] = [DecoderBlock(INPUT_CHANNELS, width, lipschitz, k)]
        # fewer levels than sigmas keep the finest ones (the paper smooths most there)
        sigmas = list(sigmas)[-depth:] if 0 < depth <= len(sigmas) else list(sigmas)
        for level in range(depth):
            sigma = sigmas[level] if level < len(sigmas) else sigmas[-1]
            layers += [make_upsampler(upsampler, width * k, sigma),
                       DecoderBlock(width, width, lipschitz, k)]
        head = nn.Conv2d(width * k, out_channels * k, 1, groups=k)
        nn.init.kaiming_uniform_(head.weight, a=0.0, mode="fan_in")
        self.head = head
        self.body = nn.Sequential(*layers, head, nn.Sigmoid())
        self.lipschitz_convs = [m for m in self.body.modules() if isinstance(m, LipschitzConv2d)]

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this."""
        return int(2**self.depth)

    def start_at(self, mean: torch.Tensor) -> None:
        """Set the head's bias so the first output sits near ``mean``: per channel
        ``(C,)`` for every member, or ``(members, C)`` one row per member."""
        assert self.head.bias is not None
        rows = mean.reshape(-1, self.out_channels)
        if rows.shape[0] not in (1, self.members):
            raise ValueError(f"start_at needs 1 or {self.members} rows of means, "
                             f"got {rows.shape[0]}")
        with torch.no_grad():
            self.head.bias.copy_(torch.logit(rows.clamp(0.02, 0.98)).repeat(
                self.members // rows.shape[0], 1).reshape(-1))

    @property
    def settings(self) -> tuple[int, int, int, float, str, tuple[float, ...]]:
        """Everything that shapes one member: channels, width, depth, lambda, upsampling."""
        return (self.out_channels, self.width, self.depth, self.lipschitz, self.upsampler,
                self.sigmas)

    def make_input(self, height: int, width: int, *,
                   generator: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
        """Fixed input z: sin/cos of 2*pi*U(0,1), 32 channels at 1/2**depth size
        (one generator per member for an ensemble, their inputs side by side)."""
        if not isinstance(generator, torch.Generator):
            if len(generator) != self.members:
                raise ValueError(f"need {self.members} generators, got {len(generator)}")
            return torch.cat([self._input(height, width, g) for g in generator], dim=1)
        if self.members != 1:
            raise ValueError(f"an ensemble of {self.members} needs one generator per member")
        return self._input(height, width, generator)

    def _input(self, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        h, w = height // self.multiple, width // self.multiple
        u = torch.rand(1, INPUT_CHANNELS // 2, h, w, generator=generator)
        return torch.cat([torch.sin(2 * torch.pi * u), torch.cos(2 * torch.pi * u)], dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        refresh_lipschitz_norms(self.lipschitz_convs)
        out: torch.Tensor = self.body(z)
        if self.members > 1:  # channels of member k -> batch item k
            out = out.reshape(self.members, self.out_channels, *out.shape[-2:])
        return out


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.ReflectionPad2d(k // 2),
        nn.Conv2d(cin, cout, k, stride=stride),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
    ]


class SkipNet(nn.Module):
    """The original DIP encoder-decoder with skip connections (METHOD.md section 9).

    Five scales of [stride-2 conv3x3 -> BN -> LReLU -> conv3x3 -> BN -> LReLU],
    a 4-channel 1x1 skip per scale, bilinear upsampling, concat, BN, conv3x3,
    conv1x1; input U(0, 0.1) of 32 channels at full resolution, jittered each
    step by N(0, 1/30) (``input_jitter``).
    """

    input_jitter = 1.0 / 30.0

    def __init__(self, out_channels: int, *, width: int = 128, depth: int = 5,
                 skip_channels: int = 4) -> None:
        super().__init__()
        self.depth = depth
        self.down = nn.ModuleList()
        self.skip = nn.ModuleList()
        self.up = nn.ModuleList()
        cin = INPUT_CHANNELS
        for _ in range(depth):
            self.skip.append(nn.Sequential(*_conv_bn_act(cin, skip_channels, 1)))
            self.down.append(nn.Sequential(*_conv_bn_act(cin, width, 3, stride=2),
                                           *_conv_bn_act(width, width, 3)))
            cin = width
        for _ in range(depth):
            merged = width + skip_channels
            self.up.append(nn.Sequential(
                nn.BatchNorm2d(merged),
                *_conv_bn_act(merged, width, 3),
                *_conv_bn_act(width, width, 1),
            ))
        self.head = nn.Sequential(nn.Conv2d(width, out_channels, 1), nn.Sigmoid())

    @property
    def multiple(self) -> int:
        return int(2**self.depth)

    def make_input(self, height: int, width: int, *, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(1, INPUT_CHANNELS, height, width, generator=generator) * 0.1

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        skips = []
        x = z
        for down, skip in zip(self.down, self.skip, strict=True):
            skips.append(skip(x))
            x = down(x)
        for up, s in zip(self.up, reversed(skips), strict=True):
            if tuple(s.shape[-2:]) == (2 * x.shape[-2], 2 * x.shape[-1]):
                x = upsample_bilinear_x2(x)  # deterministic gradient on an accelerator
            else:
                x = nn.functional.interpolate(x, size=s.shape[-2:], mode="bilinear",
                                              align_corners=False)
            x = up(torch.cat([x, s], dim=1))
        out: torch.Tensor = self.head(x)
        return out


class PlainConvNet(nn.Module):
    """The decoder's blocks at full resolution, no resampling (the paper's ConvNet)."""

    def __init__(self, out_channels: int, *, width: int = 128, depth: int = 5,
                 lipschitz: float | None = None) -> None:
        super().__init__()
        lam = lipschitz if lipschitz is not None else 1e6
        blocks: list[nn.Module] = [DecoderBlock(INPUT_CHANNELS, width, lam)]
        blocks += [DecoderBlock(width, width, lam) for _ in range(depth)]
        self.body = nn.Sequential(*blocks, nn.Conv2d(width, out_channels, 1), nn.Sigmoid())
        self.lipschitz_convs = [m for m in self.body.modules() if isinstance(m, LipschitzConv2d)]
        self.depth = depth

    @property
    def multiple(self) -> int:
        return 1

    def make_input(self, height: int, width: int, *, generator: torch.Generator) -> torch.Tensor:
        u = torch.rand(1, INPUT_CHANNELS // 2, height, width, generator=generator)
        return torch.cat([torch.sin(2 * torch.pi * u), torch.cos(2 * torch.pi * u)], dim=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        refresh_lipschitz_norms(self.lipschitz_convs)
        out: torch.Tensor = self.body(z)
        return out


def build_network(kind: str, out_channels: int, *, width: int, depth: int, lipschitz: float,
                  upsampler: str, sigmas: Sequence[float], members: int = 1
                  ) -> Decoder | SkipNet | PlainConvNet:
    """Make the generator named by ``kind`` ("decoder", "skip", "convnet"); ``members``
    > 1: an ensemble's grouped decoder."""
    if kind == "decoder":
        return Decoder(out_channels, width=width, depth=depth, lipschitz=lipschitz,
                       upsampler=upsampler, sigmas=sigmas, members=members)
    if members != 1:
        raise ValueError(f"an ensemble needs network='decoder', got {kind!r}")
    if kind == "skip":
        return SkipNet(out_channels, width=width, depth=depth)
    if kind == "convnet":
        return PlainConvNet(out_channels, width=width, depth=depth, lipschitz=lipschitz)
    raise ValueError(f"unknown network {kind!r}; choose decoder, skip or convnet")


def count_parameters(net: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
