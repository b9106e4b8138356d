"""Reading and writing images and sidecars for the command line.

TIFF goes through tifffile (any dtype, stacks, axes metadata, ImageJ and OME
calibration; one image series per file, or the one ``--series`` picks; an output named
``*.ome.tif``/``*.ome.tiff`` is written as OME-TIFF), PNG and JPEG through imageio. Every
write is atomic: the data goes to a hidden temporary file in the destination's
folder, is flushed to disk, then renamed over the final name with
:func:`os.replace`, so a file under an output name is always complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from napari_specdip.cli.errors import UsageError, one_line

TIFF_SUFFIXES = (".tif", ".tiff")
#: output names written as OME-TIFF (OME readers go by the name)
OME_SUFFIXES = (".ome.tif", ".ome.tiff")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES + JPEG_SUFFIXES
TEMP_MARK = ".specdip-tmp"
SIDECAR_SUFFIX = ".json"


def kind_of(path: Path) -> str:
    """``"tiff"``, ``"png"`` or ``"jpeg"`` from the file name; UsageError otherwise."""
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in PNG_SUFFIXES:
        return "png"
    if suffix in JPEG_SUFFIXES:
        return "jpeg"
    raise UsageError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                     f"use one of {', '.join(IMAGE_SUFFIXES)}")


#: ImageJ metadata entries carried from an input TIFF to its output
IMAGEJ_KEYS = ("spacing", "unit", "finterval", "tunit", "xorigin", "yorigin", "zorigin", "loop")
#: ImageJ display entries carried to an ImageJ output (display ranges are not: restoring
#: changes the intensities, and ImageJ sets fresh ones on opening)
IMAGEJ_DISPLAY_KEYS = ("mode", "LUTs")
#: data types ImageJ hyperstacks can hold
IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
#: data types OME-XML's Pixels Type can name (bool is its "bit")
OME_DTYPES = ("bool", "uint8", "uint16", "uint32", "int8", "int16", "int32", "float32",
              "float64")


def is_ome_tiff(path: Path) -> bool:
    """Whether ``path``'s name asks for an OME-TIFF (``.ome.tif``/``.ome.tiff``, any case)."""
    return path.name.lower().endswith(OME_SUFFIXES)


def split_name(path: Path) -> tuple[str, str]:
    """``(stem, extension)`` of a file name, ``.ome.tif`` counted as one extension, so
    that a name made from them (``stem + "_restored" + extension``) stays an OME name.

    Examples
    --------
    >>> split_name(Path("cells.ome.tif")), split_name(Path("a.b.png"))
    (('cells', '.ome.tif'), ('a.b', '.png'))
    """
    if is_ome_tiff(path):
        cut = len(path.name) - len(next(s for s in OME_SUFFIXES
                                        if path.name.lower().endswith(s)))
        return path.name[:cut], path.name[cut:]
    return path.stem, path.suffix


@dataclass(frozen=True)
class TiffMeta:
    """Physical calibration of a TIFF: pixel size, z spacing and their unit.

    ``resolution`` is (x, y) pixels per ``resolution_unit`` (TIFF's
    XResolution/YResolution; 1 none, 2 inch, 3 centimetre); ``imagej`` holds
    ImageJ's entries (``spacing``: z step, ``unit``: e.g. ``"micron"``,
    ``finterval``: frame interval), also when they come from OME-XML or shaped
    metadata. ``source``: ``"imagej"``, ``"ome"``, ``"shaped"`` or None (resolution
    tags only); ``display``: ImageJ's composite ``mode`` and channel ``LUTs``.
    """

    resolution: tuple[float, float] | None = None
    resolution_unit: int | None = None
    imagej: dict[str, Any] | None = None
    source: str | None = None
    display: dict[str, Any] | None = dataclasses.field(default=None, compare=False,
                                                       repr=False)

    def scaled(self, factor: int) -> TiffMeta:
        """The calibration of an output ``factor`` times finer in x and y."""
        if self.resolution is None or factor == 1:
            return self
        x, y = self.resolution
        return dataclasses.replace(self, resolution=(x * factor, y * factor))

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for sidecars: pixel size per unit, z spacing."""
        out: dict[str, Any] = {}
        if self.resolution is not None:
            x, y = self.resolution
            out["pixel_size"] = [1.0 / x if x else None, 1.0 / y if y else None]
            out["resolution_unit"] = {1: "none", 2: "inch", 3: "centimeter"}.get(
                self.resolution_unit or 1, str(self.resolution_unit))
        if self.imagej:
            out.update({k: v for k, v in self.imagej.items() if k in ("spacing", "unit")})
        return out


@dataclass(frozen=True)
class ImageFile:
    """An image read from disk."""

    path: Path
    data: npt.NDArray[Any]
    kind: str  # "tiff", "png" or "jpeg"
    axes: str | None = None  # tifffile's axes code of the series, e.g. "ZYX", "YXS"
    tiff: TiffMeta | None = None  # calibration of a TIFF input
    series: int | None = None  # the image series asked for (``--series``), None if none was
    orientation: int = 1  # the EXIF orientation the pixels were turned upright by (1: none)


# Whole-slide formats store these beside the image as series of their own (OME names its
# images freely, so its names are not looked at).
_SIDE_IMAGES = ("thumbnail", "label", "macro", "map", "overview")


def image_series(tif: Any) -> list[Any]:
    """A TiffFile's image series without the reduced-resolution copies stored beside
    them (thumbnails, LSM previews, slide labels). Pyramid levels are no series of
    their own: tifffile keeps them in their series' ``levels``."""
    series = list(tif.series)
    kept = [s for s in series if not s.keyframe.is_reduced
            and not (s.kind != "ome" and str(s.name or "").lower() in _SIDE_IMAGES)]
    return kept or series[:1]


def series_index(tif: Any, series: Any) -> int:
    """The position of one of ``tif.series`` (for :func:`tiff_meta`)."""
    return next(i for i, s in enumerate(tif.series) if s is series)


# OME length units in metres; ImageJ's length units in metres (ImageJ takes these names)
_OME_LENGTHS = {"m": 1.0, "dm": 1e-1, "cm": 1e-2, "mm": 1e-3, "µm": 1e-6, "μm": 1e-6,
                "um": 1e-6, "nm": 1e-9, "pm": 1e-12, "fm": 1e-15, "Å": 1e-10, "km": 1e3,
                "in": 0.0254, "ft": 0.3048, "yd": 0.9144, "mi": 1609.344,
                "thou": 2.54e-5, "li": 2.54e-3, "pt": 0.0254 / 72}
_IMAGEJ_LENGTHS = (("m", 1.0), ("cm", 1e-2), ("mm", 1e-3), ("micron", 1e-6), ("nm", 1e-9))
_OME_TIMES = {"s": ("sec", 1.0), "ms": ("ms", 1.0), "min": ("min", 1.0), "h": ("hour", 1.0),
              "µs": ("sec", 1e-6), "μs": ("sec", 1e-6), "ns": ("sec", 1e-9)}
# the other way, for OME outputs: ImageJ's spellings of a unit -> OME's name (a name of
# _OME_LENGTHS that is not listed stands for itself); µ is the micro sign, as OME spells it
_TO_OME_LENGTHS = {"micron": "µm", "microns": "µm", "um": "µm", "μm": "µm", "\\u00B5m": "µm",
                   "inch": "in", "inches": "in", "angstrom": "Å"}
_TO_OME_TIMES = {"sec": "s", "s": "s", "second": "s", "seconds": "s", "ms": "ms", "msec": "ms",
                 "min": "min", "hour": "h", "hours": "h", "hr": "h", "h": "h", "µs": "µs",
                 "μs": "µs", "us": "µs", "usec": "µs", "ns": "ns"}


def _ome_pixels(xml: str) -> list[tuple[str, Any]]:
    """(image name, Pixels element) of every OME Image, in the document's order."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    found = []
    for image in root:
        if not image.tag.endswith("Image"):
            continue
        for pixels in image:
            if pixels.tag.endswith("Pixels"):
                found.append((image.attrib.get("Name", ""), pixels))
                break
    return found


def _series_pixels(tif: Any, index: int) -> Any:
    """The OME Pixels element of ``tif.series[index]``: tifffile skips images without
    data, so series and images are matched by name and size, in order."""
    try:
        images = _ome_pixels(tif.ome_metadata)
    except Exception:  # malformed XML: no calibration, tifffile has said so
        return None
    used: set[int] = set()
    match = None
    for s in tif.series[: index + 1]:
        axes, shape = str(s.axes), tuple(s.shape)
        size = {f"Size{a}": str(shape[axes.index(a)]) for a in "XY" if a in axes}
        free = [i for i, (_, pixels) in enumerate(images) if i not in used
                and all(pixels.attrib.get(k) == n for k, n in size.items())]
        named = [i for i in free if images[i][0] == (s.name or "")]
        match = next(iter(named or free), None)
        if match is not None:
            used.add(match)
    return None if match is None else images[match][1]


def _ome_length(pixels: Any, axis: str) -> tuple[float, float] | None:
    """PhysicalSize``axis`` and its unit in metres (OME's default unit is the µm);
    None when missing, not positive or in no length unit (``pixel``)."""
    try:
        value = float(pixels.attrib[f"PhysicalSize{axis}"])
        per_unit = _OME_LENGTHS[pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm")]
    except (KeyError, ValueError):
        return None
    return (value, per_unit) if np.isfinite(value) and value > 0 else None


def ome_calibration(pixels: Any) -> tuple[tuple[float, float], dict[str, Any]] | None:
    """Resolution (pixels per unit) and ImageJ entries (``unit``, ``spacing``,
    ``finterval``, ``tunit``) of an OME Pixels element; None without both x and y sizes.

    Lengths go to the ImageJ unit of PhysicalSizeX (``"micron"`` for µm), or the
    nearest one ImageJ knows (Å -> nm, inch -> cm).
    """
    x, y = _ome_length(pixels, "X"), _ome_length(pixels, "Y")
    if x is None or y is None:
        return None
    unit, per_unit = next(((name, m) for name, m in _IMAGEJ_LENGTHS if m <= x[1] * 1.000001),
                          _IMAGEJ_LENGTHS[-1])
    entries: dict[str, Any] = {"unit": unit}
    z = _ome_length(pixels, "Z")
    if z is not None:
        entries["spacing"] = z[0] * (z[1] / per_unit)
    try:
        step = float(pixels.attrib["TimeIncrement"])
        tunit, per_tunit = _OME_TIMES[pixels.attrib.get("TimeIncrementUnit", "s")]
    except (KeyError, ValueError):
        pass
    else:
        if np.isfinite(step) and step > 0:
            entries.update(finterval=step * per_tunit, tunit=tunit)
    return (1.0 / (x[0] * (x[1] / per_unit)), 1.0 / (y[0] * (y[1] / per_unit))), entries


def tiff_meta(tif: Any, index: int = 0) -> TiffMeta | None:
    """Calibration of ``tif.series[index]``: the OME-XML physical sizes, else the
    resolution tags with ImageJ's entries (or the same entries in our shaped metadata);
    ImageJ's composite mode and channel LUTs. None for a file without any."""
    page = tif.series[index].keyframe
    resolution = None
    unit = None
    if "XResolution" in page.tags and "YResolution" in page.tags:
        x, y = page.get_resolution()
        resolution = (float(x), float(y))
        unit = int(page.resolutionunit)
    entries: dict[str, Any] = {}
    source: str | None = None
    display: dict[str, Any] = {}
    if tif.is_ome and tif.ome_metadata:
        pixels = _series_pixels(tif, index)
        ome = ome_calibration(pixels) if pixels is not None else None
        if ome is not None:
            # OME's sizes are what Bio-Formats shows; resolution tags may be a camera's dpi
            (resolution, entries), unit, source = ome, 1, "ome"
    elif tif.is_imagej:
        ij = tif.imagej_metadata or {}
        entries = {k: v for k, v in ij.items() if k in IMAGEJ_KEYS}
        display = {k: v for k, v in ij.items() if k in IMAGEJ_DISPLAY_KEYS}
        source = "imagej"
    elif tif.is_shaped and tif.shaped_metadata:
        # our own output where ImageJ could not hold the data
        shaped = tif.shaped_metadata[min(index, len(tif.shaped_metadata) - 1)]
        entries = {k: v for k, v in shaped.items() if k in IMAGEJ_KEYS}
        source = "shaped" if entries else None
    if resolution is None and not entries and source != "imagej":
        return None
    return TiffMeta(resolution=resolution, resolution_unit=unit, imagej=entries or None,
                    source=source, display=display or None)


@contextlib.contextmanager
def quiet_tifffile() -> Iterator[None]:
    """Hold back what tifffile logs in this thread while the block runs; let it out
    only if the block succeeds (a failed read becomes our one-line error instead)."""
    held: list[logging.LogRecord] = []
    thread = threading.get_ident()

    def hold(record: logging.LogRecord) -> bool:
        if record.thread == thread:
            held.append(record)
            return False
        return True

    logger = logging.getLogger("tifffile")
    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
    for record in held:
        logger.handle(record)


def _series_summary(series: list[Any]) -> str:
    """``series 0 (5, 512, 512), series 1 (5, 512, 512), ...``: the first 4, then a count."""
    listed = ", ".join(f"series {k} {tuple(s.shape)}" for k, s in enumerate(series[:4]))
    return listed + (f" and {len(series) - 4} more" if len(series) > 4 else "")


def _pick_series(many: list[Any], series: int | None, *, what: str, p: Path) -> Any:
    """The one of ``many`` (:func:`image_series`) that ``series`` asks for; UsageError for
    an index out of range, and for several series and no index."""
    if series is None:
        if len(many) == 1:
            return many[0]
        # restoring the first position of a multi-position file would lose the others
        # without a word; a warning scrolls by unseen in a batch
        verb = "restore" if what == "input" else "use"
        raise UsageError(f"{what} {p} holds {len(many)} image series ({_series_summary(many)}: "
                         "positions, wells or tiles of one acquisition); specdip restores one "
                         f"per run: pass --series N (0-based) to {verb} series N, or save each "
                         "series as its own TIFF first (Fiji: Bio-Formats Importer with 'Open "
                         "all series', then save each)")
    if not 0 <= series < len(many):
        if len(many) == 1:
            raise UsageError(f"--series {series}: {what} {p} holds one image series, of "
                             f"shape {tuple(many[0].shape)}; only --series 0 fits it")
        raise UsageError(f"--series {series} is out of range: {what} {p} holds {len(many)} "
                         f"image series, 0 to {len(many) - 1} ({_series_summary(many)})")
    return many[series]


def read_image(path: str | os.PathLike[str], *, what: str = "input",
               series: int | None = None, series_if_many: bool = False) -> ImageFile:
    """Read a TIFF (one of its image series), PNG or JPEG.

    Parameters
    ----------
    path
        The image file.
    what
        What the file is for (``"input"``, ``"mask"``, ``"reference"``), in messages.
    series
        The image series to read, 0-based as tifffile counts, among
        :func:`image_series` (``--series``). None: the file must hold one series.
        A PNG, a JPEG and a TIFF of one series take 0 only.
    series_if_many
        Apply ``series`` only to a TIFF of several series and read any other file
        as it is: a mask or reference made for every position at once.

    Returns
    -------
    ImageFile
        The pixels, with the series' axes and calibration for a TIFF.

    Raises
    ------
    UsageError
        With one line, on any failure; for a TIFF of several series (positions,
        wells, tiles) and no ``series``; for a ``series`` the file does not hold.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{what} file not found: {p}")
    if p.is_dir():
        raise UsageError(f"{what} {p} is a directory, not an image file")
    kind = kind_of(p)
    if kind != "tiff" and series not in (None, 0) and not series_if_many:
        raise UsageError(f"--series {series}: {what} {p} is a {kind.upper()} file, a single "
                         "image; only --series 0 fits it")
    many: list[Any] = []
    cmyk = False
    orientation = 1
    try:
        if kind == "tiff":
            import tifffile

            with quiet_tifffile(), tifffile.TiffFile(p) as tif:
                if not tif.series:
                    raise ValueError("no image data in the file")
                many = image_series(tif)
                wanted = None if series_if_many and len(many) == 1 else series
                chosen = _pick_series(many, wanted, what=what, p=p)
                data = np.asarray(chosen.asarray())
                axes: str | None = str(chosen.axes)
                tiff = tiff_meta(tif, series_index(tif, chosen))
                cmyk = (chosen.keyframe.photometric == tifffile.PHOTOMETRIC.SEPARATED
                        and chosen.keyframe.samplesperpixel == 4)
        else:
            import imageio.v3 as iio

            # a camera's EXIF orientation: the pixels as every viewer shows them, so that
            # the result (written without the tag) and a mask drawn on the photo line up
            orientation = exif_orientation(p)
            data = np.asarray(iio.imread(p, rotate=orientation != 1))
            axes = None
            tiff = None
            cmyk = kind == "jpeg" and iio.immeta(p).get("mode") == "CMYK"
    except (MemoryError, UsageError):  # UsageError: the series asked for, in our words
        raise
    except Exception as exc:
        detail = one_line(exc)
        detail = "" if detail.startswith("Could not find a backend") else f" ({detail})"
        raise UsageError(f"cannot read {what} {p}: not a valid {kind.upper()} "
                         f"file{detail}") from exc
    if cmyk:
        # its fourth channel (K, black ink) would be taken for alpha and left unrestored
        raise UsageError(f"{what} {p} is a CMYK image: specdip restores gray, RGB and RGBA "
                         "images; convert it to RGB first")
    if data.dtype.kind not in "uifb" or data.size == 0 or data.ndim < 2:
        raise UsageError(f"cannot read {what} {p}: no usable image data "
                         f"(shape {data.shape}, dtype {data.dtype})")
    if axes is not None and len(axes) != data.ndim:
        axes = None
    return ImageFile(path=p, data=data, kind=kind, axes=axes, tiff=tiff,
                     series=None if series_if_many and len(many) <= 1 else series,
                     orientation=orientation)


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag of a PNG or JPEG (1-8; 1, upright, when there is none)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001  (unreadable EXIF: the pixels as stored)
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def check_writable_kind(path: Path, *, stack: bool, channels: int | None,
                        dtype: np.dtype[Any], float_range: tuple[float, float] | None) -> None:
    """Raise UsageError before any work if ``path``'s format cannot hold the result."""
    kind = kind_of(path)
    if kind == "tiff":
        if is_ome_tiff(path) and dtype.name not in OME_DTYPES:
            # a plain TIFF under an OME name would mislead the readers that go by it
            raise UsageError(f"{path}: OME-TIFF stores {', '.join(OME_DTYPES[1:])} or bool, "
                             f"the result is {dtype}; write .tif, or pass --output-dtype")
        return
    name = "PNG" if kind == "png" else "JPEG"
    if stack:
        raise UsageError(f"{path}: {name} holds a single 2D image; write a stack to .tif")
    if channels not in (None, 1, 2, 3, 4):
        raise UsageError(f"{path}: {name} holds gray, RGB or RGBA, not {channels} channels; "
                         "write .tif")
    if dtype.kind == "f":
        if float_range is None or float_range[0] < 0.0 or float_range[1] > 1.0:
            raise UsageError(f"{path}: a float image outside [0, 1] cannot be stored as {name}; "
                             "write .tif")
        return
    allowed = ("uint8",) if kind == "jpeg" else ("uint8", "uint16")
    if kind == "jpeg" and channels in (2, 4):
        raise UsageError(f"{path}: JPEG cannot hold an alpha channel; write .png or .tif")
    if kind == "png" and dtype.name == "uint16" and channels not in (None, 1):
        # Pillow, which writes the PNG, stores 16 bits for gray images only
        raise UsageError(f"{path}: PNG stores 16-bit gray only, the result is 16-bit with "
                         f"{channels} channels; write .tif (or --output-dtype uint8)")
    if dtype.name not in allowed and dtype.kind != "b":
        raise UsageError(f"{path}: {name} stores {' or '.join(allowed)}, the result is {dtype}; "
                         "write .tif"
                         + (" or .png" if kind == "jpeg" and dtype.name == "uint16" else ""))


def os_reason(exc: OSError) -> str:
    """An OSError's reason without the file name (which may be a hidden temporary file)."""
    return exc.strerror or type(exc).__name__


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (links resolved, hard links too)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_folder_writable(folder: Path, *, what: str = "output folder") -> None:
    """UsageError now, before any work, if files cannot be created in ``folder`` (made
    if missing): read-only file system, no permission, a pseudo file system. A hidden
    probe file is created and removed there."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"cannot write into {what} {folder}: it is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot write into {what} {folder}: cannot create it "
                         f"({os_reason(exc)})") from exc
    probe = temp_name(folder / "write-probe")
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise UsageError(f"cannot write into {what} {folder}: {os_reason(exc)}") from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def check_writable(path: Path, *, size: int = 0, what: str = "output") -> None:
    """UsageError now, before any work, if ``path`` cannot be written: its folder
    cannot be made, is read-only or full, or ``path`` is a folder; ``size`` bytes
    must be free there."""
    import shutil

    if path.is_dir():
        raise UsageError(f"cannot write {what} {path}: it is a folder; give a file name")
    try:
        check_folder_writable(path.parent, what="folder")
    except UsageError as exc:
        raise UsageError(f"cannot write {what} {path}: {str(exc).split(': ', 1)[1]} "
                         f"(in its folder {path.parent})") from exc
    if size:
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            return
        if free < size:
            raise UsageError(f"cannot write {what} {path}: it needs about {size / 1e6:.1f} MB "
                             f"and only {free / 1e6:.1f} MB is free there")


#: a file name's longest length in bytes where the file system does not say
DEFAULT_NAME_MAX = 255


def name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no such folder yet, or no pathconf
        return DEFAULT_NAME_MAX


def check_name_lengths(path: Path, written: Iterable[Path], *, what: str = "output") -> None:
    """UsageError now, before any work, if a file written for ``path`` (its temporary
    copies, sidecar, markers: ``written``) would have a name too long for the file
    system: the run would end, then fail to write anything."""
    limit = name_max(path.parent)
    longest = max([path, *written], key=lambda p: len(os.fsencode(p.name)))
    size = len(os.fsencode(longest.name))
    if size > limit:
        name = path.name if len(path.name) <= 40 else f"{path.name[:20]}…{path.name[-12:]}"
        raise UsageError(
            f"cannot write {what} {name!r}: a file written with it ({longest.name[-32:]!r} at "
            f"its end) would have a name of {size} bytes, and this file system takes "
            f"{limit}; give a name at least {size - limit} bytes shorter")


def stored_dtype(path: Path, dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype :func:`to_storable` writes ``dtype`` as in ``path``'s format."""
    if kind_of(path) != "tiff" and dtype.kind in "bf":
        return np.dtype(np.uint8)
    return dtype


def to_storable(path: Path, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Convert what PNG/JPEG cannot store: bool to uint8 0/255, float in [0, 1] to uint8."""
    if kind_of(path) == "tiff":
        return data
    if data.dtype.kind == "b":
        return np.where(data, 255, 0).astype(np.uint8)
    if data.dtype.kind == "f":
        return np.asarray(np.round(np.clip(data, 0.0, 1.0) * 255.0), dtype=np.uint8)
    return data


def temp_name(path: Path) -> Path:
    """A hidden temporary name next to ``path`` that keeps its extension."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{TEMP_MARK}{path.suffix}")


def stale_temps(path: Path) -> list[Path]:
    """Temporary files left next to ``path`` by a killed run."""
    pattern = glob.escape(str(path.parent / f".{path.name}.")) + f"*{TEMP_MARK}*"
    return [Path(p) for p in glob.glob(pattern)]


def remove_stale_temps(path: Path) -> None:
    for stale in stale_temps(path):
        with contextlib.suppress(OSError):
            stale.unlink()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: Path, writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def _imagej_axes(axes: str | None, data: npt.NDArray[Any]) -> str | None:
    """``axes`` if ImageJ can store ``data`` under them (its order is TZCYXS), else None."""
    if not axes or len(axes) != data.ndim or data.dtype.name not in IMAGEJ_DTYPES:
        return None
    order = "TZCYXS"
    if any(a not in order for a in axes) or len(set(axes)) != len(axes):
        return None
    positions = [order.index(a) for a in axes]
    if positions != sorted(positions) or not axes.replace("S", "").endswith("YX"):
        return None
    if "S" in axes and (data.shape[-1] not in (3, 4) or data.dtype.name != "uint8"):
        return None
    return axes


def _imagej_display(tiff: TiffMeta, axes: str, data: npt.NDArray[Any]) -> dict[str, Any]:
    """The input's composite mode, and its channel LUTs while they match the channels
    (an RGB image has none)."""
    display = dict(tiff.display or {})
    luts = display.pop("LUTs", None)
    channels = data.shape[axes.index("C")] if "C" in axes else 1
    if isinstance(luts, list | tuple) and len(luts) == channels and "S" not in axes:
        display["LUTs"] = list(luts)
    return display


def _ome_length_unit(unit: Any) -> str | None:
    """OME's name of an ImageJ length unit; None for ``pixel`` and names OME lacks."""
    name = str(unit).strip()
    name = _TO_OME_LENGTHS.get(name, _TO_OME_LENGTHS.get(name.lower(), name))
    return name if name in _OME_LENGTHS else None


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def ome_pixels_metadata(tiff: TiffMeta | None) -> dict[str, Any]:
    """OME Pixels attributes of a calibration, the inverse of :func:`ome_calibration`.

    Parameters
    ----------
    tiff
        The calibration; ``resolution`` is pixels per ImageJ ``unit``, or per inch or
        centimetre (``resolution_unit`` 2 or 3) where there is no ImageJ unit.

    Returns
    -------
    dict
        ``PhysicalSizeX``/``Y`` (1 / resolution), ``PhysicalSizeZ`` (``spacing``) with
        their ``...Unit``, ``TimeIncrement`` (``finterval``) with its unit; no sizes
        without a length unit (uncalibrated, ``pixel``, a name OME lacks).
    """
    if tiff is None:
        return {}
    entries = tiff.imagej or {}
    if entries.get("unit"):
        unit = _ome_length_unit(entries["unit"])
    else:
        unit = {2: "in", 3: "cm"}.get(tiff.resolution_unit or 1)
    out: dict[str, Any] = {}
    if unit is not None:
        x, y = tiff.resolution or (None, None)
        x, y = _positive(x), _positive(y)
        if x is not None and y is not None:
            out.update(PhysicalSizeX=1.0 / x, PhysicalSizeXUnit=unit,
                       PhysicalSizeY=1.0 / y, PhysicalSizeYUnit=unit)
        spacing = _positive(entries.get("spacing"))
        if spacing is not None:
            out.update(PhysicalSizeZ=spacing, PhysicalSizeZUnit=unit)
    step = _positive(entries.get("finterval"))
    tunit = _TO_OME_TIMES.get(str(entries.get("tunit", "sec")).strip())
    if step is not None and tunit is not None:
        out.update(TimeIncrement=step, TimeIncrementUnit=tunit)
    return out


def _ome_axes(axes: str, data: npt.NDArray[Any],
              stored: tuple[int, int, int, int, int, int]) -> str | None:
    """The axes to give tifffile's OME writer for ``data`` stored as ``stored`` (its
    normalised stored shape): ``axes``, with the letters that name no dimension (``I``:
    a sequence of pages, ``Q``: other) and repeats turned into free Z, T, C (then one
    Q), the way ImageJ reads a plain stack as slices; None where OME cannot take
    them, and tifffile names the axes from the shape."""
    import tifffile

    high = min((axes.index(a) for a in "YXS" if a in axes), default=len(axes))
    known = [a if a in "TZCAPRHE" and axes[:high].count(a) == 1 else "" for a in axes[:high]]
    free = [a for a in "ZTC" if a not in known] + ["Q"]  # Q: an OME modulo of "other"
    lead = axes[:high]
    if not any(known) and high <= 3:
        lead = ("", "Z", "TZ", "TZC")[high]
    elif known.count("") <= len(free):
        lead = "".join(a or free.pop(0) for a in known)
    try:  # a dry run of the XML tifffile is to write
        tifffile.OmeXml().addimage(data.dtype, data.shape, stored, axes=lead + axes[high:])
    except (tifffile.OmeXmlError, ValueError):
        return None
    return lead + axes[high:]


def _write_ome(tmp: Path, data: npt.NDArray[Any], *, axes: str | None, tiff: TiffMeta | None,
               samples: str | None, options: dict[str, Any]) -> None:
    """Write an OME-TIFF: the axes where OME takes them, the calibration as physical
    sizes. ``samples``: ``"contig"`` (last axis) or ``"separate"`` (before Y and X) for
    an axis of samples per pixel (RGB, or colour that is not uint8/uint16)."""
    import tifffile

    if data.dtype.name not in OME_DTYPES:
        raise UsageError(f"OME-TIFF cannot store {data.dtype} data; write .tif")
    lead = data.ndim - (3 if samples else 2)
    planes = int(np.prod(data.shape[:lead]))
    if samples == "contig":
        stored = (planes, 1, 1, data.shape[-3], data.shape[-2], data.shape[-1])
    elif samples == "separate":
        stored = (planes, data.shape[-3], 1, data.shape[-2], data.shape[-1], 1)
    else:
        stored = (planes, 1, 1, data.shape[-2], data.shape[-1], 1)
    if samples and options["photometric"] != "rgb":
        # samples per pixel, not pages: tifffile would otherwise write each row as an image
        options = {**options, "planarconfig": samples}
    if not axes or len(axes) != data.ndim:  # a PNG's, or unknown: a plain stack
        axes = "Q" * lead + {"contig": "YXS", "separate": "SYX"}.get(samples or "", "YX")
    metadata = ome_pixels_metadata(tiff)
    ome_axes = _ome_axes(axes, data, stored)
    if ome_axes is not None:
        metadata["axes"] = ome_axes
    try:
        tifffile.imwrite(tmp, data, ome=True, metadata=metadata, **options)
    except tifffile.OmeXmlError as exc:  # e.g. more than 5 axes, none of them named
        raise UsageError(f"OME-TIFF cannot hold this image (shape {data.shape}, axes "
                         f"{axes}): {exc}; write .tif") from exc


def write_image(path: Path, data: npt.NDArray[Any], *, channel_axis: int | None = None,
                axes: str | None = None, tiff: TiffMeta | None = None) -> None:
    """Write ``data`` atomically as TIFF (any dtype, stacks) or PNG/JPEG (2D gray/RGB/RGBA).

    TIFF keeps the axes and ``tiff``'s calibration: resolution tags and, for an
    ImageJ, OME or calibrated input that ImageJ can hold, an ImageJ hyperstack
    with its z spacing and unit (an ImageJ input's composite mode and LUTs too);
    otherwise those entries go into the shaped metadata. RGB samples before Y and
    X (``SYX``) are written as planar RGB. A name ending in ``.ome.tif`` or
    ``.ome.tiff`` gets an OME-TIFF instead: OME-XML with the axes and the
    calibration as physical sizes (:func:`ome_pixels_metadata`), besides the same
    resolution tags.
    """
    kind = kind_of(path)
    data = to_storable(path, np.asarray(data))
    # the temporary name ends in .tif only: tifffile must be told, not left to guess
    ome = kind == "tiff" and is_ome_tiff(path)

    def write(tmp: Path) -> None:
        if kind == "tiff":
            import tifffile

            c = None if channel_axis is None else channel_axis % data.ndim
            rgb = (c is not None and data.shape[c] in (3, 4) and data.dtype in (np.uint8, np.uint16)
                   and (c == data.ndim - 1
                        or (c == data.ndim - 3 and axes is not None and axes[c:] == "SYX")))
            options: dict[str, Any] = {"photometric": "rgb" if rgb else "minisblack"}
            if rgb and c != data.ndim - 1:
                options["planarconfig"] = "separate"
            if tiff is not None and tiff.resolution is not None:
                options["resolution"] = tiff.resolution
                options["resolutionunit"] = tiff.resolution_unit or 1
            if ome:
                # samples per pixel: the file's S axis, else a last channel axis
                ax = axes if axes is not None and len(axes) == data.ndim else None
                last = data.ndim >= 3 and (ax.endswith("S") if ax else c == data.ndim - 1)
                planar = data.ndim >= 3 and ax is not None and ax.endswith("SYX")
                samples = "contig" if last else "separate" if planar else None
                _write_ome(tmp, data, axes=axes, tiff=tiff, samples=samples, options=options)
                return
            ij_axes = (_imagej_axes(axes, data)
                       if tiff is not None and (tiff.imagej or tiff.source == "imagej") else None)
            if ij_axes is not None and tiff is not None:
                metadata = {**(tiff.imagej or {}), **_imagej_display(tiff, ij_axes, data),
                            "axes": ij_axes}
                tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **options)
                return
            metadata = {"axes": axes} if axes and len(axes) == data.ndim else {}
            if not rgb and data.ndim >= 3 and (c == data.ndim - 1 or metadata.get(
                    "axes", "").endswith("S")):
                # colour TIFF's photometric RGB cannot take (float, gray + alpha): samples
                # per pixel, not one page per row of the image
                options["planarconfig"] = "contig"
            if tiff is not None and tiff.imagej:
                metadata.update(tiff.imagej)
            # shaped metadata (the default) keeps the array's shape on reading back
            tifffile.imwrite(tmp, data, metadata=metadata, **options)
        else:
            import imageio.v3 as iio

            out = data
            if channel_axis is not None and channel_axis % data.ndim != data.ndim - 1:
                out = np.moveaxis(data, channel_axis, -1)
            if out.ndim == 3 and out.shape[-1] == 1:
                out = out[..., 0]
            extra: dict[str, Any] = {"quality": 95} if kind == "jpeg" else {}
            iio.imwrite(tmp, np.ascontiguousarray(out), extension=path.suffix.lower(), **extra)

    write_atomic(path, write)


def sidecar_path(output: Path) -> Path:
    """``out.tif`` -> ``out.tif.json`` (the full name is kept so that ``a.png`` and
    ``a.tif`` in one folder get different sidecars)."""
    return output.with_name(output.name + SIDECAR_SUFFIX)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, allow_nan=True, default=_json_default)

    def write(tmp: Path) -> None:
        tmp.write_text(text + "\n", encoding="utf-8")

    write_atomic(path, write)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple | set):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's content, or None when missing or unreadable (an unfinished run)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def expand_inputs(inputs: list[str]) -> list[Path | str]:
    """Files, folders (their images, sorted, not recursive) and glob patterns, in order.

    Image files come back as paths (each once); an input that matches nothing comes
    back as the string given. Hidden files (our temporary files among them) are left
    out of folders and globs.
    """
    found: list[Path | str] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            found.append(p)

    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            for c in sorted(p.iterdir()):
                if (c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES
                        and not c.name.startswith(".")):
                    add(c)
        elif p.exists():
            add(p)
        elif glob.has_magic(item):
            hits = sorted(Path(h) for h in glob.glob(os.path.expanduser(item))
                          if Path(h).is_file() and Path(h).suffix.lower() in IMAGE_SUFFIXES)
            for h in hits:
                add(h)
            if not hits:
                found.append(item)
        else:
            found.append(item)
    return found
