"""Take the README's screenshot from a real napari window.

Opens the noisy-photo sample, docks the SpecDIP restore widget and its charts,
runs a short restoration (width 32, 160 iterations) and grabs the whole window
while the run is finishing, so the preview, the progress and the charts show.

Run it under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py [out.png]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ITERATIONS = 160
CAPTURE_AT = 150  # iteration after which the window is grabbed (a preview step)
WIDTH, HEIGHT = 1500, 940


def main(out: Path) -> None:
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(title="napari-specdip", show=True)
    viewer.window.resize(WIDTH, HEIGHT)
    viewer.open_sample("napari-specdip", "noisy_photo")
    _, widget = viewer.window.add_plugin_dock_widget("napari-specdip", "Restore")
    widget.image.value = viewer.layers["noisy photo"]
    widget.net_width.value = 32
    widget.max_iterations.value = ITERATIONS
    widget.stop_window.value = 40
    widget.preview_every.value = 10

    qt_window = viewer.window._qt_window
    charts_dock = widget.charts.parent()
    qt_window.resizeDocks([charts_dock], [250], Qt.Orientation.Vertical)
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled = True  # noisy input | live preview, side by side
    grid.spacing = 0.05
    app.processEvents()

    last = {"iteration": 0}
    worker = widget.start()
    if worker is None:
        raise SystemExit(f"the run was refused: {widget.last_error}")
    worker.yielded.connect(lambda item: last.__setitem__("iteration", item[1].iteration))
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
    activity = getattr(qt_window, "_activity_dialog", None)  # napari's progress bars
    if activity is not None:
        activity.show()
        activity.move_to_bottom_right()
        # make room for it: shrink the images a little and lift them above it
        viewer.camera.zoom *= 0.8
        lift = (activity.height() / 2 + 12) / viewer.camera.zoom
        cy, cx = viewer.camera.center[-2:]
        viewer.camera.center = (cy + lift, cx)
    for _ in range(20):  # let the preview, the charts and the progress bar paint
        app.processEvents()
        time.sleep(0.02)
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"saved {out} at iteration {last['iteration']}")
    worker.resume()
    while widget.is_running:
        app.processEvents()
        time.sleep(0.01)
    viewer.close()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("screenshot.png")
    main(target)
