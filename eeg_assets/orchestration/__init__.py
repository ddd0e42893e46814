"""The thin Dagster layer: partitions, assets, checks, sensors, and :func:`build_defs`.

Modules: ``assets`` (the cache chain), ``checks_cache`` / ``checks_dataset`` (its asset checks),
``training`` (``trained_model``), ``evaluation`` (``model_evaluation`` on val and eval), ``raw``
(``raw_edf_recordings``, observed), ``sensors`` (the raw-drop sensor), ``partitions``,
``backend`` (the ``backend`` resource: where the chain, training and evaluation run, local or
Modal) and ``modal_launch`` (a spawned Modal call as a Pipes session). Every asset is a
thin call into :mod:`eeg_assets.lib`.
"""

import dagster as dg

from eeg_assets.orchestration import assets, checks_cache, checks_dataset, evaluation, training
from eeg_assets.orchestration.backend import backend_for
from eeg_assets.orchestration.sensors import make_raw_edf_drop_sensor
from eeg_assets.settings import Settings


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
        # raw_edf_recordings first: the run observes the split it builds, and walks it once
        selection=(dg.AssetSelection.assets(assets.raw_edf_recordings.key)
                   | dg.AssetSelection.groups(assets.GROUP)),
        description="Observe, build, index, manifest and balance one split (what the drop sensor "
                    "launches).",
    )
    return dg.Definitions(
        assets=[assets.raw_edf_recordings, *assets.build_cache_assets(settings),
                training.build_trained_model(settings),
                evaluation.build_model_evaluation(settings)],
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
