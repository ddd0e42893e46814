"""Take back a split's NPZs after its ledger was lost, instead of rebuilding them.

A build refuses to run when the ledger is missing or empty but NPZs are there
(:func:`eeg_assets.lib.cache.build.guard_ledger`): without it every NPZ would look unowned and be
deleted. :func:`adopt_split` records, for each recording of the split folder that has an NPZ of
its name and no ledger entry, an entry as if the NPZ had just been built, but only when the NPZ
passes verification and matches its recording: its window count is the one the EDF header gives
and every window's seizure-sample count is the one its annotation gives. Whatever is not adopted
is left for the next build, which removes it as unowned and builds the recording again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.annotations import parse_annotation
from eeg_assets.lib.cache.build import split_lock
from eeg_assets.lib.cache.discovery import Recording, list_recordings
from eeg_assets.lib.cache.layout import (
    CHECKSUMS_KEY, CONTINUOUS, cache_file_name, fingerprint_of, scan_continuous,
)
from eeg_assets.lib.cache.ledger import BUILT, Ledger, RecordingEntry
from eeg_assets.lib.cache.npzio import open_member
from eeg_assets.lib.cache.references import REFERENCE_KEY, reference_details
from eeg_assets.lib.cache.verify import verify_cache_file
from eeg_assets.lib.cache.windows import count_windows, label_mask, window_seizure_counts
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.signals.channels import plan_channels
from eeg_assets.lib.signals.edf import EdfRecording
from eeg_assets.lib.signals.preprocess import resampled_length


@dataclass
class AdoptReport:
    adopted: list[str] = field(default_factory=list)
    #: ``"<npz name>: why"`` for NPZs left to the next build.
    refused: list[str] = field(default_factory=list)

    def summary(self, cache_dir: Path) -> str:
        lines = [f"[adopt-cache] {cache_dir}: adopted {len(self.adopted)}, left to rebuild "
                 f"{len(self.refused)}"]
        lines += [f"  not adopted: {line}" for line in self.refused]
        return "\n".join(lines)


def _expected(recording: Recording, config: CacheConfig) -> tuple[list[int], dict]:
    """Per-window seizure-sample counts the recording's EDF header and annotation give."""
    annotation = parse_annotation(recording.annotation_path, config)
    with EdfRecording(recording.path) as edf:
        plan = plan_channels(edf.labels, config)
        used = [s for s in plan.sources if s is not None]
        fs = edf.sample_rates[used[0]]
        n_raw = min(edf.n_samples[s] for s in used)
    n_samples = resampled_length(n_raw, fs, config.target_fs)
    mask = label_mask(annotation.seizures, n_samples, config)
    details = {REFERENCE_KEY: reference_details(annotation), "fs": fs,
               "duration_s": n_raw / fs, "seizure_events": len(annotation.seizures),
               "annotation_file": recording.annotation_path.name, "adopted": True}
    counts = window_seizure_counts(mask, config) if count_windows(n_samples, config) else []
    return counts, details


def _stored_counts(path: Path, config: CacheConfig) -> list[int]:
    if config.layout == CONTINUOUS:
        return list(scan_continuous(path, config))
    labels = open_member(path, "labels")
    try:
        return [int(np.count_nonzero(row > 0)) for row in labels]
    finally:
        del labels


def adopt_split(data_dir: Path, cache_dir: Path, config: CacheConfig = DEFAULT_CONFIG,
                log: Callable[[str], None] = print) -> AdoptReport:
    """Record ledger entries for the NPZs of ``cache_dir`` that verify and match their
    recordings under ``data_dir``; leave the others alone.

    Returns
    -------
    AdoptReport
        The recordings adopted, and each NPZ not adopted with the reason.
    """
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    report = AdoptReport()
    listing = list_recordings(data_dir)
    with split_lock(cache_dir, log), Ledger(cache_dir) as ledger:
        known = ledger.entries()
        for recording in listing.recordings:
            name = cache_file_name(recording.stem, config.layout)
            path = cache_dir / name
            if recording.source in known or not path.is_file():
                continue
            if recording.annotation_path is None:
                report.refused.append(f"{name}: {recording.source} has no annotation file")
                continue
            check = verify_cache_file(path, config)
            problems = check.problems
            if problems:
                report.refused.append(f"{name}: {problems[0]}")
                continue
            try:
                expected, details = _expected(recording, config)
            except (ValueError, OSError) as exc:
                report.refused.append(f"{name}: {recording.source}: {exc}")
                continue
            stored = _stored_counts(path, config)
            if stored != expected:
                report.refused.append(
                    f"{name}: {len(stored)} windows with seizure samples {sum(stored)}, but "
                    f"{recording.source} gives {len(expected)} windows with {sum(expected)}")
                continue
            if config.layout == CONTINUOUS:
                details[CHECKSUMS_KEY] = check.checksum  # as read now: what later checks compare
            ledger.put(RecordingEntry(
                source=recording.source, stem=recording.stem, status=BUILT,
                config_version=config.version(), edf_fingerprint=str(recording.edf),
                annotation_fingerprint=recording.annotation_fingerprint, npz_name=name,
                npz_fingerprint=fingerprint_of(path), n_windows=len(stored),
                seizure_samples=stored, details=details))
            report.adopted.append(recording.source)
    return report
