"""The asset graph: raw drops -> npz_windows -> dataset_index -> manifest -> balanced_dataset.

Every asset is a thin call into :mod:`eeg_assets.lib`; this module adds partitions, versions,
metadata and automation.
"""

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.discovery import listing_for
from eeg_assets.lib.cache.ledger import BUILT, FAILED, QUARANTINED, FileFingerprint, Ledger
from eeg_assets.lib.cache.npzio import open_member
from eeg_assets.lib.dataset.balanced import (
    compose_split,
    dataset_log_lines,
    write_balanced,
)
from eeg_assets.lib.dataset.index import (
    INDEX_NAME,
    DatasetError,
    collect_facts,
    update_index,
)
from eeg_assets.lib.dataset.manifest import (
    FULL,
    MANIFEST_NAME,
    NO_SEIZURE,
    PARTIAL,
    Manifest,
    category_counts,
    manifest_warnings,
    update_manifest,
)
from eeg_assets.lib.dataset.splits import patients_of
from eeg_assets.lib.files import content_version
from eeg_assets.lib.plots import category_counts_png, window_png
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.orchestration.raw import GROUP, ensure_sample_corpus, raw_edf_recordings
from eeg_assets.settings import Settings

__all__ = ["GROUP", "build_cache_assets", "ensure_sample_corpus", "raw_edf_recordings"]


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


def _ledger_data_version(cache_dir: Path) -> str:
    rows = sorted((e.source, e.status, e.input_fingerprint, e.npz_fingerprint)
                  for e in Ledger(cache_dir).entries().values())
    return _version(rows)


def _example_window_png(cache_dir: Path, manifest: Manifest, config) -> bytes | None:
    """The first window with a seizure edge (most telling), else the first window."""
    for category in (PARTIAL, FULL, NO_SEIZURE):
        if manifest[category]:
            ref = manifest[category][0]
            windows = open_member(cache_dir / ref["cache_file"], "windows")
            labels = open_member(cache_dir / ref["cache_file"], "labels")
            i = ref["window_idx"]
            return window_png(np.asarray(windows[i]), np.asarray(labels[i]), config.channels,
                              config.target_fs, f"{ref['cache_file']} window {i} ({category})")
    return None


def build_cache_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The cache chain's assets, their code versions and freshness computed from ``settings``.

    The assets read their paths from the ``settings`` resource at run time; ``build_defs`` binds
    that resource to the same object, so code versions and outputs always agree.
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
                    "(n,15360), float32, uncompressed. Incremental: only new or changed recordings "
                    "are built, in a process pool; bad recordings are quarantined with a reason.",
    )
    def npz_windows(context: dg.AssetExecutionContext,
            settings: dg.ResourceParam[Settings]) -> dg.MaterializeResult:
        split = context.partition_key
        ensure_sample_corpus(settings, context.log)
        raw_dir, cache_dir = settings.raw_dir(split), settings.cache_dir(split)
        # the listing raw_edf_recordings recorded when this run observed the split
        listing, _ = listing_for(raw_dir, cache_dir, run_tag=context.run.run_id)
        report = build_split(
            raw_dir, cache_dir, split=split, config=settings.cache_config(),
            workers=settings.workers or None, progress=None, log=context.log.info,
            run_tag=context.run.run_id, listing=listing,
        )
        for entry in report.quarantined:
            context.log.warning(f"quarantined {entry.source}: {entry.reason}")
        entries = Ledger(report.cache_dir).entries().values()
        built = [e for e in entries if e.status == BUILT]
        quarantine_rows = [
            dg.TableRecord({"recording": e.source, "status": e.status, "reason": e.reason})
            for e in report.quarantined + report.too_short
        ]
        return dg.MaterializeResult(
            data_version=dg.DataVersion(_ledger_data_version(report.cache_dir)),
            metadata={
                "recordings": report.recordings,
                "files_built": len(report.built),
                "files_skipped": report.skipped,
                "files_quarantined": sum(e.status == QUARANTINED for e in report.quarantined),
                "files_failed_to_write": sum(e.status == FAILED for e in report.quarantined),
                "files_too_short": len(report.too_short),
                "files_removed": len(report.removed),
                "npz_files": len(built),
                "windows": sum(e.n_windows for e in built),
                "windows_built_now": report.windows_built,
                "eeg_hours_built_now": round(report.eeg_seconds_built / 3600, 3),
                "build_seconds": round(report.seconds, 2),
                # the NPZs as the build found or wrote them (sizes of their fingerprints)
                "bytes_on_disk": dg.MetadataValue.int(sum(
                    FileFingerprint.parse(e.npz_fingerprint).size for e in built)),
                "cache_dir": dg.MetadataValue.path(str(report.cache_dir)),
                "raw_dir": dg.MetadataValue.path(str(raw_dir)),
                "config_version": report.config_version,
                "quarantined": dg.MetadataValue.table(
                    quarantine_rows,
                    schema=dg.TableSchema(columns=[
                        dg.TableColumn("recording", "string"), dg.TableColumn("status", "string"),
                        dg.TableColumn("reason", "string")]),
                ),
            },
        )

    @dg.asset(
        partitions_def=split_partitions,
        deps=[npz_windows],
        code_version=cache_version,
        group_name=GROUP,
        kinds={"json"},
        automation_condition=dg.AutomationCondition.eager(),
        description="`<cache>/<split>/_dataset_index.json`: files and window_counts (the "
                    "seed's keys) with per-file fingerprints and config version, from the "
                    "build ledger.",
    )
    def dataset_index(context: dg.AssetExecutionContext,
            settings: dg.ResourceParam[Settings]) -> dg.MaterializeResult:
        cache_dir = settings.cache_dir(context.partition_key)
        index = update_index(cache_dir, settings.cache_config())
        path = cache_dir / INDEX_NAME
        return dg.MaterializeResult(
            data_version=dg.DataVersion(content_version(path)),
            metadata={
                "files": len(index.files),
                "windows": index.total_windows,
                "patients": len(patients_of(index)),
                "path": dg.MetadataValue.path(str(path)),
            },
        )

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
            settings: dg.ResourceParam[Settings]) -> dg.MaterializeResult:
        cache_dir = settings.cache_dir(context.partition_key)
        config = settings.cache_config()
        try:
            facts = collect_facts(cache_dir, config)
            for warning in manifest_warnings(facts):
                context.log.warning(warning)
            result = update_manifest(cache_dir, config, facts)
        except DatasetError as exc:
            raise dg.Failure(
                f"no manifest for {cache_dir}: {exc}. Build the cache first: select "
                "'npz_windows,dataset_index,manifest' (or the split_cache_job)") from exc
        counts = category_counts(result)
        total = sum(counts.values())
        seizure = counts[PARTIAL] + counts[FULL]
        path = cache_dir / MANIFEST_NAME
        metadata = {
            **{f"windows_{name}": n for name, n in counts.items()},
            "windows": total,
            "seizure_fraction_of_windows": round(seizure / total, 4) if total else 0.0,
            "path": dg.MetadataValue.path(str(path)),
            "categories": png_markdown(
                category_counts_png(counts, f"{context.partition_key} windows"),
                "windows per category"),
        }
        example = _example_window_png(cache_dir, result, config)
        if example is not None:
            metadata["example_window"] = png_markdown(example, "example window with seizure mask")
        return dg.MaterializeResult(data_version=dg.DataVersion(content_version(path)),
                                    metadata=metadata)

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
            settings: dg.ResourceParam[Settings]) -> dg.MaterializeResult:
        cache_dir = settings.cache_dir(context.partition_key)
        composition = compose_split(cache_dir, settings.balance_config())
        for line in dataset_log_lines(composition):
            context.log.info(line)
        path = write_balanced(cache_dir, composition, settings.balance_config())
        return dg.MaterializeResult(
            data_version=dg.DataVersion(content_version(path)),
            metadata={
                "windows": composition.total,
                "partial_seizure": len(composition.partial),
                "full_seizure": len(composition.full),
                "no_seizure": len(composition.background),
                "seizure_ratio": composition.seizure_ratio,
                "pos_weight": composition.pos_weight,
                "seed": settings.balance_seed,
                "path": dg.MetadataValue.path(str(path)),
                "composition": png_markdown(category_counts_png(
                    {PARTIAL: len(composition.partial), FULL: len(composition.full),
                     NO_SEIZURE: len(composition.background)},
                    f"balanced {context.partition_key}: ratio {composition.seizure_ratio:.1%}"),
                    "balanced composition"),
            },
        )

    return [npz_windows, dataset_index, manifest, balanced_dataset]
