"""TIFF reading and writing keep what microscopy files carry: every series, planar RGB,
OME and ImageJ calibration, ImageJ display settings. Engine-free: files.py's
read_image/write_image and the napari reader's read_tiff_layers, on tiny arrays."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from specdip_cli_helpers import ramp, write_like_cli

from napari_specdip._napari._writer import _read, read_tiff_file, read_tiff_layers
from napari_specdip.cli.errors import UsageError
from napari_specdip.cli.files import TiffMeta, quiet_tifffile, read_image, write_image
from napari_specdip.cli.layout import resolve_layout




# --------------------------------------------------------------------------- series


def _two_positions(path: Path) -> None:
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(ramp((2, 8, 9)), metadata={"axes": "ZYX", "Name": "A1", "PhysicalSizeX": 0.1,
                                               "PhysicalSizeY": 0.1, "PhysicalSizeZ": 1.0})
        tif.write(ramp((2, 6, 9)), metadata={"axes": "ZYX", "Name": "B2", "PhysicalSizeX": 0.2,
                                               "PhysicalSizeY": 0.2, "PhysicalSizeZ": 2.0})


def test_multi_position_ome_is_refused_naming_the_series(tmp_path: Path) -> None:
    path = tmp_path / "plate.ome.tif"
    _two_positions(path)
    with pytest.raises(UsageError, match=r"holds 2 image series \(series 0 \(2, 8, 9\), "
                                         r"series 1 \(2, 6, 9\).*--series N.*own TIFF") as info:
        read_image(path)
    assert "\n" not in str(info.value)


def test_plain_multi_series_tiff_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(ramp((8, 9)))
        tif.write(ramp((3, 8, 9)), photometric="minisblack")
    with pytest.raises(UsageError, match="mask .* holds 2 image series.*--series N"):
        read_image(path, what="mask")


def _two_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A plain TIFF of two series of other shapes and intensities (no OME, no ImageJ)."""
    a = np.full((40, 36), 200, np.uint16)
    b = ramp((32, 32)) + 3000
    with tifffile.TiffWriter(path) as tif:
        tif.write(a)
        tif.write(b)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series) == 2
    return a, b


def test_series_picks_one_series_of_a_multi_series_tiff(tmp_path: Path) -> None:
    path = tmp_path / "two.tif"
    a, b = _two_series(path)
    image = read_image(path, series=1)
    assert np.array_equal(image.data, b) and image.axes == "YX" and image.series == 1
    assert np.array_equal(read_image(path, series=0).data, a)
    with pytest.raises(UsageError, match=r"--series 2 is out of range: input .* holds 2 image "
                                         r"series, 0 to 1 \(series 0 \(40, 36\), "
                                         r"series 1 \(32, 32\)\)"):
        read_image(path, series=2)
    with pytest.raises(UsageError, match="out of range"):
        read_image(path, series=-1)


def test_series_takes_the_calibration_of_its_own_position(tmp_path: Path) -> None:
    path = tmp_path / "plate.ome.tif"
    _two_positions(path)
    image = read_image(path, series=1)
    assert image.data.shape == (2, 6, 9) and image.axes == "ZYX"
    assert image.tiff is not None and image.tiff.source == "ome"
    assert image.tiff.describe()["pixel_size"] == pytest.approx([0.2, 0.2])
    assert image.tiff.describe()["spacing"] == pytest.approx(2.0)
    assert read_image(path, series=0).tiff.describe()["pixel_size"] == pytest.approx([0.1, 0.1])


def test_many_series_are_summarised_past_four(tmp_path: Path) -> None:
    path = tmp_path / "six.tif"
    with tifffile.TiffWriter(path) as tif:
        for k in range(6):
            tif.write(ramp((8, 9 + k)))
    with pytest.raises(UsageError) as info:
        read_image(path)
    message = str(info.value)
    assert "series 3 (8, 12) and 2 more" in message and "series 4" not in message
    assert "holds 6 image series" in message


def test_a_single_image_takes_series_0_only(tmp_path: Path) -> None:
    png = tmp_path / "one.png"
    import imageio.v3 as iio

    iio.imwrite(png, ramp((8, 9), np.uint8))
    assert read_image(png, series=0).data.shape == (8, 9)
    with pytest.raises(UsageError, match=r"--series 1: input .*one.png is a PNG file.*"
                                         r"only --series 0"):
        read_image(png, series=1)
    tif = tmp_path / "one.tif"
    tifffile.imwrite(tif, ramp((8, 9)))
    assert read_image(tif, series=0).series == 0
    with pytest.raises(UsageError, match=r"--series 3: input .* holds one image series, of "
                                         r"shape \(8, 9\); only --series 0"):
        read_image(tif, series=3)
    # a mask or reference of one image serves every series of the input
    for path in (png, tif):
        shared = read_image(path, what="mask", series=3, series_if_many=True)
        assert shared.data.shape == (8, 9) and shared.series is None
    two = tmp_path / "two.tif"
    _, b = _two_series(two)
    assert np.array_equal(read_image(two, what="mask", series=1, series_if_many=True).data, b)


def test_pyramid_levels_and_thumbnails_are_not_series(tmp_path: Path) -> None:
    full = ramp((32, 32), np.uint8)
    pyramid = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(pyramid, ome=True) as tif:
        tif.write(full, subifds=2, metadata={"axes": "YX"})
        tif.write(full[::2, ::2], subfiletype=1)
        tif.write(full[::4, ::4], subfiletype=1)
    thumbnail = tmp_path / "thumbnail.tif"
    with tifffile.TiffWriter(thumbnail) as tif:
        tif.write(full)
        tif.write(full[::8, ::8], subfiletype=1)  # a reduced-resolution page
    preview_first = tmp_path / "preview_first.tif"
    with tifffile.TiffWriter(preview_first) as tif:
        tif.write(full[::8, ::8], subfiletype=1, metadata=None)
        tif.write(full, metadata=None)
    for path in (pyramid, thumbnail, preview_first):
        assert np.array_equal(read_image(path).data, full)
        (layer,) = read_tiff_layers(path)
        assert np.array_equal(layer[0], full) and layer[1]["name"] == path.stem


def test_napari_reader_opens_one_layer_per_series_with_its_calibration(tmp_path: Path) -> None:
    path = tmp_path / "plate.ome.tif"
    _two_positions(path)
    layers = _read(str(path))
    assert [layer[2] for layer in layers] == ["image", "image"]
    (a, a_attrs, _), (b, b_attrs, _) = layers
    assert a.shape == (2, 8, 9) and b.shape == (2, 6, 9)
    assert np.array_equal(b, ramp((2, 6, 9)))
    # named as --series counts them
    assert a_attrs["name"] == "plate.ome series 0 (A1)"
    assert b_attrs["name"] == "plate.ome series 1 (B2)"
    assert a_attrs["scale"] == pytest.approx((1.0, 0.1, 0.1))
    assert b_attrs["scale"] == pytest.approx((2.0, 0.2, 0.2))
    assert b_attrs["units"] == ("um", "um", "um")
    assert read_tiff_file(path)[0].shape == (2, 8, 9)  # the first series


def test_napari_reader_opens_one_layer_per_channel_with_axis_labels(tmp_path: Path) -> None:
    path = tmp_path / "hyper.tif"
    stack = ramp((3, 2, 8, 9))
    tifffile.imwrite(path, stack, imagej=True, resolution=(4.0, 4.0),
                     metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "micron"})
    ((data, attrs, kind),) = _read(str(path))
    assert kind == "image" and np.array_equal(data, stack)
    # napari splits the layer at channel_axis; each value is spelled out per channel,
    # since napari reads a tuple of as many strings as channels as one per layer
    assert attrs["channel_axis"] == 1
    assert attrs["name"] == ["hyper channel 0", "hyper channel 1"]
    assert attrs["axis_labels"] == [("z", "y", "x")] * 2
    assert attrs["units"] == [("um", "um", "um")] * 2
    assert attrs["scale"] == [pytest.approx((2.0, 0.25, 0.25))] * 2
    # no channel axis: one layer, labelled from the file's axes (a time series stays one
    # when saved again), unknown axes keep napari's labels
    series = tmp_path / "series.tif"
    tifffile.imwrite(series, ramp((3, 8, 9)), imagej=True, metadata={"axes": "TYX"})
    (layer,) = read_tiff_layers(series)
    assert layer[1]["axis_labels"] == ("t", "y", "x") and "channel_axis" not in layer[1]
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, ramp((2, 3, 8, 9)), photometric="minisblack", metadata=None)
    (layer,) = read_tiff_layers(plain)
    assert "axis_labels" not in layer[1] and "channel_axis" not in layer[1]


# --------------------------------------------------------------------------- planar RGB


@pytest.mark.parametrize("samples", [3, 4])
def test_planar_rgb_is_colour_for_the_cli_and_napari(tmp_path: Path, samples: int) -> None:
    rgb = ramp((samples, 8, 9), np.uint8)
    source = tmp_path / "planar.tif"
    tifffile.imwrite(source, rgb, photometric="rgb", planarconfig="separate",
                     extrasamples=["unassalpha"] if samples == 4 else None)
    image = read_image(source)
    assert image.axes == "SYX" and image.data.shape == (samples, 8, 9)
    layout = resolve_layout(image.data.shape, kind="tiff", axes=image.axes)
    assert layout.channel_axis == 0 and layout.spatial == (1, 2) and not layout.is_stack
    assert layout.alpha == (samples == 4)  # alpha is carried over, not restored

    data, attrs = read_tiff_file(source)
    assert attrs["rgb"] and np.array_equal(data, np.moveaxis(rgb, 0, -1))

    out = tmp_path / "out.tif"
    write_like_cli(source, out)
    with tifffile.TiffFile(out) as tif:
        page = tif.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
        assert page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
        assert page.samplesperpixel == samples and len(tif.pages) == 1
        assert tif.series[0].axes == "SYX"
    assert np.array_equal(tifffile.imread(out), rgb)


def test_planar_rgb_stack_opens_in_napari_samples_last(tmp_path: Path) -> None:
    stack = ramp((2, 3, 8, 9), np.uint16)
    source = tmp_path / "zstack.tif"
    tifffile.imwrite(source, stack, photometric="rgb", planarconfig="separate",
                     metadata={"axes": "ZSYX"})
    data, attrs = read_tiff_file(source)
    assert attrs["rgb"] and data.shape == (2, 8, 9, 3)
    assert np.array_equal(data, np.moveaxis(stack, 1, -1))
    layout = resolve_layout(stack.shape, kind="tiff", axes=read_image(source).axes)
    assert layout.channel_axis == 1 and layout.stack == (0,)


# --------------------------------------------------------------------------- OME calibration


def _ome(path: Path, data: np.ndarray, axes: str, **sizes: Any) -> None:
    tifffile.imwrite(path, data, ome=True, metadata={"axes": axes, **sizes})


def test_ome_physical_sizes_are_read_and_kept_as_imagej_calibration(tmp_path: Path) -> None:
    source = tmp_path / "cells.ome.tif"
    _ome(source, ramp((2, 8, 9)), "ZYX", PhysicalSizeX=0.13, PhysicalSizeY=0.26,
         PhysicalSizeZ=500, PhysicalSizeZUnit="nm", TimeIncrement=250,
         TimeIncrementUnit="ms")
    meta = read_image(source).tiff
    assert meta is not None and meta.source == "ome"
    described = meta.describe()
    assert described["pixel_size"] == pytest.approx([0.13, 0.26])
    assert described["unit"] == "micron" and described["spacing"] == pytest.approx(0.5)
    assert meta.imagej is not None and meta.imagej["finterval"] == 250
    assert meta.imagej["tunit"] == "ms"

    _, attrs = read_tiff_file(source)
    assert attrs["scale"] == pytest.approx((0.5, 0.26, 0.13))
    assert attrs["units"] == ("um", "um", "um")

    out = tmp_path / "x2.tif"
    write_like_cli(source, out, scale=2)  # super-resolution halves the pixel size
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        x, y = tif.pages.first.get_resolution()
        assert (1 / x, 1 / y) == pytest.approx((0.065, 0.13))
        ij = tif.imagej_metadata
        assert ij["unit"] == "micron" and ij["spacing"] == pytest.approx(0.5)
        assert ij["finterval"] == 250 and ij["tunit"] == "ms"
    _, attrs = read_tiff_file(out)
    assert attrs["scale"] == pytest.approx((0.5, 0.13, 0.065))


@pytest.mark.parametrize(("unit", "size", "expected_unit", "expected_size"), [
    ("nm", 65.0, "nm", 65.0),
    ("Å", 20.0, "nm", 2.0),
    ("mm", 0.002, "mm", 0.002),
])
def test_ome_units_go_to_an_imagej_unit(tmp_path: Path, unit: str, size: float,
                                        expected_unit: str, expected_size: float) -> None:
    source = tmp_path / "u.ome.tif"
    _ome(source, ramp((8, 9)), "YX", PhysicalSizeX=size, PhysicalSizeXUnit=unit,
         PhysicalSizeY=size, PhysicalSizeYUnit=unit)
    meta = read_image(source).tiff
    assert meta is not None and meta.imagej == {"unit": expected_unit}
    assert meta.describe()["pixel_size"] == pytest.approx([expected_size] * 2)


def test_ome_without_physical_sizes_or_in_pixels_has_no_calibration(tmp_path: Path) -> None:
    for name, sizes in (("none", {}), ("pixel", {"PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0,
                                                  "PhysicalSizeXUnit": "pixel",
                                                  "PhysicalSizeYUnit": "pixel"})):
        source = tmp_path / f"{name}.ome.tif"
        _ome(source, ramp((8, 9)), "YX", **sizes)
        meta = read_image(source).tiff
        assert meta is None or (meta.source is None and not meta.imagej)
        assert "scale" not in read_tiff_file(source)[1]


def test_ome_calibration_survives_a_layout_imagej_cannot_hold(tmp_path: Path) -> None:
    # C before Z is not ImageJ's order: shaped metadata keeps the calibration
    source = tmp_path / "czyx.ome.tif"
    _ome(source, ramp((2, 3, 8, 9)), "CZYX", PhysicalSizeX=0.1, PhysicalSizeY=0.1,
         PhysicalSizeZ=0.3)
    out = tmp_path / "czyx_out.tif"
    write_like_cli(source, out)
    with tifffile.TiffFile(out) as tif:
        assert not tif.is_imagej and tif.series[0].axes == "CZYX"
        assert tif.shaped_metadata[0]["unit"] == "micron"
    meta = read_image(out).tiff
    assert meta is not None and meta.source == "shaped"
    described = meta.describe()
    assert described["pixel_size"] == pytest.approx([0.1, 0.1])
    assert described["unit"] == "micron" and described["spacing"] == pytest.approx(0.3)
    _, attrs = read_tiff_file(out)  # one napari layer per channel
    assert attrs["channel_axis"] == 0
    assert attrs["scale"] == [pytest.approx((0.3, 0.1, 0.1))] * 2
    assert attrs["units"] == [("um", "um", "um")] * 2


# --------------------------------------------------------------------------- ImageJ


def _luts() -> list[np.ndarray]:
    ramp = np.arange(256, dtype=np.uint8)
    green, magenta = np.zeros((3, 256), np.uint8), np.zeros((3, 256), np.uint8)
    green[1] = ramp
    magenta[0] = magenta[2] = ramp
    return [green, magenta]


def test_uncalibrated_imagej_hyperstack_stays_imagej_with_mode_and_luts(tmp_path: Path) -> None:
    source = tmp_path / "hyper.tif"
    tifffile.imwrite(source, ramp((2, 2, 8, 9)), imagej=True,
                     metadata={"axes": "ZCYX", "mode": "composite", "LUTs": _luts(),
                               "Ranges": (0.0, 10.0, 0.0, 20.0), "min": 0.0, "max": 10.0})
    out = tmp_path / "hyper_out.tif"
    write_like_cli(source, out)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZCYX"
        ij = tif.imagej_metadata
        assert ij["mode"] == "composite"
        assert all(np.array_equal(a, b) for a, b in zip(ij["LUTs"], _luts(), strict=True))
        # the display ranges of the noisy input would clip the result
        assert not {"Ranges", "min", "max"} & set(ij)
    assert np.array_equal(tifffile.imread(out), ramp((2, 2, 8, 9)))


def test_luts_that_do_not_match_the_channels_are_dropped(tmp_path: Path) -> None:
    meta = TiffMeta(source="imagej", display={"mode": "composite", "LUTs": _luts()})
    out = tmp_path / "three.tif"
    write_image(out, ramp((3, 8, 9)), axes="CYX", tiff=meta)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and tif.imagej_metadata["mode"] == "composite"
        assert "LUTs" not in tif.imagej_metadata


def test_imagej_input_imagej_cannot_hold_goes_shaped_without_display(tmp_path: Path) -> None:
    meta = TiffMeta(resolution=(4.0, 4.0), resolution_unit=1, imagej={"unit": "micron"},
                    source="imagej", display={"mode": "composite", "LUTs": _luts()})
    out = tmp_path / "f64.tif"
    write_image(out, ramp((2, 8, 9), np.float64), axes="CYX", tiff=meta)
    with tifffile.TiffFile(out) as tif:
        assert not tif.is_imagej and tif.series[0].dtype == np.float64
        assert tif.shaped_metadata[0]["unit"] == "micron"
        assert "LUTs" not in tif.shaped_metadata[0]


# --------------------------------------------------------------------------- tifffile's log


def test_a_corrupt_tiff_gives_our_error_and_no_tifffile_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "corrupt.tif"
    path.write_bytes(b"II*\x00" + b"\x00garbage" * 8)
    with caplog.at_level(logging.DEBUG, logger="tifffile"), pytest.raises(
            UsageError, match="not a valid TIFF file"):
        read_image(path)
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]
    # outside our reads tifffile speaks as before
    with caplog.at_level(logging.WARNING, logger="tifffile"), tifffile.TiffFile(path) as tif:
        assert not tif.series
    assert [r for r in caplog.records if r.name.startswith("tifffile")]


def test_quiet_tifffile_lets_out_what_a_successful_read_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tifffile")
    elsewhere: list[bool] = []

    def other_thread() -> None:
        logger.warning("from another thread")
        elsewhere.append(any(r.getMessage() == "from another thread" for r in caplog.records))

    with caplog.at_level(logging.WARNING, logger="tifffile"):
        with quiet_tifffile():
            logger.warning("missing frames are zeroed")
            assert not caplog.records  # held back while reading
            worker = threading.Thread(target=other_thread)
            worker.start()
            worker.join()
        assert elsewhere == [True]  # another thread's reads are not held back
        assert [r.getMessage() for r in caplog.records] == ["from another thread",
                                                             "missing frames are zeroed"]
        caplog.clear()
        with pytest.raises(ValueError), quiet_tifffile():
            logger.warning("invalid offset")
            raise ValueError("unreadable")
        assert not caplog.records


@pytest.mark.parametrize(("shape", "dtype"), [((8, 9, 3), np.float32), ((8, 9, 2), np.uint8),
                                              ((2, 8, 9, 4), np.float64)])
def test_colour_that_tiff_rgb_cannot_take_is_stored_as_samples(
        tmp_path: Path, shape: tuple[int, ...], dtype: Any) -> None:
    # float RGB, gray + alpha: one page per plane with the channels as samples (it was one
    # page per row of the image, which other programs open as a stack of rows)
    data = ramp(shape, dtype)
    out = tmp_path / "colour.tif"
    write_image(out, data, channel_axis=-1)
    with tifffile.TiffFile(out) as tif:
        assert len(tif.pages) == (shape[0] if len(shape) == 4 else 1)
        assert tif.pages[0].samplesperpixel == shape[-1]
    back = read_image(out)
    assert back.data.dtype == data.dtype and np.array_equal(back.data, data)
    layout = resolve_layout(back.data.shape, kind=back.kind, axes=back.axes)
    assert layout.channel_axis is not None and layout.channel_axis % data.ndim == data.ndim - 1
