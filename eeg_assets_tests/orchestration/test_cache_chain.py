"""The Dagster layer end to end: the cache chain on a real instance over the sample corpus.

One eval split (4 recordings) is built once per session (``built_eval``); tests that change
files work on copies. The ``dagster`` CLI tests run the executables as a user does, with the
``EEG_ASSETS_*`` variables and a temporary ``DAGSTER_HOME``, and then read that instance.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.data_version import StaleCauseCategory, StaleStatus

from eeg_assets_tests.support.dagster_fixtures import (  # noqa: F401 - fixtures
    CHAIN, CHECKS, EVAL_STEMS, built_eval, code_version, copy_split, dagster_env, make_dagster_home, make_settings,
    materialize, materializations, check_results, open_instance, run_dagster, sample_raw_root,
    stale_status,
)
from eeg_assets.lib.dataset.balanced import pos_weight
from eeg_assets import defs
from eeg_assets.orchestration import build_defs
from eeg_assets.settings import Settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_CHECKS = set().union(*CHECKS.values())


def _npz_digests(cache_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(cache_dir.glob("*_windows.npz"))}


def _data_version(m: dg.AssetMaterialization) -> str:
    return m.tags["dagster/data_version"]


def _code_version(name: str, settings: Settings = Settings()) -> str | None:
    return code_version(settings, name)


def _png_in_markdown(value: dg.MetadataValue) -> bytes:
    assert isinstance(value, dg.MarkdownMetadataValue), value
    prefix = "(data:image/png;base64,"
    assert value.md_str.startswith("![") and prefix in value.md_str, value.md_str[:80]
    png = base64.b64decode(value.md_str.split(prefix, 1)[1].rstrip(")"))
    assert png.startswith(PNG_MAGIC)
    return png


def _manifest_refs(cache_dir: Path) -> dict[str, list[dict]]:
    return json.loads((cache_dir / "manifest.json").read_text())


# ------------------------------------------------------------------------------------------------
# Definitions (no run)
# ------------------------------------------------------------------------------------------------

def test_definitions_wire_the_chain_partitions_versions_and_blocking_checks():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"raw_edf_recordings", *CHAIN, "experiments", "trained_model",
                    "model_evaluation", "model_comparison"}
    split_keys = ["train", "val", "eval"]
    for name in ("raw_edf_recordings", *CHAIN):
        assert graph.get(dg.AssetKey(name)).partitions_def.get_partition_keys() == split_keys
    experiments = ["sample", "seizure_transformer"]  # the repository's experiments/ folder
    for name in ("experiments", "trained_model"):
        assert graph.get(dg.AssetKey(name)).partitions_def.get_partition_keys() == experiments
    assert graph.get(dg.AssetKey("model_evaluation")).partitions_def.get_partition_keys() == [
        f"{experiment}|{split}" for experiment in experiments for split in ("val", "eval")]
    assert graph.get(dg.AssetKey("model_comparison")).partitions_def is None
    # linked partition to partition
    parents = {name: {p.to_user_string() for p in graph.get(dg.AssetKey(name)).parent_keys}
               for name in (*CHAIN, "trained_model", "model_evaluation", "model_comparison")}
    assert parents == {"npz_windows": {"raw_edf_recordings"}, "dataset_index": {"npz_windows"},
                       "manifest": {"dataset_index"}, "balanced_dataset": {"manifest"},
                       "trained_model": {"experiments", "balanced_dataset", "dataset_index"},
                       "model_evaluation": {"trained_model", "dataset_index"},
                       "model_comparison": {"model_evaluation", "trained_model"}}
    for name in (*CHAIN, "trained_model", "model_evaluation"):
        assert _code_version(name), f"{name} has no code_version"
    raw = graph.get(dg.AssetKey("raw_edf_recordings"))
    # materialized by each split run: the UI counts only materializations as present partitions
    # (an observable source asset read "0% filled" and "Missing" however often it was observed)
    assert raw.is_materializable and raw.code_version
    # the checks the design lists, blocking where they guard training
    assert {key.name for key in graph.asset_check_keys} == ALL_CHECKS | {
        "checkpoint_reproduces_metrics", "metrics_finite", "one_hypothesis_per_reference",
        "durations_match_references", "files_reproduce_scores", "tsv_files_reproduce_scores",
        "scores_finite"}
    specs = [spec for checks_def in defs.asset_checks for spec in checks_def.check_specs]
    assert {spec.name for spec in specs} == ALL_CHECKS
    assert {spec.name: spec.asset_key.to_user_string() for spec in specs} == {
        name: asset for asset, names in CHECKS.items() for name in names}
    blocking = {spec.name for spec in specs if spec.blocking}
    assert {"patient_disjointness", "manifest_current", "seizure_windows_present",
            "npz_schema", "index_matches_npz", "balanced_matches_recipe"} <= blocking
    assert "npz_count_matches_recordings" not in blocking
    job = defs.resolve_job_def("split_cache_job")
    # a split's run lists the split first (raw_edf_recordings), then builds it
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "raw_edf_recordings", *CHAIN}
    assert job.partitions_def.get_partition_keys() == split_keys


# ------------------------------------------------------------------------------------------------
# The chain on a real instance
# ------------------------------------------------------------------------------------------------

def test_chain_writes_the_files_metadata_and_passing_checks(built_eval):
    result, cache_dir, instance = built_eval.result, built_eval.cache_dir, built_eval.instance
    assert result.success
    mats = materializations(result)
    assert set(mats) == set(CHAIN)
    assert {m.partition for m in mats.values()} == {"eval"}
    for name, m in mats.items():
        assert m.tags["dagster/code_version"] == _code_version(name)

    # files, named as docs/cache-format.md specifies
    assert sorted(_npz_digests(cache_dir)) == [f"{s}_windows.npz" for s in EVAL_STEMS]
    for name in ("_dataset_index.json", "manifest.json", "balanced_dataset.json"):
        assert (cache_dir / name).is_file(), name
    index = json.loads((cache_dir / "_dataset_index.json").read_text())
    manifest = _manifest_refs(cache_dir)
    balanced = json.loads((cache_dir / "balanced_dataset.json").read_text())
    total_windows = sum(index["window_counts"])
    assert total_windows > 0

    # npz_windows: per-file results in the metadata
    npz = mats["npz_windows"].metadata
    assert npz["recordings"].value == 4 and npz["files_built"].value == 4
    assert npz["files_skipped"].value == 0 and npz["npz_files"].value == 4
    assert npz["windows"].value == npz["windows_built_now"].value == total_windows
    assert npz["config_version"].value == built_eval.settings.cache_config().version()
    # the sample eval split has no bad recording and none built with a warning: no empty tables
    assert "not_built" not in npz and "warnings" not in npz
    assert npz["files_quarantined"].value == npz["files_failed_will_retry"].value == 0

    # dataset_index
    meta = mats["dataset_index"].metadata
    assert meta["files"].value == 4 and meta["windows"].value == total_windows
    assert meta["patients"].value == 3

    # manifest: counts agree with the file; PNG previews inline
    meta = mats["manifest"].metadata
    counts = {k: len(v) for k, v in manifest.items()}
    assert set(counts) == {"partial_seizure", "full_seizure", "no_seizure"}
    for category, n in counts.items():
        assert meta[f"windows_{category}"].value == n
    assert meta["windows"].value == sum(counts.values()) == total_windows
    assert counts["partial_seizure"] + counts["full_seizure"] > 0
    _png_in_markdown(meta["categories"])
    _png_in_markdown(meta["example_window"])

    # balanced_dataset: the file holds the exact ratio and pos_weight; the metadata shows them
    # to 4 significant digits
    meta = mats["balanced_dataset"].metadata
    ratio = balanced["seizure_ratio"]
    seizure = meta["partial_seizure"].value + meta["full_seizure"].value
    assert ratio == seizure / meta["windows"].value
    assert meta["seizure_ratio"].value == float(f"{ratio:.4g}")
    assert meta["partial_seizure"].value == counts["partial_seizure"]  # recipe keeps all partials
    assert math.isclose(balanced["pos_weight"], math.sqrt((1 - ratio) / ratio), rel_tol=1e-12)
    assert balanced["pos_weight"] == pos_weight(ratio)
    assert meta["pos_weight"].value == float(f"{pos_weight(ratio):.4g}")
    _png_in_markdown(meta["composition"])

    # every check ran for the partition and passed, and the instance recorded it
    evaluations = check_results(result)
    assert set(evaluations) == ALL_CHECKS
    failed = {name: e.metadata for name, e in evaluations.items() if not e.passed}
    assert not failed
    assert {e.partition for e in evaluations.values()} == {"eval"}
    # a check's figures are text: the check page plots numbers as one series over every split
    numeric = {(name, key) for name, e in evaluations.items() for key, value in e.metadata.items()
               if isinstance(value, (dg.IntMetadataValue, dg.FloatMetadataValue))}
    assert not numeric, numeric
    assert evaluations["npz_schema"].metadata["files"].value == str(len(EVAL_STEMS))
    # the checks read the listing npz_windows built from in this run instead of walking again
    counted = evaluations["npz_count_matches_recordings"].metadata
    assert counted["recordings_from"].value.startswith("listing recorded by the build")
    disjoint = evaluations["patient_disjointness"].metadata
    assert disjoint["raw_recordings_eval"].value.startswith("listing recorded by the build")
    assert disjoint["raw_recordings_train"].value.startswith("walked now")  # never built
    for asset, names in CHECKS.items():
        for name in names:
            record = instance.get_latest_asset_check_evaluation_record(
                dg.AssetCheckKey(dg.AssetKey(asset), name))
            assert record is not None and record.status.value == "SUCCEEDED", (asset, name)
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS


def test_patient_leakage_fails_the_blocking_check_and_stops_downstream(sample_raw_root, tmp_path):
    raw = tmp_path / "raw"
    copy_split(sample_raw_root, raw, "eval")
    # a patient of eval also in TUSZ dev (the val split)
    shutil.copytree(sample_raw_root / "eval" / "aaaaaqhs", raw / "dev" / "aaaaaqhs")
    config = make_settings(raw, tmp_path / "cache")
    with dg.instance_for_test(set_dagster_home=False) as instance:
        result = materialize(config, instance)
        evaluations = check_results(result)
        leak = evaluations["patient_disjointness"]
        assert not leak.passed
        reason = leak.metadata["reason"].value
        assert "aaaaaqhs" in reason and "val" in reason, reason
        assert "aaaaarjw" not in reason and "aaaaasxe" not in reason
        assert leak.metadata["patients_val"].value == "1"
        # dev was never built: its raw folder was walked
        assert leak.metadata["raw_recordings_val"].value.startswith("walked now")
        # downstream of the failed blocking check did not run in this run
        assert not result.success
        assert set(materializations(result)) == {"npz_windows", "dataset_index"}
        assert not {"manifest_current", "seizure_windows_present",
                    "balanced_matches_recipe"} & set(evaluations)
        for name in ("manifest", "balanced_dataset"):
            assert instance.get_latest_materialization_event(dg.AssetKey(name)) is None
    cache_dir = tmp_path / "cache" / "eval"
    assert (cache_dir / "_dataset_index.json").is_file()
    assert not (cache_dir / "manifest.json").exists()
    assert not (cache_dir / "balanced_dataset.json").exists()


def test_npz_windows_is_incremental_and_follows_removals(sample_raw_root, tmp_path):
    raw = tmp_path / "raw"
    eval_raw = copy_split(sample_raw_root, raw, "eval")
    config = make_settings(raw, tmp_path / "cache")
    definitions = build_defs(config)
    cache_dir = tmp_path / "cache" / "eval"
    with dg.instance_for_test(set_dagster_home=False) as instance:
        first = materialize(config, instance)
        assert first.success
        version = _data_version(materializations(first)["npz_windows"])
        digests = _npz_digests(cache_dir)

        # nothing changed: nothing built, same data version, so downstream stays fresh
        again = materializations(materialize(config, instance, ["npz_windows"]))["npz_windows"]
        assert again.metadata["files_built"].value == 0
        assert again.metadata["files_skipped"].value == 4
        assert again.metadata["windows_built_now"].value == 0
        assert _data_version(again) == version
        assert _npz_digests(cache_dir) == digests
        for name in CHAIN:
            assert stale_status(instance, name, definitions)[0] == StaleStatus.FRESH, name

        # one recording removed, one unreadable recording dropped
        shutil.rmtree(eval_raw / "aaaaasxe")
        bad = eval_raw / "aaaaazzz" / "s001_2020" / "01_tcp_ar" / "aaaaazzz_s001_t000.edf"
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"0       not an EDF file at all")
        annotation = next((eval_raw / "aaaaaqhs").rglob("aaaaaqhs_s001_t000.csv_bi"))
        shutil.copy(annotation, bad.with_suffix(".csv_bi"))
        third = materialize(config, instance, ["npz_windows"])
        assert third.success
        meta = materializations(third)["npz_windows"].metadata
        assert meta["files_removed"].value == 1 and meta["files_built"].value == 0
        assert meta["files_quarantined"].value == 1 and meta["npz_files"].value == 3
        rows = meta["not_built"].records
        assert len(rows) == 1
        row = rows[0].data
        assert row["recording"] == "aaaaazzz/s001_2020/01_tcp_ar/aaaaazzz_s001_t000.edf"
        assert row["status"] == "quarantined" and row["reason"]
        assert not (cache_dir / "aaaaasxe_s001_t000_windows.npz").exists()
        assert _npz_digests(cache_dir) == {k: v for k, v in digests.items()
                                           if not k.startswith("aaaaasxe")}
        assert _data_version(materializations(third)["npz_windows"]) != version
        checks = check_results(third)
        assert checks["npz_schema"].passed
        assert checks["npz_count_matches_recordings"].passed  # quarantined = explained
        status, causes = stale_status(instance, "dataset_index", definitions)
        assert status == StaleStatus.STALE
        assert any(c.dependency and c.dependency.asset_key == dg.AssetKey("npz_windows")
                   for c in causes), causes

        # the rest of the chain follows: the removed recording leaves index and manifest
        rest = materialize(config, instance, CHAIN[1:])
        assert rest.success, check_results(rest)
        index = json.loads((cache_dir / "_dataset_index.json").read_text())
        assert index["files"] == [f"{s}_windows.npz" for s in EVAL_STEMS
                                  if s != "aaaaasxe_s001_t000"]
        files = {ref["cache_file"] for refs in _manifest_refs(cache_dir).values() for ref in refs}
        assert files == set(index["files"])
        for name in CHAIN:
            assert stale_status(instance, name, definitions)[0] == StaleStatus.FRESH, name


# ------------------------------------------------------------------------------------------------
# Code versions follow the configuration (a second load in a subprocess, as Dagster loads it)
# ------------------------------------------------------------------------------------------------

_PROBE = r"""
import json
import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
from dagster._core.definitions.data_version import CachingStaleStatusResolver
from eeg_assets import defs

def status(instance, name):
    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(),
                                          AssetGraphView.for_test(defs, instance))
    key = dg.AssetKey(name)
    return [resolver.get_status(key, "eval").value,
            [[c.category.value, c.reason] for c in resolver.get_stale_causes(key, "eval")]]

out = {"code_versions": {name: defs.get_assets_def(name).code_versions_by_key[dg.AssetKey(name)]
                         for name in ("npz_windows", "dataset_index", "manifest",
                                      "balanced_dataset", "trained_model")}}
with dg.DagsterInstance.get() as instance:
    out["before"] = status(instance, "npz_windows")
    result = defs.resolve_job_def("split_cache_job").execute_in_process(
        instance=instance, partition_key="eval", asset_selection=[dg.AssetKey("npz_windows")])
    mat = result.get_asset_materialization_events()[0].materialization
    out["files_built"] = mat.metadata["files_built"].value
    out["config_version"] = mat.metadata["config_version"].value
    out["tags"] = dict(mat.tags)
    out["after"] = status(instance, "npz_windows")
print("PROBE " + json.dumps(out))
"""


@pytest.mark.slow
def test_code_version_follows_the_config_and_marks_the_cache_stale(sample_raw_root, tmp_path):
    home = make_dagster_home(tmp_path / "dagster_home")
    cache_root, results = tmp_path / "cache", tmp_path / "results"
    config = make_settings(sample_raw_root, cache_root)
    with open_instance(home) as instance:
        first = materializations(materialize(config, instance, ["npz_windows"]))["npz_windows"]
    assert first.tags["dagster/code_version"] == _code_version("npz_windows")
    digests = _npz_digests(cache_root / "eval")

    other_notch = "50"
    env = dagster_env(home, sample_raw_root, cache_root, results,
                      EEG_ASSETS_NOTCH_HZ=other_notch, EEG_ASSETS_WORKERS="1")
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("PROBE ")][-1]
    probe = json.loads(line[len("PROBE "):])

    # every asset shaped by the preprocessing gets a new code version
    for name, version in probe["code_versions"].items():
        assert version != _code_version(name), name
    # ... so what was built under the old one is stale, for a code reason
    status, causes = probe["before"]
    assert status == StaleStatus.STALE.value
    assert [StaleCauseCategory.CODE.value, "has a new code version"] in causes, causes
    # rebuilding with the new config rebuilds every file and gives a new data version
    assert probe["files_built"] == 4
    assert probe["tags"]["dagster/code_version"] == probe["code_versions"]["npz_windows"]
    assert probe["tags"]["dagster/data_version"] != _data_version(first)
    assert probe["config_version"] != first.metadata["config_version"].value
    assert probe["after"][0] == StaleStatus.FRESH.value
    changed = _npz_digests(cache_root / "eval")
    assert changed.keys() == digests.keys()
    assert all(changed[name] != digests[name] for name in digests)  # another notch filter


# ------------------------------------------------------------------------------------------------
# The user's path: the dagster CLI
# ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_dagster_cli_materializes_up_to_manifest_and_records_its_checks(sample_raw_root, tmp_path):
    home = make_dagster_home(tmp_path / "dagster_home")
    cache_root = tmp_path / "cache"
    env = dagster_env(home, sample_raw_root, cache_root, tmp_path / "results")
    done = run_dagster("asset", "materialize", "-m", "eeg_assets", "--select", "*manifest",
                       "--partition", "eval", env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "PATIENT DISJOINTNESS VERIFIED" in output
    cache_dir = cache_root / "eval"
    assert sorted(_npz_digests(cache_dir)) == [f"{s}_windows.npz" for s in EVAL_STEMS]
    assert (cache_dir / "manifest.json").is_file()
    assert not (cache_dir / "balanced_dataset.json").exists()  # not selected

    with open_instance(home) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/partition"] == "eval"
        evaluations = {}
        for entry in instance.all_logs(run.run_id,
                                       of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.get_dagster_event().event_specific_data
            evaluations[evaluation.asset_check_key.name] = evaluation
        assert set(evaluations) == (CHECKS["npz_windows"] | CHECKS["dataset_index"]
                                    | CHECKS["manifest"])
        assert all(e.passed and e.partition == "eval" for e in evaluations.values()), evaluations
        for name in ("npz_windows", "dataset_index", "manifest"):
            event = instance.get_latest_materialization_event(dg.AssetKey(name))
            assert event is not None and event.asset_materialization.partition == "eval"
        assert instance.get_latest_materialization_event(dg.AssetKey("balanced_dataset")) is None


@pytest.mark.slow
def test_dagster_definitions_validate(tmp_path):
    home = make_dagster_home(tmp_path / "dagster_home")
    env = dagster_env(home, tmp_path / "raw", tmp_path / "cache", tmp_path / "results")
    done = run_dagster("definitions", "validate", "-m", "eeg_assets", env=env, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "Validation successful" in done.stdout + done.stderr
    # loading the definitions writes nothing (no sample corpus, no cache folders)
    assert not (tmp_path / "raw").exists() and not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------------
# The CLI and the assets write the same files
# ------------------------------------------------------------------------------------------------

def _index_without_mtimes(cache_dir: Path) -> dict:
    """The index with each NPZ fingerprint ``size:mtime_ns`` reduced to its size (two builds
    write the same bytes at different times)."""
    index = json.loads((cache_dir / "_dataset_index.json").read_text())
    index["fingerprints"] = [f.split(":")[0] for f in index["fingerprints"]]
    return index


@pytest.mark.slow
def test_seed_cli_and_assets_write_identical_files(built_eval, sample_raw_root, tmp_path, run_cli):
    seed_dir = tmp_path / "cache" / "eval"
    done = run_cli("build-cache", "--data-dir", sample_raw_root / "eval", "--cache-dir", seed_dir,
                   "--split", "eval", "--no-progress")
    assert done.returncode == 0, done.stderr[-4000:]
    assets_dir = built_eval.cache_dir
    assert _npz_digests(seed_dir) == _npz_digests(assets_dir)
    assert len(_npz_digests(seed_dir)) == 4
    assert (seed_dir / "manifest.json").read_bytes() == (assets_dir / "manifest.json").read_bytes()
    assert _index_without_mtimes(seed_dir) == _index_without_mtimes(assets_dir)

    # the full rescan gives the same manifest and index
    done = run_cli("scan-cache", "--cache-dir", seed_dir)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (seed_dir / "manifest.json").read_bytes() == (assets_dir / "manifest.json").read_bytes()
    assert _index_without_mtimes(seed_dir) == _index_without_mtimes(assets_dir)


# ------------------------------------------------------------------------------------------------
# Verification once per content, build warnings, manifest readers (issue 11, items 4-6)
# ------------------------------------------------------------------------------------------------

def _copy_built(built_eval, tmp_path: Path) -> tuple[Settings, Path]:
    """A copy of the built eval split (mtimes kept, so its ledger still describes it)."""
    cache_root = tmp_path / "cache"
    shutil.copytree(built_eval.cache_dir, cache_root / "eval")
    return make_settings(built_eval.settings.raw_root, cache_root), cache_root / "eval"


def test_npz_schema_opens_each_npz_once_per_content_and_all_on_request(built_eval, tmp_path):
    from eeg_assets.synthetic.fake_cache import damage_window_in_place

    first = check_results(built_eval.result)["npz_schema"].metadata
    assert (first["files"].value, first["files_verified"].value) == ("4", "4")
    assert first["files_sampled"].value == "0" and first["verify_all"].value is False
    settings, cache_dir = _copy_built(built_eval, tmp_path)
    names = [f"{s}_windows.npz" for s in EVAL_STEMS]
    with dg.instance_for_test(set_dagster_home=False) as instance:
        again = check_results(materialize(settings, instance, ["npz_windows"]))["npz_schema"]
        assert again.passed
        # nothing new: only the random sample is opened, ceil(0.2% of 4) = 1 file, and named
        verified, sampled = again.metadata["files_verified"], again.metadata["files_sampled"]
        assert verified.value == sampled.value == "1"
        assert again.metadata["sampled"].value in {f"- {name}" for name in names}

        # damage that keeps size and mtime; a run asked to verify everything finds it
        damage_window_in_place(cache_dir / names[2])
        full = materialize(settings, instance, tags={"eeg_assets/verify": "all"})
        schema = check_results(full)["npz_schema"]
        assert not schema.passed
        assert schema.metadata["verify_all"].value is True
        assert schema.metadata["files_verified"].value == "4"
        assert schema.metadata["first_problems"].value == f"- {names[2]}: window 0 has NaN/Inf"
        assert not full.success and set(materializations(full)) == {"npz_windows"}  # blocking

        # a tag value that means nothing is an error, not an ordinary run
        typo = materialize(settings, instance, ["npz_windows"], tags={"eeg_assets/verify": "yes"})
        assert not typo.success and "npz_schema" not in check_results(typo)
        failure = next(e for e in typo.all_events if e.is_step_failure)
        assert "run tag eeg_assets/verify='yes': the only value is 'all'" in str(
            failure.step_failure_data.error.message)

        # a failed file is not marked verified: the next ordinary run opens it and fails again
        later = check_results(materialize(settings, instance, ["npz_windows"]))["npz_schema"]
        assert not later.passed and later.metadata["verify_all"].value is False
        assert f"- {names[2]}: window 0 has NaN/Inf" in later.metadata["first_problems"].value


def test_npz_windows_lists_recordings_built_with_warnings(tmp_path):
    from eeg_assets.synthetic.edf_writer import Event, noise_generator, tusz_dir, write_recording

    raw = tmp_path / "raw"
    write_recording(tusz_dir(raw / "eval", "aaaaaova"), "aaaaaova_s001_t000", duration_s=70,
                    events=[Event(65, 95)], generator=noise_generator(seed=1))
    write_recording(tusz_dir(raw / "eval", "aaaaaowa"), "aaaaaowa_s001_t000", duration_s=70,
                    annotation_duration_s=70.5, events=[Event(70, 70.5)],
                    generator=noise_generator(seed=2))
    settings = make_settings(raw, tmp_path / "cache")
    with dg.instance_for_test(set_dagster_home=False) as instance:
        result = materialize(settings, instance, ["npz_windows"])
        assert result.success
        meta = materializations(result)["npz_windows"].metadata
    overrun = "aaaaaova/s001_2015/01_tcp_ar/aaaaaova_s001_t000.edf"
    assert meta["files_built"].value == 1 and meta["files_with_warnings"].value == 1
    assert [c.name for c in meta["warnings"].schema.columns] == ["recording", "warning"]
    assert [dict(r.data) for r in meta["warnings"].records] == [{
        "recording": overrun,
        "warning": "aaaaaova_s001_t000.csv_bi: seizure at 65-95 s runs 25 s past the end of the "
                   "signal (70 s); its label mask is clipped at 70 s"}]
    [quarantined] = [dict(r.data) for r in meta["not_built"].records]
    assert quarantined["recording"] == "aaaaaowa/s001_2015/01_tcp_ar/aaaaaowa_s001_t000.edf"
    assert "seizure at 70-70.5 s starts at or after the end of the signal" in quarantined["reason"]
    from eeg_assets.lib.cache.ledger import Ledger

    entry = Ledger(tmp_path / "cache" / "eval").entries()[overrun]
    assert entry.seizure_samples == [0, 17920 - 65 * 256]  # the mask ends with the signal


def test_manifest_readers_work_from_the_recorded_facts(built_eval, tmp_path, monkeypatch):
    """At TUSZ size manifest.json is ~21 MB: a run whose manifest is current parses it not once;
    a manifest rewritten with the same content but other bytes is parsed to be compared, and the
    balanced set composed from the old bytes is reported."""
    from eeg_assets.lib.dataset import manifest as manifest_module

    settings, cache_dir = _copy_built(built_eval, tmp_path)
    parses = []
    original = manifest_module._parse_manifest
    monkeypatch.setattr(manifest_module, "_parse_manifest",
                        lambda raw: parses.append(len(raw)) or original(raw))
    # Checks without their assets; a partitioned run needs one asset: the index (its rewrite
    # leaves the manifest alone).
    checks_only = (dg.AssetSelection.assets("dataset_index")
                   | dg.AssetSelection.checks_for_assets("manifest", "balanced_dataset"))
    with dg.instance_for_test(set_dagster_home=False) as instance:
        run = materialize(settings, instance, ["manifest", "balanced_dataset"])
        assert run.success and all(e.passed for e in check_results(run).values())
        assert parses == []
        counts = {k: len(v) for k, v in _manifest_refs(cache_dir).items()}
        for name in ("manifest_current", "seizure_windows_present"):
            meta = check_results(run)[name].metadata
            assert {k: int(meta[k].value) for k in counts} == counts, name

        path = cache_dir / "manifest.json"
        path.write_text(json.dumps(json.loads(path.read_text()), indent=1))
        checks = check_results(materialize(settings, instance, selection=checks_only))
        assert checks["manifest_current"].passed and checks["seizure_windows_present"].passed
        assert not checks["balanced_matches_recipe"].passed
        assert "composed from manifest version" in checks["balanced_matches_recipe"].metadata[
            "reason"].value
        # manifest_current once; balanced_matches_recipe twice: whether the manifest still says
        # what the recorded facts give (not when its bytes are the facts'), and the composition
        assert len(parses) == 3
