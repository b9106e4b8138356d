"""What the fitting loop measures on an evaluated step, on the device, with one host
read per step: band correspondence, blur and sharpness, ES-WMV's windowed variance, the
held-out and fitted pixels' losses and the output's estimated error, deblocking's
blockiness and JPEG consistency, and the quality against a reference."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import torch

from napari_specdip.core.ensemble import ensemble_mean
from napari_specdip.core.jpeg import (EXCESS_TOLERANCE, LUMA, block_edges, block_references,
                                      likely_grid)
from napari_specdip.core.noise import NoiseFit
from napari_specdip.core.operators import Inpainting, Operator
from napari_specdip.core.refine import dct_matrix

if TYPE_CHECKING:
    from napari_specdip.core.engine import RestoreJob


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (H, W): luma for RGB, channel mean otherwise."""
    from napari_specdip.metrics import to_gray_torch

    return to_gray_torch(x[0])


def _blockiness(gray: torch.Tensor, edges: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """:func:`core.jpeg.blockiness` on the device; ``edges`` marks, per axis, the
    neighbour differences that cross a block edge."""
    rows, cols = edges
    dv, dh = torch.diff(gray, dim=0).square(), torch.diff(gray, dim=1).square()
    across = torch.cat([dv[rows].reshape(-1), dh[:, cols].reshape(-1)])
    within = torch.cat([dv[~rows].reshape(-1), dh[:, ~cols].reshape(-1)])
    return across.mean() / within.mean().clamp_min(1e-30)


class JpegExcess:
    """:func:`core.jpeg.excess` of the fit's output on the device: the observation's
    block references (:func:`core.jpeg.block_references`, clipped blocks restored) are
    found once, each evaluated step's coefficients with two small matrix products."""

    def __init__(self, job: RestoreJob, device: torch.device) -> None:
        found = job.jpeg
        assert found is not None
        obs = job.observation
        self.offset, self.levels = job.jpeg_levels
        height, width = obs.shape[:2]
        dy, dx = found.grid
        h, w = (height - dy) // 8 * 8, (width - dx) // 8 * 8
        self.window = (slice(dy, dy + h), slice(dx, dx + w))
        used, centres = block_references(self.offset + self.levels * obs, found)
        self.used = torch.from_numpy(used).to(device)
        self.dct = torch.from_numpy(dct_matrix(8)).to(device, torch.float32)
        self.weights = torch.tensor(LUMA if obs.shape[2] == 3 else (1.0,), device=device)
        self.half = torch.from_numpy(found.steps() / 2.0 + EXCESS_TOLERANCE).to(
            device, torch.float32)
        self.observed = torch.from_numpy(centres).to(device, torch.float32)

    @property
    def usable(self) -> bool:
        return bool(self.used.any())

    def _coefficients(self, image: torch.Tensor) -> torch.Tensor:
        luma = torch.einsum("c,chw->hw", self.weights, image[0])[self.window]
        luma = luma * self.levels + self.offset
        h, w = luma.shape
        blocks = luma.reshape(h // 8, 8, w // 8, 8).transpose(1, 2).reshape(-1, 8, 8)
        return (self.dct @ blocks[self.used] @ self.dct.T)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """The RMS excess, in grey levels, of a (1, C, H, W) output of the image's size."""
        beyond = ((self._coefficients(image) - self.observed).abs() - self.half).clamp_min(0.0)
        return beyond.square().mean().sqrt()


class RunningVariance:
    """ES-WMV's windowed variance of outputs: mean over the window of
    ``mean((x_i - mean_window)^2)``, updated in O(pixels) per step with running
    sums (float64 where the device has it), recomputed exactly once per window
    so rounding cannot drift."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.items: deque[torch.Tensor] = deque()
        self.total: torch.Tensor | None = None
        self.squares: torch.Tensor | None = None
        self.pushes = 0

    @property
    def full(self) -> bool:
        """ES-WMV only reads the variance of a full window."""
        return len(self.items) == self.window

    def push(self, x: torch.Tensor) -> torch.Tensor:
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        x = x.detach().to(wide)
        self.items.append(x)
        if len(self.items) > self.window:
            old = self.items.popleft()
            assert self.total is not None and self.squares is not None
            self.total -= old
            self.squares -= old * old
        self.pushes += 1
        if self.total is None or self.squares is None or self.pushes % self.window == 0:
            stack = torch.stack(tuple(self.items))
            self.total, self.squares = stack.sum(0), (stack * stack).sum(0)
        else:
            self.total += x
            self.squares += x * x
        n = len(self.items)
        mean = self.total / n
        return (self.squares / n - mean * mean).clamp_min(0).mean().float()


def error_estimate(fit: torch.Tensor, held: torch.Tensor, noise_variance: float,
                   held_fraction: float, *,
                   noise_shares: tuple[float, float] | None = None) -> torch.Tensor:
    """An output's mean squared error against the clean image, estimated from its loss
    on the fitted pixels (``fit``), on the held-out ones (``held``, a share
    ``held_fraction`` of the pixels) and the noise variance ``v``.

    On a held-out pixel the output never saw the observation: its squared error is
    the held-out loss less the noise there. On a fitted pixel the output is read as a
    mix ``a * y + (1 - a) * p`` of the observation and such a prediction ``p``; then
    the fitting loss is ``(1 - a)**2`` times what the held-out loss would be with the
    fitted pixels' noise, which gives ``a`` (the output's self-influence), and Stein's
    unbiased risk estimate for a smoother of divergence ``a`` gives the error there:
    ``fit - v + 2 v a``. Unlike the held-out loss alone, this follows the fitted
    pixels too, which on textures keep improving after the held-out pixels have
    turned. ``noise_shares``: the noise variance on the held-out and on the fitted
    pixels (:func:`~napari_specdip.core.noise.held_out_noise`; default ``v`` for both).

    Examples
    --------
    >>> float(error_estimate(torch.tensor(0.5), torch.tensor(2.0), 1.0, 0.0))
    0.5
    """
    v = float(noise_variance)
    v_held, v_fit = noise_shares if noise_shares is not None else (v, v)
    share = torch.sqrt((fit / (held - v_held + v_fit).clamp_min(1e-12)).clamp(0.0, 1.0))
    fitted = fit - v_fit + 2.0 * v * (1.0 - share)
    estimate: torch.Tensor = (1.0 - held_fraction) * fitted + held_fraction * (held - v_held)
    return estimate


class StepSignals:
    """Everything measured on an evaluated step, on the device; one host sync per step."""

    def __init__(self, job: RestoreJob, target: torch.Tensor, op: Operator,
                 crop: tuple[slice, slice], obs_crop: tuple[slice, slice], device: torch.device,
                 reference: torch.Tensor | None, track_variance: bool,
                 holdout: torch.Tensor | None, noise: NoiseFit | None = None,
                 noise_variance: float | None = None,
                 noise_shares: tuple[float, float] | None = None) -> None:
        from napari_specdip.metrics import SignalMeter

        p = job.params
        self.op = op
        self.crop = crop
        self.obs_crop = obs_crop
        self.target = target
        self.target_gray = _gray(target[(..., *obs_crop)])
        h, w = self.target_gray.shape
        self.fbc_meter = SignalMeter(h, w, device=device)
        self.fbc_meter.set_target(self.target_gray)  # its spectrum is computed once
        hr_h = crop[0].stop - crop[0].start
        hr_w = crop[1].stop - crop[1].start
        self.hr_meter = self.fbc_meter if (hr_h, hr_w) == (h, w) else SignalMeter(hr_h, hr_w, device=device)
        self.reference = reference
        self.ref_gray = _gray(reference) if reference is not None else None
        self.noise = noise  # the signals read the fitted space; PSNR/SSIM the data's
        self.variance = (RunningVariance(max(1, round(p.wmv_window / p.signal_every)))
                         if track_variance else None)
        # held-out pixels of the original image only (not their reflected copies)
        self.holdout = holdout[(..., *obs_crop)] if holdout is not None else None
        self.noise_variance = noise_variance if holdout is not None else None
        self.noise_shares = noise_shares
        self.held_fraction = (float(self.holdout.mean()) if self.holdout is not None else 0.0)
        # inpainting that keeps the known pixels: the quality against the reference is
        # that of what the run returns, with them put back (the fit's own signals are not)
        self.kept: tuple[torch.Tensor, torch.Tensor] | None = None
        if reference is not None and job.kept_known is not None:
            self.kept = (torch.from_numpy(job.kept_known).to(device)[None, None],
                         torch.from_numpy(job.observation).to(device, reference.dtype)
                         .permute(2, 0, 1)[None])
        # deblocking: how blocky the output is on the JPEG's grid (the fit's drift into
        # the compression's steps)
        self.block_edges: tuple[torch.Tensor, torch.Tensor] | None = None
        if p.task == "deblock":
            grid = (job.jpeg.grid if job.jpeg is not None
                    else likely_grid(self.target_gray.cpu().numpy()))
            rows, cols = block_edges(h, w, grid)
            self.block_edges = (torch.from_numpy(rows).to(device),
                                torch.from_numpy(cols).to(device))
        # deblocking a JPEG whose quantisation was read: how far the output still lies
        # outside the set of images with that JPEG (the auto stop's consistency rule)
        self.jpeg_excess: JpegExcess | None = None
        if p.task == "deblock" and job.jpeg is not None and noise is None:
            meter = JpegExcess(job, device)
            self.jpeg_excess = meter if meter.usable else None

    def _losses(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared error on the held-out pixels and on the fitted ones (of the
        original image: not their reflected copies), each member's on its own mask
        (the members' mean fits every pixel that some member holds out, so only the
        members themselves are unfitted there), averaged over the members."""
        assert self.holdout is not None
        residual = (self.op(out) - self.target)[(..., *self.obs_crop)] ** 2
        fitted = 1.0 - self.holdout
        if isinstance(self.op, Inpainting):
            fitted = fitted * self.op.known[(..., *self.obs_crop)]
        losses = []
        for mask in (self.holdout, fitted):
            per_member = (residual * mask).flatten(1).sum(dim=1) / (
                mask.flatten(1).sum(dim=1).clamp_min(1.0) * residual.shape[1])
            losses.append(per_member.mean())
        return losses[0], losses[1]

    def measure(self, members: torch.Tensor, members_ema: torch.Tensor | None, *,
                also: torch.Tensor | None = None) -> tuple[dict[str, float], list[float]]:
        """Signals of the output (an ensemble's: its members' mean) and of its EMA,
        and the values of ``also`` (1-D), all read back to the host in one go."""
        from napari_specdip.metrics import psnr_torch, ssim_torch

        out = ensemble_mean(members)
        ema = None if members_ema is None else ensemble_mean(members_ema)
        canvas = out[(..., *self.crop)]
        gray = _gray(canvas)
        observed = self.op(out)[(..., *self.obs_crop)] if self.op.scale > 1 else canvas
        names = ["fbc1", "fbc2", "fbc3", "fbc4", "fbc5", "blur", "sharpness"]
        values = [self.fbc_meter.fbc(_gray(observed)),
                  self.hr_meter.blur(gray)[None], self.hr_meter.sharpness(gray)[None]]
        if self.variance is not None:
            variance = self.variance.push(canvas)
            if self.variance.full:
                names.append("variance")
                values.append(variance[None])
        if self.block_edges is not None:
            names.append("blockiness")
            values.append(_blockiness(gray, self.block_edges)[None])
            if ema is not None:
                names.append("blockiness_ema")
                ema_gray = _gray(ema[(..., *self.crop)])
                values.append(_blockiness(ema_gray, self.block_edges)[None])
        if self.jpeg_excess is not None:
            names.append("jpeg_excess")
            values.append(self.jpeg_excess(canvas)[None])
            if ema is not None:
                names.append("jpeg_excess_ema")
                values.append(self.jpeg_excess(ema[(..., *self.crop)])[None])
        if self.holdout is not None:
            outputs = [("", members)] + ([("_ema", members_ema)] if members_ema is not None
                                         else [])
            for suffix, each in outputs:
                held, fit = self._losses(each)
                names += [f"holdout_loss{suffix}", f"fit_loss{suffix}"]
                values += [held[None], fit[None]]
                if self.noise_variance is not None:
                    names.append(f"error_estimate{suffix}")
                    values.append(error_estimate(fit, held, self.noise_variance,
                                                 self.held_fraction,
                                                 noise_shares=self.noise_shares)[None])
        if self.reference is not None and self.ref_gray is not None:
            if self.noise is not None:
                canvas = self.noise.to_data_torch(canvas)
                gray = _gray(canvas)
            if self.kept is not None:
                canvas = torch.where(self.kept[0], self.kept[1], canvas)
                gray = _gray(canvas)
            names += ["psnr", "ssim", "fbc_clean1", "fbc_clean2", "fbc_clean3", "fbc_clean4", "fbc_clean5"]
            values += [psnr_torch(canvas, self.reference)[None], ssim_torch(gray, self.ref_gray)[None],
                       self.hr_meter.fbc(gray, self.ref_gray)]
            if ema is not None:
                ema_canvas = ema[(..., *self.crop)]
                if self.noise is not None:
                    ema_canvas = self.noise.to_data_torch(ema_canvas)
                if self.kept is not None:
                    ema_canvas = torch.where(self.kept[0], self.kept[1], ema_canvas)
                names += ["psnr_ema", "ssim_ema"]
                values += [psnr_torch(ema_canvas, self.reference)[None],
                           ssim_torch(_gray(ema_canvas), self.ref_gray)[None]]
        extra = [] if also is None else [also.reshape(-1).float()]
        flat = torch.cat([v.reshape(-1).float() for v in values] + extra).tolist()
        signals = dict(zip(names, flat[:len(names)], strict=True))
        signals["ratio"] = signals["blur"] / max(signals["sharpness"], 1e-12)
        return signals, flat[len(names):]
