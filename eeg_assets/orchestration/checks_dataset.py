"""Asset checks on dataset_index, manifest and balanced_dataset.

The ones that would poison training (leaked patients, a stale or empty manifest, no seizure
windows, a wrong balanced composition) are blocking: a failure stops downstream assets in the
same run. Their logic is :mod:`eeg_assets.lib.dataset.chain_checks`, run where the cache is.
"""

import dagster as dg

from eeg_assets.lib.dataset.manifest import MANIFEST_NAME
from eeg_assets.orchestration.backend import Backend
from eeg_assets.orchestration.checks_cache import run_chain_check
from eeg_assets.orchestration.partitions import split_partitions


@dg.asset_check(asset="dataset_index", blocking=True, partitions_def=split_partitions,
                description="_dataset_index.json exists and lists exactly the current NPZs with "
                            "their window counts, fingerprints and config version.")
def index_matches_npz(context: dg.AssetCheckExecutionContext,
                      backend: Backend) -> dg.AssetCheckResult:
    return run_chain_check(context, backend, "index_matches_npz")


@dg.asset_check(asset="dataset_index", blocking=True, partitions_def=split_partitions,
                description="OFFICIAL TUSZ SPLITS: no patient of this split appears in another "
                            "split's raw folder or cache index (patient = first '_' field).")
def patient_disjointness(context: dg.AssetCheckExecutionContext,
                         backend: Backend) -> dg.AssetCheckResult:
    return run_chain_check(context, backend, "patient_disjointness")


@dg.asset_check(asset="manifest", blocking=True, partitions_def=split_partitions,
                description="manifest.json exists, is non-empty, covers exactly the labelled NPZs "
                            "with their current content and config version (not stale).")
def manifest_current(context: dg.AssetCheckExecutionContext,
                     backend: Backend) -> dg.AssetCheckResult:
    result = run_chain_check(context, backend, "manifest_current")
    if not result.passed:
        return result
    path = f"{backend.cache_dir(context.partition_key)}/{MANIFEST_NAME}"
    return dg.AssetCheckResult(passed=True, metadata={**result.metadata, "path": path})


@dg.asset_check(asset="manifest", blocking=True, partitions_def=split_partitions,
                description="The split has seizure windows (partial or full) to train on, "
                            "counted from the recorded per-file facts the manifest is made of "
                            "(manifest_current checks that the file holds them).")
def seizure_windows_present(context: dg.AssetCheckExecutionContext,
                            backend: Backend) -> dg.AssetCheckResult:
    return run_chain_check(context, backend, "seizure_windows_present")


@dg.asset_check(asset="balanced_dataset", blocking=True, partitions_def=split_partitions,
                description="The stored composition is the recipe applied to the current manifest "
                            "(same windows for the balance seed, drawn from its current version) "
                            "with the exact seizure_ratio and pos_weight = sqrt((1 - r) / r).")
def balanced_matches_recipe(context: dg.AssetCheckExecutionContext,
                            backend: Backend) -> dg.AssetCheckResult:
    return run_chain_check(context, backend, "balanced_matches_recipe")
