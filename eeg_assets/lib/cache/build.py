"""Build the NPZ window cache of one split, incrementally and safely.

``build_split`` compares every EDF under the split folder with the ledger (input fingerprints and
config version), builds only what is new or changed in a process pool, removes the outputs of
recordings that disappeared, and records per-file facts for the index and the manifest. A bad
recording is quarantined with its reason; it never aborts the split.

An empty NPZ is never written: a recording shorter than one window is recorded as ``too_short``
(0 windows) and has no file in the cache.
"""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from eeg_assets.lib.cache.annotations import (
    AnnotationError,
    annotation_disagreement,
    missing_annotation,
    parse_annotation,
)
from eeg_assets.lib.cache.discovery import (
    Recording,
    SplitListing,
    list_recordings,
    write_listing,
)
from eeg_assets.lib.cache.ledger import (
    BUILT,
    FAILED,
    QUARANTINED,
    TOO_SHORT,
    LEDGER_NAME,
    Ledger,
    LedgerError,
    RecordingEntry,
)
from eeg_assets.lib.cache.layout import (
    CHECKSUMS_KEY, CONTINUOUS, cache_file_name, cache_files_on_disk, file_kind, fingerprint_of,
    remove_cache_file, write_continuous,
)
from eeg_assets.lib.cache.npzio import WindowedArray, write_npz
from eeg_assets.lib.cache.references import (
    REFERENCE_KEY,
    add_missing_reference,
    reference_details,
)
from eeg_assets.lib.cache.windows import (
    count_windows,
    label_mask,
    window_seizure_counts,
)
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.files import remove_stale_temporaries
from eeg_assets.lib.signals.channels import ChannelError, plan_channels
from eeg_assets.lib.signals.edf import EdfError, EdfRecording, EdfUnavailable
from eeg_assets.lib.signals.preprocess import (
    condition_channel,
    normalise_inplace,
    resampled_length,
)

LOCK_NAME = ".build.lock"


class BuildError(Exception):
    """The split as a whole cannot be built (wrong folder, nothing to build)."""


class RecordingError(ValueError):
    """The recording's signal is unusable (rates, flat or absurd channels, duration mismatch)."""


class OutputWriteError(OSError):
    """The cache file could not be written (disk full, permissions)."""


#: ``RecordingEntry.details["cause"]`` of a failed entry: the operating system, not the content.
READ_FAILURE, WRITE_FAILURE = "read", "write"


@dataclass
class BuildReport:
    split: str
    data_dir: Path
    cache_dir: Path
    config_version: str
    recordings: int = 0
    built: list[RecordingEntry] = field(default_factory=list)
    skipped: int = 0
    too_short: list[RecordingEntry] = field(default_factory=list)
    #: The content says no (bad header, missing channels, bad annotation row...): kept until
    #: the recording changes.
    quarantined: list[RecordingEntry] = field(default_factory=list)  # built now or still
    #: The operating system said no (input gone or unreadable, cache not writable, disk full):
    #: tried again on the next run.
    failed: list[RecordingEntry] = field(default_factory=list)
    #: Recordings whose rebuild failed: their previous NPZ and ledger entry are kept (stale)
    #: until a replacement is written.
    kept_stale: list[str] = field(default_factory=list)
    #: Built recordings with warnings (e.g. a seizure clipped at the end), built now or before.
    warned: list[RecordingEntry] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # e.g. symlinks leaving the data dir
    #: Folders and files the walk could not read this time (tried again next run).
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0
    eeg_seconds_built: float = 0.0

    @property
    def all_failed(self) -> bool:
        return self.recordings > 0 and len(self.quarantined) == self.recordings

    @property
    def write_failures(self) -> list[RecordingEntry]:
        """Failures to write the cache (disk full, permissions): the build did not do its job."""
        return [e for e in self.failed if e.details.get("cause") == WRITE_FAILURE]

    @property
    def windows_built(self) -> int:
        return sum(e.n_windows for e in self.built)


#: Builds the listed recordings to do and yields one entry per recording as each is done.
Runner = Callable[[list[Recording]], Iterable[RecordingEntry]]


# --------------------------------------------------------------------------------------------
# One recording (runs in a worker process)
# --------------------------------------------------------------------------------------------

def build_recording(recording: Recording, cache_dir: Path,
                    config: CacheConfig = DEFAULT_CONFIG) -> RecordingEntry:
    """Build one listed recording's NPZ; never raises for bad input (returns a quarantined entry).

    The entry records the fingerprints of the listing (taken when the split was walked): a file
    changed after that is seen as changed by the next build.
    """
    edf_path = recording.path
    entry = RecordingEntry(source=recording.source, stem=recording.stem, status=QUARANTINED,
                           config_version=config.version(), edf_fingerprint=str(recording.edf),
                           annotation_fingerprint=recording.annotation_fingerprint)
    try:
        annotation_path = recording.annotation_path
        if annotation_path is None:
            raise missing_annotation(edf_path.name)
        entry.details["annotation_file"] = annotation_path.name
        _build_into(entry, edf_path, annotation_path, Path(cache_dir), config)
    except OutputWriteError as exc:
        # Not the recording's fault (disk full, permissions): retried on the next run.
        entry.status, entry.reason = FAILED, str(exc)
        entry.details["cause"] = WRITE_FAILURE
    except (EdfUnavailable, OSError) as exc:
        # The file was gone or unreadable this time (moved, permissions, I/O): no verdict on
        # its content, so it is tried again next run, not quarantined for good.
        entry.status = FAILED
        if isinstance(exc, EdfUnavailable):
            entry.reason = f"{exc}; tried again next run"
        else:
            name = Path(exc.filename).name if exc.filename else edf_path.name
            entry.reason = f"{name}: cannot read: {exc.strerror or exc}; tried again next run"
        entry.details["cause"] = READ_FAILURE
    except (EdfError, ChannelError, AnnotationError, RecordingError) as exc:
        entry.status, entry.reason = QUARANTINED, str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad recording must not abort the split
        entry.status = QUARANTINED
        entry.reason = f"{edf_path.name}: unexpected error {type(exc).__name__}: {exc}"
        entry.details["traceback"] = traceback.format_exc(limit=5)
    return entry


def _build_into(entry: RecordingEntry, edf_path: Path, annotation_path: Path, cache_dir: Path,
                config: CacheConfig) -> None:
    annotation = parse_annotation(annotation_path, config)
    entry.details[REFERENCE_KEY] = reference_details(annotation)  # what scoring compares with
    disagreement = annotation_disagreement(edf_path, config, primary=annotation)
    with EdfRecording(edf_path) as recording:
        plan = plan_channels(recording.labels, config)
        used = [s for s in plan.sources if s is not None]
        rates = {recording.sample_rates[s] for s in used}
        if len(rates) > 1:
            by_channel = ", ".join(f"{recording.labels[s].strip()} {recording.sample_rates[s]:g} Hz"
                                   for s in used)
            raise RecordingError(f"{edf_path.name}: EEG channels have different sampling rates "
                                 f"({by_channel})")
        fs = rates.pop()
        n_raw = min(recording.n_samples[s] for s in used)
        duration_s = n_raw / fs
        if abs(annotation.duration_s - duration_s) > config.duration_tolerance_s:
            raise RecordingError(
                f"{edf_path.name}: annotation {annotation_path.name} says duration "
                f"{annotation.duration_s:g} s but the EDF signal lasts {duration_s:g} s")
        entry.warnings = _overrun_warnings(annotation.seizures, duration_s, annotation_path)
        if disagreement:
            entry.warnings.append(disagreement)
        entry.details.update(
            fs=fs, duration_s=duration_s, n_signals=len(recording.labels),
            reconstructed=plan.describe_reconstruction(), header_repair=recording.header_repair,
            seizure_events=len(annotation.seizures),
        )
        n_samples = resampled_length(n_raw, fs, config.target_fs)
        n_windows = count_windows(n_samples, config)
        if n_windows == 0:
            entry.status = TOO_SHORT
            entry.reason = (f"{edf_path.name}: {duration_s:g} s is shorter than one "
                            f"{config.window_s} s window; no windows, no NPZ")
            return
        data = _conditioned_signals(recording, plan, fs, n_raw, n_samples, config, edf_path)

    mask = label_mask(annotation.seizures, n_samples, config)
    cache_path = cache_dir / cache_file_name(entry.stem, config.layout)
    window, stride = config.window_samples, config.stride_samples
    try:
        if config.layout == CONTINUOUS:
            # The samples the windows cover (the trailing < stride no window holds is not kept,
            # as in the windows layout), so either layout converts into the other exactly.
            covered = (n_windows - 1) * stride + window
            checksums = write_continuous(cache_path, data[:, :covered], mask[:covered])
            entry.details[CHECKSUMS_KEY] = checksums.to_text()
        else:
            write_npz(cache_path, windows=WindowedArray(data, n_windows, window, stride),
                      labels=WindowedArray(mask, n_windows, window, stride))
    except OSError as exc:
        raise OutputWriteError(_write_failure(exc, cache_path, n_samples, n_windows,
                                              config)) from exc
    entry.status = BUILT
    entry.npz_name = cache_path.name
    entry.npz_fingerprint = fingerprint_of(cache_path)
    entry.n_windows = n_windows
    entry.seizure_samples = window_seizure_counts(mask, config)


def _write_failure(exc: OSError, npz_path: Path, n_samples: int, n_windows: int,
                   config: CacheConfig) -> str:
    """Why a cache file could not be written, with the space it needs where the disk is full."""
    message = f"could not write {npz_path}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        if config.layout == CONTINUOUS:  # float32 (n, channels) and uint8 (n,), plus headers
            needed = n_samples * (len(config.channels) * 4 + 1) + 256
        else:  # windows (n, channels, window) and labels (n, window), float32, plus the zip's
            needed = n_windows * config.window_samples * (len(config.channels) + 1) * 4 + 4096
        try:
            free = shutil.disk_usage(npz_path.parent).free
        except OSError:
            free = 0
        message += (f": it needs {needed / 1e6:.1f} MB and {free / 1e6:.1f} MB are free on the "
                    f"file system of {npz_path.parent}")
    return message + "; tried again next run"


def _overrun_warnings(seizures, duration_s: float, annotation_path: Path) -> list[str]:
    """Warnings for seizures that start inside the signal and run past its end (their mask is
    clipped to the signal: docs/tusz.md, "Windows and labels"); a seizure that starts at or after
    the end cannot be placed and quarantines the recording."""
    unplaceable = [e for e in seizures if e.start_s >= duration_s]
    if unplaceable:
        event = unplaceable[0]
        raise RecordingError(
            f"{annotation_path.name}: seizure at {event.start_s:g}-{event.stop_s:g} s starts at "
            f"or after the end of the signal ({duration_s:g} s); it cannot be placed")
    return [f"{annotation_path.name}: seizure at {e.start_s:g}-{e.stop_s:g} s runs "
            f"{e.stop_s - duration_s:.6g} s past the end of the signal ({duration_s:g} s); its "
            f"label mask is clipped at {duration_s:g} s"
            for e in seizures if e.stop_s > duration_s]


def _conditioned_signals(recording: EdfRecording, plan, fs: float, n_raw: int, n_samples: int,
                         config: CacheConfig, edf_path: Path) -> np.ndarray:
    data = np.empty((len(config.channels), n_samples), dtype=np.float32)
    flat, extreme = [], []
    for out_index, source in enumerate(plan.sources):
        if source is None:
            continue
        raw = recording.read(source)[:n_raw]
        channel = config.channels[out_index]
        if not np.ptp(raw) > 0:
            flat.append(channel)
            continue
        # A strided subsample estimates the spread well enough for a plausibility bound.
        std_uv = float(np.std(raw[::16])) * recording.microvolts_per_unit(source)
        if std_uv > config.max_channel_std_uv:
            extreme.append(f"{channel} ({std_uv:.3g} uV)")
            continue
        data[out_index] = condition_channel(raw, fs, config)[:n_samples]
    if flat:
        raise RecordingError(f"{edf_path.name}: flat EEG channel(s) with zero variance: "
                             f"{', '.join(flat)}")
    if extreme:
        raise RecordingError(
            f"{edf_path.name}: implausible amplitude, standard deviation above "
            f"{config.max_channel_std_uv:g} uV on {', '.join(extreme)}; check the physical "
            "range and unit in the EDF header")
    for channel, neighbours in plan.reconstructed.items():
        rows = [config.channels.index(n) for n in neighbours]
        data[config.channels.index(channel)] = data[rows].mean(axis=0)
    return normalise_inplace(data, config)


# --------------------------------------------------------------------------------------------
# A split
# --------------------------------------------------------------------------------------------

@contextmanager
def split_lock(cache_dir: Path, log: Callable[[str], None]) -> Iterator[None]:
    """One writer per cache split: a second build waits for the first instead of interleaving."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / LOCK_NAME, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another build holds {cache_dir / LOCK_NAME}; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_current(entry: RecordingEntry | None, recording: Recording, version: str,
                npz_on_disk: dict[str, str]) -> bool:
    if entry is None or entry.status == FAILED:
        return False
    if (entry.edf_fingerprint, entry.annotation_fingerprint, entry.config_version) != (
            str(recording.edf), recording.annotation_fingerprint, version):
        return False
    return entry.status != BUILT or npz_on_disk.get(entry.npz_name) == entry.npz_fingerprint




def build_split(
    data_dir: Path,
    cache_dir: Path,
    split: str,
    config: CacheConfig = DEFAULT_CONFIG,
    workers: int | None = None,
    limit_files: int | None = None,
    progress: str | None = "auto",
    log: Callable[[str], None] | None = None,
    runner: Runner | None = None,
    state_dir: Path | None = None,
    run_tag: str = "",
    listing: SplitListing | None = None,
) -> BuildReport:
    """Bring ``cache_dir`` up to date with the recordings under ``data_dir``.

    The build works from one listing of ``data_dir``: ``listing`` when the caller has one (made
    moments ago in the same run), else a walk
    (:func:`~eeg_assets.lib.cache.discovery.list_recordings`). It is recorded in ``cache_dir``
    under ``run_tag`` (e.g. the Dagster run id), so the checks of the same run read it instead of
    walking again; with a ``run_tag``, the NPZs the build leaves (name and fingerprint) are
    recorded with it at the end, so the run's later steps and checks need no ``stat`` per NPZ.
    Without ``listing``, the walk uses the folder snapshot kept in ``cache_dir``
    (:func:`~eeg_assets.lib.cache.discovery.list_recordings`) unless ``state_dir`` is given.
    ``progress="auto"`` draws a progress line on stderr when it is a terminal.
    ``log`` receives human-readable lines (default: stderr). ``runner`` builds the recordings to
    do (default: the local process pool); ``state_dir`` holds the ledger and the split lock
    (default: ``cache_dir``). The Modal backend gives both: a fan-out over containers, and a
    ledger on the coordinator's own disk that it publishes to the volume
    (:mod:`eeg_assets.lib.cache.remote_build`).
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if not data_dir.is_dir():
        raise BuildError(f"--data-dir {data_dir} is not a folder")
    if listing is None:
        # A state_dir of its own is a fan-out coordinator's scratch disk, where no snapshot of
        # the folders would survive to the next build.
        listing = list_recordings(data_dir, snapshot_dir=cache_dir if state_dir is None else None)
    state_dir = Path(state_dir) if state_dir is not None else cache_dir
    recordings = list(listing.recordings)
    if not recordings:
        raise BuildError(f"no .edf recordings under {data_dir} (expected the TUSZ layout "
                         "<patient>/<session>/<montage>/<stem>.edf)")
    if limit_files is not None:
        if limit_files < 1:  # a negative slice would silently drop the last files
            raise BuildError(f"the file limit must be a positive integer, got {limit_files}")
        recordings = recordings[:limit_files]
    started = time.monotonic()
    version = config.version()
    report = BuildReport(split=split, data_dir=data_dir, cache_dir=cache_dir,
                         config_version=version, recordings=len(recordings),
                         ignored=list(listing.ignored), unreadable=list(listing.unreadable))
    for line in listing.ignored:
        log(f"ignored {line}")
    for line in listing.unreadable:
        log(f"could not read {line}; the rest of the split is built, this is tried again next "
            "run")

    cache_dir.mkdir(parents=True, exist_ok=True)
    with split_lock(state_dir, log):
        if state_dir == cache_dir:  # a fan-out guards the published ledger before fetching it
            guard_ledger(cache_dir, cache_dir)
        return _build_locked(listing, recordings, report, config, state_dir, run_tag, runner,
                             workers, progress, log, started)


def _build_locked(listing: SplitListing, recordings: list[Recording], report: BuildReport,
                  config: CacheConfig, state_dir: Path, run_tag: str, runner: Runner | None,
                  workers: int | None, progress: str | None, log: Callable[[str], None],
                  started: float) -> BuildReport:
    cache_dir, split, version = report.cache_dir, report.split, report.config_version
    with Ledger(state_dir) as ledger:
        write_listing(cache_dir, listing, run_tag)
        entries = ledger.entries()
        _remove_leftovers(cache_dir)
        npz_on_disk = cache_files_on_disk(cache_dir)
        report.removed = _remove_vanished(listing, cache_dir, ledger, entries, npz_on_disk)

        todo: list[Recording] = []
        stems: dict[str, str] = {}
        for recording in recordings:
            source, stem = recording.source, recording.stem
            if stem in stems:
                duplicate = RecordingEntry(
                    source=source, stem=stem, status=QUARANTINED, config_version=version,
                    edf_fingerprint=str(recording.edf),
                    annotation_fingerprint=recording.annotation_fingerprint,
                    reason=f"{source}: duplicate recording name; {stems[stem]} "
                           "has the same stem and owns its NPZ")
                ledger.put(duplicate)
                report.quarantined.append(duplicate)
                continue
            stems[stem] = source
            entry = entries.get(source)
            if _is_current(entry, recording, version, npz_on_disk):
                report.skipped += 1
                if add_missing_reference(entry, recording.path, config):
                    ledger.put(entry)
                if entry.status == QUARANTINED:
                    report.quarantined.append(entry)
                elif entry.status == TOO_SHORT:
                    report.too_short.append(entry)
                elif entry.warnings:
                    report.warned.append(entry)
            else:
                todo.append(recording)

        outcomes = (runner(todo) if runner is not None
                    else _run(todo, cache_dir, config, workers, progress, split))
        for entry in outcomes:
            previous = entries.get(entry.source)
            if (entry.status == FAILED and previous is not None and previous.status == BUILT
                    and previous.npz_name in npz_on_disk):
                # Good output is never removed before its replacement exists: the previous NPZ
                # and its entry stay (its inputs no longer match, so the next run tries again).
                report.failed.append(entry)
                report.kept_stale.append(entry.source)
                continue
            if (previous is not None and previous.npz_name
                    and (entry.status != BUILT or previous.npz_name != entry.npz_name)):
                remove_cache_file(cache_dir, previous.npz_name)  # or the other layout's file
            ledger.put(entry)
            if entry.status == BUILT:
                report.built.append(entry)
                report.eeg_seconds_built += entry.details.get("duration_s", 0.0)
                if entry.warnings:
                    report.warned.append(entry)
            elif entry.status == TOO_SHORT:
                report.too_short.append(entry)
            elif entry.status == FAILED:
                report.failed.append(entry)
            else:
                report.quarantined.append(entry)
            if entry.status == BUILT:
                npz_on_disk[entry.npz_name] = entry.npz_fingerprint
            if previous is not None and previous.npz_name != entry.npz_name:
                npz_on_disk.pop(previous.npz_name, None)
        if run_tag:
            write_listing(cache_dir, replace(listing, npz=tuple(sorted(npz_on_disk.items()))),
                          run_tag)
    report.seconds = time.monotonic() - started
    return report


def guard_ledger(ledger_dir: Path, cache_dir: Path) -> None:
    """Refuse to build when the ledger is missing or empty but NPZs are there.

    Without its ledger a build would take every NPZ for an unowned leftover and delete it (on
    full TUSZ, 628 GB to rebuild). A first build creates the ledger before it writes any NPZ,
    so NPZs without one mean the ledger was lost.

    Raises
    ------
    LedgerError
        Naming the ledger, the number of NPZs, and the command that recovers them.
    """
    path = Path(ledger_dir) / LEDGER_NAME
    try:
        lost = path.stat().st_size == 0
    except FileNotFoundError:
        lost = True
    if not lost:
        return
    present = cache_files_on_disk(cache_dir) if Path(cache_dir).is_dir() else {}
    if present:
        kind = file_kind(present)
        raise LedgerError(path, (
            f"missing or empty, but {cache_dir} holds {len(present)} {kind} file(s). Nothing was "
            f"deleted. Run `python -m eeg_assets adopt-cache --data-dir <the split's raw folder> "
            f"--cache-dir {cache_dir}` to take back the {kind} files that verify and match their "
            f"recordings (the rest is rebuilt by the next build), or delete them to rebuild "
            "the split from scratch"))


def _remove_leftovers(cache_dir: Path) -> None:
    """Temporary files of killed writers. The split lock keeps other builds out, but not the
    index and manifest writers (another build-cache refreshing them, the Dagster assets): their
    temporary files are locked while written and are left alone."""
    remove_stale_temporaries(cache_dir)


def _remove_vanished(listing: SplitListing, cache_dir: Path, ledger: Ledger,
                     entries: dict[str, RecordingEntry], npz_on_disk: dict[str, str]) -> list[str]:
    """Drop outputs of recordings no longer listed, and NPZs that no ledger entry owns.

    A recording under a folder or beside a file that could not be read this time is not gone:
    its output stays until the walk can tell.
    """
    listed = listing.sources
    vanished = [s for s in entries if s not in listed and not listing.within_unreadable(s)]
    for source in vanished:
        if entries[source].npz_name:
            remove_cache_file(cache_dir, entries[source].npz_name)
            npz_on_disk.pop(entries[source].npz_name, None)
    ledger.remove(vanished)
    for source in vanished:
        del entries[source]
    owned = {e.npz_name for e in entries.values() if e.npz_name}
    for name in [n for n in npz_on_disk if n not in owned]:
        # renamed into place by a build killed before its ledger write
        remove_cache_file(cache_dir, name)
        del npz_on_disk[name]
    return vanished


def _run(todo: list[Recording], cache_dir: Path, config: CacheConfig,
         workers: int | None, progress: str | None, split: str) -> Iterator[RecordingEntry]:
    if not todo:
        return
    # Largest first, so a long recording does not start last and leave the other cores idle.
    todo = sorted(todo, key=lambda recording: recording.edf.size, reverse=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    bar = _Progress(len(todo), split, enabled=progress == "always" or (
        progress == "auto" and sys.stderr.isatty()))
    if workers == 1:
        with threadpool_limits(limits=1, user_api="blas"):
            for recording in todo:
                entry = build_recording(recording, cache_dir, config)
                bar.advance(entry)
                yield entry
        bar.close()
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                             initializer=_init_worker) as pool:
        pending = {pool.submit(build_recording, r, cache_dir, config): r for r in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                recording = pending.pop(future)
                try:
                    entry = future.result()
                except BrokenProcessPool:
                    entry = RecordingEntry(
                        source=recording.source, stem=recording.stem, status=FAILED,
                        config_version=config.version(), edf_fingerprint="",
                        reason=f"{recording.path.name}: worker process died (out of memory?); "
                               "retried next run")
                bar.advance(entry)
                yield entry
    bar.close()


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` when this process runs no other thread (the CLI): workers start at once, with
    scipy already imported. A threaded caller (Dagster) gets ``forkserver``, because a fork copies
    locks that other threads may hold; its server imports the library once (about 2 s here),
    then each worker starts in milliseconds."""
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["eeg_assets.lib.cache.build"])
    return context


def _init_worker() -> None:
    # One BLAS thread, as in-process builds use: the resampling's sums then do not depend on the
    # number of workers, and no OpenBLAS threads spin beside workers that already fill the cores
    # (that made builds twice as slow).
    threadpool_limits(limits=1, user_api="blas")
    _exit_with_parent()


def _exit_with_parent() -> None:
    """End this worker as soon as the build process dies.

    A build killed with SIGKILL (``kill -9``, the OOM killer) cannot shut its pool down; its
    workers would finish their recording, rename its NPZ into the split while a rerun holds the
    lock, and then wait on the pool's queue forever.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # readable when the parent is gone
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class _Progress:
    def __init__(self, total: int, split: str, enabled: bool):
        self.total, self.split, self.enabled = total, split, enabled
        self.done = self.windows = self.bad = 0
        self.started = time.monotonic()

    def advance(self, entry: RecordingEntry) -> None:
        self.done += 1
        self.windows += entry.n_windows
        self.bad += entry.status in (QUARANTINED, FAILED)
        if self.enabled:
            elapsed = time.monotonic() - self.started
            eta = elapsed / self.done * (self.total - self.done)
            width = 30
            filled = int(width * self.done / self.total)
            sys.stderr.write(
                f"\r[{self.split}] [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                f" files, {self.windows} windows, {self.bad} quarantined, ETA {eta:5.0f} s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def write_failure_message(report: BuildReport) -> str:
    """Why a build that could not write its cache failed, naming the first file."""
    first = report.write_failures[0]
    kept = (f"; the previous NPZ of {len(report.kept_stale)} recording(s) is kept (stale) with "
            "its index and manifest entries" if report.kept_stale else "")
    return (f"{len(report.write_failures)} recording(s) could not be written to "
            f"{report.cache_dir}: {first.source}: {first.reason}{kept}")


def format_report(report: BuildReport) -> str:
    lines = [
        f"[build-cache] split {report.split}: {report.recordings} recordings under {report.data_dir}",
        f"[build-cache] built {len(report.built)} ({report.windows_built} windows, "
        f"{report.eeg_seconds_built / 3600:.2f} EEG-hours) | skipped {report.skipped} unchanged | "
        f"too short {len(report.too_short)} | quarantined {len(report.quarantined)} | "
        f"failed, will retry {len(report.failed)} | removed {len(report.removed)} | "
        f"{report.seconds:.1f} s",
        f"[build-cache] cache {report.cache_dir} (config {report.config_version})",
    ]
    for entry in report.too_short:
        lines.append(f"  too short: {entry.source}")
    for entry in report.warned:
        lines += [f"  built with warnings: {entry.source}: {warning}" for warning in entry.warnings]
    for entry in report.quarantined:
        lines.append(f"  quarantined: {entry.source}: {entry.reason}")
    for entry in report.failed:
        kept = " (its previous NPZ is kept, stale)" if entry.source in report.kept_stale else ""
        lines.append(f"  failed, will retry: {entry.source}: {entry.reason}{kept}")
    for source in report.removed:
        lines.append(f"  removed (EDF gone): {source}")
    for line in report.ignored:
        lines.append(f"  ignored: {line}")
    for line in report.unreadable:
        lines.append(f"  could not read (tried again next run): {line}")
    return "\n".join(lines)
