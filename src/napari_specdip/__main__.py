"""``python -m napari_specdip``: the ``specdip`` command line, as ``python -m
napari_specdip.cli``."""

from __future__ import annotations

# The guard matters: Dask's worker processes are spawned and re-import the main module.
if __name__ == "__main__":
    import sys

    from napari_specdip.cli.main import main

    sys.exit(main())
