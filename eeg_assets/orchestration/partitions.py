import dagster as dg

from eeg_assets.orchestration.resources import SPLITS

#: Cache splits (seed folder names); per-file work happens inside a split's run, not as
#: thousands of partitions (see DESIGN.md).
split_partitions = dg.StaticPartitionsDefinition(list(SPLITS))
