"""NEDC EEG Eval v6.0.0's OVERLAP and TAES scoring of one recording, for the seizure label.

Written from the published definitions (V. Shah, M. Golmohammadi, I. Obeid, J. Picone, "Objective
Evaluation Metrics for Automatic Classification of EEG Events", Springer 2021) and NEDC v6.0.0's
documented behaviour, and checked against the figures NEDC prints for its own 30-pair sample
(``eeg_assets_tests/data/nedc_sample``). Both scorers take the seizure events of a reference and a
hypothesis, sorted and merged as :func:`~eeg_assets.lib.scoring.events.merge_events` returns them:
NEDC scores each label on its own, so background events never change the seizure figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from eeg_assets.lib.scoring.counts import EventCounts
from eeg_assets.lib.scoring.events import Interval


def _overlaps(a: Interval, b: Interval) -> bool:
    """Any overlap of positive length (touching intervals do not overlap)."""
    return a[1] > b[0] and a[0] < b[1]


def score_overlap(ref: Sequence[Interval], hyp: Sequence[Interval],
                  duration_s: float) -> EventCounts:
    """NEDC OVERLAP ("any-overlap") scoring of one recording.

    A reference event is a hit when any hypothesis event overlaps it, otherwise a miss; a
    hypothesis event that overlaps no reference event is a false alarm. One long hypothesis over
    three seizures gives three hits and no false alarm.

    Parameters
    ----------
    ref, hyp : sequence of (start_s, stop_s)
        Seizure events in seconds, sorted and merged (see ``merge_events``).
    duration_s : float
        The recording's duration in seconds (the false-alarm rate's denominator).
    """
    hits = sum(1 for r in ref if any(_overlaps(r, h) for h in hyp))
    false_alarms = sum(1 for h in hyp if not any(_overlaps(h, r) for r in ref))
    return EventCounts(targets=len(ref), hits=hits, misses=len(ref) - hits,
                       false_alarms=false_alarms, duration_s=float(duration_s))


def _touch_same_second(a: Interval, b: Interval) -> bool:
    """TAES's own overlap test: NEDC compares the whole seconds the events touch (``int`` of
    start to ``int`` of stop, both included), so events a fraction of a second apart within one
    second still "overlap". Kept as NEDC has it, for identical figures."""
    return int(a[0]) <= int(b[1]) and int(b[0]) <= int(a[1])


def _hit_and_false_alarm(ref: Interval, hyp: Interval) -> tuple[float, float]:
    """Partial hit and false alarm of one hypothesis against one reference event.

    The hit is the part of the reference the hypothesis covers, and the false alarm the
    hypothesis' extent outside the reference, both as fractions of the reference's duration;
    the false alarm is capped at 1.
    """
    ref_start, ref_stop = ref
    hyp_start, hyp_stop = hyp
    length = ref_stop - ref_start
    if hyp_start <= ref_start and hyp_stop <= ref_stop:    # starts early, ends inside
        return (hyp_stop - ref_start) / length, min(1.0, (ref_start - hyp_start) / length)
    if hyp_start >= ref_start and hyp_stop >= ref_stop:    # starts inside, ends late
        return (ref_stop - hyp_start) / length, min(1.0, (hyp_stop - ref_stop) / length)
    if hyp_start < ref_start and hyp_stop > ref_stop:      # covers the reference
        return 1.0, min(1.0, ((hyp_stop - ref_stop) + (ref_start - hyp_start)) / length)
    return (hyp_stop - hyp_start) / length, 0.0            # inside the reference


class _TaesPass:
    """One recording's TAES pass: which events are used up, and the running sums."""

    def __init__(self, ref: Sequence[Interval], hyp: Sequence[Interval]) -> None:
        self.ref, self.hyp = ref, hyp
        self.ref_open = [True] * len(ref)
        self.hyp_open = [True] * len(hyp)
        self.hits = self.misses = self.false_alarms = 0.0

    def run(self) -> None:
        for r, ref_event in enumerate(self.ref):
            # NEDC looks at a reference only while it is unused and some hypothesis (used or not)
            # overlaps it; it then offers it every unused hypothesis in turn.
            if not self.ref_open[r] or not any(_overlaps(ref_event, h) for h in self.hyp):
                continue
            for h, hyp_event in enumerate(self.hyp):
                if self.hyp_open[h] and _touch_same_second(ref_event, hyp_event):
                    if hyp_event[1] >= ref_event[1]:
                        self._hypothesis_runs_on(r, h)
                    else:
                        self._reference_runs_on(r, h)
        # what no partial match used up counts whole
        self.misses += sum(self.ref_open)
        self.false_alarms += sum(self.hyp_open)

    def _score(self, r: int, h: int) -> float:
        hit, false_alarm = _hit_and_false_alarm(self.ref[r], self.hyp[h])
        self.hits += hit
        self.false_alarms += false_alarm
        self.ref_open[r] = self.hyp_open[h] = False
        return hit

    def _hypothesis_runs_on(self, r: int, h: int) -> None:
        """The hypothesis ends at or after the reference: partial credit for this reference, and
        every later reference the same hypothesis reaches is a whole miss (TAES's definition)."""
        self.misses += 1.0 - self._score(r, h)
        for later in range(r + 1, len(self.ref)):
            if _touch_same_second(self.ref[later], self.hyp[h]):
                self.ref_open[later] = False
                self.misses += 1.0

    def _reference_runs_on(self, r: int, h: int) -> None:
        """The reference ends after the hypothesis: every hypothesis from this one on that
        reaches the reference adds its partial hit and false alarm to it."""
        missed = 1.0 - self._score(r, h)
        for later in range(h + 1, len(self.hyp)):
            if _touch_same_second(self.ref[r], self.hyp[later]):
                missed -= self._score(r, later)
        self.misses += missed


def score_taes(ref: Sequence[Interval], hyp: Sequence[Interval],
               duration_s: float) -> EventCounts:
    """NEDC TAES (time-aligned event scoring) of one recording.

    Each reference event earns the fraction of it that hypotheses cover (its miss is the rest),
    and a hypothesis' extent outside the reference is a false alarm as a fraction of the
    reference's duration, capped at 1. A hypothesis spanning several reference events earns
    partial credit on the first and a whole miss for each further one; events nothing matched
    count as a whole miss or a whole false alarm.

    Parameters
    ----------
    ref, hyp : sequence of (start_s, stop_s)
        Seizure events in seconds, sorted and merged (see ``merge_events``).
    duration_s : float
        The recording's duration in seconds.

    Returns
    -------
    EventCounts
        Fractional hits, misses and false alarms; ``targets`` is the number of reference events.
    """
    taes = _TaesPass(ref, hyp)
    taes.run()
    return EventCounts(targets=len(ref), hits=taes.hits, misses=taes.misses,
                       false_alarms=taes.false_alarms, duration_s=float(duration_s))
