"""Exceptions the command line turns into one-line messages and exit codes.

Exit codes: 0 success, 1 a run failed (restoration error, out of memory, a batch
with failed files), 2 a user mistake (bad option, missing or unreadable file,
wrong mask shape, unavailable device), 130 interrupted (Ctrl-C), 143 terminated.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class CLIError(Exception):
    """An error with a message fit for a user and an exit code."""

    exit_code = EXIT_FAILED


class UsageError(CLIError):
    """A user mistake: bad option, missing or unreadable file, shape mismatch."""

    exit_code = EXIT_USAGE


class RunError(CLIError):
    """A restoration or write that failed although the input was fine."""

    exit_code = EXIT_FAILED


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: raised in the main thread so that clean-up code runs.

    A ``BaseException`` like ``KeyboardInterrupt``, so ``except Exception`` blocks
    do not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        import signal

        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (third-party messages can run long)."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0].strip()
    return first if len(first) <= 300 else first[:297] + "..."
