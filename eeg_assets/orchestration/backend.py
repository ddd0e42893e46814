"""Where the cache chain runs: this machine (``local``) or Modal (``modal``), from ``Settings``.

Both backends run the same library steps (:func:`eeg_assets.lib.dataset.chain.run`) and return
the same :class:`~eeg_assets.lib.dataset.chain.StepOutcome`, which the assets turn into
materializations, so the metadata and data versions in the UI do not depend on the backend:

* :class:`LocalCacheBackend` runs a step in the Dagster process (the build with its process pool).
* :class:`ModalCacheBackend` runs it in a Modal container on the volumes, through ``modal run
  eeg_assets/remote/modal_cache.py::run_step`` and Dagster Pipes; before ``npz_windows`` it
  uploads what changed in the split's raw folder. Without the ``modal`` CLI, a token or a network
  the step fails saying so, and nothing is built here instead.

The backend follows ``EEG_ASSETS_BACKEND`` (:attr:`Settings.backend`); it is built from the
``settings`` resource rather than being a resource of its own, so that every definition built
from one ``Settings`` agrees with it. The chain's checks run where its steps ran, the same way:
``run_check`` returns a :class:`~eeg_assets.lib.dataset.chain_checks.CheckOutcome` of the
library check, computed in this process or, on Modal, on the volume (``modal_cache.py::run_check``).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from eeg_assets.lib.dataset.chain import NPZ_WINDOWS, ChainRequest, StepError, StepOutcome, run
from eeg_assets.lib.dataset.chain_checks import CheckOutcome, CheckRequest, run_check
from eeg_assets.orchestration.modal_launch import run_with_pipes
from eeg_assets.orchestration.raw import ensure_sample_corpus
from eeg_assets.remote.modal_cli import CACHE_APP, ModalError, app_command, upload_raw
from eeg_assets.remote.volume_layout import CACHE_ROOT, RAW_ROOT
from eeg_assets.settings import Settings


class CacheBackend:
    """Runs the steps of one split's cache chain and says where their files are."""

    name = ""

    def __init__(self, settings: Settings):
        self.settings = settings

    def request(self, step: str, split: str, run_tag: str = "") -> ChainRequest:
        modal = self.settings.modal
        return ChainRequest(step=step, split=split, raw_folder=self.settings.split_folders[split],
                            cache=self.settings.cache_config(),
                            balance=self.settings.balance_config(),
                            batch_size=modal.build_batch, flush_every_s=modal.build_flush_s,
                            run_tag=run_tag)

    def run_step(self, context: dg.AssetExecutionContext, step: str,
                 split: str) -> StepOutcome:
        """The outcome of ``step`` on ``split``; :class:`StepError` when it cannot run."""
        raise NotImplementedError

    def run_check(self, context: dg.AssetCheckExecutionContext, request: CheckRequest
                  ) -> CheckOutcome:
        """The outcome of the library check ``request`` names, run where the cache is."""
        raise NotImplementedError

    def cache_dir(self, split: str) -> str:
        """The split's cache folder where the step wrote it (for metadata)."""
        raise NotImplementedError

    def raw_dir(self, split: str) -> str:
        raise NotImplementedError


class LocalCacheBackend(CacheBackend):
    name = "local"

    def run_step(self, context, step, split):
        settings = self.settings
        if step == NPZ_WINDOWS:
            ensure_sample_corpus(settings, context.log)
        # run_tag: the listing raw_edf_recordings recorded when this run observed the split
        return run(self.request(step, split, run_tag=context.run.run_id),
                   Path(settings.raw_root), Path(settings.cache_root), context.log,
                   workers=settings.workers or None)

    def run_check(self, context, request):
        return run_check(request, Path(self.settings.raw_root), Path(self.settings.cache_root),
                         context.log)

    def cache_dir(self, split):
        return str(self.settings.cache_dir(split))

    def raw_dir(self, split):
        return str(self.settings.raw_dir(split))


class ModalCacheBackend(CacheBackend):
    name = "modal"

    def run_step(self, context, step, split):
        settings = self.settings
        if step == NPZ_WINDOWS:
            ensure_sample_corpus(settings, context.log)
            self.upload(context, [settings.split_folders[split]])
        command = app_command(settings.modal_executable, CACHE_APP, "run_step")
        invocation = run_with_pipes(context, command,
                                    # run_tag: the checks of this run read the listing the
                                    # container's build records on the volume
                                    {"request": self.request(step, split,
                                                             context.run.run_id).to_dict()},
                                    env=settings.modal.to_env())
        return _outcome_of(invocation, command)

    def run_check(self, context, request):
        if request.check == "patient_disjointness":
            # it reads every split's raw folder: the volume's must mirror them all, not only the
            # splits built so far (incremental: only what changed is sent)
            self.upload(context, sorted(set(request.split_folders.values())))
        command = app_command(self.settings.modal_executable, CACHE_APP, "run_check")
        # Pipes opens its session on an op's context; a check's is one level down.
        invocation = run_with_pipes(context.op_execution_context, command,
                                    {"check": request.to_dict()},
                                    env=self.settings.modal.to_env())
        (outcome,) = _messages(invocation, "check_outcome", command)
        return CheckOutcome.from_dict(outcome)

    def upload(self, context, folders: list[str]) -> None:
        try:
            upload_raw(self.settings.modal_executable, Path(self.settings.raw_root), folders,
                       log=context.log.info, env=self.settings.modal.to_env())
        except ModalError as exc:
            raise dg.Failure(f"the raw recordings could not be uploaded: {exc}") from None

    def cache_dir(self, split):
        return f"{CACHE_ROOT}/{split}"

    def raw_dir(self, split):
        return f"{RAW_ROOT}/{self.settings.split_folders[split]}"


def _messages(invocation: dg.PipesClientCompletedInvocation, kind: str, command: list[str]
              ) -> list:
    """The payloads of the custom Pipes messages of ``kind``; at least one, or a failure."""
    found = [message["outcome"] for message in invocation.get_custom_messages()
             if isinstance(message, dict) and message.get("kind") == kind]
    if not found:
        raise dg.Failure(f"`{' '.join(command)}` reported no outcome")
    return found


def _outcome_of(invocation: dg.PipesClientCompletedInvocation, command: list[str]
                ) -> StepOutcome:
    for message in invocation.get_custom_messages():
        if isinstance(message, dict) and message.get("kind") == "step_error":
            raise StepError(message["message"])
    return StepOutcome.from_dict(_messages(invocation, "step_outcome", command)[0])


BACKENDS = {backend.name: backend for backend in (LocalCacheBackend, ModalCacheBackend)}


def cache_backend(settings: Settings) -> CacheBackend:
    """The backend ``settings.backend`` names."""
    try:
        return BACKENDS[settings.backend](settings)
    except KeyError:
        raise dg.Failure(f"unknown backend {settings.backend!r} (use "
                         f"{' or '.join(map(repr, BACKENDS))})") from None
