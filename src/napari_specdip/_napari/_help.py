"""Words of the restore widget: tooltips, the header, number fields, toasts (no Qt).

Every control's tooltip lives here, written for someone who has not read the
paper; ``tests/gui`` checks that no control is left without one.
"""

from __future__ import annotations

import math
from importlib import metadata

from napari_specdip.core.params import RestoreParameters

PAPER_URL = "https://arxiv.org/abs/2107.01125"

HEADER = ("Restores one image without training data: a network is fitted to the image "
          "itself and stopped before it reproduces the noise.")

def _preset_step(preset: str) -> str:
    # read from the presets so that the tooltip cannot drift from them
    return f"{RestoreParameters.for_task('denoise', preset=preset).learning_rate:.6g}"


TOOLTIPS: dict[str, str] = {
    "image": ("The image layer to restore (2D gray, RGB, multichannel, or a Z/T stack). "
              "It is never modified: the result is a new layer."),
    "task": ("What to repair. Changing it loads the task's defaults under the chosen preset "
             "into the fields you have not changed yourself."),
    "mask": ("Inpainting: a Labels, Shapes or Image layer that marks the pixels to fill "
             "(nonzero or inside a shape). It must line up with the image. Without one, "
             "the NaN pixels of a float image are filled (a stack's slices without any "
             "are copied)."),
    "factor": "Super-resolution: how many times larger each side of the result is.",
    "gain": ("Enhancement strength g: result = I + g (I - G), where I is the image and G "
             "the network's smooth fit of it, so I - G is the fine detail that gets "
             "boosted: 1 doubles it."),
    "reference": ("Optional clean version of the image (same size as the result). Adds "
                  "PSNR/SSIM curves to the charts, to judge the stop; not used to restore, "
                  "except by output best, which then returns the iterate closest to it (an "
                  "oracle, for evaluation only)."),
    "stack": "Which planes of a Z/T stack to restore; each plane is restored on its own.",
    "lipschitz": ("λ bounds how steep each layer of the network may be. Larger lets fine "
                  "detail (and noise) through sooner; smaller gives smoother results."),
    "net_width": ("Channels per layer of the network. Smaller is much faster: the "
                  "presets use 32 (quick), 64 (balanced) and 128 (the paper)."),
    "preset": ("A starting point for the method's settings: quick (width 32, at most 1500 "
               "iterations; the fastest), balanced (width 64, at most 3000, the default; in "
               "our benchmarks within about 0.1 dB of quick, for 3-5 times the time) or paper "
               "(the authors' released settings: width 128, learning rate 0.001, "
               "blur/sharpness stop; for comparison with the paper, slower and 0.3-1 dB "
               "below balanced here). Choosing one loads its values into the fields you "
               "have not changed yourself."),
    "ensemble": ("Fit K networks from seeds seed .. seed + K - 1 together and return their "
                 "mean, plus a second layer with their standard deviation, over the "
                 "networks and their last iterations (where the result is uncertain). Each "
                 "network leaves out different pixels, so the mean is cleaner than any one "
                 "of them (4 gained about 0.9 dB in our benchmarks). Costs about K times the "
                 "time and memory of one run; 1 runs a single network."),
    "tile": ("whole image: one network fits the whole image. N px: an image larger than "
             "N px plus the overlap on each side is fitted as tiles (cores of at most N x N "
             "px, each widened by the overlap), one after another, each with "
             "its own network and stop, blended where they overlap. A network fits a small "
             "image in far fewer steps, so large images finish much sooner on a CPU (512 px "
             "images as 128 px tiles: 0.1-1.9 dB higher in 1/2-3/4 of the time). Stacks "
             "are then not warm-started. auto (the quick preset's for denoising): 128 px "
             "tiles on a CPU for images of 512 px or more, unless a stack is warm-started; "
             "else the whole image."),
    "tile_overlap": ("With tiles: how far each tile reaches into its neighbours, in pixels. "
                     "Tiles are blended over this band, so a wider one hides the seams better "
                     "and costs more steps; at most half the tile."),
    "tile_warm_start": ("With tiles, denoising with the auto stop: each tile starts from the "
                        "network the tile before it ended with, and stops sooner after its "
                        "minimum. Tiles of one image share its noise and kinds of structure, "
                        "so this saves about a third of the time at the same quality. Off: "
                        "every tile is fitted from scratch."),
    "warm_start": ("Stacks: start each slice from the network the previous slice ended "
                   "with, instead of from scratch. Neighbouring slices look alike, so each "
                   "fit starts close and usually stops sooner; every slice still has its "
                   "own stop."),
    "holdout": ("Share of the observed pixels left out of the fit (0.1 = 10%) and watched "
                "instead: their error tells when the network starts to reproduce noise. "
                "The auto stop rule needs it above 0; every pixel is still restored."),
    "refine": ("Denoising: what follows the fit. wiener (quick and balanced) filters the "
               "image once more, with the network's output as the pilot of an empirical "
               "Wiener filter on 8x8 DCT patches (BM3D's second step; RGB in opponent "
               "colours; under gaussian noise the pilot is 0.35 x the network's output + "
               "0.65 x BM3D's first step, which averages repeated structure the fit "
               "smooths, and 3/4 of the filter works on groups of similar blocks; 3/5 of "
               "the result is WNNM's, low-rank groups of similar patches): it brings back "
               "detail the stopped fit has not reached. none (paper) keeps the "
               "network's output. The noise level is 'noise sigma' or the one estimated "
               "from the image; with poisson-gaussian, the camera model's. With gaussian "
               "and no noise sigma given, noise that clearly grows with the signal (raw "
               "camera counts, clipped or not) is filtered with the camera model estimated "
               "from it where it puts the noise above that level. An image "
               "clipped at black or white (values piled up there: a dark background stored "
               "in 8 bits) is declipped too: the noise's clipping lifted the data's mean "
               "there, and the fit returned that mean. An ensemble's mean under "
               "poisson-gaussian noise is not refined (there the stage lowered it)."),
    "keep_known": ("Inpainting: what the result holds outside the mask. kept: the pixels "
                   "as given (the network's output fills the mask only). fitted: the "
                   "network's output everywhere, which smooths the known pixels too (for "
                   "noisy ones; the paper preset's). auto: kept, but fitted under "
                   "poisson-gaussian noise, whose known pixels are noisy."),
    "input_jitter": ("Noise added to the network's fixed input at every step (its code "
                     "has amplitude 1). The output then averages over nearby inputs: the "
                     "run fits noise more slowly and the auto stop lands nearer the best "
                     "result. 0.1 in quick and balanced; 0 in paper, as the paper's "
                     "decoder."),
    "noise": ("What kind of noise the image has. gaussian: the same noise level everywhere "
              "(photos). poisson-gaussian: photon shot noise plus camera read noise, "
              "brighter pixels noisier (microscopy, astronomy: raw camera counts)."),
    "noise_sigma": ("Gaussian noise: its standard deviation, in image units, for the "
                    "auto stop. Leave empty to estimate it from the image; on fine textures "
                    "at low noise the estimate runs high and the run stops early, so give it "
                    "when you know it. The Wiener stage uses it too; left empty, noise that "
                    "clearly grows with the signal (raw camera counts) is followed there."),
    "noise_gain": ("Camera gain: image units per detected photon (e.g. ADU per photon). "
                   "Leave empty to estimate it from the image (from all the slices of a "
                   "stack at once: they share one camera)."),
    "noise_read_sigma": ("Camera read noise, in image units (its standard deviation). Leave "
                         "empty to estimate it from the image."),
    "noise_offset": ("Camera offset (pedestal): the image value of zero photons. Leave empty "
                     "to estimate it from the image (from the noise's skewness, else its black level)."),
    "noise_fit": ("How the noise model enters the fit: weighted (default: each pixel's error "
                  "weighted by its expected noise) or anscombe (variance-stabilising "
                  "transform; can be sharper but needs a well-placed stop)."),
    "max_iterations": ("The most iterations the run may take: the time the run takes at "
                       "most (the ETA during a run tells how long that is). The stop rule "
                       "usually ends the run sooner."),
    "stop": ("When to stop. auto (default): a random share of the pixels (held-out pixels, "
             "Advanced) is left out of the fit; the run stops once the error they show has "
             "not improved for a while and returns the output where it was lowest (the "
             "hold-out minimum; when denoising, of the whole output's error estimated from "
             "them, the fitted pixels and the noise level); deblocking also stops at a budget "
             "of iterations read from the JPEG's compression and the image's size. "
             "ratio: the paper's "
             "blur/sharpness rule (window and ε in Advanced). "
             "wmv: ES-WMV (early stopping by windowed moving variance: stops when the output "
             "has stopped changing). none: run to the iteration cap."),
    "seed": ("Starting point of the random network. The same seed and settings give the "
             "same result on the same device."),
    "preview_every": ("Show the current output in a preview layer every N iterations "
                      "(0: no preview)."),
    "device": "Where the run happens: Auto picks a CUDA GPU, then Apple MPS, then the CPU.",
    "show_advanced": "Show the method's finer settings (the task's defaults are good).",
    "upsampler": ("How the network doubles its resolution at each level: bilinear (the "
                  "authors' shipped default), gaussian (the paper's fixed Gaussian "
                  "filter, smoother; set its σ below) or nearest."),
    "sigmas": ("Gaussian upsampling only: one σ per level, coarse to fine, separated by "
               "commas. Larger σ suppresses more high frequency."),
    "learning_rate": ("Step size of the Adam optimiser, after a short warm-up (quick: "
                      f"{_preset_step('quick')}, balanced: {_preset_step('balanced')}; the "
                      f"paper: {_preset_step('paper')}, no warm-up). Type it as you like: "
                      "0.01 or 1e-2. Larger fits faster but less stably."),
    "network": ("decoder: the paper's network. skip: the original Deep Image Prior "
                "network; convnet: no resampling. The last two are for comparisons."),
    "output": ("What the result holds: ema (quick, balanced) a moving average of recent "
               "outputs, smoother; last the final iterate (the paper); best the highest PSNR "
               "against the reference, or the most stable output without one, over the whole "
               "run. With the auto or wmv stop rule, ema and last are taken at the rule's "
               "minimum; best keeps its own choice."),
    "stop_window": ("Window n of the blur/sharpness rule, in iterations: it compares the "
                    "mean of the last n values with the n before, so it can fire from "
                    "iteration 2n + 1."),
    "stop_epsilon": ("Threshold ε of the blur/sharpness rule: stop when the recent mean "
                     "is no more than ε below the previous one. Larger stops sooner. "
                     "Type it as you like: 0.01 or 1e-2."),
    "signal_every": ("Measure the charts' signals (and apply the stop rule) every k "
                     "iterations (quick and balanced: 5; the paper: 1). Larger is faster; "
                     "windows are scaled to match."),
    "backtrack": ("If the fit suddenly gets much worse (a divergence), go back to the last "
                  "good network weights and go on."),
    "run_button": ("Restore the whole image with these settings. While it runs the button "
                   "stops the run; the result so far is kept."),
    "estimate": ("Measured for this image, these settings and this device (a few real steps "
                 "in the background): seconds per 100 iterations, the longest the run can "
                 "take (at the iteration cap), how long the auto stop usually takes, and "
                 "the peak memory."),
    "preview_button": ("Restore only the part of the image in view (or the chosen Shapes "
                       "shape), at most 128 x 128 pixels, with these settings (one "
                       "ensemble member), for a quick look; it stops after about 15 s and "
                       "shows over the image."),
    "region": ("What Preview region restores: what the canvas shows of the image (the "
               "y-x plane in 2D), or the bounding box of a Shapes layer's selected shape "
               "(its last shape when none is selected), grown to at least 32 px a side."),
    "save_button": ("Save the last result as a TIFF with its pixel size, units and the "
                    "run record, plus a JSON sidecar (file.tif.json)."),
    "compare_button": ("Before/after: show the input and hide the result, or the other way "
                       "round."),
    "side_by_side": "Show the input and the result next to each other (napari's grid view).",
}


def docs_link() -> tuple[str, str]:
    """The header's link: (its words, its address). The documentation named in the
    package's metadata, else the method's paper, called so (a link called
    "Documentation" that opened a paper's abstract misled)."""
    url = docs_url()
    return ("The method's paper" if url == PAPER_URL else "Documentation"), url


def docs_url() -> str:
    """The project's documentation page from the package metadata, else the paper."""
    try:
        urls = metadata.metadata("napari-specdip").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    found = {}
    for entry in urls:
        label, _, url = str(entry).partition(",")
        found[label.strip().lower()] = url.strip()
    for key in ("documentation", "homepage", "source"):
        if found.get(key):
            return found[key]
    return PAPER_URL


def format_number(value: float) -> str:
    """A float as a person would type it: ``0.001``, ``1e-05``, ``1.4``.

    Examples
    --------
    >>> format_number(0.001), format_number(1e-5), format_number(0.01), format_number(2.0)
    ('0.001', '1e-05', '0.01', '2')
    """
    return f"{value:.6g}"


def parse_number(text: str, name: str, *, positive: bool = False) -> float:
    """The float typed in a field, or ValueError with a message for the user."""
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number (e.g. 0.001 or 1e-3)") from None
    if not math.isfinite(value) or (positive and value <= 0) or value < 0:
        need = "a positive number" if positive else "a number >= 0"
        raise ValueError(f"{name} must be {need}, got {text!r}")
    return value


#: toasts show one line: keep them to a few words (the widget shows the whole message)
TOAST_CHARS = 60


def toast(message: str) -> str:
    """A one-line version of ``message`` for napari's toasts, which show one line only.

    Examples
    --------
    >>> toast("short")
    'SpecDIP: short'
    >>> len(toast("x" * 200)) <= TOAST_CHARS
    True
    """
    text = f"SpecDIP: {' '.join(message.split())}"
    if len(text) <= TOAST_CHARS:
        return text
    cut = text[: TOAST_CHARS - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"
