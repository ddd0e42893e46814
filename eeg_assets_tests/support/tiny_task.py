"""A tiny synthetic training task: 5 Hz rhythmic bursts on all channels in noise, short windows,
held in memory (no cache). One epoch of a small network takes well under a second on CPU.
Shared by the training-loop and model-factory tests."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from eeg_assets.lib.cache.references import Reference, SplitReferences

FS = 256
WINDOW = 10 * FS
STRIDE = 5 * FS
POS_WEIGHT = 1.39

def synthetic_recording(rng: np.random.Generator, n_samples: int,
                         bursts: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    signal = rng.standard_normal((19, n_samples)).astype(np.float32)
    mask = np.zeros(n_samples, dtype=np.float32)
    t = np.arange(n_samples) / FS
    for start, stop in bursts:
        phase = rng.uniform(0, 2 * np.pi, size=(19, 1))
        signal[:, start:stop] += 2.0 * np.sin(2 * np.pi * 5.0 * t[start:stop] + phase)
        mask[start:stop] = 1.0
    return signal, mask


class WindowedRecordings(Dataset):
    """In-test stand-in for EEGWindowDataset: consecutive windows of whole recordings, whose
    references are the bursts written into them (sample-exact, the recording's full length)."""

    def __init__(self, recordings: list[tuple[str, np.ndarray, np.ndarray]], window: int,
                 stride: int, bursts: dict[str, list[tuple[int, int]]] | None = None):
        self.stride = stride
        self._items = []
        self._counts = []
        self._references = []
        for name, signal, mask in recordings:
            n = (signal.shape[1] - window) // stride + 1
            self._counts.append((name, n))
            self._items += [(signal[:, i * stride: i * stride + window],
                             mask[i * stride: i * stride + window]) for i in range(n)]
            self._references.append(Reference(
                stem=name.removesuffix("_windows.npz"), duration_s=signal.shape[1] / FS,
                seizures=tuple((a / FS, b / FS) for a, b in (bursts or {}).get(name, [])),
                npz_name=name))

    def references(self) -> SplitReferences:
        return SplitReferences(tuple(self._references))

    @property
    def timeline(self) -> tuple[int, int]:
        return FS, self.stride

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        window, label = self._items[index]
        return torch.from_numpy(window), torch.from_numpy(label)

    def recordings(self) -> list[tuple[str, int]]:
        return list(self._counts)


def _train_set() -> WindowedRecordings:
    """32 single-window recordings; 20 hold one 2-6 s burst somewhere in the window."""
    rng = np.random.default_rng(1)
    recordings = []
    for i in range(32):
        bursts = []
        if i % 8 < 5:
            length = int(rng.integers(2 * FS, 6 * FS))
            start = int(rng.integers(0, WINDOW - length))
            bursts.append((start, start + length))
        signal, mask = synthetic_recording(rng, WINDOW, bursts)
        recordings.append((f"train{i:02d}_s001_t000_windows.npz", signal, mask))
    return WindowedRecordings(recordings, WINDOW, STRIDE)


def _val_set() -> WindowedRecordings:
    """Three 40 s recordings (7 windows each): two with one seizure, one without."""
    rng = np.random.default_rng(2)
    layout = {"vala_s001_t000": [(10 * FS, 18 * FS)], "valb_s001_t000": [],
              "valc_s002_t001": [(25 * FS, 33 * FS)]}
    recordings = [(f"{stem}_windows.npz", *synthetic_recording(rng, 40 * FS, bursts))
                  for stem, bursts in layout.items()]
    return WindowedRecordings(recordings, WINDOW, STRIDE,
                              {f"{stem}_windows.npz": bursts for stem, bursts in layout.items()})


TRAIN, VAL = _train_set(), _val_set()
