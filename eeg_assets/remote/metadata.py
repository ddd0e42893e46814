"""Metadata values as the Pipes entry points report them."""

from __future__ import annotations

import math

#: Significant digits of a float shown to people (the run's JSON summary keeps full values).
SIGNIFICANT_DIGITS = 4


def float_value(value: float | None) -> dict:
    """A float with :data:`SIGNIFICANT_DIGITS` significant digits; NaN, infinities and None
    pass as they are."""
    rounded = (None if value is None or not math.isfinite(value)
               else float(f"{float(value):.{SIGNIFICANT_DIGITS}g}"))
    return {"raw_value": value if rounded is None else rounded, "type": "float"}
