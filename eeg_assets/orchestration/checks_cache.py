"""Asset checks on npz_windows: the verification checklist of docs/cache-format.md for the NPZ
files.

Every check of the chain is a thin shell over :mod:`eeg_assets.lib.dataset.chain_checks`: it
builds a :class:`~eeg_assets.lib.dataset.chain_checks.CheckRequest` and lets the configured
backend run it where the cache is (this machine, or a Modal container on the volumes).
"""

import dagster as dg

from eeg_assets.lib.dataset.chain_checks import ERROR, CheckRequest
from eeg_assets.orchestration.assets import _metadata_value
from eeg_assets.orchestration.backend import Backend
from eeg_assets.orchestration.partitions import split_partitions

#: Run tag that asks ``npz_schema`` to open every NPZ (e.g. after restoring a cache from backup).
VERIFY_TAG = "eeg_assets/verify"
VERIFY_ALL = "all"
SEVERITIES = {ERROR: dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def check_metadata_value(value) -> dg.MetadataValue:
    """A check's metadata value; a number as text (4 significant digits for a float).

    A check's figures are facts about one split (files, windows, patients). The check page of
    Dagster 1.13 plots every numeric entry as one time series over all its evaluations, the
    partitions joined (train, val and eval in turn, so 11 -> 6 -> 4 files would read as a
    decline, and constant zeros as a flat line), and has no per-partition plot; as text they are
    listed per partition (the check's Partitions tab) and plotted nowhere. The assets' own
    materializations keep their numbers, which the asset's Plots tab shows per partition.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _metadata_value(value)
    return dg.MetadataValue.text(f"{value:.4g}" if isinstance(value, float) else str(value))


def run_chain_check(context: dg.AssetCheckExecutionContext, backend: Backend, check: str,
                    **request) -> dg.AssetCheckResult:
    """Run library check ``check`` on the partition's split where the backend keeps the cache."""
    settings = backend.settings
    # run_tag: the listing and NPZs npz_windows recorded in this run
    outcome = backend.run_check(context, CheckRequest(
        check=check, split=context.partition_key, split_folders=dict(settings.split_folders),
        cache=settings.cache_config(), balance=settings.balance_config(),
        run_tag=context.run.run_id, **request))
    return dg.AssetCheckResult(
        passed=outcome.passed, severity=SEVERITIES[outcome.severity],
        metadata={name: check_metadata_value(value) for name, value in outcome.metadata.items()})


@dg.asset_check(asset="npz_windows", blocking=True, partitions_def=split_partitions,
                description="Every NPZ has windows (n,19,15360) and labels (n,15360), float32, "
                            "uncompressed, finite, within the clip range, binary labels, and "
                            "matches what build-cache recorded. Files are opened once per content "
                            "(new or rebuilt ones, plus a 0.2% random sample of the others); run "
                            f"with the tag {VERIFY_TAG}={VERIFY_ALL} to open every file.")
def npz_schema(context: dg.AssetCheckExecutionContext, backend: Backend) -> dg.AssetCheckResult:
    requested = context.run.tags.get(VERIFY_TAG)
    if requested not in (None, VERIFY_ALL):
        raise dg.Failure(f"run tag {VERIFY_TAG}={requested!r}: the only value is {VERIFY_ALL!r} "
                         "(open every NPZ); without the tag new and rebuilt files and a sample "
                         "are verified")
    # Seeded by the run: a retried check samples the same files, another run other files.
    return run_chain_check(context, backend, "npz_schema", verify_all=requested == VERIFY_ALL,
                           seed=f"{context.run.run_id}/{context.partition_key}")


@dg.asset_check(asset="npz_windows", partitions_def=split_partitions,
                description="Every raw recording is accounted for: an NPZ, too short, or "
                            "quarantined with a reason; none unexplained.")
def npz_count_matches_recordings(context: dg.AssetCheckExecutionContext,
                                 backend: Backend) -> dg.AssetCheckResult:
    return run_chain_check(context, backend, "npz_count_matches_recordings")
