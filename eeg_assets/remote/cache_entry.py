"""One step of the cache chain in a Modal container, reporting through Dagster Pipes.

The Dagster assets with the ``modal`` backend launch ``modal run eeg_assets/remote/modal_cache.py
::run_step`` with a :class:`~eeg_assets.lib.dataset.chain.ChainRequest` as the Pipes extra
``request``. :func:`main` runs that step on the volumes with the same library function as the
local backend (:func:`eeg_assets.lib.dataset.chain.run`) and sends its outcome back as one custom
Pipes message, ``{"kind": "step_outcome", "outcome": ...}``, or ``{"kind": "step_error",
"message": ...}`` when the step cannot run; logs travel as Pipes logs. With the extra ``check``
instead (a :class:`~eeg_assets.lib.dataset.chain_checks.CheckRequest`, from ``::run_check``) it
runs that check of the chain on the volume's files and sends ``{"kind": "check_outcome",
"outcome": ...}``.

``npz_windows`` fans out: the recordings to build go in batches to the ``build_batch`` function
(``Function.map``), and this container records their outcomes in the split's ledger, kept on its
own disk and published to the volume (:mod:`eeg_assets.lib.cache.remote_build`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_pipes import open_dagster_pipes

from eeg_assets.lib.cache.remote_build import Batch, FanOut, fetch_ledger, publish_ledger
from eeg_assets.lib.dataset.chain import NPZ_WINDOWS, ChainRequest, StepError, StepOutcome, run
from eeg_assets.lib.dataset.chain_checks import CheckOutcome, CheckRequest, run_check
from eeg_assets.remote.volume_layout import CACHE_SUBDIR, RAW_SUBDIR


@dataclass
class Volumes:
    """The two mounted volumes as this container sees them, and the fan-out."""

    raw_mount: Path
    results_mount: Path
    raw_volume: Any       # modal.Volume: reload()
    results_volume: Any   # modal.Volume: reload(), commit()
    #: ``map_batches(batches, request)``: ``build_batch`` over the batches, in other containers.
    map_batches: Callable[[list[Batch], ChainRequest], Iterable[list[dict] | BaseException]]

    @property
    def raw_root(self) -> Path:
        return self.raw_mount / RAW_SUBDIR

    @property
    def cache_root(self) -> Path:
        return self.results_mount / CACHE_SUBDIR


def run_remote(request: ChainRequest, volumes: Volumes, log) -> StepOutcome:
    """Run one step on the volumes, from their latest committed state; commit what it wrote."""
    volumes.results_volume.reload()
    if request.step != NPZ_WINDOWS:
        outcome = run(request, volumes.raw_root, volumes.cache_root, log)
        volumes.results_volume.commit()
        return outcome
    volumes.raw_volume.reload()  # the upload that ran just before
    cache_dir = volumes.cache_root / request.split
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ledger.") as state:
        state_dir = Path(state)
        fetch_ledger(cache_dir, state_dir)
        fan_out = FanOut(
            lambda batches: volumes.map_batches(batches, request),
            volumes.raw_root, cache_dir, sync=volumes.results_volume.commit,
            publish=lambda: publish_ledger(state_dir, cache_dir), batch_size=request.batch_size,
            flush_every_s=request.flush_every_s, log=log.info)
        outcome = run(request, volumes.raw_root, volumes.cache_root, log, runner=fan_out,
                      state_dir=state_dir)
        publish_ledger(state_dir, cache_dir)  # also when nothing was built: removals
    volumes.results_volume.commit()
    return outcome


def check_remote(request: CheckRequest, volumes: Volumes, log) -> CheckOutcome:
    """Run one check on the volumes' latest committed state; commit what it recorded (the
    contents ``npz_schema`` verified)."""
    volumes.raw_volume.reload()
    volumes.results_volume.reload()
    outcome = run_check(request, volumes.raw_root, volumes.cache_root, log)
    volumes.results_volume.commit()
    return outcome


def main(volumes: Volumes) -> None:
    with open_dagster_pipes() as pipes:
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
