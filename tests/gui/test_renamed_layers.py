"""Renaming a chosen layer keeps it chosen (napari resets the combos on a rename).

The test holds proxies of the layers (make_napari_viewer_proxy): compared with ==.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SIZE = 32


def test_a_renamed_input_or_mask_stays_chosen(viewer: Any, open_widget: Any,
                                              wait_for_run: Any) -> None:
    rng = np.random.default_rng(0)
    image = viewer.add_image(rng.random((SIZE, SIZE)).astype(np.float32), name="cells.tif")
    widget = open_widget(iterations=5000, stop="none", preview_every=0)
    assert widget.image.value == image
    image.name = "cells"  # idle
    assert widget.image.value == image and widget.image.native.currentText() == "cells"
    widget.start()
    assert widget.is_running
    image.name = "cells (mid-run)"
    assert widget.image.value == image
    widget.request_stop()
    wait_for_run(widget)
    assert widget.image.value == image
    assert widget.image.native.currentText() == "cells (mid-run)"

    widget.task.value = "inpaint"
    holes = np.zeros((SIZE, SIZE), np.uint8)
    holes[8:14, 8:14] = 1
    mask = viewer.add_labels(holes, name="holes")
    widget.mask.value = mask
    mask.name = "holes (renamed)"
    assert widget.mask.value == mask and widget.image.value == image
    widget.max_iterations.value = 2
    assert widget.start() is not None, widget.last_error
    wait_for_run(widget)
    assert widget.last_error == "" and widget.last_output is not None
