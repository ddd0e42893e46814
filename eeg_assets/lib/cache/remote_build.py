"""The cache build fanned out over containers that share a volume (Modal's ``Function.map``).

:func:`eeg_assets.lib.cache.build.build_split` decides what to build and records the outcomes;
here are the two pieces that change when the recordings are built elsewhere:

* :func:`build_batch` runs in a build container: the same :func:`build_recording` as the local
  pool, for a batch of recordings, writing each NPZ onto the mounted volume (temporary name, then
  rename), then making the batch visible to other containers (``commit``).
* :class:`FanOut` is the ``runner`` the coordinating container hands ``build_split``: it plans
  batches, maps them over build containers and yields their entries as they arrive. Every
  ``flush_every_s`` it commits and reloads the volume, re-reads the fingerprints of what was built
  *as this container sees them* (another container's clock or a volume's timestamp precision must
  not make the next run rebuild everything), hands the entries to the ledger, and publishes the
  ledger to the volume.

The ledger itself lives on the coordinator's own disk while it is written (SQLite's locks and
WAL need a local file system) and reaches the volume only as a complete copy renamed into place
(:func:`publish_ledger`). A fan-out killed at any point leaves the last published ledger, NPZs
it does not know (removed as unowned by the next build), and temporary files (removed as
stale): a rerun trusts only what the ledger recorded and builds the rest.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path

from threadpoolctl import threadpool_limits

from eeg_assets.lib.cache.build import build_recording
from eeg_assets.lib.cache.discovery import Recording, recording_at
from eeg_assets.lib.cache.layout import fingerprint_bytes, fingerprint_of, fingerprint_sizes
from eeg_assets.lib.cache.ledger import (
    BUILT,
    FAILED,
    LEDGER_NAME,
    RecordingEntry,
)
from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.files import atomic_path

#: One input of the fan-out: ``[EDF path relative to the raw mount, source]`` per recording.
Batch = list[list[str]]
#: ``map_batches(batches)`` yields, per batch and in any order, its entries (as dicts) or the
#: exception that ended its container.
MapBatches = Callable[[list[Batch]], Iterable[list[dict] | BaseException]]


def entry_to_dict(entry: RecordingEntry) -> dict:
    return asdict(entry)


def entry_from_dict(data: dict) -> RecordingEntry:
    return RecordingEntry(**data)


def plan_batches(todo: list[Recording], raw_root: Path, batch_size: int) -> list[Batch]:
    """``todo`` cut into batches of at most ``batch_size`` recordings, largest EDFs first.

    Largest first, as the local pool does, so a long recording does not start last and keep one
    container busy after the others are done.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    ordered = sorted(todo, key=lambda recording: recording.edf.size, reverse=True)
    items = [[r.path.relative_to(raw_root).as_posix(), r.source] for r in ordered]
    return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]


def build_batch(batch: Batch, raw_root: Path, cache_dir: Path, config: CacheConfig,
                commit: Callable[[], None]) -> list[dict]:
    """Build one batch in a build container and commit its NPZs to the volume.

    Parameters
    ----------
    batch
        ``[EDF path relative to raw_root, source]`` per recording.
    raw_root, cache_dir
        Where the raw volume is mounted, and the split's cache folder on the results volume.
    commit
        Makes this container's writes visible to the others (``modal.Volume.commit``).

    Returns
    -------
    list of dict
        One :class:`RecordingEntry` (as a dict) per recording, in batch order.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    with threadpool_limits(limits=1, user_api="blas"):  # as the local pool's workers
        entries = [build_recording(recording_at(raw_root / relative, source), cache_dir, config)
                   for relative, source in batch]
    commit()
    return [entry_to_dict(entry) for entry in entries]


def fetch_ledger(cache_dir: Path, state_dir: Path) -> None:
    """Copy the split's published ledger (if any) to the coordinator's working folder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    published = cache_dir / LEDGER_NAME
    if not published.is_file():
        return
    # SQLite's own copy: consistent even if the published file is a WAL database.
    with closing(sqlite3.connect(published)) as source, \
            closing(sqlite3.connect(state_dir / LEDGER_NAME)) as target:
        source.backup(target)


def publish_ledger(state_dir: Path, cache_dir: Path) -> None:
    """Put a complete copy of the working ledger on the volume, atomically."""
    final = cache_dir / LEDGER_NAME
    with atomic_path(final, suffix=".tmp") as tmp:
        with closing(sqlite3.connect(state_dir / LEDGER_NAME)) as source, \
                closing(sqlite3.connect(tmp)) as target:
            source.backup(target)
            # A rollback-journal file: complete on its own, no -wal beside it to copy.
            target.execute("PRAGMA journal_mode=DELETE")
        # A reader killed while it had the old copy open can leave its -wal and -shm behind;
        # SQLite must not take them for the new file's.
        for leftover in ("-wal", "-shm"):
            final.with_name(final.name + leftover).unlink(missing_ok=True)


class FanOut:
    """A ``runner`` for :func:`~eeg_assets.lib.cache.build.build_split` that builds elsewhere.

    Parameters
    ----------
    map_batches
        Runs :func:`build_batch` per batch in other containers (``Function.map`` with
        ``order_outputs=False, return_exceptions=True``).
    raw_root
        Where this container sees the raw volume (batches carry paths relative to it).
    cache_dir
        The split's cache folder on the results volume, as this container sees it.
    sync
        Commit this container's writes, then reload the volume to see the build containers'
        (``commit()`` then ``reload()``: Modal's commit may skip its own reload).
    publish
        Publish the ledger to the volume (after which ``sync`` commits it).
    batch_size, flush_every_s
        Recordings per batch; seconds between two records of outcomes in the ledger.
    log
        Progress lines.
    """

    def __init__(self, map_batches: MapBatches, raw_root: Path, cache_dir: Path,
                 sync: Callable[[], None], publish: Callable[[], None], *, batch_size: int = 8,
                 flush_every_s: float = 60.0, log: Callable[[str], None] = print):
        self.map_batches, self.raw_root, self.cache_dir = map_batches, raw_root, cache_dir
        self.sync, self.publish, self.log = sync, publish, log
        self.batch_size, self.flush_every_s = batch_size, flush_every_s

    def __call__(self, todo: list[Recording]) -> Iterator[RecordingEntry]:
        if not todo:
            return
        paths = {recording.source: recording.path for recording in todo}
        batches = plan_batches(todo, self.raw_root, self.batch_size)
        self.log(f"building {len(todo)} recording(s) in {len(batches)} batch(es) of up to "
                 f"{self.batch_size} on build containers")
        # Commit the removals build_split has made (outputs of vanished or changed recordings,
        # unowned NPZs) before any build container writes: committed later, a removal would
        # delete the NPZ a build container has just written under the same name.
        self.sync()
        pending: list[RecordingEntry] = []
        reported: set[str] = set()
        errors: list[str] = []
        last_flush, done = time.monotonic(), 0
        for outcome in self.map_batches(batches):
            if isinstance(outcome, BaseException):
                errors.append(f"{type(outcome).__name__}: {outcome}")
                continue
            pending.extend(entry_from_dict(data) for data in outcome)
            done += 1
            if time.monotonic() - last_flush >= self.flush_every_s:
                self.log(f"{done}/{len(batches)} batch(es) done")
                yield from self._flush(pending, paths, reported)
                last_flush = time.monotonic()
        # A container that died (out of memory, preempted past its retries) returned no
        # entries: its recordings are failed and retried by the next run.
        answered = reported | {entry.source for entry in pending}
        reason = "build container failed (" + "; ".join(errors) + "); retried next run"
        pending.extend(RecordingEntry(source=source, stem=path.stem, status=FAILED,
                                      config_version="", edf_fingerprint="", reason=reason)
                       for source, path in paths.items() if source not in answered)
        yield from self._flush(pending, paths, reported)

    def _flush(self, pending: list[RecordingEntry], paths: dict[str, Path],
               reported: set[str]) -> Iterator[RecordingEntry]:
        self.sync()  # our removals out, the build containers' NPZs in
        for entry in pending:
            self._rebase(entry, paths[entry.source])
            reported.add(entry.source)
            yield entry  # build_split records it before asking for the next
        pending.clear()
        self.publish()
        self.sync()

    def _rebase(self, entry: RecordingEntry, edf_path: Path) -> None:
        """Record the fingerprints this container sees: the next run compares with those."""
        seen_inputs = recording_at(edf_path, entry.source)
        if entry.edf_fingerprint:
            entry.edf_fingerprint = str(seen_inputs.edf)
        if entry.annotation_fingerprint:
            entry.annotation_fingerprint = seen_inputs.annotation_fingerprint
        if entry.status != BUILT:
            return
        built_size = fingerprint_bytes(entry.npz_fingerprint)
        try:
            seen = fingerprint_of(self.cache_dir / entry.npz_name)
        except FileNotFoundError:
            seen = None
        if seen is None or fingerprint_sizes(seen) != fingerprint_sizes(entry.npz_fingerprint):
            entry.status, entry.npz_name, entry.npz_fingerprint = FAILED, "", ""
            entry.reason = (f"{edf_path.name}: its cache file ({built_size} bytes) is not on the "
                            f"volume after the build (found "
                            f"{fingerprint_bytes(seen) if seen else 'nothing'}); retried next run")
            return
        entry.npz_fingerprint = seen

