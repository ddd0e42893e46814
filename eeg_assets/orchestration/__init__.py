"""The thin Dagster layer: partitions, resources, assets, checks, sensors and the Definitions."""

import dagster as dg

from eeg_assets.orchestration import assets, checks_cache
from eeg_assets.orchestration.assets import CONFIG_AT_LOAD
from eeg_assets.orchestration.sensors import make_raw_edf_drop_sensor

cache_chain_job = dg.define_asset_job(
    "split_cache_job",
    selection=dg.AssetSelection.groups(assets.GROUP).materializable(),
    description="Build, index, manifest and balance one split (what the drop sensor launches).",
)

defs = dg.Definitions(
    assets=[assets.raw_edf_recordings, assets.npz_windows],
    asset_checks=dg.load_asset_checks_from_modules([checks_cache]),
    jobs=[cache_chain_job],
    sensors=[make_raw_edf_drop_sensor(cache_chain_job)],
    resources={"eeg_config": CONFIG_AT_LOAD},
)
