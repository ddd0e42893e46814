"""Train, checkpoint, resume and re-evaluate the seizure detector (no Dagster here).

:func:`fit` builds the network its configuration names (a :class:`~eeg_assets.lib.model.factory.
ModelSpec`: any importable factory returning an ``nn.Module`` of the logits contract, checked by
one forward pass before anything is trained) and runs epochs of AdamW or RAdam with a one-cycle
learning-rate schedule, optionally stopping early, on a map-style training
dataset of ``(window (C, T), label (T,))`` items and validates after every epoch on a dataset whose
items are consecutive windows of whole recordings (``recordings()`` lists them in item order, and
``references()`` their annotation events), so validation scores stitched recording timelines
against their references as :mod:`eeg_assets.lib.model.evaluation` describes.

Reproducibility: every epoch reseeds torch from ``(seed, epoch)`` and draws its own shuffle, so an
epoch's result depends only on the state it starts from. That makes CPU runs bit-identical across
repeats and makes a resumed run identical to an uninterrupted one. On CUDA, bf16 autocast and
non-deterministic kernels make runs close but not identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from eeg_assets.lib.cache.references import SplitReferences
from eeg_assets.lib.files import atomic_path
from eeg_assets.lib.model.evaluation import ValidationAccumulator
from eeg_assets.lib.model.hypotheses import PostProcessConfig
from eeg_assets.lib.model.factory import (
    CONTRACT_CHANNELS,
    CONTRACT_SAMPLES,
    DEFAULT_FACTORY,
    ModelSpec,
    ModelSpecError,
    build_model,
    check_contract,
)
from eeg_assets.lib.model.network import count_parameters
from eeg_assets.lib.model.stitching import RecordingStream

#: Bump when the training code changes what a configuration learns; part of
#: :meth:`TrainConfig.version`, so an old ``last.pt`` is never resumed by new code.
TRAINING_FORMAT = 1
#: Layout of the checkpoint dictionaries written: 2 records the network as ``model_spec`` (1 held
#: the compact network's ``model_config``, still read as that network).
CHECKPOINT_FORMAT = 2
READABLE_CHECKPOINT_FORMATS = (1, 2)
#: Optimizers :class:`TrainConfig` accepts (RAdam with decoupled weight decay, as AdamW).
OPTIMIZERS = ("adamw", "radam")
_DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
#: Fields that change how fast training runs but not what it learns; left out of the version.
RUNTIME_FIELDS = frozenset({"num_workers", "eval_batch_size", "cpu_threads"})

BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, data-geometry and post-processing parameters of one training run.

    Defaults target a CPU run on a few hundred windows in a few minutes; a GPU run on the full
    balanced set raises ``epochs``, ``batch_size`` and the model size.
    """

    epochs: int = 5
    batch_size: int = 8
    eval_batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    #: Fraction of all steps spent warming the learning rate up (one-cycle ``pct_start``).
    warmup_fraction: float = 0.1
    seed: int = 42
    num_workers: int = 0
    #: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    device: str = "auto"
    #: torch intra-op threads while training on CPU (None: torch's default, one per core). On a
    #: CPU shared with other busy processes, 1 thread avoids OpenMP threads waiting on each other
    #: (the test model ran 5-10x faster with 1 than with 2 threads on a loaded 2-core machine).
    cpu_threads: int | None = None
    #: Train on a fresh random subset of this many windows each epoch (None: all of them).
    max_train_windows_per_epoch: int | None = None
    #: Post-processing of validation probabilities into events (see hypotheses.py).
    threshold: float = PostProcessConfig.threshold
    merge_gap_s: float = PostProcessConfig.merge_gap_s
    min_event_s: float = PostProcessConfig.min_event_s
    #: The network: an import path ``"package.module:callable"`` and its keyword parameters
    #: (default: the compact U-Net of network.py with its default size).
    model: ModelSpec = field(default_factory=ModelSpec)
    #: ``"adamw"`` or ``"radam"`` (both with decoupled weight decay ``weight_decay``).
    optimizer: str = "adamw"
    #: Stop when the validation loss has not improved for this many epochs (None: never).
    patience: int | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field (ModelSpecError for ``model``)."""
        def positive(name: str, allow_none: bool = False, integer: bool = True) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            kind = int if integer else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 \
                    or (not integer and not math.isfinite(value)):
                raise ValueError(f"TrainConfig.{name} must be a positive "
                                 f"{'integer' if integer else 'number'}"
                                 f"{' or None' if allow_none else ''}, got {value!r}")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive(name)
        for name in ("lr", "grad_clip"):
            positive(name, integer=False)
        positive("cpu_threads", allow_none=True)
        positive("max_train_windows_per_epoch", allow_none=True)
        positive("patience", allow_none=True)
        if not isinstance(self.weight_decay, (int, float)) or not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"TrainConfig.warmup_fraction must be in [0, 1), got "
                             f"{self.warmup_fraction!r}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise ValueError(f"TrainConfig.num_workers must be >= 0, got {self.num_workers!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if not isinstance(self.device, str) or not _DEVICE_NAME.match(self.device):
            raise ValueError(f"TrainConfig.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', "
                             f"got {self.device!r}")
        if not isinstance(self.model, ModelSpec):
            raise ModelSpecError(f"TrainConfig.model must be a ModelSpec, got "
                                 f"{type(self.model).__name__} (a compact U-Net size is "
                                 f"ModelSpec('{DEFAULT_FACTORY}', {{...}}))")
        self.model.validate()

    @property
    def post_process(self) -> PostProcessConfig:
        return PostProcessConfig(self.threshold, self.merge_gap_s, self.min_event_s)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The inverse of :meth:`to_dict`; also reads a dictionary written before models were
        pluggable, whose ``model`` held the compact network's ``ModelConfig`` fields."""
        fields = dict(data)
        if "model" in fields:
            fields["model"] = model_spec_from_dict(fields["model"])
        return cls(**fields)

    def version(self) -> str:
        """A short, stable hash of every parameter that changes what training learns."""
        learned = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        learned["training_format"] = TRAINING_FORMAT
        blob = json.dumps(learned, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_spec_from_dict(data: dict) -> ModelSpec:
    """A :class:`ModelSpec` from its dictionary, or from an older configuration's or
    checkpoint's ``ModelConfig`` dictionary (the compact network with those parameters)."""
    if isinstance(data, ModelSpec):
        return data
    if "factory" in data:
        return ModelSpec.from_dict(data)
    return ModelSpec(DEFAULT_FACTORY, dict(data))


class ValidationDataset(Protocol):
    """What :func:`fit` needs from a validation set (``EEGWindowDataset`` provides it)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def recordings(self) -> list[tuple[str, int]]:
        """``(npz name, n_windows)`` in item order: items are consecutive windows of these."""
        ...

    def references(self) -> SplitReferences:
        """The annotation references of these recordings and of the split's recordings without
        windows (scored with event-free hypotheses)."""
        ...

    @property
    def timeline(self) -> tuple[int, int]:
        """``(sample rate in Hz, window stride in samples)`` of the cache the windows come from:
        what stitching the windows back into a recording's timeline needs."""
        ...


@dataclass
class TrainResult:
    """Outcome of :func:`fit`; times and throughput cover every epoch in ``history``."""

    best_epoch: int
    best_metrics: dict
    history: list[dict]
    best_checkpoint: Path
    last_checkpoint: Path
    train_seconds: float
    windows_per_s: float
    device: str
    config_version: str
    #: Epochs already done when this call started (0: a fresh run).
    resumed_from_epoch: int
    #: True when ``patience`` stopped training before ``epochs``.
    stopped_early: bool = False
    #: The last epoch trained when stopped early (None otherwise).
    stopped_at_epoch: int | None = None

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["best_checkpoint"] = str(self.best_checkpoint)
        data["last_checkpoint"] = str(self.last_checkpoint)
        return data


def _check_device_name(name: str) -> None:
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    _check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} requested but torch sees "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


class EpochSampler(Sampler[int]):
    """A shuffle of all item indices drawn from ``(seed, epoch)``, optionally truncated.

    Set the epoch before iterating; the DataLoader iterates the sampler in the main process, so
    this also works with persistent workers.
    """

    def __init__(self, n_items: int, seed: int, limit: int | None = None):
        self.n_items = n_items
        self.seed = seed
        self.limit = n_items if limit is None else min(limit, n_items)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.limit

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n_items, generator=generator)[: self.limit].tolist())


def _autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=device.type == "cuda")


def _make_loader(dataset: Dataset, batch_size: int, num_workers: int, device: torch.device,
                 seed: int, sampler: Sampler | None = None) -> DataLoader:
    # An own generator: without it every new loader iterator draws its worker seed from the
    # global RNG, so dropout noise would depend on num_workers (persistent workers draw once).
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(seed))


def _check_validation_dataset(dataset: ValidationDataset
                              ) -> tuple[list[tuple[str, int]], SplitReferences]:
    recordings = list(dataset.recordings())
    announced = sum(n for _name, n in recordings)
    if announced != len(dataset):
        raise ValueError(f"validation recordings() announce {announced} windows, "
                         f"the dataset has {len(dataset)}")
    if announced == 0:
        raise ValueError("the validation dataset is empty")
    references = dataset.references()
    unreferenced = sorted({name for name, _n in recordings} - references.by_npz().keys())
    if unreferenced:
        raise ValueError(f"validation recordings without reference events: "
                         f"{', '.join(unreferenced[:5])}")
    return recordings, references


def _validate(model: nn.Module, loader: DataLoader, recordings: list[tuple[str, int]],
              references: SplitReferences, timeline: tuple[int, int], config: TrainConfig,
              pos_weight: torch.Tensor, device: torch.device, thresholds=()
              ) -> tuple[dict, ValidationAccumulator]:
    """Validation loss (same weighted BCE as training) and the recordings' scores at
    ``config.threshold`` and at ``thresholds``."""
    fs, stride = timeline
    accumulator = ValidationAccumulator(fs, references, config.post_process,
                                        thresholds)
    stream = RecordingStream(recordings, stride, accumulator.add_timeline)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_samples = 0
    model.eval()
    with torch.inference_mode():
        for windows, labels in loader:
            windows = windows.to(device, non_blocking=True).float()
            labels = labels.to(device, non_blocking=True).float()
            with _autocast(device):
                logits = model(windows)
            logits = logits.float()
            loss_sum += F.binary_cross_entropy_with_logits(
                logits, labels, pos_weight=pos_weight, reduction="sum")
            n_samples += labels.numel()
            stream.add(torch.sigmoid(logits).cpu().numpy(), (labels > 0.5).cpu().numpy())
    stream.finish()
    metrics = {"val_loss": loss_sum.item() / n_samples}
    metrics.update({f"val_{key}": value for key, value in accumulator.metrics().items()})
    return metrics, accumulator


def _selection_key(metrics: dict) -> tuple[float, float]:
    """Best checkpoint = highest val AUROC (undefined AUROC ranks last), then lowest val loss."""
    auroc = metrics["val_auroc"]
    return (auroc if math.isfinite(auroc) else -math.inf, -metrics["val_loss"])


def _save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if checkpoint.get("format") not in READABLE_CHECKPOINT_FORMATS:
        raise ValueError(f"{path}: checkpoint format {checkpoint.get('format')!r}, this code "
                         f"reads {', '.join(map(str, READABLE_CHECKPOINT_FORMATS))}")
    return checkpoint


def checkpoint_model_spec(checkpoint: dict) -> ModelSpec:
    """The network a checkpoint holds: its ``model_spec``, or an older checkpoint's
    ``model_config`` as the compact network of those parameters."""
    if "model_spec" in checkpoint:
        return ModelSpec.from_dict(checkpoint["model_spec"])
    return model_spec_from_dict(checkpoint["model_config"])


def _resume_mismatch(checkpoint: dict, config: TrainConfig, data_versions: dict,
                     pos_weight: float) -> str | None:
    """Why ``checkpoint`` cannot be continued with these inputs, or None when it can."""
    if checkpoint["train_config_version"] != config.version():
        return (f"train config version {checkpoint['train_config_version']} != "
                f"{config.version()}")
    if checkpoint["data_versions"] != data_versions:
        return f"data versions {checkpoint['data_versions']} != {data_versions}"
    if checkpoint["pos_weight"] != pos_weight:
        return f"pos_weight {checkpoint['pos_weight']} != {pos_weight}"
    return None


@contextmanager
def _cpu_execution(device: torch.device, threads: int | None):
    """On CPU, refuse non-deterministic kernels and apply ``threads`` while training; restore after.

    Deterministic mode also fills every uninitialised tensor with NaN by default, which tripled
    the step time of the small model; no kernel used here reads uninitialised memory, so that
    debugging aid is switched off.
    """
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory,
                torch.get_num_threads())
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        if threads is not None:
            torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]
        torch.set_num_threads(previous[3])


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               windows: torch.Tensor, labels: torch.Tensor, device: torch.device,
               grad_clip: float) -> torch.Tensor:
    """One optimisation step (bf16 autocast on CUDA, loss in float32, clipped gradients)."""
    windows = windows.to(device, non_blocking=True).float()
    labels = labels.to(device, non_blocking=True).float()
    with _autocast(device):
        logits = model(windows)
    loss = criterion(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, or RAdam with decoupled weight decay (as AdamW applies it), per ``config``."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    if config.optimizer == "radam":
        return torch.optim.RAdam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay, decoupled_weight_decay=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; one of {', '.join(OPTIMIZERS)}")


def _one_cycle(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    """One-cycle schedule; tiny runs get a constant rate.

    OneCycleLR divides by the warm-up length in steps minus one, so warm-up must span at least
    two steps (``warmup_fraction * total_steps == 1`` raised ZeroDivisionError).
    """
    if total_steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps,
        pct_start=max(config.warmup_fraction, 2 / total_steps))


@dataclass
class _Progress:
    """What a run has done so far: restored from ``last.pt`` or empty, updated every epoch."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict = field(default_factory=dict)

    def record(self, metrics: dict) -> bool:
        """Append an epoch's metrics; True when it is the best so far."""
        self.history.append(metrics)
        self.epochs_done = metrics["epoch"]
        is_best = (self.best_epoch == 0
                   or _selection_key(metrics) > _selection_key(self.best_metrics))
        if is_best:
            self.best_epoch, self.best_metrics = metrics["epoch"], metrics
        return is_best

    def stale_epochs(self) -> tuple[int, int]:
        """``(epochs since the lowest validation loss, the epoch of that loss)``; a NaN loss is
        never an improvement (``(epochs_done, 0)`` when no epoch had a finite loss)."""
        best_epoch, best_loss = 0, math.inf
        for metrics in self.history:
            if metrics["val_loss"] < best_loss:
                best_epoch, best_loss = metrics["epoch"], metrics["val_loss"]
        return self.epochs_done - best_epoch, best_epoch

    def should_stop(self, config: TrainConfig) -> bool:
        """Early stopping: ``config.patience`` epochs without a lower validation loss."""
        return (config.patience is not None and self.epochs_done > 0
                and self.stale_epochs()[0] >= config.patience)


@dataclass
class _Learner:
    """The model and what steps it: built from the seed, so a fresh run is reproducible."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: EpochSampler
    steps_per_epoch: int

    @classmethod
    def create(cls, config: TrainConfig, n_train: int, device: torch.device,
               model: nn.Module | None = None) -> _Learner:
        """``model``: the network already built from ``config.model`` right after seeding
        torch with ``config.seed`` (by :func:`build_checked_model`); built here when None."""
        if model is None:
            torch.manual_seed(config.seed)
            model = build_model(config.model).to(device)
        optimizer = make_optimizer(model, config)
        sampler = EpochSampler(n_train, config.seed, config.max_train_windows_per_epoch)
        steps_per_epoch = math.ceil(len(sampler) / config.batch_size)
        scheduler = _one_cycle(optimizer, config, config.epochs * steps_per_epoch)
        return cls(model, optimizer, scheduler, sampler, steps_per_epoch)


def _restore(learner: _Learner, last_path: Path, config: TrainConfig, data_versions: dict,
             pos_weight: float, device: torch.device, log: Callable[[str], None]) -> _Progress:
    """Continue ``last.pt`` when it was written for these inputs, else start empty."""
    if not last_path.exists():
        return _Progress()
    checkpoint = _read_checkpoint(last_path, map_location=device)
    mismatch = _resume_mismatch(checkpoint, config, data_versions, pos_weight)
    if mismatch is not None:
        log(f"not resuming {last_path}: {mismatch}; training from scratch")
        return _Progress()
    learner.model.load_state_dict(checkpoint["model_state"])
    learner.optimizer.load_state_dict(checkpoint["optimizer_state"])
    learner.scheduler.load_state_dict(checkpoint["scheduler_state"])
    progress = _Progress(checkpoint["epoch"], checkpoint["history"], checkpoint["best_epoch"],
                         checkpoint["best_metrics"])
    log(f"resuming from {last_path} after epoch {progress.epochs_done}/{config.epochs} "
        f"(best so far: epoch {progress.best_epoch}, val AUROC "
        f"{progress.best_metrics['val_auroc']:.4f})")
    return progress


#: Seconds between progress lines within an epoch (a CPU epoch of the sample takes minutes).
PROGRESS_INTERVAL_S = 30.0


def _train_epoch(learner: _Learner, loader: DataLoader, criterion: nn.Module, epoch: int,
                 config: TrainConfig, device: torch.device,
                 log: Callable[[str], None] = print) -> tuple[float, int]:
    """One pass over the epoch's draw of training windows: ``(mean loss, windows seen)``.

    Logs a progress line (batches, windows/s, ETA) every :data:`PROGRESS_INTERVAL_S` seconds.
    """
    torch.manual_seed(_epoch_seed(config.seed, epoch))
    learner.sampler.set_epoch(epoch)
    learner.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_windows = 0
    started = last_line = time.perf_counter()
    for batch, (windows, labels) in enumerate(loader, start=1):
        loss = train_step(learner.model, learner.optimizer, criterion, windows, labels, device,
                          config.grad_clip)
        learner.scheduler.step()
        loss_sum += loss.detach() * len(windows)
        n_windows += len(windows)
        now = time.perf_counter()
        if now - last_line >= PROGRESS_INTERVAL_S and batch < learner.steps_per_epoch:
            last_line = now
            rate = n_windows / (now - started)
            eta = (learner.steps_per_epoch - batch) * config.batch_size / rate
            log(f"  batch {batch}/{learner.steps_per_epoch} of epoch {epoch + 1}/{config.epochs}: "
                f"{rate:.1f} windows/s, epoch ETA {eta:.0f} s")
    train_loss = loss_sum.item() / n_windows
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"epoch {epoch + 1}: training loss is {train_loss}")
    return train_loss, n_windows


def _write_checkpoints(learner: _Learner, progress: _Progress, is_best: bool, out_dir: Path,
                       config: TrainConfig, data_versions: dict, pos_weight: float,
                       model_search_path: Path | None = None) -> None:
    """``last.pt`` after every epoch, ``best.pt`` too when the epoch is the best so far."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_spec": config.model.to_dict(),
        "train_config": config.to_dict(),
        "train_config_version": config.version(),
        "data_versions": data_versions,
        "pos_weight": pos_weight,
        "epoch": progress.epochs_done,
        "metrics": progress.history[-1],
        "best_epoch": progress.best_epoch,
        "best_metrics": progress.best_metrics,
        "history": progress.history,
        "model_state": learner.model.state_dict(),
        "optimizer_state": learner.optimizer.state_dict(),
        "scheduler_state": learner.scheduler.state_dict(),
    }
    if model_search_path is not None:
        # Where the factory's module was imported from: load_checkpoint's default.
        payload["model_search_path"] = str(Path(model_search_path).resolve())
    if is_best:
        _save_checkpoint(out_dir / BEST_CHECKPOINT, payload)
    _save_checkpoint(out_dir / LAST_CHECKPOINT, payload)


def _epoch_line(metrics: dict, epochs: int, is_best: bool) -> str:
    return (f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f}, val loss "
            f"{metrics['val_loss']:.4f}, AUROC {metrics['val_auroc']:.4f}, OVERLAP sensitivity "
            f"{100 * metrics['val_overlap_sensitivity']:.1f}%, FA/24h "
            f"{metrics['val_overlap_fa_per_24h']:.1f}, "
            f"{metrics['windows_per_s']:.1f} windows/s, {metrics['epoch_seconds']:.1f} s"
            + (" (best)" if is_best else ""))


def build_checked_model(config: TrainConfig, device: torch.device,
                        input_shape: tuple[int, int] = (CONTRACT_CHANNELS, CONTRACT_SAMPLES),
                        search_path: Path | None = None) -> nn.Module:
    """``config.model`` built right after seeding torch with ``config.seed``, moved to
    ``device`` and checked by one forward pass of a ``(2, *input_shape)`` batch.

    The check draws no global random numbers and leaves the model in training mode, so the
    network (and the whole run) is the same as without it.

    Raises
    ------
    ModelSpecError
        The factory cannot be imported or called, or returns no ``nn.Module``.
    ModelContractError
        Its output is not ``(2, input_shape[1])`` finite logits.
    """
    torch.manual_seed(config.seed)
    model = build_model(config.model, search_path).to(device)
    check_contract(model, device, n_channels=input_shape[0], n_samples=input_shape[1],
                   factory=config.model.factory)
    return model


def preflight_model(config: TrainConfig,
                    input_shape: tuple[int, int] = (CONTRACT_CHANNELS, CONTRACT_SAMPLES),
                    search_path: Path | None = None,
                    log: Callable[[str], None] = print) -> int:
    """Build ``config.model`` on the training device and check its contract, before a run
    spends time on its data; returns its parameter count. See :func:`build_checked_model`."""
    device = resolve_device(config.device)
    with _cpu_execution(device, config.cpu_threads):
        model = build_checked_model(config, device, input_shape, search_path)
    n_parameters = count_parameters(model)
    log(f"model {config.model.describe()}: {n_parameters:,} parameters, forward pass of "
        f"(2, {input_shape[0]}, {input_shape[1]}) on {device} gives (2, {input_shape[1]}) "
        f"finite logits")
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return n_parameters


def _window_shape(dataset: Dataset) -> tuple[int, int]:
    """``(channels, samples)`` of the dataset's first window (what the model will be fed)."""
    window, _label = dataset[0]
    if len(window.shape) != 2:
        raise ValueError(f"training windows must be (channels, samples), item 0 is "
                         f"{tuple(window.shape)}")
    return int(window.shape[0]), int(window.shape[1])


def fit(
    train_dataset: Dataset,
    pos_weight: float,
    val_dataset: ValidationDataset,
    out_dir: Path,
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
    resume: bool = True,
    data_versions: dict | None = None,
    model_search_path: Path | None = None,
) -> TrainResult:
    """Train for ``config.epochs`` epochs, writing ``best.pt`` and ``last.pt`` into ``out_dir``.

    The network is built from ``config.model`` and checked (one forward pass of two windows of
    the training set's shape must give finite ``(2, samples)`` logits) before any checkpoint is
    touched or any step taken. With ``config.patience``, training stops once the validation loss
    has not improved for that many epochs (the result says so).

    Parameters
    ----------
    train_dataset : Dataset
        Items ``(window (C, T) float, label (T,) float)``.
    pos_weight : float
        Weight of seizure samples in the BCE loss (stored in the checkpoints).
    val_dataset : ValidationDataset
        Consecutive windows of whole recordings, scored after every epoch.
    out_dir : Path
        Where ``best.pt`` (highest val AUROC, then lowest val loss) and ``last.pt`` go.
    config : TrainConfig
    log : callable
        Receives human-readable progress lines.
    on_epoch : callable, optional
        Receives each epoch's metrics after its checkpoints are written.
    resume : bool
        Continue an existing ``last.pt`` when its config version, ``data_versions`` and
        ``pos_weight`` all match; otherwise (or with False) training starts over.
    data_versions : dict, optional
        Versions of the inputs (e.g. cache and balance), stored in the checkpoints.
    model_search_path : Path, optional
        A folder holding the factory's module when it is outside the package (put on
        ``sys.path`` while the model is built; recorded in the checkpoints).

    Raises
    ------
    ModelSpecError, ModelContractError
        When ``config.model`` cannot be built or does not meet the logits contract.
    """
    out_dir = Path(out_dir)
    data_versions = dict(data_versions or {})
    pos_weight = float(pos_weight)
    device = resolve_device(config.device)
    if len(train_dataset) == 0:
        raise ValueError("the training dataset is empty")

    with _cpu_execution(device, config.cpu_threads):
        model = build_checked_model(config, device, _window_shape(train_dataset),
                                    model_search_path)
        recordings, references = _check_validation_dataset(val_dataset)
        out_dir.mkdir(parents=True, exist_ok=True)
        last_path = out_dir / LAST_CHECKPOINT
        learner = _Learner.create(config, len(train_dataset), device, model)
        progress = (_restore(learner, last_path, config, data_versions, pos_weight, device, log)
                    if resume else _Progress())
        resumed_from = progress.epochs_done
        if resumed_from == 0:
            # A stale best.pt of another configuration must never pass for this run's.
            (out_dir / BEST_CHECKPOINT).unlink(missing_ok=True)
            last_path.unlink(missing_ok=True)

        criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
        train_loader = _make_loader(train_dataset, config.batch_size, config.num_workers, device,
                                    config.seed, learner.sampler)
        val_loader = _make_loader(val_dataset, config.eval_batch_size, config.num_workers,
                                  device, config.seed)
        if resumed_from >= config.epochs:
            log(f"{last_path} already holds all {config.epochs} epochs; nothing to train")
        elif progress.should_stop(config):
            log(f"{last_path} stopped early after epoch {resumed_from}/{config.epochs} "
                f"(patience {config.patience}); nothing to train")
        else:
            log(f"training on {device}: {len(learner.sampler)} of {len(train_dataset)} train "
                f"windows per epoch ({learner.steps_per_epoch} steps of {config.batch_size}), "
                f"{len(val_dataset)} val windows in {len(recordings)} recordings, model "
                f"{config.model.factory} with {count_parameters(learner.model):,} parameters, "
                f"{config.optimizer}, pos_weight {pos_weight:.3f}, config {config.version()}")

        for epoch in range(resumed_from, config.epochs):
            if progress.should_stop(config):
                break
            epoch_start = time.perf_counter()
            train_loss, n_windows = _train_epoch(learner, train_loader, criterion, epoch, config,
                                                 device, log)
            train_seconds = time.perf_counter() - epoch_start
            val_start = time.perf_counter()
            val_metrics, _ = _validate(learner.model, val_loader, recordings, references,
                                       val_dataset.timeline, config, criterion.pos_weight, device)
            metrics = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                **val_metrics,
                "lr": learner.scheduler.get_last_lr()[0],
                "train_windows": n_windows,
                "windows_per_s": n_windows / train_seconds,
                "train_seconds": train_seconds,
                "val_seconds": time.perf_counter() - val_start,
                "epoch_seconds": time.perf_counter() - epoch_start,
            }
            is_best = progress.record(metrics)
            _write_checkpoints(learner, progress, is_best, out_dir, config, data_versions,
                               pos_weight, model_search_path)
            log(_epoch_line(metrics, config.epochs, is_best))
            if on_epoch is not None:
                on_epoch(metrics)
            if progress.should_stop(config) and progress.epochs_done < config.epochs:
                stale, lowest = progress.stale_epochs()
                log(f"stopping early after epoch {progress.epochs_done}/{config.epochs}: val "
                    f"loss has not improved for {stale} epochs (patience {config.patience}; "
                    f"lowest at epoch {lowest})")

    return _result(progress, out_dir, device, config, resumed_from)


def _result(progress: _Progress, out_dir: Path, device: torch.device, config: TrainConfig,
            resumed_from: int) -> TrainResult:
    total_windows = sum(m["train_windows"] for m in progress.history)
    stopped_early = progress.should_stop(config) and progress.epochs_done < config.epochs
    train_seconds = sum(m["train_seconds"] for m in progress.history)
    return TrainResult(
        best_epoch=progress.best_epoch,
        best_metrics=progress.best_metrics,
        history=progress.history,
        best_checkpoint=out_dir / BEST_CHECKPOINT,
        last_checkpoint=out_dir / LAST_CHECKPOINT,
        train_seconds=train_seconds,
        windows_per_s=total_windows / train_seconds if train_seconds else float("nan"),
        device=str(device),
        config_version=config.version(),
        resumed_from_epoch=resumed_from,
        stopped_early=stopped_early,
        stopped_at_epoch=progress.epochs_done if stopped_early else None,
    )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    search_path: Path | None = None) -> tuple[nn.Module, dict]:
    """The checkpoint's model (in eval mode, on ``map_location``) and its full dictionary.

    The network is rebuilt from the checkpoint's ``model_spec`` (an older checkpoint's
    ``model_config``: the compact network of those parameters). ``search_path`` (default: the
    folder the training run imported the factory from, when it recorded one) is where a factory
    outside the package is imported from.
    """
    checkpoint = _read_checkpoint(Path(path), map_location=map_location)
    if search_path is None and checkpoint.get("model_search_path"):
        search_path = Path(checkpoint["model_search_path"])
    model = build_model(checkpoint_model_spec(checkpoint), search_path)
    model.load_state_dict(checkpoint["model_state"])
    model.to(map_location).eval()
    return model, checkpoint


def score_checkpoint(
    path: Path,
    val_dataset: ValidationDataset,
    device: str = "auto",
    num_workers: int = 0,
    cpu_threads: int | None = None,
    thresholds=(),
    search_path: Path | None = None,
) -> tuple[dict, ValidationAccumulator]:
    """Run a checkpoint over ``val_dataset``: its validation metrics and the scored recordings.

    Post-processing, stitching geometry, batch size and ``pos_weight`` come from the checkpoint;
    ``thresholds`` are scored besides the checkpoint's own (the accumulator keeps their events).
    On CPU with the training run's ``cpu_threads`` the metrics are bit-identical to the reported
    ones; another thread count or device changes float rounding (relative differences ~1e-7 in
    the loss), so a check should compare with a tolerance. ``search_path``: see
    :func:`load_checkpoint`.
    """
    torch_device = resolve_device(device)
    model, checkpoint = load_checkpoint(path, map_location=torch_device, search_path=search_path)
    config = TrainConfig.from_dict(checkpoint["train_config"])
    recordings, references = _check_validation_dataset(val_dataset)
    loader = _make_loader(val_dataset, config.eval_batch_size, num_workers, torch_device,
                          config.seed)
    pos_weight = torch.tensor(checkpoint["pos_weight"], device=torch_device)
    with _cpu_execution(torch_device, cpu_threads):
        return _validate(model, loader, recordings, references, val_dataset.timeline, config,
                         pos_weight, torch_device, thresholds)


def evaluate_checkpoint(
    path: Path,
    val_dataset: ValidationDataset,
    device: str = "auto",
    num_workers: int = 0,
    cpu_threads: int | None = None,
    hypothesis_dir: Path | None = None,
    search_path: Path | None = None,
) -> dict:
    """Recompute a checkpoint's validation metrics (same keys as :func:`fit`'s ``val_*``).

    With ``hypothesis_dir``, one ``<bname>.csv_bi`` hypothesis per scored recording is written
    there at the checkpoint's threshold. See :func:`score_checkpoint`.
    """
    metrics, accumulator = score_checkpoint(path, val_dataset, device, num_workers, cpu_threads,
                                            search_path=search_path)
    if hypothesis_dir is not None:
        accumulator.write_hypotheses(Path(hypothesis_dir))
    return metrics


__all__ = [
    "BEST_CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "EpochSampler",
    "LAST_CHECKPOINT",
    "OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "ValidationDataset",
    "build_checked_model",
    "checkpoint_model_spec",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "make_optimizer",
    "model_spec_from_dict",
    "preflight_model",
    "resolve_device",
    "score_checkpoint",
]
