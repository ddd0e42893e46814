"""The reference events of a split's recordings, recorded in the ledger when the cache is built.

Scoring needs each recording's seizure events from its annotation file (``.csv_bi`` rows, or a
``.csv``'s rows of every channel) and its duration from the annotation header, not the seizure
mask quantised onto the cached samples. Training validates on Modal, where only the cache volume
is mounted, so the build records them with each ledger entry (``details["reference"]``) while it
parses the annotation anyway, for recordings built and too short alike. Evaluation and training's
validation both read them back here, so both score against the same references.

Quarantined and failed recordings are listed with their reasons: evaluation reports them as
excluded rather than silently dropping them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from eeg_assets.lib.cache.annotations import (
    Annotation,
    AnnotationError,
    find_annotation,
    parse_annotation,
)
from eeg_assets.lib.cache.ledger import BUILT, TOO_SHORT, Ledger, RecordingEntry
from eeg_assets.lib.config import CacheConfig

#: Key of the reference in a ledger entry's ``details``.
REFERENCE_KEY = "reference"


class ReferenceRecordError(ValueError):
    """A split's references cannot be read (a recording without one, a malformed record)."""


def reference_details(annotation: Annotation) -> dict:
    """What the ledger records of an annotation: its file, header duration and seizure rows.

    Returns
    -------
    dict
        ``{"annotation_file": name, "duration_s": float, "seizures": [[start_s, stop_s], ...]}``;
        every seizure row as parsed (a ``.csv`` lists one per channel; scorers merge them).
    """
    return {"annotation_file": annotation.path.name, "duration_s": annotation.duration_s,
            "seizures": [[event.start_s, event.stop_s] for event in annotation.seizures]}


def add_missing_reference(entry: RecordingEntry, edf_path: Path, config: CacheConfig) -> bool:
    """Record the reference of an up-to-date entry built before references were recorded.

    Reading one annotation takes milliseconds, while rebuilding its recording takes seconds, so an
    older cache gains its references on the next build without being rebuilt. Returns True when
    ``entry.details`` was changed (the caller writes the entry back to the ledger).
    """
    if entry.status not in (BUILT, TOO_SHORT) or REFERENCE_KEY in entry.details:
        return False
    try:
        annotation = parse_annotation(find_annotation(Path(edf_path)), config)
    except (AnnotationError, OSError):
        return False  # the fingerprints matched, so this parsed at build time; leave it be
    entry.details[REFERENCE_KEY] = reference_details(annotation)
    return True


@dataclass(frozen=True)
class Reference:
    """One scored recording: its name, the annotation's duration and seizure rows.

    Attributes
    ----------
    stem : str
        The EDF stem (NEDC's ``bname``), e.g. ``aaaaaaac_s001_t000``.
    duration_s : float
        The annotation header's ``# duration``, in seconds.
    seizures : tuple of (start_s, stop_s)
        Seizure rows in seconds as the annotation lists them (unmerged).
    npz_name : str
        The recording's cache file; ``""`` for a recording shorter than one window.
    annotation_file : str
        Name of the annotation file the events were read from.
    """

    stem: str
    duration_s: float
    seizures: tuple[tuple[float, float], ...]
    npz_name: str = ""
    annotation_file: str = ""

    @property
    def has_windows(self) -> bool:
        return bool(self.npz_name)


@dataclass(frozen=True)
class Excluded:
    """A recording that cannot be scored: quarantined (or failed to write), with the reason."""

    source: str
    status: str
    reason: str


@dataclass(frozen=True)
class SplitReferences:
    """The references of every scored recording of a split, and the recordings excluded.

    ``recordings`` are sorted by stem: the order of the hypothesis and reference lists.
    """

    recordings: tuple[Reference, ...]
    excluded: tuple[Excluded, ...] = ()

    def by_npz(self) -> dict[str, Reference]:
        return {r.npz_name: r for r in self.recordings if r.has_windows}

    def without_windows(self) -> tuple[Reference, ...]:
        """Recordings shorter than one window: scored with an event-free hypothesis."""
        return tuple(r for r in self.recordings if not r.has_windows)

    def restricted_to(self, npz_names: Iterable[str]) -> SplitReferences:
        """These NPZs' references (an error names any without one), plus every recording
        without windows."""
        wanted = list(npz_names)
        by_npz = self.by_npz()
        missing = [name for name in wanted if name not in by_npz]
        if missing:
            shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)"
                                              if len(missing) > 5 else "")
            raise ReferenceRecordError(
                f"no reference events recorded for {len(missing)} cached file(s): {shown}; "
                "rebuild the split's cache (build-cache or npz_windows) to record them")
        keep = set(wanted)
        return SplitReferences(tuple(r for r in self.recordings
                                     if not r.has_windows or r.npz_name in keep), self.excluded)


def read_references(cache_dir: Path) -> SplitReferences:
    """The references the build recorded in ``cache_dir``'s ledger.

    Raises
    ------
    ReferenceRecordError
        Naming the recordings built or too short without a recorded reference (a ledger from
        before references were recorded: the next build adds them), or with a malformed one.
    """
    cache_dir = Path(cache_dir)
    recordings, excluded, missing = [], [], []
    for entry in sorted(Ledger(cache_dir).entries().values(), key=lambda e: e.stem):
        if entry.status not in (BUILT, TOO_SHORT):
            excluded.append(Excluded(entry.source, entry.status, entry.reason))
            continue
        record = entry.details.get(REFERENCE_KEY)
        if record is None:
            missing.append(entry.source)
            continue
        recordings.append(_reference(entry, record, cache_dir))
    if missing:
        raise ReferenceRecordError(
            f"{cache_dir}: {len(missing)} recording(s) have no recorded reference events "
            f"(first: {missing[0]}); build the split again (build-cache or npz_windows), which "
            "records them without rebuilding any NPZ")
    return SplitReferences(tuple(recordings), tuple(excluded))


def _reference(entry: RecordingEntry, record: dict, cache_dir: Path) -> Reference:
    try:
        seizures = tuple((float(start), float(stop)) for start, stop in record["seizures"])
        return Reference(stem=entry.stem, duration_s=float(record["duration_s"]),
                         seizures=seizures,
                         npz_name=entry.npz_name if entry.status == BUILT else "",
                         annotation_file=str(record.get("annotation_file", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceRecordError(f"{cache_dir}: the ledger's reference of {entry.source} is "
                             f"malformed ({type(exc).__name__}: {exc})") from None


__all__ = ["Excluded", "REFERENCE_KEY", "Reference", "ReferenceRecordError", "SplitReferences",
           "add_missing_reference", "read_references", "reference_details"]
