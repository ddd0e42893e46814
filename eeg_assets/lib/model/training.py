"""Train, checkpoint, resume and re-evaluate the seizure detector (no Dagster here).

:func:`fit` runs epochs of AdamW with a one-cycle learning-rate schedule on a map-style training
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
from eeg_assets.lib.model.network import ModelConfig, SeizureUNet, count_parameters
from eeg_assets.lib.model.stitching import RecordingStream

#: Bump when the training code changes what a configuration learns; part of
#: :meth:`TrainConfig.version`, so an old ``last.pt`` is never resumed by new code.
TRAINING_FORMAT = 1
#: Layout of the checkpoint dictionaries.
CHECKPOINT_FORMAT = 1
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
    #: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
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
    model: ModelConfig = field(default_factory=ModelConfig)

    @property
    def post_process(self) -> PostProcessConfig:
        return PostProcessConfig(self.threshold, self.merge_gap_s, self.min_event_s)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        fields = dict(data)
        fields["model"] = ModelConfig.from_dict(fields["model"])
        return cls(**fields)

    def version(self) -> str:
        """A short, stable hash of every parameter that changes what training learns."""
        learned = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        learned["training_format"] = TRAINING_FORMAT
        blob = json.dumps(learned, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


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

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["best_checkpoint"] = str(self.best_checkpoint)
        data["last_checkpoint"] = str(self.last_checkpoint)
        return data


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


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
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {checkpoint.get('format')!r}, "
                         f"this code reads {CHECKPOINT_FORMAT}")
    return checkpoint


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


@dataclass
class _Learner:
    """The model and what steps it: built from the seed, so a fresh run is reproducible."""

    model: SeizureUNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: EpochSampler
    steps_per_epoch: int

    @classmethod
    def create(cls, config: TrainConfig, n_train: int, device: torch.device) -> _Learner:
        torch.manual_seed(config.seed)
        model = SeizureUNet(config.model).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
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
                       config: TrainConfig, data_versions: dict, pos_weight: float) -> None:
    """``last.pt`` after every epoch, ``best.pt`` too when the epoch is the best so far."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": config.model.to_dict(),
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
    if is_best:
        _save_checkpoint(out_dir / BEST_CHECKPOINT, payload)
    _save_checkpoint(out_dir / LAST_CHECKPOINT, payload)


def _epoch_line(metrics: dict, epochs: int, is_best: bool) -> str:
    return (f"epoch {metrics['epoch']}/{epochs}: train loss {metrics['train_loss']:.4f}, val loss "
            f"{metrics['val_loss']:.4f}, AUROC {metrics['val_auroc']:.4f}, OVERLAP sensitivity "
            f"{metrics['val_overlap_sensitivity']:.3f}, FA/24h "
            f"{metrics['val_overlap_fa_per_24h']:.1f}, "
            f"{metrics['windows_per_s']:.1f} windows/s, {metrics['epoch_seconds']:.1f} s"
            + (" (best)" if is_best else ""))


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
) -> TrainResult:
    """Train for ``config.epochs`` epochs, writing ``best.pt`` and ``last.pt`` into ``out_dir``.

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
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path = out_dir / LAST_CHECKPOINT
    data_versions = dict(data_versions or {})
    pos_weight = float(pos_weight)
    device = resolve_device(config.device)
    recordings, references = _check_validation_dataset(val_dataset)
    if len(train_dataset) == 0:
        raise ValueError("the training dataset is empty")

    with _cpu_execution(device, config.cpu_threads):
        learner = _Learner.create(config, len(train_dataset), device)
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
        else:
            log(f"training on {device}: {len(learner.sampler)} of {len(train_dataset)} train "
                f"windows per epoch ({learner.steps_per_epoch} steps of {config.batch_size}), "
                f"{len(val_dataset)} val windows in {len(recordings)} recordings, "
                f"{count_parameters(learner.model):,} parameters, pos_weight {pos_weight:.3f}, "
                f"config {config.version()}")

        for epoch in range(resumed_from, config.epochs):
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
                               pos_weight)
            log(_epoch_line(metrics, config.epochs, is_best))
            if on_epoch is not None:
                on_epoch(metrics)

    return _result(progress, out_dir, device, config, resumed_from)


def _result(progress: _Progress, out_dir: Path, device: torch.device, config: TrainConfig,
            resumed_from: int) -> TrainResult:
    total_windows = sum(m["train_windows"] for m in progress.history)
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
    )


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    ) -> tuple[SeizureUNet, dict]:
    """The checkpoint's model (in eval mode, on ``map_location``) and its full dictionary."""
    checkpoint = _read_checkpoint(Path(path), map_location=map_location)
    model = SeizureUNet(ModelConfig.from_dict(checkpoint["model_config"]))
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
) -> tuple[dict, ValidationAccumulator]:
    """Run a checkpoint over ``val_dataset``: its validation metrics and the scored recordings.

    Post-processing, stitching geometry, batch size and ``pos_weight`` come from the checkpoint;
    ``thresholds`` are scored besides the checkpoint's own (the accumulator keeps their events).
    On CPU with the training run's ``cpu_threads`` the metrics are bit-identical to the reported
    ones; another thread count or device changes float rounding (relative differences ~1e-7 in
    the loss), so a check should compare with a tolerance.
    """
    torch_device = resolve_device(device)
    model, checkpoint = load_checkpoint(path, map_location=torch_device)
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
) -> dict:
    """Recompute a checkpoint's validation metrics (same keys as :func:`fit`'s ``val_*``).

    With ``hypothesis_dir``, one ``<bname>.csv_bi`` hypothesis per scored recording is written
    there at the checkpoint's threshold. See :func:`score_checkpoint`.
    """
    metrics, accumulator = score_checkpoint(path, val_dataset, device, num_workers, cpu_threads)
    if hypothesis_dir is not None:
        accumulator.write_hypotheses(Path(hypothesis_dir))
    return metrics


__all__ = [
    "BEST_CHECKPOINT",
    "EpochSampler",
    "LAST_CHECKPOINT",
    "TrainConfig",
    "TrainResult",
    "ValidationDataset",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "score_checkpoint",
]
