"""``trained_model`` materialised through Dagster, with the local and the Modal launcher.

The cache is a handful of hand-written NPZs of the real geometry (19 x 15360 windows, ledger
entries as the builder writes them) with the index, manifest and balanced set the upstream assets
would write, so one epoch on CPU takes a second or two; the asset is built from settings with a
short, single-threaded :class:`TrainConfig`.

Modal cannot be reached from the test machine, so the Modal launcher runs a stand-in ``modal``
executable (``stand_in_modal.py``, put on PATH). It runs the app file's own local entrypoint and
``train`` function body in a separate "container" process whose stdout carries the Pipes messages
back, with a folder playing the ``/results`` volume. What it cannot show: that the image builds,
that Modal schedules the GPU, and that ``modal run`` streams container stdout unaltered.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.balanced import compose_split, write_balanced
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.manifest import update_manifest
from eeg_assets.lib.files import content_version
from eeg_assets.lib.model.training import TrainConfig, load_checkpoint
from eeg_assets.orchestration import modal_launch, training
from eeg_assets.settings import Settings
from eeg_assets.synthetic.fake_cache import write_recording

W = DEFAULT_CONFIG.window_samples
#: Seizure samples per window. Train: 4 patients, 3 partial + 2 full + 9 background windows; the
#: first three files alone still hold partial and background windows (BGB_SMOKE_TEST=1).
TRAIN_FILES = {
    "aaaaaaaa_s001_t000": [0, 4000, W, W],
    "aaaaaaab_s001_t000": [0, 0, 0, 3000],
    "aaaaaaac_s001_t000": [0, 0, 0],
    "aaaaaaad_s001_t000": [0, 8000, 0],
}
VAL_FILES = {"aaaaaaav_s001_t000": [0, 5000, W], "aaaaaaaw_s001_t000": [0, 0, 0]}
VAL_WINDOWS = sum(map(len, VAL_FILES.values()))
SHORT_TRAINING = TrainConfig(epochs=1, max_train_windows_per_epoch=16, cpu_threads=1,
                             device="cpu")
SEED_LOG_LINES = ("[DATASET] BalancedSeizureDataset:", "[DATASET] Seizure ratio:",
                  "[DATASET] Using pos_weight:", "OFFICIAL TUSZ SPLITS",
                  "✅ PATIENT DISJOINTNESS VERIFIED")
CHECKS = {"checkpoint_reproduces_metrics", "metrics_finite"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_split(cache_dir: Path, files: dict[str, list[int]]) -> None:
    """Real-size windows of noise with centred seizure masks, and the builder's ledger entries."""
    for stem, counts in files.items():
        write_recording(cache_dir, stem, counts, DEFAULT_CONFIG,
                        channels=len(DEFAULT_CONFIG.channels))


def write_cache(cache_root: Path) -> None:
    """Both splits, with the files their upstream assets write (what training is pinned to)."""
    write_split(cache_root / "train", TRAIN_FILES)
    write_split(cache_root / "val", VAL_FILES)
    for split in ("train", "val"):
        update_index(cache_root / split)
        update_manifest(cache_root / split)
    write_balanced(cache_root / "train", compose_split(cache_root / "train"))


@dataclass
class Run:
    result: dg.ExecuteInJobResult
    logs: list[str]
    results_root: Path
    #: Exceptions the external process reported when it closed Pipes (engine events).
    pipes_exceptions: list[str]

    @property
    def materialization(self) -> dg.AssetMaterialization:
        (event,) = self.result.get_asset_materialization_events()
        return event.materialization

    @property
    def metadata(self) -> dict:
        return {key: value.value for key, value in self.materialization.metadata.items()}

    @property
    def checks(self) -> dict[str, bool]:
        return {e.check_name: e.passed for e in self.result.get_asset_check_evaluations()}

    def failure_message(self) -> str:
        (failure,) = [e for e in self.result.all_events if e.is_step_failure]
        data = failure.step_failure_data
        parts = [data.error.to_string() if data.error else "",
                 data.user_failure_data.description if data.user_failure_data else ""]
        return "\n".join(p for p in parts if p)


def materialize(tmp: Path, launcher: training.TrainingLauncher, env: dict[str, str] | None = None,
                with_cache: bool = True, on_volume: bool = True,
                before_run: Callable[[Path], None] | None = None,
                with_instance: Callable[[Path, dg.DagsterInstance], None] | None = None) -> Run:
    """One run of ``trained_model`` on a fresh cache under ``tmp`` with SHORT_TRAINING.

    Locally the cache is ``tmp/cache/tusz`` and results go to ``tmp/results``. For the Modal
    launcher, ``tmp/volume`` plays the ``/results`` volume: the cache is also copied to
    ``tmp/volume/cache/tusz`` (as ``modal volume put`` would) and results go to
    ``tmp/volume/trained_model``.
    """
    modal = launcher.backend == "modal"
    volume = tmp / "volume"
    volume.mkdir(parents=True, exist_ok=True)
    if with_cache:
        write_cache(tmp / "cache" / "tusz")
        if modal and on_volume:
            shutil.copytree(tmp / "cache", volume / "cache", copy_function=shutil.copy2)
    settings = Settings(raw_root=tmp / "raw", cache_root=tmp / "cache" / "tusz",
                        results_root=tmp / "results", make_sample_if_missing=False,
                        train=SHORT_TRAINING)
    instance = dg.DagsterInstance.ephemeral()
    if before_run is not None:
        before_run(tmp / "cache" / "tusz")
    if with_instance is not None:
        with_instance(tmp / "cache" / "tusz", instance)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("BGB_SMOKE_TEST", "BGB_LIMIT_FILES", "BGB_FORCE_MANIFEST_REBUILD"):
            mp.delenv(name, raising=False)
        mp.setenv("EEG_ASSETS_STAND_IN_VOLUME", str(volume))
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        result = dg.materialize([training.build_trained_model(settings)], instance=instance,
                                resources={"settings": settings, "training_launcher": launcher},
                                raise_on_error=False)
    entries = instance.all_logs(result.run_id)
    pipes_exceptions = [
        entry.dagster_event.engine_event_data.error.to_string() for entry in entries
        if entry.dagster_event is not None and entry.dagster_event.is_engine_event
        and entry.dagster_event.engine_event_data.error is not None
        and "pipes closed with exception" in entry.user_message]
    return Run(result, [entry.user_message for entry in entries],
               volume if modal else tmp / "results", pipes_exceptions)


@pytest.fixture
def modal_on_path(monkeypatch, stand_in_bin):
    monkeypatch.setenv("PATH", f"{stand_in_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("EEG_ASSETS_STAND_IN_EXIT", raising=False)


def modal_launcher() -> training.TrainingLauncher:
    return training.TrainingLauncher(backend="modal", modal_executable="modal")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Run:
    return materialize(tmp_path_factory.mktemp("local"), training.TrainingLauncher())


@pytest.fixture(scope="module")
def modal_run(tmp_path_factory, stand_in_bin) -> Run:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{stand_in_bin}{os.pathsep}{os.environ.get('PATH', '')}")
        mp.delenv("EEG_ASSETS_STAND_IN_EXIT", raising=False)
        return materialize(tmp_path_factory.mktemp("modal"), modal_launcher())


def assert_trained(run: Run, out_dir: Path) -> None:
    """What every successful run must show in Dagster and on disk."""
    assert run.result.success, run.logs
    assert run.checks == {name: True for name in CHECKS}
    meta = run.metadata
    assert math.isfinite(meta["val_auroc"]) and 0.0 <= meta["val_auroc"] <= 1.0
    history = meta["history"]
    assert [h["epoch"] for h in history] == [1] and meta["epochs"] == 1 and meta["best_epoch"] == 1
    assert round(history[0]["val_auroc"], 4) == meta["val_auroc"]  # rounded for people
    assert meta["windows_per_s"] > 0 and math.isfinite(meta["windows_per_s"])
    assert meta["device"] == "cpu"
    assert meta["val_windows"] == VAL_WINDOWS
    assert meta["pos_weight"] > 1.0 and 0.0 < meta["seizure_ratio"] < 0.5
    checkpoint = Path(meta["checkpoint"])
    assert checkpoint == out_dir / "best.pt" and checkpoint.is_file()
    assert meta["checkpoint_mb"] == round(checkpoint.stat().st_size / 1e6, 2)
    model, saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == 1 and round(saved["metrics"]["val_auroc"], 4) == meta["val_auroc"]
    assert saved["train_config"] == SHORT_TRAINING.to_dict()
    assert sum(p.numel() for p in model.parameters()) > 0
    match = re.fullmatch(
        r"!\[loss and AUROC per epoch\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
        meta["curves"])
    assert match and base64.b64decode(match.group(1)).startswith(PNG_MAGIC)
    hypotheses = Path(meta["hypotheses_dir"])
    assert hypotheses == out_dir / "hypotheses"
    assert sorted(p.name for p in hypotheses.iterdir()) == sorted(
        f"{stem}.csv_bi" for stem in VAL_FILES)
    summary = json.loads((out_dir / "training_summary.json").read_text())
    assert round(summary["best_metrics"]["val_auroc"], 4) == meta["val_auroc"]


def assert_seed_lines(logs: list[str]) -> None:
    for expected in SEED_LOG_LINES:
        assert any(line.startswith(expected) for line in logs), (expected, logs)


# ------------------------------------------------------------------------------------------------
# Local launcher
# ------------------------------------------------------------------------------------------------

def test_local_launcher_materializes_model_with_metadata_and_files(local_run):
    assert_trained(local_run, local_run.results_root / "trained_model")


def test_training_consumes_the_pinned_upstream_files_and_records_their_versions(local_run):
    cache_root = local_run.results_root.parent / "cache" / "tusz"
    balanced = cache_root / "train" / "balanced_dataset.json"
    val_index = cache_root / "val" / "_dataset_index.json"
    assert local_run.metadata["consumed_balanced_set_version"] == content_version(balanced)
    assert local_run.metadata["consumed_val_index_version"] == content_version(val_index)
    assert any(line.startswith(f"[DATASET] Using the materialized {balanced} (version ")
               for line in local_run.logs), local_run.logs
    # nothing upstream was rewritten by the run: no manifest or index rebuild lines
    assert not any(line.startswith(("[MANIFEST]", "[INDEX]")) for line in local_run.logs)


def test_local_launcher_reports_both_checks_passed(local_run):
    evaluations = local_run.result.get_asset_check_evaluations()
    assert sorted(e.check_name for e in evaluations) == sorted(CHECKS)
    assert all(e.passed for e in evaluations)
    (reproduces,) = [e for e in evaluations if e.check_name == "checkpoint_reproduces_metrics"]
    meta = {k: v.value for k, v in reproduces.metadata.items()}
    assert abs(meta["reported_val_auroc"] - meta["reproduced_val_auroc"]) <= meta["tolerance"]


def test_local_launcher_logs_the_seed_lines_into_the_run(local_run):
    assert_seed_lines(local_run.logs)
    assert any(line.startswith("epoch 1/1: train loss") for line in local_run.logs)
    assert not any("BGB_SMOKE_TEST" in line or "BGB_FORCE_MANIFEST_REBUILD" in line
                   for line in local_run.logs)


def test_smoke_test_and_forced_manifest_rebuild_flags(tmp_path):
    run = materialize(tmp_path, training.TrainingLauncher(),
                      env={"BGB_SMOKE_TEST": "1", "BGB_FORCE_MANIFEST_REBUILD": "1"})
    assert_trained(run, tmp_path / "results" / "trained_model")
    assert "[DATASET] Using the first 3 of 4 files (BGB_SMOKE_TEST=1)" in run.logs
    assert any(line.startswith("[MANIFEST] rebuilt manifest.json (BGB_FORCE_MANIFEST_REBUILD=1)")
               for line in run.logs), run.logs
    # The fourth file's partial window is left out: fewer training windows than without the flag.
    assert run.metadata["train_windows"] < 10


def test_training_failure_in_the_process_fails_the_asset(tmp_path):
    """The pinned val index no longer matches its NPZs: the training process refuses it."""

    def remove_a_val_npz(cache_root: Path) -> None:
        (cache_root / "val" / "aaaaaaaw_s001_t000_windows.npz").unlink()

    run = materialize(tmp_path, training.TrainingLauncher(), before_run=remove_a_val_npz)
    assert not run.result.success
    assert "failed with code 1" in run.failure_message()
    (exception,) = run.pipes_exceptions
    assert re.search(r"StaleInputError: index \S+/cache/tusz/val/_dataset_index.json is stale: "
                     r".*aaaaaaaw_s001_t000_windows.npz", exception), exception
    assert not run.result.get_asset_materialization_events()


def test_unmaterialized_upstream_is_a_clear_failure_before_launching(tmp_path):
    run = materialize(tmp_path, training.TrainingLauncher(), with_cache=False)
    assert not run.result.success
    message = run.failure_message()
    assert "balanced_dataset[train] has not been materialized" in message, message
    assert f"{tmp_path}/cache/tusz/train/balanced_dataset.json does not exist" in message
    assert not (tmp_path / "results").exists()  # nothing was launched


def test_a_file_changed_behind_dagster_is_refused_before_launching(tmp_path):
    """The balanced set on disk differs from the data version Dagster recorded for it."""

    def record_then_tamper(cache_root: Path, instance: dg.DagsterInstance) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            "balanced_dataset", partition="train",
            tags={"dagster/data_version": "0123456789abcdef"}))

    run = materialize(tmp_path, training.TrainingLauncher(), with_instance=record_then_tamper)
    assert not run.result.success
    message = run.failure_message()
    assert ("balanced_dataset.json changed after balanced_dataset[train] was materialized "
            "(recorded data version 0123456789abcdef") in message, message


# ------------------------------------------------------------------------------------------------
# Modal launcher with the stand-in CLI
# ------------------------------------------------------------------------------------------------

def test_modal_launcher_materializes_model_with_metadata_and_files(modal_run):
    assert_trained(modal_run, modal_run.results_root / "trained_model")
    assert_seed_lines(modal_run.logs)


def test_modal_launcher_sends_the_volume_paths_and_commits_the_volume(modal_run):
    (request,) = [json.loads(line) for line in
                  (modal_run.results_root / ".requests.jsonl").read_text().splitlines()]
    assert request["train_cache"] == "/results/cache/tusz/train"
    assert request["val_cache"] == "/results/cache/tusz/val"
    assert request["out_dir"] == "/results/trained_model"
    assert request["train"] == SHORT_TRAINING.to_dict()
    assert (modal_run.results_root / ".commits").read_text() == "commit\n"
    assert any(line.startswith("launching modal run ") and line.endswith("modal_app.py")
               for line in modal_run.logs)


def test_modal_and_local_launchers_report_the_same_training(local_run, modal_run):
    local, remote = local_run.metadata, modal_run.metadata
    assert local.keys() == remote.keys()
    assert modal_run.checks == local_run.checks
    # "<train config version>:<consumed inputs>"; the two caches were written apart and their
    # index files hold NPZ mtimes, so only the config half is shared.
    versions = [run.materialization.tags.get("dagster/data_version")
                for run in (local_run, modal_run)]
    assert versions[0].split(":")[0] == versions[1].split(":")[0] == SHORT_TRAINING.version()
    # Same data, same seeds, CPU with one thread: the same model, bit for bit.
    for key in ("val_auroc", "val_loss", "pos_weight", "train_windows", "val_windows"):
        assert remote[key] == local[key], key
    assert [h["train_loss"] for h in remote["history"]] == \
        [h["train_loss"] for h in local["history"]]


def test_modal_launcher_forwards_the_seed_flags(tmp_path, modal_on_path):
    run = materialize(tmp_path, modal_launcher(),
                      env={"BGB_SMOKE_TEST": "1", "BGB_FORCE_MANIFEST_REBUILD": "1"})
    assert_trained(run, tmp_path / "volume" / "trained_model")
    assert "[DATASET] Using the first 3 of 4 files (BGB_SMOKE_TEST=1)" in run.logs
    assert any(line.startswith("[MANIFEST] rebuilt manifest.json (BGB_FORCE_MANIFEST_REBUILD=1)")
               for line in run.logs), run.logs


def test_modal_cli_failure_fails_the_asset_with_the_exit_code(tmp_path, modal_on_path,
                                                              monkeypatch, capsys):
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_EXIT", "1")
    run = materialize(tmp_path, modal_launcher())
    assert "✓ Initialized." in capsys.readouterr().out  # ordinary CLI output is passed on
    assert not run.result.success
    message = run.failure_message()
    assert re.search(r"`modal run \S*modal_app\.py` exited with code 1", message), message
    assert not run.result.get_asset_materialization_events()
    assert not run.result.get_asset_check_evaluations()


def test_remote_training_failure_fails_the_asset_and_still_commits_the_volume(tmp_path,
                                                                              modal_on_path):
    run = materialize(tmp_path, modal_launcher(), on_volume=False)  # nothing on the volume
    assert not run.result.success
    assert "exited with code 1" in run.failure_message()
    # The remote exception travelled back over Pipes, with the container's path.
    (exception,) = run.pipes_exceptions
    assert (f"balanced set {tmp_path}/volume/cache/tusz/train/balanced_dataset.json is missing"
            in exception), exception
    assert (tmp_path / "volume" / ".commits").read_text() == "commit\n"
    assert not run.result.get_asset_materialization_events()


def test_missing_modal_executable_is_a_clear_failure(tmp_path):
    launcher = training.TrainingLauncher(backend="modal",
                                         modal_executable=str(tmp_path / "no-such-modal"))
    run = materialize(tmp_path, launcher)
    assert not run.result.success
    message = run.failure_message()
    assert "no-such-modal" in message and "not found" in message
    assert "pip install 'eeg_assets[modal]'" in message


def test_unknown_backend_is_a_clear_failure(tmp_path):
    run = materialize(tmp_path, training.TrainingLauncher(backend="slurm"))
    assert not run.result.success
    assert "unknown training backend 'slurm'" in run.failure_message()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_failing_step_stops_modal_run_and_its_container(tmp_path, modal_on_path, monkeypatch):
    """A step that dies while `modal run` is running (run terminated, a bad message) interrupts
    it, so no GPU keeps training for a step that no longer exists.

    The step dies on the first Pipes message ("opened"), so this also shows that messages stream
    while the container runs: had they been held in a stdout buffer until the end, best.pt would
    be written before the step saw anything.
    """

    def consume(self, line: str) -> bool:
        if "__dagster_pipes_version" in line:
            raise RuntimeError("step interrupted while training")
        return False

    monkeypatch.setattr(modal_launch.StdoutMessageReader, "consume", consume)
    run = materialize(tmp_path, modal_launcher())
    assert not run.result.success
    assert "step interrupted while training" in run.failure_message()
    pids = [int(pid) for pid in (tmp_path / "volume" / ".pids").read_text().split()]
    assert len(pids) == 2  # the CLI and its container
    assert not [pid for pid in pids if _alive(pid)]
    assert not (tmp_path / "volume" / "trained_model" / "best.pt").exists()
