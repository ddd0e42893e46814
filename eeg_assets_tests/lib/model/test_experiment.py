"""Experiment files (``eeg_assets/lib/model/experiment.py``): the repository's two, defaults
from the training variables, and every kind of bad file named with its key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from eeg_assets.lib.model.experiment import ExperimentError, load_experiment, load_experiments
from eeg_assets.lib.model.factory import ModelSpec
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets.settings import DEFAULT_EXPERIMENTS_DIR, Settings

REPO_EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def test_the_repository_ships_sample_and_seizure_transformer():
    assert DEFAULT_EXPERIMENTS_DIR == REPO_EXPERIMENTS
    experiments = {e.name: e for e in load_experiments(REPO_EXPERIMENTS)}
    assert set(experiments) == {"sample", "seizure_transformer"}
    sample = experiments["sample"].train
    assert sample.model.factory == "eeg_assets.lib.model.network:compact"
    assert dataclasses.replace(sample, model=TrainConfig().model) == TrainConfig()  # defaults
    paper = experiments["seizure_transformer"].train
    assert paper.model.factory == "eeg_assets.lib.model.seizure_transformer:seizure_transformer"
    assert (paper.epochs, paper.batch_size, paper.lr, paper.weight_decay, paper.optimizer,
            paper.patience, paper.threshold) == (100, 256, 1e-3, 2e-5, "radam", 12, 0.8)


def test_unset_keys_take_the_training_variables_as_defaults(tmp_path):
    settings = Settings.from_env({"EEG_ASSETS_EPOCHS": "2", "EEG_ASSETS_BATCH_SIZE": "4",
                                  "EEG_ASSETS_EVAL_MAX_FA_PER_24H": "12"})
    path = write(tmp_path, "mine", '[train]\nlr = 0.002\n')
    experiment = load_experiment(path, settings.train, settings.eval_max_fa_per_24h)
    assert (experiment.train.epochs, experiment.train.batch_size, experiment.train.lr) == \
        (2, 4, 0.002)
    assert experiment.max_fa_per_24h == 12.0 and experiment.name == "mine"


def test_a_user_factory_and_its_parameters(tmp_path):
    path = write(tmp_path, "mynet", '[model]\nfactory = "mylab.nets:build"\n'
                                    'params = { width = 8, depth = 2 }\n'
                                    '[postprocess]\nmax_fa_per_24h = 5\nmin_event_s = 2\n')
    experiment = load_experiment(path)
    assert experiment.train.model == ModelSpec("mylab.nets:build", {"width": 8, "depth": 2})
    assert experiment.max_fa_per_24h == 5.0 and experiment.train.min_event_s == 2.0
    assert experiment.folder == tmp_path.absolute()  # where the factory module may live


def test_editing_one_file_changes_only_its_version(tmp_path):
    a = write(tmp_path, "a", "[train]\nepochs = 3\n")
    b = write(tmp_path, "b", "[train]\nepochs = 3\n")
    before = {e.name: e.version() for e in load_experiments(tmp_path)}
    a.write_text("[train]\nepochs = 4\n")
    after = {e.name: e.version() for e in load_experiments(tmp_path)}
    assert after["a"] != before["a"] and after["b"] == before["b"]
    b.write_text("[train]\nepochs = 3\n[postprocess]\nmax_fa_per_24h = 3\n")
    assert load_experiment(b).version() == before["b"]  # the rule re-evaluates, not retrains


@pytest.mark.parametrize("text, said", [
    ("[train\nepochs = 3\n", "not valid TOML"),
    ("[training]\nepochs = 3\n", "unknown section [training] (allowed: [train], [postprocess], "
                                 "[model])"),
    ("[train]\nepoch = 3\n", "[train] unknown key 'epoch' (allowed: epochs, batch_size, lr"),
    ("[train]\nepochs = 0\n", "[train] epochs = 0: use an integer above 0"),
    ("[train]\nepochs = 2.5\n", "[train] epochs = 2.5: use an integer above 0"),
    ("[train]\noptimizer = \"sgd\"\n", "[train] optimizer = 'sgd': use adamw or radam"),
    ("[train]\ndevice = \"gpu\"\n", "[train] device = 'gpu': use auto, cpu, cuda or cuda:N"),
    ("[postprocess]\nthreshold = 1.5\n", "[postprocess] threshold = 1.5: use a number between"),
    ("[model]\nfactory = \"mylab.nets\"\n", "[model] factory = 'mylab.nets': use an import path"),
    ("[model]\nparams = 3\n", "[model] params = 3: use a table of keyword arguments"),
])
def test_a_bad_file_names_the_file_the_key_and_what_is_allowed(tmp_path, text, said):
    path = write(tmp_path, "bad", text)
    with pytest.raises(ExperimentError) as raised:
        load_experiment(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert said in str(raised.value), str(raised.value)


def test_a_name_that_cannot_be_a_partition_key_is_refused(tmp_path):
    path = write(tmp_path, "a|b", "")
    with pytest.raises(ExperimentError, match="may hold only letters, digits"):
        load_experiment(path)
