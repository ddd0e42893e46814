"""Where the work runs: this machine or Modal, decided once, as the ``backend`` resource.

``build_defs`` picks :class:`LocalBackend` or :class:`ModalBackend` from ``EEG_ASSETS_BACKEND``
(as Dagster's ``project_ml`` picks a local or remote model store); no asset asks which one it
got. A backend owns three things:

* **the cache chain**: ``run_step`` runs one step of a split's chain and ``run_check`` one of its
  checks (:func:`eeg_assets.lib.dataset.chain.run` and
  :func:`eeg_assets.lib.dataset.chain_checks.run_check`), returning the same
  :class:`~eeg_assets.lib.dataset.chain.StepOutcome` / ``CheckOutcome`` on both, so the metadata
  and data versions in the UI do not depend on the backend;
* **training and evaluation**: ``launch`` runs a Pipes entry point with a request (a local
  subprocess, or a spawned call of the deployed GPU app);
* **paths**: where the split caches and the results are, as the work sees them
  (``cache_path``, ``results_path``), and the local copy of a pinned file when there is one.

The local backend runs the chain in the Dagster process (the build with its process pool) and
training in a subprocess. The Modal backend uploads what changed in the split's raw folder, then
spawns the functions of the two deployed apps (:mod:`eeg_assets.orchestration.modal_launch`).
Without a token, a network or a deployment the step fails saying so, and nothing is built here
instead.
"""

# No `from __future__ import annotations`: Dagster reads the resource's field types.
import os
import sys
from pathlib import Path

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError

from eeg_assets.lib.cache.raw_upload import sync_raw
from eeg_assets.lib.dataset.chain import NPZ_WINDOWS, ChainRequest, StepError, StepOutcome, run
from eeg_assets.lib.dataset.chain_checks import CheckOutcome, CheckRequest, run_check
from eeg_assets.orchestration.modal_launch import run_on_modal
from eeg_assets.remote.deployment import CACHE_APP, TRAIN_APP, code_version
from eeg_assets.remote.modal_client import ModalUnavailable, load_client
from eeg_assets.remote.volume_layout import RAW_ROOT, RESULTS_MOUNT, cache_subdir
from eeg_assets.settings import Settings

#: What ``launch`` runs: job -> the Pipes entry module (locally) or the app's function (Modal).
JOBS = {"train": "eeg_assets.remote.train_entry", "evaluate": "eeg_assets.remote.evaluate_entry"}


class Backend(dg.ConfigurableResource):
    """Runs the cache chain, training and evaluation, and says where their files are."""

    settings: dg.ResourceDependency[Settings]

    @property
    def name(self) -> str:
        raise NotImplementedError

    def request(self, step: str, split: str, run_tag: str = "") -> ChainRequest:
        settings = self.settings
        return ChainRequest(step=step, split=split, raw_folder=settings.split_folders[split],
                            cache=settings.cache_config(), balance=settings.balance_config(),
                            batch_size=settings.modal.build_batch,
                            flush_every_s=settings.modal.build_flush_s, run_tag=run_tag)

    def run_step(self, context: dg.AssetExecutionContext, step: str,
                 split: str) -> StepOutcome:
        """The outcome of ``step`` on ``split``; :class:`StepError` when it cannot run."""
        raise NotImplementedError

    def run_check(self, context: dg.AssetCheckExecutionContext, request: CheckRequest
                  ) -> CheckOutcome:
        """The outcome of the library check ``request`` names, run where the cache is."""
        raise NotImplementedError

    def launch(self, context: dg.AssetExecutionContext, job: str, request,
               search_path: Path | None = None) -> dg.PipesClientCompletedInvocation:
        """Run ``job`` (``train`` or ``evaluate``) with ``request`` as the Pipes extra;
        ``search_path``: a folder the job imports a user's model factory from (the
        experiments folder)."""
        raise NotImplementedError

    def cache_path(self, split: str) -> Path:
        """The split's cache folder as the work sees it."""
        raise NotImplementedError

    def results_path(self, name: str) -> Path:
        """``<results>/<name>`` as the work sees it (``trained_model``, ``evaluation``)."""
        raise NotImplementedError

    def local_file(self, split: str, name: str) -> Path | None:
        """The file ``name`` of the split's cache on this machine; None when the cache is
        elsewhere (its recorded data version is then what is pinned)."""
        return None

    def raw_dir(self, split: str) -> str:
        raise NotImplementedError

    def cache_dir(self, split: str) -> str:
        return str(self.cache_path(split))


class LocalBackend(Backend):
    """Everything on this machine: the chain in the Dagster process, training in a
    subprocess."""

    @property
    def name(self) -> str:
        return "local"

    def run_step(self, context, step, split):
        settings = self.settings
        # run_tag: the listing raw_edf_recordings recorded when this run materialized the split
        return run(self.request(step, split, run_tag=context.run.run_id),
                   Path(settings.raw_root), Path(settings.cache_root), context.log,
                   workers=settings.workers or None)

    def run_check(self, context, request):
        return run_check(request, Path(self.settings.raw_root), Path(self.settings.cache_root),
                         context.log)

    def launch(self, context, job, request, search_path=None):
        path = os.pathsep.join(filter(None, [str(search_path) if search_path else "",
                                             os.environ.get("PYTHONPATH", "")]))
        try:
            return dg.PipesSubprocessClient(env={"PYTHONPATH": path} if path else None).run(
                command=[sys.executable, "-m", JOBS[job]], context=context,
                extras={"request": request.to_dict()})
        except DagsterPipesExecutionError as exc:
            # The process's own reason (e.g. a model that breaks the contract) is only in an
            # engine event: say it in the failure a person reads first.
            reason = _pipes_exception(context)
            raise dg.Failure(f"{job} {exc}" + (f": {reason}" if reason else "")) from None

    def cache_path(self, split):
        return self.settings.cache_dir(split)

    def results_path(self, name):
        return Path(self.settings.results_root) / name

    def local_file(self, split, name):
        return self.settings.cache_dir(split) / name

    def raw_dir(self, split):
        return str(self.settings.raw_dir(split))


class ModalBackend(Backend):
    """The raw recordings uploaded to a volume, the chain fanned out over CPU containers,
    training and evaluation on a GPU: the deployed apps of :mod:`eeg_assets.remote`."""

    #: Seconds between two looks at a running call (its log lines and whether it finished).
    poll_s: float = 5.0

    @property
    def name(self) -> str:
        return "modal"

    def client(self):
        try:
            return load_client(self.settings.modal_client, self.settings.modal)
        except ModalUnavailable as exc:
            raise dg.Failure(str(exc)) from None

    def _run(self, context, app: str, function: str, extras: dict,
             flags: dict | None = None) -> dg.PipesClientCompletedInvocation:
        return run_on_modal(context, self.client(), app=app, function=function, extras=extras,
                            code_version=code_version(self.settings.modal.to_env()),
                            flags=flags, poll_s=self.poll_s)

    def run_step(self, context, step, split):
        if step == NPZ_WINDOWS:
            self.upload(context, [self.settings.split_folders[split]])
        # run_tag: the checks of this run read the listing the container's build records
        invocation = self._run(context, CACHE_APP, "coordinate",
                               {"request": self.request(step, split, context.run.run_id).to_dict()})
        for message in _custom(invocation):
            if message.get("kind") == "step_error":
                raise StepError(message["message"])
        return StepOutcome.from_dict(_outcome(invocation, "step_outcome"))

    def run_check(self, context, request):
        if request.check == "patient_disjointness":
            # it reads every split's raw folder: the volume's must mirror them all, not only the
            # splits built so far (incremental: only what changed is sent)
            self.upload(context, sorted(set(request.split_folders.values())))
        # Pipes opens its session on an op's context; a check's is one level down.
        invocation = self._run(context.op_execution_context, CACHE_APP, "coordinate",
                               {"check": request.to_dict()})
        return CheckOutcome.from_dict(_outcome(invocation, "check_outcome"))

    def launch(self, context, job, request, search_path=None):
        # A user's factory module must be importable in the image (inside the package): the
        # container sees nothing of the experiments folder. The upstream scripts' flags are
        # read where training runs: the container gets them.
        flags = {name: value for name, value in os.environ.items() if name.startswith("BGB_")}
        return self._run(context, TRAIN_APP, job, {"request": request.to_dict()}, flags=flags)

    def upload(self, context, folders: list[str]) -> None:
        raw_root = Path(self.settings.raw_root)
        try:
            report = sync_raw(raw_root, folders, self.client().raw_volume(),
                              log=context.log.info)
        except ModalUnavailable as exc:
            raise dg.Failure(f"the raw recordings could not be uploaded: {exc}") from None
        except FileNotFoundError as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(report.summary())

    def cache_path(self, split):
        return Path(RESULTS_MOUNT) / cache_subdir(self.settings.cache_layout) / split

    def results_path(self, name):
        return Path(RESULTS_MOUNT) / name

    def raw_dir(self, split):
        return f"{RAW_ROOT}/{self.settings.split_folders[split]}"


def _pipes_exception(context) -> str:
    """The last exception the external process reported when it closed Pipes, one line."""
    for entry in reversed(context.instance.all_logs(context.run.run_id)):
        event = entry.dagster_event
        if (event is not None and event.is_engine_event and "pipes closed with exception"
                in entry.user_message and event.engine_event_data.error is not None):
            error = event.engine_event_data.error
            return f"{error.cls_name}: {error.message.strip()}"
    return ""


def _custom(invocation: dg.PipesClientCompletedInvocation) -> list[dict]:
    return [m for m in invocation.get_custom_messages() if isinstance(m, dict)]


def _outcome(invocation: dg.PipesClientCompletedInvocation, kind: str) -> dict:
    found = [m["outcome"] for m in _custom(invocation) if m.get("kind") == kind]
    if not found:
        raise dg.Failure(f"the Modal call reported no {kind}")
    return found[0]


BACKENDS = {"local": LocalBackend, "modal": ModalBackend}


def backend_for(settings: Settings) -> Backend:
    """The backend ``settings.backend`` names, bound to ``settings``."""
    try:
        return BACKENDS[settings.backend](settings=settings)
    except KeyError:
        raise dg.Failure(f"unknown backend {settings.backend!r} (use "
                         f"{' or '.join(map(repr, BACKENDS))})") from None
