"""Image-quality signals of the spectral-bias-controlled Deep Image Prior.

This module is Qt-free and importing it does not import torch: the module-level
functions are a pure-numpy (float64) path, and torch is imported only when a
torch tensor is passed in or when the torch path (:class:`SignalMeter`,
:func:`to_gray_torch`, :func:`psnr_torch`, :func:`ssim_torch`) is used.

Signals (Shi et al., IJCV 2022, and its reference implementation):

- :func:`blur`: Crete et al. (2007) perceptual blur metric, Fishbain's MATLAB
  formulation with a 9-tap box filter (not :func:`skimage.measure.blur_effect`,
  which differs numerically).
- :func:`sharpness`: MLV sharpness (Bahrami & Kot, 2014) as computed by the
  reference implementation.
- :func:`blur_sharpness_ratio`: their ratio, the signal of the automatic stop.
- :func:`band_correspondence`: frequency-band correspondence (FBC) of an output
  with the degraded target, five bands from lowest to highest frequency.
- :func:`psnr`, :func:`ssim`: full-reference quality against a clean image.

All of them reproduce the reference implementation's values (see
``tests/test_metrics.py``) so that the paper's stopping threshold keeps its meaning.

Two paths
---------
numpy path
    The module-level functions (:func:`to_gray`, :func:`blur`, :func:`sharpness`,
    :func:`blur_sharpness_ratio`, :func:`band_correspondence`, :func:`psnr`,
    :func:`ssim`). They accept numpy arrays, array-likes or torch tensors, compute
    in float64 numpy on the host and return python floats or numpy arrays.
torch path
    :class:`SignalMeter` precomputes everything that depends on the image size
    once and evaluates the signals on the tensor's device without any host
    synchronisation (results stay tensors), for the engine's hot loop.
    :func:`to_gray_torch`, :func:`psnr_torch` and :func:`ssim_torch` complete it.

Array conventions
-----------------
- numpy (and array-like) images are ``(H, W)`` or channel-last ``(H, W, C)``.
- torch tensors are ``(H, W)``, channel-first ``(C, H, W)`` or ``(1, C, H, W)``.
- Gray conversion: ``C == 1`` is squeezed; ``C == 3`` is RGB and becomes
  ``clip(0.2989 R + 0.5870 G + 0.1140 B, 0, 1)``; any other ``C`` is averaged
  over channels. 2D images are used as they are (not clipped).
- Images must hold floating-point values (nominally in [0, 1]), be finite and,
  for the no-reference signals and FBC, have both sides of at least
  :data:`MIN_SIDE` pixels. Anything else raises :class:`ValueError`.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

    ImageLike: TypeAlias = npt.ArrayLike | torch.Tensor
else:
    ImageLike: TypeAlias = Any

__all__ = [
    "BLUR_FILTER_SIZE",
    "LUMA_WEIGHTS",
    "MIN_SIDE",
    "MLV_RANKS",
    "SignalMeter",
    "band_correspondence",
    "blur",
    "blur_sharpness_ratio",
    "psnr",
    "psnr_torch",
    "sharpness",
    "ssim",
    "ssim_torch",
    "to_gray",
    "to_gray_torch",
]

#: Weights of the RGB -> gray conversion used by the reference implementation.
LUMA_WEIGHTS: Final[tuple[float, float, float]] = (0.2989, 0.5870, 0.1140)
#: Smallest image side accepted by blur, sharpness and band correspondence.
MIN_SIDE: Final[int] = 16
#: Box-filter length of the Crete blur metric.
BLUR_FILTER_SIZE: Final[int] = 9
#: Sorted MLV values used by the sharpness: 0-based ranks 2 .. 1000 (the top two dropped).
MLV_RANKS: Final[tuple[int, int]] = (2, 1000)
_MLV_ALPHA: Final[float] = -0.01
_FBC_EPS: Final[float] = 1e-8
_SSIM_SIGMA: Final[float] = 1.5
_SSIM_RADIUS: Final[int] = 5  # int(3.5 * 1.5 + 0.5), as skimage/ndimage with truncate=3.5
_SSIM_K1: Final[float] = 0.01
_SSIM_K2: Final[float] = 0.03
# Crete blur geometry in original pixel coordinates (filter size 9): the reference crops
# rows/cols [5, m-4), then keeps first differences x[j] - x[j-1] for j in [6, m-5).
_BLUR_LO: Final[int] = BLUR_FILTER_SIZE // 2 + 2  # 6: first index of the differences kept
_BLUR_HI: Final[int] = BLUR_FILTER_SIZE // 2 + 1  # 5: the last kept index is m - 6


# --------------------------------------------------------------------------- input checks


def _is_tensor(obj: object) -> bool:
    """Whether ``obj`` is a torch tensor, without importing torch."""
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(obj, torch_mod.Tensor)


def _as_numpy(image: ImageLike, name: str) -> npt.NDArray[np.float64]:
    """Return ``image`` as a finite float64 numpy array, channel-last.

    torch tensors are channel-first ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``
    and are moved to the host and transposed to channel-last.
    """
    if _is_tensor(image):
        tensor = image.detach()  # type: ignore[union-attr]
        if not (tensor.is_floating_point()):
            raise ValueError(
                f"{name}: expected a floating-point tensor with values in [0, 1], "
                f"got dtype {tensor.dtype}"
            )
        if tensor.ndim == 4:
            if tensor.shape[0] != 1:
                raise ValueError(
                    f"{name}: a 4D tensor must be (1, C, H, W), got shape {tuple(tensor.shape)}"
                )
            tensor = tensor[0]
        if tensor.ndim == 3:
            tensor = tensor.permute(1, 2, 0)
        elif tensor.ndim != 2:
            raise ValueError(
                f"{name}: expected a tensor of shape (H, W), (C, H, W) or (1, C, H, W), "
                f"got shape {tuple(tensor.shape)}"
            )
        array = tensor.to("cpu").double().numpy()
    else:
        array = np.asarray(image)
        if array.dtype == object or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"{name}: expected a floating-point image with values in [0, 1], got dtype "
                f"{array.dtype} (convert integer images with skimage.util.img_as_float)"
            )
        if array.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected a 2D image (H, W) or a channel-last image (H, W, C), "
                f"got {array.ndim} dimension(s) with shape {array.shape}"
            )
        array = array.astype(np.float64, copy=False)
    if array.size == 0:
        raise ValueError(f"{name}: the image is empty (shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: the image contains NaN or infinite values")
    return array


def _gray_numpy(array: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Gray conversion of a checked channel-last float64 array."""
    if array.ndim == 2:
        return array
    channels = array.shape[-1]
    if channels == 1:
        return array[..., 0]
    if channels == 3:
        r, g, b = LUMA_WEIGHTS
        gray = r * array[..., 0] + g * array[..., 1] + b * array[..., 2]
        return np.clip(gray, 0.0, 1.0)
    mean: npt.NDArray[np.float64] = array.mean(axis=-1)
    return mean


def _check_side(shape: tuple[int, ...], name: str, minimum: int = MIN_SIDE) -> None:
    if min(shape[:2]) < minimum:
        raise ValueError(
            f"{name}: both image sides must be at least {minimum} pixels, got {shape[0]} x "
            f"{shape[1]}"
        )


def _checked_gray(image: ImageLike, name: str) -> npt.NDArray[np.float64]:
    gray = _gray_numpy(_as_numpy(image, name))
    _check_side(gray.shape, name)
    return gray


# ------------------------------------------------------------------------- numpy path


def to_gray(image: ImageLike) -> npt.NDArray[np.float64]:
    """Convert an image to gray as the reference implementation does.

    Parameters
    ----------
    image : array_like or torch.Tensor
        Floating-point image: numpy ``(H, W)`` or channel-last ``(H, W, C)``;
        torch ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` float64. 2D input is returned unchanged (as float64); RGB becomes
        ``clip(0.2989 R + 0.5870 G + 0.1140 B, 0, 1)``; one channel is squeezed; any
        other channel count is averaged.

    Raises
    ------
    ValueError
        Non-float, empty, non-finite input or an unsupported number of dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.zeros((2, 2, 3))
    >>> rgb[..., 1] = 1.0
    >>> to_gray(rgb)
    array([[0.587, 0.587],
           [0.587, 0.587]])
    """
    return _gray_numpy(_as_numpy(image, "image"))


def _crete_direction(gray: npt.NDArray[np.float64], axis: int) -> float:
    """Blur along one axis of the Crete metric (``axis=1``: differences along rows).

    With ``B[j]`` the mean of ``x[j-4 .. j+4]``, ``B[j] - B[j-1] = (x[j+4] - x[j-5]) / 9``
    exactly, so the blurred image's differences need no explicit box filter.
    """
    x = gray if axis == 1 else gray.T
    m, n = x.shape
    lo, hi, half = _BLUR_LO, _BLUR_HI, BLUR_FILTER_SIZE // 2
    rows = x[lo : m - hi]
    # first differences x[j] - x[j-1], j in [6, n-5), of the image and of the blurred image
    d_f = np.abs(rows[:, lo : n - hi] - rows[:, lo - 1 : n - hi - 1])
    d_b = (
        np.abs(rows[:, lo + half : n - hi + half] - rows[:, lo - half - 1 : n - hi - half - 1])
        / BLUR_FILTER_SIZE
    )
    s_f = float(d_f.sum())
    if s_f == 0.0:
        return 1.0
    s_v = float(np.maximum(d_f - d_b, 0.0).sum())
    return (s_f - s_v) / s_f


def blur(image: ImageLike) -> float:
    """Crete et al. (2007) perceptual blur, as in the paper's reference code.

    Fishbain's MATLAB formulation with filter size 9: the image is box-blurred
    along rows and along columns (zero-padded 'same' convolution), a border is
    cropped, and ``b = (sum D_F - sum max(0, D_F - D_B)) / sum D_F`` is computed
    from the absolute first differences of the image (``D_F``) and of the blurred
    image (``D_B``) in each direction. The larger of the two is returned.

    Parameters
    ----------
    image : array_like or torch.Tensor
        Gray ``(H, W)`` or colour image (see the module's conventions), both
        sides at least :data:`MIN_SIDE`.

    Returns
    -------
    float
        Blur in [0, 1]; higher is blurrier. A direction without any variation
        counts as fully blurred (1.0).

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(0).random((64, 64))
    >>> round(blur(noise), 4)
    0.1087
    >>> blur(np.full((32, 32), 0.5))
    1.0
    """
    gray = _checked_gray(image, "image")
    return max(_crete_direction(gray, 0), _crete_direction(gray, 1))


def _mlv_map(gray: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Maximum local variation map of the reference implementation.

    The reference keeps the sub-image ``x[2:H-1, 2:W-1]`` and, for each of its
    pixels, takes the maximum of ``neighbour - centre`` over the 8 neighbours,
    neighbours outside the sub-image counting as 0.
    """
    sub = gray[2:-1, 2:-1]
    padded = np.pad(sub, 1)
    h, w = sub.shape
    best = np.full(sub.shape, -np.inf)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy == 1 and dx == 1:
                continue
            np.maximum(best, padded[dy : dy + h, dx : dx + w], out=best)
    return best - sub


def _mlv_weights(count: int) -> npt.NDArray[np.float64]:
    first = MLV_RANKS[0]
    return np.exp(_MLV_ALPHA * np.arange(first, first + count, dtype=np.float64))


def sharpness(image: ImageLike) -> float:
    """MLV sharpness (Bahrami & Kot, 2014), as in the paper's reference code.

    The maximum local variation map (largest ``neighbour - centre`` over the 8
    neighbours) is sorted in descending order; the values of 0-based ranks
    2 .. 1000 (the reference drops the two largest) are weighted by
    ``exp(-0.01 r)`` and their root mean square is returned.

    Parameters
    ----------
    image : array_like or torch.Tensor
        Gray ``(H, W)`` or colour image, both sides at least :data:`MIN_SIDE`.

    Returns
    -------
    float
        Sharpness (>= 0 for natural images); higher is sharper.

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(0).random((64, 64))
    >>> round(sharpness(noise), 4)
    0.208
    >>> sharpness(np.full((32, 32), 0.5))
    0.0
    """
    gray = _checked_gray(image, "image")
    values = _mlv_map(gray).ravel()
    stop = min(MLV_RANKS[1] + 1, values.size)
    top = np.sort(np.partition(values, values.size - stop)[values.size - stop :])[::-1]
    kept = top[MLV_RANKS[0] : stop] * _mlv_weights(stop - MLV_RANKS[0])
    return float(np.sqrt(np.mean(kept * kept)))


def blur_sharpness_ratio(image: ImageLike) -> float:
    """Blur / sharpness ratio, the signal of the automatic stopping rule.

    Parameters
    ----------
    image : array_like or torch.Tensor
        Gray ``(H, W)`` or colour image, both sides at least :data:`MIN_SIDE`.

    Returns
    -------
    float
        ``blur(image) / sharpness(image)``; ``inf`` when the sharpness is 0
        (e.g. a constant image).

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(0).random((64, 64))
    >>> round(blur_sharpness_ratio(noise), 4)
    0.5225
    """
    gray = _checked_gray(image, "image")
    b = blur(gray)
    s = sharpness(gray)
    return b / s if s != 0.0 else math.inf


@lru_cache(maxsize=16)
def _band_labels(
    height: int, width: int, bands: int
) -> tuple[npt.NDArray[np.intp], tuple[int, ...]]:
    """Band index (0 = lowest) of each fftshift-ed frequency pixel; ``bands`` = outside.

    Centre ``(int(W/2), int(H/2))`` (column, row); outer radii
    ``int(W/2) * linspace(1/bands, 1, bands)``; band 0 is the closed disk and
    band k the annulus ``r_{k-1} < d <= r_k``.
    """
    cx, cy = int(width / 2), int(height / 2)
    yy, xx = np.ogrid[:height, :width]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    radii = cx * np.linspace(1.0 / bands, 1.0, bands)
    labels = np.searchsorted(radii, dist, side="left")
    counts = tuple(int(c) for c in np.bincount(labels.ravel(), minlength=bands + 1)[:bands])
    if min(counts) == 0:
        raise ValueError(
            f"a {height} x {width} image is too small for {bands} frequency bands "
            "(a band holds no frequency)"
        )
    labels.setflags(write=False)
    return labels, counts


def _check_bands(bands: int) -> int:
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or bands < 1:
        raise ValueError(f"bands must be a positive integer, got {bands!r}")
    return int(bands)


def band_correspondence(
    output: ImageLike, target: ImageLike, *, bands: int = 5
) -> npt.NDArray[np.float64]:
    """Frequency-band correspondence (FBC) of ``output`` with ``target``.

    ``H = clip(|F(output)| / (|F(target)| + 1e-8), 0, 1)`` on the centred 2D
    spectra of the gray images, averaged over concentric bands around
    ``(int(W/2), int(H/2))`` with outer radii ``0.2 k * int(W/2)`` (for 5 bands):
    band 1 is the inner disk including DC, the others are annuli; frequencies
    beyond ``int(W/2)`` are ignored.

    Parameters
    ----------
    output : array_like or torch.Tensor
        The network output (gray or colour), both sides at least :data:`MIN_SIDE`.
    target : array_like or torch.Tensor
        The degraded observation, same spatial shape as ``output``.
    bands : int, optional
        Number of bands (the paper uses 5).

    Returns
    -------
    numpy.ndarray
        ``(bands,)`` float64, lowest frequency band first, values in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random((64, 64))
    >>> band_correspondence(y, y)
    array([1., 1., 1., 1., 1.])
    >>> band_correspondence(np.zeros((64, 64)), y)
    array([0., 0., 0., 0., 0.])
    """
    n_bands = _check_bands(bands)
    out = _checked_gray(output, "output")
    tgt = _checked_gray(target, "target")
    if out.shape != tgt.shape:
        raise ValueError(
            f"output and target must have the same spatial shape, got {out.shape} and {tgt.shape}"
        )
    labels, counts = _band_labels(out.shape[0], out.shape[1], n_bands)
    f_out = np.abs(np.fft.fftshift(np.fft.fft2(out)))
    f_tgt = np.abs(np.fft.fftshift(np.fft.fft2(tgt)))
    ratio = np.clip(f_out / (f_tgt + _FBC_EPS), 0.0, 1.0)
    sums = np.bincount(labels.ravel(), weights=ratio.ravel(), minlength=n_bands + 1)
    result: npt.NDArray[np.float64] = sums[:n_bands] / np.asarray(counts, dtype=np.float64)
    return result


def _pair(x: ImageLike, y: ImageLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    a = _as_numpy(x, "x")
    b = _as_numpy(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _check_range(data_range: float) -> float:
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return value


def psnr(x: ImageLike, y: ImageLike, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    x, y : array_like or torch.Tensor
        Floating-point images of the same shape (numpy channel-last, torch
        channel-first).
    data_range : float, optional
        Peak-to-peak range of the data.

    Returns
    -------
    float
        ``10 log10(data_range**2 / mean((x - y)**2))``; ``inf`` for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> round(psnr(np.zeros((8, 8)), np.full((8, 8), 0.1)), 6)
    20.0
    """
    rng = _check_range(data_range)
    a, b = _pair(x, y)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(rng * rng / mse)


def ssim(x: ImageLike, y: ImageLike, *, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004) with an 11-tap Gaussian window.

    Same as :func:`skimage.metrics.structural_similarity` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` and, for
    colour images, the mean over channels.

    Parameters
    ----------
    x, y : array_like or torch.Tensor
        Floating-point images of the same shape, both sides at least 11 pixels.
    data_range : float, optional
        Peak-to-peak range of the data.

    Returns
    -------
    float
        Mean SSIM, 1.0 for identical images.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.random.default_rng(0).random((32, 32))
    >>> ssim(img, img)
    1.0
    """
    from skimage.metrics import structural_similarity

    rng = _check_range(data_range)
    a, b = _pair(x, y)
    _check_side(a.shape, "x", 2 * _SSIM_RADIUS + 1)
    return float(
        structural_similarity(  # type: ignore[no-untyped-call,unused-ignore]
            a,
            b,
            data_range=rng,
            gaussian_weights=True,
            sigma=_SSIM_SIGMA,
            use_sample_covariance=False,
            channel_axis=-1 if a.ndim == 3 else None,
        )
    )


# ------------------------------------------------------------------------- torch path


def to_gray_torch(image: torch.Tensor) -> torch.Tensor:
    """Gray conversion of a channel-first tensor, on its device.

    Parameters
    ----------
    image : torch.Tensor
        ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``.

    Returns
    -------
    torch.Tensor
        ``(H, W)``, same device and dtype: 2D input unchanged; ``C == 3`` gives
        ``clip(0.2989 R + 0.5870 G + 0.1140 B, 0, 1)``; ``C == 1`` is squeezed;
        other ``C`` are averaged.

    Examples
    --------
    >>> import torch
    >>> to_gray_torch(torch.ones(3, 2, 2))
    tensor([[0.9999, 0.9999],
            [0.9999, 0.9999]])
    """
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected a (1, C, H, W) tensor, got shape {tuple(image.shape)}")
        image = image[0]
    if image.ndim == 2:
        return image
    if image.ndim != 3:
        raise ValueError(
            f"expected a tensor of shape (H, W), (C, H, W) or (1, C, H, W), got "
            f"{tuple(image.shape)}"
        )
    channels = image.shape[0]
    if channels == 1:
        return image[0]
    if channels == 3:
        r, g, b = LUMA_WEIGHTS
        return (r * image[0] + g * image[1] + b * image[2]).clamp(0.0, 1.0)
    return image.mean(dim=0)


def _as_nchw(image: torch.Tensor, name: str) -> torch.Tensor:
    if image.ndim == 2:
        return image[None, None]
    if image.ndim == 3:
        return image[None]
    if image.ndim == 4:
        return image
    raise ValueError(
        f"{name}: expected a tensor of shape (H, W), (C, H, W) or (N, C, H, W), got "
        f"{tuple(image.shape)}"
    )


def psnr_torch(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB as a 0-d tensor on the inputs' device (no host synchronisation).

    Parameters
    ----------
    x, y : torch.Tensor
        Tensors of the same shape.
    data_range : float, optional
        Peak-to-peak range of the data.

    Returns
    -------
    torch.Tensor
        0-d tensor; ``inf`` for identical inputs.

    Examples
    --------
    >>> import torch
    >>> round(float(psnr_torch(torch.zeros(8, 8), torch.full((8, 8), 0.1))), 4)
    20.0
    """
    rng = _check_range(data_range)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    mse = (x - y).square().mean()
    return 10.0 * (rng * rng / mse).log10()


@lru_cache(maxsize=8)
def _gaussian_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """11-tap SSIM window, cached per device so that no host-to-device copy recurs."""
    import torch

    offsets = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=torch.float64)
    window = torch.exp(-0.5 * (offsets / _SSIM_SIGMA) ** 2)
    return (window / window.sum()).to(device=device, dtype=dtype)


def ssim_torch(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """SSIM as a 0-d tensor on the inputs' device; same numbers as :func:`ssim`.

    Gaussian window of 11 taps (sigma 1.5), population covariance, mean over
    the pixels at least 5 px from the border and over channels (and batch), as
    :func:`skimage.metrics.structural_similarity` with ``gaussian_weights=True,
    use_sample_covariance=False``.

    Parameters
    ----------
    x, y : torch.Tensor
        ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)`` of the same shape, both
        sides at least 11.
    data_range : float, optional
        Peak-to-peak range of the data.

    Returns
    -------
    torch.Tensor
        0-d tensor.

    Examples
    --------
    >>> import torch
    >>> img = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> round(float(ssim_torch(img, img)), 6)
    1.0
    """
    import torch
    import torch.nn.functional as F

    rng = _check_range(data_range)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    a = _as_nchw(x, "x")
    b = _as_nchw(y, "y").to(a.dtype)
    n, c, h, w = a.shape
    size = 2 * _SSIM_RADIUS + 1
    if min(h, w) < size:
        raise ValueError(f"both image sides must be at least {size} pixels, got {h} x {w}")
    window = _gaussian_window(a.device, a.dtype)
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1).reshape(n * c * 5, 1, h, w)
    stack = F.conv2d(stack, window.view(1, 1, size, 1))
    stack = F.conv2d(stack, window.view(1, 1, 1, size))
    ux, uy, uxx, uyy, uxy = stack.reshape(n, 5, c, h - size + 1, w - size + 1).unbind(1)
    c1 = (_SSIM_K1 * rng) ** 2
    c2 = (_SSIM_K2 * rng) ** 2
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean()


class SignalMeter:
    """On-device blur, sharpness, ratio and FBC for images of one size.

    Everything that depends only on the image size (band weights on the real
    FFT half-plane, MLV rank weights) is computed once at construction. The
    methods take ``(H, W)`` gray tensors (``(C, H, W)`` and ``(1, C, H, W)``
    are gray-converted with :func:`to_gray_torch`), move them to the meter's
    device and dtype if needed, and return tensors on that device without any
    host synchronisation, so they can run every iteration of a GPU loop.
    Values match the numpy path (:func:`blur`, :func:`sharpness`,
    :func:`band_correspondence`) to ~1e-9 in float64 and ~1e-5 in float32.
    Inputs are not checked for NaN here (that would synchronise).

    Parameters
    ----------
    height, width : int
        Image size, both at least :data:`MIN_SIDE`.
    device : str or torch.device, optional
        Where the signals are computed.
    dtype : torch.dtype, optional
        Floating-point computation dtype.
    bands : int, optional
        Number of frequency bands (the paper uses 5).

    Examples
    --------
    >>> import torch
    >>> meter = SignalMeter(64, 64, device="cpu", dtype=torch.float64)
    >>> img = torch.rand(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> meter.set_target(img)
    >>> torch.allclose(meter.fbc(img), torch.ones(5, dtype=torch.float64))
    True
    >>> sorted(meter.measure(img))
    ['blur', 'fbc', 'ratio', 'sharpness']
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        bands: int = 5,
    ) -> None:
        import torch

        if dtype is None:
            dtype = torch.float32
        if not dtype.is_floating_point or dtype.is_complex:
            raise ValueError(f"dtype must be a real floating-point dtype, got {dtype}")
        self.height = int(height)
        self.width = int(width)
        _check_side((self.height, self.width), "SignalMeter")
        self.bands = _check_bands(bands)
        self.device = torch.device(device)
        self.dtype = dtype

        labels, counts = _band_labels(self.height, self.width, self.bands)
        # Band weights on the rfft2 half-plane: every frequency of the full, centred
        # spectrum is mapped to its natural-order index and then to the rfft2 bin that
        # holds it or its conjugate (same magnitude for real images).
        natural = np.fft.ifftshift(labels)
        h, w = self.height, self.width
        half = w // 2 + 1
        u = np.broadcast_to(np.arange(h)[:, None], (h, w))
        v = np.broadcast_to(np.arange(w)[None, :], (h, w))
        mirrored = v >= half
        ru = np.where(mirrored, (-u) % h, u)
        rv = np.where(mirrored, (w - v) % w, v)
        inside = natural < self.bands
        weights = np.zeros((self.bands, h, half))
        np.add.at(weights, (natural[inside], ru[inside], rv[inside]), 1.0)
        weights /= np.asarray(counts, dtype=np.float64)[:, None, None]
        self._band_weights = torch.as_tensor(weights, dtype=dtype, device=self.device)

        mlv_count = h - 3
        mlv_count *= w - 3
        self._mlv_k = min(MLV_RANKS[1] + 1, mlv_count)
        self._mlv_weights = torch.as_tensor(
            _mlv_weights(self._mlv_k - MLV_RANKS[0]), dtype=dtype, device=self.device
        )
        self._inv_target: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"SignalMeter({self.height}, {self.width}, device={str(self.device)!r}, "
            f"dtype={self.dtype}, bands={self.bands})"
        )

    def to_gray(self, image: torch.Tensor) -> torch.Tensor:
        """Gray ``(H, W)`` tensor on the meter's device and dtype (see :func:`to_gray_torch`)."""
        gray = to_gray_torch(image)
        if tuple(gray.shape) != (self.height, self.width):
            raise ValueError(
                f"expected an image of {self.height} x {self.width} pixels, got shape "
                f"{tuple(image.shape)}"
            )
        return gray.to(device=self.device, dtype=self.dtype)

    def _spectrum(self, gray: torch.Tensor) -> torch.Tensor:
        import torch

        spectrum: torch.Tensor = torch.fft.rfft2(gray).abs()
        return spectrum

    def set_target(self, target: torch.Tensor) -> None:
        """Cache the target's spectrum (the degraded observation) for :meth:`fbc`."""
        self._inv_target = 1.0 / (self._spectrum(self.to_gray(target)) + _FBC_EPS)

    def fbc(self, output: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Frequency-band correspondence, ``(bands,)`` tensor, lowest band first.

        Parameters
        ----------
        output : torch.Tensor
            The network output.
        target : torch.Tensor, optional
            The degraded observation; default: the one given to :meth:`set_target`.
        """
        if target is not None:
            inv = 1.0 / (self._spectrum(self.to_gray(target)) + _FBC_EPS)
        elif self._inv_target is not None:
            inv = self._inv_target
        else:
            raise ValueError("no target: pass target= or call set_target() first")
        ratio = (self._spectrum(self.to_gray(output)) * inv).clamp(0.0, 1.0)
        return (self._band_weights * ratio).sum(dim=(-2, -1))

    def blur(self, image: torch.Tensor) -> torch.Tensor:
        """Crete blur (0-d tensor); see :func:`blur`."""
        gray = self.to_gray(image)
        return self._blur(gray)

    def _blur(self, gray: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.maximum(self._crete_direction(gray.t()), self._crete_direction(gray))

    def _crete_direction(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        m, n = x.shape
        lo, hi, half = _BLUR_LO, _BLUR_HI, BLUR_FILTER_SIZE // 2
        rows = x[lo : m - hi]
        d_f = (rows[:, lo : n - hi] - rows[:, lo - 1 : n - hi - 1]).abs()
        d_b = (
            rows[:, lo + half : n - hi + half] - rows[:, lo - half - 1 : n - hi - half - 1]
        ).abs() / BLUR_FILTER_SIZE
        s_f = d_f.sum()
        s_v = (d_f - d_b).clamp(min=0.0).sum()
        return torch.where(s_f > 0, (s_f - s_v) / s_f, torch.ones_like(s_f))

    def sharpness(self, image: torch.Tensor) -> torch.Tensor:
        """MLV sharpness (0-d tensor); see :func:`sharpness`."""
        return self._sharpness(self.to_gray(image))

    def _sharpness(self, gray: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        sub = gray[2:-1, 2:-1]
        p = F.pad(sub[None, None], (1, 1, 1, 1))[0, 0]
        row3 = torch.maximum(torch.maximum(p[:, :-2], p[:, 1:-1]), p[:, 2:])
        best = torch.maximum(row3[:-2], row3[2:])
        best = torch.maximum(best, torch.maximum(p[1:-1, :-2], p[1:-1, 2:]))
        values = torch.topk((best - sub).reshape(-1), self._mlv_k, sorted=True).values
        kept = values[MLV_RANKS[0] :] * self._mlv_weights
        return kept.square().mean().sqrt()

    def ratio(self, image: torch.Tensor) -> torch.Tensor:
        """Blur / sharpness (0-d tensor, ``inf`` for zero sharpness)."""
        gray = self.to_gray(image)
        return self._blur(gray) / self._sharpness(gray)

    def measure(
        self, output: torch.Tensor, target: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """All signals of one output at once.

        Returns
        -------
        dict
            ``{"fbc": (bands,), "blur": (), "sharpness": (), "ratio": ()}`` tensors on
            the meter's device.
        """
        gray = self.to_gray(output)
        b = self._blur(gray)
        s = self._sharpness(gray)
        return {"fbc": self.fbc(gray, target), "blur": b, "sharpness": s, "ratio": b / s}
