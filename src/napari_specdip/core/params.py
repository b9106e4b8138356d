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
NOISE_MODELS: tuple[str, ...] = ("gaussian", "poisson-gaussian")
NOISE_FITS: tuple[str, ...] = ("weighted", "anscombe")
# tasks whose observation carries the camera's noise pixel by pixel (the stabilising
# transform is pointwise, so it commutes with these operators only)
NOISE_TASKS: tuple[str, ...] = ("denoise", "inpaint")
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
    noise : str
        ``"gaussian"`` (one noise level: squared error) or ``"poisson-gaussian"``
        (photon shot noise plus camera read noise, for microscopy; denoising and
        inpainting):
        ``z = offset + gain * Poisson(x / gain) + N(0, read_sigma^2)``, i.e.
        ``var(z) = gain * (E[z] - offset) + read_sigma^2``.
    noise_gain, noise_read_sigma, noise_offset : float or None
        The camera's conversion factor (input units per photon), read noise
        (input units) and pedestal (input units: the value of zero photons), e.g.
        in ADU for a uint16 image. None: estimated from the image itself (the
        offset as the image's black level). The values used are in
        ``result.parameters["noise_model"]``.
    noise_fit : str
        How the Poisson-Gaussian model enters the fit: ``"weighted"`` (default:
        the squared error weighted by the inverse of the signal-dependent
        variance, in the data's own space) or ``"anscombe"`` (the generalized
        Anscombe transform before fitting, the exact unbiased inverse after; the
        highest PSNR at the best iteration on benchmarks/photon.py, but it falls
        off faster after it, so it is the better choice only with a well-placed
        stop).
    ensemble : int
        Members K fitted together from seeds ``seed .. seed + K - 1`` (decoder
        only); the result is their mean and ``result.uncertainty`` their
        per-pixel standard deviation.

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
    noise: str = "gaussian"
    noise_gain: float | None = None
    noise_read_sigma: float | None = None
    noise_offset: float | None = None
    noise_fit: str = "weighted"
    ensemble: int = 1

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
        self._validate_noise()
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")
        if self.ensemble > 1 and self.network != "decoder":
            raise ValueError(f"an ensemble needs network='decoder', got {self.network!r}")

    def _validate_noise(self) -> None:
        _choice("noise", self.noise, NOISE_MODELS)
        _choice("noise_fit", self.noise_fit, NOISE_FITS)
        if self.noise_gain is not None and not self.noise_gain > 0:
            raise ValueError(f"noise_gain must be positive, got {self.noise_gain}")
        if self.noise_read_sigma is not None and not self.noise_read_sigma >= 0:
            raise ValueError(f"noise_read_sigma must be >= 0, got {self.noise_read_sigma}")
        camera = (self.noise_gain, self.noise_read_sigma, self.noise_offset)
        if self.noise == "gaussian" and any(v is not None for v in camera):
            raise ValueError("noise_gain, noise_read_sigma and noise_offset need "
                             "noise='poisson-gaussian'")
        if self.noise == "poisson-gaussian" and self.task not in NOISE_TASKS:
            raise ValueError(f"the Poisson-Gaussian noise model applies to "
                             f"{' and '.join(NOISE_TASKS)}, not to task {self.task!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dictionary of every field."""
        d = dataclasses.asdict(self)
        d["sigmas"] = list(self.sigmas)
        return d


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
