"""One step or check of the cache chain in a Modal container, reporting through Dagster Pipes.

The ``modal`` backend spawns ``coordinate`` of the deployed cache app
(:mod:`eeg_assets.remote.modal_cache`) with a :class:`~eeg_assets.lib.dataset.chain.ChainRequest`
as the Pipes extra ``request``. :func:`main` runs that step on the volumes with the same library
function as the local backend (:func:`eeg_assets.lib.dataset.chain.run`) and reports its outcome
as one custom Pipes message, ``{"kind": "step_outcome", "outcome": ...}``, or ``{"kind":
"step_error", "message": ...}`` when the step cannot run. With the extra ``check`` instead (a
:class:`~eeg_assets.lib.dataset.chain_checks.CheckRequest`) it runs that check on the volume's
files and reports ``{"kind": "check_outcome", "outcome": ...}``. The messages reach Dagster as
the function's return value (:mod:`eeg_assets.remote.pipes_channel`).

What the volumes do not promise is not relied on: the step reloads explicitly wherever it must see
other containers' commits (``commit()`` may skip its reload), raw files are fingerprinted by the
upload record rather than the volume's mtimes, and a lease on the split
(:mod:`eeg_assets.lib.cache.lease`, in a ``modal.Dict``) keeps two runs of one split apart.

``npz_windows`` fans out: the recordings to build go in batches to the ``build_batch`` function
(``Function.map``), and this container records their outcomes in the split's ledger, kept on its
own disk and published to the volume (:mod:`eeg_assets.lib.cache.remote_build`).
"""

from __future__ import annotations

import gc
import tempfile
import uuid
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_pipes import PipesContext

from eeg_assets.lib.cache.build import guard_ledger
from eeg_assets.lib.cache.discovery import source_fingerprints
from eeg_assets.lib.cache.ledger import LEDGER_NAME, Ledger, LedgerError
from eeg_assets.lib.cache.lease import LeaseHeld, split_lease
from eeg_assets.lib.cache.raw_upload import upload_stamps
from eeg_assets.lib.cache.remote_build import Batch, FanOut, fetch_ledger, publish_ledger
from eeg_assets.lib.dataset.chain import NPZ_WINDOWS, ChainRequest, StepError, StepOutcome, run
from eeg_assets.lib.dataset.chain_checks import CheckOutcome, CheckRequest, run_check
from eeg_assets.remote.volume_layout import RAW_SUBDIR, cache_subdir


@dataclass
class Volumes:
    """The two mounted volumes as this container sees them, the fan-out and the leases."""

    raw_mount: Path
    results_mount: Path
    raw_volume: Any       # modal.Volume: reload()
    results_volume: Any   # modal.Volume: reload(), commit()
    #: ``map_batches(batches, request)``: ``build_batch`` over the batches, in other containers.
    map_batches: Callable[[list[Batch], ChainRequest], Iterable[list[dict] | BaseException]]
    leases: Any           # modal.Dict
    #: Names the results volume in lease keys (two volumes' caches are different caches).
    volume_name: str = "results"
    lease_ttl_s: float = 6 * 3600
    lease_wait_s: float = 600

    @property
    def raw_root(self) -> Path:
        return self.raw_mount / RAW_SUBDIR

    def cache_root(self, layout: str) -> Path:
        return self.results_mount / cache_subdir(layout)

    def sync(self) -> None:
        """Publish this container's writes and see everyone else's: ``commit()`` then an explicit
        ``reload()`` (Modal's commit reloads only when the server does not skip it)."""
        self.results_volume.commit()
        gc.collect()  # a memmap kept alive by a cycle (an exception's frames) blocks reload()
        self.results_volume.reload()

    def latest(self) -> None:
        """See the latest committed state of both volumes (the upload that ran just before)."""
        self.raw_volume.reload()
        self.results_volume.reload()


def _inputs_of(volumes: Volumes, stack: ExitStack) -> None:
    """Raw files fingerprinted as the machine they were uploaded from saw them."""
    stack.enter_context(source_fingerprints(upload_stamps(volumes.raw_mount)))


def run_remote(request: ChainRequest, volumes: Volumes, log) -> StepOutcome:
    """Run one step on the volumes, from their latest committed state; commit what it wrote."""
    key = f"{volumes.volume_name}/{cache_subdir(request.cache.layout)}/{request.split}"
    with ExitStack() as stack:
        try:
            stack.enter_context(split_lease(volumes.leases, key,
                                            request.run_tag or f"manual-{uuid.uuid4().hex[:8]}",
                                            ttl_s=volumes.lease_ttl_s,
                                            wait_s=volumes.lease_wait_s, log=log.info))
        except LeaseHeld as exc:
            raise StepError(str(exc)) from None
        volumes.latest()
        _inputs_of(volumes, stack)
        if request.step != NPZ_WINDOWS:
            outcome = run(request, volumes.raw_root, volumes.cache_root(request.cache.layout), log)
            volumes.sync()
            return outcome
        cache_dir = volumes.cache_root(request.cache.layout) / request.split
        cache_dir.mkdir(parents=True, exist_ok=True)
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ledger.")))
        try:
            guard_ledger(cache_dir, cache_dir)
        except LedgerError as exc:
            raise StepError(str(exc)) from None
        fetch_ledger(cache_dir, state_dir)
        if not (cache_dir / LEDGER_NAME).exists():
            # A first build publishes its (empty) ledger before any NPZ exists, so NPZs without
            # a ledger always mean a lost ledger, never a first build killed early.
            with Ledger(state_dir):
                pass
            publish_ledger(state_dir, cache_dir)
            volumes.sync()
        fan_out = FanOut(
            lambda batches: volumes.map_batches(batches, request),
            volumes.raw_root, cache_dir, sync=volumes.sync,
            publish=lambda: publish_ledger(state_dir, cache_dir), batch_size=request.batch_size,
            flush_every_s=request.flush_every_s, log=log.info)
        outcome = run(request, volumes.raw_root, volumes.cache_root(request.cache.layout), log,
                      runner=fan_out, state_dir=state_dir)
        publish_ledger(state_dir, cache_dir)  # also when nothing was built: removals
        volumes.sync()
        return outcome


def check_remote(request: CheckRequest, volumes: Volumes, log) -> CheckOutcome:
    """Run one check on the volumes' latest committed state; commit what it recorded (the
    contents ``npz_schema`` verified)."""
    volumes.latest()
    with ExitStack() as stack:
        _inputs_of(volumes, stack)
        outcome = run_check(request, volumes.raw_root, volumes.cache_root(request.cache.layout),
                            log)
    volumes.sync()
    return outcome


def main(pipes: PipesContext, volumes: Volumes) -> None:
    if "check" in pipes.extras:
        outcome = check_remote(CheckRequest.from_dict(pipes.get_extra("check")), volumes,
                               pipes.log)
        pipes.report_custom_message({"kind": "check_outcome", "outcome": outcome.to_dict()})
        return
    request = ChainRequest.from_dict(pipes.get_extra("request"))
    try:
        outcome = run_remote(request, volumes, pipes.log)
    except StepError as exc:  # the data says no: the asset fails with this message
        pipes.report_custom_message({"kind": "step_error", "message": str(exc)})
        return
    pipes.report_custom_message({"kind": "step_outcome", "outcome": outcome.to_dict()})
