"""Torch datasets over the cache, multi-worker loading, and the training-dataset choice."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eeg_assets.lib.dataset.balanced import BalancedSetError
from eeg_assets.lib.config import BalanceConfig
from eeg_assets.lib.dataset.torch_datasets import (
    BalancedSeizureDataset, EEGWindowDataset, select_training_dataset,
)
from eeg_assets.lib.flags import EnvFlags
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.manifest import MANIFEST_NAME
from eeg_assets.lib.cache.npzio import NpzFormatError
from eeg_assets.synthetic.fake_cache import SMALL_CONFIG, write_recording

CFG = SMALL_CONFIG  # windows (n, 3, 100), labels (n, 100)
QUIET = EnvFlags()


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


# ------------------------------------------------------------------------------------------------
# select_training_dataset
# ------------------------------------------------------------------------------------------------

def test_select_uses_the_balanced_set_and_prints_the_seed_lines(split):
    lines: list[str] = []
    chosen = select_training_dataset(split, flags=QUIET, log=lines.append, config=CFG)
    assert isinstance(chosen.dataset, BalancedSeizureDataset)
    assert chosen.fallback_reason is None
    assert chosen.seizure_ratio == 0.3
    assert chosen.pos_weight == pytest.approx((0.7 / 0.3) ** 0.5)
    assert lines[-4:] == [
        "[DATASET] BalancedSeizureDataset: 10 windows from manifest",
        "[DATASET] Using BalancedSeizureDataset known distribution",
        "[DATASET] Seizure ratio: 30.0% (from manifest)",
        "[DATASET] Using pos_weight: 1.53 (sqrt scaling)",
    ]
    assert (split / MANIFEST_NAME).exists()


def test_select_limits_files_in_index_order(split):
    lines: list[str] = []
    chosen = select_training_dataset(split, flags=EnvFlags(limit_files=1), log=lines.append,
                                     config=CFG)
    assert {ref.npz_name for ref in chosen.dataset.windows} == {"aaaaaaaa_s001_t000_windows.npz"}
    assert "[DATASET] Using the first 1 of 4 files (BGB_LIMIT_FILES)" in lines


def test_select_reads_the_flags_from_the_environment(split, monkeypatch):
    monkeypatch.setenv("BGB_LIMIT_FILES", "2")
    lines: list[str] = []
    select_training_dataset(split, log=lines.append, config=CFG)
    assert "[DATASET] Using the first 2 of 4 files (BGB_LIMIT_FILES)" in lines


def test_select_force_rebuild_deletes_and_rebuilds(split):
    select_training_dataset(split, flags=QUIET, log=lambda _line: None, config=CFG)
    lines: list[str] = []
    select_training_dataset(split, flags=EnvFlags(force_manifest_rebuild=True),
                            log=lines.append, config=CFG)
    assert any(line.startswith("[MANIFEST] rebuilt manifest.json (BGB_FORCE_MANIFEST_REBUILD=1)")
               for line in lines)


@pytest.fixture
def no_partial_split(tmp_path: Path) -> Path:
    cache = tmp_path / "train"
    write_recording(cache, "aaaaaaaa_s001_t000", [0, 100, 0, 0])
    write_recording(cache, "bbbbbbbb_s001_t000", [0, 0, 0])
    write_recording(cache, "cccccccc_s001_t000", [0, 0])
    write_recording(cache, "dddddddd_s001_t000", [100, 100])  # beyond the smoke test's 3 files
    return cache


def test_smoke_test_falls_back_to_window_dataset_with_exact_ratio(no_partial_split):
    lines: list[str] = []
    chosen = select_training_dataset(no_partial_split, flags=EnvFlags(smoke_test=True),
                                     log=lines.append, config=CFG)
    assert isinstance(chosen.dataset, EEGWindowDataset)
    assert len(chosen.dataset) == 9  # 3 files: 4 + 3 + 2 windows
    assert chosen.seizure_ratio == 1 / 9
    assert chosen.pos_weight == pytest.approx(8 ** 0.5)
    assert "no partial_seizure windows" in chosen.fallback_reason
    assert "[DATASET] Using the first 3 of 4 files (BGB_SMOKE_TEST=1)" in lines
    assert any(line.startswith("[DATASET] BalancedSeizureDataset unavailable in smoke test")
               and line.endswith("falling back to EEGWindowDataset") for line in lines)
    assert lines[-3:] == ["[DATASET] EEGWindowDataset: 9 windows from index",
                          "[DATASET] Seizure ratio: 11.1% (from index)",
                          "[DATASET] Using pos_weight: 2.83 (sqrt scaling)"]


def test_outside_smoke_tests_a_failed_balanced_set_is_an_error(no_partial_split):
    with pytest.raises(BalancedSetError, match="no partial_seizure windows"):
        select_training_dataset(no_partial_split, flags=QUIET, log=lambda _line: None,
                                config=CFG)


def test_balance_config_is_passed_through(split):
    chosen = select_training_dataset(split, balance=BalanceConfig(background_ratio=1.0),
                                     flags=QUIET, log=lambda _line: None, config=CFG)
    assert len(chosen.dataset) == 6 and chosen.seizure_ratio == 0.5
