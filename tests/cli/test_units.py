"""In-process checks of the command line's building blocks (fast, warnings are errors)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from napari_specdip.cli.batch import Row, print_table
from napari_specdip.cli.errors import UsageError
from napari_specdip.cli.files import TEMP_MARK, atomic_path, sidecar_path, write_image
from napari_specdip.cli.layout import resolve_layout, split_mask
from napari_specdip.cli.progress import Progress


@pytest.mark.parametrize(
    ("shape", "kind", "axes", "channel", "stack", "expect"),
    [
        ((48, 40), "png", None, "auto", "auto", (None, (0, 1), ())),
        ((40, 48, 3), "png", None, "auto", "auto", (2, (0, 1), ())),
        ((3, 32, 32), "tiff", "ZYX", "auto", "auto", (None, (1, 2), (0,))),
        ((3, 32, 32), "tiff", "SYX", "auto", "auto", (0, (1, 2), ())),
        ((3, 32, 32), "tiff", "SYX", "none", "auto", (None, (1, 2), (0,))),
        ((5, 2, 32, 32), "tiff", "TCYX", "auto", "auto", (None, (2, 3), (0, 1))),
        ((32, 32, 6), "tiff", "YXQ", "auto", 2, (None, (0, 1), (2,))),
        ((4, 32, 32, 3), "tiff", "ZYXS", "auto", "auto", (3, (1, 2), (0,))),
    ],
)
def test_layouts(shape, kind, axes, channel, stack, expect) -> None:
    layout = resolve_layout(shape, kind=kind, axes=axes, channel_axis=channel, stack_axis=stack)
    assert (layout.channel_axis, layout.spatial, layout.stack) == expect


def test_layout_round_trip_and_alpha() -> None:
    data = np.arange(4 * 10 * 12 * 4, dtype=np.uint16).reshape(10, 4, 12, 4)  # (Y, Z, X, S)
    layout = resolve_layout(data.shape, kind="tiff", axes="YZXS")
    assert layout.stack == (1,) and layout.channel_axis == 3 and layout.alpha
    canonical = layout.canonical(data)
    out = layout.new_canonical_output(2, data.dtype)
    for index in layout.indices():
        image, axis, alpha = layout.engine_image(canonical, index)
        assert image.shape == (10, 12, 3) and axis == -1
        layout.put(out, index, np.repeat(np.repeat(image, 2, 0), 2, 1), alpha, 2)
    back = layout.to_file_order(out)
    assert back.shape == layout.output_shape(2) == (20, 4, 24, 4)
    np.testing.assert_array_equal(back[::2, :, ::2], data)


def test_layout_errors() -> None:
    with pytest.raises(UsageError, match="not a single 2D image"):
        resolve_layout((3, 8, 8), kind="tiff", axes="ZYX", stack_axis="none")
    with pytest.raises(UsageError, match="out of range"):
        resolve_layout((8, 8), kind="png", channel_axis=5)


def test_masks() -> None:
    layout = resolve_layout((3, 16, 16), kind="tiff", axes="ZYX")
    shared, per_slice = split_mask(np.ones((16, 16)), layout, mask_kind="png")
    assert shared is not None and per_slice is None
    shared, per_slice = split_mask(np.zeros((3, 16, 16)), layout, mask_kind="tiff")
    assert shared is None and per_slice is not None and per_slice.shape == (3, 16, 16)
    rgb_mask = np.zeros((16, 16, 3), np.uint8)
    rgb_mask[2, 3, 1] = 255
    shared, _ = split_mask(rgb_mask, layout, mask_kind="png")
    assert shared is not None and shared.sum() == 1 and shared[2, 3]
    with pytest.raises(UsageError, match=r"mask shape \(8, 8\)"):
        split_mask(np.ones((8, 8)), layout, mask_kind="png")


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    write_image(target, np.zeros((8, 8), np.uint16))
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]
    assert TEMP_MARK not in target.name
    assert sidecar_path(target).name == "out.tif.json"


def test_summary_table() -> None:
    stream = io.StringIO()
    print_table([Row("a.tif", "ok", 12, "ratio", 3.25, "out/a.tif"),
                 Row("b.png", "failed", message="cannot read input b.png")], stream)
    text = stream.getvalue()
    assert text.splitlines()[0].split() == ["file", "status", "iterations", "stop", "seconds",
                                            "message"]
    assert "3.2" in text and "1 ok, 1 failed" in text


def test_fallback_progress_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tqdm(name: str, *args, **kwargs):
        if name == "tqdm":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    stream = io.StringIO()
    bar = Progress(10, desc="x", stream=stream)
    for i in range(1, 11):
        bar.update(i, loss=0.5, ratio=2.0)
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "10/10" in text and "loss 0.5" in text and text.endswith("\n")


def test_option_changes_read_sidecars_as_json() -> None:
    """A sidecar holds JSON: tuples come back as lists, and the automatic depth as the
    number the engine resolved; neither is a change of options."""
    import json

    from napari_specdip.cli.batch import option_changes
    from napari_specdip.core.params import RestoreParameters, auto_depth

    params = RestoreParameters.for_task("denoise", width=8, max_iterations=5, stop="none")
    old = json.loads(json.dumps({**params.as_dict(), "depth": auto_depth(48, 40),
                                 "input_shape": [48, 40], "channel_axis": None}))
    meta = {"task": "denoise", "mask": None, "parameters": old}
    options = {"width": 8, "max_iterations": 5, "stop": "none", "num_threads": 2}
    assert option_changes(meta, "denoise", options, None) == []
    assert auto_depth(48, 40) == 2
    assert option_changes(meta, "denoise", {**options, "depth": 2}, None) == []
    assert option_changes(meta, "denoise", {**options, "depth": 3}, None) == ["depth 2 -> 3"]
    # an RGB image's size is read without its channel axis
    rgb = {**meta, "parameters": {**old, "input_shape": [40, 48, 3], "channel_axis": -1}}
    assert option_changes(rgb, "denoise", options, None) == []
    assert option_changes(meta, "denoise", {**options, "preset": "quick"}, None) == [
        "preset balanced -> quick", "learning_rate 0.003 -> 0.01", "tile 0 -> auto"]
    changed = option_changes(meta, "denoise", {**options, "ensemble": 2, "holdout": 0.2}, None)
    assert changed == ["holdout 0.1 -> 0.2", "ensemble 1 -> 2"]


def test_option_changes_compare_the_series() -> None:
    """Another --series is another image; no --series read the file's only series, the
    same as --series 0 (a file of several series is refused without it)."""
    from napari_specdip.cli.batch import option_changes

    meta = {"task": "denoise", "mask": None, "parameters": {}}
    assert option_changes(meta, "denoise", {}, None, series=0) == []
    assert option_changes({**meta, "series": 0}, "denoise", {}, None) == []
    assert option_changes({**meta, "series": 1}, "denoise", {}, None, series=1) == []
    assert option_changes({**meta, "series": 1}, "denoise", {}, None, series=2) == [
        "series 1 -> 2"]
    assert option_changes(meta, "denoise", {}, None, series=1) == ["series None -> 1"]


def test_typical_stop_and_the_estimate_in_words() -> None:
    from types import SimpleNamespace

    from napari_specdip.cli.runner import describe_estimate, rough_seconds
    from napari_specdip.core.estimate import TYPICAL_STOP, typical_stop
    from napari_specdip.core.params import RestoreParameters

    balanced = RestoreParameters.for_task("denoise")
    assert typical_stop(balanced, 128, 128) == TYPICAL_STOP["balanced"]
    low, high = typical_stop(balanced, 1024, 1024) or (0, 0)
    # a larger image fits more slowly: the range's upper end grows with the side
    assert low == TYPICAL_STOP["balanced"][0] and high > TYPICAL_STOP["balanced"][1]
    assert typical_stop(balanced.replace(max_iterations=400), 128, 128) == (350, 400)
    assert typical_stop(balanced.replace(max_iterations=300), 128, 128) is None
    assert typical_stop(RestoreParameters.for_task("denoise", preset="paper"), 128, 128) is None
    assert rough_seconds(40) == "40 s" and rough_seconds(60, 240) == "1-4 min"
    assert rough_seconds(40, 130) == "40 s-2 min" and rough_seconds(float("nan")) == "unknown"

    est = SimpleNamespace(seconds=1200.0, seconds_per_iteration=0.4, iterations=3000,
                          peak_memory_bytes=2_000_000, available_memory_bytes=8_000_000_000,
                          device="cpu", tiles=1, tile_load=1.0, canvas=(128, 128))
    text = describe_estimate(est, params=balanced, size=(128, 128), threads=2)
    first, second = text.splitlines()
    assert first == ("estimate: 40.0 s per 100 iterations; at most 20 min 0 s (3000 "
                     "iterations); usually stops after 350-1300 iterations (2-9 min), typical, "
                     "not a promise")
    assert second == "  peak memory 2.0 MB of 8.0 GB available on cpu, 2 torch thread(s)"
    stack = describe_estimate(est, 3, params=balanced, size=(128, 128))
    assert "(3000 iterations per slice, 3 slices)" in stack and "(7-26 min in all)" in stack
    # each slice's fit pays its setup besides its steps: 3 x 100 s more here
    setup = SimpleNamespace(**{**vars(est), "setup_seconds": 100.0})
    assert "(12-31 min in all)" in describe_estimate(setup, 3, params=balanced, size=(128, 128))
    # deblocking: the budget its JPEG calls for is the stop, not a typical range
    deblock = RestoreParameters.for_task("deblock")
    jpeg = SimpleNamespace(**{**vars(est), "iterations": 430, "seconds": 172.0,
                              "jpeg_quality": 10})
    first = describe_estimate(jpeg, params=deblock, size=(128, 128)).splitlines()[0]
    assert first == ("estimate: 40.0 s per 100 iterations; at most 2 min 52 s (430 "
                     "iterations); the budget for JPEG quality ≈ 10")


def test_the_estimate_suggests_tiles_for_a_large_image_on_a_cpu() -> None:
    """As the widget does: one network on a 512 px image on a CPU needs thousands of
    steps, 128 px tiles far fewer (benchmarks/tiling.py)."""
    from types import SimpleNamespace

    from napari_specdip.cli.runner import describe_estimate
    from napari_specdip.core.params import AUTO_TILE, RestoreParameters

    quick = RestoreParameters.for_task("denoise", preset="quick")
    hint = f"hint: --tile {AUTO_TILE} would finish sooner on this CPU"

    def text(device: str, side: int, params: RestoreParameters, seconds: float = 1200.0) -> str:
        est = SimpleNamespace(seconds=seconds, seconds_per_iteration=0.8, iterations=1500,
                              peak_memory_bytes=2_000_000, available_memory_bytes=8_000_000_000,
                              device=device, tiles=1, tile_load=1.0, canvas=(side, side))
        return describe_estimate(est, params=params, size=(side, side))

    whole = quick.replace(tile=0)  # quick's own "auto" tiles such an image already
    assert text("cpu", 512, whole).splitlines()[-1] == f"  {hint} (benchmarks/tiling.py)"
    assert hint not in text("cpu", 512, quick)
    assert hint not in text("cuda:0 (NVIDIA H100)", 512, whole)
    assert hint not in text("cpu", 256, whole)
    assert hint not in text("cpu", 512, whole, seconds=2.4)  # a few iterations asked for
    assert hint not in text("cpu", 512, RestoreParameters.for_task("denoise", preset="paper"))



def test_the_estimate_in_words_of_a_tiled_run() -> None:
    """Each tile stops on its own: the typical stop of the largest tile, per tile, and
    the time for all of them (its area-weighted count, ``tile_load``)."""
    from types import SimpleNamespace

    from napari_specdip.cli.runner import describe_estimate, rough_seconds
    from napari_specdip.core.estimate import typical_stop
    from napari_specdip.core.params import RestoreParameters

    quick = RestoreParameters.for_task("denoise", preset="quick", tile=128)
    est = SimpleNamespace(seconds=900.0, seconds_per_iteration=0.05, iterations=16 * 1500,
                          peak_memory_bytes=2_000_000, available_memory_bytes=8_000_000_000,
                          device="cpu", tiles=16, tile_load=12.0, canvas=(160, 160))
    low, high = typical_stop(quick, 160, 160) or (0, 0)
    text = describe_estimate(est, params=quick, size=(512, 512))
    assert f"usually stops after {low}-{high} iterations per tile (16 tiles)" in text
    assert f"({rough_seconds(low * 0.05 * 12.0, high * 0.05 * 12.0)} in all)" in text
