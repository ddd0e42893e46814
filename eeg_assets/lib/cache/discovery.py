"""The recordings of a split folder: one walk, one symlink rule, one annotation rule.

Everything that needs "the recordings of a split" (the build, the drop sensor, the asset checks)
gets them from :func:`list_recordings`:

* **Walk.** ``os.scandir`` of every folder under the split, recursively. A regular file's type
  comes from its directory entry, so it costs nothing; an EDF and its chosen annotation cost one
  ``stat`` each (their fingerprints), a folder one ``scandir`` (4 system calls). Only symlinks
  cost more (resolving the link and checking its target).
* **Unreadable paths.** A folder the walk cannot list, or an EDF or annotation it cannot
  ``stat`` (a permission, an I/O error), is reported in :attr:`SplitListing.unreadable` with the
  OS's message, and the walk goes on with the rest of the split. Its recordings are not listed
  (an unreadable annotation: its recording is not listed, rather than labelled from the other
  annotation file or from none), and it is tried again at the next walk: an unreadable folder is
  never kept in the folder snapshot.
* **Folder snapshot.** Given the split's state folder, the walk keeps each folder's listing
  (names and kinds) there with the folder's mtime (``_raw_folders.json``), and the next walk lists
  a folder again only when its mtime moved (adding, removing or renaming an entry moves it); an
  unchanged folder costs one ``stat``. Files are still fingerprinted at every walk, so a file
  rewritten in place is seen. A folder listed within :data:`RACY_MARGIN_NS` of its last change
  is listed again next time (the "racy" case: a change in the same timestamp tick). On the TUSZ
  layout that is ~2.6 system calls per recording for a walk that finds nothing new. Deleting the
  file makes the next walk a full one.
* **Symlink rule.** An EDF symlink whose target lies outside the split folder is ignored with a
  reason, as is a broken one; a symlinked folder is not followed (its recordings would come from
  outside the split or be listed twice) and is reported too. An EDF symlink to an EDF the walk
  reaches directly (through real folders) is ignored with a reason as well, so that a recording
  is built once, under its real path; one whose target the walk does not reach otherwise (not
  named ``.edf``, say) is listed under the link's path, once however many links lead to it.
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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

from eeg_assets.lib.cache.annotations import annotation_names
from eeg_assets.lib.cache.ledger import FileFingerprint
from eeg_assets.lib.files import write_bytes_atomic

EDF_SUFFIX = ".edf"
LISTING_NAME = "_raw_listing.json"
LISTING_FORMAT = 1
SNAPSHOT_NAME = "_raw_folders.json"
SNAPSHOT_FORMAT = 1
#: A folder listed less than this long after its last change is listed again at the next walk: a
#: change within the same timestamp tick as the one before (1-10 ms on ext4 and XFS, 1-2 s on
#: some network and FAT file systems) would leave its mtime where it was.
RACY_MARGIN_NS = 5_000_000_000


#: ``{path: (size, mtime_ns)}`` fingerprints recorded where the files came from; see
#: :func:`source_fingerprints`.
_source_stamps: Mapping[str, Sequence[int]] | None = None


@contextmanager
def source_fingerprints(stamps: Mapping[str, Sequence[int]]) -> Iterator[None]:
    """Fingerprint the files ``stamps`` names by the size and mtime they had at their source.

    On a Modal volume a file's mtime is whatever the volume says (its upload, a commit), which no
    one promises to keep. Inside this block a raw file whose size matches its recorded one takes
    the recorded fingerprint (the source machine's, carried by the upload record), so the
    ledger's comparison does not depend on the volume's timestamps. Keys are paths as the walk
    forms them (the split folder joined with relative names).
    """
    global _source_stamps
    before, _source_stamps = _source_stamps, {os.path.normpath(k): v for k, v in stamps.items()}
    try:
        yield
    finally:
        _source_stamps = before


def _fingerprint(path: str, st: os.stat_result) -> FileFingerprint:
    if _source_stamps is not None:
        recorded = _source_stamps.get(os.path.normpath(path))
        if recorded is not None and int(recorded[0]) == st.st_size:
            return FileFingerprint(int(recorded[0]), int(recorded[1]))
    return FileFingerprint(st.st_size, st.st_mtime_ns)


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
    #: The paths the walk could not read, sorted: ``"<path relative to the split>: <OS error>"``
    #: (``"."`` for the split folder itself). A folder it could not list, or an EDF or annotation
    #: it could not ``stat``: their recordings are missing from :attr:`recordings` although they
    #: may well still exist (see :meth:`within_unreadable`).
    unreadable: tuple[str, ...] = ()
    #: Who recorded this listing with :func:`write_listing` (a Dagster run id); "" for nobody.
    run_tag: str = ""
    #: When the walk was made (seconds since the epoch).
    listed_at: float = 0.0
    #: ``(name, fingerprint)`` of the split's NPZs as the build left them, recorded at its end
    #: for the later steps and checks of its run; ``None`` before that.
    npz: tuple[tuple[str, str], ...] | None = None

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(r.source for r in self.recordings)

    def inputs(self) -> dict[str, str]:
        """``{source: Recording.inputs}``."""
        return {r.source: r.inputs for r in self.recordings}

    def within_unreadable(self, source: str) -> bool:
        """Whether the recording ``source`` (an EDF path relative to the split) may be missing
        from this listing only because the walk could not read it.

        True when ``source`` is an unreadable path, lies in an unreadable folder, or has an
        unreadable annotation file beside it: such a recording has not vanished, and whatever
        was built from it should be kept until a walk can read it again.
        """
        folder, _, name = source.rpartition("/")
        beside = {f"{folder}/{n}" if folder else n for n in annotation_names(name)}
        for line in self.unreadable:
            path = line.partition(": ")[0]
            if path in (".", source) or source.startswith(path + "/") or path in beside:
                return True
        return False


def list_recordings(data_dir: Path, snapshot_dir: Path | None = None) -> SplitListing:
    """Every ``*.edf`` under ``data_dir`` (recursive) with its annotation and fingerprints.

    With ``snapshot_dir`` (the split's state folder: its cache folder), the walk reuses the folder
    listings recorded there (:data:`SNAPSHOT_NAME`) for every folder whose mtime has not moved,
    and records the new ones if any folder was listed again. A missing ``data_dir`` gives an empty
    listing. A file that vanishes while the folder is walked is simply not listed (the next walk
    sees the folder as it is then). A folder or file that cannot be read is reported in
    :attr:`SplitListing.unreadable` and the walk goes on; it never raises for one.
    """
    data_dir = Path(data_dir)
    started = time.time()
    before = _read_snapshot(snapshot_dir, data_dir) if snapshot_dir is not None else None
    after: dict[str, list] = {}
    walk = _Walk(os.path.realpath(data_dir), before, after)
    walk.folder(str(data_dir), "")  # a missing data_dir lists as an empty folder
    walk.judge_links()
    recordings = sorted(walk.recordings, key=_path_order)
    if snapshot_dir is not None and after != before and Path(snapshot_dir).is_dir():
        _write_snapshot(snapshot_dir, data_dir, after)
    return SplitListing(data_dir=data_dir, recordings=tuple(recordings),
                        ignored=tuple(sorted(walk.ignored)),
                        unreadable=tuple(sorted(walk.unreadable)), listed_at=started)


def _path_order(recording: Recording) -> list[str]:
    return recording.source.split("/")  # as paths sort: folder by folder


def recording_at(path: Path, source: str) -> Recording:
    """One recording by its path, fingerprinted now (a build container on another mount of the
    same files, which has no listing of its own)."""
    path = Path(path)
    edf = _fingerprint(str(path), os.stat(path))
    for name in annotation_names(path.name):
        candidate = path.with_name(name)
        if candidate.is_file():
            return Recording(source, path, edf, name,
                             _fingerprint(str(candidate), os.stat(candidate)))
    return Recording(source, path, edf)


# The kinds of a folder's entries, as its directory listing gives them (no stat).
_FOLDER, _FILE, _LINK = "d", "f", "l"


class _Walk:
    """One walk of a split folder, folder by folder.

    Each folder costs one ``stat`` when a snapshot is in use and its listing there is still good,
    else one ``scandir``; each EDF and its chosen annotation one ``stat`` each. EDF symlinks are
    set aside and judged once every EDF reached directly is known (:meth:`judge_links`).
    """

    def __init__(self, root: str, before: dict[str, list] | None, after: dict[str, list]):
        self.root, self.before, self.after = root, before, after
        self.recordings: list[Recording] = []
        self.ignored: list[str] = []
        self.unreadable: list[str] = []
        #: Sources of the EDFs reached through real folders, listed or not (unreadable).
        self.reached: set[str] = set()
        #: ``(target source, recording)`` of the EDF symlinks into the split.
        self.links: list[tuple[str, Recording]] = []

    def folder(self, folder: str, prefix: str) -> None:
        kinds = self._entries(folder, prefix)
        if kinds is None:
            return  # removed while walked, or unreadable (reported)
        for name, kind in kinds.items():
            source, path = prefix + name, os.path.join(folder, name)
            target = ""
            if kind == _LINK:
                reason, target = _symlink(path, name, self.root)
                if reason:
                    self.ignored.append(f"{source}: {reason}")
                    continue
            if kind == _FOLDER:
                self.folder(path, source + "/")
                continue
            if kind not in (_FILE, _LINK) or not name.lower().endswith(EDF_SUFFIX):
                continue
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                self._unreadable(source, exc)
                if kind == _FILE:
                    self.reached.add(source)
                continue
            if kind == _FILE:
                self.reached.add(source)
            chosen = self._annotation(folder, prefix, name, kinds)
            if chosen is None:
                continue  # its annotation is unreadable: labelled from neither file for now
            recording = Recording(source=source, path=Path(path), edf=_fingerprint(path, st),
                                  annotation_name=chosen[0], annotation=chosen[1])
            if kind == _LINK:
                self.links.append((target, recording))
            else:
                self.recordings.append(recording)

    def judge_links(self) -> None:
        """List each EDF symlink whose target the walk does not reach otherwise, once.

        A link to an EDF reached directly would build that recording a second time under another
        name; of several links to one file reached no other way, the first (in path order) is
        listed and the others are ignored.
        """
        listed = {r.source for r in self.recordings}
        taken: dict[str, str] = {}
        for target, recording in sorted(self.links, key=lambda link: _path_order(link[1])):
            if target in listed:
                self.ignored.append(f"{recording.source}: symlink to {target}, listed there")
            elif target in self.reached:
                self.ignored.append(f"{recording.source}: symlink to {target}, reached "
                                    "directly (and unreadable there)")
            elif target in taken:
                self.ignored.append(f"{recording.source}: symlink to {target}, listed as "
                                    f"{taken[target]}")
            else:
                taken[target] = recording.source
                self.recordings.append(recording)

    def _entries(self, folder: str, prefix: str) -> dict[str, str] | None:
        """``{name: kind}`` of the folder: from the snapshot when its mtime is where the
        snapshot's listing saw it, else listed now; ``None`` when it is gone or unreadable."""
        mtime_ns = listed_ns = 0
        try:
            if self.before is not None:
                mtime_ns = os.stat(folder).st_mtime_ns
                known = self.before.get(prefix)
                if known is not None and known[0] == mtime_ns \
                        and known[1] - mtime_ns >= RACY_MARGIN_NS:
                    self.after[prefix] = known
                    return known[2]
                # Taken before the listing: a change after it can only move the mtime if the
                # listing started a full timestamp tick after the folder's last change.
                listed_ns = time.time_ns()
            with os.scandir(folder) as listing:
                kinds = {entry.name: _kind(entry) for entry in listing}
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            # Not recorded in the snapshot (self.after): the next walk lists it again, where
            # an empty listing kept here would hide its recordings until its mtime moved.
            self._unreadable(prefix.rstrip("/"), exc)
            return None
        if self.before is not None:
            self.after[prefix] = [mtime_ns, listed_ns, kinds]
        return kinds

    def _annotation(self, folder: str, prefix: str, edf_name: str, kinds: dict[str, str]
                    ) -> tuple[str, FileFingerprint | None] | None:
        """The chosen annotation's name and fingerprint (``("", None)`` without one); ``None``
        when the preferred one present cannot be read (reported)."""
        for name in annotation_names(edf_name):
            kind = kinds.get(name)
            path = os.path.join(folder, name)
            if kind != _FILE and not (kind == _LINK and os.path.isfile(path)):
                continue
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                # Falling back to the .csv would label the recording from the file the rule
                # ranks second, silently; it is tried again at the next walk instead.
                self._unreadable(prefix + name, exc)
                return None
            return name, _fingerprint(path, st)
        return "", None

    def _unreadable(self, source: str, exc: OSError) -> None:
        self.unreadable.append(f"{source or '.'}: {exc.strerror or exc}")


def _kind(entry: os.DirEntry) -> str:
    if entry.is_symlink():
        return _LINK
    if entry.is_dir(follow_symlinks=False):
        return _FOLDER
    return _FILE if entry.is_file(follow_symlinks=False) else ""


def _symlink(path: str, name: str, root: str) -> tuple[str, str]:
    """Why a symlink is not used ("" when it is not ruled out here) and, for an EDF symlink into
    the split, its target's path relative to the split (POSIX), the source it would have if the
    walk reached it directly."""
    target = os.path.realpath(path)
    if os.path.isdir(path):
        return f"symlinked folder (to {target}), not followed", ""
    if not name.lower().endswith(EDF_SUFFIX):
        return "", ""  # an annotation or any other file: judged with its recording, or not at all
    if target != root and not target.startswith(root + os.sep):
        return f"symlink to {target} outside {root}", ""
    if not os.path.exists(target):
        return "broken symlink", ""
    return "", PurePath(os.path.relpath(target, root)).as_posix()


def _read_snapshot(snapshot_dir: Path, data_dir: Path) -> dict[str, list]:
    """The folder listings recorded for ``data_dir``; ``{}`` when none (or unreadable)."""
    try:
        payload = json.loads((Path(snapshot_dir) / SNAPSHOT_NAME).read_bytes())
        if payload.get("format") == SNAPSHOT_FORMAT \
                and payload.get("data_dir") == str(data_dir.absolute()):
            return payload["folders"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return {}


def _write_snapshot(snapshot_dir: Path, data_dir: Path, folders: dict[str, list]) -> None:
    payload = {"format": SNAPSHOT_FORMAT, "data_dir": str(data_dir.absolute()),
               "folders": folders}
    try:
        write_bytes_atomic(Path(snapshot_dir) / SNAPSHOT_NAME,
                           json.dumps(payload, separators=(",", ":")).encode())
    except OSError:
        pass  # a cache: the next walk lists the folders again


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
               "ignored": list(listing.ignored), "unreadable": list(listing.unreadable),
               "recordings": rows,
               "npz": None if listing.npz is None else [list(row) for row in listing.npz]}
    path = Path(cache_dir) / LISTING_NAME
    write_bytes_atomic(path, json.dumps(payload, separators=(",", ":")).encode())
    return path


def read_listing(cache_dir: Path) -> SplitListing | None:
    """The listing recorded in ``cache_dir``; ``None`` when there is none or it is unreadable."""
    payload = _listing_payload(cache_dir)
    if payload is None:
        return None
    try:
        data_dir = Path(payload["data_dir"])
        recordings = tuple(
            Recording(source=source, path=data_dir / source, edf=FileFingerprint(size, mtime),
                      annotation_name=name,
                      annotation=FileFingerprint(a_size, a_mtime) if name else None)
            for source, size, mtime, name, a_size, a_mtime in payload["recordings"])
        npz = payload.get("npz")
        return SplitListing(data_dir=data_dir, recordings=recordings,
                            ignored=tuple(payload["ignored"]),
                            # absent from the listings recorded before it was reported
                            unreadable=tuple(payload.get("unreadable", ())),
                            run_tag=payload["run_tag"],
                            listed_at=float(payload["listed_at"]),
                            npz=None if npz is None else tuple((n, f) for n, f in npz))
    except (ValueError, KeyError, TypeError):
        return None


def recorded_npz(cache_dir: Path, run_tag: str | None) -> tuple[tuple[str, str], ...] | None:
    """The NPZs (name, fingerprint) this run's build left in ``cache_dir``, so that the run's
    later steps and checks need no ``stat`` per file; ``None`` without a build in this run."""
    payload = _listing_payload(cache_dir) if run_tag else None
    if payload is None or payload.get("run_tag") != run_tag or payload.get("npz") is None:
        return None
    try:  # not the recordings: a step that needs only the NPZs does not build 7,364 of them
        return tuple((name, fingerprint) for name, fingerprint in payload["npz"])
    except (TypeError, ValueError):
        return None


def _listing_payload(cache_dir: Path) -> dict | None:
    try:
        payload = json.loads((Path(cache_dir) / LISTING_NAME).read_bytes())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("format") == LISTING_FORMAT \
        else None


def listing_for(data_dir: Path, cache_dir: Path, run_tag: str | None = None
                ) -> tuple[SplitListing, str]:
    """The recordings of ``data_dir`` without walking it again where a build recorded them.

    The listing recorded in ``cache_dir`` is used when it lists the same folder and, if
    ``run_tag`` is given, was recorded under that tag (the same run); otherwise the folder is
    walked now (a split never built, or a check run on its own). Returns the listing and where
    it came from, in words.
    """
    recorded = recorded_listing(data_dir, cache_dir, run_tag)
    if recorded is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(recorded.listed_at))
        return recorded, f"listing recorded by the build of {when}"
    why = "no listing recorded by this run" if run_tag is not None else "none recorded"
    return list_recordings(data_dir), f"walked now ({why})"


def recorded_listing(data_dir: Path, cache_dir: Path, run_tag: str | None = None
                     ) -> SplitListing | None:
    """The listing of ``data_dir`` recorded in ``cache_dir`` (under ``run_tag`` if given)."""
    recorded = read_listing(cache_dir)
    if (recorded is not None and recorded.data_dir == Path(data_dir).absolute()
            and (run_tag is None or recorded.run_tag == run_tag)):
        return recorded
    return None
