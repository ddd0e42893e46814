"""``raw_edf_recordings``: the first node of the graph, one partition per split.

Materializing ``raw_edf_recordings[split]`` lists the split folder (the listing ``npz_windows``
and the checks of the same run build from) and records how many recordings it holds, their EEG
hours and a data version: the digest of the recordings' fingerprints (EDF and annotation size
and mtime), so a changed drop changes the version and the cache built from the previous one
shows as stale. Every split run materializes it first (``split_cache_job``, what the drop sensor
launches), and the drop sensor reports an observation of it whenever a split's settled
recordings change, with the same figures and version.

Why a materialized asset and not an observable source asset: Dagster's UI (1.13) counts only
materializations as present partitions, so an observed-only split read "0% filled" and
"Missing" with no metadata in its partitions view (dagster-io/dagster#15764). The files are
not written by Dagster; a materialization here records the listing this run took of them.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg

from eeg_assets.lib.cache.discovery import list_recordings, write_listing
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.signals.edf import header_duration_s
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.settings import Settings

GROUP = "tusz_cache"
RAW_ASSET = "raw_edf_recordings"
#: Bump when what a listing records or how its data version is computed changes.
RAW_FORMAT = 1

FileSet = dict[str, str]  # {source: Recording.inputs, "<edf fingerprint>|<annotation fp>"}


def fileset_digest(files: FileSet) -> str:
    """Digest of a file set: the data version of ``raw_edf_recordings[split]``."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:24]


def raw_facts(raw_dir: Path, fileset: FileSet, recorded: dict[str, tuple[str, float | None]],
              waiting: int) -> tuple[str, dict]:
    """The data version and metadata of ``raw_edf_recordings[split]`` holding ``fileset``.

    ``recorded`` is the split's :meth:`Ledger.input_facts`: a recording's duration is the one its
    ledger entry recorded when that entry describes the same files, else the EDF header's
    (records x record duration, 256 bytes read). ``waiting`` counts the recordings seen but not
    in ``fileset`` (still being copied, or without annotation).
    """
    seconds, unknown = 0.0, 0
    for source, inputs in fileset.items():
        fact = recorded.get(source)
        duration = fact[1] if fact is not None and fact[0] == inputs else None
        if duration is None:
            try:
                duration = header_duration_s(Path(raw_dir) / source)
            except OSError:
                duration = None
        if duration is None:
            unknown += 1
        else:
            seconds += duration
    # The exception counts (0 when all is well) as text: the asset's plots would draw them as
    # flat lines of zeros beside recordings and hours.
    return fileset_digest(fileset), {
        "recordings": len(fileset), "hours": round(seconds / 3600, 3),
        "recordings_without_duration": dg.MetadataValue.text(str(unknown)),
        "recordings_waiting": dg.MetadataValue.text(str(waiting)),
        "raw_dir": dg.MetadataValue.path(str(raw_dir))}


def observation(split: str, raw_dir: Path, fileset: FileSet,
                recorded: dict[str, tuple[str, float | None]], waiting: int
                ) -> dg.AssetObservation:
    """The drop sensor's observation of ``raw_edf_recordings[split]`` holding ``fileset``
    (:func:`raw_facts`)."""
    version, metadata = raw_facts(raw_dir, fileset, recorded, waiting)
    return dg.AssetObservation(asset_key=RAW_ASSET, partition=split,
                               tags={"dagster/data_version": version}, metadata=metadata)


@dg.asset(
    name=RAW_ASSET,
    partitions_def=split_partitions,
    group_name=GROUP,
    code_version=str(RAW_FORMAT),
    kinds={"edf"},
    description="TUSZ EDF recordings with their .csv_bi/.csv annotations, as dropped into "
                "EEG_ASSETS_RAW_ROOT/<train|dev|eval>. A split's materialization lists its "
                "folder (recordings, hours, data version from the files' fingerprints) for the "
                "run that builds it; Dagster writes nothing there. Materialized first by every "
                "split run (split_cache_job); the raw_edf_drop_sensor, which launches those "
                "runs, also reports an observation of a split when a drop settles.",
)
def raw_edf_recordings(context: dg.AssetExecutionContext,
                       settings: dg.ResourceParam[Settings]) -> dg.MaterializeResult:
    # A split's run lists its split first (split_cache_job selects this asset): the listing is
    # recorded for npz_windows and the checks of the run, so the run walks the folder once, and
    # npz_windows records as its input the version recorded here.
    split = context.partition_key
    raw_dir, cache_dir = settings.raw_dir(split), settings.cache_dir(split)
    if raw_dir.is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
    else:
        context.log.warning(
            f"{split}: {raw_dir} does not exist, so the split has no recordings (set "
            "EEG_ASSETS_RAW_ROOT to the folder holding train/, dev/ and eval/; the sample "
            "corpus: `python -m eeg_assets make-sample-corpus --out data/sample_corpus`)")
    listing = list_recordings(raw_dir, snapshot_dir=cache_dir)
    if raw_dir.is_dir():
        write_listing(cache_dir, listing, run_tag=context.run.run_id)
    fileset = {r.source: r.inputs for r in listing.recordings if r.annotation}
    version, metadata = raw_facts(raw_dir, fileset, Ledger(cache_dir).input_facts(),
                                  waiting=len(listing.recordings) - len(fileset))
    return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata=metadata)
