"""Verification of a cache split against the seed's schema, once per NPZ content.

Every run checks every NPZ against the build ledger (present, owned, unchanged since it was built,
current config), which costs one ``stat`` per file, or none after a build of the same run (it
recorded the NPZs it left, having checked them against the ledger itself). Opening a file to
check its arrays (:func:`check_npz_file`: names, shapes, dtypes, storage, three windows' values)
is done once per content: the ledger records the NPZ fingerprint each file passed at, so a run
opens the files that are new or rebuilt since their last pass (or never passed), plus a random
sample of the others (:data:`SAMPLE_FRACTION`), which catches damage that keeps size and mtime.
``verify_all`` opens every file. A file that fails loses its mark, so it fails again on every run
until it is rebuilt.
"""

from __future__ import annotations

import math
import random
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import BUILT, FileFingerprint, Ledger
from eeg_assets.lib.cache.npzio import NpzFormatError, open_member
from eeg_assets.lib.config import CacheConfig

#: Share of the already-verified, unchanged NPZs re-verified on each run, rounded up: 10 of
#: TUSZ train's 4,667 files (~37 MB read at full size), 1 of a handful.
SAMPLE_FRACTION = 0.002


@dataclass
class VerifyReport:
    """What a verification of one split found and did."""

    #: NPZs on disk (each checked against the ledger).
    files: int = 0
    #: NPZs opened and checked this run, by name: new or rebuilt ones, then the sampled ones.
    verified: list[str] = field(default_factory=list)
    #: Of ``verified``: unchanged files that had passed before, re-checked by random sample.
    sampled: list[str] = field(default_factory=list)
    windows_checked: int = 0
    problems: list[str] = field(default_factory=list)
    #: NPZs that failed (a problem names each of them); none of them is marked verified.
    failed: list[str] = field(default_factory=list)
    #: NPZs the ledger records as built that are not on disk.
    missing: list[str] = field(default_factory=list)
    verify_all: bool = False

    @property
    def passed(self) -> bool:
        return not self.problems and self.files > 0


def check_npz_file(path: Path, config: CacheConfig, sample_windows: int = 3) -> tuple[int, list[str]]:
    """Names, shapes, dtype, storage and values of one NPZ; returns (windows checked, problems).

    Values are checked in windows 0, n/2 and n-1 (``sample_windows`` >= 3) or window 0: about
    3.7 MB read from a full-size file.
    """
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


def sample_size(n_verified: int, fraction: float = SAMPLE_FRACTION) -> int:
    """How many of ``n_verified`` already-verified files a run re-verifies: the fraction, rounded
    up (so at least one whenever there is one)."""
    return min(n_verified, math.ceil(n_verified * fraction))


def verify_split(cache_dir: Path, config: CacheConfig, *, verify_all: bool = False,
                 seed: int | str | None = None, fraction: float = SAMPLE_FRACTION,
                 recorded: Iterable[tuple[str, str]] | None = None) -> VerifyReport:
    """Check a split's NPZs against the ledger and verify the ones whose content is unverified.

    Parameters
    ----------
    cache_dir
        The cache split folder (NPZs and ``_ledger.sqlite``).
    config
        The configuration the files must have been built with (shapes, clip range).
    verify_all
        Open and check every NPZ, not only the unverified ones and the sample.
    seed
        Seed of the random sample (any ``random.Random`` seed); ``None`` draws a fresh one.
    fraction
        Share of the already-verified, unchanged files to re-verify (see :func:`sample_size`).
    recorded
        ``(name, fingerprint)`` of the NPZs as a build of the same run left them
        (:func:`~eeg_assets.lib.cache.discovery.recorded_npz`), which the build checked against
        the ledger moments ago; by default each NPZ is stat-ed.

    Passes and failures are recorded in the ledger.
    """
    cache_dir = Path(cache_dir)
    report = VerifyReport(verify_all=verify_all)
    ledger = Ledger(cache_dir)
    entries = {e.npz_name: e for e in ledger.entries().values() if e.status == BUILT}
    fingerprints = dict(recorded) if recorded is not None else {
        p.name: str(FileFingerprint.of(p)) for p in cache_dir.glob("*.npz")}
    on_disk = {name: cache_dir / name for name in fingerprints}
    report.files = len(on_disk)
    report.missing = sorted(set(entries) - set(on_disk))
    for name in report.missing:
        report.problems.append(f"{name}: recorded as built but missing from {cache_dir}")

    version = config.version()  # a hash of the whole config: once, not per file
    unverified, verified_before = [], []
    ledger_problems: dict[str, list[str]] = {}
    for name, path in sorted(on_disk.items()):
        entry = entries.get(name)
        fingerprint = fingerprints[name]
        if entry is None:
            ledger_problems[name] = [f"{name}: not produced by build-cache (no ledger entry)"]
        elif fingerprint != entry.npz_fingerprint:
            ledger_problems[name] = [f"{name}: changed since it was built"]
        elif entry.config_version != version:
            ledger_problems[name] = [f"{name}: built with config {entry.config_version}, "
                                     f"current is {version}"]
        if entry is not None and entry.verified_fingerprint == fingerprint \
                and name not in ledger_problems:
            verified_before.append(name)
        else:
            unverified.append(name)
    if not verify_all:
        report.sampled = sorted(random.Random(seed).sample(
            verified_before, sample_size(len(verified_before), fraction)))
    to_open = unverified + (verified_before if verify_all else report.sampled)

    passed: dict[str, str] = {}
    for name in sorted(to_open):
        checked, problems = check_npz_file(on_disk[name], config)
        problems = ledger_problems.get(name, []) + problems
        report.verified.append(name)
        report.windows_checked += checked
        report.problems.extend(problems)
        entry = entries.get(name)
        if problems:
            report.failed.append(name)
        elif entry is not None:
            passed[entry.source] = entry.npz_fingerprint
    failed_sources = [entries[name].source for name in report.failed if name in entries]
    if passed or failed_sources:
        ledger.record_verification(passed, failed_sources)
    return report


def format_verify_report(report: VerifyReport, cache_dir: Path) -> list[str]:
    """The ``verify-cache`` summary: what was opened, the sample, then every problem."""
    fresh = len(report.verified) - len(report.sampled)
    how = ("every file" if report.verify_all else
           f"{fresh} new or changed, {len(report.sampled)} sampled from the verified ones")
    lines = [f"[verify-cache] {cache_dir}: {report.files} NPZ file(s), opened "
             f"{len(report.verified)} ({how}), {report.windows_checked} windows checked"]
    if report.sampled:
        lines.append(f"[verify-cache] sampled: {', '.join(report.sampled)}")
    lines += [f"  problem: {problem}" for problem in report.problems]
    return lines


def verify_cache_command(cache_dir: Path, verify_all: bool = False,
                         config: CacheConfig | None = None) -> int:
    """``python -m eeg_assets verify-cache``: 0 when every check passed, 1 naming each problem."""
    import sys

    from eeg_assets.lib.config import DEFAULT_CONFIG

    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        print(f"error: cache folder {cache_dir} does not exist", file=sys.stderr)
        return 1
    report = verify_split(cache_dir, config or DEFAULT_CONFIG, verify_all=verify_all)
    for line in format_verify_report(report, cache_dir):
        print(line)
    if report.files == 0:
        print(f"error: no NPZ files in {cache_dir}", file=sys.stderr)
        return 1
    if report.problems:
        names = sorted(report.failed + report.missing)
        print(f"error: {len(report.problems)} problem(s) in {len(names)} file(s) of {cache_dir}: "
              f"{', '.join(names)}", file=sys.stderr)
        return 1
    print(f"[verify-cache] ok: all {len(report.verified)} opened file(s) passed")
    return 0
