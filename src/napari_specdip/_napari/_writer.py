"""Save a result as TIFF with its pixel size, units and run record; read it back.

The npe2 writer (``napari-specdip.write_tiff``, *File > Save Selected Layers*,
and the widget's Save button) writes:

- an ImageJ TIFF when ImageJ can hold the data (uint8, uint16, float32; up to
  TZCYX plus RGB samples): pixel size in the resolution tags and ``unit``,
  Z spacing in ``spacing``, the axes, and the run record as JSON in ImageJ's
  ``Info`` property (*Image > Show Info* in ImageJ/Fiji);
- otherwise a plain TIFF with the same resolution tags and the placement in its
  JSON description (tifffile's shaped metadata), so no dtype is ever converted;
- an OME-TIFF for a name ending in ``.ome.tif``/``.ome.tiff`` (OME readers go by
  the name): pixel size and Z spacing as PhysicalSizeX/Y/Z with their unit, the
  axes, through the CLI's :func:`~napari_specdip.cli.files.write_image`;
- always the JSON sidecar ``<file>.tif.json`` the CLI writes, ``{"specdip": ...}``.

The reader (``napari-specdip.read_tiff``) opens any TIFF with tifffile and gives
back the scale, translate, units and axis labels those files carry (ImageJ and
OME-XML calibration too), with the run record in ``metadata["specdip"]``; a
multi-series file (multi-position OME-TIFF) opens as one layer per series, a stack
with a channel axis (``C``) as one layer per channel, planar RGB as RGB. Axis labels
(t, z, y, x) come from the file's axes, so that saving again keeps a time series a
time series.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_specdip._napari._planning import non_identity

if TYPE_CHECKING:
    from napari_specdip.cli.files import TiffMeta

PLACEMENT_KEY = "napari_placement"
IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
_IMAGEJ_ORDER = "TZC"
# pint's names of the common lengths -> ImageJ's spelling (ASCII: ImageJ's description)
_IMAGEJ_UNITS = {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm",
                 "centimeter": "cm", "meter": "m", "pixel": "pixel", "second": "sec"}
_FROM_IMAGEJ = {"micron": "um", "µm": "um", "um": "um", "\\u00B5m": "um", "nm": "nm",
                "mm": "mm", "cm": "cm", "m": "m", "pixel": "pixel", "pixels": "pixel"}


def _unit_name(unit: Any) -> str | None:
    if unit is None:
        return None
    name = str(unit)
    return name or None


def _imagej_unit(unit: Any) -> str | None:
    name = _unit_name(unit)
    if name is None:
        return None
    return _IMAGEJ_UNITS.get(name, name.encode("ascii", "ignore").decode() or None)


def _label_letters(labels: Sequence[str] | None, n_leading: int) -> str | None:
    """The T, Z, C letters the leading axes' labels give (t, z, c...), in their order;
    None when they give no such set (no labels, a repeat, another letter)."""
    if labels is None or len(labels) < n_leading:
        return None
    letters = "".join(str(a).upper()[:1] for a in labels[:n_leading])
    ok = len(set(letters)) == n_leading and all(c in _IMAGEJ_ORDER for c in letters)
    return letters if ok else None


def _leading_axes(labels: Sequence[str] | None, n_leading: int) -> str | None:
    """ImageJ axis letters of the leading axes: from the labels (t, z, c), else Z, TZ,
    TZC; None when ImageJ cannot hold them (more than 3, or out of ImageJ's order)."""
    if n_leading > 3:
        return None
    letters = _label_letters(labels, n_leading)
    if letters is None:
        letters = ("", "Z", "TZ", "TZC")[n_leading]
    positions = [_IMAGEJ_ORDER.index(c) for c in letters]
    return letters if positions == sorted(positions) else None


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def placement(meta: dict[str, Any], ndim: int) -> dict[str, Any]:
    """scale/translate/units/axis_labels of a layer's attributes, JSON-ready."""
    scale = [float(s) for s in meta.get("scale", [1.0] * ndim)][-ndim:]
    translate = [float(t) for t in meta.get("translate", [0.0] * ndim)][-ndim:]
    units = meta.get("units")
    labels = meta.get("axis_labels")
    where: dict[str, Any] = {
        "scale": scale,
        "translate": translate,
        "units": [_unit_name(u) for u in units][-ndim:] if units is not None else None,
        "axis_labels": [str(a) for a in labels][-ndim:] if labels is not None else None,
    }
    # a rotated, sheared or affine-placed layer comes back where it was (kept only
    # where not the identity)
    parts = non_identity(meta.get("rotate"), meta.get("shear"), meta.get("affine"), ndim)
    where.update({key: value.tolist() for key, value in parts.items() if value is not None})
    return where


def record(meta: dict[str, Any], path: Path, data: npt.NDArray[Any], ndim: int
           ) -> dict[str, Any]:
    """The sidecar: the layer's run record plus file facts, like the CLI's."""
    from napari_specdip.cli.runner import SIDECAR_FORMAT, SIDECAR_VERSION

    run = dict((meta.get("metadata") or {}).get("specdip") or {})
    run.update({
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "command": "napari",
        "layer": str(meta.get("name", "")),
        "output": str(path.resolve()),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "output_shape": list(data.shape),
        "output_dtype": str(data.dtype),
        PLACEMENT_KEY: placement(meta, ndim),
    })
    return {"specdip": _json_ready(run)}


def write_tiff(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: ``path`` (.tif/.tiff), the layer's data and attributes.

    Returns the paths written: the TIFF and its sidecar.
    """
    import tifffile

    from napari_specdip.cli.files import atomic_path, is_ome_tiff, sidecar_path, write_json

    target = Path(path)
    if target.suffix.lower() not in (".tif", ".tiff"):
        target = target.with_name(target.name + ".tif")
    array = np.asarray(data)
    rgb = bool(meta.get("rgb", False))
    ndim = array.ndim - (1 if rgb else 0)
    if ndim < 2:
        raise ValueError(f"cannot save a {array.ndim}D layer as an image TIFF")
    where = placement(meta, ndim)
    run = record(meta, target, array, ndim)
    sy, sx = where["scale"][-2:]
    units = where["units"] or [None] * ndim
    unit = _imagej_unit(units[-1])
    letters = _leading_axes(where["axis_labels"], ndim - 2)
    imagej = (array.dtype.name in IMAGEJ_DTYPES and letters is not None
              and (not rgb or (array.dtype == np.uint8 and array.shape[-1] == 3)))
    resolution = (1.0 / sx, 1.0 / sy) if sx > 0 and sy > 0 else None
    if is_ome_tiff(target):
        _write_ome(target, array, rgb=rgb, where=where, unit=unit, resolution=resolution)
        sidecar = sidecar_path(target)
        write_json(sidecar, run)
        return [str(target), str(sidecar)]
    with atomic_path(target) as tmp:
        if imagej:
            assert letters is not None
            ij: dict[str, Any] = {"axes": letters + "YX" + ("S" if rgb else ""),
                                  "Info": json.dumps(run, allow_nan=True)}
            if unit:
                ij["unit"] = unit
            if "Z" in letters:
                ij["spacing"] = float(where["scale"][letters.index("Z")])
            tifffile.imwrite(tmp, array, imagej=True, resolution=resolution, metadata=ij,
                             photometric="rgb" if rgb else "minisblack")
        else:
            axes = ("Q" * (ndim - 2) + "YX" + ("S" if rgb else ""))
            tifffile.imwrite(tmp, array, resolution=resolution,
                             resolutionunit="NONE" if resolution else None,
                             photometric="rgb" if rgb and array.shape[-1] in (3, 4)
                             else "minisblack",
                             metadata={"axes": axes, PLACEMENT_KEY: where, "specdip_sidecar":
                                       Path(str(target) + ".json").name})
    sidecar = sidecar_path(target)
    write_json(sidecar, run)
    return [str(target), str(sidecar)]


def _write_ome(target: Path, array: npt.NDArray[Any], *, rgb: bool, where: dict[str, Any],
               unit: str | None, resolution: tuple[float, float] | None) -> None:
    """An OME-TIFF of a layer: its scale and length unit as physical sizes, through
    the CLI's writer (the run record goes into the sidecar only)."""
    from napari_specdip.cli.files import TiffMeta, write_image

    n_leading = array.ndim - (3 if rgb else 2)
    letters = _label_letters(where["axis_labels"], n_leading)
    if letters is None:
        letters = "Q" * n_leading  # write_image names these Z, TZ, TZC, as ImageJ would
    entries: dict[str, Any] = {"unit": unit} if unit else {}
    if "Z" in letters:
        entries["spacing"] = float(where["scale"][letters.index("Z")])
    meta = TiffMeta(resolution=resolution, resolution_unit=1, imagej=entries or None,
                    source="ome")
    write_image(target, array, channel_axis=-1 if rgb else None,
                axes=letters + "YX" + ("S" if rgb else ""), tiff=meta)


# --------------------------------------------------------------------------- reading


def read_tiff_layers(path: str | Path) -> list[tuple[npt.NDArray[Any], dict[str, Any]]]:
    """Data and napari layer attributes of each image series of a TIFF: one for most
    files, one per position (well, tile) of a multi-series OME-TIFF. Thumbnails and
    pyramid levels are left out; planar RGB (``SYX``) comes back RGB, samples last."""
    import tifffile

    from napari_specdip.cli.files import image_series, series_index, tiff_meta

    p = Path(path)
    with tifffile.TiffFile(p) as tif:
        chosen = image_series(tif)
        if not chosen:
            raise ValueError(f"{p}: no image data in the file")
        found = []
        for series in chosen:
            index = series_index(tif, series)
            data, axes = _samples_last(np.asarray(series.asarray()), str(series.axes))
            name = str(series.name or "") if series.kind == "ome" else ""
            found.append((data, axes, name, tiff_meta(tif, index)))
        ij = tif.imagej_metadata or {}
        shaped = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    # our run record and placement describe the single image our writer saves
    run = _run_record(p, ij) if len(found) == 1 else None
    layers = []
    for k, (data, axes, name, meta) in enumerate(found):
        rgb = axes.endswith("S") and data.shape[-1] in (3, 4)
        ndim = data.ndim - (1 if rgb else 0)
        # counted from 0, as the CLI's --series (and tifffile) count them
        label = p.stem if len(found) == 1 else f"{p.stem} series {k}"
        if name and len(found) > 1:
            label += f" ({name})"
        attrs: dict[str, Any] = {"name": label, "rgb": rgb}
        where = (run or {}).get(PLACEMENT_KEY) or (shaped.get(PLACEMENT_KEY)
                                                  if len(found) == 1 else None)
        if isinstance(where, dict) and len(where.get("scale") or []) == ndim:
            attrs["scale"] = tuple(float(s) for s in where["scale"])
            attrs["translate"] = tuple(float(t) for t in where["translate"])
            if where.get("units"):
                attrs["units"] = tuple(u or "pixel" for u in where["units"])
            if where.get("axis_labels"):
                attrs["axis_labels"] = tuple(where["axis_labels"])
            for key in ("rotate", "shear", "affine"):
                if where.get(key) is not None:
                    attrs[key] = np.asarray(where[key], dtype=float)
        else:
            attrs.update(_calibration(axes, ndim, meta))
        if run is not None:
            attrs["metadata"] = {"specdip": run}
        letters = axes[:-1] if rgb else axes  # one per layer axis
        if len(letters) != ndim:
            layers.append((data, attrs))
            continue
        if "axis_labels" not in attrs and (labels := _labels_of(letters)) is not None:
            attrs["axis_labels"] = labels
        channel = letters.find("C")
        if channel < 0 or ndim < 3 or any(k in attrs for k in ("rotate", "shear", "affine")):
            layers.append((data, attrs))
            continue
        layers.append((data, _per_channel(attrs, channel, data.shape[channel])))
    return layers


def _labels_of(letters: str) -> tuple[str, ...] | None:
    """napari axis labels (t, z, c, y, x) from a TIFF's axis letters; None when a letter
    says nothing napari would show (Q: unknown, I: a sequence of pages)."""
    if len(set(letters)) != len(letters) or not set(letters) <= set("TZCYX"):
        return None
    return tuple(letter.lower() for letter in letters)


def _per_channel(attrs: dict[str, Any], channel: int, channels: int) -> dict[str, Any]:
    """The attributes of a stack with a channel axis (a TIFF's ``C``), for napari to
    open one layer per channel (``channel_axis``), each with its own colormap and
    contrast, as microscopy readers do: a run then restores each channel on its own (a
    stack's warm start never hands one channel's weights to another's slices)."""
    out: dict[str, Any] = {"channel_axis": channel, "rgb": attrs["rgb"],
                           "name": [f"{attrs['name']} channel {k}" for k in range(channels)]}
    # one value per layer, spelled out: napari would read a tuple of channels-many labels
    # (strings) as one label per layer
    for key in ("scale", "translate", "units", "axis_labels"):
        if key in attrs:
            kept = tuple(v for i, v in enumerate(attrs[key]) if i != channel)
            out[key] = [kept] * channels
    if "metadata" in attrs:
        out["metadata"] = [dict(attrs["metadata"]) for _ in range(channels)]
    return out


def read_tiff_file(path: str | Path) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    """Data and napari layer attributes of a TIFF's first image series (ImageJ or OME
    calibration, our placement and run record, from the file or its sidecar); see
    :func:`read_tiff_layers` for every series."""
    return read_tiff_layers(path)[0]


def _samples_last(data: npt.NDArray[Any], axes: str) -> tuple[npt.NDArray[Any], str]:
    """Planar RGB(A) (samples before Y and X, e.g. ``SYX``) with the samples last, the
    way napari shows colour."""
    s = axes.find("S")
    if s < 0 or s == len(axes) - 1 or len(axes) != data.ndim or data.shape[s] not in (3, 4):
        return data, axes
    return np.moveaxis(data, s, -1), axes[:s] + axes[s + 1:] + "S"


def _run_record(p: Path, ij: dict[str, Any]) -> dict[str, Any] | None:
    """Our run record: from ImageJ's Info property, else from the sidecar."""
    run: dict[str, Any] | None = None
    if isinstance(ij.get("Info"), str):
        try:
            loaded = json.loads(ij["Info"])
            run = loaded.get("specdip") if isinstance(loaded, dict) else None
        except ValueError:
            run = None
    sidecar = Path(str(p) + ".json")
    if run is None and sidecar.exists():
        try:
            loaded = json.loads(sidecar.read_text(encoding="utf-8"))
            run = loaded.get("specdip") if isinstance(loaded, dict) else None
        except (OSError, ValueError):
            run = None
    return run


def _calibration(axes: str, ndim: int, meta: TiffMeta | None) -> dict[str, Any]:
    """Scale and units from an ImageJ, OME or our shaped file's calibration: pixel size,
    z spacing, length unit (bare resolution tags, often a camera's dpi, are ignored)."""
    if meta is None or meta.source is None or meta.resolution is None:
        return {}
    x, y = meta.resolution
    if not x or not y:
        return {}
    entries = meta.imagej or {}
    spatial = axes[:ndim] if len(axes) >= ndim else ""
    scale = [1.0] * ndim
    scale[-1], scale[-2] = 1.0 / x, 1.0 / y
    if "Z" in spatial[:-2] and entries.get("spacing"):
        scale[spatial.index("Z")] = float(entries["spacing"])
    unit = _FROM_IMAGEJ.get(str(entries.get("unit", "")), None)
    out: dict[str, Any] = {"scale": tuple(scale)}
    if unit:
        out["units"] = tuple(unit if a in "ZYX" else "pixel" for a in spatial) \
            if len(spatial) == ndim else (unit,) * ndim
    return out


def get_reader(path: str | list[str]) -> Callable[[str], list[tuple[Any, ...]]] | None:
    """npe2 reader: TIFF files (one path)."""
    if isinstance(path, list):
        return None
    if not str(path).lower().endswith((".tif", ".tiff")):
        return None
    return _read


def _read(path: str) -> list[tuple[Any, ...]]:
    return [(data, attrs, "image") for data, attrs in read_tiff_layers(path)]
