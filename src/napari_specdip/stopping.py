"""Stopping rules, fed one value per evaluated step.

Each rule is a small object with ``update(iteration, value) -> bool`` (True:
stop now), the name of the ``signal`` it is fed (``"ratio"`` or ``"variance"``)
and a ``signals`` dict of what it tracks, so the engine, the charts and the
benchmarks treat them alike. Windows are given in iterations;
``every`` says how many iterations lie between two updates, and the windows
shrink to match, so a rule means the same whether signals are evaluated at
every step or every k-th.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from typing import Protocol


class StoppingRule(Protocol):
    """What the engine needs from a stopping rule."""

    name: str
    signal: str
    signals: dict[str, float]

    def update(self, iteration: int, value: float) -> bool:
        """Take this step's value; return True when the run should stop."""
        ...


#: The hold-out rule's plateau: steps within this many median step-to-step changes of
#: the minimum (chosen on photon-level single runs; benchmarks/README.md).
PLATEAU_TOLERANCE = 2.0
#: Fewer steps up to twice the minimum's iteration than this: return the minimum (an early,
#: steep minimum, whose steps' median change still holds the descent).
PLATEAU_MIN_STEPS = 12
#: At most this many outputs kept for the plateau (the engine keeps fewer of large ones).
PLATEAU_MAX_KEPT = 32


def _samples(iterations: int, every: int) -> int:
    return max(1, round(iterations / every))


class RatioRule:
    """The paper's rule on the blurriness/sharpness ratio r_t.

    Stop at step t > 2n when ``|mean(r[t-2n:t-n]) - mean(r[t-n:t])| < epsilon``.

    Examples
    --------
    >>> rule = RatioRule(window=2, epsilon=0.01)
    >>> [rule.update(i, 1.0) for i in range(1, 6)]
    [False, False, False, False, True]
    """

    name = "ratio"
    signal = "ratio"

    def __init__(self, *, window: int = 100, epsilon: float = 0.01, every: int = 1) -> None:
        if window < 1 or every < 1:
            raise ValueError("window and every must be >= 1")
        self.window = window
        self.epsilon = float(epsilon)
        self.n = _samples(window, every)
        self._values: deque[float] = deque(maxlen=2 * self.n)
        self.signals: dict[str, float] = {}

    def update(self, iteration: int, value: float) -> bool:
        full = len(self._values) == 2 * self.n
        if full:
            values = list(self._values)
            previous = math.fsum(values[: self.n]) / self.n
            recent = math.fsum(values[self.n :]) / self.n
            self.signals = {"ratio_mean_previous": previous, "ratio_mean_recent": recent}
        self._values.append(float(value))
        return full and abs(self.signals["ratio_mean_previous"] - self.signals["ratio_mean_recent"]) < self.epsilon


class HoldoutRule:
    """Stop at the minimum of the error on held-out pixels (self-validation).

    A small random fraction of the observed pixels is left out of the fit; with
    noise independent from pixel to pixel, their mean squared error against
    the observation is the output's true error there plus the noise variance,
    so its minimum over the run marks the output closest to the clean image,
    with no reference (Li et al., "Self-validation: early stopping for
    single-instance deep generative priors", BMVC 2021). The run stops once the
    minimum is ``patience`` iterations old. The patience (300) was chosen on the
    tuning half of benchmarks/stopping.py's images; a patience proportional to
    the minimum's own iteration did no better there.

    What it returns (``returned_iteration``): with ``plateau`` off, the output of
    the minimum (``best_iteration``). With it on, the middle of the minimum's
    plateau: among the steps up to twice the minimum's iteration, those whose
    value lies within :data:`PLATEAU_TOLERANCE` times the median step-to-step
    change of the minimum, and of them the one nearest halfway between the
    first and the last. Where the watched error is flat within its own noise
    (low photon counts: the held-out loss moves 0.3% while the output's PSNR
    moves 2 dB), the minimum is a random point of that plateau and its middle a
    steadier pick (benchmarks/README.md, *The middle of the plateau*). Until the
    rule fires (a run ended by its cap or stopped) it is the minimum. The
    steps the rule may still return are ``kept``: the engine keeps their
    outputs and drops the others (at most ``max_kept``, the lowest values).

    When denoising Gaussian noise, the engine feeds it an estimate of the whole
    output's error instead (``error_estimate_ema``: the held-out pixels' loss, and
    the fitted pixels' loss corrected by Stein's unbiased risk estimate with the
    noise variance; see :func:`napari_specdip.core.signals.error_estimate`). The
    held-out loss alone turns up as soon as the output interpolates worse between fitted
    pixels, which on textures comes long before the fitted pixels stop improving.

    Examples
    --------
    >>> rule = HoldoutRule(patience=2, plateau=False)
    >>> [rule.update(i, v) for i, v in enumerate([5.0, 3.0, 2.0, 2.5, 2.4, 2.6], 1)]
    [False, False, False, False, True, True]
    >>> rule.best_iteration, rule.returned_iteration
    (3, 3)
    >>> rule = HoldoutRule(patience=40)
    >>> flat = [9.0, 7.0, 5.0, 3.0, 2.0, 1.5, 1.0, 0.99, 1.0, 1.01, 1.0, 1.02, 1.01, 1.0, 1.1, 1.3]
    >>> [rule.update(i, v) for i, v in zip(range(5, 85, 5), flat)][-1]
    True
    >>> rule.best_iteration, rule.returned_iteration
    (40, 55)
    """

    name = "holdout"

    def __init__(self, *, patience: int = 300, signal: str = "holdout_loss_ema",
                 plateau: bool = True, max_kept: int = PLATEAU_MAX_KEPT) -> None:
        if patience < 1 or max_kept < 1:
            raise ValueError("patience and max_kept must be >= 1")
        self.patience = int(patience)
        self.signal = signal
        self.plateau = bool(plateau)
        self.max_kept = int(max_kept)
        self.best_value = math.inf
        self.best_iteration = 0
        self.improved = False
        self.fired = False
        self.kept: set[int] = set()
        self._iterations: list[int] = []
        self._values: dict[int, float] = {}
        self.signals: dict[str, float] = {}

    def update(self, iteration: int, value: float) -> bool:
        value = float(value)
        self.improved = value < self.best_value
        if self.improved:
            self.best_value = value
            self.best_iteration = iteration
        if math.isfinite(value):
            self._iterations.append(iteration)
            self._values[iteration] = value
            self._keep(iteration)
        self.signals = {"holdout_min": self.best_value}
        self.fired = iteration - self.best_iteration >= self.patience
        return self.fired

    @property
    def returned_iteration(self) -> int:
        """The step whose output the run returns (see the class notes)."""
        # before the rule fires the plateau may go on past the steps seen (a run ended
        # by its cap or by the user while the error still falls): the minimum is the best
        tolerance = self._tolerance() if self.fired else None
        if tolerance is None:
            return self.best_iteration
        near = [i for i in self._window() if self._values[i] <= self.best_value + tolerance]
        centre = 0.5 * (near[0] + near[-1])
        return min((i for i in near if i in self.kept),
                   key=lambda i: (abs(i - centre), i), default=self.best_iteration)

    def _window(self) -> list[int]:
        """The steps seen up to twice the minimum's iteration."""
        return self._iterations[: bisect.bisect_right(self._iterations, 2 * self.best_iteration)]

    def _tolerance(self) -> float | None:
        if not self.plateau:
            return None
        window = self._window()
        if len(window) < PLATEAU_MIN_STEPS:
            return None
        values = [self._values[i] for i in window]
        steps = [abs(b - a) for a, b in zip(values[:-1], values[1:], strict=True)]
        return PLATEAU_TOLERANCE * statistics.median(steps)

    def _keep(self, iteration: int) -> None:
        if self.best_iteration not in self._values:  # no finite value yet: nothing to keep
            self.kept = set()
            return
        if not self.plateau:
            self.kept = {self.best_iteration}
            return
        tolerance = self._tolerance()
        # twice the tolerance: a step that far above the minimum now is unlikely to be near
        # it later (the cap on kept outputs bounds the memory either way)
        limit = math.inf if tolerance is None else self.best_value + 2.0 * tolerance
        kept = {i for i in self.kept | {iteration} if self._values[i] <= limit}
        kept.add(self.best_iteration)
        if len(kept) > self.max_kept:
            kept = set(sorted(kept, key=lambda i: (self._values[i], i))[: self.max_kept])
        self.kept = kept


class WMVRule:
    """ES-WMV (Wang et al., "Early Stopping for Deep Image Prior").

    Fed the running variance of the recent outputs; stops once the variance
    has not reached a new minimum for ``patience`` iterations. ``best_iteration``
    is the iteration of the minimum, whose output ES-WMV returns.

    Examples
    --------
    >>> rule = WMVRule(patience=2)
    >>> [rule.update(i, v) for i, v in enumerate([3.0, 2.0, 1.0, 1.5, 1.2, 1.1], 1)]
    [False, False, False, False, True, True]
    >>> rule.best_iteration
    3
    """

    name = "wmv"
    signal = "variance"

    def __init__(self, *, patience: int = 1000, every: int = 1) -> None:
        if patience < 1 or every < 1:
            raise ValueError("patience and every must be >= 1")
        self.patience = _samples(patience, every)
        self.best_value = math.inf
        self.best_iteration = 0
        self.improved = False
        self._since_best = 0
        self.signals: dict[str, float] = {}

    def update(self, iteration: int, value: float) -> bool:
        self.improved = value < self.best_value
        if self.improved:
            self.best_value = float(value)
            self.best_iteration = iteration
            self._since_best = 0
        else:
            self._since_best += 1
        self.signals = {"variance_min": self.best_value}
        return self._since_best >= self.patience


class ConsistencyRule:
    """Stop once a deblocking fit is consistent with its JPEG (ends the run; it returns
    what the run would return there).

    The compression left each 8 x 8 block's DCT coefficients somewhere within one
    quantisation step of the JPEG's, and the original image lies inside those
    intervals. The fit starts smooth, outside them, and draws back the detail the
    JPEG kept; once its moving average lies within them (``jpeg_excess_ema``, the
    RMS excess in grey levels, :func:`napari_specdip.core.jpeg.excess`, at most
    ``threshold``) all that is left to fit is the JPEG's own block steps. Smooth
    images get there long before the budget (the moon at 128 px and quality 10, quick
    preset: 80 iterations, its best at 95, the budget 445); detailed ones near it or
    after (benchmarks/README.md, *The output's consistency with its JPEG*).

    Examples
    --------
    >>> rule = ConsistencyRule(threshold=0.2)
    >>> [rule.update(i, v) for i, v in zip((10, 20, 30), (4.0, 0.5, 0.1))]
    [False, False, True]
    """

    name = "jpeg_consistent"

    def __init__(self, *, threshold: float, signal: str = "jpeg_excess_ema") -> None:
        if not threshold >= 0.0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        self.threshold = float(threshold)
        self.signal = signal
        self.signals: dict[str, float] = {}

    def update(self, iteration: int, value: float) -> bool:
        return math.isfinite(value) and value <= self.threshold


class BudgetRule:
    """Never stops on its own: the run goes to its iteration budget."""

    name = "none"
    signal = "ratio"

    def __init__(self) -> None:
        self.signals: dict[str, float] = {}

    def update(self, iteration: int, value: float) -> bool:
        return False


Rule = RatioRule | WMVRule | HoldoutRule | ConsistencyRule


def make_rules(name: str, *, window: int = 100, epsilon: float = 0.01, patience: int = 1000,
               every: int = 1, holdout_patience: int = 300,
               holdout_signal: str = "holdout_loss_ema", holdout_plateau: bool = True,
               holdout_kept: int = PLATEAU_MAX_KEPT) -> list[Rule]:
    """The rules behind a ``stop`` choice; the run stops when the first one fires.

    ``"auto"`` is the hold-out rule (:class:`HoldoutRule`): on the evaluation set
    of ``benchmarks/stopping.py`` it returned within a few tenths of a dB of
    each run's best, where the paper's ratio rule lost up to several dB (its
    absolute epsilon does not scale with image size and width, and on small
    images it often never fires) and ES-WMV's patience let the moving average
    take in noise.

    Examples
    --------
    >>> [rule.name for rule in make_rules("auto")]
    ['holdout']
    >>> make_rules("none")
    []
    """
    if name == "auto":
        return [HoldoutRule(patience=holdout_patience, signal=holdout_signal,
                            plateau=holdout_plateau, max_kept=holdout_kept)]
    if name in ("ratio", "wmv"):
        rule = make_rule(name, window=window, epsilon=epsilon, patience=patience, every=every)
        assert not isinstance(rule, BudgetRule)
        return [rule]
    if name == "none":
        return []
    raise ValueError(f"unknown stopping rule {name!r}; choose auto, ratio, wmv or none")


def make_rule(name: str, *, window: int = 100, epsilon: float = 0.01, patience: int = 1000,
              every: int = 1) -> RatioRule | WMVRule | BudgetRule:
    """Build the rule called ``name`` ("ratio", "wmv" or "none")."""
    if name == "ratio":
        return RatioRule(window=window, epsilon=epsilon, every=every)
    if name == "wmv":
        return WMVRule(patience=patience, every=every)
    if name == "none":
        return BudgetRule()
    raise ValueError(f"unknown stopping rule {name!r}; choose ratio, wmv or none")
