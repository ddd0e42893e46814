"""Event scoring of seizure hypotheses against references: NEDC OVERLAP and TAES, and SzCORE.

Owns the figures the field publishes for TUSZ: NEDC EEG Eval v6.0.0's OVERLAP and TAES (``nedc``,
written from the published definitions, identical to NEDC on its own sample) and SzCORE event
scoring (``szcore``, through the ``timescoring`` package), with reading and pairing of
``.csv_bi``/``.csv`` files and NEDC list files (``events``), SzCORE's HED-SCORE ``*_events.tsv``
files (``tsv``), summable counts (``counts``) and the reports of the ``score`` command
(``report``). Totals sum counts and durations over recordings and derive the figures from the
sums (docs/tusz.md, "Evaluation conventions"); beside them, SzCORE's figures averaged per subject
as the SzCORE benchmark reports them (``subjects``). Sensitivities are fractions, NaN on a zero
denominator; what people read (``score``'s text and ``--json``, metadata, plots) shows them,
PPV, precision and F1 as percentages under keys ending in ``_pct`` (``in_percent``).

Pure: no Dagster. May import ``cache.annotations`` (the annotation parser) and the bottom modules
(``config``, ``flags``, ``files``), nothing else of the library.

The public API::

    read_events(path) -> RecordingEvents                  # one .csv_bi/.csv or _events.tsv file
    write_events_tsv(path, duration_s, [(start_s, stop_s[, confidence]), ...])
    RecordingEvents.from_intervals(name, duration_s, [(start_s, stop_s), ...])
    score_recording(ref, hyp) -> {"overlap": EventCounts, "taes": ..., "szcore": ...}
    score_overlap / score_taes / score_szcore(ref_intervals, hyp_intervals, duration_s)
    ScoreReport().add(ref, hyp, keep_file=False)          # stream a split, totals in .totals
    score_paths(ref, hyp) -> ScoreReport                  # two folders or two list files
    ScoreReport.per_subject() -> {...}                    # SzCORE averaged per subject
"""

from eeg_assets.lib.scoring.counts import EventCounts
from eeg_assets.lib.scoring.events import (
    RecordingEvents, ScoringError, annotation_format, check_durations, merge_events, pair_files,
    read_events, read_pairs,
)
from eeg_assets.lib.scoring.nedc import score_overlap, score_taes
from eeg_assets.lib.scoring.report import (
    PERCENT_FIGURES, SCORERS, FileScores, ScoreReport, format_report, in_percent, percent_key,
    score_pairs, score_paths, score_recording,
)
from eeg_assets.lib.scoring.subjects import (
    SUBJECT_FIGURES, SubjectCounts, subject_averages, subject_of,
)
from eeg_assets.lib.scoring.szcore import SZCORE_PARAMETERS, score_szcore
from eeg_assets.lib.scoring.tsv import (
    TSV_COLUMNS, TSV_SUFFIX, format_events_tsv, read_events_tsv, tsv_path, write_events_tsv,
)

__all__ = [
    "EventCounts", "FileScores", "PERCENT_FIGURES", "RecordingEvents", "SCORERS",
    "SUBJECT_FIGURES", "SZCORE_PARAMETERS", "ScoreReport", "ScoringError", "SubjectCounts",
    "TSV_COLUMNS", "TSV_SUFFIX", "annotation_format", "check_durations", "format_events_tsv",
    "format_report", "in_percent", "merge_events", "pair_files", "percent_key", "read_events",
    "read_events_tsv", "read_pairs", "score_overlap", "score_pairs", "score_paths",
    "score_recording", "score_szcore", "score_taes", "subject_averages", "subject_of", "tsv_path",
    "write_events_tsv",
]
