"""Per-task defaults of the method, gathered in one documented object."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["denoise", "deblock", "inpaint", "super-resolve", "enhance"]
StopRule = Literal["auto", "ratio", "wmv", "none"]
Preset = Literal["quick", "balanced", "paper"]
Upsampler = Literal["bilinear", "gaussian", "nearest"]
Network = Literal["decoder", "skip", "convnet"]
OutputChoice = Literal["last", "ema", "best"]
LrSchedule = Literal["constant", "cosine", "exponential"]

TASKS: tuple[str, ...] = ("denoise", "deblock", "inpaint", "super-resolve", "enhance")
STOP_RULES: tuple[str, ...] = ("auto", "ratio", "wmv", "none")
PRESETS: tuple[str, ...] = ("quick", "balanced", "paper")
DEFAULT_PRESET = "balanced"
UPSAMPLERS: tuple[str, ...] = ("bilinear", "gaussian", "nearest")
NETWORKS: tuple[str, ...] = ("decoder", "skip", "convnet")
OUTPUTS: tuple[str, ...] = ("last", "ema", "best")
HOLDOUT_RETURNS: tuple[str, ...] = ("plateau", "minimum")
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "exponential")
NOISE_MODELS: tuple[str, ...] = ("gaussian", "poisson-gaussian")
NOISE_FITS: tuple[str, ...] = ("weighted", "anscombe")
#: what follows the fit of a denoising run: nothing, or an empirical Wiener stage with
#: the network's output (blended with BM3D's first step under Gaussian noise) as its pilot
#: (core/refine.py; under Gaussian noise blended with BM3D's second step, and the result
#: with WNNM's estimate, core/low_rank.py)
REFINES: tuple[str, ...] = ("none", "wiener")
# tasks whose observation carries the camera's noise pixel by pixel (the stabilising
# transform is pointwise, so it commutes with these operators only)
NOISE_TASKS: tuple[str, ...] = ("denoise", "inpaint")
SR_FACTORS: tuple[int, ...] = (2, 4, 8)
#: options that apply to some tasks only (option -> those tasks): given for another
#: task they would be ignored without a word (a forgotten ``task="super-resolve"``)
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "mask": ("inpaint",),
    "factor": ("super-resolve",),
    "gain": ("enhance",),
    "noise": NOISE_TASKS,
    "noise_sigma": ("denoise",),
    "noise_gain": NOISE_TASKS,
    "noise_read_sigma": NOISE_TASKS,
    "noise_offset": NOISE_TASKS,
    "noise_fit": NOISE_TASKS,
    "refine": ("denoise",),
    "keep_known": ("inpaint",),
}
#: noise options that apply under one noise model only (option -> that model)
MODEL_OPTIONS: dict[str, str] = {
    "noise_sigma": "gaussian",
    "noise_gain": "poisson-gaussian",
    "noise_read_sigma": "poisson-gaussian",
    "noise_offset": "poisson-gaussian",
    "noise_fit": "poisson-gaussian",
}


def ignored_option(given: Iterable[str], task: str, noise: str
                   ) -> tuple[str, Literal["task", "noise"], str] | None:
    """The first of the ``given`` options that ``task`` or the ``noise`` model ignores:
    (the option, whether the task or the noise model ignores it, the task(s) or model
    it needs); None when all of them apply.

    Examples
    --------
    >>> ignored_option(["factor", "seed"], "denoise", "gaussian")
    ('factor', 'task', 'super-resolve')
    >>> ignored_option(["noise_gain"], "denoise", "gaussian")
    ('noise_gain', 'noise', 'poisson-gaussian')
    >>> ignored_option(["gain"], "enhance", "gaussian") is None
    True
    """
    names = list(given)
    for name in names:
        if name in TASK_OPTIONS and task not in TASK_OPTIONS[name]:
            return name, "task", " or ".join(TASK_OPTIONS[name])
    for name in names:
        if name in MODEL_OPTIONS and noise != MODEL_OPTIONS[name]:
            return name, "noise", MODEL_OPTIONS[name]
    return None


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
#: the paper's number of upsampling levels, and the smallest coarsest grid kept by default
PAPER_DEPTH = 5
#: seeds are used with offsets (ensemble members, held-out masks), within torch's and
#: numpy's 64-bit range
MAX_SEED = 2**62
#: the largest ensemble: K networks fit side by side (K=1000 on 32 px took 1 GB)
MAX_ENSEMBLE = 64
MIN_COARSE_SIDE = 8
#: ``num_threads`` may be at most this many per CPU core of the machine. torch's threads
#: beyond the cores only wait for each other at every layer: a 48 px, 20-iteration run took
#: 6 s with 1 thread, 67 s with 512 and had not finished after 9 minutes with 10000 (2
#: cores). Four per logical core still takes any count meant for the machine (its physical
#: or logical cores, or a container's share of them) with room to spare, and refuses the
#: typos (an extra digit) that make a run crawl.
THREADS_PER_CORE = 4


def max_threads() -> int:
    """The largest ``num_threads`` accepted on this machine: :data:`THREADS_PER_CORE`
    per CPU core (``os.cpu_count()``).

    Examples
    --------
    >>> max_threads() == THREADS_PER_CORE * (os.cpu_count() or 1)
    True
    """
    return THREADS_PER_CORE * (os.cpu_count() or 1)


def auto_depth(height: int, width: int) -> int:
    """Upsampling levels for an output of ``height`` x ``width`` pixels: the paper's
    5 where the coarsest grid keeps ``MIN_COARSE_SIDE`` pixels, fewer below.

    Examples
    --------
    >>> auto_depth(512, 512), auto_depth(128, 200), auto_depth(64, 64), auto_depth(16, 16)
    (5, 4, 3, 1)
    """
    levels = 0
    while levels < PAPER_DEPTH and min(height, width) >> (levels + 1) >= MIN_COARSE_SIDE:
        levels += 1
    return max(1, levels)


def network_depth(params: RestoreParameters, height: int, width: int, scale: int = 1) -> int:
    """Upsampling levels the engine uses for an observation of ``height`` x ``width``."""
    return params.depth if params.depth is not None else auto_depth(height * scale,
                                                                      width * scale)


# Gaussian upsampling suppresses high frequencies itself, so the paper loosens lambda.
GAUSSIAN_LIPSCHITZ = 1.8

#: iterations of the detail-enhancement fit (METHOD.md: about 100 at lambda 1.0)
ENHANCE_ITERATIONS = 100

# the paper preset's caps (the reference runs 10000; inpainting's scripts 5000)
_MAX_ITERATIONS = {
    "denoise": 10000,
    "deblock": 10000,
    "inpaint": 5000,
    "super-resolve": 10000,
    "enhance": ENHANCE_ITERATIONS,
}


# What each preset sets (benchmarks/README.md gives the measurements behind these numbers:
# trajectories.py, stopping.py, time_to_quality.py); every other field keeps its task default.
# balanced steps at 3e-3: at width 64 and 256 px, 1e-2 diverged again and again (camera,
# sigma 25: 23.1 dB after 1200 iterations against 27.8 at 3e-3), while at 128 px 3e-3 was
# within 0.2 dB either way and took about 30% more iterations.
#: standard deviation of the noise added to the decoder's input code (sin/cos, amplitude
#: 1) at every step in the quick and balanced presets. benchmarks/README.md, *Input
#: jitter*: on the tuning half (128 px, sigma 25 and 50, widths 16 and 32) the hold-out
#: stop's mean gap to the run's best fell from 0.14-0.25 to 0.04-0.09 dB and its largest
#: from 0.57-1.09 to 0.15-0.46 dB, the result rising 0.18-0.27 dB; 0.3 scored the same.
#: On the held-out half: +0.04 dB on average, the stop's largest gap unchanged (0.46)
INPUT_JITTER = 0.1
_PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"width": 32, "learning_rate": 1e-2, "lr_warmup": 50, "max_iterations": 1500,
              "signal_every": 5, "holdout": 0.1, "stop": "auto", "output": "ema",
              "start_at_mean": True, "input_jitter": INPUT_JITTER, "refine": "wiener"},
    "balanced": {"width": 64, "learning_rate": 3e-3, "lr_warmup": 50, "max_iterations": 3000,
                 "signal_every": 5, "holdout": 0.1, "stop": "auto", "output": "ema",
                 "start_at_mean": True, "input_jitter": INPUT_JITTER, "refine": "wiener"},
    # the reference implementation's settings, kept exactly (METHOD.md sections 2 and 8)
    "paper": {"width": 128, "depth": 5, "learning_rate": 1e-3, "lr_warmup": 0,
              "max_iterations": 10000, "signal_every": 1, "holdout": 0.0, "stop": "ratio",
              "output": "last", "start_at_mean": False, "input_jitter": 0.0, "refine": "none",
              "keep_known": False},
}
# the smallest tile: a decoder needs a few levels of upsampling to have any spectral bias
MIN_TILE = 32
#: ``tile="auto"`` fits a denoising run on a CPU as tiles of this side once the image is
#: at least ``AUTO_TILE_FROM`` px on its longer side. benchmarks/tiling.py, quick, 512 px,
#: against one network for the whole image given 10 minutes (or to its own stop): +0.06
#: and +1.41 dB on the tuning half (camera 28.4 dB in 7.6 min), +0.18 to +1.85 dB (mean
#: +0.84) in 0.50-0.75 of the time on the held-out half; at 256 px tiles were faster but
#: -0.5 to +0.5 dB by image, and on a GPU a step costs about the same up to 512 px
AUTO_TILE = 128
AUTO_TILE_FROM = 4 * AUTO_TILE
# detail enhancement is a fixed short fit at the paper's step size in every preset
_ENHANCE = {"learning_rate": 1e-3, "lr_warmup": 0, "max_iterations": ENHANCE_ITERATIONS,
            "stop": "none", "output": "last", "holdout": 0.0, "input_jitter": 0.0}


@dataclass(frozen=True, kw_only=True)
class RestoreParameters:
    """Every knob of one restoration run.

    Build a task's defaults under a preset with :meth:`for_task` and change fields
    with :meth:`replace`; ``RestoreParameters()`` is ``for_task("denoise")``, the
    default preset's denoising. The object is immutable so that a snapshot taken on
    the GUI thread cannot change under a running worker.

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
    width : int
        Channels per layer.
    depth : int or None
        Number of x2 upsampling levels; image sides are padded to multiples of
        ``2**depth``. None (default) picks the most levels, up to the paper's 5,
        that leave the coarsest grid at least ``MIN_COARSE_SIDE`` (8) pixels on
        its shorter side: on a 2 x 2 grid (a 64 px image at depth 5) the
        network's spatial variation can die out early in the fit (mean-only
        batch norm then removes what is left) and the run returns a flat image.
    network : str
        ``"decoder"`` (the paper's), ``"skip"`` (original DIP) or ``"convnet"``
        (no resampling); the last two are for comparison runs.
    learning_rate : float
        Adam step size (the peak of the schedule).
    lr_schedule : str
        ``"constant"``, ``"cosine"`` (down to ``lr_floor`` times the peak at
        ``max_iterations``) or ``"exponential"`` (halved every ``lr_halflife``
        iterations, never below ``lr_floor`` times the peak).
    lr_warmup : int
        Iterations of linear warm-up from zero to ``learning_rate``.
    lr_halflife, lr_floor : int, float
        See ``lr_schedule``.
    max_iterations : int
        Hard cap on iterations.
    stop : str
        ``"auto"`` (quick and balanced presets): stop once the error on the
        held-out pixels (see ``holdout``) has not improved for a patience, and
        return the output around its minimum (see ``holdout_return``), the run's
        best as far as the data can tell (when denoising: the output's error
        estimated from the held-out and the fitted pixels' losses and the noise
        variance); ``"ratio"`` (the
        paper's blur/sharpness rule, paper preset; returns the output when it
        fires), ``"wmv"`` (ES-WMV, Wang et al.: stop when the
        variance of recent outputs has not reached a new minimum for
        ``wmv_patience`` iterations, and return the output of that minimum) or
        ``"none"`` (run ``max_iterations``).
    holdout_patience : int
        Iterations ``stop="auto"`` waits after the held-out error's minimum.
    holdout_patience_warm : int
        The same for a run that starts from ``warm_start`` weights (the next slice
        of a stack): it starts near its optimum, which it reaches within 50-130
        iterations, so it waits less (benchmarks/warm_start.py).
    holdout_return : {"plateau", "minimum"}
        Which output ``stop="auto"`` returns: the middle of the watched error's
        plateau around its minimum (default; steadier where that error is flat
        within its own noise, see :class:`napari_specdip.stopping.HoldoutRule`) or
        the minimum itself. An ensemble (``ensemble`` > 1) returns the minimum.
    stop_window, stop_epsilon : int, float
        Window n and threshold epsilon of the ratio rule.
    wmv_window, wmv_patience : int
        Window and patience of ES-WMV, in iterations.
    track_variance : bool
        Record the ES-WMV variance even when neither the stop rule nor the
        output choice needs it (for analysis and benchmarks).
    holdout : float
        Fraction of the observed pixels left out of the fit (0: none). Their
        error is recorded as the ``holdout_loss`` signals: an estimate, up to
        the noise variance, of the error on pixels the network never fitted.
    signal_every : int
        Evaluate the spectral signals every k iterations; windows are scaled
        to match.
    input_jitter : float
        Standard deviation of Gaussian noise added to the network's fixed input
        code at every step (the code is sin/cos of uniform draws: amplitude 1).
        The output then averages over nearby inputs, which slows the fitting of
        noise and flattens the run's peak, so the hold-out stop lands closer to
        it. 0.1 in the quick and balanced presets, 0 in the paper preset (the
        paper's decoder has none) and for detail enhancement. The skip network
        keeps the original DIP's 1/30 on its own input whatever this is.
    start_at_mean : bool
        Start the network's output at the observation's mean (its last bias).
        Sparse images with a dark background (fluorescence) otherwise push the
        sigmoid into saturation during the first large steps, where its
        gradient vanishes and the fit returns a black image. The paper
        preset keeps the reference's initialisation (False).
    preset : str
        The preset the defaults came from (``"quick"``, ``"balanced"`` or
        ``"paper"``, see :meth:`for_task`); recorded with the run.
    preview_every : int
        Put a preview of the current output in the step report every N
        iterations (0: never).
    output : str
        What the result holds: ``"ema"`` (default: an exponential moving
        average of outputs, DIP's trick; +0.5 dB over the last iterate on the
        denoising benchmark), ``"last"`` iterate (the paper) or ``"best"`` (highest
        PSNR against a clean reference when one is given, otherwise the iterate
        of lowest ES-WMV variance; a run shorter than ``wmv_window`` has no variance
        yet and returns its last iterate).
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
        CPU threads for the run (None: leave torch's setting); at most
        :data:`THREADS_PER_CORE` (4) per CPU core of the machine, see :func:`max_threads`.
    noise : str
        ``"gaussian"`` (one noise level: squared error) or ``"poisson-gaussian"``
        (photon shot noise plus camera read noise, for microscopy; denoising and
        inpainting):
        ``z = offset + gain * Poisson(x / gain) + N(0, read_sigma^2)``, i.e.
        ``var(z) = gain * (E[z] - offset) + read_sigma^2``.
    noise_sigma : float or None
        Gaussian noise (``noise="gaussian"``, denoising): its standard deviation in
        input units, for the auto stop's estimate of the output's error. None:
        estimated from the image (recorded as ``stop_noise_variance``), which errs
        high on fine textures at low noise (2.6x the variance on grass at sigma
        10/255) and then stops early; give it when it is known. A value larger
        than the range the image is fitted on (the result's ``intensity_range``:
        0..255 for uint8, 0..1 for floats within [0, 1], else the image's own
        min..max) cannot be in the image's units and is refused.
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
    refine : str
        What follows the fit of a denoising run: ``"wiener"`` (the ``quick`` and
        ``balanced`` presets) filters the observation once more, with the network's
        output as the pilot of an empirical Wiener filter (BM3D's second step on
        8 x 8 DCT patches; RGB in opponent colours; under Gaussian noise the pilot is
        ``refine.PILOT_NETWORK_SHARE`` of the network's output and the rest block
        matching with hard thresholding of the observation, BM3D's first step, and
        ``refine.GROUPED_SHARE`` of the filter is BM3D's second step on groups of
        similar blocks matched on that pilot, and ``refine.LOW_RANK_SHARE`` of the
        result is WNNM's estimate of the observation, low-rank groups of similar
        patches), which brings back detail the
        early-stopped fit has not reached; ``"none"`` (the
        ``paper`` preset) returns the network's output. The noise level is
        ``noise_sigma`` or the one estimated from the image; with the
        Poisson-Gaussian model, the camera model's variance at the output. Under the
        Gaussian model with no ``noise_sigma``, noise that clearly grows with the signal
        (:func:`napari_specdip.core.noise.signal_dependence`) is filtered with the camera
        model estimated from the image where that model puts the noise above the
        Gaussian level. An
        observation clipped at 0 or 1 of its range (values piled up there: a dark
        background in 8 bits, saturation) is then declipped
        (:func:`napari_specdip.core.refine.declip`, with the noise's deviation at each
        intensity): clipping lifted the noisy data's mean near that end, and both the
        fit and the filter return that mean; a Gaussian noise level, unless given, is
        then estimated away from the clipped values. An
        ensemble's mean under ``noise="poisson-gaussian"`` is not refined (there the
        stage lowered it).
        ``result.parameters["refined"]`` says what was done (``"declipped"``: the
        ends); ``result.metrics["psnr_unrefined"]`` gives the network's own PSNR when a
        reference is given, ``"psnr_before_declipping"`` the filter's. Other tasks
        ignore it.
    keep_known : bool or None
        Inpainting: True returns the observed pixels as they are and the network's
        output only where the mask says to fill; False the network's output
        everywhere (the ``paper`` preset, as the reference implementation), which
        also smooths the known pixels: what noisy ones need. None (default): True,
        but False under the Poisson-Gaussian noise model, whose known pixels are
        noisy. Other tasks ignore it.
    ensemble : int
        Members K fitted together from seeds ``seed .. seed + K - 1`` (decoder
        only), member k set up as the single run seeded ``seed + k`` (the grouped
        arithmetic's rounding parts the fits after a few dozen steps), held-out
        pixels included (each member leaves out its own, so every pixel is fitted
        by most members and left to the others' interpolation by a few); the
        result is their mean and ``result.uncertainty`` their standard deviation
        over the members and over each member's outputs around the returned
        iteration (each pixel's, pooled over its neighbours).
    tile : int or "auto"
        0 (default): fit the whole image with one network. N > 0: fit an image
        larger than N px plus ``tile_overlap`` on each side as tiles: cores of at
        most N x N px, each widened by ``tile_overlap`` into its neighbours, each with
        its own network and stop, blended where they overlap; a network
        fits a small image in far fewer steps, so a large image finishes sooner
        on a CPU. ``"auto"`` (the quick preset's, for denoising): tiles of
        ``AUTO_TILE`` (128) px for an image of ``AUTO_TILE_FROM`` (512) px or more
        on a CPU, else the whole image, and the whole image for a run that hands
        its network on (``warm_start``, ``keep_state``). benchmarks/tiling.py, 512
        px as 128 px tiles: 0.1-1.9 dB higher (mean 0.8 on images the choice never
        saw) in 0.5-0.75 of the time the whole-image fit was given.
    tile_overlap : int
        Pixels each tile reaches into its neighbours; outputs are blended over
        that overlap with linear ramps.
    tile_warm_start : bool
        With tiles, when denoising with the ``"auto"`` stop: each tile after the
        first starts from the network the tile before it ended with (the fit it
        returned) and waits ``holdout_patience_warm`` after its minimum; tiles of
        one image share its noise and kinds of structure. False starts every tile
        from scratch. Other tasks and stops always start every tile from scratch
        (not measured there). ``benchmarks/tiling.py --compare warm``, quick preset,
        512 px (16 tiles), four images the choice never saw: -0.01 to +0.02 dB in
        0.55-0.78 of the time (mean 0.64).

    Examples
    --------
    >>> from napari_specdip import RestoreParameters
    >>> p = RestoreParameters.for_task("inpaint")
    >>> p.lipschitz
    1.6
    >>> p.replace(width=32).width
    32
    >>> RestoreParameters.for_task("denoise", preset="quick").width
    32
    """

    task: str = "denoise"
    preset: str = DEFAULT_PRESET
    lipschitz: float = 1.4
    upsampler: str = "bilinear"
    sigmas: tuple[float, ...] = DEFAULT_SIGMAS
    width: int = 64
    depth: int | None = None
    network: str = "decoder"
    start_at_mean: bool = True
    input_jitter: float = INPUT_JITTER
    learning_rate: float = 3e-3
    lr_schedule: str = "constant"
    lr_warmup: int = 50
    lr_halflife: int = 1000
    lr_floor: float = 0.05
    max_iterations: int = 3000
    stop: str = "auto"
    stop_window: int = 100
    stop_epsilon: float = 0.01
    wmv_window: int = 100
    wmv_patience: int = 1000
    holdout_patience: int = 300
    holdout_patience_warm: int = 100
    holdout_return: str = "plateau"
    track_variance: bool = False
    holdout: float = 0.1
    signal_every: int = 5
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
    noise_sigma: float | None = None
    noise_gain: float | None = None
    noise_read_sigma: float | None = None
    noise_offset: float | None = None
    noise_fit: str = "weighted"
    refine: str = "wiener"
    keep_known: bool | None = None
    ensemble: int = 1
    tile: int | str = 0
    tile_overlap: int = 16
    tile_warm_start: bool = True

    @classmethod
    def for_task(cls, task: str, *, preset: str | None = None,
                 **overrides: Any) -> RestoreParameters:
        """Return the defaults for ``task`` under ``preset`` (default
        ``"balanced"``), with ``overrides`` applied on top.

        Presets, measured with ``benchmarks/trajectories.py``, ``stopping.py`` and
        ``time_to_quality.py`` (figures in benchmarks/README.md):

        - ``"quick"``: width 32, Adam 1e-2 after a 50-step warm-up, at most 1500
          iterations, signals every 5 steps, stop at the hold-out minimum. For
          tuning: seconds to a minute at 128 px on a laptop CPU. Denoising sets
          ``tile="auto"``: 128 px tiles on a CPU from 512 px up (4-8 minutes for a
          512 px image on a 2-core CPU, 0.1-1.9 dB over one network given 10).
        - ``"balanced"`` (default): width 64, Adam 3e-3 after the same warm-up, at
          most 3000 iterations, about three times ``quick``'s time per step. Since
          the Wiener stage, within about 0.1 dB of ``quick`` (11 held-out images at
          sigma 25: 29.60 against 29.61 dB; camera 128 px: 27.09 against 26.96; 512 px
          on a GPU: 28.21 against 28.17). (At width 64, 1e-2 diverged at 256 px.)
        - ``"paper"``: the authors' released settings: width 128, depth 5, Adam
          1e-3, up to 10000 iterations, the blur/sharpness ratio rule, last
          iterate, bilinear upsampling (the paper's Gaussian upsampling is
          ``upsampler="gaussian"``); for comparison with the paper: 5-10 times the
          time of ``"balanced"`` and 0.3-1 dB below it in our benchmarks.

        Detail enhancement keeps the paper's short fit (100 iterations at 1e-3)
        in every preset; only the width changes. JPEG deblocking's ``"auto"`` stop
        ends at a budget of iterations read from the JPEG's own quantisation
        (:func:`~napari_specdip.core.jpeg.deblock_budget`): its block errors are
        shared by neighbouring pixels, which hides them from the hold-out rule. It
        ends sooner once the output is consistent with the JPEG, within the
        quantisation intervals of its block coefficients
        (:class:`~napari_specdip.stopping.ConsistencyRule`): smooth images get
        there long before the budget.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        name = DEFAULT_PRESET if preset is None else preset
        if not isinstance(name, str) or name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        settings = dict(_PRESETS[name])
        if task == "enhance":
            settings.update(_ENHANCE)
        if task == "denoise" and name == "quick":
            settings["tile"] = "auto"  # measured on denoising only (AUTO_TILE)
        base = cls(
            task=task,
            preset=name,
            lipschitz=_LIPSCHITZ[task],
            max_iterations=_MAX_ITERATIONS[task],
            factor=4 if task == "super-resolve" else None,
        )
        if task == "inpaint" and name == "paper":
            settings["max_iterations"] = _MAX_ITERATIONS["inpaint"]
        base = dataclasses.replace(base, **settings)
        if overrides.get("upsampler") == "gaussian" and "lipschitz" not in overrides:
            overrides = {**overrides, "lipschitz": GAUSSIAN_LIPSCHITZ}
        return base.replace(**overrides)

    @property
    def stops_at_jpeg_budget(self) -> bool:
        """Whether the run ends at the iterations its JPEG calls for
        (:func:`napari_specdip.core.jpeg.deblock_budget`): deblocking with the auto stop."""
        return self.task == "deblock" and self.stop == "auto"

    @property
    def estimates_camera(self) -> bool:
        """Whether the run estimates camera values: Poisson-Gaussian noise with the
        gain, read noise or offset not given."""
        return self.noise == "poisson-gaussian" and None in (
            self.noise_gain, self.noise_read_sigma, self.noise_offset)

    @property
    def warm_starts_tiles(self) -> bool:
        """Whether each tile starts from the network the tile before it ended with
        (``tile_warm_start``: denoising with the auto stop, where it was measured)."""
        return self.tile_warm_start and self.task == "denoise" and self.stop == "auto"

    @property
    def can_warm_start(self) -> bool:
        """Whether one slice can start from the network the slice before ended with:
        not with a fixed tile (one network per tile); ``tile="auto"`` then fits each
        slice whole."""
        return self.tile in (0, "auto")

    def replace(self, **changes: Any) -> RestoreParameters:
        """Return a copy with ``changes`` applied and validated."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            import difflib

            meant = [close[0] for name in unknown
                     if (close := difflib.get_close_matches(name, names, n=1))]
            hint = f" (did you mean {', '.join(meant)}?)" if meant else ""
            raise TypeError(f"unknown restoration option(s): {', '.join(unknown)}{hint}")
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
        _choice("holdout_return", self.holdout_return, HOLDOUT_RETURNS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("preset", self.preset, PRESETS)
        if self.stop == "auto" and not self.holdout > 0:
            raise ValueError(f"stop={self.stop!r} watches held-out pixels: it needs holdout > 0 "
                             "(e.g. 0.1); with holdout=0 use stop='ratio', 'wmv' or 'none'")
        side = AUTO_TILE if self.tile == "auto" else self.tile
        if not isinstance(side, int) or side != 0 and side < MIN_TILE:
            raise ValueError(f"tile must be 0 (the whole image), 'auto' or at least {MIN_TILE} "
                             f"px, got {self.tile!r}")
        if self.tile_overlap < 0 or (side and 2 * self.tile_overlap > side):
            raise ValueError(f"tile_overlap must be between 0 and half the tile, got "
                             f"{self.tile_overlap} for tile {self.tile}")
        if self.holdout_patience < 1:
            raise ValueError(f"holdout_patience must be >= 1, got {self.holdout_patience}")
        if self.holdout_patience_warm < 1:
            raise ValueError("holdout_patience_warm must be >= 1, got "
                             f"{self.holdout_patience_warm}")
        if not self.lipschitz > 0:
            raise ValueError(f"lipschitz must be positive, got {self.lipschitz}")
        if self.width < 1 or (self.depth is not None and self.depth < 0):
            raise ValueError(f"width must be >= 1 and depth >= 0, got {self.width}, {self.depth}")
        if self.network == "skip" and self.depth == 0:
            raise ValueError("network='skip' needs depth >= 1 (its encoder downsamples at "
                             "least once)")
        if not self.sigmas:
            raise ValueError("sigmas needs at least one value (one per upsampling level, "
                             "the last one repeated)")
        if not 0 <= self.seed < MAX_SEED:
            raise ValueError(f"seed must be between 0 and 2**62 - 1, got {self.seed}")
        if self.depth is not None and len(self.sigmas) < self.depth and self.upsampler == "gaussian":
            raise ValueError(f"need {self.depth} Gaussian sigmas (one per level), got {len(self.sigmas)}")
        if any(s <= 0 for s in self.sigmas):
            raise ValueError("Gaussian sigmas must be positive")
        if not 0.0 < self.learning_rate <= 1.0:  # Adam's step: far above 1 it only diverges
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.lr_warmup < 0 or self.lr_halflife < 1 or not 0.0 <= self.lr_floor <= 1.0:
            raise ValueError("lr_warmup must be >= 0, lr_halflife >= 1 and lr_floor in [0, 1]")
        if not 0.0 <= self.input_jitter <= 10.0:
            raise ValueError(f"input_jitter must be in [0, 10] (the input code's amplitude "
                             f"is 1), got {self.input_jitter}")
        if not 0.0 <= self.holdout < 0.5:
            raise ValueError(f"holdout must be in [0, 0.5), got {self.holdout}")
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
        if self.task == "enhance" and not 0.0 < self.gain < math.inf:
            raise ValueError(f"gain must be positive for enhance (0 returns the input "
                             f"unchanged, after the whole fit), got {self.gain}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        if self.num_threads is not None and self.num_threads > max_threads():
            cores = os.cpu_count() or 1
            raise ValueError(f"num_threads={self.num_threads} is far more than this machine's "
                             f"{cores} CPU core(s): at most {max_threads()} "
                             f"({THREADS_PER_CORE} per core); threads beyond the cores only "
                             "wait for each other and slow every step down")
        self._validate_noise()
        if not 1 <= self.ensemble <= MAX_ENSEMBLE:
            raise ValueError(f"ensemble must be between 1 and {MAX_ENSEMBLE} (the networks "
                             f"run side by side, in memory and time), got {self.ensemble}")
        # a negative threshold can never be met (the ratio rule) or is met at every check
        # (backtracking): a typo
        for name in ("stop_epsilon", "backtrack_db"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ensemble > 1 and self.network != "decoder":
            raise ValueError(f"an ensemble needs network='decoder', got {self.network!r}")

    def _validate_noise(self) -> None:
        _choice("noise", self.noise, NOISE_MODELS)
        _choice("noise_fit", self.noise_fit, NOISE_FITS)
        _choice("refine", self.refine, REFINES)
        if self.keep_known is not None and not isinstance(self.keep_known, bool):
            raise ValueError(f"keep_known must be True, False or None, got {self.keep_known!r}")
        if self.noise_gain is not None and not self.noise_gain > 0:
            raise ValueError(f"noise_gain must be positive, got {self.noise_gain}")
        if self.noise_read_sigma is not None and not self.noise_read_sigma >= 0:
            raise ValueError(f"noise_read_sigma must be >= 0, got {self.noise_read_sigma}")
        camera = (self.noise_gain, self.noise_read_sigma, self.noise_offset)
        if self.noise == "gaussian" and any(v is not None for v in camera):
            raise ValueError("noise_gain, noise_read_sigma and noise_offset need "
                             "noise='poisson-gaussian'")
        if self.noise_sigma is not None:
            if not (math.isfinite(self.noise_sigma) and self.noise_sigma > 0):
                raise ValueError(f"noise_sigma must be a positive number, got {self.noise_sigma}")
            if self.noise != "gaussian" or self.task != "denoise":
                raise ValueError("noise_sigma is the Gaussian noise level of a denoising run "
                                 "(noise='gaussian', task 'denoise'); the Poisson-Gaussian "
                                 "model takes noise_gain and noise_read_sigma")
        if self.noise == "poisson-gaussian" and self.task not in NOISE_TASKS:
            raise ValueError(f"the Poisson-Gaussian noise model applies to "
                             f"{' and '.join(NOISE_TASKS)}, not to task {self.task!r}")

    @property
    def keeps_known(self) -> bool:
        """Whether an inpainting result keeps the observed pixels (``keep_known``, its
        default decided: not when they carry camera noise)."""
        if self.keep_known is not None:
            return self.keep_known
        return self.noise == "gaussian"

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
    ``"float | None"``, ``"int | str"``, ``"tuple[float, ...]"``...): a ``seed="7"`` or
    a ``max_iterations=2.5`` is refused here rather than deep inside torch. A union
    takes a value of any of its kinds; the message is the first kind's."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return
        raise ValueError(f"{name} must not be None")
    problems = [_kind_problem(name, value, k) for k in kinds if k != "None"]
    if problems and all(problems):
        raise ValueError(problems[0])


def _kind_problem(name: str, value: Any, kind: str) -> str | None:
    """Why ``value`` is not of ``kind`` (None: it is)."""
    import math
    import numbers

    got = f"{value!r} ({type(value).__name__})"
    if kind == "bool":
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            return f"{name} must be True or False, got {got}"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            if isinstance(value, float) and value.is_integer():  # 2.0: whole, but a float
                return f"{name} must be an int, got {got}: pass {int(value)}"
            return f"{name} must be a whole number, got {got}"
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"{name} must be a number, got {got}"
        if not math.isfinite(float(value)):
            return f"{name} must be finite, got {value}"
    elif kind == "str":
        if not isinstance(value, str):
            return f"{name} must be a string, got {got}"
    elif kind.startswith("tuple[float"):
        if not isinstance(value, tuple) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))
                for v in value):
            return f"{name} must be a tuple of finite numbers, got {got}"
    return None

