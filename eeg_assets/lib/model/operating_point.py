"""The operating threshold: chosen on val by a stated rule, then applied unchanged to eval.

The rule (:class:`ThresholdRule`): among the thresholds of :data:`SWEEP_THRESHOLDS`, take the one
with the highest val OVERLAP sensitivity whose val OVERLAP false alarms per 24 h are at most
``max_fa_per_24h``; of equally sensitive ones the highest threshold (fewest false alarms). When no
threshold meets the target, the one with the fewest false alarms is taken (the highest among
ties) and the choice says the target was missed. Nothing is ever chosen on eval.

Why these defaults: a 0.05 grid from 0.05 to 0.95 resolves operating points as finely as
published TUSZ results report them (SeizureTransformer: 0.8), at 19 scorings per recording; a
target of 30 FA/24h admits the published anchor (OVERLAP 45.6% at 26.9 FA/24h on TUSZ eval) and
keeps a detector from being scored at a threshold that alarms every half hour.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Thresholds an evaluation scores (the curve of its plot and the candidates of the rule).
SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
DEFAULT_MAX_FA_PER_24H = 30.0


@dataclass(frozen=True)
class OperatingPoint:
    """The chosen threshold and its val figures (sensitivity a fraction; NaN without seizures)."""

    threshold: float
    sensitivity: float
    fa_per_24h: float
    #: False when no threshold kept the false alarms within the target.
    target_met: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ThresholdRule:
    """The most sensitive threshold whose ``scorer`` FA/24h on val is at most the target."""

    max_fa_per_24h: float = DEFAULT_MAX_FA_PER_24H
    scorer: str = "overlap"

    def __post_init__(self) -> None:
        if not self.max_fa_per_24h >= 0:  # also refuses NaN
            raise ValueError(f"the false-alarm target must be >= 0 per 24 h, "
                             f"got {self.max_fa_per_24h!r}")

    def describe(self) -> str:
        return (f"highest val {self.scorer.upper()} sensitivity with at most "
                f"{self.max_fa_per_24h:g} FA/24h (ties: the higher threshold)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ThresholdRule:
        return cls(**data)

    def choose(self, sweep: list[dict]) -> OperatingPoint:
        """Apply the rule to :meth:`ValidationAccumulator.sweep` of the val split.

        Raises
        ------
        ValueError
            For an empty sweep.
        """
        if not sweep:
            raise ValueError("no thresholds were scored")
        points = [OperatingPoint(float(row["threshold"]), row[self.scorer]["sensitivity"],
                                 row[self.scorer]["fa_per_24h"], True) for row in sweep]
        within = [p for p in points if p.fa_per_24h <= self.max_fa_per_24h]
        if within:
            best = max(within, key=lambda p: (_rank(p.sensitivity), p.threshold))
            return best
        fewest = min(points, key=lambda p: (p.fa_per_24h, -p.threshold))
        return OperatingPoint(fewest.threshold, fewest.sensitivity, fewest.fa_per_24h, False)


def _rank(sensitivity: float) -> float:
    """NaN (a split without seizures) ranks below every sensitivity."""
    return -math.inf if math.isnan(sensitivity) else sensitivity


__all__ = ["DEFAULT_MAX_FA_PER_24H", "OperatingPoint", "SWEEP_THRESHOLDS", "ThresholdRule"]
