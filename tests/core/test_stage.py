"""The denoising stage's own functions (core/stage.py), apart from the fitting loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_specdip.core.imaging import Layout
from napari_specdip.core.noise import PoissonGaussian, estimate_white_noise_variance
from napari_specdip.core.params import RestoreParameters
from napari_specdip.core.stage import (CAMERA_SHARE_SPAN, camera_share, gaussian_stage,
                                       white_noise_variance)


def _layout(low: float, high: float) -> Layout:
    return Layout(shape=(32, 32), channel_axis=None, dtype=np.dtype(np.float32), low=low,
                  high=high)


def test_a_given_sigma_is_read_in_the_images_units() -> None:
    params = RestoreParameters.for_task("denoise").replace(noise_sigma=50.0)
    obs = np.zeros((32, 32, 1))
    # the image spans 100..1100: sigma 50 there is 0.05 of the [0, 1] scale
    assert white_noise_variance(params, obs, _layout(100.0, 1100.0)) == pytest.approx(0.05**2)


def test_the_estimate_needs_a_patch_and_is_the_white_noise_estimate() -> None:
    params = RestoreParameters.for_task("denoise")
    noisy = np.random.default_rng(0).normal(0.5, 0.1, (48, 48, 1))
    found = white_noise_variance(params, noisy, _layout(0.0, 1.0))
    assert found == estimate_white_noise_variance(noisy)
    assert found == pytest.approx(0.01, rel=0.15)
    assert white_noise_variance(params, noisy[:6, :40], _layout(0.0, 1.0)) is None


def test_the_camera_share_follows_the_models_variance_over_the_level() -> None:
    model = PoissonGaussian(a=0.01, b=0.0001, black=0.0)
    level = model.variance(0.1).item()  # the Gaussian stage's level: the variance at 0.1
    estimate = np.repeat(np.linspace(0.0, 1.0, 101)[None, :, None], 40, axis=0)
    share = camera_share(model, estimate, level)
    assert share.shape == estimate.shape
    assert np.all((share >= 0.0) & (share <= 1.0))
    assert np.all(np.diff(share[20, :, 0]) >= -1e-12)  # more signal, more camera stage
    # away from the ramp's ends (the smoothing blurs them over a few pixels)
    assert share[20, :5, 0].max() < 0.01  # variance at most the level: the Gaussian stage
    full = (1.0 + CAMERA_SHARE_SPAN) * level
    beyond = model.variance(estimate[20, :, 0]) > full
    assert share[20, beyond, 0][10:].min() > 0.99


def test_the_gaussian_stage_denoises_and_records_its_parts() -> None:
    rng = np.random.default_rng(1)
    clean = np.tile(np.linspace(0.2, 0.8, 48), (48, 1))[..., None]
    noisy = clean + rng.normal(0.0, 0.1, clean.shape)
    out, record = gaussian_stage(noisy, clean, 0.01, torch.device("cpu"))
    assert out.shape == noisy.shape and out.min() >= 0.0 and out.max() <= 1.0
    assert np.mean((out - clean) ** 2) < np.mean((noisy - clean) ** 2) / 5
    assert {"pilot", "filter", "low_rank"} <= set(record)
    assert "block matching" in record["pilot"]
