"""The denoising result after the fit: the Wiener stage on the network's output.

Under Gaussian noise the stage filters with one noise level (:func:`stage_level`): a
pilot of the network's output and BM3D's first step, BM3D's second step and the Wiener
filter on every patch, blended with WNNM (:func:`gaussian_stage`; the parts in
``core.refine``, ``core.block_matching`` and ``core.low_rank``). Under the camera model
the Wiener filter follows the noise's variance at the output (:func:`camera_stage`), and
photon noise left to the Gaussian model is filtered as camera noise where it is found
(:func:`camera_share`). Noise clipped at an end of the range is declipped after the
filter. :func:`apply_stage` chooses among these and records what it did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from napari_specdip.core.block_matching import hard_threshold_estimate, wiener_estimate
from napari_specdip.core.imaging import Layout
from napari_specdip.core.low_rank import low_rank_estimate
from napari_specdip.core.noise import (WHITE_NOISE_PATCH, NoiseFit, PoissonGaussian,
                                       clipped_noise_variance, estimate_white_noise_variance,
                                       signal_dependence)
from napari_specdip.core.params import RestoreParameters
from napari_specdip.core.refine import PATCH as REFINE_PATCH
from napari_specdip.core.refine import (GROUPED_SHARE, LOW_RANK_SHARE, PILOT_NETWORK_SHARE,
                                        PILOT_TRANSFORMS, clipped_ends, declip, wiener_refine)

if TYPE_CHECKING:
    from napari_specdip.core.engine import RestoreJob


def white_noise_variance(p: RestoreParameters, obs: npt.NDArray[np.float64],
                         layout: Layout) -> float | None:
    """Gaussian noise's variance on the [0, 1] scale: ``noise_sigma`` where given, else
    estimated from ``obs``; None for images too small to estimate it."""
    if p.noise_sigma is not None:
        return float((p.noise_sigma / (layout.high - layout.low)) ** 2)
    if min(obs.shape[:2]) < WHITE_NOISE_PATCH:
        return None
    return estimate_white_noise_variance(obs)


# Photon noise left to the Gaussian model (noise.signal_dependence): the Gaussian stage
# where the camera model's variance at the output is near the stage's level (read off the
# flattest patches: the dark background), the camera stage where it is several times that,
# a linear ramp between, smoothed over a few pixels. Block matching and WNNM, which need
# one level, suit the sparse spots and the dark background; the camera stage's Wiener
# filter alone keeps bright regions from their noise (benchmarks/README.md, *Clipped
# camera data under the Gaussian model*).
CAMERA_SHARE_SPAN = 1.0  # variance over the level: 1 + span and up, the camera stage alone
CAMERA_SHARE_SMOOTH = 2.0  # px


def stage_level(job: RestoreJob, stop_noise: float | None, low: bool, high: bool, *,
                photon: bool = False) -> tuple[float | None, str]:
    """The Gaussian stage's noise variance and where it came from (None: too small);
    ``photon``: the noise was found to grow with the signal."""
    p, obs = job.params, job.observation
    if (low or high) and p.noise_sigma is None and min(obs.shape[:2]) >= WHITE_NOISE_PATCH:
        # clipped pixels carry less noise and pull the whole image's estimate low (the
        # nuclei at sigma 50: 36/255). The weakly textured patches away from them still err
        # low on small sparse images, the clipped moments of the intensity levels high on
        # fine structure at low noise: their geometric mean lost least on the tuning half
        # (benchmarks/README.md, *The stage's level on clipped noise*). Photon noise has no
        # one level to fit, and the camera share is weighed against the dark background's level
        patches = estimate_white_noise_variance(obs, texture_ratio=0.0)
        levels = None if photon else clipped_noise_variance(obs, job.known, low=low, high=high)
        if levels is None or patches <= 0.0:
            return patches, "estimated from the image away from its clipped values"
        source = ("estimated from the image away from its clipped values and from its "
                  "intensity levels through the clipped noise's moments (geometric mean)")
        return math.sqrt(patches * levels), source
    found = stop_noise if stop_noise is not None else white_noise_variance(p, obs, job.layout)
    return found, "given" if p.noise_sigma is not None else "estimated from the image"


def gaussian_stage(obs: npt.NDArray[np.float64], output: npt.NDArray[np.float64],
                   level: float, device: torch.device
                   ) -> tuple[npt.NDArray[np.float64], dict[str, str]]:
    """The Wiener stage for noise of one variance ``level``, in [0, 1], and its record."""
    pilot, share = output, 1.0  # the Wiener stage's first estimate, the network's share in it
    deviation = math.sqrt(level)
    matched = level > 0 and PILOT_NETWORK_SHARE < 1.0
    if matched:
        # block matching averages the repeated structure the early-stopped fit smooths:
        # a better pilot than either alone
        share = PILOT_NETWORK_SHARE
        pilot = share * output + (1.0 - share) * hard_threshold_estimate(
            obs, deviation, transforms=PILOT_TRANSFORMS, device=device)
    filtered = wiener_refine(obs, pilot, level, device=device)
    grouped = 0.0  # the share of BM3D's second step (groups matched on the pilot) in it
    if matched and GROUPED_SHARE > 0.0:
        grouped = GROUPED_SHARE
        filtered = (grouped * wiener_estimate(obs, pilot, deviation, device=device)
                    + (1.0 - grouped) * filtered)
    low_rank = 0.0  # the share of WNNM's estimate (core/low_rank.py) in the output
    if matched and LOW_RANK_SHARE > 0.0:
        # low-rank groups keep repeated detail and sparse structure that both the fit and
        # the block-transform filters smooth, and their errors lie elsewhere
        low_rank = LOW_RANK_SHARE
        filtered = (low_rank * low_rank_estimate(obs, deviation, device=device)
                    + (1.0 - low_rank) * filtered)
    record = {
        "pilot": ("the network's output" if share == 1.0 else
                  f"{share:g} x the network's output + {1 - share:g} x block matching "
                  f"(BM3D's first step, blocks in {' and '.join(PILOT_TRANSFORMS)}, "
                  "averaged)"),
        "filter": ("the Wiener filter on every 8 x 8 patch" if grouped == 0.0 else
                   f"{grouped:g} x BM3D's second step (groups matched on the pilot) + "
                   f"{1 - grouped:g} x the Wiener filter on every 8 x 8 patch")}
    if low_rank > 0.0:
        record["low_rank"] = (f"{low_rank:g} x WNNM (weighted nuclear norm minimisation of "
                              f"groups of similar patches) + {1 - low_rank:g} x the filter")
    return np.clip(filtered, 0.0, 1.0), record


def camera_stage(obs: npt.NDArray[np.float64], output: npt.NDArray[np.float64],
                 model: PoissonGaussian, device: torch.device
                 ) -> tuple[npt.NDArray[np.float64],
                            Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
                            npt.NDArray[np.float64]]:
    """The Wiener stage for camera noise, variance ``model`` at the network's ``output``
    (also its pilot): the filtered image in [0, 1], the noise deviation as a function of
    the clean value, and the variance used."""
    floor = max(model.read_variance, 1e-3 * model.a)

    def deviation(mean: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.sqrt(np.maximum(model.variance(mean), floor))

    variance = np.maximum(model.variance(np.clip(output, 0.0, 1.0)), floor)
    return np.clip(wiener_refine(obs, output, variance, device=device), 0.0, 1.0), deviation, \
        variance


def camera_share(model: PoissonGaussian, estimate: npt.NDArray[np.float64], level: float
                 ) -> npt.NDArray[np.float64]:
    """Per pixel, the camera stage's share where the Gaussian model's stage found photon
    noise: 0 where the camera model's variance at ``estimate`` is at most the Gaussian
    stage's ``level``, 1 from ``1 + CAMERA_SHARE_SPAN`` times it, smoothed."""
    from scipy.ndimage import gaussian_filter

    ratio = model.variance(np.clip(estimate, 0.0, 1.0)) / max(level, 1e-30)
    share = np.clip((ratio - 1.0) / CAMERA_SHARE_SPAN, 0.0, 1.0)
    smooth: npt.NDArray[np.float64] = gaussian_filter(
        share, (CAMERA_SHARE_SMOOTH, CAMERA_SHARE_SMOOTH, 0.0), mode="nearest")
    return smooth


def apply_stage(job: RestoreJob, output: npt.NDArray[np.float64], noise: NoiseFit | None,
                stop_noise: float | None, device: torch.device, members: int
                ) -> tuple[npt.NDArray[np.float64], dict[str, Any] | None,
                           npt.NDArray[np.float64] | None]:
    """The denoising result after the ``refine`` stage (the network's ``output`` where
    there is none), its record (None: the task has no such stage) and, where the result
    was declipped, the filter's output before that.

    An ensemble's mean under the camera model is left as it is: on photon.py's 27 K=4 runs
    (5-30 photons) the stage lowered it by 0.16 dB on average (the 5-photon cell by about
    2 dB), where it raised single runs by 0.65; under Gaussian noise it raised K=4 means by
    0.48 dB on the held-out half (benchmarks/README.md, *refine.py*). Under the Gaussian
    model, noise that clearly grows with the intensity (``noise.signal_dependence``,
    clipped or not) is filtered as camera noise with the growth found where the camera
    model puts the variance well above the Gaussian stage's level (:func:`camera_share`),
    an ensemble's mean too (K=4 means of 13 fits: +0.7 to +2.8 dB on ten, -0.06 to -0.76
    on three). An observation clipped at an end of its range is declipped after the
    filter (``refine.declip``)."""
    p = job.params
    if p.task != "denoise":
        return output, None, None
    if p.refine == "none":
        return output, {"method": "none"}, None
    obs = job.observation
    low, high = clipped_ends(obs)
    # photon noise left to the Gaussian model: one level, read off the dark pixels, would
    # leave the bright ones noisy (camera data at 30 photons: 5 dB under the network's own)
    grows = (signal_dependence(obs, job.known, low=low, high=high)
             if noise is None and p.noise_sigma is None else None)
    if members > 1 and noise is not None:
        return output, {"method": "none", "reason": "an ensemble's mean, camera noise"}, None
    record: dict[str, Any] = {"method": p.refine, "patch": REFINE_PATCH}
    colour = "opponent" if output.shape[2] == 3 else "per channel"
    if noise is not None:
        result, camera_deviation, variance = camera_stage(obs, output, noise.model, device)
        record.update({"noise_variance": float(np.mean(variance)),
                       "noise_from": "the camera model at the output", "colour": colour,
                       "pilot": "the network's output",
                       "filter": "the Wiener filter on every 8 x 8 patch"})
        if not (low or high):
            return result, record, None
        record["declipped"] = [end for end, on in (("low", low), ("high", high)) if on]
        return declip(result, camera_deviation, low=low, high=high), record, result
    level, source = stage_level(job, stop_noise, low, high, photon=grows is not None)
    if level is None:
        return output, {"method": "none", "reason": "image too small to estimate its noise"}, None
    result, parts = gaussian_stage(obs, output, level, device)
    record.update({"noise_variance": level, "noise_from": source, "colour": colour, **parts})
    # noise clipped at an end of the range biased the data's mean there (a dark
    # background, saturation), and the fit and the filter both return that mean
    clipped = low or high
    final = declip(result, math.sqrt(level), low=low, high=high) if clipped else result
    if grows is not None:
        camera, camera_deviation, _ = camera_stage(obs, output, grows.model, device)
        camera_final = (declip(camera, camera_deviation, low=low, high=high) if clipped
                        else camera)
        share = camera_share(grows.model, camera_final, level)
        result = share * camera + (1.0 - share) * result
        final = share * camera_final + (1.0 - share) * final
        record["signal_dependent"] = {**grows.record(), "camera_share": float(np.mean(share))}
        record["camera_stage"] = (
            "the Wiener filter with the noise's growth with intensity, estimated from the "
            "image, at the output, where it puts the variance above that level (all of it "
            f"from {1 + CAMERA_SHARE_SPAN:g}x): {np.mean(share):.0%} of the image's weight")
    if not clipped:
        return final, record, None
    record["declipped"] = [end for end, on in (("low", low), ("high", high)) if on]
    return final, record, result
