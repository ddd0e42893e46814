import warnings

import dagster as dg

from eeg_assets.settings import SPLITS

# Partitioned asset checks and Pipes writer counts are preview features of this Dagster
# release; their warnings would repeat on every load and run.
for _preview in ("Specifying a partitions_def on an AssetCheckSpec",
                 "Function `PipesMessageReader.expected_writer_count`"):
    warnings.filterwarnings("ignore", message=_preview, category=dg.PreviewWarning)
# model_evaluation maps experiment x split onto trained_model and dataset_index with it.
warnings.filterwarnings("ignore", message="Class `MultiToSingleDimensionPartitionMapping`",
                        category=dg.BetaWarning)

#: Cache splits (the folder names of docs/cache-format.md); per-file work happens inside a
#: split's run, not as thousands of partitions (see docs/design.md, "Splits and partitions").
split_partitions = dg.StaticPartitionsDefinition(list(SPLITS))

#: The splits a model is evaluated on: val chooses the operating threshold, eval applies it.
EVALUATION_SPLITS = ("val", "eval")
evaluation_partitions = dg.StaticPartitionsDefinition(list(EVALUATION_SPLITS))


def experiment_partitions(names: list[str]) -> dg.StaticPartitionsDefinition:
    """One partition per experiment file (its stem), as found when the definitions load."""
    return dg.StaticPartitionsDefinition(list(names))


def experiment_split_partitions(names: list[str]) -> dg.MultiPartitionsDefinition:
    """``model_evaluation``: experiment x split; keys read ``<experiment>|<split>``."""
    return dg.MultiPartitionsDefinition({"experiment": experiment_partitions(names),
                                         "split": evaluation_partitions})
