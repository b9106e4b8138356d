"""The ``remove_layer`` fixture survives the case that crashes napari 0.9.2 under Xvfb."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_removing_a_lower_layer_that_drops_a_dimension(make_napari_viewer_proxy: Any,
                                                       remove_layer: Any, qtbot: Any) -> None:
    # a shown viewer, a 3D stack under a 2D image, viewing slice 2 with the stack selected:
    # `viewer.layers.remove(stack)` segfaults in the next draw (3 times out of 3)
    viewer = make_napari_viewer_proxy(show=True)
    rng = np.random.default_rng(0)
    stack = viewer.add_image(rng.random((5, 64, 64)), name="stack")
    viewer.add_image(rng.random((64, 64)), name="plane")
    viewer.dims.set_point(0, 2)
    qtbot.wait(100)
    viewer.layers.selection.active = stack
    qtbot.wait(50)
    remove_layer(viewer, stack)
    qtbot.wait(200)  # the crash would come with this draw
    assert [layer.name for layer in viewer.layers] == ["plane"]
    assert viewer.dims.ndim == 2
