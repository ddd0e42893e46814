"""The training request crosses a process (and Modal) boundary as JSON through Dagster Pipes."""

import json
import os
from pathlib import Path

import pytest

from eeg_assets.lib.config import BalanceConfig, CacheConfig
from eeg_assets.lib.dataset.balanced import BALANCED_NAME, read_balanced
from eeg_assets.lib.dataset.index import INDEX_NAME
from eeg_assets.lib.dataset.pinned import PinnedFile, StaleInputError
from eeg_assets.lib.flags import EnvFlags
from eeg_assets.lib.model.train_run import PinnedInputs, TrainingRequest, run_training
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets_tests.support.training_cache import SHORT_TRAINING, write_cache


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
