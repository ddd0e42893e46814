"""Windowing and label masks exactly as docs/tusz.md ("Windows and labels") defines them."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from eeg_assets.lib.cache.annotations import SeizureEvent
from eeg_assets.lib.config import CacheConfig


def count_windows(n_samples: int, config: CacheConfig) -> int:
    """``(n - window) // stride + 1``; the trailing partial window is dropped; 0 when too short."""
    if n_samples < config.window_samples:
        return 0
    return (n_samples - config.window_samples) // config.stride_samples + 1


def label_mask(events: Iterable[SeizureEvent], n_samples: int, config: CacheConfig) -> np.ndarray:
    """Per-sample seizure mask at the target rate: ``[floor(start*fs), floor(stop*fs))``, clipped."""
    mask = np.zeros(n_samples, dtype=np.float32)
    for event in events:
        start = min(max(math.floor(event.start_s * config.target_fs), 0), n_samples)
        stop = min(max(math.floor(event.stop_s * config.target_fs), 0), n_samples)
        mask[start:stop] = 1.0
    return mask


def window_seizure_counts(mask: np.ndarray, config: CacheConfig) -> list[int]:
    """Number of seizure samples in each window (exact integers, so categories never drift)."""
    n_windows = count_windows(len(mask), config)
    cumulative = np.concatenate([[0], np.cumsum(mask > 0, dtype=np.int64)])
    starts = np.arange(n_windows, dtype=np.int64) * config.stride_samples
    return (cumulative[starts + config.window_samples] - cumulative[starts]).tolist()
