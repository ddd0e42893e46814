"""Cache entries without EDF files: an NPZ written with npzio and the ledger entry the builder
would record for it, for tests and benchmarks of everything downstream of the build (index,
manifest, balanced set, datasets, training, evaluation).

:func:`write_cache_entry` records given arrays. :func:`write_recording` describes a recording by
its per-window seizure sample counts: its label rows hold that many ones, so a test states
categories by counts and the code under test must find them in the arrays.

A ledger entry also carries the recording's reference (annotation duration and seizure rows), as
the builder records it from the annotation file. Without an annotation file, a fake entry's
reference is given by the test or, by default, read off its label rows (:func:`labels_reference`)
with the duration of the windows' span. :func:`write_too_short` and :func:`write_quarantined`
record the entries of recordings that have no NPZ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.ledger import (
    BUILT,
    QUARANTINED,
    TOO_SHORT,
    FileFingerprint,
    Ledger,
    RecordingEntry,
)
from eeg_assets.lib.cache.npzio import open_member, write_npz
from eeg_assets.lib.cache.references import REFERENCE_KEY
from eeg_assets.lib.config import CacheConfig

#: 100 label samples per window, so a seizure fraction of 0.99 is exactly 99 samples.
SMALL_CONFIG = CacheConfig(target_fs=25, window_s=4, stride_s=1)
CHANNELS = 3


Seizures = Sequence[tuple[float, float]]


def reference_record(duration_s: float, seizures: Seizures) -> dict:
    """The ``details["reference"]`` the builder records for an annotation."""
    return {"annotation_file": "", "duration_s": float(duration_s),
            "seizures": [[float(start), float(stop)] for start, stop in seizures]}


def labels_reference(labels: np.ndarray, config: CacheConfig) -> tuple[float, list]:
    """``(duration_s, seizures)`` read off label rows: the windows' span, and every run of ones
    of every window placed on the recording's timeline (overlapping runs left to the scorers'
    merging)."""
    fs, stride = config.target_fs, config.stride_samples
    seizures = []
    for index, row in enumerate(np.asarray(labels) > 0):
        edges = np.diff(np.r_[0, row.astype(np.int8), 0])
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
            seizures.append(((index * stride + start) / fs, (index * stride + stop) / fs))
    duration_s = ((len(labels) - 1) * stride + config.window_samples) / fs if len(labels) else 0
    return duration_s, seizures


def write_cache_entry(cache_dir: Path, stem: str, windows: np.ndarray, labels: np.ndarray, *,
                      config: CacheConfig, ledger: Ledger | None = None,
                      seizure_samples: Sequence[int] | None = None,
                      reference: tuple[float, Seizures] | None = None) -> str:
    """Write ``<stem>_windows.npz`` into ``cache_dir`` and record it in the ledger as built.

    Parameters
    ----------
    cache_dir : Path
        The split's cache folder (created if missing).
    stem : str
        Recording name, ``<patient>_<session>_<take>``; the entry's source is
        ``<patient>/<stem>.edf``.
    windows : ndarray, shape (n_windows, n_channels, window_samples), float32
    labels : ndarray, shape (n_windows, window_samples), float32
        Binary seizure mask per window.
    config : CacheConfig
        Whose version the entry records.
    ledger : Ledger, optional
        The ledger of ``cache_dir``, e.g. one held open (``with Ledger(...)``) for many entries.
    seizure_samples : sequence of int, optional
        Per window, the seizure sample count to record; default: the ones in ``labels``. A test
        passes other counts to record facts that differ from the file.
    reference : (duration_s, [(start_s, stop_s), ...]), optional
        The recording's annotation reference; default: :func:`labels_reference`.

    Returns
    -------
    str
        The NPZ's file name.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    npz_name = f"{stem}_windows.npz"
    path = cache_dir / npz_name
    write_npz(path, windows=windows, labels=labels)
    if seizure_samples is None:
        seizure_samples = np.count_nonzero(labels > 0, axis=1)
    (ledger or Ledger(cache_dir)).put(RecordingEntry(
        source=_source(stem), stem=stem, status=BUILT,
        config_version=config.version(), edf_fingerprint="1:1", npz_name=npz_name,
        npz_fingerprint=str(FileFingerprint.of(path)), n_windows=len(windows),
        seizure_samples=[int(count) for count in seizure_samples],
        details={REFERENCE_KEY: reference_record(*(reference or labels_reference(labels,
                                                                                 config)))},
    ))
    return npz_name


def _source(stem: str) -> str:
    return f"{stem.split('_')[0]}/{stem}.edf"


def write_too_short(cache_dir: Path, stem: str, duration_s: float, seizures: Seizures = (),
                    config: CacheConfig = SMALL_CONFIG) -> None:
    """Record a recording shorter than one window (no NPZ) with its reference."""
    Ledger(cache_dir).put(RecordingEntry(
        source=_source(stem), stem=stem, status=TOO_SHORT, config_version=config.version(),
        edf_fingerprint="1:1", reason=f"{stem}.edf: {duration_s:g} s is shorter than one window",
        details={REFERENCE_KEY: reference_record(duration_s, seizures)}))


def write_quarantined(cache_dir: Path, stem: str, reason: str,
                      config: CacheConfig = SMALL_CONFIG) -> None:
    """Record a quarantined recording (no NPZ, no reference) with its reason."""
    Ledger(cache_dir).put(RecordingEntry(
        source=_source(stem), stem=stem, status=QUARANTINED, config_version=config.version(),
        edf_fingerprint="1:1", reason=reason))


def label_rows(seizure_samples: Sequence[int], window_samples: int) -> np.ndarray:
    """Binary label rows, shape ``(len(seizure_samples), window_samples)``, with ``count`` ones
    each, placed mid-window."""
    labels = np.zeros((len(seizure_samples), window_samples), dtype=np.float32)
    for row, count in zip(labels, seizure_samples):
        start = (window_samples - count) // 2
        row[start:start + count] = 1.0
    return labels


def window_values(npz_name: str, n_windows: int, window_samples: int,
                  channels: int = CHANNELS) -> np.ndarray:
    """Distinct, reproducible standard-normal windows for each file, shape
    ``(n_windows, channels, window_samples)``."""
    seed = sum(npz_name.encode())
    return np.random.default_rng(seed).standard_normal(
        (n_windows, channels, window_samples)).astype(np.float32)


def write_recording(cache_dir: Path, stem: str, seizure_samples: Sequence[int] | None,
                    config: CacheConfig = SMALL_CONFIG, *, n_windows: int | None = None,
                    record: bool = True, ledger_counts: Sequence[int] | None = None,
                    channels: int = CHANNELS,
                    reference: tuple[float, Seizures] | None = None) -> str:
    """Write ``<stem>_windows.npz`` of noise windows with ``seizure_samples`` label counts and
    return its name.

    The builder's ledger entry is added unless ``record`` is false; ``ledger_counts`` records
    counts that differ from the file, ``reference`` the annotation's ``(duration_s, seizures)``
    (default: read off the label rows). With ``seizure_samples=None`` the NPZ has ``n_windows``
    windows and no ``labels`` and is never recorded (the builder never writes such a file).
    """
    npz_name = f"{stem}_windows.npz"
    n = n_windows if seizure_samples is None else len(seizure_samples)
    windows = window_values(npz_name, n, config.window_samples, channels)
    if seizure_samples is not None and record:
        return write_cache_entry(cache_dir, stem, windows,
                                 label_rows(seizure_samples, config.window_samples),
                                 config=config, seizure_samples=ledger_counts,
                                 reference=reference)
    arrays = {"windows": windows}
    if seizure_samples is not None:
        arrays["labels"] = label_rows(seizure_samples, config.window_samples)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    write_npz(Path(cache_dir) / npz_name, **arrays)
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
