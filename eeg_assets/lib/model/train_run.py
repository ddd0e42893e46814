"""One training run from the cache: what the CLI, the local launcher and Modal all execute.

Startup follows the seed: verify the official patient-disjoint splits, validate or rebuild the
index and manifest, pick ``BalancedSeizureDataset`` (or the smoke-test fallback), take the
exact ``pos_weight``; then train, re-evaluate the best checkpoint and write ``.csv_bi``
hypotheses for standard scorers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eeg_assets.lib.config import (
    DEFAULT_BALANCE,
    DEFAULT_CONFIG,
    BalanceConfig,
    CacheConfig,
)
from eeg_assets.lib.dataset.index import INDEX_NAME, ensure_index
from eeg_assets.lib.dataset.splits import verify_patient_disjointness
from eeg_assets.lib.dataset.torch_datasets import (
    EEGWindowDataset,
    select_training_dataset,
)
from eeg_assets.lib.flags import EnvFlags
from eeg_assets.lib.model.training import TrainConfig, evaluate_checkpoint, fit

SUMMARY_NAME = "training_summary.json"
HYPOTHESES_DIR = "hypotheses"


@dataclass(frozen=True)
class TrainingRequest:
    train_cache: Path
    val_cache: Path
    out_dir: Path
    train: TrainConfig = TrainConfig()
    balance: BalanceConfig = DEFAULT_BALANCE
    cache: CacheConfig = DEFAULT_CONFIG

    def to_dict(self) -> dict:
        return {"train_cache": str(self.train_cache), "val_cache": str(self.val_cache),
                "out_dir": str(self.out_dir), "train": self.train.to_dict(),
                "balance": dataclasses.asdict(self.balance), "cache": self.cache.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> TrainingRequest:
        return cls(train_cache=Path(data["train_cache"]), val_cache=Path(data["val_cache"]),
                   out_dir=Path(data["out_dir"]), train=TrainConfig.from_dict(data["train"]),
                   balance=BalanceConfig(**data["balance"]),
                   cache=CacheConfig.from_dict(data["cache"]))


def run_training(request: TrainingRequest, log: Callable[[str], None] = print,
                 on_epoch: Callable[[dict], None] | None = None,
                 flags: EnvFlags | None = None) -> dict:
    """Train and return a JSON-able summary (also written to ``out_dir/training_summary.json``)."""
    flags = flags if flags is not None else EnvFlags.from_env()
    verify_patient_disjointness({"train": request.train_cache, "val": request.val_cache},
                                log=log, config=request.cache)
    training = select_training_dataset(request.train_cache, request.balance, flags=flags, log=log,
                                       config=request.cache)
    val_index = ensure_index(request.val_cache, request.cache, log=log)
    val_files = val_index.first_files(flags.file_limit())
    val_dataset = EEGWindowDataset(request.val_cache, val_index, files=val_files, log=log)
    data_versions = {
        "train_index": _index_fingerprint(request.train_cache),
        "val_index": _index_fingerprint(request.val_cache),
        "cache_config": request.cache.version(),
        "balance": request.balance.version(),
    }
    result = fit(training.dataset, training.pos_weight, val_dataset, request.out_dir,
                 request.train, log=log, on_epoch=on_epoch, data_versions=data_versions)
    hypotheses = request.out_dir / HYPOTHESES_DIR
    reproduced = evaluate_checkpoint(result.best_checkpoint, val_dataset, device=request.train.device,
                                     cpu_threads=request.train.cpu_threads,
                                     hypothesis_dir=hypotheses)
    summary = {
        **result.to_dict(),
        "pos_weight": training.pos_weight,
        "seizure_ratio": training.seizure_ratio,
        "train_windows": len(training.dataset),
        "val_windows": len(val_dataset),
        "val_recordings": len(val_files),
        "reproduced_metrics": reproduced,
        "hypotheses_dir": str(hypotheses),
        "data_versions": data_versions,
        "checkpoint_bytes": result.best_checkpoint.stat().st_size,
    }
    (request.out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, default=_jsonable))
    return summary


#: Metrics that must be finite after training (event ratios may be NaN when undefined).
REQUIRED_FINITE = ("train_loss", "val_loss", "val_auroc")


def non_finite_metrics(summary: dict) -> list[str]:
    """``"epoch N key"`` for every required metric that is NaN or infinite."""
    return [f"epoch {h['epoch']} {key}" for h in summary["history"] for key in REQUIRED_FINITE
            if not math.isfinite(float(h.get(key, math.nan)))]


def _index_fingerprint(cache_dir: Path) -> str:
    return hashlib.sha256((Path(cache_dir) / INDEX_NAME).read_bytes()).hexdigest()[:16]


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
