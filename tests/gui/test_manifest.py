"""The npe2 manifest, the sample data contributions and the plugin's import weight."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_manifest_is_valid() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-specdip")
    assert manifest.name == "napari-specdip"
    assert manifest.display_name == "SpecDIP"
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets or []] == ["Restore"]
    keys = {s.key for s in contributions.sample_data or []}
    assert keys == {"noisy_photo", "noisy_microscopy", "masked_image", "jpeg_blocked",
                    "low_resolution"}
    assert [w.command for w in contributions.writers or []] == ["napari-specdip.write_tiff"]
    assert [r.command for r in contributions.readers or []] == ["napari-specdip.read_tiff"]
    filters = contributions.menus["napari/layers/filter"]
    assert [item.command for item in filters] == ["napari-specdip.restore_widget"]
    # every command points at something importable
    for command in contributions.commands or []:
        module, _, name = command.python_name.partition(":")
        __import__(module)
        assert hasattr(sys.modules[module], name), command.python_name


def test_npe2_validate_cli() -> None:
    # the console script beside this interpreter: CI's venv is used without being activated
    script = Path(sys.executable).with_name("npe2")
    command = str(script) if script.exists() else shutil.which("npe2")
    assert command, "npe2's console script is not installed"
    done = subprocess.run([command, "validate", "napari-specdip"], capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_sample_data_contributions_load(make_napari_viewer_proxy: Any) -> None:
    viewer = make_napari_viewer_proxy()
    for key in ("noisy_photo", "noisy_microscopy", "masked_image", "jpeg_blocked",
                "low_resolution"):
        viewer.open_sample("napari-specdip", key)
    names = [layer.name for layer in viewer.layers]
    for name in ("noisy photo", "noisy microscopy", "masked image", "JPEG-blocked image",
                 "low-resolution image"):
        assert name in names
        assert f"{name} (clean)" in names
    mask = viewer.layers["masked image mask"]
    assert mask.__class__.__name__ == "Labels"
    assert mask.data.shape == viewer.layers["masked image"].data.shape
    assert set(np.unique(mask.data)) == {0, 1}
    assert viewer.layers["noisy photo"].rgb
    assert viewer.layers["noisy microscopy"].data.dtype == np.uint16
    low = viewer.layers["low-resolution image"]
    assert low.metadata["specdip_sample"]["factor"] == 4
    # the image on top and selected: the layer controls act on it, not on a hidden layer
    assert viewer.layers[-1].name == low.name
    assert [layer.name for layer in viewer.layers.selection] == [low.name]


def test_sample_hints_set_up_the_widget(make_napari_viewer_proxy: Any) -> None:
    viewer = make_napari_viewer_proxy()
    # the widget first, then the sample: its layers arrive one by one
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.open_sample("napari-specdip", "masked_image")
    assert widget.image.value.name == "masked image"
    assert widget.task.value == "inpaint"
    assert widget.mask.value.name == "masked image mask"
    assert widget.reference.value.name == "masked image (clean)"
    # and the other way round
    viewer.open_sample("napari-specdip", "low_resolution")
    widget.image.value = viewer.layers["low-resolution image"]
    assert widget.task.value == "super-resolve" and widget.factor.value == 4
    assert widget.reference.value.name == "low-resolution image (clean)"


def test_a_samples_camera_noise_model_does_not_carry_over_to_the_next_sample(
        make_napari_viewer_proxy: Any) -> None:
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.open_sample("napari-specdip", "noisy_microscopy")
    assert widget.noise.value == "poisson-gaussian"
    # the masked image's hint says nothing of noise: the microscope's camera is not its
    viewer.open_sample("napari-specdip", "masked_image")
    assert widget.image.value.name == "masked image" and widget.task.value == "inpaint"
    assert widget.noise.value == "gaussian"
    assert not widget.keep_known.native.isHidden() and widget.parameters().keeps_known
    # a noise model the user chose stays with the next image
    widget.noise.value = "poisson-gaussian"
    viewer.add_image(np.zeros((32, 32), np.float32) + 0.5, name="own")
    widget.image.value = viewer.layers["own"]
    assert widget.noise.value == "poisson-gaussian"


def test_widget_is_in_the_layers_filter_menu(make_napari_viewer_proxy: Any) -> None:
    from napari._app_model import get_app_model

    make_napari_viewer_proxy()
    items = get_app_model().menus.get_menu("napari/layers/filter")
    commands = {item.command.id: item.command.title for item in items if hasattr(item, "command")}
    assert commands.get("napari-specdip.restore_widget") == "Restore (SpecDIP)"


def test_widget_module_imports_no_torch_or_matplotlib() -> None:
    code = ("import sys, napari_specdip._napari._widget, napari_specdip._napari._charts, "
            "napari_specdip._napari._sample_data, napari_specdip._napari._writer;"
            "print(sorted(m for m in ('torch', 'matplotlib', 'pyqtgraph', 'tifffile') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
