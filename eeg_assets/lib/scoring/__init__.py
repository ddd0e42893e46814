"""Event scoring of seizure hypotheses against references: NEDC OVERLAP and TAES, and SzCORE.

Owns the figures the field publishes for TUSZ: NEDC EEG Eval v6.0.0's OVERLAP and TAES (``nedc``,
written from the published definitions, identical to NEDC on its own sample) and SzCORE event
scoring (``szcore``, through the ``timescoring`` package), with reading and pairing of
``.csv_bi``/``.csv`` files and NEDC list files (``events``), summable counts (``counts``) and the
reports of the ``score`` command (``report``). Totals sum counts and durations over recordings and
derive the figures from the sums (docs/tusz.md, "Evaluation conventions"); sensitivities are
fractions, NaN on a zero denominator.

Pure: no Dagster. May import ``cache.annotations`` (the annotation parser) and the bottom modules
(``config``, ``flags``, ``files``), nothing else of the library.

The public API::

    read_events(path) -> RecordingEvents                  # one annotation file
    RecordingEvents.from_intervals(name, duration_s, [(start_s, stop_s), ...])
    score_recording(ref, hyp) -> {"overlap": EventCounts, "taes": ..., "szcore": ...}
    score_overlap / score_taes / score_szcore(ref_intervals, hyp_intervals, duration_s)
    ScoreReport().add(ref, hyp, keep_file=False)          # stream a split, totals in .totals
    score_paths(ref, hyp) -> ScoreReport                  # two folders or two list files
"""

from eeg_assets.lib.scoring.counts import EventCounts
from eeg_assets.lib.scoring.events import (
    RecordingEvents, ScoringError, check_durations, merge_events, pair_files, read_events,
    read_pairs,
)
from eeg_assets.lib.scoring.nedc import score_overlap, score_taes
from eeg_assets.lib.scoring.report import (
    SCORERS, FileScores, ScoreReport, format_report, score_pairs, score_paths, score_recording,
)
from eeg_assets.lib.scoring.szcore import SZCORE_PARAMETERS, score_szcore

__all__ = [
    "EventCounts", "FileScores", "RecordingEvents", "SCORERS", "SZCORE_PARAMETERS",
    "ScoreReport", "ScoringError", "check_durations", "format_report", "merge_events",
    "pair_files", "read_events", "read_pairs", "score_overlap", "score_pairs", "score_paths",
    "score_recording", "score_szcore", "score_taes",
]
