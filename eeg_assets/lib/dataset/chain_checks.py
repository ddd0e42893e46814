"""The cache chain's checks as library functions that return plain facts, wherever they run.

One function per asset check (:data:`CHECKS`); :func:`run_check` runs the one a
:class:`CheckRequest` names on ``raw_root`` and ``cache_root`` and returns a
:class:`CheckOutcome`: passed or not, its severity, and metadata as JSON values (the kinds of
:mod:`eeg_assets.lib.dataset.chain`, plus markdown lists, :func:`md_value`). The Dagster checks
turn an outcome into an ``AssetCheckResult``; the local backend runs :func:`run_check` in the
Dagster process, the Modal backend in a container on the volumes
(:mod:`eeg_assets.remote.cache_entry`), so a check verifies the files where the chain wrote them.

Paths are not facts of a check: the caller knows where it ran and adds them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eeg_assets.lib.cache.discovery import listing_for, recorded_npz
from eeg_assets.lib.cache.ledger import (
    BUILT,
    FAILED,
    QUARANTINED,
    TOO_SHORT,
    Ledger,
    LedgerError,
)
from eeg_assets.lib.cache.npzio import NpzFormatError
from eeg_assets.lib.cache.verify import verify_split
from eeg_assets.lib.config import DEFAULT_BALANCE, DEFAULT_CONFIG, BalanceConfig, CacheConfig
from eeg_assets.lib.dataset.balanced import compose_split, pos_weight, read_balanced
from eeg_assets.lib.dataset.chain import Log, run_facts
from eeg_assets.lib.dataset.index import DatasetError, SplitFacts, index_staleness, read_index
from eeg_assets.lib.dataset.manifest import (
    FULL,
    MANIFEST_NAME,
    PARTIAL,
    check_manifest,
    count_categories,
    manifest_staleness,
)
from eeg_assets.lib.dataset.splits import find_leaks, patient_id, patients_of

#: Names listed in a check's markdown before "... and N more".
MAX_LISTED = 20
#: A check reports these as a failure with their message instead of erroring.
CACHE_ERRORS = (DatasetError, NpzFormatError, LedgerError)
ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class CheckRequest:
    """What a check needs besides the two roots.

    ``split_folders`` maps every split to its raw folder (patient disjointness looks at all of
    them); ``run_tag`` (a Dagster run id) selects the listing (and NPZs) this run's build
    recorded;
    ``verify_all`` and ``seed`` are ``npz_schema``'s: open every NPZ, or which sample to open.
    """

    check: str
    split: str
    split_folders: dict[str, str]
    cache: CacheConfig = DEFAULT_CONFIG
    balance: BalanceConfig = DEFAULT_BALANCE
    run_tag: str | None = None
    verify_all: bool = False
    seed: str = ""

    def __post_init__(self):
        if self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r} (one of {', '.join(CHECKS)})")

    def to_dict(self) -> dict:
        return {**asdict(self), "cache": self.cache.to_dict(), "balance": asdict(self.balance)}

    @classmethod
    def from_dict(cls, data: dict) -> CheckRequest:
        return cls(**{**data, "cache": CacheConfig.from_dict(data["cache"]),
                      "balance": BalanceConfig(**data["balance"])})


@dataclass
class CheckOutcome:
    passed: bool
    metadata: dict = field(default_factory=dict)
    #: ``ERROR`` or ``WARN``: how a failure shows (a blocking check blocks on either).
    severity: str = ERROR

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CheckOutcome:
        return cls(**data)


def md_value(text: str) -> dict:
    """A markdown text (a list a UI renders)."""
    return {"kind": "md", "text": text}


def _listed(lines: list[str], empty: str) -> dict:
    more = [f"... and {len(lines) - MAX_LISTED} more"] if len(lines) > MAX_LISTED else []
    return md_value("\n".join(f"- {line}" for line in lines[:MAX_LISTED] + more) or empty)


def _failed(reason: str, **metadata) -> CheckOutcome:
    return CheckOutcome(False, {"reason": reason, **metadata})


def run_check(request: CheckRequest, raw_root: Path, cache_root: Path, log: Log) -> CheckOutcome:
    """Run ``request.check`` on ``cache_root/<split>`` (raw recordings under ``raw_root``).

    Data that fails a check is a failed :class:`CheckOutcome` with the reason; only a check that
    cannot run at all (a bug, an unreadable disk) raises.
    """
    return CHECKS[request.check](request, Path(raw_root), Path(cache_root), log)


def _facts(request: CheckRequest, cache_dir: Path) -> SplitFacts:
    return run_facts(cache_dir, request.cache, request.run_tag)


def npz_schema(request, raw_root, cache_root, log) -> CheckOutcome:
    cache_dir = cache_root / request.split
    report = verify_split(cache_dir, request.cache, verify_all=request.verify_all,
                          seed=request.seed, recorded=recorded_npz(cache_dir, request.run_tag))
    return CheckOutcome(report.passed, {
        "files": report.files,
        "files_verified": len(report.verified),
        "files_sampled": len(report.sampled),
        "verify_all": request.verify_all,
        "sampled": _listed(list(report.sampled), "none"),
        "windows_checked": report.windows_checked,
        "problems": len(report.problems),
        "first_problems": _listed(report.problems, "none"),
    })


def npz_count_matches_recordings(request, raw_root, cache_root, log) -> CheckOutcome:
    split = request.split
    # The listing npz_windows built from in this run; walked again only for a check run alone.
    listing, origin = listing_for(raw_root / request.split_folders[split], cache_root / split,
                                  run_tag=request.run_tag)
    sources, ignored = listing.sources, listing.ignored
    entries = Ledger(cache_root / split).entries()
    by_status = {s: [e for e in entries.values() if e.status == s and e.source in sources]
                 for s in (BUILT, TOO_SHORT, QUARANTINED, FAILED)}
    unexplained = sorted(sources - set(entries))
    explained = by_status[QUARANTINED] + by_status[FAILED] + by_status[TOO_SHORT]
    lines = ([f"not built yet: {s}" for s in unexplained[:MAX_LISTED]]
             + [f"{e.status}: {e.source}: {e.reason}" for e in explained[:MAX_LISTED]]
             + [f"ignored: {line}" for line in ignored[:MAX_LISTED]])
    return CheckOutcome(not unexplained and not by_status[FAILED], severity=WARN, metadata={
        "recordings": len(sources),
        "npz_files": len(by_status[BUILT]),
        "too_short": len(by_status[TOO_SHORT]),
        "quarantined": len(by_status[QUARANTINED]),
        "failed_writes": len(by_status[FAILED]),
        "not_built_yet": len(unexplained),
        "ignored_paths": len(ignored),
        "recordings_from": origin,
        "explanations": md_value("\n".join(f"- {line}" for line in lines) or "all built"),
    })


def index_matches_npz(request, raw_root, cache_root, log) -> CheckOutcome:
    cache_dir = cache_root / request.split
    try:
        reason = index_staleness(cache_dir, request.cache, _facts(request, cache_dir))
    except CACHE_ERRORS as exc:
        reason = str(exc)
    if reason:
        return _failed(reason)
    index = read_index(cache_dir)
    return CheckOutcome(True, {"files": len(index.files), "windows": index.total_windows})


def patient_disjointness(request, raw_root, cache_root, log) -> CheckOutcome:
    """No patient of the split in another split's raw folder or cache index.

    A split's recordings are those its last build listed (recorded in its cache folder); only a
    split that was never built has its raw folder walked.
    """
    raw, origins, cached = {}, {}, {}
    for split, folder in request.split_folders.items():
        listing, origins[split] = listing_for(raw_root / folder, cache_root / split)
        raw[split] = frozenset(patient_id(r.path.name) for r in listing.recordings)
        try:
            cached[split] = patients_of(read_index(cache_root / split))
        except DatasetError:
            cached[split] = frozenset()
    patients = {s: raw[s] | cached[s] for s in request.split_folders}
    all_leaks = find_leaks(patients)
    leaks = {patient: splits for patient, splits in all_leaks.items() if request.split in splits}
    metadata = {**{f"patients_{s}": len(patients[s]) for s in patients},
                **{f"raw_recordings_{s}": origin for s, origin in origins.items()}}
    if leaks:
        described = ", ".join(f"{patient} ({', '.join(splits)})"
                              for patient, splits in list(leaks.items())[:MAX_LISTED])
        return _failed(f"patient leakage from {request.split}: {len(leaks)} patient(s) also in "
                       f"another split: {described}", **metadata)
    # Raw recordings and cache together: a patient whose only recordings are too short for a
    # window or quarantined counts here, though training (which reads the cache) does not see it.
    log.info("OFFICIAL TUSZ SPLITS (patients in the raw folders or the cache): " + ", ".join(
        f"{s} {len(p)} patients" for s, p in patients.items()))
    if not all_leaks:
        log.info("✅ PATIENT DISJOINTNESS VERIFIED")
    return CheckOutcome(True, metadata)


def manifest_current(request, raw_root, cache_root, log) -> CheckOutcome:
    try:
        cache_dir = cache_root / request.split
        result = check_manifest(cache_dir, request.cache, _facts(request, cache_dir))
    except CACHE_ERRORS as exc:
        return _failed(str(exc))
    if result.reason:
        return _failed(result.reason)
    # Current: the stored manifest holds exactly these counts (the 21 MB JSON is not parsed).
    return CheckOutcome(True, dict(result.counts))


def seizure_windows_present(request, raw_root, cache_root, log) -> CheckOutcome:
    try:
        counts = count_categories(_facts(request, cache_root / request.split).files,
                                  request.cache)
    except CACHE_ERRORS as exc:
        return _failed(str(exc))
    seizure = counts[PARTIAL] + counts[FULL]
    return CheckOutcome(seizure > 0, {
        "seizure_windows": seizure, **counts,
        **({} if seizure else {"reason": "no partial or full seizure windows in the manifest"})})


def balanced_matches_recipe(request, raw_root, cache_root, log) -> CheckOutcome:
    cache_dir = cache_root / request.split
    try:
        stored = read_balanced(cache_dir)
        expected = compose_split(cache_dir, request.balance, request.cache,
                                 _facts(request, cache_dir))
    except CACHE_ERRORS as exc:
        return _failed(str(exc))
    problems = []
    stale = manifest_staleness(cache_dir, request.cache, _facts(request, cache_dir))
    if stale:  # composed from an edited or stale manifest: the recipe was not applied to the cache
        problems.append(f"{MANIFEST_NAME} is not what the cache's recorded facts give ({stale})")
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
    return CheckOutcome(not problems, {
        "windows": expected.total, "seizure_ratio": ratio, "pos_weight": pos_weight(ratio),
        **({"reason": "; ".join(problems)} if problems else {})})


CHECKS = {check.__name__: check for check in (
    npz_schema, npz_count_matches_recordings, index_matches_npz, patient_disjointness,
    manifest_current, seizure_windows_present, balanced_matches_recipe)}
