"""Rotated, sheared and affine-transformed layers: outputs and masks land on the input's pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SIZE = 32


def _noisy(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((SIZE, SIZE)).astype(np.float32)


@pytest.mark.parametrize("transform", [{"rotate": 30}, {"shear": [0.3]},
                                       {"affine": [[0.8, 0.6, 3.0], [-0.6, 0.8, 5.0],
                                                   [0.0, 0.0, 1.0]]}])
def test_result_lies_over_a_transformed_input(viewer: Any, open_widget: Any, wait_for_run: Any,
                                              transform: dict[str, Any]) -> None:
    image = viewer.add_image(_noisy(), name="in", scale=(0.5, 2.0), translate=(4, -3),
                             **transform)
    widget = open_widget(task="denoise", iterations=6, stop="none")
    widget.image.value = image
    assert widget.start() is not None
    wait_for_run(widget)
    out = widget.last_output
    for point in [(0, 0), (10, 20), (31, 5)]:
        np.testing.assert_allclose(out.data_to_world(point), image.data_to_world(point),
                                   atol=1e-6)


def test_super_resolved_pixels_centre_on_a_rotated_input(viewer: Any, open_widget: Any,
                                                         wait_for_run: Any) -> None:
    image = viewer.add_image(_noisy()[:16, :16], name="small", rotate=40, scale=(2.0, 3.0))
    widget = open_widget(task="super-resolve", iterations=4, stop="none")
    widget.factor.value = 2
    widget.image.value = image
    assert widget.start() is not None
    wait_for_run(widget)
    out = widget.last_output
    assert out.data.shape == (32, 32)
    # the four output pixels of input pixel (5, 7) surround its centre
    corners = [out.data_to_world(p) for p in [(10, 14), (10, 15), (11, 14), (11, 15)]]
    np.testing.assert_allclose(np.mean(corners, axis=0), image.data_to_world((5, 7)),
                               atol=1e-6)


def test_region_preview_lies_over_a_rotated_input(viewer: Any, open_widget: Any,
                                                  wait_for_run: Any) -> None:
    image = viewer.add_image(_noisy(), name="in", rotate=45)
    corners = [image.data_to_world(p) for p in [(8, 10), (8, 22), (20, 22), (20, 10)]]
    roi = viewer.add_shapes([np.array(corners)], shape_type="polygon", name="roi")
    widget = open_widget(task="denoise", iterations=4, stop="none")
    widget.image.value = image
    widget.region.reset_choices()
    widget.region.value = roi
    assert widget.start_region_preview() is not None, widget.last_error
    wait_for_run(widget)
    region = widget._region_layer
    rows, cols = region.metadata["specdip"]["region"].values()
    np.testing.assert_allclose(region.data_to_world((0, 0)),
                               image.data_to_world((rows[0], cols[0])), atol=1e-6)


def test_shapes_mask_is_rasterised_through_the_rotation(viewer: Any, open_widget: Any) -> None:
    image = viewer.add_image(_noisy(), name="in", rotate=90)
    corners = [image.data_to_world(p) for p in [(5, 20), (5, 28), (12, 28), (12, 20)]]
    holes = viewer.add_shapes([np.array(corners)], shape_type="polygon", name="holes")
    widget = open_widget(task="inpaint", iterations=4)
    widget.image.value = image
    widget.mask.value = holes
    missing = ~widget.plan().jobs[0].known
    assert missing[6:12, 21:28].all()
    assert not missing[:4].any() and not missing[:, :18].any()


def test_labels_mask_with_another_rotation_is_refused(viewer: Any, open_widget: Any) -> None:
    image = viewer.add_image(_noisy(), name="in")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[5:15, 20:28] = 1
    labels = viewer.add_labels(mask, name="m", rotate=90)
    widget = open_widget(task="inpaint", iterations=4)
    widget.image.value = image
    widget.mask.value = labels
    with pytest.raises(ValueError, match="rotation, shear or affine"):
        widget.plan()


def test_a_saved_rotated_result_opens_where_it_was(viewer: Any, open_widget: Any,
                                                   wait_for_run: Any, tmp_path: Any) -> None:
    image = viewer.add_image(_noisy(), name="in", rotate=30, shear=[0.2], scale=(0.5, 0.5))
    widget = open_widget(task="denoise", iterations=4, stop="none")
    widget.image.value = image
    widget.start()
    wait_for_run(widget)
    out = widget.last_output
    target = tmp_path / "rotated.tif"
    assert widget.save_result(target)
    opened = viewer.open(str(target), plugin="napari-specdip")[0]
    for point in [(0, 0), (31, 17)]:
        np.testing.assert_allclose(opened.data_to_world(point), out.data_to_world(point),
                                   atol=1e-6)
