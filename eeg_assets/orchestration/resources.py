"""The configuration resource: where the data lives and every parameter that shapes the outputs.

Values come from environment variables (documented in README) read when the definitions load, so
that the assets' code versions reflect them: changing e.g. ``EEG_ASSETS_NOTCH_HZ`` shows the
cache as stale in the UI.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dagster as dg

from eeg_assets.lib.config import BalanceConfig, CacheConfig

SPLITS = ("train", "val", "eval")
#: Cache split -> TUSZ folder (the seed names the splits {train,val}; val is built from TUSZ dev).
DEFAULT_SPLIT_FOLDERS = {"train": "train", "val": "dev", "eval": "eval"}
DEFAULT_RAW_ROOT = "data/sample_corpus/edf"
DEFAULT_CACHE_ROOT = "cache/tusz"
DEFAULT_RESULTS_ROOT = "results"


class EegAssetsConfig(dg.ConfigurableResource):
    """Paths, split mapping, preprocessing, balancing and parallelism."""

    raw_root: str
    cache_root: str
    results_root: str
    split_folders: dict[str, str] = DEFAULT_SPLIT_FOLDERS
    workers: int = 0                      # 0: all cores
    notch_hz: float = 60.0                # 50 for European recordings; 0 disables the notch
    target_fs: int = 256
    window_s: int = 60
    stride_s: int = 10
    full_ratio: float = 0.3
    background_ratio: float = 2.5
    balance_seed: int = 42
    #: Generate the deterministic sample corpus when ``raw_root`` is the default and missing.
    make_sample_if_missing: bool = True

    @classmethod
    def from_env(cls, environ=None) -> EegAssetsConfig:
        env = os.environ if environ is None else environ

        def path(name: str, default: str) -> str:
            return str(Path(env.get(name) or default).expanduser().absolute())

        return cls(
            raw_root=path("EEG_ASSETS_RAW_ROOT", DEFAULT_RAW_ROOT),
            cache_root=path("EEG_ASSETS_CACHE_ROOT", DEFAULT_CACHE_ROOT),
            results_root=path("EEG_ASSETS_RESULTS_ROOT", DEFAULT_RESULTS_ROOT),
            workers=int(env.get("EEG_ASSETS_WORKERS") or 0),
            notch_hz=float(env.get("EEG_ASSETS_NOTCH_HZ") or 60.0),
            balance_seed=int(env.get("EEG_ASSETS_BALANCE_SEED") or 42),
            make_sample_if_missing="EEG_ASSETS_RAW_ROOT" not in env,
        )

    def cache_config(self) -> CacheConfig:
        return CacheConfig(notch_hz=self.notch_hz or None, target_fs=self.target_fs,
                           window_s=self.window_s, stride_s=self.stride_s)

    def balance_config(self) -> BalanceConfig:
        return BalanceConfig(full_ratio=self.full_ratio, background_ratio=self.background_ratio,
                             seed=self.balance_seed)

    def raw_dir(self, split: str) -> Path:
        return Path(self.raw_root) / self.split_folders[split]

    def cache_dir(self, split: str) -> Path:
        return Path(self.cache_root) / split


def freshness_window(name: str, default_hours: float) -> timedelta:
    """A freshness window a user sets with ``EEG_ASSETS_<NAME>_FRESHNESS_HOURS``."""
    return timedelta(hours=float(os.environ.get(f"EEG_ASSETS_{name}_FRESHNESS_HOURS")
                                 or default_hours))
