"""Runs a user can stumble into: blank slices, renamed inputs, double clicks, deleted docks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SIZE = 32


def _noisy(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _run_stack(viewer: Any, open_widget: Any, wait_for_run: Any, data: np.ndarray, task: str,
               *, holes: np.ndarray | None = None, warm_start: bool = False) -> Any:
    """Run ``task`` (6 iterations) on the stack ``data`` to its end; the widget."""
    image = viewer.add_image(data, name="z")
    widget = open_widget(task=task, iterations=6, stop="none")
    widget.image.value = image
    if holes is not None:
        widget.mask.value = viewer.add_labels(holes, name="holes")
    widget.warm_start.value = warm_start
    assert widget.start() is not None, widget.last_error
    wait_for_run(widget)
    return widget


def test_a_blank_slice_of_a_stack_is_copied_through(viewer: Any, open_widget: Any,
                                                     wait_for_run: Any) -> None:
    data = (_noisy((3, SIZE, SIZE)) * 4000).astype(np.uint16)
    data[0] = 0  # a blank first plane, as microscopes write
    widget = _run_stack(viewer, open_widget, wait_for_run, data, "denoise", warm_start=True)
    out = widget.last_output
    assert out.data.dtype == np.uint16 and out.data.shape == data.shape
    assert (out.data[0] == 0).all() and out.data[1:].std() > 0
    meta = out.metadata["specdip"]
    assert meta["stop_reason"] == ["constant", "max_iterations", "max_iterations"]
    assert meta["iterations"] == [0, 6, 6]
    assert meta["parameters"]["max_iterations"] == 6  # the record of a restored slice
    # the warm start is handed on from slice to slice past the blank one
    assert meta["stack"]["warm_started"] == [False, False, True]
    assert "1 slice was copied through (constant)" in widget.status.value
    assert "over 2 slices" in widget.status.value


def test_a_slice_with_no_hole_is_copied_through_not_smoothed(viewer: Any, open_widget: Any,
                                                             wait_for_run: Any) -> None:
    data = (_noisy((3, SIZE, SIZE)) * 4000).astype(np.uint16)
    holes = np.zeros((3, SIZE, SIZE), np.uint8)
    holes[[0, 2], 4:8, 4:8] = 1  # slice 1 has nothing to fill
    widget = _run_stack(viewer, open_widget, wait_for_run, data, "inpaint", holes=holes)
    out = widget.last_output
    np.testing.assert_array_equal(out.data[1], data[1])
    assert (out.data[0] != data[0]).any()
    meta = out.metadata["specdip"]
    assert meta["stop_reason"] == ["max_iterations", "nothing_to_fill", "max_iterations"]
    assert meta["mask_layer"] == "holes" and meta["filled_pixels_per_slice"] == [16, 0, 16]
    assert "1 slice was copied through (no pixel to fill)" in widget.status.value


def test_a_stacks_nan_pixels_are_filled_without_a_mask_layer(viewer: Any, open_widget: Any,
                                                             wait_for_run: Any) -> None:
    data = _noisy((3, SIZE, SIZE))
    data[0, 4:8, 4:8] = np.nan
    data[2, 10:12, :] = np.inf  # slice 1 has nothing to fill
    given = data.copy()
    widget = _run_stack(viewer, open_widget, wait_for_run, data, "inpaint")
    assert widget.mask.value is None
    out = widget.last_output
    assert np.isfinite(out.data).all()
    np.testing.assert_array_equal(out.data[1], data[1])
    known = np.isfinite(data)
    np.testing.assert_array_equal(out.data[known], data[known])
    meta = out.metadata["specdip"]
    assert meta["stop_reason"] == ["max_iterations", "nothing_to_fill", "max_iterations"]
    assert meta["mask_layer"] is None and meta["filled_pixels_per_slice"] == [16, 0, 64]
    np.testing.assert_array_equal(viewer.layers["z"].data, given)  # NaN where they were
    # a stack without any NaN pixel: nothing to fill in any slice
    widget.image.value = viewer.add_image(_noisy((2, SIZE, SIZE)), name="whole")
    assert widget.start() is not None  # refused by the worker's check of the slices
    wait_for_run(widget)
    assert "has no pixel to fill (masked or NaN)" in widget.status.value


def test_a_lazy_stack_is_read_slice_by_slice_and_restored_like_an_array(
        viewer: Any, open_widget: Any, wait_for_run: Any, session_reports: list[Any]) -> None:
    import dask.array as da

    from napari_specdip._napari import _planning

    data = (_noisy((3, SIZE, SIZE)) * 4000).astype(np.uint16)
    reads: list[Any] = []

    def plane(block: np.ndarray, block_info: Any = None) -> np.ndarray:
        reads.append(block_info[0]["chunk-location"][0])
        return block

    lazy = da.from_array(data, chunks=(1, SIZE, SIZE)).map_blocks(plane, dtype=data.dtype)
    widget = _run_stack(viewer, open_widget, wait_for_run, data, "denoise")
    eager = widget.last_output.data
    image = viewer.add_image(lazy, name="lazy", visible=False)  # napari reads no slice
    widget.image.value = image
    reads.clear()
    plan = widget.plan()
    # the click reads the first slice only; the worker checks the others before any work
    assert reads == [0]
    assert isinstance(plan.jobs[0], _planning.LazyJob)
    assert all(isinstance(job, _planning.StackSlice) for job in plan.jobs[1:])
    # the live preview reads a slice when napari shows it, not the stack at the click
    preview = plan.preview_canvas()
    assert preview is not None and preview.shape == data.shape and reads == [0]
    np.testing.assert_array_equal(preview[2], data[2])
    assert reads == [0, 2]
    session_reports.clear()  # the eager run's
    worker = widget.start()
    assert worker is not None, widget.last_error
    wait_for_run(widget)
    reports = session_reports
    np.testing.assert_array_equal(widget.last_output.data, eager)
    # the check pass says how far it got before the first slice's iterations
    checks = [r for k, r in reports if isinstance(r, _planning.SliceCheck)]
    assert [(c.done, c.total) for c in checks] == [(2, 3), (3, 3)]
    assert reports.index((-1, checks[-1])) < next(
        i for i, (k, r) in enumerate(reports) if not isinstance(r, _planning.SliceCheck))


def test_a_stack_of_blank_slices_is_refused(viewer: Any, open_widget: Any,
                                            wait_for_run: Any) -> None:
    image = viewer.add_image(np.full((2, SIZE, SIZE), 7, np.uint16), name="blank")
    widget = open_widget(task="denoise", iterations=6)
    widget.image.value = image
    widget.start()  # the second slice is read by the worker
    wait_for_run(widget)
    assert "every slice of image 'blank' is constant or has no" in widget.last_error
    assert widget.last_output is None
    assert [layer.name for layer in viewer.layers] == ["blank"]
    # the current slice alone is read at the click: refused there
    widget.stack.value = _planning_current()
    assert widget.start() is None
    assert "every slice of image 'blank' is constant or has no" in widget.last_error


def _planning_current() -> str:
    from napari_specdip._napari import _planning

    return _planning.CURRENT


@pytest.mark.parametrize("bad", [0, 2])
def test_a_slice_that_cannot_be_restored_is_named_by_its_axis(
        viewer: Any, open_widget: Any, wait_for_run: Any, bad: int) -> None:
    data = _noisy((3, SIZE, SIZE))
    data[bad, 3, 4] = np.nan
    image = viewer.add_image(data, name="z")
    widget = open_widget(task="denoise", iterations=6)
    widget.image.value = image
    if bad == 0:  # the first slice is checked at the click
        assert widget.start() is None
    else:  # the others by the worker, before any slice is restored
        assert widget.start() is not None
        wait_for_run(widget)
        assert widget.last_output is None
    assert widget.last_error.startswith(f"slice z = {bad}: image contains 1 NaN")
    assert [layer.name for layer in viewer.layers] == ["z"]
    np.testing.assert_array_equal(np.isnan(image.data), np.isnan(data))


def _denoised(viewer: Any, open_widget: Any, wait_for_run: Any) -> tuple[Any, Any]:
    """An input layer "in" and the widget after a short denoising run of it."""
    image = viewer.add_image(_noisy((SIZE, SIZE)), name="in")
    widget = open_widget(task="denoise", iterations=6, stop="none")
    widget.image.value = image
    widget.start()
    wait_for_run(widget)
    return image, widget


def test_before_after_follow_the_input_layer_not_its_name(viewer: Any, open_widget: Any,
                                                          wait_for_run: Any) -> None:
    image, widget = _denoised(viewer, open_widget, wait_for_run)
    image.name = "renamed"
    imposter = viewer.add_image(_noisy((SIZE, SIZE), 9), name="in", visible=False)
    widget.compare_button.native.click()  # show the input
    assert image.visible and not widget.last_output.visible and not imposter.visible
    widget.compare_button.native.click()  # show the result
    assert not image.visible and widget.last_output.visible
    widget.side_by_side.value = True
    assert image.visible and not imposter.visible
    widget.side_by_side.value = False


def test_before_after_is_off_once_the_input_is_removed(viewer: Any, open_widget: Any,
                                                       wait_for_run: Any) -> None:
    image, widget = _denoised(viewer, open_widget, wait_for_run)
    assert widget.compare_button.enabled and widget.side_by_side.enabled
    viewer.layers.move(viewer.layers.index(image), len(viewer.layers))  # on top (napari bug)
    viewer.layers.remove(image)
    # "Show input" would only hide the result: there is no input left to show
    assert widget.save_button.enabled
    assert not widget.compare_button.enabled and not widget.side_by_side.enabled
    assert "removed" in widget.compare_button.tooltip


def test_a_double_click_on_run_does_not_stop_it(viewer: Any, open_widget: Any, qtbot: Any,
                                                wait_for_run: Any) -> None:
    image = viewer.add_image(_noisy((SIZE, SIZE)), name="in")
    widget = open_widget(task="denoise", iterations=30, stop="none")
    widget.image.value = image
    widget.run_button.native.click()
    widget.run_button.native.click()  # the second click of a double click
    assert widget.run_button.text == "Stop" and not widget.run_button.enabled
    qtbot.waitUntil(lambda: widget.run_button.enabled or not widget.is_running,
                    timeout=10_000)
    wait_for_run(widget)
    assert widget.last_output.metadata["specdip"]["iterations"] == 30


def test_stopping_a_stack_between_slices_says_so(viewer: Any, open_widget: Any,
                                                 wait_for_run: Any,
                                                 stop_from_the_worker: Any) -> None:
    image = viewer.add_image(_noisy((3, SIZE, SIZE)), name="z")
    widget = open_widget(task="denoise", iterations=40, stop="none", preview_every=1)
    widget.image.value = image
    stop_from_the_worker(widget, lambda k, _report: k == 1)  # slice 2's first step
    widget.start()
    wait_for_run(widget)
    status = widget.status.value
    assert "over 1 slice " in status  # a few steps into the second slice: too few to keep
    assert "Stopped by you in slice 2 of 3" in status


def test_a_channel_axis_result_blends_like_its_channel(viewer: Any, open_widget: Any,
                                                       wait_for_run: Any) -> None:
    layers = viewer.add_image(_noisy((2, SIZE, SIZE)), channel_axis=0, name=["a", "b"])
    widget = open_widget(task="denoise", iterations=6, stop="none")
    widget.image.value = layers[1]  # napari blends every channel but the first additively
    widget.start()
    wait_for_run(widget)
    assert str(widget.last_output.blending) == str(layers[1].blending) == "additive"


def test_a_shapes_region_off_the_image_is_named(viewer: Any, open_widget: Any) -> None:
    image = viewer.add_image(_noisy((SIZE, SIZE)), name="in")
    roi = viewer.add_shapes([np.array([[100, 100], [120, 130]])], shape_type="rectangle",
                            name="roi")
    widget = open_widget(task="denoise", iterations=6)
    widget.image.value = image
    widget.region.reset_choices()
    widget.region.value = roi
    assert widget.start_region_preview() is None
    assert "rectangle in Shapes layer 'roi' does not overlap image 'in'" in widget.last_error


def test_a_deleted_charts_dock_does_not_break_the_run(viewer: Any, open_widget: Any) -> None:
    from napari_specdip._napari._session import RunSession
    from napari_specdip.core.results import StepReport

    class DeletedCharts:
        """What the charts are once Qt has deleted them (the viewer was closed)."""

        has_reference = False

        def __getattr__(self, name: str) -> Any:
            def gone(*_: Any, **__: Any) -> None:
                raise RuntimeError("wrapped C/C++ object of type QTimer has been deleted")
            return gone

    image = viewer.add_image(_noisy((2, SIZE, SIZE)), name="z")
    widget = open_widget(task="denoise", iterations=6)
    widget.image.value = image
    session = RunSession(viewer, widget.plan(), charts=DeletedCharts(),  # type: ignore[arg-type]
                         listener=None)
    for k in (0, 1):
        session._on_yielded((k, StepReport(iteration=1, loss=0.1, elapsed=0.1,
                                           max_iterations=6)))
    assert session.charts is None


def test_a_sample_opened_with_the_dock_open_becomes_the_input(
        make_napari_viewer_proxy: Any) -> None:
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.open_sample("napari-specdip", "masked_image")
    assert widget.task.value == "inpaint"
    viewer.open_sample("napari-specdip", "noisy_photo")
    assert widget.image.value.name == "noisy photo" and widget.task.value == "denoise"
    assert widget.reference.value.name == "noisy photo (clean)"
    assert widget.mask.value is None or widget.task.value != "inpaint"
    # an image of the user's: the sample's clean reference no longer applies
    mine = viewer.add_image(_noisy(widget.image.value.data.shape), rgb=True, name="mine")
    widget.image.value = mine
    assert widget.reference.value is None


def test_the_estimate_comes_back_after_a_run_started_at_once(viewer: Any, open_widget: Any,
                                                              qtbot: Any,
                                                              wait_for_run: Any) -> None:
    image = viewer.add_image(_noisy((SIZE, SIZE)), name="in")
    widget = open_widget(task="denoise", iterations=6, stop="none")
    widget.image.value = image
    widget.net_width.value = 4  # a change, and Run before its estimate is measured
    assert widget.start() is not None
    wait_for_run(widget)
    qtbot.waitUntil(lambda: widget.last_estimate is not None, timeout=30_000)
    assert widget.estimate_label.value


def test_a_tile_larger_than_the_image_is_said(viewer: Any, open_widget: Any,
                                              wait_for_run: Any) -> None:
    image = viewer.add_image(_noisy((45, 47)), name="in")
    widget = open_widget(task="denoise", iterations=4, stop="none", tile=32, tile_overlap=8)
    widget.image.value = image
    widget.start()
    wait_for_run(widget)
    assert "Fitted whole: the image is no larger than a tile (32 px" in widget.status.value


def test_learning_rate_and_sigma_fields_say_what_they_take(viewer: Any,
                                                           open_widget: Any) -> None:
    image = viewer.add_image(_noisy((SIZE, SIZE)), name="in")
    widget = open_widget(task="denoise", iterations=4, learning_rate="1000")
    widget.image.value = image
    with pytest.raises(ValueError, match="learning rate must be at most 1"):
        widget.parameters()
    widget.learning_rate.value = "0.01"
    widget.upsampler.value = "gaussian"
    widget.sigmas.value = "0.1, nan"
    with pytest.raises(ValueError, match="Gaussian σ must be positive numbers"):
        widget.parameters()


def test_stop_while_the_slices_are_checked_ends_before_any_work(viewer: Any, open_widget: Any,
                                                                qtbot: Any) -> None:
    from napari_specdip._napari import _planning
    from napari_specdip._napari._session import run_jobs

    image = viewer.add_image(_noisy((4, SIZE, SIZE)), name="z")
    widget = open_widget(task="denoise", iterations=6)
    widget.image.value = image
    plan = widget.plan()
    interrupt = plan.extra["interrupt"]
    gen = run_jobs(plan.jobs, interrupt, name="z")
    assert next(gen) == (-1, _planning.SliceCheck(2, 4))
    interrupt.requested.set()  # Stop, while the third slice is read
    with pytest.raises(StopIteration) as done:
        next(gen)
    assert done.value.value == []
    # the estimate the new image asked for ends before the viewer closes
    qtbot.waitUntil(lambda: not widget._estimate_timer.isActive()
                    and widget._estimate_worker is None, timeout=60_000)
