"""Experiments in the graph, as a researcher uses them: a model factory of their own outside the
repository, two experiment files in a folder of their own, both trained and evaluated on the
sample corpus through Dagster, and ``model_comparison`` read; a model with the wrong output shape
and a malformed experiment file fail before any training step, naming the problem.
"""

from __future__ import annotations

import csv
from pathlib import Path

import dagster as dg
import pytest
from eeg_assets_tests.support.dagster_fixtures import CHAIN, failure_message, make_settings, sample_raw_root  # noqa: F401

from eeg_assets.lib.model.comparison import COLUMNS
from eeg_assets.lib.model.experiment import ExperimentError
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets.orchestration import (
    assets,
    build_defs,
    build_resources,
    comparison,
    evaluation,
    load_experiments_of,
    training,
)

pytestmark = pytest.mark.slow

TINY = TrainConfig(epochs=1, max_train_windows_per_epoch=16, cpu_threads=1, device="cpu")
FACTORY_MODULE = '''
import torch
from torch import nn


class PerSampleLogits(nn.Module):
    """One 1x1 convolution over the channels: the smallest model of the contract."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv1d(channels, width, 1), nn.ReLU(), nn.Conv1d(width, 1, 1))

    def forward(self, x):
        return self.mix(x).squeeze(1)


def build(width: int = 4):
    return PerSampleLogits(19, width)


def wrong_shape():
    class Unsqueezed(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = nn.Conv1d(19, 1, 1)

        def forward(self, x):
            return self.mix(x)  # (batch, 1, 15360): one axis too many
    return Unsqueezed()
'''


def lab_folder(tmp_path: Path, **experiments: str) -> Path:
    folder = tmp_path / "my_experiments"
    folder.mkdir()
    (folder / "mylab_nets.py").write_text(FACTORY_MODULE)
    for name, text in experiments.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def materialize(definitions, settings, instance, key, partition=None):
    return dg.materialize(definitions, resources=build_resources(settings), instance=instance,
                          selection=dg.AssetSelection.assets(key), partition_key=partition,
                          raise_on_error=False)


def test_two_experiments_of_a_users_own_are_trained_evaluated_and_compared(
        sample_raw_root, tmp_path):  # noqa: F811
    folder = lab_folder(
        tmp_path,
        narrow='[model]\nfactory = "mylab_nets:build"\nparams = { width = 2 }\n',
        wide='[model]\nfactory = "mylab_nets:build"\nparams = { width = 8 }\n'
             '[train]\nlr = 0.003\n[postprocess]\nmax_fa_per_24h = 1000\n',
        broken='[model]\nfactory = "mylab_nets:wrong_shape"\n')
    settings = make_settings(sample_raw_root, tmp_path / "cache", tmp_path / "results",
                             experiments_dir=folder, train=TINY, eval_max_fa_per_24h=1e6)
    experiments = load_experiments_of(settings)
    assert [e.name for e in experiments] == ["broken", "narrow", "wide"]
    definitions = [assets.raw_edf_recordings, *assets.build_cache_assets(settings),
                   training.build_experiments_asset(experiments),
                   training.build_trained_model(settings, experiments),
                   evaluation.build_model_evaluation(settings, experiments),
                   comparison.build_model_comparison(experiments)]
    with dg.instance_for_test() as instance:
        for split in ("train", "val", "eval"):
            chain = dg.materialize(definitions, resources=build_resources(settings),
                                   instance=instance, partition_key=split,
                                   selection=dg.AssetSelection.assets(*CHAIN))
            assert chain.success

        broken = materialize(definitions, settings, instance, "trained_model", "broken")
        assert not broken.success
        message = failure_message(broken)
        assert "mylab_nets:wrong_shape" in message and "(2, 15360)" in message, message
        assert "(2, 1, 15360)" in message
        assert not (tmp_path / "results" / "trained_model" / "broken" / "last.pt").exists()

        for name in ("narrow", "wide"):
            trained = materialize(definitions, settings, instance, "trained_model", name)
            assert trained.success, failure_message(trained)
            meta = trained.get_asset_materialization_events()[0].materialization.metadata
            assert meta["model_factory"].value == "mylab_nets:build"
            assert meta["model_parameters"].value == {"narrow": 43, "wide": 169}[name]
            for split in ("val", "eval"):
                evaluated = materialize(definitions, settings, instance, "model_evaluation",
                                        f"{name}|{split}")
                assert evaluated.success, failure_message(evaluated)
            assert (tmp_path / "results" / "evaluation" / name / "eval" / "scores.json").is_file()

        compared = materialize(definitions, settings, instance, "model_comparison")
        assert compared.success, failure_message(compared)
    meta = compared.get_asset_materialization_events()[0].materialization.metadata
    assert meta["experiments"].value == 2 and meta["not_evaluated"].value == "broken"
    table = meta["leaderboard"].value
    assert {record.data["experiment"] for record in table.records} == {"narrow", "wide"}
    with open(tmp_path / "results" / "comparison" / "leaderboard.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS and {r["experiment"] for r in rows} == {"narrow", "wide"}
    by_name = {r["experiment"]: r for r in rows}
    assert by_name["wide"]["model_parameters"] == "169"
    for row in rows:  # sensitivities in percent, as model_evaluation reports them
        assert row["overlap_sensitivity_pct"] != "" and row["szcore_subject_sensitivity_pct"] != ""
        assert 0 <= float(row["overlap_sensitivity_pct"]) <= 100
    assert (tmp_path / "results" / "comparison" / "operating_curves.png").read_bytes()[:4] == \
        b"\x89PNG"


def test_a_malformed_experiment_file_stops_the_definitions_naming_it(tmp_path):
    folder = lab_folder(tmp_path, good='[model]\nfactory = "mylab_nets:build"\n',
                        typo="[train]\nepohcs = 3\n")
    settings = make_settings(tmp_path / "raw", tmp_path / "cache", experiments_dir=folder)
    with pytest.raises(ExperimentError) as raised:
        build_defs(settings)
    assert str(raised.value) == (f"{folder.absolute() / 'typo.toml'}: [train] unknown key "
                                 "'epohcs' (allowed: epochs, batch_size, lr, weight_decay, "
                                 "optimizer, patience, device, num_workers, windows_per_epoch)")


def test_an_empty_experiments_folder_is_a_clear_error(tmp_path):
    settings = make_settings(tmp_path / "raw", tmp_path / "cache",
                             experiments_dir=tmp_path / "none")
    with pytest.raises(ExperimentError, match="no experiment files"):
        build_defs(settings)
