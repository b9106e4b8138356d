"""The widget as a user meets it, in a real viewer: messages, picker, dock closing,
advanced fields, tooltips, task defaults, stacks, header and comparison, region
preview, time left."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from magicgui.widgets import CheckBox, PushButton

from napari_specdip import samples

pytestmark = pytest.mark.gui

SIZE = 64


def _visible(control: Any) -> bool:
    return not control.native.isHidden()


# ------------------------------------------------------------------ 3: messages fit


def test_long_status_and_error_messages_are_shown_whole(make_napari_viewer_proxy: Any,
                                                        notifications: Any) -> None:
    from napari_specdip._napari._help import TOAST_CHARS

    viewer = make_napari_viewer_proxy(show=True)
    # integers hold no NaN pixels to fill
    viewer.add_image((samples.masked_image(SIZE).image * 255).astype(np.uint8), name="holes")
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.task.value = "inpaint"  # no mask chosen: a long error
    assert widget.start() is None
    from qtpy.QtWidgets import QApplication

    label = widget.status.native
    for _ in range(5):
        QApplication.processEvents()
    assert "inpainting needs a mask layer" in label.text()
    lines = label.heightForWidth(label.width()) // label.fontMetrics().lineSpacing()
    assert lines >= 2  # wrapped...
    assert label.height() >= label.heightForWidth(label.width())  # ...and no line cut
    assert label.width() <= widget.native.width()
    # toasts show one line: theirs is short, the widget holds the details
    assert notifications and all(len(m) <= TOAST_CHARS for m in notifications)


# ------------------------------------------------------------------ 6: image picker


def test_picker_never_defaults_to_a_hidden_reference(viewer: Any, open_widget: Any,
                                                     wait_for_run: Any) -> None:
    sample = samples.noisy_photo(SIZE)
    # the hidden clean image at the bottom, as a sample loads it, the input on top
    viewer.add_image(sample.clean, name="photo (clean)", rgb=True, visible=False)
    noisy = viewer.add_image(sample.image, name="photo", rgb=True)
    widget = open_widget(task="denoise", iterations=60, stop="none", preview_every=0)
    assert widget.image.value.name == noisy.name == "photo"
    widget.start()
    # the input deleted mid-run (it is the top layer: no preview layer with preview 0)
    viewer.layers.remove(noisy)
    assert widget.image.value is None
    assert "No visible image layer" in widget.status.value
    wait_for_run(widget)
    # the run had its own copy: it still delivers
    assert widget.last_output is not None and widget.last_output.name == "photo denoised"


def test_no_image_left_is_not_said_once_one_is_chosen(viewer: Any, open_widget: Any) -> None:
    photo = viewer.add_image(samples.noisy_photo(SIZE).image, name="photo", rgb=True)
    widget = open_widget(task="denoise")
    viewer.layers.remove(photo)
    assert "No visible image layer" in widget.status.value
    viewer.add_image(samples.jpeg_blocked(SIZE).image, name="blocks")
    # the line said so until the next action, beside the image chosen
    assert widget.image.value.name == "blocks" and "No visible" not in widget.status.value


def test_reopened_dock_picks_the_visible_image(viewer: Any, open_widget: Any) -> None:
    from napari_specdip._napari._widget import RestoreWidget

    sample = samples.noisy_photo(SIZE)
    viewer.add_image(sample.clean, name="photo (clean)", rgb=True, visible=False)
    noisy = viewer.add_image(sample.image, name="photo", rgb=True)
    first = open_widget()
    viewer.window.remove_dock_widget(first.native)
    second = RestoreWidget(viewer)
    assert second.image.value.name == "photo"
    # nothing visible left: nothing chosen, and the widget says so when asked to run
    noisy.visible = False
    third = RestoreWidget(viewer)
    assert third.image.value is None
    assert third.start() is None and "choose an image layer" in third.last_error


# ------------------------------------------------------------------ 7: closing the dock


def test_closing_the_dock_mid_run_stops_it_and_keeps_the_result(
        make_napari_viewer_proxy: Any, configure: Any, qtbot: Any, notifications: Any) -> None:
    viewer = make_napari_viewer_proxy(show=True)
    image = viewer.add_image(samples.jpeg_blocked(SIZE).image, name="coffee")
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    configure(widget, task="deblock", iterations=5000, stop="none", preview_every=5)
    widget.image.value = image
    reports: list[Any] = []
    worker = widget.start()
    worker.yielded.connect(reports.append)
    qtbot.waitUntil(lambda: len(reports) >= 25, timeout=60_000)
    session = widget.session
    viewer.window.remove_dock_widget(widget.native)
    qtbot.waitUntil(lambda: not session.running, timeout=60_000)
    out = session.output
    assert out is not None and out in viewer.layers
    meta = out.metadata["specdip"]
    assert meta["stop_reason"] == "stopped" and 25 <= meta["iterations"] < 5000
    assert out.name == f"coffee deblocked (stopped at {meta['iterations']})"
    assert not any("[specdip preview]" in layer.name for layer in viewer.layers)
    assert "dock was closed" in session.message
    assert any("dock closed" in m for m in notifications)


# ------------------------------------------------------------------ 8: advanced fields


def test_advanced_fields_show_values_as_typed_and_check_only_what_is_used(
        viewer: Any, open_widget: Any) -> None:
    viewer.add_image(samples.jpeg_blocked(SIZE).image, name="coffee")
    widget = open_widget(task="deblock", show_advanced=True)
    assert widget.learning_rate.value == "0.003"  # the balanced preset's
    assert widget.stop_epsilon.value == "0.01"
    widget.learning_rate.value = "2e-4"
    widget.stop.value = "ratio"  # window and ε are read for the ratio rule only
    widget.stop_epsilon.value = "0.0005"
    params = widget.parameters()
    assert params.learning_rate == pytest.approx(2e-4)
    assert params.stop_epsilon == pytest.approx(0.0005)  # not rounded to 3 decimals
    assert widget.learning_rate.value == "2e-4" and widget.stop_epsilon.value == "0.0005"
    # a bad σ is ignored while its field is hidden (bilinear), refused once in use
    widget.sigmas.value = "0.1, nope"
    assert not _visible(widget.sigmas)
    assert widget.plan() is not None
    widget.upsampler.value = "gaussian"
    assert _visible(widget.sigmas)
    with pytest.raises(ValueError, match="Gaussian σ"):
        widget.parameters()
    widget.upsampler.value = "bilinear"
    # window and ε belong to the ratio rule: hidden and unchecked with stop "none"
    widget.stop.value = "none"
    widget.stop_epsilon.value = "?"
    assert not _visible(widget.stop_epsilon) and not _visible(widget.stop_window)
    assert widget.parameters().stop == "none"
    widget.stop.value = "auto"  # the hold-out rule: no window, no ε
    assert not _visible(widget.stop_epsilon) and widget.parameters().stop == "auto"
    widget.stop.value = "ratio"
    assert _visible(widget.stop_epsilon) and _visible(widget.stop_window)
    with pytest.raises(ValueError, match="stop ε"):
        widget.parameters()
    # combo boxes are wide enough for their longest choice
    for combo in (widget.upsampler, widget.network, widget.output):
        longest = max(combo.native.fontMetrics().horizontalAdvance(str(c))
                      for c in combo.choices)
        assert combo.native.minimumSizeHint().width() >= longest


# ------------------------------------------------------------------ 9: tooltips


def test_every_control_has_a_tooltip_a_new_user_understands(viewer: Any,
                                                             open_widget: Any) -> None:
    widget = open_widget()
    controls = [*widget._controls, widget.run_button, widget.preview_button,
                widget.save_button, widget.compare_button, widget.side_by_side]
    assert len(controls) >= 28
    missing = [getattr(c, "label", None) or getattr(c, "text", "?") for c in controls
               if not (c.tooltip or "").strip()]
    assert missing == []
    stop = widget.stop.tooltip
    assert "auto (default)" in stop and "hold-out minimum" in stop
    assert "blur/sharpness" in stop and "ES-WMV (early stopping" in stop and "none" in stop
    assert "time" in widget.max_iterations.tooltip
    assert "G the network" in widget.gain.tooltip
    for name in ("seed", "show_advanced", "upsampler", "learning_rate", "network",
                 "stop_epsilon", "backtrack", "run_button"):
        assert len(getattr(widget, name).tooltip) > 30, name
    assert all(isinstance(b, PushButton | CheckBox) for b in (widget.run_button,
                                                              widget.side_by_side))


# ------------------------------------------------------------------ 10: task defaults


def test_changing_the_task_keeps_what_the_user_changed(viewer: Any) -> None:
    from napari_specdip._napari._widget import RestoreWidget

    widget = RestoreWidget(viewer)
    widget.net_width.value = 32
    widget.max_iterations.value = 777
    widget.task.value = "inpaint"
    assert widget.net_width.value == 32 and widget.max_iterations.value == 777
    assert widget.lipschitz.value == pytest.approx(1.6)  # untouched: the task's default
    note = widget.defaults_note.value
    assert "inpaint defaults loaded" in note and "λ 1.6" in note
    assert "kept your" in note and "width 32" in note and "iterations 777" in note
    assert _visible(widget.defaults_note)
    widget.task.value = "enhance"
    assert widget.stop.value == "none" and widget.net_width.value == 32
    # the note names what the task uses: the paper preset's known pixels are inpainting's
    widget.task.value = "denoise"
    widget.preset.value = "paper"
    note = widget.defaults_note.value
    assert "refine none" in note and "known pixels" not in note
    assert widget.keep_known.value == "fitted"  # set all the same, for a later inpainting
    # the super-resolution factor is an input choice, like the mask: presets leave it
    widget.task.value = "super-resolve"
    widget.factor.value = 2
    for preset in ("quick", "balanced", "paper"):
        widget.preset.value = preset
        assert widget.factor.value == 2, preset
    widget.task.value = "denoise"
    widget.task.value = "super-resolve"
    assert widget.factor.value == 2


def test_the_mask_list_leaves_out_the_image_to_fill(viewer: Any) -> None:
    from napari_specdip._napari._widget import RestoreWidget

    photo = viewer.add_image(np.zeros((SIZE, SIZE)), name="photo")
    holes = viewer.add_image(np.zeros((SIZE, SIZE)), name="holes")
    widget = RestoreWidget(viewer)
    widget.task.value = "inpaint"
    widget.image.value = photo
    assert holes in widget.mask.choices and photo not in widget.mask.choices
    widget.image.value = holes
    assert photo in widget.mask.choices and holes not in widget.mask.choices


# ------------------------------------------------------------------ 11: stacks


def test_stack_preview_shows_unreached_slices_as_the_input(viewer: Any, open_widget: Any,
                                                           qtbot: Any, wait_for_run: Any,
                                                           session_reports: Any) -> None:
    base = samples.jpeg_blocked(SIZE).image
    stack = np.stack([base, np.flipud(base), np.fliplr(base)])
    layer = viewer.add_image(stack, name="stack", axis_labels=("z", "y", "x"))
    widget = open_widget(task="deblock", iterations=3, stop="none", preview_every=1)
    widget.image.value = layer
    seen: list[Any] = []

    def grab(item: Any) -> None:
        preview = widget.session.preview_layer
        if item[0] == 0 and preview is not None and not seen:
            seen.append(np.array(preview.data, copy=True))

    session_reports.listeners.append(grab)
    widget.start()
    wait_for_run(widget)
    assert seen, "no preview was shown during the first slice"
    np.testing.assert_array_equal(seen[0][1:], stack[1:])  # not black
    assert widget.charts.title_label.text() == "z = 2 (3 of 3)"


# ------------------------------------------------------------------ 12: header, comparison


def test_header_sections_and_before_after(viewer: Any, open_widget: Any,
                                          wait_for_run: Any) -> None:
    image = viewer.add_image(samples.jpeg_blocked(SIZE).image, name="coffee")
    widget = open_widget(task="deblock", iterations=2, stop="none")
    widget.image.value = image
    header = widget.header.native.text()
    from napari_specdip._napari._help import docs_link

    words, url = docs_link()
    assert f'<a href="{url}"' in header and words in header
    assert widget.header.native.openExternalLinks()
    titles = [w.value for w in widget if w.__class__.__name__ == "Label"
              and w.native.font().bold()]
    assert titles == ["Input", "Method", "Run", "Result"]
    assert not widget.compare_button.enabled
    widget.start()
    wait_for_run(widget)
    out = widget.last_output
    assert widget.compare_button.enabled and widget.compare_button.text == "Show input"
    widget.compare_button.native.click()
    assert not out.visible and image.visible and widget.compare_button.text == "Show result"
    widget.compare_button.native.click()
    assert out.visible and not image.visible
    widget.side_by_side.value = True
    assert viewer.canvas.grid.enabled and out.visible and image.visible
    widget.side_by_side.value = False
    assert not viewer.canvas.grid.enabled


# ------------------------------------------------------------------ region preview, ETA


def test_region_preview_restores_the_view_in_place(viewer: Any, open_widget: Any,
                                                   qtbot: Any, wait_for_run: Any) -> None:
    photo = samples.noisy_photo(128).image
    image = viewer.add_image(photo, name="photo", rgb=True, scale=(0.5, 0.5),
                             translate=(10.0, 20.0))
    widget = open_widget(task="denoise", iterations=40, stop="none", width=8)
    widget.image.value = image
    # look at a 40 x 60 px part of the image (world units: 0.5 per pixel)
    viewer.scene.camera.center = (10.0 + 0.5 * 50, 20.0 + 0.5 * 70)
    viewer.scene.camera.zoom = min(viewer.canvas.size[0] / 20.0, viewer.canvas.size[1] / 30.0)
    box = widget.region_box()
    assert box.shape[0] <= 128 and box.shape[1] <= 128
    assert box.y0 <= 50 <= box.y1 and box.x0 <= 70 <= box.x1
    progress: list[str] = []
    worker = widget.start_region_preview()
    assert worker is not None, widget.last_error
    assert widget.preview_button.text == "Stop" and not widget.run_button.enabled
    assert "stops after" in widget.status.value
    worker.yielded.connect(lambda _item: progress.append(widget.estimate_label.value))
    wait_for_run(widget)
    region = widget.session.output
    assert region is not None and region.name == "photo [specdip region preview]"
    assert region.data.shape == (*box.shape, 3)
    np.testing.assert_allclose(region.scale, image.scale)
    np.testing.assert_allclose(region.translate, (10.0 + 0.5 * box.y0, 20.0 + 0.5 * box.x0))
    meta = region.metadata["specdip"]
    assert meta["region"] == {"rows": [box.y0, box.y1], "columns": [box.x0, box.x1]}
    assert meta["parameters"]["width"] == 8 and meta["parameters"]["preview_every"] == 5
    assert widget.last_output is None  # a preview is not the result; Save stays for Run
    # the progress line during the run: iterations over the cap, and the time left
    assert any("iteration" in p and "/ 40" in p for p in progress)
    assert any("left" in p for p in progress)
    # and after it, the same line shows the estimate again, not a stale time left
    assert not any(word in widget.estimate_label.value for word in ("left", "/ 40"))
    # a Shapes rectangle chooses the region instead
    shapes = viewer.add_shapes([np.array([[10.0 + 0.5 * 4, 20.0 + 0.5 * 6],
                                          [10.0 + 0.5 * 43, 20.0 + 0.5 * 51]])],
                               shape_type="rectangle", name="roi")
    widget.region.reset_choices()
    widget.region.value = shapes
    box = widget.region_box()
    assert (box.y0, box.y1, box.x0, box.x1) == (4, 44, 6, 52)


def test_region_preview_refuses_when_the_canvas_shows_other_axes(viewer: Any,
                                                                 open_widget: Any) -> None:
    stack = np.random.default_rng(0).random((8, 48, 48)).astype(np.float32)
    image = viewer.add_image(stack, name="zyx")
    widget = open_widget(width=8)
    widget.image.value = image
    widget.region_box()  # the y-x plane: fine
    viewer.dims.order = (1, 0, 2)  # a z-x plane on the canvas
    for _ in range(2):
        assert widget.start_region_preview() is None and not widget.is_running
        assert "y-x plane" in widget.last_error and "other axes" in widget.last_error
        with pytest.raises(ValueError, match="y-x plane"):
            widget.region_box()
        viewer.dims.order = (0, 2, 1)  # y and x swapped: the camera's centre is (x, y)
    viewer.dims.order = (0, 1, 2)
    viewer.dims.ndisplay = 3
    assert widget.start_region_preview() is None and "a 3D view" in widget.last_error
    viewer.dims.ndisplay = 2
    widget.region_box()
    # a Shapes rectangle names its pixels whatever the canvas shows
    viewer.dims.order = (1, 0, 2)
    widget.region.value = viewer.add_shapes([np.array([[4.0, 6.0], [40.0, 44.0]])],
                                            shape_type="rectangle", name="roi")
    box = widget.region_box()
    assert (box.y0, box.x0) == (4, 6)


def test_region_preview_stops_at_its_time_budget(viewer: Any, open_widget: Any,
                                                 wait_for_run: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip._napari import _region

    monkeypatch.setattr(_region, "BUDGET_S", 2.0)
    image = viewer.add_image(samples.jpeg_blocked(SIZE).image, name="coffee")
    widget = open_widget(task="deblock", iterations=100_000, stop="none")
    widget.image.value = image
    assert widget.start_region_preview() is not None
    wait_for_run(widget)
    meta = widget.session.output.metadata["specdip"]
    assert meta["stop_reason"] == "stopped" and meta["iterations"] < 1000
    assert "time budget (2 s)" in widget.status.value


# ------------------------------------------------------------------ small screens


def test_the_dock_scrolls_instead_of_making_the_window_taller(
        make_napari_viewer_proxy: Any) -> None:
    from qtpy.QtWidgets import QApplication, QMainWindow, QScrollArea

    viewer = make_napari_viewer_proxy(show=True)
    viewer.add_image(samples.noisy_photo(SIZE).image, name="photo", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.show_advanced.value = True  # the tallest the widget gets
    widget.task.value = "inpaint"  # no mask: an error under Run
    for _ in range(5):  # a new size hint reaches the window one level per pass
        QApplication.processEvents()
    window = widget.native.window()
    assert isinstance(window, QMainWindow)
    # napari sizes its window for the docks' minimum heights: 1343 px without scrolling,
    # 744 with the charts at 200 px; a 768 px laptop screen leaves about 700 below its taskbar
    assert widget.charts.isVisible()
    QApplication.processEvents()
    assert window.minimumSizeHint().height() <= 690
    scroll = widget.native.findChild(QScrollArea)
    assert scroll is not None and scroll.isAncestorOf(widget.status.native)
    assert scroll.horizontalScrollBar().maximum() == 0  # up and down only
    window.resize(window.width(), 700)
    QApplication.processEvents()
    assert widget.start() is None and scroll.verticalScrollBar().maximum() > 0
    # the Run buttons stay in view under the scrolled options (they were below the fold)
    for button in (widget.run_button.native, widget.preview_button.native):
        assert not scroll.isAncestorOf(button) and button.isVisible()
        corner = button.mapTo(window, button.rect().bottomRight())
        assert window.rect().contains(corner) and button.height() > 10
    # the error the toast points to is scrolled into view
    status = widget.status.native
    top = status.mapTo(scroll.viewport(), status.rect().topLeft()).y()
    assert 0 <= top < scroll.viewport().height()


def test_rows_keep_their_height_when_a_note_in_the_scrolled_dock_grows(
        make_napari_viewer_proxy: Any) -> None:
    from qtpy.QtCore import QRect, Qt
    from qtpy.QtWidgets import QApplication, QLabel, QWidget

    from napari_specdip._napari._widget import fit_label

    viewer = make_napari_viewer_proxy(show=True)
    viewer.add_image(samples.noisy_photo(SIZE).image, name="photo", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.noise.value = "poisson-gaussian"
    widget.preset.value = "quick"  # the defaults note appears
    for _ in range(5):
        QApplication.processEvents()
    line = "gain 19.1 (estimated), read noise 90.6 (estimated), offset 367 (estimated)"
    # as after a camera-noise run: the note under the noise model grows by several lines
    for lines in (1, 4):
        widget.noise_note.value = "\n".join([line] * lines)
        widget.noise_note.visible = True
        fit_label(widget.noise_note.native)
        for _ in range(10):
            QApplication.processEvents()
    content = widget.scroll.widget()
    assert isinstance(content, QWidget)
    rows = [w for w in content.findChildren(QWidget) if w.isVisible()
            and not isinstance(w, QLabel) and w.minimumSizeHint().height() > 0]
    assert widget.noise_gain.native in rows
    # a stale layout squeezed the noise model's rows to about half their height
    squeezed = [w for w in rows if w.height() < w.minimumSizeHint().height()]
    assert not squeezed, [(type(w).__name__, w.height()) for w in squeezed]
    for note in (widget.noise_note.native, widget.defaults_note.native):
        # QLabel's own heightForWidth never goes under the minimum height: measure the text
        text = note.fontMetrics().boundingRect(
            QRect(0, 0, note.contentsRect().width(), 10_000),
            int(Qt.TextFlag.TextWordWrap), note.text())
        spare = note.height() - text.height()
        assert 0 <= spare < note.fontMetrics().lineSpacing(), (spare, note.text())


def test_a_long_layer_name_does_not_widen_the_dock(make_napari_viewer_proxy: Any) -> None:
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer_proxy(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    image = samples.noisy_photo(SIZE).image
    viewer.add_image(image, name="short", rgb=True)
    for _ in range(5):
        QApplication.processEvents()
    narrow = widget.native.sizeHint().width()
    name = "acquisition_2024-05-01_sample3_ch1_z-stack_63x_oil_deconvolved.tif"
    viewer.add_image(image, name=name, rgb=True)
    widget.image.value = viewer.layers[name]
    QApplication.processEvents()
    assert widget.native.sizeHint().width() <= narrow + 4
    assert widget.image.native.toolTip().startswith(name)  # the whole name, on hover
    viewer.layers[name].name = "renamed"
    assert widget.image.native.toolTip().startswith("renamed")


def test_engine_messages_use_the_panels_words(make_napari_viewer_proxy: Any) -> None:
    viewer = make_napari_viewer_proxy()
    viewer.add_image(np.zeros((20, 20), np.uint16), name="dark")
    viewer.layers["dark"].data[5:9, 5:9] = 1000
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.noise.value = "poisson-gaussian"
    assert widget.start() is None
    message = widget.last_error
    assert "camera gain, read noise and offset" in message and "noise: gaussian" in message
    assert "noise_gain" not in message and "noise='gaussian'" not in message
    # a NaN layer to denoise: the panel's task, not the API's keyword, fills them
    gappy = np.random.default_rng(0).random((20, 20))
    gappy[3, 4] = np.nan
    widget.image.value = viewer.add_image(gappy, name="gappy")
    widget.noise.value = "gaussian"
    assert widget.start() is None
    assert "(task: inpaint fills them)" in widget.last_error, widget.last_error
