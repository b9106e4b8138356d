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
