"""The recordings of a split folder: one walk, one symlink rule, one annotation rule.

Everything that needs "the recordings of a split" (the build, the drop sensor, the asset checks)
gets them from :func:`list_recordings`:

* **Walk.** ``os.scandir`` of every folder under the split, recursively. A regular file's type
  comes from its directory entry, so it costs nothing; an EDF and its chosen annotation cost one
  ``stat`` each (their fingerprints), a folder one ``scandir``. Only symlinks cost more.
* **Symlink rule.** An EDF symlink whose target lies outside the split folder is ignored with a
  reason, as is a broken one; a symlinked folder is not followed (its recordings would come from
  outside the split or be listed twice) and is reported too.
* **Annotation rule.** :func:`eeg_assets.lib.cache.annotations.annotation_names` (``.csv_bi``
  over ``.csv``), applied to the folder's listing: no extra ``stat`` or ``exists`` calls.

Each recording is fingerprinted once per run: the build works from the listing, records it in
the split's cache folder (:func:`write_listing`, ``_raw_listing.json``) and the checks of the
same run read it back (:func:`listing_for`) instead of walking again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from eeg_assets.lib.cache.annotations import annotation_names
from eeg_assets.lib.cache.ledger import FileFingerprint
from eeg_assets.lib.files import write_bytes_atomic

EDF_SUFFIX = ".edf"
LISTING_NAME = "_raw_listing.json"
LISTING_FORMAT = 1


@dataclass(frozen=True)
class Recording:
    """One EDF of a split with the fingerprints the build and the sensor compare."""

    source: str                                 # EDF path relative to the split folder (POSIX)
    path: Path                                  # the split folder / source
    edf: FileFingerprint
    annotation_name: str = ""                   # file name in the EDF's folder; "" when none
    annotation: FileFingerprint | None = None

    @property
    def stem(self) -> str:
        return PurePosixPath(self.source).stem

    @property
    def annotation_path(self) -> Path | None:
        return self.path.with_name(self.annotation_name) if self.annotation_name else None

    @property
    def annotation_fingerprint(self) -> str:
        """As the ledger records it: ``"size:mtime_ns"``, ``""`` without an annotation."""
        return str(self.annotation) if self.annotation is not None else ""

    @property
    def inputs(self) -> str:
        """``"<edf fingerprint>|<annotation fingerprint>"``: what must not change for the
        recording's cache entry to stay current (with the config version)."""
        return f"{self.edf}|{self.annotation_fingerprint}"


@dataclass(frozen=True)
class SplitListing:
    """The recordings of one split folder (sorted by source) and the paths ignored, with why."""

    data_dir: Path
    recordings: tuple[Recording, ...]
    ignored: tuple[str, ...] = ()
    #: Who recorded this listing with :func:`write_listing` (a Dagster run id); "" for nobody.
    run_tag: str = ""
    #: When the walk was made (seconds since the epoch).
    listed_at: float = 0.0

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(r.source for r in self.recordings)

    def inputs(self) -> dict[str, str]:
        """``{source: Recording.inputs}``."""
        return {r.source: r.inputs for r in self.recordings}


def list_recordings(data_dir: Path) -> SplitListing:
    """Every ``*.edf`` under ``data_dir`` (recursive) with its annotation and fingerprints.

    A missing ``data_dir`` gives an empty listing. A file that vanishes while the folder is
    walked is simply not listed (the next walk sees the folder as it is then).
    """
    data_dir = Path(data_dir)
    started = time.time()
    recordings: list[Recording] = []
    ignored: list[str] = []
    if data_dir.is_dir():
        _walk(data_dir, "", os.path.realpath(data_dir), recordings, ignored)
    recordings.sort(key=lambda r: r.source.split("/"))  # as paths sort: folder by folder
    return SplitListing(data_dir=data_dir, recordings=tuple(recordings),
                        ignored=tuple(sorted(ignored)), listed_at=started)


def recording_at(path: Path, source: str) -> Recording:
    """One recording by its path, fingerprinted now (a build container on another mount of the
    same files, which has no listing of its own)."""
    path = Path(path)
    edf = FileFingerprint.of(path)
    for name in annotation_names(path.name):
        candidate = path.with_name(name)
        if candidate.is_file():
            return Recording(source, path, edf, name, FileFingerprint.of(candidate))
    return Recording(source, path, edf)


def _walk(folder: Path, prefix: str, root: str, recordings: list[Recording],
          ignored: list[str]) -> None:
    try:
        with os.scandir(folder) as listing:
            entries = {entry.name: entry for entry in listing}
    except (FileNotFoundError, NotADirectoryError):
        return  # removed while walked
    for name, entry in entries.items():
        source = prefix + name
        if entry.is_symlink() and (reason := _symlink_problem(entry, root)):
            ignored.append(f"{source}: {reason}")
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk(folder / name, source + "/", root, recordings, ignored)
            continue
        if not name.lower().endswith(EDF_SUFFIX):
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        annotation_name, annotation = _annotation(name, entries)
        recordings.append(Recording(
            source=source, path=folder / name, edf=FileFingerprint(st.st_size, st.st_mtime_ns),
            annotation_name=annotation_name, annotation=annotation))


def _symlink_problem(entry: os.DirEntry, root: str) -> str:
    """Why a symlink is not used ("" when it is an EDF symlink into the split: it is listed)."""
    target = os.path.realpath(entry.path)
    if entry.is_dir():
        return f"symlinked folder (to {target}), not followed"
    if not entry.name.lower().endswith(EDF_SUFFIX):
        return ""  # an annotation or any other file: judged with its recording, or not at all
    if target != root and not target.startswith(root + os.sep):
        return f"symlink to {target} outside {root}"
    if not os.path.exists(target):
        return "broken symlink"
    return ""


def _annotation(edf_name: str, entries: dict[str, os.DirEntry]
                ) -> tuple[str, FileFingerprint | None]:
    for name in annotation_names(edf_name):
        entry = entries.get(name)
        if entry is None or not entry.is_file():
            continue
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        return name, FileFingerprint(st.st_size, st.st_mtime_ns)
    return "", None


# ------------------------------------------------------------------------------------------------
# The listing a build worked from, recorded for the rest of its run
# ------------------------------------------------------------------------------------------------

def write_listing(cache_dir: Path, listing: SplitListing, run_tag: str = "") -> Path:
    """Record ``listing`` as ``<cache_dir>/_raw_listing.json`` (atomically), tagged ``run_tag``."""
    rows = [[r.source, r.edf.size, r.edf.mtime_ns, r.annotation_name,
             *((r.annotation.size, r.annotation.mtime_ns) if r.annotation else (None, None))]
            for r in listing.recordings]
    payload = {"format": LISTING_FORMAT, "data_dir": str(Path(listing.data_dir).absolute()),
               "run_tag": run_tag, "listed_at": listing.listed_at,
               "ignored": list(listing.ignored), "recordings": rows}
    path = Path(cache_dir) / LISTING_NAME
    write_bytes_atomic(path, json.dumps(payload, separators=(",", ":")).encode())
    return path


def read_listing(cache_dir: Path) -> SplitListing | None:
    """The listing recorded in ``cache_dir``; ``None`` when there is none or it is unreadable."""
    path = Path(cache_dir) / LISTING_NAME
    try:
        payload = json.loads(path.read_bytes())
        if payload.get("format") != LISTING_FORMAT:
            return None
        data_dir = Path(payload["data_dir"])
        recordings = tuple(
            Recording(source=source, path=data_dir / source, edf=FileFingerprint(size, mtime),
                      annotation_name=name,
                      annotation=FileFingerprint(a_size, a_mtime) if name else None)
            for source, size, mtime, name, a_size, a_mtime in payload["recordings"])
        return SplitListing(data_dir=data_dir, recordings=recordings,
                            ignored=tuple(payload["ignored"]), run_tag=payload["run_tag"],
                            listed_at=float(payload["listed_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def listing_for(data_dir: Path, cache_dir: Path, run_tag: str | None = None
                ) -> tuple[SplitListing, str]:
    """The recordings of ``data_dir`` without walking it again where a build recorded them.

    The listing recorded in ``cache_dir`` is used when it lists the same folder and, if
    ``run_tag`` is given, was recorded under that tag (the same run); otherwise the folder is
    walked now (a split never built, or a check run on its own). Returns the listing and where
    it came from, in words.
    """
    recorded = read_listing(cache_dir)
    if (recorded is not None and recorded.data_dir == Path(data_dir).absolute()
            and (run_tag is None or recorded.run_tag == run_tag)):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(recorded.listed_at))
        return recorded, f"listing recorded by the build of {when}"
    why = "no listing recorded by this run" if run_tag is not None else "none recorded"
    return list_recordings(data_dir), f"walked now ({why})"
