"""The restore widget in a real napari viewer (xvfb): every task, stop, masks, stacks."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from napari_specdip import samples

pytestmark = pytest.mark.gui

SIZE = 64


def shown(control: Any) -> bool:
    """Not hidden (the viewer window itself is not shown in tests)."""
    return not control.native.isHidden()


def _add_sample(viewer: Any, sample: samples.Sample) -> tuple[Any, Any | None]:
    """The degraded image (and its clean original) as layers."""
    rgb = sample.channel_axis is not None
    image = viewer.add_image(sample.image, name=sample.name, rgb=rgb)
    clean = None
    if sample.clean is not None:
        clean = viewer.add_image(sample.clean, name=f"{sample.name} clean", rgb=rgb,
                                 visible=False)
    return image, clean


def _check_metadata(layer: Any, source: str, task: str, iterations: int) -> dict[str, Any]:
    meta = layer.metadata["specdip"]
    for key in ("parameters", "seed", "device", "versions", "iterations", "stop_reason",
                "stop_iteration", "metrics"):
        assert key in meta, key
    assert meta["source_layer"] == source
    assert meta["parameters"]["task"] == task
    assert meta["parameters"]["width"] == 8
    assert meta["iterations"] == iterations
    assert meta["device"] == "cpu"
    assert "torch" in meta["versions"]
    return meta


# ------------------------------------------------------------------ every task

TASK_CASES = {
    "denoise": (lambda: samples.noisy_photo(SIZE), True),
    "deblock": (lambda: samples.jpeg_blocked(SIZE), False),
    "inpaint": (lambda: samples.masked_image(SIZE), False),
    "super-resolve": (lambda: samples.low_resolution(SIZE, factor=4), True),
    "enhance": (lambda: samples.noisy_microscopy(SIZE), False),
}
WORDS = {"denoise": "denoised", "deblock": "deblocked", "inpaint": "inpainted",
         "super-resolve": "super-resolved x4", "enhance": "enhanced"}


@pytest.mark.parametrize("task", list(TASK_CASES))
def test_each_task_adds_a_restored_layer(task: str, viewer: Any, open_widget: Any,
                                         qtbot: Any, wait_for_run: Any) -> None:
    make, with_reference = TASK_CASES[task]
    sample = make()
    image, clean = _add_sample(viewer, sample)
    image.scale = (0.5, 0.25)
    image.translate = (10.0, -4.0)
    image.axis_labels = ("y", "x")
    image.units = ("um", "um")
    image.contrast_limits = tuple(image.contrast_limits)  # fixed, as a user would
    if task == "super-resolve" and clean is not None:
        clean.scale = (0.125, 0.0625)
    mask_layer = None
    if sample.mask is not None:
        mask_layer = viewer.add_labels(sample.mask.astype(np.uint8), name="holes",
                                       scale=image.scale, translate=image.translate)
    before = np.array(image.data, copy=True)
    data_object = image.data
    iterations = 7
    # signals at every step, so that the charts hold one point per iteration
    widget = open_widget(task=task, iterations=iterations, stop="none", signal_every=1)
    widget.image.value = image
    if mask_layer is not None:
        widget.mask.value = mask_layer
    widget.reference.value = clean if with_reference else None
    n_layers = len(viewer.layers)

    worker = widget.start()
    assert worker is not None, widget.last_error
    assert widget.run_button.text == "Stop"
    # the preview layer is made at the click (napari's add_image is the one slow step of
    # a run on a software display), showing the input until the first preview
    preview = viewer.layers[-1]
    assert preview.name == f"{sample.name} [specdip preview]"
    if task != "super-resolve":
        np.testing.assert_array_equal(preview.data, image.data)
    wait_for_run(widget)

    assert widget.last_error == ""
    out = widget.last_output
    assert preview.name == out.name  # the preview became the result (renamed)
    assert len(viewer.layers) == n_layers + 1  # the preview layer is gone
    assert not any("[specdip preview]" in layer.name for layer in viewer.layers)
    assert out.name == f"{sample.name} {WORDS[task]}"
    assert out.rgb == image.rgb
    meta = _check_metadata(out, sample.name, task, iterations)
    assert meta["stop_reason"] == "max_iterations"
    np.testing.assert_allclose(out.contrast_limits, image.contrast_limits)
    assert tuple(out.axis_labels) == ("y", "x")
    assert tuple(out.units) == tuple(image.units)
    if task == "super-resolve":
        assert out.data.shape[:2] == (SIZE, SIZE)
        np.testing.assert_allclose(out.scale, (0.5 / 4, 0.25 / 4))
        # half-pixel shift: translate + scale_in * (-0.5 + 0.5 / f)
        np.testing.assert_allclose(out.translate, (10.0 - 0.5 * 0.375, -4.0 - 0.25 * 0.375))
    else:
        assert out.data.shape == image.data.shape
        assert out.data.dtype == image.data.dtype
        np.testing.assert_allclose(out.scale, image.scale)
        np.testing.assert_allclose(out.translate, image.translate)
    # the input is untouched: same object, same values
    assert image.data is data_object
    np.testing.assert_array_equal(image.data, before)
    # the charts hold one point per iteration
    charts = widget.charts
    for band in ("fbc1", "fbc2", "fbc3", "fbc4", "fbc5", "ratio", "loss"):
        assert len(charts.series(band)) == iterations, band
    assert charts.stop_iteration == iterations
    if with_reference:
        assert len(charts.series("psnr")) == iterations
        assert len(charts.series("ssim")) == iterations
        assert "psnr" in meta["metrics"]
    else:
        assert len(charts.series("psnr")) == 0
    assert widget.run_button.text == "Run"
    assert "iterations" in widget.status.value
    assert widget.save_button.enabled and widget.compare_button.enabled


def test_ratio_rule_window_means_and_stop_marker(viewer: Any, open_widget: Any,
                                                 qtbot: Any, wait_for_run: Any) -> None:
    image, _ = _add_sample(viewer, samples.jpeg_blocked(SIZE))
    widget = open_widget(task="deblock", iterations=12, stop="ratio", stop_window=3,
                         stop_epsilon=1e8, show_advanced=True, signal_every=1)
    widget.image.value = image
    assert shown(widget.advanced)
    widget.start()
    wait_for_run(widget)
    meta = widget.last_output.metadata["specdip"]
    # with a huge epsilon the rule fires as soon as both windows are full (2n + 1)
    assert meta["stop_reason"] == "ratio"
    assert meta["iterations"] == 7
    charts = widget.charts
    assert len(charts.series("ratio")) == 7
    assert len(charts.series("ratio_mean_recent")) == 1
    assert len(charts.series("ratio_mean_previous")) == 1
    assert charts.stop_iteration == 7 and charts.stop_reason == "ratio"


# ------------------------------------------------------------------ stop, errors


def test_stop_mid_run_keeps_the_result(viewer: Any, open_widget: Any, qtbot: Any,
                                       wait_for_run: Any) -> None:
    image, _ = _add_sample(viewer, samples.noisy_photo(SIZE))
    widget = open_widget(task="denoise", iterations=5000, stop="none", preview_every=1)
    widget.image.value = image
    reports: list[Any] = []
    worker = widget.start()
    worker.yielded.connect(reports.append)
    qtbot.waitUntil(lambda: len(reports) >= 25, timeout=60_000)
    # the preview layer is live during the run
    assert any(layer.name == "noisy photo [specdip preview]" for layer in viewer.layers)
    # Run has become Stop, armed after a double-click interval
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=5_000)
    widget.run_button.native.click()
    wait_for_run(widget)
    out = widget.last_output
    meta = out.metadata["specdip"]
    assert meta["stop_reason"] == "stopped"
    assert 25 <= meta["iterations"] < 5000
    # a partial result reads as partial
    assert out.name == f"noisy photo denoised (stopped at {meta['iterations']})"
    assert out.data.shape == image.data.shape
    assert widget.charts.stop_reason == "stopped"
    assert not any("[specdip preview]" in layer.name for layer in viewer.layers)


def test_bad_mask_is_refused_without_a_run(viewer: Any, open_widget: Any) -> None:
    sample = samples.masked_image(SIZE)
    image, _ = _add_sample(viewer, sample)
    wrong_shape = viewer.add_labels(np.ones((32, 32), np.uint8), name="small mask")
    misaligned = viewer.add_labels(sample.mask.astype(np.uint8), name="shifted mask",
                                   translate=(3, 0))
    empty = viewer.add_labels(np.zeros((SIZE, SIZE), np.uint8), name="empty mask")
    widget = open_widget(task="inpaint")
    widget.image.value = image
    n_layers = len(viewer.layers)
    for layer, words in ((wrong_shape, "has shape (32, 32)"), (misaligned, "not aligned"),
                         (empty, "marks no pixel"), (None, "no NaN pixel to fill: choose a mask")):
        widget.mask.value = layer
        assert widget.start() is None
        assert words in widget.last_error, widget.last_error
        assert widget.last_error in widget.status.value
        assert widget.worker is None and not widget.is_running
        assert len(viewer.layers) == n_layers


def test_nan_pixels_are_the_holes_without_a_mask_layer(viewer: Any, open_widget: Any,
                                                       wait_for_run: Any) -> None:
    sample = samples.masked_image(SIZE)
    gappy = np.where(sample.mask, np.nan, sample.image).astype(np.float32)
    image = viewer.add_image(gappy, name="gappy")
    counts = viewer.add_image((sample.image * 4000).astype(np.uint16), name="counts")
    widget = open_widget(task="inpaint", iterations=6, stop="none")
    widget.image.value = counts  # integers hold no NaN: a mask layer is needed
    assert widget.start() is None and "needs a mask layer" in widget.last_error
    widget.image.value = image
    assert widget.mask.value is None
    plan = widget.plan()
    np.testing.assert_array_equal(~plan.jobs[0].known, sample.mask)
    assert widget._estimate_request() is not None  # the estimate sees the holes too
    assert widget.start() is not None, widget.last_error
    wait_for_run(widget)
    out = widget.last_output
    assert out.data.dtype == np.float32 and np.isfinite(out.data).all()
    np.testing.assert_array_equal(out.data[~sample.mask], gappy[~sample.mask])  # kept
    meta = out.metadata["specdip"]
    assert meta["mask_layer"] is None  # no layer: the NaN pixels
    assert meta["parameters"]["filled_pixels"] == np.count_nonzero(sample.mask)
    assert np.isnan(image.data[sample.mask]).all()  # the input keeps its holes


def test_nan_holes_under_camera_noise_take_the_whole_layer_camera(
        viewer: Any, open_widget: Any, preview_rectangle: Any) -> None:
    """A region preview estimates the camera over the whole layer: its NaN pixels are
    left out of that estimate, not refused."""
    sample = samples.noisy_microscopy(128)
    gappy = sample.image.astype(np.float32)
    gappy[40:46, 30:90] = np.nan
    image = viewer.add_image(gappy, name="cells")
    widget = open_widget(task="inpaint", iterations=2, stop="none", noise="poisson-gaussian")
    widget.image.value = image
    preview_rectangle(viewer, widget, [[20.0, 20.0], [67.0, 67.0]])
    assert not widget.session.error, widget.session.error
    used = widget.session.output.metadata["specdip"]["noise_model"]
    assert used["estimated_over"]["of"] == 1
    assert np.isfinite(widget.session.output.data).all()


def test_shapes_mask_is_rasterised_on_the_image_grid(viewer: Any, open_widget: Any) -> None:
    sample = samples.masked_image(SIZE)
    image, _ = _add_sample(viewer, sample)
    image.scale = (2.0, 2.0)
    image.translate = (5.0, 5.0)
    # drawn in world coordinates on a shapes layer of another transform
    rect = np.array([[5.0 + 2 * 10, 5.0 + 2 * 20], [5.0 + 2 * 29.6, 5.0 + 2 * 39.6]])
    shapes = viewer.add_shapes([rect], shape_type="rectangle", name="box")
    widget = open_widget(task="inpaint")
    widget.image.value = image
    widget.mask.value = shapes
    plan = widget.plan()
    holes = ~plan.jobs[0].known
    assert holes[10:30, 20:40].all()
    assert holes.sum() == 20 * 20


def test_bad_parameters_are_refused(viewer: Any, open_widget: Any) -> None:
    image, _ = _add_sample(viewer, samples.jpeg_blocked(SIZE))
    widget = open_widget(task="deblock", upsampler="gaussian", sigmas="0.1, x")
    widget.image.value = image
    assert widget.start() is None
    assert "Gaussian σ" in widget.last_error
    widget.sigmas.value = "0.1, -1"
    assert widget.start() is None
    assert "Gaussian σ must be positive numbers" in widget.last_error
    widget.learning_rate.value = "fast"
    assert widget.start() is None
    assert "learning rate" in widget.last_error and "not a number" in widget.last_error


# ------------------------------------------------------------------ stacks


def test_stack_is_restored_slice_by_slice(viewer: Any, open_widget: Any, wait_for_run: Any,
                                          session_reports: list[Any]) -> None:
    base = samples.jpeg_blocked(SIZE).image
    stack = np.stack([base, np.flipud(base), np.fliplr(base)])
    layer = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0))
    before = stack.copy()
    widget = open_widget(task="deblock", iterations=4, stop="none", preview_every=2,
                         signal_every=1)
    widget.image.value = layer
    assert shown(widget.stack)
    assert widget.stack.value == 0  # along the only leading axis
    assert list(widget.stack.choices) == [0, "current"]
    widget.start()
    wait_for_run(widget)
    seen = [k for k, _ in session_reports]
    out = widget.last_output
    assert out.data.shape == stack.shape
    np.testing.assert_allclose(out.scale, (3.0, 1.0, 1.0))
    meta = out.metadata["specdip"]
    assert meta["iterations"] == [4, 4, 4]
    assert meta["stop_reason"] == ["max_iterations"] * 3
    assert meta["stack"]["planes"] == [[0], [1], [2]]
    assert meta["seed"] == 0
    assert sorted(set(seen)) == [-1, 0, 1, 2]  # -1: the slices' check before any work
    # each slice is its own restoration of its own input
    assert not np.array_equal(out.data[0], out.data[1])
    # the viewer followed the slices; the charts show the last one
    assert viewer.dims.current_step[0] == 2
    assert widget.charts.title_label.text() == "z = 2 (3 of 3)"
    assert len(widget.charts.series("fbc1")) == 4
    np.testing.assert_array_equal(layer.data, before)


def test_current_slice_only(viewer: Any, open_widget: Any, wait_for_run: Any) -> None:
    base = samples.jpeg_blocked(SIZE).image
    stack = np.stack([base, np.flipud(base), np.fliplr(base)])
    layer = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0),
                             translate=(1.0, 0.0, 0.0))
    viewer.dims.set_point(0, 1.0 + 3.0 * 1)  # slice 1
    widget = open_widget(task="deblock", iterations=3, stop="none")
    widget.image.value = layer
    widget.stack.value = "current"
    widget.start()
    wait_for_run(widget)
    out = widget.last_output
    assert out.data.shape == (1, SIZE, SIZE)
    np.testing.assert_allclose(out.translate, (1.0 + 3.0, 0.0, 0.0))
    assert out.metadata["specdip"]["stack"]["planes"] == [[1]]


def test_rgb_is_never_a_stack(viewer: Any, open_widget: Any) -> None:
    photo = samples.noisy_photo(SIZE).image
    flat = viewer.add_image(photo, name="rgb", rgb=True)
    zstack = viewer.add_image(np.stack([photo, photo]), name="rgb stack", rgb=True)
    widget = open_widget(task="denoise")
    widget.image.value = flat
    assert not shown(widget.stack)
    widget.image.value = zstack
    assert shown(widget.stack)
    assert [value for value in widget.stack.choices] == [0, "current"]
    plan = widget.plan()
    assert len(plan.jobs) == 2 and plan.out_shape == (2, SIZE, SIZE, 3)


# ------------------------------------------------------------------ the widget itself


def test_widget_stays_responsive_during_a_run(viewer: Any, open_widget: Any,
                                              qtbot: Any, wait_for_run: Any) -> None:
    from qtpy.QtCore import QTimer

    image, _ = _add_sample(viewer, samples.noisy_photo(SIZE))
    widget = open_widget(task="denoise", iterations=60, stop="none")
    widget.image.value = image
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    try:
        widget.start()
        assert widget.is_running
        qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=10_000)
        assert widget.is_running, "the run should outlast a few timer ticks"
        widget.seed.native.setValue(5)  # the GUI keeps answering
        wait_for_run(widget)
    finally:
        timer.stop()
    assert len(ticks) >= 5
    # the snapshot was taken at Run: the run used seed 0
    assert widget.last_output.metadata["specdip"]["seed"] == 0


def test_task_loads_defaults_and_device_choices(viewer: Any, open_widget: Any) -> None:
    from napari_specdip.core.devices import available_devices

    widget = open_widget()  # width 8 and 6 iterations: the user's values
    widget.task.value = "inpaint"
    assert widget.lipschitz.value == pytest.approx(1.6)
    assert widget.max_iterations.value == 6 and widget.net_width.value == 8
    assert shown(widget.mask) and not shown(widget.factor)
    widget.task.value = "enhance"
    assert widget.stop.value == "none" and widget.lipschitz.value == pytest.approx(1.0)
    assert shown(widget.gain)
    widget.task.value = "super-resolve"
    assert shown(widget.factor) and widget.factor.value == 4
    widget.upsampler.value = "gaussian"
    assert widget.lipschitz.value == pytest.approx(1.8)
    assert shown(widget.sigmas)
    widget.upsampler.value = "bilinear"
    assert widget.lipschitz.value == pytest.approx(1.4)

    values = [value for value in widget.device.choices]
    assert values[0] == "auto"
    assert values[1:] == [dev for dev, _ in available_devices()]
    assert "cpu" in values
    assert widget.device_label.value.startswith("runs on:")
    # a device that went away falls back to auto, with a notification
    widget.device.choices = [("Auto", "auto"), ("ghost GPU", "cuda:7"), ("CPU", "cpu")]
    widget.device.value = "cuda:7"
    assert widget.parameters().device == "auto"
    assert widget.device_label.value.startswith("falls back to:")


def test_charts_draw_on_screen_and_follow_the_theme(make_napari_viewer_proxy: Any,
                                                    wait_for_run: Any) -> None:
    from napari.utils.theme import get_theme

    viewer = make_napari_viewer_proxy(show=True)
    image, clean = _add_sample(viewer, samples.noisy_photo(SIZE))
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    charts = widget.charts
    assert "SpecDIP charts" in viewer.window.dock_widgets
    assert charts.isVisible()
    dark = get_theme("dark").background.as_hex()
    light = get_theme("light").background.as_hex()
    assert charts.colors["background"] == dark
    viewer.theme = "light"
    assert charts.theme_name == "light"
    assert charts.colors["background"] == light
    panel = charts.panels["loss"]
    assert panel.plot_widget.backgroundBrush().color().name() == light
    assert panel.plot.getAxis("left").textPen().color().name() == get_theme("light").text.as_hex()

    widget.net_width.value = 8
    widget.max_iterations.value = 8
    widget.stop.value = "none"
    widget.signal_every.value = 1
    widget.image.value = image
    widget.reference.value = clean
    widget.start()
    wait_for_run(widget)
    # drawn on screen, with the PSNR/SSIM panel and the stop marker
    assert charts.draw_count >= 1
    assert charts.panels["quality"].isVisible()
    assert charts.shown_points("psnr") == 8
    assert charts.stop_iteration == 8
    viewer.theme = "dark"
    assert panel.plot_widget.backgroundBrush().color().name() == dark


def test_closed_charts_come_back_on_run(viewer: Any, open_widget: Any,
                                        wait_for_run: Any) -> None:
    image, _ = _add_sample(viewer, samples.jpeg_blocked(SIZE))
    widget = open_widget(task="deblock", iterations=2, stop="none")
    widget.image.value = image
    viewer.window.remove_dock_widget(widget.charts)
    assert "SpecDIP charts" not in viewer.window.dock_widgets
    widget.start()
    assert "SpecDIP charts" in viewer.window.dock_widgets
    wait_for_run(widget)
    assert len(widget.charts.series("loss")) == 2


def test_stop_at_once_adds_no_layer(viewer: Any, open_widget: Any, wait_for_run: Any) -> None:
    image, _ = _add_sample(viewer, samples.jpeg_blocked(SIZE))
    widget = open_widget(task="deblock", iterations=5000, stop="none")
    widget.image.value = image
    n_layers = len(viewer.layers)
    widget.start()
    widget.request_stop()  # before the engine has even built its network
    assert widget.run_button.text == "Stopping…"
    wait_for_run(widget)
    # nothing useful came out: no flat grey layer, and the user is told why
    assert widget.last_output is None
    assert len(viewer.layers) == n_layers
    assert "before a useful result" in widget.status.value
    assert widget.run_button.text == "Run"


def test_a_run_that_adds_nothing_keeps_the_last_result(viewer: Any, open_widget: Any,
                                                       wait_for_run: Any) -> None:
    image, _ = _add_sample(viewer, samples.jpeg_blocked(SIZE))
    widget = open_widget(task="deblock", iterations=3, stop="none")
    widget.image.value = image
    widget.start()
    wait_for_run(widget)
    first = widget.last_output
    assert first is not None and widget.save_button.enabled
    widget.max_iterations.value = 5000
    widget.start()
    widget.request_stop()
    wait_for_run(widget)
    assert "before a useful result" in widget.status.value
    # the first result is still there, and Save and before/after still serve it
    assert widget.last_output is first
    assert widget.save_button.enabled and widget.compare_button.enabled


def test_stopping_a_stack_keeps_the_slices_done(viewer: Any, open_widget: Any,
                                                wait_for_run: Any,
                                                stop_from_the_worker: Any) -> None:
    base = samples.jpeg_blocked(SIZE).image
    stack = np.stack([base, np.flipud(base), np.fliplr(base)])
    layer = viewer.add_image(stack, name="stack")
    widget = open_widget(task="deblock", iterations=30, stop="none")
    widget.image.value = layer
    # the first slice done, the second well under way
    stop_from_the_worker(widget, lambda k, report: k == 1 and report.iteration >= 22)
    widget.start()
    wait_for_run(widget)
    out = widget.last_output
    assert out.data.shape == stack.shape
    meta = out.metadata["specdip"]
    assert meta["stop_reason"] == ["max_iterations", "stopped", "not run"]
    assert meta["iterations"] == [30, 22, 0]
    assert out.name == f"stack deblocked (stopped at {meta['iterations'][1]} in slice 2 of 3)"
    # the slice never reached keeps the input
    np.testing.assert_array_equal(out.data[2], stack[2])


def test_worker_error_is_reported(viewer: Any, open_widget: Any, wait_for_run: Any,
                                  monkeypatch: pytest.MonkeyPatch, notifications: Any) -> None:
    from napari_specdip._napari import _session
    from napari_specdip._napari._help import TOAST_CHARS

    def failing(jobs: Any, interrupt: Any, budget_s: Any = None, warm_start: bool = False,
                name: str = "image") -> Any:
        for k, job in enumerate(jobs):
            gen = job.run()
            yield k, next(gen)
            gen.close()
            raise MemoryError("out of memory on cuda:0: try a smaller width")

    monkeypatch.setattr(_session, "run_jobs", failing)
    image, _ = _add_sample(viewer, samples.jpeg_blocked(SIZE))
    widget = open_widget(task="deblock", iterations=50, preview_every=1)
    widget.image.value = image
    n_layers = len(viewer.layers)
    widget.start()
    wait_for_run(widget)
    assert "out of memory" in widget.last_error
    assert "out of memory" in widget.status.value
    assert widget.last_output is None
    assert len(viewer.layers) == n_layers  # no result, and the preview is gone
    assert widget.run_button.text == "Run" and widget.image.enabled
    # the toast fits on its one line; the whole message is in the widget
    assert notifications and all(len(m) <= TOAST_CHARS for m in notifications)


def test_a_reopened_widget_shares_the_charts_dock(viewer: Any, open_widget: Any) -> None:
    first = open_widget()
    charts = first.charts
    viewer.window.remove_dock_widget(first.native)
    from napari_specdip._napari._widget import RestoreWidget

    second = RestoreWidget(viewer)
    viewer.window.add_dock_widget(second, name="restore again")
    assert second.charts is charts
    assert list(viewer.window.dock_widgets).count("SpecDIP charts") == 1


def test_a_second_runs_messages_name_the_layer_napari_made(make_napari_viewer_proxy: Any,
                                                          configure: Any,
                                                          wait_for_run: Any) -> None:
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.random.default_rng(0).random((32, 32)), name="noisy")
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    configure(widget, iterations=3, stop="none")
    for _ in range(2):
        widget.start()
        wait_for_run(widget)
    second = widget.last_output.name
    assert second != "noisy denoised"  # napari made the name unique
    assert widget.status.value.startswith(f"{second!r}:")
