"""``experiments`` (observed: one partition per experiment file) and ``trained_model``
(partitioned by experiment), trained through Dagster Pipes by the ``backend`` resource, locally
or on a Modal GPU (``orchestration/backend.py``); ``model_evaluation`` is the same backend's
other job (``orchestration/evaluation.py``).

An experiment's data version is its resolved settings (file, defaults, model factory and
parameters): editing one file and observing ``experiments`` ("Observe" in the UI, or ``dagster
asset materialize --select experiments``) marks only that experiment's model stale.
"""

import json
import warnings
from datetime import timedelta
from pathlib import Path

import dagster as dg

from dagster._core.definitions.data_version import DATA_VERSION_TAG

from eeg_assets.lib.dataset.balanced import BALANCED_NAME
from eeg_assets.lib.dataset.index import INDEX_NAME
from eeg_assets.lib.dataset.pinned import PinnedFile
from eeg_assets.lib.files import content_version
from eeg_assets.lib.model.experiment import Experiment
from eeg_assets.lib.model.train_run import PinnedInputs, TrainingRequest
from eeg_assets.lib.model.training import TRAINING_FORMAT
from eeg_assets.lib.plots import curves_png
from eeg_assets.orchestration.assets import balance_code_version, png_markdown
from eeg_assets.orchestration.backend import Backend
from eeg_assets.orchestration.partitions import experiment_partitions
from eeg_assets.settings import Settings

TRAINED_MODEL_DIR = "trained_model"
EXPERIMENTS_ASSET = "experiments"

# observable_source_asset and DataVersionsByPartition are marked beta; their warnings would
# repeat at every load and run.
warnings.filterwarnings("ignore", message=".*(observable_source_asset|DataVersionsByPartition)",
                        category=dg.BetaWarning)

def _consumed_version(context: dg.AssetExecutionContext, asset: str, partition: str,
                      path: Path | None) -> str:
    """The content version of what ``asset[partition]`` wrote at ``path``.

    It must agree with the data version Dagster recorded for that materialization: a file changed
    behind Dagster's back is refused here, before any GPU is started. ``path`` is ``None`` when
    the file is on a Modal volume: the recorded version (the content version the remote step
    computed) is then pinned, and the container checks the volume's file against it.
    """
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=1).records
    tags = (records[0].asset_materialization.tags or {}) if records else {}
    recorded = tags.get(DATA_VERSION_TAG)
    on_disk = content_version(path) if path is not None and path.is_file() else None
    if on_disk is None and recorded is None:
        where = f"{path} does not exist" if path is not None else "nothing was recorded"
        raise dg.Failure(f"{asset}[{partition}] has not been materialized: {where}. "
                         f"Materialize the cache chain of '{partition}' first.")
    if on_disk is not None and recorded is not None and on_disk != recorded:
        raise dg.Failure(f"{path} changed after {asset}[{partition}] was materialized (recorded "
                         f"data version {recorded}, the file is now {on_disk}): materialize "
                         f"{asset}[{partition}] again")
    return on_disk or recorded


def build_experiments_asset(experiments: list[Experiment]) -> dg.SourceAsset:
    """``experiments``: each experiment file observed, its data version its resolved settings."""
    by_name = {experiment.name: experiment for experiment in experiments}

    @dg.observable_source_asset(
        name=EXPERIMENTS_ASSET,
        partitions_def=experiment_partitions(list(by_name)),
        group_name="model",
        description="One experiment file per partition (model factory and parameters, training "
                    "and post-processing settings, TOML); its data version changes when the "
                    "file or the defaults it inherits change.",
    )
    def experiments_asset() -> dg.DataVersionsByPartition:
        return dg.DataVersionsByPartition(
            {name: experiment.version() for name, experiment in by_name.items()})

    return experiments_asset


def _request(context: dg.AssetExecutionContext, settings: Settings, backend: Backend,
             experiment: Experiment) -> TrainingRequest:
    """The training run's request: caches, configuration and the pinned upstream files."""
    train_cache, val_cache = backend.cache_path("train"), backend.cache_path("val")
    inputs = PinnedInputs(
        balanced_set=PinnedFile(train_cache / BALANCED_NAME, _consumed_version(
            context, "balanced_dataset", "train", backend.local_file("train", BALANCED_NAME))),
        val_index=PinnedFile(val_cache / INDEX_NAME, _consumed_version(
            context, "dataset_index", "val", backend.local_file("val", INDEX_NAME))))
    return TrainingRequest(train_cache=train_cache, val_cache=val_cache,
                           out_dir=backend.results_path(TRAINED_MODEL_DIR) / experiment.name,
                           train=experiment.train, balance=settings.balance_config(),
                           cache=settings.cache_config(), inputs=inputs,
                           # a user's factory module beside the file; a Modal container has
                           # only the package
                           model_search_path=None if backend.name == "modal"
                           else experiment.folder)


def build_trained_model(settings: Settings,
                        experiments: list[Experiment]) -> dg.AssetsDefinition:
    """``trained_model``, one partition per experiment; code version and freshness from
    ``settings`` (an experiment's own settings reach it as ``experiments``' data version)."""
    by_name = {experiment.name: experiment for experiment in experiments}
    partitions = experiment_partitions(list(by_name))

    @dg.asset(
        partitions_def=partitions,
        deps=[dg.AssetDep(EXPERIMENTS_ASSET),
              dg.AssetDep("balanced_dataset",
                          partition_mapping=dg.SpecificPartitionsPartitionMapping(["train"])),
              dg.AssetDep("dataset_index",
                          partition_mapping=dg.SpecificPartitionsPartitionMapping(["val"]))],
        code_version=f"{balance_code_version(settings)}:{TRAINING_FORMAT}",
        group_name="model",
        kinds={"pytorch"},
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=settings.model_fail_hours)),
        check_specs=[
            dg.AssetCheckSpec("checkpoint_reproduces_metrics", asset="trained_model",
                              partitions_def=partitions,
                              description="The best checkpoint reloads and reproduces the "
                                          "reported validation AUROC."),
            dg.AssetCheckSpec("metrics_finite", asset="trained_model", partitions_def=partitions,
                              description="Losses and AUROC are finite in every epoch."),
        ],
        description="The experiment's model (factory, parameters and training settings from "
                    "its file) trained on exactly the materialized `balanced_dataset[train]` "
                    "and validated per recording on the `dataset_index[val]` it names (both "
                    "pinned by content version); best/last checkpoints, metrics and `.csv_bi` "
                    "hypotheses under `<results>/trained_model/<experiment>/`. Runs on the "
                    "backend (a local subprocess, or a Modal GPU).",
    )
    def trained_model(context: dg.AssetExecutionContext, settings: dg.ResourceParam[Settings],
                      backend: Backend):
        experiment = by_name[context.partition_key]
        request = _request(context, settings, backend, experiment)
        context.log.info(
            f"experiment {experiment.name} ({experiment.path}): model "
            f"{experiment.train.model.factory} {json.dumps(experiment.train.model.params)}, "
            f"{experiment.train.epochs} epochs; training on {request.inputs.balanced_set.path} "
            f"(version {request.inputs.balanced_set.version}), validating on "
            f"{request.inputs.val_index.path} (version {request.inputs.val_index.version}), "
            f"backend {backend.name}")
        context.log.debug(f"training request: {json.dumps(request.to_dict())}")
        invocation = backend.launch(context, "train", request, search_path=experiment.folder)
        for result in invocation.get_results():
            history = _history_of(result)
            if history:
                curves = curves_png(history, ("train_loss", "val_loss", "val_auroc"),
                                    f"trained_model[{experiment.name}]")
                result = dg.MaterializeResult(
                    asset_key=result.asset_key, data_version=result.data_version,
                    metadata={**(result.metadata or {}),
                              "experiment_version": dg.MetadataValue.text(experiment.version()),
                              "curves": png_markdown(curves, "loss and AUROC per epoch")})
            yield result

    return trained_model


def _history_of(result) -> list[dict]:
    """Every epoch once, as the run's checkpoint holds them (a resumed run included)."""
    if not isinstance(result, dg.MaterializeResult):
        return []
    history = (result.metadata or {}).get("history")
    return list(history.value) if history is not None else []
