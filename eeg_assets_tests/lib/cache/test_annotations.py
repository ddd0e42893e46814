"""TUSZ annotation files (annotations.py): the 20 real ``.csv_bi`` files and the pitfalls
of docs/tusz.md ("Annotation files").

The build-level pitfalls (missing file quarantined, ``.csv`` fallback, ``.csv_bi`` preferred) are
checked through ``build_split`` as well, since that is where a wrong choice would mislabel data.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from eeg_assets.lib.cache.annotations import (
    AnnotationError, annotation_disagreement, find_annotation, parse_annotation,
)
from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.cache.ledger import QUARANTINED, Ledger
from eeg_assets.synthetic.edf_writer import Event, write_annotation, write_recording

SEIZURE = ["seiz", "gnsz", "fnsz", "cpsz", "absz", "spsz", "tcsz", "tnsz", "mysz"]


# --------------------------------------------------------------------------------------------
# The 20 real files
# --------------------------------------------------------------------------------------------

def _raw_facts(text: str):
    """Independent reading: duration header, and the seizure rows as (start, stop) text pairs."""
    duration = float(re.search(r"^# duration = ([0-9.]+) secs$", text, re.M).group(1))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    header = lines[0].split(",")
    idx = {name: header.index(name) for name in ("start_time", "stop_time", "label")}
    rows = [line.split(",") for line in lines[1:]]
    seizures = [(float(r[idx["start_time"]]), float(r[idx["stop_time"]]))
                for r in rows if r[idx["label"]] in SEIZURE]
    labels = {r[idx["label"]] for r in rows}
    return duration, seizures, labels


def test_real_csv_bi_files(real_data):
    files = sorted((real_data / "tusz_csv_bi").glob("*.csv_bi"))
    assert len(files) == 20
    total_events = 0
    for path in files:
        duration, seizures, labels = _raw_facts(path.read_text())
        assert labels <= {"seiz", "bckg"}, path.name
        annotation = parse_annotation(path, DEFAULT_CONFIG)
        assert annotation.duration_s == duration, path.name
        assert len(annotation.seizures) == len(seizures), path.name
        if seizures:
            assert annotation.seizures[0].start_s == seizures[0][0]
            assert annotation.seizures[-1].stop_s == seizures[-1][1]
            assert [(e.start_s, e.stop_s) for e in annotation.seizures] == seizures
        assert all(e.label == "seiz" for e in annotation.seizures)
        total_events += len(seizures)
    # spot values read off the files by eye, so the independent reader is checked as well
    first = parse_annotation(real_data / "tusz_csv_bi" / "aaaaaasf_s001_t000.csv_bi",
                             DEFAULT_CONFIG)
    assert first.duration_s == 1289.0
    assert (first.seizures[0].start_s, first.seizures[0].stop_s) == (42.2786, 81.7760)
    assert total_events > 20


def test_real_tusz_header_annotations_parse(real_data):
    files = sorted((real_data / "tusz_headers").rglob("*.csv_bi"))
    assert len(files) == 186
    for path in files:
        duration, seizures, _labels = _raw_facts(path.read_text())
        annotation = parse_annotation(path, DEFAULT_CONFIG)
        assert annotation.duration_s == duration
        assert [(e.start_s, e.stop_s) for e in annotation.seizures] == seizures


# --------------------------------------------------------------------------------------------
# Parser pitfalls
# --------------------------------------------------------------------------------------------

def test_columns_are_read_by_name_not_position(tmp_path):
    shuffled = ("label", "stop_time", "confidence", "channel", "start_time")
    path = write_annotation(tmp_path / "x.csv_bi", 300, [Event(12.5, 40.25, "seiz")],
                            columns=shuffled)
    assert path.read_text().splitlines()[5] == ",".join(shuffled)
    annotation = parse_annotation(path, DEFAULT_CONFIG)
    assert [(e.start_s, e.stop_s, e.label) for e in annotation.seizures] == [(12.5, 40.25, "seiz")]


def with_extra_column(path, name, value, at=None):
    """Rewrite an annotation file written by ``write_annotation`` with one more column, ``name``,
    inserted at index ``at`` (appended when None) of the header and of every row."""
    out, header_seen = [], False
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            fields = line.split(",")
            fields.insert(len(fields) if at is None else at, value if header_seen else name)
            line, header_seen = ",".join(fields), True
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("suffix, channel", [(".csv_bi", "TERM"), (".csv", "F7-T3")])
@pytest.mark.parametrize("at", [None, 0, 3])
def test_extra_annotation_columns_are_accepted(tmp_path, suffix, channel, at):
    path = write_annotation(tmp_path / f"x{suffix}", 300,
                            [Event(0, 12.5, "bckg", channel), Event(12.5, 40.25, "FNSZ", channel),
                             Event(40.25, 300, "bckg", channel)])
    with_extra_column(path, "annotator", "rater 2", at)
    header = path.read_text().splitlines()[5].split(",")
    assert len(header) == 6 and "annotator" in header
    annotation = parse_annotation(path, DEFAULT_CONFIG)
    assert [(e.start_s, e.stop_s, e.label) for e in annotation.seizures] == [(12.5, 40.25, "fnsz")]
    assert annotation.duration_s == 300


def test_a_row_short_of_the_extra_column_is_still_rejected(tmp_path):
    path = with_extra_column(write_annotation(tmp_path / "rec.csv_bi", 300, [Event(1, 2)]),
                             "annotator", "rater 2")
    path.write_text(path.read_text() + "TERM,3.0,4.0,seiz,1.0\n")  # 5 fields under 6 names
    with pytest.raises(AnnotationError, match="rec.csv_bi line 8: expected 6 fields, got 5"):
        parse_annotation(path, DEFAULT_CONFIG)


@pytest.mark.parametrize("header, missing", [
    ("channel,start_time,stop_time,label", "confidence"),
    ("channel,start,stop,label,confidence,annotator", "start_time, stop_time"),
    ("channel,start_time,stop_time,event,confidence", "label"),
])
def test_a_missing_annotation_column_is_named(tmp_path, header, missing):
    path = tmp_path / "rec.csv_bi"
    path.write_text(f"# duration = 300.0 secs\n{header}\nTERM,0.0,300.0,bckg,1.0\n")
    with pytest.raises(AnnotationError) as info:
        parse_annotation(path, DEFAULT_CONFIG)
    assert str(info.value).startswith(f"rec.csv_bi line 2: column header lacks {missing} ")


def test_a_required_column_named_twice_is_rejected(tmp_path):
    path = tmp_path / "rec.csv_bi"
    path.write_text("# duration = 300.0 secs\nchannel,start_time,stop_time,label,confidence,label\n"
                    "TERM,0.0,300.0,bckg,1.0,seiz\n")
    with pytest.raises(AnnotationError, match="rec.csv_bi line 2: column header names label "
                                              "more than once"):
        parse_annotation(path, DEFAULT_CONFIG)


@pytest.mark.parametrize("label", SEIZURE)
def test_every_seizure_label_counts(tmp_path, label):
    rows = [Event(0, 10, "bckg"), Event(10, 20.5, label), Event(20.5, 300, "bckg")]
    path = write_annotation(tmp_path / "x.csv_bi", 300, rows)
    annotation = parse_annotation(path, DEFAULT_CONFIG)
    assert [(e.start_s, e.stop_s, e.label) for e in annotation.seizures] == [(10, 20.5, label)]


def test_seizure_labels_are_case_insensitive(tmp_path):
    path = write_annotation(tmp_path / "x.csv_bi", 300, [Event(1, 2, "MYSZ")])
    assert [e.label for e in parse_annotation(path, DEFAULT_CONFIG).seizures] == ["mysz"]


def test_background_only_file_has_no_seizures(tmp_path):
    path = write_annotation(tmp_path / "x.csv_bi", 300)  # one bckg row over the recording
    assert ",bckg," in path.read_text()
    annotation = parse_annotation(path, DEFAULT_CONFIG)
    assert annotation.seizures == ()
    assert annotation.duration_s == 300


def test_per_channel_csv_counts_seizure_on_any_channel(tmp_path):
    path = write_annotation(tmp_path / "x.csv", 300, [
        Event(0, 300, "bckg", "FP1-F7"),
        Event(36.8868, 183.3055, "cpsz", "F7-T3"),
        Event(50, 60, "bckg", "T3-T5"),
    ])
    annotation = parse_annotation(path, DEFAULT_CONFIG)
    assert [(e.start_s, e.stop_s) for e in annotation.seizures] == [(36.8868, 183.3055)]


def test_unknown_label_names_file_and_line(tmp_path):
    path = write_annotation(tmp_path / "rec.csv_bi", 300,
                            [Event(1, 2, "seiz"), Event(3, 4, "spkz")])
    with pytest.raises(AnnotationError) as info:
        parse_annotation(path, DEFAULT_CONFIG)
    message = str(info.value)
    assert "rec.csv_bi" in message and "line 8" in message and "spkz" in message
    assert path.read_text().splitlines()[7].startswith("TERM,3.0000,4.0000,spkz")


@pytest.mark.parametrize("row, needle", [
    ("TERM,abc,4.0,seiz,1.0", "start_time is not a number"),
    ("TERM,5.0,4.0,seiz,1.0", "not after"),
    ("TERM,-1.0,4.0,seiz,1.0", "negative"),
    ("TERM,1.0,4.0,seiz", "expected 5 fields"),
    ("TERM,400.0,410.0,seiz,1.0", "after the end"),
])
def test_malformed_rows_name_file_and_line(tmp_path, row, needle):
    path = write_annotation(tmp_path / "rec.csv_bi", 300, [Event(1, 2, "seiz")])
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(AnnotationError, match=re.escape(needle)) as info:
        parse_annotation(path, DEFAULT_CONFIG)
    assert "rec.csv_bi line 8" in str(info.value)


def test_missing_duration_header_and_column_header(tmp_path):
    path = tmp_path / "a.csv_bi"
    path.write_text("# version = csv_v1.0.0\nchannel,start_time,stop_time,label,confidence\n")
    with pytest.raises(AnnotationError, match="duration"):
        parse_annotation(path, DEFAULT_CONFIG)
    path.write_text("# duration = 10.0 secs\n")
    with pytest.raises(AnnotationError, match="no column header"):
        parse_annotation(path, DEFAULT_CONFIG)
    path.write_text("# duration = 10.0 secs\nchannel,start,stop,label,confidence\n")
    with pytest.raises(AnnotationError, match="start_time"):
        parse_annotation(path, DEFAULT_CONFIG)


def test_crlf_and_bom_are_tolerated(tmp_path):
    text = write_annotation(tmp_path / "a.csv_bi", 300, [Event(5, 6.5, "fnsz")]).read_text()
    path = tmp_path / "b.csv_bi"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    annotation = parse_annotation(path, DEFAULT_CONFIG)
    assert [(e.start_s, e.stop_s) for e in annotation.seizures] == [(5, 6.5)]


def test_csv_bi_and_csv_disagreeing_on_seizures_give_a_warning_naming_both(tmp_path):
    rec = write_recording(tmp_path, "r", duration_s=70, events=[Event(5, 15, "seiz")])
    write_annotation(tmp_path / "r.csv", 70)  # background only
    warning = annotation_disagreement(rec.edf, DEFAULT_CONFIG)
    assert warning == ("r.csv_bi has 1 seizure event but r.csv has none; the recording is "
                       "labelled from r.csv_bi")
    # the parsed .csv_bi the build already has gives the same answer
    primary = parse_annotation(rec.annotation, DEFAULT_CONFIG)
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG, primary=primary) == warning

    # the other way round: the per-channel file has the seizures (on any channel)
    write_annotation(rec.annotation, 70)
    write_annotation(tmp_path / "r.csv", 70, [Event(0, 70, "bckg", "FP1-F7"),
                                              Event(20, 30, "TCSZ", "F7-T3"),
                                              Event(22, 31, "tcsz", "T3-T5")])
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG) == (
        "r.csv has 2 seizure events but r.csv_bi has none; the recording is labelled from "
        "r.csv_bi")


def test_annotation_files_that_agree_or_cannot_be_compared_give_no_warning(tmp_path):
    rec = write_recording(tmp_path, "r", duration_s=70, events=[Event(5, 15, "seiz")])
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG) is None  # no .csv
    # both with seizures, at other times: they agree on whether there are seizures
    write_annotation(tmp_path / "r.csv", 70, [Event(6, 14, "fnsz", "F7-T3")])
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG) is None
    write_annotation(rec.annotation, 70)
    write_annotation(tmp_path / "r.csv", 70)
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG) is None  # both seizure-free
    # a .csv that cannot be parsed says nothing about the labels (the build never reads it)
    (tmp_path / "r.csv").write_text("# duration = 70.0 secs\nchannel,start_time\n")
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG) is None
    rec.annotation.unlink()  # a .csv alone: it is the annotation, nothing to compare
    write_annotation(tmp_path / "r.csv", 70, [Event(6, 14, "fnsz", "F7-T3")])
    assert annotation_disagreement(rec.edf, DEFAULT_CONFIG) is None


def test_find_annotation_preference(tmp_path):
    edf = tmp_path / "r.edf"
    with pytest.raises(AnnotationError, match="never assumed seizure-free"):
        find_annotation(edf)
    (tmp_path / "r.csv").write_text("x")
    assert find_annotation(edf) == tmp_path / "r.csv"
    (tmp_path / "r.csv_bi").write_text("x")
    assert find_annotation(edf) == tmp_path / "r.csv_bi"


# --------------------------------------------------------------------------------------------
# The same pitfalls end to end
# --------------------------------------------------------------------------------------------

def _labels_of(cache, stem):
    with np.load(cache / f"{stem}_windows.npz") as npz:
        return npz["labels"]


def test_build_missing_annotation_is_quarantined_not_seizure_free(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "aaaaaaaa_s001_t000", annotation=None)
    write_recording(data, "aaaaaaaa_s001_t001")
    report = build_split(data, cache, "train", workers=1, progress=None)
    assert [e.stem for e in report.built] == ["aaaaaaaa_s001_t001"]
    [bad] = report.quarantined
    assert bad.stem == "aaaaaaaa_s001_t000" and bad.status == QUARANTINED
    assert "no annotation file" in bad.reason and "aaaaaaaa_s001_t000.edf" in bad.reason
    assert not (cache / "aaaaaaaa_s001_t000_windows.npz").exists()
    assert Ledger(cache).entries()[bad.source].status == QUARANTINED


def test_build_uses_csv_when_no_csv_bi(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", duration_s=70, annotation=".csv",
                    events=[Event(10, 20, "tcsz", "FP1-F7")])
    [entry] = build_split(data, cache, "train", workers=1, progress=None).built
    assert entry.details["annotation_file"] == "r.csv"
    labels = _labels_of(cache, "r")
    assert labels[0].sum() == 20 * 256 - 10 * 256


def test_build_prefers_csv_bi_when_both_exist(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    rec = write_recording(data, "r", duration_s=70, annotation=".csv_bi",
                          events=[Event(5, 15, "seiz")])
    write_annotation(data / "r.csv", 70, [Event(30, 50, "fnsz", "FP1-F7")])
    [entry] = build_split(data, cache, "train", workers=1, progress=None).built
    assert entry.details["annotation_file"] == "r.csv_bi"
    assert entry.annotation_fingerprint  # the .csv_bi's, recorded
    expected = np.zeros(15360, np.float32)
    expected[5 * 256:15 * 256] = 1
    np.testing.assert_array_equal(_labels_of(cache, "r")[0], expected)
    assert rec.annotation.name == "r.csv_bi"


def test_build_unknown_label_quarantines_with_file_and_line(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", events=[Event(5, 15, "seiz"), Event(20, 25, "artf")])
    report = build_split(data, cache, "train", workers=1, progress=None)
    [bad] = report.quarantined
    assert "r.csv_bi line 8" in bad.reason and "artf" in bad.reason
    assert not list(cache.glob("*.npz"))


def test_extra_columns_end_to_end(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    rec = write_recording(data, "r", duration_s=70, events=[Event(1, 2, "seiz")])
    with_extra_column(rec.annotation, "annotator", "rater 2", at=2)
    report = build_split(data, cache, "train", workers=1, progress=None)
    assert report.quarantined == []
    [entry] = report.built
    assert entry.seizure_samples == [256, 0]


def test_columns_permuted_end_to_end(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", duration_s=70, annotation=None)
    write_annotation(data / "r.csv_bi", 70, [Event(1, 2, "mysz")],
                     columns=("confidence", "label", "channel", "stop_time", "start_time"))
    [entry] = build_split(data, cache, "train", workers=1, progress=None).built
    assert entry.seizure_samples == [256, 0]  # 1-2 s: in window 0 only
