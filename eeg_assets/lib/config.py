"""Versioned configuration of everything that shapes the cache.

Every parameter that changes an NPZ byte (rates, filters, channel order, label set, windowing,
category thresholds) lives in :class:`CacheConfig`. Its :meth:`~CacheConfig.version` is a hash of
all of them, recorded with every output; a different version makes the whole cache stale, which is
exactly the upstream training scripts' list of "when to rebuild the manifest" (docs/cache-format.md,
"When the cache and the manifest must be rebuilt").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

#: The pinned channel order of the cache (docs/tusz.md, "Channels"). Index ``i`` of axis 1 of
#: ``windows``.
CANONICAL_CHANNELS: tuple[str, ...] = (
    "FP1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "FZ",
    "CZ", "PZ", "FP2", "F4", "C4", "P4", "F8", "T4", "T6", "O2",
)

SEIZURE_LABELS: frozenset[str] = frozenset(
    {"seiz", "gnsz", "fnsz", "cpsz", "absz", "spsz", "tcsz", "tnsz", "mysz"}
)
#: Non-seizure labels that TUSZ annotation files use. Anything outside both sets is an error,
#: so a new seizure type can never be silently read as background.
BACKGROUND_LABELS: frozenset[str] = frozenset({"bckg"})

#: The cache's file layouts (``eeg_assets.lib.cache.layout``), the default first.
CACHE_LAYOUTS = ("windows", "continuous")

#: Schema version of the files this package writes; part of :meth:`CacheConfig.version`.
CACHE_FORMAT = 2  # 2: resampling as a matrix product (float32 rounding differs)


@dataclass(frozen=True)
class CacheConfig:
    """Preprocessing, labelling and windowing parameters (defaults: docs/tusz.md, "Preprocessing"
    and "Windows and labels")."""

    target_fs: int = 256
    bandpass_hz: tuple[float, float] = (0.5, 120.0)
    bandpass_order: int = 3
    notch_hz: float | None = 60.0
    notch_q: float = 30.0
    zscore_eps: float = 1e-8
    clip_sigma: float = 10.0
    channels: tuple[str, ...] = CANONICAL_CHANNELS
    channel_synonyms: tuple[tuple[str, str], ...] = (
        ("T7", "T3"), ("T8", "T4"), ("P7", "T5"), ("P8", "T6"),
    )
    #: Channels that may be missing and are then rebuilt from their neighbours (see channels.py).
    reconstructable: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("FZ", ("F3", "F4")),
        ("PZ", ("P3", "P4")),
    )
    seizure_labels: frozenset[str] = SEIZURE_LABELS
    background_labels: frozenset[str] = BACKGROUND_LABELS
    window_s: int = 60
    stride_s: int = 10
    full_seizure_fraction: float = 0.99
    #: Largest disagreement tolerated between an annotation's duration header and the EDF.
    duration_tolerance_s: float = 1.0
    #: A channel whose standard deviation exceeds this is rejected: scalp EEG is tens of uV and
    #: artefacts reach a few mV, so more means a wrong physical range or unit in the header.
    max_channel_std_uv: float = 10_000.0
    #: File layout of the cache (``eeg_assets.lib.cache.layout``): one of :data:`CACHE_LAYOUTS`,
    #: ``windows`` (the NPZs of docs/cache-format.md) or ``continuous`` (the signal once).
    layout: str = "windows"

    @property
    def window_samples(self) -> int:
        return self.window_s * self.target_fs

    @property
    def stride_samples(self) -> int:
        return self.stride_s * self.target_fs

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["seizure_labels"] = sorted(self.seizure_labels)
        data["background_labels"] = sorted(self.background_labels)
        data["cache_format"] = CACHE_FORMAT
        if self.layout == "windows":
            # The default layout leaves the version of every windows cache as it was.
            del data["layout"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CacheConfig:
        """Inverse of :meth:`to_dict` (JSON lists back to tuples and sets)."""
        fields = {k: v for k, v in data.items() if k != "cache_format"}
        fields["bandpass_hz"] = tuple(fields["bandpass_hz"])
        fields["channels"] = tuple(fields["channels"])
        fields["channel_synonyms"] = tuple(tuple(pair) for pair in fields["channel_synonyms"])
        fields["reconstructable"] = tuple((channel, tuple(neighbours))
                                          for channel, neighbours in fields["reconstructable"])
        fields["seizure_labels"] = frozenset(fields["seizure_labels"])
        fields["background_labels"] = frozenset(fields["background_labels"])
        return cls(**fields)

    def version(self) -> str:
        """A short, stable hash of every parameter that shapes the cache."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BalanceConfig:
    """The SeizureTransformer recipe: all partial windows, then ratios of the others."""

    full_ratio: float = 0.3
    background_ratio: float = 2.5
    seed: int = 42

    def version(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DEFAULT_CONFIG = CacheConfig()
DEFAULT_BALANCE = BalanceConfig()

__all__ = [
    "BACKGROUND_LABELS",
    "BalanceConfig",
    "CacheConfig",
    "CANONICAL_CHANNELS",
    "DEFAULT_BALANCE",
    "DEFAULT_CONFIG",
    "SEIZURE_LABELS",
]
