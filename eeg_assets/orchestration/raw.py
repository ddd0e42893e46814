"""``raw_edf_recordings``: the first node of the graph, observed per split.

An observation of ``raw_edf_recordings[split]`` says how many recordings the split folder holds,
their EEG hours and a data version: the digest of the recordings' fingerprints (EDF and
annotation size and mtime), so a changed drop changes the version and the cache built from the
previous one shows as stale. The drop sensor reports one whenever a split's settled recordings
change; "Observe" in the UI reports one for every split from a fresh walk.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import dagster as dg

from eeg_assets.lib.cache.discovery import list_recordings, write_listing
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.signals.edf import header_duration_s
from eeg_assets.orchestration.partitions import split_partitions
from eeg_assets.settings import Settings

GROUP = "tusz_cache"
RAW_ASSET = "raw_edf_recordings"

FileSet = dict[str, str]  # {source: Recording.inputs, "<edf fingerprint>|<annotation fp>"}


def fileset_digest(files: FileSet) -> str:
    """Digest of a file set: the data version of ``raw_edf_recordings[split]``."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:24]


def observation(split: str, raw_dir: Path, fileset: FileSet,
                recorded: dict[str, tuple[str, float | None]], waiting: int
                ) -> dg.AssetObservation:
    """The observation of ``raw_edf_recordings[split]`` holding ``fileset``.

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
    return dg.AssetObservation(
        asset_key=RAW_ASSET, partition=split,
        tags={"dagster/data_version": fileset_digest(fileset)},
        metadata={"recordings": len(fileset), "hours": round(seconds / 3600, 3),
                  "recordings_without_duration": unknown, "recordings_waiting": waiting,
                  "raw_dir": dg.MetadataValue.path(str(raw_dir))})


# observable_source_asset and DataVersionsByPartition are marked beta; their warnings would
# repeat at every load and run.
warnings.filterwarnings("ignore", message=".*(observable_source_asset|DataVersionsByPartition)",
                        category=dg.BetaWarning)


@dg.observable_source_asset(
    name=RAW_ASSET,
    partitions_def=split_partitions,
    group_name=GROUP,
    tags={"dagster/kind/edf": ""},
    description="TUSZ EDF recordings with their .csv_bi/.csv annotations, as dropped into "
                "EEG_ASSETS_RAW_ROOT/<train|dev|eval>. Observed per split (recordings, "
                "hours, data version from the files' fingerprints) by the "
                "raw_edf_drop_sensor, and by 'Observe' here.",
)
def raw_edf_recordings(context, settings: dg.ResourceParam[Settings]
                       ) -> dg.DataVersionsByPartition:
    # A split's run observes its split, first (split_cache_job selects this asset): the
    # listing is recorded for npz_windows and the checks of the run, so the run walks the
    # folder once, and npz_windows records as its input the version observed here.
    splits = [context.partition_key] if context.has_partition_key else settings.split_folders
    for split in splits:
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
        context.log_event(observation(split, raw_dir, fileset,
                                      Ledger(cache_dir).input_facts(),
                                      waiting=len(listing.recordings) - len(fileset)))
    # Each partition's observation carries metadata, which DataVersionsByPartition cannot:
    # they are logged above and the mapping returned adds none.
    return dg.DataVersionsByPartition({})
