"""Every setting a user changes without code, read from the environment in one place.

:meth:`Settings.from_env` is called once, when ``eeg_assets.definitions`` builds the Dagster
``Definitions``; the resources, code versions and freshness policies are all computed from that
one object (:func:`eeg_assets.orchestration.build_defs`). The only other readers of the
environment are the upstream training scripts' ``BGB_*`` flags (:mod:`eeg_assets.lib.flags`,
read where a training run executes; docs/cache-format.md, "Environment flags") and the Modal apps,
whose decorators need static values: they read :class:`ModalSettings` from here too. The README's
configuration table lists every variable.

This module imports no torch (``TrainConfig`` is imported when it is needed): the Modal app of the
cache chain imports it in a container whose image has no torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from eeg_assets.lib.config import CACHE_LAYOUTS, BalanceConfig, CacheConfig
from eeg_assets.lib.model.operating_point import DEFAULT_MAX_FA_PER_24H, ThresholdRule

if TYPE_CHECKING:
    from eeg_assets.lib.model.training import TrainConfig

SPLITS = ("train", "val", "eval")
#: Cache split -> TUSZ folder (the upstream cache format names the splits {train,val}; val is built
#: from TUSZ dev; eval is ours).
DEFAULT_SPLIT_FOLDERS = {"train": "train", "val": "dev", "eval": "eval"}
DEFAULT_RAW_ROOT = "data/sample_corpus/edf"
DEFAULT_CACHE_ROOT = "cache/tusz"
#: The cache root of the continuous layout when ``EEG_ASSETS_CACHE_ROOT`` is unset (the folder the
#: upstream scripts' memory-mapped layout uses), so the two layouts never share a folder.
DEFAULT_CONTINUOUS_CACHE_ROOT = "cache/tusz_mmap"
DEFAULT_RESULTS_ROOT = "results"
#: The repository's experiments folder (``sample.toml``, ``seizure_transformer.toml``).
DEFAULT_EXPERIMENTS_DIR = Path(__file__).resolve().parents[1] / "experiments"
#: Where the cache chain, training and evaluation run: this machine, or Modal (volumes, CPU
#: fan-out, GPU).
BACKENDS = ("local", "modal")
#: What reaches Modal's servers from the Dagster process (``module:attribute``); tests name a
#: stand-in here.
DEFAULT_MODAL_CLIENT = "eeg_assets.remote.modal_client:ModalClient"


class SettingsError(ValueError):
    """An environment variable holds a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class ModalSettings:
    """What the Modal app declares statically (GPU type, volume, limits of the container)."""

    gpu: str = "A100"
    volume: str = "eeg-assets-results"
    timeout_s: int = 6 * 3600
    #: Data loading stalled at Modal's default 0.125 CPU.
    cpu: float = 8.0
    memory_mb: int = 32768
    #: The volume holding the raw recordings (``edf/{train,dev,eval}``), mounted at ``/data``.
    raw_volume: str = "eeg-assets-raw"
    #: One cache build container: a recording is built on one core; memory for the longest
    #: recordings (peak RSS was 524 MB for 2 EEG-hours at 512 Hz).
    build_cpu: float = 1.0
    build_memory_mb: int = 4096
    #: Above the volume's aggregate write rate more containers only wait (README estimate).
    build_max_containers: int = 32
    #: Recordings per ``Function.map`` input: amortises the per-call overhead (~10 min of EEG
    #: is about 0.2 CPU-s of work).
    build_batch: int = 8
    build_timeout_s: int = 3600
    #: Seconds between two records of the fan-out's outcomes in the ledger on the volume: at
    #: most what a killed build loses (its NPZs are rebuilt by the next run).
    build_flush_s: float = 60.0
    #: How long a step waits for another run's lease on its split before failing.
    lease_wait_s: float = 600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModalSettings:
        """Each field from ``EEG_ASSETS_MODAL_<FIELD>`` (``gpu``: ``EEG_ASSETS_MODAL_GPU``)."""
        env = _Env(environ)
        values = {}
        for name, default in dataclasses.asdict(cls()).items():
            variable = f"EEG_ASSETS_MODAL_{name.upper()}"
            values[name] = (env.text(variable, default) if isinstance(default, str)
                            else env.number(variable, default, type(default)))
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The variables :meth:`from_env` reads back as these settings (baked into the images)."""
        defaults = dataclasses.asdict(type(self)())
        # Each value as its field's type: 0 and 0.0 are one setting, and one code version.
        return {f"EEG_ASSETS_MODAL_{name.upper()}": str(type(defaults[name])(value))
                for name, value in dataclasses.asdict(self).items()}


def _default_train_config() -> TrainConfig:
    from eeg_assets.lib.model.training import TrainConfig

    return TrainConfig()


@dataclass(frozen=True)
class Settings:
    """Paths, split mapping, cache and balancing parameters, training, launcher and freshness."""

    raw_root: Path = Path(DEFAULT_RAW_ROOT)
    cache_root: Path = Path(DEFAULT_CACHE_ROOT)
    #: ``windows`` (NPZs of whole windows) or ``continuous`` (``eeg_assets.lib.cache.layout``).
    cache_layout: str = "windows"
    results_root: Path = Path(DEFAULT_RESULTS_ROOT)
    #: One TOML file per experiment (:mod:`eeg_assets.lib.model.experiment`); importable, so a
    #: user's model factory can live beside its file.
    experiments_dir: Path = DEFAULT_EXPERIMENTS_DIR
    split_folders: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLIT_FOLDERS))
    #: Build worker processes; 0: all cores.
    workers: int = 0
    #: Power-line notch: 50 for European recordings; 0 disables it.
    notch_hz: float = 60.0
    balance_seed: int = 42
    train: TrainConfig = field(default_factory=_default_train_config)
    #: ``local`` or ``modal``: where the cache chain is built, the model trained and evaluated.
    backend: str = "local"
    modal_client: str = DEFAULT_MODAL_CLIENT
    modal: ModalSettings = ModalSettings()
    manifest_warn_hours: float = 24.0
    manifest_fail_hours: float = 24.0 * 7
    model_fail_hours: float = 24.0 * 30
    #: The operating threshold's rule: the most sensitive on val within this many FA/24h.
    eval_max_fa_per_24h: float = DEFAULT_MAX_FA_PER_24H

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment gives (defaults where a variable is unset or empty)."""
        env = _Env(environ)
        defaults = cls()
        train = defaults.train
        backend = env.choice("EEG_ASSETS_BACKEND", defaults.backend, BACKENDS)
        layout = env.choice("EEG_ASSETS_CACHE_LAYOUT", defaults.cache_layout, CACHE_LAYOUTS)
        if env.is_set("EEG_ASSETS_TRAIN_BACKEND"):
            raise SettingsError("EEG_ASSETS_TRAIN_BACKEND is no longer read: EEG_ASSETS_BACKEND "
                                "chooses where the cache chain, training and evaluation all run "
                                "(the model reads the cache where the chain wrote it)")
        max_fa = env.number("EEG_ASSETS_EVAL_MAX_FA_PER_24H", defaults.eval_max_fa_per_24h, float)
        if not max_fa >= 0:
            raise SettingsError(f"EEG_ASSETS_EVAL_MAX_FA_PER_24H={max_fa!r}: use a number of "
                                "false alarms per 24 h, 0 or more")
        return cls(
            raw_root=env.path("EEG_ASSETS_RAW_ROOT", DEFAULT_RAW_ROOT),
            cache_root=env.path("EEG_ASSETS_CACHE_ROOT", DEFAULT_CONTINUOUS_CACHE_ROOT
                                if layout == "continuous" else DEFAULT_CACHE_ROOT),
            cache_layout=layout,
            results_root=env.path("EEG_ASSETS_RESULTS_ROOT", DEFAULT_RESULTS_ROOT),
            experiments_dir=env.path("EEG_ASSETS_EXPERIMENTS_DIR", str(DEFAULT_EXPERIMENTS_DIR)),
            workers=env.number("EEG_ASSETS_WORKERS", defaults.workers, int),
            notch_hz=env.number("EEG_ASSETS_NOTCH_HZ", defaults.notch_hz, float),
            balance_seed=env.number("EEG_ASSETS_BALANCE_SEED", defaults.balance_seed, int),
            train=dataclasses.replace(
                train,
                epochs=env.number("EEG_ASSETS_EPOCHS", train.epochs, int),
                batch_size=env.number("EEG_ASSETS_BATCH_SIZE", train.batch_size, int),
                lr=env.number("EEG_ASSETS_LR", train.lr, float),
                num_workers=env.number("EEG_ASSETS_TRAIN_WORKERS", train.num_workers, int),
                device=env.text("EEG_ASSETS_DEVICE", train.device),
                cpu_threads=env.number("EEG_ASSETS_CPU_THREADS", train.cpu_threads, int),
                max_train_windows_per_epoch=env.number(
                    "EEG_ASSETS_MAX_TRAIN_WINDOWS", train.max_train_windows_per_epoch, int),
            ),
            backend=backend,
            modal_client=env.text("EEG_ASSETS_MODAL_CLIENT", defaults.modal_client),
            modal=ModalSettings.from_env(environ),
            manifest_warn_hours=env.number("EEG_ASSETS_MANIFEST_WARN_FRESHNESS_HOURS",
                                           defaults.manifest_warn_hours, float),
            manifest_fail_hours=env.number("EEG_ASSETS_MANIFEST_FRESHNESS_HOURS",
                                           defaults.manifest_fail_hours, float),
            model_fail_hours=env.number("EEG_ASSETS_MODEL_FRESHNESS_HOURS",
                                        defaults.model_fail_hours, float),
            eval_max_fa_per_24h=max_fa,
        )

    def cache_config(self) -> CacheConfig:
        return CacheConfig(notch_hz=self.notch_hz or None, layout=self.cache_layout)

    def balance_config(self) -> BalanceConfig:
        return BalanceConfig(seed=self.balance_seed)

    def threshold_rule(self) -> ThresholdRule:
        return ThresholdRule(max_fa_per_24h=self.eval_max_fa_per_24h)

    def raw_dir(self, split: str) -> Path:
        return Path(self.raw_root) / self.split_folders[split]

    def cache_dir(self, split: str) -> Path:
        return Path(self.cache_root) / split


class _Env:
    """Typed reads of environment variables; an unusable value is a :class:`SettingsError`."""

    def __init__(self, environ: Mapping[str, str] | None):
        self._env = os.environ if environ is None else environ

    def is_set(self, name: str) -> bool:
        return bool(self._env.get(name, "").strip())

    def text(self, name: str, default: str) -> str:
        return self._env.get(name, "").strip() or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value and value not in allowed:
            raise SettingsError(f"{name}={value!r}: use one of {', '.join(allowed)}")
        return value

    def path(self, name: str, default: str) -> Path:
        return Path(self.text(name, default)).expanduser().absolute()

    def number(self, name: str, default, kind: type):
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not {'an integer' if kind is int else 'a number'}"
                                ) from None
