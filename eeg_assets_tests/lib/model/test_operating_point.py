"""The operating-threshold rule applied to sweeps of val scores."""

from __future__ import annotations

import math

import pytest

from eeg_assets.lib.model.operating_point import (
    SWEEP_THRESHOLDS,
    OperatingPoint,
    ThresholdRule,
)


def _sweep(points: list[tuple[float, float, float]]) -> list[dict]:
    """Rows as ValidationAccumulator.sweep() gives them, from (threshold, sensitivity, fa)."""
    return [{"threshold": t, "overlap": {"sensitivity": s, "fa_per_24h": fa},
             "szcore": {"sensitivity": 1.0, "fa_per_24h": 0.0}} for t, s, fa in points]


SWEEP = _sweep([(0.2, 0.9, 80.0), (0.4, 0.7, 30.0), (0.5, 0.7, 12.0), (0.6, 0.5, 4.0),
                (0.8, 0.2, 1.0)])


def test_the_most_sensitive_threshold_within_the_target_is_chosen():
    assert ThresholdRule(30.0).choose(SWEEP) == OperatingPoint(0.5, 0.7, 12.0, True)
    assert ThresholdRule(5.0).choose(SWEEP) == OperatingPoint(0.6, 0.5, 4.0, True)
    assert ThresholdRule(100.0).choose(SWEEP) == OperatingPoint(0.2, 0.9, 80.0, True)


def test_a_target_no_threshold_meets_takes_the_fewest_false_alarms_and_says_so():
    assert ThresholdRule(0.5).choose(SWEEP) == OperatingPoint(0.8, 0.2, 1.0, False)


def test_the_rule_can_follow_another_scorer():
    assert ThresholdRule(0.0, scorer="szcore").choose(SWEEP).threshold == 0.8


def test_without_seizures_sensitivity_is_undefined_and_the_highest_threshold_wins():
    sweep = _sweep([(0.3, math.nan, 2.0), (0.7, math.nan, 1.0)])
    point = ThresholdRule(10.0).choose(sweep)
    assert point.threshold == 0.7 and math.isnan(point.sensitivity) and point.target_met


def test_invalid_rules_and_empty_sweeps_are_refused():
    with pytest.raises(ValueError, match="false-alarm target must be >= 0"):
        ThresholdRule(-1.0)
    with pytest.raises(ValueError, match="false-alarm target"):
        ThresholdRule(math.nan)
    with pytest.raises(ValueError, match="no thresholds were scored"):
        ThresholdRule().choose([])


def test_the_sweep_grid_and_the_rule_round_trip():
    assert SWEEP_THRESHOLDS[0] == 0.05 and SWEEP_THRESHOLDS[-1] == 0.95
    assert len(SWEEP_THRESHOLDS) == 19 and 0.5 in SWEEP_THRESHOLDS and 0.8 in SWEEP_THRESHOLDS
    rule = ThresholdRule(12.5)
    assert ThresholdRule.from_dict(rule.to_dict()) == rule
    assert "at most 12.5 FA/24h" in rule.describe()
