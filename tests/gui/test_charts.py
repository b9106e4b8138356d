"""The charts dock: readable, explained, one description shared with the CLI's PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_specdip import samples
from napari_specdip.chart_panels import BAND_LABELS, PANELS

pytestmark = pytest.mark.gui

SIZE = 64


def test_every_panel_says_what_it_shows(make_napari_viewer_proxy: Any) -> None:
    from napari.utils.theme import get_theme

    viewer = make_napari_viewer_proxy(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    charts = widget.charts
    assert charts.panels["fbc"].title.text() == "Frequency-band correspondence (FBC)"
    theme_points = float(get_theme(viewer.theme).font_size.removesuffix("pt"))
    assert charts.font_point_size == pytest.approx(theme_points)
    for key, panel in charts.panels.items():
        description = PANELS[key]
        assert panel.title.text() == description.title
        assert len(description.help) > 60
        # the help line is on the title, the plot and a "?" button
        assert panel.title.toolTip() == panel.plot_widget.toolTip() == description.help
        assert panel.help_button.toolTip() == description.help
        left = panel.plot.getAxis("left")
        assert left.labelText == description.y_label and left.labelText
        assert left.style["tickFont"].pointSizeF() == pytest.approx(theme_points)
        # before the first point the plot says why it is empty
        assert panel.note.isVisible() and "waiting" in panel.note.toPlainText()
    # too narrow for its title: it ends in "...", whole in the tooltip (it was cut mid-word)
    title = charts.panels["fbc"].title
    title.resize(120, title.height())
    assert title.elided().endswith("…") and len(title.elided()) < len(title.text())
    assert title.toolTip().startswith(title.text())
    title.resize(2000, title.height())
    assert title.elided() == title.text() and title.toolTip() == PANELS["fbc"].help


def test_notes_markers_and_layout_during_a_run(make_napari_viewer_proxy: Any,
                                              wait_for_run: Any, session_reports: Any) -> None:
    viewer = make_napari_viewer_proxy(show=True)
    sample = samples.noisy_photo(SIZE)
    image = viewer.add_image(sample.image, name="photo", rgb=True)
    clean = viewer.add_image(sample.clean, name="photo (clean)", rgb=True, visible=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.image.value = image
    widget.reference.value = clean
    widget.net_width.value = 8
    widget.max_iterations.value = 12
    widget.stop.value = "ratio"
    widget.stop_window.value = 50
    widget.signal_every.value = 1  # a point at iteration 3
    charts = widget.charts
    ratio = charts.panels["ratio"]
    notes: list[tuple[bool, str, bool]] = []

    def look(item: Any) -> None:  # during the run, after the widget's own slot
        if item[1].iteration == 3:
            charts.redraw()
            notes.append((ratio.note.isVisible(), ratio.note.toPlainText(),
                          charts.panels["fbc"].note.isVisible()))

    session_reports.listeners.append(look)
    widget.start()
    wait_for_run(widget)
    # the window means could not exist yet: the plot said when they start
    assert notes == [(True, "the two window means start at iteration 101: each averages "
                            "50 values of the ratio", False)]
    # the stop is marked on every panel, in words on the stopping panel
    assert ratio.stop_label.isVisible()
    assert ratio.stop_label.toPlainText() == "stop at 12: iteration cap"
    assert all(p.stop_line is not None and p.stop_line.isVisible()
               for p in charts.panels.values())
    # the legends name what was drawn: 12 iterations give no window means, so the ratio
    # panel has its one curve and no legend (it listed three); before a run, every curve
    assert ratio.legend_labels() == ["ratio"] and ratio.legend.text() == ""
    # the stop text: the theme's text colour, on the theme's background, both themes
    for theme in ("dark", "light"):
        viewer.theme = theme
        assert ratio.stop_label.color.name() == charts.colors["text"]
        assert _contrast(charts.colors["text"], charts.colors["background"]) > 4.5
        assert _contrast(charts.colors["stop"], charts.colors["plot"]) > 2.0
    # four panels in a row when wide, a 2 x 2 grid when narrow
    charts.resize(1400, 300)
    charts._relayout()
    assert charts.columns == 4
    charts.resize(700, 400)
    charts._relayout()
    assert charts.columns == 2
    charts.resize(1100, 400)  # four titles do not fit in one row at 1100 px
    charts._relayout()
    assert charts.columns == 2
    # a dock too short for two rows keeps one: a grid would squash each plot to 80 px
    charts.resize(1100, 262)
    charts._relayout()
    assert charts.columns == 4
    grid = charts._grid
    assert all(grid.getItemPosition(grid.indexOf(p))[0] == 0
               for p in charts.panels.values() if grid.indexOf(p) >= 0)
    # a new run: every curve named again
    charts.reset()
    assert ratio.legend_labels() == [s.label for s in PANELS["ratio"].series]
    assert "previous&nbsp;window" in ratio.legend.text()


def test_one_description_for_the_dock_and_the_cli(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  make_napari_viewer_proxy: Any) -> None:
    from napari_specdip.cli import charts as cli_charts

    figures: list[Any] = []
    monkeypatch.setattr(cli_charts, "_save", lambda fig, path: figures.append(fig) or path)
    n = 5
    history = {"signal_iteration": np.arange(1, n + 1), "iteration": np.arange(1, n + 1),
               "loss": np.linspace(0.1, 0.01, n), "ratio": np.linspace(5, 3, n),
               "ratio_mean_previous": np.full(n, np.nan), "ratio_mean_recent": np.full(n, np.nan),
               **{f"fbc{k}": np.linspace(0, 1, n) for k in range(1, 6)}}
    cli_charts.fbc_chart(history, tmp_path / "fbc.png", stop_iteration=4, stop_reason="ratio")
    cli_charts.ratio_chart(history, tmp_path / "ratio.png")
    cli_charts.loss_chart(history, tmp_path / "loss.png")
    fbc_fig, ratio_fig, loss_fig = figures
    legend = [t.get_text() for t in fbc_fig.axes[0].get_legend().get_texts()]
    assert legend[:5] == list(BAND_LABELS) and legend[5] == "stop at 4: blur/sharpness rule"
    assert fbc_fig.axes[0].get_ylabel() == PANELS["fbc"].y_label
    assert PANELS["fbc"].title in fbc_fig.axes[0].get_title()
    assert ratio_fig.axes[0].get_title() == PANELS["ratio"].title
    assert loss_fig.axes[0].get_ylabel() == PANELS["loss"].y_label
    # the dock draws the very same labels and colours
    viewer = make_napari_viewer_proxy()
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    panel = widget.charts.panels["fbc"]
    assert panel.legend_labels() == list(BAND_LABELS)
    for series in PANELS["fbc"].series:
        assert series.label.replace(" ", "&nbsp;") in panel.legend.text()
        assert panel.curves[series.key].opts["pen"].color().name() == series.color
    # "held-out, averaged" once wrapped after "held-" at three panels in 1000 px
    loss = widget.charts.panels["loss"].legend.text()
    assert "held&#8209;out" in loss and "held-out" not in loss
    line = fbc_fig.axes[0].get_lines()[0]
    assert line.get_color() == PANELS["fbc"].series[0].color


def _contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two hex colours."""
    def lum(c: str) -> float:
        rgb = [int(c[i:i + 2], 16) / 255.0 for i in (1, 3, 5)]
        lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_a_capped_run_holding_an_earlier_iteration_marks_both(
        viewer: Any, open_widget: Any, wait_for_run: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_specdip._napari import _session

    run_jobs = _session.run_jobs

    def earlier_result(*args: Any, **kwargs: Any) -> Any:
        results = yield from run_jobs(*args, **kwargs)
        for result in results:  # as when the auto rule's minimum came before the cap
            result.stop_iteration = 2
        return results

    monkeypatch.setattr(_session, "run_jobs", earlier_result)
    viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="a")
    widget = open_widget(iterations=6, stop="none")
    widget.start()
    wait_for_run(widget)
    meta = widget.last_output.metadata["specdip"]
    assert (meta["iterations"], meta["stop_reason"], meta["stop_iteration"]) == (
        6, "max_iterations", 2)
    charts = widget.charts
    # the run ended at its cap: the stop is marked there, the result's iteration apart
    assert charts.stop_iteration == 6 and charts.result_iteration == 2
    ratio = charts.panels["ratio"]
    assert ratio.stop_label.toPlainText() == "stop at 6: iteration cap\nresult: iteration 2"
    for panel in charts.panels.values():
        assert panel.stop_line.value() == 6 and panel.result_line.value() == 2
        assert panel.result_line.isVisible()
    # the next run that returns its last iteration shows no result marker
    monkeypatch.setattr(_session, "run_jobs", run_jobs)
    widget.start()
    wait_for_run(widget)
    assert (charts.stop_iteration, charts.result_iteration) == (6, None)
    assert not any(p.result_line.isVisible() for p in charts.panels.values())
    assert ratio.stop_label.toPlainText() == "stop at 6: iteration cap"
