"""One split's cache chain as four steps that return plain facts, wherever they run.

``npz_windows`` (build), ``dataset_index``, ``manifest`` and ``balanced_dataset``: each is a thin
call into the library that returns a :class:`StepOutcome`, the data version and metadata of what
it wrote, as JSON values. The Dagster assets turn an outcome into a materialization; the local
backend runs :func:`run` in the Dagster process, the Modal backend in a container on the volumes
(:mod:`eeg_assets.remote.cache_entry`), so both report exactly the same facts.

Metadata values are ints, floats and strings, plus two kinds a UI renders: a table
(:func:`table_value`) and a PNG image (:func:`png_value`). Paths are not facts of the step: the
caller knows where the step ran and adds them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from eeg_assets.lib.cache.build import (
    BuildError,
    Runner,
    build_split,
    format_report,
    write_failure_message,
)
from eeg_assets.lib.cache.discovery import recorded_listing, recorded_npz
from eeg_assets.lib.cache.ledger import (
    BUILT,
    Ledger,
    LedgerError,
    RecordingEntry,
)
from eeg_assets.lib.cache.layout import fingerprint_bytes, open_windows
from eeg_assets.lib.cache.npzio import NpzFormatError
from eeg_assets.lib.config import (
    DEFAULT_BALANCE,
    DEFAULT_CONFIG,
    BalanceConfig,
    CacheConfig,
)
from eeg_assets.lib.dataset.balanced import (
    compose_split,
    dataset_log_lines,
    write_balanced,
)
from eeg_assets.lib.dataset.index import (
    INDEX_NAME,
    DatasetError,
    SplitFacts,
    collect_facts,
    index_staleness,
    name_list,
    update_index,
)
from eeg_assets.lib.dataset.manifest import (
    FULL,
    MANIFEST_NAME,
    NO_SEIZURE,
    PARTIAL,
    ManifestTable,
    manifest_staleness,
    manifest_warnings,
    update_manifest_table,
)
from eeg_assets.lib.dataset.splits import patients_of
from eeg_assets.lib.files import content_version
from eeg_assets.lib.plots import category_counts_png, window_png

NPZ_WINDOWS, DATASET_INDEX, MANIFEST, BALANCED_DATASET = (
    "npz_windows", "dataset_index", "manifest", "balanced_dataset")
STEPS = (NPZ_WINDOWS, DATASET_INDEX, MANIFEST, BALANCED_DATASET)
#: Files named in a run-log line before "and N more".
MAX_NAMED = 20


class StepError(Exception):
    """The step cannot produce its output (no recordings, no cache, no seizure windows...)."""


class Log(Protocol):
    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...


@dataclass(frozen=True)
class ChainRequest:
    """What one step needs besides the two roots: the split, its raw folder and the configuration.

    ``batch_size`` and ``flush_every_s`` only matter to a fan-out
    (:mod:`eeg_assets.lib.cache.remote_build`).
    """

    step: str
    split: str
    raw_folder: str
    cache: CacheConfig = DEFAULT_CONFIG
    balance: BalanceConfig = DEFAULT_BALANCE
    batch_size: int = 8
    flush_every_s: float = 60.0
    #: The Dagster run id: the build reuses the listing this run's observation of the split
    #: recorded and tags the listing it records for the run's checks ("" for none).
    run_tag: str = ""

    def __post_init__(self):
        if self.step not in STEPS:
            raise ValueError(f"unknown step {self.step!r} (one of {', '.join(STEPS)})")

    def to_dict(self) -> dict:
        return {**asdict(self), "cache": self.cache.to_dict(), "balance": asdict(self.balance)}

    @classmethod
    def from_dict(cls, data: dict) -> ChainRequest:
        return cls(**{**data, "cache": CacheConfig.from_dict(data["cache"]),
                      "balance": BalanceConfig(**data["balance"])})


@dataclass
class StepOutcome:
    data_version: str
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"data_version": self.data_version, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data: dict) -> StepOutcome:
        return cls(data["data_version"], data["metadata"])


def table_value(columns: Iterable[tuple[str, str]], rows: list[dict]) -> dict:
    """A table: ``columns`` as ``(name, type)``, ``rows`` as dicts keyed by column name."""
    return {"kind": "table", "columns": [list(c) for c in columns], "rows": rows}


def png_value(png: bytes, alt: str) -> dict:
    return {"kind": "png", "alt": alt, "base64": base64.b64encode(png).decode()}


def run(request: ChainRequest, raw_root: Path, cache_root: Path, log: Log, *,
        workers: int | None = None, runner: Runner | None = None,
        state_dir: Path | None = None) -> StepOutcome:
    """Run ``request.step`` for ``raw_root/<raw_folder>`` into ``cache_root/<split>``.

    ``workers`` sizes the local process pool; ``runner`` and ``state_dir`` replace it and the
    ledger's folder for a fan-out (see :func:`~eeg_assets.lib.cache.build.build_split`).

    Raises
    ------
    StepError
        The step cannot run on this cache; the message says why.
    """
    raw_dir, cache_dir = Path(raw_root) / request.raw_folder, Path(cache_root) / request.split
    try:
        if request.step == NPZ_WINDOWS:
            return _npz_windows(request, raw_dir, cache_dir, log, workers, runner, state_dir)
        if request.step == DATASET_INDEX:
            return _dataset_index(request, cache_dir)
        if request.step == MANIFEST:
            return _manifest(request, cache_dir, log)
        return _balanced_dataset(request, cache_dir, log)
    except (BuildError, DatasetError, NpzFormatError, LedgerError) as exc:
        raise StepError(str(exc)) from exc


def ledger_data_version(entries: Iterable[RecordingEntry]) -> str:
    """The data version of ``npz_windows``: what each recording was built from and into."""
    rows = sorted((e.source, e.status, e.input_fingerprint, e.npz_fingerprint) for e in entries)
    return hashlib.sha256(json.dumps([rows], sort_keys=True).encode()).hexdigest()[:16]


def _npz_windows(request: ChainRequest, raw_dir: Path, cache_dir: Path, log: Log,
                 workers: int | None, runner: Runner | None,
                 state_dir: Path | None) -> StepOutcome:
    run_tag = request.run_tag
    # the listing this run's observation recorded; else build_split walks the folder itself
    listing = recorded_listing(raw_dir, cache_dir, run_tag) if run_tag else None
    report = build_split(raw_dir, cache_dir, split=request.split, config=request.cache,
                         workers=workers, progress=None, log=log.info, runner=runner,
                         state_dir=state_dir, run_tag=run_tag, listing=listing)
    # The same summary build-cache prints, at INFO in the run log, with the files named.
    log.info(format_report(report))
    if report.built:
        log.info("built " + name_list([e.source for e in report.built], shown=MAX_NAMED))
    for entry in report.quarantined:
        log.warning(f"quarantined {entry.source}: {entry.reason}")
    for entry in report.failed:
        log.warning(f"failed, will retry {entry.source}: {entry.reason}")
    for line in report.unreadable:
        log.warning(f"could not read {line}; tried again next run")
    if report.write_failures:
        # The cache could not be written: the step fails, and what was there stays.
        raise StepError(write_failure_message(report))
    warning_rows = [{"recording": e.source, "warning": warning}
                    for e in report.warned for warning in e.warnings]
    for row in warning_rows:
        log.warning(f"built with a warning {row['recording']}: {row['warning']}")
    entries = list(Ledger(state_dir or cache_dir).entries().values())
    built = [e for e in entries if e.status == BUILT]
    rows = [{"recording": e.source, "status": e.status, "reason": e.reason}
            for e in report.quarantined + report.failed + report.too_short]
    # the NPZs as the build found or wrote them: the sizes of their fingerprints, no stat each
    npz_bytes = sum(fingerprint_bytes(e.npz_fingerprint) for e in built)
    return StepOutcome(ledger_data_version(entries), {
        "recordings": report.recordings,
        "files_built": len(report.built),
        "files_skipped": report.skipped,
        "files_quarantined": len(report.quarantined),
        "files_failed_will_retry": len(report.failed),
        "paths_unreadable": len(report.unreadable),
        "files_too_short": len(report.too_short),
        "files_removed": len(report.removed),
        "npz_files": len(built),
        "windows": sum(e.n_windows for e in built),
        "windows_built_now": report.windows_built,
        "eeg_hours_built_now": round(report.eeg_seconds_built / 3600, 3),
        "build_seconds": round(report.seconds, 2),
        "npz_gb_on_disk": round(npz_bytes / 1e9, 3),
        "config_version": report.config_version,
        "layout": request.cache.layout,
        "files_with_warnings": len(report.warned),
        # Tables only where there is something to list (an empty one renders as a bare header).
        # not_built: quarantined, failed (will retry) and too short: the three counts above.
        **({"not_built": table_value(
            [("recording", "string"), ("status", "string"), ("reason", "string")], rows)}
           if rows else {}),
        **({"warnings": table_value([("recording", "string"), ("warning", "string")],
                                    warning_rows)} if warning_rows else {}),
    })


def run_facts(cache_dir: Path, config: CacheConfig, run_tag: str | None) -> SplitFacts:
    """The split's facts; from the NPZs this run's build recorded (``run_tag``), when it ran, so
    each later step and check of the run costs no ``stat`` per NPZ."""
    return collect_facts(cache_dir, config, on_disk=recorded_npz(cache_dir, run_tag))


def _dataset_index(request: ChainRequest, cache_dir: Path) -> StepOutcome:
    facts = run_facts(cache_dir, request.cache, request.run_tag)
    index = update_index(cache_dir, request.cache, facts)
    return StepOutcome(content_version(cache_dir / INDEX_NAME), {
        "files": len(index.files),
        "windows": index.total_windows,
        "patients": len(patients_of(index)),
    })


def _require_current(reason: str | None, name: str, upstream: str, split: str) -> None:
    """A step run alone must not build on an upstream file that is missing, edited or stale."""
    if reason:
        raise StepError(f"{name} is not what the cache's recorded facts give ({reason}): "
                        f"materialize {upstream}[{split}] first")


def _manifest(request: ChainRequest, cache_dir: Path, log: Log) -> StepOutcome:
    facts = run_facts(cache_dir, request.cache, request.run_tag)
    _require_current(index_staleness(cache_dir, request.cache, facts), INDEX_NAME,
                     "dataset_index", request.split)
    for warning in manifest_warnings(facts):
        log.warning(warning)
    table = update_manifest_table(cache_dir, request.cache, facts)
    counts = table.counts()
    total = sum(counts.values())
    seizure = counts[PARTIAL] + counts[FULL]
    metadata = {
        **{f"windows_{name}": n for name, n in counts.items()},
        "windows": total,
        "seizure_fraction_of_windows": round(seizure / total, 4) if total else 0.0,
        "categories": png_value(category_counts_png(counts, f"{request.split} windows"),
                                "windows per category"),
    }
    example = _example_window_png(cache_dir, table, request.cache)
    if example is not None:
        metadata["example_window"] = png_value(example, "example window with seizure mask")
    return StepOutcome(content_version(cache_dir / MANIFEST_NAME), metadata)


def _example_window_png(cache_dir: Path, table: ManifestTable, config: CacheConfig
                        ) -> bytes | None:
    """The first window with a seizure edge (most telling), else the first window."""
    for category in (PARTIAL, FULL, NO_SEIZURE):
        first = table.first(category)
        if first is not None:
            name, i = first
            windows, labels = open_windows(cache_dir / name, config)
            return window_png(np.asarray(windows[i]), np.asarray(labels[i]), config.channels,
                              config.target_fs, f"{name} window {i} ({category})")
    return None


def _balanced_dataset(request: ChainRequest, cache_dir: Path, log: Log) -> StepOutcome:
    facts = run_facts(cache_dir, request.cache, request.run_tag)
    _require_current(manifest_staleness(cache_dir, request.cache, facts), MANIFEST_NAME,
                     "manifest", request.split)
    composition = compose_split(cache_dir, request.balance, request.cache, facts)
    for line in dataset_log_lines(composition):
        log.info(line)
    path = write_balanced(cache_dir, composition, request.balance)
    drawn = {PARTIAL: len(composition.partial), FULL: len(composition.full),
             NO_SEIZURE: len(composition.background)}
    return StepOutcome(content_version(path), {
        "windows": composition.total,
        **drawn,
        "seizure_ratio": composition.seizure_ratio,
        "pos_weight": composition.pos_weight,
        "seed": request.balance.seed,
        "composition": png_value(category_counts_png(
            drawn, f"balanced {request.split}: ratio {composition.seizure_ratio:.1%}"),
            "balanced composition"),
    })
