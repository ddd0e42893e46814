"""The pure EEG library: no Dagster import anywhere below this package.

The stages follow the data, and imports only point down this list::

    config, flags, files   the bottom: configuration, the BGB_* flags, atomic files
    signals/               EDF reading, channel mapping, preprocessing       (imports the bottom)
    cache/                 annotations, windows, NPZ files, ledger, build,   (+ signals)
                           discovery, verification, raw upload, the Modal
                           fan-out, the references recorded for scoring
    scoring/               NEDC OVERLAP/TAES and SzCORE event scoring  (+ cache.annotations only)
    dataset/               index, manifest, balanced set, splits, torch data (+ cache)
                           pinned inputs, the chain's steps and checks
    model/                 network, training loop, validation, train_run,    (+ dataset, scoring)
                           hypotheses, operating point, evaluate_run

``plots`` (matplotlib figures for metadata) imports nothing of the library.
"""
