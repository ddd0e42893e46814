"""Loader benchmark: random windows/s through BalancedSeizureDataset vs the compressed predecessor.

Writes a split of real-size windows (19 x 15360 float32; default 20 files x 30 windows, ~0.7 GB)
as uncompressed NPZs with their ledger entries, plus a ``np.savez_compressed`` copy of each file
(the predecessor's cache, ~0.65 GB). Then, pinned to one core and from a warm page cache, it
measures random access:

* ours: ``BalancedSeizureDataset[i]`` (memory-mapped member, one window's bytes per item);
* baseline: ``np.load(path)["windows"][i]`` on the compressed copy (decompresses the whole array).

Run by hand: ``python benchmarks/bench_loader.py [--files 20] [--windows 30] [--dir /tmp]``.
Nothing is asserted; both rates and their ratio are printed. Everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eeg_assets.lib.dataset.balanced import compose_balanced
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.torch_datasets import BalancedSeizureDataset
from eeg_assets.lib.dataset.manifest import update_manifest
from eeg_assets.synthetic.fake_cache import write_cache_entry

CONFIG = DEFAULT_CONFIG
CHANNELS = len(CONFIG.channels)


def recording(rng: np.random.Generator, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Clipped z-scores like the real cache, and one seizure of 100-200 s as consecutive windows
    of a 10 s stride would see it (so there are partial, full and background windows)."""
    windows = np.clip(rng.standard_normal((n_windows, CHANNELS, CONFIG.window_samples),
                                          dtype=np.float32), -10, 10)
    seconds = CONFIG.window_s + (n_windows - 1) * CONFIG.stride_s
    mask = np.zeros(seconds * CONFIG.target_fs, dtype=np.float32)
    onset = int(rng.integers(0, seconds - 200))
    mask[onset * CONFIG.target_fs:(onset + int(rng.integers(100, 201))) * CONFIG.target_fs] = 1
    starts = np.arange(n_windows) * CONFIG.stride_samples
    labels = np.stack([mask[s:s + CONFIG.window_samples] for s in starts])
    return windows, labels


def write_split(cache_dir: Path, compressed_dir: Path, files: int, n_windows: int) -> None:
    rng = np.random.default_rng(0)
    for number in range(files):
        stem = f"aaaa{number:04d}_s001_t000"
        windows, labels = recording(rng, n_windows)
        npz_name = write_cache_entry(cache_dir, stem, windows, labels, config=CONFIG)
        np.savez_compressed(compressed_dir / npz_name, windows=windows, labels=labels)


def warm(*folders: Path) -> None:
    """Read every file once so both readers start from the page cache."""
    for folder in folders:
        for path in folder.glob("*.npz"):
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def rate(read, picks: list) -> float:
    started = time.perf_counter()
    for pick in picks:
        read(pick)
    return len(picks) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--windows", type=int, default=30)
    parser.add_argument("--reads", type=int, default=3000, help="random reads through ours")
    parser.add_argument("--baseline-reads", type=int, default=20)
    parser.add_argument("--dir", default=None, help="parent of the temporary folders")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench_loader.", dir=args.dir))
    try:
        cache_dir, compressed_dir = root / "train", root / "compressed"
        cache_dir.mkdir()
        compressed_dir.mkdir()
        started = time.perf_counter()
        write_split(cache_dir, compressed_dir, args.files, args.windows)
        size = sum(p.stat().st_size for p in root.rglob("*.npz")) / 1e9
        print(f"[setup] {args.files} files x {args.windows} windows of {CHANNELS}x"
              f"{CONFIG.window_samples} float32 ({size:.2f} GB with the compressed copy) in "
              f"{time.perf_counter() - started:.0f} s under {root}")
        dataset = BalancedSeizureDataset(cache_dir, compose_balanced(update_manifest(cache_dir)))
        c = dataset.composition
        print(f"[setup] balanced set: {len(c.partial)} partial + {len(c.full)} full + "
              f"{len(c.background)} background = {len(dataset)} windows")
        warm(cache_dir, compressed_dir)
        rng = np.random.default_rng(1)

        ours = rate(dataset.__getitem__, rng.integers(0, len(dataset), args.reads).tolist())
        refs = [dataset.windows[i] for i in rng.integers(0, len(dataset), args.baseline_reads)]
        baseline = rate(lambda ref: np.load(compressed_dir / ref.npz_name)["windows"][ref.window_idx],
                        refs)
        print(f"BalancedSeizureDataset (uncompressed, memory-mapped): {ours:9.1f} windows/s "
              f"({args.reads} random reads, 1 core)")
        print(f"np.load(savez_compressed)['windows'][i] (predecessor): {baseline:9.2f} windows/s "
              f"({args.baseline_reads} random reads, 1 core)")
        print(f"speed-up: {ours / baseline:.0f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
