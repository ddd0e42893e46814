"""The window manifest (``manifest.json``): every labelled window of a split, by category.

Format (the seed's, nothing added)::

    {"partial_seizure": [{"cache_file": "<name>.npz", "window_idx": <int>}, ...],
     "full_seizure": [...], "no_seizure": [...]}

Entries are ordered by NPZ name, then window index, and serialised in one fixed JSON format, so
the incremental path (facts recorded by the ledger) and the full rescan (``scan-cache``, reading
only ``labels``) write byte-identical files. Both derive categories with :func:`window_categories`.

A manifest is current when its content equals the manifest derived from the current facts (see
:mod:`eeg_assets.lib.index`) and no NPZ was built with another configuration; anything else is
stale, with a reason that says which case it is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.index import (
    INDEX_NAME, DatasetError, Log, NpzFacts, SplitFacts, collect_facts, config_change_reason,
    dumps_canonical, file_differences, name_list, require_current_config, update_index,
)
from eeg_assets.lib.npzio import NpzFormatError, write_bytes_atomic

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


def window_categories(seizure_samples: Iterable[int], window_samples: int,
                      full_fraction: float) -> np.ndarray:
    """Category code per window (an index into :data:`CATEGORIES`), from exact sample counts.

    ``r = seizure_samples / window_samples``: ``no_seizure`` when r == 0, ``full_seizure`` when
    r >= ``full_fraction``, else ``partial_seizure``. The threshold is taken as the decimal it is
    written as (0.99 = 99/100) and compared in integers, so no window sits on a rounding edge.
    """
    counts = np.asarray(tuple(seizure_samples), dtype=np.int64)
    if counts.size and (counts.min() < 0 or counts.max() > window_samples):
        raise ValueError(f"seizure sample counts must lie in [0, {window_samples}]")
    threshold = Fraction(repr(float(full_fraction)))
    full = counts * threshold.denominator >= threshold.numerator * window_samples
    codes = np.where(full, CATEGORIES.index(FULL), CATEGORIES.index(PARTIAL))
    return np.where(counts == 0, CATEGORIES.index(NO_SEIZURE), codes).astype(np.int8)


def count_categories(files: Iterable[NpzFacts], config: CacheConfig = DEFAULT_CONFIG
                     ) -> dict[str, int]:
    """Windows per category over labelled NPZs, without building the entry lists."""
    totals = np.zeros(len(CATEGORIES), dtype=np.int64)
    for facts in files:
        if facts.labelled:
            codes = window_categories(facts.seizure_samples, facts.window_samples,
                                      config.full_seizure_fraction)
            totals += np.bincount(codes, minlength=len(CATEGORIES))
    return dict(zip(CATEGORIES, totals.tolist()))


def manifest_from_facts(files: Iterable[NpzFacts], config: CacheConfig = DEFAULT_CONFIG
                        ) -> Manifest:
    """The canonical manifest of these NPZs; NPZs without labels are left out."""
    manifest: Manifest = {category: [] for category in CATEGORIES}
    lists = [manifest[category] for category in CATEGORIES]
    for facts in sorted(files, key=lambda f: f.npz_name):
        if not facts.labelled:
            continue
        codes = window_categories(facts.seizure_samples, facts.window_samples,
                                  config.full_seizure_fraction)
        for window_idx, code in enumerate(codes.tolist()):
            lists[code].append({"cache_file": facts.npz_name, "window_idx": window_idx})
    return manifest


def manifest_bytes(manifest: Manifest) -> bytes:
    return dumps_canonical({category: manifest[category] for category in CATEGORIES})


def category_counts(manifest: Manifest) -> dict[str, int]:
    return {category: len(manifest[category]) for category in CATEGORIES}


def read_manifest(cache_dir: Path) -> Manifest:
    """The stored manifest, checked against the seed's schema."""
    path = Path(cache_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ManifestError(f"missing {MANIFEST_NAME}") from None
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


def write_manifest(cache_dir: Path, manifest: Manifest) -> Path:
    path = Path(cache_dir) / MANIFEST_NAME
    write_bytes_atomic(path, manifest_bytes(manifest))
    return path


def _per_file(manifest: Manifest) -> dict[str, tuple[tuple[int, str], ...]]:
    """NPZ name -> its sorted ``(window_idx, category)`` pairs: the manifest's content per file."""
    pairs: dict[str, list[tuple[int, str]]] = {}
    for category in CATEGORIES:
        for entry in manifest[category]:
            pairs.setdefault(entry["cache_file"], []).append((entry["window_idx"], category))
    return {name: tuple(sorted(rows)) for name, rows in pairs.items()}


def _staleness(cache_dir: Path, current: Manifest, facts: SplitFacts) -> str | None:
    path = Path(cache_dir) / MANIFEST_NAME
    config_reason = config_change_reason(facts)
    # The usual case is an untouched manifest: equal bytes mean equal content.
    if path.is_file() and path.read_bytes() == manifest_bytes(current) and any(current.values()):
        return config_reason
    try:
        stored = read_manifest(cache_dir)
    except ManifestError as exc:
        return str(exc)
    if not any(stored.values()):
        return f"empty {MANIFEST_NAME}"
    reasons = [config_reason] if config_reason else []
    reasons += file_differences(_per_file(stored), _per_file(current), set(facts.names),
                                MANIFEST_NAME)
    return "; ".join(reasons) or None


def manifest_staleness(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                       facts: SplitFacts | None = None) -> str | None:
    """``None`` when ``manifest.json`` is current, else the reason (missing, empty, missing NPZ,
    extra NPZ, changed NPZ, config change)."""
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    return _staleness(cache_dir, manifest_from_facts(facts.files, config), facts)


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


def _require_windows(facts: SplitFacts, manifest: Manifest) -> None:
    """An empty manifest is never written: it would describe a split with nothing to train on."""
    if any(manifest.values()):
        return
    if not facts.files:
        raise ManifestError(f"no NPZ files in {facts.cache_dir}")
    raise ManifestError(f"none of the {len(facts.files)} NPZ files in {facts.cache_dir} has "
                        "labelled windows; the manifest would be empty")


def update_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                    facts: SplitFacts | None = None) -> Manifest:
    """Rewrite the manifest from the recorded per-file facts (the incremental path)."""
    facts = facts if facts is not None else collect_facts(cache_dir, config)
    manifest = manifest_from_facts(facts.files, config)
    _require_windows(facts, manifest)
    write_manifest(cache_dir, manifest)
    return manifest


@dataclass(frozen=True)
class ScanResult:
    manifest: Manifest
    facts: SplitFacts


def scan_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG) -> ScanResult:
    """Rebuild the manifest by reading every NPZ's ``labels`` (the seed's ``scan-cache``).

    The index is refreshed from the same facts, since they are at hand.
    """
    facts = collect_facts(cache_dir, config, scan_all=True)
    manifest = update_manifest(cache_dir, config, facts)
    update_index(cache_dir, config, facts)
    return ScanResult(manifest=manifest, facts=facts)


def ensure_manifest(cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG, *, force: bool = False,
                    facts: SplitFacts | None = None, log: Log = print) -> Manifest:
    """The current manifest, rebuilt first when missing, empty or stale.

    ``force`` (BGB_FORCE_MANIFEST_REBUILD=1) deletes it and rebuilds it; without given ``facts``
    it then rescans every NPZ's labels. Raises :class:`~eeg_assets.lib.index.StaleCacheError` when
    NPZs were built with another configuration and :class:`ManifestError` when the split has no
    labelled windows.
    """
    if facts is None:
        facts = collect_facts(cache_dir, config, scan_all=force)
    require_current_config(facts)
    current = manifest_from_facts(facts.files, config)
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
        log(f"[MANIFEST] rebuilt {MANIFEST_NAME} ({reason}): {_describe(current)}")
    return current


def _describe(manifest: Manifest) -> str:
    counts = category_counts(manifest)
    return ", ".join(f"{counts[category]} {category}" for category in CATEGORIES) + " windows"


def scan_cache_command(cache_dir: Path) -> int:
    """``python -m eeg_assets scan-cache``: rescan labels, write manifest and index."""
    try:
        result = scan_manifest(Path(cache_dir))
    except (DatasetError, NpzFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in manifest_warnings(result.facts):
        print(f"warning: {warning}", file=sys.stderr)
    counts = category_counts(result.manifest)
    print(f"[scan-cache] {cache_dir}: read the labels of {len(result.facts.files)} NPZ file(s)")
    print(f"[scan-cache] wrote {MANIFEST_NAME}: {_describe(result.manifest)}")
    print(f"[scan-cache] wrote {INDEX_NAME}: {len(result.facts.files)} files, "
          f"{sum(f.n_windows for f in result.facts.files)} windows")
    if counts[PARTIAL] + counts[FULL] == 0:
        print(f"error: no seizure windows in {cache_dir}: all {counts[NO_SEIZURE]} labelled "
              "windows are no_seizure, so no balanced training set can be built (check the "
              "annotation files and the seizure label set)", file=sys.stderr)
        return 1
    return 0
