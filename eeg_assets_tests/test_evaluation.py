"""Stitching, post-processing, OVERLAP scoring, the .csv_bi writer and the accumulator."""

from __future__ import annotations

import csv
import math
import tracemalloc

import numpy as np
import pytest

from eeg_assets.lib.model.evaluation import (
    Event,
    EventCounts,
    PostProcessConfig,
    ValidationAccumulator,
    bname_from_npz,
    detect_events,
    event_metrics,
    format_csv_bi,
    mask_to_events,
    score_overlap,
    write_csv_bi,
)
from eeg_assets.lib.model.auroc import sample_auroc
from eeg_assets.lib.model.stitching import (
    RecordingStream,
    RecordingTimeline,
    stitch_recording,
    timeline_length,
)


# ---------------------------------------------------------------- stitching

def _stitched_probs(windows: np.ndarray, stride: int) -> np.ndarray:
    return stitch_recording(windows, np.zeros_like(windows), stride)[0]


def test_stitching_averages_every_covering_window():
    windows = np.array([[1, 1, 1, 1], [3, 3, 3, 3], [5, 5, 5, 5]], dtype=np.float32)
    np.testing.assert_array_equal(_stitched_probs(windows, stride=2),
                                  [1, 1, 2, 2, 4, 4, 5, 5])


def test_stitching_with_three_windows_covering_a_sample():
    windows = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17]],
                       dtype=np.float32)
    # Timeline sample 4 is window 0 index 4, window 1 index 2, window 2 index 0: (4+8+12)/3.
    expected = [0, 1, (2 + 6) / 2, (3 + 7) / 2, (4 + 8 + 12) / 3, (5 + 9 + 13) / 3,
                (10 + 14) / 2, (11 + 15) / 2, 16, 17]
    np.testing.assert_allclose(_stitched_probs(windows, stride=2), expected, rtol=1e-6)


def test_stitched_length_matches_the_cache_geometry():
    assert timeline_length(3, 15360, 2560) == 15360 + 2 * 2560
    assert timeline_length(0, 15360, 2560) == 0
    assert _stitched_probs(np.zeros((0, 8), np.float32), 2).shape == (0,)
    probs, labels = stitch_recording(np.ones((5, 8), np.float32), np.ones((5, 8)), 2)
    assert probs.shape == labels.shape == (16,) and probs.dtype == np.float32


def test_stride_larger_than_window_is_refused():
    with pytest.raises(ValueError, match="uncovered"):
        stitch_recording(np.ones((2, 4), np.float32), np.ones((2, 4)), stride=5)


def test_label_stitching_recovers_the_recording_mask():
    mask = np.zeros(20, dtype=bool)
    mask[5:11] = True
    window, stride = 8, 4
    rows = np.stack([mask[i * stride: i * stride + window] for i in range(4)]).astype(np.float32)
    probs, labels = stitch_recording(np.zeros_like(rows), rows, stride)
    np.testing.assert_array_equal(labels, mask)


def test_timeline_filled_in_batches_equals_the_one_shot_stitch():
    rng = np.random.default_rng(0)
    probs = rng.random((7, 12)).astype(np.float32)
    labels = rng.random((7, 12)) < 0.3
    timeline = RecordingTimeline(7, 12, stride=4)
    for start, stop in ((0, 3), (3, 4), (4, 7)):
        assert not timeline.complete
        timeline.add(probs[start:stop], labels[start:stop])
    expected = stitch_recording(probs, labels, 4)
    for got, want in zip(timeline.result(), expected):
        np.testing.assert_array_equal(got, want)


def test_timeline_refuses_extra_windows_wrong_shapes_and_early_results():
    timeline = RecordingTimeline(2, 4, stride=2)
    with pytest.raises(ValueError, match="must both be"):
        timeline.add(np.ones((1, 5)), np.ones((1, 5)))
    timeline.add(np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="only 1 of 2 windows"):
        timeline.result()
    with pytest.raises(ValueError, match="3 windows added to a recording of 2"):
        timeline.add(np.ones((2, 4)), np.ones((2, 4)))


# ---------------------------------------------------------------- events

def test_mask_to_events_keeps_every_run():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], dtype=bool)
    assert mask_to_events(mask, fs=2) == [Event(0.5, 1.5), Event(2.5, 3.0), Event(3.5, 5.0)]
    assert mask_to_events(np.zeros(5, bool), fs=2) == []


def test_detect_events_thresholds_merges_and_drops_short_events():
    fs = 10
    probs = np.zeros(200)
    probs[10:40] = 0.9   # 3 s event ...
    probs[45:60] = 0.7   # ... 0.5 s gap -> merged with the one before into 1.0-6.0 s
    probs[100:105] = 0.95  # 0.5 s: dropped
    probs[150:180] = 0.6  # 3 s event
    probs[170] = 0.49    # 0.1 s dip below threshold: merged back
    events = detect_events(probs, fs, PostProcessConfig(threshold=0.5, merge_gap_s=1.0,
                                                        min_event_s=2.0))
    assert [(e.start_s, e.stop_s) for e in events] == [(1.0, 6.0), (15.0, 18.0)]
    assert events[0].confidence == pytest.approx(probs[10:60].mean())
    assert events[1].confidence == pytest.approx(probs[150:180].mean())


def test_threshold_is_inclusive_and_configurable():
    probs = np.array([0.0, 0.8, 0.8, 0.8, 0.0])
    assert len(detect_events(probs, 1, PostProcessConfig(0.8, 0.0, 1.0))) == 1
    assert detect_events(probs, 1, PostProcessConfig(0.81, 0.0, 1.0)) == []
    assert detect_events(probs, 1, PostProcessConfig(0.5, 0.0, 4.0)) == []


def test_overlap_scoring_on_hand_made_events():
    reference = [Event(10, 20), Event(30, 40), Event(100, 110)]
    hypothesis = [Event(15, 16), Event(18, 35), Event(50, 60), Event(40, 45)]
    counts = score_overlap(reference, hypothesis)
    # refs 1 and 2 overlap hypotheses; [40, 45) only touches [30, 40) and is a false alarm.
    assert counts == EventCounts(n_reference=3, n_detected=2, n_hypothesis=4, n_false_alarms=2)
    metrics = event_metrics(counts, duration_s=12 * 3600)
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["fa_per_24h"] == pytest.approx(4.0)
    assert metrics["precision"] == pytest.approx(0.5)


def test_event_metrics_without_events_are_nan_not_errors():
    metrics = event_metrics(EventCounts(), duration_s=3600)
    assert math.isnan(metrics["sensitivity"]) and math.isnan(metrics["precision"])
    assert metrics["fa_per_24h"] == 0.0
    assert EventCounts(1, 1, 2, 1) + EventCounts(2, 0, 1, 1) == EventCounts(3, 1, 3, 2)


# ---------------------------------------------------------------- .csv_bi

def test_bname_is_the_npz_name_without_the_cache_suffix():
    assert bname_from_npz("aaaaadkb_s010_t000_windows.npz") == "aaaaadkb_s010_t000"
    assert bname_from_npz("/cache/val/aaaaadkb_s010_t000_windows.npz") == "aaaaadkb_s010_t000"
    with pytest.raises(ValueError, match="not a cache file name"):
        bname_from_npz("aaaaadkb_s010_t000.npz")


def test_csv_bi_writer_output_parses_back(tmp_path):
    events = [Event(42.27864, 81.776, 0.91234), Event(100.0, 130.5, 0.5)]
    path = tmp_path / "aaaaaasf_s001_t000.csv_bi"
    write_csv_bi(path, "aaaaaasf_s001_t000", 1289.0, events)
    lines = path.read_text().splitlines()
    assert lines[:6] == [
        "# version = csv_v1.0.0",
        "# bname = aaaaaasf_s001_t000",
        "# duration = 1289.0000 secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [(r["channel"], float(r["start_time"]), float(r["stop_time"]), r["label"],
             float(r["confidence"])) for r in rows] == [
        ("TERM", 42.2786, 81.776, "seiz", 0.9123), ("TERM", 100.0, 130.5, "seiz", 0.5)]
    assert lines[6] == "TERM,42.2786,81.7760,seiz,0.9123"


def test_csv_bi_without_events_has_only_the_header():
    assert format_csv_bi("x", 60.0, []).splitlines()[-1] == (
        "channel,start_time,stop_time,label,confidence")


# ---------------------------------------------------------------- accumulator

def _windows_of(timeline: np.ndarray, window: int, stride: int) -> np.ndarray:
    n = (timeline.size - window) // stride + 1
    return np.stack([timeline[i * stride: i * stride + window] for i in range(n)])


def test_accumulator_scores_stitched_recordings_and_writes_hypotheses(tmp_path):
    fs, window, stride = 4, 40, 20        # 10 s windows, 5 s stride, 4 Hz timeline
    mask = np.zeros(120, dtype=bool)       # 30 s recording, seizure 10-17.5 s
    mask[40:70] = True
    probs = np.where(mask, 0.9, 0.1)
    probs[100:112] = 0.8                   # a 3 s false alarm at 25-28 s
    accumulator = ValidationAccumulator(fs, stride, PostProcessConfig(0.5, 1.0, 2.0))
    first = accumulator.add_recording("a_s001_t000_windows.npz",
                                      _windows_of(probs, window, stride),
                                      _windows_of(mask.astype(np.float32), window, stride))
    assert first.duration_s == 30.0
    assert first.counts == EventCounts(1, 1, 2, 1)
    # A second, seizure-free recording perfectly predicted as background.
    quiet = np.zeros(80)
    accumulator.add_recording("b_s001_t000_windows.npz", _windows_of(quiet, window, stride),
                              _windows_of(quiet, window, stride))
    metrics = accumulator.metrics()
    assert metrics["sensitivity"] == 1.0
    assert metrics["fa_per_24h"] == pytest.approx(1 * 86400 / 50)
    assert metrics["precision"] == 0.5
    expected_auroc = sample_auroc(np.r_[probs, quiet], np.r_[mask, quiet > 0])
    assert abs(metrics["auroc"] - expected_auroc) <= metrics["auroc_error_bound"] <= 1e-4
    assert metrics["n_recordings"] == 2
    paths = accumulator.write_hypotheses(tmp_path)
    assert [p.name for p in paths] == ["a_s001_t000.csv_bi", "b_s001_t000.csv_bi"]
    assert paths[0].read_text().splitlines()[-2:] == ["TERM,10.0000,17.5000,seiz,0.9000",
                                                      "TERM,25.0000,28.0000,seiz,0.8000"]


def _recording(rng: np.random.Generator, n_windows: int, window: int, stride: int,
               seizure: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Window rows of a recording whose probabilities rise over its seizure."""
    length = timeline_length(n_windows, window, stride)
    mask = np.zeros(length, dtype=bool)
    if seizure:
        mask[seizure[0]: seizure[1]] = True
    probs = np.clip(np.where(mask, 0.7, 0.2) + rng.normal(0, 0.15, length), 0, 1)
    return (_windows_of(probs.astype(np.float32), window, stride),
            _windows_of(mask.astype(np.float32), window, stride))


def test_stream_of_batches_scores_like_whole_recordings():
    fs, window, stride = 4, 40, 20
    rng = np.random.default_rng(3)
    recordings = {"a_s001_t000_windows.npz": _recording(rng, 9, window, stride, (60, 130)),
                  "b_s001_t000_windows.npz": _recording(rng, 1, window, stride, None),
                  "c_s001_t000_windows.npz": _recording(rng, 14, window, stride, (200, 230))}
    whole = ValidationAccumulator(fs, stride, PostProcessConfig(0.5, 1.0, 2.0))
    for name, (probs, labels) in recordings.items():
        whole.add_recording(name, probs, labels)
    streamed = ValidationAccumulator(fs, stride, PostProcessConfig(0.5, 1.0, 2.0))
    stream = RecordingStream([(name, len(p)) for name, (p, _) in recordings.items()]
                             + [("empty_s001_t000_windows.npz", 0)], stride, streamed.add_timeline)
    all_probs = np.concatenate([p for p, _ in recordings.values()])
    all_labels = np.concatenate([lab for _, lab in recordings.values()])
    for start in range(0, len(all_probs), 5):       # batches that straddle recordings
        stream.add(all_probs[start: start + 5], all_labels[start: start + 5] > 0.5)
    stream.finish()
    assert streamed.recordings == whole.recordings
    assert streamed.metrics() == whole.metrics()
    assert whole.metrics()["n_reference_events"] == 2 and whole.metrics()["n_recordings"] == 3


def test_stream_refuses_more_or_fewer_windows_than_listed():
    accumulator = ValidationAccumulator(4, 20)
    probs, labels = _recording(np.random.default_rng(0), 3, 40, 20, None)
    stream = RecordingStream([("a_s001_t000_windows.npz", 2)], 20, accumulator.add_timeline)
    with pytest.raises(ValueError, match="more windows than recordings"):
        stream.add(probs, labels)
    short = RecordingStream([("a_s001_t000_windows.npz", 3)], 20, accumulator.add_timeline)
    short.add(probs[:2], labels[:2])
    with pytest.raises(ValueError, match="1 recordings incomplete .first: a_s001_t000"):
        short.finish()


def test_accumulator_keeps_nothing_per_sample():
    """The state after a recording does not grow with its length (the old kept 5 B/sample)."""
    fs, window, stride = 256, 15360, 2560
    rng = np.random.default_rng(4)
    accumulator = ValidationAccumulator(fs, stride)
    tracemalloc.start()
    try:
        retained = []
        for n_windows in (10, 400):       # 3.4 min and 67 min: 52 k and 1.0 M samples
            probs, labels = _recording(rng, n_windows, window, stride, (20_000, 40_000))
            before = tracemalloc.get_traced_memory()[0]
            accumulator.add_recording(f"r{n_windows}_s001_t000_windows.npz", probs, labels)
            retained.append(tracemalloc.get_traced_memory()[0] - before)
            del probs, labels
    finally:
        tracemalloc.stop()
    assert max(retained) < 100_000, retained


def test_invalid_probabilities_name_the_recording():
    accumulator = ValidationAccumulator(4, 20)
    probs, labels = _recording(np.random.default_rng(0), 3, 40, 20, None)
    probs[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"bad_s001_t000_windows.npz: probabilities must lie"):
        accumulator.add_recording("bad_s001_t000_windows.npz", probs, labels)
