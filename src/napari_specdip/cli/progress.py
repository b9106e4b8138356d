"""A terminal progress bar: tqdm when it is installed, else a carriage-return line on stderr."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Self, TextIO


def progress_wanted(option: bool | None, stream: TextIO | None = None) -> bool:
    """``--progress``/``--no-progress`` if given, else only when stderr is a terminal."""
    if option is not None:
        return option
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Iterations of one run: ``update(iteration, loss, ratio)`` then ``close()``.

    Disabled bars cost nothing; the fallback bar redraws at most ten times a second.
    """

    def __init__(self, total: int, *, desc: str = "", enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._postfix = ""
        self._tqdm: Any = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._tqdm = tqdm(total=self.total, desc=desc or None, file=self.stream,
                                  unit="it", dynamic_ncols=True, leave=True)

    def set_total(self, total: int) -> None:
        """The iteration cap, once the engine has resolved it."""
        total = max(int(total), 1)
        if total != self.total:
            self.total = total
            if self._tqdm is not None:
                self._tqdm.total = total
                self._tqdm.refresh()

    def update(self, iteration: int, *, loss: float | None = None,
               ratio: float | None = None) -> None:
        if not self.enabled:
            return
        parts = []
        if loss is not None and math.isfinite(loss):
            parts.append(f"loss {loss:.3g}")
        if ratio is not None and math.isfinite(ratio):
            parts.append(f"ratio {ratio:.3g}")
        if parts:
            self._postfix = ", ".join(parts)
        step = iteration - self.n
        self.n = iteration
        if self._tqdm is not None:
            if parts:
                self._tqdm.set_postfix_str(self._postfix, refresh=False)
            self._tqdm.update(step)
            return
        now = time.perf_counter()
        if now - self._last_draw >= 0.1 or iteration >= self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.n / self.total, 1.0)
        width = 24
        filled = round(frac * width)
        bar = "#" * filled + "-" * (width - filled)
        elapsed = now - self._start
        head = f"{self.desc}: " if self.desc else ""
        line = f"\r{head}[{bar}] {self.n}/{self.total} {elapsed:5.1f}s"
        if self._postfix:
            line += f"  {self._postfix}"
        self.stream.write(line + "\x1b[K")
        self.stream.flush()

    def write(self, text: str) -> None:
        """A line of text above the bar (or just the line when no bar is drawn)."""
        if self._tqdm is not None:
            self._tqdm.write(text, file=self.stream)
            return
        if self.enabled:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        if self.enabled:
            self._draw(time.perf_counter())

    def close(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
            return
        self._draw(time.perf_counter())
        self.stream.write("\n")
        self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
