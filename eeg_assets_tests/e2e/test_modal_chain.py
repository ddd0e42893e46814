"""The cache chain with ``EEG_ASSETS_BACKEND=modal``, end to end, against the stand-in for Modal.

Modal's servers cannot be reached from here, so the client is the stand-in
(``stand_in_modal.py``, the only mock): it runs the deployed apps' own functions, imported with the
real ``modal`` package, each "container" a separate process with only a container's environment
and its own view of the volumes (folders here), which it sees change only through
``commit``/``reload``; ``Function.map`` starts one such process per input. It also plays what the
real service does and is inconvenient: commits in the background, ``commit()`` without reload,
mtimes that do not survive, preemption, a mangled log stream, calls that outlive the caller. What
it cannot show: that the images build and that Modal schedules the containers.

The chain runs with its checks, which run in a container on the volume too: they verify the
volume's files, since with this backend there is no local cache to verify.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from eeg_assets_tests.support.dagster_fixtures import (  # noqa: F401
    CHAIN,
    built_eval,
    chain_defs,
    check_results,
    failure_message,
    make_settings,
    materializations,
    sample_raw_root,
)
from eeg_assets_tests.support.stand_in_modal import FolderDict, StandInModal
from eeg_assets_tests.support.training_cache import EXPERIMENT, experiment_of

from eeg_assets.lib.cache.ledger import BUILT, Ledger
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets.orchestration import assets, build_resources, training
from eeg_assets.orchestration.checks_cache import VERIFY_ALL, VERIFY_TAG
from eeg_assets.synthetic.fake_cache import damage_window_in_place
from eeg_assets.settings import ModalSettings

pytestmark = pytest.mark.slow

SHORT_TRAINING = TrainConfig(epochs=1, max_train_windows_per_epoch=16, cpu_threads=1,
                             device="cpu")
STAND_IN = "eeg_assets_tests.support.stand_in_modal:StandInModal"
STAND_IN_SWITCHES = ("EEG_ASSETS_STAND_IN_PREEMPT", "EEG_ASSETS_STAND_IN_DEPLOYED_VERSION",
                     "EEG_ASSETS_STAND_IN_NO_TOKEN")


@pytest.fixture
def volumes(tmp_path, monkeypatch) -> dict[str, Path]:
    """The folders that play the raw and results volumes, handed to the stand-in."""
    folders = {"raw": tmp_path / "volumes" / "raw", "results": tmp_path / "volumes" / "results"}
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_RAW_VOLUME", str(folders["raw"]))
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_VOLUME", str(folders["results"]))
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_SERVER", str(tmp_path / "volumes" / "server"))
    for name in STAND_IN_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    return folders


def modal_settings(raw_root: Path, tmp_path: Path, **modal):
    return make_settings(raw_root, tmp_path / "local_cache", backend="modal",
                         modal_client=STAND_IN, modal=ModalSettings(**modal),
                         train=SHORT_TRAINING)


def run_chain(settings, instance, partition="eval", keys=CHAIN, checks=True,
              tags=None) -> dg.ExecuteInProcessResult:
    """The chain's assets for one partition, with their checks unless ``checks`` is False."""
    definitions = (chain_defs(settings) if checks
                   else [assets.raw_edf_recordings, *assets.build_cache_assets(settings)])
    return dg.materialize(definitions, resources=build_resources(settings),
                          partition_key=partition, instance=instance,
                          selection=dg.AssetSelection.assets(*keys), raise_on_error=False,
                          tags=tags)


def values(materialization: dg.AssetMaterialization) -> dict:
    return {k: v.value for k, v in materialization.metadata.items()}


def npz_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npz"))}


def index_without_mtimes(folder: Path) -> dict:
    """The index with each NPZ fingerprint's size only: the mtime is when the NPZ was written."""
    index = json.loads((folder / "_dataset_index.json").read_text())
    index["fingerprints"] = [f.split(":")[0] for f in index["fingerprints"]]
    return index


def test_the_modal_chain_writes_on_the_volume_what_the_local_chain_writes(
        built_eval, sample_raw_root, volumes, tmp_path, monkeypatch):  # noqa: F811
    """Under everything the real service does to a log stream (colour codes, lines cut by
    polls and interleaved, the tail dropped), to commits (in the background, without reload) and
    to mtimes (none survives): the volume gets the local bytes and Dagster the local facts."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    settings = modal_settings(sample_raw_root, tmp_path, build_batch=3)
    with dg.instance_for_test() as instance:
        result = run_chain(settings, instance)
        assert result.success, failure_message(result)
        remote, local = materializations(result), materializations(built_eval.result)
        remote_checks, local_checks = check_results(result), check_results(built_eval.result)
        again = materializations(run_chain(settings, instance))

    cache = volumes["results"] / "cache" / "tusz" / "eval"
    assert npz_bytes(cache) == npz_bytes(built_eval.cache_dir) != {}
    for name in ("manifest.json", "balanced_dataset.json"):
        assert (cache / name).read_bytes() == (built_eval.cache_dir / name).read_bytes(), name
    assert index_without_mtimes(cache) == index_without_mtimes(built_eval.cache_dir)
    assert not (tmp_path / "local_cache").exists()  # nothing was built here

    for key in CHAIN:  # the same metadata; the paths are the volume's
        assert remote[key].metadata.keys() == local[key].metadata.keys(), key
    timing = {"build_seconds", "cache_dir", "raw_dir", "path", "categories", "example_window",
              "composition"}
    for key in CHAIN:
        mine, theirs = values(remote[key]), values(local[key])
        assert {k: v for k, v in mine.items() if k not in timing} == \
            {k: v for k, v in theirs.items() if k not in timing}, key
    meta = values(remote["npz_windows"])
    assert (meta["cache_dir"], meta["raw_dir"]) == ("/results/cache/tusz/eval", "/data/edf/eval")
    assert values(remote["manifest"])["path"] == "/results/cache/tusz/eval/manifest.json"
    # Data versions are content versions of the volume's files: equal files, equal versions.
    for key in ("manifest", "balanced_dataset"):
        assert remote[key].tags["dagster/data_version"] == local[key].tags["dagster/data_version"]
    # A second run builds nothing, although every mount shows the raw files with a new mtime:
    # they are fingerprinted by the upload record.
    assert values(again["npz_windows"])["files_skipped"] == 4
    logs = [p.read_text() for p in (tmp_path / "volumes" / "server" / "calls").glob("*.log")]
    assert logs and all(log.endswith("Timed out waiting for final app logs.\n") for log in logs)
    assert all(again[k].tags["dagster/data_version"] == remote[k].tags["dagster/data_version"]
               for k in CHAIN)
    # patient_disjointness reads every split's raw folder: all were uploaded for it
    assert {p.name for p in (volumes["raw"] / "edf").iterdir()} == {"train", "dev", "eval"}

    # Every check ran on the volume and found what it finds locally. Not compared: where the
    # files are, the names npz_schema sampled, and where a listing came from (the build's
    # recorded listing names the container's raw mount, which the stand-in gives each container
    # its own path for, so a check container walks the folder again).
    assert set(remote_checks) == set(local_checks) == {
        "npz_schema", "npz_count_matches_recordings", "index_matches_npz",
        "patient_disjointness", "manifest_current", "seizure_windows_present",
        "balanced_matches_recipe"}
    where = {"path", "sampled", "recordings_from", "raw_recordings_train", "raw_recordings_val",
             "raw_recordings_eval"}
    for name, check in remote_checks.items():
        theirs = local_checks[name]
        assert (check.passed, check.severity) == (theirs.passed, theirs.severity), name
        assert check.metadata.keys() == theirs.metadata.keys(), name
        assert {k: v.value for k, v in check.metadata.items() if k not in where} == \
            {k: v.value for k, v in theirs.metadata.items() if k not in where}, name
    assert all(check.passed for check in remote_checks.values())
    assert remote_checks["npz_schema"].metadata["files_verified"].value == "4"
    assert remote_checks["manifest_current"].metadata["path"].value == \
        "/results/cache/tusz/eval/manifest.json"


def test_the_continuous_layout_on_modal_writes_what_a_local_build_writes(
        sample_raw_root, volumes, tmp_path):  # noqa: F811
    """EEG_ASSETS_CACHE_LAYOUT=continuous on the Modal backend: the coordinator and the build
    containers write the continuous layout under /results/cache/tusz_mmap, and every check of
    the chain passes on it."""
    from eeg_assets.lib.cache.build import build_split
    from eeg_assets.lib.config import CacheConfig

    settings = replace(modal_settings(sample_raw_root, tmp_path, build_batch=3),
                       cache_layout="continuous")
    with dg.instance_for_test() as instance:
        result = run_chain(settings, instance)
        assert result.success, failure_message(result)
        checks = check_results(result)
        meta = values(materializations(result)["npz_windows"])
    assert meta["layout"] == "continuous"
    assert meta["cache_dir"] == "/results/cache/tusz_mmap/eval"
    assert checks and all(check.passed for check in checks.values()), \
        {name: check.metadata for name, check in checks.items() if not check.passed}
    local = tmp_path / "local_continuous"
    build_split(sample_raw_root / "eval", local, split="eval",
                config=CacheConfig(layout="continuous"), workers=1, progress=None,
                log=lambda _line: None)
    on_volume = volumes["results"] / "cache" / "tusz_mmap" / "eval"
    written = {p.name: p.read_bytes() for p in sorted(on_volume.glob("*.npy"))}
    assert written == {p.name: p.read_bytes() for p in sorted(local.glob("*.npy"))}
    assert len(written) == 8 and not list(on_volume.glob("*.npz"))


def test_npz_schema_on_the_modal_backend_opens_the_volumes_files(
        sample_raw_root, volumes, tmp_path):  # noqa: F811
    """Damage that keeps size and mtime, done on the volume behind Dagster: only opening the
    volume's file finds it, and the blocking check stops the chain."""
    settings = modal_settings(sample_raw_root, tmp_path)
    cache = volumes["results"] / "cache" / "tusz" / "eval"
    with dg.instance_for_test() as instance:
        built = run_chain(settings, instance)
        assert built.success, failure_message(built)
        (damaged, *_) = sorted(cache.glob("*.npz"))
        damage_window_in_place(damaged)
        sampled = run_chain(settings, instance, keys=["npz_windows"])
        full = run_chain(settings, instance, tags={VERIFY_TAG: VERIFY_ALL})
    # without the tag, unchanged files that passed are only sampled: ceil(0.2% of 4) = 1 file
    sample = check_results(sampled)["npz_schema"]
    assert sample.metadata["files_verified"].value == "1"
    assert sample.passed == (sample.metadata["sampled"].value != f"- {damaged.name}")
    schema = check_results(full)["npz_schema"]
    assert not schema.passed
    assert (schema.metadata["verify_all"].value, schema.metadata["files_verified"].value) == \
        (True, "4")
    assert schema.metadata["first_problems"].value == f"- {damaged.name}: window 0 has NaN/Inf"
    assert not full.success and set(materializations(full)) == {"npz_windows"}  # blocking


def test_a_coordinator_preempted_midway_resumes_on_the_same_input(built_eval, sample_raw_root,
                                                                  volumes, tmp_path,
                                                                  monkeypatch):  # noqa: F811
    """Modal restarts a preempted input: the coordinator is killed right after its first commit
    and runs again; the one Dagster run still succeeds and gives the local bytes."""
    settings = modal_settings(sample_raw_root, tmp_path, build_batch=1, build_flush_s=0)
    cache = volumes["results"] / "cache" / "tusz" / "eval"
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_PREEMPT", "coordinate")
    with dg.instance_for_test() as instance:
        result = run_chain(settings, instance, keys=["npz_windows"], checks=False)
    assert result.success, failure_message(result)
    server = StandInModal()
    (call,) = server.calls()
    attempts = json.loads((server.server / "calls" / f"{call['id']}.attempts").read_text())
    assert attempts == 2  # preempted once, then finished
    assert npz_bytes(cache) == npz_bytes(built_eval.cache_dir)
    assert len([e for e in Ledger(cache).entries().values() if e.status == BUILT]) == 4
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # no temporaries


def test_without_a_token_the_chain_fails_saying_so_and_builds_nothing(sample_raw_root, volumes,
                                                                      tmp_path,
                                                                      monkeypatch):  # noqa: F811
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_NO_TOKEN", "1")
    settings = modal_settings(sample_raw_root, tmp_path)
    with dg.instance_for_test() as instance:
        result = run_chain(settings, instance, keys=["npz_windows"])
    assert not result.success
    message = failure_message(result)
    assert "the raw recordings could not be uploaded: no Modal token: run `modal token new`" \
        in message, message
    assert "Traceback" not in message.split("dagster._core.definitions.events.Failure:")[-1]
    assert not (tmp_path / "local_cache").exists() and not volumes["results"].exists()


def test_two_runs_of_one_split_never_interleave(sample_raw_root, volumes, tmp_path):  # noqa: F811
    settings = modal_settings(sample_raw_root, tmp_path, lease_wait_s=0.5)
    leases = FolderDict(tmp_path / "volumes" / "server" / "dicts" / "leases")
    key = "eeg-assets-results/cache/tusz/eval"
    leases.put(key, {"holder": "the-other-run", "since": time.time(),
                     "expires": time.time() + 3600})
    with dg.instance_for_test() as instance:
        held = run_chain(settings, instance, keys=["npz_windows"], checks=False)
        assert not held.success
        message = failure_message(held)
        assert f"npz_windows[eval] on the modal backend: {key} is in use by Dagster run " \
            "the-other-run" in message, message
        assert not (volumes["results"] / "cache" / "tusz" / "eval").exists()
        leases.pop(key)  # the other run finished
        free = run_chain(settings, instance, keys=["npz_windows"], checks=False)
    assert free.success, failure_message(free)
    assert leases.get(key) is None  # released


def test_a_stale_deployment_is_refused_before_any_work(sample_raw_root, volumes, tmp_path,
                                                       monkeypatch):  # noqa: F811
    monkeypatch.setenv("EEG_ASSETS_STAND_IN_DEPLOYED_VERSION", "0123456789abcdef")
    settings = modal_settings(sample_raw_root, tmp_path)
    with dg.instance_for_test() as instance:
        result = run_chain(settings, instance, keys=["npz_windows"])
    message = failure_message(result)
    assert "the deployed Modal app eeg-assets-cache runs code version 0123456789abcdef" in message
    assert "run `modal deploy eeg_assets/remote/modal_cache.py`" in message
    assert not (volumes["results"] / "cache" / "tusz" / "eval").exists()  # nothing built


def test_a_step_that_cannot_run_on_the_volume_fails_with_the_libraries_reason(
        sample_raw_root, volumes, tmp_path):  # noqa: F811
    settings = modal_settings(sample_raw_root, tmp_path)
    with dg.instance_for_test() as instance:
        result = run_chain(settings, instance, keys=["manifest"])  # nothing built yet
    message = failure_message(result)
    assert "manifest[eval] on the modal backend: cache folder" in message, message
    assert "cache/tusz/eval does not exist. Build the cache first" in message


def test_training_on_modal_reads_exactly_the_cache_the_chain_wrote(
        sample_raw_root, volumes, tmp_path):  # noqa: F811
    """train is built from the sample's eval folder (4 recordings) and val from dev: both
    small, and their patients are disjoint, as training requires."""
    settings = replace(modal_settings(sample_raw_root, tmp_path),
                       split_folders={"train": "eval", "val": "dev", "eval": "eval"})
    resources = build_resources(settings)
    assert resources["backend"].name == "modal"  # training follows EEG_ASSETS_BACKEND
    trained_model = training.build_trained_model(settings, [experiment_of(settings)])
    cache = volumes["results"] / "cache" / "tusz"
    with dg.instance_for_test() as instance:
        recorded = {}
        for split, keys in (("train", CHAIN), ("val", CHAIN[:2])):
            # without checks: train and eval share a raw folder here, which
            # patient_disjointness rightly refuses
            chain = run_chain(settings, instance, partition=split, keys=keys, checks=False)
            assert chain.success, failure_message(chain)
            recorded.update({(key, split): m.tags["dagster/data_version"]
                             for key, m in materializations(chain).items()})

        def train():
            return dg.materialize([trained_model], instance=instance, raise_on_error=False,
                                  resources=resources, partition_key=EXPERIMENT)

        trained = train()
        assert trained.success, failure_message(trained)
        meta = values(trained.get_asset_materialization_events()[0].materialization)
        assert meta["consumed_val_index_version"] == recorded["dataset_index", "val"]
        assert meta["consumed_balanced_set_version"] == recorded["balanced_dataset", "train"]
        assert (cache.parent.parent / "trained_model" / EXPERIMENT / "best.pt").is_file()

        balanced = cache / "train" / "balanced_dataset.json"
        data = json.loads(balanced.read_text())
        data["no_seizure"] = data["no_seizure"][:-1]  # tampered on the volume, behind Dagster
        balanced.write_text(json.dumps(data))
        refused = train()
    assert not refused.success
    # The container's refusal, in the step's failure (returned by the call, not read from logs).
    assert "balanced set /results/cache/tusz/train/balanced_dataset.json is stale: it changed " \
        "after it was pinned" in failure_message(refused)
