"""SzCORE figures averaged per subject, as ``szcore-evaluation`` (SzCORE's benchmark) reports them.

NEDC pools: counts and durations are summed over files and the figures derived from the sums
(:class:`~eeg_assets.lib.scoring.counts.EventCounts`). SzCORE's evaluation (the 2025 seizure
detection challenge, szcore-evaluation's ``evaluate_dataset(..., avg_per_subject=True)``) first
sums each subject's event counts over the subject's recordings, derives the subject's figures,
then averages each figure over subjects, ignoring subjects where it is undefined (NumPy's
``nanmean``; the spread is ``nanstd``, the population standard deviation). A subject's figures
are timescoring's (``_Scoring.computeScores``), which differ from NEDC's where counts are zero:

* sensitivity ``hits / targets``; undefined without reference seizures;
* precision ``hits / (hits + false_alarms)``; undefined without hypothesis events;
* F1 ``2 hits / (2 hits + false_alarms + misses)``; undefined only when the subject has neither
  seizures nor false alarms, so a subject without seizures but with false alarms counts 0, and
  one whose seizures were all missed without false alarms counts 0 (NEDC's harmonic mean of
  sensitivity and PPV is undefined in both cases);
* FA/24h ``false_alarms * 86400 / duration``.

The counts are the SzCORE counts of the pooled totals (``timescoring``'s event scoring of each
recording at 10 Hz from the events themselves), so the subjects' counts add up to the totals.
szcore-evaluation 0.0.7 itself reads the TSV files at 1 Hz (onsets and the recording's duration
cut to whole seconds) before the same event scoring: on recordings whose durations or events fall
between whole seconds its counts and FA/24h may differ slightly.

The subject of a recording (:func:`subject_of`) is the TUSZ patient id, the first ``_`` field of
its file stem (``aaaaaqhs_s001_t000`` -> ``aaaaaqhs``), or the ``sub-`` label of a BIDS name
(``sub-01_ses-01_task-szMonitoring_run-01_events.tsv`` -> ``01``).

Not installed from szcore-evaluation: every release requires Python >= 3.12 (this project
supports 3.10). timescoring, which it uses for the counts, is this project's SzCORE scorer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.scoring.counts import SECONDS_PER_DAY, EventCounts
from eeg_assets.lib.scoring.tsv import tsv_stem

#: The figures averaged over subjects, under the names the summary and ``score --json`` use.
SUBJECT_FIGURES = ("sensitivity", "precision", "f1", "fa_per_24h")
#: How many subjects the ``score`` text lists by false alarms (``--json`` lists all).
MOST_FALSE_ALARMS_SHOWN = 5
_BIDS_SUBJECT = "sub-"


def subject_of(name: str | Path) -> str:
    """The subject of a recording from its file name or stem.

    ``sub-<label>_...`` (BIDS) -> ``<label>``; otherwise the first ``_`` field of the stem, the
    TUSZ patient id (as :func:`eeg_assets.lib.dataset.splits.patient_id` reads it).
    """
    name = Path(name).name
    stem = tsv_stem(Path(name)) if name.endswith(".tsv") else Path(name).stem
    first = stem.split("_", 1)[0]
    if first.startswith(_BIDS_SUBJECT) and len(first) > len(_BIDS_SUBJECT):
        return first[len(_BIDS_SUBJECT):]
    return first


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True)
class SubjectCounts:
    """One subject's SzCORE counts summed over its recordings, and its figures."""

    subject: str
    recordings: int = 0
    counts: EventCounts = EventCounts()

    def plus(self, counts: EventCounts) -> SubjectCounts:
        """These counts with one more recording's."""
        return SubjectCounts(self.subject, self.recordings + 1, self.counts + counts)

    @property
    def sensitivity(self) -> float:
        return _ratio(self.counts.hits, self.counts.targets)

    @property
    def precision(self) -> float:
        return _ratio(self.counts.hits, self.counts.hits + self.counts.false_alarms)

    @property
    def f1(self) -> float:
        c = self.counts
        if c.targets + c.false_alarms == 0:
            return math.nan
        return 2 * c.hits / (2 * c.hits + c.false_alarms + (c.targets - c.hits))

    @property
    def fa_per_24h(self) -> float:
        return _ratio(self.counts.false_alarms * SECONDS_PER_DAY, self.counts.duration_s)

    def as_dict(self) -> dict[str, float | int | str]:
        c = self.counts
        return {"subject": self.subject, "recordings": self.recordings,
                "duration_s": c.duration_s, "targets": c.targets, "hits": c.hits,
                "misses": c.misses, "false_alarms": c.false_alarms,
                **{figure: getattr(self, figure) for figure in SUBJECT_FIGURES}}


def _nan_mean_std(values: list[float]) -> tuple[float, float]:
    """NumPy's ``nanmean`` and ``nanstd`` (szcore-evaluation's), NaN where all are NaN."""
    if all(math.isnan(v) for v in values):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)), float(np.nanstd(values))


def by_false_alarms(subjects: Iterable[SubjectCounts]) -> list[SubjectCounts]:
    """Most false alarms first; ties by FA/24h (higher first), then by subject."""
    return sorted(subjects, key=lambda s: (-s.counts.false_alarms,
                                           -(0.0 if math.isnan(s.fa_per_24h) else s.fa_per_24h),
                                           s.subject))


def subject_averages(subjects: Iterable[SubjectCounts]) -> dict:
    """The per-subject report: averages over subjects and each subject's counts.

    Returns
    -------
    dict
        ``subjects`` (how many), for each of :data:`SUBJECT_FIGURES` its mean over the subjects
        where it is defined and ``<figure>_std`` (NaN where no subject defines it), and
        ``by_subject``: each subject's :meth:`SubjectCounts.as_dict`, most false alarms first
        (:func:`by_false_alarms`).
    """
    ordered = by_false_alarms(subjects)
    out: dict = {"subjects": len(ordered)}
    for figure in SUBJECT_FIGURES:
        mean, std = _nan_mean_std([getattr(s, figure) for s in ordered])
        out[figure], out[f"{figure}_std"] = mean, std
    out["by_subject"] = [s.as_dict() for s in ordered]
    return out


__all__ = ["MOST_FALSE_ALARMS_SHOWN", "SUBJECT_FIGURES", "SubjectCounts", "by_false_alarms",
           "subject_averages", "subject_of"]
