"""``specdip batch``: many images (each slice of a stack a task) on Dask distributed.

The client (this process) reads each input, checks it, sends its slices to the
workers as tasks, gathers the restored slices, reassembles the stack and writes
the output and its sidecar atomically. Workers therefore need the package but no
access to the files. Only a bounded number of slices is in flight at a time.

Resuming: an output whose sidecar exists is finished and skipped. Slices of a
stack that finished before an interruption are kept under
``DIR/.specdip-partial/`` (keyed by a fingerprint of the input and the options)
and not recomputed; the folder is removed when the stack's output is written.
A file under an output's name that no run wrote (no run record, no writing
marker) is the user's: it is refused before any work unless ``--overwrite``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from napari_specdip.cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    CLIError,
    Interrupted,
    UsageError,
    check_stop,
    one_line,
)
from napari_specdip.cli.files import (
    ImageFile,
    atomic_path,
    check_folder_writable,
    expand_inputs,
    kind_of,
    read_image,
    remove_stale_temps,
    same_file,
    sidecar_path,
    split_name,
)
from napari_specdip.cli.runner import (
    FileJob,
    SliceInput,
    build_sidecar,
    check_device,
    check_task_options,
    engine_options,
    first_restored,
    foreign_files,
    mask_digest,
    now_iso,
    passthrough_meta,
    prepare,
    run_record,
    run_slice,
    uncertainty_path,
    write_outputs,
    writing_marker,
)

if TYPE_CHECKING:
    from napari_specdip.core.params import RestoreParameters

PARTIAL_DIR = ".specdip-partial"
#: scatter slices larger than this to the workers instead of embedding them in the task
SCATTER_BYTES = 1_000_000


# --------------------------------------------------------------------------- worker side


class RemoteStop:
    """The engine's ``interrupt`` on a worker: a Dask ``Event`` set by the batch, asked
    through the worker's connection to the scheduler at most once a second."""

    def __init__(self, name: str, every: float = 1.0) -> None:
        self.name = name
        self.every = every
        self._next = time.monotonic() + every  # short tasks never ask
        self._set = False

    def is_set(self) -> bool:
        if self._set:
            return True
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            try:
                # ask the scheduler through the worker's own connection: a worker Client
                # (what distributed.Event would make) can outlive the worker's event loop
                # and print a traceback when the batch shuts the cluster down
                from distributed import get_worker
                from distributed.utils import sync

                worker = get_worker()
                self._set = bool(sync(worker.loop, worker.scheduler.event_is_set, name=self.name))
            except Exception:  # noqa: BLE001, S110  (no scheduler to ask: keep going)
                pass
        return self._set


def restore_slice_task(image: npt.NDArray[Any], task: str, channel_axis: int | None,
                       mask: npt.NDArray[np.bool_] | None, options: dict[str, Any],
                       stop_event: str | None = None, noise_camera: Any = None
                       ) -> tuple[npt.NDArray[Any], dict[str, Any], npt.NDArray[Any] | None]:
    """The Dask task: restore one slice on a worker, from scratch (slices run in
    parallel, so none waits for another's weights); (image, metadata, ensemble spread)."""
    interrupt = RemoteStop(stop_event) if stop_event else None
    done = run_slice(image, task, channel_axis, mask, None, options, interrupt=interrupt,
                     noise_camera=noise_camera)
    return done.image, done.meta, done.uncertainty


def estimate_task(image: npt.NDArray[Any], task: str, channel_axis: int | None,
                  mask: npt.NDArray[np.bool_] | None, options: dict[str, Any], *,
                  params: Any, size: tuple[int, int], slices: int = 1) -> str:
    """The Dask task: a file's estimate on a worker, in words, one line (its device, its
    memory; the timing steps are cached per worker process and shape). ``params`` and
    ``size`` (the output slice's) are the client's plan of the file, for the typical stop;
    ``slices``: how many of its slices this run restores (the times are per slice and in
    all then)."""
    from napari_specdip.cli.runner import describe_estimate
    from napari_specdip.core.estimate import estimate

    est = estimate(image, task, channel_axis=channel_axis, mask=mask, alpha=False, **options)
    text = describe_estimate(est, slices, params=params, size=size)
    text = text.replace("\n  ", "; ")
    return text if est.fits else f"{text}; {est.advice}"


# --------------------------------------------------------------------------- client side


@dataclass
class Row:
    """One line of the summary table."""

    file: str
    status: str = "pending"  # ok, skipped, failed, interrupted
    iterations: int | None = None
    stop: str = ""
    seconds: float | None = None
    message: str = ""


@dataclass
class FileState:
    """A file being restored: its job, the finished slices and their metadata."""

    job: FileJob
    row: Row
    partial: Path | None
    started: str
    clock: float
    out: npt.NDArray[Any]
    spread: npt.NDArray[np.float32] | None = None
    alphas: dict[tuple[int, ...], Any] = field(default_factory=dict)
    runs: dict[tuple[int, ...], dict[str, Any]] = field(default_factory=dict)
    remaining: int = 0
    failed: bool = False
    futures: set[Any] = field(default_factory=set)

    def put(self, item: SliceInput, image: npt.NDArray[Any], meta: dict[str, Any],
            spread: npt.NDArray[Any] | None = None) -> None:
        self.job.layout.put(self.out, item.index, image, item.alpha, self.job.scale)
        self.job.put_uncertainty(self.spread, item, spread)
        self.runs[item.index] = {"index": list(item.index), **meta}
        self.remaining -= 1


def _output_for(source: Path, out_dir: Path, suffix: str, out_format: str) -> Path:
    stem, ext = split_name(source)
    if out_format != "same":
        ext = f".{out_format}"
    return out_dir / f"{stem}{suffix}{ext}"


#: options that change where or how fast a run goes, not its result
_NEUTRAL_OPTIONS = ("num_threads", "preview_every", "device")


def option_changes(meta: dict[str, Any], task: str, options: dict[str, Any],
                   mask: Path | None, *, mask_sha256: str | None = None,
                   channel_axis: str | int = "auto", stack_axis: str | int = "auto",
                   series: int | None = None) -> list[str]:
    """What differs between a finished output's sidecar and this run's options,
    as ``"name old -> new"`` (empty: the output is what this run would make).

    ``mask_sha256`` is the :func:`~napari_specdip.cli.runner.mask_digest` of this run's
    mask, compared with the sidecar's when both have one (else the mask's path is);
    ``channel_axis`` and ``stack_axis`` are the command's ``--channel-axis`` and
    ``--stack-axis``, resolved for the input the sidecar describes; ``series`` is
    ``--series``.
    """
    changes = []
    if meta.get("task") != task:
        return [f"task {meta.get('task')} -> {task}"]
    # without --series the input held one series: the same image as --series 0
    old_series = meta.get("series")
    if (old_series or 0) != (series or 0):
        changes.append(f"series {old_series} -> {series}")
    old_mask = meta.get("mask")
    new_mask = str(mask.resolve()) if mask is not None else None
    old_digest = meta.get("mask_sha256")
    if old_digest is not None and mask_sha256 is not None:
        if old_digest != mask_sha256:  # its pixels: a moved mask is the same mask
            changes.append(f"mask {old_mask} -> {new_mask} (other pixels)")
    elif old_mask != new_mask:
        changes.append(f"mask {old_mask} -> {new_mask}")
    # without --output-dtype the result keeps the input's dtype
    dtype = options.get("output_dtype") or meta.get("input_dtype")
    if dtype and meta.get("output_dtype") and meta["output_dtype"] != dtype:
        changes.append(f"output dtype {meta['output_dtype']} -> {dtype}")
    changes += _layout_changes(meta, channel_axis, stack_axis)
    old = meta.get("parameters") or {}
    if not old:  # an earlier version's record of a stack whose every slice was constant
        return changes
    try:
        params = _parameters_for(task, options)
    except (TypeError, ValueError):
        return changes
    # as the sidecar holds them: tuples are JSON lists
    new = json.loads(json.dumps(params.as_dict(), default=str))
    if new.get("depth") is None:  # automatic: the depth the engine resolved for this size
        new["depth"] = _auto_depth(old, params)
    for name, value in new.items():
        if name in _NEUTRAL_OPTIONS or name not in old:
            continue
        before = old[name]
        if isinstance(value, float | int) and isinstance(before, float | int) \
                and not isinstance(value, bool):
            same = math.isclose(float(value), float(before), rel_tol=1e-9, abs_tol=0.0)
        else:
            same = value == before
        if not same:
            changes.append(f"{name} {before} -> {value}")
    return changes


def _layout_changes(meta: dict[str, Any], channel_axis: str | int,
                    stack_axis: str | int) -> list[str]:
    """The axes a sidecar's run used against those ``--channel-axis`` and
    ``--stack-axis`` give the same input (its shape, axes and file type, from the
    sidecar); empty for a sidecar that does not say."""
    from napari_specdip.cli.layout import resolve_layout

    shape, source = meta.get("input_shape"), meta.get("input")
    if not isinstance(shape, list) or not isinstance(source, str) or "stack_axes" not in meta:
        return []
    try:
        layout = resolve_layout(tuple(shape), kind=kind_of(Path(source)),
                                axes=meta.get("input_axes"), channel_axis=channel_axis,
                                stack_axis=stack_axis)
    except UsageError as exc:  # these axes do not fit that input at all
        return [str(exc)]
    new = json.loads(json.dumps(layout.describe()))
    return [f"{name} {meta[name]} -> {value}" for name, value in new.items()
            if name in meta and meta[name] != value]


def _auto_depth(old: dict[str, Any], params: Any) -> int | None:
    """The automatic depth for the image size a sidecar's run had (None when unknown)."""
    from napari_specdip.core.params import auto_depth

    shape, axis = old.get("input_shape"), old.get("channel_axis")
    if not isinstance(shape, list) or len(shape) < 2:
        return None
    if isinstance(axis, int) and len(shape) >= 3:
        shape = [n for k, n in enumerate(shape) if k != axis % len(shape)]
    scale = params.factor if params.task == "super-resolve" and params.factor else 1
    return auto_depth(int(shape[0]) * scale, int(shape[1]) * scale)


def _parameters_for(task: str, options: dict[str, Any]) -> RestoreParameters:
    """The engine parameters the command's options make (TypeError/ValueError if
    impossible); the options that are not parameters (output dtype...) are left out."""
    import dataclasses

    from napari_specdip.core.params import RestoreParameters

    names = {f.name for f in dataclasses.fields(RestoreParameters)}
    return RestoreParameters.for_task(task, **{k: v for k, v in options.items() if k in names})


def _check_options(task: str, options: dict[str, Any]) -> None:
    """Refuse impossible option values before any work (``restore`` does, at its
    call): a batch would otherwise start its cluster and fail every file, or skip
    the files already done as if the options were fine."""
    try:
        _parameters_for(task, options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def is_finished(output: Path) -> dict[str, Any] | None:
    """The sidecar of a finished output (image and sidecar both there, not stopped
    while writing them), else None."""
    if not output.is_file() or writing_marker(output).exists():
        return None
    payload = run_record(output)
    if payload is None:
        return None
    if payload["specdip"].get("uncertainty") and not uncertainty_path(output).is_file():
        return None  # an ensemble's output whose uncertainty went missing
    return payload


def _fingerprint(job: FileJob) -> str:
    st = job.source.path.stat()
    options = {k: v for k, v in job.options.items() if k not in ("num_threads", "preview_every")}
    mask = None
    if job.mask_path is not None:
        mst = job.mask_path.stat()
        mask = [str(job.mask_path.resolve()), mst.st_size, mst.st_mtime_ns]
    facts: dict[str, Any] = {
        "input": [str(job.source.path.resolve()), st.st_size, st.st_mtime_ns],
        "task": job.task, "options": options, "mask": mask, "layout": job.layout.describe()}
    if job.source.series is not None:  # only then: runs without --series keep their keys
        facts["series"] = job.source.series
    key = json.dumps(facts, sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _partial_dir(job: FileJob) -> Path:
    base = job.output.parent / PARTIAL_DIR
    name = f"{job.output.name}.{_fingerprint(job)}"
    # older fingerprints of the same output (other options, changed input) are stale
    if base.is_dir():
        for other in base.glob(f"{job.output.name}.*"):
            if other.name != name and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
    return base / name


def _slice_file(partial: Path, index: tuple[int, ...]) -> Path:
    return partial / ("slice_" + "_".join(map(str, index)) + ".npz")


def _save_slice(partial: Path, index: tuple[int, ...], image: npt.NDArray[Any],
                meta: dict[str, Any], spread: npt.NDArray[Any] | None = None) -> None:
    partial.mkdir(parents=True, exist_ok=True)
    target = _slice_file(partial, index)
    arrays: dict[str, Any] = {"image": image, "meta": np.array(json.dumps(meta, default=str))}
    if spread is not None:
        arrays["uncertainty"] = spread
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_slice(partial: Path, index: tuple[int, ...]
                ) -> tuple[npt.NDArray[Any], dict[str, Any], npt.NDArray[Any] | None] | None:
    target = _slice_file(partial, index)
    if not target.is_file():
        return None
    try:
        with np.load(target, allow_pickle=False) as data:
            meta: dict[str, Any] = json.loads(str(data["meta"]))
            image: npt.NDArray[Any] = data["image"]
            spread = data["uncertainty"] if "uncertainty" in data.files else None
            return image, meta, spread
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # recompute it
        return None


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Worker processes are spawned with SIGINT ignored (the disposition survives exec),
    so that Ctrl-C in a terminal reaches only this process, which shuts them down."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def open_client(args: Any) -> Iterator[tuple[Any, str]]:
    """A Dask client: on the running cluster at ``--scheduler``, or on a new local cluster."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        try:
            client = Client(args.scheduler,  # type: ignore[no-untyped-call]
                            timeout=f"{args.connect_timeout}s")
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"cannot connect to the Dask scheduler at {args.scheduler}: "
                             f"{one_line(exc)}") from exc
        with client:
            n = len(client.nthreads())  # type: ignore[no-untyped-call]
            yield client, f"Dask scheduler {args.scheduler} ({n} workers)"
        return
    # --threads sets each restoration's torch threads here too (run_batch): the workers
    # are counted by it, else 2 workers of 2 threads shared 2 cores (10-70x slower)
    threads = args.threads or args.threads_per_worker
    workers = args.workers or max(1, (os.cpu_count() or 1) // threads)
    with _sigint_ignored():
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers, threads_per_worker=1, processes=True,
            dashboard_address=args.dashboard, silence_logs=logging.ERROR)
    try:
        with Client(cluster) as client:  # type: ignore[no-untyped-call]
            yield client, (f"local Dask cluster ({workers} worker(s), {threads} "
                           "torch thread(s) each)")
    finally:
        cluster.close()


def run_batch(args: Any) -> int:
    if any(sep in args.suffix for sep in ("/", "\\", os.sep)):
        raise UsageError(f"--suffix {args.suffix!r} holds a path separator: it is added to "
                         "file names; choose folders with -o")
    check_task_options(args)
    entries = expand_inputs(args.inputs)
    if not entries:
        raise UsageError("no images found in " + ", ".join(args.inputs))
    out_dir = Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output folder {out_dir} is a file")
    pairs: list[tuple[Path | str, Path | None]] = []
    seen: dict[Path, Path] = {}
    planned: dict[Path, Path] = {}
    for f in entries:
        if not isinstance(f, str):
            out = _output_for(f, out_dir, args.suffix, args.out_format)
            # an ensemble's uncertainty too, made now or by an earlier run
            planned[uncertainty_path(out).resolve()] = f
            planned[out.resolve()] = f
    in_place = []
    for f in entries:
        if isinstance(f, str):
            pairs.append((f, None))
            continue
        out = _output_for(f, out_dir, args.suffix, args.out_format)
        key = out.resolve()
        maker = planned.get(f.resolve())
        if key != f.resolve() and maker not in (None, f):
            made = _output_for(maker, out_dir, args.suffix, args.out_format)
            if run_record(made) is not None or writing_marker(made).exists():
                # an earlier run's output (or its uncertainty) sitting in the input folder
                continue
            # no run record: the user's own file, which the other input's result would replace
            raise UsageError(f"{f} is an input, and also where the result of {maker} would be "
                             "written: use another --suffix or -o")
        if key in seen:
            # (a --suffix goes on both names alike: it cannot part them)
            raise UsageError(f"{seen[key]} and {f} would both be written to {out}; "
                             "restore them in separate runs or into separate -o folders")
        if (args.ensemble or 1) > 1 and uncertainty_path(out).resolve() in seen:
            raise UsageError(f"the uncertainty of {f} would be written over the output of "
                             f"{seen[uncertainty_path(out).resolve()]}; use --suffix")
        if same_file(out, f):
            in_place.append(f)
        seen[key] = f
        pairs.append((f, out))
    if in_place and not args.overwrite:
        names = ", ".join(str(f) for f in in_place[:3]) + (" ..." if len(in_place) > 3 else "")
        raise UsageError(f"{len(in_place)} output(s) would replace their input ({names}): use "
                         "another -o or --suffix, or pass --overwrite to replace the inputs")
    options = engine_options(args)
    options["num_threads"] = args.threads or args.threads_per_worker
    # a --scheduler cluster's workers may have more cores than this machine: each checks
    # the thread count against its own when it restores
    _check_options(args.task, options if args.scheduler is None else
                   {k: v for k, v in options.items() if k != "num_threads"})
    if args.scheduler is None:
        check_device(args.device)
    # one mask for every file; of several series (one per position), the --series one
    mask = (read_image(args.mask, what="mask", series=args.series, series_if_many=True)
            if args.mask else None)
    # without --mask each file's NaN pixels are its holes (a file without any fails alone)
    digest = mask_digest(mask.data) if mask is not None else None
    check_folder_writable(out_dir)

    rows: list[Row] = []
    todo: list[tuple[Path, Path, Row]] = []
    changed: list[str] = []
    foreign: list[Path] = []
    for f, target in pairs:
        row = Row(file=str(f))
        rows.append(row)
        if isinstance(f, str) or target is None:
            row.status, row.message = "failed", "no such file, or no image matches"
            continue
        out = target
        done = None if args.overwrite else is_finished(out)
        if done is not None:
            meta = done["specdip"]
            changes = option_changes(meta, args.task, options, mask.path if mask else None,
                                     mask_sha256=digest, channel_axis=args.channel_axis,
                                     stack_axis=args.stack_axis, series=args.series)
            if changes:
                changed.append(f"{out} ({', '.join(changes[:3])})")
            row.status, row.iterations = "skipped", meta.get("iterations")
            row.stop, row.message = str(meta.get("stop_reason", "")), f"already in {out}"
        else:
            if not args.overwrite:
                foreign += foreign_files(out, ensemble=(args.ensemble or 1) > 1)
            todo.append((f, out, row))
    if foreign:
        names = ", ".join(str(p) for p in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise UsageError(f"{len(foreign)} file(s) under output names were not written by "
                         f"specdip and would be replaced ({names}): move them, write to "
                         "another --output-dir or --suffix, or pass --overwrite to replace "
                         "them")
    if changed:
        listed = "; ".join(changed[:3]) + ("; ..." if len(changed) > 3 else "")
        raise UsageError(f"{len(changed)} output(s) already there were made with other options "
                         f"and would be kept as they are: {listed}. Pass --overwrite to "
                         "recompute them, or write to another --output-dir")

    code = EXIT_OK
    if todo:
        code = _process(args, todo, options, mask)
    print_table(rows)
    if code != EXIT_OK:
        return code
    return EXIT_FAILED if any(r.status == "failed" for r in rows) else EXIT_OK


def _process(args: Any, todo: list[tuple[Path, Path, Row]], options: dict[str, Any],
             mask: ImageFile | None) -> int:
    from distributed import Event, as_completed

    from napari_specdip.cli.progress import Progress, progress_wanted

    show = progress_wanted(args.progress)
    stop_name = f"specdip-stop-{uuid.uuid4().hex}"
    with open_client(args) as (client, where):
        print(f"specdip batch: {len(todo)} file(s) to restore on {where}", file=sys.stderr)
        capacity = max(1, sum(client.nthreads().values()))
        max_inflight = 2 * capacity
        queue: deque[tuple[FileState, SliceInput]] = deque()
        waiting = deque(todo)
        info: dict[Any, tuple[FileState, SliceInput]] = {}
        ac = as_completed()  # type: ignore[no-untyped-call]
        bar = Progress(len(todo), desc="files", enabled=show)
        done_files = 0
        estimates: dict[Any, Row] = {}

        def say(text: str) -> None:
            bar.write(f"specdip batch: {text}")

        def settled(row: Row) -> None:
            """A file is done (ok or failed): count it, report it."""
            nonlocal done_files
            done_files += 1
            _report(row, done_files, len(todo), show)
            bar.update(done_files)

        def finish(state: FileState) -> None:
            job = state.job
            try:
                runs = [state.runs[i] for i in job.layout.indices()]
                image = job.layout.to_file_order(state.out)
                spread = None if state.spread is None else job.layout.to_file_order(state.spread)
                # the slices ran in parallel, each from scratch
                sidecar = build_sidecar(job, runs, image, command="batch", started=state.started,
                                        wall_seconds=time.perf_counter() - state.clock,
                                        extra={"warm_start": False})
                write_outputs(job, image, sidecar, spread)
            except CLIError as exc:
                fail(state, str(exc))
                return
            except Exception as exc:  # noqa: BLE001  (one file's failure never stops the batch)
                fail(state, f"{type(exc).__name__}: {one_line(exc)}")
                return
            if state.partial is not None:
                shutil.rmtree(state.partial, ignore_errors=True)
            meta = sidecar["specdip"]
            for warning in meta.get("warnings", []):
                say(f"{state.row.file}: warning: {warning}")
            state.row.status = "ok"
            state.row.iterations = int(meta.get("iterations", 0))
            state.row.stop = str(meta.get("stop_reason", ""))
            state.row.seconds = float(meta.get("elapsed_seconds", 0.0))
            state.row.message = str(job.output)
            settled(state.row)

        def fail(state: FileState, message: str) -> None:
            state.failed = True
            state.row.status, state.row.message = "failed", message
            if state.futures:
                client.cancel(list(state.futures))
                for fut in state.futures:
                    info.pop(fut, None)
                state.futures.clear()
            settled(state.row)

        def open_next() -> None:
            source, out, row = waiting.popleft()
            remove_stale_temps(out)
            remove_stale_temps(sidecar_path(out))
            try:
                job = prepare(source, out, task=args.task, options=options,
                              channel_axis=args.channel_axis, stack_axis=args.stack_axis, mask=mask,
                              local=False, series=args.series)
            except CLIError as exc:
                row.status, row.message = "failed", str(exc)
                settled(row)
                return
            except (Exception, MemoryError) as exc:  # noqa: BLE001  (report it, go on)
                row.status, row.message = "failed", f"{type(exc).__name__}: {one_line(exc)}"
                settled(row)
                return
            partial = _partial_dir(job) if job.layout.n_slices > 1 else None
            state = FileState(job=job, row=row, partial=partial, started=now_iso(),
                              clock=time.perf_counter(),
                              out=job.layout.new_canonical_output(job.scale, job.output_dtype),
                              spread=job.new_uncertainty(), remaining=job.layout.n_slices)
            queued = len(queue)
            for item in job.slices():
                reason = job.copy_reason(item)
                if reason is not None:
                    state.put(item, job.passthrough(item, reason),
                              passthrough_meta(item.index, reason))
                    continue
                saved = _load_slice(partial, item.index) if partial is not None else None
                if saved is not None and saved[0].shape[:2] == job.layout.output_slice_shape(
                        job.scale)[:2] and (state.spread is None or saved[2] is not None):
                    state.put(item, saved[0], saved[1], saved[2])
                    continue
                queue.append((state, item))
            first = first_restored(job)
            if len(queue) > queued and first is not None:  # something to run: say what it costs
                # a stack's times per slice, said so, and for the slices this run restores
                size = job.layout.output_slice_shape(job.scale)[:2]
                fut = client.submit(estimate_task, first.image, job.task, first.channel_axis,
                                    first.mask, job.options, params=job.params,
                                    size=(size[0], size[1]), slices=len(queue) - queued,
                                    pure=False,
                                    key=f"specdip-estimate-{uuid.uuid4().hex[:8]}")
                estimates[fut] = row
                ac.add(fut)  # type: ignore[no-untyped-call]
            if state.remaining == 0:
                finish(state)

        def submit(state: FileState, item: SliceInput) -> None:
            image: Any = item.image
            if image.nbytes > SCATTER_BYTES:
                image = client.scatter(image, direct=False)
            slice_mask: Any = item.mask
            if slice_mask is not None and slice_mask.nbytes > SCATTER_BYTES:
                slice_mask = client.scatter(slice_mask, direct=False)
            fut = client.submit(restore_slice_task, image, state.job.task, item.channel_axis,
                                slice_mask, state.job.options, stop_name,
                                state.job.noise_camera, pure=False,
                                key=f"specdip-{state.job.source.path.name}-{uuid.uuid4().hex[:8]}")
            info[fut] = (state, item)
            state.futures.add(fut)
            ac.add(fut)  # type: ignore[no-untyped-call]

        def feed() -> None:
            while len(info) < max_inflight:
                if not queue:
                    if not waiting:
                        return
                    open_next()
                    continue
                state, item = queue.popleft()
                if not state.failed:
                    submit(state, item)

        def handle(fut: Any) -> None:
            if fut in estimates:
                row = estimates.pop(fut)
                if fut.status == "finished" and row.status != "failed":
                    say(f"{row.file}: {fut.result()}")
                fut.release()
                return
            entry = info.pop(fut, None)
            if entry is None:  # cancelled with its file
                return
            state, item = entry
            state.futures.discard(fut)
            if fut.status == "error":
                exc = fut.exception()
                where = f" (slice {list(item.index)})" if state.job.layout.is_stack else ""
                message = (str(exc) if isinstance(exc, ValueError)
                           else f"{type(exc).__name__}: {one_line(exc)}")
                fail(state, f"{message}{where}")
            elif fut.status == "finished":
                image, meta, spread = fut.result()
                fut.release()
                if meta.get("stop_reason") == "stopped":  # asked to stop: not a result
                    return
                if state.partial is not None:
                    with contextlib.suppress(OSError):
                        _save_slice(state.partial, item.index, image, meta, spread)
                state.put(item, image, meta, spread)
                if state.remaining == 0:
                    finish(state)

        try:
            feed()
            while info or estimates:
                check_stop()  # a signal's exception can be lost in a gc callback
                ready = ac.next_batch(block=False)  # type: ignore[no-untyped-call]
                if not ready:
                    time.sleep(0.05)
                    continue
                for fut in ready:
                    handle(fut)
                feed()
            check_stop()
        except (Interrupted, KeyboardInterrupt) as exc:
            with contextlib.suppress(Exception):
                Event(stop_name, client=client).set()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                client.cancel(list(info) + list(estimates))
            for _, (state, _) in list(info.items()):
                if state.row.status == "pending":
                    state.row.status, state.row.message = "interrupted", "run again to resume"
            for state, _ in queue:
                if state.row.status == "pending":
                    state.row.status, state.row.message = "interrupted", "run again to resume"
            for _, _, row in waiting:
                row.status, row.message = "interrupted", "not started"
            for _, _, row in todo:  # e.g. a file being read and checked when the signal came
                if row.status == "pending":
                    row.status, row.message = "interrupted", "run again to resume"
            bar.close()
            signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
            print(f"specdip batch: {'terminated' if signum == signal.SIGTERM else 'interrupted'}; "
                  "finished outputs are kept, run the same command again to resume",
                  file=sys.stderr)
            return Interrupted(signum).exit_code
        finally:
            bar.close()
    _cleanup_partial_root(todo)
    return EXIT_OK


def _cleanup_partial_root(todo: list[tuple[Path, Path, Row]]) -> None:
    for parent in {out.parent for _, out, _ in todo}:
        with contextlib.suppress(OSError):
            (parent / PARTIAL_DIR).rmdir()  # only when empty


def _report(row: Row, k: int, n: int, bar_shown: bool) -> None:
    """One line per finished file when no progress bar is drawn (logs, CI)."""
    if bar_shown:
        return
    details = ""
    if row.status == "ok":
        details = f" ({row.iterations} iterations, stop {row.stop}, {row.seconds:.1f} s)"
    elif row.message:
        details = f": {row.message}"
    print(f"[{k}/{n}] {row.status} {row.file}{details}", file=sys.stderr, flush=True)


def print_table(rows: list[Row], stream: Any = None) -> None:
    """The summary: file, status, iterations, stop reason, seconds, message."""
    stream = stream if stream is not None else sys.stdout
    header = ("file", "status", "iterations", "stop", "seconds", "message")
    lines = [header] + [
        (r.file, r.status, "" if r.iterations is None else str(r.iterations), r.stop,
         "" if r.seconds is None else f"{r.seconds:.1f}", r.message)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for k, line in enumerate(lines):
        cells = [cell.ljust(w) if i != 2 and i != 4 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line[:-1], widths, strict=True))]
        stream.write("  ".join(cells + [line[-1]]).rstrip() + "\n")
        if k == 0:
            stream.write("  ".join("-" * w for w in widths) + "  -------\n")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    stream.write(", ".join(f"{v} {k}" for k, v in counts.items()) + "\n")
    stream.flush()
