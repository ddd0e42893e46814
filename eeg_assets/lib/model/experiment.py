"""Experiments as files: a model, its training settings and its post-processing, in TOML.

An experiment is ``<experiments folder>/<name>.toml``; its name is the file's stem. Every key is
optional: an unset key takes the default the caller passes (the ``EEG_ASSETS_*`` training
variables, which are the documented defaults of every experiment, else :class:`TrainConfig`'s)::

    [model]
    factory = "eeg_assets.lib.model.network:compact"   # or "mylab.nets:build", a module beside
    params = { base_channels = 16 }                    # this file or on the Python path
    [train]
    epochs = 5                  # > 0
    batch_size = 8              # > 0
    lr = 1e-3                   # > 0
    weight_decay = 1e-2         # >= 0
    optimizer = "adamw"         # adamw | radam
    patience = 12               # early stopping: epochs without a better val loss; unset: none
    device = "auto"             # auto | cpu | cuda | cuda:N
    num_workers = 0             # data-loader worker processes
    windows_per_epoch = 20000   # a fresh random subset each epoch; unset: every window
    [postprocess]
    threshold = 0.8             # in (0, 1): the probability threshold of training's validation
    merge_gap_s = 0.0           # >= 0
    min_event_s = 0.0           # >= 0
    max_fa_per_24h = 30         # the rule that chooses the operating threshold on val

A file that does not parse, a section or key not listed here, or a value of the wrong type or
range is an :class:`ExperimentError` naming the file, the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from eeg_assets.lib.model.factory import ModelSpec
from eeg_assets.lib.model.training import TrainConfig

SUFFIX = ".toml"
OPTIMIZERS = ("adamw", "radam")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
#: An experiment's name is a Dagster partition key: no separators Dagster reserves.
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ExperimentError(ValueError):
    """An experiment file that cannot be used; the message names the file, the key and why."""


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: ``[section] key -> (TrainConfig field, test, what is allowed)``.
_KEYS: dict[str, dict[str, tuple[str, Any, str]]] = {
    "train": {
        "epochs": ("epochs", _positive_int, "an integer above 0"),
        "batch_size": ("batch_size", _positive_int, "an integer above 0"),
        "lr": ("lr", lambda v: _number(v) and v > 0, "a number above 0"),
        "weight_decay": ("weight_decay", lambda v: _number(v) and v >= 0, "a number, 0 or more"),
        "optimizer": ("optimizer", lambda v: isinstance(v, str) and v.lower() in OPTIMIZERS,
                      " or ".join(OPTIMIZERS)),
        "patience": ("patience", _positive_int, "an integer above 0 (leave it out for none)"),
        "device": ("device", lambda v: isinstance(v, str) and bool(_DEVICE.match(v)),
                   "auto, cpu, cuda or cuda:N"),
        "num_workers": ("num_workers", _non_negative_int, "an integer, 0 or more"),
        "windows_per_epoch": ("max_train_windows_per_epoch", _positive_int,
                              "an integer above 0 (leave it out for every window)"),
    },
    "postprocess": {
        "threshold": ("threshold", lambda v: _number(v) and 0 < v < 1,
                      "a number between 0 and 1"),
        "merge_gap_s": ("merge_gap_s", lambda v: _number(v) and v >= 0, "seconds, 0 or more"),
        "min_event_s": ("min_event_s", lambda v: _number(v) and v >= 0, "seconds, 0 or more"),
        "max_fa_per_24h": ("", lambda v: _number(v) and v >= 0,
                           "false alarms per 24 h, 0 or more"),
    },
    "model": {
        "factory": ("", lambda v: isinstance(v, str) and ":" in v,
                    'an import path "package.module:callable"'),
        "params": ("", lambda v: isinstance(v, dict), "a table of keyword arguments"),
    },
}


@dataclass(frozen=True)
class Experiment:
    """One experiment file, resolved against the defaults."""

    name: str
    path: Path
    train: TrainConfig
    #: The operating-threshold rule: the most sensitive threshold on val within this many FA/24h.
    max_fa_per_24h: float
    #: Digest of the file's bytes: what changes when the file is edited.
    file_version: str

    @property
    def folder(self) -> Path:
        """Where a user's factory module may live beside the file (put on the import path)."""
        return self.path.parent

    def version(self) -> str:
        """What the experiment's model depends on: its resolved training settings, model
        factory and parameters included (:meth:`TrainConfig.version`). The threshold rule is
        not in it: changing the rule re-evaluates, it does not retrain."""
        return self.train.version()


def experiment_paths(folder: Path) -> list[Path]:
    """The experiment files of ``folder`` (``*.toml``), by name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == SUFFIX and p.is_file())


def load_experiment(path: Path, defaults: TrainConfig = TrainConfig(),
                    max_fa_per_24h: float = 30.0) -> Experiment:
    """Read and check ``path``; unset keys take ``defaults`` and ``max_fa_per_24h``.

    Raises
    ------
    ExperimentError
        The file does not parse, or names an unknown section or key, or a value is not allowed.
    """
    path = Path(path)
    if not _NAME.match(path.stem):
        raise ExperimentError(f"{path}: the name {path.stem!r} may hold only letters, digits, "
                              "'_', '.' and '-' (it names the experiment's partition)")
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ExperimentError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ExperimentError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ExperimentError(f"{path}: unknown section [{unknown[0]}] (allowed: "
                              f"{', '.join(f'[{s}]' for s in _KEYS)})")
    overrides: dict[str, Any] = {}
    rule = max_fa_per_24h
    for section, allowed in _KEYS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ExperimentError(f"{path}: {section} must be a [{section}] table")
        for key, value in table.items():
            if key not in allowed:
                raise ExperimentError(f"{path}: [{section}] unknown key {key!r} (allowed: "
                                      f"{', '.join(allowed)})")
            field, valid, what = allowed[key]
            if not valid(value):
                raise ExperimentError(f"{path}: [{section}] {key} = {value!r}: use {what}")
            if field:
                overrides[field] = value.lower() if key == "optimizer" else value
            elif key == "max_fa_per_24h":
                rule = float(value)
    model = data.get("model", {})
    spec = defaults.model
    if model:
        spec = ModelSpec(model.get("factory", spec.factory),
                         dict(model.get("params", spec.params if "factory" not in model else {})))
    for name in ("lr", "weight_decay", "threshold", "merge_gap_s", "min_event_s"):
        if name in overrides:
            overrides[name] = float(overrides[name])
    try:
        train = dataclasses.replace(defaults, model=spec, **overrides)
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"{path}: {exc}") from None
    return Experiment(name=path.stem, path=path.absolute(), train=train,
                      max_fa_per_24h=rule, file_version=hashlib.sha256(raw).hexdigest()[:16])


def load_experiments(folder: Path, defaults: TrainConfig = TrainConfig(),
                     max_fa_per_24h: float = 30.0) -> list[Experiment]:
    """Every experiment of ``folder``; the first bad file raises :class:`ExperimentError`."""
    return [load_experiment(p, defaults, max_fa_per_24h) for p in experiment_paths(folder)]
