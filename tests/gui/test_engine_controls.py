"""The engine's newer options in the widget, in a real viewer (xvfb): presets, the
hold-out stop rule, the estimate before Run, the noise model, ensembles and warm
starts across the slices of a stack."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from napari_specdip import restore, samples

pytestmark = pytest.mark.gui

SIZE = 64


def _visible(control: Any) -> bool:
    return not control.native.isHidden()


# ------------------------------------------------------------------ presets


def test_preset_loads_its_values_and_keeps_what_the_user_changed(viewer: Any) -> None:
    from napari_specdip._napari._widget import RestoreWidget
    from napari_specdip.core.params import PRESETS

    widget = RestoreWidget(viewer)
    assert list(widget.preset.choices) == list(PRESETS)
    assert widget.method_section[0] is widget.preset  # at the top of Method
    # balanced by default, in every field the preset sets
    assert widget.preset.value == "balanced"
    assert (widget.net_width.value, widget.max_iterations.value) == (64, 3000)
    assert widget.learning_rate.value == "0.003" and widget.stop.value == "auto"
    assert widget.output.value == "ema" and widget.signal_every.value == 5
    assert widget.holdout.value == pytest.approx(0.1)
    assert widget.input_jitter.value == pytest.approx(0.1)
    params = widget.parameters()
    assert params.preset == "balanced" and params.lr_warmup == 50 and params.start_at_mean

    assert widget.tile.value == 0 and widget.tile.native.currentText() == "whole image"
    widget.preset.value = "quick"
    assert (widget.net_width.value, widget.max_iterations.value) == (32, 1500)
    assert "quick preset loaded: width 32, iterations 1500" in widget.defaults_note.value
    assert widget.parameters().preset == "quick"
    # quick denoising tiles a large image on a CPU
    assert widget.tile.value == "auto" and widget.parameters().tile == "auto"
    assert widget.tile.native.currentText().startswith("auto")

    widget.net_width.value = 48  # the user's own width survives a preset change
    widget.preset.value = "paper"
    assert widget.net_width.value == 48
    assert widget.max_iterations.value == 10000 and widget.learning_rate.value == "0.001"
    assert widget.stop.value == "ratio" and widget.output.value == "last"
    assert widget.signal_every.value == 1 and widget.holdout.value == 0
    assert widget.input_jitter.value == 0 and widget.parameters().input_jitter == 0
    note = widget.defaults_note.value
    assert "paper preset loaded" in note and "kept your width 48" in note
    params = widget.parameters()
    # what no control shows comes from the preset (depth 5, no warm-up, no mean start)
    assert (params.preset, params.width, params.depth) == ("paper", 48, 5)
    assert params.lr_warmup == 0 and not params.start_at_mean
    assert _visible(widget.stop_window) and _visible(widget.stop_epsilon)

    widget.task.value = "inpaint"  # the paper's inpainting runs 5000 iterations
    assert widget.max_iterations.value == 5000
    assert "inpaint defaults loaded" in widget.defaults_note.value
    widget.preset.value = "balanced"
    assert widget.stop.value == "auto" and widget.holdout.value == pytest.approx(0.1)
    assert not _visible(widget.stop_window) and not _visible(widget.stop_epsilon)
    assert widget.net_width.value == 48


def test_auto_stop_needs_held_out_pixels_and_stops_at_their_minimum(
        viewer: Any, open_widget: Any, wait_for_run: Any) -> None:
    from napari_specdip._napari._widget import AUTO_NEEDS_HOLDOUT

    image = viewer.add_image(samples.noisy_photo(32).image, name="photo", rgb=True)
    widget = open_widget(task="denoise", preset="paper", iterations=3000, width=16,
                         preview_every=0)
    widget.image.value = image
    assert widget.stop.value == "ratio" and not _visible(widget.stop_note)
    widget.stop.value = "auto"  # with the paper's holdout 0
    assert _visible(widget.stop_note) and widget.stop_note.value == AUTO_NEEDS_HOLDOUT
    assert "held-out pixels" in AUTO_NEEDS_HOLDOUT and "0.1" in AUTO_NEEDS_HOLDOUT
    assert widget.start() is None and widget.last_error == AUTO_NEEDS_HOLDOUT
    widget.holdout.value = 0.1
    assert not _visible(widget.stop_note)
    widget.signal_every.value = 5
    # at the paper's step size a 32 px run may still improve at the cap: 1e-2 overfits sooner
    widget.learning_rate.value = "0.01"
    widget.start()
    wait_for_run(widget, timeout=120_000)
    meta = widget.last_output.metadata["specdip"]
    assert meta["parameters"]["holdout"] == pytest.approx(0.1)
    # the rule returns the output of the held-out error's minimum, before the last step
    assert meta["stop_reason"] == "holdout"
    assert meta["stop_iteration"] < meta["iterations"] < 3000
    charts = widget.charts
    held = charts.series("holdout_loss")
    assert len(held) == meta["iterations"] // 5
    assert charts.stop_iteration == meta["stop_iteration"]
    loss_panel = charts.panels["loss"]
    assert loss_panel.stop_label.toPlainText() == (
        f"stop at {meta['stop_iteration']}: error minimum (held-out)")
    assert ("stop: the error estimated from the held-out pixels at its minimum"
            in widget.status.value)
    assert f"the output of iteration {meta['stop_iteration']}." in widget.status.value


# ------------------------------------------------------------------ estimate


def test_estimate_is_measured_in_the_background_and_follows_the_settings(
        viewer: Any, open_widget: Any, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip._napari import _estimating

    calls: list[Any] = []
    measure = _estimating.run_estimate

    def counted(request: Any) -> Any:
        calls.append(request)
        return measure(request)

    monkeypatch.setattr(_estimating, "run_estimate", counted)
    image = viewer.add_image(samples.jpeg_blocked(SIZE).image, name="coffee")
    # a cap above the hold-out stop's typical range, which the label then gives
    widget = open_widget(task="denoise", iterations=1500)
    widget.image.value = image
    # several changes in a row: one measurement, after they stopped
    for width in (4, 12, 8):
        widget.net_width.value = width
    assert calls == []  # debounced: nothing measured on the main thread
    qtbot.waitUntil(lambda: widget.last_estimate is not None, timeout=30_000)
    assert len(calls) == 1 and calls[0].options["width"] == 8
    found = widget.last_estimate
    assert found.fits and found.iterations == 1500
    text = widget.estimate_label.value
    assert _visible(widget.estimate_label)
    assert "per 100 it" in text and "at most" in text and "usually" in text
    assert text.endswith("MB") and text.startswith("≈")
    assert widget.estimate_label.tooltip

    # a stop rule without a measured range: no "usually"
    widget.stop.value = "none"
    qtbot.waitUntil(lambda: len(calls) == 2 and widget._estimate_worker is None,
                    timeout=30_000)
    assert "usually" not in widget.estimate_label.value

    # a stack counts its slices
    stack = viewer.add_image(np.stack([image.data] * 3), name="stack")
    widget.image.value = stack
    qtbot.waitUntil(lambda: len(calls) == 3 and widget._estimate_worker is None,
                    timeout=30_000)
    assert calls[-1].planes == 3 and calls[-1].plane.shape == (SIZE, SIZE)
    assert "for 3 slices" in widget.estimate_label.value


def test_a_run_ends_the_estimate_being_measured_and_measures_again_after(
        viewer: Any, open_widget: Any, qtbot: Any, wait_for_run: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A large image's estimate takes seconds of real steps: a run started meanwhile
    ends it at its next step instead of sharing the cores with it."""
    from napari_specdip._napari import _estimating
    from napari_specdip.core.estimate import EstimateCancelled

    calls: list[Any] = []
    measure = _estimating.run_estimate

    def slow_first(request: Any) -> Any:
        calls.append(request)
        if len(calls) == 1:  # still timing its steps when Run is pressed
            assert request.cancel.wait(30)
            raise EstimateCancelled("the estimate was cancelled")
        return measure(request)

    monkeypatch.setattr(_estimating, "run_estimate", slow_first)
    image = viewer.add_image(samples.noisy_photo(SIZE).image, name="photo", rgb=True)
    widget = open_widget(task="denoise", iterations=4, stop="none")
    widget.image.value = image
    widget._estimate_timer.stop()  # measured now, not after the settings' debounce
    assert widget.refresh_estimate() is not None
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=5_000)
    assert widget.start() is not None, widget.last_error
    qtbot.waitUntil(lambda: calls[0].cancel.is_set(), timeout=5_000)
    wait_for_run(widget)
    # measured again once the run is over; the cut-short answer is never shown
    qtbot.waitUntil(lambda: widget.last_estimate is not None, timeout=30_000)
    assert len(calls) == 2 and not calls[1].cancel.is_set()
    assert widget.estimate_label.value.startswith("≈"), widget.estimate_label.value


def test_a_run_that_will_not_fit_is_flagged_and_refused(
        viewer: Any, open_widget: Any, qtbot: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip.core import estimate

    monkeypatch.setattr(estimate, "available_memory", lambda device="cpu": 2_000_000)
    image = viewer.add_image(samples.jpeg_blocked(SIZE).image, name="coffee")
    widget = open_widget(task="deblock", iterations=50)
    widget.image.value = image
    worker = widget.refresh_estimate()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.last_estimate is not None, timeout=30_000)
    assert not widget.last_estimate.fits
    text = widget.estimate_label.value
    assert text.startswith("Will not fit: needs about") and "try" in text
    assert "e0524a" in widget.estimate_label.native.styleSheet()  # red
    n_layers = len(viewer.layers)
    assert widget.start() is None
    assert "will not fit" in widget.last_error and "try" in widget.last_error
    assert widget.last_estimate.advice in widget.last_error
    assert not widget.is_running and len(viewer.layers) == n_layers


# ------------------------------------------------------------------ noise model


def test_noise_model_section_shows_estimates_next_to_the_samples_truth(
        make_napari_viewer_proxy: Any, configure: Any, wait_for_run: Any) -> None:
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.open_sample("napari-specdip", "noisy_microscopy")
    layer = viewer.layers["noisy microscopy"]
    truth = layer.metadata["specdip_sample"]["noise"]
    assert (truth["gain"], truth["read_sigma"], truth["offset"]) == (20.0, 40.0, 100.0)
    assert widget.image.value.name == layer.name
    # the sample's hint chose the camera model; its values are left to estimate
    assert widget.noise.value == "poisson-gaussian"
    assert _visible(widget.noise_section) and _visible(widget.noise_gain)
    assert widget.noise_gain.value == "" and widget.noise_offset.value == ""
    assert widget.noise_note.value == (
        "sample truth: gain 20, read noise 40, offset 100 (ADU)")

    configure(widget, iterations=6, stop="none", noise_gain="20")
    params = widget.parameters()
    assert params.noise == "poisson-gaussian" and params.noise_gain == 20.0
    assert params.noise_read_sigma is None and params.noise_offset is None
    widget.start()
    wait_for_run(widget)
    used = widget.last_output.metadata["specdip"]["noise_model"]
    assert used["source"] == {"gain": "given", "read_sigma": "estimated",
                              "offset": "estimated"}
    first, bound, second = widget.noise_note.value.split("\n")
    assert first.startswith("last run used: gain 20 (given), read noise ")
    assert "(estimated), offset " in first and first.endswith("(estimated)")
    assert "upper bound" in bound  # read noise and offset both estimated
    assert second.startswith("sample truth: gain 20")

    widget.noise_read_sigma.value = "lots"
    with pytest.raises(ValueError, match="read noise: 'lots' is not a number"):
        widget.parameters()
    widget.noise_read_sigma.value = ""
    widget.noise.value = "gaussian"  # camera fields hidden and not read
    assert not _visible(widget.noise_gain) and not _visible(widget.noise_fit)
    assert widget.parameters().noise_gain is None
    # the noise model belongs to denoising and inpainting
    for task, shown in (("enhance", False), ("deblock", False), ("super-resolve", False),
                        ("inpaint", True), ("denoise", True)):
        widget.task.value = task
        assert _visible(widget.noise_section) == shown, task
    widget.noise.value = "poisson-gaussian"
    widget.task.value = "deblock"  # hidden: a Gaussian run, whatever the combo says
    assert widget.parameters().noise == "gaussian"


def test_noise_note_says_when_the_skewness_placed_the_offset(
        make_napari_viewer_proxy: Any, configure: Any, wait_for_run: Any) -> None:
    # a lit background (3 photons at a peak of 100) over a camera's pedestal, 128 px
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    clean = np.zeros((128, 128))
    for _ in range(10):
        cy, cx, r = rng.uniform(0, 128), rng.uniform(0, 128), rng.uniform(8, 18)
        clean = np.maximum(clean, ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * rng.uniform(0.4, 1))
    clean = ndi.gaussian_filter(clean, 1.5) + 0.03
    photons = rng.poisson(100 * clean / clean.max()) + rng.normal(0, 1.0, clean.shape)
    adu = np.rint(100 + 2 * photons).astype(np.uint16)
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.add_image(adu, name="lit background")
    widget.image.value = viewer.layers["lit background"]
    configure(widget, iterations=4, stop="none", noise="poisson-gaussian")
    widget.start()
    wait_for_run(widget)
    used = widget.last_output.metadata["specdip"]["noise_model"]
    assert used["offset_from"] == "skewness"
    assert used["offset"] == pytest.approx(100.0, abs=2.0)
    assert used["read_sigma"] == pytest.approx(2.0, rel=0.25)
    first, how = widget.noise_note.value.split("\n")
    assert first.startswith("last run used: gain ")
    assert "skewness" in how and "upper bound" not in how


def test_a_stack_shares_one_camera_estimate(viewer: Any, open_widget: Any,
                                            wait_for_run: Any) -> None:
    # four slices of one camera (gain 3, read noise 2 photons, offset 100), 48 px each
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    slices = []
    for _ in range(4):
        clean = np.full((48, 48), 0.05)
        for _ in range(6):
            cy, cx, r = rng.uniform(0, 48), rng.uniform(0, 48), rng.uniform(4, 10)
            clean = np.maximum(clean, ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) * 0.8)
        slices.append(np.rint(100 + 3 * (rng.poisson(10 * clean) + rng.normal(0, 2, (48, 48)))))
    layer = viewer.add_image(np.asarray(slices, dtype=np.uint16), name="camera stack")
    widget = open_widget(task="denoise", iterations=2, stop="none", noise="poisson-gaussian")
    widget.image.value = layer
    widget.start()
    wait_for_run(widget)
    models = widget.last_output.metadata["specdip"]["noise_model_per_slice"]
    assert len(models) == 4
    assert all(m["estimated_over"] == {"slices": 4, "of": 4, "samples": models[0]["samples"]}
               for m in models)
    assert all(m["gain"] == pytest.approx(models[0]["gain"], rel=1e-9) for m in models)
    assert "(estimated once over its 4 slices, for every slice)" in widget.noise_note.value


def test_a_part_of_a_layer_takes_the_camera_of_the_whole(viewer: Any, open_widget: Any,
                                                         wait_for_run: Any,
                                                         preview_rectangle: Any,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """A region preview (48 px of a 256 px microscopy image) and one slice of a stack
    run with the camera values of the whole layer: a 48 px crop alone gives a gain of
    a third of the truth."""
    sample = samples.noisy_microscopy(256)
    image = viewer.add_image(sample.image, name="cells")
    widget = open_widget(task="denoise", iterations=2, stop="none", noise="poisson-gaussian")
    widget.image.value = image
    preview_rectangle(viewer, widget, [[20.0, 20.0], [67.0, 67.0]])
    used = widget.session.output.metadata["specdip"]["noise_model"]
    assert used["estimated_over"]["of"] == 1
    whole = restore(sample.image, noise="poisson-gaussian", max_iterations=1, width=8,
                    stop="none").parameters["noise_model"]
    assert used["gain"] == pytest.approx(whole["gain"], rel=1e-6)
    assert used["offset"] == pytest.approx(whole["offset"], rel=1e-6)
    assert "(estimated over the whole image)" in widget.noise_note.value
    # the next preview of the same layer reads it no more: its estimate is kept
    import napari_specdip.core.noise as noise

    def not_again(*_: Any, **__: Any) -> None:
        raise AssertionError("the layer's camera values were estimated again")

    with monkeypatch.context() as patched:
        patched.setattr(noise, "estimate_camera", not_again)
        assert widget.start_region_preview() is not None, widget.last_error
        wait_for_run(widget)
        assert not widget.session.error, widget.session.error
    assert widget.session.output.metadata["specdip"]["noise_model"]["gain"] == used["gain"]
    # one slice of a stack: the camera values of every slice
    stack = viewer.add_image(np.stack([sample.image, sample.image[::-1]]), name="two")
    widget.image.value = stack
    widget.stack.value = "current"
    widget.region.value = None
    widget.start()
    wait_for_run(widget)
    used = widget.last_output.metadata["specdip"]["noise_model"]
    assert used["estimated_over"] == {"slices": 2, "of": 2, "samples": used["samples"]}
    # and every slice: the same values, not estimated again
    widget.stack.value = 0
    with monkeypatch.context() as patched:
        patched.setattr(noise, "estimate_camera", not_again)
        widget.start()
        wait_for_run(widget)
    models = widget.last_output.metadata["specdip"]["noise_model_per_slice"]
    assert [m["gain"] for m in models] == [used["gain"]] * 2


def test_gaussian_noise_sigma_is_shown_estimated_and_can_be_given(
        make_napari_viewer_proxy: Any, configure: Any, wait_for_run: Any) -> None:
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.open_sample("napari-specdip", "noisy_photo")
    assert widget.image.value.name == "noisy photo" and widget.noise.value == "gaussian"
    assert _visible(widget.noise_sigma) and widget.noise_sigma.value == ""
    assert not _visible(widget.noise_gain)
    # 25/255 drawn; clipping to [0, 1] leaves less in the dark and bright parts
    assert widget.noise_note.value == "sample truth: noise sigma 0.098 (0.0873 after clipping)"
    configure(widget, iterations=6, stop="none")
    assert widget.parameters().noise_sigma is None
    widget.start()
    wait_for_run(widget)
    estimated, truth = widget.noise_note.value.split("\n")
    assert estimated.startswith("last run used: noise sigma 0.")
    assert estimated.endswith("(estimated)") and truth.startswith("sample truth: noise sigma")
    used = float(estimated.split()[5])
    assert used == pytest.approx(0.0873, rel=0.05)  # the noise left after clipping
    widget.noise_sigma.value = "0.1"
    assert widget.parameters().noise_sigma == 0.1
    widget.start()
    wait_for_run(widget)
    assert widget.noise_note.value.split("\n")[0] == "last run used: noise sigma 0.1 (given)"
    assert widget.last_output.metadata["specdip"]["parameters"]["noise_sigma"] == 0.1
    widget.noise_sigma.value = "loud"
    with pytest.raises(ValueError, match="noise sigma: 'loud' is not a number"):
        widget.parameters()
    # the Gaussian level of a denoising run only: hidden and not read elsewhere
    for task in ("inpaint", "denoise"):
        widget.task.value = task
        assert _visible(widget.noise_sigma) == (task == "denoise"), task
    widget.noise_sigma.value = "0.1"
    widget.task.value = "inpaint"
    assert widget.parameters().noise_sigma is None
    widget.task.value = "denoise"
    widget.noise.value = "poisson-gaussian"
    assert not _visible(widget.noise_sigma) and widget.parameters().noise_sigma is None


def test_photon_noise_left_to_the_gaussian_model_is_said_after_the_run(
        make_napari_viewer_proxy: Any, configure: Any, wait_for_run: Any) -> None:
    """Camera counts denoised with the default model: the note says the noise grew with
    the signal and the stage followed it (the record keeps the growth)."""
    from skimage import data, img_as_float

    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    clean = 0.05 + 0.95 * samples.center_crop(img_as_float(data.camera()), SIZE)
    rng = np.random.default_rng(0)
    counts = np.rint(100 + 2.0 * (rng.poisson(clean * 30) + rng.normal(0, 1.0, clean.shape)))
    viewer.add_image(counts.astype(np.uint16), name="counts")
    assert widget.image.value.name == "counts" and widget.noise.value == "gaussian"
    configure(widget, iterations=6, stop="none")
    widget.start()
    wait_for_run(widget)
    sigma, growth = widget.noise_note.value.split("\n")
    assert sigma.startswith("last run used: noise sigma") and sigma.endswith("(estimated)")
    assert growth.startswith("(its noise grows with the signal, ")
    assert growth.endswith("x from dark to bright: the Wiener stage followed that; "
                           "poisson-gaussian fits it too)")
    refined = widget.last_output.metadata["specdip"]["parameters"]["refined"]
    assert refined["signal_dependent"]["growth"] >= 2.0


# ------------------------------------------------------------------ ensembles


def test_ensemble_adds_its_uncertainty_as_a_second_layer(
        viewer: Any, open_widget: Any, wait_for_run: Any) -> None:
    sample = samples.noisy_microscopy(SIZE)
    image = viewer.add_image(sample.image, name="cells", scale=(0.5, 0.25),
                             translate=(3.0, -2.0), units=("um", "um"),
                             axis_labels=("y", "x"))
    widget = open_widget(task="denoise", iterations=6, stop="none")
    assert (widget.ensemble.min, widget.ensemble.max, widget.ensemble.value) == (1, 8, 1)
    assert "K times" in widget.ensemble.tooltip
    widget.image.value = image
    widget.ensemble.value = 3
    n_layers = len(viewer.layers)
    widget.start()
    wait_for_run(widget)
    out = widget.last_output
    spread = widget.last_uncertainty
    assert len(viewer.layers) == n_layers + 2
    assert spread.name == f"{out.name} uncertainty" == "cells denoised uncertainty"
    assert spread.colormap.name == "magma" and not spread.visible
    assert spread.data.dtype == np.float32 and spread.data.shape == out.data.shape
    assert float(spread.data.max()) > 0
    np.testing.assert_allclose(spread.contrast_limits,
                               (0.0, np.percentile(spread.data, 99)), rtol=1e-5)
    np.testing.assert_allclose(spread.scale, out.scale)
    np.testing.assert_allclose(spread.translate, out.translate)
    assert tuple(spread.units) == tuple(out.units)
    assert tuple(spread.axis_labels) == ("y", "x")
    assert out.metadata["specdip"]["ensemble"] == 3
    assert spread.metadata["specdip"]["ensemble"] == 3
    assert repr(spread.name) in widget.status.value
    # a region preview runs one member, for speed
    assert widget.start_region_preview() is not None
    wait_for_run(widget)
    assert widget.session.output.metadata["specdip"]["parameters"]["ensemble"] == 1
    # a single network adds no uncertainty layer
    widget.ensemble.value = 1
    n_layers = len(viewer.layers)
    widget.start()
    wait_for_run(widget)
    assert widget.last_uncertainty is None and len(viewer.layers) == n_layers + 1


def test_rgb_ensemble_gives_one_uncertainty_per_pixel(viewer: Any, open_widget: Any,
                                                      wait_for_run: Any) -> None:
    image = viewer.add_image(samples.noisy_photo(32).image, name="photo", rgb=True)
    widget = open_widget(task="denoise", iterations=4, stop="none", ensemble=2)
    widget.image.value = image
    widget.start()
    wait_for_run(widget)
    spread = widget.last_uncertainty
    assert spread is not None and not spread.rgb and spread.data.shape == (32, 32)
    assert "root mean square" in spread.metadata["specdip"]["what"]


def test_rgba_ensemble_uncertainty_is_the_colours_spread(viewer: Any, open_widget: Any,
                                                          wait_for_run: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # the engine's map now has the alpha channel too (0): it must not dilute the colours'
    from napari_specdip._napari import _planning

    seen: list[Any] = []
    assemble = _planning.assemble_uncertainty

    def keep(plan: Any, results: Any) -> Any:
        seen.extend(results)
        return assemble(plan, results)

    monkeypatch.setattr(_planning, "assemble_uncertainty", keep)
    photo = samples.noisy_photo(32).image
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, photo.dtype)], axis=-1)
    image = viewer.add_image(rgba, name="photo", rgb=True)
    widget = open_widget(task="denoise", iterations=4, stop="none", ensemble=2)
    widget.image.value = image
    widget.start()
    wait_for_run(widget)
    spread = widget.last_uncertainty
    assert spread is not None and spread.data.shape == (32, 32) and len(seen) == 1
    colours = seen[0].uncertainty[..., :3]
    np.testing.assert_allclose(spread.data, np.sqrt(np.mean(np.square(colours), axis=-1)),
                               rtol=1e-6)


# ------------------------------------------------------------------ warm start


def _first_losses(widget: Any, wait_for_run: Any, reports: Any) -> dict[int, float]:
    """The loss of each slice's first iteration."""
    first: dict[int, float] = {}

    def grab(item: Any) -> None:
        k, report = item  # (-1, SliceCheck) items come first: the slices' check
        if getattr(report, "iteration", None) == 1:
            first[k] = report.loss

    reports.listeners[:] = [grab]
    widget.start()
    wait_for_run(widget)
    return first


def test_warm_start_carries_each_slice_to_the_next(viewer: Any, open_widget: Any,
                                                   wait_for_run: Any, session_reports: Any) -> None:
    base = samples.jpeg_blocked(SIZE).image
    flat = viewer.add_image(base, name="flat")
    widget = open_widget(task="deblock", iterations=100, stop="none", preview_every=0)
    widget.image.value = flat
    assert not _visible(widget.warm_start)  # a plain image has no slices
    layer = viewer.add_image(np.stack([base, base]), name="stack")
    widget.image.value = layer
    assert _visible(widget.warm_start) and widget.warm_start.value is True
    assert "previous slice" in widget.warm_start.tooltip
    widget.stack.value = "current"
    assert not _visible(widget.warm_start)
    widget.stack.value = 0

    # the estimate plans the slices as the run will: handed on (so tile="auto" fits each
    # slice whole), and not once warm starts are off or a slice is alone
    request = widget._estimate_request()
    assert request is not None and request.planes == 2 and request.handed_on
    widget.warm_start.value = False
    assert not widget._estimate_request().handed_on
    widget.warm_start.value = True

    first = _first_losses(widget, wait_for_run, session_reports)
    stack = widget.last_output.metadata["specdip"]["stack"]
    assert stack["warm_start"] is True and stack["warm_started"] == [False, True]
    # the second slice (the same image) starts where the first ended, far below a
    # fresh network's first loss
    assert first[1] < 0.5 * first[0]
    assert widget.last_output.metadata["specdip"]["stop_reason"] == ["max_iterations"] * 2
    assert "stop: iteration cap." in widget.status.value  # the chart's words, not the key

    widget.warm_start.value = False
    cold = _first_losses(widget, wait_for_run, session_reports)
    stack = widget.last_output.metadata["specdip"]["stack"]
    assert stack["warm_start"] is False and stack["warm_started"] == [False, False]
    # same seed, same image: the same fresh start
    assert cold[1] == pytest.approx(cold[0], rel=1e-6)


def test_a_tiled_run_restores_the_whole_image_tile_by_tile(
        viewer: Any, open_widget: Any, wait_for_run: Any) -> None:
    sample = samples.noisy_microscopy(80)
    image = viewer.add_image(sample.image, name="cells", scale=(0.5, 0.5))
    widget = open_widget(task="denoise", iterations=4, stop="none", tile=32)
    widget.image.value = image
    widget.tile_overlap.value = 20  # more than half a tile: refused before any work
    assert widget.start() is None and "tile_overlap" in widget.last_error
    widget.tile_overlap.value = 8
    assert widget.tile_warm_start.value is True and widget.tile_warm_start.parent is not None
    widget.tile_warm_start.value = False  # every tile from scratch
    seen: list[str] = []
    shown = widget.run_progress

    def record(session: Any, text: str) -> None:
        seen.append(text)
        shown(session, text)

    widget.run_progress = record  # what the widget shows under Run during the run
    widget.start()
    wait_for_run(widget, timeout=120_000)
    out = widget.last_output
    meta = out.metadata["specdip"]
    assert out.data.shape == image.data.shape and out.data.dtype == image.data.dtype
    assert tuple(out.scale) == (0.5, 0.5)
    assert meta["parameters"]["tile"] == 32 and meta["parameters"]["tiles_restored"] == 9
    assert meta["parameters"]["tile_overlap"] == 8
    assert meta["parameters"]["tile_warm_start"] is False
    assert meta["iterations"] == 9 * 4 and len(meta["parameters"]["tiles"]) == 9
    assert any("tile 9 of 9" in text for text in seen), seen
    # the charts show the last tile alone, on its own iterations, and where it stopped
    charts = widget.charts
    assert charts.title_label.text() == "tile 9 of 9"
    assert list(charts.iterations("loss")) == [1.0, 2.0, 3.0, 4.0]
    assert charts.stop_iteration == 4 and charts.stop_reason == "max_iterations"


def test_refine_stage_follows_the_preset_and_shows_for_denoising(viewer: Any) -> None:
    from napari_specdip._napari._widget import RestoreWidget

    widget = RestoreWidget(viewer)
    assert widget.refine.value == "wiener" and widget.parameters().refine == "wiener"
    assert _visible(widget.refine)
    widget.refine.value = "none"  # the user's choice reaches the run
    assert widget.parameters().refine == "none"
    widget.refine.value = "wiener"
    widget.preset.value = "paper"  # the paper keeps the network's output
    assert widget.refine.value == "none" and widget.parameters().refine == "none"
    widget.preset.value = "quick"
    assert widget.parameters().refine == "wiener"
    widget.task.value = "inpaint"
    assert not _visible(widget.refine)
    widget.refine.value = "none"  # hidden: not passed, so the task never sees it
    assert widget.parameters().task == "inpaint"
