"""Reference events recorded by the cache build (annotation rows and header duration, not the
cached mask), read back for scoring, and added to an older ledger without rebuilding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.cache.references import (
    REFERENCE_KEY,
    Excluded,
    Reference,
    ReferenceRecordError,
    read_references,
)
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.torch_datasets import EEGWindowDataset
from eeg_assets.lib.scoring import read_events
from eeg_assets.synthetic.edf_writer import Event, write_recording


def build(data: Path, cache: Path):
    return build_split(data, cache, "val", workers=1, progress=None, log=lambda line: None)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    """Four recordings: built, with a seizure in the tail after its last window; shorter than one
    window;
    annotated by a ``.csv`` whose channels carry one seizure at different onsets; without any
    annotation (quarantined)."""
    root = tmp_path_factory.mktemp("references")
    data, cache = root / "dev", root / "cache" / "val"
    # 75.4 s (0.2 s records at 250 Hz): windows cover 0-70 s; the header says 75.5 s.
    write_recording(data / "aaaaaaaa", "aaaaaaaa_s001_t000", fs=250, duration_s=75.4,
                    record_duration_s=0.2, annotation_duration_s=75.5,
                    events=[Event(0, 20.1234, "bckg"), Event(20.1234, 40.5678, "fnsz"),
                            Event(40.5678, 71.25, "bckg"), Event(71.25, 74.0, "fnsz"),
                            Event(74.0, 75.5, "bckg")])
    write_recording(data / "aaaaaaab", "aaaaaaab_s001_t000", duration_s=45.5, record_duration_s=0.5,
                    events=[Event(10.0, 20.0, "absz")])
    write_recording(data / "aaaaaaac", "aaaaaaac_s001_t000", duration_s=62.0, annotation=".csv",
                    events=[Event(30.0, 41.0, "cpsz", "FP1-F7"),
                            Event(32.5, 44.25, "cpsz", "T3-T5"), Event(0.0, 62.0, "bckg", "O1-O2")])
    write_recording(data / "aaaaaaad", "aaaaaaad_s001_t000", duration_s=70.0, annotation=None)
    build(data, cache)
    update_index(cache)
    return data, cache


def test_references_are_the_annotation_rows_and_header_durations(split):
    data, cache = split
    references = read_references(cache)
    assert [r.stem for r in references.recordings] == [
        "aaaaaaaa_s001_t000", "aaaaaaab_s001_t000", "aaaaaaac_s001_t000"]
    built, short, channels = references.recordings
    assert built == Reference("aaaaaaaa_s001_t000", 75.5, ((20.1234, 40.5678), (71.25, 74.0)),
                              "aaaaaaaa_s001_t000_windows.npz", "aaaaaaaa_s001_t000.csv_bi")
    assert short == Reference("aaaaaaab_s001_t000", 45.5, ((10.0, 20.0),), "",
                              "aaaaaaab_s001_t000.csv_bi")
    assert channels.seizures == ((30.0, 41.0), (32.5, 44.25))  # one row per channel, unmerged
    assert references.without_windows() == (short,)
    # What read_events gives from the file itself, the scorer's reading of an annotation.
    from_file = read_events(next(data.rglob("aaaaaaaa_s001_t000.csv_bi")))
    assert (from_file.duration_s, from_file.seizures) == (built.duration_s, built.seizures)


def test_quarantined_recordings_are_excluded_with_their_reason(split):
    _, cache = split
    (excluded,) = read_references(cache).excluded
    assert excluded.source == "aaaaaaad/aaaaaaad_s001_t000.edf"
    assert excluded.status == "quarantined"
    assert "no annotation file" in excluded.reason
    assert isinstance(excluded, Excluded)


def test_the_window_dataset_reads_its_references_from_the_ledger(split):
    _, cache = split
    dataset = EEGWindowDataset(cache, log=lambda line: None)
    references = dataset.references()
    assert sorted(references.by_npz()) == [name for name, _n in dataset.recordings()]
    assert [r.stem for r in references.without_windows()] == ["aaaaaaab_s001_t000"]


def test_an_older_ledger_gains_its_references_without_a_rebuild(split, tmp_path):
    data, cache = split
    copy = tmp_path / "val"
    copy.mkdir()
    for path in cache.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    ledger = Ledger(copy)
    for entry in ledger.entries().values():  # as written before references were recorded
        entry.details.pop(REFERENCE_KEY, None)
        ledger.put(entry)
    with pytest.raises(ReferenceRecordError, match=r"3 recording\(s\) have no recorded "
                                                    r"reference events .*build the split again"):
        read_references(copy)
    # Copied without mtimes, the NPZs no longer match their records: give them back their own.
    for npz in copy.glob("*.npz"):
        original = (cache / npz.name).stat()
        os.utime(npz, ns=(original.st_atime_ns, original.st_mtime_ns))
    report = build(data, copy)
    assert not report.built and report.skipped == 4
    assert read_references(copy) == read_references(cache)


def test_restricting_to_files_without_references_names_them(split):
    _, cache = split
    with pytest.raises(ReferenceRecordError, match="no reference events recorded for 1 cached "
                                                    "file.*other_s001_t000_windows.npz"):
        read_references(cache).restricted_to(["other_s001_t000_windows.npz"])
