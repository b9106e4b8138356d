"""Print the versions the test suite runs with, and what differs from the tested ones.

Usage: ``python .ci/versions.py [CONSTRAINTS]``. Reads package metadata only (imports
nothing), so it works even where an import or pytest itself would fail.
"""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata
from pathlib import Path

KEY = ["torch", "numpy", "napari", "npe2", "pydantic", "pytest", "magicgui", "vispy",
       "scikit-image", "scipy", "dask", "mypy"]
QT_BINDINGS = ["PyQt6", "PySide6", "PyQt5", "PySide2"]


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def qt_binding() -> str:
    found = [(b, installed(b)) for b in QT_BINDINGS if installed(b)]
    if not found:
        return "none"
    parts = []
    for binding, version in found:
        qt = installed(f"{binding}-Qt6") or installed(f"{binding}-Qt5") or installed(f"{binding}-Qt")
        parts.append(f"{binding} {version}" + (f" (Qt {qt})" if qt else ""))
    return ", ".join(parts)


def pinned(constraints: Path) -> dict[str, str]:
    pins = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalize(name)] = version.strip()
    return pins


def main(argv: list[str]) -> int:
    print(f"python       {platform.python_version()} ({platform.system()} {platform.machine()})")
    for name in KEY:
        print(f"{name:<12} {installed(name) or 'not installed'}")
    print(f"{'Qt binding':<12} {qt_binding()}")
    if argv:
        pins = pinned(Path(argv[0]))
        moved = []
        for dist in metadata.distributions():
            name = normalize(dist.metadata["Name"])
            tested = pins.get(name)
            # torch 2.13.0+cpu is the tested 2.13.0: local labels do not count
            if tested is not None and dist.version.split("+")[0] != tested:
                moved.append(f"{name} {tested} -> {dist.version}")
        untested = sorted(normalize(d.metadata["Name"]) for d in metadata.distributions()
                          if normalize(d.metadata["Name"]) not in pins)
        untested = [n for n in untested if n not in ("napari-specdip", "pip", "setuptools", "wheel")]
        if moved or untested:
            print(f"differs from {argv[0]}:")
            for line in sorted(moved):
                print(f"  {line}")
            for name in untested:
                print(f"  {name} {installed(name)} (not in the tested set)")
        else:
            print(f"every package at its version in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
