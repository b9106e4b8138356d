"""Progress and time left of a run, from the step reports (no Qt).

Seconds per iteration come from the reports' ``elapsed`` over the recent steps
(the first step, which builds the network, is left out), so the estimate follows
a machine that gets busier or quieter during the run.
"""

from __future__ import annotations

import math
from collections import deque


def humanize(seconds: float) -> str:
    """``"about 3 min"``-style wording of a duration.

    Examples
    --------
    >>> humanize(4), humanize(42), humanize(185), humanize(4000)
    ('a few seconds', 'about 40 s', 'about 3 min', 'about 1 h 7 min')
    """
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 10:
        return "a few seconds"
    if seconds < 60:
        return f"about {int(round(seconds / 10.0)) * 10} s"
    minutes = int(round(seconds / 60.0))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


class Progress:
    """Iterations done over the cap, speed and time left of a run of ``planes`` planes."""

    def __init__(self, cap: int, planes: int = 1, *, budget_s: float | None = None,
                 window: int = 30) -> None:
        self.cap = int(cap)
        self.planes = int(planes)
        self.budget_s = budget_s
        self.plane = 0
        self.tile, self.tiles = 0, 1
        self.iteration = 0
        self.elapsed = 0.0
        self._recent: deque[tuple[int, float]] = deque(maxlen=window)
        self._plane_start = 0.0
        self._total_elapsed = 0.0

    def update(self, plane: int, iteration: int, elapsed: float, *, cap: int | None = None,
               tile: int = 0, tiles: int = 1) -> None:
        """A step report's figures; ``cap``, ``tile`` and ``tiles`` those of a tiled
        run, whose iterations and cap count over all its tiles."""
        if cap:
            self.cap = int(cap)
        self.tile, self.tiles = int(tile), int(tiles)
        if plane != self.plane:
            self._total_elapsed += self.elapsed
            self._recent.clear()
            self.plane = plane
        self.iteration = int(iteration)
        self.elapsed = float(elapsed)
        if iteration > 1:  # the first step also builds the network
            self._recent.append((self.iteration, self.elapsed))

    @property
    def done(self) -> int:
        return self.plane * self.cap + self.iteration

    @property
    def total(self) -> int:
        return self.planes * self.cap

    @property
    def seconds_per_iteration(self) -> float:
        if len(self._recent) < 2:
            return math.nan
        (i0, t0), (i1, t1) = self._recent[0], self._recent[-1]
        return (t1 - t0) / (i1 - i0) if i1 > i0 else math.nan

    @property
    def seconds_left(self) -> float:
        """At the iteration cap of every remaining plane (a stop rule may end sooner)."""
        left = (self.total - self.done) * self.seconds_per_iteration
        if self.budget_s is not None:
            left = min(left, max(0.0, self.budget_s - self.elapsed))
        return left

    def text(self) -> str:
        """E.g. ``"iteration 412 / 3000 (14%) · 0.25 s/it · about 11 min left at most"``."""
        where = (f"slice {self.plane + 1} of {self.planes}, " if self.planes > 1 else "")
        if self.tiles > 1:
            where += f"tile {self.tile + 1} of {self.tiles}, "
        share = 100.0 * self.done / max(self.total, 1)
        # over several planes the share is the whole stack's, not this plane's iterations'
        whole = f"{share:.0f}% of the stack" if self.planes > 1 else f"{share:.0f}%"
        parts = [f"{where}iteration {self.iteration} / {self.cap} ({whole})"]
        speed = self.seconds_per_iteration
        if math.isfinite(speed):
            parts.append(f"{speed:.2f} s/it" if speed >= 0.01 else f"{1 / speed:.0f} it/s")
            left = self.seconds_left
            if self.budget_s is not None:
                parts.append(f"{humanize(left)} left (time budget {self.budget_s:.0f} s)")
            else:
                parts.append(f"{humanize(left)} left at most")
        else:
            parts.append("measuring speed…")
        return " · ".join(parts)
