"""Training-free image restoration with a spectral-bias-controlled Deep Image Prior.

The public API is imported lazily so that napari can load the plugin's
manifest without paying for torch.

Examples
--------
>>> import numpy as np
>>> import napari_specdip
>>> noisy = np.random.default_rng(0).random((32, 32))
>>> napari_specdip.restore(noisy, "denoise", width=8, max_iterations=2, stop="none").iterations
2
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_specdip._version import __version__

if TYPE_CHECKING:
    from napari_specdip.core.engine import iter_restore, plan_restore, restore
    from napari_specdip.core.estimate import Estimate, estimate
    from napari_specdip.core.params import RestoreParameters
    from napari_specdip.core.results import RestoreResult, StepReport

__all__ = [
    "Estimate",
    "RestoreParameters",
    "RestoreResult",
    "StepReport",
    "__version__",
    "estimate",
    "iter_restore",
    "plan_restore",
    "restore",
]

_LAZY = {
    "restore": "napari_specdip.core.engine",
    "estimate": "napari_specdip.core.estimate",
    "Estimate": "napari_specdip.core.estimate",
    "iter_restore": "napari_specdip.core.engine",
    "plan_restore": "napari_specdip.core.engine",
    "RestoreParameters": "napari_specdip.core.params",
    "RestoreResult": "napari_specdip.core.results",
    "StepReport": "napari_specdip.core.results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_specdip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
