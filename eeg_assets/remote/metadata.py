"""Metadata values as the Pipes entry points report them."""

from __future__ import annotations

import math

#: Significant digits of a float shown to people (the run's JSON summary keeps full values).
SIGNIFICANT_DIGITS = 4


def _rounded(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{float(value):.{SIGNIFICANT_DIGITS}g}")


def float_value(value: float | None) -> dict:
    """A float with :data:`SIGNIFICANT_DIGITS` significant digits; NaN, infinities and None
    pass as they are."""
    rounded = _rounded(value)
    return {"raw_value": value if rounded is None else rounded, "type": "float"}


def percent(fraction: float | None) -> float | None:
    """A fraction (a sensitivity, PPV, precision, F1) as a percentage, as NEDC and the
    ``score`` command print it; None and NaN (undefined: no seizures) pass as they are."""
    return None if fraction is None else 100.0 * fraction


def percent_value(fraction: float | None) -> dict:
    """:func:`float_value` of :func:`percent` (for keys ending in ``_pct``)."""
    return float_value(percent(fraction))


def text_value(value: float | int | None) -> dict:
    """A number as text, 4 significant digits for a float: a check's figure, which the check
    page of Dagster's UI would otherwise plot across partitions as one series
    (:func:`eeg_assets.orchestration.checks_cache.check_metadata_value`)."""
    if value is None:
        text = "none"
    elif isinstance(value, float):
        text = f"{value:.{SIGNIFICANT_DIGITS}g}"
    else:
        text = str(value)
    return {"raw_value": text, "type": "text"}
