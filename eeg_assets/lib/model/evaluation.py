"""Score a split's stitched recordings against their annotation references, in bounded memory.

Used by training (validation every epoch) and by ``model_evaluation``, so the two report the same
figures at the same threshold.

Conventions
-----------
* **References** are each recording's annotation events and header duration, recorded in the
  ledger when the cache was built (:mod:`eeg_assets.lib.cache.references`), never the seizure
  mask quantised onto the cached samples.
* **Every recording of the split is scored**: those with windows from their stitched timeline
  (:mod:`eeg_assets.lib.model.stitching`; the tail after the last window is background, see
  :mod:`eeg_assets.lib.model.hypotheses`), those shorter than one window with an event-free
  hypothesis. Quarantined recordings are not scored; ``SplitReferences.excluded`` lists them.
* **Event scores** are NEDC OVERLAP and TAES and SzCORE (:mod:`eeg_assets.lib.scoring`), summed
  per recording into totals (counts and durations added, figures from the sums), at each
  threshold of the accumulator: one in training, the sweep of the operating-point choice in an
  evaluation.
* **Sample AUROC** is over the stitched timelines of all recordings together (the Mann-Whitney
  statistic, ties counted half) against the cached labels, streamed through
  :class:`~eeg_assets.lib.model.auroc.BinnedAUROC` with its error bound (``auroc_error_bound``).
* **Memory.** One recording's timeline exists at a time (~17 B per sample while it is stitched
  and scored); afterwards only its reference, its events at each threshold and the summed counts
  are kept, and the AUROC histograms (39 MB), whatever the split's size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.layout import layout_of, stem_of
from eeg_assets.lib.cache.references import Reference, SplitReferences
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.lib.model.auroc import BinnedAUROC
from eeg_assets.lib.model.hypotheses import (
    Event,
    PostProcessConfig,
    detect_events,
    recording_events,
    scored_events,
    write_csv_bi,
)
from eeg_assets.lib.scoring import SCORERS, RecordingEvents, ScoreReport

#: Seconds a stitched timeline may run past its reference's duration: the cache accepts an
#: annotation header up to this much shorter than the EDF.
TIMELINE_SLACK_S = DEFAULT_CONFIG.duration_tolerance_s
#: Figures of each scorer in :meth:`ValidationAccumulator.metrics`, as ``<scorer>_<figure>``.
FIGURES = ("sensitivity", "fa_per_24h", "ppv", "f1", "targets", "hits", "false_alarms")


def bname_from_npz(npz_name: str) -> str:
    """``aaaaadkb_s010_t000_windows.npz`` (or ``..._data.npy``) -> ``aaaaadkb_s010_t000``."""
    name = Path(npz_name).name
    if layout_of(name) is None or stem_of(name) == Path(name).stem:
        raise ValueError(f"{npz_name!r} is not a cache file name (<edf_stem>_windows.npz or "
                         "<edf_stem>_data.npy)")
    return stem_of(name)


def reference_events(reference: Reference) -> RecordingEvents:
    """The scorers' view of a recorded reference: rows merged, times rounded to 4 decimals."""
    return scored_events(reference.stem, reference.duration_s,
                         [Event(start, stop) for start, stop in reference.seizures])


@dataclass(frozen=True)
class ScoredRecording:
    """One recording as scored: its reference and its hypothesis events at each threshold."""

    reference: RecordingEvents
    has_windows: bool
    hypotheses: dict[float, tuple[Event, ...]]

    @property
    def bname(self) -> str:
        return self.reference.name


class ValidationAccumulator:
    """Scores whole recordings as they come and reports split-level figures.

    Parameters
    ----------
    fs : float
        Sample rate of the timelines in Hz.
    references : SplitReferences
        The references of every recording to score; those without windows are scored at once.
    post : PostProcessConfig
        Probabilities -> hypothesis events; ``post.threshold`` is the one :meth:`metrics` reports
        by default.
    thresholds : iterable of float, optional
        Further thresholds scored alongside (the operating-point sweep).
    """

    def __init__(self, fs: float, references: SplitReferences,
                 post: PostProcessConfig = PostProcessConfig(), thresholds=()):
        self.fs = fs
        self.post = post
        self.thresholds = tuple(sorted({float(t) for t in thresholds} | {post.threshold}))
        self.recordings: list[ScoredRecording] = []
        self.excluded = references.excluded
        self._references = references.by_npz()
        self._reports = {t: ScoreReport() for t in self.thresholds}
        self._auroc = BinnedAUROC()
        for reference in references.without_windows():
            self._score(reference_events(reference), has_windows=False,
                        events={t: () for t in self.thresholds})

    def add_timeline(self, npz_name: str, probs: np.ndarray, labels: np.ndarray) -> None:
        """Score one stitched recording: probabilities ``(L,)`` in [0, 1], labels ``(L,)`` bool
        (the cached mask, for the sample AUROC only)."""
        reference = self._references.get(npz_name)
        if reference is None:
            raise ValueError(f"{npz_name}: no reference events for this recording")
        timeline_s = probs.size / self.fs
        # One sample more: resampling to the cache's rate rounds the length up.
        if timeline_s > reference.duration_s + TIMELINE_SLACK_S + 1 / self.fs:
            raise ValueError(f"{npz_name}: the stitched timeline lasts {timeline_s:g} s but the "
                             f"reference ({reference.annotation_file or reference.stem}) only "
                             f"{reference.duration_s:g} s")
        try:
            self._auroc.update(probs, labels)
        except ValueError as error:
            raise ValueError(f"{npz_name}: {error}") from None
        events = {t: recording_events(detect_events(probs, self.fs,
                                                    dataclasses.replace(self.post, threshold=t)),
                                      reference.duration_s)
                  for t in self.thresholds}
        self._score(reference_events(reference), has_windows=True, events=events)

    def _score(self, reference: RecordingEvents, has_windows: bool,
               events: dict[float, tuple[Event, ...]]) -> None:
        for threshold, report in self._reports.items():
            report.add(reference, scored_events(reference.name, reference.duration_s,
                                                events[threshold]), keep_file=False)
        self.recordings.append(ScoredRecording(reference, has_windows, events))

    def _scored(self, threshold: float | None) -> float:
        threshold = self.post.threshold if threshold is None else float(threshold)
        if threshold not in self._reports:
            raise KeyError(f"threshold {threshold} was not scored (scored: {self.thresholds})")
        return threshold

    def totals(self, threshold: float | None = None) -> ScoreReport:
        """The summed scores at ``threshold`` (default ``post.threshold``)."""
        return self._reports[self._scored(threshold)]

    def metrics(self, threshold: float | None = None) -> dict[str, float]:
        """AUROC (with its error bound) and every scorer's figures at ``threshold``.

        Keys: ``auroc``, ``auroc_error_bound``, ``<scorer>_<figure>`` for the scorers ``overlap``,
        ``taes``, ``szcore`` and the figures of :data:`FIGURES` (sensitivities as fractions),
        ``duration_s``, ``hours``, ``n_recordings``.
        """
        report = self.totals(threshold)
        auroc, auroc_error_bound = self._auroc.compute()
        figures = {f"{scorer}_{name}": value for scorer, counts in report.totals.items()
                   for name, value in counts.as_dict().items() if name in FIGURES}
        duration_s = report.totals["overlap"].duration_s
        return {"auroc": auroc, "auroc_error_bound": auroc_error_bound, **figures,
                "duration_s": duration_s, "hours": duration_s / 3600.0,
                "n_recordings": report.recordings}

    def sweep(self) -> list[dict]:
        """Per threshold, ascending: ``{"threshold": t, "<scorer>": EventCounts.as_dict()}``."""
        return [{"threshold": t, **{name: counts.as_dict()
                                    for name, counts in self._reports[t].totals.items()}}
                for t in self.thresholds]

    def write_hypotheses(self, out_dir: Path, threshold: float | None = None) -> list[Path]:
        """One ``<bname>.csv_bi`` per scored recording at ``threshold``, in bname order."""
        threshold = self._scored(threshold)
        return self._write(out_dir, lambda r: r.hypotheses[threshold])

    def write_references(self, out_dir: Path) -> list[Path]:
        """The references as NEDC reads them, one ``<bname>.csv_bi`` each, in bname order."""
        return self._write(out_dir, lambda r: [Event(start, stop)
                                               for start, stop in r.reference.seizures])

    def _write(self, out_dir: Path, events_of) -> list[Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for scored in sorted(self.recordings, key=lambda r: r.bname):
            path = out_dir / f"{scored.bname}.csv_bi"
            write_csv_bi(path, scored.bname, scored.reference.duration_s, events_of(scored))
            paths.append(path)
        return paths


def non_finite_figures(metrics: dict[str, float]) -> list[str]:
    """The names among AUROC and every scorer's sensitivity and FA/24h that are not finite."""
    names = ["auroc"] + [f"{scorer}_{figure}" for scorer in SCORERS
                         for figure in ("sensitivity", "fa_per_24h")]
    return [name for name in names if not math.isfinite(float(metrics.get(name, math.nan)))]


__all__ = ["FIGURES", "ScoredRecording", "TIMELINE_SLACK_S", "ValidationAccumulator",
           "bname_from_npz", "non_finite_figures", "reference_events"]
