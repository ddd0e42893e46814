"""All three scorers over one recording or a set of pairs: totals, per-file figures, text, JSON.

Besides the pooled totals (NEDC's convention), a report keeps each subject's SzCORE counts and
reports SzCORE's figures averaged per subject (:mod:`eeg_assets.lib.scoring.subjects`), the way
the SzCORE benchmark reports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.scoring.counts import EventCounts
from eeg_assets.lib.scoring.events import (
    Interval, RecordingEvents, check_durations, pair_files, read_pairs,
)
from eeg_assets.lib.scoring.nedc import score_overlap, score_taes
from eeg_assets.lib.scoring.subjects import (
    MOST_FALSE_ALARMS_SHOWN, SubjectCounts, by_false_alarms, subject_averages, subject_of,
)
from eeg_assets.lib.scoring.szcore import score_szcore

#: Scorer name (the JSON key) -> its per-recording function, in report order.
SCORERS: dict[str, Callable[[Sequence[Interval], Sequence[Interval], float], EventCounts]] = {
    "overlap": score_overlap,
    "taes": score_taes,
    "szcore": score_szcore,
}


def score_recording(ref: RecordingEvents, hyp: RecordingEvents) -> dict[str, EventCounts]:
    """Every scorer's counts for one recording, keyed as :data:`SCORERS`.

    Memory is that of one recording, so a split is scored by summing these one at a time
    (:meth:`ScoreReport.add`). The two durations must agree to 4 decimals, as NEDC requires.
    Build the arguments with ``RecordingEvents.from_intervals(name, duration_s, intervals)``
    from model output, or :func:`~eeg_assets.lib.scoring.events.read_events` from files.
    """
    check_durations(ref, hyp)
    return {name: scorer(ref.seizures, hyp.seizures, ref.duration_s)
            for name, scorer in SCORERS.items()}


@dataclass(frozen=True)
class FileScores:
    """One scored pair: the file names and each scorer's counts."""

    ref: str
    hyp: str
    duration_s: float
    scores: dict[str, EventCounts]
    #: The reference's subject (:func:`~eeg_assets.lib.scoring.subjects.subject_of`).
    subject: str = ""


@dataclass
class ScoreReport:
    """Totals over recordings (counts summed, figures from the sums), each subject's SzCORE
    counts, and optionally per file."""

    totals: dict[str, EventCounts] = field(
        default_factory=lambda: {name: EventCounts() for name in SCORERS})
    files: list[FileScores] = field(default_factory=list)
    recordings: int = 0
    #: Subject (of the reference's name, :func:`subject_of`) -> its summed SzCORE counts.
    subjects: dict[str, SubjectCounts] = field(default_factory=dict)

    def add(self, ref: RecordingEvents, hyp: RecordingEvents, *, keep_file: bool = True) -> None:
        """Score one pair and add it to the totals and to its subject's counts
        (``keep_file=False``: no per-file record)."""
        scores = score_recording(ref, hyp)
        self.totals = {name: self.totals[name] + counts for name, counts in scores.items()}
        self.recordings += 1
        subject = subject_of(ref.name)
        self.subjects[subject] = self.subjects.get(subject, SubjectCounts(subject)).plus(
            scores["szcore"])
        if keep_file:
            self.files.append(FileScores(ref.name, hyp.name, ref.duration_s, scores, subject))

    def per_subject(self) -> dict:
        """SzCORE averaged per subject, as szcore-evaluation reports it:
        :func:`~eeg_assets.lib.scoring.subjects.subject_averages` (NaN where undefined)."""
        return subject_averages(self.subjects.values())

    def to_json(self, per_file: bool = False) -> dict:
        """``{"recordings", "duration_s", "overlap": {...}, "taes": {...}, "szcore": {...},
        "szcore_per_subject": {...}}`` (plus ``"files"`` with ``per_file``): the ``score
        --json`` output. Sensitivity, PPV, precision and F1 as percentages under keys ending in
        ``_pct`` (:func:`in_percent`), as the text prints them; NaN as ``None``."""
        out: dict = {"recordings": self.recordings,
                     "duration_s": self.totals["overlap"].duration_s}
        out.update({name: _json_safe(in_percent(c.as_dict())) for name, c in self.totals.items()})
        per_subject = in_percent(self.per_subject())
        per_subject["by_subject"] = [in_percent(row) for row in per_subject["by_subject"]]
        out["szcore_per_subject"] = json_safe(per_subject)
        if per_file:
            out["files"] = [{"ref": f.ref, "hyp": f.hyp, "subject": f.subject,
                             "duration_s": f.duration_s,
                             **{name: _json_safe(in_percent(c.as_dict()))
                                for name, c in f.scores.items()}}
                            for f in self.files]
        return out


def score_pairs(pairs: Iterable[tuple[RecordingEvents, RecordingEvents]],
                keep_files: bool = True) -> ScoreReport:
    """Score (ref, hyp) pairs one at a time into a :class:`ScoreReport`."""
    report = ScoreReport()
    for ref, hyp in pairs:
        report.add(ref, hyp, keep_file=keep_files)
    return report


def score_paths(ref: Path, hyp: Path, config: CacheConfig | None = None,
                keep_files: bool = True) -> ScoreReport:
    """Score two folders of annotation files (paired by name) or two NEDC list files (paired by
    position); see :func:`~eeg_assets.lib.scoring.events.pair_files`.

    Raises
    ------
    ScoringError
        Naming the file: unpaired files, a duration mismatch, a malformed file.
    """
    return score_pairs(read_pairs(pair_files(Path(ref), Path(hyp)), config), keep_files)


_TITLES = {"overlap": "OVERLAP", "taes": "TAES", "szcore": "SzCORE"}
_HEADER = (f"{'scorer':<8} {'targets':>9} {'hits':>9} {'misses':>9} {'false al.':>9} "
           f"{'sensitivity':>12} {'FA/24h':>10} {'PPV':>10} {'F1':>8}")


def format_report(report: ScoreReport, per_file: bool = False) -> str:
    """The ``score`` command's text: one row per scorer, totals then (``per_file``) each pair.

    Counts print as NEDC prints them: whole numbers, TAES's with 2 decimals; sensitivity and
    PPV as percentages with 4 decimals, FA/24h with 4 decimals.
    """
    total = report.totals["overlap"]
    lines = [f"{report.recordings} recordings, {total.duration_s:.4f} s "
             f"({total.duration_s / 3600:.2f} h); label SEIZ", "", _HEADER]
    lines += [_row(name, counts) for name, counts in report.totals.items()]
    lines += ["", *_subject_lines(report, all_subjects=per_file)]
    if per_file:
        for index, scored in enumerate(report.files):
            lines += ["", f"{index:5d}: {scored.ref}", f"       {scored.hyp} "
                      f"({scored.duration_s:.4f} s)"]
            lines += [_row(name, counts) for name, counts in scored.scores.items()]
    return "\n".join(lines)


def _row(name: str, counts: EventCounts) -> str:
    count = "{:9.2f}" if name == "taes" else "{:9.0f}"
    numbers = " ".join(count.format(v) for v in
                       (counts.targets, counts.hits, counts.misses, counts.false_alarms))
    return (f"{_TITLES[name]:<8} {numbers} {_percent(counts.sensitivity):>12} "
            f"{counts.fa_per_24h:>10.4f} {_percent(counts.ppv):>10} {_percent(counts.f1):>8}")


_SUBJECT_HEADER = (f"{'subject':<12} {'records':>7} {'targets':>7} {'hits':>7} {'false al.':>9} "
                   f"{'sensitivity':>12} {'precision':>10} {'F1':>9} {'FA/24h':>10}")


def _subject_lines(report: ScoreReport, all_subjects: bool) -> list[str]:
    """SzCORE averaged per subject (mean and spread of each figure), then the subjects with the
    most false alarms (all subjects with ``all_subjects``)."""
    averages = report.per_subject()
    n = averages["subjects"]
    lines = [f"SzCORE averaged per subject ({n} subjects), as szcore-evaluation averages: mean "
             "and std of each figure over the subjects where it is defined",
             f"{'':<8} {'sensitivity':>12} {'precision':>10} {'F1':>9} {'FA/24h':>10}"]
    for row, suffix in (("mean", ""), ("std", "_std")):
        lines.append(f"{row:<8} {_percent(averages['sensitivity' + suffix]):>12} "
                     f"{_percent(averages['precision' + suffix]):>10} "
                     f"{_percent(averages['f1' + suffix]):>9} "
                     f"{_decimal(averages['fa_per_24h' + suffix]):>10}")
    ordered = by_false_alarms(report.subjects.values())
    shown = ordered if all_subjects else [s for s in ordered[:MOST_FALSE_ALARMS_SHOWN]
                                          if s.counts.false_alarms]
    if shown:
        lines += ["", ("Each subject, most false alarms first" if all_subjects else
                       f"Subjects with the most false alarms (SzCORE; {len(shown)} of {n})"),
                  _SUBJECT_HEADER]
        lines += [f"{s.subject:<12} {s.recordings:>7d} {s.counts.targets:>7.0f} "
                  f"{s.counts.hits:>7.0f} {s.counts.false_alarms:>9.0f} "
                  f"{_percent(s.sensitivity):>12} {_percent(s.precision):>10} "
                  f"{_percent(s.f1):>9} {_decimal(s.fa_per_24h):>10}" for s in shown]
    return lines


def _decimal(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _percent(fraction: float) -> str:
    return "n/a" if math.isnan(fraction) else f"{fraction * 100:.4f}%"


#: Ratios shown to people as percentages (``score``'s text and ``--json``, asset metadata,
#: plots, the leaderboard), as NEDC prints sensitivity and PPV; the library computes fractions.
PERCENT_FIGURES = ("sensitivity", "ppv", "precision", "f1")


def percent_key(key: str) -> str | None:
    """The key of ``key``'s figure as a percentage, ``None`` if it is not one of
    :data:`PERCENT_FIGURES`: ``sensitivity`` -> ``sensitivity_pct``, ``val_overlap_f1`` ->
    ``val_overlap_f1_pct``, ``sensitivity_std`` -> ``sensitivity_pct_std``."""
    base, std = (key[:-4], "_std") if key.endswith("_std") else (key, "")
    if any(base == figure or base.endswith(f"_{figure}") for figure in PERCENT_FIGURES):
        return f"{base}_pct{std}"
    return None


def in_percent(figures: dict) -> dict:
    """``figures`` with each of :data:`PERCENT_FIGURES` (a fraction) as a percentage under
    :func:`percent_key`, in the same order; other keys as they are, NaN and ``None`` too."""
    out = {}
    for key, value in figures.items():
        pct = percent_key(key)
        if pct is None:
            out[key] = value
        else:
            out[pct] = value if value is None else 100.0 * value
    return out


def _json_safe(figures: dict[str, float]) -> dict[str, float | None]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}


def json_safe(value):
    """``value`` with every NaN, in nested dicts and lists too, as ``None`` (JSON's null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
