"""The raw EDF drop sensor, tick by tick, and the sensors' default status.

The sensor decides from file names, sizes and modification times, so most "recordings" here are a
few bytes each (real EDF files where hours are reported); the sensor found in the loaded
Definitions is evaluated with a real instance, a cursor carried from tick to tick, an explicit
settings resource, and its observations stored as the daemon stores them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from eeg_assets_tests.support.dagster_fixtures import (  # noqa: F401 - fixtures
    CHAIN,
    built_eval,
    make_settings,
    sample_raw_root,
)
from eeg_assets.synthetic.edf_writer import tusz_dir, write_recording
from eeg_assets import defs
from eeg_assets.lib.cache.ledger import TOO_SHORT, FileFingerprint, Ledger, RecordingEntry
from eeg_assets.orchestration.raw import raw_edf_recordings

SENSOR = "raw_edf_drop_sensor"
T0 = 1_700_000_000_000_000_000  # a fixed mtime (ns), so a restored copy is identical
# The sensor is evaluated with explicit resources, so the unresolved definition is what we want.
pytestmark = pytest.mark.filterwarnings("ignore:Starting in dagster 1.11, get_sensor_def")


class Ticker:
    """Evaluates the drop sensor like the daemon does: one tick after another, cursor carried,
    observations stored in the instance (``dagster/_daemon/sensor.py`` reports each of a tick's
    ``asset_events`` with ``instance.report_runless_asset_event``)."""

    def __init__(self, raw_root: Path, instance: dg.DagsterInstance, settings=None):
        self.sensor = defs.get_sensor_def(SENSOR)
        self.settings = settings or make_settings(raw_root, raw_root.parent / "cache")
        self.instance = instance
        self.cursor: str | None = None

    def tick(self, cursor: str | None = None):
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor if cursor is None else cursor,
            resources={"settings": self.settings}, definitions=defs)
        data = self.sensor.evaluate_tick(context)
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        if cursor is None:
            self.cursor = data.cursor
        return data

    def requests(self) -> list[dg.RunRequest]:
        return list(self.tick().run_requests)

    def settle(self) -> dg.RunRequest:
        """Tick until the sensor requests (at most two ticks: one to see, one to settle)."""
        for _ in range(2):
            requests = self.requests()
            if requests:
                assert len(requests) == 1, requests
                return requests[0]
        raise AssertionError("no run request after two ticks")


def drop(raw_root: Path, folder: str, stem: str, *, edf: bytes = b"EDF+" * 64,
         annotation: str | None = ".csv_bi", mtime_ns: int = T0) -> Path:
    """A recording in the TUSZ layout: ``<folder>/<patient>/s001_2020/01_tcp_ar/<stem>.edf``."""
    path = raw_root / folder / stem.split("_")[0] / "s001_2020" / "01_tcp_ar" / f"{stem}.edf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(edf)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    if annotation:
        note = path.with_suffix(annotation)
        note.write_text("# version = csv_v1.0.0\nchannel,start_time,stop_time,label,confidence\n")
        os.utime(note, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture(scope="module")
def instance():
    # the sensor does not read the instance; an ephemeral one is enough and starts fast
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def raw_root(tmp_path) -> Path:
    root = tmp_path / "raw"
    root.mkdir()
    return root


@pytest.fixture
def ticker(raw_root, instance) -> Ticker:
    return Ticker(raw_root, instance)


def test_sensors_are_running_by_default_and_target_the_chain():
    drop_sensor = defs.get_sensor_def(SENSOR)
    assert drop_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert drop_sensor.job_name == "split_cache_job"
    assert drop_sensor.minimum_interval_seconds and drop_sensor.minimum_interval_seconds <= 60
    job = defs.resolve_job_def("split_cache_job")
    # the run lists the split it builds first (materializes raw_edf_recordings)
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
        "raw_edf_recordings", *CHAIN}

    automation = defs.get_sensor_def("cache_automation_sensor")
    assert isinstance(automation, dg.AutomationConditionSensorDefinition)
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    graph = defs.resolve_asset_graph()
    targeted = {k.to_user_string() for k in automation.asset_selection.resolve(graph)}
    assert set(CHAIN[1:]) <= targeted
    # index, manifest and balanced set follow their upstream by declarative automation
    for name in CHAIN[1:]:
        assert graph.get(dg.AssetKey(name)).automation_condition is not None, name


def test_new_drop_waits_a_tick_then_requests_its_split(ticker, raw_root):
    first = ticker.tick()
    assert not first.run_requests and "no new" in first.skip_message
    drop(raw_root, "dev", "aaaaalnf_s001_t000")
    drop(raw_root, "train", "aaaaabtq_s001_t000")
    seen = ticker.tick()
    assert not seen.run_requests  # just appeared: could still be copying
    assert "2 file(s) still arriving" in seen.skip_message
    settled = ticker.tick()
    by_partition = {r.partition_key: r for r in settled.run_requests}
    assert set(by_partition) == {"val", "train"}  # TUSZ dev is the val split
    for partition, request in by_partition.items():
        assert request.run_key and request.run_key.startswith(f"{partition}:")
        assert request.tags["eeg_assets/trigger"] == "raw_edf_drop"
        assert request.tags["eeg_assets/files"] == "1"
    assert by_partition["val"].run_key != by_partition["train"].run_key
    quiet = ticker.tick()
    assert not quiet.run_requests and "no new, changed or removed" in quiet.skip_message


def test_growing_file_is_not_requested_until_it_stops_changing(ticker, raw_root):
    path = drop(raw_root, "eval", "aaaaaqhs_s001_t000", edf=b"x" * 100)
    assert ticker.requests() == []
    for size in (200, 300):  # still being copied: bigger at every tick
        path.write_bytes(b"x" * size)
        assert ticker.requests() == []
    request = ticker.settle()
    assert request.partition_key == "eval"


def test_missing_annotation_holds_the_drop_until_it_arrives(ticker, raw_root):
    path = drop(raw_root, "eval", "aaaaaqhs_s001_t000", annotation=None)
    for _ in range(3):
        data = ticker.tick()
        assert not data.run_requests and "still arriving" in data.skip_message
    note = path.with_suffix(".csv")  # the per-channel .csv is an annotation too
    note.write_text("# version = csv_v1.0.0\n")
    request = ticker.settle()
    assert request.partition_key == "eval"


def test_changed_recording_gets_a_new_request_and_run_key(ticker, raw_root):
    path = drop(raw_root, "eval", "aaaaaqhs_s001_t000")
    first = ticker.settle()
    path.write_bytes(b"EDF-" * 64)  # same size, new content and mtime
    os.utime(path, ns=(T0 + 10**9, T0 + 10**9))
    assert ticker.requests() == []  # changed since the last tick: wait
    second = ticker.settle()
    assert second.partition_key == "eval" and second.run_key != first.run_key
    assert ticker.requests() == []


def test_removal_requests_the_split_at_once(ticker, raw_root):
    path = drop(raw_root, "eval", "aaaaaqhs_s001_t000")
    drop(raw_root, "eval", "aaaaarjw_s002_t000")
    first = ticker.settle()
    assert first.tags["eeg_assets/files"] == "2"
    path.unlink()
    removed = ticker.requests()
    assert len(removed) == 1 and removed[0].partition_key == "eval"
    assert removed[0].tags["eeg_assets/files"] == "1"
    assert removed[0].run_key != first.run_key
    assert ticker.requests() == []


def test_same_drop_is_requested_once_and_run_keys_are_never_reused(ticker, raw_root, tmp_path):
    path = drop(raw_root, "eval", "aaaaaqhs_s001_t000")
    drop(raw_root, "eval", "aaaaarjw_s002_t000")
    assert ticker.requests() == []  # seen
    cursor_before_request = ticker.cursor
    first = ticker.requests()  # settled
    assert len(first) == 1
    keys = [first[0].run_key]
    for _ in range(3):  # the same drop at every later tick: nothing
        assert ticker.requests() == []

    # a tick evaluated again from an older cursor (one whose cursor update was lost) asks for the
    # same run under the same run key, so Dagster launches it once
    replayed = ticker.tick(cursor=cursor_before_request).run_requests
    assert [r.run_key for r in replayed] == keys
    assert ticker.requests() == []

    # a recording moved out and back in (identical file, same mtime), twice: every transition
    # is a new run with its own key, never one already used (Dagster would skip it)
    folder = path.parent
    backup = Path(shutil.copytree(folder, tmp_path / "backup"))
    for _ in range(2):
        shutil.rmtree(folder)
        removed = ticker.requests()
        assert len(removed) == 1
        keys.append(removed[0].run_key)
        shutil.copytree(backup, folder)  # copy2 keeps the mtimes: the same drop as at first
        restored = ticker.settle()
        keys.append(restored.run_key)
    assert len(keys) == 5
    assert len(set(keys)) == len(keys), keys


def test_files_outside_the_raw_root_are_ignored(ticker, raw_root, tmp_path):
    outside = drop(tmp_path / "elsewhere", "eval", "aaaaaqhs_s001_t000")
    link = raw_root / "eval" / "aaaaaqhs_s001_t000.edf"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    for _ in range(3):
        assert ticker.requests() == []


# ------------------------------------------------------------------------------------------------
# At the corpus's size, what the ledger knows, observations
# ------------------------------------------------------------------------------------------------

#: TUSZ's recordings per split folder (docs/tusz.md, "Corpus layout and splits").
TUSZ_FILES = {"train": 4667, "dev": 1832, "eval": 865}


def drop_many(raw_root: Path, folder: str, count: int) -> None:
    """``count`` tiny recordings in the TUSZ layout: 8 per patient, 4 per session."""
    for i in range(count):
        patient = f"p{i // 8:07d}"
        session = f"s{(i % 8) // 4 + 1:03d}_2020"
        path = raw_root / folder / patient / session / "01_tcp_ar" / f"{patient}_{session[:4]}_t{i % 4:03d}.edf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"0" * 256)
        path.with_suffix(".csv_bi").write_bytes(b"# duration = 1.0 secs\n")


def test_cursor_stays_under_16_kb_at_the_corpus_size(raw_root, instance):
    for folder, count in TUSZ_FILES.items():
        drop_many(raw_root, folder, count)
    ticker = Ticker(raw_root, instance)
    seen = ticker.tick()
    assert not seen.run_requests and "7364 file(s) still arriving" in seen.skip_message
    assert len(ticker.cursor) < 16_384, len(ticker.cursor)
    settled = ticker.tick()
    files = {r.partition_key: r.tags["eeg_assets/files"] for r in settled.run_requests}
    assert files == {"train": "4667", "val": "1832", "eval": "865"}
    assert len(ticker.cursor) < 16_384, len(ticker.cursor)
    assert ticker.requests() == []
    assert len(ticker.cursor) < 16_384, len(ticker.cursor)
    # the per-file state is in the instance, not in the cursor: one more file is one request
    drop_many(raw_root / "more", "eval", 1)
    shutil.copytree(raw_root / "more" / "eval", raw_root / "eval", dirs_exist_ok=True)
    assert ticker.requests() == []  # just appeared
    assert ticker.settle().partition_key == "eval"


def record_in_ledger(cache_dir: Path, edf: Path, source: str) -> None:
    """The ledger entry a build writes for a recording (here: too short to give windows)."""
    Ledger(cache_dir).put(RecordingEntry(
        source=source, stem=edf.stem, status=TOO_SHORT, config_version="any",
        edf_fingerprint=str(FileFingerprint.of(edf)),
        annotation_fingerprint=str(FileFingerprint.of(edf.with_suffix(".csv_bi"))),
        reason="too short", details={"duration_s": 30.0}))


def test_recordings_the_ledger_records_request_no_run(ticker, raw_root):
    cache_dir = ticker.settings.cache_dir("eval")
    for stem in ("aaaaaqhs_s001_t000", "aaaaarjw_s002_t000"):
        edf = drop(raw_root, "eval", stem)
        record_in_ledger(cache_dir, edf, edf.relative_to(raw_root / "eval").as_posix())
    first = ticker.tick()  # built already: neither "still arriving" nor a run
    assert not first.run_requests and "no new, changed or removed" in first.skip_message
    assert ticker.requests() == []
    drop(raw_root, "eval", "aaaaasxe_s001_t000")  # a new one still is
    assert ticker.requests() == []
    request = ticker.settle()
    assert request.partition_key == "eval" and request.tags["eeg_assets/files"] == "3"
    # a recording rebuilt outside the sensor (build-cache) is known as soon as the ledger says so
    changed = drop(raw_root, "eval", "aaaaaqhs_s001_t000", mtime_ns=T0 + 10**9)
    record_in_ledger(cache_dir, changed, changed.relative_to(raw_root / "eval").as_posix())
    assert ticker.requests() == [] and ticker.requests() == []


def test_after_a_build_the_first_tick_runs_only_what_was_not_built(built_eval, instance):
    """As after ``make sample`` for eval: the built split is settled and gets no run."""
    ticker = Ticker(built_eval.settings.raw_root, instance, settings=built_eval.settings)
    first = ticker.tick()
    assert not first.run_requests
    assert "18 file(s) still arriving" in first.skip_message  # train and dev were never built
    assert {r.partition_key for r in ticker.requests()} == {"train", "val"}
    observed = {e.partition: e for e in first.asset_events}
    assert observed["eval"].metadata["recordings"].value == 4
    # eval's hours are the durations its ledger recorded (sample corpus eval: 12 minutes)
    assert observed["eval"].metadata["hours"].value == 0.2
    assert observed["eval"].metadata["recordings_without_duration"].value == "0"  # text: no plot


def observations(instance: dg.DagsterInstance, partition: str) -> list[dg.AssetObservation]:
    records = instance.fetch_observations(dg.AssetKey("raw_edf_recordings"), limit=100).records
    return [r.asset_observation for r in records if r.partition_key == partition]


def test_observations_give_recordings_hours_and_a_data_version(raw_root, tmp_path):
    folder = tusz_dir(raw_root / "eval", "aaaaaqhs", "s001_2020")
    first = write_recording(folder, "aaaaaqhs_s001_t000", fs=250, duration_s=120)
    write_recording(folder, "aaaaaqhs_s001_t001", fs=250, duration_s=60)
    with dg.DagsterInstance.ephemeral() as instance:
        ticker = Ticker(raw_root, instance)
        ticker.tick()  # seen: nothing settled yet
        (empty,) = observations(instance, "eval")
        assert empty.metadata["recordings"].value == 0
        assert empty.metadata["recordings_waiting"].value == "2"
        ticker.settle()
        latest = observations(instance, "eval")[0]  # newest first
        assert latest.metadata["recordings"].value == 2
        assert latest.metadata["hours"].value == 0.05  # 180 s, from the EDF headers
        version = latest.tags["dagster/data_version"]
        assert version != empty.tags["dagster/data_version"]
        ticker.requests()
        assert len(observations(instance, "eval")) == 2  # a quiet tick reports nothing

        # the split run the sensor requests materializes the split first, from its own walk:
        # the same version and figures, and the partition shows as present in the UI
        job = dg.define_asset_job("list_raw", selection=[raw_edf_recordings.key])
        list_defs = dg.Definitions(assets=[raw_edf_recordings], jobs=[job],
                                   resources={"settings": ticker.settings})
        assert list_defs.resolve_job_def("list_raw").execute_in_process(
            instance=instance, partition_key="eval").success
        (record,) = instance.fetch_materializations(raw_edf_recordings.key, limit=5).records
        listed = record.asset_materialization
        assert listed.partition == "eval" and listed.tags["dagster/data_version"] == version
        assert {k: v.value for k, v in listed.metadata.items()} == {
            k: v.value for k, v in latest.metadata.items()}
        assert instance.get_materialized_partitions(raw_edf_recordings.key) == {"eval"}

        # a changed annotation is a new data version
        os.utime(first.annotation, ns=(T0, T0))
        ticker.settle()
        assert observations(instance, "eval")[0].tags["dagster/data_version"] != version
