"""Fixtures of the command-line tests: small input files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small inputs: gray PNG, RGB PNG, RGBA PNG, uint16 (3, 32, 32) TIFF stack, mask, corrupt."""
    import imageio.v3 as iio
    import tifffile

    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    x = np.mgrid[:48, :40][1]
    wave = 120 + 60 * np.sin(x / 5.0) + rng.normal(0, 20, (48, 40))
    gray = np.clip(wave, 0, 255).astype(np.uint8)
    files = {
        "gray": root / "gray.png",
        "rgb": root / "rgb.png",
        "rgba": root / "rgba.png",
        "stack": root / "stack.tif",
        "mask": root / "mask.png",
        "small_mask": root / "small_mask.png",
        "corrupt": root / "corrupt.tif",
        "corrupt_png": root / "corrupt.png",
    }
    iio.imwrite(files["gray"], gray)
    iio.imwrite(files["rgb"], (rng.random((40, 48, 3)) * 255).astype(np.uint8))
    iio.imwrite(files["rgba"], (rng.random((40, 48, 4)) * 255).astype(np.uint8))
    stack = (rng.random((3, 32, 32)) * 4000 + 100).astype(np.uint16)
    tifffile.imwrite(files["stack"], stack, photometric="minisblack", metadata={"axes": "ZYX"})
    mask = np.zeros((48, 40), np.uint8)
    mask[10:20, 10:30] = 255
    iio.imwrite(files["mask"], mask)
    iio.imwrite(files["small_mask"], mask[:20, :20])
    files["corrupt"].write_bytes(b"II*\x00" + b"\x00garbage" * 8)
    files["corrupt_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    return files
