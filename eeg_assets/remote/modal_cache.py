"""The Modal app of the cache chain, deployed once: ``modal deploy eeg_assets/remote/modal_cache.py``.

The Dagster ``modal`` backend spawns its functions by name (``modal.Function.from_name``):

* ``coordinate`` runs one step or one check of the chain on the volumes
  (:mod:`eeg_assets.remote.cache_entry`); for ``npz_windows`` it fans the recordings out over
  ``build_batch`` containers with ``Function.map``;
* ``ping`` answers ``python -m eeg_assets modal-check``: the deployed code version and what the
  container sees of the volumes.

The raw recordings are uploaded from the Dagster process, not from a container
(:func:`eeg_assets.lib.cache.raw_upload.sync_raw` on ``modal.Volume.batch_upload``).

Volumes (version 2, built for many containers writing distinct files; a v1 volume takes at most
five concurrent writers, and the fan-out runs up to ``EEG_ASSETS_MODAL_BUILD_MAX_CONTAINERS``): the
raw recordings at ``/data/edf/{train,dev,eval}`` (``EEG_ASSETS_MODAL_RAW_VOLUME``, default
``eeg-assets-raw``), the cache at ``/results/cache/tusz/<split>`` on the results volume that
training also mounts (``EEG_ASSETS_MODAL_VOLUME``, default ``eeg-assets-results``). Build
containers: ``EEG_ASSETS_MODAL_BUILD_CPU`` (1), ``EEG_ASSETS_MODAL_BUILD_MEMORY_MB`` (4096),
``EEG_ASSETS_MODAL_BUILD_MAX_CONTAINERS`` (32), ``EEG_ASSETS_MODAL_BUILD_TIMEOUT_S`` (3600 per
batch); all read when the app is deployed (:class:`eeg_assets.settings.ModalSettings`) and baked
into the image, so the containers and the code version agree with the deployment.

Preemption: every function may be restarted on the same input. ``build_batch`` writes each NPZ
under a temporary name and renames it; ``coordinate`` re-runs its step from the ledger it
published last and takes its own lease back, so a restart costs time, never a wrong cache.

The image has no torch and no Dagster (the container speaks Pipes through ``dagster-pipes``), and
installs this machine's Python, numpy, scipy and pyedflib versions, so that an NPZ built on Modal
has the bytes a local build gives.
"""

import sys
from importlib.metadata import version
from pathlib import Path

import modal

from eeg_assets.remote.deployment import CACHE_APP, LEASES_DICT, PIPES_QUEUE, code_version
from eeg_assets.remote.volume_layout import RAW_MOUNT, RAW_SUBDIR, RESULTS_MOUNT, cache_subdir
from eeg_assets.settings import ModalSettings

#: The packages whose versions shape an NPZ's bytes: the container gets this machine's.
PINNED_TO_HOST = ("numpy", "scipy", "pyedflib", "threadpoolctl", "dagster-pipes")
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

SETTINGS = ModalSettings.from_env()
CODE_VERSION = code_version(SETTINGS.to_env())

image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .pip_install(*(f"{name}=={version(name)}" for name in PINNED_TO_HOST), "matplotlib")
    .env(SETTINGS.to_env())
    .add_local_python_source("eeg_assets")
)
raw_volume = modal.Volume.from_name(SETTINGS.raw_volume, create_if_missing=True, version=2)
results_volume = modal.Volume.from_name(SETTINGS.volume, create_if_missing=True, version=2)
pipes_queue = modal.Queue.from_name(PIPES_QUEUE, create_if_missing=True)
leases = modal.Dict.from_name(LEASES_DICT, create_if_missing=True)
app = modal.App(CACHE_APP, image=image)
VOLUMES = {RAW_MOUNT: raw_volume, RESULTS_MOUNT: results_volume}


@app.function(cpu=SETTINGS.build_cpu, memory=SETTINGS.build_memory_mb,
              timeout=SETTINGS.build_timeout_s, max_containers=SETTINGS.build_max_containers,
              retries=2, volumes=VOLUMES)
def build_batch(batch: list[list[str]], split: str, cache_config: dict) -> list[dict]:
    from eeg_assets.lib.cache.remote_build import build_batch as build
    from eeg_assets.lib.config import CacheConfig

    # A warm container may have served an earlier run: see the latest upload and cache.
    raw_volume.reload()
    results_volume.reload()
    config = CacheConfig.from_dict(cache_config)
    return build(batch, Path(RAW_MOUNT) / RAW_SUBDIR,
                 Path(RESULTS_MOUNT) / cache_subdir(config.layout) / split, config,
                 commit=results_volume.commit)


def _map_batches(batches, request):
    return build_batch.map(batches, kwargs={"split": request.split,
                                            "cache_config": request.cache.to_dict()},
                           order_outputs=False, return_exceptions=True)


@app.function(cpu=1.0, memory=SETTINGS.build_memory_mb, timeout=SETTINGS.timeout_s,
              volumes=VOLUMES)
def coordinate(call: dict) -> dict:
    from eeg_assets.remote.cache_entry import Volumes, main
    from eeg_assets.remote.pipes_channel import serve

    volumes = Volumes(Path(RAW_MOUNT), Path(RESULTS_MOUNT), raw_volume, results_volume,
                      _map_batches, leases, volume_name=SETTINGS.volume,
                      lease_ttl_s=SETTINGS.timeout_s, lease_wait_s=SETTINGS.lease_wait_s)
    return serve(call, lambda pipes: main(pipes, volumes), queue=pipes_queue,
                 code_version=CODE_VERSION, app=CACHE_APP)


@app.function(cpu=0.25, timeout=120, volumes=VOLUMES)
def ping(call: dict) -> dict:
    """The deployed code version and the top of each volume, as this container sees them."""
    return {"code_version": CODE_VERSION, "python": sys.version.split()[0],
            "volumes": {mount: sorted(p.name for p in Path(mount).iterdir())[:20]
                        for mount in (RAW_MOUNT, RESULTS_MOUNT)}}
