"""Mirror the local raw recordings onto a volume, incrementally and resumably.

The volume is anything with the three calls of ``modal.Volume`` used here: ``read_file(path)``
(an iterable of bytes; ``FileNotFoundError`` when missing), ``batch_upload(force=True)`` (a context
manager whose ``put_file(local or file object, remote path)`` uploads when the block ends, all or
nothing) and ``remove_file(path)``.

What was uploaded is recorded on the volume itself, in ``_uploaded.json`` (size and mtime of the
local file per volume path); containers fingerprint the raw files by it (:func:`upload_stamps`),
not by the volume's timestamps. A file is uploaded when it is new or its size or mtime changed, with
its annotation files; a file gone from the local root is removed from the volume. Uploads go in
chunks, and each chunk carries the record of itself: a sync killed midway loses at most the chunk
in flight, and the next sync uploads only what is still missing.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from eeg_assets.lib.cache.annotations import ANNOTATION_SUFFIXES
from eeg_assets.lib.cache.discovery import list_recordings

#: The folder of the volume that mirrors the local raw root (mounted at ``/data``: ``/data/edf``).
VOLUME_PREFIX = "edf"
UPLOAD_RECORD = "_uploaded.json"
UPLOAD_FORMAT = 1


@dataclass
class UploadReport:
    files: int = 0                 # files under the synced folders
    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.uploaded_bytes / 1e6 / self.seconds if self.seconds else 0.0
        return (f"[upload-raw] {self.files} files: uploaded {len(self.uploaded)} "
                f"({self.uploaded_bytes / 1e9:.2f} GB, {rate:.0f} MB/s), removed "
                f"{len(self.removed)}, unchanged {self.unchanged} ({self.seconds:.1f} s)")


def local_files(raw_root: Path, folders: Iterable[str]) -> tuple[dict[str, Path], list[str]]:
    """``{volume path: local path}`` of the EDFs and annotation files under ``raw_root/<folder>``,
    and the paths ignored with a reason (symlinks leaving the folder)."""
    raw_root = Path(raw_root)
    files, ignored = {}, []
    for folder in folders:
        split_dir = raw_root / folder
        if not split_dir.is_dir():
            raise FileNotFoundError(f"{split_dir} is not a folder (expected the TUSZ layout "
                                    f"{raw_root}/<train|dev|eval>/...)")
        listing = list_recordings(split_dir)
        ignored += [f"{folder}/{line}" for line in listing.ignored]
        for recording in listing.recordings:
            # every annotation file beside the EDF, not only the one the build would pick
            annotations = (recording.path.with_suffix(s) for s in ANNOTATION_SUFFIXES)
            for path in [recording.path, *(a for a in annotations if a.is_file())]:
                files[f"{VOLUME_PREFIX}/{path.relative_to(raw_root).as_posix()}"] = path
    return files, ignored


def read_record(volume) -> dict[str, list[int]]:
    """``{volume path: [size, mtime_ns]}`` of what earlier syncs uploaded."""
    try:
        raw = b"".join(volume.read_file(UPLOAD_RECORD))
    except FileNotFoundError:
        return {}
    data = json.loads(raw)
    if data.get("format") != UPLOAD_FORMAT or not isinstance(data.get("files"), dict):
        raise ValueError(f"{UPLOAD_RECORD} on the volume is not a format-{UPLOAD_FORMAT} record")
    return data["files"]


def upload_stamps(mount: Path) -> dict[str, list[int]]:
    """``{path under mount: [size, mtime_ns]}``: the source machine's fingerprints of the files
    on a mounted volume, from its upload record (for
    :func:`~eeg_assets.lib.cache.discovery.source_fingerprints`); ``{}`` without a record."""
    try:
        data = json.loads((Path(mount) / UPLOAD_RECORD).read_bytes())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(Path(mount) / remote): stats for remote, stats in (files or {}).items()}


def _record_bytes(record: dict[str, list[int]]) -> io.BytesIO:
    return io.BytesIO(json.dumps({"format": UPLOAD_FORMAT, "files": record},
                                 sort_keys=True).encode())


def sync_raw(raw_root: Path, folders: Iterable[str], volume, *, chunk_files: int = 500,
             chunk_bytes: int = 4 * 10**9, log: Callable[[str], None] = print) -> UploadReport:
    """Bring the volume's ``edf/<folder>`` up to date with ``raw_root/<folder>``.

    Parameters
    ----------
    raw_root
        The local folder holding the TUSZ split folders (``train``, ``dev``, ``eval``).
    folders
        The split folders to sync; files of other folders on the volume are left alone.
    volume
        A ``modal.Volume`` (or an object with the same three calls, see the module).
    chunk_files, chunk_bytes
        Limits of one upload batch: what a killed sync can lose.
    log
        Receives a progress line per chunk.
    """
    started = time.monotonic()
    folders = list(folders)
    files, ignored = local_files(raw_root, folders)
    record = read_record(volume)
    log(f"[upload-raw] {len(files)} local files under {raw_root} ({', '.join(folders)}); "
        f"the volume's record lists {len(record)}")
    report = UploadReport(files=len(files), ignored=ignored)
    todo = []
    for remote, path in sorted(files.items()):
        st = path.stat()
        stats = [st.st_size, st.st_mtime_ns]
        if record.get(remote) == stats:
            report.unchanged += 1
        else:
            todo.append((remote, path, stats))
    total = sum(stats[0] for _, _, stats in todo)
    for chunk in _chunks(todo, chunk_files, chunk_bytes):
        with volume.batch_upload(force=True) as batch:
            for remote, path, _ in chunk:
                batch.put_file(path, f"/{remote}")
            after = {**record, **{remote: stats for remote, _, stats in chunk}}
            batch.put_file(_record_bytes(after), f"/{UPLOAD_RECORD}")
        record = after  # the chunk and its record landed together
        report.uploaded += [remote for remote, _, _ in chunk]
        report.uploaded_bytes += sum(stats[0] for _, _, stats in chunk)
        elapsed = time.monotonic() - started
        rate = report.uploaded_bytes / elapsed if elapsed else 0.0
        eta = (total - report.uploaded_bytes) / rate if rate else 0.0
        log(f"[upload-raw] {len(report.uploaded)}/{len(todo)} files, "
            f"{report.uploaded_bytes / 1e9:.2f}/{total / 1e9:.2f} GB, {rate / 1e6:.0f} MB/s, "
            f"ETA {eta:.0f} s")
    prefixes = tuple(f"{VOLUME_PREFIX}/{folder}/" for folder in folders)
    gone = sorted(r for r in record if r.startswith(prefixes) and r not in files)
    if gone:
        vanished = set(gone)
        for remote in gone:
            try:
                volume.remove_file(remote)
            except FileNotFoundError:
                pass  # removed by a sync killed before it recorded the removal
        record = {r: stats for r, stats in record.items() if r not in vanished}
        with volume.batch_upload(force=True) as batch:
            batch.put_file(_record_bytes(record), f"/{UPLOAD_RECORD}")
        report.removed = gone
    report.seconds = time.monotonic() - started
    return report


def _chunks(todo: list, max_files: int, max_bytes: int) -> Iterable[list]:
    chunk, size = [], 0
    for item in todo:
        if chunk and (len(chunk) >= max_files or size + item[2][0] > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item[2][0]
    if chunk:
        yield chunk
