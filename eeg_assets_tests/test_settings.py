"""One settings object, read from the environment once, shapes the whole Definitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from eeg_assets.orchestration import build_defs
from eeg_assets.orchestration.backend import LocalBackend, ModalBackend
from eeg_assets.settings import ModalSettings, Settings, SettingsError


def _code_versions(defs: dg.Definitions) -> dict[str, str]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key).code_version
            for key in graph.get_all_asset_keys() if graph.get(key).code_version}


def test_the_environment_becomes_settings_with_defaults_where_unset(tmp_path):
    settings = Settings.from_env({"EEG_ASSETS_RAW_ROOT": str(tmp_path / "raw"),
                                  "EEG_ASSETS_NOTCH_HZ": "50", "EEG_ASSETS_EPOCHS": "2",
                                  "EEG_ASSETS_CPU_THREADS": "1", "EEG_ASSETS_WORKERS": ""})
    assert settings.raw_root == tmp_path / "raw"
    assert settings.cache_root == Path("cache/tusz").absolute()
    assert settings.cache_config().notch_hz == 50.0
    assert settings.train.epochs == 2 and settings.train.cpu_threads == 1
    assert settings.workers == 0
    assert Settings.from_env({}) == Settings(raw_root=Path("data/sample_corpus/edf").absolute(),
                                             cache_root=Path("cache/tusz").absolute(),
                                             results_root=Path("results").absolute())


@pytest.mark.parametrize("name, value, said", [
    ("EEG_ASSETS_EPOCHS", "five", "EEG_ASSETS_EPOCHS='five' is not an integer"),
    ("EEG_ASSETS_NOTCH_HZ", "60Hz", "EEG_ASSETS_NOTCH_HZ='60Hz' is not a number"),
    ("EEG_ASSETS_TRAIN_BACKEND", "modal", "EEG_ASSETS_TRAIN_BACKEND is no longer read: "
                                          "EEG_ASSETS_BACKEND chooses"),
    ("EEG_ASSETS_EVAL_MAX_FA_PER_24H", "-1", "EEG_ASSETS_EVAL_MAX_FA_PER_24H=-1.0: use a number"),
    ("EEG_ASSETS_EVAL_MAX_FA_PER_24H", "few", "EEG_ASSETS_EVAL_MAX_FA_PER_24H='few' is not a "
                                              "number"),
    ("EEG_ASSETS_BACKEND", "k8s", "EEG_ASSETS_BACKEND='k8s': use one of local, modal"),
    ("EEG_ASSETS_MODAL_BUILD_BATCH", "many", "EEG_ASSETS_MODAL_BUILD_BATCH='many' is not an"),
])
def test_an_unusable_value_names_its_variable(name, value, said):
    with pytest.raises(SettingsError, match=said):
        Settings.from_env({name: value})


def test_definitions_built_from_settings_carry_their_code_versions_and_resources(tmp_path):
    default = Settings(raw_root=tmp_path / "raw", cache_root=tmp_path / "cache")
    european = Settings(raw_root=tmp_path / "raw", cache_root=tmp_path / "cache", notch_hz=50)
    versions, other = _code_versions(build_defs(default)), _code_versions(build_defs(european))
    shaped = {"npz_windows", "dataset_index", "manifest", "balanced_dataset", "trained_model",
              "model_evaluation"}
    assert set(versions) == shaped | {"raw_edf_recordings"}
    assert all(versions[name] != other[name] for name in shaped)  # the notch shapes every byte
    # ... but not the listing of the raw files
    assert versions["raw_edf_recordings"] == other["raw_edf_recordings"]
    defs = build_defs(european)
    assert defs.resources["settings"] is european
    assert defs.resources["backend"].name == "local"
    assert defs.resources["backend"].settings is european


def test_the_threshold_rule_comes_from_the_settings_and_versions_the_evaluation(tmp_path):
    settings = Settings.from_env({"EEG_ASSETS_EVAL_MAX_FA_PER_24H": "12.5"})
    assert settings.threshold_rule().max_fa_per_24h == 12.5
    assert Settings.from_env({}).threshold_rule().max_fa_per_24h == 30.0
    roots = dict(raw_root=tmp_path / "raw", cache_root=tmp_path / "cache")
    versions = [_code_versions(build_defs(Settings(**roots, eval_max_fa_per_24h=fa)))
                for fa in (30.0, 12.5)]
    assert versions[0]["model_evaluation"] != versions[1]["model_evaluation"]
    assert versions[0]["trained_model"] == versions[1]["trained_model"]


def test_modal_settings_come_from_the_same_module():
    assert ModalSettings.from_env({"EEG_ASSETS_MODAL_GPU": "H100",
                                   "EEG_ASSETS_MODAL_CPU": "4"}) == ModalSettings(gpu="H100",
                                                                                  cpu=4.0)


@pytest.mark.parametrize("environ, backend", [
    ({}, LocalBackend),
    ({"EEG_ASSETS_BACKEND": "modal"}, ModalBackend),
])
def test_one_backend_resource_runs_the_chain_training_and_evaluation(environ, backend):
    defs = build_defs(Settings.from_env(environ))
    assert type(defs.resources["backend"]) is backend
    for asset in ("npz_windows", "trained_model", "model_evaluation"):
        assert "backend" in defs.get_assets_def(asset).required_resource_keys, asset


def test_modal_settings_travel_to_the_apps_as_the_variables_they_read():
    settings = Settings.from_env({"EEG_ASSETS_MODAL_BUILD_CPU": "2",
                                  "EEG_ASSETS_MODAL_RAW_VOLUME": "my-raw"})
    assert settings.modal == ModalSettings(build_cpu=2.0, raw_volume="my-raw")
    env = settings.modal.to_env()
    assert env["EEG_ASSETS_MODAL_BUILD_CPU"] == "2.0"
    assert ModalSettings.from_env(env) == settings.modal
    # an int where a float is declared is the same setting (and the same deployed code version)
    assert ModalSettings(build_flush_s=0).to_env() == ModalSettings(build_flush_s=0.0).to_env()

