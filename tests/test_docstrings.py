"""The numpydoc examples of the Qt-free modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "napari_specdip",
    "napari_specdip.core.params",
    "napari_specdip.core.devices",
    "napari_specdip.core.layers",
    "napari_specdip.core.networks",
    "napari_specdip.core.engine",
    "napari_specdip.core.low_rank",
    "napari_specdip.metrics",
    "napari_specdip.chart_panels",
    "napari_specdip.stopping",
]


@pytest.mark.parametrize("name", MODULES)
def test_examples(name: str) -> None:
    torch.set_num_threads(1)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no examples"
