"""Before a run: how long it will take and how much memory it needs.

Memory is estimated without running anything: the generator and the data-fit
loss are traced once on PyTorch's ``meta`` device (shapes only, no storage)
with autograd's saved-tensor hooks, which gives exactly what autograd keeps
between the forward and the backward pass; parameters, optimiser state and the
loop's own buffers are counted from the options. The backward pass needs
working memory on top of that; its size relative to the largest activation was
measured (``benchmarks/memory.py``, see :data:`BACKWARD_FACTOR` and
:data:`HEAP_SLACK`). Time comes from a calibration: a few real steps of the
actual job on the actual device, cached for the process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_specdip.core.params import AUTO_TILE_FROM, network_depth

if TYPE_CHECKING:
    import torch

    from napari_specdip.core.engine import Interrupt, RestoreJob
    from napari_specdip.core.results import StepReport
    from napari_specdip.core.tiling import Tile
    from napari_specdip.core.params import RestoreParameters

#: Working memory of one backward pass, in units of the largest tensor autograd
#: saved (the gradient of an activation, the gradient of its padded copy and the
#: backends' scratch), per device type. ``benchmarks/memory.py`` (results in
#: ``benchmarks/results/memory_*.txt``): with 3.0 everywhere, measured / estimated
#: peak was 0.86-0.91 on an H100 (512-2048 px, width 32-128, denoise, inpaint,
#: super-resolution), hence 2.0 there; see the CPU file for the CPU's figures.
BACKWARD_FACTOR = {"cpu": 3.0, "cuda": 2.0, "mps": 3.0}
#: On the CPU, glibc's malloc serves blocks below its mmap threshold (at most 32 MiB)
#: from the heap and keeps them when they are freed, so a step's small activations
#: do not all return to the system: this share of the bytes of saved tensors below
#: that size is added (measured 0.5-0.9 of them with the default allocator, 0 with
#: ``MALLOC_MMAP_THRESHOLD_=65536``; large images, whose tensors are all bigger, have none).
HEAP_SLACK = 0.9
HEAP_BLOCK_BYTES = 32 << 20
#: Bytes per pixel of the stopping signals' working tensors (FFT, blur, sharpness):
#: about a dozen float32 planes of the gray image, counted generously.
SIGNAL_BYTES_PER_PIXEL = 64
#: Memory left to the rest of the system: a run is refused when its estimate is
#: above this share of what is available.
SAFETY_SHARE = 0.95
#: Warm-up and timed steps of the time calibration: at least ``TIMED_STEPS``, and enough
#: to take in a step that evaluates the signals (every ``signal_every``, up to
#: ``MAX_TIMED_STEPS``), which costs more than the others on small images.
WARMUP_STEPS = 2
TIMED_STEPS = 3
MAX_TIMED_STEPS = 6
#: Side of the centre crop whose one untimed step warms a process's imports and first
#: kernel calls before the first timing (a full-size step and setup: seconds at 512 px)
WARM_UP_SIDE = 64
#: On the CPU a step's time grows with the pixels at a given network depth (balanced,
#: depth 5, two threads: 12.6, 13.8, 14.0 and 14.2 s per megapixel at 256, 384, 512 and
#: 1024 px), so an image of more than ``TIMING_CROP_SHARE`` times this side squared is
#: timed on a crop of it (:func:`_crop_tile`) at its own depth, and the crop's seconds scaled by the
#: pixels: the whole image's seven steps took 131 s at 1024 px (balanced), a 384 px
#: crop's 25 (a 256 px crop's 8, but its steps 10-20% under the large images')
TIMING_CROP_SIDE = 384
TIMING_CROP_SHARE = 2.0


@dataclass(frozen=True)
class MemoryBreakdown:
    """Peak memory of a run on its device, in bytes, by what holds it."""

    parameters: int  # weights, gradients, Adam moments, the backtracking copy
    activations: int  # what autograd keeps between the forward and the backward pass
    backward: int  # working memory of the backward pass
    buffers: int  # observation, network input, EMA/best outputs, signals, variance window
    # CPU: freed heap blocks the C allocator keeps (see HEAP_SLACK); CUDA: cuBLAS's workspace
    allocator: int = 0

    @property
    def total(self) -> int:
        return self.parameters + self.activations + self.backward + self.buffers + self.allocator

    def as_dict(self) -> dict[str, int]:
        return {"parameters": self.parameters, "activations": self.activations,
                "backward": self.backward, "buffers": self.buffers,
                "allocator": self.allocator, "total": self.total}


@dataclass(frozen=True)
class Estimate:
    """What a restoration will cost, from :func:`estimate`.

    Attributes
    ----------
    seconds : float
        Expected wall seconds of the run if it goes to its iteration cap (a
        stopping rule usually ends it earlier).
    seconds_per_iteration : float
        Measured on the actual device at the actual size (median of the timed
        steps); a tiled run: of its largest tile.
    iterations : int
        The iteration cap (a tiled run: over all its tiles); deblocking with the
        ``"auto"`` stop: the budget its JPEG calls for (a tiled run: each tile's own,
        from its size, summed).
    tiles : int
        How many tiles the run fits one after another (1: the whole image).
    tile_load : float
        What the tiles amount to in fits of the largest one (their area over its
        area): ``seconds`` is ``seconds_per_iteration`` x the cap x this, plus
        ``setup_seconds`` per tile.
    setup_seconds : float
        What one fit costs besides its steps (the noise estimate, the network's
        first steps, the Wiener stage, the output), measured with the timed steps;
        paid once per tile, and once per slice of a stack.
    peak_memory_bytes : int
        Estimated peak memory of the run on its device.
    available_memory_bytes : int or None
        Memory available on the device now (None when unknown).
    device : str
        Where the run would happen, e.g. ``"cpu"`` or ``"cuda:0 (NVIDIA H100)"``.
    fits : bool
        Whether the peak fits into the available memory (True when unknown).
    advice : str
        What to change when it does not fit (empty when it fits).
    canvas : tuple of int
        Height and width the network works at (padded, super-resolution included).
    memory : MemoryBreakdown
        The peak memory by what holds it.
    jpeg_quality : int or None
        Deblocking with the ``"auto"`` stop: the libjpeg quality whose quantisation
        was found in the image (None: none found, or another task).
    """

    seconds: float
    seconds_per_iteration: float
    iterations: int
    peak_memory_bytes: int
    available_memory_bytes: int | None
    device: str
    fits: bool
    advice: str = ""
    canvas: tuple[int, int] = (0, 0)
    memory: MemoryBreakdown | None = field(default=None, compare=False)
    tiles: int = 1
    tile_load: float = 1.0
    jpeg_quality: int | None = None
    setup_seconds: float = 0.0

    def describe(self) -> str:
        """One or two lines for a user, e.g. before a progress bar."""
        available = ("unknown" if self.available_memory_bytes is None
                     else format_bytes(self.available_memory_bytes))
        steps = f"{self.iterations} iterations x {format_seconds(self.seconds_per_iteration)}"
        if self.tiles > 1:
            steps = (f"{self.tiles} tiles, {self.iterations} iterations in all, "
                     f"{format_seconds(self.seconds_per_iteration)} each on the largest")
        text = (f"estimate: {format_seconds(self.seconds)} at most ({steps}), "
                f"peak memory {format_bytes(self.peak_memory_bytes)} of {available} "
                f"available on {self.device}")
        if not self.fits:
            text += f"\n{self.advice}"
        return text


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (decimal units, as system monitors show them)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    """``0.0123`` -> ``'12 ms'``, ``75`` -> ``'1 min 15 s'``, ``7300`` -> ``'2 h 2 min'``."""
    if not math.isfinite(s):
        return "unknown"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


# --------------------------------------------------------------------------- sizes


def network_multiple(params: RestoreParameters, height: int, width: int, scale: int = 1) -> int:
    """Image sides of the network's canvas must be multiples of this."""
    if params.network == "convnet":
        return 1
    return int(2 ** network_depth(params, height, width, scale))


def canvas_shape(params: RestoreParameters, height: int, width: int, scale: int = 1
                 ) -> tuple[int, int]:
    """The padded size the network works at, as the engine pads (reflectively,
    to multiples of the network's multiple, at least 2 px at the coarsest level)."""
    from napari_specdip.core.imaging import pad_amounts

    multiple = network_multiple(params, height, width, scale)
    lr_multiple = max(1, multiple // scale)
    top, bottom, left, right = pad_amounts(height, width, lr_multiple,
                                           minimum=-(-2 * multiple // scale))
    return (height + top + bottom) * scale, (width + left + right) * scale


@functools.lru_cache(maxsize=64)
def _trace(network: str, channels: int, width: int, depth: int, upsampler: str,
           sigmas: tuple[float, ...], canvas: tuple[int, int], scale: int, inpaint: bool,
           members: int = 1) -> tuple[int, int, int, int, int, int]:
    """Shapes-only forward pass and loss on the meta device.

    Returns (bytes autograd saves, bytes of its largest saved tensor, bytes of
    the saved tensors below :data:`HEAP_BLOCK_BYTES`, trainable parameter count,
    bytes of all parameters and buffers, bytes of the input z).
    """
    import torch

    from napari_specdip.core.networks import Decoder, build_network
    from napari_specdip.core.operators import Downsampling, Identity, Inpainting, Operator

    ch, cw = canvas
    with torch.device("meta"):
        # an ensemble: one grouped decoder, one generator per member
        net = build_network(network, channels, width=width, depth=depth, lipschitz=1.0,
                            upsampler=upsampler, sigmas=sigmas, members=members)
        if isinstance(net, Decoder):
            z = net.make_input(ch, cw, generator=[torch.Generator() for _ in range(members)])
        else:
            z = net.make_input(ch, cw, generator=torch.Generator())
        y = torch.empty(1, channels, ch // scale, cw // scale)
        op: Operator
        if inpaint:
            op = Inpainting(torch.empty(1, 1, ch, cw))
        elif scale > 1:
            op = Downsampling(scale)
        else:
            op = Identity()
    params = {id(p) for p in net.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in params:
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        op.loss(net(z), y)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    stored = sum(t.numel() * t.element_size() for t in (*net.parameters(), *net.buffers()))
    small = sum(n for n in seen.values() if n < HEAP_BLOCK_BYTES)
    return (sum(seen.values()), max(seen.values(), default=0), small, trainable, stored,
            z.numel() * z.element_size())


def memory_needed(job: RestoreJob, device: torch.device | str | None = None) -> MemoryBreakdown:
    """Estimated peak memory of ``job`` on ``device`` (default: the job's), by part.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_specdip import plan_restore
    >>> job = plan_restore(np.zeros((64, 64)) + np.eye(64), width=16, device="cpu")
    >>> 1e6 < memory_needed(job).total < 1e8
    True
    """
    from napari_specdip.core.devices import resolve_device

    p = job.params
    dev = resolve_device(device if device is not None else p.device)
    height, width, channels = job.observation.shape
    scale = job.scale
    tiles = job.tiles
    if len(tiles) > 1:
        # one tile's network at a time, plus the blend: sums and weights (the
        # ensemble's spread too), the unrestored fallback and a preview's copy
        part = memory_needed(job.tile_job(_largest(tiles)), dev)
        out_px = height * scale * width * scale
        blend = 8 * out_px * ((channels + 1) * (2 + int(p.ensemble > 1)) + 2 * channels)
        return dataclasses.replace(part, buffers=part.buffers + blend)
    canvas = canvas_shape(p, height, width, scale)
    members = p.ensemble
    saved, largest, small, trainable, stored, z_bytes = _trace(
        p.network, channels, p.width, network_depth(p, height, width, scale), p.upsampler,
        tuple(p.sigmas), canvas, scale, job.known is not None, members)
    float_bytes = 4
    # weights and buffers, gradients, Adam's two moments, the backtracking copy
    parameters = stored + trainable * float_bytes * (3 + int(p.backtrack))
    canvas_px = canvas[0] * canvas[1]
    out_px = height * scale * width * scale
    image = canvas_px * channels * float_bytes
    buffers = z_bytes + image // (scale * scale)  # z and the observation y
    if job.known is not None:
        buffers += canvas_px * float_bytes  # the inpainting mask
    # out, EMA, best, and the output kept at a stop rule's minimum (every member's)
    candidate = int(p.stop in ("auto", "wmv") and p.output != "best")
    buffers += image * members * (1 + int(p.output == "ema") + int(p.output == "best")
                                  + candidate)
    if members > 1:
        # the uncertainty's snapshots: those kept around the returned output, and the
        # latest ones a later minimum would take
        from napari_specdip.core.ensemble import SNAPSHOT_HALF_WINDOW, SNAPSHOT_STRIDE

        buffers += image * members * (3 * SNAPSHOT_HALF_WINDOW // SNAPSHOT_STRIDE + 2)
    if p.holdout > 0:
        # the fit's weights and the held-out mask, one of each per member
        buffers += 2 * canvas_px * float_bytes * members
    if job.reference is not None:
        buffers += out_px * channels * float_bytes
    buffers += SIGNAL_BYTES_PER_PIXEL * (out_px + height * width)
    reference_free_best = p.output == "best" and job.reference is None
    if p.track_variance or p.stop == "wmv" or reference_free_best:
        # ES-WMV keeps a window of whole outputs (plus two running sums), float64 off MPS
        wide = 4 if dev.type == "mps" else 8
        window = max(1, round(p.wmv_window / p.signal_every))
        buffers += (window + 2) * out_px * channels * wide
    slack = (HEAP_SLACK * small if dev.type == "cpu"
             else cublas_workspace_bytes() if dev.type == "cuda" else 0)
    return MemoryBreakdown(parameters=int(parameters), activations=int(saved),
                           backward=int(BACKWARD_FACTOR.get(dev.type, 3.0) * largest),
                           buffers=int(buffers),
                           allocator=int(slack))


def cublas_workspace_bytes() -> int:
    """Bytes of cuBLAS workspace that torch takes from its CUDA allocator, by
    ``CUBLAS_WORKSPACE_CONFIG`` (``:SIZE:COUNT`` pairs, SIZE in KiB). On an H200 it was
    the 33-35 MB by which small runs' measured peaks exceeded the estimate
    (benchmarks/gpu_presets.py).

    Examples
    --------
    >>> cublas_workspace_bytes() // 2**20  # torch's and our default, :4096:8
    32
    """
    from napari_specdip.core.devices import CUBLAS_WORKSPACE

    config = os.environ.get("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    numbers = [int(part) for part in config.split(":") if part.strip().isdigit()]
    return 1024 * sum(size * count for size, count in zip(numbers[0::2], numbers[1::2],
                                                          strict=False))


def _largest(tiles: list[Tile]) -> Tile:
    return max(tiles, key=lambda t: t.shape[0] * t.shape[1])


def tile_load(job: RestoreJob) -> float:
    """How many fits of the largest tile the run's tiles amount to, by area (1 for
    an untiled run): a tiled run's time is about this times the largest tile's."""
    tiles = job.tiles
    largest = _largest(tiles).shape
    return sum(t.shape[0] * t.shape[1] for t in tiles) / (largest[0] * largest[1])


# --------------------------------------------------------------------------- available memory


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: str, key: str) -> int:
    with contextlib.suppress(OSError, ValueError):
        with open(path, encoding="ascii") as fh:
            for line in fh:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    return 0


def _cgroup_dirs() -> Iterator[tuple[str, str]]:
    """(version, folder) of this process's memory cgroups, innermost first."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) != 3:
                    continue
                if parts[0] == "0" and parts[1] == "":
                    paths["v2"] = parts[2]
                elif "memory" in parts[1].split(","):
                    paths["v1"] = parts[2]
    roots = {"v2": "/sys/fs/cgroup", "v1": "/sys/fs/cgroup/memory"}
    for version, root in roots.items():
        rel = paths.get(version, "/").strip("/")
        while True:
            folder = os.path.join(root, rel) if rel else root
            if os.path.isdir(folder):
                yield version, folder
            if not rel:
                break
            rel = os.path.dirname(rel)


def _cgroup_available() -> int | None:
    """Room left under the tightest cgroup memory limit (reclaimable page cache counted free)."""
    best: int | None = None
    for version, folder in _cgroup_dirs():
        if version == "v2":
            limit = _read_int(os.path.join(folder, "memory.max"))
            usage = _read_int(os.path.join(folder, "memory.current"))
            cache = _stat_value(os.path.join(folder, "memory.stat"), "inactive_file")
        else:
            limit = _read_int(os.path.join(folder, "memory.limit_in_bytes"))
            usage = _read_int(os.path.join(folder, "memory.usage_in_bytes"))
            cache = _stat_value(os.path.join(folder, "memory.stat"), "total_inactive_file")
        if limit is None or usage is None or limit >= 1 << 60:  # "max" / no limit
            continue
        room = max(0, limit - max(0, usage - cache))
        best = room if best is None else min(best, room)
    return best


def _address_space_available() -> int | None:
    """Room under ``ulimit -v`` (RLIMIT_AS), which torch's allocator hits as a failed malloc."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    used = _stat_value("/proc/self/status", "VmSize:") * 1024  # kB in /proc
    return max(0, soft - used) if used else None


def _system_available() -> int | None:
    """MemAvailable: free memory plus what the kernel can reclaim without swapping."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.virtual_memory().available)
    kb = _stat_value("/proc/meminfo", "MemAvailable:")
    return kb * 1024 if kb else None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes a run on ``device`` can still allocate now, or None when unknown.

    CPU: the lowest of the system's available memory (psutil, else
    ``/proc/meminfo``), the room under this process's cgroup limit and the room
    under ``ulimit -v``. CUDA: the device's free memory plus what PyTorch has
    cached but not used. MPS: PyTorch's recommended maximum minus what it holds.

    Examples
    --------
    >>> available_memory("cpu") is None or available_memory("cpu") > 0
    True
    """
    import torch

    from napari_specdip.core.devices import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(free + max(0, cached))
    if dev.type == "mps":
        mps = getattr(torch, "mps", None)
        recommended = getattr(mps, "recommended_max_memory", None)
        held = getattr(mps, "driver_allocated_memory", None)
        if recommended is None or held is None:
            return None
        return max(0, int(recommended()) - int(held()))
    known = [v for v in (_system_available(), _cgroup_available(), _address_space_available())
             if v is not None]
    return min(known) if known else None


# --------------------------------------------------------------------------- advice


def _with(job: RestoreJob, *, width: int | None = None, side: int | None = None) -> RestoreJob:
    """The job at another width or cropped to at most ``side`` x ``side`` (for what-ifs)."""
    params = job.params if width is None else dataclasses.replace(job.params, width=width)
    observation, known, reference = job.observation, job.known, job.reference
    if side is not None:  # the crop, or a tile, as one network fits it
        params = dataclasses.replace(params, tile=0)
        observation = observation[:side, :side]
        known = None if known is None else known[:side, :side]
        if reference is not None:
            s = side * job.scale
            reference = reference[:s, :s]
    return dataclasses.replace(job, params=params, observation=observation, known=known,
                               reference=reference)


def memory_advice(job: RestoreJob, needed: int, available: int,
                  device: torch.device | str | None = None) -> str:
    """What to change so that ``job`` fits into ``available`` bytes: the widest
    width that fits, the largest square crop (or tile) at the current width,
    and another device."""
    from napari_specdip.core.devices import available_devices, describe_device, resolve_device
    from napari_specdip.core.imaging import MIN_SIDE
    from napari_specdip.core.params import MIN_TILE

    p = job.params
    dev = resolve_device(device if device is not None else p.device)
    budget = SAFETY_SHARE * available
    tips = []
    w = p.width // 2
    while w >= 4:
        if memory_needed(_with(job, width=w), dev).total <= budget:
            tips.append(f"a smaller width ({w} instead of {p.width}: about "
                        f"{format_bytes(memory_needed(_with(job, width=w), dev).total)})")
            break
        w //= 2
    height, width = job.observation.shape[:2]
    side = min(height, width)
    while side > MIN_SIDE and memory_needed(_with(job, side=side), dev).total > budget:
        side = max(MIN_SIDE, int(side * 0.8))
    if memory_needed(_with(job, side=side), dev).total <= budget and side < max(height, width):
        tips.append(f"a crop of at most {side} x {side} px, or tiles of that size "
                    f"(tile={max(side - 2 * p.tile_overlap, MIN_TILE)})")
    others = [name for name, _ in available_devices()
              if resolve_device(name) != dev and name != "cpu"]
    if dev.type != "cpu":
        others.append("cpu")
    tips.append("another device" + (f" ({', '.join(others)})" if others else
                                    " with more memory (a GPU)"))
    where = describe_device(dev)
    return (f"needs about {format_bytes(needed)} on {where}, more than the "
            f"{format_bytes(budget)} a run may take ({SAFETY_SHARE:.0%} of the "
            f"{format_bytes(available)} available); try " + ", or ".join(tips))


def check_memory(job: RestoreJob) -> None:
    """Raise ``MemoryError`` with the estimate and advice if ``job`` will not fit."""
    from napari_specdip.core.devices import resolve_device

    dev = resolve_device(job.params.device)
    available = available_memory(dev)
    if available is None:
        return
    needed = memory_needed(job, dev).total
    if needed > SAFETY_SHARE * available:
        height, width = job.observation.shape[:2]
        raise MemoryError(f"a {height}x{width} image at width {job.params.width} will not fit: "
                          + memory_advice(job, needed, available, dev))


# --------------------------------------------------------------------------- typical stop

#: Where the hold-out stop (``stop="auto"``) usually ends a run, by preset, in iterations at
#: :data:`TYPICAL_STOP_SIDE` px: the 10th to 90th percentile of the stops on the held-out
#: half of benchmarks/stopping.py (denoising and inpainting, widths 16-64, Adam 1e-2:
#: 360-870; 358-768 in the recording of 2026-12-03, with the estimated error watched when
#: denoising; at 128 px 355-750 and 340-825 on its two noise draws with the held-out
#: pixels' own draw taken in), widened to the floor the rule's patience sets (300
#: iterations after the minimum); balanced's upper end is 1.3 times that, as its step of
#: 3e-3 stopped 1.2-1.35 times later than 1e-2 (camera, astronaut at 128 px, width 64).
#: Typical, not a promise.
TYPICAL_STOP: dict[str, tuple[int, int]] = {"quick": (350, 1000), "balanced": (350, 1300)}
TYPICAL_STOP_SIDE = 128


def suggests_tiles(found: Estimate, params: RestoreParameters) -> bool:
    """Whether to suggest ``tile=AUTO_TILE``: a run told to fit the whole image
    (``tile=0``) of at least ``AUTO_TILE_FROM`` px on a CPU (on a GPU a step costs
    about the same up to 512 px, so tiles only add steps) that may take minutes, not
    the paper's settings."""
    return (found.tiles == 1 and params.tile == 0 and params.preset != "paper"
            and found.device.startswith("cpu") and max(found.canvas) >= AUTO_TILE_FROM
            and found.seconds >= 300)


def typical_stop(params: RestoreParameters, height: int, width: int
                 ) -> tuple[int, int] | None:
    """The iterations after which the hold-out stop usually ends a run of ``params``
    on a ``height`` x ``width`` output: :data:`TYPICAL_STOP`, its upper end scaled with
    the image (a larger image fits more slowly: by the square root of its side over
    :data:`TYPICAL_STOP_SIDE`, between 1 and 4 times; 256 px stopped at 570-1000 in the
    evaluation), capped at ``max_iterations``. None for other stop rules, for presets
    without figures, when the cap comes first, and for deblocking (its budget ends it).

    Examples
    --------
    >>> from napari_specdip import RestoreParameters
    >>> typical_stop(RestoreParameters.for_task("denoise"), 128, 128)
    (350, 1300)
    >>> typical_stop(RestoreParameters.for_task("denoise", preset="quick"), 512, 512)
    (350, 1500)
    >>> typical_stop(RestoreParameters.for_task("denoise", stop="none"), 128, 128) is None
    True
    """
    if (params.stop != "auto" or params.preset not in TYPICAL_STOP
            or params.stops_at_jpeg_budget):
        return None
    low, high = TYPICAL_STOP[params.preset]
    factor = min(4.0, max(1.0, (height * width / TYPICAL_STOP_SIDE**2) ** 0.25))
    high = int(round(high * factor, -2))
    cap = int(params.max_iterations)
    if low >= cap:
        return None
    return low, min(high, cap)


# --------------------------------------------------------------------------- time


# per key: (seconds of a step, seconds of the fit besides its steps)
_CALIBRATION: dict[tuple[Any, ...], tuple[float, float]] = {}
# (device, task) pairs this process has run a fit of
_WARM: set[tuple[str, str]] = set()


def _calibration_key(job: RestoreJob, device: torch.device) -> tuple[Any, ...]:
    import torch

    p = job.params
    height, width, channels = job.observation.shape
    threads = p.num_threads if p.num_threads is not None else torch.get_num_threads()
    # the Wiener stage is part of the timed setup, and what it runs depends on the noise
    # model (block matching under Gaussian noise: seconds at 512 px on a CPU)
    return (str(device), canvas_shape(p, height, width, job.scale), channels, p.width,
            network_depth(p, height, width, job.scale), p.network, p.upsampler, threads,
            p.task, p.signal_every, p.ensemble, p.refine, p.noise)


class EstimateCancelled(Exception):
    """The estimate's ``cancel`` was set while it timed its steps."""


def _timed(job: RestoreJob, cancel: Interrupt | None) -> tuple[float, float]:
    """The seconds of a step of ``job`` (a tiled run: of its largest tile) and what its
    fit costs besides its steps: the trial's wall time less its steps, which takes in
    the setup (the stop's noise estimate, the memory check), the slower first steps and
    the end (the Wiener stage, the output).

    Runs :data:`WARMUP_STEPS` + :data:`TIMED_STEPS` (or up to :data:`MAX_TIMED_STEPS`,
    to take in a step that evaluates the signals) real steps of the same job (same
    size, width, network, signals, stop rule) once per process and key; later calls
    with the same key are free. Raises :class:`EstimateCancelled` at the step
    after ``cancel`` is set (a large image's steps take seconds each).
    """
    from napari_specdip.core.devices import resolve_device

    if len(job.tiles) > 1:
        return _timed(job.tile_job(_largest(job.tiles)), cancel)
    p = job.params
    device = resolve_device(p.device)
    key = _calibration_key(job, device)
    if key in _CALIBRATION:
        return _CALIBRATION[key]
    crop = _timing_crop(job) if device.type == "cpu" else None  # a GPU is not linear
    if crop is not None:
        per_step, setup = _timed(crop, cancel)
        (height, width), (rows, cols) = job.observation.shape[:2], crop.observation.shape[:2]
        full = np.prod(canvas_shape(p, height, width, job.scale), dtype=np.float64)
        part = np.prod(canvas_shape(crop.params, rows, cols, crop.scale), dtype=np.float64)
        _CALIBRATION[key] = (per_step * float(full / part), setup * float(full / part))
        return _CALIBRATION[key]
    if (str(device), p.task) not in _WARM:
        # the process's first fit also pays for imports and first kernel calls, which a
        # later fit (the run itself) does not: one step first, untimed, on a small crop
        # and without the Wiener stage (block matching: seconds at 512 px), whose cost
        # is that of its size and not of its first call
        _trial(_warm_up_job(job), 1, cancel, stage=False)
        _WARM.add((str(device), p.task))
    timed = min(max(TIMED_STEPS, p.signal_every), MAX_TIMED_STEPS)
    wall, stamps, with_signals = _trial(job, WARMUP_STEPS + timed, cancel)
    steps = np.diff(stamps[WARMUP_STEPS - 1:])
    if not steps.size:
        return math.nan, 0.0
    flags = np.asarray(with_signals[WARMUP_STEPS:])
    if flags.any() and not flags.all():
        # signal steps come every signal_every steps: their cost, spread over them
        plain, signal = float(np.median(steps[~flags])), float(np.median(steps[flags]))
        per_step = plain + max(0.0, signal - plain) / max(1, p.signal_every)
    else:
        per_step = float(np.median(steps))
    setup = max(0.0, wall - float(np.sum(steps)) - WARMUP_STEPS * per_step)
    _CALIBRATION[key] = (per_step, setup)
    return per_step, setup


def _warm_up_job(job: RestoreJob) -> RestoreJob:
    """``job`` on a crop of at most :data:`WARM_UP_SIDE` px a side (see :func:`_crop`)."""
    return _crop(job, WARM_UP_SIDE) or job


def _timing_crop(job: RestoreJob) -> RestoreJob | None:
    """``job`` on a crop of :data:`TIMING_CROP_SIDE` px a side (see :func:`_crop`) at
    the whole image's network depth, for an image of more than
    :data:`TIMING_CROP_SHARE` times its pixels (None: time the whole job)."""
    height, width = job.observation.shape[:2]
    if height * width <= TIMING_CROP_SHARE * TIMING_CROP_SIDE**2:
        return None
    crop = _crop(job, TIMING_CROP_SIDE)
    if crop is None:
        return None
    depth = network_depth(job.params, height, width, job.scale)
    return dataclasses.replace(crop, params=crop.params.replace(depth=depth))


def _crop(job: RestoreJob, side: int) -> RestoreJob | None:
    """``job`` on the crop :func:`_crop_tile` chooses, without a network handed on from
    another slice (it has the whole image's input, not the crop's)."""
    tile = _crop_tile(job, side)
    if tile is None:
        return None
    return dataclasses.replace(job.tile_job(tile), warm_start=None, keep_state=False)


def _crop_tile(job: RestoreJob, side: int) -> Tile | None:
    """A crop of at most ``side`` px a side (corners on the 8 px grid of JPEG blocks): the
    centre, or where an inpainting mask covers the centre, around the nearest block of
    ``side // 4`` px that holds a known pixel (a crop with nothing to fit would not run,
    and the whole image takes minutes a step when large). None where the image is no
    larger than the crop or has no known pixel."""
    from napari_specdip.core.tiling import Tile

    height, width = job.observation.shape[:2]
    if height <= side and width <= side:
        return None
    rows, cols = min(height, side), min(width, side)

    def around(row: int, col: int, grid: int) -> Tile:
        top = min(max(row - rows // 2, 0), height - rows) // grid * grid
        left = min(max(col - cols // 2, 0), width - cols) // grid * grid
        return Tile(top=top, bottom=top + rows, left=left, right=left + cols,
                    core=(top, top + rows, left, left + cols))

    tile = around(height // 2, width // 2, 8)
    if job.known is None or job.known[tile.slices()].any():
        return tile
    # blocks of a quarter of the crop: a crop centred on one holds it whole, and their
    # count stays small however large the image
    block = max(1, side // 4)
    padded = np.pad(job.known, ((0, -height % block), (0, -width % block)))
    holding = padded.reshape(padded.shape[0] // block, block, -1, block).any(axis=(1, 3))
    found = np.argwhere(holding) * block + block // 2
    if len(found) == 0:
        return None
    nearest = found[np.argmin(np.square(found - (height // 2, width // 2)).sum(axis=1))]
    return around(int(nearest[0]), int(nearest[1]), 1)


def _trial(job: RestoreJob, steps: int, cancel: Interrupt | None, *, stage: bool = True
           ) -> tuple[float, list[float], list[bool]]:
    """Run ``steps`` steps of ``job`` with its own stop rule (its setup, a noise
    estimate, is part of every fit, and no rule ends a run within a few steps), and its
    Wiener stage unless ``stage`` is False: the wall seconds, each step's end and whether
    it evaluated the signals."""
    from napari_specdip.core.engine import run_to_end

    p = job.params
    need_variance = (p.track_variance or p.stop == "wmv"
                     or (p.output == "best" and job.reference is None))
    trial = dataclasses.replace(
        job, interrupt=None,
        params=p.replace(max_iterations=steps, preview_every=0, track_variance=need_variance,
                         refine=p.refine if stage else "none"))
    stamps: list[float] = []
    with_signals: list[bool] = []

    def stamp(report: StepReport) -> None:
        stamps.append(time.perf_counter())
        with_signals.append(bool(report.signals))
        if cancel is not None and cancel.is_set():
            raise EstimateCancelled("the estimate was cancelled")

    with warnings.catch_warnings():  # a trial's result is thrown away, and so are its warnings
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        run_to_end(trial.run(), stamp)
    return time.perf_counter() - start, stamps, with_signals


def estimate(image: Any, task: str = "denoise", *, channel_axis: int | None = None,
             mask: Any = None, factor: int | None = None, device: str | None = None,
             cancel: Interrupt | None = None, **options: Any) -> Estimate:
    """How long a restoration will take and how much memory it needs, before running it.

    Takes the arguments of :func:`~napari_specdip.restore`. Memory is estimated
    from shapes alone; time from a few real steps on the device (a second or
    two on a small image, cached for the process per device, size, channels,
    width, depth, network, upsampler, threads, Wiener stage and noise model; on
    the CPU an image of more than twice :data:`TIMING_CROP_SIDE` squared pixels is
    timed on a centre crop at its own depth and scaled by its pixels; where an
    inpainting mask covers the centre, around the known pixels nearest to it).
    Nothing is run when the job would not fit into memory (``seconds`` is then NaN). Setting ``cancel`` (an
    object with ``is_set()``, e.g. a ``threading.Event``) ends the timing at its next
    step with :class:`EstimateCancelled`.

    Returns
    -------
    Estimate
        ``seconds``, ``seconds_per_iteration``, ``iterations``,
        ``peak_memory_bytes``, ``available_memory_bytes``, ``device``, ``fits``
        and ``advice``; ``describe()`` puts them in words.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_specdip import estimate
    >>> noisy = np.random.default_rng(0).random((32, 32))
    >>> e = estimate(noisy, "denoise", width=8, max_iterations=100, device="cpu")
    >>> e.fits, e.iterations, e.seconds > 0, e.peak_memory_bytes > 0
    (True, 100, True, True)
    """
    from napari_specdip.core.devices import describe_device, resolve_device
    from napari_specdip.core.engine import plan_restore, tile_iteration_limits

    with warnings.catch_warnings():  # about the input (a mask that looks inverted): the run
        warnings.simplefilter("ignore", UserWarning)  # says it, and said twice is noise
        job = plan_restore(image, task, channel_axis=channel_axis, mask=mask, factor=factor,
                           device=device, check_memory=False, **options)
    dev = resolve_device(job.params.device)
    needed = memory_needed(job, dev)
    available = available_memory(dev)
    fits = available is None or needed.total <= SAFETY_SHARE * available
    advice = "" if fits or available is None else memory_advice(job, needed.total, available, dev)
    per_step, setup = _timed(job, cancel) if fits else (math.nan, math.nan)
    tiles = job.tiles
    height, width = _largest(tiles).shape
    load = tile_load(job)
    # each tile's own cap (deblocking: the budget its size and the JPEG call for), its
    # steps timed as the largest tile's scaled by area, as tile_load counts them
    limits = tile_iteration_limits(job)
    steps = sum(n * t.shape[0] * t.shape[1] for n, t in zip(limits, tiles, strict=True))
    return Estimate(
        seconds=per_step * steps / (height * width) + setup * len(tiles),
        seconds_per_iteration=per_step,
        iterations=sum(limits),
        tiles=len(tiles),
        tile_load=load,
        peak_memory_bytes=needed.total,
        available_memory_bytes=available,
        device=describe_device(dev),
        fits=fits,
        advice=advice,
        canvas=canvas_shape(job.params, height, width, job.scale),
        memory=needed,
        jpeg_quality=None if job.jpeg is None else job.jpeg.quality,
        setup_seconds=setup,
    )
