"""Stitching, post-processing, the .csv_bi and SzCORE TSV writers, the accumulator that scores
recordings against their references with lib.scoring (training's validation and
model_evaluation), and what ``run_evaluation`` writes and reports from it."""

from __future__ import annotations

import csv
import json
import math
import tracemalloc

import numpy as np
import pytest

from eeg_assets.lib.cache.references import Excluded, Reference, SplitReferences
from eeg_assets.lib.dataset.pinned import PinnedFile
from eeg_assets.lib.dataset.splits import patient_id
from eeg_assets.lib.model import evaluate_run
from eeg_assets.lib.model.evaluate_run import (
    EvaluationRequest, check_tsv_files, run_evaluation, write_tsv_files,
)
from eeg_assets.lib.model.auroc import sample_auroc
from eeg_assets.lib.model.evaluation import ValidationAccumulator, bname_from_npz
from eeg_assets.lib.model.hypotheses import (
    Event,
    PostProcessConfig,
    detect_events,
    format_csv_bi,
    format_events_tsv,
    recording_events,
    write_csv_bi,
    write_events_tsv,
)
from eeg_assets.lib.scoring import (
    TSV_COLUMNS,
    EventCounts,
    RecordingEvents,
    in_percent,
    read_events,
    score_paths,
    score_recording,
)
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


def test_recording_events_round_to_nedc_precision_and_stop_at_the_recording_end():
    events = [Event(1.00001, 2.123456, 0.7), Event(29.5, 31.0, 0.8), Event(30.4, 31.0, 0.9)]
    assert recording_events(events, 30.2) == (Event(1.0, 2.1235, 0.7), Event(29.5, 30.2, 0.8))
    assert recording_events([], 30.2) == ()


# ---------------------------------------------------------------- .csv_bi

def test_bname_is_the_npz_name_without_the_cache_suffix():
    assert bname_from_npz("aaaaadkb_s010_t000_windows.npz") == "aaaaadkb_s010_t000"
    assert bname_from_npz("/cache/val/aaaaadkb_s010_t000_windows.npz") == "aaaaadkb_s010_t000"
    with pytest.raises(ValueError, match="not a cache file name"):
        bname_from_npz("aaaaadkb_s010_t000.npz")


def test_csv_bi_writer_fills_gaps_with_background_and_parses_back(tmp_path):
    events = recording_events([Event(42.27864, 81.776, 0.91234), Event(100.0, 130.5, 0.5)],
                              1289.04)
    path = tmp_path / "aaaaaasf_s001_t000.csv_bi"
    write_csv_bi(path, "aaaaaasf_s001_t000", 1289.04, events)
    lines = path.read_text().splitlines()
    assert lines[:6] == [
        "# version = csv_v1.0.0",
        "# bname = aaaaaasf_s001_t000",
        "# duration = 1289.0400 secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [(r["start_time"], r["stop_time"], r["label"], r["confidence"]) for r in rows] == [
        ("0.0000", "42.2786", "bckg", "1.0000"), ("42.2786", "81.7760", "seiz", "0.9123"),
        ("81.7760", "100.0000", "bckg", "1.0000"), ("100.0000", "130.5000", "seiz", "0.5000"),
        ("130.5000", "1289.0400", "bckg", "1.0000")]
    read = read_events(path)
    assert read.duration_s == 1289.04
    assert read.seizures == ((42.2786, 81.776), (100.0, 130.5))


def test_csv_bi_without_events_is_background_over_the_whole_recording(tmp_path):
    assert format_csv_bi("x", 45.5, []).splitlines()[-1] == "TERM,0.0000,45.5000,bckg,1.0000"
    path = tmp_path / "x.csv_bi"
    write_csv_bi(path, "x", 45.5, [])
    assert read_events(path) == RecordingEvents(str(path), 45.5, ())


def test_csv_bi_with_events_at_both_ends_has_no_empty_background_rows():
    text = format_csv_bi("x", 30.0, [Event(0.0, 10.0), Event(20.0, 30.0)])
    assert text.splitlines()[6:] == ["TERM,0.0000,10.0000,seiz,1.0000",
                                     "TERM,10.0000,20.0000,bckg,1.0000",
                                     "TERM,20.0000,30.0000,seiz,1.0000"]


# ---------------------------------------------------------------- accumulator

FS, WINDOW, STRIDE = 4, 40, 20        # 10 s windows, 5 s stride, 4 Hz timelines
POST = PostProcessConfig(0.5, 1.0, 2.0)


def _windows_of(timeline: np.ndarray, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    n = (timeline.size - window) // stride + 1
    return np.stack([timeline[i * stride: i * stride + window] for i in range(n)])


def _add(accumulator: ValidationAccumulator, name: str, probs: np.ndarray,
         mask: np.ndarray) -> None:
    accumulator.add_timeline(name, *stitch_recording(_windows_of(probs),
                                                     _windows_of(mask.astype(np.float32)),
                                                     STRIDE))


def _two_recordings() -> tuple[SplitReferences, np.ndarray, np.ndarray]:
    """Recording a: windows over 0-30 s of a 33.5 s recording with seizures at 10-17.5 s and in
    the uncached tail (31-33 s), predicted with a false alarm at 25-28 s; recording s: 8.25 s,
    shorter than a window, one seizure; and one quarantined recording."""
    mask = np.zeros(120, dtype=bool)
    mask[40:70] = True
    probs = np.where(mask, 0.9, 0.1)
    probs[100:112] = 0.8
    references = SplitReferences(
        (Reference("a_s001_t000", 33.5, ((10.0, 17.5), (31.0, 33.0)), "a_s001_t000_windows.npz"),
         Reference("s_s001_t000", 8.25, ((2.0, 5.0),))),
        (Excluded("q/q_s001_t000.edf", "quarantined", "q_s001_t000.edf: flat channel FZ"),))
    return references, probs, mask


def test_recordings_are_scored_against_their_references_over_their_whole_duration():
    references, probs, mask = _two_recordings()
    accumulator = ValidationAccumulator(FS, references, POST)
    _add(accumulator, "a_s001_t000_windows.npz", probs, mask)
    overlap = accumulator.totals().totals["overlap"]
    # The tail seizure and the too-short recording's seizure are misses; both durations count.
    assert overlap == EventCounts(targets=3, hits=1, misses=2, false_alarms=1,
                                  duration_s=33.5 + 8.25)
    metrics = accumulator.metrics()
    assert metrics["overlap_sensitivity"] == pytest.approx(1 / 3)
    assert metrics["overlap_fa_per_24h"] == pytest.approx(86400 / 41.75)
    assert metrics["overlap_ppv"] == 0.5
    assert metrics["n_recordings"] == 2 and metrics["duration_s"] == 41.75
    assert metrics["szcore_targets"] == 2  # SzCORE merges seizures closer than 90 s
    expected_auroc = sample_auroc(probs, mask)
    assert abs(metrics["auroc"] - expected_auroc) <= metrics["auroc_error_bound"] <= 1e-4
    assert accumulator.excluded == references.excluded


def test_written_files_reproduce_the_totals_and_carry_the_reference_durations(tmp_path):
    references, probs, mask = _two_recordings()
    accumulator = ValidationAccumulator(FS, references, POST)
    _add(accumulator, "a_s001_t000_windows.npz", probs, mask)
    hyps = accumulator.write_hypotheses(tmp_path / "hyp")
    refs = accumulator.write_references(tmp_path / "ref")
    assert [p.name for p in hyps] == [p.name for p in refs] == ["a_s001_t000.csv_bi",
                                                                "s_s001_t000.csv_bi"]
    assert read_events(hyps[0]).seizures == ((10.0, 17.5), (25.0, 28.0))
    assert [read_events(p).duration_s for p in hyps] == [33.5, 8.25]
    assert read_events(hyps[1]).seizures == ()
    assert read_events(refs[0]).seizures == ((10.0, 17.5), (31.0, 33.0))
    from_files = score_paths(tmp_path / "ref", tmp_path / "hyp")
    assert from_files.totals == accumulator.totals().totals


def test_a_csv_reference_is_merged_across_channels():
    rows = ((10.0, 20.0), (12.0, 25.5), (40.0, 50.0), (50.0, 55.0))  # channel rows of a .csv
    references = SplitReferences((Reference("m_s001_t000", 70.0, rows, "m_s001_t000_windows.npz"),))
    accumulator = ValidationAccumulator(FS, references, POST)
    _add(accumulator, "m_s001_t000_windows.npz", np.zeros(280), np.zeros(280, dtype=bool))
    (scored,) = accumulator.recordings
    assert scored.reference.seizures == ((10.0, 25.5), (40.0, 55.0))
    assert accumulator.totals().totals["overlap"].targets == 2


def test_each_threshold_of_a_sweep_scores_as_an_accumulator_at_that_threshold():
    references, probs, mask = _two_recordings()
    probs = np.clip(probs + np.random.default_rng(5).normal(0, 0.2, probs.size), 0, 1)
    sweep = ValidationAccumulator(FS, references, POST, thresholds=(0.3, 0.85))
    _add(sweep, "a_s001_t000_windows.npz", probs, mask)
    assert sweep.thresholds == (0.3, 0.5, 0.85)
    for threshold in sweep.thresholds:
        single = ValidationAccumulator(FS, references, PostProcessConfig(threshold, 1.0, 2.0))
        _add(single, "a_s001_t000_windows.npz", probs, mask)
        assert sweep.totals(threshold).totals == single.totals().totals, threshold
        assert [r.hypotheses[threshold] for r in sweep.recordings] == \
            [r.hypotheses[threshold] for r in single.recordings]
    rows = sweep.sweep()
    assert [row["threshold"] for row in rows] == [0.3, 0.5, 0.85]
    assert rows[0]["overlap"]["false_alarms"] != rows[2]["overlap"]["false_alarms"]
    with pytest.raises(KeyError, match="threshold 0.4 was not scored"):
        sweep.totals(0.4)


def test_a_timeline_longer_than_its_reference_or_without_one_is_refused():
    references = SplitReferences((Reference("a_s001_t000", 28.7, (), "a_s001_t000_windows.npz"),))
    accumulator = ValidationAccumulator(FS, references, POST)
    with pytest.raises(ValueError, match=r"a_s001_t000_windows.npz: the stitched timeline lasts "
                                         r"30 s but the reference .* only 28.7 s"):
        _add(accumulator, "a_s001_t000_windows.npz", np.zeros(120), np.zeros(120, dtype=bool))
    with pytest.raises(ValueError, match="b_s001_t000_windows.npz: no reference events"):
        _add(accumulator, "b_s001_t000_windows.npz", np.zeros(120), np.zeros(120, dtype=bool))
    # Up to a second (and a sample) longer: the tolerance between the annotation and the EDF.
    lenient = ValidationAccumulator(FS, SplitReferences(
        (Reference("a_s001_t000", 29.2, (), "a_s001_t000_windows.npz"),)), POST)
    probs = np.full(120, 0.9)
    _add(lenient, "a_s001_t000_windows.npz", probs, np.zeros(120, dtype=bool))
    assert lenient.recordings[0].hypotheses[0.5] == (Event(0.0, 29.2, pytest.approx(0.9)),)


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


def _references_for(layout: dict[str, tuple[int, tuple | None]], fs: float, window: int,
                    stride: int) -> SplitReferences:
    return SplitReferences(tuple(
        Reference(name.removesuffix("_windows.npz"),
                  timeline_length(n, window, stride) / fs,
                  ((seizure[0] / fs, seizure[1] / fs),) if seizure else (), name)
        for name, (n, seizure) in layout.items()))


def test_stream_of_batches_scores_like_whole_recordings():
    rng = np.random.default_rng(3)
    layout = {"a_s001_t000_windows.npz": (9, (60, 130)), "b_s001_t000_windows.npz": (1, None),
              "c_s001_t000_windows.npz": (14, (200, 230))}
    recordings = {name: _recording(rng, n, WINDOW, STRIDE, seizure)
                  for name, (n, seizure) in layout.items()}
    references = _references_for(layout, FS, WINDOW, STRIDE)
    whole = ValidationAccumulator(FS, references, POST)
    for name, (probs, labels) in recordings.items():
        whole.add_timeline(name, *stitch_recording(probs, labels, STRIDE))
    streamed = ValidationAccumulator(FS, references, POST)
    stream = RecordingStream([(name, len(p)) for name, (p, _) in recordings.items()]
                             + [("empty_s001_t000_windows.npz", 0)], STRIDE,
                             streamed.add_timeline)
    all_probs = np.concatenate([p for p, _ in recordings.values()])
    all_labels = np.concatenate([lab for _, lab in recordings.values()])
    for start in range(0, len(all_probs), 5):       # batches that straddle recordings
        stream.add(all_probs[start: start + 5], all_labels[start: start + 5] > 0.5)
    stream.finish()
    assert streamed.recordings == whole.recordings
    assert streamed.metrics() == whole.metrics()
    assert whole.metrics()["overlap_targets"] == 2 and whole.metrics()["n_recordings"] == 3


def test_stream_refuses_more_or_fewer_windows_than_listed():
    seen = []
    probs, labels = _recording(np.random.default_rng(0), 3, 40, 20, None)
    stream = RecordingStream([("a_s001_t000_windows.npz", 2)], 20, lambda *args: seen.append(args))
    with pytest.raises(ValueError, match="more windows than recordings"):
        stream.add(probs, labels)
    short = RecordingStream([("a_s001_t000_windows.npz", 3)], 20, lambda *args: seen.append(args))
    short.add(probs[:2], labels[:2])
    with pytest.raises(ValueError, match="1 recordings incomplete .first: a_s001_t000"):
        short.finish()


def test_accumulator_keeps_nothing_per_sample():
    """The state after a recording does not grow with its length, even over a sweep of
    thresholds: only events and summed counts are kept."""
    fs, window, stride = 256, 15360, 2560
    rng = np.random.default_rng(4)
    layout = {f"r{n}_s001_t000_windows.npz": (n, (20_000, 40_000)) for n in (10, 400)}
    accumulator = ValidationAccumulator(fs, _references_for(layout, fs, window, stride),
                                        thresholds=(0.3, 0.6, 0.9))
    tracemalloc.start()
    try:
        retained = []
        for name, (n_windows, seizure) in layout.items():  # 3.4 and 67 min: 52 k and 1.0 M samples
            probs, labels = _recording(rng, n_windows, window, stride, seizure)
            timeline = stitch_recording(probs, labels, stride)
            del probs, labels
            before = tracemalloc.get_traced_memory()[0]
            accumulator.add_timeline(name, *timeline)
            del timeline
            retained.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    assert max(retained) < 100_000, retained


def test_invalid_probabilities_name_the_recording():
    references = _references_for({"bad_s001_t000_windows.npz": (3, None)}, 4, 40, 20)
    accumulator = ValidationAccumulator(4, references)
    probs, labels = _recording(np.random.default_rng(0), 3, 40, 20, None)
    probs[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"bad_s001_t000_windows.npz: probabilities must lie"):
        accumulator.add_timeline("bad_s001_t000_windows.npz",
                                 *stitch_recording(probs, labels, 20))


def test_scores_equal_the_scorers_on_the_same_events():
    """What the accumulator adds up is lib.scoring's own per-recording score."""
    references, probs, mask = _two_recordings()
    accumulator = ValidationAccumulator(FS, references, POST)
    _add(accumulator, "a_s001_t000_windows.npz", probs, mask)
    expected = [score_recording(RecordingEvents.from_intervals("a", 33.5, [(10, 17.5), (31, 33)]),
                                RecordingEvents.from_intervals("a", 33.5, [(10, 17.5), (25, 28)])),
                score_recording(RecordingEvents.from_intervals("s", 8.25, [(2, 5)]),
                                RecordingEvents.from_intervals("s", 8.25, []))]
    for scorer, counts in accumulator.totals().totals.items():
        assert counts == expected[0][scorer] + expected[1][scorer], scorer


def _events_run_by_run(probs: np.ndarray, fs: float, post: PostProcessConfig) -> list[tuple]:
    """The post-processing rule written out run by run (merge, then drop short events)."""
    runs, start = [], None
    for i, above in enumerate(np.r_[probs >= post.threshold, False]):
        if above and start is None:
            start = i
        elif not above and start is not None:
            runs.append([start, i])
            start = None
    merged = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < post.merge_gap_s * fs:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(a / fs, b / fs) for a, b in merged if b - a >= post.min_event_s * fs]


@pytest.mark.parametrize("seed", range(5))
def test_detect_events_follows_the_rule_on_noisy_timelines(seed):
    rng = np.random.default_rng(seed)
    probs = np.clip(np.repeat(rng.random(300), rng.integers(1, 12, 300)), 0, 1)
    for threshold in (0.1, 0.5, 0.9):
        post = PostProcessConfig(threshold, merge_gap_s=0.5, min_event_s=1.0)
        assert [(e.start_s, e.stop_s) for e in detect_events(probs, 8, post)] == \
            _events_run_by_run(probs, 8, post)



# ---------------------------------------------------------------- SzCORE's *_events.tsv

def test_events_tsv_has_the_hed_score_columns_and_the_csv_bi_events(tmp_path):
    events = recording_events([Event(42.27864, 81.776, 0.91234), Event(100.0, 130.5, 0.5)],
                              1289.04)
    lines = format_events_tsv(1289.04, events).splitlines()
    assert lines[0].split("\t") == list(TSV_COLUMNS) == [
        "onset", "duration", "eventType", "confidence", "channels", "dateTime",
        "recordingDuration"]
    assert [line.split("\t") for line in lines[1:]] == [
        ["42.2786", "39.4974", "sz", "0.9123", "n/a", "n/a", "1289.0400"],
        ["100.0000", "30.5000", "sz", "0.5000", "n/a", "n/a", "1289.0400"]]
    tsv = write_events_tsv(tmp_path / "sub-aaaaaasf" / "aaaaaasf_s001_t000_events.tsv",
                           1289.04, events)
    csv_bi = tmp_path / "aaaaaasf_s001_t000.csv_bi"
    write_csv_bi(csv_bi, "aaaaaasf_s001_t000", 1289.04, events)
    assert read_events(tsv).seizures == read_events(csv_bi).seizures == (
        (42.2786, 81.776), (100.0, 130.5))
    assert read_events(tsv).duration_s == read_events(csv_bi).duration_s == 1289.04


def test_events_tsv_without_events_is_one_bckg_row_over_the_recording(tmp_path):
    assert format_events_tsv(45.5, []).splitlines() == [
        "\t".join(TSV_COLUMNS), "0.0000\t45.5000\tbckg\tn/a\tn/a\tn/a\t45.5000"]
    path = write_events_tsv(tmp_path / "x_events.tsv", 45.5, [])
    assert read_events(path) == RecordingEvents(str(path), 45.5, ())


def _three_recordings() -> SplitReferences:
    """_two_recordings' references and a second recording of patient a without seizures (12 s,
    shorter than a window): patients a (two recordings) and s."""
    references, _probs, _mask = _two_recordings()
    return SplitReferences(references.recordings + (Reference("a_s002_t001", 12.0, ()),),
                           references.excluded)


def test_tsv_files_give_the_figures_of_the_csv_bi_files(tmp_path):
    references, probs, mask = _two_recordings()
    accumulator = ValidationAccumulator(FS, _three_recordings(), POST)
    _add(accumulator, "a_s001_t000_windows.npz", probs, mask)
    refs, hyps = write_tsv_files(tmp_path, accumulator, 0.5)
    assert [p.relative_to(tmp_path).as_posix() for p in refs + hyps] == [
        "ref_tsv/sub-a/a_s001_t000_events.tsv", "ref_tsv/sub-a/a_s002_t001_events.tsv",
        "ref_tsv/sub-s/s_s001_t000_events.tsv", "hyp_tsv/sub-a/a_s001_t000_events.tsv",
        "hyp_tsv/sub-a/a_s002_t001_events.tsv", "hyp_tsv/sub-s/s_s001_t000_events.tsv"]
    rows = [line.split("\t") for line in hyps[0].read_text().splitlines()[1:]]
    assert rows == [["10.0000", "7.5000", "sz", "0.9000", "n/a", "n/a", "33.5000"],
                    ["25.0000", "3.0000", "sz", "0.8000", "n/a", "n/a", "33.5000"]]
    # without seizures: one bckg row, in the reference and in an event-free hypothesis
    assert refs[1].read_text().splitlines()[1:] == ["0.0000\t12.0000\tbckg\tn/a\tn/a\tn/a\t12.0000"]
    assert hyps[2].read_text().splitlines()[1:] == ["0.0000\t8.2500\tbckg\tn/a\tn/a\tn/a\t8.2500"]
    assert read_events(refs[0]).seizures == ((10.0, 17.5), (31.0, 33.0))

    accumulator.write_references(tmp_path / "ref")
    accumulator.write_hypotheses(tmp_path / "hyp")
    from_tsv = score_paths(tmp_path / "ref_tsv", tmp_path / "hyp_tsv")
    from_csv_bi = score_paths(tmp_path / "ref", tmp_path / "hyp")
    assert from_tsv.totals == from_csv_bi.totals == accumulator.totals().totals
    assert from_tsv.subjects == from_csv_bi.subjects == accumulator.totals().subjects
    assert set(accumulator.totals().subjects) == {patient_id(r.bname)
                                                  for r in accumulator.recordings} == {"a", "s"}
    check = check_tsv_files(tmp_path / "ref_tsv", tmp_path / "hyp_tsv", accumulator, 0.5)
    assert check["tsv_files_reproduce_scores"]["passed"], check
    # a hypothesis that says otherwise is caught
    write_events_tsv(hyps[2], 8.25, [Event(2.0, 5.0)])
    check = check_tsv_files(tmp_path / "ref_tsv", tmp_path / "hyp_tsv", accumulator, 0.5)
    assert not check["tsv_files_reproduce_scores"]["passed"]
    assert "overlap, taes, szcore, szcore per subject" in check["tsv_files_reproduce_scores"][
        "detail"]
    hyps[2].unlink()
    check = check_tsv_files(tmp_path / "ref_tsv", tmp_path / "hyp_tsv", accumulator, 0.5)
    assert "s_s001_t000_events.tsv" in check["tsv_files_reproduce_scores"]["detail"]


@pytest.fixture
def evaluated(tmp_path, monkeypatch) -> dict:
    """``run_evaluation`` on the recordings of :func:`_three_recordings` at threshold 0.5, the
    model's part (index, checkpoint, predictions) standing in for by this file's accumulator."""
    references, probs, mask = _two_recordings()

    def score_checkpoint(path, dataset, *args, thresholds=(), **kwargs):
        accumulator = ValidationAccumulator(FS, _three_recordings(), POST, thresholds)
        _add(accumulator, "a_s001_t000_windows.npz", probs, mask)
        return {}, accumulator

    class Dataset:
        def __init__(self, *args, **kwargs):
            pass

        def __len__(self):
            return 3

        def recordings(self):
            return ["a_s001_t000_windows.npz"]

    monkeypatch.setattr(evaluate_run, "pinned_index", lambda *args, **kwargs: None)
    monkeypatch.setattr(evaluate_run, "_checked_checkpoint", lambda request: {"epoch": 1})
    monkeypatch.setattr(evaluate_run, "EEGWindowDataset", Dataset)
    monkeypatch.setattr(evaluate_run, "score_checkpoint", score_checkpoint)
    request = EvaluationRequest(
        split="val", cache_dir=tmp_path / "cache", checkpoint=tmp_path / "best.pt",
        index=PinnedFile(tmp_path / "cache" / "_dataset_index.json", "0" * 16),
        model_version="m" * 16, out_dir=tmp_path / "out", threshold=0.5)
    return run_evaluation(request, log=lambda line: None)


def test_run_evaluation_writes_both_formats_and_szcore_per_subject(evaluated, tmp_path):
    out = tmp_path / "out"
    summary = evaluated
    assert json.loads((out / "scores.json").read_text()) == summary
    # what was there is still there
    for key in ("split", "threshold", "metrics", "overlap", "taes", "szcore", "recordings_scored",
                "sweep", "checks", "paths", "data_version"):
        assert key in summary, key
    assert summary["recordings_scored"] == 3 and summary["szcore"]["targets"] == 2
    assert summary["paths"]["ref_tsv_dir"] == str(out / "ref_tsv")
    assert summary["paths"]["hyp_tsv_dir"] == str(out / "hyp_tsv")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*_events.tsv")) == [
        f"{kind}/sub-{stem.split('_')[0]}/{stem}_events.tsv" for kind in ("hyp_tsv", "ref_tsv")
        for stem in ("a_s001_t000", "a_s002_t001", "s_s001_t000")]
    assert all(check["passed"] for check in summary["checks"].values()), summary["checks"]
    assert "tsv_files_reproduce_scores" in summary["checks"]
    # SzCORE per patient at 0.5: a: its seizures 10-17.5 and 31-33 s merge into one target,
    # detected (the 25-28 s event lies within it widened), and the 12 s recording adds nothing:
    # sensitivity 1, precision 1, F1 1, no false alarm. s: one seizure, no event: sensitivity 0,
    # precision undefined, F1 0. Averages: 1/2, 1 (a alone), 1/2, 0.
    per_subject = summary["szcore_per_subject"]
    assert {k: v for k, v in per_subject.items() if k != "by_subject"} == {
        "subjects": 2, "sensitivity": 0.5, "sensitivity_std": 0.5, "precision": 1.0,
        "precision_std": 0.0, "f1": 0.5, "f1_std": 0.5, "fa_per_24h": 0.0,
        "fa_per_24h_std": 0.0}
    assert per_subject["by_subject"] == [
        {"subject": "a", "recordings": 2, "duration_s": 45.5, "targets": 1, "hits": 1,
         "misses": 0, "false_alarms": 0, "sensitivity": 1.0, "precision": 1.0, "f1": 1.0,
         "fa_per_24h": 0.0},
        {"subject": "s", "recordings": 1, "duration_s": 8.25, "targets": 1, "hits": 0,
         "misses": 1, "false_alarms": 0, "sensitivity": 0.0, "precision": None, "f1": 0.0,
         "fa_per_24h": 0.0}]


def test_score_on_the_written_tsv_folders_gives_the_csv_bi_figures(evaluated, tmp_path,
                                                                   run_cli):
    out = tmp_path / "out"
    results = {}
    for form, ref, hyp in (("tsv", out / "ref_tsv", out / "hyp_tsv"),
                           ("csv_bi", out / "ref", out / "hyp"),
                           ("lists", out / "ref.list", out / "hyp.list")):
        result = run_cli("score", "--ref", ref, "--hyp", hyp, "--json")
        assert result.returncode == 0, result.stderr
        results[form] = json.loads(result.stdout)
    assert results["tsv"] == results["csv_bi"] == results["lists"]
    # score --json in percent (keys ending in _pct), scores.json in fractions
    for scorer in ("overlap", "taes", "szcore"):
        assert results["tsv"][scorer] == {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in in_percent(evaluated[scorer]).items()}, scorer
    per_subject = in_percent(evaluated["szcore_per_subject"])
    per_subject["by_subject"] = [in_percent(row) for row in per_subject["by_subject"]]
    assert results["tsv"]["szcore_per_subject"] == per_subject
