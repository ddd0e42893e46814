"""The one discovery of a split's recordings: walk, symlink rule, annotation rule, recorded listing.

Discovery reads names, sizes and mtimes only, so the files here are a few bytes each.
"""

from __future__ import annotations

import os
from pathlib import Path

from eeg_assets.lib.cache.discovery import (
    LISTING_NAME,
    list_recordings,
    listing_for,
    read_listing,
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
    assert read_listing(cache) is None
    assert listing_for(split, cache)[1].startswith("walked now")
