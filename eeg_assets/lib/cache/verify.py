"""Verification of a cache split against the seed's schema (used by asset checks and tests)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import BUILT, FileFingerprint, Ledger
from eeg_assets.lib.cache.npzio import NpzFormatError, open_member
from eeg_assets.lib.config import CacheConfig


@dataclass
class SchemaReport:
    files_checked: int = 0
    windows_checked: int = 0
    problems: list[str] = field(default_factory=list)


def check_npz_file(path: Path, config: CacheConfig, sample_windows: int = 3) -> tuple[int, list[str]]:
    """Names, shapes, dtype, storage and values of one NPZ; returns (windows checked, problems)."""
    problems: list[str] = []
    expected_tail = (len(config.channels), config.window_samples)
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(zf.namelist())
        if names != ["labels.npy", "windows.npy"]:
            return 0, [f"{path.name}: arrays {names}, expected labels.npy and windows.npy"]
        windows = open_member(path, "windows")
        labels = open_member(path, "labels")
    except (zipfile.BadZipFile, NpzFormatError, OSError, ValueError) as exc:
        return 0, [f"{path.name}: unreadable: {exc}"]
    if windows.dtype != np.float32 or labels.dtype != np.float32:
        problems.append(f"{path.name}: dtypes {windows.dtype}/{labels.dtype}, expected float32")
    if windows.ndim != 3 or windows.shape[1:] != expected_tail or windows.shape[0] == 0:
        problems.append(f"{path.name}: windows shape {windows.shape}, expected (n>0, *{expected_tail})")
    if labels.shape != (windows.shape[0], config.window_samples):
        problems.append(f"{path.name}: labels shape {labels.shape} does not match windows {windows.shape}")
    if problems:
        return 0, problems
    n = windows.shape[0]
    picks = sorted({0, n // 2, n - 1} if sample_windows >= 3 else {0})
    for i in picks:
        window = np.asarray(windows[i])
        if not np.isfinite(window).all():
            problems.append(f"{path.name}: window {i} has NaN/Inf")
        elif np.abs(window).max() > config.clip_sigma + 1e-4:
            problems.append(f"{path.name}: window {i} exceeds +-{config.clip_sigma} sigma")
        label = np.asarray(labels[i])
        if not np.isin(label, (0.0, 1.0)).all():
            problems.append(f"{path.name}: labels of window {i} are not binary")
    return len(picks), problems


def check_split_schema(cache_dir: Path, config: CacheConfig) -> SchemaReport:
    """Every NPZ of the split: schema, sampled values, and agreement with the ledger."""
    report = SchemaReport()
    entries = {e.npz_name: e for e in Ledger(cache_dir).entries().values() if e.status == BUILT}
    on_disk = {p.name: p for p in Path(cache_dir).glob("*.npz")}
    for name in sorted(set(entries) - set(on_disk)):
        report.problems.append(f"{name}: recorded as built but missing from {cache_dir}")
    for name, path in sorted(on_disk.items()):
        checked, problems = check_npz_file(path, config)
        report.files_checked += 1
        report.windows_checked += checked
        report.problems.extend(problems)
        entry = entries.get(name)
        if entry is None:
            report.problems.append(f"{name}: not produced by build-cache (no ledger entry)")
        elif str(FileFingerprint.of(path)) != entry.npz_fingerprint:
            report.problems.append(f"{name}: changed since it was built")
        elif entry.config_version != config.version():
            report.problems.append(f"{name}: built with config {entry.config_version}, "
                                   f"current is {config.version()}")
    return report
