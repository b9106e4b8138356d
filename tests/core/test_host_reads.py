"""The fitting loop reads values back to the host only where it must.

On a GPU every read of a device value (``item``, ``tolist``, ``bool`` of a tensor, a copy
to the host, boolean indexing) waits for the queued work, so a read per step would make
the device idle between steps. No GPU is needed to check the loop: the reads are counted
per step through torch's function hook, with the CPU's shortcut (read every step's loss,
which is free there) switched off, so the loop takes the path it takes on a GPU.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from napari_specdip import RestoreParameters, iter_restore
from napari_specdip.core import engine

READS = frozenset({"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__",
                   "__index__", "nonzero", "masked_select", "unique", "equal", "allclose"})


def _from_optimizer(frame: FrameType | None) -> bool:
    # Adam keeps its step count on the host unless `capturable` (torch's docs): its
    # `item()` reads no device value
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith("torch.optim"):
            return True
        frame = frame.f_back
    return False


class HostReads(TorchFunctionMode):
    """Counts the calls that read a tensor's value back to the host."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in READS and not _from_optimizer(sys._getframe(1)):
            self.count[name] += 1
        elif (name == "__getitem__" and len(args) > 1 and isinstance(args[1], torch.Tensor)
              and args[1].dtype == torch.bool):
            self.count["boolean index"] += 1
        return func(*args, **(kwargs or {}))


def reads_per_step(params: RestoreParameters, image: np.ndarray, **options: Any
                   ) -> Iterator[tuple[int, bool, bool, Counter[str]]]:
    """(iteration, signals measured, preview made, reads) for every step of a run."""
    run = iter_restore(image, parameters=params, **options)
    while True:
        mode = HostReads()
        with mode:
            try:
                report = next(run)
            except StopIteration:
                return
        yield report.iteration, bool(report.signals), report.preview is not None, mode.count


@pytest.fixture
def gpu_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_host_reads_are_free", lambda device: False)


@pytest.mark.usefixtures("gpu_path")
@pytest.mark.parametrize("options", [{}, {"ensemble": 2}, {"reference": True}],
                         ids=["single", "ensemble", "reference"])
def test_one_read_per_signal_step_none_between(options: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    clean = rng.random((32, 32))
    noisy = np.clip(clean + 0.1 * rng.standard_normal(clean.shape), 0.0, 1.0)
    if options.pop("reference", False):
        options["reference"] = clean
    # the quick preset's signals every 5 steps; a checkpoint (backtracking) off that grid
    params = RestoreParameters.for_task("denoise", preset="quick").replace(
        width=8, depth=3, max_iterations=24, stop="none", preview_every=0, backtrack_every=7,
        seed=0)
    steps = list(reads_per_step(params, noisy, **options))
    assert [s[0] for s in steps] == list(range(1, 25))
    # the first call also sets the run up (a few reads, once)
    assert sum(steps[0][3].values()) <= 3, steps[0][3]
    for iteration, measured, _, reads in steps[1:]:
        assert measured == (iteration % 5 == 0 or iteration == 24), iteration
        if measured or iteration % 7 == 0:  # the losses and signals in one read
            assert reads == Counter(tolist=1), (iteration, reads)
        else:
            assert not reads, (iteration, reads)


@pytest.mark.usefixtures("gpu_path")
def test_previews_copy_the_image_once() -> None:
    image = np.random.default_rng(1).random((32, 32, 3))
    params = RestoreParameters.for_task("denoise", preset="quick").replace(
        width=8, depth=3, max_iterations=12, stop="none", preview_every=6, seed=0)
    for iteration, measured, previewed, reads in list(reads_per_step(params, image,
                                                                              channel_axis=-1))[1:]:
        assert previewed == (iteration % 6 == 0 or iteration == 12)
        # one copy to the host (`cpu()`), then a view of it (`numpy()` of a host tensor)
        assert reads["cpu"] == reads["numpy"] == (1 if previewed else 0), (iteration, reads)
        assert reads["tolist"] == (1 if measured else 0), (iteration, reads)
        assert sum(reads.values()) == 2 * reads["cpu"] + reads["tolist"], (iteration, reads)
