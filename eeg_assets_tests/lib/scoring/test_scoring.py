"""Event scoring (lib/scoring, ``score``): NEDC parity on its own sample, hand-derived cases.

The sample figures are the ones NEDC EEG Eval v6.0.0 prints for its 30 shipped pairs
(eeg_assets_tests/data/nedc_sample/README.md). The small cases' expected values are worked out by hand from
the definitions in the comments; SzCORE is compared with ``timescoring`` called directly, and its
per-subject averages with what SzCORE's own ``szcore-evaluation`` 0.0.7 printed for the same files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from timescoring.annotations import Annotation
from timescoring.scoring import EventScoring

from eeg_assets.lib.scoring import (
    TSV_COLUMNS, RecordingEvents, ScoreReport, ScoringError, merge_events, read_events,
    read_pairs, score_overlap, score_paths, score_recording, score_szcore, score_taes,
    subject_of, tsv_path, write_events_tsv,
)
from eeg_assets.lib.scoring.events import pair_files
from eeg_assets.synthetic.edf_writer import Event, write_annotation

# What NEDC v6.0.0 prints for its sample, to its printed precision.
NEDC_OVERLAP = {"targets": 701, "hits": 604, "misses": 97, "false_alarms": 2,
                "sensitivity_pct": "86.1626", "fa_per_24h": "3.8165"}
NEDC_TAES = {"targets": 701, "hits": "46.41", "sensitivity_pct": "6.6199", "fa_per_24h": "91.5814"}
SAMPLE_DURATION_S = 45_277.0


@pytest.fixture(scope="module")
def nedc_sample(real_data):
    return real_data / "nedc_sample"


def _sensitivity_pct(figures: dict) -> float:
    """In percent: ``score --json`` gives ``sensitivity_pct``, the library a fraction."""
    if "sensitivity_pct" in figures:
        assert "sensitivity" not in figures  # one convention per output
        return figures["sensitivity_pct"]
    return figures["sensitivity"] * 100


def _assert_nedc_figures(overlap: dict, taes: dict) -> None:
    assert {k: overlap[k] for k in ("targets", "hits", "misses", "false_alarms")} == {
        k: NEDC_OVERLAP[k] for k in ("targets", "hits", "misses", "false_alarms")}
    assert f"{_sensitivity_pct(overlap):.4f}" == NEDC_OVERLAP["sensitivity_pct"]
    assert f"{overlap['fa_per_24h']:.4f}" == NEDC_OVERLAP["fa_per_24h"]
    assert taes["targets"] == NEDC_TAES["targets"]
    assert f"{taes['hits']:.2f}" == NEDC_TAES["hits"]
    assert f"{_sensitivity_pct(taes):.4f}" == NEDC_TAES["sensitivity_pct"]
    assert f"{taes['fa_per_24h']:.4f}" == NEDC_TAES["fa_per_24h"]


# --------------------------------------------------------------------------------------------
# Parity with NEDC on its own sample
# --------------------------------------------------------------------------------------------

def test_library_gives_nedc_figures_on_its_sample(nedc_sample):
    report = score_paths(nedc_sample / "ref", nedc_sample / "hyp")
    assert report.recordings == 30
    assert report.totals["overlap"].duration_s == pytest.approx(SAMPLE_DURATION_S)
    _assert_nedc_figures(report.totals["overlap"].as_dict(), report.totals["taes"].as_dict())


def test_cli_json_gives_nedc_figures_and_per_file_sums(nedc_sample, run_cli):
    result = run_cli("score", "--ref", nedc_sample / "ref", "--hyp", nedc_sample / "hyp",
                     "--json", "--per-file")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    _assert_nedc_figures(out["overlap"], out["taes"])
    assert 0 <= out["szcore"]["sensitivity_pct"] <= 100
    # percentages under _pct keys, as the text prints them: PPV and F1 too
    assert set(out["overlap"]) == {"targets", "hits", "misses", "false_alarms", "duration_s",
                                   "sensitivity_pct", "fa_per_24h", "ppv_pct", "f1_pct"}
    assert out["overlap"]["ppv_pct"] == pytest.approx(100 * 604 / 606)
    assert len(out["files"]) == 30
    for scorer in ("overlap", "taes", "szcore"):
        for key in ("targets", "hits", "false_alarms"):
            assert sum(f[scorer][key] for f in out["files"]) == pytest.approx(out[scorer][key])
    assert {f["ref"].rsplit("/", 1)[-1] for f in out["files"]} == {
        p.name for p in (nedc_sample / "ref").iterdir()}


def test_cli_text_prints_nedc_figures(nedc_sample, run_cli):
    result = run_cli("score", "--ref", nedc_sample / "ref", "--hyp", nedc_sample / "hyp")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()
            if line.split() and line.split()[0] in ("OVERLAP", "TAES", "SzCORE")}
    # scorer targets hits misses false-alarms sensitivity FA/24h PPV F1
    assert rows["OVERLAP"][1:7] == ["701", "604", "97", "2", "86.1626%", "3.8165"]
    assert rows["TAES"][1:3] == ["701.00", "46.41"]
    assert rows["TAES"][5:7] == ["6.6199%", "91.5814"]
    assert "SzCORE" in rows


def test_nedc_list_files_in_alphabetical_order_give_the_same_figures(nedc_sample, tmp_path):
    names = sorted(p.name for p in (nedc_sample / "ref").iterdir())
    (tmp_path / "ref.list").write_text("".join(f"{nedc_sample / 'ref' / n}\n" for n in names))
    (tmp_path / "hyp.list").write_text("# NEDC list\n\n" + "".join(
        f"{nedc_sample / 'hyp' / n}\n" for n in names))
    report = score_paths(tmp_path / "ref.list", tmp_path / "hyp.list")
    _assert_nedc_figures(report.totals["overlap"].as_dict(), report.totals["taes"].as_dict())


def test_streaming_totals_equal_the_folder_report(nedc_sample):
    streamed = ScoreReport()
    for ref, hyp in read_pairs(pair_files(nedc_sample / "ref", nedc_sample / "hyp")):
        streamed.add(ref, hyp, keep_file=False)
    assert streamed.files == []
    assert streamed.totals == score_paths(nedc_sample / "ref", nedc_sample / "hyp").totals


# --------------------------------------------------------------------------------------------
# Hand-derived cases (duration 100 s unless said: 1 false alarm is 864 per 24 h)
# --------------------------------------------------------------------------------------------

def _recording(intervals, duration_s=100.0, name="rec"):
    return RecordingEvents.from_intervals(name, duration_s, intervals)


def test_touching_events_are_merged_before_scoring():
    # (5,10) and (10,15) touch: NEDC fills gaps with bckg and merges consecutive seiz events, so
    # the hypothesis is one event (5,15). Unmerged, (5,10) would only touch the reference at 10 s
    # and be a false alarm.
    ref, hyp = _recording([(10, 20)]), _recording([(10, 15), (5, 10)])
    assert hyp.seizures == ((5.0, 15.0),)
    scores = score_recording(ref, hyp)
    assert (scores["overlap"].hits, scores["overlap"].false_alarms) == (1, 0)
    # TAES: (5,15) starts 5 s early and ends inside: hit 5/10, false alarm 5/10, miss 0.5
    taes = scores["taes"]
    assert (taes.hits, taes.misses, taes.false_alarms) == pytest.approx((0.5, 0.5, 0.5))


def test_merging_compares_at_four_decimals_and_joins_overlaps():
    assert merge_events([(0, 10.00004), (10.0, 20)]) == ((0.0, 20.0),)      # equal to 4 decimals
    assert merge_events([(0, 10.0), (10.0001, 20)]) == ((0.0, 10.0), (10.0001, 20.0))
    assert merge_events([(30, 40), (0, 10), (5, 12)]) == ((0.0, 12.0), (30.0, 40.0))
    with pytest.raises(ScoringError, match=r"rec: invalid event \(5.0, 5.0\)"):
        merge_events([(5, 5)], name="rec")


def test_one_hypothesis_over_two_references():
    ref, hyp = _recording([(10, 20), (30, 40)]), _recording([(15, 35)])
    scores = score_recording(ref, hyp)
    overlap = scores["overlap"]
    assert (overlap.targets, overlap.hits, overlap.misses, overlap.false_alarms) == (2, 2, 0, 0)
    # TAES: (15,35) ends after (10,20): hit (20-15)/10 = 0.5, false alarm min(1, 15/10) = 1, and
    # the second reference it spans is a whole miss: misses 0.5 + 1.
    taes = scores["taes"]
    assert (taes.hits, taes.misses, taes.false_alarms) == pytest.approx((0.5, 1.5, 1.0))
    assert taes.sensitivity == pytest.approx(0.25)
    assert taes.fa_per_24h == pytest.approx(864.0)
    assert taes.ppv == pytest.approx(0.5 / 1.5)
    assert taes.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))


def test_two_hypotheses_inside_one_reference_add_up():
    # each covers 10 of the reference's 100 s: hits 0.1 + 0.1, no false alarm
    taes = score_taes([(0, 100)], [(10, 20), (50, 60)], 1000)
    assert (taes.hits, taes.misses, taes.false_alarms) == pytest.approx((0.2, 0.8, 0.0))
    overlap = score_overlap([(0, 100)], [(10, 20), (50, 60)], 1000)
    assert (overlap.hits, overlap.false_alarms) == (1, 0)


def test_taes_compares_whole_seconds_as_nedc_does():
    # A=(10,20.5) B=(25,28); H1=(0,20.3) H2=(20.8,30). H1 ends inside A: hit 10.3/10.5, false
    # alarm min(1, 10/10.5). H2 starts after A ends but within the same whole second (20), which
    # NEDC's TAES counts as overlap: hit (20.5-20.8)/10.5, false alarm 9.5/10.5, and H2 is used
    # up, so B, although inside H2, is a whole miss.
    taes = score_taes([(10, 20.5), (25, 28)], [(0, 20.3), (20.8, 30)], 100)
    assert taes.hits == pytest.approx(10.0 / 10.5)
    assert taes.misses == pytest.approx(0.5 / 10.5 + 1)
    assert taes.false_alarms == pytest.approx(19.5 / 10.5)
    assert taes.sensitivity == pytest.approx((10.0 / 10.5) / 2)   # hits + misses = 2 targets
    overlap = score_overlap([(10, 20.5), (25, 28)], [(0, 20.3), (20.8, 30)], 100)
    assert (overlap.hits, overlap.false_alarms) == (2, 0)
    # Ha=(5,10) only touches A=(10,20.5) at 10 s, yet shares second 10 with it, so TAES takes it
    # first: hit 0, false alarm 5/10.5 (not a whole false alarm); then Hb=(12,25): hit 8.5/10.5,
    # false alarm 4.5/10.5. OVERLAP sees no overlap for Ha: a whole false alarm.
    taes = score_taes([(10, 20.5)], [(5, 10), (12, 25)], 100)
    assert (taes.hits, taes.misses, taes.false_alarms) == pytest.approx(
        (8.5 / 10.5, 2 / 10.5, 9.5 / 10.5))
    overlap = score_overlap([(10, 20.5)], [(5, 10), (12, 25)], 100)
    assert (overlap.hits, overlap.false_alarms) == (1, 1)
    # A reference only looks for partners when some hypothesis really overlaps it: sharing a
    # second alone leaves a whole miss and a whole false alarm.
    taes = score_taes([(10, 20.5)], [(20.8, 30)], 100)
    assert (taes.hits, taes.misses, taes.false_alarms) == (0, 1, 1)


def test_reference_without_hypothesis():
    scores = score_recording(_recording([(10, 20)]), _recording([]))
    for name in ("overlap", "taes"):
        counts = scores[name]
        assert (counts.targets, counts.hits, counts.misses, counts.false_alarms) == (1, 0, 1, 0)
        assert counts.sensitivity == 0 and counts.fa_per_24h == 0
        assert math.isnan(counts.ppv) and math.isnan(counts.f1)   # 0 / (0 + 0)


def test_hypothesis_without_reference_is_whole_false_alarms():
    scores = score_recording(_recording([]), _recording([(10, 20), (50, 55)]))
    for name in ("overlap", "taes"):
        counts = scores[name]
        assert (counts.targets, counts.hits, counts.false_alarms) == (0, 0, 2)
        assert math.isnan(counts.sensitivity) and counts.ppv == 0
        assert counts.fa_per_24h == pytest.approx(2 * 864.0)


def test_totals_sum_counts_and_durations_before_dividing():
    report = ScoreReport()
    report.add(_recording([(10, 20)], 100), _recording([(10, 20), (60, 70)], 100))  # 1 hit, 1 FA
    report.add(_recording([(10, 20)], 300), _recording([], 300))                     # 1 miss
    overlap = report.totals["overlap"]
    assert (overlap.targets, overlap.hits, overlap.false_alarms) == (2, 1, 1)
    assert overlap.duration_s == 400
    assert overlap.sensitivity == 0.5
    assert overlap.fa_per_24h == pytest.approx(86_400 / 400)  # not the mean of 864 and 0


def test_empty_files_and_json_nulls(tmp_path, run_cli):
    write_annotation(tmp_path / "ref" / "r1.csv_bi", 60.0)                      # one bckg row
    write_annotation(tmp_path / "hyp" / "r1.csv_bi", 60.0, background=False)   # header only
    assert read_events(tmp_path / "hyp" / "r1.csv_bi").seizures == ()
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for name in ("overlap", "taes", "szcore"):
        assert out[name]["targets"] == 0 and out[name]["false_alarms"] == 0
        assert out[name]["sensitivity_pct"] is None and out[name]["fa_per_24h"] == 0


def test_zero_duration_is_an_error_naming_the_file(tmp_path):
    path = write_annotation(tmp_path / "z.csv_bi", 0.0, background=False)
    with pytest.raises(ScoringError, match=r"z\.csv_bi: duration must be a positive"):
        read_events(path)
    with pytest.raises(ScoringError, match="rec: duration must be a positive"):
        _recording([], duration_s=0)
    with pytest.raises(ScoringError, match=r"rec: event \(120.0, 130.0\) starts after the end"):
        _recording([(10, 20), (120, 130)], duration_s=100)


def test_csv_rows_are_merged_across_channels(tmp_path):
    path = write_annotation(tmp_path / "r.csv", 100.0, [
        Event(10, 20, "fnsz", "FP1-F7"), Event(15, 25, "fnsz", "F7-T3"),
        Event(0, 100, "bckg", "T3-T5"), Event(40, 50, "gnsz", "FP1-F7")])
    assert read_events(path).seizures == ((10.0, 25.0), (40.0, 50.0))


# --------------------------------------------------------------------------------------------
# SzCORE through timescoring
# --------------------------------------------------------------------------------------------

def _timescoring(ref, hyp, duration_s):
    params = EventScoring.Parameters(toleranceStart=30, toleranceEnd=60, minOverlap=0,
                                     maxEventDuration=300, minDurationBetweenEvents=90)
    scoring = EventScoring(Annotation(ref, 1, duration_s), Annotation(hyp, 1, duration_s), params)
    return scoring.refTrue, scoring.tp, scoring.fp


@pytest.mark.parametrize("ref, hyp, expected", [
    # hypothesis 20 s before the seizure: within the 30 s tolerance -> detected
    ([(100, 150)], [(70, 80)], (1, 1, 0)),
    # 40 s before: outside it -> a miss and a false alarm
    ([(100, 150)], [(50, 60)], (1, 0, 1)),
    # 50 s after the end: within the 60 s tolerance
    ([(100, 150)], [(195, 205)], (1, 1, 0)),
    # two seizures 60 s apart merge (< 90 s): one target
    ([(100, 150), (210, 250)], [(120, 130)], (1, 1, 0)),
    # a 700 s seizure is split into 300 + 300 + 100 s: three targets, one detected
    ([(100, 800)], [(120, 130)], (3, 1, 0)),
])
def test_szcore_matches_timescoring(ref, hyp, expected):
    counts = score_szcore(ref, hyp, 1000)
    assert (counts.targets, counts.hits, counts.false_alarms) == expected
    assert (counts.targets, counts.hits, counts.false_alarms) == _timescoring(ref, hyp, 1000)
    assert counts.misses == counts.targets - counts.hits
    assert counts.fa_per_24h == pytest.approx(counts.false_alarms * 86.4)


def test_szcore_totals_match_timescoring_per_file_on_the_sample(nedc_sample):
    refs, fps, tps = 0, 0, 0
    for ref, hyp in read_pairs(pair_files(nedc_sample / "ref", nedc_sample / "hyp")):
        duration = round(ref.duration_s)
        assert duration == ref.duration_s  # the sample's durations are whole seconds
        n_ref, tp, fp = _timescoring(list(ref.seizures), list(hyp.seizures), duration)
        refs, tps, fps = refs + n_ref, tps + tp, fps + fp
    totals = score_paths(nedc_sample / "ref", nedc_sample / "hyp").totals["szcore"]
    assert (totals.targets, totals.hits, totals.false_alarms) == (refs, tps, fps)
    assert totals.sensitivity == pytest.approx(tps / refs)


# --------------------------------------------------------------------------------------------
# Pairing and errors
# --------------------------------------------------------------------------------------------

def test_folders_pair_by_name_and_prefer_csv_bi(tmp_path):
    write_annotation(tmp_path / "ref" / "p1" / "a.csv_bi", 100, [(10, 20)])
    write_annotation(tmp_path / "ref" / "p2" / "b.csv_bi", 200, [(50, 60)])
    write_annotation(tmp_path / "ref" / "p2" / "b.csv", 200, [(0, 200, "fnsz", "FP1-F7")])
    write_annotation(tmp_path / "hyp" / "b.csv_bi", 200, [(55, 58)])
    write_annotation(tmp_path / "hyp" / "a.csv_bi", 100, [(70, 80)])
    report = score_paths(tmp_path / "ref", tmp_path / "hyp")
    by_name = {f.ref.rsplit("/", 1)[-1]: f for f in report.files}
    assert set(by_name) == {"a.csv_bi", "b.csv_bi"}
    assert by_name["a.csv_bi"].hyp.endswith("hyp/a.csv_bi")
    assert (by_name["a.csv_bi"].scores["overlap"].hits,
            by_name["a.csv_bi"].scores["overlap"].false_alarms) == (0, 1)
    assert by_name["b.csv_bi"].scores["overlap"].hits == 1


def test_list_files_pair_by_position_whatever_the_names(tmp_path):
    one = write_annotation(tmp_path / "x" / "one.csv_bi", 100, [(10, 20)])
    two = write_annotation(tmp_path / "x" / "two.csv_bi", 100, [(50, 60)])
    (tmp_path / "ref.list").write_text(f"{one}\n{two}\n")
    (tmp_path / "hyp.list").write_text(f"{two}\n{one}\n")   # crossed: every pair misses
    report = score_paths(tmp_path / "ref.list", tmp_path / "hyp.list")
    assert [(f.ref, f.hyp) for f in report.files] == [(str(one), str(two)), (str(two), str(one))]
    overlap = report.totals["overlap"]
    assert (overlap.hits, overlap.misses, overlap.false_alarms) == (0, 2, 2)


def test_unpaired_file_in_a_folder_is_named(tmp_path, run_cli):
    write_annotation(tmp_path / "ref" / "a.csv_bi", 100, [(10, 20)])
    write_annotation(tmp_path / "ref" / "lonely.csv_bi", 100, [(10, 20)])
    write_annotation(tmp_path / "hyp" / "a.csv_bi", 100, [(10, 20)])
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp")
    assert result.returncode == 1
    assert "lonely.csv_bi" in result.stderr and "no counterpart" in result.stderr
    assert str(tmp_path / "ref") in result.stderr


def test_lists_of_different_lengths_name_the_unpaired_line(tmp_path):
    one = write_annotation(tmp_path / "one.csv_bi", 100, [(10, 20)])
    two = write_annotation(tmp_path / "two.csv_bi", 100, [(10, 20)])
    (tmp_path / "ref.list").write_text(f"{one}\n{two}\n")
    (tmp_path / "hyp.list").write_text(f"{one}\n")
    with pytest.raises(ScoringError, match=r"ref\.list line 2 \(.*two\.csv_bi\)"):
        score_paths(tmp_path / "ref.list", tmp_path / "hyp.list")
    (tmp_path / "bad.list").write_text(f"{one}\n{tmp_path / 'gone.csv_bi'}\n")
    with pytest.raises(ScoringError, match=r"bad\.list line 2: no such file .*gone\.csv_bi"):
        score_paths(tmp_path / "ref.list", tmp_path / "bad.list")


def test_duration_mismatch_names_both_files(tmp_path, run_cli):
    write_annotation(tmp_path / "ref" / "a.csv_bi", 1289.0, [(10, 20)])
    write_annotation(tmp_path / "hyp" / "a.csv_bi", 1280.0, [(10, 20)])
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp")
    assert result.returncode == 1
    assert "duration mismatch" in result.stderr
    assert f"{tmp_path / 'ref' / 'a.csv_bi'} has 1289.0000 s" in result.stderr
    assert f"{tmp_path / 'hyp' / 'a.csv_bi'} has 1280.0000 s" in result.stderr


def test_malformed_file_is_named_with_its_line(tmp_path, run_cli):
    write_annotation(tmp_path / "ref" / "a.csv_bi", 100, [(10, 20)])
    write_annotation(tmp_path / "hyp" / "a.csv_bi", 100, [Event("ten", "20")])
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp")
    assert result.returncode == 1
    assert "a.csv_bi line 7: start_time is not a number: 'ten'" in result.stderr


def test_folder_with_list_and_missing_paths(tmp_path, run_cli):
    one = write_annotation(tmp_path / "ref" / "one.csv_bi", 100, [(10, 20)])
    (tmp_path / "hyp.list").write_text(f"{one}\n")
    with pytest.raises(ScoringError, match="two folders .* or two list files"):
        score_paths(tmp_path / "ref", tmp_path / "hyp.list")
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "missing")
    assert result.returncode == 2
    assert "no such folder or file" in result.stderr and "missing" in result.stderr



# --------------------------------------------------------------------------------------------
# SzCORE's format (HED-SCORE *_events.tsv) and its per-subject averages
# --------------------------------------------------------------------------------------------

#: What szcore-evaluation 0.0.7 (``python -m szcore_evaluation ref hyp out.json``, its
#: "event_results", on Python 3.12) printed for the NEDC sample as ``_as_tsv_folders`` writes it:
#: 19 subjects, each figure NumPy's nanmean / nanstd over them.
SZCORE_EVALUATION_SAMPLE = {
    "sensitivity": 0.9096377306903622, "sensitivity_std": 0.20887037264658725,
    "precision": 0.9924812030075189, "precision_std": 0.031899554038490874,
    "f1": 0.9351503759398496, "f1_std": 0.1500996051226259,
    "fa_per_24h": 0.6314912402517194, "fa_per_24h_std": 2.679190429451365,   # its "fpRate"
}


def _as_tsv_folders(source: Path, target: Path) -> Path:
    """The .csv_bi files of ``source/{ref,hyp}`` as SzCORE TSV files under ``target``, in the
    subject folders szcore-evaluation reads (``sub-<patient>/<stem>_events.tsv``)."""
    for kind in ("ref", "hyp"):
        for path in sorted((source / kind).glob("*.csv_bi")):
            events = read_events(path)
            write_events_tsv(tsv_path(target / kind, path.stem, subject_of(path.stem)),
                             events.duration_s, events.seizures)
    return target


def _without_names(out: dict) -> dict:
    return {key: value for key, value in out.items() if key != "files"}


def test_tsv_folders_give_the_figures_of_the_csv_bi_folders(nedc_sample, tmp_path, run_cli):
    tsv = _as_tsv_folders(nedc_sample, tmp_path)
    assert (tsv / "ref" / "sub-aaaaaasf" / "aaaaaasf_s001_t000_events.tsv").is_file()
    from_tsv = run_cli("score", "--ref", tsv / "ref", "--hyp", tsv / "hyp", "--json",
                       "--per-file")
    from_csv_bi = run_cli("score", "--ref", nedc_sample / "ref", "--hyp", nedc_sample / "hyp",
                          "--json", "--per-file")
    assert from_tsv.returncode == 0 and from_csv_bi.returncode == 0, from_tsv.stderr
    tsv_out, csv_bi_out = json.loads(from_tsv.stdout), json.loads(from_csv_bi.stdout)
    _assert_nedc_figures(tsv_out["overlap"], tsv_out["taes"])
    assert _without_names(tsv_out) == _without_names(csv_bi_out)   # pooled and per subject
    for from_file, expected in zip(tsv_out["files"], csv_bi_out["files"]):
        assert Path(from_file["ref"]).name == Path(expected["ref"]).name.replace(
            ".csv_bi", "_events.tsv")
        assert {k: v for k, v in from_file.items() if k not in ("ref", "hyp")} == \
            {k: v for k, v in expected.items() if k not in ("ref", "hyp")}
    # the text report too, line for line but for nothing
    text_tsv = run_cli("score", "--ref", tsv / "ref", "--hyp", tsv / "hyp")
    text_csv_bi = run_cli("score", "--ref", nedc_sample / "ref", "--hyp", nedc_sample / "hyp")
    assert text_tsv.stdout == text_csv_bi.stdout


def test_szcore_per_subject_equals_szcore_evaluation_on_the_nedc_sample(nedc_sample, tmp_path):
    tsv = _as_tsv_folders(nedc_sample, tmp_path)
    for ref, hyp in ((nedc_sample / "ref", nedc_sample / "hyp"), (tsv / "ref", tsv / "hyp")):
        per_subject = score_paths(ref, hyp).per_subject()
        assert per_subject["subjects"] == 19
        assert {k: per_subject[k] for k in SZCORE_EVALUATION_SAMPLE} == pytest.approx(
            SZCORE_EVALUATION_SAMPLE, rel=1e-12)
        # the subjects' counts add up to the pooled SzCORE counts
        report = score_paths(ref, hyp)
        rows = per_subject["by_subject"]
        for key in ("targets", "hits", "false_alarms", "duration_s"):
            assert sum(row[key] for row in rows) == pytest.approx(
                report.totals["szcore"].as_dict()[key])
        assert sum(row["recordings"] for row in rows) == 30
        assert rows[0]["subject"] == "aaaaates" and rows[0]["false_alarms"] == 1


def _hand_recordings() -> list[tuple[RecordingEvents, RecordingEvents]]:
    """Three patients. p1: two 1000 s recordings, one seizure each, one detected, one missed
    with a false alarm far from it. p2: 1000 s without seizures, one false alarm. p3: 500 s,
    one seizure, nothing detected."""
    def pair(name, duration, ref, hyp):
        return (RecordingEvents.from_intervals(name, duration, ref),
                RecordingEvents.from_intervals(name, duration, hyp))
    return [pair("p1_s001_t000", 1000, [(100, 150)], [(120, 130)]),
            pair("p1_s001_t001", 1000, [(100, 150)], [(500, 510)]),
            pair("p2_s003_t000", 1000, [], [(300, 310)]),
            pair("p3_s001_t002", 500, [(100, 150)], [])]


def test_szcore_per_subject_by_hand(tmp_path, run_cli):
    report = ScoreReport()
    for ref, hyp in _hand_recordings():
        report.add(ref, hyp)
    # szcore-evaluation 0.0.7 printed these averages for the TSV files written below.
    # Subjects, by timescoring's definitions (szcore-evaluation's):
    #   p1: targets 2, hits 1, FA 1, 2000 s: sensitivity 1/2, precision 1/2,
    #       F1 2*1 / (2*1 + 1 + 1) = 1/2, FA/24h 86400/2000 = 43.2
    #   p2: targets 0, FA 1, 1000 s: sensitivity undefined, precision 0, F1 0 / (0+1+0) = 0,
    #       FA/24h 86.4
    #   p3: targets 1, hits 0, no FA: sensitivity 0, precision undefined, F1 0 / (0+0+1) = 0,
    #       FA/24h 0
    per_subject = report.per_subject()
    assert per_subject["subjects"] == 3
    assert per_subject["sensitivity"] == pytest.approx(0.25)          # mean of 1/2, 0
    assert per_subject["sensitivity_std"] == pytest.approx(0.25)
    assert per_subject["precision"] == pytest.approx(0.25)            # mean of 1/2, 0
    assert per_subject["f1"] == pytest.approx(1 / 6)                  # mean of 1/2, 0, 0
    assert per_subject["f1_std"] == pytest.approx(math.sqrt(1 / 18))
    assert per_subject["fa_per_24h"] == pytest.approx(43.2)           # mean of 43.2, 86.4, 0
    assert per_subject["fa_per_24h_std"] == pytest.approx(43.2 * math.sqrt(2 / 3))
    # Most false alarms first (p1 and p2 have one each: the higher rate first).
    rows = per_subject["by_subject"]
    assert [(r["subject"], r["recordings"], r["targets"], r["hits"], r["false_alarms"])
            for r in rows] == [("p2", 1, 0, 0, 1), ("p1", 2, 2, 1, 1), ("p3", 1, 1, 0, 0)]
    assert math.isnan(rows[0]["sensitivity"]) and rows[0]["f1"] == 0
    assert math.isnan(rows[2]["precision"]) and rows[2]["f1"] == 0
    # Pooled, NEDC's way, the same counts give other figures: 1 hit of 3 seizures, 2 FA in 3500 s.
    pooled = report.totals["szcore"]
    assert pooled.sensitivity == pytest.approx(1 / 3)
    assert pooled.fa_per_24h == pytest.approx(2 * 86400 / 3500)

    # The score command reads the same from TSV files, and prints and writes the averages.
    for ref, hyp in _hand_recordings():
        write_events_tsv(tsv_path(tmp_path / "ref", ref.name, subject_of(ref.name)),
                         ref.duration_s, ref.seizures)
        write_events_tsv(tsv_path(tmp_path / "hyp", hyp.name, subject_of(hyp.name)),
                         hyp.duration_s, hyp.seizures)
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["szcore_per_subject"]
    assert {k: v for k, v in out.items() if k != "by_subject"} == pytest.approx({
        "subjects": 3, "sensitivity_pct": 25.0, "sensitivity_pct_std": 25.0,
        "precision_pct": 25.0, "precision_pct_std": 25.0, "f1_pct": 100 / 6,
        "f1_pct_std": 100 * math.sqrt(1 / 18), "fa_per_24h": 43.2,
        "fa_per_24h_std": 43.2 * math.sqrt(2 / 3)})                # in percent, as printed
    assert out["by_subject"][0]["sensitivity_pct"] is None    # JSON null, not NaN
    assert out["by_subject"][1]["precision_pct"] == 50.0
    text = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp").stdout
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.split()}
    assert rows["mean"][1:] == ["25.0000%", "25.0000%", "16.6667%", "43.2000"]
    assert rows["std"][1:] == ["25.0000%", "25.0000%", "23.5702%", "35.2727"]
    assert "Subjects with the most false alarms (SzCORE; 2 of 3)" in text
    assert rows["p2"][1:] == ["1", "0", "0", "1", "n/a", "0.0000%", "0.0000%", "86.4000"]
    assert "p3" not in rows                                   # no false alarm: not listed


@pytest.mark.parametrize("name, subject", [
    ("aaaaaqhs_s001_t000", "aaaaaqhs"), ("aaaaaqhs_s001_t000.csv_bi", "aaaaaqhs"),
    ("/x/sub-aaaaaqhs/aaaaaqhs_s001_t000_events.tsv", "aaaaaqhs"),
    ("sub-01_ses-01_task-szMonitoring_run-01_events.tsv", "01"), ("plain", "plain")])
def test_the_subject_is_the_patient_id_or_the_bids_subject(name, subject):
    assert subject_of(name) == subject


def test_tsv_as_epilepsy2bids_writes_it_is_read(tmp_path):
    # epilepsy2bids 0.0.7 Annotations.saveTsv: 2 decimals, "n/a", HED-SCORE seizure types; its
    # TUSZ conversion keeps the bckg rows between seizures.
    path = tmp_path / "sub-000_ses-00_task-szMonitoring_run-01_events.tsv"
    path.write_text("\t".join(TSV_COLUMNS) + "\n"
                    "0.00\t42.28\tbckg\t1.00\tn/a\t2003-01-01 10:00:00\t1289.00\n"
                    "42.28\t39.50\tsz_foc_ia\t1.00\tn/a\t2003-01-01 10:00:00\t1289.00\n"
                    "81.78\t52.02\tbckg\t1.00\tn/a\t2003-01-01 10:00:00\t1289.00\n"
                    "133.80\t28.31\tsz\tn/a\tFp1,F7\t2003-01-01 10:00:00\t1289.00\n")
    events = read_events(path)
    assert events.duration_s == 1289.0
    assert events.seizures == ((42.28, 81.78), (133.8, 162.11))
    assert subject_of(path.name) == "000"


def test_a_recording_without_seizures_is_one_bckg_row(tmp_path):
    path = write_events_tsv(tmp_path / "r_events.tsv", 60.0, [])
    assert path.read_text().splitlines() == [
        "onset\tduration\teventType\tconfidence\tchannels\tdateTime\trecordingDuration",
        "0.0000\t60.0000\tbckg\tn/a\tn/a\tn/a\t60.0000"]
    assert read_events(path) == RecordingEvents(str(path), 60.0, ())


HEADER = "\t".join(TSV_COLUMNS)


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("onset\tduration\teventType\n0\t10\tsz\n", r"line 1: no column recordingDuration"),
    (HEADER + "\n", "no event rows, so no recordingDuration"),
    (HEADER + "\nten\t5\tsz\tn/a\tn/a\tn/a\t100\n", "line 2: onset is not a number: 'ten'"),
    (HEADER + "\n1\t5\tsz\tn/a\tn/a\n", "line 2: 5 tab-separated fields, the header has 7"),
    (HEADER + "\n1\t5\tspike\tn/a\tn/a\tn/a\t100\n",
     "line 2: eventType 'spike' is neither bckg nor a seizure type"),
    (HEADER + "\n1\t5\tsz\tn/a\tn/a\tn/a\t100\n20\t5\tsz\tn/a\tn/a\tn/a\t90\n",
     "line 3: recordingDuration 90 s, but line 2 says 100 s"),
    (HEADER + "\n1\t0\tsz\tn/a\tn/a\tn/a\t100\n", r"line 2: invalid seizure event"),
    (HEADER + "\n0\t0\tbckg\tn/a\tn/a\tn/a\t0\n", "duration must be a positive"),
])
def test_malformed_tsv_is_named_with_its_line(tmp_path, run_cli, text, message):
    write_events_tsv(tmp_path / "ref" / "a_events.tsv", 100.0, [(10, 20)])
    (tmp_path / "hyp").mkdir()
    (tmp_path / "hyp" / "a_events.tsv").write_text(text)
    with pytest.raises(ScoringError, match=message):
        read_events(tmp_path / "hyp" / "a_events.tsv")
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp")
    assert result.returncode == 1
    assert str(tmp_path / "hyp" / "a_events.tsv") in result.stderr


def test_a_pair_in_two_formats_is_refused_naming_both_files(tmp_path, run_cli):
    write_events_tsv(tmp_path / "ref" / "a_events.tsv", 100.0, [(10, 20)])
    write_annotation(tmp_path / "hyp" / "a.csv_bi", 100, [(10, 20)])
    result = run_cli("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp")
    assert result.returncode == 1
    assert f"{tmp_path / 'ref' / 'a_events.tsv'} (SzCORE HED-SCORE .tsv) is paired with " \
           f"{tmp_path / 'hyp' / 'a.csv_bi'} (NEDC .csv_bi/.csv)" in result.stderr
    (tmp_path / "ref.list").write_text(f"{tmp_path / 'ref' / 'a_events.tsv'}\n")
    (tmp_path / "hyp.list").write_text(f"{tmp_path / 'hyp' / 'a.csv_bi'}\n")
    with pytest.raises(ScoringError, match="give references and hypotheses in the same format"):
        score_paths(tmp_path / "ref.list", tmp_path / "hyp.list")
    # one recording in both formats in one folder is ambiguous
    write_annotation(tmp_path / "ref" / "a.csv_bi", 100, [(10, 20)])
    with pytest.raises(ScoringError, match=r"a\.csv_bi and .*a_events\.tsv are the same "
                                           r"recording in two formats"):
        score_paths(tmp_path / "ref", tmp_path / "hyp")


def test_tsv_list_files_pair_by_position(tmp_path):
    one = write_events_tsv(tmp_path / "one_events.tsv", 100.0, [(10, 20)])
    two = write_events_tsv(tmp_path / "two_events.tsv", 100.0, [(50, 60, 0.7)])
    (tmp_path / "ref.list").write_text(f"{one}\n{two}\n")
    (tmp_path / "hyp.list").write_text(f"{one}\n{one}\n")
    overlap = score_paths(tmp_path / "ref.list", tmp_path / "hyp.list").totals["overlap"]
    assert (overlap.hits, overlap.misses, overlap.false_alarms) == (1, 1, 1)
