"""``specdip``: restore images from the command line, run the demo, or a batch on Dask.

Exit codes: 0 success; 1 a run failed (or, for ``batch``, at least one file
failed); 2 a user mistake (bad option, missing or unreadable file, wrong mask
shape, unavailable device); 130 interrupted with Ctrl-C; 143 terminated (SIGTERM).
User mistakes print one line, ``specdip: error: ...``, and no traceback
(``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from napari_specdip._version import __version__
from napari_specdip.cli.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    Interrupted,
    UsageError,
    one_line,
    request_stop,
    reset_stop,
)
from napari_specdip.cli.layout import parse_axis
from napari_specdip.core.params import (
    HOLDOUT_RETURNS,
    MAX_SEED,
    NETWORKS,
    NOISE_FITS,
    NOISE_MODELS,
    OUTPUTS,
    PRESETS,
    REFINES,
    SR_FACTORS,
    STOP_RULES,
    TASKS,
    UPSAMPLERS,
)

PROG = "specdip"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``specdip: error: ... (see 'specdip restore --help')``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _tile(text: str) -> int | str:
    """argparse type of --tile: ``auto`` or a whole number >= 0."""
    return "auto" if text.strip().lower() == "auto" else _non_negative_int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _number(text: str) -> float:
    """argparse type: any finite number."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


#: from this many pixels per image the time estimate's few timed steps take long enough
#: (a minute at 1024 x 1024 on a 2-core CPU) to be announced
ESTIMATE_NOTICE_PIXELS = 512 * 512


def _seed(text: str) -> int:
    """argparse type of ``--seed``: checked at once, not after the image is read."""
    value = _int_at_least(0)(text)
    if value >= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**62, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _fraction(text: str) -> float:
    """argparse type of ``--holdout``: a number in [0, 0.5)."""
    value = _number(text)
    if not 0.0 <= value < 0.5:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to below 0.5, got {text}")
    return value


def _dtype(text: str) -> str:
    import numpy as np

    try:
        dtype = np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}") from None
    if dtype.kind not in "uif":
        raise argparse.ArgumentTypeError(
            f"output dtype must be an integer or float type, got {text!r}")
    return dtype.name


def _threads(text: str) -> int | str:
    """argparse type of ``--threads``: a whole number >= 1 or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    return _positive_int(text)


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Options that mirror :func:`napari_specdip.iter_restore` (None: the task's default)."""
    from napari_specdip.cli.helptext import OPTIONS_TITLE, option_help

    helps = option_help()
    parser.add_argument("--task", choices=TASKS, default="denoise", help=helps["task"])
    parser.add_argument("--preset", choices=PRESETS, default=None, help=helps["preset"])
    g = parser.add_argument_group(OPTIONS_TITLE)
    g.add_argument("--mask", metavar="FILE",
                   help="inpainting: image of the spatial shape (or the stack's shape without "
                        "channels); nonzero pixels are filled in (without it, a float image's "
                        "NaN pixels)")
    g.add_argument("--factor", type=int, choices=SR_FACTORS, help=helps["factor"])
    g.add_argument("--lipschitz", "--lambda", dest="lipschitz", type=_positive_float,
                   metavar="LAMBDA", help=helps["lipschitz"])
    g.add_argument("--stop", choices=STOP_RULES, help=helps["stop"])
    g.add_argument("--stop-window", type=_positive_int, metavar="N", help=helps["stop_window"])
    g.add_argument("--stop-epsilon", type=_non_negative_float, metavar="E",
                   help=helps["stop_epsilon"])
    g.add_argument("--patience", type=_positive_int, metavar="N", help=helps["patience"])
    g.add_argument("--holdout-return", choices=HOLDOUT_RETURNS, help=helps["holdout_return"])
    g.add_argument("--max-iterations", "--iterations", dest="max_iterations",
                   type=_positive_int, metavar="N", help=helps["max_iterations"])
    g.add_argument("--seed", type=_seed, help=helps["seed"])
    g.add_argument("--device", help="auto (default: CUDA, then MPS, then CPU), cpu, cuda, "
                                    "cuda:N or mps")
    g.add_argument("--width", type=_positive_int, help=helps["width"])
    g.add_argument("--depth", type=_non_negative_int, help=helps["depth"])
    g.add_argument("--upsampler", choices=UPSAMPLERS, help=helps["upsampler"])
    g.add_argument("--learning-rate", type=_positive_float, metavar="LR",
                   help=helps["learning_rate"])
    g.add_argument("--network", choices=NETWORKS, help=helps["network"])
    g.add_argument("--result", choices=OUTPUTS, help=helps["result"])
    g.add_argument("--signal-every", type=_positive_int, metavar="K",
                   help=helps["signal_every"])
    g.add_argument("--gain", type=float, help=helps["gain"])
    g.add_argument("--holdout", type=_fraction, metavar="F", help=helps["holdout"])
    g.add_argument("--input-jitter", type=_non_negative_float, metavar="S",
                   help=helps["input_jitter"])
    g.add_argument("--refine", choices=REFINES, help=helps["refine"])
    g.add_argument("--keep-known", action=argparse.BooleanOptionalAction, default=None,
                   help=helps["keep_known"])
    g.add_argument("--ensemble", type=_positive_int, metavar="K", help=helps["ensemble"])
    g.add_argument("--tile", type=_tile, metavar="N|auto", help=helps["tile"])
    g.add_argument("--tile-overlap", type=_non_negative_int, metavar="P",
                   help=helps["tile_overlap"])
    g.add_argument("--tile-warm-start", action=argparse.BooleanOptionalAction, default=None,
                   help=helps["tile_warm_start"])
    n = parser.add_argument_group("noise model (denoise and inpaint; microscopy cameras)")
    n.add_argument("--noise", choices=NOISE_MODELS, help=helps["noise"])
    n.add_argument("--noise-sigma", type=_positive_float, metavar="S", help=helps["noise_sigma"])
    n.add_argument("--noise-gain", type=_positive_float, metavar="G", help=helps["noise_gain"])
    n.add_argument("--noise-read-sigma", type=_non_negative_float, metavar="S",
                   help=helps["noise_read_sigma"])
    n.add_argument("--noise-offset", type=_number, metavar="O", help=helps["noise_offset"])
    n.add_argument("--noise-fit", choices=NOISE_FITS, help=helps["noise_fit"])
    g.add_argument("--output-dtype", type=_dtype, metavar="DTYPE",
                   help="dtype of the result (default: the input's, e.g. uint16 stays uint16)")
    g.add_argument("--channel-axis", type=parse_axis, default="auto", metavar="AXIS",
                   help="colour axis: auto (default: RGB(A) PNG/JPEG and RGB TIFF), none, or "
                        "an axis number")
    g.add_argument("--stack-axis", type=parse_axis, default="auto", metavar="AXIS",
                   help="axis restored slice by slice: auto (default: every axis besides the "
                        "2 spatial and the channel axis), none, or an axis number")


def _add_series_option(parser: argparse.ArgumentParser, *, batch: bool = False) -> None:
    """``--series N``: the image series of a multi-series TIFF (a reading option, not the
    engine's, so it stays out of :func:`_add_engine_options`)."""
    from napari_specdip.cli.helptext import series_help

    parser.add_argument("--series", type=_non_negative_int, metavar="N", default=None,
                        help=series_help(batch=batch))


def _add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    from napari_specdip.cli.demo import DEMO_SIZE
    from napari_specdip.cli.helptext import (
        demo_help,
        restore_overwrite_help,
        threads_help,
        warm_start_help,
    )

    parser = _Parser(
        prog=PROG,
        description="Training-free image restoration with a spectral-bias-controlled "
                    "Deep Image Prior.",
        epilog="Exit codes: 0 ok, 1 run failed, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version",
                        version=f"{PROG} {__version__} (napari-specdip)")
    parser.add_argument("--debug", action="store_true",
                        help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("restore", help="restore one image or stack",
                       description="Restore one image (TIFF, PNG, JPEG) or a TIFF stack, slice by "
                                   "slice, and write the result with a JSON sidecar OUT.json.")
    p.add_argument("input", metavar="IN", help="input image: .tif/.tiff, .png, .jpg/.jpeg")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output image (default: IN_restored with IN's extension); the format "
                        "follows the extension; the sidecar is OUT.json")
    _add_engine_options(p)
    p.add_argument("--reference", metavar="FILE",
                   help="clean image of the output's shape: adds PSNR/SSIM to the sidecar "
                        "(with --result best it also picks the result: an oracle, for "
                        "evaluation only)")
    _add_series_option(p)
    p.add_argument("--threads", type=_threads, metavar="N", default="auto",
                   help=threads_help())
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
                   help=warm_start_help())
    p.add_argument("--overwrite", action="store_true", help=restore_overwrite_help())
    _add_progress_option(p)
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print nothing on success (no estimate either)")
    p.set_defaults(func=_cmd_restore)

    d = sub.add_parser("demo", help="restore a bundled sample and chart the run",
                       description="Restore a bundled sample image and write the result, a "
                                   "before/after picture and the charts as PNG files.")
    d.add_argument("-o", "--output-dir", metavar="DIR", default="specdip-demo",
                   help="folder for the files (default: ./specdip-demo)")
    d.add_argument("--sample", default="noisy_photo",
                   help="noisy_photo (default), noisy_microscopy, masked_image, jpeg_blocked, "
                        "low_resolution")
    d.add_argument("--size", type=_positive_int, default=DEMO_SIZE,
                   help=f"crop size in pixels (default {DEMO_SIZE})")
    demo_helps = demo_help()
    d.add_argument("--preset", choices=PRESETS, default=None, help=demo_helps["preset"])
    d.add_argument("--iterations", "--max-iterations", dest="max_iterations", type=_positive_int,
                   default=None, metavar="N", help=demo_helps["max_iterations"])
    d.add_argument("--width", type=_positive_int, default=None, help=demo_helps["width"])
    d.add_argument("--depth", type=_non_negative_int, default=None, help=demo_helps["depth"])
    d.add_argument("--stop", choices=STOP_RULES, default=None, help=demo_helps["stop"])
    d.add_argument("--seed", type=_seed, default=None)
    d.add_argument("--device", default=None)
    d.add_argument("--threads", type=_positive_int, metavar="N", default=None,
                   help=demo_helps["threads"])
    _add_progress_option(d)
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser(
        "batch", help="restore many images on Dask distributed",
        description="Restore every image (each slice of a stack as its own task) on "
                    "dask.distributed: an embedded local cluster by default, or a running "
                    "cluster with --scheduler. Resumable: outputs that are already there "
                    "(with their sidecar) are skipped; outputs made with other options, and "
                    "files under an output's name that specdip did not write, are refused "
                    "unless --overwrite.")
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (their images) or glob patterns")
    b.add_argument("-o", "--output-dir", metavar="DIR", required=True, help="output folder")
    _add_engine_options(b)
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                        "(default: start a local cluster)")
    b.add_argument("--connect-timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="how long to try to reach --scheduler (default 10)")
    b.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="local cluster: worker processes (default: CPU cores / threads per worker)")
    b.add_argument("--threads-per-worker", type=_positive_int, default=1, metavar="T",
                   help="torch threads per restoration (default 1); each worker runs one "
                        "restoration at a time")
    b.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch threads per restoration on a --scheduler cluster "
                        "(default: --threads-per-worker)")
    b.add_argument("--suffix", default="", help="added to output file names, e.g. _restored")
    _add_series_option(b, batch=True)
    b.add_argument("--format", dest="out_format", choices=("same", "tif", "png"), default="same",
                   help="output format (default: the input's)")
    b.add_argument("--overwrite", action="store_true",
                   help="recompute outputs that are already there (also those made with other "
                        "options), replace files under an output's name that specdip did not "
                        "write, and allow outputs that replace their inputs")
    b.add_argument("--dashboard", metavar="ADDRESS", default=None,
                   help="local cluster: serve the Dask dashboard here, e.g. :8787 (needs bokeh)")
    _add_progress_option(b)
    b.set_defaults(func=_cmd_batch)
    return parser


# --------------------------------------------------------------------------- commands


def _check_not_an_input(output: Path, args: argparse.Namespace) -> None:
    """Refuse an output that is one of the command's input files (links resolved)."""
    from napari_specdip.cli.files import same_file, sidecar_path, split_name

    given = str(args.output or "")
    if output.is_dir() or given.endswith(("/", os.sep)):  # a new folder's name, too
        stem, ext = split_name(Path(args.input))
        raise UsageError(f"cannot write output {given or output}: it is a folder; -o names "
                         f"the output file, e.g. -o {output / f'{stem}_restored{ext}'}")
    if same_file(output, Path(args.input)) and not args.overwrite:
        raise UsageError(f"output {output} is the input file: choose another -o, or pass "
                         "--overwrite to replace the input with the result")
    for what, name in (("mask", args.mask), ("reference", args.reference)):
        if name and (same_file(output, Path(name)) or same_file(sidecar_path(output), Path(name))):
            raise UsageError(f"output {output} would overwrite the {what} file {name}")
    if same_file(sidecar_path(output), Path(args.input)):
        raise UsageError(f"the sidecar {sidecar_path(output)} would overwrite the input file")
    if (args.ensemble or 1) > 1:
        from napari_specdip.cli.runner import uncertainty_path

        spread = uncertainty_path(output)
        for what, name in (("input", args.input), ("mask", args.mask),
                           ("reference", args.reference)):
            if name and same_file(spread, Path(name)):
                raise UsageError(f"the uncertainty output {spread} would overwrite the {what} "
                                 f"file {name}; choose another -o")


def _check_not_foreign(output: Path, args: argparse.Namespace) -> None:
    """Refuse to replace a file at the output's names that no specdip run wrote (an
    earlier result there is replaced: rerunning a command must work)."""
    from napari_specdip.cli.runner import foreign_files

    if args.overwrite:
        return
    theirs = foreign_files(output, ensemble=(args.ensemble or 1) > 1)
    if theirs:
        names = " and ".join(str(p) for p in theirs)
        one = len(theirs) == 1
        raise UsageError(f"{names} {'exists' if one else 'exist'} and {'was' if one else 'were'} "
                         "not written by specdip: choose another -o, or pass --overwrite to "
                         f"replace {'it' if one else 'them'}")


def _warn(messages: list[str]) -> None:
    for message in messages:
        print(f"{PROG}: warning: {message}", file=sys.stderr)


def _cmd_restore(args: argparse.Namespace) -> int:
    import threading

    from napari_specdip.cli.files import read_image, split_name
    from napari_specdip.cli.progress import progress_wanted
    from napari_specdip.cli.runner import (
        NOT_RUN,
        build_sidecar,
        check_device,
        check_task_options,
        describe_job_estimate,
        engine_options,
        estimate_file,
        now_iso,
        prepare,
        restore_file,
        timed,
        write_outputs,
    )

    source = Path(args.input)
    stem, ext = split_name(source)
    output = Path(args.output) if args.output else source.with_name(f"{stem}_restored{ext}")
    check_task_options(args)
    _check_not_an_input(output, args)
    _check_not_foreign(output, args)
    check_device(args.device)
    options = engine_options(args)
    # a mask of several series (one per position) gives the same series as the input
    mask = (read_image(args.mask, what="mask", series=args.series, series_if_many=True)
            if args.mask else None)
    job = prepare(source, output, task=args.task, options=options, channel_axis=args.channel_axis,
                  stack_axis=args.stack_axis, mask=mask, reference_path=args.reference,
                  series=args.series)
    # slices of a stack run one after the other here: each starts from the weights of the
    # last slice of its channel (FileJob.chain_of)
    warm = bool(args.warm_start) and job.layout.is_stack and job.params.can_warm_start
    if args.warm_start and job.layout.is_stack and not warm and job.layout.n_slices > 1:
        # one network per tile: no one network for the next slice to start from
        _warn([f"warm start is off: with --tile {job.params.tile} every tile of every slice "
               "starts from scratch (--tile auto fits a stack's slices whole, warm-started)"])
    if not args.quiet:
        h, w = job.layout.spatial_shape
        if h * w >= ESTIMATE_NOTICE_PIXELS:  # its timed steps took minutes, said nothing
            print(f"{PROG}: estimating the time: a few steps at {h} x {w} px...",
                  file=sys.stderr, flush=True)
        est = estimate_file(job, handed_on=warm)
        if est is not None:
            print(describe_job_estimate(job, est), file=sys.stderr, flush=True)
    started, clock = now_iso(), timed()
    stop = threading.Event()
    with stop_on_first_interrupt(stop):
        done = restore_file(job, progress=progress_wanted(args.progress), interrupt=stop,
                            warm_start=warm)
        runs = done.runs
        partial = stop.is_set()
        if partial and not any(r.get("iterations") for r in runs):
            raise Interrupted(signal.SIGINT)  # nothing restored yet: nothing to keep
        extra: dict[str, Any] = {"argv": sys.argv[1:], "warm_start": warm}
        if partial:
            extra.update({"partial": True, "stop_reason": "stopped",
                          "not_run_slices": sum(r.get("stop_reason") == NOT_RUN for r in runs)})
        sidecar = build_sidecar(job, runs, done.image, command="restore", started=started,
                                wall_seconds=clock(), extra=extra)
        write_outputs(job, done.image, sidecar, done.uncertainty)
    meta = sidecar["specdip"]
    _warn(list(dict.fromkeys(w for r in runs for w in r.get("warnings", []))))
    if partial:
        print(f"{PROG}: interrupted: wrote the result so far to {output} "
              f"({meta['iterations']} iterations; the sidecar says stop_reason \"stopped\", "
              "partial)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        image = done.image
        spread = f"; uncertainty {job.uncertainty}" if job.uncertainty is not None else ""
        # what the file holds (a bool result is stored as 0/255 in a PNG)
        print(f"wrote {output} ({'x'.join(map(str, image.shape))} {meta['written_dtype']}): "
              f"{meta['iterations']} iterations, stop {meta['stop_reason']}, "
              f"{clock():.1f} s on {meta.get('device')}; sidecar {job.sidecar}{spread}")
    return EXIT_OK


@contextlib.contextmanager
def stop_on_first_interrupt(event: Any) -> Iterator[None]:
    """The first Ctrl-C sets ``event`` (the run ends after its current step and keeps its
    result); a second one raises :class:`Interrupted` at once. SIGTERM stays immediate."""

    def handler(signum: int, frame: Any) -> None:
        if not event.is_set():
            event.set()
            print(f"\n{PROG}: stopping after the current step and writing the result so far "
                  "(Ctrl-C again to quit without writing)", file=sys.stderr, flush=True)
            return
        request_stop(signum)
        raise Interrupted(signum)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _cmd_demo(args: argparse.Namespace) -> int:
    from napari_specdip.cli.demo import run_demo

    return run_demo(args)


def _cmd_batch(args: argparse.Namespace) -> int:
    from napari_specdip.cli.batch import run_batch

    return run_batch(args)


# --------------------------------------------------------------------------- entry point


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM (and SIGINT) raise :class:`Interrupted` in the main thread, so clean-up runs."""

    def handler(signum: int, frame: Any) -> None:
        request_stop(signum)
        raise Interrupted(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread, or not supported here
            pass
    reset_stop()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        reset_stop()


def main(argv: list[str] | None = None) -> int:
    """Run ``specdip`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    try:
        return _main(argv)
    finally:
        if argv is None:
            # the program ends now: a Ctrl-C during the interpreter's teardown (e.g. the
            # second of two quick presses, after the result was written) must not print
            # a KeyboardInterrupt traceback from some finalizer
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _signals_raise():
            code: int = args.func(args)
            return code
    except Interrupted as exc:
        print(f"{PROG}: {'terminated' if exc.exit_code != 130 else 'interrupted'}",
              file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except CLIError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, TypeError) as exc:
        # the engine's checks: messages fit for a user
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001  (anything else: one line, no traceback)
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: error: {type(exc).__name__}: {one_line(exc)} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


__all__ = ["UsageError", "build_parser", "main"]
