"""The JPEG quantisation read from decoded pixels, and the deblocking budget it sets."""

from __future__ import annotations

import dataclasses
import io

import imageio.v3 as iio
import numpy as np
import numpy.typing as npt
import pytest
from skimage import data

from napari_specdip.core.jpeg import (
    CONSISTENCY_SCALE_POWER,
    JpegEstimate,
    blockiness,
    deblock_budget,
    estimate_jpeg,
    excess,
    likely_grid,
)


@pytest.fixture(autouse=True)
def _read_afresh() -> None:
    """Each test reads its images itself (:func:`estimate_jpeg` remembers what it read)."""
    from napari_specdip.core import jpeg

    jpeg._READ.clear()


def _jpeg(image: npt.NDArray[np.uint8], quality: int) -> npt.NDArray[np.uint8]:
    encoded = iio.imwrite("<bytes>", image, extension=".jpg", quality=quality)
    return np.asarray(iio.imread(io.BytesIO(encoded), extension=".jpg"))


@pytest.mark.parametrize("quality", [10, 30, 50, 75])
def test_quality_and_grid_of_a_grey_crop(quality: int) -> None:
    decoded = _jpeg(data.camera()[100:228, 150:278], quality)
    found = estimate_jpeg(decoded[3:, 5:])  # cropped after decoding: the grid moves
    assert found is not None
    assert found.grid == (5, 3)
    assert found.quality == quality


def test_colour_is_read_through_its_luminance() -> None:
    decoded = _jpeg(data.astronaut()[:136, 100:236], 20)
    found = estimate_jpeg(decoded)
    assert found is not None and found.quality == 20 and found.grid == (0, 0)
    # [0, 1] floats are taken as levels / 255
    again = estimate_jpeg(decoded / 255.0)
    assert again is not None and again.levels_per_unit == 255.0
    assert dataclasses.replace(again, levels_per_unit=1.0) == found


@pytest.mark.parametrize("image", [
    np.random.default_rng(0).random((128, 128)),  # noise, never compressed
    np.tile(np.linspace(0.0, 1.0, 128), (128, 1)),  # a smooth ramp
    data.camera()[:128, :128],  # a PNG original
    np.zeros((8, 8)),  # too small for blocks
])
def test_no_quantisation_where_there_is_none(image: npt.NDArray[np.float64]) -> None:
    assert estimate_jpeg(image) is None


def _dark_cells(size: int = 64) -> npt.NDArray[np.uint8]:
    """Bright blobs on a black background, their cores saturated: a contrast-stretched
    fluorescence image, whose JPEG rings below 0 around every blob."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:size, :size]
    image = np.zeros((size, size))
    for cy, cx, r in rng.uniform((0, 0, 2), (size, size, 5), (10, 3)):
        image += 400.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r**2))
    return np.clip(image, 0, 255).astype(np.uint8)


def test_a_dark_jpeg_is_read_from_its_clipped_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import jpeg

    decoded = _jpeg(_dark_cells(), 10)
    found = estimate_jpeg(decoded[3:, 5:])
    assert found is not None and found.grid == (5, 3) and found.quality == 10
    # the blocks without a clipped pixel alone do not tell
    monkeypatch.setattr(jpeg, "_clipped_blocks_table", lambda *_: None)
    jpeg._READ.clear()  # read again, not remembered
    assert estimate_jpeg(decoded[3:, 5:]) is None


def test_an_image_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import jpeg

    reads: list[tuple[int, ...]] = []
    read_crop = jpeg._read_crop
    monkeypatch.setattr(jpeg, "_read_crop", lambda rgb: reads.append(rgb.shape) or read_crop(rgb))
    decoded = _jpeg(_dark_cells(), 10)
    first = estimate_jpeg(decoded[3:, 5:])
    # estimated, then run: the same pixels are not searched again, in any units
    assert estimate_jpeg(decoded[3:, 5:]) == first
    again = estimate_jpeg(decoded[3:, 5:] / 255.0)
    assert again is not None and again.levels_per_unit == 255.0
    assert dataclasses.replace(again, levels_per_unit=1.0) == first
    assert len(reads) == 1
    # other pixels are
    assert estimate_jpeg(decoded[2:, 5:]) is not None and len(reads) == 2


@pytest.mark.parametrize("noise", [0.0, 6.0])
def test_a_dark_image_never_compressed_has_no_quantisation(noise: float) -> None:
    rng = np.random.default_rng(0)
    image = np.clip(_dark_cells() + rng.normal(0.0, noise, (64, 64)), 0, 255).round()
    assert estimate_jpeg(image) is None


def test_clipped_blocks_count_where_their_coefficients_can_be_restored() -> None:
    from skimage.filters import gaussian

    from napari_specdip.core.jpeg import block_references, clipped_pixels

    clean = _dark_cells()
    decoded = _jpeg(clean, 10)
    found = estimate_jpeg(decoded)
    assert found is not None
    levels = decoded[..., None].astype(np.float64)
    usable, centres = block_references(levels, found)
    whole = ~clipped_pixels(levels).reshape(8, 8, 8, 8).any(axis=(1, 3)).reshape(-1)
    assert usable.sum() > whole.sum() + 10 and centres.shape == (usable.sum(), 8, 8)
    # the restored centres lie on the lattice, and the original within their intervals
    assert excess(clean, decoded, found) == 0.0
    assert excess(decoded, decoded, found) == 0.0
    assert excess(gaussian(clean.astype(float), sigma=2.0), decoded, found) > 1.0


def test_resampled_jpeg_has_lost_its_grid() -> None:
    from skimage.transform import rescale

    decoded = _jpeg(data.camera()[100:228, 150:278], 10).astype(float)
    assert estimate_jpeg(rescale(decoded, 1.3, order=1)) is None


def test_refuses_other_shapes() -> None:
    with pytest.raises(ValueError, match="grey or RGB"):
        estimate_jpeg(np.zeros((32, 32, 2)))


def test_budget_grows_with_size_and_lighter_compression_and_stays_capped() -> None:
    def budget(scale: float | None, side: int = 128, width: int = 32, cap: int = 10**6) -> int:
        found = None if scale is None else JpegEstimate((0, 0), scale, 11)
        return deblock_budget(found, side, side, width=width, learning_rate=1e-2, cap=cap)

    assert budget(5.0, 64) < budget(5.0, 128) < budget(5.0, 256)
    assert budget(5.0) < budget(1.67) < budget(1.0)
    assert budget(5.0, width=64) < budget(5.0, width=32) < budget(5.0, width=16)
    assert budget(1.0, cap=700) == 700
    assert budget(None) == 1000 and budget(None, cap=300) == 300
    assert budget(None, 64) < budget(None) < budget(None, 256)


def test_budget_grows_less_with_lighter_compression_at_a_smaller_step() -> None:
    def growth(learning_rate: float) -> float:
        light, heavy = (deblock_budget(JpegEstimate((0, 0), scale, 11), 256, 256, width=64,
                                       learning_rate=learning_rate, cap=10**6)
                        for scale in (1.0, 5.0))
        return light / heavy

    assert growth(1e-2) == pytest.approx(5.0, rel=0.01)  # the quick preset's step
    assert growth(3e-3) == pytest.approx(5.0**0.8, rel=0.01)  # the balanced preset's
    assert 1.0 < growth(1e-4) < growth(1e-3) < growth(3e-3) < growth(1e-2) < growth(3e-2)


def test_deblocking_stops_at_the_budget_of_its_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip import estimate, restore
    from napari_specdip.core import engine

    monkeypatch.setattr(engine, "CONSISTENT_EXCESS", None)  # the budget alone

    decoded = _jpeg(data.camera()[100:148, 150:198], 10)
    options = {"preset": "quick", "width": 16, "seed": 0, "device": "cpu"}
    expected = deblock_budget(estimate_jpeg(decoded), 48, 48, width=16, learning_rate=1e-2,
                              cap=1500)
    assert 1 < expected < 1500
    assert estimate(decoded, "deblock", **options).iterations == expected
    result = restore(decoded, "deblock", **options)
    assert result.iterations == expected == result.parameters["deblock_budget"]
    assert result.stop_reason == "deblock_budget"
    assert result.parameters["jpeg"]["quality"] == 10
    assert decoded.dtype == result.image.dtype == np.uint8


def test_other_stops_and_tasks_have_no_budget() -> None:
    from napari_specdip import restore

    decoded = _jpeg(data.camera()[100:148, 150:198], 10)
    fixed = restore(decoded, "deblock", preset="quick", width=8, stop="none", max_iterations=7)
    assert fixed.iterations == 7 and fixed.stop_reason == "max_iterations"
    assert "deblock_budget" not in fixed.parameters
    denoised = restore(decoded, "denoise", preset="quick", width=8, max_iterations=7)
    assert "jpeg" not in denoised.parameters
    # no JPEG found: the fixed budget, here under the cap given
    plain = restore(data.camera()[100:148, 150:198], "deblock", preset="quick", width=8,
                    max_iterations=6)
    assert plain.parameters["jpeg"] is None and plain.iterations == 6


def test_tiles_take_the_budget_of_their_own_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip import estimate, restore
    from napari_specdip.core import engine

    monkeypatch.setattr(engine, "CONSISTENT_EXCESS", None)  # the budget alone

    decoded = _jpeg(data.camera()[100:200, 150:250], 10)
    result = restore(decoded, "deblock", preset="quick", width=8, tile=48, tile_overlap=8)
    found = estimate_jpeg(decoded)
    assert result.parameters["jpeg"]["quality"] == 10
    tiles = result.parameters["tiles"]
    assert len(tiles) > 1
    for tile in tiles:
        top, bottom, left, right = tile["box"]
        budget = deblock_budget(found, bottom - top, right - left, width=8,
                                learning_rate=1e-2, cap=1500)
        assert tile["iterations"] == tile["deblock_budget"] == budget
    assert result.iterations == sum(t["iterations"] for t in tiles)
    assert len({t["deblock_budget"] for t in tiles}) > 1  # tiles of several sizes
    # the estimate counts each tile's own budget, as the run does
    planned = estimate(decoded, "deblock", preset="quick", width=8, tile=48, tile_overlap=8,
                       device="cpu")
    assert planned.iterations == result.iterations


def test_blockiness_on_the_grid_and_the_grid_where_no_quantisation_is_read() -> None:
    clean = data.camera()[100:164, 150:214]
    decoded = _jpeg(clean, 10)[3:, 5:]
    grid = estimate_jpeg(decoded)
    assert grid is not None and likely_grid(decoded) == grid.grid == (5, 3)
    assert blockiness(decoded, (5, 3)) > 2.0 * blockiness(clean[3:, 5:], (5, 3))
    assert blockiness(decoded, (5, 3)) > 2.0 * blockiness(decoded, (1, 1))  # off the grid


def test_a_deblocking_run_records_its_outputs_blockiness() -> None:
    from napari_specdip import iter_restore
    from napari_specdip.core.engine import run_to_end

    decoded = _jpeg(data.camera()[100:164, 150:214], 10) / 255.0  # float: no rounding
    seen: list[dict[str, float]] = []
    result = run_to_end(iter_restore(decoded, "deblock", width=8, depth=3, max_iterations=10,
                                     stop="none", signal_every=5, output="last"),
                        lambda r: seen.append(r.signals))
    signals = [s for s in seen if s]
    assert signals and all(s["blockiness"] > 0 for s in signals)
    assert "blockiness" in result.history
    # the device's measure is the numpy one
    last = result.image.astype(np.float64)
    assert signals[-1]["blockiness"] == pytest.approx(blockiness(last, (0, 0)), rel=0.05)


def test_the_original_and_its_jpeg_are_consistent_with_it_a_smooth_fit_is_not() -> None:
    from skimage.filters import gaussian

    for clean, quality in ((data.camera()[100:228, 150:278], 10),
                           (data.astronaut()[:136, 100:236], 30)):  # colour: 4:2:0 chroma
        decoded = _jpeg(clean, quality)
        found = estimate_jpeg(decoded)
        assert found is not None
        assert excess(decoded, decoded, found) == 0.0
        # colour: within the decoder's rounding through RGB, not always exactly
        assert excess(clean, decoded, found) <= (0.0 if clean.ndim == 2 else 0.05)
        blurred = gaussian(clean.astype(float), sigma=2.0, channel_axis=-1 if clean.ndim == 3
                           else None)
        assert excess(blurred, decoded, found) > 1.0
        # the same in [0, 1] units
        unit = estimate_jpeg(decoded / 255.0)
        assert unit is not None and unit.levels_per_unit == 255.0
        assert excess(blurred / 255.0, decoded / 255.0, unit) == pytest.approx(
            excess(blurred, decoded, found))
        with pytest.raises(ValueError, match="differ in shape"):
            excess(blurred[1:], decoded, found)


def test_the_grid_seen_from_a_crop() -> None:
    found = JpegEstimate((5, 3), 5.0, 11)
    assert found.shifted(0, 0) == found
    assert found.shifted(8, 16).grid == (5, 3)
    assert found.shifted(6, 3).grid == (7, 0)
    assert found.steps()[0, 0] == 80.0 and found.steps().max() == 255.0  # libjpeg's bound


def _levels(result: object) -> npt.NDArray[np.float64]:
    return np.asarray(result.history["jpeg_excess_ema"])  # type: ignore[attr-defined]


def test_the_engine_measures_the_outputs_consistency_in_the_inputs_levels() -> None:
    from napari_specdip import restore

    decoded = _jpeg(data.camera()[100:164, 150:214], 10)
    options = {"preset": "quick", "width": 8, "seed": 0, "device": "cpu", "stop": "none",
               "max_iterations": 20, "output_dtype": "float64"}
    result = restore(decoded, "deblock", **options)
    found = estimate_jpeg(decoded)
    assert found is not None
    measured = _levels(result)
    assert measured.shape == (4,) and measured[0] > measured[-1] > 0.0
    # the last evaluated step's moving average is the result
    assert measured[-1] == pytest.approx(excess(result.image, decoded, found), rel=1e-4)
    # the same image in [0, 1] units: the same levels
    again = restore(decoded / 255.0, "deblock", **options)
    np.testing.assert_allclose(_levels(again), measured, rtol=1e-4)
    # nothing to measure without a JPEG found
    plain = restore(data.camera()[100:164, 150:214], "deblock", **options)
    assert "jpeg_excess_ema" not in plain.history


def test_the_engine_measures_clipped_blocks_as_the_numpy_measure_does() -> None:
    from napari_specdip import restore

    decoded = _jpeg(_dark_cells(), 10)
    found = estimate_jpeg(decoded)
    assert found is not None
    result = restore(decoded, "deblock", preset="quick", width=8, seed=0, device="cpu",
                     stop="none", max_iterations=20, output_dtype="float64")
    measured = _levels(result)
    assert measured[0] > measured[-1] > 0.0
    assert measured[-1] == pytest.approx(excess(result.image, decoded, found), rel=1e-3)


def test_deblocking_stops_once_consistent_with_its_jpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip import restore
    from napari_specdip.core import engine

    decoded = _jpeg(data.camera()[100:148, 150:198], 10)
    options = {"preset": "quick", "width": 8, "seed": 0, "device": "cpu"}
    # a threshold every output meets: the rule ends the run at its first evaluated step
    monkeypatch.setattr(engine, "CONSISTENT_EXCESS", 1e9)
    result = restore(decoded, "deblock", **options)
    assert result.stop_reason == "jpeg_consistent"
    found = estimate_jpeg(decoded)
    assert found is not None
    # in the run record, scaled with the JPEG's steps
    assert result.parameters["jpeg_consistent_excess"] == pytest.approx(
        1e9 * (found.scale / 5.0) ** CONSISTENCY_SCALE_POWER)
    assert result.iterations == result.parameters["signal_every"] < result.parameters[
        "deblock_budget"]
    # none: the budget
    monkeypatch.setattr(engine, "CONSISTENT_EXCESS", None)
    budget = restore(decoded, "deblock", **options)
    assert budget.stop_reason == "deblock_budget"
    assert budget.parameters["jpeg_consistent_excess"] is None
    # the rule belongs to the auto stop
    monkeypatch.setattr(engine, "CONSISTENT_EXCESS", 1e9)
    fixed = restore(decoded, "deblock", stop="none", max_iterations=12, **options)
    assert fixed.stop_reason == "max_iterations" and fixed.iterations == 12


def test_tiles_measure_the_consistency_in_the_whole_images_levels() -> None:
    from napari_specdip import restore

    decoded = _jpeg(data.camera()[100:200, 150:250], 10)
    options = {"preset": "quick", "width": 8, "seed": 0, "device": "cpu", "tile": 48,
               "tile_overlap": 8}
    # 8-bit levels and [0, 1] floats: the same levels in every tile, so the same stops
    runs = [restore(image, "deblock", **options) for image in (decoded, decoded / 255.0)]
    tiles = [[(t["iterations"], t["stop_reason"]) for t in r.parameters["tiles"]] for r in runs]
    assert len(tiles[0]) > 1 and tiles[0] == tiles[1]
    # and no tile is consistent at its first evaluated step (levels read as 1/255 would be)
    assert all(iterations > 5 for iterations, _ in tiles[0])
