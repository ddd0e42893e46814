"""The cache chain and its checks on the continuous layout (``EEG_ASSETS_CACHE_LAYOUT=continuous``),
on a real (temporary) Dagster instance over the sample corpus's eval split."""

from __future__ import annotations

import json
from pathlib import Path

from dagster._core.definitions.data_version import StaleStatus

from eeg_assets.lib.cache.layout import stem_of
from eeg_assets.orchestration import build_defs
from eeg_assets.settings import Settings
from eeg_assets_tests.support.dagster_fixtures import (  # noqa: F401 - sample_raw_root: a fixture
    CHAIN, CHECKS, EVAL_STEMS, check_results, code_version, make_dagster_home, make_settings,
    materialize, materializations, open_instance, sample_raw_root, stale_status,
)


def test_the_chain_and_its_checks_run_on_the_continuous_layout(sample_raw_root, tmp_path):
    settings = make_settings(sample_raw_root, tmp_path / "cache", cache_layout="continuous")
    with open_instance(make_dagster_home(tmp_path / "home")) as instance:
        result = materialize(settings, instance)
        assert result.success
        events = materializations(result)
        checks = check_results(result)
    assert set(events) == set(CHAIN)
    expected_checks = set().union(*(CHECKS[name] for name in CHAIN))
    assert expected_checks <= set(checks)
    assert all(checks[name].passed for name in expected_checks), \
        {name: checks[name].metadata for name in expected_checks if not checks[name].passed}
    npz_windows = events["npz_windows"].metadata
    assert npz_windows["layout"].value == "continuous"
    assert npz_windows["npz_files"].value == 4 and npz_windows["windows"].value == 52
    cache_dir = tmp_path / "cache" / "eval"
    index = json.loads((cache_dir / "_dataset_index.json").read_text())
    assert index["files"] == [f"{stem}_data.npy" for stem in EVAL_STEMS]
    balanced = json.loads((cache_dir / "balanced_dataset.json").read_text())
    named = {entry["cache_file"] for category in ("partial_seizure", "full_seizure", "no_seizure")
             for entry in balanced[category]}
    assert named and all(name.endswith("_data.npy") for name in named)
    assert {stem_of(name) for name in named} <= set(EVAL_STEMS)


def test_the_layout_is_part_of_the_cache_version_so_switching_marks_the_cache_stale(
        sample_raw_root, tmp_path):
    windows = make_settings(sample_raw_root, tmp_path / "cache")
    continuous = make_settings(sample_raw_root, tmp_path / "cache", cache_layout="continuous")
    for name in CHAIN:
        assert code_version(windows, name) != code_version(continuous, name), name
    with open_instance(make_dagster_home(tmp_path / "home")) as instance:
        assert materialize(windows, instance, ["npz_windows"]).success
        status, causes = stale_status(instance, "npz_windows", build_defs(continuous))
    assert status == StaleStatus.STALE
    assert any("new code version" in str(cause) for cause in causes), causes


def test_the_environment_chooses_the_layout_and_its_default_cache_root(tmp_path):
    settings = Settings.from_env({"EEG_ASSETS_CACHE_LAYOUT": "continuous"})
    assert settings.cache_root == Path("cache/tusz_mmap").absolute()
    assert settings.cache_config().layout == "continuous"
    chosen = Settings.from_env({"EEG_ASSETS_CACHE_LAYOUT": "continuous",
                                "EEG_ASSETS_CACHE_ROOT": str(tmp_path)})
    assert chosen.cache_root == tmp_path
    assert Settings.from_env({}).cache_config().layout == "windows"
