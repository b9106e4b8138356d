"""On a CUDA device one seed gives one result, bit for bit, for every task and network.

CI has no GPU, so these are skipped there; run them where one is:
``python -m pytest -n 0 tests/core/test_cuda_determinism.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from napari_specdip import restore

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SIDE = 48
CASES: dict[str, dict[str, Any]] = {
    "denoise, quick": {"task": "denoise", "preset": "quick"},
    "denoise, paper": {"task": "denoise", "preset": "paper"},
    "gaussian upsampler": {"task": "denoise", "upsampler": "gaussian"},
    "nearest upsampler": {"task": "denoise", "upsampler": "nearest"},
    "skip network": {"task": "denoise", "network": "skip"},
    "convnet": {"task": "denoise", "network": "convnet", "width": 8},
    "RGB": {"task": "denoise", "rgb": True},
    "ensemble": {"task": "denoise", "ensemble": 2},
    "poisson-gaussian": {"task": "denoise", "noise": "poisson-gaussian"},
    "inpaint": {"task": "inpaint", "mask": True},
    "deblock": {"task": "deblock"},
    "super-resolve": {"task": "super-resolve", "factor": 2},
    "enhance": {"task": "enhance"},
}


def _run(case: str) -> np.ndarray:
    options = dict(CASES[case])
    rng = np.random.default_rng(0)
    shape = (SIDE, SIDE, 3) if options.pop("rgb", False) else (SIDE, SIDE)
    yy, xx = np.mgrid[:SIDE, :SIDE] / SIDE
    clean = 0.5 + 0.4 * np.sin(6 * yy) * np.cos(5 * xx)
    if len(shape) == 3:
        clean = np.stack([clean, clean[::-1], clean[:, ::-1]], axis=-1)
    image = np.clip(clean + rng.normal(0, 0.08, shape), 0, 1)
    if options.pop("mask", False):
        options["mask"] = rng.random((SIDE, SIDE)) < 0.3
    result = restore(image, channel_axis=-1 if len(shape) == 3 else None,
                     max_iterations=options.pop("max_iterations", 25), stop="none", seed=7,
                     device="cuda", **options)
    return np.asarray(result.image)


@pytest.mark.parametrize("case", CASES)
def test_one_seed_one_result_on_cuda(case: str) -> None:
    np.testing.assert_array_equal(_run(case), _run(case))


@pytest.mark.parametrize("case", CASES)
def test_no_kernel_without_a_deterministic_version(case: str) -> None:
    # the engine only warns at an operation with no deterministic CUDA kernel (bilinear
    # upsampling's and replicate padding's own backward are such, hence layers.py's
    # versions); torch raises at them while this is on, and the run's own setting is
    # put back afterwards
    torch.use_deterministic_algorithms(True)
    try:
        _run(case)
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled()
