"""Stage 2, the window cache of a split: annotations, label masks, NPZ files, the ledger, the build.

Owns ``<cache>/<split>/*_windows.npz``, ``_ledger.sqlite``, ``_raw_listing.json`` and
``_raw_folders.json``: discovery of a split's recordings (``discovery``: the one walk every
consumer uses), the incremental parallel build, the schema verification, and the reference events
of every recording, recorded for scoring (``references``). May import ``signals`` and the bottom
modules (``config``, ``flags``, ``files``).
"""
