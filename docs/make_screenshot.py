"""Take the README's screenshots from a real napari window.

Opens the noisy-microscopy sample (its camera noise is Poisson-Gaussian, and the
sample carries the true camera values), docks the SpecDIP restore widget and its
charts, waits for the estimate under Run, restores with the default (balanced)
settings until the hold-out rule stops, and writes, next to this script (or into
the folder given):

- ``screenshot.png``: the whole window while the run is under way (preview,
  progress with time left, charts);
- ``screenshot_widget.png``: the restore widget alone, after the run (the noise
  model's estimate next to the sample's truth, the estimate under Run);
- ``screenshot_charts_dark.png`` and ``screenshot_charts_light.png``: the charts
  dock after the run, in napari's dark and light themes.

Run it under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py [folder]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

CAPTURE_AT = 120  # iteration after which the window is grabbed (a preview step)
WIDTH, HEIGHT = 1500, 940
CHARTS_HEIGHT = 270


def _settle(app: Any, rounds: int = 20) -> None:
    for _ in range(rounds):
        app.processEvents()
        time.sleep(0.02)


def main(folder: Path) -> list[Path]:
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(title="napari-specdip", show=True)
    viewer.window.resize(WIDTH, HEIGHT)
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    viewer.open_sample("napari-specdip", "noisy_microscopy")  # the widget follows its hints
    widget.preview_every.value = 10
    widget.refresh_estimate()
    while widget.last_estimate is None:
        app.processEvents()
        time.sleep(0.02)
    print(f"estimate: {widget.estimate_label.value}")

    qt_window = viewer.window._qt_window
    charts_dock = widget.charts.parent()
    qt_window.resizeDocks([charts_dock], [CHARTS_HEIGHT], Qt.Orientation.Vertical)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled = True  # noisy input | live preview, side by side
    grid.spacing = 0.05
    _settle(app, 5)

    last = {"iteration": 0}
    worker = widget.start()
    if worker is None:
        raise SystemExit(f"the run was refused: {widget.last_error}")
    # (a stack's slice checks come first, with no iteration)
    worker.yielded.connect(lambda item: last.__setitem__(
        "iteration", getattr(item[1], "iteration", 0)))
    while widget.is_running and last["iteration"] < CAPTURE_AT:
        app.processEvents()
        time.sleep(0.01)
    # hold the run (between two iterations) while the window is grabbed
    worker.pause()
    while widget.is_running and not worker.is_paused:
        app.processEvents()
        time.sleep(0.01)
    widget.charts.redraw()
    viewer.reset_view()
    _settle(app)
    written = [folder / "screenshot.png"]
    viewer.screenshot(path=str(written[0]), canvas_only=False, flash=False)
    print(f"saved {written[0]} at iteration {last['iteration']}")
    worker.resume()
    while widget.is_running:
        app.processEvents()
        time.sleep(0.01)
    _settle(app)

    written.append(folder / "screenshot_widget.png")
    # the whole content, not the part the dock's scroll area shows
    content = widget.scroll.widget()
    width = content.width()
    layout = content.layout()
    tall = max(content.sizeHint().height(), content.minimumSizeHint().height(),
               layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else 0)
    content.resize(width, tall)
    app.processEvents()
    content.grab().save(str(written[-1]))
    for theme in ("dark", "light"):
        viewer.theme = theme
        _settle(app)
        written.append(folder / f"screenshot_charts_{theme}.png")
        widget.charts.grab().save(str(written[-1]))
    for path in written[1:]:
        print(f"saved {path}")
    viewer.close()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    main(target)
