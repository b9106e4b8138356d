"""Tiled restoration: the grid, the blend, and the engine's tiled runs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_specdip import (RestoreParameters, StepReport, estimate, iter_restore, plan_restore,
                            restore)
from napari_specdip.core.engine import run_to_end
from napari_specdip.core.estimate import memory_needed, tile_load
from napari_specdip.core.tiling import BlendCanvas, blend_weights, tile_grid

FAST = {"width": 8, "max_iterations": 6, "stop": "none", "signal_every": 2, "seed": 3}


@pytest.mark.parametrize(("height", "width", "tile", "overlap"),
                         [(100, 70, 32, 4), (64, 64, 32, 0), (300, 41, 128, 16), (33, 200, 48, 8)])
def test_cores_partition_the_image_and_tiles_add_their_margins(
        height: int, width: int, tile: int, overlap: int) -> None:
    tiles = tile_grid(height, width, tile=tile, overlap=overlap)
    owner = np.zeros((height, width), int)
    for t in tiles:
        top, bottom, left, right = t.core
        assert bottom - top <= tile and right - left <= tile
        owner[top:bottom, left:right] += 1
        assert t.top == max(0, top - overlap) and t.bottom == min(height, bottom + overlap)
        assert t.left == max(0, left - overlap) and t.right == min(width, right + overlap)
    assert np.all(owner == 1)


def test_an_image_within_one_tile_and_its_margins_is_one_tile() -> None:
    assert len(tile_grid(160, 150, tile=128, overlap=16)) == 1
    assert len(tile_grid(161, 150, tile=128, overlap=16)) == 2


@pytest.mark.parametrize("scale", [1, 2])
def test_blend_weights_sum_to_one_and_rebuild_the_image(scale: int) -> None:
    height, width, overlap = 90, 75, 6
    tiles = tile_grid(height, width, tile=32, overlap=overlap)
    total = np.zeros((height * scale, width * scale))
    for t in tiles:
        total[t.slices(scale)] += blend_weights(t, height, width, scale)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    image = np.random.default_rng(0).random((height * scale, width * scale, 2))
    canvas = BlendCanvas(height, width, 2, scale=scale)
    for t in tiles:
        canvas.add(t, image[t.slices(scale)])
    np.testing.assert_allclose(canvas.image(np.zeros_like(image)), image, atol=1e-12)


def test_the_canvas_shows_the_fallback_where_no_tile_is_done() -> None:
    tiles = tile_grid(64, 64, tile=32, overlap=4)
    canvas = BlendCanvas(64, 64, 1)
    canvas.add(tiles[0], np.ones(tiles[0].shape + (1,)))
    out = canvas.image(np.full((64, 64, 1), 7.0))
    assert np.all(out[:28, :28] == 1.0) and np.all(out[40:, 40:] == 7.0)
    pending = canvas.image(np.zeros((64, 64, 1)), (tiles[-1], np.full(tiles[-1].shape + (1,), 3.0)))
    assert np.all(pending[40:, 40:] == 3.0) and np.all(canvas.image(np.zeros((64, 64, 1)))[40:, 40:] == 0)


def test_a_tiled_run_reports_over_all_tiles_and_keeps_the_input_layout() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((80, 70, 3)) * 255).astype(np.uint8)
    run = iter_restore(image, channel_axis=-1, tile=32, tile_overlap=4, preview_every=3, **FAST)
    reports: list[StepReport] = []
    result = run_to_end(run, reports.append)
    tiles = 9
    assert [r.iteration for r in reports] == list(range(1, tiles * 6 + 1))
    assert {r.max_iterations for r in reports} == {tiles * 6} and {r.tiles for r in reports} == {9}
    assert [r.tile for r in reports] == sorted(r.tile for r in reports)
    previews = [r.preview for r in reports if r.preview is not None]
    assert previews and all(p.shape == image.shape and p.dtype == np.uint8 for p in previews)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert result.iterations == tiles * 6 and result.stop_reason == "max_iterations"
    assert result.parameters["tile"] == 32 and result.parameters["tiles_restored"] == tiles
    assert [t["iterations"] for t in result.parameters["tiles"]] == [6] * tiles
    # each tile's hold-out stop measures the noise on its own pixels
    assert all(t["stop_noise_variance"] > 0 for t in result.parameters["tiles"])
    assert "stop_noise_variance" not in result.parameters
    h = result.history
    assert len(h["iteration"]) == len(h["loss"]) == tiles * 6
    assert len(h["signal_iteration"]) == len(h["fbc1"]) == len(h["signal_tile"]) == tiles * 3
    assert np.all(np.diff(h["signal_iteration"]) > 0)


def test_each_tile_is_the_run_on_its_crop() -> None:
    """Where a tile owns its pixels alone, the tiled result is the restoration of its
    crop by itself (same seed, same noise-free [0, 1] data)."""
    image = np.random.default_rng(1).random((72, 40)).astype(np.float64)
    options = {**FAST, "output_dtype": np.float64}
    tiled = restore(image, tile=32, tile_overlap=4, **options)
    tiles = tile_grid(72, 40, tile=32, overlap=4)
    first = tiles[0]
    alone = restore(image[first.slices()], **options)
    top, bottom, _, _ = first.core
    np.testing.assert_allclose(tiled.image[: bottom - 4], alone.image[: bottom - 4], atol=1e-6)


def test_a_single_tile_is_the_untiled_run() -> None:
    image = np.random.default_rng(2).random((48, 40))
    a = restore(image, tile=32, tile_overlap=8, **FAST)
    b = restore(image, **FAST)
    np.testing.assert_array_equal(a.image, b.image)
    assert "tiles" not in a.parameters


def test_a_stop_keeps_the_tiles_done_and_the_input_elsewhere() -> None:
    image = np.random.default_rng(3).random((96, 96))
    stop = threading.Event()
    run = iter_restore(image, tile=32, tile_overlap=4, interrupt=stop, **FAST)

    def stop_in_the_second_tile(report: StepReport) -> None:
        if report.iteration == 8:
            stop.set()

    result = run_to_end(run, stop_in_the_second_tile)
    assert result.stop_reason == "stopped" and result.parameters["tiles_restored"] == 2
    assert result.iterations == 8 and np.all(np.isfinite(result.image))
    np.testing.assert_allclose(result.image[60:, 60:], image[60:, 60:], atol=1e-6)


def test_tiled_super_resolution_and_ensemble_uncertainty() -> None:
    image = np.random.default_rng(4).random((70, 40))
    sr = restore(image, task="super-resolve", factor=2, tile=32, tile_overlap=4, **FAST)
    assert sr.image.shape == (140, 80)
    ens = restore(image, ensemble=2, tile=32, tile_overlap=4, **FAST)
    assert ens.uncertainty is not None and ens.uncertainty.shape == image.shape
    assert np.all(np.isfinite(ens.uncertainty)) and ens.uncertainty.max() > 0


def test_tile_options_are_checked() -> None:
    image = np.zeros((100, 100)) + np.eye(100)
    with pytest.raises(ValueError, match="at least 32"):
        plan_restore(image, tile=16)
    with pytest.raises(ValueError, match="half the tile"):
        plan_restore(image, tile=32, tile_overlap=20)
    with pytest.raises(ValueError, match="warm_start and keep_state"):
        plan_restore(image, tile=32, keep_state=True)
    plan_restore(image, tile=128, keep_state=True)  # one tile: one network to hand on
    hole = np.zeros((100, 100), bool)
    hole[:40, :40] = True
    with pytest.raises(ValueError, match="wholly inside the mask"):
        plan_restore(image, "inpaint", mask=hole, tile=32, tile_overlap=2)
    plan_restore(image, "inpaint", mask=hole, tile=64)


def test_the_estimate_counts_the_tiles() -> None:
    image = np.random.default_rng(5).random((200, 200))
    job = plan_restore(image, tile=64, tile_overlap=8, width=8, device="cpu")
    assert len(job.tiles) == 16 and 1 < tile_load(job) < 16
    whole = plan_restore(image, width=8, device="cpu")
    assert memory_needed(job).total < memory_needed(whole).total
    found = estimate(image, tile=64, tile_overlap=8, width=8, max_iterations=10, device="cpu")
    assert found.tiles == 16 and found.iterations == 160
    assert found.seconds == pytest.approx(found.seconds_per_iteration * 10 * found.tile_load
                                          + 16 * found.setup_seconds)
    assert "16 tiles" in found.describe()


def test_tile_auto_tiles_large_images_on_a_cpu_only_where_measured() -> None:
    """``tile="auto"`` (the quick preset's for denoising): 128 px tiles on a CPU from
    512 px up, the whole image below that, and for a run that hands its network on."""
    from napari_specdip.core.params import AUTO_TILE, AUTO_TILE_FROM

    quick = RestoreParameters.for_task("denoise", preset="quick")
    assert quick.tile == "auto"
    assert RestoreParameters.for_task("denoise").tile == 0
    assert all(RestoreParameters.for_task(task, preset="quick").tile == 0
               for task in ("deblock", "inpaint", "super-resolve", "enhance"))
    assert RestoreParameters.for_task("denoise", preset="paper").tile == 0
    with pytest.raises(ValueError, match="'auto'"):
        quick.replace(tile=16)
    with pytest.raises(ValueError, match="half the tile"):
        quick.replace(tile_overlap=AUTO_TILE)

    rng = np.random.default_rng(0)
    large = rng.random((AUTO_TILE_FROM, AUTO_TILE_FROM - 100))
    job = plan_restore(large, parameters=quick.replace(device="cpu"))
    assert job.tile_side == AUTO_TILE and len(job.tiles) > 1
    assert job.params.tile == "auto"  # the record keeps what was asked
    small = plan_restore(large[:AUTO_TILE_FROM - 1], parameters=quick.replace(device="cpu"))
    assert small.tile_side == 0 and len(small.tiles) == 1
    # a warm-started stack keeps one network per slice
    handed_on = plan_restore(large, parameters=quick.replace(device="cpu"), keep_state=True)
    assert handed_on.tile_side == 0 and len(handed_on.tiles) == 1
    explicit = plan_restore(large, parameters=quick.replace(device="cpu", tile=0))
    assert explicit.tile_side == 0


def test_an_auto_tiled_run_records_the_tile_it_used() -> None:
    image = np.random.default_rng(1).random((512, 160))
    result = restore(image, tile="auto", device="cpu", width=4, max_iterations=1, stop="none",
                     signal_every=1)
    assert result.parameters["tile"] == "auto" and result.parameters["tile_used"] == 128
    assert result.parameters["tiles_restored"] == 4 and result.image.shape == image.shape
    whole = restore(image[:64, :64], tile="auto", device="cpu", width=4, max_iterations=1,
                    stop="none", signal_every=1)
    assert whole.parameters["tile_used"] == 0 and "tiles" not in whole.parameters


def test_the_estimate_plans_auto_tiles_as_the_run_will() -> None:
    """A warm-started stack's slices are fitted whole under tile="auto": its estimate
    must not count the tiles a single image would get."""
    image = np.random.default_rng(2).random((512, 160))
    options = {"tile": "auto", "device": "cpu", "width": 4, "max_iterations": 10}
    assert estimate(image, **options).tiles == 4
    assert estimate(image, keep_state=True, **options).tiles == 1


WARM = {"width": 8, "max_iterations": 40, "signal_every": 5, "seed": 3, "holdout_patience": 20,
        "holdout_patience_warm": 10, "output_dtype": np.float64}


def test_each_tile_after_the_first_starts_from_the_network_the_tile_before_ended_with(
        ) -> None:
    """Denoising with the auto stop: tile k is the run on its crop warm-started from tile
    k - 1's kept network, with the warm patience; the record says which tiles were."""
    rng = np.random.default_rng(6)
    image = np.clip(0.5 + 0.3 * np.sin(np.arange(96) / 5)[None, :] + rng.normal(0, 0.1, (40, 96)),
                    0, 1)
    tiled = restore(image, tile=32, tile_overlap=4, **WARM)
    tiles = tile_grid(40, 96, tile=32, overlap=4)
    records = tiled.parameters["tiles"]
    assert [t["warm_start"] for t in records] == [False, True, True]
    assert tiled.parameters["tile_warm_start"] is True and tiled.state is None
    first = restore(image[tiles[0].slices()], keep_state=True, **WARM)
    second = restore(image[tiles[1].slices()], warm_start=first.state, **WARM)
    assert records[1]["iterations"] == second.iterations
    owned = slice(tiles[0].right, tiles[2].left)  # the second tile's pixels alone
    np.testing.assert_allclose(tiled.image[:, owned],
                               second.image[:, owned.start - tiles[1].left:
                                            owned.stop - tiles[1].left], atol=1e-6)
    np.testing.assert_array_equal(restore(image, tile=32, tile_overlap=4, **WARM).image,
                                  tiled.image)  # the same seed, the same result

    cold = restore(image, tile=32, tile_overlap=4, tile_warm_start=False, **WARM)
    assert not any(t["warm_start"] for t in cold.parameters["tiles"])
    alone = restore(image[tiles[1].slices()], **WARM)
    assert cold.parameters["tiles"][1]["iterations"] == alone.iterations


@pytest.mark.parametrize(("task", "stop"), [("denoise", "none"), ("denoise", "ratio"),
                                          ("inpaint", "auto")])
def test_tiles_start_from_scratch_where_warm_tiles_were_not_measured(task: str, stop: str
                                                                     ) -> None:
    image = np.random.default_rng(7).random((40, 96))
    mask = np.zeros(image.shape, bool)
    mask[10:14, 10:14] = True
    result = restore(image, task, tile=32, tile_overlap=4, stop=stop,
                     **({"mask": mask} if task == "inpaint" else {}),
                     **{**WARM, "max_iterations": 6})
    assert not any(t["warm_start"] for t in result.parameters["tiles"])
    assert not RestoreParameters.for_task(task, stop=stop).warm_starts_tiles
    assert RestoreParameters.for_task("denoise").warm_starts_tiles


def test_a_tile_of_another_depth_starts_from_scratch() -> None:
    """Tiles 28 and 32 px wide get decoders of 1 and 2 levels: no network to hand on."""
    image = np.random.default_rng(8).random((40, 72))
    result = restore(image, tile=32, tile_overlap=4, **WARM)
    records = result.parameters["tiles"]
    assert [t["depth"] for t in records] == [1, 2, 1]
    assert [t["warm_start"] for t in records] == [False, False, False]
