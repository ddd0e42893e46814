"""Sample and window counts as docs/tusz.md ("Windows and labels") defines them, computed
independently of the library (in exact integer arithmetic), for tests to compare the cache
against."""

from __future__ import annotations

import math


def expected_n_samples(n_raw: int, fs: int, target_fs: int = 256) -> int:
    """``ceil(n_raw * target_fs / fs)`` in exact integer arithmetic (independent of the library's
    rational approximation)."""
    g = math.gcd(int(target_fs), int(fs))
    up, down = int(target_fs) // g, int(fs) // g
    return -(-n_raw * up // down)


def expected_n_windows(n_samples_256: int, window: int = 15360, stride: int = 2560) -> int:
    """The ``(n - window) // stride + 1`` of docs/tusz.md, 0 when shorter than one window."""
    return 0 if n_samples_256 < window else (n_samples_256 - window) // stride + 1
