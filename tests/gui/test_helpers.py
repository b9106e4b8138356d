"""The widget's Qt-free helpers: regions, progress and time left, words and numbers."""

from __future__ import annotations

import dataclasses
import doctest
import math

import numpy as np
import pytest

from napari_specdip._napari import _estimating, _eta, _help, _region
from napari_specdip._napari._planning import Box
from napari_specdip.core.estimate import Estimate
from napari_specdip.core.params import AUTO_TILE, RestoreParameters


@pytest.mark.parametrize("module", [_eta, _help, _region, _estimating])
def test_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0


def test_pixel_box_clips_the_view_to_the_image() -> None:
    # a view from (-10.2, 5.6) to (40.4, 300.0) over a 64 x 128 plane
    assert _region.pixel_box([[-10.2, 5.6], [40.4, 300.0]], (64, 128)) == Box(0, 41, 6, 128)
    assert _region.pixel_box([[100.0, 0.0], [120.0, 10.0]], (64, 128)) is None


def test_fit_takes_the_centre_and_keeps_a_minimum() -> None:
    big = _region.fit(Box(0, 512, 100, 300), (512, 512), side=128)
    assert big.shape == (128, 128) and (big.y0 + big.y1) // 2 == 256 and big.x0 == 136
    small = _region.fit(Box(0, 5, 509, 512), (512, 512), side=128, minimum=32)
    assert small == Box(0, 32, 480, 512)
    tiny_image = _region.fit(Box(0, 10, 0, 10), (20, 20), side=128, minimum=32)
    assert tiny_image == Box(0, 20, 0, 20)


def test_side_shrinks_with_the_width_on_the_cpu() -> None:
    assert _region.side_for(32, on_cpu=True) == 128
    assert _region.side_for(64, on_cpu=True) == 96
    assert _region.side_for(128, on_cpu=True) == 64
    assert _region.side_for(128, on_cpu=False) == 128


def test_view_corners() -> None:
    corners = _region.view_corners((0.0, 50.0, 60.0), 2.0, (100, 200))
    np.testing.assert_allclose(corners, [[25.0, 10.0], [75.0, 110.0]])


def test_progress_speed_and_time_left() -> None:
    p = _eta.Progress(cap=1000, planes=2)
    p.update(0, 1, 3.0)  # the first step also builds the network: left out
    assert math.isnan(p.seconds_per_iteration)
    assert "measuring speed" in p.text()
    for it in range(2, 12):
        p.update(0, it, 3.0 + 0.5 * (it - 1))
    assert p.seconds_per_iteration == pytest.approx(0.5)
    assert p.done == 11 and p.total == 2000
    assert p.seconds_left == pytest.approx((2000 - 11) * 0.5)
    text = p.text()
    # the share is the stack's: said so, since it sits beside this slice's iterations
    assert text.startswith("slice 1 of 2, iteration 11 / 1000 (1% of the stack)")
    assert "0.50 s/it" in text and "about 17 min left at most" in text
    p.update(1, 5, 2.0)  # a new plane: speed is measured again
    assert p.done == 1005
    budget = _eta.Progress(cap=1000, budget_s=15.0)
    for it in range(1, 6):
        budget.update(0, it, float(it))
    assert budget.seconds_left == pytest.approx(10.0)
    assert "time budget 15 s" in budget.text()
    assert budget.text().startswith("iteration 5 / 1000 (0%)")


def test_numbers_are_shown_and_read_as_typed() -> None:
    assert _help.format_number(0.001) == "0.001"
    assert _help.parse_number(" 1e-3 ", "learning rate") == 0.001
    with pytest.raises(ValueError, match="not a number"):
        _help.parse_number("abc", "learning rate")
    with pytest.raises(ValueError, match="positive"):
        _help.parse_number("0", "learning rate", positive=True)
    with pytest.raises(ValueError, match=">= 0"):
        _help.parse_number("-1", "stop ε")


def test_toasts_are_one_line() -> None:
    text = _help.toast("the run failed: " + "very long detail " * 10)
    assert len(text) <= _help.TOAST_CHARS and text.endswith("…") and "\n" not in text


def test_docs_url_is_a_link() -> None:
    assert _help.docs_url().startswith("https://")
    words, url = _help.docs_link()  # the paper is called the paper, not the documentation
    assert url == _help.docs_url()
    assert (words == "The method's paper") == (url == _help.PAPER_URL)


def _estimate(per_step: float, iterations: int, *, fits: bool = True,
              canvas: tuple[int, int] = (0, 0), device: str = "cpu") -> Estimate:
    return Estimate(seconds=per_step * iterations, seconds_per_iteration=per_step,
                    iterations=iterations, peak_memory_bytes=310_000_000,
                    available_memory_bytes=8_000_000_000, device=device, fits=fits,
                    canvas=canvas,
                    advice="" if fits else "needs about 9.0 GB on cpu but only 8.0 GB is "
                                           "available; try a smaller width (32 instead of 64)")


def test_the_estimate_suggests_tiles_for_large_images_on_a_cpu() -> None:
    quick = RestoreParameters.for_task("denoise", preset="quick", tile=0)
    hint = f"tile {AUTO_TILE} would finish sooner"
    assert hint in _estimating.estimate_text(_estimate(0.8, 1500, canvas=(512, 512)), quick)
    for found, params in [
            (_estimate(0.8, 1500, canvas=(512, 512)), quick.replace(tile=128)),
            (_estimate(0.8, 1500, canvas=(512, 512)), quick.replace(tile="auto")),
            (_estimate(0.01, 1500, canvas=(512, 512), device="cuda:0 (H100)"), quick),
            (_estimate(0.05, 1500, canvas=(128, 192)), quick),
            (_estimate(0.2, 1500, canvas=(256, 384)), quick),
            (_estimate(25.0, 10000, canvas=(512, 512)),
             RestoreParameters.for_task("denoise", preset="paper"))]:
        assert hint not in _estimating.estimate_text(found, params)


def test_estimate_text_says_the_deblocking_budget_and_the_quality_found() -> None:
    deblock = RestoreParameters.for_task("deblock")
    found = dataclasses.replace(_estimate(0.35, 450), jpeg_quality=10)
    text = _estimating.estimate_text(found, deblock)
    assert text == ("≈ 35 s per 100 it · at most 3 min · 450 it for JPEG quality ≈ 10 · "
                    "310 MB")
    plain = _estimating.estimate_text(_estimate(0.35, 1000), deblock)
    assert "1000 it (no JPEG blocks found)" in plain and "usually" not in plain
    assert "JPEG" not in _estimating.estimate_text(found, deblock.replace(stop="none"))


def test_estimate_text_says_time_per_step_cap_usual_range_and_memory() -> None:
    balanced = RestoreParameters.for_task("denoise")  # stop auto, at most 3000 iterations
    from napari_specdip.core.estimate import typical_stop

    low, high = typical_stop(balanced, 128, 128) or (0, 0)
    text = _estimating.estimate_text(_estimate(0.35, 3000), balanced)
    usual = _estimating.rough_range(low * 0.35, high * 0.35)
    assert text == f"≈ 35 s per 100 it · at most 18 min · usually {usual} · 310 MB"
    # a stack: the cap and the usual range for every slice
    text = _estimating.estimate_text(_estimate(0.35, 3000), balanced, planes=4)
    assert "at most 1 h 10 min for 4 slices" in text
    # each slice's fit pays its setup (noise estimate, Wiener stage) besides its steps
    slow = dataclasses.replace(_estimate(0.35, 3000), setup_seconds=60.0)
    text = _estimating.estimate_text(slow, balanced, planes=4)
    usual = _estimating.rough_range(4 * (low * 0.35 + 60), 4 * (high * 0.35 + 60))
    assert f"usually {usual} ·" in text
    # no measured range for the other rules, and none past the cap
    for params in (balanced.replace(stop="none"), RestoreParameters.for_task(
            "denoise", preset="paper")):
        assert "usually" not in _estimating.estimate_text(_estimate(0.35, 3000), params)
    assert typical_stop(balanced.replace(max_iterations=500), 128, 128) == (low, 500)
    refused = _estimating.estimate_text(_estimate(math.nan, 3000, fits=False), balanced)
    assert refused == ("Will not fit: needs about 9.0 GB on cpu but only 8.0 GB is available; "
                       "try a smaller width (32 instead of 64)")
