"""trained_model: training launched through Dagster Pipes, locally or on Modal GPUs."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from eeg_assets.lib.model.train_run import TrainingRequest
from eeg_assets.lib.model.training import TrainConfig
from eeg_assets.lib.plots import curves_png
from eeg_assets.orchestration.assets import (
    BALANCE_CODE_VERSION,
    balanced_dataset,
    dataset_index,
    png_markdown,
)
from eeg_assets.orchestration.resources import EegAssetsConfig, freshness_window

MODAL_APP = Path(__file__).resolve().parents[1] / "remote" / "modal_app.py"
MODAL_CACHE_ROOT = "/results/cache/tusz"
MODAL_RESULTS = "/results/trained_model"


def train_config_from_env(environ=None) -> TrainConfig:
    """Training settings a user changes without code (README lists them)."""
    env = os.environ if environ is None else environ
    defaults = TrainConfig()
    return TrainConfig(
        epochs=int(env.get("EEG_ASSETS_EPOCHS") or defaults.epochs),
        batch_size=int(env.get("EEG_ASSETS_BATCH_SIZE") or defaults.batch_size),
        lr=float(env.get("EEG_ASSETS_LR") or defaults.lr),
        num_workers=int(env.get("EEG_ASSETS_TRAIN_WORKERS") or defaults.num_workers),
        device=env.get("EEG_ASSETS_DEVICE") or defaults.device,
        cpu_threads=int(env["EEG_ASSETS_CPU_THREADS"]) if env.get("EEG_ASSETS_CPU_THREADS") else None,
        max_train_windows_per_epoch=int(env["EEG_ASSETS_MAX_TRAIN_WINDOWS"])
        if env.get("EEG_ASSETS_MAX_TRAIN_WINDOWS") else None,
    )


TRAIN_CONFIG_AT_LOAD = train_config_from_env()


class _StdoutMessageReader(dg.PipesMessageReader):
    """Pipes messages arrive as JSON lines on the launched command's stdout.

    ``modal run`` streams the remote container's stdout to the local process, so this is the one
    channel that reaches back from a Modal GPU without cloud storage.
    """

    handler = None

    @contextmanager
    def read_messages(self, handler):
        self.handler = handler
        yield {"stdio": "stdout"}

    def consume(self, line: str) -> bool:
        """Hand a Pipes message to Dagster; False when the line is ordinary output."""
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict) or "__dagster_pipes_version" not in message:
            return False
        self.handler.handle_message(message)
        return True

    def no_messages_debug_text(self) -> str:
        return "Expected Dagster Pipes messages as JSON lines on the stdout of `modal run`."


class TrainingLauncher(dg.ConfigurableResource):
    """Where ``trained_model`` runs: ``local`` (a subprocess here) or ``modal`` (a GPU on Modal)."""

    backend: str = "local"
    modal_executable: str = "modal"

    @classmethod
    def from_env(cls) -> "TrainingLauncher":
        return cls(backend=os.environ.get("EEG_ASSETS_TRAIN_BACKEND") or "local",
                   modal_executable=os.environ.get("EEG_ASSETS_MODAL_EXECUTABLE") or "modal")

    def launch(self, context: dg.AssetExecutionContext,
               request: TrainingRequest) -> dg.PipesClientCompletedInvocation:
        extras = {"request": request.to_dict()}
        if self.backend == "local":
            return dg.PipesSubprocessClient().run(
                command=[sys.executable, "-m", "eeg_assets.remote.train_entry"],
                context=context, extras=extras)
        if self.backend == "modal":
            return self._launch_modal(context, extras)
        raise dg.Failure(f"unknown training backend {self.backend!r} (use 'local' or 'modal')")

    def _launch_modal(self, context, extras) -> dg.PipesClientCompletedInvocation:
        reader = _StdoutMessageReader()
        command = [self.modal_executable, "run", str(MODAL_APP)]
        context.log.info(f"launching {' '.join(command)}")
        with dg.open_pipes_session(context=context, extras=extras, message_reader=reader,
                                   context_injector=dg.PipesEnvContextInjector()) as session:
            try:
                process = subprocess.Popen(
                    command, env={**os.environ, **session.get_bootstrap_env_vars()},
                    stdout=subprocess.PIPE, text=True, bufsize=1)
            except FileNotFoundError:
                raise dg.Failure(f"{self.modal_executable!r} not found: pip install "
                                 "'eeg_assets[modal]' and run `modal token new`") from None
            try:
                for line in process.stdout:
                    if not reader.consume(line.strip()):
                        sys.stdout.write(line)
                process.wait()
            finally:
                _stop(process)
                process.stdout.close()
            if process.returncode != 0:
                raise dg.Failure(f"`{' '.join(command)}` exited with code {process.returncode}")
        return dg.PipesClientCompletedInvocation(session)


def _stop(process: subprocess.Popen, timeout_s: float = 60) -> None:
    """Interrupt a still-running ``modal run`` (the step failed or the run was terminated).

    SIGINT is Ctrl-C: ``modal run`` then stops the app, so no GPU keeps training for nobody.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _request(eeg_config: EegAssetsConfig, backend: str) -> TrainingRequest:
    if backend == "modal":
        return TrainingRequest(
            train_cache=Path(MODAL_CACHE_ROOT) / "train", val_cache=Path(MODAL_CACHE_ROOT) / "val",
            out_dir=Path(MODAL_RESULTS), train=TRAIN_CONFIG_AT_LOAD,
            balance=eeg_config.balance_config(), cache=eeg_config.cache_config())
    return TrainingRequest(
        train_cache=eeg_config.cache_dir("train"), val_cache=eeg_config.cache_dir("val"),
        out_dir=Path(eeg_config.results_root) / "trained_model", train=TRAIN_CONFIG_AT_LOAD,
        balance=eeg_config.balance_config(), cache=eeg_config.cache_config())


@dg.asset(
    deps=[dg.AssetDep(balanced_dataset, partition_mapping=dg.SpecificPartitionsPartitionMapping(["train"])),
          dg.AssetDep(dataset_index, partition_mapping=dg.SpecificPartitionsPartitionMapping(["val"]))],
    code_version=f"{BALANCE_CODE_VERSION}:{TRAIN_CONFIG_AT_LOAD.version()}",
    group_name="model",
    kinds={"pytorch"},
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=freshness_window("MODEL", 24 * 30)),
    check_specs=[
        dg.AssetCheckSpec("checkpoint_reproduces_metrics", asset="trained_model",
                          description="The best checkpoint reloads and reproduces the reported "
                                      "validation AUROC."),
        dg.AssetCheckSpec("metrics_finite", asset="trained_model",
                          description="Losses and AUROC are finite in every epoch."),
    ],
    description="Seizure detector trained on balanced_dataset[train], validated per recording on "
                "the val cache; best/last checkpoints, metrics and .csv_bi hypotheses under "
                "the results root. Runs through the training launcher (local or Modal).",
)
def trained_model(context: dg.AssetExecutionContext, eeg_config: EegAssetsConfig,
                  training_launcher: TrainingLauncher):
    request = _request(eeg_config, training_launcher.backend)
    context.log.info(f"training request: {json.dumps(request.to_dict())}")
    invocation = training_launcher.launch(context, request)
    history = _history_from(invocation)
    for result in invocation.get_results():
        if isinstance(result, dg.MaterializeResult) and history:
            curves = curves_png(history, ("train_loss", "val_loss", "val_auroc"), "trained_model")
            result = dg.MaterializeResult(
                asset_key=result.asset_key, data_version=result.data_version,
                metadata={**(result.metadata or {}),
                          "curves": png_markdown(curves, "loss and AUROC per epoch")})
        yield result


def _history_from(invocation: dg.PipesClientCompletedInvocation) -> list[dict]:
    return [m["metrics"] for m in invocation.get_custom_messages()
            if isinstance(m, dict) and m.get("kind") == "epoch"]
