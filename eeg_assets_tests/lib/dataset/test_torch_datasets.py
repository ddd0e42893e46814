"""Torch datasets over the cache, multi-worker loading, and the training-dataset choice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eeg_assets.lib.dataset.torch_datasets import BalancedSeizureDataset, EEGWindowDataset
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.cache.npzio import NpzFormatError
from eeg_assets.synthetic.fake_cache import SMALL_CONFIG, write_recording

CFG = SMALL_CONFIG  # windows (n, 3, 100), labels (n, 100)


def on_disk(cache: Path, npz_name: str, window_idx: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(cache / npz_name) as npz:
        return npz["windows"][window_idx], npz["labels"][window_idx]


def assert_item(cache: Path, item, npz_name: str, window_idx: int) -> None:
    window, label = item
    expected_window, expected_label = on_disk(cache, npz_name, window_idx)
    assert window.dtype == torch.float32 and label.dtype == torch.float32
    assert tuple(window.shape) == (3, 100) and tuple(label.shape) == (100,)
    assert torch.equal(window, torch.from_numpy(expected_window))
    assert torch.equal(label, torch.from_numpy(expected_label))


@pytest.fixture
def split(tmp_path: Path) -> Path:
    cache = tmp_path / "train"
    write_recording(cache, "aaaaaaaa_s001_t000", [0, 40, 100, 0, 0])
    write_recording(cache, "bbbbbbbb_s001_t000", [10, 0, 0, 0, 100, 0, 0])
    write_recording(cache, "cccccccc_s001_t000", None, n_windows=2)  # no labels
    write_recording(cache, "dddddddd_s001_t000", [0, 0, 60])
    return cache


def test_balanced_dataset_items_are_the_manifest_windows(split):
    dataset = BalancedSeizureDataset.from_manifest(split, config=CFG, log=lambda _line: None)
    # 3 partial -> int(0.9) = 0 full, int(7.5) = 7 of the 10 background windows
    assert len(dataset) == 10
    partial = [("aaaaaaaa_s001_t000_windows.npz", 1), ("bbbbbbbb_s001_t000_windows.npz", 0),
               ("dddddddd_s001_t000_windows.npz", 2)]
    assert [tuple(ref) for ref in dataset.windows[:3]] == partial
    assert dataset.seizure_ratio == 3 / 10
    for i in range(len(dataset)):
        assert_item(split, dataset[i], *dataset.windows[i])


def test_window_dataset_covers_labelled_files_in_index_order(split):
    lines: list[str] = []
    dataset = EEGWindowDataset(split, config=CFG, log=lines.append)
    assert dataset.recordings() == [("aaaaaaaa_s001_t000_windows.npz", 5),
                                    ("bbbbbbbb_s001_t000_windows.npz", 7),
                                    ("dddddddd_s001_t000_windows.npz", 3)]
    assert len(dataset) == 15
    assert dataset.locate(0) == ("aaaaaaaa_s001_t000_windows.npz", 0)
    assert dataset.locate(5) == ("bbbbbbbb_s001_t000_windows.npz", 0)
    assert dataset.locate(14) == ("dddddddd_s001_t000_windows.npz", 2)
    assert dataset.locate(-1) == dataset.locate(14)
    with pytest.raises(IndexError):
        dataset.locate(15)
    assert any("cccccccc_s001_t000_windows.npz without labels" in line for line in lines)
    for i in (0, 4, 5, 11, 14):
        assert_item(split, dataset[i], *dataset.locate(i))


def test_window_dataset_subset_of_files(split):
    dataset = EEGWindowDataset(split, config=CFG, files=["dddddddd_s001_t000_windows.npz"],
                               log=lambda _line: None)
    assert len(dataset) == 3 and dataset.locate(2) == ("dddddddd_s001_t000_windows.npz", 2)


def test_datasets_in_a_two_worker_dataloader(split):
    dataset = EEGWindowDataset(split, config=CFG, log=lambda _line: None)
    dataset[0]  # the parent maps a file before the workers start
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    windows, labels = zip(*loader)
    windows, labels = torch.cat(windows), torch.cat(labels)
    assert windows.shape == (15, 3, 100) and labels.shape == (15, 100)
    for i in range(15):
        expected_window, expected_label = on_disk(split, *dataset.locate(i))
        assert torch.equal(windows[i], torch.from_numpy(expected_window))
        assert torch.equal(labels[i], torch.from_numpy(expected_label))

    balanced = BalancedSeizureDataset.from_manifest(split, config=CFG, log=lambda _line: None)
    seen = torch.cat([y for _x, y in DataLoader(balanced, batch_size=3, num_workers=2)])
    assert seen.sum(dim=1).tolist() == [40.0, 10.0, 60.0] + [0.0] * 7


def test_pickled_dataset_carries_no_open_maps(split):
    dataset = EEGWindowDataset(split, config=CFG, log=lambda _line: None)
    dataset[0]
    assert len(dataset._members._maps) == 1
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(clone._members._maps) == 0
    assert_item(split, clone[6], *clone.locate(6))


def test_maps_opened_before_a_fork_are_not_reused(split):
    dataset = EEGWindowDataset(split, config=CFG, log=lambda _line: None)
    dataset[0]
    dataset._members._pid = -1  # as a forked worker sees its parent's maps
    assert_item(split, dataset[5], *dataset.locate(5))
    assert list(dataset._members._maps) == ["bbbbbbbb_s001_t000_windows.npz"]


def test_open_maps_are_bounded(split):
    dataset = EEGWindowDataset(split, config=CFG, log=lambda _line: None, max_open_files=1)
    for i in range(len(dataset)):
        assert_item(split, dataset[i], *dataset.locate(i))
        assert len(dataset._members._maps) == 1


def test_compressed_npz_is_refused_not_decompressed(tmp_path):
    cache = tmp_path / "train"
    write_recording(cache, "aaaaaaaa_s001_t000", [0, 50])
    index = update_index(cache, CFG)
    np.savez_compressed(cache / "aaaaaaaa_s001_t000_windows.npz",
                        windows=np.zeros((2, 3, 100), np.float32),
                        labels=np.zeros((2, 100), np.float32))
    with pytest.raises(NpzFormatError, match="compressed"):
        EEGWindowDataset(cache, index=index, config=CFG, log=lambda _line: None)[0]
    with pytest.raises(NpzFormatError, match="compressed"):  # the index check scans it
        EEGWindowDataset(cache, config=CFG, log=lambda _line: None)
