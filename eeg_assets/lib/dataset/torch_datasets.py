"""Torch datasets over the window cache, and the dataset a smoke-test training run falls back to.

Reading one item copies one window (and its label row) out of a memory-mapped file: a member of
an uncompressed NPZ, or rows of a continuous cache file (``eeg_assets.lib.cache.layout``), one
contiguous read either way; nothing else of the file is read or decompressed. Memory maps are
opened lazily in the process that reads (a DataLoader worker opens its own) and kept in a small
LRU, because every map holds a file descriptor and a TUSZ split has thousands of files.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from eeg_assets.lib.cache.layout import open_windows
from eeg_assets.lib.cache.references import SplitReferences, read_references
from eeg_assets.lib.config import (
    DEFAULT_BALANCE,
    DEFAULT_CONFIG,
    BalanceConfig,
    CacheConfig,
)
from eeg_assets.lib.dataset.balanced import (
    BalancedComposition,
    PreparedSplit,
    WindowRef,
    compose_balanced,
    pos_weight,
)
from eeg_assets.lib.dataset.index import (
    DatasetError,
    DatasetIndex,
    Log,
    ensure_index,
    name_list,
)
from eeg_assets.lib.dataset.manifest import (
    FULL,
    PARTIAL,
    Manifest,
    count_categories,
    ensure_manifest,
)

#: Files whose two members stay mapped per process (two descriptors each).
DEFAULT_MAX_OPEN_FILES = 128


class _MappedMembers:
    """Per-process LRU of memory-mapped cache files; pickles without its maps."""

    def __init__(self, cache_dir: Path, max_open_files: int = DEFAULT_MAX_OPEN_FILES,
                 config: CacheConfig = DEFAULT_CONFIG):
        self.cache_dir = Path(cache_dir)
        self.max_open_files = max_open_files
        self.config = config
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._maps: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __getstate__(self) -> dict:
        return {"cache_dir": self.cache_dir, "max_open_files": self.max_open_files,
                "config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def get(self, npz_name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(windows, labels)`` of one cache file, mapped in this process."""
        if self._pid != os.getpid():  # a forked worker must not share its parent's maps
            self._reset()
        maps = self._maps.get(npz_name)
        if maps is None:
            path = self.cache_dir / npz_name
            maps = open_windows(path, self.config)
            self._maps[npz_name] = maps
            if len(self._maps) > self.max_open_files:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(npz_name)
        return maps


class _CachedWindows(Dataset):
    """Reads ``(window, label)`` tensors of a cache split, one window's bytes at a time."""

    def __init__(self, cache_dir: Path, max_open_files: int = DEFAULT_MAX_OPEN_FILES,
                 config: CacheConfig = DEFAULT_CONFIG):
        self.cache_dir = Path(cache_dir)
        self._members = _MappedMembers(self.cache_dir, max_open_files, config)

    def read_window(self, npz_name: str, window_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows, labels = self._members.get(npz_name)
        window = np.array(windows[window_idx], dtype=np.float32)
        label = np.array(labels[window_idx], dtype=np.float32)
        return torch.from_numpy(window), torch.from_numpy(label)


class BalancedSeizureDataset(_CachedWindows):
    """The balanced training windows of a split (see :mod:`eeg_assets.lib.dataset.balanced`)."""

    def __init__(self, cache_dir: Path, composition: BalancedComposition,
                 max_open_files: int = DEFAULT_MAX_OPEN_FILES,
                 config: CacheConfig = DEFAULT_CONFIG):
        super().__init__(cache_dir, max_open_files, config)
        self.composition = composition
        self.windows: tuple[WindowRef, ...] = composition.windows

    @classmethod
    def from_manifest(cls, cache_dir: Path, manifest: Manifest | None = None,
                      balance: BalanceConfig = DEFAULT_BALANCE,
                      files: Sequence[str] | None = None,
                      config: CacheConfig = DEFAULT_CONFIG, log: Log = print
                      ) -> BalancedSeizureDataset:
        """Compose from ``manifest`` (default: the split's, validated or rebuilt first)."""
        if manifest is None:
            manifest = ensure_manifest(cache_dir, config, log=log)
        return cls(cache_dir, compose_balanced(manifest, balance, files=files), config=config)

    @property
    def seizure_ratio(self) -> float:
        return self.composition.seizure_ratio

    @property
    def pos_weight(self) -> float:
        return self.composition.pos_weight

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        npz_name, window_idx = self.windows[i]
        return self.read_window(npz_name, window_idx)


class EEGWindowDataset(_CachedWindows):
    """Every window of a split's labelled NPZs, in index order (validation).

    ``locate(i)`` and ``recordings()`` tell which recording and window an item is, so predictions
    can be stitched back per recording; ``references()`` gives their annotation events (by
    default those the build recorded in the split's ledger, read when first asked for).
    """

    def __init__(self, cache_dir: Path, index: DatasetIndex | None = None,
                 files: Sequence[str] | None = None, config: CacheConfig = DEFAULT_CONFIG,
                 log: Log = print, max_open_files: int = DEFAULT_MAX_OPEN_FILES,
                 references: SplitReferences | None = None):
        super().__init__(cache_dir, max_open_files, config)
        self._given_references = references
        self.timeline = (config.target_fs, config.stride_samples)
        if index is None:
            index = ensure_index(cache_dir, config, log=log)
        wanted = set(index.files if files is None else files)
        unknown = wanted - set(index.files)
        if unknown:
            raise DatasetError(f"not in the index of {cache_dir}: {name_list(sorted(unknown))}")
        unlabelled = [n for n, labelled in zip(index.files, index.labelled)
                      if n in wanted and not labelled]
        if unlabelled:
            log(f"[DATASET] EEGWindowDataset: skipping {name_list(unlabelled)} without labels")
        self._recordings = [(name, count)
                            for (name, count), labelled in zip(index.recordings(), index.labelled)
                            if name in wanted and labelled]
        #: ``_ends[k]`` = items in recordings 0..k, for a binary search from item to recording.
        self._ends = list(accumulate(count for _name, count in self._recordings))

    def recordings(self) -> list[tuple[str, int]]:
        """``(npz_name, n_windows)`` in item order: items are consecutive windows of these."""
        return list(self._recordings)

    def references(self) -> SplitReferences:
        """The references of :meth:`recordings` and of the split's recordings without windows.

        Raises
        ------
        ReferenceRecordError
            When the ledger has none recorded for one of the recordings.
        """
        references = self._given_references or read_references(self.cache_dir)
        return references.restricted_to(name for name, _count in self._recordings)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def locate(self, i: int) -> tuple[str, int]:
        """``(npz_name, window_idx)`` of item ``i``."""
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for {len(self)} windows")
        k = bisect_right(self._ends, i)
        start = self._ends[k - 1] if k else 0
        return self._recordings[k][0], i - start

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.read_window(*self.locate(i))


@dataclass(frozen=True)
class TrainingDataset:
    """The dataset a training run uses, with its exact seizure ratio and class weight."""

    dataset: BalancedSeizureDataset | EEGWindowDataset
    seizure_ratio: float
    pos_weight: float
    #: Why the balanced set was not used (smoke tests only); ``None`` when it was.
    fallback_reason: str | None = None


def smoke_test_fallback(split: PreparedSplit, config: CacheConfig, log: Log, reason: str
                        ) -> TrainingDataset:
    """``EEGWindowDataset`` over ``split.files``, with the ratio and weight counted from the
    index's facts: a smoke test whose files cannot give a balanced set (``reason``)."""
    log(f"[DATASET] BalancedSeizureDataset unavailable in smoke test ({reason}); "
        "falling back to EEGWindowDataset")
    dataset = EEGWindowDataset(split.cache_dir, split.index, files=split.files, config=config,
                               log=log)
    counts = count_categories(split.facts.restricted_to(split.files), config)
    total = sum(counts.values())
    ratio = (counts[PARTIAL] + counts[FULL]) / total if total else 0.0
    if not 0.0 < ratio < 1.0:
        raise DatasetError(f"{split.cache_dir}: the fallback's {total} labelled windows have a "
                           f"seizure ratio of {ratio:.1%}; no usable pos_weight")
    weight = pos_weight(ratio)
    log(f"[DATASET] EEGWindowDataset: {len(dataset)} windows from index")
    log(f"[DATASET] Seizure ratio: {ratio:.1%} (from index)")
    log(f"[DATASET] Using pos_weight: {weight:.2f} (sqrt scaling)")
    return TrainingDataset(dataset, ratio, weight, fallback_reason=reason)
