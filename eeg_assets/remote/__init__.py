"""The external side of training, evaluation and the Modal backend: Pipes entry points and the
Modal apps.

These run outside the Dagster process (a local subprocess or a Modal container). They use the
light ``dagster_pipes`` protocol package, never ``dagster`` itself. ``modal_cli`` runs the
``modal`` CLI for the Dagster side and for ``python -m eeg_assets upload-raw``.
"""
