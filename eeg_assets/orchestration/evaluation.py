"""model_evaluation: each experiment's trained model scored on val and eval, on the ``backend``
resource; partitions ``<experiment>|<split>``.

``model_evaluation[<experiment>|val]`` chooses the operating threshold by the experiment's rule
(:class:`~eeg_assets.lib.model.operating_point.ThresholdRule`, ``[postprocess]
max_fa_per_24h``) and records it; ``model_evaluation[<experiment>|eval]`` reads that choice from
val's latest materialization and applies it unchanged, refusing to run when val was not
evaluated, was evaluated for another model, or under another rule. Nothing is chosen on eval.
"""


import dagster as dg
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from eeg_assets.lib.dataset.index import INDEX_NAME
from eeg_assets.lib.dataset.pinned import PinnedFile
from eeg_assets.lib.model.evaluate_run import EvaluationRequest
from eeg_assets.lib.model.experiment import Experiment
from eeg_assets.lib.model.operating_point import SWEEP_THRESHOLDS, ThresholdRule
from eeg_assets.lib.model.training import BEST_CHECKPOINT
from eeg_assets.lib.plots import operating_curve_png
from eeg_assets.orchestration.assets import _version, cache_code_version, png_markdown
from eeg_assets.orchestration.partitions import experiment_split_partitions
from eeg_assets.orchestration.backend import Backend
from eeg_assets.orchestration.training import TRAINED_MODEL_DIR, _consumed_version
from eeg_assets.remote.evaluate_entry import CHECKS
from eeg_assets.settings import Settings

ASSET = "model_evaluation"
EVALUATION_DIR = "evaluation"
#: Bump when what an evaluation writes, reports or how it scores changes (2: sensitivity, PPV,
#: precision and F1 reported in percent, keys ending in _pct).
EVALUATION_FORMAT = 2

_CHECK_DESCRIPTIONS = {
    "one_hypothesis_per_reference": "hyp.list pairs every scored recording (built or shorter "
                                    "than a window) with its own hypothesis, by position.",
    "durations_match_references": "Every hypothesis's # duration equals its reference's, to 4 "
                                  "decimals (NEDC refuses a pair otherwise).",
    "tsv_files_reproduce_scores": "Scoring the SzCORE `*_events.tsv` folders (ref_tsv/, "
                                  "hyp_tsv/) gives the reported totals and per-subject figures.",
    "files_reproduce_scores": "Scoring ref.list/hyp.list as `score` does gives the reported "
                              "totals.",
    "scores_finite": "AUROC and every scorer's sensitivity and FA/24h are finite.",
}


def _latest(context: dg.AssetExecutionContext, asset: str,
            partition: str | None = None) -> dg.AssetMaterialization | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset),
                              asset_partitions=[partition] if partition else None),
        limit=1).records
    return records[0].asset_materialization if records else None


def _keys(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """``(experiment, split)`` of the run's partition."""
    key = context.partition_key
    keys = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else \
        dict(zip(("experiment", "split"), key.split("|")))
    return keys["experiment"], keys["split"]


def _model_version(context: dg.AssetExecutionContext, experiment: str) -> str:
    materialization = _latest(context, "trained_model", experiment)
    version = (materialization.tags or {}).get(DATA_VERSION_TAG) if materialization else None
    if version is None:
        raise dg.Failure(f"trained_model[{experiment}] has not been materialized: there is no "
                         f"model to evaluate. Materialize trained_model[{experiment}] first.")
    return version


def _val_threshold(context: dg.AssetExecutionContext, experiment: Experiment,
                   model_version: str) -> float:
    """The threshold model_evaluation[<experiment>|val] chose for this model under its rule."""
    val_key = f"{experiment.name}|val"
    val = _latest(context, ASSET, dg.MultiPartitionKey({"experiment": experiment.name,
                                                        "split": "val"}))
    if val is None:
        raise dg.Failure(f"{ASSET}[{experiment.name}|eval] applies the threshold chosen on val, "
                         f"and {ASSET}[{val_key}] has not been materialized: materialize it "
                         "first (nothing is tuned on eval)")
    metadata = {key: value.value for key, value in val.metadata.items()}
    if metadata.get("model_version") != model_version:
        raise dg.Failure(f"{ASSET}[{val_key}] chose its threshold for trained_model version "
                         f"{metadata.get('model_version')}, but trained_model[{experiment.name}] "
                         f"is now {model_version}: materialize {ASSET}[{val_key}] again first")
    if metadata.get("max_fa_per_24h") != experiment.max_fa_per_24h:
        raise dg.Failure(f"{ASSET}[{val_key}] chose its threshold for at most "
                         f"{metadata.get('max_fa_per_24h')} FA/24h, the experiment's rule now "
                         f"says {experiment.max_fa_per_24h} ([postprocess] max_fa_per_24h): "
                         f"materialize {ASSET}[{val_key}] again first")
    return float(metadata["threshold"])


def _request(context: dg.AssetExecutionContext, settings: Settings, backend: Backend,
             experiment: Experiment, split: str) -> EvaluationRequest:
    model_version = _model_version(context, experiment.name)
    # Without a local copy (Modal) the recorded data version is pinned, and checked there.
    index_version = _consumed_version(context, "dataset_index", split,
                                      backend.local_file(split, INDEX_NAME))
    threshold = None if split == "val" else _val_threshold(context, experiment, model_version)
    cache_dir = backend.cache_path(split)
    checkpoint = backend.results_path(TRAINED_MODEL_DIR) / experiment.name / BEST_CHECKPOINT
    out_dir = backend.results_path(EVALUATION_DIR) / experiment.name / split
    train = experiment.train
    return EvaluationRequest(
        split=split, cache_dir=cache_dir, index=PinnedFile(cache_dir / INDEX_NAME, index_version),
        checkpoint=checkpoint, model_version=model_version, out_dir=out_dir, threshold=threshold,
        rule=ThresholdRule(max_fa_per_24h=experiment.max_fa_per_24h),
        cache=settings.cache_config(), device=train.device, num_workers=train.num_workers,
        cpu_threads=train.cpu_threads)


def evaluation_code_version(settings: Settings, experiments: list[Experiment]) -> str:
    """What shapes every evaluation, with each experiment's threshold rule (its model's
    settings reach ``model_evaluation`` through the model's data version)."""
    rules = sorted((e.name, e.max_fa_per_24h) for e in experiments)
    return _version("evaluation", EVALUATION_FORMAT, cache_code_version(settings),
                    SWEEP_THRESHOLDS, rules)


def build_model_evaluation(settings: Settings,
                           experiments: list[Experiment]) -> dg.AssetsDefinition:
    """``model_evaluation``, partitioned by experiment and split (``val``, ``eval``)."""
    by_name = {experiment.name: experiment for experiment in experiments}
    partitions = experiment_split_partitions(list(by_name))

    @dg.asset(
        name=ASSET,
        partitions_def=partitions,
        deps=[dg.AssetDep("trained_model", partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                  partition_dimension_name="experiment")),
              # The split's index (pinned by its recorded version at run time). No partition
              # mapping says "split dimension -> the same split of a three-split asset" in this
              # Dagster: MultiToSingleDimension needs the very same partitions, and a static
              # mapping a static downstream; so the whole index is the declared input.
              dg.AssetDep("dataset_index", partition_mapping=dg.AllPartitionMapping())],
        code_version=evaluation_code_version(settings, experiments),
        group_name="model",
        kinds={"pytorch"},
        check_specs=[dg.AssetCheckSpec(name, asset=ASSET, description=_CHECK_DESCRIPTIONS[name],
                                       partitions_def=partitions)
                     for name in CHECKS],
        description="An experiment's trained model scored on a split by NEDC OVERLAP and TAES "
                    "and SzCORE: `<results>/evaluation/<experiment>/<split>/{hyp/,ref/,"
                    "ref.list,hyp.list,scores.json}`, one hypothesis per recording (too-short "
                    "ones without events, quarantined ones listed as excluded), `nedc_eeg_eval "
                    "ref.list hyp.list` runs on the lists as they are. val chooses the operating "
                    "threshold by the experiment's rule ([postprocess] max_fa_per_24h); eval "
                    "applies it unchanged. Runs on the backend (a local subprocess, or a Modal "
                    "GPU).",
    )
    def model_evaluation(context: dg.AssetExecutionContext, settings: dg.ResourceParam[Settings],
                         backend: Backend):
        name, split = _keys(context)
        experiment = by_name[name]
        request = _request(context, settings, backend, experiment, split)
        context.log.info(
            f"evaluating {request.checkpoint} (trained_model[{name}] {request.model_version}) "
            f"on {request.index.path} (version {request.index.version}), threshold "
            f"{'chosen here' if request.threshold is None else request.threshold}, backend "
            f"{backend.name}")
        invocation = backend.launch(context, "evaluate", request, search_path=experiment.folder)
        for result in invocation.get_results():
            if isinstance(result, dg.MaterializeResult):
                metadata = dict(result.metadata or {})
                curve = operating_curve_png(metadata["sweep"].value, metadata["threshold"].value,
                                            f"{ASSET}[{name}|{split}]",
                                            max_fa_per_24h=experiment.max_fa_per_24h)
                metadata["operating_curve"] = png_markdown(
                    curve, "sensitivity against false alarms per 24 h over thresholds")
                result = dg.MaterializeResult(asset_key=result.asset_key, metadata=metadata,
                                              data_version=result.data_version)
            yield result

    return model_evaluation
