"""Per-task defaults of the method, gathered in one documented object."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["denoise", "deblock", "inpaint", "super-resolve", "enhance"]
StopRule = Literal["auto", "ratio", "wmv", "none"]
Upsampler = Literal["bilinear", "gaussian", "nearest"]
Network = Literal["decoder", "skip", "convnet"]
OutputChoice = Literal["last", "ema", "best"]

TASKS: tuple[str, ...] = ("denoise", "deblock", "inpaint", "super-resolve", "enhance")
STOP_RULES: tuple[str, ...] = ("auto", "ratio", "wmv", "none")
UPSAMPLERS: tuple[str, ...] = ("bilinear", "gaussian", "nearest")
NETWORKS: tuple[str, ...] = ("decoder", "skip", "convnet")
OUTPUTS: tuple[str, ...] = ("last", "ema", "best")
SR_FACTORS: tuple[int, ...] = (2, 4, 8)

# METHOD.md section 5: coarse to fine; 0.1 is effectively zero insertion.
DEFAULT_SIGMAS: tuple[float, ...] = (0.1, 0.1, 0.1, 0.5, 0.5)

# METHOD.md section 3 (lambda per task, paper values).
_LIPSCHITZ = {
    "denoise": 1.4,
    "deblock": 1.4,
    "inpaint": 1.6,
    "super-resolve": 1.4,
    "enhance": 1.0,
}
# Gaussian upsampling suppresses high frequencies itself, so the paper loosens lambda.
GAUSSIAN_LIPSCHITZ = 1.8

_MAX_ITERATIONS = {
    "denoise": 3000,
    "deblock": 3000,
    "inpaint": 5000,
    "super-resolve": 3000,
    "enhance": 100,
}


@dataclass(frozen=True, kw_only=True)
class RestoreParameters:
    """Every knob of one restoration run, with the paper's defaults per task.

    Build the defaults with :meth:`for_task` and change fields with
    :meth:`replace`; the object is immutable so that a snapshot taken on the
    GUI thread cannot change under a running worker.

    Parameters
    ----------
    task : str
        One of ``"denoise"``, ``"deblock"``, ``"inpaint"``, ``"super-resolve"``,
        ``"enhance"``.
    lipschitz : float
        Bound lambda on the largest singular value of every reshaped kernel of
        the decoder (METHOD.md section 3). Larger lets more high frequency through.
    upsampler : str
        ``"bilinear"`` (the reference's shipped default), ``"gaussian"`` (fixed
        Gaussian transposed convolution, section 5) or ``"nearest"``.
    sigmas : tuple of float
        Gaussian upsampling sigma per level, coarse to fine.
    width, depth : int
        Channels per layer and number of x2 upsampling levels. Image sides are
        padded to multiples of ``2**depth``.
    network : str
        ``"decoder"`` (the paper's), ``"skip"`` (original DIP) or ``"convnet"``
        (no resampling); the last two are for comparison runs.
    learning_rate : float
        Adam step size.
    max_iterations : int
        Hard cap on iterations.
    stop : str
        ``"auto"`` (default: the paper's ratio rule with ES-WMV as a backstop,
        whichever fires first), ``"ratio"`` (the paper's blur/sharpness rule
        alone), ``"wmv"`` (ES-WMV alone) or ``"none"`` (run ``max_iterations``).
    stop_window, stop_epsilon : int, float
        Window n and threshold epsilon of the ratio rule.
    wmv_window, wmv_patience : int
        Window and patience of ES-WMV, in iterations.
    track_variance : bool
        Record the ES-WMV variance even when neither the stop rule nor the
        output choice needs it (for analysis and benchmarks).
    signal_every : int
        Evaluate the spectral signals every k iterations; windows are scaled
        to match.
    preview_every : int
        Put a preview of the current output in the step report every N
        iterations (0: never).
    output : str
        What the result holds: ``"ema"`` (default: an exponential moving
        average of outputs, DIP's trick; +0.5 dB over the last iterate on the
        denoising benchmark), ``"last"`` iterate (the paper) or ``"best"`` (highest
        PSNR against a clean reference when one is given, otherwise the iterate
        of lowest ES-WMV variance).
    ema_decay : float
        Decay of the moving average; it ramps up as ``(1 + t) / (10 + t)`` until
        it reaches this value, so short runs are not dominated by early outputs.
    backtrack, backtrack_db, backtrack_every : bool, float, int
        Restore the last good weights when the PSNR against the observation
        drops by more than ``backtrack_db`` between two checks ``backtrack_every``
        iterations apart (DIP's checkpointing; checking every step would also
        catch the harmless loss spikes of the early fit).
    gain : float
        Detail gain of the enhancement task: ``out = I + gain * (I - G)``.
    factor : int or None
        Super-resolution factor (2, 4 or 8).
    seed : int
        Seeds the network input and initial weights.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.
    num_threads : int or None
        CPU threads for the run (None: leave torch's setting).

    Examples
    --------
    >>> from napari_specdip import RestoreParameters
    >>> p = RestoreParameters.for_task("inpaint")
    >>> p.lipschitz
    1.6
    >>> p.replace(width=32).width
    32
    """

    task: str = "denoise"
    lipschitz: float = 1.4
    upsampler: str = "bilinear"
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    width: int = 128
    depth: int = 5
    network: str = "decoder"
    learning_rate: float = 1e-3
    max_iterations: int = 3000
    stop: str = "auto"
    stop_window: int = 100
    stop_epsilon: float = 0.01
    wmv_window: int = 100
    wmv_patience: int = 1000
    track_variance: bool = False
    signal_every: int = 1
    preview_every: int = 50
    output: str = "ema"
    ema_decay: float = 0.99
    backtrack: bool = True
    backtrack_db: float = 5.0
    backtrack_every: int = 100
    gain: float = 1.0
    factor: int | None = None
    seed: int = 0
    device: str = "auto"
    num_threads: int | None = None

    @classmethod
    def for_task(cls, task: str, **overrides: Any) -> RestoreParameters:
        """Return the paper's defaults for ``task``, with ``overrides`` applied."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        base = cls(
            task=task,
            lipschitz=_LIPSCHITZ[task],
            max_iterations=_MAX_ITERATIONS[task],
            stop="none" if task == "enhance" else "auto",
            output="last" if task == "enhance" else "ema",
            factor=4 if task == "super-resolve" else None,
        )
        if overrides.get("upsampler") == "gaussian" and "lipschitz" not in overrides:
            overrides = {**overrides, "lipschitz": GAUSSIAN_LIPSCHITZ}
        return base.replace(**overrides)

    def replace(self, **changes: Any) -> RestoreParameters:
        """Return a copy with ``changes`` applied and validated."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown restoration option(s): {', '.join(unknown)}")
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message for an impossible setting."""
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), str(f.type))
        _choice("task", self.task, TASKS)
        _choice("stop", self.stop, STOP_RULES)
        _choice("upsampler", self.upsampler, UPSAMPLERS)
        _choice("network", self.network, NETWORKS)
        _choice("output", self.output, OUTPUTS)
        if not self.lipschitz > 0:
            raise ValueError(f"lipschitz must be positive, got {self.lipschitz}")
        if self.width < 1 or self.depth < 0:
            raise ValueError(f"width must be >= 1 and depth >= 0, got {self.width}, {self.depth}")
        if len(self.sigmas) < self.depth and self.upsampler == "gaussian":
            raise ValueError(f"need {self.depth} Gaussian sigmas (one per level), got {len(self.sigmas)}")
        if any(s <= 0 for s in self.sigmas):
            raise ValueError("Gaussian sigmas must be positive")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        for name in ("stop_window", "wmv_window", "wmv_patience", "signal_every", "backtrack_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.preview_every < 0:
            raise ValueError(f"preview_every must be >= 0, got {self.preview_every}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.task == "super-resolve" and self.factor not in SR_FACTORS:
            raise ValueError(
                f"super-resolution factor must be one of {SR_FACTORS}, got {self.factor}"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dictionary of every field."""
        d = dataclasses.asdict(self)
        d["sigmas"] = list(self.sigmas)
        return d


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")


def _check_type(name: str, value: Any, annotation: str) -> None:
    """``ValueError`` unless ``value`` suits the field's annotation (``"int"``,
    ``"float | None"``, ``"tuple[float, ...]"``...): a ``seed="7"`` or a
    ``max_iterations=2.5`` is refused here rather than deep inside torch."""
    import math
    import numbers

    kinds = [k.strip() for k in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return
        raise ValueError(f"{name} must not be None")
    kind = next((k for k in kinds if k != "None"), "")
    got = f"{value!r} ({type(value).__name__})"
    if kind == "bool":
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise ValueError(f"{name} must be True or False, got {got}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be a whole number, got {got}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number, got {got}")
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {got}")
    elif kind.startswith("tuple[float"):
        if not isinstance(value, tuple) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
                for v in value):
            raise ValueError(f"{name} must be a tuple of finite numbers, got {got}")

