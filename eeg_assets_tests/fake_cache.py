"""Hand-made cache splits for tests: small NPZs written with npzio and matching ledger entries.

Each recording is described by its per-window seizure sample counts; its label rows hold that many
ones, so tests state categories by counts and the code under test must find them in the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.cache.ledger import BUILT, FileFingerprint, Ledger, RecordingEntry
from eeg_assets.lib.cache.npzio import open_member, write_npz

#: 100 label samples per window, so a seizure fraction of 0.99 is exactly 99 samples.
SMALL_CONFIG = CacheConfig(target_fs=25, window_s=4, stride_s=1)
CHANNELS = 3


def label_rows(seizure_samples: Sequence[int], window_samples: int) -> np.ndarray:
    """Binary label rows with ``count`` ones each, placed mid-window."""
    labels = np.zeros((len(seizure_samples), window_samples), dtype=np.float32)
    for row, count in zip(labels, seizure_samples):
        start = (window_samples - count) // 2
        row[start:start + count] = 1.0
    return labels


def window_values(npz_name: str, n_windows: int, window_samples: int,
                  channels: int = CHANNELS) -> np.ndarray:
    """Distinct, reproducible window data for each file and window."""
    seed = sum(npz_name.encode())
    return np.random.default_rng(seed).standard_normal(
        (n_windows, channels, window_samples)).astype(np.float32)


def write_recording(cache_dir: Path, stem: str, seizure_samples: Sequence[int] | None,
                    config: CacheConfig = SMALL_CONFIG, *, n_windows: int | None = None,
                    record: bool | None = None, ledger_counts: Sequence[int] | None = None,
                    config_version: str | None = None) -> str:
    """Write ``<stem>_windows.npz`` (no ``labels`` when ``seizure_samples`` is None).

    ``record`` adds the builder's ledger entry (default: for labelled files, as the builder only
    writes those); ``ledger_counts`` and ``config_version`` let a test record facts that differ
    from the file.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    npz_name = f"{stem}_windows.npz"
    path = cache_dir / npz_name
    n = len(seizure_samples) if seizure_samples is not None else n_windows
    arrays = {"windows": window_values(npz_name, n, config.window_samples)}
    if seizure_samples is not None:
        arrays["labels"] = label_rows(seizure_samples, config.window_samples)
    write_npz(path, **arrays)
    if record if record is not None else seizure_samples is not None:
        counts = ledger_counts if ledger_counts is not None else seizure_samples
        Ledger(cache_dir).put(RecordingEntry(
            source=f"{stem.split('_')[0]}/{stem}.edf", stem=stem, status=BUILT,
            config_version=config_version or config.version(), edf_fingerprint="1:1",
            npz_name=npz_name, npz_fingerprint=str(FileFingerprint.of(path)),
            n_windows=n, seizure_samples=list(counts or []),
        ))
    return npz_name


def damage_window_in_place(path: Path, window: int = 0) -> None:
    """NaN over the first samples of one window of an NPZ, keeping its size and mtime (the
    ledger's fingerprint): damage that only opening the file can find."""
    st = os.stat(path)
    windows = open_member(path, "windows")
    offset = windows.offset + window * windows[0].nbytes
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.full(64, np.nan, np.float32).tobytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
