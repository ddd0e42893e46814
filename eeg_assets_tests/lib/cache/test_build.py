"""The cache builder (build.py) end to end, on EDF files written with pyedflib and on the real
TUSZ headers: windows and labels, channels, short recordings, incremental rebuild rules,
atomicity and crash recovery.

Expected numbers are computed here from the formulas of docs/tusz.md, "Windows and labels" (exact
integer/decimal arithmetic), never by calling the library's own helpers.
"""

from __future__ import annotations

import os
import re
import signal as signals
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pytest

from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.discovery import recorded_npz
from eeg_assets.lib.cache.ledger import (
    BUILT,
    FAILED,
    QUARANTINED,
    TOO_SHORT,
    FileFingerprint,
    Ledger,
)
from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.dataset.index import collect_facts
from eeg_assets.synthetic.edf_writer import (
    TUSZ_EEG_ORDER, TUSZ_EXTRA_LABELS, TUSZ_SIDE_LABELS, Event, eeg_labels, noise_generator,
    write_annotation, write_recording,
)
from eeg_assets_tests.support.expected_counts import expected_n_samples, expected_n_windows

PINNED = ["FP1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "FZ",
          "CZ", "PZ", "FP2", "F4", "C4", "P4", "F8", "T4", "T6", "O2"]
WINDOW, STRIDE = 15360, 2560
REPO_ROOT = Path(__file__).resolve().parents[3]


def build(data, cache, **kwargs):
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("progress", None)
    kwargs.setdefault("log", lambda line: None)
    return build_split(data, cache, "train", **kwargs)


def load(cache: Path, stem: str):
    with np.load(cache / f"{stem}_windows.npz") as npz:
        return npz["windows"], npz["labels"]


def stitch(windows: np.ndarray) -> np.ndarray:
    """Windows back to one timeline (last axis); overlapping parts must agree exactly."""
    n = (len(windows) - 1) * STRIDE + windows.shape[-1]
    out = np.full(windows.shape[1:-1] + (n,), np.nan, dtype=windows.dtype)
    for i, window in enumerate(windows):
        part = out[..., i * STRIDE: i * STRIDE + WINDOW]
        seen = ~np.isnan(part)
        assert np.array_equal(part[seen], window[seen]), f"window {i} disagrees with window {i-1}"
        part[...] = window
    return out


def tones(names_to_labels: dict[str, str], amplitude=40.0, noise=1.0):
    """A generator giving the EDF signal of pinned channel ``PINNED[i]`` a ``2 + i`` Hz tone
    (so the cache's channel order can be read back from the spectrum), noise elsewhere."""
    freq = {label: 2 + PINNED.index(name) for name, label in names_to_labels.items()}
    background = noise_generator(seed=11, amplitude_uv=noise, alpha_uv=0.0)

    def generate(index, label, t):
        x = background(index, label, t)
        if label in freq:
            x = x + amplitude * np.sin(2 * np.pi * freq[label] * t)
        return x

    return generate


def dominant_hz(x: np.ndarray, fs=256) -> float:
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.argmax(spectrum) * fs / len(x))


def mtimes(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache.glob("*_windows.npz")}


# --------------------------------------------------------------------------------------------
# Rates, window counts and the NPZ format
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fs, duration", [(250, 97), (400, 97), (512, 97), (256, 97), (250, 60)])
def test_rates_give_exact_sample_and_window_counts(tmp_path, fs, duration):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", fs=fs, duration_s=duration, extra_labels=TUSZ_EXTRA_LABELS,
                    side_labels=TUSZ_SIDE_LABELS)
    n_256 = -(-(fs * duration) * 256 // fs)  # ceil(n * 256 / fs), exact
    n_windows = (n_256 - 15360) // 2560 + 1
    assert n_256 == expected_n_samples(fs * duration, fs)
    [entry] = build(data, cache).built
    assert entry.n_windows == n_windows
    assert entry.details["fs"] == fs and entry.details["duration_s"] == duration
    assert entry.details["n_signals"] == 33
    windows, labels = load(cache, "r")
    assert windows.shape == (n_windows, 19, 15360) and windows.dtype == np.float32
    assert labels.shape == (n_windows, 15360) and labels.dtype == np.float32


@pytest.mark.parametrize("fs, n_raw, record_s, n_windows", [
    (400, 23999, 0.2575, 1),    # 15359.36 samples at 256 Hz: the ceiling makes one full window
    (250, 24325, 0.1, 4),       # 24908.8 -> 24909
    (250, 14999, 0.212, 0),     # 15358.98 -> 15359: one sample short of a window
])
def test_window_count_boundary_uses_ceiling(tmp_path, fs, n_raw, record_s, n_windows):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", fs=fs, duration_s=n_raw / fs, record_duration_s=record_s)
    n_256 = -(-n_raw * 256 // fs)
    assert n_256 * fs != n_raw * 256  # not a whole number of samples: the ceiling decides
    assert expected_n_windows(n_256) == n_windows
    report = build(data, cache)
    if n_windows:
        [entry] = report.built
        assert entry.n_windows == n_windows
        assert load(cache, "r")[0].shape == (n_windows, 19, 15360)
    else:
        [entry] = report.too_short
        assert not list(cache.glob("*.npz"))
    assert entry.details["duration_s"] == pytest.approx(n_raw / fs)


def test_npz_format_and_value_range(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", fs=400, duration_s=90, events=[Event(20, 40)],
                    generator=noise_generator(seed=5, amplitude_uv=200))
    [entry] = build(data, cache).built
    path = cache / "r_windows.npz"
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        assert sorted(i.filename for i in infos) == ["labels.npy", "windows.npy"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        assert zf.testzip() is None
    windows, labels = load(cache, "r")
    assert np.isfinite(windows).all()
    assert windows.min() >= -10 and windows.max() <= 10
    assert set(np.unique(labels)) == {0.0, 1.0}
    # z-scored over the whole recording: the stitched timeline has mean 0 / std 1 per channel
    timeline = stitch(windows)
    np.testing.assert_allclose(timeline.mean(axis=1), 0, atol=0.02)
    np.testing.assert_allclose(timeline.std(axis=1), 1, atol=0.05)
    assert entry.npz_name == "r_windows.npz"
    assert entry.npz_fingerprint == f"{path.stat().st_size}:{path.stat().st_mtime_ns}"


def test_channel_order_in_cache_is_pinned(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    labels = eeg_labels()
    gen = tones({name: labels[TUSZ_EEG_ORDER.index(name)] for name in PINNED})
    write_recording(data, "r", fs=250, duration_s=70, generator=gen,
                    extra_labels=TUSZ_EXTRA_LABELS, side_labels=TUSZ_SIDE_LABELS)
    [entry] = build(data, cache).built
    assert entry.details["reconstructed"] == ""
    windows, _ = load(cache, "r")
    assert [dominant_hz(windows[0, i]) for i in range(19)] == [2.0 + i for i in range(19)]


def test_synonyms_and_le_reference(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    synonyms = {"T3": "T7", "T4": "T8", "T5": "P7", "T6": "P8"}
    names = [synonyms.get(n, n) for n in TUSZ_EEG_ORDER]
    labels = eeg_labels(names, reference="LE")
    assert "EEG T7-LE" in labels and "EEG T3-LE" not in labels
    label_of = {pinned: labels[TUSZ_EEG_ORDER.index(pinned)] for pinned in PINNED}
    write_recording(data, "r", labels=labels, duration_s=70, generator=tones(label_of))
    [entry] = build(data, cache).built
    windows, _ = load(cache, "r")
    assert [dominant_hz(windows[0, i]) for i in range(19)] == [2.0 + i for i in range(19)]
    assert entry.status == BUILT


# --------------------------------------------------------------------------------------------
# Short recordings
# --------------------------------------------------------------------------------------------

def test_short_recordings_are_too_short_and_reported(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "short59", fs=256, duration_s=59)
    write_recording(data, "short2", fs=400, duration_s=2)
    write_recording(data, "exact60", fs=250, duration_s=60)  # exactly one window
    report = build(data, cache)
    assert sorted(e.stem for e in report.too_short) == ["short2", "short59"]
    for entry in report.too_short:
        assert entry.status == TOO_SHORT and entry.n_windows == 0
        assert entry.stem in entry.reason and "shorter than one 60 s window" in entry.reason
    assert [e.stem for e in report.built] == ["exact60"]
    assert report.built[0].n_windows == 1
    assert sorted(p.name for p in cache.glob("*.npz")) == ["exact60_windows.npz"]
    entries = {e.stem: e for e in Ledger(cache).entries().values()}
    assert entries["short59"].status == TOO_SHORT and entries["short59"].npz_name == ""
    again = build(data, cache)
    assert again.skipped == 3 and sorted(e.stem for e in again.too_short) == ["short2", "short59"]


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------

def _floor256(text: str) -> int:
    return int((Decimal(text) * 256).to_integral_value(rounding=ROUND_FLOOR))


def test_labels_at_fractional_event_times(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    fs, duration = 250, 197  # 50432 samples at 256 Hz: 14 windows, a trailing partial one dropped
    events = [("12.0039", "13.5"), ("100.3", "171.77"), ("196.1", "197.0")]
    write_recording(data, "r", fs=fs, duration_s=duration,
                    events=[Event(a, b, "fnsz") for a, b in events])
    n_256 = expected_n_samples(fs * duration, fs)
    n_windows = expected_n_windows(n_256)
    assert (n_256, n_windows) == (50432, 14)
    expected = np.zeros(n_256, np.float32)
    for start, stop in events:
        expected[_floor256(start):_floor256(stop)] = 1
    assert _floor256("100.3") == 25676 and _floor256("171.77") == 43973
    [entry] = build(data, cache).built
    windows, labels = load(cache, "r")
    assert labels.shape == (n_windows, WINDOW)
    covered = (n_windows - 1) * STRIDE + WINDOW
    np.testing.assert_array_equal(stitch(labels), expected[:covered])
    per_window = [int(expected[i * STRIDE: i * STRIDE + WINDOW].sum()) for i in range(n_windows)]
    assert entry.seizure_samples == per_window
    assert [int(row.sum()) for row in labels] == per_window
    assert entry.n_windows == n_windows and entry.details["seizure_events"] == 3
    assert Ledger(cache).entries()["r.edf"].seizure_samples == per_window


def test_seizure_overrunning_the_signal_is_clipped_with_a_warning(tmp_path):
    """docs/tusz.md, "Windows and labels": a seizure that starts inside the signal and runs past
    its end is clipped to the signal and the recording is built with a recorded warning; one that
    starts at or after the end cannot be placed and quarantines the recording."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "clip", duration_s=70, events=[Event(65, 70.8)])
    write_recording(data, "past", duration_s=70, events=[Event(30, 35), Event(65, 80)])
    write_recording(data, "inside", duration_s=70, events=[Event(65, 70)])  # ends at the end
    write_recording(data, "tail", duration_s=70, annotation_duration_s=70.5,
                    events=[Event(70.2, 70.4)])
    write_recording(data, "edge", duration_s=70, annotation_duration_s=70.5,
                    events=[Event(70, 70.4)])
    report = build(data, cache)
    built = {e.stem: e for e in report.built}
    assert sorted(built) == ["clip", "inside", "past"]
    # 70 s = 17920 samples, 2 windows [0, 15360) and [2560, 17920); [16640, 18124) and
    # [16640, 20480) are clipped to the signal's 17920 samples
    assert built["clip"].seizure_samples == [0, 17920 - 16640]
    assert built["past"].seizure_samples == [8960 - 7680, (8960 - 7680) + (17920 - 16640)]
    expected = np.zeros(17920, np.float32)
    expected[7680:8960] = expected[16640:] = 1  # 30-35 s, and 65 s to the end of the signal
    np.testing.assert_array_equal(stitch(load(cache, "past")[1]), expected)
    assert built["clip"].warnings == [
        "clip.csv_bi: seizure at 65-70.8 s runs 0.8 s past the end of the signal (70 s); its "
        "label mask is clipped at 70 s"]
    assert built["past"].warnings == [
        "past.csv_bi: seizure at 65-80 s runs 10 s past the end of the signal (70 s); its "
        "label mask is clipped at 70 s"]
    assert built["inside"].warnings == []
    entries = Ledger(cache).entries()
    assert entries["past.edf"].warnings == built["past"].warnings  # recorded, not only reported
    assert [e.stem for e in report.warned] == ["clip", "past"]
    quarantined = {e.stem: e.reason for e in report.quarantined}
    assert sorted(quarantined) == ["edge", "tail"]
    assert quarantined["tail"] == ("tail.csv_bi: seizure at 70.2-70.4 s starts at or after the "
                                   "end of the signal (70 s); it cannot be placed")
    assert "seizure at 70-70.4 s starts at or after the end" in quarantined["edge"]
    # a rerun builds nothing and still reports the warnings
    again = build(data, cache)
    assert again.built == [] and [e.stem for e in again.warned] == ["clip", "past"]


def test_duration_mismatch_is_quarantined(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", duration_s=70, annotation_duration_s=1289.0)
    write_recording(data, "ok", duration_s=70, annotation_duration_s=70.8)  # within 1 s
    report = build(data, cache)
    [bad] = report.quarantined
    assert "says duration 1289 s but the EDF signal lasts 70 s" in bad.reason
    assert [e.stem for e in report.built] == ["ok"]


# --------------------------------------------------------------------------------------------
# Channels: Fz/Pz reconstruction, missing channels
# --------------------------------------------------------------------------------------------

def test_fz_pz_reconstructed_as_mean_of_neighbours(tmp_path):
    """Fz = mean(F3, F4), Pz = mean(P3, P4) in microvolts, then z-scored.

    With sines at distinct frequencies (orthogonal over the recording), z(Fz) is exactly
    a*z(F3) + b*z(F4) + c with a = s3 / (2 s), s = std((x3 + x4) / 2); for equal amplitudes
    a = b = 1/sqrt(2), for P3 twice P4 a = 2/sqrt(5), b = 1/sqrt(5). A copy of one neighbour,
    a mean of z-scores or a wrong neighbour would not fit.
    """
    data, cache = tmp_path / "data", tmp_path / "cache"
    amplitude = {"F3": (5, 40), "F4": (7, 40), "P3": (3, 60), "P4": (11, 30)}
    names = [n for n in TUSZ_EEG_ORDER if n not in ("FZ", "PZ")]
    labels = eeg_labels(names)
    base = noise_generator(seed=2, amplitude_uv=20)

    def gen(index, label, t):
        name = label[4:-4]
        if name in amplitude:
            hz, amp = amplitude[name]
            return amp * np.sin(2 * np.pi * hz * t)
        return base(index, label, t)

    write_recording(data, "r", fs=256, duration_s=120, labels=labels, generator=gen,
                    side_labels=TUSZ_SIDE_LABELS)
    [entry] = build(data, cache).built
    assert entry.details["reconstructed"] == "FZ=mean(F3,F4); PZ=mean(P3,P4)"
    recorded = Ledger(cache).entries()["r.edf"].details["reconstructed"]
    assert recorded == entry.details["reconstructed"]
    timeline = stitch(load(cache, "r")[0]).astype(np.float64)
    middle = slice(5 * 256, -5 * 256)  # away from the filter's edge transients
    for target, (left, right), (a_exp, b_exp) in [
        ("FZ", ("F3", "F4"), (1 / np.sqrt(2), 1 / np.sqrt(2))),
        ("PZ", ("P3", "P4"), (2 / np.sqrt(5), 1 / np.sqrt(5))),
    ]:
        y = timeline[PINNED.index(target)][middle]
        x1 = timeline[PINNED.index(left)][middle]
        x2 = timeline[PINNED.index(right)][middle]
        design = np.column_stack([x1, x2, np.ones_like(x1)])
        (a, b, c), *_ = np.linalg.lstsq(design, y, rcond=None)
        residual = y - design @ [a, b, c]
        assert np.abs(residual).max() < 1e-3, target
        assert a == pytest.approx(a_exp, abs=0.01) and b == pytest.approx(b_exp, abs=0.01), target


def test_fz_present_is_used_not_reconstructed(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    labels = eeg_labels()
    write_recording(data, "r", duration_s=70, labels=labels,
                    generator=tones({n: labels[TUSZ_EEG_ORDER.index(n)] for n in PINNED}))
    [entry] = build(data, cache).built
    windows, _ = load(cache, "r")
    assert dominant_hz(windows[0, PINNED.index("FZ")]) == 2 + PINNED.index("FZ")
    assert entry.details["reconstructed"] == ""


def test_other_missing_channel_is_quarantined_naming_it(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", labels=eeg_labels(n for n in TUSZ_EEG_ORDER if n != "O2"))
    write_recording(data, "ok")
    report = build(data, cache)
    [bad] = report.quarantined
    assert bad.stem == "r" and re.search(r"missing EEG channels: O2\b", bad.reason)
    assert not (cache / "r_windows.npz").exists()
    assert [e.stem for e in report.built] == ["ok"]


def test_flat_channel_is_quarantined(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    noise = noise_generator()
    gen = lambda i, label, t: np.zeros(len(t)) if label == "EEG CZ-REF" else noise(i, label, t)
    write_recording(data, "r", generator=gen)
    [bad] = build(data, cache).quarantined
    assert "flat" in bad.reason and "CZ" in bad.reason


def test_duplicate_stems_are_quarantined(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data / "a", "same")
    write_recording(data / "b", "same")
    report = build(data, cache)
    assert [e.source for e in report.built] == ["a/same.edf"]
    [dup] = report.quarantined
    assert dup.source == "b/same.edf" and "duplicate recording name" in dup.reason


# --------------------------------------------------------------------------------------------
# The real TUSZ headers as a split
# --------------------------------------------------------------------------------------------

def test_real_tusz_header_folder_builds_without_crashing(real_data, tmp_path):
    data = real_data / "tusz_headers" / "edf"
    cache = tmp_path / "cache"
    report = build(data, cache)
    assert report.recordings == 186
    assert report.built == []
    assert len(report.quarantined) + len(report.too_short) == 186
    for entry in report.quarantined + report.too_short:
        ann_text = (data / entry.source).with_suffix(".csv_bi").read_text()
        declared = float(re.search(r"# duration = ([0-9.]+) secs", ann_text).group(1))
        assert entry.stem in entry.reason
        assert "unexpected error" not in entry.reason and entry.status != FAILED
        if abs(declared - 2.0) > 1.0:  # every real annotation is longer than the 2 s EDF
            assert entry.status == QUARANTINED
            assert f"says duration {declared:g} s but the EDF signal lasts 2 s" in entry.reason
        else:
            assert entry.status == TOO_SHORT
    assert not list(cache.glob("*.npz")) and not list(cache.glob(".*.tmp"))
    assert len(Ledger(cache).entries()) == 186
    # quarantined entries are current: a second run rebuilds nothing and reports them again
    again = build(data, cache)
    assert again.skipped == 186 and len(again.quarantined) + len(again.too_short) == 186


# --------------------------------------------------------------------------------------------
# Incremental rebuilds
# --------------------------------------------------------------------------------------------

@pytest.fixture
def split(tmp_path):
    """Three built recordings (250, 400, 256 Hz); returns (data, cache, {stem: RecordingFiles})."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    recs = {}
    for i, fs in enumerate((250, 400, 256)):
        stem = f"aaaaaaa{'abc'[i]}_s001_t000"
        recs[stem] = write_recording(data / stem[:8] / "s001_2015" / "01_tcp_ar", stem, fs=fs,
                                     duration_s=75, events=[Event(10 + i, 20 + i)],
                                     generator=noise_generator(seed=i))
    report = build(data, cache)
    assert len(report.built) == 3
    return data, cache, recs


def test_second_run_builds_nothing(split):
    data, cache, recs = split
    before, ledger_before = mtimes(cache), Ledger(cache).entries()
    report = build(data, cache)
    assert report.skipped == 3 and report.built == [] and report.removed == []
    assert mtimes(cache) == before
    assert Ledger(cache).entries() == ledger_before


def test_touched_edf_rebuilds_only_that_one(split):
    data, cache, recs = split
    stem = "aaaaaaab_s001_t000"
    before = mtimes(cache)
    old_windows, old_labels = load(cache, stem)
    st = recs[stem].edf.stat()
    os.utime(recs[stem].edf, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    report = build(data, cache)
    assert [e.stem for e in report.built] == [stem] and report.skipped == 2
    after = mtimes(cache)
    assert {k: v for k, v in after.items() if not k.startswith(stem)} == {
        k: v for k, v in before.items() if not k.startswith(stem)}
    new_windows, new_labels = load(cache, stem)  # same content, same output
    assert np.array_equal(new_windows, old_windows) and np.array_equal(new_labels, old_labels)


def test_a_tagged_build_records_the_npzs_it_leaves_for_its_run(split):
    """What the run's later steps and checks use instead of a stat per NPZ: after a rebuild, a
    removal and a quarantine it is what a fresh look at the folder finds."""
    data, cache, recs = split

    def on_disk():
        return tuple(sorted((p.name, str(FileFingerprint.of(p))) for p in cache.glob("*.npz")))

    build(data, cache, run_tag="run-1")
    assert recorded_npz(cache, "run-1") == on_disk() and len(on_disk()) == 3
    assert recorded_npz(cache, "run-2") is None and recorded_npz(cache, "") is None

    a, b, c = sorted(recs)
    write_recording(recs[a].edf.parent, a, fs=250, duration_s=75, annotation=None,
                    generator=noise_generator(seed=99))       # rebuilt: a new fingerprint
    recs[b].edf.unlink()                                      # removed
    recs[c].edf.write_bytes(recs[c].edf.read_bytes()[:300])   # quarantined: NPZ dropped
    report = build(data, cache, run_tag="run-2")
    assert [e.stem for e in report.built] == [a] and [e.stem for e in report.quarantined] == [c]
    assert recorded_npz(cache, "run-2") == on_disk() and [n for n, _ in on_disk()] == [
        f"{a}_windows.npz"]
    assert collect_facts(cache, on_disk=recorded_npz(cache, "run-2")) == collect_facts(cache)


def test_changed_edf_content_rebuilds_with_new_data(split):
    data, cache, recs = split
    stem = "aaaaaaaa_s001_t000"
    old_windows, _ = load(cache, stem)
    before = mtimes(cache)
    write_recording(recs[stem].edf.parent, stem, fs=250, duration_s=75, annotation=None,
                    generator=noise_generator(seed=99))
    report = build(data, cache)
    assert [e.stem for e in report.built] == [stem]
    assert not np.array_equal(load(cache, stem)[0], old_windows)
    assert all(mtimes(cache)[k] == v for k, v in before.items() if not k.startswith(stem))


def test_changed_annotation_rebuilds_that_one(split):
    data, cache, recs = split
    stem = "aaaaaaac_s001_t000"
    write_annotation(recs[stem].annotation, 75, [Event(30, 31.5)])
    report = build(data, cache)
    assert [e.stem for e in report.built] == [stem] and report.skipped == 2
    _, labels = load(cache, stem)
    assert int(labels[0].sum()) == 384
    assert report.built[0].seizure_samples[0] == 384


def test_config_change_rebuilds_all(split):
    data, cache, recs = split
    old = {stem: load(cache, stem)[0] for stem in recs}
    config = CacheConfig(notch_hz=50.0)
    report = build(data, cache, config=config)
    assert sorted(e.stem for e in report.built) == sorted(recs) and report.skipped == 0
    assert {e.config_version for e in Ledger(cache).entries().values()} == {config.version()}
    for stem in recs:
        assert not np.array_equal(load(cache, stem)[0], old[stem])
    assert build(data, cache, config=config).skipped == 3
    assert len(build(data, cache).built) == 3  # and back


def test_deleted_edf_removes_npz_and_ledger_entry(split):
    data, cache, recs = split
    stem = "aaaaaaab_s001_t000"
    source = recs[stem].edf.relative_to(data).as_posix()
    recs[stem].edf.unlink()
    report = build(data, cache)
    assert report.removed == [source]
    assert not (cache / f"{stem}_windows.npz").exists()
    assert source not in Ledger(cache).entries() and len(Ledger(cache).entries()) == 2
    assert report.skipped == 2 and report.built == []


def test_broken_file_removes_stale_npz(split):
    data, cache, recs = split
    stem = "aaaaaaaa_s001_t000"
    recs[stem].edf.write_bytes(recs[stem].edf.read_bytes()[:3000])  # truncated by a bad copy
    report = build(data, cache)
    [bad] = report.quarantined
    assert bad.stem == stem and "truncated in the header" in bad.reason
    assert not (cache / f"{stem}_windows.npz").exists()
    entry = Ledger(cache).entries()[bad.source]
    assert entry.status == QUARANTINED and entry.npz_name == ""
    # fixed again: rebuilt
    write_recording(recs[stem].edf.parent, stem, fs=250, duration_s=75, annotation=None,
                    generator=noise_generator(seed=0))
    assert [e.stem for e in build(data, cache).built] == [stem]


def test_removed_annotation_removes_stale_npz(split):
    data, cache, recs = split
    stem = "aaaaaaac_s001_t000"
    recs[stem].annotation.unlink()
    [bad] = build(data, cache).quarantined
    assert "no annotation file" in bad.reason
    assert not (cache / f"{stem}_windows.npz").exists()


def test_npz_deleted_or_changed_behind_our_back_is_rebuilt(split):
    data, cache, recs = split
    (cache / "aaaaaaaa_s001_t000_windows.npz").unlink()
    with open(cache / "aaaaaaab_s001_t000_windows.npz", "r+b") as fh:
        fh.seek(0, 2)
        fh.write(b"junk")
    report = build(data, cache)
    assert sorted(e.stem for e in report.built) == ["aaaaaaaa_s001_t000", "aaaaaaab_s001_t000"]


def test_leftovers_are_cleaned(split):
    data, cache, recs = split
    (cache / ".x_windows.npz.abc.tmp").write_bytes(b"partial")
    (cache / "stranger_windows.npz").write_bytes(b"not ours")
    report = build(data, cache)
    assert report.skipped == 3
    assert not (cache / ".x_windows.npz.abc.tmp").exists()
    assert not (cache / "stranger_windows.npz").exists()


# --------------------------------------------------------------------------------------------
# Atomicity and crash recovery
# --------------------------------------------------------------------------------------------

_LIMITED_BUILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a too-large write raises OSError (EFBIG)
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.discovery import recorded_npz
report = build_split(sys.argv[1], sys.argv[2], "train", workers=1, progress=None)
print("built", len(report.built), "quarantined", len(report.quarantined), "failed",
      len(report.failed))
"""


def test_failed_write_leaves_nothing_and_is_retried(tmp_path):
    """A write that fails midway (file size limit: OSError) leaves no NPZ and no temporary file,
    is recorded as FAILED (not quarantined), and is built on the next run."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    write_recording(data, "r", duration_s=70)  # 2 windows = 2.3 MB > the 1 MB limit
    done = subprocess.run([sys.executable, "-c", _LIMITED_BUILD, str(data), str(cache)],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert "built 0 quarantined 0 failed 1" in done.stdout
    assert sorted(p.name for p in cache.iterdir()) == [".build.lock", "_ledger.sqlite",
                                                       "_raw_listing.json"]
    entry = Ledger(cache).entries()["r.edf"]
    assert entry.status == FAILED
    assert "could not write" in entry.reason and "r_windows.npz" in entry.reason
    report = build(data, cache)
    assert [e.stem for e in report.built] == ["r"] and report.skipped == 0
    assert Ledger(cache).entries()["r.edf"].status == BUILT


def _facts(cache: Path) -> dict:
    return {source: (e.status, e.n_windows, e.seizure_samples, e.npz_name, e.reason)
            for source, e in Ledger(cache).entries().items()}


def _arrays(cache: Path) -> dict:
    out = {}
    for path in sorted(cache.glob("*_windows.npz")):
        with np.load(path) as npz:
            out[path.name] = (npz["windows"].copy(), npz["labels"].copy())
    return out


@pytest.mark.parametrize("caller", ["main thread", "threaded process"])
def test_pool_build_equals_in_process_build(split, tmp_path, caller):
    """Two workers build the same bytes and facts as one, from a plain process (workers are
    forked) and from a threaded one like Dagster's (workers come from a forkserver)."""
    data, reference, _ = split
    cache = tmp_path / "pool"
    if caller == "main thread":
        report = build(data, cache, workers=2)
    else:
        with ThreadPoolExecutor(1) as caller_thread:
            report = caller_thread.submit(build, data, cache, workers=2).result()
    assert len(report.built) == 3
    assert _facts(cache) == _facts(reference)
    ours, theirs = _arrays(cache), _arrays(reference)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert np.array_equal(ours[name][0], theirs[name][0])
        assert np.array_equal(ours[name][1], theirs[name][1])


@pytest.mark.slow
def test_killed_build_then_rerun_equals_uninterrupted(tmp_path):
    data = tmp_path / "data"
    for i in range(4):
        write_recording(data, f"aaaaaaaa_s001_t00{i}", fs=400, duration_s=150,
                        events=[Event(20.5 + i, 50.25 + i)], generator=noise_generator(seed=i))
    reference = tmp_path / "reference"
    build(data, reference)
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "eeg_assets", "build-cache", "--data-dir", str(data),
         "--cache-dir", str(cache), "--split", "train", "--workers", "1", "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    try:
        # kill while the second NPZ is being written: one file done, one half-written
        while time.monotonic() < deadline and proc.poll() is None:
            if list(cache.glob("*_windows.npz")) and list(cache.glob(".*.tmp")):
                break
            time.sleep(0.002)
        os.killpg(proc.pid, signals.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signals.SIGKILL, "the build finished before it could be killed"
    assert len(list(cache.glob("*_windows.npz"))) < 4
    report = build(data, cache)
    assert report.skipped + len(report.built) == 4
    assert not list(cache.glob(".*.tmp"))
    assert _facts(cache) == _facts(reference)
    ours, theirs = _arrays(cache), _arrays(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == 4
    for name in ours:
        assert np.array_equal(ours[name][0], theirs[name][0])
        assert np.array_equal(ours[name][1], theirs[name][1])
