"""Ensembles: a grouped decoder is K decoders, the result is their mean and spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_specdip import restore
from napari_specdip.core.engine import run_to_end
from napari_specdip.core.ensemble import ensemble_mean, stack_decoders
from napari_specdip.core.layers import LipschitzConv2d, spectral_norm_exact
from napari_specdip.core.networks import Decoder
from napari_specdip.core.operators import Identity
from napari_specdip.core.results import StepReport

FAST = {"width": 8, "depth": 3, "stop": "none"}


def members(k: int, seed: int = 5, **kwargs: object) -> tuple[list[Decoder], list[torch.Generator]]:
    nets = []
    for i in range(k):
        torch.manual_seed(seed + i)
        nets.append(Decoder(2, width=8, depth=2, **kwargs))  # type: ignore[arg-type]
    return nets, [torch.Generator().manual_seed(seed + i) for i in range(k)]


@pytest.mark.parametrize("upsampler", ["bilinear", "gaussian"])
def test_grouped_decoder_equals_separate_decoders(upsampler: str) -> None:
    nets, gens = members(3, upsampler=upsampler)
    grouped = stack_decoders(nets)
    z = grouped.make_input(32, 32, generator=gens)
    alone = [n.make_input(32, 32, generator=torch.Generator().manual_seed(5 + i))
             for i, n in enumerate(nets)]
    together = grouped(z)
    assert together.shape == (3, 2, 32, 32)
    for i, (net, zi) in enumerate(zip(nets, alone, strict=True)):
        torch.testing.assert_close(together[i : i + 1], net(zi), rtol=0, atol=1e-5)


def test_fitting_together_is_fitting_apart() -> None:
    nets, gens = members(2)
    grouped = stack_decoders(nets)
    z = grouped.make_input(32, 32, generator=gens)
    alone = [n.make_input(32, 32, generator=torch.Generator().manual_seed(5 + i))
             for i, n in enumerate(nets)]
    y = torch.rand(1, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    op = Identity()
    opt = torch.optim.Adam(grouped.parameters(), lr=1e-2)
    opts = [torch.optim.Adam(n.parameters(), lr=1e-2) for n in nets]
    for _ in range(5):
        opt.zero_grad()
        op.loss(grouped(z), y).backward()  # type: ignore[no-untyped-call]
        opt.step()
        for net, zi, o in zip(nets, alone, opts, strict=True):
            o.zero_grad()
            op.loss(net(zi), y).backward()  # type: ignore[no-untyped-call]
            o.step()
    with torch.no_grad():
        together = grouped(z)
        for i, (net, zi) in enumerate(zip(nets, alone, strict=True)):
            torch.testing.assert_close(together[i : i + 1], net(zi), rtol=0, atol=1e-4)


def test_grouped_lipschitz_bound_is_per_member() -> None:
    conv = LipschitzConv2d(4 * 3, 5 * 3, 3, lipschitz=0.7, groups=3)
    with torch.no_grad():
        conv.weight[5:10] *= 1e-3  # the middle member is already within the bound
    w = conv.effective_weight().detach()
    norms = spectral_norm_exact(w, groups=3)
    assert norms.shape == (3,)
    assert float(norms[0]) == pytest.approx(0.7, rel=1e-4)
    assert float(norms[2]) == pytest.approx(0.7, rel=1e-4)
    torch.testing.assert_close(w[5:10], conv.weight[5:10].detach())
    weight = conv.weight.detach()
    single = [float(spectral_norm_exact(weight[5 * i : 5 * i + 5])) for i in range(3)]
    torch.testing.assert_close(spectral_norm_exact(weight, groups=3),
                               torch.tensor(single), rtol=1e-5, atol=0)


def test_ensemble_mean_of_one_is_itself() -> None:
    x = torch.rand(1, 3, 8, 8)
    assert ensemble_mean(x) is x
    y = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(ensemble_mean(y), y.mean(0, keepdim=True))


def test_ensemble_returns_mean_and_uncertainty() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((3, 40, 36)) * 200 + 20).astype(np.uint8)
    result = restore(image, channel_axis=0, ensemble=3, max_iterations=6, **FAST)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert result.uncertainty is not None
    assert result.uncertainty.shape == image.shape and result.uncertainty.dtype == np.float32
    assert (result.uncertainty >= 0).all() and result.uncertainty.mean() > 0
    assert result.parameters["ensemble"] == 3
    assert result.metadata()["specdip"]["ensemble"] == 3


@pytest.mark.parametrize(("channel_axis", "tile"), [(-1, 0), (0, 0), (-1, 32)])
def test_an_rgba_uncertainty_has_the_results_shape(channel_axis: int, tile: int) -> None:
    # the alpha channel was left out: (32, 32, 3) for a (32, 32, 4) result, which an
    # image masked with its uncertainty cannot broadcast against; the CLI's file has it, 0
    rng = np.random.default_rng(6)
    image = np.moveaxis(rng.random((48, 48, 4)), -1, channel_axis)
    result = restore(image, channel_axis=channel_axis, ensemble=2, max_iterations=3, tile=tile,
                     tile_overlap=4, alpha=True, **FAST)
    assert result.parameters["alpha"] is True
    assert result.uncertainty is not None and result.uncertainty.shape == result.image.shape
    spread = np.moveaxis(result.uncertainty, channel_axis, -1)
    np.testing.assert_array_equal(spread[..., 3], 0.0)
    assert (spread[..., :3] > 0).all()


def test_one_member_is_the_plain_run() -> None:
    image = np.random.default_rng(1).random((32, 32))
    plain = restore(image, max_iterations=4, seed=2, **FAST)
    one = restore(image, max_iterations=4, seed=2, ensemble=1, **FAST)
    np.testing.assert_array_equal(plain.image, one.image)
    np.testing.assert_array_equal(plain.history["loss"], one.history["loss"])
    assert plain.uncertainty is None and one.uncertainty is None


def test_ensemble_is_reproducible_and_seeded() -> None:
    image = np.random.default_rng(1).random((32, 32))
    # no held-out pixels: their draw follows the run's seed, shared by all members
    a = restore(image, max_iterations=4, seed=2, ensemble=2, holdout=0.0, **FAST)
    b = restore(image, max_iterations=4, seed=2, ensemble=2, holdout=0.0, **FAST)
    c = restore(image, max_iterations=4, seed=3, ensemble=2, holdout=0.0, **FAST)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.uncertainty is not None and b.uncertainty is not None
    np.testing.assert_array_equal(a.uncertainty, b.uncertainty)
    assert not np.array_equal(a.image, c.image)
    # the first step's loss is the members' mean: members seeded 2 and 3
    first = [restore(image, max_iterations=1, seed=s, holdout=0.0, **FAST).history["loss"][0]
             for s in (2, 3)]
    assert a.history["loss"][0] == pytest.approx(np.mean(first), rel=1e-5)


def test_ensemble_is_its_members_single_runs() -> None:
    """Member k is the single run seeded seed + k, held-out pixels and start included:
    the ensemble's result is the mean of those runs, its hold-out signal their mean."""
    image = np.random.default_rng(4).random((32, 32))
    # the network's outputs: the Wiener stage after the fit is not linear in its pilot
    options = {**FAST, "holdout": 0.2, "output": "last", "max_iterations": 8, "refine": "none"}
    both = restore(image, seed=2, ensemble=2, **options)
    singles = [restore(image, seed=s, **options) for s in (2, 3)]
    np.testing.assert_allclose(both.image, np.mean([r.image for r in singles], axis=0),
                               atol=2e-5)
    np.testing.assert_allclose(both.history["holdout_loss"],
                               np.mean([r.history["holdout_loss"] for r in singles], axis=0),
                               rtol=1e-4)


def test_ensemble_with_noise_model_and_preview() -> None:
    from napari_specdip import iter_restore
    from napari_specdip.samples import noisy_microscopy

    sample = noisy_microscopy(64)
    gen = iter_restore(sample.image, noise="poisson-gaussian", ensemble=2, max_iterations=4,
                       preview_every=2, **FAST)
    previews: list[np.ndarray] = []

    def keep(report: StepReport) -> None:
        if report.preview is not None:
            previews.append(report.preview)

    result = run_to_end(gen, keep)
    assert len(previews) == 2 and previews[0].dtype == np.uint16
    assert result.uncertainty is not None and result.uncertainty.shape == (64, 64)


def test_ensemble_needs_the_decoder() -> None:
    with pytest.raises(ValueError, match="network='decoder'"):
        restore(np.random.default_rng(0).random((32, 32)), network="skip", ensemble=2,
                max_iterations=1)
    for k in (0, 1000):  # 1000 networks side by side: a gigabyte for a 32 px image
        with pytest.raises(ValueError, match="ensemble must be between 1 and 64"):
            restore(np.random.default_rng(0).random((32, 32)), ensemble=k, max_iterations=1)


def test_examples() -> None:
    import doctest

    from napari_specdip.core import ensemble

    result = doctest.testmod(ensemble, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_spread_is_pooled_over_neighbours_of_the_same_channel() -> None:
    from napari_specdip.core.ensemble import POOL_SIGMA, pool_spread

    variance = np.zeros((9, 9, 2))
    variance[4, 4, 0] = 1.0
    np.testing.assert_array_equal(pool_spread(variance, 0.0), np.sqrt(variance))
    pooled = pool_spread(variance, POOL_SIGMA)
    assert 0 < pooled[4, 4, 0] < 1 and pooled[4, 5, 0] > 0 and pooled[4, 7, 0] < 1e-2
    assert not pooled[..., 1].any()  # channels are not mixed
    np.testing.assert_allclose(pool_spread(np.full((6, 6, 1), 0.04)), 0.2)  # flat stays


def test_uncertainty_adds_each_members_movement_around_the_returned_output() -> None:
    from napari_specdip.core.ensemble import POOL_SIGMA, pool_spread, spread_to_user
    from napari_specdip.core.imaging import Layout

    rng = np.random.default_rng(0)
    layout = Layout(shape=(8, 8), channel_axis=None, dtype=np.dtype(np.float32), low=10.0,
                    high=30.0)
    members_hwc = [rng.random((8, 8, 1)) for _ in range(3)]
    steps = [[rng.random((8, 8, 1)) for _ in range(3)] for _ in range(4)]
    between = np.var(members_hwc, axis=0, ddof=1)
    within = np.var(np.asarray(steps), axis=0).mean(axis=0)
    plain = spread_to_user(members_hwc, layout)
    both = spread_to_user(members_hwc, layout, steps)
    np.testing.assert_allclose(plain, pool_spread(between, POOL_SIGMA)[..., 0] * 20, rtol=1e-6)
    np.testing.assert_allclose(both, pool_spread(between + within, POOL_SIGMA)[..., 0] * 20,
                               rtol=1e-6)
    assert (both >= plain).all() and both.mean() > plain.mean()
    # one snapshot has no movement to add
    np.testing.assert_array_equal(spread_to_user(members_hwc, layout, steps[:1]), plain)


def test_snapshots_are_the_steps_around_the_returned_iteration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import engine
    from napari_specdip.core.ensemble import SNAPSHOT_HALF_WINDOW, SNAPSHOT_STRIDE

    seen: list[int] = []
    spread = engine.spread_to_user

    def record(members_hwc: object, layout: object, snapshots: list[object]) -> object:
        seen.append(len(snapshots))
        return spread(members_hwc, layout, snapshots)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "spread_to_user", record)
    yy, xx = np.mgrid[:32, :32] / 31.0
    image = 0.5 + 0.4 * np.sin(6 * xx) * np.cos(5 * yy)
    image += np.random.default_rng(3).normal(0, 0.05, image.shape)
    from napari_specdip import RestoreParameters

    params = RestoreParameters.for_task("denoise", width=8, depth=3, max_iterations=300,
                                        signal_every=5, stop="auto", holdout_patience=30,
                                        learning_rate=0.01, ensemble=2, seed=0)
    result = restore(image, parameters=params)
    assert result.stop_reason == "holdout" and result.stop_iteration > SNAPSHOT_HALF_WINDOW
    assert seen == [2 * SNAPSHOT_HALF_WINDOW // SNAPSHOT_STRIDE + 1]
