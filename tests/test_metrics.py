"""Signals of the stopping rule and the FBC plot against the paper's reference values.

`metric_values.json` holds what the paper's reference implementation computes on inputs
rebuilt here from scikit-image's bundled images. It is read from `<repo>/../shared/reference`
when present and otherwise from the copy in `tests/data`, so these tests never skip.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.signal import convolve2d
from skimage import data, img_as_float
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_specdip import metrics
from napari_specdip.metrics import (
    SignalMeter,
    band_correspondence,
    blur,
    blur_sharpness_ratio,
    psnr,
    psnr_torch,
    sharpness,
    ssim,
    ssim_torch,
    to_gray,
    to_gray_torch,
)

torch.set_num_threads(1)

TOL = 1e-3  # relative error allowed against the reference figures
_SHARED_JSON = (
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "metric_values.json"
)
_LOCAL_JSON = Path(__file__).resolve().parent / "data" / "metric_values.json"
BACKENDS = ["numpy", "torch-float64", "torch-float32"]


@cache
def reference() -> dict[str, Any]:
    path = _SHARED_JSON if _SHARED_JSON.is_file() else _LOCAL_JSON
    with path.open(encoding="utf-8") as fh:
        values: dict[str, Any] = json.load(fh)
    return values


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.clip(0.2989 * rgb[..., 0] + 0.5870 * rgb[..., 1] + 0.1140 * rgb[..., 2], 0, 1)


@cache
def inputs() -> dict[str, np.ndarray]:
    """Every input of the reference figures, built as shared/reference/README.md says."""
    bases = {
        "camera": img_as_float(data.camera()),
        "astronaut_gray": _luma(img_as_float(data.astronaut())),
    }
    images: dict[str, np.ndarray] = {}
    for name, image in bases.items():
        images[name] = image
        images[f"{name}+blur1"] = gaussian_filter(image, 1.0)
        images[f"{name}+blur3"] = gaussian_filter(image, 3.0)
        noise = np.random.default_rng(0).normal(0, 25 / 255, image.shape)
        images[f"{name}+noise25"] = np.clip(image + noise, 0, 1)
    for image in images.values():
        image.setflags(write=False)
    return images


@cache
def meter(height: int, width: int, dtype: torch.dtype) -> SignalMeter:
    return SignalMeter(height, width, device="cpu", dtype=dtype)


def _dtype(backend: str) -> torch.dtype:
    return torch.float64 if backend == "torch-float64" else torch.float32


def _per_image(backend: str, image: np.ndarray) -> tuple[float, float, float]:
    if backend == "numpy":
        return blur(image), sharpness(image), blur_sharpness_ratio(image)
    m = meter(*image.shape, _dtype(backend))
    tensor = torch.tensor(image)
    signals = m.measure(tensor, tensor)
    return float(signals["blur"]), float(signals["sharpness"]), float(signals["ratio"])


def _fbc(backend: str, output: np.ndarray, target: np.ndarray) -> np.ndarray:
    if backend == "numpy":
        return band_correspondence(output, target)
    m = meter(*output.shape, _dtype(backend))
    values = m.fbc(torch.tensor(output), torch.tensor(target))
    return values.double().numpy()


def _rel(value: float | np.ndarray, expected: float | np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(value) - expected) / np.abs(expected)))


# ----------------------------------------------------------------------- reference values


def test_json_copy_matches_shared() -> None:
    local = json.loads(_LOCAL_JSON.read_text(encoding="utf-8"))
    assert len(local["per_image"]) == 8 and len(local["fbc"]) == 6
    if _SHARED_JSON.is_file():
        assert json.loads(_SHARED_JSON.read_text(encoding="utf-8")) == local


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(reference()["per_image"]))
def test_per_image_reference(name: str, backend: str) -> None:
    expected = reference()["per_image"][name]
    b, s, r = _per_image(backend, inputs()[name])
    assert _rel(b, expected["blur"]) <= TOL
    assert _rel(s, expected["sharpness"]) <= TOL
    assert _rel(r, expected["ratio"]) <= TOL
    if backend != "torch-float32":  # float64 reproduces the reference to rounding
        assert _rel(b, expected["blur"]) < 1e-9
        assert _rel(s, expected["sharpness"]) < 1e-9
        assert _rel(r, expected["ratio"]) < 1e-9


def _split_pair(key: str) -> tuple[str, str]:
    out, tgt = key.split(" ")
    assert out.startswith("out=") and tgt.startswith("target=")
    return out.removeprefix("out="), tgt.removeprefix("target=")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pair", sorted(reference()["fbc"]))
def test_fbc_reference(pair: str, backend: str) -> None:
    expected = np.asarray(reference()["fbc"][pair])
    out, tgt = _split_pair(pair)
    values = _fbc(backend, inputs()[out], inputs()[tgt])
    assert values.shape == (5,)
    assert _rel(values, expected) <= TOL
    if backend != "torch-float32":
        assert _rel(values, expected) < 1e-9


# ------------------------------------------------ literal formulations, any shape (non-square)


def _literal_blur(image: np.ndarray) -> float:
    """METHOD.md section 7 with MATLAB-style zero-padded 'same' convolutions."""
    m, n = image.shape
    box = np.ones((1, 9)) / 9
    b_rows = convolve2d(image, box, "same")[5 : m - 4, 5 : n - 4]
    b_cols = convolve2d(image, box.T, "same")[5 : m - 4, 5 : n - 4]
    img = image[5 : m - 4, 5 : n - 4]
    m, n = img.shape
    diff = np.array([[1.0, -1.0]])
    result = []
    for blurred, kernel in ((b_rows, diff), (b_cols, diff.T)):
        d_f = np.abs(convolve2d(img, kernel, "same"))[1 : m - 1, 1 : n - 1]
        d_b = np.abs(convolve2d(blurred, kernel, "same"))[1 : m - 1, 1 : n - 1]
        v = np.maximum(d_f - d_b, 0)
        result.append((d_f.sum() - v.sum()) / d_f.sum())
    return float(max(result))


def _literal_sharpness(image: np.ndarray) -> float:
    sub = image[2:-1, 2:-1]
    padded = np.pad(sub, 1)
    h, w = sub.shape
    shifts = [
        padded[dy : dy + h, dx : dx + w] - sub
        for dy in range(3)
        for dx in range(3)
        if (dy, dx) != (1, 1)
    ]
    values = np.sort(np.max(shifts, axis=0).ravel())[::-1]
    ranks = np.arange(values.size)
    kept = (values * np.exp(-0.01 * ranks))[2:1001]
    return float(np.sqrt(np.mean(kept**2)))


def _literal_fbc(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    f_out = np.abs(np.fft.fftshift(np.fft.fft2(output)))
    f_tgt = np.abs(np.fft.fftshift(np.fft.fft2(target)))
    ratio = np.clip(f_out / (f_tgt + 1e-8), 0, 1)
    h, w = ratio.shape
    rows, cols = np.mgrid[:h, :w]
    dist = np.hypot(cols - int(w / 2), rows - int(h / 2))
    values, inner = [], np.zeros((h, w), dtype=bool)
    for k in range(1, 6):
        disk = dist <= int(w / 2) * np.linspace(0.2, 1, 5)[k - 1]
        values.append(ratio[disk & ~inner].mean())
        inner = disk
    return np.asarray(values)


def _pair_images(shape: tuple[int, int], seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    output = gaussian_filter(rng.random(shape), 1.5)
    target = np.clip(output + rng.normal(0, 0.1, shape), 0, 1)
    return output, target


SHAPES = [(48, 80), (80, 48), (37, 64), (64, 37), (16, 16), (33, 21)]


@pytest.mark.parametrize("shape", SHAPES)
def test_any_shape_matches_literal_formulation(shape: tuple[int, int]) -> None:
    output, target = _pair_images(shape)
    expected = (_literal_blur(output), _literal_sharpness(output), _literal_fbc(output, target))
    assert _rel(blur(output), expected[0]) < 1e-12
    assert _rel(sharpness(output), expected[1]) < 1e-12
    np.testing.assert_allclose(band_correspondence(output, target), expected[2], rtol=1e-12)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        m = SignalMeter(*shape, dtype=dtype)
        t_out, t_tgt = torch.tensor(output), torch.tensor(target)
        assert _rel(float(m.blur(t_out)), expected[0]) < tol
        assert _rel(float(m.sharpness(t_out)), expected[1]) < tol
        np.testing.assert_allclose(m.fbc(t_out, t_tgt).double().numpy(), expected[2], rtol=tol)


def test_non_square_fbc_is_not_the_transpose() -> None:
    output, target = _pair_images((48, 80))
    wide = band_correspondence(output, target)
    tall = band_correspondence(output.T, target.T)
    assert not np.allclose(wide, tall)  # radii follow the width: orientation matters
    np.testing.assert_allclose(tall, _literal_fbc(output.T, target.T), rtol=1e-12)


# ------------------------------------------------------------- numpy and torch paths agree


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_meter_agrees_with_numpy(dtype: torch.dtype) -> None:
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    output, target = _pair_images((96, 64), seed=3)
    m = SignalMeter(96, 64, dtype=dtype)
    m.set_target(torch.tensor(target))
    signals = m.measure(torch.tensor(output))
    assert signals["fbc"].dtype == dtype and signals["fbc"].shape == (5,)
    assert all(
        signals[k].shape == () and signals[k].dtype == dtype for k in ("blur", "sharpness", "ratio")
    )
    assert _rel(float(signals["blur"]), blur(output)) < tol
    assert _rel(float(signals["sharpness"]), sharpness(output)) < tol
    assert _rel(float(signals["ratio"]), blur_sharpness_ratio(output)) < tol
    assert _rel(signals["fbc"].double().numpy(), band_correspondence(output, target)) < tol
    # set_target() and an explicit target give the same numbers
    explicit = m.fbc(torch.tensor(output), torch.tensor(target))
    torch.testing.assert_close(explicit, signals["fbc"])
    assert _rel(float(m.ratio(torch.tensor(output))), blur_sharpness_ratio(output)) < tol


def test_public_functions_accept_tensors() -> None:
    output, target = _pair_images((40, 56), seed=4)
    t_out, t_tgt = torch.tensor(output), torch.tensor(target)
    assert blur(t_out) == blur(output)
    assert sharpness(t_out.float()) == pytest.approx(
        sharpness(output.astype(np.float32)), rel=1e-12
    )
    assert blur_sharpness_ratio(t_out) == blur_sharpness_ratio(output)
    np.testing.assert_array_equal(
        band_correspondence(t_out, t_tgt), band_correspondence(output, target)
    )
    np.testing.assert_array_equal(
        band_correspondence(t_out[None, None], target), band_correspondence(output, target)
    )
    assert psnr(t_out, t_tgt) == psnr(output, target)
    assert ssim(t_out, t_tgt) == ssim(output, target)
    assert isinstance(blur(t_out), float) and isinstance(sharpness(t_out), float)


# --------------------------------------------------------------------------- colour input


def test_rgb_equals_its_gray_conversion() -> None:
    rgb = img_as_float(data.astronaut())
    gray = inputs()["astronaut_gray"]
    np.testing.assert_array_equal(to_gray(rgb), gray)
    expected = reference()["per_image"]["astronaut_gray"]
    assert _rel(blur(rgb), expected["blur"]) < 1e-9
    assert _rel(sharpness(rgb), expected["sharpness"]) < 1e-9
    assert blur_sharpness_ratio(rgb) == blur_sharpness_ratio(gray)
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 25 / 255, rgb.shape), 0, 1)
    np.testing.assert_array_equal(
        band_correspondence(rgb, noisy), band_correspondence(gray, to_gray(noisy))
    )
    # torch: channel-first, gray-converted on the device
    chw = torch.tensor(rgb.transpose(2, 0, 1))
    torch.testing.assert_close(to_gray_torch(chw), torch.tensor(gray), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(to_gray(chw), to_gray(rgb))
    m = meter(512, 512, torch.float64)
    assert _rel(float(m.blur(chw)), expected["blur"]) < 1e-9
    assert _rel(float(m.sharpness(chw[None])), expected["sharpness"]) < 1e-9


def test_to_gray_channel_conventions() -> None:
    rng = np.random.default_rng(5)
    image = rng.random((20, 24, 2))
    np.testing.assert_array_equal(to_gray(image[..., :1]), image[..., 0])
    np.testing.assert_allclose(to_gray(image), image.mean(axis=-1))
    assert to_gray(image.astype(np.float32)).dtype == np.float64
    bright = np.ones((20, 24, 3)) * 1.2  # luma is clipped to [0, 1], plain gray is not
    assert to_gray(bright).max() == 1.0
    assert to_gray(bright[..., 0]).max() == pytest.approx(1.2)
    tensor = torch.tensor(image.transpose(2, 0, 1).copy())
    torch.testing.assert_close(to_gray_torch(tensor), torch.tensor(image.mean(axis=-1)))
    torch.testing.assert_close(to_gray_torch(tensor[:1]), tensor[0])
    torch.testing.assert_close(to_gray_torch(tensor[0]), tensor[0])


# --------------------------------------------------------------------------- psnr and ssim


def test_psnr_matches_skimage() -> None:
    clean = inputs()["camera"]
    noisy = inputs()["camera+noise25"]
    expected = peak_signal_noise_ratio(clean, noisy, data_range=1.0)
    assert psnr(clean, noisy) == pytest.approx(expected, rel=1e-12)
    assert psnr(clean * 2, noisy * 2, data_range=2.0) == pytest.approx(expected, rel=1e-12)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        value = psnr_torch(torch.tensor(clean).to(dtype), torch.tensor(noisy).to(dtype))
        assert value.dtype == dtype and value.shape == ()
        assert float(value) == pytest.approx(expected, rel=tol)
    assert psnr(clean, clean) == math.inf
    assert float(psnr_torch(torch.zeros(4, 4), torch.zeros(4, 4))) == math.inf


@pytest.mark.parametrize("colour", [False, True])
def test_ssim_matches_skimage(colour: bool) -> None:
    if colour:
        clean = img_as_float(data.astronaut())[:200, 100:356]
        axis: int | None = -1
    else:
        clean = inputs()["camera"][100:300, 50:306]
        axis = None
    noisy = np.clip(clean + np.random.default_rng(2).normal(0, 0.1, clean.shape), 0, 1)
    expected = structural_similarity(
        clean,
        noisy,
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=axis,
    )
    assert ssim(clean, noisy) == pytest.approx(expected, rel=1e-12)
    layout = (2, 0, 1) if colour else (0, 1)
    a = torch.tensor(clean.transpose(layout))
    b = torch.tensor(noisy.transpose(layout))
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        value = ssim_torch(a.to(dtype), b.to(dtype))
        assert value.dtype == dtype and value.shape == ()
        assert abs(float(value) - expected) < tol
    assert float(ssim_torch(a[None], b[None])) == pytest.approx(expected, abs=1e-10)
    assert ssim(clean, clean) == pytest.approx(1.0)


# ------------------------------------------------------------------------ degenerate input


def test_constant_image() -> None:
    flat = np.full((32, 40), 0.5)
    assert blur(flat) == 1.0
    assert sharpness(flat) == 0.0
    assert blur_sharpness_ratio(flat) == math.inf
    m = SignalMeter(32, 40, dtype=torch.float64)
    signals = m.measure(torch.tensor(flat), torch.tensor(flat))
    assert float(signals["blur"]) == 1.0
    assert float(signals["sharpness"]) == 0.0
    assert float(signals["ratio"]) == math.inf


def test_small_images_use_the_ranks_they_have() -> None:
    image = _pair_images((20, 20), seed=6)[0]  # 17 x 17 MLV map: fewer than 1001 values
    assert sharpness(image) == pytest.approx(_literal_sharpness(image), rel=1e-12)
    m = SignalMeter(20, 20, dtype=torch.float64)
    assert float(m.sharpness(torch.tensor(image))) == pytest.approx(sharpness(image), rel=1e-12)


_BAD = [
    (np.array([[0.1, np.nan] * 10] * 20), "NaN"),
    (np.full((20, 20), np.inf), "NaN or infinite"),
    (np.zeros(40), "2D image"),
    (np.zeros((2, 20, 20, 3)), "2D image"),
    (np.zeros((0, 20)), "empty"),
    (np.zeros((20, 20), dtype=np.uint8), "floating-point"),
    (np.zeros((8, 64)), "at least 16"),
    (torch.zeros(2, 1, 20, 20), r"\(1, C, H, W\)"),
    (torch.zeros(20, 20, dtype=torch.int64), "floating-point"),
    (torch.full((20, 20), float("nan")), "NaN"),
]


@pytest.mark.parametrize(("image", "message"), _BAD)
def test_bad_input_raises(image: Any, message: str) -> None:
    for func in (blur, sharpness, blur_sharpness_ratio):
        with pytest.raises(ValueError, match=message):
            func(image)
    with pytest.raises(ValueError, match=message):
        band_correspondence(image, np.zeros((20, 20)))


def test_bad_pairs_and_options_raise() -> None:
    a = np.zeros((20, 20))
    with pytest.raises(ValueError, match="same spatial shape"):
        band_correspondence(a, np.zeros((20, 24)))
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, np.zeros((20, 21)))
    with pytest.raises(ValueError, match="NaN"):
        ssim(a, np.full((20, 20), np.nan))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((8, 20)), np.zeros((8, 20)))
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=0)
    with pytest.raises(ValueError, match="bands"):
        band_correspondence(a, a, bands=0)
    with pytest.raises(ValueError, match="at least 16"):
        SignalMeter(8, 64)
    with pytest.raises(ValueError, match="dtype"):
        SignalMeter(32, 32, dtype=torch.int32)
    m = SignalMeter(32, 32)
    with pytest.raises(ValueError, match="32 x 32"):
        m.blur(torch.zeros(32, 33))
    with pytest.raises(ValueError, match="set_target"):
        m.fbc(torch.zeros(32, 32))
    with pytest.raises(ValueError, match="same shape"):
        ssim_torch(torch.zeros(16, 16), torch.zeros(16, 17))


def test_other_band_counts() -> None:
    output, target = _pair_images((64, 64), seed=7)
    values = band_correspondence(output, target, bands=8)
    assert values.shape == (8,)
    m = SignalMeter(64, 64, dtype=torch.float64, bands=8)
    np.testing.assert_allclose(
        m.fbc(torch.tensor(output), torch.tensor(target)).numpy(), values, rtol=1e-10
    )
    # 5 bands is the paper's default
    np.testing.assert_array_equal(
        band_correspondence(output, target, bands=5), band_correspondence(output, target)
    )


def test_import_does_not_load_torch_or_qt() -> None:
    code = (
        "import sys, napari_specdip.metrics as m; "
        "bad = [k for k in ('torch', 'qtpy', 'napari', 'magicgui') if k in sys.modules]; "
        "assert not bad, bad; "
        "import numpy as np; assert m.blur(np.random.default_rng(0).random((32, 32))) > 0"
    )
    src = str(Path(metrics.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
