"""The external side of training, evaluation and the Modal backend: Pipes entry points and the
Modal apps.

The entry points (``train_entry``, ``evaluate_entry``, ``cache_entry``) and ``pipes_channel`` run
outside the Dagster process (a local subprocess or a Modal container) and use the light
``dagster_pipes`` protocol package, never ``dagster`` itself. ``modal_app`` and ``modal_cache``
are the two deployed apps; ``deployment`` holds what both sides agree on. ``modal_client`` is the
one place this machine calls Modal's servers from (the Dagster backend, ``upload-raw`` and
``modal-check``).
"""
