"""Synthetic TUSZ-format data: the embedded sample corpus and the EDF writer behind it.

Not part of the core library: demos, tests and benchmarks use it; nothing in ``eeg_assets.lib``
imports it.
"""
