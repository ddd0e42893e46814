"""A sensor on new, changed or removed EDF drops in the raw folders.

A drop is only acted on once it is complete: the EDF's size and mtime must be the same as at the
previous tick and its annotation file must exist; anything else waits for a later tick. The run
key numbers the split's requests and hashes the change of its settled file set, so the same drop
is never processed twice and a new change never reuses a run key (which Dagster would skip).
"""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg

from eeg_assets.lib.cache.annotations import ANNOTATION_SUFFIXES
from eeg_assets.settings import Settings

SENSOR_INTERVAL_S = 30


def observe_split(raw_dir: Path) -> dict[str, list[int]]:
    """``{relative EDF path: [edf size, edf mtime_ns, annotation size, annotation mtime_ns]}``.

    Only files inside ``raw_dir`` count: a symlink leading elsewhere is ignored.
    """
    observed: dict[str, list[int]] = {}
    if not raw_dir.is_dir():
        return observed
    root = raw_dir.resolve()
    for path in raw_dir.rglob("*"):
        if path.suffix.lower() != ".edf" or not path.resolve().is_relative_to(root):
            continue
        try:
            edf = os.stat(path)
        except OSError:
            continue  # vanished between listing and stat: next tick
        annotation = [0, 0]
        for suffix in ANNOTATION_SUFFIXES:
            candidate = path.with_suffix(suffix)
            if candidate.is_file():
                st = os.stat(candidate)
                annotation = [st.st_size, st.st_mtime_ns]
                break
        observed[path.relative_to(raw_dir).as_posix()] = [edf.st_size, edf.st_mtime_ns, *annotation]
    return observed


def settled(current: dict[str, list[int]], previous: dict[str, list[int]]) -> tuple[dict, list[str]]:
    """Files unchanged since the previous tick with an annotation; and those still arriving."""
    ready, waiting = {}, []
    for name, stats in current.items():
        if previous.get(name) == stats and stats[2] > 0:
            ready[name] = stats
        else:
            waiting.append(name)
    return ready, waiting


def make_raw_edf_drop_sensor(job) -> dg.SensorDefinition:
    @dg.sensor(
        name="raw_edf_drop_sensor",
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests a run of a split's cache chain when EDF recordings (with their "
                    "annotations) are added, changed or removed under EEG_ASSETS_RAW_ROOT.",
    )
    def raw_edf_drop_sensor(context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]):
        cursor = json.loads(context.cursor) if context.cursor else {}
        new_cursor: dict[str, dict] = {}
        requests, waiting_total = [], 0
        for split in settings.split_folders:
            state = cursor.get(split, {})
            current = observe_split(settings.raw_dir(split))
            ready, waiting = settled(current, state.get("observed", {}))
            waiting_total += len(waiting)
            # A file still arriving keeps the last settled version of itself in the fingerprint,
            # so a half-copied file never triggers a run and never hides a completed one.
            applied = state.get("applied", {})
            fileset = {name: ready.get(name, applied.get(name)) for name in current
                       if name in ready or name in applied}
            requested = state.get("requests", 0)
            if fileset != applied and (fileset or applied):
                # Dagster never launches a run key twice, and the same transition can recur (a
                # recording moved out and back in, twice), so the key counts the split's
                # requests; a tick replayed from an older cursor still gets the same key.
                requested += 1
                transition = json.dumps([applied, fileset], sort_keys=True).encode()
                requests.append(dg.RunRequest(
                    run_key=f"{split}:{requested}:{hashlib.sha256(transition).hexdigest()[:20]}",
                    partition_key=split,
                    tags={"eeg_assets/trigger": "raw_edf_drop", "eeg_assets/files": str(len(fileset))},
                ))
                applied = fileset
            new_cursor[split] = {"observed": current, "applied": applied, "requests": requested}
        context.update_cursor(json.dumps(new_cursor, sort_keys=True))
        if requests:
            return requests
        return dg.SkipReason(f"no settled changes ({waiting_total} file(s) still arriving)"
                             if waiting_total else "no new, changed or removed recordings")

    return raw_edf_drop_sensor
