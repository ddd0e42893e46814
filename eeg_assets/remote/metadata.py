"""Metadata values as the Pipes entry points report them."""

from __future__ import annotations

import math


def float_value(value: float | None, digits: int = 4) -> dict:
    """A float rounded for a person to read (full values stay in the run's JSON summary);
    NaN and infinities pass unrounded."""
    rounded = None if value is None or not math.isfinite(value) else round(float(value), digits)
    return {"raw_value": value if rounded is None else rounded, "type": "float"}
