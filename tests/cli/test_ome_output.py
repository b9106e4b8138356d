"""An output named ``*.ome.tif`` is an OME-TIFF: the OME-XML carries the axes and the
calibration as physical sizes, and reads back to the same calibration and pixels. Engine-free
(files.py's write_image/read_image) but for two short CLI runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
import tifffile
from specdip_cli_helpers import FAST, assert_clean_failure, ramp, run_cli, write_like_cli

from napari_specdip.cli.errors import UsageError
from napari_specdip.cli.files import (
    TiffMeta,
    check_writable_kind,
    is_ome_tiff,
    ome_pixels_metadata,
    read_image,
    write_image,
)



def _ome(path: Path, data: np.ndarray, axes: str, **sizes: Any) -> None:
    tifffile.imwrite(path, data, ome=True, photometric="rgb" if "S" in axes else None,
                     metadata={"axes": axes, **sizes})


def _pixels(path: Path) -> dict[str, str]:
    """The attributes of the file's (first) OME Pixels element."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej
        root = ElementTree.fromstring(tif.ome_metadata)
    pixels = next(e for e in root.iter() if e.tag.endswith("Pixels"))
    return dict(pixels.attrib)



SIZES = {"PhysicalSizeX": 0.13, "PhysicalSizeY": 0.26, "PhysicalSizeZ": 0.5,
         "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm"}


@pytest.mark.parametrize(("axes", "shape", "dtype", "sizes"), [
    ("ZYX", (3, 8, 9), np.uint16, SIZES),
    ("CZYX", (2, 3, 8, 9), np.float32, SIZES),
    ("TZYX", (2, 3, 8, 9), np.int16, {**SIZES, "TimeIncrement": 250.0,
                                       "TimeIncrementUnit": "ms"}),
    ("YXS", (8, 9, 3), np.uint8, {k: v for k, v in SIZES.items() if "Z" not in k}),
    ("YX", (8, 9), np.float64, {"PhysicalSizeX": 65.0, "PhysicalSizeXUnit": "nm",
                                "PhysicalSizeY": 65.0, "PhysicalSizeYUnit": "nm"}),
    ("ZYX", (2, 8, 9), np.uint32, {"PhysicalSizeX": 0.002, "PhysicalSizeXUnit": "mm",
                                   "PhysicalSizeY": 0.004, "PhysicalSizeYUnit": "mm",
                                   "PhysicalSizeZ": 0.01, "PhysicalSizeZUnit": "mm"}),
])
def test_ome_in_ome_out_keeps_sizes_units_axes_and_pixels(
        tmp_path: Path, axes: str, shape: tuple[int, ...], dtype: Any,
        sizes: dict[str, Any]) -> None:
    source = tmp_path / "in.ome.tif"
    _ome(source, ramp(shape, dtype), axes, **sizes)
    out = tmp_path / "out.ome.tif"
    data = write_like_cli(source, out)
    pixels = _pixels(out)
    assert {k: pixels[k] for k in sizes} == {k: str(v) for k, v in sizes.items()}
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == axes
        if "S" in axes:
            assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.RGB
        x, y = tif.pages.first.get_resolution()  # the resolution tags are still written
        assert (1 / x, 1 / y) == pytest.approx((sizes["PhysicalSizeX"], sizes["PhysicalSizeY"]))
    before, after = read_image(source), read_image(out)
    assert after.tiff == before.tiff and after.tiff is not None and after.tiff.source == "ome"
    assert after.axes == axes and after.data.dtype == dtype
    np.testing.assert_array_equal(after.data, data)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_super_resolution_halves_the_physical_sizes(tmp_path: Path) -> None:
    source = tmp_path / "cells.ome.tif"
    _ome(source, ramp((2, 8, 9)), "ZYX", PhysicalSizeX=0.13, PhysicalSizeY=0.26,
         PhysicalSizeZ=500, PhysicalSizeZUnit="nm")
    out = tmp_path / "x2.OME.TIFF"  # the suffix in any case
    write_like_cli(source, out, scale=2)
    pixels = _pixels(out)
    assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.065)
    assert float(pixels["PhysicalSizeY"]) == pytest.approx(0.13)
    assert pixels["PhysicalSizeXUnit"] == pixels["PhysicalSizeZUnit"] == "µm"
    assert float(pixels["PhysicalSizeZ"]) == pytest.approx(0.5)  # z is not resampled
    assert (pixels["SizeX"], pixels["SizeY"], pixels["SizeZ"]) == ("18", "16", "2")


def test_plain_tif_output_of_an_ome_input_stays_imagej(tmp_path: Path) -> None:
    source = tmp_path / "cells.ome.tif"
    _ome(source, ramp((2, 8, 9)), "ZYX", **SIZES)
    out = tmp_path / "out.tif"
    write_like_cli(source, out)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej and not tif.is_ome
        assert tif.imagej_metadata["unit"] == "micron"


def test_uncalibrated_input_gives_a_valid_ome_tiff_without_sizes(tmp_path: Path) -> None:
    for name, data, axes in (("plain", ramp((3, 8, 9)), None),  # tifffile names it
                             ("pages", ramp((3, 8, 9)), "IYX"),  # a plain multi-page stack
                             ("png", ramp((8, 9, 3), np.uint8), None)):
        out = tmp_path / f"{name}.ome.tiff"
        write_image(out, data, channel_axis=-1 if name == "png" else None, axes=axes)
        pixels = _pixels(out)
        assert not [k for k in pixels if k.startswith(("Physical", "TimeIncrement"))]
        with tifffile.TiffFile(out) as tif:
            # a stack of unknown axes is slices, as ImageJ reads one
            assert tif.series[0].axes == ("YXS" if name == "png" else "ZYX")
            np.testing.assert_array_equal(tif.asarray(), data)
        assert read_image(out).tiff is None or read_image(out).tiff.source is None


def test_colour_that_is_not_rgb_is_stored_as_samples(tmp_path: Path) -> None:
    # float RGB and gray + alpha are samples per pixel, not one image per row
    for name, data, axes, channel_axis in (("float", ramp((8, 9, 3), np.float32), "YXS", 2),
                                           ("planar", ramp((3, 8, 9), np.float64), "SYX", 0),
                                           ("alpha", ramp((8, 9, 2), np.uint8), None, 2)):
        out = tmp_path / f"{name}.ome.tif"
        write_image(out, data, channel_axis=channel_axis, axes=axes)
        with tifffile.TiffFile(out) as tif:
            assert tif.is_ome and len(tif.pages) == 1
            assert tif.series[0].axes == (axes or "YXS")
            np.testing.assert_array_equal(tif.asarray(), data)


def test_imagej_calibration_goes_to_ome_units(tmp_path: Path) -> None:
    meta = TiffMeta(resolution=(4.0, 2.0), resolution_unit=1, source="imagej",
                    imagej={"unit": "\\u00B5m", "spacing": 0.3, "finterval": 2.0})
    assert ome_pixels_metadata(meta) == {
        "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.5,
        "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 0.3, "PhysicalSizeZUnit": "µm",
        "TimeIncrement": 2.0, "TimeIncrementUnit": "s"}  # ImageJ's default time unit
    out = tmp_path / "ij.ome.tif"
    write_image(out, ramp((2, 8, 9)), axes="ZYX", tiff=meta)
    back = read_image(out).tiff
    assert back is not None and back.resolution == (4.0, 2.0)
    assert back.imagej == {"unit": "micron", "spacing": 0.3, "finterval": 2.0, "tunit": "sec"}
    # a length ImageJ knows by another name; pixel and unknown units give no sizes
    inch = ome_pixels_metadata(TiffMeta(resolution=(2.0, 2.0), imagej={"unit": "inch"}))
    assert inch["PhysicalSizeX"] == 0.5 and inch["PhysicalSizeXUnit"] == "in"
    for unit in ("pixel", "furlong"):
        assert ome_pixels_metadata(TiffMeta(resolution=(2.0, 2.0), imagej={"unit": unit})) == {}


@pytest.mark.parametrize(("unit", "ome_unit", "size"), [(2, "in", 1 / 72), (3, "cm", 0.01),
                                                        (1, None, None)])
def test_resolution_tags_without_imagej_unit(tmp_path: Path, unit: int, ome_unit: str | None,
                                             size: float | None) -> None:
    meta = TiffMeta(resolution=(1 / size if size else 5.0,) * 2, resolution_unit=unit)
    out = tmp_path / "tags.ome.tif"
    write_image(out, ramp((8, 9)), tiff=meta)
    pixels = _pixels(out)
    assert pixels.get("PhysicalSizeXUnit") == ome_unit
    if size is not None:
        assert float(pixels["PhysicalSizeX"]) == pytest.approx(size)
    with tifffile.TiffFile(out) as tif:
        assert int(tif.pages.first.resolutionunit) == unit  # the tags as today


def test_dtypes_ome_cannot_name_are_refused_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "x.ome.tif"
    assert is_ome_tiff(out) and is_ome_tiff(tmp_path / "X.Ome.Tiff")
    assert not is_ome_tiff(tmp_path / "x.tif") and not is_ome_tiff(tmp_path / "ome.tif")
    for dtype in ("int64", "uint64", "float16"):
        with pytest.raises(UsageError, match=f"OME-TIFF stores .*the result is {dtype}.*"
                                             "write .tif"):
            check_writable_kind(out, stack=False, channels=None, dtype=np.dtype(dtype),
                                float_range=None)
        check_writable_kind(tmp_path / "x.tif", stack=False, channels=None,
                            dtype=np.dtype(dtype), float_range=None)
        with pytest.raises(UsageError, match="OME-TIFF cannot store"):
            write_image(out, ramp((8, 9), dtype))
    assert not list(tmp_path.iterdir())  # nothing left behind
    write_image(out, ramp((8, 9)) > 100)  # bool is OME's "bit"
    assert _pixels(out)["Type"] == "bit"
    assert read_image(out).data.dtype == bool


def test_axes_ome_cannot_name_are_mapped(tmp_path: Path) -> None:
    out = tmp_path / "x.ome.tif"
    for axes, shape, expected in (("QQYX", (2, 3, 8, 9), "TZYX"), ("TIYX", (2, 3, 8, 9), "TZYX"),
                                  ("IQZCYX", (2, 2, 2, 2, 8, 9), "TQZCYX")):
        write_image(out, ramp(shape), axes=axes)
        with tifffile.TiffFile(out) as tif:
            assert tif.is_ome and tif.series[0].axes == expected
            np.testing.assert_array_equal(tif.asarray(), ramp(shape))
    with pytest.raises(UsageError, match="OME-TIFF cannot hold this image"):
        write_image(out, ramp((2,) * 5 + (8, 9)), axes="QQQQQYX")


# --------------------------------------------------------------------------- the CLI


def test_cli_writes_ome_with_the_input_calibration(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "cells.ome.tif"
    _ome(source, rng.integers(0, 4000, (2, 24, 20)).astype(np.uint16), "ZYX",
         PhysicalSizeX=0.13, PhysicalSizeY=0.13, PhysicalSizeZ=0.4)
    out = tmp_path / "out.ome.tif"
    proc = run_cli("restore", source, "-o", out, *FAST)
    assert proc.returncode == 0, proc.stderr
    pixels = _pixels(out)
    assert (pixels["PhysicalSizeX"], pixels["PhysicalSizeY"], pixels["PhysicalSizeZ"]) == (
        "0.13", "0.13", "0.4")
    assert pixels["PhysicalSizeXUnit"] == "µm" and pixels["Type"] == "uint16"
    assert read_image(out).tiff == read_image(source).tiff

    big = tmp_path / "big.ome.tif"
    proc = run_cli("restore", source, "-o", big, "--task", "super-resolve", "--factor", "2",
                   *FAST)
    assert proc.returncode == 0, proc.stderr
    pixels = _pixels(big)
    assert float(pixels["PhysicalSizeX"]) == pytest.approx(0.065)
    assert float(pixels["PhysicalSizeY"]) == pytest.approx(0.065)
    assert float(pixels["PhysicalSizeZ"]) == pytest.approx(0.4)
    assert (pixels["SizeX"], pixels["SizeY"]) == ("40", "48")
    sidecar = json.loads(Path(f"{big}.json").read_text())["specdip"]
    assert sidecar["calibration"]["pixel_size"] == pytest.approx([0.065, 0.065])


def test_cli_refuses_an_ome_output_dtype_before_any_work(tmp_path: Path) -> None:
    source = tmp_path / "cells.ome.tif"
    _ome(source, ramp((24, 20)), "YX", PhysicalSizeX=0.1, PhysicalSizeY=0.1)
    out = tmp_path / "out.ome.tif"
    proc = run_cli("restore", source, "-o", out, "--output-dtype", "int64", *FAST)
    assert_clean_failure(proc, 2, "OME-TIFF stores", "int64")
    assert not out.exists()


def test_names_made_from_an_ome_name_stay_ome_names(tmp_path: Path) -> None:
    from napari_specdip.cli.batch import _output_for
    from napari_specdip.cli.files import split_name
    from napari_specdip.cli.runner import uncertainty_path

    assert split_name(Path("a.OME.TIFF")) == ("a", ".OME.TIFF")
    assert split_name(Path("a.b.tif")) == ("a.b", ".tif")
    assert _output_for(Path("in/c.ome.tif"), tmp_path, "_d", "same") == tmp_path / "c_d.ome.tif"
    assert _output_for(Path("in/c.ome.tif"), tmp_path, "", "png") == tmp_path / "c.png"
    assert uncertainty_path(tmp_path / "o.ome.tiff") == tmp_path / "o_uncertainty.ome.tif"
    assert uncertainty_path(tmp_path / "o.png") == tmp_path / "o_uncertainty.tif"


def test_default_output_and_uncertainty_of_an_ome_input_are_ome(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    source = tmp_path / "cells.ome.tif"
    _ome(source, rng.integers(0, 4000, (24, 20)).astype(np.uint16), "YX",
         PhysicalSizeX=0.2, PhysicalSizeY=0.2)
    proc = run_cli("restore", source, "--ensemble", "2", *FAST)
    assert proc.returncode == 0, proc.stderr
    for name in ("cells_restored.ome.tif", "cells_restored_uncertainty.ome.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.is_ome, name
        assert _pixels(tmp_path / name)["PhysicalSizeX"] == "0.2"
