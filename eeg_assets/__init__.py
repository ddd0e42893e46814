"""eeg_assets: a Dagster asset platform for TUSZ seizure detection.

``eeg_assets.lib`` is the pure EEG library (no Dagster import); ``eeg_assets.orchestration`` is
the thin Dagster layer; ``eeg_assets.remote`` runs outside the Dagster process (Pipes entry points,
the deployed Modal apps); ``eeg_assets.settings`` reads the environment once and
``eeg_assets.definitions`` builds the ``Definitions`` from it (docs/design.md). The
``Definitions`` object is loaded lazily, so that the CLI and the worker processes never pay for
importing Dagster; Dagster's module loader finds it through ``dir()``.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "defs":
        from eeg_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'eeg_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
