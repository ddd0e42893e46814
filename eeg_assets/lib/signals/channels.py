"""TUH channel labels -> the pinned 19-channel order.

TUSZ labels look like ``EEG FP1-REF`` or ``EEG FP1-LE``; some files use the newer 10-10 names
T7/T8/P7/P8. 249 files of the corpus lack exactly Fz and Pz: those two are rebuilt from their
neighbours (see :func:`plan_channels`), any other missing channel is an error for that file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eeg_assets.lib.config import CacheConfig

_REFERENCE_SUFFIX = re.compile(r"-(REF|LE|AR)$")


class ChannelError(ValueError):
    """The recording's channels cannot be mapped to the pinned 19 channels."""


def normalise_label(label: str, synonyms: dict[str, str] | None = None) -> str:
    """``'EEG FP1-REF'`` -> ``'FP1'``; ``'EEG T7-LE'`` -> ``'T3'`` with the default synonyms."""
    name = label.replace(" ", "").upper()
    if name.startswith("EEG"):
        name = name[3:]
    name = _REFERENCE_SUFFIX.sub("", name)
    return (synonyms or {}).get(name, name)


@dataclass(frozen=True)
class ChannelPlan:
    """Where each of the 19 output channels comes from."""

    #: EDF signal index per output channel, or None for a reconstructed channel.
    sources: tuple[int | None, ...]
    #: Output channel -> the output channels it is averaged from (only reconstructed ones).
    reconstructed: dict[str, tuple[str, ...]]
    #: EDF labels of the signals used, in output order ("" for reconstructed).
    labels: tuple[str, ...]

    def describe_reconstruction(self) -> str:
        """A line recorded with each NPZ, e.g. ``'FZ=mean(F3,F4); PZ=mean(P3,P4)'``."""
        return "; ".join(f"{ch}=mean({','.join(src)})" for ch, src in self.reconstructed.items())


def plan_channels(edf_labels: list[str], config: CacheConfig) -> ChannelPlan:
    """Map EDF signal labels to ``config.channels``.

    Missing channels listed in ``config.reconstructable`` (Fz, Pz) are rebuilt as the mean of
    their lateral neighbours on the same coronal line (Fz from F3/F4, Pz from P3/P4): the
    midline electrode sits halfway between them, and a linear interpolation keeps the result a
    plausible referential signal without inventing activity. Raises :class:`ChannelError` naming
    the missing or duplicated channels otherwise.
    """
    synonyms = dict(config.channel_synonyms)
    by_name: dict[str, int] = {}
    duplicates: set[str] = set()
    for index, label in enumerate(edf_labels):
        name = normalise_label(label, synonyms)
        if name in config.channels:
            if name in by_name:
                duplicates.add(name)
            by_name[name] = index
    if duplicates:
        raise ChannelError(f"duplicate EEG channels: {', '.join(sorted(duplicates))}")

    rebuild_rules = dict(config.reconstructable)
    missing = [ch for ch in config.channels if ch not in by_name]
    unrecoverable = [ch for ch in missing
                     if ch not in rebuild_rules or any(n not in by_name for n in rebuild_rules[ch])]
    if unrecoverable:
        raise ChannelError(
            f"missing EEG channels: {', '.join(unrecoverable)} "
            f"(only {', '.join(rebuild_rules)} can be reconstructed)")
    return ChannelPlan(
        sources=tuple(by_name.get(ch) for ch in config.channels),
        reconstructed={ch: rebuild_rules[ch] for ch in missing},
        labels=tuple(edf_labels[by_name[ch]] if ch in by_name else "" for ch in config.channels),
    )
