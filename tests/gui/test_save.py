"""Saving a result with its run record (npe2 writer, Save button) and reading it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_specdip import samples

pytestmark = pytest.mark.gui

SIZE = 64


def _run_stack(viewer: Any, open_widget: Any, wait_for_run: Any) -> tuple[Any, Any]:
    """A uint16 Z-stack with a physical pixel size, restored (2 slices, 3 iterations)."""
    base = samples.noisy_microscopy(SIZE).image
    layer = viewer.add_image(np.stack([base, np.flipud(base)]), name="cells",
                             scale=(2.0, 0.25, 0.25), translate=(1.0, 5.0, -3.0),
                             units=("um", "um", "um"), axis_labels=("z", "y", "x"))
    widget = open_widget(task="denoise", iterations=3, stop="none")
    widget.image.value = layer
    widget.start()
    wait_for_run(widget)
    assert widget.last_output is not None, widget.last_error
    return widget, layer


def test_save_button_writes_imagej_tiff_and_sidecar(viewer: Any, open_widget: Any,
                                                    wait_for_run: Any, tmp_path: Path) -> None:
    import tifffile

    widget, layer = _run_stack(viewer, open_widget, wait_for_run)
    out = widget.last_output
    target = tmp_path / "cells denoised.tif"
    written = widget.save_result(target)
    assert written == [str(target), str(target) + ".json"]
    assert "Saved" in widget.status.value and str(target) in widget.status.value

    with tifffile.TiffFile(target) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == "ZYX"
        data = tif.series[0].asarray()
        ij = tif.imagej_metadata
        x_res = tif.pages.first.tags["XResolution"].value
    np.testing.assert_array_equal(data, out.data)
    assert data.dtype == np.uint16
    assert x_res[0] / x_res[1] == pytest.approx(4.0)  # 4 pixels per micron
    assert ij["unit"] == "micron" and ij["spacing"] == pytest.approx(2.0)
    record = json.loads(ij["Info"])["specdip"]
    assert record["iterations"] == [3, 3] and record["parameters"]["task"] == "denoise"
    assert record["format"] == "napari-specdip sidecar"
    sidecar = json.loads(Path(written[1]).read_text())["specdip"]
    assert sidecar["seed"] == 0 and sidecar["source_layer"] == "cells"
    assert sidecar["napari_placement"]["scale"] == [2.0, 0.25, 0.25]
    assert sidecar["napari_placement"]["translate"] == [1.0, 5.0, -3.0]


def test_saved_tiff_opens_in_napari_with_the_same_scale(viewer: Any, open_widget: Any,
                                                       wait_for_run: Any, tmp_path: Path) -> None:
    widget, _ = _run_stack(viewer, open_widget, wait_for_run)
    out = widget.last_output
    target = tmp_path / "saved.tif"
    from napari.plugins.io import save_layers

    # napari's own save (File > Save Selected Layers), through the plugin's writer
    paths = save_layers(str(target), [out], plugin="napari-specdip")
    assert paths[0] == str(target) and Path(str(target) + ".json").exists()
    # the TIFF alone carries it all: without its sidecar it opens the same
    Path(str(target) + ".json").unlink()
    opened = viewer.open(str(target), plugin="napari-specdip")[0]
    np.testing.assert_allclose(opened.scale, out.scale)
    np.testing.assert_allclose(opened.translate, out.translate)
    assert [str(u) for u in opened.units] == ["micrometer"] * 3
    assert tuple(opened.axis_labels) == ("z", "y", "x")
    assert opened.metadata["specdip"]["iterations"] == [3, 3]
    np.testing.assert_array_equal(opened.data, out.data)


def test_a_channel_stack_opens_as_channel_layers_and_saves_as_a_time_series(
        viewer: Any, open_widget: Any, wait_for_run: Any, tmp_path: Path) -> None:
    import tifffile

    base = samples.noisy_microscopy(SIZE).image
    stack = np.stack([np.stack([base, np.fliplr(base)])] * 2)  # T, C, Y, X
    source = tmp_path / "movie.tif"
    tifffile.imwrite(source, stack, imagej=True, metadata={"axes": "TCYX"})
    opened = viewer.open(str(source), plugin="napari-specdip")
    assert [layer.name for layer in opened] == ["movie channel 0", "movie channel 1"]
    assert all(layer.data.shape == (2, SIZE, SIZE) for layer in opened)
    assert all(tuple(layer.axis_labels) == ("t", "y", "x") for layer in opened)
    np.testing.assert_array_equal(opened[1].data, stack[:, 1])
    # a channel restored on its own keeps its time axis through the writer
    widget = open_widget(task="denoise", iterations=2, stop="none")
    widget.image.value = opened[1]
    widget.start()
    wait_for_run(widget)
    assert widget.last_output is not None, widget.last_error
    target = tmp_path / "channel 1.tif"
    widget.save_result(target)
    with tifffile.TiffFile(target) as tif:
        assert tif.series[0].axes == "TYX"


def test_float_rgb_result_keeps_its_dtype_and_scale(viewer: Any, open_widget: Any,
                                                   wait_for_run: Any, tmp_path: Path) -> None:
    from napari_specdip._napari._writer import read_tiff_file

    sample = samples.noisy_photo(SIZE)
    layer = viewer.add_image(sample.image, name="photo", rgb=True, scale=(0.5, 0.5))
    widget = open_widget(task="denoise", iterations=2, stop="none")
    widget.image.value = layer
    widget.start()
    wait_for_run(widget)
    target = tmp_path / "photo.tiff"
    widget.save_result(target)
    data, attrs = read_tiff_file(target)
    assert data.dtype == np.float64 and data.shape == (SIZE, SIZE, 3)
    assert attrs["rgb"] is True
    np.testing.assert_allclose(attrs["scale"], (0.5, 0.5))
    assert attrs["metadata"]["specdip"]["stop_reason"] == "max_iterations"


def test_ome_name_saves_an_ome_tiff_with_the_layer_scale(viewer: Any, tmp_path: Path) -> None:
    import tifffile
    from napari.plugins.io import save_layers

    from napari_specdip._napari._writer import read_tiff_file

    data = np.arange(2 * 16 * 12, dtype=np.uint16).reshape(2, 16, 12)
    layer = viewer.add_image(data, name="cells", scale=(2.0, 0.25, 0.125),
                             units=("um", "um", "um"), axis_labels=("z", "y", "x"))
    target = tmp_path / "cells.ome.tif"
    paths = save_layers(str(target), [layer], plugin="napari-specdip")
    assert paths[0] == str(target) and Path(str(target) + ".json").exists()
    with tifffile.TiffFile(target) as tif:
        assert tif.is_ome and not tif.is_imagej and tif.series[0].axes == "ZYX"
        xml = tif.ome_metadata
        np.testing.assert_array_equal(tif.asarray(), data)
    for attribute in ('PhysicalSizeX="0.125"', 'PhysicalSizeY="0.25"', 'PhysicalSizeZ="2.0"',
                      'PhysicalSizeXUnit="µm"', 'PhysicalSizeZUnit="µm"'):
        assert attribute in xml
    # the OME-XML alone (no sidecar) gives back the scale and units
    Path(str(target) + ".json").unlink()
    _, attrs = read_tiff_file(target)
    assert attrs["scale"] == pytest.approx((2.0, 0.25, 0.125))
    assert attrs["units"] == ("um", "um", "um")


def test_writer_is_in_the_manifest() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-specdip")
    writers = manifest.contributions.writers or []
    assert [(w.command, list(w.layer_types), list(w.filename_extensions)) for w in writers] == [
        ("napari-specdip.write_tiff", ["image"], [".tif", ".tiff"])]


def test_save_without_a_result_says_so(viewer: Any, open_widget: Any) -> None:
    widget = open_widget()
    assert not widget.save_button.enabled
    assert widget.save_result("/nonexistent/x.tif") == []
    assert "no result to save" in widget.last_error
