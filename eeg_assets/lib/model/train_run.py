"""One training run from the cache: what the local launcher and Modal both execute.

A run launched by Dagster is *pinned*: its request names the ``balanced_dataset.json`` of the
train split and the ``_dataset_index.json`` of the val split that the upstream assets wrote,
with their content versions, and the run trains on exactly those or refuses to start
(:mod:`eeg_assets.lib.dataset.pinned`). A run without pinned inputs, or one that sets one of the
upstream training scripts' ``BGB_*`` flags (docs/cache-format.md), follows their standalone
startup instead: validate or rebuild the index and manifest, pick ``BalancedSeizureDataset`` (or
the smoke-test fallback), take the exact ``pos_weight``. Either way it verifies the official
patient-disjoint splits, trains, re-evaluates the best checkpoint and writes ``.csv_bi``
hypotheses for standard scorers. Before any of that, the network the configuration names is
built and checked on the cache's window shape (:func:`~eeg_assets.lib.model.training.
preflight_model`), so a wrong model factory fails in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from eeg_assets.lib.config import DEFAULT_BALANCE, DEFAULT_CONFIG, BalanceConfig, CacheConfig
from eeg_assets.lib.dataset.balanced import dataset_log_lines
from eeg_assets.lib.dataset.index import INDEX_NAME, DatasetIndex, ensure_index
from eeg_assets.lib.dataset.pinned import PinnedFile, current_index, pinned_balanced, pinned_index
from eeg_assets.lib.dataset.splits import check_patient_disjointness, verify_patient_disjointness
from eeg_assets.lib.dataset.torch_datasets import (
    BalancedSeizureDataset,
    EEGWindowDataset,
    TrainingDataset,
    select_training_dataset,
)
from eeg_assets.lib.files import content_version, write_bytes_atomic
from eeg_assets.lib.flags import EnvFlags
from eeg_assets.lib.model.training import TrainConfig, evaluate_checkpoint, fit, preflight_model

SUMMARY_NAME = "training_summary.json"
HYPOTHESES_DIR = "hypotheses"


@dataclass(frozen=True)
class PinnedInputs:
    """What the upstream assets wrote: ``balanced_dataset[train]`` and ``dataset_index[val]``."""

    balanced_set: PinnedFile
    val_index: PinnedFile

    def to_dict(self) -> dict:
        return {"balanced_set": self.balanced_set.to_dict(), "val_index": self.val_index.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> PinnedInputs:
        return cls(PinnedFile.from_dict(data["balanced_set"]),
                   PinnedFile.from_dict(data["val_index"]))


@dataclass(frozen=True)
class TrainingRequest:
    train_cache: Path
    val_cache: Path
    out_dir: Path
    train: TrainConfig = TrainConfig()
    balance: BalanceConfig = DEFAULT_BALANCE
    cache: CacheConfig = DEFAULT_CONFIG
    #: ``None``: the upstream training scripts' standalone startup (no Dagster).
    inputs: PinnedInputs | None = None
    #: Folder holding the model factory's module when it is outside the package (e.g. the
    #: experiments folder), as the machine running the training sees it.
    model_search_path: Path | None = None

    def to_dict(self) -> dict:
        return {"train_cache": str(self.train_cache), "val_cache": str(self.val_cache),
                "out_dir": str(self.out_dir), "train": self.train.to_dict(),
                "balance": dataclasses.asdict(self.balance), "cache": self.cache.to_dict(),
                "inputs": self.inputs.to_dict() if self.inputs else None,
                "model_search_path": (str(self.model_search_path)
                                      if self.model_search_path is not None else None)}

    @classmethod
    def from_dict(cls, data: dict) -> TrainingRequest:
        inputs = data.get("inputs")
        search_path = data.get("model_search_path")
        return cls(train_cache=Path(data["train_cache"]), val_cache=Path(data["val_cache"]),
                   out_dir=Path(data["out_dir"]), train=TrainConfig.from_dict(data["train"]),
                   balance=BalanceConfig(**data["balance"]),
                   cache=CacheConfig.from_dict(data["cache"]),
                   inputs=PinnedInputs.from_dict(inputs) if inputs else None,
                   model_search_path=Path(search_path) if search_path else None)


@dataclass(frozen=True)
class _Startup:
    training: TrainingDataset
    val_index: DatasetIndex
    val_files: tuple[str, ...]
    #: What the run consumed, by content: recorded with the checkpoints and the summary.
    data_versions: dict[str, str]


def _pinned_startup(request: TrainingRequest, log: Callable[[str], None]) -> _Startup:
    """Exactly the pinned files, checked against the cache; nothing recomposed or rewritten."""
    inputs = request.inputs
    composition = pinned_balanced(inputs.balanced_set, request.cache)
    val_index = pinned_index(inputs.val_index, request.cache)
    check_patient_disjointness(
        {"train": current_index(request.train_cache, request.cache), "val": val_index},
        {"train": request.train_cache, "val": request.val_cache}, log)
    log(f"[DATASET] Using the materialized {inputs.balanced_set.path} "
        f"(version {inputs.balanced_set.version})")
    for line in dataset_log_lines(composition):
        log(line)
    training = TrainingDataset(BalancedSeizureDataset(request.train_cache, composition),
                               composition.seizure_ratio, composition.pos_weight)
    return _Startup(training, val_index, val_index.files, {
        "balanced_set": inputs.balanced_set.version, "val_index": inputs.val_index.version,
        "cache_config": request.cache.version(), "balance": request.balance.version()})


def _standalone_startup(request: TrainingRequest, flags: EnvFlags,
                        log: Callable[[str], None]) -> _Startup:
    """The upstream scripts' startup: validate or rebuild the index and manifest, then compose."""
    verify_patient_disjointness({"train": request.train_cache, "val": request.val_cache},
                                log=log, config=request.cache)
    training = select_training_dataset(request.train_cache, request.balance, flags=flags, log=log,
                                       config=request.cache)
    val_index = ensure_index(request.val_cache, request.cache, log=log)
    return _Startup(training, val_index, val_index.first_files(flags.file_limit()), {
        "train_index": content_version(request.train_cache / INDEX_NAME),
        "val_index": content_version(request.val_cache / INDEX_NAME),
        "cache_config": request.cache.version(), "balance": request.balance.version()})


def _bgb_flags_set(flags: EnvFlags) -> list[str]:
    return [name for name, on in (("BGB_SMOKE_TEST=1", flags.smoke_test),
                                  ("BGB_LIMIT_FILES", flags.limit_files is not None),
                                  ("BGB_FORCE_MANIFEST_REBUILD=1", flags.force_manifest_rebuild))
            if on]


def run_training(request: TrainingRequest, log: Callable[[str], None] = print,
                 on_epoch: Callable[[dict], None] | None = None,
                 flags: EnvFlags | None = None) -> dict:
    """Train and return a JSON-able summary (also written to ``out_dir/training_summary.json``)."""
    flags = flags if flags is not None else EnvFlags.from_env()
    parameters = preflight_model(request.train, (len(request.cache.channels),
                                                 request.cache.window_samples),
                                 request.model_search_path, log)
    if request.inputs is not None and _bgb_flags_set(flags):
        log(f"[DATASET] {', '.join(_bgb_flags_set(flags))}: the upstream scripts' standalone "
            "startup (index and manifest validated or rebuilt, balanced set composed here) "
            "instead of the materialized balanced_dataset[train]")
    if request.inputs is not None and not _bgb_flags_set(flags):
        startup = _pinned_startup(request, log)
    else:
        startup = _standalone_startup(request, flags, log)
    training, data_versions = startup.training, startup.data_versions
    val_files = startup.val_files
    val_dataset = EEGWindowDataset(request.val_cache, startup.val_index, files=val_files,
                                   config=request.cache, log=log)
    result = fit(training.dataset, training.pos_weight, val_dataset, request.out_dir,
                 request.train, log=log, on_epoch=on_epoch, data_versions=data_versions,
                 model_search_path=request.model_search_path)
    hypotheses = request.out_dir / HYPOTHESES_DIR
    reproduced = evaluate_checkpoint(result.best_checkpoint, val_dataset, device=request.train.device,
                                     cpu_threads=request.train.cpu_threads,
                                     hypothesis_dir=hypotheses,
                                     search_path=request.model_search_path)
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
        "model_factory": request.train.model.factory,
        "model_parameters": parameters,
    }
    write_bytes_atomic(request.out_dir / SUMMARY_NAME,
                       json.dumps(summary, indent=2, default=_jsonable).encode())
    return summary


def model_version(config_version: str, data_versions: dict) -> str:
    """``<train config version>:<hash of the consumed inputs' versions>``: the data version of
    ``trained_model``, also computable from a checkpoint (its ``train_config_version`` and
    ``data_versions``), so an evaluation can tell the checkpoint is the materialized one."""
    inputs = json.dumps(data_versions, sort_keys=True).encode()
    return f"{config_version}:{hashlib.sha256(inputs).hexdigest()[:16]}"


#: Metrics that must be finite after training (event ratios may be NaN when undefined).
REQUIRED_FINITE = ("train_loss", "val_loss", "val_auroc")


def non_finite_metrics(summary: dict) -> list[str]:
    """``"epoch N key"`` for every required metric that is NaN or infinite."""
    return [f"epoch {h['epoch']} {key}" for h in summary["history"] for key in REQUIRED_FINITE
            if not math.isfinite(float(h.get(key, math.nan)))]


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
