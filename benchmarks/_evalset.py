"""The evaluation set: images of the users' kinds, degradations, and the tune/held-out split.

Defaults (presets, stop rule) are chosen on the ``tune`` half and reported on the
``held-out`` half, which the choice never saw. Every image is built offline from
scikit-image's bundled data or drawn synthetically (seeded), at any size from 64
to 512 px:

- fluorescence-like (sparse, dark background): synthetic nuclei (textured
  ellipses), filaments (blurred random curves) and puncta (small spots) at two
  seeds each, and the Hubble deep field (bright points on black);
- microscopy, not fluorescence: skimage's ``cell`` (phase contrast), and the
  immunohistochemistry slide (RGB);
- natural photos, gray (camera, moon, coins) and RGB (astronaut, coffee,
  chelsea, rocket);
- textured: brick, grass, gravel.

Any image also comes ``-dark`` (``nuclei1-dark``): its lowest 5% of the range cut to
black and the rest stretched, as a user's contrast setting exports fluorescence; a
JPEG of it rings below 0 around every bright object, so the blocks with detail have
clipped pixels.

Degradations: Gaussian noise (sigma in /255), Poisson-Gaussian noise (peak
photons and read noise in photons), JPEG (quality), inpainting (a Bernoulli mask
of missing pixels).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Array = npt.NDArray[np.float64]

#: image name -> (kind, split)
IMAGES: dict[str, tuple[str, str]] = {
    "nuclei1": ("fluorescence", "tune"),
    "filaments1": ("fluorescence", "tune"),
    "puncta1": ("fluorescence", "tune"),
    "cell": ("microscopy", "tune"),
    "camera": ("gray photo", "tune"),
    "astronaut": ("RGB photo", "tune"),
    "coffee": ("RGB photo", "tune"),
    "brick": ("texture", "tune"),
    "nuclei2": ("fluorescence", "held-out"),
    "filaments2": ("fluorescence", "held-out"),
    "puncta2": ("fluorescence", "held-out"),
    "hubble": ("fluorescence", "held-out"),
    "ihc": ("microscopy RGB", "held-out"),
    "moon": ("gray photo", "held-out"),
    "coins": ("gray photo", "held-out"),
    "chelsea": ("RGB photo", "held-out"),
    "rocket": ("RGB photo", "held-out"),
    "grass": ("texture", "held-out"),
    "gravel": ("texture", "held-out"),
}

#: image name -> kind: a third set that no default was chosen or reported on, kinds of
#: image beside the evaluation set's (documents, a phantom, a fundus photo, blobs), for a
#: check that the defaults carry over (``refine.py --split unseen``)
UNSEEN: dict[str, str] = {
    "text": "document",
    "page": "document",
    "clock": "gray photo",
    "phantom": "phantom",
    "microaneurysms": "fundus",
    "retina": "fundus RGB",
    "motorcycle": "RGB photo",
    "blobs": "fluorescence",
}


#: the suffix of an image's variant with its dark end cut to black, and how much is cut
DARK = "-dark"
DARK_CUT = 0.05


def split(name: str) -> str:
    base = name.removesuffix(DARK)
    return "unseen" if base in UNSEEN else IMAGES[base][1]


def kind(name: str) -> str:
    base = name.removesuffix(DARK)
    return UNSEEN[base] if base in UNSEEN else IMAGES[base][0]


def _bundled(name: str) -> Array:
    from skimage import data, img_as_float

    loader = {"hubble": "hubble_deep_field", "ihc": "immunohistochemistry",
              "phantom": "shepp_logan_phantom", "motorcycle": "stereo_motorcycle"
              }.get(name, name)
    image = getattr(data, loader)()
    if name == "motorcycle":
        image = image[0]  # the stereo pair's left view
    return np.asarray(img_as_float(image), dtype=np.float64)


#: where the interesting part of a bundled image lies (fractions of height, width)
_CENTRES = {"cell": (0.55, 0.72)}


def _fit_size(image: Array, size: int, centre: tuple[float, float] = (0.5, 0.5)) -> Array:
    """A square crop around ``centre`` of the image resampled (anti-aliased) so its
    short side is ``2 * size`` (or ``size`` when it is shorter): small sizes show a
    medium zoom of the scene rather than a flat detail of it."""
    from skimage import transform

    h, w = image.shape[:2]
    target = min(2 * size, max(size, min(h, w)))
    if min(h, w) != target:
        s = target / min(h, w)
        image = transform.resize(image, (round(h * s), round(w * s)) + image.shape[2:],
                                 anti_aliasing=True)
        h, w = image.shape[:2]
    top = int(np.clip(round(centre[0] * h - size / 2), 0, h - size))
    left = int(np.clip(round(centre[1] * w - size / 2), 0, w - size))
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def _normalise(image: Array, low: float = 0.02, high: float = 0.98) -> Array:
    lo, hi = float(image.min()), float(image.max())
    return low + (high - low) * (image - lo) / max(hi - lo, 1e-12)


def _nuclei(size: int, seed: int) -> Array:
    """Textured ellipses of varied brightness on a dark background, like DAPI nuclei."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = np.zeros((size, size))
    density = 0.55 if seed % 2 else 0.35
    radius = size / 128 * (9.0 if seed % 2 else 12.0)
    count = max(3, int(density * (size / radius) ** 2 / 6))
    texture = ndimage.gaussian_filter(rng.standard_normal((size, size)), 1.5)
    texture /= texture.std()
    for _ in range(count):
        cy, cx = rng.uniform(0, size, 2)
        a, b = radius * rng.uniform(0.7, 1.3, 2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        inside = (u**2 + v**2) <= 1.0
        image[inside] = np.maximum(image[inside], rng.uniform(0.35, 1.0)
                                   * (1.0 + 0.15 * texture[inside]))
    image = ndimage.gaussian_filter(image, 1.2 * size / 128)
    return _normalise(image + 0.03, 0.02, 0.95)


def _filaments(size: int, seed: int) -> Array:
    """Blurred random smooth curves, like microtubules or actin."""
    rng = np.random.default_rng(seed + 100)
    image = np.zeros((size, size))
    for _ in range(int(10 * size / 128) + 4):
        y, x = rng.uniform(0, size, 2)
        angle = rng.uniform(0, 2 * np.pi)
        brightness = rng.uniform(0.4, 1.0)
        for _ in range(int(3 * size)):
            angle += rng.normal(0, 0.08)
            y, x = y + np.sin(angle) * 0.5, x + np.cos(angle) * 0.5
            if not (0 <= y < size and 0 <= x < size):
                break
            image[int(y), int(x)] = max(image[int(y), int(x)], brightness)
    image = ndimage.gaussian_filter(image, 1.0 * size / 128 + 0.3)
    return _normalise(image, 0.03, 0.95)


def _puncta(size: int, seed: int) -> Array:
    """Small diffraction-limited spots over a faint cell-shaped haze (vesicles, foci)."""
    rng = np.random.default_rng(seed + 200)
    image = np.zeros((size, size))
    n = int(60 * (size / 128) ** 2)
    ys, xs = rng.integers(0, size, (2, n))
    image[ys, xs] = rng.uniform(0.3, 1.0, n)
    spots = ndimage.gaussian_filter(image, 1.3)
    haze = ndimage.gaussian_filter(rng.random((size, size)), size / 8)
    haze = (haze - haze.min()) / max(np.ptp(haze), 1e-12)
    return _normalise(spots / max(spots.max(), 1e-12) + 0.25 * haze, 0.03, 0.95)


def _blobs(size: int) -> Array:
    """Sparse round cells of varied brightness on a dark background, blurred: the
    evaluation set's nuclei without their texture, drawn by scikit-image."""
    from skimage.data import binary_blobs

    rng = np.random.default_rng(7)
    mask = binary_blobs(size, blob_size_fraction=0.08, volume_fraction=0.2, rng=7)
    labels, count = ndimage.label(mask)
    brightness = np.concatenate([[0.0], rng.uniform(0.3, 1.0, count)])
    image = ndimage.gaussian_filter(brightness[labels], 1.5 * size / 128)
    return _normalise(image, 0.02, 0.9)


def load(name: str, size: int) -> Array:
    """The clean image ``name`` at ``size`` x ``size``, float64 in [0, 1] (H, W) or (H, W, 3)."""
    if name.endswith(DARK):
        image = load(name.removesuffix(DARK), size)
        return np.clip((image - DARK_CUT) / (1.0 - DARK_CUT), 0.0, 1.0)
    if name.startswith("nuclei"):
        return _nuclei(size, int(name[-1]))
    if name.startswith("filaments"):
        return _filaments(size, int(name[-1]))
    if name.startswith("puncta"):
        return _puncta(size, int(name[-1]))
    if name == "blobs":
        return _blobs(size)
    image = _bundled(name)
    if name == "hubble":
        from skimage import color

        image = color.rgb2gray(image)
    return np.clip(_fit_size(image, size, _CENTRES.get(name, (0.5, 0.5))), 0.0, 1.0)


@dataclass(frozen=True)
class Degradation:
    """How the observation is made from the clean image."""

    kind: str  # "gaussian", "poisson-gaussian", "jpeg", "inpaint"
    level: float  # sigma*255, peak photons, JPEG quality, missing fraction
    read: float = 0.0  # read noise in photons (Poisson-Gaussian)

    @property
    def task(self) -> str:
        return {"gaussian": "denoise", "poisson-gaussian": "denoise", "jpeg": "deblock",
                "inpaint": "inpaint"}[self.kind]

    @property
    def label(self) -> str:
        if self.kind == "gaussian":
            return f"sigma{self.level:g}"
        if self.kind == "poisson-gaussian":
            return f"pg{self.level:g}r{self.read:g}"
        if self.kind == "jpeg":
            return f"jpeg{self.level:g}"
        return f"inpaint{self.level:g}"

    def apply(self, clean: Array, seed: int = 0) -> tuple[Array, npt.NDArray[np.bool_] | None]:
        """(observation in [0, 1], mask of pixels to fill or None)."""
        rng = np.random.default_rng(seed)
        if self.kind == "gaussian":
            return np.clip(clean + rng.normal(0, self.level / 255.0, clean.shape), 0, 1), None
        if self.kind == "poisson-gaussian":
            counts = rng.poisson(clean * self.level) + rng.normal(0, self.read, clean.shape)
            return np.clip(counts / self.level, 0, 1), None
        if self.kind == "jpeg":
            import imageio.v3 as iio

            data = np.round(clean * 255).astype(np.uint8)
            encoded = iio.imwrite("<bytes>", data, extension=".jpg", quality=int(self.level))
            decoded = np.asarray(iio.imread(io.BytesIO(encoded), extension=".jpg"))
            return decoded.astype(np.float64) / 255.0, None
        if self.kind == "inpaint":
            missing = rng.random(clean.shape[:2]) < self.level
            observed = clean.copy()
            observed[missing] = 0.0
            return observed, missing
        raise ValueError(self.kind)


def engine_options(degradation: Degradation, max_iterations: int | None = None
                   ) -> dict[str, Any]:
    """Options of ``restore`` for an observation of ``degradation``: Poisson-Gaussian
    noise with the camera values given (in the [0, 1] units of ``apply``)."""
    options: dict[str, Any] = {}
    if degradation.kind == "poisson-gaussian":
        peak = degradation.level
        options = {"noise": "poisson-gaussian", "noise_gain": 1.0 / peak,
                   "noise_read_sigma": degradation.read / peak, "noise_offset": 0.0}
    if max_iterations is not None:
        options["max_iterations"] = max_iterations
    return options


def parse_degradation(text: str) -> Degradation:
    """``sigma25``, ``pg30r2``, ``jpeg10``, ``inpaint0.5``."""
    if text.startswith("sigma"):
        return Degradation("gaussian", float(text[5:]))
    if text.startswith("pg"):
        peak, read = text[2:].split("r")
        return Degradation("poisson-gaussian", float(peak), float(read))
    if text.startswith("jpeg"):
        return Degradation("jpeg", float(text[4:]))
    if text.startswith("inpaint"):
        return Degradation("inpaint", float(text[7:]))
    raise ValueError(f"unknown degradation {text!r}")


def psnr(x: Array, y: Array) -> float:
    return float(10 * np.log10(1.0 / max(float(np.mean((x - y) ** 2)), 1e-12)))


def estimated_sigma(observation: Array) -> float | None:
    """scikit-image's wavelet estimate of the noise level (None without PyWavelets)."""
    from skimage.restoration import estimate_sigma

    try:
        return float(np.mean(estimate_sigma(observation,
                                            channel_axis=-1 if observation.ndim == 3 else None)))
    except ImportError:  # estimate_sigma needs PyWavelets, an optional dependency
        return None


def nl_means(observation: Array, sigma: float | None = None) -> Array:
    """scikit-image's NL-means with the noise level estimated from the image (or
    ``sigma`` when PyWavelets, which the estimate needs, is missing)."""
    from skimage.restoration import denoise_nl_means

    axis = -1 if observation.ndim == 3 else None
    found = estimated_sigma(observation)
    level = found if found is not None else sigma
    if level is None:
        raise ValueError("NL-means needs a noise level: install PyWavelets or pass sigma")
    return np.asarray(denoise_nl_means(observation, h=0.8 * level, sigma=level, fast_mode=True,
                                       patch_size=5, patch_distance=6, channel_axis=axis))


def bm3d(observation: Array) -> Array | None:
    """BM3D (non-commercial licence, optional) with the estimated noise level."""
    try:
        import bm3d as bm3d_lib
    except ImportError:
        return None
    sigma = estimated_sigma(observation)
    if sigma is None:
        return None
    if observation.ndim == 3:
        return np.asarray(bm3d_lib.bm3d_rgb(observation, sigma))
    return np.asarray(bm3d_lib.bm3d(observation, sigma))


def describe(extra: dict[str, Any] | None = None, *, unseen: bool = False) -> str:
    """One line per split, for the top of a report (the unseen set's too, if asked)."""
    lines = []
    for part in ("tune", "held-out"):
        names = [f"{n} ({kind(n)})" for n in IMAGES if split(n) == part]
        lines.append(f"{part}: " + ", ".join(names))
    if unseen:
        lines.append("unseen: " + ", ".join(f"{n} ({k})" for n, k in UNSEEN.items()))
    return "\n".join(lines)
