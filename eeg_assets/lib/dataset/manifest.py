"""The window manifest (``manifest.json``): every labelled window of a split, by category.

Format (the upstream one of docs/cache-format.md, nothing added)::

    {"partial_seizure": [{"cache_file": "<name>.npz", "window_idx": <int>}, ...],
     "full_seizure": [...], "no_seizure": [...]}

Entries are ordered by NPZ name, then window index, and serialised in one fixed JSON format, so
the incremental path (facts recorded by the ledger) and the full rescan (``scan-cache``, reading
only ``labels``) write byte-identical files. The rescan checks each ``labels`` array against the
CRC-32 its zip records and takes no label from an NPZ whose bytes fail it. Both go through
:class:`ManifestTable`, whose categories come from :func:`window_categories`.

A manifest is current when its content equals the manifest derived from the current facts (see
:mod:`eeg_assets.lib.dataset.index`) and no NPZ was built with another configuration; anything else is
stale, with a reason that says which case it is.

At TUSZ train size the file is ~21 MB (~327,000 windows) and parsing it costs far more than
deriving it again from the facts, so its readers (:func:`check_manifest`,
:func:`read_manifest_table`) compare the stored bytes with the derived ones and parse the JSON only
when they differ.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import chain
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.layout import (
    CONTINUOUS, file_kind, layout_of, recorded_checksums,
)
from eeg_assets.lib.cache.ledger import RecordingEntry, built_entries
from eeg_assets.lib.cache.npzio import (
    NpzChecksumError,
    NpzFormatError,
    locate_member,
    member_names,
    member_shape,
    read_member_chunks,
)
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.dataset.index import (
    INDEX_NAME,
    DatasetError,
    Log,
    NpzFacts,
    SplitFacts,
    _agrees,
    _npz_on_disk,
    collect_facts,
    continuous_facts,
    config_change_reason,
    dumps_canonical,
    file_differences,
    name_list,
    require_current_config,
    update_index,
)
from eeg_assets.lib.files import bytes_version, write_bytes_atomic

MANIFEST_NAME = "manifest.json"
PARTIAL = "partial_seizure"
FULL = "full_seizure"
NO_SEIZURE = "no_seizure"
#: Key order of the JSON file; also the meaning of the codes from :func:`window_categories`.
CATEGORIES = (PARTIAL, FULL, NO_SEIZURE)
_ENTRY_KEYS = {"cache_file", "window_idx"}

Manifest = dict[str, list[dict]]


class ManifestError(DatasetError):
    """No usable manifest: missing, corrupt, or nothing to put in it."""


def window_categories(seizure_samples: Sequence[int] | np.ndarray,
                      window_samples: int | np.ndarray, full_fraction: float) -> np.ndarray:
    """Category code per window (an index into :data:`CATEGORIES`), from exact sample counts.

    ``r = seizure_samples / window_samples``: ``no_seizure`` when r == 0, ``full_seizure`` when
    r >= ``full_fraction``, else ``partial_seizure``. The threshold is taken as the decimal it is
    written as (0.99 = 99/100) and compared in integers, so no window sits on a rounding edge.
    ``window_samples`` may be one number or one per window.
    """
    counts = np.asarray(seizure_samples, dtype=np.int64)
    if np.any((counts < 0) | (counts > window_samples)):
        raise ValueError("seizure sample counts must lie in [0, window_samples]")
    threshold = Fraction(repr(float(full_fraction)))
    full = counts * threshold.denominator >= threshold.numerator * np.asarray(window_samples)
    codes = np.where(full, CATEGORIES.index(FULL), CATEGORIES.index(PARTIAL))
    return np.where(counts == 0, CATEGORIES.index(NO_SEIZURE), codes).astype(np.int8)


@dataclass(frozen=True)
class ManifestTable:
    """The manifest as arrays: every labelled window, by NPZ name then index, with its category.

    Deriving, counting and serialising a split of hundreds of thousands of windows this way takes
    a fraction of what the equivalent list of dicts does, which keeps the incremental update fast.
    """

    names: tuple[str, ...]
    #: Per window: index into ``names``, window index in that NPZ, category code.
    file_ids: np.ndarray
    window_idx: np.ndarray
    codes: np.ndarray

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ManifestTable:
        """The windows of a parsed manifest, in its order within each category."""
        names = sorted({e["cache_file"] for category in CATEGORIES for e in manifest[category]})
        ids = {name: i for i, name in enumerate(names)}
        file_ids, window_idx, codes = [], [], []
        for code, category in enumerate(CATEGORIES):
            for entry in manifest[category]:
                file_ids.append(ids[entry["cache_file"]])
                window_idx.append(entry["window_idx"])
                codes.append(code)
        return cls(names=tuple(names), file_ids=np.array(file_ids, dtype=np.int64),
                   window_idx=np.array(window_idx, dtype=np.int64),
                   codes=np.array(codes, dtype=np.int8))

    @classmethod
    def from_facts(cls, files: Iterable[NpzFacts], config: CacheConfig = DEFAULT_CONFIG
                   ) -> ManifestTable:
        """Categories of every window of the labelled NPZs; NPZs without labels are left out."""
        labelled = sorted((f for f in files if f.labelled), key=lambda f: f.npz_name)
        lengths = np.array([len(f.seizure_samples) for f in labelled], dtype=np.int64)
        total = int(lengths.sum())
        counts = np.fromiter(chain.from_iterable(f.seizure_samples for f in labelled),
                             dtype=np.int64, count=total)
        window_samples = np.repeat([f.window_samples for f in labelled], lengths)
        starts = np.cumsum(lengths) - lengths
        return cls(
            names=tuple(f.npz_name for f in labelled),
            file_ids=np.repeat(np.arange(len(labelled)), lengths),
            window_idx=np.arange(total) - np.repeat(starts, lengths),
            codes=window_categories(counts, window_samples, config.full_seizure_fraction),
        )

    def __len__(self) -> int:
        return len(self.codes)

    def counts(self) -> dict[str, int]:
        return dict(zip(CATEGORIES, np.bincount(self.codes, minlength=len(CATEGORIES)).tolist()))

    def first(self, category: str) -> tuple[str, int] | None:
        """``(cache_file, window_idx)`` of the category's first window, ``None`` when it has none."""
        positions = np.flatnonzero(self.codes == CATEGORIES.index(category))
        if not len(positions):
            return None
        return self.names[self.file_ids[positions[0]]], int(self.window_idx[positions[0]])

    def _category(self, code: int) -> tuple[list[int], list[int]]:
        selected = self.codes == code
        return self.file_ids[selected].tolist(), self.window_idx[selected].tolist()

    def to_manifest(self) -> Manifest:
        manifest: Manifest = {}
        for code, category in enumerate(CATEGORIES):
            file_ids, window_idx = self._category(code)
            manifest[category] = [{"cache_file": self.names[f], "window_idx": i}
                                  for f, i in zip(file_ids, window_idx)]
        return manifest

    def to_bytes(self) -> bytes:
        """Exactly ``dumps_canonical(self.to_manifest())``, written a run of one NPZ at a time."""
        prefixes = [f'{{"cache_file":{json.dumps(name)},"window_idx":' for name in self.names]
        numbers = [str(i) for i in range(int(self.window_idx.max()) + 1)] if len(self) else []
        categories = []
        for code, category in enumerate(CATEGORIES):
            file_ids, window_idx = self._category(code)
            texts = list(map(numbers.__getitem__, window_idx))  # int -> str once per index value
            runs = []
            for start, stop in _runs(file_ids):
                prefix = prefixes[file_ids[start]]
                runs.append(prefix + ("}," + prefix).join(texts[start:stop]) + "}")
            categories.append(f"{json.dumps(category)}:[{','.join(runs)}]")
        return ("{" + ",".join(categories) + "}\n").encode()


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal consecutive values."""
    if not values:
        return []
    edges = (np.flatnonzero(np.diff(values)) + 1).tolist()
    return list(zip([0, *edges], [*edges, len(values)]))


def count_categories(files: Iterable[NpzFacts], config: CacheConfig = DEFAULT_CONFIG
                     ) -> dict[str, int]:
    """Windows per category over the labelled NPZs among ``files``."""
    return ManifestTable.from_facts(files, config).counts()


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical serialisation of any manifest (the format :meth:`ManifestTable.to_bytes`
    writes)."""
    return dumps_canonical({category: manifest[category] for category in CATEGORIES})


def category_counts(manifest: Manifest) -> dict[str, int]:
    return {category: len(manifest[category]) for category in CATEGORIES}


def read_manifest(cache_dir: Path) -> Manifest:
    """The stored manifest, checked against the schema of docs/cache-format.md."""
    return _parse_manifest(_stored_bytes(cache_dir))


def read_manifest_table(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                        facts: SplitFacts | None = None) -> tuple[ManifestTable, str]:
    """The stored manifest as a table, and the content version of its bytes.

    When the stored bytes are exactly the ones the recorded facts give (the usual case), the
    table is the one derived from the facts and the JSON is not parsed; otherwise (a stale
    manifest, facts that cannot be collected) it is parsed once.
    """
    raw = _stored_bytes(cache_dir)
    try:
        facts = facts if facts is not None else collect_facts(cache_dir, config)
        table = ManifestTable.from_facts(facts.files, config)
    except (DatasetError, NpzFormatError):
        table = None
    if table is None or not len(table) or table.to_bytes() != raw:
        table = ManifestTable.from_manifest(_parse_manifest(raw))
    return table, bytes_version(raw)


def _stored_bytes(cache_dir: Path) -> bytes:
    try:
        return (Path(cache_dir) / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"missing {MANIFEST_NAME}") from None


def _parse_manifest(raw: bytes) -> Manifest:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(f"corrupt {MANIFEST_NAME}: {exc}") from None
    if not isinstance(data, dict) or set(data) != set(CATEGORIES):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"corrupt {MANIFEST_NAME}: keys {keys}, expected {list(CATEGORIES)}")
    for category in CATEGORIES:
        if not isinstance(data[category], list) or not all(
                _is_entry(entry) for entry in data[category]):
            raise ManifestError(f"corrupt {MANIFEST_NAME}: {category} is not a list of "
                                "{cache_file, window_idx} entries")
    return data


def _is_entry(entry: object) -> bool:
    return (isinstance(entry, dict) and entry.keys() == _ENTRY_KEYS
            and isinstance(entry["cache_file"], str)
            and type(entry["window_idx"]) is int)


def write_manifest(cache_dir: Path, table: ManifestTable) -> Path:
    """Write the table's manifest, unless the file already holds exactly those bytes (a no-op run
    then neither rewrites nor fsyncs ~21 MB)."""
    path = Path(cache_dir) / MANIFEST_NAME
    data = table.to_bytes()
    try:
        unchanged = path.read_bytes() == data
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        write_bytes_atomic(path, data)
    return path


def _per_file(manifest: Manifest) -> dict[str, tuple[tuple[int, str], ...]]:
    """NPZ name -> its sorted ``(window_idx, category)`` pairs: the manifest's content per file."""
    pairs: dict[str, list[tuple[int, str]]] = {}
    for category in CATEGORIES:
        for entry in manifest[category]:
            pairs.setdefault(entry["cache_file"], []).append((entry["window_idx"], category))
    return {name: tuple(sorted(rows)) for name, rows in pairs.items()}


def _staleness(cache_dir: Path, current: ManifestTable, facts: SplitFacts) -> str | None:
    path = Path(cache_dir) / MANIFEST_NAME
    config_reason = config_change_reason(facts)
    # The usual case is an untouched manifest: equal bytes mean equal content.
    if len(current) and path.is_file() and path.read_bytes() == current.to_bytes():
        return config_reason
    try:
        stored = read_manifest(cache_dir)
    except ManifestError as exc:
        return str(exc)
    if not any(stored.values()):
        return f"empty {MANIFEST_NAME}"
    reasons = [config_reason] if config_reason else []
    reasons += file_differences(_per_file(stored), _per_file(current.to_manifest()),
                                set(facts.names), MANIFEST_NAME)
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class ManifestCheck:
    #: ``None`` when ``manifest.json`` is current, else why not.
    reason: str | None
    #: Windows per category that the current facts give (the manifest's, when it is current).
    counts: dict[str, int]


def check_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                   facts: SplitFacts | None = None) -> ManifestCheck:
    """Whether ``manifest.json`` is current, and its counts, without parsing it when it is."""
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    table = ManifestTable.from_facts(facts.files, config)
    return ManifestCheck(_staleness(cache_dir, table, facts), table.counts())


def manifest_staleness(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                       facts: SplitFacts | None = None) -> str | None:
    """``None`` when ``manifest.json`` is current, else the reason (missing, empty, corrupt,
    missing NPZ, extra NPZ, changed NPZ, config change)."""
    return check_manifest(cache_dir, config, facts).reason


def manifest_warnings(facts: SplitFacts) -> list[str]:
    """Conditions a manifest writer reports but does not refuse."""
    warnings = []
    if facts.unlabelled:
        warnings.append(f"{name_list(facts.unlabelled)} without a 'labels' array excluded from "
                        f"the manifest (not counted as background)")
    if facts.ledger_disagreements:
        warnings.append(f"labels of {name_list(facts.ledger_disagreements)} disagree with the "
                        "build ledger's record of the same file; the manifest follows the labels")
    config_reason = config_change_reason(facts)
    if config_reason:
        warnings.append(f"{config_reason}; rebuild the cache with build-cache")
    return warnings


def _require_windows(facts: SplitFacts, table: ManifestTable) -> None:
    """An empty manifest is never written: it would describe a split with nothing to train on."""
    if len(table):
        return
    if not facts.files:
        raise ManifestError(f"no NPZ files in {facts.cache_dir}")
    raise ManifestError(f"none of the {len(facts.files)} NPZ files in {facts.cache_dir} has "
                        "labelled windows; the manifest would be empty")


def update_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                    facts: SplitFacts | None = None) -> Manifest:
    """Rewrite the manifest from the recorded per-file facts (the incremental path)."""
    return update_manifest_table(cache_dir, config, facts).to_manifest()


def update_manifest_table(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                          facts: SplitFacts | None = None) -> ManifestTable:
    """As :func:`update_manifest`, returning the table (no list of ~327,000 dicts to build)."""
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    table = ManifestTable.from_facts(facts.files, config)
    _require_windows(facts, table)
    write_manifest(cache_dir, table)
    return table


@dataclass(frozen=True)
class ScanResult:
    manifest: Manifest
    #: Facts of the NPZs the manifest and the index were written from (the damaged ones left out).
    facts: SplitFacts
    #: ``"<npz name>: <member> fails its CRC-32 check (...)"`` per NPZ whose labels were not
    #: taken because their bytes are not the ones written.
    damaged: tuple[str, ...] = ()


class DamagedNpzError(ManifestError):
    """A scan found NPZs whose ``labels`` fail their CRC-32 check, and took no labels from them.

    ``damaged`` lists them (as :attr:`ScanResult.damaged`); ``result`` is what was written from the
    other files, ``None`` when nothing was.
    """

    def __init__(self, message: str, damaged: tuple[str, ...], result: ScanResult | None):
        super().__init__(message)
        self.damaged, self.result = damaged, result


#: Bytes of ``labels`` read per step of a scan; a file's scan holds two such buffers.
_SCAN_CHUNK_BYTES = 4 << 20


def scan_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG) -> ScanResult:
    """Rebuild the manifest by reading every NPZ's ``labels`` (``scan-cache``).

    Each ``labels`` array is read once, and its bytes are checked against the CRC-32 the NPZ's zip
    records for them as they are counted (:func:`scan_facts`). The index is refreshed from the
    same facts, since they are at hand.

    Raises
    ------
    DamagedNpzError
        When the labels of some NPZs fail their CRC-32 check. No label of theirs is used: the
        manifest and the index are written from the other NPZs first (unless none of those has
        labelled windows), and the error names each damaged file and member.
    """
    facts, damaged = scan_facts(cache_dir, config)
    try:
        manifest = update_manifest(cache_dir, config, facts)
    except ManifestError as exc:
        if damaged:
            raise DamagedNpzError(_damaged_message(facts.cache_dir, damaged, f"nothing was "
                                                   f"written ({exc})"), damaged, None) from None
        raise
    update_index(cache_dir, config, facts)
    result = ScanResult(manifest=manifest, facts=facts, damaged=damaged)
    if damaged:
        written = (f"{MANIFEST_NAME} and {INDEX_NAME} were written without them "
                   f"({describe_counts(category_counts(manifest))})")
        raise DamagedNpzError(_damaged_message(facts.cache_dir, damaged, written), damaged,
                              result)
    return result


def _damaged_message(cache_dir: Path, damaged: tuple[str, ...], outcome: str) -> str:
    shown = 20  # each line names a file; the count says how many more
    more = [f"  ... and {len(damaged) - shown} more"] if len(damaged) > shown else []
    return "\n".join(
        [f"the labels of {len(damaged)} {file_kind(d.split(':')[0] for d in damaged)} file(s) "
         f"in {cache_dir} fail their CRC-32 check, so "
         "scan-cache took no labels from them:"]
        + [f"  {line}" for line in damaged[:shown]] + more
        + [f"{outcome}; delete them and run build-cache to rebuild them, then scan-cache again"])


def scan_facts(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG
               ) -> tuple[SplitFacts, tuple[str, ...]]:
    """The facts of every NPZ read from its ``labels``, checked against their CRC-32.

    As ``collect_facts(cache_dir, config, scan_all=True)``, but an NPZ whose labels fail their
    CRC-32 check is left out of the facts and described instead.

    Returns
    -------
    SplitFacts
        Of the NPZs with intact labels, and of those without a ``labels`` array.
    tuple of str
        ``"<npz name>: <member> fails its CRC-32 check (stored ..., read ...): ..."`` per NPZ left
        out, by name.

    Raises
    ------
    NpzFormatError
        For an NPZ that cannot be read at all (as ``collect_facts`` does).
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        raise DatasetError(f"cache folder {cache_dir} does not exist")
    recorded = {entry.npz_name: entry for entry in built_entries(cache_dir)}
    files, disagreements, damaged = [], [], []
    for name, fingerprint in _npz_on_disk(cache_dir):
        entry = recorded.get(name)
        if entry is not None and entry.npz_fingerprint != fingerprint:
            entry = None  # the file was replaced after the ledger recorded it
        try:
            facts = _scan_npz_checked(cache_dir / name, fingerprint, entry, config)
        except NpzChecksumError as exc:
            damaged.append(f"{name}: {exc.detail}")
            continue
        if entry is not None and not _agrees(entry, facts):
            disagreements.append(name)
        files.append(facts)
    split = SplitFacts(cache_dir=cache_dir, config_version=config.version(), files=tuple(files),
                       scanned=tuple(f.npz_name for f in files),
                       ledger_disagreements=tuple(disagreements))
    return split, tuple(damaged)


def _scan_npz_checked(path: Path, fingerprint: str, entry: RecordingEntry | None,
                      config: CacheConfig) -> NpzFacts:
    """As ``index.scan_npz``, reading the labels once through their CRC-32 check: the one the
    NPZ's zip records, or for a continuous cache file the one its ledger ``entry`` recorded when
    it was written (a file no entry describes is scanned unchecked).

    Raises :class:`NpzChecksumError` when the labels' bytes are not the ones written.
    """
    config_version = entry.config_version if entry is not None else None
    if layout_of(path.name) == CONTINUOUS:
        checksums = recorded_checksums(entry.details) if entry is not None else None
        return continuous_facts(path, fingerprint, config_version, config,
                                checksums.labels if checksums else None)
    try:
        members = member_names(path)
        if "windows" not in members:
            raise NpzFormatError(f"{path}: no 'windows' array (members: {', '.join(members)})")
        windows_shape, _dtype = member_shape(path, "windows")
        labels = locate_member(path, "labels") if "labels" in members else None
    except zipfile.BadZipFile as exc:
        raise NpzFormatError(f"{path}: not a readable NPZ ({exc})") from None
    counts, window_samples = None, int(windows_shape[-1])
    if labels is not None:
        if len(labels.shape) != 2 or labels.shape[0] != windows_shape[0]:
            raise NpzFormatError(f"{path}: labels shape {labels.shape} does not match windows "
                                 f"shape {windows_shape}")
        row_bytes = max(1, labels.shape[1] * labels.dtype.itemsize)
        found: list[int] = []
        for chunk in read_member_chunks(path, labels, _SCAN_CHUNK_BYTES // row_bytes):
            found.extend(np.count_nonzero(chunk > 0, axis=1).tolist())
        counts, window_samples = tuple(found), int(labels.shape[1])
    return NpzFacts(npz_name=path.name, fingerprint=fingerprint, n_windows=int(windows_shape[0]),
                    window_samples=window_samples, seizure_samples=counts,
                    config_version=config_version)


def ensure_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG, *, force: bool = False,
                    facts: SplitFacts | None = None, log: Log = print) -> Manifest:
    """The current manifest, rebuilt first when missing, empty or stale.

    ``force`` (BGB_FORCE_MANIFEST_REBUILD=1) deletes it and rebuilds it; without given ``facts``
    it then rescans every NPZ's labels. Raises :class:`~eeg_assets.lib.dataset.index.StaleCacheError` when
    NPZs were built with another configuration and :class:`ManifestError` when the split has no
    labelled windows.
    """
    if facts is None:
        facts = collect_facts(cache_dir, config, scan_all=force)
    require_current_config(facts)
    current = ManifestTable.from_facts(facts.files, config)
    _require_windows(facts, current)
    for warning in manifest_warnings(facts):
        log(f"[MANIFEST] warning: {warning}")
    if force:
        (Path(cache_dir) / MANIFEST_NAME).unlink(missing_ok=True)
        reason = "BGB_FORCE_MANIFEST_REBUILD=1"
    else:
        reason = _staleness(cache_dir, current, facts)
    if reason:
        write_manifest(cache_dir, current)
        log(f"[MANIFEST] rebuilt {MANIFEST_NAME} ({reason}): {describe_counts(current.counts())}")
    return current.to_manifest()


def describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[category]} {category}" for category in CATEGORIES) + " windows"
