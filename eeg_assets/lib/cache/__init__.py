"""Stage 2, the window cache of a split: annotations, label masks, NPZ files, the ledger, the build.

Owns ``<cache>/<split>/*_windows.npz`` and ``_ledger.sqlite``: discovery of a split's recordings,
the incremental parallel build and the schema verification. May import ``signals`` and the
bottom modules (``config``, ``flags``, ``files``).
"""
