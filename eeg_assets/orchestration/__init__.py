"""The thin Dagster layer: partitions, resources, assets, checks, sensors and the Definitions."""

import dagster as dg

from eeg_assets.orchestration import assets, checks_cache, checks_dataset, training
from eeg_assets.orchestration.assets import CONFIG_AT_LOAD
from eeg_assets.orchestration.sensors import make_raw_edf_drop_sensor

split_cache_job = dg.define_asset_job(
    "split_cache_job",
    selection=dg.AssetSelection.groups(assets.GROUP).materializable(),
    description="Build, index, manifest and balance one split (what the drop sensor launches).",
)

defs = dg.Definitions(
    assets=[assets.raw_edf_recordings, assets.npz_windows, assets.dataset_index, assets.manifest,
            assets.balanced_dataset, training.trained_model],
    asset_checks=dg.load_asset_checks_from_modules([checks_cache, checks_dataset]),
    jobs=[split_cache_job],
    sensors=[
        make_raw_edf_drop_sensor(split_cache_job),
        dg.AutomationConditionSensorDefinition(
            "cache_automation_sensor", target=dg.AssetSelection.groups(assets.GROUP),
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Eager automation: index, manifest and balanced set follow their upstream."),
    ],
    resources={"eeg_config": CONFIG_AT_LOAD, "training_launcher": training.TrainingLauncher.from_env()},
    # In process: a step is seconds of work, while a process per step re-imports Dagster and
    # the definitions (~10 s each). npz_windows parallelises its files with its own pool.
    executor=dg.in_process_executor,
)
