"""Offline sample data made from scikit-image's bundled images (numpy only, Qt-free).

Every sample is deterministic (seeded) and small enough for a CPU run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

NOISE_SIGMA = 25.0 / 255.0


@dataclass(frozen=True)
class Sample:
    """A degraded image, what to do with it, and the clean original when known."""

    name: str
    task: str
    image: npt.NDArray[Any]
    clean: npt.NDArray[Any] | None
    channel_axis: int | None = None
    mask: npt.NDArray[np.bool_] | None = None
    factor: int | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def center_crop(image: npt.NDArray[Any], size: int) -> npt.NDArray[Any]:
    """Central ``size`` x ``size`` crop of the two leading (spatial) axes."""
    h, w = image.shape[:2]
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the image ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def add_gaussian_noise(image: npt.NDArray[Any], sigma: float = NOISE_SIGMA, *,
                       seed: int = 0) -> npt.NDArray[np.float64]:
    """``clip(x + N(0, sigma^2), 0, 1)`` for a float image in [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0.0, sigma, image.shape), 0.0, 1.0)


def jpeg_compress(image: npt.NDArray[Any], quality: int = 10) -> npt.NDArray[np.uint8]:
    """Round-trip a uint8 or [0, 1] image through JPEG at ``quality``."""
    import imageio.v3 as iio

    data = image if image.dtype == np.uint8 else np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    encoded = iio.imwrite("<bytes>", data, extension=".jpg", quality=quality)
    return np.asarray(iio.imread(io.BytesIO(encoded), extension=".jpg"))


def noisy_photo(size: int = 128, *, seed: int = 0) -> Sample:
    """The astronaut (RGB) with Gaussian noise of sigma 25/255."""
    from skimage import data
    from skimage.util import img_as_float

    clean = center_crop(img_as_float(data.astronaut()), size)
    noisy = add_gaussian_noise(clean, seed=seed)
    # clipping to [0, 1] takes noise out of the dark and bright parts: what is left
    clipped = float(np.sqrt(np.mean((noisy - clean) ** 2)))
    return Sample("noisy photo", "denoise", noisy, clean, channel_axis=-1,
                  description="astronaut + Gaussian noise, sigma 25/255",
                  extra={"noise": {"model": "gaussian", "sigma": NOISE_SIGMA,
                                   "sigma_clipped": clipped}})


def noisy_microscopy(size: int = 128, *, seed: int = 0) -> Sample:
    """Microscopy-like 16-bit image with Poisson-Gaussian noise (skimage's bundled 'cell').

    A simulated camera: 200 photons at the brightest clean pixel, read noise 2
    photons, 20 ADU per photon, a pedestal of 100 ADU. The true values, in the
    image's units (ADU) as ``restore(noise="poisson-gaussian")`` reports its
    estimates, are in ``extra["noise"]``.

    Examples
    --------
    >>> sample = noisy_microscopy(64)
    >>> sample.extra["noise"]["gain"], sample.extra["noise"]["read_sigma"]
    (20.0, 40.0)
    """
    from skimage import data, transform
    from skimage.util import img_as_float

    cells = img_as_float(data.cell())
    clean = transform.resize(center_crop(cells, min(cells.shape)), (size, size), anti_aliasing=True)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    rng = np.random.default_rng(seed)
    photons, read_photons, full_scale, offset = 200.0, 2.0, 4000.0, 100.0
    counts = rng.poisson(clean * photons) + rng.normal(0, read_photons, clean.shape)
    image = np.clip(counts / photons * full_scale + offset, 0, 65535).astype(np.uint16)
    reference = np.clip(clean * full_scale + offset, 0, 65535).astype(np.uint16)
    gain = full_scale / photons
    noise = {"model": "poisson-gaussian", "gain": gain, "read_sigma": read_photons * gain,
             "offset": offset, "peak_photons": photons, "read_photons": read_photons,
             "units": "ADU"}
    return Sample("noisy microscopy", "denoise", image, reference,
                  description="cell (bundled microscopy image), Poisson-Gaussian noise, uint16: "
                              f"peak {photons:g} photons, read noise {read_photons:g} photons, "
                              f"gain {gain:g} ADU/photon, offset {offset:g} ADU",
                  extra={"noise": noise})


def masked_image(size: int = 128, *, fraction: float = 0.5, seed: int = 0) -> Sample:
    """The camera man with a random ``fraction`` of pixels missing (the paper's setting)."""
    from skimage import data
    from skimage.util import img_as_float

    clean = center_crop(img_as_float(data.camera()), size)
    mask = np.random.default_rng(seed).random(clean.shape) < fraction
    return Sample("masked image", "inpaint", np.where(mask, 0.0, clean), clean, mask=mask,
                  description=f"camera, {int(fraction * 100)}% of pixels missing")


def jpeg_blocked(size: int = 128, *, quality: int = 10) -> Sample:
    """The coffee cup, gray, JPEG-compressed at ``quality``."""
    from skimage import color, data
    from skimage.util import img_as_ubyte

    clean = center_crop(img_as_ubyte(color.rgb2gray(data.coffee())), size)
    return Sample("JPEG-blocked image", "deblock", jpeg_compress(clean, quality), clean,
                  description=f"coffee, gray, JPEG quality {quality}")


def low_resolution(size: int = 128, *, factor: int = 4) -> Sample:
    """Chelsea the cat (RGB), downsampled by ``factor`` with anti-aliasing."""
    from skimage import data, transform
    from skimage.util import img_as_float

    clean = center_crop(img_as_float(data.chelsea()), size)
    small = transform.resize(clean, (size // factor, size // factor, 3), anti_aliasing=True)
    return Sample("low-resolution image", "super-resolve", small, clean, channel_axis=-1,
                  factor=factor, description=f"chelsea, downsampled x{factor}")


SAMPLES: dict[str, Callable[..., Sample]] = {
    "noisy_photo": noisy_photo,
    "noisy_microscopy": noisy_microscopy,
    "masked_image": masked_image,
    "jpeg_blocked": jpeg_blocked,
    "low_resolution": low_resolution,
}
