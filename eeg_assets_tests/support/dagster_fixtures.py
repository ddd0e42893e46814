"""Helpers and session fixtures for the tests of the Dagster layer (``eeg_assets.orchestration``).

The in-process tests build the definitions from their own :class:`Settings` (pointed at a
temporary corpus and cache) with the same factories ``build_defs`` uses, and run them on a real
(temporary) Dagster instance; the tests of the user's path run the ``dagster`` executables in
subprocesses with the ``EEG_ASSETS_*`` variables and a temporary ``DAGSTER_HOME``.

Import the fixtures you use into the test module (``from eeg_assets_tests.support.dagster_fixtures import ...``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from eeg_assets.orchestration import (
    assets,
    build_defs,
    build_resources,
    checks_cache,
    checks_dataset,
)
from eeg_assets.settings import Settings

BIN = Path(sys.executable).parent
CHAIN = ("npz_windows", "dataset_index", "manifest", "balanced_dataset")
#: Checks per asset (what the Definitions declare; the tests assert each of them ran).
CHECKS = {
    "npz_windows": {"npz_schema", "npz_count_matches_recordings"},
    "dataset_index": {"index_matches_npz", "patient_disjointness"},
    "manifest": {"manifest_current", "seizure_windows_present"},
    "balanced_dataset": {"balanced_matches_recipe"},
}
#: Sample corpus: recordings of the eval split (TUSZ folder ``eval``).
EVAL_STEMS = ("aaaaaqhs_s001_t000", "aaaaaqhs_s001_t001", "aaaaarjw_s002_t000",
              "aaaaasxe_s001_t000")


def make_settings(raw_root: Path, cache_root: Path, results_root: Path | None = None,
                  **overrides) -> Settings:
    """Settings for in-process runs: explicit roots and defaults for everything else (whatever
    the caller's shell sets). One worker: no process pool to spawn on a small machine (the pool
    is exercised by the CLI subprocess tests)."""
    fields = dict(raw_root=Path(raw_root), cache_root=Path(cache_root),
                  results_root=Path(results_root or Path(cache_root).parent / "results"),
                  workers=1)
    fields.update(overrides)
    return Settings(**fields)


def chain_defs(settings: Settings) -> list:
    """Every asset and check of the cache chain, built as ``build_defs`` builds them."""
    return [assets.raw_edf_recordings, *assets.build_cache_assets(settings),
            *dg.load_asset_checks_from_modules([checks_cache, checks_dataset])]


def code_version(settings: Settings, name: str) -> str | None:
    """The code version the definitions built from ``settings`` give asset ``name``."""
    return build_defs(settings).get_assets_def(name).code_versions_by_key[dg.AssetKey(name)]


def materialize(settings: Settings, instance: dg.DagsterInstance, keys: Iterable[str] = CHAIN,
                partition: str = "eval", tags: dict[str, str] | None = None,
                selection: dg.AssetSelection | None = None) -> dg.ExecuteInProcessResult:
    """Materialize ``keys`` (and run their checks) for one split partition, or run ``selection``
    (e.g. checks only); never raises, so a test can look at a failed run."""
    return dg.materialize(chain_defs(settings), resources=build_resources(settings),
                          partition_key=partition, instance=instance, tags=tags,
                          selection=selection or dg.AssetSelection.assets(*keys),
                          raise_on_error=False)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The one failed step's error and its ``dg.Failure`` description, as a person reads them."""
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data
    return "\n".join(p for p in (data.error.to_string() if data.error else "",
                                 data.user_failure_data.description
                                 if data.user_failure_data else "") if p)


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {m.materialization.asset_key.to_user_string(): m.materialization
            for m in result.get_asset_materialization_events()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """``{check name: evaluation}`` of a run."""
    return {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}


def stale_status(instance: dg.DagsterInstance, key: str, definitions: dg.Definitions,
                 partition: str = "eval"):
    """What the UI shows: ``(StaleStatus, stale causes)`` of one asset partition.

    Dagster has no public API for this outside GraphQL; the resolver is the one the webserver
    uses (Dagster is pinned, see pyproject.toml).
    """
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView
    from dagster._core.definitions.data_version import CachingStaleStatusResolver

    resolver = CachingStaleStatusResolver(instance, definitions.resolve_asset_graph(),
                                          AssetGraphView.for_test(definitions, instance))
    asset_key = dg.AssetKey(key)
    return (resolver.get_status(asset_key, partition),
            resolver.get_stale_causes(asset_key, partition))


# ------------------------------------------------------------------------------------------------
# Subprocesses: the dagster executables as a user runs them
# ------------------------------------------------------------------------------------------------

def make_dagster_home(path: Path) -> Path:
    """A DAGSTER_HOME as ``make setup`` writes it (telemetry off, console at INFO)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n")
    return path


def dagster_env(home: Path, raw_root: Path, cache_root: Path, results_root: Path,
                **extra: str) -> dict[str, str]:
    """The caller's environment without EEG_ASSETS_*/BGB_*/DAGSTER_HOME, plus the given roots."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EEG_ASSETS_", "BGB_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), EEG_ASSETS_RAW_ROOT=str(raw_root),
               EEG_ASSETS_CACHE_ROOT=str(cache_root), EEG_ASSETS_RESULTS_ROOT=str(results_root),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_dagster(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300
                ) -> subprocess.CompletedProcess:
    """``dagster <args>`` from this virtual environment."""
    return subprocess.run([str(BIN / "dagster"), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance a ``dagster`` process with ``DAGSTER_HOME=home`` used (use as a context)."""
    return dg.DagsterInstance.from_config(str(home))


# ------------------------------------------------------------------------------------------------
# Session fixtures: one sample corpus, one built eval split
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sample_raw_root(tmp_path_factory) -> Path:
    """The deterministic sample corpus (``edf/{train,dev,eval}``), written once; read-only."""
    from eeg_assets.synthetic.sample_corpus import write_sample_corpus

    out = tmp_path_factory.mktemp("sample_corpus")
    write_sample_corpus(out)
    return out / "edf"


@dataclass
class BuiltSplit:
    settings: Settings
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult
    cache_dir: Path


@pytest.fixture(scope="session")
def built_eval(sample_raw_root, tmp_path_factory) -> Iterator[BuiltSplit]:
    """The eval split's chain materialized once on a temporary instance. Do not modify it: copy
    it (shutil.copytree) in a test that does."""
    cache_root = tmp_path_factory.mktemp("built_eval") / "cache"
    settings = make_settings(sample_raw_root, cache_root)
    with dg.instance_for_test(set_dagster_home=False) as instance:
        result = materialize(settings, instance)
        yield BuiltSplit(settings, instance, result, cache_root / "eval")


def copy_split(src_raw: Path, dst_raw: Path, folder: str = "eval") -> Path:
    """Copy one TUSZ split folder (keeping mtimes) into a new raw root; returns the new folder."""
    return Path(shutil.copytree(src_raw / folder, dst_raw / folder))
