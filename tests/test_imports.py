"""The architecture's import rules: a Qt-free core, lazy heavy imports in the plugin."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")


def _imported_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize(
    "module",
    [
        "napari_specdip",
        "napari_specdip.core.engine",
        "napari_specdip.metrics",
        "napari_specdip.stopping",
        "napari_specdip.samples",
        "napari_specdip.cli.main",
    ],
)
def test_core_pulls_in_no_gui(module: str) -> None:
    loaded = _imported_after(f"import {module}")
    assert not loaded & set(GUI), f"{module} imports {sorted(loaded & set(GUI))}"


def test_running_the_engine_pulls_in_no_gui() -> None:
    loaded = _imported_after(
        "import numpy as np, napari_specdip\n"
        "napari_specdip.restore(np.random.rand(32, 32), width=4, depth=2, max_iterations=1)"
    )
    assert not loaded & set(GUI)


def test_package_import_is_light() -> None:
    loaded = _imported_after("import napari_specdip")
    assert "torch" not in loaded and "matplotlib" not in loaded
