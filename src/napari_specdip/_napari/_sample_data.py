"""Sample data contributions: :mod:`napari_specdip.samples` as napari layer data.

Each sample returns the degraded image first, then (hidden) its clean original,
which the restore widget picks up as the reference (PSNR/SSIM curves). The
image's ``metadata["specdip_sample"]`` tells the widget which task, factor,
mask and reference go with it and, for the microscopy sample, the camera's
true noise values (``"noise"``: model, gain, read_sigma, offset in the image's
units), which the widget shows next to its own estimate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_specdip import samples

LayerData = tuple[Any, dict[str, Any], str]

SAMPLE_KEY = "specdip_sample"


def _layers(sample: samples.Sample) -> list[LayerData]:
    rgb = sample.channel_axis is not None
    name = sample.name
    reference = f"{name} (clean)"
    mask = f"{name} mask"
    hint: dict[str, Any] = {"task": sample.task, "description": sample.description}
    if sample.factor is not None:
        hint["factor"] = sample.factor
    if sample.clean is not None:
        hint["reference"] = reference
    if sample.mask is not None:
        hint["mask"] = mask
    if isinstance(sample.extra.get("noise"), dict):
        hint["noise"] = dict(sample.extra["noise"])
    # the image last: napari puts it on top and selects it, so that the layer controls
    # act on it (added first, the hidden reference was selected instead)
    out: list[LayerData] = []
    if sample.clean is not None:
        clean_kwargs: dict[str, Any] = {"name": reference, "visible": False, "rgb": rgb}
        if sample.factor:
            # the clean image lies on the super-resolved grid
            f = sample.factor
            clean_kwargs["scale"] = (1.0 / f, 1.0 / f)
            clean_kwargs["translate"] = (-0.5 + 0.5 / f, -0.5 + 0.5 / f)
        out.append((sample.clean, clean_kwargs, "image"))
    if sample.mask is not None:
        out.append((sample.mask.astype(np.uint8), {"name": mask, "visible": False}, "labels"))
    out.append((sample.image, {"name": name, "rgb": rgb, "metadata": {SAMPLE_KEY: hint}},
                "image"))
    return out


def noisy_photo() -> list[LayerData]:
    """Astronaut (RGB, 128 px) with Gaussian noise, sigma 25/255."""
    return _layers(samples.noisy_photo())


def noisy_microscopy() -> list[LayerData]:
    """Microscopy-like uint16 cell image (128 px) with Poisson-Gaussian noise."""
    return _layers(samples.noisy_microscopy())


def masked_image() -> list[LayerData]:
    """Camera man (128 px) with half of its pixels missing, and the mask as Labels."""
    return _layers(samples.masked_image())


def jpeg_blocked() -> list[LayerData]:
    """Coffee cup (gray, 128 px) JPEG-compressed at quality 10."""
    return _layers(samples.jpeg_blocked())


def low_resolution() -> list[LayerData]:
    """Chelsea the cat (RGB) downsampled x4 to 32 px."""
    return _layers(samples.low_resolution())
