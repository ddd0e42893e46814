"""The sample corpus: TUSZ layout and formats, every quirk it promises, determinism, learnability.

The corpus is written once per module (a few seconds); the determinism test rewrites it in place.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from eeg_assets.synthetic import sample_corpus
from eeg_assets.synthetic.sample_corpus import (QUIRK_COLON_DATE, QUIRK_CSV_ONLY, QUIRK_NO_FZ_PZ,
                                          QUIRK_SHORT, QUIRK_TEN_TEN_NAMES, SampleCorpusSummary,
                                          SampleRecording, write_sample_corpus)

CANONICAL = ("FP1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "FZ",
             "CZ", "PZ", "FP2", "F4", "C4", "P4", "F8", "T4", "T6", "O2")
SYNONYMS = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
SEIZURE_LABELS = {"seiz", "gnsz", "fnsz", "cpsz", "absz", "spsz", "tcsz", "tnsz", "mysz"}
ANNOTATION_HEADER = re.compile(
    r"# version = csv_v1\.0\.0\n# bname = (\w+)\n# duration = (\d+\.\d{4}) secs\n"
    r"# montage_file = nedc_eas_default_montage\.txt\n#\n"
    r"channel,start_time,stop_time,label,confidence\n")
ROW = re.compile(r"([A-Z0-9]+(?:-[A-Z0-9]+)?),(\d+\.\d{4}),(\d+\.\d{4}),([a-z]+),1\.0000")
EDF_PATH = re.compile(r"(train|dev|eval)/([a-z]{8})/(s\d{3})_(\d{4})/"
                      r"(01_tcp_ar|02_tcp_le|03_tcp_ar_a)/\2_\3_t\d{3}\.edf")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> SampleCorpusSummary:
    return write_sample_corpus(tmp_path_factory.mktemp("sample") / "out")


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _normalise(label: str) -> str:
    name = label.replace(" ", "").upper().removeprefix("EEG")
    name = re.sub(r"-(REF|LE|AR)$", "", name)
    return SYNONYMS.get(name, name)


def _readable_copy(recording: SampleRecording, tmp_path: Path) -> Path:
    """The EDF itself, or for the colon-date file a temporary copy with the date repaired."""
    if QUIRK_COLON_DATE not in recording.quirks:
        return recording.path
    copy = tmp_path / recording.path.name
    shutil.copyfile(recording.path, copy)
    data = bytearray(copy.read_bytes())
    data[168:176] = data[168:176].replace(b":", b".")
    copy.write_bytes(bytes(data))
    return copy


def _parse_annotation(path: Path) -> tuple[str, float, list[tuple[str, float, float, str]]]:
    text = path.read_text()
    header = ANNOTATION_HEADER.match(text)
    assert header, f"{path.name}: header is not the TUSZ csv_v1.0.0 header"
    rows = []
    for line in text[header.end():].splitlines():
        match = ROW.fullmatch(line)
        assert match, f"{path.name}: malformed row {line!r}"
        rows.append((match[1], float(match[2]), float(match[3]), match[4]))
    assert text.endswith("1.0000\n")
    return header[1], float(header[2]), rows


# --- determinism and layout -------------------------------------------------------------------

def test_rewriting_in_place_gives_identical_bytes(corpus):
    before = _hashes(corpus.root)
    again = write_sample_corpus(corpus.root.parent)
    assert _hashes(corpus.root) == before
    assert again == corpus


def test_layout_is_tusz_and_splits_are_patient_disjoint(corpus):
    files = sorted(p.relative_to(corpus.root) for p in corpus.root.rglob("*") if p.is_file())
    expected = {r.path.relative_to(corpus.root) for r in corpus.recordings}
    assert {f for f in files if f.suffix == ".edf"} == expected
    for recording in corpus.recordings:
        assert EDF_PATH.fullmatch(str(recording.path.relative_to(corpus.root))), recording.path
        assert recording.path.parent.parent.parent.name == recording.patient
        assert all(p.is_file() for p in recording.annotation_paths)
    assert len(files) == len(corpus.recordings) + sum(len(r.annotation_paths)
                                                      for r in corpus.recordings)
    patients = {name: {r.patient for r in corpus.split(name)} for name in sample_corpus.SPLITS}
    assert not patients["train"] & patients["dev"]
    assert not patients["train"] & patients["eval"]
    assert not patients["dev"] & patients["eval"]
    assert [len(patients[s]) for s in sample_corpus.SPLITS] == [10, 4, 3]
    assert [len(corpus.split(s)) for s in sample_corpus.SPLITS] == [12, 6, 4]


def test_refuses_to_write_into_a_folder_with_other_files(tmp_path):
    foreign = tmp_path / "edf" / "train" / "aaaaaool" / "s001_2013" / "01_tcp_ar" / "x.edf"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"real data")
    with pytest.raises(ValueError, match="refusing to mix"):
        write_sample_corpus(tmp_path)
    assert foreign.read_bytes() == b"real data"


def test_summary_prints_counts_per_split(corpus):
    text = str(corpus)
    for name, recordings in (("train", 12), ("dev", 6), ("eval", 4)):
        line = next(line for line in text.splitlines() if line.startswith(name))
        assert str(recordings) in line.split()
    assert "colon_start_date" in text


def test_module_docstring_table_lists_every_recording(corpus):
    table = {line.split()[1]: line for line in sample_corpus.__doc__.splitlines()
             if re.match(r"(train|dev|eval) +[a-z]{8}_s\d{3}_t\d{3} ", line)}
    assert set(table) == {r.stem for r in corpus.recordings}
    for recording in corpus.recordings:
        split, _, fs, duration = table[recording.stem].split()[:4]
        assert (split, int(fs), float(duration)) == (recording.split, recording.fs,
                                                      recording.duration_s)
        events = re.findall(r"(\d+\.\d{4})-(\d+\.\d{4}) ([a-z]+)", table[recording.stem])
        assert [(float(a), float(b)) for a, b, _ in events] == list(recording.seizures)
        assert tuple(label for *_, label in events) == recording.seizure_labels


# --- EDF contents -------------------------------------------------------------------------------

def test_edf_headers_match_annotations_and_summary(corpus, tmp_path):
    for recording in corpus.recordings:
        with pyedflib.EdfReader(str(_readable_copy(recording, tmp_path))) as edf:
            labels = edf.getSignalLabels()
            rates = [edf.getSampleFrequency(i) for i in range(edf.signals_in_file)]
            assert edf.getFileDuration() == recording.duration_s
            assert edf.datarecord_duration == 1.0
            assert edf.filetype == pyedflib.FILETYPE_EDFPLUS
            assert len(labels) == recording.n_signals
            eeg_rates = {rate for label, rate in zip(labels, rates)
                         if _normalise(label) in CANONICAL}
            assert eeg_rates == {recording.fs}
            for label, rate in zip(labels, rates):
                header = edf.getSignalHeader(labels.index(label))
                if label in ("IBI", "BURSTS", "SUPPR"):
                    assert rate == 1.0
                else:
                    assert rate == recording.fs
                    assert header["dimension"] == "uV"
        for path in recording.annotation_paths:
            bname, duration, _ = _parse_annotation(path)
            assert bname == recording.stem
            assert duration == recording.duration_s     # exactly, as written and as read


def test_label_sets_are_the_real_tusz_ones(corpus, real_data, tmp_path):
    real = []
    for path in sorted((real_data / "tusz_headers").rglob("*.edf")):
        with pyedflib.EdfReader(str(path)) as edf:
            real.append(tuple(edf.getSignalLabels()))
    for recording in corpus.recordings:
        with pyedflib.EdfReader(str(_readable_copy(recording, tmp_path))) as edf:
            labels = tuple(edf.getSignalLabels())
        if QUIRK_TEN_TEN_NAMES in recording.quirks:
            # Same signals as a real header, named the 10-10 way.
            renamed = tuple(re.sub(r"^EEG (T7|T8|P7|P8)-",
                                   lambda m: f"EEG {SYNONYMS[m[1]]}-", label) for label in labels)
            assert renamed in real
        elif recording.montage == "02_tcp_le":
            # The real LE header minus its trailing DC channels.
            assert any(r[:len(labels)] == labels for r in real)
        else:
            assert labels in real, recording.stem


def test_quirks_of_the_real_corpus_are_all_present(corpus, tmp_path):
    assert {r.fs for r in corpus.recordings} == {250, 256, 400, 512}
    by_quirk = {q: [r for r in corpus.recordings if q in r.quirks]
                for q in (QUIRK_TEN_TEN_NAMES, QUIRK_NO_FZ_PZ, QUIRK_SHORT, QUIRK_CSV_ONLY,
                          QUIRK_COLON_DATE)}
    assert all(by_quirk.values()), by_quirk
    with_side_channels = 0
    for recording in corpus.recordings:
        with pyedflib.EdfReader(str(_readable_copy(recording, tmp_path))) as edf:
            labels = edf.getSignalLabels()
        channels = {_normalise(label) for label in labels} & set(CANONICAL)
        suffix = "-LE" if recording.montage == "02_tcp_le" else "-REF"
        eeg_labels = [label for label in labels if _normalise(label) in CANONICAL]
        assert all(label.startswith("EEG ") and label.endswith(suffix) for label in eeg_labels)
        assert ("EEG T7-REF" in labels) == (QUIRK_TEN_TEN_NAMES in recording.quirks)
        if QUIRK_NO_FZ_PZ in recording.quirks:
            assert set(CANONICAL) - channels == {"FZ", "PZ"}
        else:
            assert channels == set(CANONICAL)
        with_side_channels += {"IBI", "BURSTS", "SUPPR"} <= set(labels)
        assert {"EEG EKG1-REF", "EEG EKG-LE"} & set(labels) or recording.fs == 400
    assert with_side_channels >= len(corpus.recordings) // 2
    assert any(r.montage == "02_tcp_le" for r in corpus.split("train"))
    assert any(r.montage == "02_tcp_le" for r in corpus.split("dev"))
    assert all(r.duration_s < 60 for r in by_quirk[QUIRK_SHORT])
    assert all(r.split == "eval" for r in by_quirk[QUIRK_CSV_ONLY] + by_quirk[QUIRK_COLON_DATE])
    signal_counts = sorted({r.n_signals for r in corpus.recordings})
    assert signal_counts[0] == 18 and signal_counts[-1] <= 41
    assert len([n for n in signal_counts if 24 <= n <= 33]) >= 5


def test_colon_start_date_is_refused_by_strict_readers(corpus, tmp_path):
    for recording in corpus.recordings:
        date = recording.path.read_bytes()[168:176]
        if QUIRK_COLON_DATE in recording.quirks:
            assert date == b"01:01:85"
            with pytest.raises(OSError, match="startdate"):
                pyedflib.EdfReader(str(recording.path))
            with pyedflib.EdfReader(str(_readable_copy(recording, tmp_path))) as edf:
                assert edf.getStartdatetime().year == 1985
        else:
            assert re.fullmatch(rb"01\.01\.\d\d", date)


# --- annotations ------------------------------------------------------------------------------

def test_annotation_rows_match_the_summary(corpus):
    labels_seen = set()
    for recording in corpus.recordings:
        csv_bi = recording.path.with_suffix(".csv_bi")
        assert csv_bi.exists() == (QUIRK_CSV_ONLY not in recording.quirks)
        if csv_bi.exists():
            _, duration, rows = _parse_annotation(csv_bi)
            if recording.seizures:
                assert rows == [("TERM", a, b, "seiz") for a, b in recording.seizures]
            else:
                assert rows == [("TERM", 0.0, duration, "bckg")]
        _, duration, rows = _parse_annotation(recording.path.with_suffix(".csv"))
        labels_seen |= {label for *_, label in rows}
        by_channel: dict[str, list[tuple[float, float, str]]] = {}
        for channel, start, stop, label in rows:
            by_channel.setdefault(channel, []).append((start, stop, label))
        assert len(by_channel) == 22 and "FP1-F7" in by_channel and "T4-A2" in by_channel
        for segments in by_channel.values():
            # Each channel is covered from 0 to the end, without gaps or overlaps.
            assert segments[0][0] == 0.0 and segments[-1][1] == duration
            assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))
        # A seizure on any channel counts: the union over channels is the term-based event.
        for (start, stop), label in zip(recording.seizures, recording.seizure_labels):
            overlapping = [(a, b) for segs in by_channel.values() for a, b, lab in segs
                           if lab == label and a < stop and b > start]
            assert min(a for a, _ in overlapping) == start
            assert max(b for _, b in overlapping) == stop
        seizure_rows = [(a, b) for segs in by_channel.values() for a, b, lab in segs
                        if lab in SEIZURE_LABELS]
        assert bool(seizure_rows) == bool(recording.seizures)
    assert {"fnsz", "cpsz", "gnsz", "absz", "tcsz", "mysz", "bckg"} <= labels_seen


def test_focal_seizures_start_on_few_channels_and_spread(corpus):
    recording = next(r for r in corpus.recordings if r.stem == "aaaaabtq_s001_t000")
    _, _, rows = _parse_annotation(recording.path.with_suffix(".csv"))
    onsets = sorted(start for _, start, _, label in rows if label == "fnsz")
    (start, _), = recording.seizures
    assert onsets[0] == start
    assert 0 < onsets.count(start) < 8 and onsets[-1] > start + 1


# --- windows and learnability --------------------------------------------------------------------

def _window_categories(recording: SampleRecording) -> list[str]:
    """docs/tusz.md windowing ("Windows and labels") at 256 Hz: 60 s windows, 10 s stride,
    r >= 0.99 is full."""
    n = int(recording.duration_s * 256)
    mask = np.zeros(n)
    for start, stop in recording.seizures:
        mask[math.floor(start * 256):math.floor(stop * 256)] = 1
    categories = []
    for first in range(0, n - 15360 + 1, 2560):
        ratio = mask[first:first + 15360].mean()
        categories.append("none" if ratio == 0 else "full" if ratio >= 0.99 else "partial")
    return categories


@pytest.mark.parametrize("split", ["train", "dev", "eval"])
def test_every_split_has_partial_full_and_background_windows(corpus, split):
    categories = [c for r in corpus.split(split) for c in _window_categories(r)]
    assert {"none", "partial", "full"} == set(categories)
    assert categories.count("partial") >= 10 or split == "eval"


def test_short_recording_has_no_window(corpus):
    short = [r for r in corpus.recordings if QUIRK_SHORT in r.quirks]
    assert short and all(_window_categories(r) == [] for r in short)


def test_seizures_stand_out_in_2_to_10_hz_and_slow_down(corpus, tmp_path):
    """A sanity check of learnability: much more 2-10 Hz power in seizures, evolving rhythm."""
    for recording in (r for r in corpus.recordings if r.seizures):
        with pyedflib.EdfReader(str(_readable_copy(recording, tmp_path))) as edf:
            eeg = np.array([edf.readSignal(i) for i, label in enumerate(edf.getSignalLabels())
                            if _normalise(label) in CANONICAL])
        fs = recording.fs
        freqs = np.fft.rfftfreq(eeg.shape[1], 1 / fs)
        band = np.fft.irfft(np.fft.rfft(eeg, axis=1) * ((freqs >= 2) & (freqs <= 10)),
                            n=eeg.shape[1], axis=1)
        power = (band ** 2).sum(axis=0)
        t = np.arange(eeg.shape[1]) / fs
        quiet = np.ones_like(t, dtype=bool)
        for start, stop in recording.seizures:
            quiet &= (t < start - 5) | (t > stop + 60)
        for start, stop in recording.seizures:
            during = (t >= start + 1) & (t < stop)
            ratio = power[during].mean() / power[quiet].mean()
            assert ratio > 3.0, f"{recording.stem} seizure at {start}: 2-10 Hz power x{ratio:.1f}"
            if stop - start >= 20:
                # Dominant frequency of the most involved channel: early third above last third.
                channel = np.argmax((band[:, during] ** 2).mean(axis=1))
                thirds = np.array_split(np.flatnonzero(during), 3)
                peaks = []
                for part in (thirds[0], thirds[2]):
                    spectrum = np.abs(np.fft.rfft(band[channel, part]))
                    peaks.append(np.fft.rfftfreq(len(part), 1 / fs)[np.argmax(spectrum)])
                assert peaks[0] > peaks[1] + 0.5, f"{recording.stem} at {start}: {peaks}"
