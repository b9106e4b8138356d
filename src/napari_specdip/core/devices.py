"""Choosing where a run happens, and recording what it ran with."""

from __future__ import annotations

import os
import platform
from functools import lru_cache

#: cuBLAS gives the same result twice only with a fixed workspace, read when CUDA first
#: uses it: set before that, unless the user chose one (``:SIZE:COUNT`` in KiB: 32 MiB of
#: GPU memory, which the estimate counts, core/estimate.py)
CUBLAS_WORKSPACE = ":4096:8"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)

import torch  # noqa: E402


def available_devices() -> list[tuple[str, str]]:
    """List ``(device, description)`` pairs usable on this machine, best first.

    Examples
    --------
    >>> ("cpu", "CPU") in available_devices()
    True
    """
    found: list[tuple[str, str]] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            found.append((f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}"))
    if _mps_available():
        found.append(("mps", "Apple MPS"))
    found.append(("cpu", "CPU"))
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a user's device choice into a usable ``torch.device``.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU. Asking for a device
    that is not there raises ``ValueError`` rather than silently falling back.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {device!r} requested but Apple MPS is not available on this machine")
        return dev
    if dev.type == "cpu":
        return dev
    raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")


def describe_device(device: torch.device) -> str:
    """Human-readable name, e.g. ``'cuda:0 (NVIDIA H100)'`` or ``'cpu'``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def free_device_memory(device: torch.device) -> None:
    """Hand cached accelerator memory back after a run."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Versions of what a result depends on, for provenance."""
    import numpy

    from napari_specdip._version import __version__

    out = {
        "napari-specdip": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    return out


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
