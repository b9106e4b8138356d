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


# A signal handler's exception can be swallowed when it fires inside a garbage
# collector callback or a __del__ ("Exception ignored in ..."), so the handler also
# records the request here and long loops poll it with check_stop().
_stop_requested: list[int] = []


def request_stop(signum: int) -> None:
    """Record a Ctrl-C or SIGTERM (called from the signal handler)."""
    _stop_requested.append(signum)


def stop_requested() -> int | None:
    """The signal asking to stop, if any."""
    return _stop_requested[-1] if _stop_requested else None


def check_stop() -> None:
    """Raise :class:`Interrupted` if a stop was requested (polled by long loops)."""
    if _stop_requested:
        raise Interrupted(_stop_requested[-1])


def reset_stop() -> None:
    _stop_requested.clear()
