"""fit() on a tiny synthetic task: learning, checkpoints, determinism, resume, re-evaluation.

Seizures are 5 Hz rhythmic bursts on all channels over unit white noise, in 10 s windows
(T = 2560 at 256 Hz) with a 5 s stride, so the whole file trains a small model in seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from eeg_assets.lib.model import training
from eeg_assets.lib.cache.references import SplitReferences
from eeg_assets.lib.model.factory import DEFAULT_FACTORY, ModelSpec
from eeg_assets.lib.model.network import ModelConfig
from eeg_assets_tests.support.tiny_task import (
    FS, POS_WEIGHT, STRIDE, TRAIN, VAL, WINDOW, WindowedRecordings, synthetic_recording,
)
from eeg_assets.lib.model.training import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    EpochSampler,
    TrainConfig,
    evaluate_checkpoint,
    fit,
    load_checkpoint,
)

# One thread: this file runs on a shared 2-core machine where busy neighbours made two OpenMP
# threads 5-10x slower than one.
CONFIG = TrainConfig(
    epochs=4, batch_size=4, eval_batch_size=16, lr=1e-2, seed=7, device="cpu", cpu_threads=1,
    threshold=0.5, merge_gap_s=1.0, min_event_s=1.0,
    model=ModelSpec(DEFAULT_FACTORY, dict(base_channels=8, depth=2, bottleneck_blocks=1,
                                          attention_heads=2, dropout=0.1)),
)


DATA_VERSIONS = {"cache": "c0ffee", "balance": "b0a7"}


class _Stop(Exception):
    """Simulates a killed run from inside on_epoch."""


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("baseline")
    lines, epochs = [], []
    result = fit(TRAIN, POS_WEIGHT, VAL, out_dir, CONFIG, log=lines.append,
                 on_epoch=epochs.append, data_versions=DATA_VERSIONS)
    return result, lines, epochs, out_dir


def _trajectory(history: list[dict]) -> list[tuple]:
    return [(m["epoch"], m["train_loss"], m["val_loss"], m["val_auroc"], m["lr"]) for m in history]


def test_fit_learns_the_synthetic_seizures(baseline):
    result, lines, epochs, _ = baseline
    assert result.best_metrics["val_auroc"] > 0.9
    assert result.best_metrics["val_overlap_sensitivity"] == 1.0
    assert result.best_metrics["val_overlap_targets"] == 2  # the two seizures of the references
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.device == "cpu"
    assert result.resumed_from_epoch == 0
    assert result.windows_per_s > 0 and result.train_seconds > 0


def test_fit_reports_every_epoch_to_on_epoch_and_log(baseline):
    result, lines, epochs, _ = baseline
    assert epochs == result.history and len(epochs) == CONFIG.epochs
    for key in ("train_loss", "val_loss", "val_auroc", "val_overlap_sensitivity",
                "val_overlap_fa_per_24h", "val_taes_sensitivity", "val_szcore_sensitivity",
                "val_szcore_fa_per_24h", "windows_per_s", "epoch_seconds"):
        assert all(np.isfinite(m[key]) for m in epochs), key
    assert any(line.startswith("training on cpu") for line in lines)
    assert sum(line.startswith("epoch ") for line in lines) == CONFIG.epochs
    best = max(result.history, key=lambda m: (m["val_auroc"], -m["val_loss"]))
    assert result.best_epoch == best["epoch"] and result.best_metrics == best


def test_checkpoints_carry_what_a_later_run_needs(baseline):
    result, _, _, out_dir = baseline
    assert result.best_checkpoint == out_dir / BEST_CHECKPOINT
    assert result.last_checkpoint == out_dir / LAST_CHECKPOINT
    model, best = load_checkpoint(result.best_checkpoint)
    assert not model.training
    assert model.config == ModelConfig(**CONFIG.model.params)
    assert best["epoch"] == result.best_epoch
    assert best["metrics"] == result.best_metrics
    assert TrainConfig.from_dict(best["train_config"]) == CONFIG
    assert best["train_config_version"] == CONFIG.version()
    assert best["data_versions"] == DATA_VERSIONS
    assert best["pos_weight"] == POS_WEIGHT
    _, last = load_checkpoint(result.last_checkpoint)
    assert last["epoch"] == CONFIG.epochs
    assert last["history"] == result.history
    assert {"optimizer_state", "scheduler_state"} <= last.keys()


def test_evaluate_checkpoint_reproduces_the_reported_metrics(baseline, tmp_path):
    result, _, _, _ = baseline
    metrics = evaluate_checkpoint(result.best_checkpoint, VAL, device="cpu",
                                  cpu_threads=CONFIG.cpu_threads, hypothesis_dir=tmp_path)
    reported = {key: value for key, value in result.best_metrics.items()
                if key.startswith("val_") and key != "val_seconds"}
    assert {key: metrics[key] for key in reported} == reported
    other_threads = evaluate_checkpoint(result.best_checkpoint, VAL, device="cpu", cpu_threads=2)
    assert other_threads["val_auroc"] == pytest.approx(reported["val_auroc"], abs=1e-4)
    assert other_threads["val_loss"] == pytest.approx(reported["val_loss"], rel=1e-5)
    names = sorted(p.name for p in tmp_path.glob("*.csv_bi"))
    assert names == ["vala_s001_t000.csv_bi", "valb_s001_t000.csv_bi", "valc_s002_t001.csv_bi"]
    assert "# bname = vala_s001_t000" in (tmp_path / "vala_s001_t000.csv_bi").read_text()


def test_two_runs_with_the_same_seed_are_identical(baseline, tmp_path):
    result, _, _, _ = baseline
    threads_before = torch.get_num_threads()
    again = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, CONFIG, log=lambda _line: None,
                data_versions=DATA_VERSIONS)
    assert _trajectory(again.history) == _trajectory(result.history)
    assert not torch.are_deterministic_algorithms_enabled(), "fit must restore the global flag"
    assert torch.get_num_threads() == threads_before


def test_data_loader_workers_do_not_change_the_result(baseline, tmp_path):
    result, _, _, _ = baseline
    config = replace(CONFIG, num_workers=2, epochs=4)
    assert config.version() == CONFIG.version()
    with_workers = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lambda _line: None,
                       data_versions=DATA_VERSIONS)
    assert _trajectory(with_workers.history) == _trajectory(result.history)


def test_an_interrupted_run_resumes_to_the_same_result(baseline, tmp_path):
    result, _, _, _ = baseline

    def stop_after_two(metrics):
        if metrics["epoch"] == 2:
            raise _Stop

    with pytest.raises(_Stop):
        fit(TRAIN, POS_WEIGHT, VAL, tmp_path, CONFIG, log=lambda _line: None,
            on_epoch=stop_after_two, data_versions=DATA_VERSIONS)
    lines = []
    resumed = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, CONFIG, log=lines.append,
                  data_versions=DATA_VERSIONS)
    assert resumed.resumed_from_epoch == 2
    assert any(line.startswith("resuming from") and "after epoch 2/4" in line for line in lines)
    assert sum(line.startswith("epoch ") for line in lines) == 2
    assert _trajectory(resumed.history) == _trajectory(result.history)
    _, baseline_last = load_checkpoint(result.last_checkpoint)
    _, resumed_last = load_checkpoint(resumed.last_checkpoint)
    for name, tensor in baseline_last["model_state"].items():
        assert torch.equal(tensor, resumed_last["model_state"][name]), name


def test_a_finished_run_is_not_trained_again(baseline, tmp_path):
    result, _, _, out_dir = baseline
    shutil.copy(out_dir / LAST_CHECKPOINT, tmp_path / LAST_CHECKPOINT)
    shutil.copy(out_dir / BEST_CHECKPOINT, tmp_path / BEST_CHECKPOINT)
    lines = []
    again = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, CONFIG, log=lines.append,
                data_versions=DATA_VERSIONS)
    assert any("nothing to train" in line for line in lines)
    assert again.history == result.history and again.best_epoch == result.best_epoch


@pytest.mark.parametrize("change", [
    {"config": replace(CONFIG, epochs=1)},
    {"data_versions": {**DATA_VERSIONS, "cache": "other"}},
    {"pos_weight": 2.0},
])
def test_a_checkpoint_of_other_inputs_is_not_resumed(baseline, tmp_path, change):
    _, _, _, out_dir = baseline
    shutil.copy(out_dir / LAST_CHECKPOINT, tmp_path / LAST_CHECKPOINT)
    shutil.copy(out_dir / BEST_CHECKPOINT, tmp_path / BEST_CHECKPOINT)
    config = change.get("config", replace(CONFIG, epochs=1))
    lines = []
    result = fit(TRAIN, change.get("pos_weight", POS_WEIGHT), VAL, tmp_path, config,
                 log=lines.append, data_versions=change.get("data_versions", DATA_VERSIONS))
    assert result.resumed_from_epoch == 0
    assert any(line.startswith("not resuming") for line in lines)
    _, best = load_checkpoint(result.best_checkpoint)
    assert best["train_config_version"] == config.version() and len(best["history"]) == 1


def test_resume_false_starts_over(baseline, tmp_path):
    _, _, _, out_dir = baseline
    shutil.copy(out_dir / LAST_CHECKPOINT, tmp_path / LAST_CHECKPOINT)
    config = replace(CONFIG, epochs=1)
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lambda _line: None,
                 resume=False, data_versions=DATA_VERSIONS)
    assert result.resumed_from_epoch == 0 and len(result.history) == 1


def test_max_train_windows_per_epoch_limits_each_epoch(tmp_path):
    config = replace(CONFIG, epochs=1, max_train_windows_per_epoch=12)
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lambda _line: None)
    assert result.history[0]["train_windows"] == 12


def test_epoch_sampler_draws_a_fresh_reproducible_subset_per_epoch():
    sampler = EpochSampler(20, seed=3, limit=8)
    draws = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        draws.append(list(sampler))
    assert len(sampler) == 8 and all(len(d) == 8 and len(set(d)) == 8 for d in draws)
    assert draws[0] == draws[2] and draws[0] != draws[1]
    assert all(0 <= i < 20 for d in draws for i in d)
    full = EpochSampler(5, seed=3)
    assert sorted(full) == [0, 1, 2, 3, 4]


def test_config_version_is_stable_and_tracks_what_is_learned():
    assert TrainConfig().version() == TrainConfig().version()
    assert len(TrainConfig().version()) == 16
    assert TrainConfig(lr=1e-4).version() != TrainConfig().version()
    assert (TrainConfig(model=ModelSpec(DEFAULT_FACTORY, {"attention": False})).version()
            != TrainConfig().version())
    assert TrainConfig(num_workers=4, cpu_threads=1).version() == TrainConfig().version()
    assert TrainConfig.from_dict(CONFIG.to_dict()) == CONFIG


def test_validation_set_must_match_its_recordings(tmp_path):
    class Inconsistent(WindowedRecordings):
        def recordings(self):
            return super().recordings()[:-1]

    broken = Inconsistent([("a_windows.npz", *synthetic_recording(
        np.random.default_rng(0), 20 * FS, []))], WINDOW, STRIDE)
    with pytest.raises(ValueError, match="announce"):
        fit(TRAIN, POS_WEIGHT, broken, tmp_path, CONFIG, log=lambda _line: None)


def test_validation_recordings_need_references(tmp_path):
    class Unreferenced(WindowedRecordings):
        def references(self):
            return SplitReferences(super().references().recordings[1:])

    rng = np.random.default_rng(0)
    broken = Unreferenced([(f"{name}_windows.npz", *synthetic_recording(rng, 20 * FS, []))
                           for name in ("a_s001_t000", "b_s001_t000")], WINDOW, STRIDE)
    with pytest.raises(ValueError, match="validation recordings without reference events: "
                                         "a_s001_t000_windows.npz"):
        fit(TRAIN, POS_WEIGHT, broken, tmp_path, CONFIG, log=lambda _line: None)



@pytest.mark.parametrize("epochs, windows", [(5, 16), (1, 8)])
def test_runs_of_few_steps_train(tmp_path, epochs, windows):
    """OneCycleLR divided by zero when warm-up covered exactly one of 10 steps (5 x 2 here)."""
    config = replace(CONFIG, epochs=epochs, batch_size=8, max_train_windows_per_epoch=windows)
    result = fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lambda _line: None)
    assert len(result.history) == epochs
    assert all(0 < h["lr"] <= config.lr for h in result.history)


def test_long_epochs_report_progress_within_the_epoch(tmp_path, monkeypatch):
    """A progress line per interval (here every batch) with batches, windows/s and an ETA."""
    monkeypatch.setattr(training, "PROGRESS_INTERVAL_S", 0.0)
    config = replace(CONFIG, epochs=1, max_train_windows_per_epoch=12)  # 3 batches of 4
    lines: list[str] = []
    fit(TRAIN, POS_WEIGHT, VAL, tmp_path, config, log=lines.append)
    progress = [line for line in lines if line.startswith("  batch ")]
    assert [line.split(":")[0] for line in progress] == [
        "  batch 1/3 of epoch 1/1", "  batch 2/3 of epoch 1/1"]  # none after the last batch
    assert all(" windows/s, epoch ETA " in line for line in progress), progress
