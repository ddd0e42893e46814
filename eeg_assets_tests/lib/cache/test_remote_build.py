"""The fan-out runner of build_split (what the Modal coordinator runs), in this process.

``FanOut`` takes the map over build containers as a plain callable; here it runs
:func:`build_batch` in this process on the same folder, which is what a build container does on
the volume. The volume's part is played by two small callables: ``commit`` gives the NPZs
whole-second mtimes (as a volume may keep them; so the fingerprints a build container saw do not
survive) and ``sync`` does nothing (one folder: every "container" sees every write). Containers
that die or never commit are played by a map that returns an exception or removes an NPZ. The
same runner through the stand-in ``modal`` CLI, in separate processes with their own views of the
volume, is in test_modal_chain.py.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from eeg_assets_tests.support.dagster_fixtures import built_eval, copy_split, sample_raw_root  # noqa: F401

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.ledger import BUILT, FAILED, LEDGER_NAME, FileFingerprint, Ledger
from eeg_assets.lib.cache.discovery import recording_at
from eeg_assets.lib.cache.remote_build import (
    FanOut,
    build_batch,
    fetch_ledger,
    plan_batches,
    publish_ledger,
)
from eeg_assets.lib.config import DEFAULT_CONFIG


def whole_second_mtimes(cache_dir: Path):
    def commit():
        for npz in cache_dir.glob("*.npz"):
            ns = npz.stat().st_mtime_ns // 10**9 * 10**9
            os.utime(npz, ns=(ns, ns))
    return commit


class InProcessMap:
    """``map_batches`` running :func:`build_batch` here; ``fail`` decides a batch's fate."""

    def __init__(self, raw_root: Path, cache_dir: Path, fail=None):
        self.raw_root, self.cache_dir, self.fail = raw_root, cache_dir, fail
        self.batches: list = []

    def __call__(self, batches):
        for batch in batches:
            self.batches.append(batch)
            failure = self.fail(batch, self.cache_dir) if self.fail else None
            if isinstance(failure, BaseException):
                yield failure
                continue
            yield build_batch(batch, self.raw_root, self.cache_dir, DEFAULT_CONFIG,
                              commit=whole_second_mtimes(self.cache_dir))


def fan_out_build(raw_root: Path, cache_dir: Path, state_dir: Path, fail=None, batch_size=2,
                  mapper=None):
    """build_split of ``raw_root/eval`` with a FanOut runner; the ledger published to the cache."""
    mapper = mapper or InProcessMap(raw_root, cache_dir, fail)
    runner = FanOut(mapper, raw_root, cache_dir, sync=lambda: None,
                    publish=lambda: publish_ledger(state_dir, cache_dir), batch_size=batch_size,
                    flush_every_s=0, log=lambda line: None)
    report = build_split(raw_root / "eval", cache_dir, split="eval", runner=runner,
                         state_dir=state_dir, progress=None, log=lambda line: None)
    return report, mapper


def test_batches_go_largest_first_and_carry_paths_relative_to_the_raw_mount(tmp_path):
    sizes = {"a.edf": 10, "b.edf": 30, "c.edf": 20, "d.edf": 40, "e.edf": 5}
    todo = []
    for name, size in sizes.items():
        path = tmp_path / "eval" / "p" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        todo.append(recording_at(path, f"p/{name}"))
    assert plan_batches(todo, tmp_path, batch_size=2) == [
        [["eval/p/d.edf", "p/d.edf"], ["eval/p/b.edf", "p/b.edf"]],
        [["eval/p/c.edf", "p/c.edf"], ["eval/p/a.edf", "p/a.edf"]],
        [["eval/p/e.edf", "p/e.edf"]]]
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(todo, tmp_path, batch_size=0)


@pytest.mark.slow
def test_a_fan_out_builds_the_local_bytes_and_records_what_the_coordinator_sees(
        sample_raw_root, built_eval, tmp_path):  # noqa: F811
    cache_dir, state_dir = tmp_path / "volume" / "eval", tmp_path / "state"
    report, mapper = fan_out_build(sample_raw_root, cache_dir, state_dir)
    assert len(report.built) == 4 and len(mapper.batches) == 2
    for npz in built_eval.cache_dir.glob("*.npz"):
        assert (cache_dir / npz.name).read_bytes() == npz.read_bytes(), npz.name
    entries = Ledger(state_dir).entries().values()
    for entry in entries:  # the fingerprints after the commit, not the ones the builder took
        assert entry.npz_fingerprint == str(FileFingerprint.of(cache_dir / entry.npz_name))
        assert entry.npz_fingerprint.endswith("000000000")
    published = {e.source: e for e in Ledger(cache_dir).entries().values()}
    assert published == {e.source: e for e in entries}

    again, mapper = fan_out_build(sample_raw_root, cache_dir, state_dir)
    assert again.skipped == 4 and not again.built and mapper.batches == []


@pytest.mark.slow
def test_recordings_of_a_dead_container_fail_and_the_next_run_retries_them(sample_raw_root,
                                                                           tmp_path):  # noqa: F811
    raw_root = tmp_path / "raw"
    copy_split(sample_raw_root, raw_root)
    cache_dir, state_dir = tmp_path / "volume" / "eval", tmp_path / "state"

    def out_of_memory(batch, cache_dir):
        if any("aaaaarjw" in source for _, source in batch):
            return MemoryError("container exceeded its memory")
        return None

    report, _ = fan_out_build(raw_root, cache_dir, state_dir, fail=out_of_memory, batch_size=1)
    (failed,) = report.failed
    assert failed.status == FAILED and not report.quarantined
    assert "aaaaarjw" in failed.source and len(report.built) == 3
    assert failed.reason == ("build container failed (MemoryError: container exceeded its "
                             "memory); retried next run")
    again, mapper = fan_out_build(raw_root, cache_dir, state_dir)
    assert [b[0][1] for b in mapper.batches] == [failed.source] and len(again.built) == 1


@pytest.mark.slow
def test_an_npz_missing_from_the_volume_after_its_build_is_not_trusted(sample_raw_root,
                                                                       tmp_path):  # noqa: F811
    raw_root = tmp_path / "raw"
    copy_split(sample_raw_root, raw_root)
    cache_dir, state_dir = tmp_path / "volume" / "eval", tmp_path / "state"
    mapper = InProcessMap(raw_root, cache_dir)

    def never_committed(batches):  # the container's NPZ never reached the volume
        for outcome in mapper(batches):
            for entry in outcome:
                if "aaaaasxe" in entry["source"]:
                    (cache_dir / entry["npz_name"]).unlink()
            yield outcome

    report, _ = fan_out_build(raw_root, cache_dir, state_dir, mapper=never_committed)
    (failed,) = report.failed
    assert failed.status == FAILED and "aaaaasxe" in failed.source
    assert "is not on the volume after the build (found nothing); retried next run" \
        in failed.reason
    assert {e.status for e in Ledger(cache_dir).entries().values()} == {BUILT, FAILED}
    again, _ = fan_out_build(raw_root, cache_dir, state_dir)
    assert [e.source for e in again.built] == [failed.source]


def test_a_published_ledger_is_a_complete_rollback_journal_file(
        tmp_path, sample_raw_root):  # noqa: F811
    raw_root = tmp_path / "raw"
    split = copy_split(sample_raw_root, raw_root)
    for edf in sorted(split.rglob("*.edf"))[1:]:
        edf.unlink()  # one recording is enough
    state_dir, volume = tmp_path / "state", tmp_path / "volume" / "eval"
    build_split(split, volume, split="eval", state_dir=state_dir, progress=None,
                log=lambda line: None)
    assert not (volume / LEDGER_NAME).exists()  # the ledger is written beside the coordinator
    publish_ledger(state_dir, volume)
    assert sorted(p.name for p in volume.iterdir() if p.name.startswith("_ledger")) == [
        LEDGER_NAME]  # no -wal or -shm beside it
    with closing(sqlite3.connect(volume / LEDGER_NAME)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    fresh = tmp_path / "fresh"
    fetch_ledger(volume, fresh)
    assert Ledger(fresh).entries() == Ledger(state_dir).entries() != {}
    shutil.rmtree(fresh)
    fetch_ledger(tmp_path / "nothing-published", fresh)
    assert Ledger(fresh).entries() == {}
