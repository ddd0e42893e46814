"""Rebuild a split's cache in the other layout from its cache files, without reading an EDF.

Each layout holds exactly the samples its windows cover (``eeg_assets.lib.cache.layout``), so a
conversion is exact both ways: window ``i`` and its labels are bit for bit those of the source.
Like a build, a conversion is incremental (a target file whose ledger entry records the same
source inputs under the target configuration is kept), atomic per file (each file is renamed
into place, then its ledger entry written) and holds the target split's build lock. A source file
is verified (every byte against its recorded checksum, every value) before it is converted, and
is left out, named, when it fails: rebuild it with ``build-cache``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.build import guard_ledger, split_lock
from eeg_assets.lib.cache.layout import (
    CHECKSUMS_KEY,
    CONTINUOUS,
    cache_file_name,
    cache_files_on_disk,
    check_layout,
    detect_layout,
    fingerprint_bytes,
    fingerprint_of,
    open_windows,
    recorded_checksums,
    remove_cache_file,
    write_continuous,
)
from eeg_assets.lib.cache.ledger import BUILT, FAILED, Ledger, RecordingEntry
from eeg_assets.lib.cache.npzio import WindowedArray, write_npz
from eeg_assets.lib.cache.verify import verify_cache_file
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.files import remove_stale_temporaries


class ConvertError(Exception):
    """The source cannot be converted as asked; the message says why and what to do."""


@dataclass
class ConvertReport:
    source_dir: Path
    target_dir: Path
    layout: str
    converted: list[str] = field(default_factory=list)
    skipped: int = 0
    #: ``"<source file>: why"`` for source files left out (damaged, or unreadable).
    refused: list[str] = field(default_factory=list)
    #: Target files removed because their recording is no longer in the source.
    removed: list[str] = field(default_factory=list)
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"[convert-cache] {self.source_dir} -> {self.target_dir} ({self.layout}): "
                 f"converted {len(self.converted)}, up to date {self.skipped}, left out "
                 f"{len(self.refused)}, removed {len(self.removed)}; read "
                 f"{self.bytes_read / 1e6:.1f} MB, wrote {self.bytes_written / 1e6:.1f} MB in "
                 f"{self.seconds:.1f} s"]
        lines += [f"  left out: {line} (rebuild it with build-cache)" for line in self.refused]
        return "\n".join(lines)


def convert_split(source_dir: Path, target_dir: Path, layout: str,
                  config: CacheConfig = DEFAULT_CONFIG,
                  log: Callable[[str], None] = print) -> ConvertReport:
    """Bring ``target_dir`` up to date, in ``layout``, with the cache files of ``source_dir``.

    Parameters
    ----------
    source_dir, target_dir : Path
        Cache split folders; the source's layout is read from its files.
    layout : str
        ``windows`` or ``continuous``: the target's.
    config : CacheConfig
        The source's configuration apart from its layout (preprocessing, windows); the target's
        is the same with ``layout``.

    Raises
    ------
    ConvertError
        When the source has no ledger, holds no cache files, was built with another configuration,
        or is the target folder.
    """
    started = time.monotonic()
    source_dir, target_dir = Path(source_dir), Path(target_dir)
    check_layout(layout)
    if source_dir.resolve() == target_dir.resolve():
        raise ConvertError(f"--from and --to are the same folder ({source_dir}): convert into "
                           "another folder (e.g. cache/tusz_mmap/<split>)")
    if not source_dir.is_dir() or not cache_files_on_disk(source_dir):
        raise ConvertError(f"{source_dir} holds no cache files to convert")
    source_config = dataclasses.replace(config, layout=detect_layout(source_dir))
    target_config = dataclasses.replace(config, layout=layout)
    source_version, target_version = source_config.version(), target_config.version()
    sources = {e.source: e for e in Ledger(source_dir).entries().values()}
    if not sources:
        raise ConvertError(f"{source_dir} has no ledger entries (is it a cache built by "
                           "build-cache? after a lost ledger, run adopt-cache first)")
    other = sorted({e.config_version for e in sources.values()
                    if e.status == BUILT and e.config_version != source_version})
    if other:
        raise ConvertError(
            f"{source_dir} was built with config version {', '.join(other)}, not "
            f"{source_version} (this configuration in the {source_config.layout} layout): "
            "convert with the settings it was built with (e.g. EEG_ASSETS_NOTCH_HZ)")
    report = ConvertReport(source_dir, target_dir, layout)
    on_disk = cache_files_on_disk(source_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    guard_ledger(target_dir, target_dir)
    with split_lock(target_dir, log), Ledger(target_dir) as ledger:
        remove_stale_temporaries(target_dir)
        targets = ledger.entries()
        present = cache_files_on_disk(target_dir)
        for source, entry in sorted(targets.items()):
            if source not in sources:
                if entry.npz_name:
                    remove_cache_file(target_dir, entry.npz_name)
                ledger.remove([source])
                report.removed.append(entry.npz_name or source)
        for source, entry in sorted(sources.items()):
            if entry.status != BUILT:
                # Quarantined, too short or failed: the same verdict in either layout.
                if entry.status != FAILED:
                    ledger.put(dataclasses.replace(entry, config_version=target_version))
                continue
            current = targets.get(source)
            if _is_current(current, entry, target_version, present):
                report.skipped += 1
                continue
            name = entry.npz_name
            if on_disk.get(name) != entry.npz_fingerprint:
                report.refused.append(f"{name}: changed or missing since it was built")
                continue
            check = verify_cache_file(source_dir / name, source_config,
                                      written=recorded_checksums(entry.details))
            report.bytes_read += check.bytes_read
            if check.problems:
                report.refused.append(check.problems[0])
                continue
            converted = _convert_file(source_dir / name, target_dir, entry, target_config)
            if current is not None and current.npz_name and current.npz_name != converted.npz_name:
                remove_cache_file(target_dir, current.npz_name)
            ledger.put(converted)
            report.converted.append(converted.npz_name)
            report.bytes_written += fingerprint_bytes(converted.npz_fingerprint)
            log(f"[convert-cache] {name} -> {converted.npz_name}")
    report.seconds = time.monotonic() - started
    return report


def _is_current(target: RecordingEntry | None, source: RecordingEntry, version: str,
                present: dict[str, str]) -> bool:
    return (target is not None and target.status == BUILT and target.config_version == version
            and target.edf_fingerprint == source.edf_fingerprint
            and target.annotation_fingerprint == source.annotation_fingerprint
            and target.seizure_samples == source.seizure_samples
            and present.get(target.npz_name) == target.npz_fingerprint)


def _convert_file(source: Path, target_dir: Path, entry: RecordingEntry,
                  config: CacheConfig) -> RecordingEntry:
    """Write the target file of one verified source file; its ledger entry as a build makes it."""
    window, stride = config.window_samples, config.stride_samples
    windows, labels = open_windows(source, config)
    n_windows = len(windows)
    covered = (n_windows - 1) * stride + window
    signal = np.empty((len(config.channels), covered), dtype=np.float32)
    mask = np.empty(covered, dtype=np.float32)
    for i in range(n_windows):
        # Window i supplies its first stride samples; the last window all of its samples.
        width = window if i == n_windows - 1 else stride
        signal[:, i * stride:i * stride + width] = windows[i][:, :width]
        mask[i * stride:i * stride + width] = labels[i][:width]
    del windows, labels
    target = target_dir / cache_file_name(entry.stem, config.layout)
    details = {k: v for k, v in entry.details.items() if k != CHECKSUMS_KEY}
    if config.layout == CONTINUOUS:
        details[CHECKSUMS_KEY] = write_continuous(target, signal, mask).to_text()
    else:
        write_npz(target, windows=WindowedArray(signal, n_windows, window, stride),
                  labels=WindowedArray(mask, n_windows, window, stride))
    return dataclasses.replace(entry, config_version=config.version(), npz_name=target.name,
                               npz_fingerprint=fingerprint_of(target), details=details,
                               verified_fingerprint="", verified_checksum="")
