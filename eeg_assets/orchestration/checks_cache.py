"""Asset checks on npz_windows: the seed's verification checklist for the NPZ files."""

import dagster as dg

from eeg_assets.lib.cache.discovery import listing_for
from eeg_assets.lib.cache.ledger import BUILT, FAILED, QUARANTINED, TOO_SHORT, Ledger
from eeg_assets.lib.cache.verify import verify_split
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.settings import Settings

MAX_LISTED = 20


#: Run tag that asks ``npz_schema`` to open every NPZ (e.g. after restoring a cache from backup).
VERIFY_TAG = "eeg_assets/verify"
VERIFY_ALL = "all"


def _names(names: list[str]) -> dg.MetadataValue:
    shown = "\n".join(f"- {n}" for n in names[:MAX_LISTED])
    more = f"\n- ... and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return dg.MetadataValue.md(shown + more if names else "none")


@dg.asset_check(asset="npz_windows", blocking=True, partitions_def=split_partitions,
                description="Every NPZ has windows (n,19,15360) and labels (n,15360), float32, "
                            "uncompressed, finite, within the clip range, binary labels, and "
                            "matches what build-cache recorded. Files are opened once per content "
                            "(new or rebuilt ones, plus a 0.2% random sample of the others); run "
                            f"with the tag {VERIFY_TAG}={VERIFY_ALL} to open every file.")
def npz_schema(context: dg.AssetCheckExecutionContext, settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    split = context.partition_key
    requested = context.run.tags.get(VERIFY_TAG)
    if requested not in (None, VERIFY_ALL):
        raise dg.Failure(f"run tag {VERIFY_TAG}={requested!r}: the only value is {VERIFY_ALL!r} "
                         "(open every NPZ); without the tag new and rebuilt files and a sample "
                         "are verified")
    verify_all = requested == VERIFY_ALL
    # Seeded by the run: a retried check samples the same files, another run other files.
    report = verify_split(settings.cache_dir(split), settings.cache_config(),
                          verify_all=verify_all, seed=f"{context.run.run_id}/{split}")
    return dg.AssetCheckResult(
        passed=report.passed,
        metadata={
            "files": report.files,
            "files_verified": len(report.verified),
            "files_sampled": len(report.sampled),
            "verify_all": verify_all,
            "sampled": _names(report.sampled),
            "windows_checked": report.windows_checked,
            "problems": len(report.problems),
            "first_problems": dg.MetadataValue.md(
                "\n".join(f"- {p}" for p in report.problems[:MAX_LISTED]) or "none"),
        },
    )


@dg.asset_check(asset="npz_windows", partitions_def=split_partitions,
                description="Every raw recording is accounted for: an NPZ, too short, or "
                            "quarantined with a reason; none unexplained.")
def npz_count_matches_recordings(context: dg.AssetCheckExecutionContext,
                                 settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    split = context.partition_key
    # The listing npz_windows built from in this run; walked again only for a check run alone.
    listing, origin = listing_for(settings.raw_dir(split), settings.cache_dir(split),
                                  run_tag=context.run.run_id)
    sources, ignored = listing.sources, listing.ignored
    entries = Ledger(settings.cache_dir(split)).entries()
    by_status = {s: [e for e in entries.values() if e.status == s and e.source in sources]
                 for s in (BUILT, TOO_SHORT, QUARANTINED, FAILED)}
    unexplained = sorted(sources - set(entries))
    return dg.AssetCheckResult(
        passed=not unexplained and not by_status[FAILED],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "recordings": len(sources),
            "npz_files": len(by_status[BUILT]),
            "too_short": len(by_status[TOO_SHORT]),
            "quarantined": len(by_status[QUARANTINED]),
            "failed_writes": len(by_status[FAILED]),
            "not_built_yet": len(unexplained),
            "ignored_paths": len(ignored),
            "recordings_from": origin,
            "explanations": dg.MetadataValue.md("\n".join(
                [f"- not built yet: {s}" for s in unexplained[:MAX_LISTED]]
                + [f"- {e.status}: {e.source}: {e.reason}"
                   for e in (by_status[QUARANTINED] + by_status[FAILED] + by_status[TOO_SHORT])[:MAX_LISTED]]
                + [f"- ignored: {line}" for line in ignored[:MAX_LISTED]]) or "all built"),
        },
    )
