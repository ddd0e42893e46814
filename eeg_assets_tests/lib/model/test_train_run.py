"""The training request crosses a process (and Modal) boundary as JSON through Dagster Pipes."""

import json
import os
from pathlib import Path

import pytest

from eeg_assets.lib.config import DEFAULT_CONFIG, BalanceConfig, CacheConfig
from eeg_assets.lib.dataset import chain
from eeg_assets.lib.dataset.balanced import BALANCED_NAME, read_balanced
from eeg_assets.lib.dataset.chain import BALANCED_DATASET, DATASET_INDEX, MANIFEST, ChainRequest
from eeg_assets.lib.dataset.index import INDEX_NAME, DatasetError
from eeg_assets.lib.dataset.manifest import MANIFEST_NAME
from eeg_assets.lib.dataset.pinned import PinnedFile, StaleInputError
from eeg_assets.lib.files import content_version
from eeg_assets.lib.flags import EnvFlags
from eeg_assets.lib.model.train_run import PinnedInputs, TrainingRequest, run_training
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets.synthetic.fake_cache import write_recording
from eeg_assets_tests.support.training_cache import (
    SHORT_TRAINING,
    TRAIN_FILES,
    VAL_FILES,
    write_cache,
    write_split,
)


def test_request_survives_json_with_a_non_default_cache_config():
    """A remote run validates the cache with the same config version the cache was built with."""
    request = TrainingRequest(
        train_cache=Path("/results/cache/tusz/train"), val_cache=Path("/results/cache/tusz/val"),
        out_dir=Path("/results/trained_model"), train=TrainConfig(epochs=2),
        balance=BalanceConfig(full_ratio=0.5, seed=7),
        cache=CacheConfig(notch_hz=50.0, stride_s=5))
    received = TrainingRequest.from_dict(json.loads(json.dumps(request.to_dict())))
    assert received == request
    assert received.cache.version() == request.cache.version() != CacheConfig().version()


# ------------------------------------------------------------------------------------------------
# Pinned inputs: a run launched by Dagster trains on exactly what the upstream assets wrote
# ------------------------------------------------------------------------------------------------

def _pinned_request(cache_root: Path, out_dir: Path) -> TrainingRequest:
    return TrainingRequest(
        train_cache=cache_root / "train", val_cache=cache_root / "val", out_dir=out_dir,
        train=SHORT_TRAINING, inputs=PinnedInputs(
            balanced_set=PinnedFile.of(cache_root / "train" / BALANCED_NAME),
            val_index=PinnedFile.of(cache_root / "val" / INDEX_NAME)))


@pytest.fixture
def pinned(tmp_path) -> tuple[Path, TrainingRequest]:
    cache_root = tmp_path / "cache"
    write_cache(cache_root)
    return cache_root, _pinned_request(cache_root, tmp_path / "out")


def _refused(request: TrainingRequest) -> str:
    with pytest.raises(StaleInputError) as raised:
        run_training(request, log=lambda line: None, flags=EnvFlags())
    assert not (request.out_dir / "best.pt").exists()
    return str(raised.value)


def test_pinned_request_survives_json(pinned):
    _, request = pinned
    assert TrainingRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_pinned_run_trains_on_the_files_as_written(pinned):
    cache_root, request = pinned
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cache_root.rglob("*.json")}
    lines: list[str] = []
    summary = run_training(request, log=lines.append, flags=EnvFlags())
    assert summary["data_versions"]["balanced_set"] == request.inputs.balanced_set.version
    assert summary["data_versions"]["val_index"] == request.inputs.val_index.version
    assert summary["train_windows"] == read_balanced(cache_root / "train").total
    assert "[DATASET] Using BalancedSeizureDataset known distribution" in lines
    assert "✅ PATIENT DISJOINTNESS VERIFIED (train, val: no patient in two splits)" in lines
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in cache_root.rglob("*.json")}
    assert after == before  # no index, manifest or balanced set rewritten


def test_a_balanced_set_changed_after_pinning_is_refused(pinned):
    cache_root, request = pinned
    path = cache_root / "train" / BALANCED_NAME
    path.write_bytes(path.read_bytes() + b"\n")
    message = _refused(request)
    assert message.startswith(f"balanced set {path} is stale: it changed after it was pinned")


def test_a_corrupt_balanced_set_is_refused(pinned):
    cache_root, _ = pinned
    path = cache_root / "train" / BALANCED_NAME
    path.write_text('{"partial_seizure": []}')
    message = _refused(_pinned_request(cache_root, cache_root.parent / "out"))
    assert message.startswith(f"balanced set {path} is corrupt: ")


def test_a_balanced_set_of_an_older_manifest_is_refused(pinned):
    cache_root, request = pinned
    manifest = cache_root / "train" / "manifest.json"
    manifest.write_text(json.dumps(json.loads(manifest.read_text()), indent=1))
    message = _refused(request)
    assert "is stale: it was composed from manifest version" in message
    assert str(manifest) in message


def test_a_train_npz_rewritten_behind_the_cache_is_refused(pinned):
    cache_root, request = pinned
    npz = cache_root / "train" / "aaaaaaab_s001_t000_windows.npz"
    os.utime(npz, ns=(npz.stat().st_atime_ns, npz.stat().st_mtime_ns + 10**9))
    message = _refused(request)
    assert message.startswith(f"index {cache_root / 'train' / INDEX_NAME} is stale: "), message
    assert "aaaaaaab_s001_t000_windows.npz" in message


def test_a_balanced_set_whose_manifest_no_longer_describes_the_cache_is_refused(pinned):
    cache_root, request = pinned
    (cache_root / "train" / "aaaaaaac_s001_t000_windows.npz").unlink()  # a recording removed
    message = _refused(request)
    assert "its manifest no longer describes the cache" in message, message
    assert "aaaaaaac_s001_t000_windows.npz" in message


def test_a_missing_pinned_val_index_is_refused(pinned):
    cache_root, request = pinned
    (cache_root / "val" / INDEX_NAME).unlink()
    assert _refused(request) == f"index {cache_root / 'val' / INDEX_NAME} is missing"


def test_seed_flags_take_the_standalone_startup_and_say_so(pinned):
    _, request = pinned
    lines: list[str] = []
    run_training(request, log=lines.append, flags=EnvFlags(smoke_test=True))
    assert any(line.startswith(
        "[DATASET] BGB_SMOKE_TEST=1: the upstream scripts' standalone startup")
        for line in lines), lines
    assert "[DATASET] Using the first 3 of 4 files (BGB_SMOKE_TEST=1)" in lines


# ------------------------------------------------------------------------------------------------
# Standalone runs: the upstream scripts' startup prepares the files with the cache chain's steps,
# then takes the pinned path
# ------------------------------------------------------------------------------------------------

#: What the chain writes for training: train's index, manifest and balanced set, val's index.
CHAIN_FILES = ("train/" + INDEX_NAME, "train/" + MANIFEST_NAME, "train/" + BALANCED_NAME,
               "val/" + INDEX_NAME)


class _Quiet:
    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass


def _chain_files(cache_root: Path) -> dict[str, bytes]:
    """The files as the dataset_index, manifest and balanced_dataset assets write them."""
    steps = {"train": (DATASET_INDEX, MANIFEST, BALANCED_DATASET), "val": (DATASET_INDEX,)}
    for split, names in steps.items():
        for step in names:
            chain.run(ChainRequest(step=step, split=split, raw_folder=split),
                      cache_root.parent / "raw", cache_root, _Quiet())
    written = {name: (cache_root / name).read_bytes() for name in CHAIN_FILES}
    for name in CHAIN_FILES:
        (cache_root / name).unlink()
    return written


def _standalone_request(cache_root: Path, out_dir: Path) -> TrainingRequest:
    return TrainingRequest(train_cache=cache_root / "train", val_cache=cache_root / "val",
                           out_dir=out_dir, train=SHORT_TRAINING)


@pytest.mark.parametrize("flags", [EnvFlags(), EnvFlags(force_manifest_rebuild=True)],
                         ids=["no flag", "BGB_FORCE_MANIFEST_REBUILD"])
def test_standalone_run_writes_the_chain_files_then_takes_the_pinned_path(tmp_path, flags):
    cache_root = tmp_path / "cache"
    write_split(cache_root / "train", TRAIN_FILES)
    write_split(cache_root / "val", VAL_FILES)
    expected = _chain_files(cache_root)
    lines: list[str] = []
    summary = run_training(_standalone_request(cache_root, tmp_path / "out"), log=lines.append,
                           flags=flags)
    assert {name: (cache_root / name).read_bytes() for name in CHAIN_FILES} == expected
    balanced = cache_root / "train" / BALANCED_NAME
    # the pinned path, at the versions the chain's steps wrote
    assert summary["data_versions"] == {
        "balanced_set": content_version(balanced),
        "val_index": content_version(cache_root / "val" / INDEX_NAME),
        "cache_config": CacheConfig().version(), "balance": BalanceConfig().version()}
    assert f"[DATASET] Using the materialized {balanced} (version " \
           f"{content_version(balanced)})" in lines
    assert summary["train_windows"] == read_balanced(cache_root / "train").total
    # the upstream scripts' lines, once (the index: once per split)
    assert lines.count(
        f"[INDEX] rebuilding {INDEX_NAME} from recorded facts: missing {INDEX_NAME}") == 2
    reason = ("BGB_FORCE_MANIFEST_REBUILD=1" if flags.force_manifest_rebuild
              else f"missing {MANIFEST_NAME}")
    assert [line for line in lines if line.startswith("[MANIFEST]")] == [
        f"[MANIFEST] rebuilt {MANIFEST_NAME} ({reason}): 3 partial_seizure, 2 full_seizure, "
        "9 no_seizure windows"]
    assert lines.count("[DATASET] Using BalancedSeizureDataset known distribution") == 1
    assert "OFFICIAL TUSZ SPLITS (patients with windows in the cache)" in lines
    assert "✅ PATIENT DISJOINTNESS VERIFIED (train, val: no patient in two splits)" in lines


def test_a_dagster_run_with_flags_prepares_the_same_files_and_records_the_limit(pinned):
    cache_root, request = pinned
    before = {name: (cache_root / name).read_bytes() for name in CHAIN_FILES}
    lines: list[str] = []
    summary = run_training(request, log=lines.append, flags=EnvFlags(limit_files=2))
    assert {name: (cache_root / name).read_bytes() for name in CHAIN_FILES} == before
    assert summary["data_versions"]["balanced_set"] == request.inputs.balanced_set.version
    assert summary["data_versions"]["file_limit"] == "2"
    assert "[DATASET] Using the first 2 of 4 files (BGB_LIMIT_FILES)" in lines
    # the recipe on the first two files' windows: 2 partial, 0 of 2 full, all 4 background
    assert "[DATASET] BalancedSeizureDataset: 6 windows from manifest" in lines
    assert (summary["train_windows"], summary["val_recordings"]) == (6, 2)


def test_a_smoke_test_whose_first_files_give_no_balanced_set_falls_back(tmp_path):
    cache_root = tmp_path / "cache"
    width = CacheConfig().window_samples
    # the split composes (a partial window in the fourth file), its first three files do not
    write_split(cache_root / "train", {"aaaaaaaa_s001_t000": [0, 0, width],
                                       "aaaaaaab_s001_t000": [0, 0], "aaaaaaac_s001_t000": [0],
                                       "aaaaaaad_s001_t000": [0, 4000, 0]})
    write_split(cache_root / "val", VAL_FILES)
    lines: list[str] = []
    summary = run_training(_standalone_request(cache_root, tmp_path / "out"), log=lines.append,
                           flags=EnvFlags(smoke_test=True))
    assert any(line.startswith("[DATASET] BalancedSeizureDataset unavailable in smoke test (no "
                               "partial_seizure windows") for line in lines), lines
    assert "[DATASET] EEGWindowDataset: 6 windows from index" in lines
    assert "[DATASET] Seizure ratio: 16.7% (from index)" in lines
    assert summary["train_windows"] == 6
    assert summary["data_versions"]["balanced_set"] == content_version(
        cache_root / "train" / BALANCED_NAME)


def test_a_forced_rebuild_stops_on_labels_that_disagree_with_the_ledger(tmp_path):
    """The rescan reads labels the build ledger recorded otherwise: the chain's steps (from the
    ledger) and the labels would give two manifests, so the run names the file and stops."""
    cache_root = tmp_path / "cache"
    write_split(cache_root / "train", TRAIN_FILES)
    write_split(cache_root / "val", VAL_FILES)
    write_recording(cache_root / "train", "aaaaaaae_s001_t000", [0, 2000, 0], DEFAULT_CONFIG,
                    ledger_counts=[0, 0, 0], channels=len(DEFAULT_CONFIG.channels))
    with pytest.raises(DatasetError, match=r"the labels of 1 file\(s\): "
                                           r"aaaaaaae_s001_t000_windows.npz disagree with the "
                                           r"build ledger's record"):
        run_training(_standalone_request(cache_root, tmp_path / "out"), log=lambda line: None,
                     flags=EnvFlags(force_manifest_rebuild=True))
    assert not (tmp_path / "out" / "best.pt").exists()
