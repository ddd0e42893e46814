"""Per-file facts of a cache split and the dataset index (``_dataset_index.json``) built from them.

The facts of an NPZ are its name, fingerprint, window count and per-window seizure sample counts.
They come from the build ledger, which recorded them when the NPZ was written, for every NPZ whose
on-disk fingerprint and config version still match that record. Only an NPZ the ledger does not
describe (foreign, or rewritten behind the builder's back) is opened, and then only its headers
and its ``labels`` array. Both the index and the manifest are pure functions of these facts, so
"is it current?" is answered exactly by comparing a stored file with what the facts give now.

Index format (``_dataset_index.json``, one JSON object; lists aligned and sorted by NPZ name)::

    {"files": ["<stem>_windows.npz", ...],     # the upstream keys
     "window_counts": [int, ...],
     "fingerprints": ["size:mtime_ns", ...],  # provenance: the NPZ the counts describe
     "config_versions": [str | null, ...],    # the ledger's config version; null = not in ledger
     "labelled": [bool, ...],                 # has a ``labels`` array
     "config_version": str,                   # CacheConfig version the index was derived under
     "format": 1}
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.layout import (
    CONTINUOUS, cache_files_on_disk, fingerprint_of, layout_of, scan_continuous,
)
from eeg_assets.lib.cache.ledger import RecordingEntry, built_entries
from eeg_assets.lib.cache.npzio import (
    NpzFormatError,
    member_names,
    member_shape,
    open_member,
)
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.files import write_bytes_atomic

INDEX_NAME = "_dataset_index.json"
INDEX_FORMAT = 1

#: Elements of ``labels`` counted per step of a scan: bounds the temporary boolean array.
_SCAN_CHUNK_ELEMENTS = 1 << 24


class DatasetError(Exception):
    """A split's cache cannot give a dataset; the message says what to do."""


class StaleCacheError(DatasetError):
    """NPZs on disk were built with another configuration: rebuild the cache, not just the lists."""


class IndexFileError(DatasetError):
    """``_dataset_index.json`` is missing or unreadable."""


Log = Callable[[str], None]


@dataclass(frozen=True)
class NpzFacts:
    """What the index and the manifest need to know about one NPZ."""

    npz_name: str
    fingerprint: str
    n_windows: int
    #: Samples per label row (the denominator of a window's seizure fraction).
    window_samples: int
    #: Per window, how many label samples are > 0; ``None`` when the NPZ has no ``labels`` array.
    seizure_samples: tuple[int, ...] | None
    #: Config version the ledger recorded for this exact file; ``None`` when the ledger has no
    #: record of this file as it is on disk.
    config_version: str | None

    @property
    def labelled(self) -> bool:
        return self.seizure_samples is not None


@dataclass(frozen=True)
class SplitFacts:
    """Facts of every NPZ in a split folder, sorted by NPZ name."""

    cache_dir: Path
    config_version: str
    files: tuple[NpzFacts, ...]
    #: NPZs whose facts were read from their labels rather than taken from the ledger.
    scanned: tuple[str, ...]
    #: Scanned NPZs whose labels contradict the ledger's record of the same file.
    ledger_disagreements: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.npz_name for f in self.files)

    @property
    def unlabelled(self) -> tuple[str, ...]:
        return tuple(f.npz_name for f in self.files if not f.labelled)

    @property
    def config_stale(self) -> tuple[str, ...]:
        """NPZs that the ledger says were built with a different configuration."""
        return tuple(f.npz_name for f in self.files
                     if f.config_version is not None and f.config_version != self.config_version)

    def restricted_to(self, names: tuple[str, ...] | list[str]) -> tuple[NpzFacts, ...]:
        wanted = set(names)
        return tuple(f for f in self.files if f.npz_name in wanted)


# ------------------------------------------------------------------------------------------------
# Facts
# ------------------------------------------------------------------------------------------------

def collect_facts(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG, *,
                  scan_all: bool = False,
                  on_disk: Iterable[tuple[str, str]] | None = None) -> SplitFacts:
    """The facts of every NPZ in ``cache_dir``.

    By default the ledger supplies the facts of each NPZ it describes exactly (same fingerprint,
    same config version); others are scanned. ``scan_all`` reads every NPZ's labels instead (the
    full rescan of ``scan-cache``) and reports NPZs whose labels disagree with the ledger.
    ``on_disk`` gives the NPZs' ``(name, fingerprint)`` where a build of the same run recorded them
    (:func:`~eeg_assets.lib.cache.discovery.recorded_npz`); by default the folder is listed and
    each NPZ stat-ed.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise DatasetError(f"cache folder {cache_dir} does not exist")
    version = config.version()
    recorded = {entry.npz_name: entry for entry in built_entries(cache_dir)}
    files, scanned, disagreements = [], [], []
    for name, fingerprint in (sorted(on_disk) if on_disk is not None
                              else _npz_on_disk(cache_dir)):
        entry = recorded.get(name)
        if entry is not None and entry.npz_fingerprint != fingerprint:
            entry = None  # the file was replaced after the ledger recorded it
        if entry is not None and entry.config_version == version and not scan_all:
            files.append(_facts_from_ledger(entry, config))
            continue
        facts = scan_npz(cache_dir / name, fingerprint,
                         entry.config_version if entry is not None else None, config)
        scanned.append(name)
        if entry is not None and not _agrees(entry, facts):
            disagreements.append(name)
        files.append(facts)
    return SplitFacts(cache_dir=cache_dir, config_version=version, files=tuple(files),
                      scanned=tuple(scanned), ledger_disagreements=tuple(disagreements))


def _npz_on_disk(cache_dir: Path) -> list[tuple[str, str]]:
    """``(name, fingerprint)`` of the split's cache files of either layout (any NPZ counts, ours
    or foreign), by name; temporary files start with a dot."""
    return list(cache_files_on_disk(cache_dir).items())


def _facts_from_ledger(entry: RecordingEntry, config: CacheConfig) -> NpzFacts:
    if len(entry.seizure_samples) != entry.n_windows:
        raise DatasetError(
            f"ledger entry of {entry.npz_name} lists {len(entry.seizure_samples)} seizure counts "
            f"for {entry.n_windows} windows; rebuild the split with build-cache")
    return NpzFacts(npz_name=entry.npz_name, fingerprint=entry.npz_fingerprint,
                    n_windows=entry.n_windows, window_samples=config.window_samples,
                    seizure_samples=tuple(entry.seizure_samples),
                    config_version=entry.config_version)


def _agrees(entry: RecordingEntry, facts: NpzFacts) -> bool:
    return (entry.n_windows == facts.n_windows
            and facts.seizure_samples == tuple(entry.seizure_samples))


def scan_npz(path: Path, fingerprint: str | None = None,
             config_version: str | None = None, config: CacheConfig = DEFAULT_CONFIG) -> NpzFacts:
    """Facts of one cache file from its headers and its labels (never its windows' data)."""
    path = Path(path)
    if fingerprint is None:
        fingerprint = fingerprint_of(path)
    if layout_of(path.name) == CONTINUOUS:
        return continuous_facts(path, fingerprint, config_version, config)
    try:
        members = member_names(path)
        if "windows" not in members:
            raise NpzFormatError(f"{path}: no 'windows' array (members: {', '.join(members)})")
        windows_shape, _dtype = member_shape(path, "windows")
        counts = _label_counts(path, windows_shape) if "labels" in members else None
    except zipfile.BadZipFile as exc:
        raise NpzFormatError(f"{path}: not a readable NPZ ({exc})") from None
    return NpzFacts(
        npz_name=path.name,
        fingerprint=fingerprint,
        n_windows=int(windows_shape[0]),
        window_samples=counts[1] if counts is not None else int(windows_shape[-1]),
        seizure_samples=counts[0] if counts is not None else None,
        config_version=config_version,
    )


def continuous_facts(path: Path, fingerprint: str, config_version: str | None,
                     config: CacheConfig, labels_crc: int | None = None) -> NpzFacts:
    """Facts of one continuous cache file from its labels file, read through ``labels_crc``
    when one is given (:func:`~eeg_assets.lib.cache.layout.scan_continuous`)."""
    counts = scan_continuous(path, config, labels_crc)
    return NpzFacts(npz_name=Path(path).name, fingerprint=fingerprint, n_windows=len(counts),
                    window_samples=config.window_samples, seizure_samples=counts,
                    config_version=config_version)


def _label_counts(path: Path, windows_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    labels = open_member(path, "labels")
    if labels.ndim != 2 or labels.shape[0] != windows_shape[0]:
        raise NpzFormatError(f"{path}: labels shape {labels.shape} does not match windows "
                             f"shape {windows_shape}")
    rows_per_step = max(1, _SCAN_CHUNK_ELEMENTS // max(1, labels.shape[1]))
    counts: list[int] = []
    for start in range(0, labels.shape[0], rows_per_step):
        counts.extend(np.count_nonzero(labels[start:start + rows_per_step] > 0, axis=1).tolist())
    return tuple(counts), int(labels.shape[1])


def require_current_config(facts: SplitFacts) -> None:
    """Refuse a split whose NPZs were built with another configuration."""
    reason = config_change_reason(facts)
    if reason:
        raise StaleCacheError(f"{facts.cache_dir}: {reason}; rebuild the cache with build-cache")


def config_change_reason(facts: SplitFacts) -> str | None:
    stale = facts.config_stale
    if not stale:
        return None
    by_name = {f.npz_name: f for f in facts.files}
    versions = sorted({by_name[name].config_version for name in stale})
    return (f"config change: {name_list(stale)} built with config version {', '.join(versions)}, "
            f"current is {facts.config_version}")


# ------------------------------------------------------------------------------------------------
# Staleness wording shared by the index and the manifest
# ------------------------------------------------------------------------------------------------

def file_differences(stored: Mapping[str, object], current: Mapping[str, object],
                     on_disk: set[str] | frozenset[str], what: str) -> list[str]:
    """Reasons why a stored per-file description differs from the current one.

    ``stored`` and ``current`` map an NPZ name to its description; ``what`` names the stored file.
    """
    missing = sorted(n for n in stored if n not in on_disk)
    extra = sorted(n for n in current if n not in stored)
    changed = sorted(n for n in stored if n in on_disk and stored[n] != current.get(n))
    reasons = []
    if missing:
        reasons.append(f"missing NPZ (in {what}, not on disk): {name_list(missing)}")
    if extra:
        reasons.append(f"extra NPZ (on disk, not in {what}): {name_list(extra)}")
    if changed:
        reasons.append(f"changed NPZ (rewritten since {what} was made, or the config's "
                       f"thresholds changed): {name_list(changed)}")
    return reasons


def name_list(names, shown: int = 5) -> str:
    """Names for a message, as ``N file(s): a, b, ... (+k more)``."""
    names = list(names)
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return f"{len(names)} file(s): {', '.join(names[:shown])}{more}"


def dumps_canonical(obj: object) -> bytes:
    """The one fixed JSON format of the index and the manifest (byte-stable for equal content)."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n").encode()


# ------------------------------------------------------------------------------------------------
# The dataset index
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetIndex:
    """``_dataset_index.json``: every NPZ of a split with its window count and provenance."""

    files: tuple[str, ...]
    window_counts: tuple[int, ...]
    fingerprints: tuple[str, ...]
    config_versions: tuple[str | None, ...]
    labelled: tuple[bool, ...]
    config_version: str

    @classmethod
    def from_facts(cls, facts: SplitFacts) -> DatasetIndex:
        return cls(
            files=facts.names,
            window_counts=tuple(f.n_windows for f in facts.files),
            fingerprints=tuple(f.fingerprint for f in facts.files),
            config_versions=tuple(f.config_version for f in facts.files),
            labelled=tuple(f.labelled for f in facts.files),
            config_version=facts.config_version,
        )

    @classmethod
    def from_json(cls, data: dict) -> DatasetIndex:
        columns = ("files", "window_counts", "fingerprints", "config_versions", "labelled")
        if data.get("format") != INDEX_FORMAT or not all(isinstance(data.get(c), list)
                                                          for c in columns):
            raise ValueError(f"not a format-{INDEX_FORMAT} index with {', '.join(columns)}")
        if len({len(data[c]) for c in columns}) != 1:
            raise ValueError("its per-file lists have different lengths")
        if not isinstance(data.get("config_version"), str):
            raise ValueError("no config_version")
        return cls(**{c: tuple(data[c]) for c in columns},
                   config_version=data["config_version"])

    def to_json(self) -> dict:
        return {
            "files": list(self.files),
            "window_counts": list(self.window_counts),
            "fingerprints": list(self.fingerprints),
            "config_versions": list(self.config_versions),
            "labelled": list(self.labelled),
            "config_version": self.config_version,
            "format": INDEX_FORMAT,
        }

    @property
    def total_windows(self) -> int:
        return sum(self.window_counts)

    def recordings(self) -> list[tuple[str, int]]:
        """``(npz_name, n_windows)`` in the index's stable order."""
        return list(zip(self.files, self.window_counts))

    def first_files(self, limit: int | None) -> tuple[str, ...]:
        """The files that BGB_LIMIT_FILES / BGB_SMOKE_TEST keep: the first ``limit`` by name."""
        return self.files if limit is None else self.files[:limit]

    def per_file(self) -> dict[str, tuple]:
        return {name: row for name, *row in zip(self.files, self.window_counts, self.fingerprints,
                                                self.config_versions, self.labelled)}


def read_index(cache_dir: Path) -> DatasetIndex:
    path = Path(cache_dir) / INDEX_NAME
    try:
        return DatasetIndex.from_json(json.loads(path.read_bytes()))
    except FileNotFoundError:
        raise IndexFileError(f"missing {INDEX_NAME}") from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise IndexFileError(f"corrupt {INDEX_NAME}: {exc}") from None


def write_index(cache_dir: Path, index: DatasetIndex) -> Path:
    path = Path(cache_dir) / INDEX_NAME
    write_bytes_atomic(path, dumps_canonical(index.to_json()))
    return path


def update_index(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                 facts: SplitFacts | None = None) -> DatasetIndex:
    """Rewrite the index from the recorded facts (no NPZ opened unless the ledger lacks it)."""
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    index = DatasetIndex.from_facts(facts)
    write_index(cache_dir, index)
    return index


def index_staleness(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                    facts: SplitFacts | None = None) -> str | None:
    """``None`` when the stored index equals the one the current facts give, else why not."""
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    current = DatasetIndex.from_facts(facts)
    try:
        stored = read_index(cache_dir)
    except IndexFileError as exc:
        return str(exc)
    reasons = []
    if stored.config_version != current.config_version:
        reasons.append(f"config change: index made under config version {stored.config_version}, "
                       f"current is {current.config_version}")
    reasons += [r for r in [config_change_reason(facts)] if r]
    reasons += file_differences(stored.per_file(), current.per_file(), set(current.files),
                                INDEX_NAME)
    if not reasons and stored != current:
        reasons.append(f"{INDEX_NAME} is not in canonical order")
    return "; ".join(reasons) or None


def ensure_index(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG, *,
                 facts: SplitFacts | None = None, log: Log = print) -> DatasetIndex:
    """The current index of a split, rewritten first when missing or stale.

    Raises :class:`StaleCacheError` when NPZs were built with another configuration.
    """
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    reason = index_staleness(cache_dir, config, facts)
    if reason:
        log(f"[INDEX] rebuilding {INDEX_NAME} from recorded facts: {reason}")
        index = update_index(cache_dir, config, facts)
    else:
        index = DatasetIndex.from_facts(facts)
    require_current_config(facts)
    return index
