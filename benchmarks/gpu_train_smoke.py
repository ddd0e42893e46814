"""GPU training smoke test: does training run on CUDA, how fast, how much memory, and does the
DataLoader keep the GPU busy?

Prepared for a machine with one CUDA GPU (what the Modal function gets). In a temporary folder:

1. a cache of real geometry (19 x 15360 float32 windows, uncompressed NPZs with ledger entries):
   ``--source synthetic`` (default) writes continuous noise recordings with 5 Hz seizure-like
   bursts and cuts them into 60 s windows at a 10 s stride, so there are partial, full and
   background windows and a learnable signal; ``--source sample`` writes the sample corpus and
   builds its train and dev splits with ``build_split`` (the real EDF -> cache path; small);
2. the real training run (:func:`eeg_assets.lib.model.train_run.run_training`: patient-disjointness,
   balanced set, ``fit`` with bf16 autocast, re-evaluation of the best checkpoint), reporting
   windows/s, validation AUROC, how closely the checkpoint reproduces it (the Pipes check allows
   1e-4) and peak GPU memory;
3. an instrumented loop over the same balanced dataset, model and DataLoader settings as ``fit``:
   per step, the time blocked in ``next(loader)`` (data wait) and the time of transfer, forward,
   backward and optimizer step up to ``torch.cuda.synchronize()`` (compute); then the same step
   repeated on one resident batch (compute only, the ceiling if data were free). Synchronising
   every step removes the overlap of loading with GPU work, so the wait measured here is an upper
   bound: a small wait fraction means the loader keeps up.

Run on the GPU machine: ``python benchmarks/gpu_train_smoke.py`` (defaults: 24 + 6 recordings,
2 epochs, batch 32, 8 workers, the default compact network; a few minutes at most). Another
network: ``--factory eeg_assets.lib.model.seizure_transformer:seizure_transformer`` (and
``--params '{"dropout": 0.1}'``, a JSON object of the factory's keyword arguments;
``--search-path DIR`` for a module outside the package), ``--optimizer radam``. Local sanity run:
``python benchmarks/gpu_train_smoke.py --device cpu --quick``. The last line is a one-line
summary. Exit status 1 when training fails or a metric is not finite; nothing else is asserted
(2 when the factory or its parameters are unusable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.balanced import read_balanced
from eeg_assets.lib.dataset.torch_datasets import BalancedSeizureDataset
from eeg_assets.lib.flags import EnvFlags
from eeg_assets.lib.model.experiment import ExperimentError, load_experiment
from eeg_assets.lib.model.factory import (
    DEFAULT_FACTORY, ModelContractError, ModelSpec, ModelSpecError,
)
from eeg_assets.lib.model.network import count_parameters
from eeg_assets.lib.model.train_run import TrainingRequest, non_finite_metrics, run_training
from eeg_assets.lib.model.training import (
    EpochSampler, TrainConfig, _make_loader, build_checked_model, make_optimizer, preflight_model,
    resolve_device, train_step,
)
from eeg_assets.synthetic.fake_cache import write_cache_entry

CONFIG = DEFAULT_CONFIG
FS = CONFIG.target_fs
CHANNELS = len(CONFIG.channels)
#: The Pipes check ``checkpoint_reproduces_metrics`` allows this much |reported - reproduced|.
REPRODUCTION_TOLERANCE = 1e-4
#: Data wait above this fraction of the step time means the GPU waits for the loader.
WAIT_FRACTION_LIMIT = 0.10


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------------
# Caches
# ------------------------------------------------------------------------------------------------

def synthetic_recording(rng: np.random.Generator, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows and labels of one continuous recording: unit noise plus one 5 Hz burst of 100-200 s
    (at most half the recording; amplitude 1.5) on all channels, cut like the builder cuts
    (60 s windows, 10 s stride)."""
    seconds = CONFIG.window_s + (n_windows - 1) * CONFIG.stride_s
    n = seconds * FS
    signal = rng.standard_normal((CHANNELS, n), dtype=np.float32)
    mask = np.zeros(n, dtype=np.float32)
    duration = int(rng.integers(min(100, seconds // 4), min(200, seconds // 2) + 1))
    onset = int(rng.integers(0, seconds - duration))
    start, stop = onset * FS, min(n, (onset + duration) * FS)
    t = np.arange(stop - start, dtype=np.float32) / FS
    phase = rng.uniform(0, 2 * np.pi, size=(CHANNELS, 1)).astype(np.float32)
    signal[:, start:stop] += 1.5 * np.sin(2 * np.pi * 5.0 * t + phase)
    mask[start:stop] = 1.0
    starts = np.arange(n_windows) * CONFIG.stride_samples
    windows = np.stack([signal[:, s:s + CONFIG.window_samples] for s in starts])
    labels = np.stack([mask[s:s + CONFIG.window_samples] for s in starts])
    return windows, labels


def write_synthetic_split(cache_dir: Path, patient_prefix: str, files: int, n_windows: int,
                          seed: int) -> None:
    rng = np.random.default_rng(seed)
    for number in range(files):
        stem = f"{patient_prefix}{number:04d}_s001_t000"  # one patient per recording
        windows, labels = synthetic_recording(rng, n_windows)
        write_cache_entry(cache_dir, stem, windows, labels, config=CONFIG)


def prepare_cache(args, root: Path) -> tuple[Path, Path]:
    train_dir, val_dir = root / "cache" / "train", root / "cache" / "val"
    started = time.perf_counter()
    if args.source == "sample":
        from eeg_assets.lib.cache.build import build_split
        from eeg_assets.synthetic.sample_corpus import write_sample_corpus

        write_sample_corpus(root / "corpus")
        for folder, cache_dir, split in (("train", train_dir, "train"), ("dev", val_dir, "val")):
            report = build_split(root / "corpus" / "edf" / folder, cache_dir, split=split,
                                 progress=None)
            log(f"[cache] built {split}: {report.windows_built} windows from "
                f"{len(report.built)} recordings")
    else:
        write_synthetic_split(train_dir, "aaaa", args.train_files, args.windows, seed=1)
        write_synthetic_split(val_dir, "vvvv", args.val_files, args.val_windows, seed=2)
    size = sum(p.stat().st_size for p in (root / "cache").rglob("*.npz")) / 1e9
    log(f"[cache] {args.source}: {size:.2f} GB under {root / 'cache'} in "
        f"{time.perf_counter() - started:.1f} s")
    return train_dir, val_dir


# ------------------------------------------------------------------------------------------------
# Measurements
# ------------------------------------------------------------------------------------------------

def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def real_training(train_dir: Path, val_dir: Path, out_dir: Path, config: TrainConfig,
                  device: torch.device, search_path: Path | None = None) -> dict:
    """The run the asset makes, on this cache: returns the summary plus timing and memory."""
    reset_peak(device)
    started = time.perf_counter()
    summary = run_training(TrainingRequest(train_cache=train_dir, val_cache=val_dir,
                                           out_dir=out_dir, train=config,
                                           model_search_path=search_path),
                           log=lambda line: log(f"  | {line}"), flags=EnvFlags())
    summary["wall_seconds"] = time.perf_counter() - started
    summary["peak_gib"] = peak_gib(device)
    return summary


def instrumented_steps(train_dir: Path, config: TrainConfig, device: torch.device, steps: int,
                       warmup: int, search_path: Path | None = None) -> dict:
    """Data wait vs compute per training step, with fit's dataset, model, loader and step: the
    balanced set the run before wrote (``real_training`` prepares it as a standalone run does)."""
    composition = read_balanced(train_dir)
    dataset = BalancedSeizureDataset(train_dir, composition)
    if device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    model = build_checked_model(config, device, (CHANNELS, CONFIG.window_samples), search_path)
    optimizer = make_optimizer(model, config)
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(composition.pos_weight,
                                                             device=device))
    sampler = EpochSampler(len(dataset), config.seed)
    loader = _make_loader(dataset, config.batch_size, config.num_workers, device, config.seed,
                          sampler)

    def step(windows: torch.Tensor, labels: torch.Tensor) -> None:
        train_step(model, optimizer, criterion, windows, labels, device, config.grad_clip)

    reset_peak(device)
    model.train()
    waits, computes, sizes = [], [], []
    epoch, done = 0, 0
    last_batch = None
    while done < warmup + steps:
        sampler.set_epoch(epoch)
        iterator = iter(loader)
        while done < warmup + steps:
            t0 = time.perf_counter()
            try:
                windows, labels = next(iterator)
            except StopIteration:
                break
            t1 = time.perf_counter()
            step(windows, labels)
            sync(device)
            t2 = time.perf_counter()
            if done >= warmup:  # the first steps start workers and warm kernels up
                waits.append(t1 - t0)
                computes.append(t2 - t1)
                sizes.append(len(windows))
            last_batch = (windows, labels)
            done += 1
        epoch += 1

    # Compute only: the same step on one batch already in (pinned) memory, no loader involved.
    resident = [t.pin_memory() if device.type == "cuda" else t for t in last_batch]
    repeats = max(3, min(len(computes), 20))
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step(*resident)
    sync(device)
    compute_only = (time.perf_counter() - t0) / repeats

    wait, compute = sum(waits), sum(computes)
    return {
        "dataset_windows": len(dataset),
        "parameters": count_parameters(model),
        "steps": len(waits),
        "windows": sum(sizes),
        "wait_ms": 1000 * statistics.fmean(waits),
        "wait_p90_ms": 1000 * sorted(waits)[int(0.9 * (len(waits) - 1))],
        "compute_ms": 1000 * statistics.fmean(computes),
        "wait_fraction": wait / (wait + compute),
        "windows_per_s": sum(sizes) / (wait + compute),
        "compute_only_ms": 1000 * compute_only,
        "compute_only_windows_per_s": len(last_batch[0]) / compute_only,
        "peak_gib": peak_gib(device),
    }


# ------------------------------------------------------------------------------------------------

def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="tiny cache and few steps: a sanity run (e.g. on CPU)")
    parser.add_argument("--source", choices=("synthetic", "sample"), default="synthetic")
    parser.add_argument("--train-files", type=int, default=24)
    parser.add_argument("--windows", type=int, default=40, help="windows per train recording")
    parser.add_argument("--val-files", type=int, default=6)
    parser.add_argument("--val-windows", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--steps", type=int, default=40, help="instrumented steps measured")
    parser.add_argument("--max-train-windows", type=int, default=None,
                        help="train on this many random windows per epoch (default: all)")
    parser.add_argument("--cpu-threads", type=int, default=None)
    parser.add_argument("--dir", default=None, help="parent of the temporary folder")
    parser.add_argument("--factory", default=DEFAULT_FACTORY,
                        help="model factory 'package.module:callable' (default: %(default)s)")
    parser.add_argument("--params", default="{}", type=_json_object,
                        help="the factory's keyword arguments as a JSON object")
    parser.add_argument("--search-path", type=Path, default=None,
                        help="folder holding the factory's module when outside the package")
    parser.add_argument("--optimizer", choices=("adamw", "radam"), default="adamw")
    parser.add_argument("--experiment", type=Path, default=None,
                        help="an experiment file (experiments/*.toml): its model, optimizer and "
                             "learning rate replace --factory/--params/--optimizer; --epochs, "
                             "--batch-size and --workers still size the smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_files, args.windows, args.val_files, args.val_windows = 4, 8, 2, 6
        args.epochs, args.batch_size, args.steps = 1, 4, 4
        args.max_train_windows = args.max_train_windows or 16
        args.workers = min(args.workers, 2)
        args.cpu_threads = args.cpu_threads or 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    started = time.perf_counter()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    log(f"[env] torch {torch.__version__}, CUDA {torch.version.cuda}, device {gpu}, "
        f"{os.cpu_count()} CPUs")
    try:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             eval_batch_size=2 * args.batch_size, num_workers=args.workers,
                             device=device.type, cpu_threads=args.cpu_threads,
                             max_train_windows_per_epoch=args.max_train_windows,
                             model=ModelSpec(args.factory, args.params),
                             optimizer=args.optimizer)
        if args.experiment is not None:
            experiment = load_experiment(args.experiment)
            config = dataclasses.replace(config, model=experiment.train.model,
                                         optimizer=experiment.train.optimizer,
                                         lr=experiment.train.lr,
                                         weight_decay=experiment.train.weight_decay)
            args.search_path = args.search_path or experiment.folder
            log(f"[model] experiment {experiment.name}: {experiment.train.model.factory}")
        # Before writing any cache: a wrong factory fails in seconds.
        preflight_model(config, (CHANNELS, CONFIG.window_samples), args.search_path,
                        log=lambda line: log(f"[model] {line}"))
    except (ModelSpecError, ModelContractError, ExperimentError) as error:
        log(f"[model] {error}")
        return 2
    root = Path(tempfile.mkdtemp(prefix="gpu_train_smoke.", dir=args.dir))
    try:
        train_dir, val_dir = prepare_cache(args, root)

        log(f"[fit] run_training: {args.epochs} epochs, batch {args.batch_size}, "
            f"{args.workers} workers, {device.type}"
            + (" with bf16 autocast" if device.type == "cuda" else ""))
        summary = real_training(train_dir, val_dir, root / "results", config, device,
                                args.search_path)
        reported = summary["best_metrics"]["val_auroc"]
        reproduced = summary["reproduced_metrics"]["val_auroc"]
        delta = abs(reported - reproduced)
        per_epoch = ", ".join(f"{h['windows_per_s']:.0f}" for h in summary["history"])
        log(f"[fit] {summary['train_windows']} balanced train windows, {summary['val_windows']} "
            f"val windows; windows/s per epoch: {per_epoch} (mean {summary['windows_per_s']:.1f}); "
            f"{summary['wall_seconds']:.1f} s in all")
        log("[fit] val AUROC per epoch: "
            + ", ".join(f"{h['val_auroc']:.3f}" for h in summary["history"])
            + f"; checkpoint reproduces {reproduced:.6f} vs {reported:.6f} "
            f"(|diff| {delta:.2e}, check tolerance {REPRODUCTION_TOLERANCE:g}: "
            f"{'pass' if delta <= REPRODUCTION_TOLERANCE else 'FAIL'}); "
            f"peak GPU memory {summary['peak_gib']:.2f} GiB")

        log(f"[loader] {args.steps} instrumented steps (after warm-up), synchronised per step")
        steps = instrumented_steps(train_dir, config, device, args.steps, warmup=3,
                                   search_path=args.search_path)
        keeps_up = steps["wait_fraction"] <= WAIT_FRACTION_LIMIT
        log(f"[loader] data wait {steps['wait_ms']:.1f} ms/step (p90 {steps['wait_p90_ms']:.1f}), "
            f"compute {steps['compute_ms']:.1f} ms/step -> {steps['wait_fraction']:.0%} of each "
            f"step waiting for data; {steps['windows_per_s']:.1f} windows/s")
        log(f"[loader] compute only (resident batch): {steps['compute_only_ms']:.1f} ms/step = "
            f"{steps['compute_only_windows_per_s']:.1f} windows/s ceiling; "
            f"{steps['parameters']:,} parameters; peak GPU memory {steps['peak_gib']:.2f} GiB")
        log("[loader] " + ("the loader keeps the device busy" if keeps_up else
                           f"the device waits for data (> {WAIT_FRACTION_LIMIT:.0%}): "
                           "more workers or a faster disk would speed training up"))

        bad = non_finite_metrics(summary)
        total = time.perf_counter() - started
        log(f"SUMMARY device={gpu.replace(' ', '_')} "
            f"model={args.factory.rsplit(':', 1)[-1]} parameters={steps['parameters']} "
            f"fit_windows_per_s={summary['windows_per_s']:.1f} "
            f"loop_windows_per_s={steps['windows_per_s']:.1f} "
            f"compute_only_windows_per_s={steps['compute_only_windows_per_s']:.1f} "
            f"data_wait_ms={steps['wait_ms']:.1f} compute_ms={steps['compute_ms']:.1f} "
            f"wait_fraction={steps['wait_fraction']:.2f} loader={'ok' if keeps_up else 'STARVED'} "
            f"peak_gib={max(summary['peak_gib'], steps['peak_gib']):.2f} "
            f"val_auroc={reported:.3f} reproduce_diff={delta:.1e} "
            f"non_finite={len(bad)} total_s={total:.0f}")
        return 1 if bad or not math.isfinite(reported) else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
