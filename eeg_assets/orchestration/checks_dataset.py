"""Asset checks on dataset_index, manifest and balanced_dataset.

The ones that would poison training (leaked patients, a stale or empty manifest, no seizure
windows, a wrong balanced composition) are blocking: a failure stops downstream assets in the
same run.
"""

import math

import dagster as dg

from eeg_assets.lib.cache.discovery import listing_for
from eeg_assets.lib.cache.npzio import NpzFormatError
from eeg_assets.lib.dataset.balanced import compose_split, pos_weight, read_balanced
from eeg_assets.lib.dataset.index import DatasetError, collect_facts, index_staleness, read_index
from eeg_assets.lib.dataset.manifest import (
    FULL,
    MANIFEST_NAME,
    PARTIAL,
    check_manifest,
    count_categories,
)
from eeg_assets.lib.dataset.splits import find_leaks, patient_id, patients_of
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.settings import Settings

MAX_LISTED = 20
#: A check reports these as a failure with their message instead of erroring.
CACHE_ERRORS = (DatasetError, NpzFormatError)


def _failed(reason: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, metadata={"reason": reason, **metadata})


@dg.asset_check(asset="dataset_index", blocking=True, partitions_def=split_partitions,
                description="_dataset_index.json exists and lists exactly the current NPZs with "
                            "their window counts, fingerprints and config version.")
def index_matches_npz(context: dg.AssetCheckExecutionContext,
                      settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    cache_dir = settings.cache_dir(context.partition_key)
    try:
        reason = index_staleness(cache_dir, settings.cache_config())
    except CACHE_ERRORS as exc:
        reason = str(exc)
    if reason:
        return _failed(reason)
    index = read_index(cache_dir)
    return dg.AssetCheckResult(passed=True, metadata={"files": len(index.files),
                                                      "windows": index.total_windows})


def _raw_patients(settings: Settings) -> tuple[dict[str, frozenset[str]], dict[str, str]]:
    """Patients of each split's raw folder, and where each split's recordings came from.

    A split's recordings are those its last build listed (recorded in its cache folder); only a
    split that was never built has its raw folder walked.
    """
    patients, origins = {}, {}
    for split in settings.split_folders:
        listing, origins[split] = listing_for(settings.raw_dir(split), settings.cache_dir(split))
        patients[split] = frozenset(patient_id(r.path.name) for r in listing.recordings)
    return patients, origins


@dg.asset_check(asset="dataset_index", blocking=True, partitions_def=split_partitions,
                description="OFFICIAL TUSZ SPLITS: no patient of this split appears in another "
                            "split's raw folder or cache index (patient = first '_' field).")
def patient_disjointness(context: dg.AssetCheckExecutionContext,
                         settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    split = context.partition_key
    raw, origins = _raw_patients(settings)
    cached = {}
    for other in settings.split_folders:
        try:
            cached[other] = patients_of(read_index(settings.cache_dir(other)))
        except DatasetError:
            cached[other] = frozenset()
    patients = {s: raw[s] | cached[s] for s in settings.split_folders}
    all_leaks = find_leaks(patients)
    leaks = {patient: splits for patient, splits in all_leaks.items() if split in splits}
    metadata = {**{f"patients_{s}": len(patients[s]) for s in patients},
                **{f"raw_recordings_{s}": origin for s, origin in origins.items()}}
    if leaks:
        described = ", ".join(f"{patient} ({', '.join(splits)})"
                              for patient, splits in list(leaks.items())[:MAX_LISTED])
        return _failed(f"patient leakage from {split}: {len(leaks)} patient(s) also in another "
                       f"split: {described}", **metadata)
    context.log.info("OFFICIAL TUSZ SPLITS: " + ", ".join(
        f"{s} {len(p)} patients" for s, p in patients.items()))
    if not all_leaks:
        context.log.info("✅ PATIENT DISJOINTNESS VERIFIED")
    return dg.AssetCheckResult(passed=True, metadata=metadata)


@dg.asset_check(asset="manifest", blocking=True, partitions_def=split_partitions,
                description="manifest.json exists, is non-empty, covers exactly the labelled NPZs "
                            "with their current content and config version (not stale).")
def manifest_current(context: dg.AssetCheckExecutionContext,
                     settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    cache_dir = settings.cache_dir(context.partition_key)
    try:
        result = check_manifest(cache_dir, settings.cache_config())
    except CACHE_ERRORS as exc:
        return _failed(str(exc))
    if result.reason:
        return _failed(result.reason)
    # Current: the stored manifest holds exactly these counts (the 21 MB JSON is not parsed).
    return dg.AssetCheckResult(passed=True, metadata={**result.counts,
                                                      "path": str(cache_dir / MANIFEST_NAME)})


@dg.asset_check(asset="manifest", blocking=True, partitions_def=split_partitions,
                description="The split has seizure windows (partial or full) to train on, "
                            "counted from the recorded per-file facts the manifest is made of "
                            "(manifest_current checks that the file holds them).")
def seizure_windows_present(context: dg.AssetCheckExecutionContext,
                            settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    cache_dir = settings.cache_dir(context.partition_key)
    config = settings.cache_config()
    try:
        counts = count_categories(collect_facts(cache_dir, config).files, config)
    except CACHE_ERRORS as exc:
        return _failed(str(exc))
    seizure = counts[PARTIAL] + counts[FULL]
    return dg.AssetCheckResult(passed=seizure > 0, metadata={
        "seizure_windows": seizure, **counts,
        **({} if seizure else {"reason": "no partial or full seizure windows in the manifest"})})


@dg.asset_check(asset="balanced_dataset", blocking=True, partitions_def=split_partitions,
                description="The stored composition is the recipe applied to the current manifest "
                            "(same windows for the seed, composed from its current version) with "
                            "the exact seizure_ratio and pos_weight = sqrt((1 - r) / r).")
def balanced_matches_recipe(context: dg.AssetCheckExecutionContext,
                            settings: dg.ResourceParam[Settings]) -> dg.AssetCheckResult:
    cache_dir = settings.cache_dir(context.partition_key)
    try:
        stored = read_balanced(cache_dir)
        expected = compose_split(cache_dir, settings.balance_config(), settings.cache_config())
    except CACHE_ERRORS as exc:
        return _failed(str(exc))
    problems = []
    if stored.manifest_version != expected.manifest_version:
        problems.append(f"composed from manifest version {stored.manifest_version}, "
                        f"{MANIFEST_NAME} is now {expected.manifest_version}")
    if stored.windows != expected.windows:
        problems.append("stored windows differ from the recipe applied to the current manifest")
    ratio = expected.seizure_ratio
    if stored.seizure_ratio != ratio:
        problems.append(f"seizure_ratio {stored.seizure_ratio} != exact {ratio}")
    if not math.isclose(stored.pos_weight, pos_weight(ratio), rel_tol=1e-12):
        problems.append(f"pos_weight {stored.pos_weight} != sqrt((1-r)/r) = {pos_weight(ratio)}")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"windows": expected.total, "seizure_ratio": ratio,
                  "pos_weight": pos_weight(ratio),
                  **({"reason": "; ".join(problems)} if problems else {})})

