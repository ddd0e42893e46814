"""Reading EDF files (edf.py): real TUSZ headers, values, the ``01:01:85`` date quirk, bad files."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pyedflib
import pytest

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.signals.edf import EdfError, EdfRecording, header_duration_s
from eeg_assets.synthetic.edf_writer import (
    TUSZ_EXTRA_LABELS, TUSZ_PHYSICAL_MAX_UV, TUSZ_SIDE_LABELS, eeg_labels, noise_generator,
    patch_start_date, write_edf, write_recording,
)


def _parse_header(raw: bytes):
    """Labels, rates and sample counts from the EDF header bytes (independent of pyedflib)."""
    n_records = int(raw[236:244].decode().strip())
    record_s = float(raw[244:252].decode().strip())
    ns = int(raw[252:256].decode().strip())

    def field(offset, width, i):
        return raw[offset + width * i: offset + width * (i + 1)].decode().strip()

    labels = [field(256, 16, i) for i in range(ns)]
    spr_offset = 256 + ns * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)
    per_record = [int(field(spr_offset, 8, i)) for i in range(ns)]
    keep = [i for i, label in enumerate(labels) if label != "EDF Annotations"]
    return ([labels[i] for i in keep], [per_record[i] / record_s for i in keep],
            [per_record[i] * n_records for i in keep], n_records * record_s)


def test_every_real_tusz_header_is_read(real_data):
    edfs = sorted((real_data / "tusz_headers").rglob("*.edf"))
    assert len(edfs) == 186
    rates_seen, counts_seen = set(), set()
    for edf in edfs:
        before = hashlib.sha256(edf.read_bytes()).hexdigest()
        labels, rates, n_samples, duration = _parse_header(edf.read_bytes())
        with EdfRecording(edf) as recording:
            assert [label.strip() for label in recording.labels] == labels, edf.name
            assert recording.sample_rates == rates, edf.name
            assert recording.n_samples == n_samples, edf.name
            assert recording.duration_s == duration
            assert recording.header_repair == ""
            signal = recording.read(0)
            assert signal.shape == (n_samples[0],) and np.isfinite(signal).all()
        assert hashlib.sha256(edf.read_bytes()).hexdigest() == before
        rates_seen.update(rates)
        counts_seen.add(len(labels))
    assert {250.0, 256.0, 400.0, 1.0} <= rates_seen  # 1 Hz side channels included
    assert min(counts_seen) == 18 and max(counts_seen) == 41


def test_values_round_trip_within_quantisation(tmp_path):
    path = write_edf(tmp_path / "r.edf", eeg_labels(), 250, 4,
                     extra_labels=TUSZ_EXTRA_LABELS, side_labels=TUSZ_SIDE_LABELS)
    step = 2 * TUSZ_PHYSICAL_MAX_UV / (2 * 32767)
    generate = noise_generator()
    with EdfRecording(path) as recording:
        assert len(recording.labels) == 19 + len(TUSZ_EXTRA_LABELS) + len(TUSZ_SIDE_LABELS)
        assert recording.sample_rates[:30] == [250.0] * 30
        assert recording.sample_rates[30:] == [1.0] * 3
        assert recording.n_samples[0] == 1000 and recording.n_samples[-1] == 4
        for index in (0, 5, 18):
            expected = generate(index, recording.labels[index], np.arange(1000) / 250)
            # the writer rounds to the nearest digital value: off by at most half a step
            np.testing.assert_allclose(recording.read(index), expected, rtol=0,
                                       atol=0.5 * step * (1 + 1e-9))


def test_start_date_quirk_is_repaired_in_a_copy(tmp_path):
    path = write_edf(tmp_path / "q.edf", eeg_labels(), 256, 3, start=dt.datetime(1985, 1, 1))
    assert path.read_bytes()[168:176] == b"01.01.85"
    patch_start_date(path)
    original = path.read_bytes()
    assert original[168:176] == b"01:01:85"
    with pytest.raises(OSError, match="startdate"):
        pyedflib.EdfReader(str(path))  # the quirk is real: a strict reader refuses it
    with EdfRecording(path) as recording:
        assert "01:01:85" in recording.header_repair
        assert recording.n_samples[0] == 768
        assert np.isfinite(recording.read(3)).all()
    assert path.read_bytes() == original  # the original is never modified


def test_start_date_quirk_builds_and_records_the_repair(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    rec = write_recording(data, "aaaaaaaa_s001_t000", fs=250, duration_s=70,
                          start=dt.datetime(1985, 1, 1))
    patch_start_date(rec.edf)
    digest = hashlib.sha256(rec.edf.read_bytes()).hexdigest()
    stat = rec.edf.stat()
    report = build_split(data, cache, "eval", workers=1, progress=None)
    [entry] = report.built
    assert "01:01:85" in entry.details["header_repair"]
    assert hashlib.sha256(rec.edf.read_bytes()).hexdigest() == digest
    assert rec.edf.stat().st_mtime_ns == stat.st_mtime_ns
    assert (cache / "aaaaaaaa_s001_t000_windows.npz").is_file()
    assert sorted(p.name for p in data.iterdir()) == ["aaaaaaaa_s001_t000.csv_bi",
                                                      "aaaaaaaa_s001_t000.edf"]


@pytest.mark.parametrize("content, needle", [
    (b"", "shorter than an EDF header"),
    (b"0" * 100, "shorter than an EDF header"),
    (b"not an edf at all " * 40, "unreadable EDF"),
])
def test_bad_files_raise_edf_error(tmp_path, content, needle):
    path = tmp_path / "bad.edf"
    path.write_bytes(content)
    with pytest.raises(EdfError, match=needle) as info:
        EdfRecording(path)
    assert "bad.edf" in str(info.value)


def test_truncated_file_raises_edf_error(tmp_path):
    path = write_edf(tmp_path / "t.edf", eeg_labels(), 256, 10)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(EdfError, match="t.edf"):
        EdfRecording(path)


def test_missing_file_raises_edf_error(tmp_path):
    with pytest.raises(EdfError, match="cannot read"):
        EdfRecording(tmp_path / "nope.edf")


def test_header_duration_agrees_with_pyedflib_and_refuses_unfinished_headers(tmp_path,
                                                                              real_data):
    real = sorted((real_data / "tusz_headers" / "edf").rglob("*.edf"))[:10]
    written = write_edf(tmp_path / "r.edf", eeg_labels(), fs=250, duration_s=37,
                        record_duration_s=0.5)
    for path in [*real, written]:
        with pyedflib.EdfReader(str(path)) as reader:
            assert header_duration_s(path) == pytest.approx(reader.getFileDuration()), path
    recording = bytearray(written.read_bytes())
    recording[236:244] = b"-1      "  # the record count of a file still being written
    (tmp_path / "unfinished.edf").write_bytes(recording)
    assert header_duration_s(tmp_path / "unfinished.edf") is None
    (tmp_path / "short.edf").write_bytes(bytes(recording[:200]))
    assert header_duration_s(tmp_path / "short.edf") is None
