import warnings

import dagster as dg

from eeg_assets.orchestration.resources import SPLITS

# Partitioned asset checks are a preview feature; the warning would repeat on every load.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec",
                        category=dg.PreviewWarning)

#: Cache splits (seed folder names); per-file work happens inside a split's run, not as
#: thousands of partitions (see DESIGN.md).
split_partitions = dg.StaticPartitionsDefinition(list(SPLITS))
