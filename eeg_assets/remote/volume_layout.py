"""Where the Modal backend keeps things: two volumes and the paths of docs/cache-format.md on them.

The raw volume (``EEG_ASSETS_MODAL_RAW_VOLUME``) is mounted at ``/data`` and mirrors the local raw
root under ``edf/`` (``/data/edf/{train,dev,eval}``); the results volume
(``EEG_ASSETS_MODAL_VOLUME``) is mounted at ``/results`` and holds the cache at
``/results/cache/tusz/<split>`` (``/results/cache/tusz_mmap/<split>`` in the continuous layout)
and every result under ``/results/``.
"""

from eeg_assets.lib.cache.raw_upload import VOLUME_PREFIX as RAW_SUBDIR

RAW_MOUNT = "/data"
RESULTS_MOUNT = "/results"
CACHE_SUBDIR = "cache/tusz"
CONTINUOUS_CACHE_SUBDIR = "cache/tusz_mmap"
RAW_ROOT = f"{RAW_MOUNT}/{RAW_SUBDIR}"
CACHE_ROOT = f"{RESULTS_MOUNT}/{CACHE_SUBDIR}"


def cache_subdir(layout: str) -> str:
    """The cache's folder on the results volume: one per layout, as locally."""
    return CONTINUOUS_CACHE_SUBDIR if layout == "continuous" else CACHE_SUBDIR
