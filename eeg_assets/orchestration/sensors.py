"""The drop sensor on the raw folders, and what it reports about ``raw_edf_recordings``.

A drop is acted on once it is complete: a recording is *settled* when its EDF and annotation
fingerprints (size, mtime) are the same as at the previous tick and it has an annotation; anything
else waits for a later tick. A split gets a run request when its settled file set differs from
the one its last request covered (its *applied* set): a new, changed or removed recording. The
run key numbers the split's requests and hashes the change, so the same drop is never processed
twice and a new change never reuses a run key (which Dagster would skip).

**What the ledger already has needs no run.** A recording whose inputs the split's build ledger
records (the same EDF and annotation fingerprints) is complete and built: when the sensor has no
state for a split (its first tick, e.g. right after ``make sample``), the applied set starts as
the ledger's, and a settled file that the ledger records as it is now counts as applied.

**State outside the tick rows.** Dagster stores the cursor in every tick row, so the cursor only
holds, per split, the request counter, the digest of the last reported data version, a reference
to the applied set, and the few files seen but not applied yet (a copy in progress, an EDF whose
annotation has not come). The applied set (one entry per recording) lives in the instance's
key-value store, in a ring of :data:`STATE_SLOTS` entries per split, each written once and
checked against the digest the cursor holds: a tick evaluated again from an older cursor reads the
state that cursor saw. A state that is gone counts as none (the applied set restarts from the
ledger). The files still arriving move to the store too when there are many of them.

**Observations.** When a split's applied set changes (and at the sensor's first tick), the tick
reports an observation of ``raw_edf_recordings[split]``: recordings, EEG hours and a data version
that is the digest of the recordings' fingerprints. The run it requests materializes
``raw_edf_recordings[split]`` first, from its own listing, with the same figures and version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from eeg_assets.lib.cache.discovery import list_recordings
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.orchestration.raw import FileSet, fileset_digest, observation
from eeg_assets.settings import Settings

SENSOR_INTERVAL_S = 30
CURSOR_FORMAT = 2
#: Key-value store entries per split: a tick replayed from a cursor this many writes old still
#: finds its state.
STATE_SLOTS = 4
#: Files still arriving are kept in the cursor up to this many bytes per split, else in the store.
INLINE_ARRIVING_BYTES = 2048
_STATE_PREFIX = "eeg_assets/raw_edf_drop_sensor"

def has_annotation(inputs: str) -> bool:
    return not inputs.endswith("|")


def settled(current: FileSet, previous: FileSet) -> tuple[FileSet, list[str]]:
    """Files unchanged since the previous tick with an annotation; and those still arriving."""
    ready, waiting = {}, []
    for name, inputs in current.items():
        if previous.get(name) == inputs and has_annotation(inputs):
            ready[name] = inputs
        else:
            waiting.append(name)
    return ready, waiting


class StateStore:
    """File sets of one split's sensor state in the instance's key-value store."""

    def __init__(self, instance: dg.DagsterInstance, raw_dir: Path, split: str):
        self._storage = instance.daemon_cursor_storage
        folder = hashlib.sha256(str(Path(raw_dir).absolute()).encode()).hexdigest()[:12]
        self._prefix = f"{_STATE_PREFIX}/{folder}/{split}"

    def get(self, ref: list | None) -> FileSet | None:
        """The file set ``ref`` (``[kind, slot, digest]``) names, ``None`` if it was overwritten."""
        if not ref:
            return None
        kind, slot, digest = ref
        key = f"{self._prefix}/{kind}/{slot}"
        try:
            stored = json.loads(self._storage.get_cursor_values({key}).get(key, "null"))
        except ValueError:
            return None
        if not isinstance(stored, dict) or stored.get("digest") != digest:
            return None
        return stored["files"]

    def put(self, kind: str, slot: int, files: FileSet, digest: str | None = None) -> list:
        digest = digest or fileset_digest(files)
        self._storage.set_cursor_values({f"{self._prefix}/{kind}/{slot}": json.dumps(
            {"digest": digest, "files": files}, sort_keys=True, separators=(",", ":"))})
        return [kind, slot, digest]


@dataclass
class SplitTick:
    """What one tick decided for one split."""

    cursor: dict
    request: dg.RunRequest | None = None
    observation: dg.AssetObservation | None = None
    waiting: int = 0


def tick_split(split: str, raw_dir: Path, cache_dir: Path, state: dict,
               store: StateStore) -> SplitTick:
    """One tick of the drop sensor for one split, from the split's cursor entry ``state``."""
    current = list_recordings(raw_dir, snapshot_dir=cache_dir).inputs()
    applied_ref, arriving = state.get("applied"), state.get("arriving", {})
    requests, observed = state.get("requests", 0), state.get("observed")
    if (applied_ref and not arriving and applied_ref[2] == fileset_digest(current)
            and observed == applied_ref[2]):
        return SplitTick(cursor=state)  # nothing changed, nothing still arriving

    ledger: dict[str, tuple[str, float | None]] | None = None
    applied = store.get(applied_ref)
    if applied is None:
        ledger = Ledger(cache_dir).input_facts()
        applied = {source: inputs for source, (inputs, _) in ledger.items()}
    if isinstance(arriving, list):
        arriving = store.get(arriving) or {}
    ready, waiting = settled(current, {**applied, **arriving})
    if any(applied.get(source) != inputs for source, inputs in ready.items()):
        ledger = ledger if ledger is not None else Ledger(cache_dir).input_facts()
        for source, inputs in ready.items():
            if ledger.get(source, ("",))[0] == inputs:
                applied[source] = inputs  # built already (by a run or build-cache)
    # A file still arriving keeps its applied version, so a half-copied file never triggers a
    # run and never hides a completed one.
    fileset = {name: ready.get(name, applied.get(name)) for name in current
               if name in ready or name in applied}

    tick = SplitTick(cursor={}, waiting=len(waiting))
    digest = fileset_digest(fileset)
    if fileset != applied:
        # Dagster never launches a run key twice, and the same transition can recur (a recording
        # moved out and back in, twice), so the key counts the split's requests; a tick replayed
        # from an older cursor still gets the same key.
        requests += 1
        change = hashlib.sha256(f"{fileset_digest(applied)}>{digest}".encode())
        tick.request = dg.RunRequest(
            run_key=f"{split}:{requests}:{change.hexdigest()[:20]}", partition_key=split,
            tags={"eeg_assets/trigger": "raw_edf_drop", "eeg_assets/files": str(len(fileset))})
    writes = state.get("writes", 0)
    if applied_ref is None or applied_ref[2] != digest:
        applied_ref = store.put("applied", writes % STATE_SLOTS, fileset, digest)
        writes += 1
    still = {name: inputs for name, inputs in current.items() if fileset.get(name) != inputs}
    if len(json.dumps(still)) > INLINE_ARRIVING_BYTES:
        still = store.put("arriving", writes % STATE_SLOTS, still)
        writes += 1
    if observed != digest:
        ledger = ledger if ledger is not None else Ledger(cache_dir).input_facts()
        tick.observation = observation(split, raw_dir, fileset, ledger, len(waiting))
    tick.cursor = {"applied": applied_ref, "arriving": still, "requests": requests,
                   "observed": digest, "writes": writes}
    return tick


def make_raw_edf_drop_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(
        name="raw_edf_drop_sensor",
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a run of a split's cache chain when EDF recordings (with their "
                    "annotations) are added, changed or removed under EEG_ASSETS_RAW_ROOT, "
                    "and observes raw_edf_recordings (recordings, hours, data version).",
    )
    def raw_edf_drop_sensor(context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]):
        cursor = _parse_cursor(context.cursor)
        ticks = {}
        for split in settings.split_folders:
            raw_dir = settings.raw_dir(split)
            ticks[split] = tick_split(split, raw_dir, settings.cache_dir(split),
                                      cursor.get(split, {}),
                                      StateStore(context.instance, raw_dir, split))
        requests = [t.request for t in ticks.values() if t.request]
        waiting = sum(t.waiting for t in ticks.values())
        return dg.SensorResult(
            run_requests=requests,
            skip_reason=None if requests else (
                f"no settled changes ({waiting} file(s) still arriving)" if waiting
                else "no new, changed or removed recordings"),
            cursor=json.dumps({"format": CURSOR_FORMAT,
                               "splits": {s: t.cursor for s, t in ticks.items()}},
                              sort_keys=True, separators=(",", ":")),
            asset_events=[t.observation for t in ticks.values() if t.observation],
        )

    return raw_edf_drop_sensor


def _parse_cursor(text: str | None) -> dict[str, dict]:
    """Per-split state of a cursor; a cursor of the first format keeps only its request counts."""
    if not text:
        return {}
    cursor = json.loads(text)
    if cursor.get("format") == CURSOR_FORMAT:
        return cursor["splits"]
    return {split: {"requests": state.get("requests", 0)} for split, state in cursor.items()}
