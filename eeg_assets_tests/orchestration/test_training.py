"""``trained_model`` materialised through Dagster, on the local and the Modal backend.

The cache is a handful of hand-written NPZs of the real geometry (19 x 15360 windows, ledger
entries as the builder writes them) with the index, manifest and balanced set the upstream assets
would write, so one epoch on CPU takes a second or two; the asset is built from settings with a
short, single-threaded :class:`TrainConfig`.

Modal's servers cannot be reached from the test machine, so the Modal backend's client is the
stand-in (``stand_in_modal.py``, the only mock): it runs the deployed app's own ``train`` function
in a separate, detached "container" process, with a folder playing the ``/results`` volume, and
plays preemption, lost connections and the rest (its docstring lists them). What it cannot show:
that the image builds and that Modal schedules the GPU.
"""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
import pytest
from dagster_pipes import decode_param

from eeg_assets.lib.files import content_version
from eeg_assets.lib.model.training import TrainConfig, load_checkpoint
from eeg_assets.orchestration import build_resources, modal_launch, training
from eeg_assets.settings import Settings
from eeg_assets_tests.support.stand_in_modal import StandInModal
from eeg_assets_tests.support.training_cache import (
    EXPERIMENT, SHORT_TRAINING, STAND_IN, STAND_IN_SWITCHES, VAL_FILES, VAL_WINDOWS, experiment_of,
    write_cache,
)

SEED_LOG_LINES = ("[DATASET] BalancedSeizureDataset:", "[DATASET] Seizure ratio:",
                  "[DATASET] Using pos_weight:", "OFFICIAL TUSZ SPLITS",
                  "✅ PATIENT DISJOINTNESS VERIFIED")
CHECKS = {"checkpoint_reproduces_metrics", "metrics_finite"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Run:
    result: dg.ExecuteInJobResult
    logs: list[str]
    results_root: Path
    #: Exceptions the external process reported when it closed Pipes (engine events).
    pipes_exceptions: list[str]
    #: The run's tags as the instance holds them after the run (tags added while it ran).
    tags: dict

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


def record_upstream(cache_root: Path, instance: dg.DagsterInstance) -> None:
    """What the chain on Modal would have recorded: the content versions of the volume's files
    (training pins those; there is no local copy to compare)."""
    for asset, split, name in (("balanced_dataset", "train", "balanced_dataset.json"),
                               ("dataset_index", "val", "_dataset_index.json")):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset, partition=split,
            tags={"dagster/data_version": content_version(cache_root / split / name)}))


def materialize(tmp: Path, backend: str = "local", env: dict[str, str] | None = None,
                with_cache: bool = True, on_volume: bool = True,
                before_run: Callable[[Path], None] | None = None,
                with_instance: Callable[[Path, dg.DagsterInstance], None] | None = None,
                instance: dg.DagsterInstance | None = None, train: TrainConfig = SHORT_TRAINING
                ) -> Run:
    """One run of ``trained_model`` on a fresh cache under ``tmp`` with ``train``.

    Locally the cache is ``tmp/cache/tusz`` and results go to ``tmp/results``. On the Modal
    backend, ``tmp/volume`` plays the ``/results`` volume: the cache is also copied to
    ``tmp/volume/cache/tusz`` (where the chain on Modal writes it), its versions recorded, and
    results go to ``tmp/volume/trained_model``.
    """
    modal = backend == "modal"
    volume = tmp / "volume"
    volume.mkdir(parents=True, exist_ok=True)
    instance = instance or dg.DagsterInstance.ephemeral()
    if with_cache and not (tmp / "cache").exists():
        write_cache(tmp / "cache" / "tusz")
        if modal and on_volume:
            shutil.copytree(tmp / "cache", volume / "cache", copy_function=shutil.copy2)
            record_upstream(volume / "cache" / "tusz", instance)
    settings = Settings(raw_root=tmp / "raw", cache_root=tmp / "cache" / "tusz",
                        results_root=tmp / "results",
                        train=train, backend=backend, modal_client=STAND_IN)
    if before_run is not None:
        before_run(tmp / "cache" / "tusz")
    if with_instance is not None:
        with_instance(tmp / "cache" / "tusz", instance)
    with pytest.MonkeyPatch.context() as mp:
        for name in ("BGB_SMOKE_TEST", "BGB_LIMIT_FILES", "BGB_FORCE_MANIFEST_REBUILD",
                     *STAND_IN_SWITCHES):
            mp.delenv(name, raising=False)
        mp.setenv("EEG_ASSETS_STAND_IN_VOLUME", str(volume))
        mp.setenv("EEG_ASSETS_STAND_IN_RAW_VOLUME", str(tmp / "raw_volume"))
        mp.setenv("EEG_ASSETS_STAND_IN_SERVER", str(tmp / "server"))
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        result = dg.materialize([training.build_trained_model(settings, [experiment_of(settings)])],
                                instance=instance, resources=build_resources(settings),
                                partition_key=EXPERIMENT, raise_on_error=False)
    entries = instance.all_logs(result.run_id)
    pipes_exceptions = [
        entry.dagster_event.engine_event_data.error.to_string() for entry in entries
        if entry.dagster_event is not None and entry.dagster_event.is_engine_event
        and entry.dagster_event.engine_event_data.error is not None
        and "pipes closed with exception" in entry.user_message]
    return Run(result, [entry.user_message for entry in entries],
               volume if modal else tmp / "results", pipes_exceptions,
               dict(instance.get_run_by_id(result.run_id).tags))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Run:
    return materialize(tmp_path_factory.mktemp("local"))


@pytest.fixture(scope="module")
def modal_run(tmp_path_factory) -> Run:
    return materialize(tmp_path_factory.mktemp("modal"), "modal")


def assert_trained(run: Run, out_dir: Path, on_disk: Path | None = None,
                   epochs: int = 1) -> None:
    """What every successful run must show in Dagster and on disk; ``out_dir`` as the metadata
    names it, ``on_disk`` where this machine sees it (the volume's folder for Modal)."""
    assert run.result.success, run.logs
    assert run.checks == {name: True for name in CHECKS}
    meta = run.metadata
    assert math.isfinite(meta["val_auroc"]) and 0.0 <= meta["val_auroc"] <= 1.0
    history = meta["history"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert meta["epochs"] == epochs
    best = history[meta["best_epoch"] - 1]
    assert round(best["val_auroc"], 4) == meta["val_auroc"]  # rounded for people
    assert meta["windows_per_s"] > 0 and math.isfinite(meta["windows_per_s"])
    assert meta["device"] == "cpu"
    assert meta["val_windows"] == VAL_WINDOWS
    assert meta["pos_weight"] > 1.0 and 0.0 < meta["seizure_ratio"] < 0.5
    on_disk = on_disk or out_dir
    assert Path(meta["checkpoint"]) == out_dir / "best.pt"
    checkpoint = on_disk / "best.pt"
    assert meta["checkpoint_mb"] == round(checkpoint.stat().st_size / 1e6, 2)
    model, saved = load_checkpoint(checkpoint)
    assert saved["epoch"] == meta["best_epoch"]
    assert round(saved["metrics"]["val_auroc"], 4) == meta["val_auroc"]
    assert saved["train_config"]["epochs"] == epochs
    assert sum(p.numel() for p in model.parameters()) > 0
    match = re.fullmatch(
        r"!\[loss and AUROC per epoch\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)",
        meta["curves"])
    assert match and base64.b64decode(match.group(1)).startswith(PNG_MAGIC)
    assert Path(meta["hypotheses_dir"]) == out_dir / "hypotheses"
    assert sorted(p.name for p in (on_disk / "hypotheses").iterdir()) == sorted(
        f"{stem}.csv_bi" for stem in VAL_FILES)
    summary = json.loads((on_disk / "training_summary.json").read_text())
    assert round(summary["best_metrics"]["val_auroc"], 4) == meta["val_auroc"]


def assert_seed_lines(logs: list[str]) -> None:
    for expected in SEED_LOG_LINES:
        assert any(line.startswith(expected) for line in logs), (expected, logs)


# ------------------------------------------------------------------------------------------------
# Local launcher
# ------------------------------------------------------------------------------------------------

def test_local_launcher_materializes_model_with_metadata_and_files(local_run):
    assert_trained(local_run, local_run.results_root / "trained_model" / EXPERIMENT)


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
    # text, not numbers the check page would plot across experiments
    assert all(isinstance(value, str) for value in meta.values()), meta
    assert float(meta["difference"]) <= float(meta["tolerance"])
    assert abs(float(meta["reported_val_auroc"]) - float(meta["reproduced_val_auroc"])) <= 1e-3


def test_local_launcher_logs_the_seed_lines_into_the_run(local_run):
    assert_seed_lines(local_run.logs)
    assert any(line.startswith("epoch 1/1: train loss") for line in local_run.logs)
    assert not any("BGB_SMOKE_TEST" in line or "BGB_FORCE_MANIFEST_REBUILD" in line
                   for line in local_run.logs)


def test_smoke_test_and_forced_manifest_rebuild_flags(tmp_path):
    run = materialize(tmp_path,
                      env={"BGB_SMOKE_TEST": "1", "BGB_FORCE_MANIFEST_REBUILD": "1"})
    assert_trained(run, tmp_path / "results" / "trained_model" / EXPERIMENT)
    assert "[DATASET] Using the first 3 of 4 files (BGB_SMOKE_TEST=1)" in run.logs
    assert any(line.startswith("[MANIFEST] rebuilt manifest.json (BGB_FORCE_MANIFEST_REBUILD=1)")
               for line in run.logs), run.logs
    # The fourth file's partial window is left out: fewer training windows than without the flag.
    assert run.metadata["train_windows"] < 10


def test_training_failure_in_the_process_fails_the_asset(tmp_path):
    """The pinned val index no longer matches its NPZs: the training process refuses it."""

    def remove_a_val_npz(cache_root: Path) -> None:
        (cache_root / "val" / "aaaaaaaw_s001_t000_windows.npz").unlink()

    run = materialize(tmp_path, before_run=remove_a_val_npz)
    assert not run.result.success
    assert "failed with code 1" in run.failure_message()
    (exception,) = run.pipes_exceptions
    assert re.search(r"StaleInputError: index \S+/cache/tusz/val/_dataset_index.json is stale: "
                     r".*aaaaaaaw_s001_t000_windows.npz", exception), exception
    assert not run.result.get_asset_materialization_events()


def test_unmaterialized_upstream_is_a_clear_failure_before_launching(tmp_path):
    run = materialize(tmp_path, with_cache=False)
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

    run = materialize(tmp_path, with_instance=record_then_tamper)
    assert not run.result.success
    message = run.failure_message()
    assert ("balanced_dataset.json changed after balanced_dataset[train] was materialized "
            "(recorded data version 0123456789abcdef") in message, message


# ------------------------------------------------------------------------------------------------
# Modal backend with the stand-in for Modal's servers
# ------------------------------------------------------------------------------------------------

MODAL_OUT = Path("/results/trained_model") / EXPERIMENT


def test_modal_backend_materializes_model_with_metadata_and_files(modal_run):
    assert_trained(modal_run, MODAL_OUT, modal_run.results_root / "trained_model" / EXPERIMENT)
    assert_seed_lines(modal_run.logs)


def test_modal_backend_spawns_one_call_with_the_volume_paths_and_records_it(modal_run):
    (call,) = StandInModal(server=modal_run.results_root.parent / "server").calls()
    assert (call["app"], call["function"]) == ("eeg-assets-train", "train")
    context = decode_param(call["call"]["pipes_env"]["DAGSTER_PIPES_CONTEXT"])
    request = context["data"]["extras"]["request"]
    assert request["train_cache"] == "/results/cache/tusz/train"
    assert request["val_cache"] == "/results/cache/tusz/val"
    assert request["out_dir"] == f"/results/trained_model/{EXPERIMENT}"
    assert request["train"] == SHORT_TRAINING.to_dict()
    assert f"spawned Modal call {call['id']} (eeg-assets-train.train); a retried step " \
        "re-attaches to it" in modal_run.logs
    assert modal_run.tags["eeg_assets/modal_call"] == call["id"]


def test_modal_and_local_backends_report_the_same_training(local_run, modal_run):
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


def test_modal_backend_forwards_the_seed_flags(tmp_path):
    run = materialize(tmp_path, "modal",
                      env={"BGB_SMOKE_TEST": "1", "BGB_FORCE_MANIFEST_REBUILD": "1"})
    assert_trained(run, MODAL_OUT, tmp_path / "volume" / "trained_model" / EXPERIMENT)
    assert "[DATASET] Using the first 3 of 4 files (BGB_SMOKE_TEST=1)" in run.logs
    assert any(line.startswith("[MANIFEST] rebuilt manifest.json (BGB_FORCE_MANIFEST_REBUILD=1)")
               for line in run.logs), run.logs


def test_a_preempted_training_resumes_from_its_last_committed_epoch(tmp_path):
    """Killed right after epoch 1's checkpoint commit, restarted on the same input by Modal: it
    resumes at epoch 2, and the history Dagster records has each epoch once."""
    two_epochs = replace(SHORT_TRAINING, epochs=2)
    run = materialize(tmp_path, "modal", env={"EEG_ASSETS_STAND_IN_PREEMPT": "train"},
                      train=two_epochs)
    assert_trained(run, MODAL_OUT, tmp_path / "volume" / "trained_model" / EXPERIMENT, epochs=2)
    (call,) = StandInModal(server=tmp_path / "server").calls()
    assert json.loads((tmp_path / "server" / "calls" / f"{call['id']}.attempts").read_text()) == 2
    assert any("the Modal container was restarted (attempt 2)" in line for line in run.logs)
    assert any(line.startswith("resuming from") and "after epoch 1/2" in line
               for line in run.logs), run.logs  # epoch 1's committed checkpoint, not scratch


def test_a_lost_connection_leaves_the_call_running_and_the_next_run_reattaches(tmp_path,
                                                                               monkeypatch):
    """The Dagster side loses Modal (a laptop asleep, a restarted daemon): the step fails saying
    the call may still run; materializing again waits for that same call instead of paying for a
    second one."""
    monkeypatch.setattr(modal_launch, "RECONNECT_S", 0.5)
    instance = dg.DagsterInstance.ephemeral()
    lost = materialize(tmp_path, "modal", env={"EEG_ASSETS_STAND_IN_DISCONNECTED": "1"},
                       instance=instance)
    assert not lost.result.success
    assert "materialize again to re-attach to it" in lost.failure_message()
    again = materialize(tmp_path, "modal", instance=instance)
    assert_trained(again, MODAL_OUT, tmp_path / "volume" / "trained_model" / EXPERIMENT)
    (call,) = StandInModal(server=tmp_path / "server").calls()  # one paid job
    assert f"re-attaching to Modal call {call['id']} (eeg-assets-train.train, started by run " \
        f"{lost.result.run_id}): no second job" in again.logs


def test_interrupting_the_step_cancels_the_call(tmp_path):
    run = materialize(tmp_path, "modal", env={"EEG_ASSETS_STAND_IN_INTERRUPT": "1"})
    assert not run.result.success
    (call,) = StandInModal(server=tmp_path / "server").calls()
    calls = tmp_path / "server" / "calls"
    assert (calls / f"{call['id']}.cancelled").exists()
    assert json.loads((calls / f"{call['id']}.result").read_text()) == {"__error__": "cancelled"}
    assert any(line == f"cancelling Modal call {call['id']}" for line in run.logs)


def test_without_a_token_training_fails_saying_what_to_do(tmp_path):
    run = materialize(tmp_path, "modal", env={"EEG_ASSETS_STAND_IN_NO_TOKEN": "1"})
    assert not run.result.success
    assert "no Modal token: run `modal token new`" in run.failure_message()
    assert not run.result.get_asset_materialization_events()


def test_remote_training_failure_fails_the_asset_with_the_containers_reason(tmp_path):
    def record_versions(cache_root: Path, instance: dg.DagsterInstance) -> None:
        record_upstream(cache_root, instance)  # recorded, but nothing on the volume

    run = materialize(tmp_path, "modal", on_volume=False, with_instance=record_versions)
    assert not run.result.success
    message = run.failure_message()
    assert ("eeg-assets-train.train raised on Modal: StaleInputError: balanced set "
            "/results/cache/tusz/train/balanced_dataset.json is missing") in message, message
    assert "Traceback" not in message.split("Failure:")[-1]  # the traceback is in the debug log
    assert not run.result.get_asset_materialization_events()


def test_unknown_backend_is_a_clear_failure(tmp_path):
    with pytest.raises(dg.Failure, match="unknown backend 'slurm'"):
        materialize(tmp_path, "slurm")
