"""Stage 2, the window cache of a split: annotations, label masks, NPZ files, the ledger, the build.

Owns ``<cache>/<split>/*_windows.npz`` and ``_ledger.sqlite``: discovery of a split's recordings,
the incremental parallel build, the schema verification, and the reference events of every
recording, recorded for scoring (``references``). May import ``signals`` and the
bottom modules (``config``, ``flags``, ``files``).
"""
