"""The thin Dagster layer: partitions, assets, checks, sensors, and :func:`build_defs`.

Modules: ``assets`` (the cache chain), ``checks_cache`` / ``checks_dataset`` (its asset checks),
``training`` (``experiments`` and ``trained_model``, by experiment), ``evaluation``
(``model_evaluation``, by experiment and split), ``comparison`` (``model_comparison``), ``raw``
(``raw_edf_recordings``, each split's listing), ``sensors`` (the raw-drop sensor), ``partitions``,
``backend`` (the ``backend`` resource: where the chain, training and evaluation run, local or
Modal) and ``modal_launch`` (a spawned Modal call as a Pipes session). Every asset is a
thin call into :mod:`eeg_assets.lib`.
"""

import dagster as dg

from eeg_assets.lib.model.experiment import Experiment, ExperimentError, load_experiments
from eeg_assets.orchestration import (
    assets,
    checks_cache,
    checks_dataset,
    comparison,
    evaluation,
    training,
)
from eeg_assets.orchestration.backend import backend_for
from eeg_assets.orchestration.sensors import make_raw_edf_drop_sensor
from eeg_assets.settings import Settings


def load_experiments_of(settings: Settings) -> list[Experiment]:
    """The experiment files of ``settings.experiments_dir``, resolved against the training
    variables (their documented defaults).

    Raises
    ------
    ExperimentError
        A file that does not parse or names an unknown key or a bad value (the definitions do
        not load, so nothing is trained), or a folder without experiments.
    """
    experiments = load_experiments(settings.experiments_dir, settings.train,
                                   settings.eval_max_fa_per_24h)
    if not experiments:
        raise ExperimentError(f"no experiment files (*.toml) in {settings.experiments_dir} "
                              "(EEG_ASSETS_EXPERIMENTS_DIR); the repository's experiments/ "
                              "folder has sample.toml to start from")
    return experiments


def build_resources(settings: Settings) -> dict:
    """``settings`` and the ``backend`` it names (local or Modal), bound to it."""
    return {"settings": settings, "backend": backend_for(settings)}


def build_defs(settings: Settings) -> dg.Definitions:
    """The project's Definitions, everything derived from one :class:`Settings` object.

    Code versions and freshness policies are computed from ``settings`` and the ``settings``
    resource is that same object, so what the UI calls stale and what a run writes never disagree.
    """
    split_cache_job = dg.define_asset_job(
        "split_cache_job",
        # raw_edf_recordings first: the run lists the split it builds, and walks it once
        selection=(dg.AssetSelection.assets(assets.raw_edf_recordings.key)
                   | dg.AssetSelection.groups(assets.GROUP)),
        description="List, build, index, manifest and balance one split (what the drop sensor "
                    "launches).",
    )
    experiments = load_experiments_of(settings)
    return dg.Definitions(
        assets=[assets.raw_edf_recordings, *assets.build_cache_assets(settings),
                training.build_experiments_asset(experiments),
                training.build_trained_model(settings, experiments),
                evaluation.build_model_evaluation(settings, experiments),
                comparison.build_model_comparison(experiments)],
        asset_checks=dg.load_asset_checks_from_modules([checks_cache, checks_dataset]),
        jobs=[split_cache_job],
        sensors=[
            make_raw_edf_drop_sensor(split_cache_job),
            dg.AutomationConditionSensorDefinition(
                "cache_automation_sensor", target=dg.AssetSelection.groups(assets.GROUP),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Eager automation: index, manifest and balanced set follow their "
                            "upstream."),
        ],
        resources=build_resources(settings),
        # In process: a step is seconds of work, while a process per step re-imports Dagster and
        # the definitions (~10 s each). npz_windows parallelises its files with its own pool.
        executor=dg.in_process_executor,
    )
