"""The one discovery of a split's recordings: walk, symlink rule, annotation rule, recorded listing.

Discovery reads names, sizes and mtimes only, so the files here are a few bytes each.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from eeg_assets.lib.cache.build import build_split
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
from eeg_assets.synthetic.edf_writer import Event, tusz_dir, write_recording


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
    (split / "alias_s001_t000.edf").symlink_to(inside)  # inside the split, listed there
    (split / "linked_patient").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    listing = list_recordings(split)
    assert [r.source for r in listing.recordings] == ["p/p_s001_t000.edf"]
    reasons = dict(line.split(": ", 1) for line in listing.ignored)
    assert reasons["alias_s001_t000.edf"] == "symlink to p/p_s001_t000.edf, listed there"
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


# ------------------------------------------------------------------------------------------------
# Unreadable folders and files: reported, the rest of the split still listed
# ------------------------------------------------------------------------------------------------
# The tests run as root, for whom ``chmod 000`` does not stop a read, so unreadability is
# simulated where the walk meets it: ``os.scandir`` of a folder, ``os.stat`` of a file, raising
# the PermissionError a non-root user would get.

def _denied(path) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


@pytest.fixture
def deny(monkeypatch):
    """``deny(scandir=[folders], stat=[files])``: those calls raise PermissionError from now on;
    ``deny()`` lifts every denial."""
    real_scandir, real_stat = os.scandir, os.stat
    denied: dict[str, set[str]] = {"scandir": set(), "stat": set()}

    def scandir(path="."):
        if os.path.normpath(str(path)) in denied["scandir"]:
            raise _denied(path)
        return real_scandir(path)

    def stat(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and os.path.normpath(path) in denied["stat"]:
            raise _denied(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)

    def set_denied(scandir=(), stat=()):
        denied["scandir"] = {os.path.normpath(p) for p in scandir}
        denied["stat"] = {os.path.normpath(p) for p in stat}

    return set_denied


def test_an_unreadable_folder_is_reported_and_the_rest_is_listed(tmp_path, deny):
    split = tmp_path / "train"
    edfs = tusz_tree(split)
    sources = [e.relative_to(split).as_posix() for e in edfs]
    deny(scandir=[split / "aaaaaaab" / "s001_2015"])

    listing = list_recordings(split)  # today: a PermissionError traceback
    assert listing.unreadable == ("aaaaaaab/s001_2015: Permission denied",)
    assert [r.source for r in listing.recordings] == sources[:2] + sources[4:]
    assert listing.ignored == ()
    # what the build needs to keep the folder's recordings rather than treat them as vanished
    assert [listing.within_unreadable(s) for s in sources] == [False, False, True, True,
                                                               False, False]

    deny(scandir=[split])  # the split folder itself
    listing = list_recordings(split)
    assert listing.recordings == () and listing.unreadable == (".: Permission denied",)
    assert listing.within_unreadable(sources[0])


def test_an_unreadable_file_is_reported_and_its_recording_not_listed(tmp_path, deny):
    """An EDF that cannot be stat-ed, and a .csv_bi that cannot: the latter's recording is not
    labelled from its .csv (the file the annotation rule ranks second) in the meantime."""
    split = tmp_path / "dev"
    edfs = tusz_tree(split, patients=1)
    edf, with_bad_annotation = edfs
    deny(stat=[edf, with_bad_annotation.with_suffix(".csv_bi")])
    listing = list_recordings(split)
    assert listing.recordings == ()
    folder = "aaaaaaaa/s001_2015/01_tcp_ar"
    assert listing.unreadable == (f"{folder}/aaaaaaaa_s001_t000.edf: Permission denied",
                                  f"{folder}/aaaaaaaa_s001_t001.csv_bi: Permission denied")
    assert listing.within_unreadable(f"{folder}/aaaaaaaa_s001_t000.edf")
    assert listing.within_unreadable(f"{folder}/aaaaaaaa_s001_t001.edf")
    assert not listing.within_unreadable(f"{folder}/aaaaaaaa_s001_t002.edf")

    deny()
    listing = list_recordings(split)
    assert listing.unreadable == () and len(listing.recordings) == 2
    assert listing.recordings[1].annotation_name == "aaaaaaaa_s001_t001.csv_bi"


def test_an_unreadable_folder_is_listed_again_next_walk(tmp_path, deny):
    """It must not be kept in the folder snapshot as an empty folder: its mtime will not move
    when it becomes readable, so a snapshot entry would hide its recordings for good."""
    split, state = tmp_path / "train", tmp_path / "cache"
    state.mkdir()
    edfs = tusz_tree(split)
    deny(scandir=[split / "aaaaaaab" / "s001_2015"])
    first = list_recordings(split, snapshot_dir=state)
    assert len(first.recordings) == 4 and first.unreadable
    folders = json.loads((state / SNAPSHOT_NAME).read_bytes())["folders"]
    assert "aaaaaaab/" in folders and "aaaaaaab/s001_2015/" not in folders

    deny()
    again = list_recordings(split, snapshot_dir=state)
    assert again.unreadable == ()
    assert [r.path for r in again.recordings] == edfs
    assert again.recordings == list_recordings(split).recordings


def test_the_recorded_listing_keeps_what_was_unreadable(tmp_path, deny):
    split, cache = tmp_path / "eval", tmp_path / "cache"
    cache.mkdir()
    tusz_tree(split, patients=2)
    deny(scandir=[split / "aaaaaaab"])
    listing = list_recordings(split)
    deny()
    write_listing(cache, listing, run_tag="run-1")
    assert read_listing(cache).unreadable == ("aaaaaaab: Permission denied",)
    # a listing recorded before the field existed reads as one with nothing unreadable
    payload = json.loads((cache / LISTING_NAME).read_bytes())
    del payload["unreadable"]
    (cache / LISTING_NAME).write_text(json.dumps(payload))
    old = read_listing(cache)
    assert old is not None and old.unreadable == () and old.recordings == listing.recordings


# ------------------------------------------------------------------------------------------------
# A recording reached through a symlink inside the split: listed (and built) once
# ------------------------------------------------------------------------------------------------

def test_an_in_split_symlink_to_a_listed_edf_is_listed_once(tmp_path):
    split = tmp_path / "train"
    real = write_recording(tusz_dir(split, "aaaaaaaa"), "aaaaaaaa_s001_t000", duration_s=5)
    other = tusz_dir(split, "aaaaaaab")
    other.mkdir(parents=True)
    alias = other / "aaaaaaab_s001_t000.edf"
    alias.symlink_to(os.path.relpath(real.edf, other))
    (other / "aaaaaaab_s001_t000.csv_bi").symlink_to(os.path.relpath(real.annotation, other))
    (split / "zz_s001_t000.edf").symlink_to(alias)  # a link to the link: the same file

    listing = list_recordings(split)
    real_source = real.edf.relative_to(split).as_posix()
    assert [r.source for r in listing.recordings] == [real_source]
    assert sorted(listing.ignored) == [
        f"aaaaaaab/s001_2015/01_tcp_ar/aaaaaaab_s001_t000.edf: symlink to {real_source}, "
        "listed there",
        f"zz_s001_t000.edf: symlink to {real_source}, listed there"]


def test_an_in_split_symlink_reached_no_other_way_is_listed_once(tmp_path):
    """A link whose target the walk does not list itself (a file not named .edf) is still a
    recording, listed under the first link's path; a second link to it is not another one."""
    split = tmp_path / "train"
    store = put(split / "store" / "blob_0001", b"edf")
    for patient in ("aaaaaaaa", "aaaaaaab"):
        link = tusz_dir(split, patient) / f"{patient}_s001_t000.edf"
        link.parent.mkdir(parents=True)
        link.symlink_to(store)
        put(link.with_suffix(".csv_bi"), b"bi")
    listing = list_recordings(split)
    first = "aaaaaaaa/s001_2015/01_tcp_ar/aaaaaaaa_s001_t000.edf"
    assert [r.source for r in listing.recordings] == [first]
    assert listing.recordings[0].edf == FileFingerprint.of(store)
    assert listing.ignored == (
        f"aaaaaaab/s001_2015/01_tcp_ar/aaaaaaab_s001_t000.edf: symlink to store/blob_0001, "
        f"listed as {first}",)


def test_an_in_split_symlink_to_a_listed_edf_is_built_once(tmp_path):
    data, cache = tmp_path / "train", tmp_path / "cache"
    real = write_recording(tusz_dir(data, "aaaaaaaa"), "aaaaaaaa_s001_t000",
                           events=[Event(10, 20, "seiz")])
    other = tusz_dir(data, "aaaaaaab")
    other.mkdir(parents=True)
    (other / "aaaaaaab_s001_t000.edf").symlink_to(real.edf)
    (other / "aaaaaaab_s001_t000.csv_bi").symlink_to(real.annotation)
    report = build_split(data, cache, "train", workers=1, progress=None)
    assert [e.source for e in report.built] == [real.edf.relative_to(data).as_posix()]
    assert len(list(cache.glob("*_windows.npz"))) == 1
    assert any("symlink to" in line and "listed there" in line for line in report.ignored)
