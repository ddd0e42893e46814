"""The asset graph: raw drops -> npz_windows -> dataset_index -> manifest -> balanced_dataset.

Every asset is a thin call into :mod:`eeg_assets.lib`; this module adds partitions, versions,
metadata and automation.
"""

import base64
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import dagster as dg

from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.orchestration.resources import EegAssetsConfig, freshness_window
from eeg_assets.lib.build import build_split
from eeg_assets.lib.ledger import BUILT, Ledger

CONFIG_AT_LOAD = EegAssetsConfig.from_env()
GROUP = "tusz_cache"


def _version(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


CACHE_CODE_VERSION = _version("cache", CONFIG_AT_LOAD.cache_config().version())
BALANCE_CODE_VERSION = _version(CACHE_CODE_VERSION, CONFIG_AT_LOAD.balance_config().version())


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """Inline a PNG in metadata (the UI renders markdown images)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def ensure_sample_corpus(config: EegAssetsConfig, log) -> None:
    """Write the embedded sample corpus on first use when the default raw root is missing."""
    raw_root = Path(config.raw_root)
    if raw_root.exists() or not config.make_sample_if_missing:
        return
    from eeg_assets.lib.sample_corpus import write_sample_corpus

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


@dg.asset(
    partitions_def=split_partitions,
    deps=[raw_edf_recordings],
    code_version=CACHE_CODE_VERSION,
    group_name=GROUP,
    kinds={"numpy"},
    description="<cache>/<split>/<edf_stem>_windows.npz: windows (n,19,15360) and labels "
                "(n,15360), float32, uncompressed. Incremental: only new or changed recordings "
                "are built, in a process pool; bad recordings are quarantined with a reason.",
)
def npz_windows(context: dg.AssetExecutionContext, eeg_config: EegAssetsConfig) -> dg.MaterializeResult:
    split = context.partition_key
    ensure_sample_corpus(eeg_config, context.log)
    report = build_split(
        eeg_config.raw_dir(split), eeg_config.cache_dir(split), split=split,
        config=eeg_config.cache_config(), workers=eeg_config.workers or None, progress=None,
        log=context.log.info,
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
            "files_quarantined": len(report.quarantined),
            "files_too_short": len(report.too_short),
            "files_removed": len(report.removed),
            "npz_files": len(built),
            "windows": sum(e.n_windows for e in built),
            "windows_built_now": report.windows_built,
            "eeg_hours_built_now": round(report.eeg_seconds_built / 3600, 3),
            "build_seconds": round(report.seconds, 2),
            "bytes_on_disk": dg.MetadataValue.int(_dir_bytes(report.cache_dir, "*.npz")),
            "cache_dir": dg.MetadataValue.path(str(report.cache_dir)),
            "raw_dir": dg.MetadataValue.path(str(eeg_config.raw_dir(split))),
            "config_version": report.config_version,
            "quarantined": dg.MetadataValue.table(
                quarantine_rows,
                schema=dg.TableSchema(columns=[
                    dg.TableColumn("recording", "string"), dg.TableColumn("status", "string"),
                    dg.TableColumn("reason", "string")]),
            ),
        },
    )
