"""The continuous cache layout (``lib/cache/layout.py``) against the windows layout, on the sample
corpus's eval split (EDF files written with pyedflib): the same windows and labels bit for bit,
the same index counts, manifest categories and balanced set, a sixth of the bytes, exact
conversion both ways, and damage found by verification as in the NPZs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.convert import ConvertError, convert_split
from eeg_assets.lib.cache.layout import (
    CONTINUOUS,
    WINDOWS,
    cache_files_on_disk,
    open_windows,
    stem_of,
)
from eeg_assets.lib.cache.ledger import BUILT, Ledger
from eeg_assets.lib.cache.verify import verify_split
from eeg_assets.lib.config import DEFAULT_BALANCE, CacheConfig
from eeg_assets.lib.dataset.balanced import compose_split
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.manifest import DamagedNpzError, scan_manifest, update_manifest
from eeg_assets.lib.dataset.torch_datasets import EEGWindowDataset
from eeg_assets_tests.support.dagster_fixtures import EVAL_STEMS, sample_raw_root  # noqa: F401

WINDOWS_CONFIG = CacheConfig()
CONTINUOUS_CONFIG = CacheConfig(layout=CONTINUOUS)
W, S = WINDOWS_CONFIG.window_samples, WINDOWS_CONFIG.stride_samples


def build(raw_root: Path, cache_dir: Path, config: CacheConfig) -> Path:
    report = build_split(raw_root / "eval", cache_dir, split="eval", config=config, workers=1,
                         progress=None, log=lambda _line: None)
    assert len(report.built) == len(EVAL_STEMS) and not report.quarantined
    update_index(cache_dir, config)
    update_manifest(cache_dir, config)
    return cache_dir


@pytest.fixture(scope="module")
def caches(sample_raw_root, tmp_path_factory):  # noqa: F811 - the fixture
    """The eval split built once in each layout; read-only (copy it to change it)."""
    root = tmp_path_factory.mktemp("layouts")
    return (build(sample_raw_root, root / "windows", WINDOWS_CONFIG),
            build(sample_raw_root, root / "continuous", CONTINUOUS_CONFIG))


def cache_files(cache_dir: Path) -> list[str]:
    return sorted(cache_files_on_disk(cache_dir))


def by_stem(names) -> dict[str, str]:
    return {stem_of(name): name for name in names}


def test_the_continuous_files_are_the_signal_once_time_major(caches):
    _windows_dir, continuous_dir = caches
    assert cache_files(continuous_dir) == [f"{stem}_data.npy" for stem in EVAL_STEMS]
    windows_by_stem = {e.stem: e.n_windows for e in Ledger(continuous_dir).entries().values()}
    for stem in EVAL_STEMS:
        data = np.load(continuous_dir / f"{stem}_data.npy")
        labels = np.load(continuous_dir / f"{stem}_labels.npy")
        assert data.dtype == np.float32 and data.ndim == 2 and data.shape[1] == 19
        assert labels.dtype == np.uint8 and labels.shape == (data.shape[0],)
        assert set(np.unique(labels)) <= {0, 1}
        # exactly the samples the windows cover
        assert data.shape[0] == (windows_by_stem[stem] - 1) * S + W


def test_both_layouts_give_every_window_and_label_bit_for_bit(caches):
    windows_dir, continuous_dir = caches
    npz, continuous = by_stem(cache_files(windows_dir)), by_stem(cache_files(continuous_dir))
    assert npz.keys() == continuous.keys() == set(EVAL_STEMS)
    total = 0
    for stem in EVAL_STEMS:
        windows_a, labels_a = open_windows(windows_dir / npz[stem], WINDOWS_CONFIG)
        windows_b, labels_b = open_windows(continuous_dir / continuous[stem], CONTINUOUS_CONFIG)
        assert len(windows_a) == len(windows_b) == len(labels_b) > 0
        for i in range(len(windows_a)):
            a = np.asarray(windows_a[i])
            b = np.ascontiguousarray(windows_b[i])
            assert a.shape == b.shape == (19, W) and a.tobytes() == b.tobytes()
            assert np.array_equal(np.asarray(labels_a[i]), np.asarray(labels_b[i], np.float32))
        total += len(windows_a)
    assert total == 52


def test_index_manifest_and_balanced_set_keep_their_keys_and_counts(caches):
    windows_dir, continuous_dir = caches
    index_a = json.loads((windows_dir / "_dataset_index.json").read_text())
    index_b = json.loads((continuous_dir / "_dataset_index.json").read_text())
    assert index_a.keys() == index_b.keys()
    assert [stem_of(n) for n in index_a["files"]] == [stem_of(n) for n in index_b["files"]]
    assert index_b["files"] == [f"{stem}_data.npy" for stem in EVAL_STEMS]
    assert index_a["window_counts"] == index_b["window_counts"]

    def categories(cache_dir):
        manifest = json.loads((cache_dir / "manifest.json").read_text())
        return {category: [(stem_of(e["cache_file"]), e["window_idx"]) for e in entries]
                for category, entries in manifest.items()}

    assert categories(windows_dir) == categories(continuous_dir)
    balanced_a = compose_split(windows_dir, DEFAULT_BALANCE)
    balanced_b = compose_split(continuous_dir, DEFAULT_BALANCE)
    assert [(stem_of(n), i) for n, i in balanced_a.windows] == \
        [(stem_of(n), i) for n, i in balanced_b.windows]
    assert balanced_a.pos_weight == balanced_b.pos_weight


def test_the_torch_dataset_reads_the_same_items_from_either_layout(caches):
    windows_dir, continuous_dir = caches
    a = EEGWindowDataset(windows_dir, config=WINDOWS_CONFIG, log=lambda _line: None)
    b = EEGWindowDataset(continuous_dir, config=CONTINUOUS_CONFIG, log=lambda _line: None)
    assert len(a) == len(b) == 52
    for i in (0, 7, 25, 51):
        (xa, ya), (xb, yb) = a[i], b[i]
        assert xb.dtype == xa.dtype and yb.dtype == ya.dtype
        assert xa.shape == xb.shape and bool((xa == xb).all()) and bool((ya == yb).all())


def test_each_sample_is_stored_once_where_the_windows_store_it_six_times(caches):
    """Bytes per file: windows n * 15360 * (19 + 1) * 4 (labels float32) against (n - 1) * 2560
    + 15360 samples of 19 * 4 + 1 bytes, plus headers. The ratio grows with the recording: 4.9
    for the sample's 19-window file, 6.2 for a 30-min TUSZ recording (benchmarks/bench_layouts.py
    measures it on hours of EEG)."""
    windows_dir, continuous_dir = caches
    for stem in EVAL_STEMS:
        npz = (windows_dir / f"{stem}_windows.npz").stat().st_size
        n_windows = len(open_windows(windows_dir / f"{stem}_windows.npz", WINDOWS_CONFIG)[0])
        assert 0 < npz - n_windows * W * 20 * 4 < 1024
        continuous = sum((continuous_dir / f"{stem}{suffix}").stat().st_size
                         for suffix in ("_data.npy", "_labels.npy"))
        assert 0 < continuous - ((n_windows - 1) * S + W) * (19 * 4 + 1) <= 2 * 128


@pytest.mark.parametrize("layout", [CONTINUOUS, WINDOWS])
def test_conversion_is_exact_incremental_and_verified(caches, tmp_path, layout):
    windows_dir, continuous_dir = caches
    source, built = (windows_dir, continuous_dir) if layout == CONTINUOUS else \
        (continuous_dir, windows_dir)
    target = tmp_path / "converted"
    report = convert_split(source, target, layout, log=lambda _line: None)
    assert len(report.converted) == 4 and not report.refused
    for name in cache_files(built):  # the bytes a build of the EDFs writes
        assert (target / name).read_bytes() == (built / name).read_bytes()
        if layout == CONTINUOUS:
            labels = name.replace("_data.npy", "_labels.npy")
            assert (target / labels).read_bytes() == (built / labels).read_bytes()
    config = CacheConfig(layout=layout)
    assert verify_split(target, config, verify_all=True).passed
    again = convert_split(source, target, layout, log=lambda _line: None)
    assert again.converted == [] and again.skipped == 4


def test_a_conversion_into_its_own_folder_or_from_nothing_is_refused(caches, tmp_path):
    windows_dir, _continuous_dir = caches
    with pytest.raises(ConvertError, match="same folder"):
        convert_split(windows_dir, windows_dir, CONTINUOUS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConvertError, match="no cache files"):
        convert_split(tmp_path / "empty", tmp_path / "out", CONTINUOUS)


def _flip_byte(path: Path, offset: int) -> None:
    """Change one byte and keep size and mtime (what a fingerprint cannot see)."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_damage_with_size_and_mtime_kept_is_found_and_never_converted(caches, tmp_path):
    damaged = Path(shutil.copytree(caches[1], tmp_path / "continuous"))
    data = damaged / f"{EVAL_STEMS[2]}_data.npy"
    labels = damaged / f"{EVAL_STEMS[3]}_labels.npy"
    _flip_byte(data, data.stat().st_size // 2)
    _flip_byte(labels, labels.stat().st_size - 1)
    report = verify_split(damaged, CONTINUOUS_CONFIG, verify_all=True)
    assert sorted(report.failed) == [data.name, f"{EVAL_STEMS[3]}_data.npy"]
    assert any("data fails its CRC-32 check" in p for p in report.problems)
    assert any("labels fails its CRC-32 check" in p for p in report.problems)
    with pytest.raises(DamagedNpzError, match=f"{EVAL_STEMS[3]}_data.npy: labels fails"):
        scan_manifest(damaged, CONTINUOUS_CONFIG)
    converted = convert_split(damaged, tmp_path / "windows", WINDOWS, log=lambda _line: None)
    assert len(converted.converted) == 2 and len(converted.refused) == 2
    assert not (tmp_path / "windows" / f"{EVAL_STEMS[2]}_windows.npz").exists()


def test_switching_the_layout_of_a_folder_rebuilds_it_and_removes_the_other_layouts_files(
        sample_raw_root, caches, tmp_path):  # noqa: F811 - the fixture
    cache_dir = Path(shutil.copytree(caches[0], tmp_path / "cache"))
    report = build_split(sample_raw_root / "eval", cache_dir, split="eval",
                         config=CONTINUOUS_CONFIG, workers=1, progress=None,
                         log=lambda _line: None)
    assert len(report.built) == 4
    assert cache_files(cache_dir) == cache_files(caches[1])
    assert not list(cache_dir.glob("*.npz"))
    assert sorted(p.name for p in cache_dir.glob("*_labels.npy")) == \
        sorted(p.name for p in caches[1].glob("*_labels.npy"))
    entries = [e for e in Ledger(cache_dir).entries().values() if e.status == BUILT]
    assert {e.config_version for e in entries} == {CONTINUOUS_CONFIG.version()}
    assert CONTINUOUS_CONFIG.version() != WINDOWS_CONFIG.version()


def test_the_commands_build_convert_and_refuse_as_a_user_runs_them(sample_raw_root, tmp_path,
                                                                   run_cli):  # noqa: F811
    data_dir = sample_raw_root / "eval"
    by_flag = run_cli("build-cache", "--data-dir", data_dir, "--cache-dir", tmp_path / "flag",
                      "--split", "eval", "--layout", "continuous", "--workers", "1",
                      "--no-progress")
    assert by_flag.returncode == 0, by_flag.stderr
    assert cache_files(tmp_path / "flag") == [f"{stem}_data.npy" for stem in EVAL_STEMS]
    assert "4 files, 52 windows" in by_flag.stdout
    by_env = run_cli("build-cache", "--data-dir", data_dir, "--cache-dir", tmp_path / "env",
                     "--split", "eval", "--workers", "1", "--no-progress",
                     env={"EEG_ASSETS_CACHE_LAYOUT": "continuous"})
    assert by_env.returncode == 0
    assert cache_files(tmp_path / "env") == cache_files(tmp_path / "flag")
    wrong = run_cli("build-cache", "--data-dir", data_dir, "--cache-dir", tmp_path / "wrong",
                    "--split", "eval", env={"EEG_ASSETS_CACHE_LAYOUT": "mmap"})
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "EEG_ASSETS_CACHE_LAYOUT='mmap': use one of windows, continuous" in wrong.stderr

    converted = run_cli("convert-cache", "--from", tmp_path / "flag", "--to", tmp_path / "npz",
                        "--layout", "windows")
    assert converted.returncode == 0, converted.stderr
    assert "converted 4, up to date 0, left out 0" in converted.stdout
    assert "[convert-cache]" in converted.stdout and "4 files, 52 windows" in converted.stdout
    verified = run_cli("verify-cache", "--cache-dir", tmp_path / "npz", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    scanned = run_cli("scan-cache", "--cache-dir", tmp_path / "flag")
    assert scanned.returncode == 0 and "27 partial_seizure" in scanned.stdout, scanned.stderr
    same = run_cli("convert-cache", "--from", tmp_path / "flag", "--to", tmp_path / "flag",
                   "--layout", "windows")
    assert same.returncode == 1 and "Traceback" not in same.stderr
    assert "same folder" in same.stderr
