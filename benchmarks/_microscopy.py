"""Fluorescence-like test images and photon-counting camera noise, for photon.py and ensemble.py.

The clean images must be noise-free: a real photograph carries its own noise, which
the noise estimator would count (skimage's Hubble deep field did: its gain came out
1.5x too high at 100 photons), so besides the bundled ``cell`` (smooth enough) the
set is synthetic.

Clean images are float64 in [0, 1] (1 = the peak photon level); the noisy ones are
what a camera writes: ``offset + gain * (Poisson(clean * peak) + N(0, read^2))``
in ADU, rounded to uint16. Scores are computed on the photon scale divided by the
peak, so that 1 is the peak and PSNR means what it means in the literature
(Makitalo & Foi 2013 report it the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

#: skimage's bundled microscopy image plus synthetic ones (the other microscopy images of
#: skimage.data, e.g. human_mitosis and cells3d, need a download and are not offline).
MICROSCOPY_IMAGES: tuple[str, ...] = ("cell", "nuclei", "puncta")
GAIN_ADU = 2.0  # ADU per photon
OFFSET_ADU = 100.0  # the camera's pedestal


def _resize(image: Array, size: int) -> Array:
    from skimage import transform

    out: Array = transform.resize(image, (size, size), anti_aliasing=True)
    return out


def _unit(image: Array) -> Array:
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo)


def cell(size: int) -> Array:
    """skimage's bundled ``cell``: a 256 px crop around the cell, resized to ``size``."""
    from skimage import data, img_as_float

    image = img_as_float(data.cell())
    crop = image[370 - 128 : 370 + 128, 420 - 128 : 420 + 128]
    return _unit(_resize(crop, size))


def nuclei(size: int, seed: int = 0) -> Array:
    """Synthetic nuclei: blurred ellipses of varied brightness with a smooth texture on a
    dim background (3% of the peak), made with numpy and scipy."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    image = np.zeros((size, size))
    for _ in range(max(6, size // 10)):
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(size / 20, size / 8)
        elongation = rng.uniform(0.6, 1.0)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / radius
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / (radius * elongation)
        image = np.maximum(image, (u * u + v * v < 1.0) * rng.uniform(0.4, 1.0))
    texture = ndi.gaussian_filter(rng.normal(size=image.shape), 3.0)
    texture /= texture.std()
    image = np.clip(ndi.gaussian_filter(image, 1.5) * (1.0 + 0.15 * texture), 0.0, None) + 0.03
    return image / image.max()


def puncta(size: int, seed: int = 1) -> Array:
    """Synthetic vesicles: Gaussian spots (sigma 1-2.5 px) of varied brightness over a
    dim, smooth cytoplasm in a cell-shaped region, on a dark background (2% of the peak)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    shape = ndi.gaussian_filter(rng.normal(size=(size, size)), size / 8)
    cytoplasm = ndi.gaussian_filter((shape > np.quantile(shape, 0.5)).astype(np.float64), 2.0)
    texture = ndi.gaussian_filter(rng.normal(size=(size, size)), 4.0)
    image = 0.02 + cytoplasm * (0.15 + 0.05 * texture / texture.std())
    for _ in range(size // 3):
        cy, cx = rng.uniform(0, size, 2)
        width = rng.uniform(1.0, 2.5)
        image += rng.uniform(0.2, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    image = np.clip(image, 0.0, None)
    return image / image.max()


def load(name: str, size: int) -> Array:
    makers = {"cell": cell, "nuclei": nuclei, "puncta": puncta}
    if name not in makers:
        raise ValueError(f"unknown image {name!r}; choose from {', '.join(makers)}")
    return np.asarray(makers[name](size), dtype=np.float64)


@dataclass(frozen=True)
class Camera:
    peak: float  # photons at clean intensity 1
    read: float  # read noise in photons
    gain: float = GAIN_ADU
    offset: float = OFFSET_ADU

    def expose(self, clean: Array, seed: int) -> npt.NDArray[np.uint16]:
        rng = np.random.default_rng(seed)
        photons = rng.poisson(clean * self.peak) + rng.normal(0.0, self.read, clean.shape)
        adu = self.offset + self.gain * photons
        return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)

    def to_unit(self, adu: npt.ArrayLike) -> Array:
        """ADU -> photons / peak (the clean image's scale)."""
        return (np.asarray(adu, dtype=np.float64) - self.offset) / (self.gain * self.peak)

    def spread_to_unit(self, adu_spread: npt.ArrayLike) -> Array:
        """A spread in ADU (no offset) -> photons / peak, the scale of :meth:`to_unit`."""
        return np.asarray(adu_spread, dtype=np.float64) / (self.gain * self.peak)

    def truth(self) -> dict[str, float]:
        return {"gain": self.gain, "read_sigma": self.read * self.gain, "offset": self.offset}


def score(estimate: npt.ArrayLike, clean: Array) -> tuple[float, float]:
    """PSNR (dB) and SSIM on the peak-normalised scale (data range 1), unclipped
    estimates clipped to [0, 1] first as for any image."""
    from napari_specdip import metrics

    x = np.clip(np.asarray(estimate, dtype=np.float64), 0.0, 1.0)
    return metrics.psnr(x, clean), metrics.ssim(x, clean)


def gat_pair(adu: npt.NDArray[Any], camera: Camera) -> Any:
    """The generalized Anscombe transform of an ADU image for the true camera values,
    as the package's :class:`StabilisedDomain` (forward to [0, 1], exact unbiased
    inverse back) on the image's own [0, 1] scale, with that scale's ``low, high``."""
    from napari_specdip.core.noise import PoissonGaussian, StabilisedDomain

    values = np.asarray(adu, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    model = PoissonGaussian.from_camera(gain=camera.gain, read_sigma=camera.read * camera.gain,
                                        offset=camera.offset, low=low, high=high)
    unit = (values - low) / (high - low)
    return StabilisedDomain.for_observation(unit, model), unit, low, high
