"""The ``specdip`` command line: ``restore``, ``demo`` and ``batch`` (on Dask distributed).

Headless by design: nothing here imports Qt, napari or magicgui, and torch,
matplotlib and dask are imported only by the commands that need them, so
``specdip --help`` and ``specdip --version`` answer at once.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from napari_specdip.cli.main import main as _main

    return _main(argv)
