"""Event counts of one scorer and the figures derived from them, summed over recordings."""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400.0


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass(frozen=True)
class EventCounts:
    """Hits, misses and false alarms of one scorer on one or more recordings.

    Counts add up across recordings (``a + b``, ``sum(counts, EventCounts())``), and the derived
    figures are computed from the sums, never averaged: the convention of NEDC and of docs/tusz.md
    ("Evaluation conventions").
    TAES counts are fractional; the other scorers' are whole numbers.

    Attributes
    ----------
    targets : float
        Reference seizure events (after the scorer's own merging).
    hits, misses, false_alarms : float
        As the scorer defines them.
    duration_s : float
        Total duration of the recordings in seconds, the false-alarm rate's denominator.
    """

    targets: float = 0
    hits: float = 0
    misses: float = 0
    false_alarms: float = 0
    duration_s: float = 0.0

    def __add__(self, other: EventCounts) -> EventCounts:
        if not isinstance(other, EventCounts):
            return NotImplemented
        return EventCounts(self.targets + other.targets, self.hits + other.hits,
                           self.misses + other.misses, self.false_alarms + other.false_alarms,
                           self.duration_s + other.duration_s)

    @property
    def sensitivity(self) -> float:
        """``hits / (hits + misses)`` as a fraction in [0, 1]; NaN without reference events.

        Equal to ``hits / targets`` except in NEDC TAES's whole-second overlap corner cases,
        where NEDC itself divides by ``hits + misses``.
        """
        return _ratio(self.hits, self.hits + self.misses)

    @property
    def ppv(self) -> float:
        """Positive predictive value ``hits / (hits + false_alarms)`` (NEDC's PPV); NaN if 0/0."""
        return _ratio(self.hits, self.hits + self.false_alarms)

    @property
    def f1(self) -> float:
        """Harmonic mean of sensitivity and PPV; NaN where either is NaN or both are 0."""
        sensitivity, ppv = self.sensitivity, self.ppv
        return _ratio(2 * sensitivity * ppv, sensitivity + ppv)

    @property
    def fa_per_24h(self) -> float:
        """False alarms per 24 hours of recording, ``false_alarms * 86400 / duration_s``."""
        return _ratio(self.false_alarms * SECONDS_PER_DAY, self.duration_s)

    def as_dict(self) -> dict[str, float]:
        """The counts and derived figures under the keys the ``score --json`` output uses."""
        return {"targets": self.targets, "hits": self.hits, "misses": self.misses,
                "false_alarms": self.false_alarms, "duration_s": self.duration_s,
                "sensitivity": self.sensitivity, "fa_per_24h": self.fa_per_24h,
                "ppv": self.ppv, "f1": self.f1}
