"""Synthetic TUSZ-format data and the helpers that make it, shared by demos, tests and benchmarks.

- ``edf_writer``: the one writer of EDF + ``.csv_bi``/``.csv`` recordings (pyedflib, TUSZ labels
  and layout, header quirks such as the ``01:01:85`` start date);
- ``sample_corpus``: the embedded sample corpus (``make-sample-corpus``, ``make sample``), written
  with ``edf_writer``;
- ``fake_cache``: cache entries without EDF files (an NPZ and its ledger entry).

Not part of the core library: it imports ``eeg_assets.lib`` only (never Dagster or the
orchestration layer); nothing in ``eeg_assets.lib`` or ``eeg_assets.orchestration`` imports it.
The fault scenarios that drive the commands and Dagster are :mod:`eeg_assets.fault_injection`.
"""
