"""Stage 3, what training reads: ``_dataset_index.json``, ``manifest.json``, the balanced set.

Owns the index and manifest (from the ledger's recorded facts or a scan), the balanced recipe
and ``balanced_dataset.json``, patient disjointness and the torch datasets. May import ``cache``
and the bottom modules; never ``model``.
"""
