"""The Qt-free restoration engine (torch + numpy); knows nothing of napari."""
