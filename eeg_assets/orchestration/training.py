"""trained_model: training launched through Dagster Pipes, locally or on Modal GPUs.

The launcher also runs ``model_evaluation`` (``orchestration/evaluation.py``): the same backend,
another job.
"""

import json
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg

from dagster._core.definitions.data_version import DATA_VERSION_TAG

from eeg_assets.lib.dataset.balanced import BALANCED_NAME
from eeg_assets.lib.dataset.index import INDEX_NAME
from eeg_assets.lib.dataset.pinned import PinnedFile
from eeg_assets.lib.files import content_version
from eeg_assets.lib.model.train_run import PinnedInputs, TrainingRequest
from eeg_assets.lib.plots import curves_png
from eeg_assets.orchestration.assets import balance_code_version, png_markdown
from eeg_assets.orchestration.modal_launch import run_with_pipes
from eeg_assets.settings import Settings

MODAL_APP = Path(__file__).resolve().parents[1] / "remote" / "modal_app.py"
MODAL_CACHE_ROOT = "/results/cache/tusz"
MODAL_RESULTS = "/results/trained_model"
#: What the launcher runs: job -> the Pipes entry module (``modal run ... --job <job>`` on Modal).
JOBS = {"train": "eeg_assets.remote.train_entry", "evaluate": "eeg_assets.remote.evaluate_entry"}


class TrainingLauncher(dg.ConfigurableResource):
    """Where ``trained_model`` and ``model_evaluation`` run: ``local`` (a subprocess here) or
    ``modal`` (a GPU on Modal)."""

    backend: str = "local"
    modal_executable: str = "modal"

    @classmethod
    def from_settings(cls, settings: Settings) -> "TrainingLauncher":
        return cls(backend=settings.training_backend, modal_executable=settings.modal_executable)

    def launch(self, context: dg.AssetExecutionContext, request,
               job: str = "train") -> dg.PipesClientCompletedInvocation:
        """Run ``job``'s entry point with ``request`` (a ``TrainingRequest`` or an
        ``EvaluationRequest``) as the Pipes extra ``request``."""
        if job not in JOBS:
            raise dg.Failure(f"unknown launcher job {job!r} (use {' or '.join(JOBS)})")
        extras = {"request": request.to_dict()}
        if self.backend == "local":
            return dg.PipesSubprocessClient().run(
                command=[sys.executable, "-m", JOBS[job]], context=context, extras=extras)
        if self.backend == "modal":
            return self._launch_modal(context, extras, job)
        raise dg.Failure(f"unknown training backend {self.backend!r} (use 'local' or 'modal')")

    def _launch_modal(self, context, extras, job: str) -> dg.PipesClientCompletedInvocation:
        command = [self.modal_executable, "run", str(MODAL_APP)]
        if job != "train":  # the entrypoint's default job; the training command stays as it was
            command += ["--job", job]
        return run_with_pipes(context, command, extras)


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


def _request(context: dg.AssetExecutionContext, settings: Settings,
             backend: str) -> TrainingRequest:
    """The training run's request: caches, configuration and the pinned upstream files."""
    local_train, local_val = settings.cache_dir("train"), settings.cache_dir("val")
    if backend == "modal":
        train_cache, val_cache = Path(MODAL_CACHE_ROOT) / "train", Path(MODAL_CACHE_ROOT) / "val"
        out_dir = Path(MODAL_RESULTS)
    else:
        train_cache, val_cache = local_train, local_val
        out_dir = Path(settings.results_root) / "trained_model"
    # A cache chain on Modal wrote these files on the volume: only their recorded versions count.
    here = settings.backend != "modal"
    inputs = PinnedInputs(
        balanced_set=PinnedFile(train_cache / BALANCED_NAME, _consumed_version(
            context, "balanced_dataset", "train", local_train / BALANCED_NAME if here else None)),
        val_index=PinnedFile(val_cache / INDEX_NAME, _consumed_version(
            context, "dataset_index", "val", local_val / INDEX_NAME if here else None)))
    return TrainingRequest(train_cache=train_cache, val_cache=val_cache, out_dir=out_dir,
                           train=settings.train, balance=settings.balance_config(),
                           cache=settings.cache_config(), inputs=inputs)


def build_trained_model(settings: Settings) -> dg.AssetsDefinition:
    """``trained_model``: its code version and freshness computed from ``settings``."""

    @dg.asset(
        deps=[dg.AssetDep("balanced_dataset",
                          partition_mapping=dg.SpecificPartitionsPartitionMapping(["train"])),
              dg.AssetDep("dataset_index",
                          partition_mapping=dg.SpecificPartitionsPartitionMapping(["val"]))],
        code_version=f"{balance_code_version(settings)}:{settings.train.version()}",
        group_name="model",
        kinds={"pytorch"},
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=settings.model_fail_hours)),
        check_specs=[
            dg.AssetCheckSpec("checkpoint_reproduces_metrics", asset="trained_model",
                              description="The best checkpoint reloads and reproduces the "
                                          "reported validation AUROC."),
            dg.AssetCheckSpec("metrics_finite", asset="trained_model",
                              description="Losses and AUROC are finite in every epoch."),
        ],
        description="Seizure detector trained on exactly the materialized "
                    "`balanced_dataset[train]` and validated per recording on the "
                    "`dataset_index[val]` it names (both pinned by content version); best/last "
                    "checkpoints, metrics and `.csv_bi` hypotheses under the results root. Runs "
                    "through the training launcher (local or Modal).",
    )
    def trained_model(context: dg.AssetExecutionContext, settings: dg.ResourceParam[Settings],
                      training_launcher: TrainingLauncher):
        request = _request(context, settings, training_launcher.backend)
        context.log.info(
            f"training on {request.inputs.balanced_set.path} (version "
            f"{request.inputs.balanced_set.version}), validating on {request.inputs.val_index.path} "
            f"(version {request.inputs.val_index.version}), backend {training_launcher.backend}")
        context.log.debug(f"training request: {json.dumps(request.to_dict())}")
        invocation = training_launcher.launch(context, request)
        history = _history_from(invocation)
        for result in invocation.get_results():
            if isinstance(result, dg.MaterializeResult) and history:
                curves = curves_png(history, ("train_loss", "val_loss", "val_auroc"),
                                    "trained_model")
                result = dg.MaterializeResult(
                    asset_key=result.asset_key, data_version=result.data_version,
                    metadata={**(result.metadata or {}),
                              "curves": png_markdown(curves, "loss and AUROC per epoch")})
            yield result

    return trained_model


def _history_from(invocation: dg.PipesClientCompletedInvocation) -> list[dict]:
    return [m["metrics"] for m in invocation.get_custom_messages()
            if isinstance(m, dict) and m.get("kind") == "epoch"]
