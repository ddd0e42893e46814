"""One training run from the cache: what the local launcher and Modal both execute.

A run launched by Dagster is *pinned*: its request names the ``balanced_dataset.json`` of the
train split and the ``_dataset_index.json`` of the val split that the upstream assets wrote,
with their content versions, and the run trains on exactly those or refuses to start
(:mod:`eeg_assets.lib.dataset.pinned`). A run without pinned inputs, or one that sets one of the
upstream training scripts' ``BGB_*`` flags (docs/cache-format.md), first prepares those files as
their standalone startup did (validate or rebuild the index and manifest, compose the balanced
set), with the very steps the cache assets run (:func:`eeg_assets.lib.dataset.chain.run`), and
pins what the steps wrote: from there every run takes the one pinned startup. Under
``BGB_LIMIT_FILES`` / ``BGB_SMOKE_TEST`` that startup uses the first files only, composing their
balanced set from the pinned manifest (a smoke test that cannot falls back to
``EEGWindowDataset``). It verifies the official patient-disjoint splits, takes the exact
``pos_weight``, trains, re-evaluates the best checkpoint and writes ``.csv_bi`` hypotheses for
standard scorers. Before any of that, the network the configuration names is
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
from eeg_assets.lib.dataset.balanced import (
    BALANCED_NAME,
    BalancedComposition,
    BalancedSetError,
    PreparedSplit,
    compose_balanced,
    dataset_log_lines,
)
from eeg_assets.lib.dataset.index import (
    INDEX_NAME,
    DatasetError,
    DatasetIndex,
    collect_facts,
    index_staleness,
    name_list,
    require_current_config,
)
from eeg_assets.lib.dataset.manifest import (
    CATEGORIES,
    MANIFEST_NAME,
    describe_counts,
    manifest_staleness,
    read_manifest_table,
    scan_manifest,
)
from eeg_assets.lib.dataset.pinned import PinnedFile, current_index, pinned_balanced, pinned_index
from eeg_assets.lib.dataset.splits import check_patient_disjointness
from eeg_assets.lib.dataset.torch_datasets import (
    BalancedSeizureDataset,
    EEGWindowDataset,
    TrainingDataset,
    smoke_test_fallback,
)
from eeg_assets.lib.files import write_bytes_atomic
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
    #: ``None``: a standalone run (no Dagster): the upstream training scripts' startup prepares
    #: the files with the cache chain's steps and pins them.
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


def _pinned_startup(request: TrainingRequest, inputs: PinnedInputs, flags: EnvFlags,
                    log: Callable[[str], None]) -> _Startup:
    """Exactly the pinned files, checked against the cache; nothing rewritten.

    Under BGB_LIMIT_FILES / BGB_SMOKE_TEST only the first files of each split are used
    (:func:`_training_dataset`), and the limit is recorded with the versions consumed.
    """
    composition = pinned_balanced(inputs.balanced_set, request.cache)
    val_index = pinned_index(inputs.val_index, request.cache)
    train_index = current_index(request.train_cache, request.cache)
    check_patient_disjointness(
        {"train": train_index, "val": val_index},
        {"train": request.train_cache, "val": request.val_cache}, log)
    log(f"[DATASET] Using the materialized {inputs.balanced_set.path} "
        f"(version {inputs.balanced_set.version})")
    training = _training_dataset(request, composition, train_index, flags, log)
    limit = flags.file_limit()
    data_versions = {
        "balanced_set": inputs.balanced_set.version, "val_index": inputs.val_index.version,
        "cache_config": request.cache.version(), "balance": request.balance.version()}
    if limit is not None:
        data_versions["file_limit"] = str(limit)
    return _Startup(training, val_index, val_index.first_files(limit), data_versions)


def _training_dataset(request: TrainingRequest, composition: BalancedComposition,
                      train_index: DatasetIndex, flags: EnvFlags,
                      log: Callable[[str], None]) -> TrainingDataset:
    """The pinned balanced set; under a file limit that leaves files out, the recipe applied to
    the pinned manifest's windows of the first files, as the upstream scripts compose it (a smoke
    test whose files give no balanced set falls back to ``EEGWindowDataset``)."""
    files = train_index.first_files(flags.file_limit())
    if len(files) < len(train_index.files):
        why = "BGB_LIMIT_FILES" if flags.limit_files is not None else "BGB_SMOKE_TEST=1"
        log(f"[DATASET] Using the first {len(files)} of {len(train_index.files)} files ({why})")
        table, _version = read_manifest_table(request.train_cache, request.cache)
        try:
            composition = compose_balanced(table.to_manifest(), request.balance, files=files)
        except BalancedSetError as exc:
            if not flags.smoke_test:
                raise
            split = PreparedSplit(request.train_cache,
                                  collect_facts(request.train_cache, request.cache),
                                  train_index, files, flags)
            return smoke_test_fallback(split, request.cache, log, reason=str(exc))
    for line in dataset_log_lines(composition):
        log(line)
    return TrainingDataset(
        BalancedSeizureDataset(request.train_cache, composition, config=request.cache),
        composition.seizure_ratio, composition.pos_weight)


class _StepLog:
    """The cache chain's log (``info``, ``warning``) as the run's lines: the manifest step's
    warnings in their ``[MANIFEST]`` form; the info lines (the balanced step's ``[DATASET]``
    lines) are left to the pinned startup, which prints them once, for the set it trains on."""

    def __init__(self, log: Callable[[str], None]):
        self._log = log

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        self._log(f"[MANIFEST] warning: {message}")


def _prepare(cache_dir: Path, request: TrainingRequest, flags: EnvFlags,
             log: Callable[[str], None], *, balanced: bool) -> str:
    """Validate or rebuild a split's index (``balanced``: then its manifest and balanced set) by
    the cache chain's steps; the data version of the last file written, which the run pins."""
    # Imported here: the chain brings the build's signal processing and the plots, which would
    # add seconds to the start of every pinned run, which never prepares anything.
    from eeg_assets.lib.dataset.chain import (
        BALANCED_DATASET,
        DATASET_INDEX,
        MANIFEST,
        ChainRequest,
        StepOutcome,
        run,
    )

    def run_step(step: str) -> StepOutcome:
        """The step as its asset runs it (after the build the steps read only the cache: no
        raw folder)."""
        return run(ChainRequest(step=step, split=cache_dir.name, raw_folder="",
                                cache=request.cache, balance=request.balance),
                   cache_dir.parent, cache_dir.parent, _StepLog(log))

    config = request.cache
    facts = collect_facts(cache_dir, config)
    require_current_config(facts)  # NPZs of another configuration: build-cache, not new lists
    reason = index_staleness(cache_dir, config, facts)
    if reason:
        log(f"[INDEX] rebuilding {INDEX_NAME} from recorded facts: {reason}")
    if not balanced:
        return run_step(DATASET_INDEX).data_version
    if flags.force_manifest_rebuild:
        reason = "BGB_FORCE_MANIFEST_REBUILD=1"
        (cache_dir / MANIFEST_NAME).unlink(missing_ok=True)
        scanned = scan_manifest(cache_dir, config).facts  # every NPZ's labels, as scan-cache
        if scanned.ledger_disagreements:
            raise DatasetError(
                f"{cache_dir}: the labels of {name_list(scanned.ledger_disagreements)} disagree "
                "with the build ledger's record of the same file; delete them and run "
                "build-cache to rebuild them")
    else:
        reason = manifest_staleness(cache_dir, config, facts)
    run_step(DATASET_INDEX)
    manifest = run_step(MANIFEST)
    if reason:
        counts = {category: manifest.metadata[f"windows_{category}"] for category in CATEGORIES}
        log(f"[MANIFEST] rebuilt {MANIFEST_NAME} ({reason}): {describe_counts(counts)}")
    return run_step(BALANCED_DATASET).data_version


def _standalone_inputs(request: TrainingRequest, flags: EnvFlags,
                       log: Callable[[str], None]) -> PinnedInputs:
    """The upstream scripts' startup by the cache assets' own steps: the train split's index,
    manifest and balanced set and the val split's index written as ``dataset_index``,
    ``manifest`` and ``balanced_dataset`` write them, pinned at the versions the steps report."""
    balanced_set = _prepare(request.train_cache, request, flags, log, balanced=True)
    val_index = _prepare(request.val_cache, request, flags, log, balanced=False)
    return PinnedInputs(PinnedFile(request.train_cache / BALANCED_NAME, balanced_set),
                        PinnedFile(request.val_cache / INDEX_NAME, val_index))


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
    inputs = request.inputs
    if inputs is None or _bgb_flags_set(flags):
        if inputs is not None:
            log(f"[DATASET] {', '.join(_bgb_flags_set(flags))}: the upstream scripts' standalone "
                "startup (index, manifest and balanced set validated or rebuilt here by the cache "
                "chain's steps, then pinned) instead of the balanced_dataset[train] materialized "
                "before the run")
        inputs = _standalone_inputs(request, flags, log)
    startup = _pinned_startup(request, inputs, flags, log)
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
