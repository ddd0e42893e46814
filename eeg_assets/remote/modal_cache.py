"""The Modal app of the cache chain: ``modal run eeg_assets/remote/modal_cache.py::<entrypoint>``.

Two local entrypoints, both started by the Dagster ``modal`` backend (and usable by hand):

* ``upload_raw --raw-root DIR --folders train,dev,eval`` runs on this machine and mirrors the local
  raw recordings onto the raw volume, incrementally
  (:func:`eeg_assets.lib.cache.raw_upload.sync_raw`);
* ``run_step`` and ``run_check`` forward the Dagster Pipes variables to ``coordinate``, which runs one step of the
  chain on the volumes (:mod:`eeg_assets.remote.cache_entry`); for ``npz_windows`` it fans the
  recordings out over ``build_batch`` containers with ``Function.map``; a check of the chain
  verifies the files on the volume.

Volumes: the raw recordings at ``/data/edf/{train,dev,eval}`` (``EEG_ASSETS_MODAL_RAW_VOLUME``,
default ``eeg-assets-raw``), the cache at ``/results/cache/tusz/<split>`` on the results volume
that training also mounts (``EEG_ASSETS_MODAL_VOLUME``, default ``eeg-assets-results``). Build
containers: ``EEG_ASSETS_MODAL_BUILD_CPU`` (1), ``EEG_ASSETS_MODAL_BUILD_MEMORY_MB`` (4096),
``EEG_ASSETS_MODAL_BUILD_MAX_CONTAINERS`` (32), ``EEG_ASSETS_MODAL_BUILD_TIMEOUT_S`` (3600 per
batch); all read when the app is imported (:class:`eeg_assets.settings.ModalSettings`).

The image has no torch and no Dagster (the container speaks Pipes through ``dagster-pipes``), and
installs the numpy, scipy and pyedflib versions this machine has, so that an NPZ built on Modal
has the bytes a local build gives. Credentials come only from the environment; the containers
see nothing of it but the forwarded Pipes variables.
"""

import os
import sys
from importlib.metadata import version
from pathlib import Path

import modal

from eeg_assets.remote.volume_layout import CACHE_SUBDIR, RAW_MOUNT, RAW_SUBDIR, RESULTS_MOUNT
from eeg_assets.settings import ModalSettings

PIPES_ENV_PREFIX = "DAGSTER_PIPES_"
#: The packages whose versions shape an NPZ's bytes: the container gets this machine's.
PINNED_TO_HOST = ("numpy", "scipy", "pyedflib")

SETTINGS = ModalSettings.from_env()

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*(f"{name}=={version(name)}" for name in PINNED_TO_HOST),
                 "matplotlib", "threadpoolctl", "dagster-pipes==1.13.27")
    .add_local_python_source("eeg_assets")
)
raw_volume = modal.Volume.from_name(SETTINGS.raw_volume, create_if_missing=True)
results_volume = modal.Volume.from_name(SETTINGS.volume, create_if_missing=True)
app = modal.App("eeg-assets-cache", image=image)


def _line_buffered_stdout() -> None:
    # Pipes messages and progress are lines on stdout, which `modal run` streams to Dagster.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)


@app.function(cpu=SETTINGS.build_cpu, memory=SETTINGS.build_memory_mb,
              timeout=SETTINGS.build_timeout_s, max_containers=SETTINGS.build_max_containers,
              retries=2, volumes={RAW_MOUNT: raw_volume, RESULTS_MOUNT: results_volume})
def build_batch(batch: list[list[str]], split: str, cache_config: dict) -> list[dict]:
    from eeg_assets.lib.cache.remote_build import build_batch as build
    from eeg_assets.lib.config import CacheConfig

    # A warm container may have served an earlier run: see the latest upload and cache.
    raw_volume.reload()
    results_volume.reload()
    return build(batch, Path(RAW_MOUNT) / RAW_SUBDIR, Path(RESULTS_MOUNT) / CACHE_SUBDIR / split,
                 CacheConfig.from_dict(cache_config), commit=results_volume.commit)


def _map_batches(batches, request):
    return build_batch.map(batches, kwargs={"split": request.split,
                                            "cache_config": request.cache.to_dict()},
                           order_outputs=False, return_exceptions=True)


@app.function(cpu=1.0, memory=SETTINGS.build_memory_mb, timeout=SETTINGS.timeout_s,
              volumes={RAW_MOUNT: raw_volume, RESULTS_MOUNT: results_volume})
def coordinate(forwarded_env: dict[str, str]) -> None:
    os.environ.update(forwarded_env)
    _line_buffered_stdout()
    from eeg_assets.remote.cache_entry import Volumes, main

    main(Volumes(Path(RAW_MOUNT), Path(RESULTS_MOUNT), raw_volume, results_volume, _map_batches))


def _forward_pipes() -> None:
    coordinate.remote({k: v for k, v in os.environ.items() if k.startswith(PIPES_ENV_PREFIX)})


@app.local_entrypoint()
def run_step() -> None:
    _forward_pipes()


@app.local_entrypoint()
def run_check() -> None:
    # The same container as a step: the extra ``check`` tells it what to run.
    _forward_pipes()


@app.local_entrypoint()
def upload_raw(raw_root: str, folders: str = "train,dev,eval") -> None:
    from eeg_assets.lib.cache.raw_upload import sync_raw

    _line_buffered_stdout()
    # The first line says the app started (Modal was reached), before any local failure.
    print(f"[upload-raw] {raw_root} -> volume {SETTINGS.raw_volume}:/{RAW_SUBDIR}")
    report = sync_raw(Path(raw_root), [f for f in folders.split(",") if f], raw_volume)
    print(report.summary())
