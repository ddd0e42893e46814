"""The asset graph: raw drops -> npz_windows -> dataset_index -> manifest -> balanced_dataset.

Every asset is a thin call into :mod:`eeg_assets.lib`; this module adds partitions, versions,
metadata and automation.
"""

import base64
import hashlib
import json
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np

from eeg_assets.lib.cache.build import build_split, format_report
from eeg_assets.lib.cache.ledger import BUILT, FAILED, QUARANTINED, Ledger
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
    name_list,
    update_index,
)
from eeg_assets.lib.dataset.manifest import (
    FULL,
    MANIFEST_NAME,
    NO_SEIZURE,
    PARTIAL,
    ManifestTable,
    manifest_warnings,
    update_manifest_table,
)
from eeg_assets.lib.dataset.splits import patients_of
from eeg_assets.lib.files import content_version
from eeg_assets.lib.plots import category_counts_png, window_png
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.settings import Settings

GROUP = "tusz_cache"
#: Files named in a run-log line before "and N more".
MAX_NAMED = 20


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


def ensure_sample_corpus(settings: Settings, log) -> None:
    """Write the embedded sample corpus on first use when the default raw root is missing."""
    raw_root = Path(settings.raw_root)
    if raw_root.exists() or not settings.make_sample_if_missing:
        return
    from eeg_assets.synthetic.sample_corpus import write_sample_corpus

    corpus_root = raw_root.parent
    corpus_root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".sample_corpus.", dir=corpus_root.parent))
    try:
        write_sample_corpus(staging)
        try:
            staging.rename(corpus_root)  # atomic: concurrent partitions never see half a corpus
            log.info(f"wrote the sample corpus to {corpus_root}")
        except OSError:
            pass  # another partition's run won the race; its corpus is identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)


raw_edf_recordings = dg.AssetSpec(
    "raw_edf_recordings",
    description="TUSZ EDF recordings with their .csv_bi/.csv annotations, as dropped into "
                "EEG_ASSETS_RAW_ROOT/<train|dev|eval>. Watched by the raw_edf_drop_sensor.",
    partitions_def=split_partitions,
    group_name=GROUP,
    kinds={"edf"},
)


def _dir_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())


def _ledger_data_version(cache_dir: Path) -> str:
    rows = sorted((e.source, e.status, e.input_fingerprint, e.npz_fingerprint)
                  for e in Ledger(cache_dir).entries().values())
    return _version(rows)


def _example_window_png(cache_dir: Path, table: ManifestTable, config) -> bytes | None:
    """The first window with a seizure edge (most telling), else the first window."""
    for category in (PARTIAL, FULL, NO_SEIZURE):
        first = table.first(category)
        if first is not None:
            name, i = first
            windows = open_member(cache_dir / name, "windows")
            labels = open_member(cache_dir / name, "labels")
            return window_png(np.asarray(windows[i]), np.asarray(labels[i]), config.channels,
                              config.target_fs, f"{name} window {i} ({category})")
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
        report = build_split(
            settings.raw_dir(split), settings.cache_dir(split), split=split,
            config=settings.cache_config(), workers=settings.workers or None, progress=None,
            log=context.log.info,
        )
        # The same summary build-cache prints, at INFO in the run log, with the files named.
        context.log.info(format_report(report))
        if report.built:
            context.log.info("built " + name_list([e.source for e in report.built],
                                                  shown=MAX_NAMED))
        for entry in report.quarantined:
            context.log.warning(f"quarantined {entry.source}: {entry.reason}")
        warning_rows = [dg.TableRecord({"recording": e.source, "warning": warning})
                        for e in report.warned for warning in e.warnings]
        for row in warning_rows:
            context.log.warning(f"built with a warning {row.data['recording']}: "
                                f"{row.data['warning']}")
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
                "npz_gb_on_disk": round(_dir_bytes(report.cache_dir, "*.npz") / 1e9, 3),
                "cache_dir": dg.MetadataValue.path(str(report.cache_dir)),
                "raw_dir": dg.MetadataValue.path(str(settings.raw_dir(split))),
                "config_version": report.config_version,
                "quarantined": dg.MetadataValue.table(
                    quarantine_rows,
                    schema=dg.TableSchema(columns=[
                        dg.TableColumn("recording", "string"), dg.TableColumn("status", "string"),
                        dg.TableColumn("reason", "string")]),
                ),
                "files_with_warnings": len(report.warned),
                "warnings": dg.MetadataValue.table(
                    warning_rows,
                    schema=dg.TableSchema(columns=[
                        dg.TableColumn("recording", "string"),
                        dg.TableColumn("warning", "string")]),
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
            table = update_manifest_table(cache_dir, config, facts)
        except DatasetError as exc:
            raise dg.Failure(
                f"no manifest for {cache_dir}: {exc}. Build the cache first: select "
                "'npz_windows,dataset_index,manifest' (or the split_cache_job)") from exc
        counts = table.counts()
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
        example = _example_window_png(cache_dir, table, config)
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
        composition = compose_split(cache_dir, settings.balance_config(),
                                    settings.cache_config())
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
