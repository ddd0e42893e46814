"""The training request crosses a process (and Modal) boundary as JSON through Dagster Pipes."""

import json
from pathlib import Path

from eeg_assets.lib.config import BalanceConfig, CacheConfig
from eeg_assets.lib.model.train_run import TrainingRequest
from eeg_assets.lib.model.training import TrainConfig


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
