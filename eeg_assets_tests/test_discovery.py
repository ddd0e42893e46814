"""The one discovery of a split's recordings: walk, symlink rule, annotation rule, recorded listing.

Discovery reads names, sizes and mtimes only, so the files here are a few bytes each.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from eeg_assets.lib.cache.discovery import (
    LISTING_NAME,
    SNAPSHOT_NAME,
    list_recordings,
    listing_for,
    read_listing,
    recorded_npz,
    write_listing,
)
from eeg_assets.lib.cache.ledger import FileFingerprint


def put(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_recordings_with_fingerprints_and_the_preferred_annotation(tmp_path):
    split = tmp_path / "train"
    folder = split / "aaaaaaaa" / "s001_2015" / "01_tcp_ar"
    both = put(folder / "aaaaaaaa_s001_t000.edf", b"edf0")
    put(folder / "aaaaaaaa_s001_t000.csv", b"per-channel")
    bi = put(folder / "aaaaaaaa_s001_t000.csv_bi", b"term-based")
    csv_only = put(folder / "aaaaaaaa_s001_t001.EDF", b"edf1")
    put(folder / "aaaaaaaa_s001_t001.csv", b"per-channel only")
    put(folder / "aaaaaaaa_s001_t002.edf")
    (folder / "aaaaaaaa_s001_t002.csv_bi").mkdir()  # a folder is no annotation
    put(folder / "notes.txt")

    listing = list_recordings(split)
    by_source = {r.source: r for r in listing.recordings}
    assert list(by_source) == ["aaaaaaaa/s001_2015/01_tcp_ar/aaaaaaaa_s001_t000.edf",
                               "aaaaaaaa/s001_2015/01_tcp_ar/aaaaaaaa_s001_t001.EDF",
                               "aaaaaaaa/s001_2015/01_tcp_ar/aaaaaaaa_s001_t002.edf"]
    first, second, third = by_source.values()
    assert first.edf == FileFingerprint.of(both) and first.annotation_name == bi.name
    assert first.annotation == FileFingerprint.of(bi)
    assert first.inputs == f"{FileFingerprint.of(both)}|{FileFingerprint.of(bi)}"
    assert second.annotation_name == "aaaaaaaa_s001_t001.csv" and second.path == csv_only
    assert third.annotation is None and third.inputs.endswith("|")
    assert listing.ignored == ()
    assert list_recordings(tmp_path / "missing").recordings == ()


def test_symlinks_out_of_the_split_or_broken_are_ignored_with_a_reason(tmp_path):
    split = tmp_path / "eval"
    outside = put(tmp_path / "elsewhere" / "x_s001_t000.edf")
    inside = put(split / "p" / "p_s001_t000.edf")
    (split / "p" / "p_s001_t000.csv_bi").write_text("note")
    (split / "out_s001_t000.edf").symlink_to(outside)
    (split / "gone_s001_t000.edf").symlink_to(split / "nothing.edf")
    (split / "alias_s001_t000.edf").symlink_to(inside)  # inside the split: listed
    (split / "linked_patient").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    listing = list_recordings(split)
    assert [r.source for r in listing.recordings] == ["alias_s001_t000.edf", "p/p_s001_t000.edf"]
    reasons = dict(line.split(": ", 1) for line in listing.ignored)
    assert reasons["out_s001_t000.edf"].startswith(f"symlink to {outside}") and \
        "outside" in reasons["out_s001_t000.edf"]
    assert reasons["gone_s001_t000.edf"] == "broken symlink"
    assert reasons["linked_patient"].startswith("symlinked folder")


def test_a_recorded_listing_is_reused_by_the_same_run_only(tmp_path):
    split, cache = tmp_path / "dev", tmp_path / "cache"
    edf = put(split / "p" / "p_s001_t000.edf")
    put(split / "p" / "p_s001_t000.csv_bi")
    cache.mkdir()
    listing = list_recordings(split)
    write_listing(cache, listing, run_tag="run-1")
    assert read_listing(cache).recordings == listing.recordings

    os.utime(edf, ns=(10**18, 10**18))  # changed after the listing was recorded
    same_run, origin = listing_for(split, cache, run_tag="run-1")
    assert same_run.recordings == listing.recordings and origin.startswith("listing recorded")
    other_run, origin = listing_for(split, cache, run_tag="run-2")
    assert other_run.recordings[0].edf.mtime_ns == 10**18 and origin.startswith("walked now")
    any_run, _ = listing_for(split, cache)  # e.g. another split's last build
    assert any_run.recordings == listing.recordings
    # a listing of another folder, or an unreadable one, is never used
    assert listing_for(tmp_path / "elsewhere", cache)[0].recordings == ()
    (cache / LISTING_NAME).write_text("{not json")
    assert read_listing(cache) is None and recorded_npz(cache, "run-1") is None
    assert listing_for(split, cache)[1].startswith("walked now")


# ------------------------------------------------------------------------------------------------
# The folder snapshot: an unchanged folder is not listed again, every change is still seen
# ------------------------------------------------------------------------------------------------

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def tusz_tree(split: Path, patients: int = 3) -> list[Path]:
    """A few recordings in the TUSZ layout, every folder last changed an hour ago (settled)."""
    edfs = []
    for p in range(patients):
        folder = split / f"aaaaaaa{chr(97 + p)}" / "s001_2015" / "01_tcp_ar"
        for t in range(2):
            edf = put(folder / f"{folder.parts[-3]}_s001_t00{t}.edf", b"edf")
            put(edf.with_suffix(".csv_bi"), b"bi")
            put(edf.with_suffix(".csv"), b"csv")
            edfs.append(edf)
    settle(split)
    return edfs


def settle(split: Path) -> None:
    for folder in [split, *(p for p in split.rglob("*") if p.is_dir())]:
        os.utime(folder, ns=(HOUR_AGO_NS, HOUR_AGO_NS))


@pytest.fixture
def scandirs(monkeypatch) -> list[str]:
    """The folders ``os.scandir`` lists (the walk's expensive call, 4 system calls each)."""
    listed, real = [], os.scandir

    def counting(path="."):
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return listed


def test_a_snapshot_walk_lists_only_changed_folders_and_sees_every_change(tmp_path, scandirs):
    split, state = tmp_path / "train", tmp_path / "cache"
    state.mkdir()
    edfs = tusz_tree(split)
    scandirs.clear()
    full = list_recordings(split)
    assert len(scandirs) == 10  # split, 3 patients, 3 sessions, 3 montage folders

    scandirs.clear()
    assert list_recordings(split, snapshot_dir=state).recordings == full.recordings
    assert (state / SNAPSHOT_NAME).is_file() and len(scandirs) == 10
    scandirs.clear()
    assert list_recordings(split, snapshot_dir=state).recordings == full.recordings
    assert scandirs == []  # nothing changed: one stat per folder, no listing

    # a file rewritten in place (its folder's mtime does not move) is fingerprinted anew
    os.utime(edfs[0], ns=(10**18, 10**18))
    changed = list_recordings(split, snapshot_dir=state)
    assert changed.recordings[0].edf.mtime_ns == 10**18 and scandirs == []

    # a new recording in an existing folder, and a removed patient
    new = put(edfs[3].with_name("aaaaaaab_s001_t002.edf"))
    put(new.with_suffix(".csv_bi"))
    shutil.rmtree(split / "aaaaaaac")
    walked = list_recordings(split, snapshot_dir=state)
    assert walked.recordings == list_recordings(split).recordings
    assert "aaaaaaab/s001_2015/01_tcp_ar/aaaaaaab_s001_t002.edf" in walked.sources
    assert not any(s.startswith("aaaaaaac/") for s in walked.sources)

    # an annotation removed: the recording falls back to its .csv
    edfs[1].with_suffix(".csv_bi").unlink()
    scandirs.clear()
    recording = {r.source: r for r in list_recordings(split, snapshot_dir=state).recordings}[
        edfs[1].relative_to(split).as_posix()]
    assert recording.annotation_name.endswith(".csv") and str(edfs[1].parent) in scandirs


def test_a_folder_listed_just_after_a_change_is_listed_again(tmp_path):
    """Two changes within one timestamp tick leave the mtime where the first put it: a listing
    made that soon after a change is not trusted (the folder is listed again next time)."""
    split, state = tmp_path / "dev", tmp_path / "cache"
    state.mkdir()
    folder = split / "p" / "s001_2015" / "01_tcp_ar"
    put(folder / "p_s001_t000.edf")
    put(folder / "p_s001_t000.csv_bi")
    list_recordings(split, snapshot_dir=state)  # the folder changed moments ago: racy
    before = os.stat(folder).st_mtime_ns
    put(folder / "p_s001_t001.edf")
    put(folder / "p_s001_t001.csv_bi")
    os.utime(folder, ns=(before, before))  # the second change within the same tick
    listing = list_recordings(split, snapshot_dir=state)
    assert "p/s001_2015/01_tcp_ar/p_s001_t001.edf" in listing.sources


def test_a_snapshot_of_another_folder_or_unreadable_is_ignored(tmp_path, scandirs):
    split, state = tmp_path / "eval", tmp_path / "cache"
    state.mkdir()
    tusz_tree(split, patients=1)
    list_recordings(split, snapshot_dir=state)
    other = tmp_path / "other"
    shutil.copytree(split, other)
    scandirs.clear()
    assert len(list_recordings(other, snapshot_dir=state).recordings) == 2 and len(scandirs) == 4
    (state / SNAPSHOT_NAME).write_text("{not json")
    scandirs.clear()
    assert len(list_recordings(split, snapshot_dir=state).recordings) == 2 and len(scandirs) == 4
    assert len(list_recordings(split, snapshot_dir=tmp_path / "missing").recordings) == 2
