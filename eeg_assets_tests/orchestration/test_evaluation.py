"""``model_evaluation[val|eval]`` materialized on a real Dagster instance, locally and on Modal.

The caches are hand-written NPZs of the real geometry (support/training_cache.py) whose ledger
entries carry the references an annotation would give: recordings whose annotation runs past the
last cached window (one with a seizure there), a recording shorter than one window (no NPZ) and
a quarantined one. A short training run gives the checkpoint; the evaluations then run on the
same backend, and the written folders are scored again with the ``score`` command.

Modal's servers cannot be reached from the test machine: on the Modal backend the client is the
stand-in (``stand_in_modal.py``, the only mock), with a folder playing the ``/results`` volume.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import torch
from eeg_assets_tests.support.dagster_fixtures import failure_message
from dagster_pipes import decode_param
from eeg_assets_tests.support.stand_in_modal import StandInModal

from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.dataset.balanced import compose_split, write_balanced
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.manifest import update_manifest
from eeg_assets.lib.model.operating_point import SWEEP_THRESHOLDS
from eeg_assets.lib.scoring import read_events
from eeg_assets.orchestration import build_resources, evaluation, training
from eeg_assets.settings import Settings
from eeg_assets.synthetic.fake_cache import write_quarantined, write_recording, write_too_short
from eeg_assets_tests.support.training_cache import (
    EXPERIMENT,
    SHORT_TRAINING,
    STAND_IN,
    STAND_IN_SWITCHES,
    TRAIN_FILES,
    experiment_of,
    write_split,
)
from eeg_assets.lib.files import content_version

W = DEFAULT_CONFIG.window_samples
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Training validates at 0.35, where this short run's model already raises events (at 0.5 it
#: raises none, and an agreement of zeros would show little).
TRAINING = dataclasses.replace(SHORT_TRAINING, threshold=0.35)
CHECKS = {"one_hypothesis_per_reference", "durations_match_references", "files_reproduce_scores",
          "tsv_files_reproduce_scores", "scores_finite"}


@dataclass(frozen=True)
class Fake:
    """A cached recording: per-window seizure samples, and its annotation reference."""

    counts: list[int]
    duration_s: float
    seizures: tuple[tuple[float, float], ...] = ()


#: val: 4 windows (0-90 s) of a 97.4321 s recording with a seizure in the uncached tail; 3
#: windows of an 83.9 s recording; a 45.25 s recording with a seizure; one quarantined.
VAL = {"aaaaaaav_s001_t000": Fake([0, 5000, W, W], 97.4321, ((31.2, 55.0), (92.5, 96.0))),
       "aaaaaaaw_s001_t000": Fake([0, 0, 0], 83.9)}
VAL_SHORT = {"aaaaaaax_s001_t000": (45.25, ((12.0, 20.5),))}
VAL_QUARANTINED = {"aaaaaaay_s001_t000": "aaaaaaay_s001_t000.edf: flat EEG channel(s) with "
                                         "zero variance: FZ"}
EVAL = {"aaaaaaae_s001_t000": Fake([0, 3000, W], 88.8888, ((22.0, 48.0),)),
        "aaaaaaaf_s001_t000": Fake([0, 0, 0, 0], 91.0)}
EVAL_SHORT = {"aaaaaaag_s001_t000": (30.5, ())}
DURATIONS = {**{stem: f.duration_s for stem, f in {**VAL, **EVAL}.items()},
             **{stem: d for stem, (d, _s) in {**VAL_SHORT, **EVAL_SHORT}.items()}}


def write_evaluated_split(cache_dir: Path, files: dict[str, Fake], short: dict,
                          quarantined: dict | None = None) -> None:
    for stem, fake in files.items():
        write_recording(cache_dir, stem, fake.counts, DEFAULT_CONFIG,
                        channels=len(DEFAULT_CONFIG.channels),
                        reference=(fake.duration_s, fake.seizures))
    for stem, (duration_s, seizures) in short.items():
        write_too_short(cache_dir, stem, duration_s, seizures, DEFAULT_CONFIG)
    for stem, reason in (quarantined or {}).items():
        write_quarantined(cache_dir, stem, reason, DEFAULT_CONFIG)
    update_index(cache_dir)


def write_caches(cache_root: Path) -> None:
    write_split(cache_root / "train", TRAIN_FILES)
    update_index(cache_root / "train")
    update_manifest(cache_root / "train")
    write_balanced(cache_root / "train", compose_split(cache_root / "train"))
    write_evaluated_split(cache_root / "val", VAL, VAL_SHORT, VAL_QUARANTINED)
    write_evaluated_split(cache_root / "eval", EVAL, EVAL_SHORT)


@dataclass
class Lab:
    """One instance, its caches and settings, and the results of the runs made so far."""

    root: Path
    settings: Settings
    instance: dg.DagsterInstance
    runs: dict

    @property
    def results(self) -> Path:
        """Where the runs write: the results root, or the stand-in's volume."""
        return self.root / "volume" if self.settings.backend == "modal" else self.root / "results"

    def run(self, asset: str, partition: str | None = None,
            keep: bool = True) -> dg.ExecuteInProcessResult:
        """Materialize ``asset[partition]``; ``keep``: record the result for later tests."""
        experiments = [experiment_of(self.settings)]
        defs = [training.build_trained_model(self.settings, experiments),
                evaluation.build_model_evaluation(self.settings, experiments)]
        # trained_model is partitioned by experiment; model_evaluation by experiment and split
        key = EXPERIMENT if asset == "trained_model" else f"{EXPERIMENT}|{partition}"
        with pytest.MonkeyPatch.context() as mp:
            for name in ("BGB_SMOKE_TEST", "BGB_LIMIT_FILES", "BGB_FORCE_MANIFEST_REBUILD",
                         *STAND_IN_SWITCHES):
                mp.delenv(name, raising=False)
            mp.setenv("EEG_ASSETS_STAND_IN_VOLUME", str(self.root / "volume"))
            mp.setenv("EEG_ASSETS_STAND_IN_RAW_VOLUME", str(self.root / "raw_volume"))
            mp.setenv("EEG_ASSETS_STAND_IN_SERVER", str(self.root / "server"))
            result = dg.materialize(defs, instance=self.instance, partition_key=key,
                                    selection=dg.AssetSelection.assets(asset),
                                    resources=build_resources(self.settings),
                                    raise_on_error=False)
        if keep:
            self.runs[(asset, partition)] = result
        return result

    def pipes_exceptions(self, result: dg.ExecuteInProcessResult) -> list[str]:
        """Exceptions the launched process reported when it closed Pipes."""
        return [entry.dagster_event.engine_event_data.error.to_string()
                for entry in self.instance.all_logs(result.run_id)
                if entry.dagster_event is not None and entry.dagster_event.is_engine_event
                and entry.dagster_event.engine_event_data.error is not None
                and "pipes closed with exception" in entry.user_message]


def make_lab(root: Path, backend: str = "local", **settings) -> Lab:
    write_caches(root / "cache" / "tusz")
    (root / "volume").mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.ephemeral()
    if backend == "modal":  # where the chain on Modal writes, with the versions it records
        shutil.copytree(root / "cache", root / "volume" / "cache", copy_function=shutil.copy2)
        volume_cache = root / "volume" / "cache" / "tusz"
        for asset, split, name in (("balanced_dataset", "train", "balanced_dataset.json"),
                                   ("dataset_index", "val", "_dataset_index.json"),
                                   ("dataset_index", "eval", "_dataset_index.json")):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset, partition=split, tags={
                    "dagster/data_version": content_version(volume_cache / split / name)}))
    fields = dict(raw_root=root / "raw", cache_root=root / "cache" / "tusz",
                  results_root=root / "results",
                  train=TRAINING, eval_max_fa_per_24h=1e6, backend=backend,
                  modal_client=STAND_IN)
    fields.update(settings)
    return Lab(root, Settings(**fields), instance, {})


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.materialization.metadata.items()}


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Lab:
    lab = make_lab(tmp_path_factory.mktemp("evaluation"))
    for asset, partition in (("trained_model", None), ("model_evaluation", "val"),
                             ("model_evaluation", "eval")):
        result = lab.run(asset, partition)
        assert result.success, (asset, partition, failure_message(result))
    return lab


def split_dir(lab: Lab, split: str) -> Path:
    return lab.results / "evaluation" / EXPERIMENT / split


# ------------------------------------------------------------------------------------------------
# What model_evaluation writes and reports (local backend)
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["val", "eval"])
def test_one_hypothesis_per_reference_with_the_reference_duration(local, split):
    folder = split_dir(local, split)
    stems = sorted([*VAL, *VAL_SHORT] if split == "val" else [*EVAL, *EVAL_SHORT])
    refs = folder.joinpath("ref.list").read_text().splitlines()
    hyps = folder.joinpath("hyp.list").read_text().splitlines()
    assert [Path(p).name for p in refs] == [Path(p).name for p in hyps] == [
        f"{stem}.csv_bi" for stem in stems]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in refs + hyps)
    assert sorted(p.name for p in (folder / "hyp").iterdir()) == [f"{s}.csv_bi" for s in stems]
    for ref_path, hyp_path in zip(refs, hyps):
        ref, hyp = read_events(Path(ref_path)), read_events(Path(hyp_path))
        stem = Path(ref_path).stem
        assert ref.duration_s == hyp.duration_s == DURATIONS[stem]
        assert f"# duration = {DURATIONS[stem]:.4f} secs" in Path(hyp_path).read_text()
        assert f"# bname = {stem}" in Path(hyp_path).read_text()


def test_references_are_the_recorded_annotation_events(local):
    folder = split_dir(local, "val")
    for stem, fake in VAL.items():
        assert read_events(folder / "ref" / f"{stem}.csv_bi").seizures == fake.seizures
    ((stem, (duration_s, seizures)),) = VAL_SHORT.items()
    assert read_events(folder / "ref" / f"{stem}.csv_bi").seizures == seizures


def test_a_recording_shorter_than_a_window_gets_an_event_free_hypothesis(local):
    for split, short in (("val", VAL_SHORT), ("eval", EVAL_SHORT)):
        ((stem, (duration_s, _seizures)),) = short.items()
        hypothesis = read_events(split_dir(local, split) / "hyp" / f"{stem}.csv_bi")
        assert hypothesis.seizures == () and hypothesis.duration_s == duration_s


def test_the_tail_after_the_last_window_is_background(local):
    """Hypotheses end with the stitched windows (90 s for the 97.4321 s recording)."""
    hypothesis = read_events(split_dir(local, "val") / "hyp" / "aaaaaaav_s001_t000.csv_bi")
    assert all(stop <= 90.0 for _start, stop in hypothesis.seizures)
    meta = metadata_of(local.runs[("model_evaluation", "val")])
    # The tail seizure (92.5-96 s) and the short recording's seizure can never be hit.
    assert meta["overlap_targets"] == 3 and meta["overlap_hits"] <= 1


@pytest.mark.parametrize("split", ["val", "eval"])
@pytest.mark.parametrize("form", ["lists", "folders"])
def test_score_over_the_written_files_reproduces_the_metadata(local, run_cli, split, form):
    folder = split_dir(local, split)
    ref, hyp = ((folder / "ref.list", folder / "hyp.list") if form == "lists"
                else (folder / "ref", folder / "hyp"))
    out = run_cli("score", "--ref", ref, "--hyp", hyp, "--json")
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)
    meta = metadata_of(local.runs[("model_evaluation", split)])
    assert scores["recordings"] == meta["recordings_scored"]
    for scorer in ("overlap", "taes", "szcore"):
        # for people: percent, 4 significant digits (scores.json keeps whole fractions)
        assert float(f"{scores[scorer]['sensitivity_pct']:.4g}") == \
            meta[f"{scorer}_sensitivity_pct"]
        assert float(f"{scores[scorer]['fa_per_24h']:.4g}") == meta[f"{scorer}_fa_per_24h"]
        assert scores[scorer]["targets"] == meta[f"{scorer}_targets"], scorer
    assert scores["duration_s"] == pytest.approx(sum(
        d for stem, d in DURATIONS.items() if stem in {Path(p).stem for p in (
            folder / "ref.list").read_text().splitlines()}))


def test_metadata_reports_the_figures_threshold_recordings_and_curve(local):
    meta = metadata_of(local.runs[("model_evaluation", "val")])
    for scorer in ("overlap", "taes", "szcore"):
        assert 0.0 <= meta[f"{scorer}_sensitivity_pct"] <= 100.0
        assert f"{scorer}_sensitivity" not in meta  # one convention: percent, named so
        assert math.isfinite(meta[f"{scorer}_fa_per_24h"]) and meta[f"{scorer}_fa_per_24h"] >= 0
    assert 0.0 <= meta["auroc"] <= 1.0
    assert meta["threshold"] in SWEEP_THRESHOLDS and meta["threshold_target_met"] is True
    assert meta["threshold_rule"] == local.settings.threshold_rule().describe()
    assert "at most 1e+06 FA/24h" in meta["threshold_rule"] and meta["max_fa_per_24h"] == 1e6
    assert meta["recordings_scored"] == 3 and meta["recordings_without_windows"] == 1
    assert meta["recordings_excluded"] == 1
    (excluded,) = meta["excluded"]
    assert excluded["source"] == "aaaaaaay/aaaaaaay_s001_t000.edf"
    assert excluded["status"] == "quarantined" and "flat EEG channel" in excluded["reason"]
    assert [row["threshold"] for row in meta["sweep"]] == list(SWEEP_THRESHOLDS)
    # The rule: the most sensitive threshold, the highest among equally sensitive ones.
    best = max(row["overlap_sensitivity_pct"] for row in meta["sweep"])
    assert meta["threshold"] == max(row["threshold"] for row in meta["sweep"]
                                    if row["overlap_sensitivity_pct"] == best)
    match = re.fullmatch(r"!\[sensitivity against false alarms per 24 h over thresholds\]"
                         r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", meta["operating_curve"])
    assert match and base64.b64decode(match.group(1)).startswith(PNG_MAGIC)
    scores = json.loads(Path(meta["scores"]).read_text())
    assert scores["threshold"] == meta["threshold"] and scores["split"] == "val"


def test_the_hypotheses_hold_events_at_the_chosen_threshold(local):
    """Not a vacuous run: the threshold chosen for sensitivity produced seizure events."""
    events = [read_events(p).seizures for p in (split_dir(local, "val") / "hyp").iterdir()]
    assert any(events)


def test_eval_applies_the_threshold_chosen_on_val(local):
    val = metadata_of(local.runs[("model_evaluation", "val")])
    ev = metadata_of(local.runs[("model_evaluation", "eval")])
    assert ev["threshold"] == val["threshold"]
    assert ev["threshold_chosen_on"] == "val" and val["threshold_chosen_on"] == "this split (val)"
    assert ev["model_version"] == val["model_version"]
    scores = json.loads((split_dir(local, "eval") / "scores.json").read_text())
    assert scores["chosen_on_this_split"] is None and scores["threshold"] == val["threshold"]


@pytest.mark.parametrize("split", ["val", "eval"])
def test_all_checks_pass_for_the_partition(local, split):
    checks = checks_of(local.runs[("model_evaluation", split)])
    assert set(checks) == CHECKS
    assert {check.partition for check in checks.values()} == {f"{EXPERIMENT}|{split}"}
    assert all(check.passed for check in checks.values()), {
        name: check.metadata for name, check in checks.items()}


def test_val_numbers_agree_with_training_validation_at_the_training_threshold(local):
    """Training validated the same model on the same references: at its threshold the three
    scorers' figures equal model_evaluation[val]'s sweep at that threshold."""
    summary = json.loads((local.results / "trained_model" / EXPERIMENT /
                          "training_summary.json").read_text())
    trained = summary["best_metrics"]
    scores = json.loads((split_dir(local, "val") / "scores.json").read_text())
    (row,) = [row for row in scores["sweep"] if row["threshold"] == TRAINING.threshold]
    assert row["overlap"]["hits"] + row["overlap"]["false_alarms"] > 0  # events to agree on
    for scorer in ("overlap", "taes", "szcore"):
        for figure in ("targets", "hits", "false_alarms", "sensitivity", "fa_per_24h"):
            assert trained[f"val_{scorer}_{figure}"] == row[scorer][figure], (scorer, figure)
    assert trained["val_auroc"] == scores["metrics"]["auroc"]
    assert trained["val_n_recordings"] == scores["recordings_scored"] == 3


# ------------------------------------------------------------------------------------------------
# Clear failures
# ------------------------------------------------------------------------------------------------

def test_eval_before_val_fails_clearly(tmp_path):
    lab = make_lab(tmp_path)
    assert lab.run("trained_model").success
    result = lab.run("model_evaluation", "eval")
    assert not result.success
    message = failure_message(result)
    assert (f"model_evaluation[{EXPERIMENT}|eval] applies the threshold chosen on val, and "
            f"model_evaluation[{EXPERIMENT}|val] has not been materialized") in message, message
    assert not (lab.results / "evaluation").exists()


def test_eval_refuses_a_threshold_chosen_for_another_model(local):
    local.instance.report_runless_asset_event(dg.AssetMaterialization(
        "model_evaluation", partition=f"{EXPERIMENT}|val",
        metadata={"threshold": 0.35, "model_version": "other:0123", "max_fa_per_24h": 1e6}))
    try:
        result = local.run("model_evaluation", "eval")
        assert not result.success
        assert (f"model_evaluation[{EXPERIMENT}|val] chose its threshold for trained_model "
                "version other:0123" in failure_message(result))
    finally:  # the module's later tests read val's real materialization again
        assert local.run("model_evaluation", "val").success


def test_a_checkpoint_other_than_the_materialized_model_is_refused(local):
    """best.pt overwritten behind Dagster (another training's inputs): the process refuses it."""
    best = local.results / "trained_model" / EXPERIMENT / "best.pt"
    saved = best.read_bytes()
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["data_versions"] = {**checkpoint["data_versions"], "val_index": "elsewhere"}
    torch.save(checkpoint, best)
    try:
        result = local.run("model_evaluation", "val", keep=False)
    finally:
        best.write_bytes(saved)
    assert not result.success
    (exception,) = local.pipes_exceptions(result)
    assert re.search(r"StaleInputError: checkpoint \S+/best.pt is trained_model version \S+, but "
                     r"the materialized trained_model is \S+: materialize trained_model again",
                     exception), exception


def test_evaluation_without_a_trained_model_fails_before_launching(tmp_path):
    lab = make_lab(tmp_path)
    result = lab.run("model_evaluation", "val")
    assert not result.success
    assert f"trained_model[{EXPERIMENT}] has not been materialized" in failure_message(result)


# ------------------------------------------------------------------------------------------------
# Modal backend with the stand-in for Modal's servers
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def on_modal(tmp_path_factory, local) -> Lab:
    lab = make_lab(tmp_path_factory.mktemp("modal"), "modal")
    for asset, partition in (("trained_model", None), ("model_evaluation", "val")):
        result = lab.run(asset, partition)
        assert result.success, (asset, partition, failure_message(result))
    return lab


def test_modal_evaluation_writes_under_the_volume(on_modal):
    calls = StandInModal(server=on_modal.root / "server").calls()
    assert [(c["app"], c["function"]) for c in calls] == [("eeg-assets-train", "train"),
                                                          ("eeg-assets-train", "evaluate")]
    context = decode_param(calls[1]["call"]["pipes_env"]["DAGSTER_PIPES_CONTEXT"])
    request = context["data"]["extras"]["request"]
    assert request["cache_dir"] == "/results/cache/tusz/val"
    assert request["checkpoint"] == f"/results/trained_model/{EXPERIMENT}/best.pt"
    assert request["out_dir"] == f"/results/evaluation/{EXPERIMENT}/val"
    assert request["index"]["path"] == "/results/cache/tusz/val/_dataset_index.json"
    folder = on_modal.root / "volume" / "evaluation" / EXPERIMENT / "val"
    assert {p.name for p in folder.iterdir()} >= {"hyp", "ref", "ref.list", "hyp.list",
                                                  "scores.json"}
    assert not (on_modal.root / "results" / "evaluation").exists()
    meta = metadata_of(on_modal.runs[("model_evaluation", "val")])
    assert Path(meta["hyp_list"]) == Path(f"/results/evaluation/{EXPERIMENT}/val/hyp.list")
    assert all(check.passed for check in checks_of(
        on_modal.runs[("model_evaluation", "val")]).values())


def test_modal_and_local_evaluations_report_the_same_scores(on_modal, local):
    remote = metadata_of(on_modal.runs[("model_evaluation", "val")])
    here = metadata_of(local.runs[("model_evaluation", "val")])
    assert remote.keys() == here.keys()
    for key in ("threshold", "overlap_sensitivity_pct", "overlap_fa_per_24h",
                "taes_sensitivity_pct", "szcore_sensitivity_pct", "szcore_fa_per_24h", "auroc",
                "recordings_scored"):
        assert remote[key] == here[key], key

