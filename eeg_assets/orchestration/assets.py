"""The asset graph: raw drops -> npz_windows -> dataset_index -> manifest -> balanced_dataset.

Every asset is a thin call into :mod:`eeg_assets.lib` through the cache backend (here or on
Modal, :mod:`eeg_assets.orchestration.backend`); this module adds partitions, versions, metadata
and automation.
"""

import base64
import math
import hashlib
import json
from datetime import timedelta

import dagster as dg

from eeg_assets.lib.dataset.chain import (
    BALANCED_DATASET,
    DATASET_INDEX,
    MANIFEST,
    NPZ_WINDOWS,
    StepError,
    StepOutcome,
)
from eeg_assets.lib.dataset.balanced import BALANCED_NAME
from eeg_assets.lib.dataset.index import INDEX_NAME
from eeg_assets.lib.dataset.manifest import MANIFEST_NAME
from eeg_assets.orchestration.backend import Backend
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.orchestration.raw import GROUP, raw_edf_recordings
from eeg_assets.settings import Settings

__all__ = ["GROUP", "build_cache_assets", "raw_edf_recordings"]


def _version(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_code_version(settings: Settings) -> str:
    """Code version of the cache chain: the configuration that shapes every cached byte."""
    return _version("cache", settings.cache_config().version())


def balance_code_version(settings: Settings) -> str:
    return _version(cache_code_version(settings), settings.balance_config().version())


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """Inline a PNG in metadata (the UI renders markdown images)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _metadata_value(value) -> dg.MetadataValue:
    """A step's or check's JSON metadata value as Dagster metadata
    (:mod:`eeg_assets.lib.dataset.chain`, :mod:`eeg_assets.lib.dataset.chain_checks`)."""
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind == "png":
        return png_markdown(base64.b64decode(value["base64"]), value["alt"])
    if kind == "md":
        return dg.MetadataValue.md(value["text"])
    if kind == "table":
        return dg.MetadataValue.table(
            [dg.TableRecord(row) for row in value["rows"]],
            schema=dg.TableSchema(columns=[dg.TableColumn(name, type_)
                                           for name, type_ in value["columns"]]))
    if isinstance(value, float) and math.isfinite(value):
        # For people: 4 significant digits (the exact values are in the files the step wrote).
        return dg.MetadataValue.float(float(f"{value:.4g}"))
    return value


def _materialization(outcome: StepOutcome, **paths: str) -> dg.MaterializeResult:
    metadata = {name: _metadata_value(value) for name, value in outcome.metadata.items()}
    metadata.update({name: dg.MetadataValue.path(path) for name, path in paths.items()})
    return dg.MaterializeResult(data_version=dg.DataVersion(outcome.data_version),
                                metadata=metadata)


def _run_step(context: dg.AssetExecutionContext, backend: Backend, step: str,
              hint: str = "") -> StepOutcome:
    """Run ``step`` for the partition's split on the configured backend."""
    split = context.partition_key
    try:
        return backend.run_step(context, step, split)
    except StepError as exc:
        # the hint is for a cache that is not there yet, not for one that is stale
        hint = hint if "does not exist" in str(exc) else ""
        raise dg.Failure(f"{step}[{split}] on the {backend.name} backend: {exc}{hint}") from exc


def build_cache_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The cache chain's assets, their code versions and freshness computed from ``settings``.

    The assets run on the ``backend`` resource; ``build_defs`` binds it to the same ``settings``,
    so code versions and outputs always agree.
    """
    cache_version = cache_code_version(settings)
    balance_version = balance_code_version(settings)

    @dg.asset(
        partitions_def=split_partitions,
        deps=[raw_edf_recordings],
        code_version=cache_version,
        group_name=GROUP,
        kinds={"numpy"},
        description="`<cache>/<split>/<edf_stem>_windows.npz`: windows (n,19,15360) and labels "
                    "(n,15360), float32, uncompressed; in the continuous layout "
                    "(EEG_ASSETS_CACHE_LAYOUT=continuous) `<edf_stem>_data.npy` (samples,19) "
                    "float32 and `_labels.npy` (samples,) uint8, the windows cut on reading. "
                    "Incremental: only new or changed recordings "
                    "are built, in a process pool (or over Modal containers, EEG_ASSETS_BACKEND="
                    "modal); bad recordings are quarantined with a reason.",
    )
    def npz_windows(context: dg.AssetExecutionContext,
                    backend: Backend) -> dg.MaterializeResult:
        outcome = _run_step(context, backend, NPZ_WINDOWS)
        split = context.partition_key
        return _materialization(outcome, cache_dir=backend.cache_dir(split),
                                raw_dir=backend.raw_dir(split))

    @dg.asset(
        partitions_def=split_partitions,
        deps=[npz_windows],
        code_version=cache_version,
        group_name=GROUP,
        kinds={"json"},
        automation_condition=dg.AutomationCondition.eager(),
        description="`<cache>/<split>/_dataset_index.json`: files and window_counts (the keys "
                    "of the cache format, docs/cache-format.md) with per-file fingerprints and "
                    "config version, from the build ledger.",
    )
    def dataset_index(context: dg.AssetExecutionContext,
                      backend: Backend) -> dg.MaterializeResult:
        outcome = _run_step(context, backend, DATASET_INDEX)
        return _materialization(outcome,
                                path=f"{backend.cache_dir(context.partition_key)}/{INDEX_NAME}")

    @dg.asset(
        partitions_def=split_partitions,
        deps=[dataset_index],
        code_version=cache_version,
        group_name=GROUP,
        kinds={"json"},
        automation_condition=dg.AutomationCondition.eager(),
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=settings.manifest_fail_hours),
                warn_window=timedelta(hours=settings.manifest_warn_hours)),
        description="`<cache>/<split>/manifest.json`: every labelled window as partial_seizure, "
                    "full_seizure or no_seizure, updated from recorded per-file facts "
                    "(identical to what scan-cache gives by reading the labels).",
    )
    def manifest(context: dg.AssetExecutionContext,
                 backend: Backend) -> dg.MaterializeResult:
        outcome = _run_step(
            context, backend, MANIFEST,
            hint=". Build the cache first: select 'npz_windows,dataset_index,manifest' (or the "
                 "split_cache_job)")
        return _materialization(
            outcome, path=f"{backend.cache_dir(context.partition_key)}/{MANIFEST_NAME}")

    @dg.asset(
        partitions_def=split_partitions,
        deps=[manifest],
        code_version=balance_version,
        group_name=GROUP,
        kinds={"json"},
        automation_condition=dg.AutomationCondition.eager(),
        description="`<cache>/<split>/balanced_dataset.json`: the SeizureTransformer recipe (all "
                    "partial windows, 0.3x full, 2.5x background, seeded) with its exact "
                    "seizure_ratio and pos_weight.",
    )
    def balanced_dataset(context: dg.AssetExecutionContext,
                         backend: Backend) -> dg.MaterializeResult:
        outcome = _run_step(context, backend, BALANCED_DATASET)
        return _materialization(
            outcome, path=f"{backend.cache_dir(context.partition_key)}/{BALANCED_NAME}")

    return [npz_windows, dataset_index, manifest, balanced_dataset]
