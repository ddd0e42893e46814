"""Seizure events of one recording as the scorers see them, read from annotation files and paired.

Two formats, told apart by suffix: NEDC's ``.csv_bi``/``.csv`` (read here) and SzCORE's HED-SCORE
``*_events.tsv`` (read by :mod:`eeg_assets.lib.scoring.tsv`).

A recording is its duration and its seizure intervals, sorted and disjoint. Reading follows NEDC EEG
Eval v6.0.0: ``bckg`` rows and the gaps between events are background alike, so only the seizure
rows matter; consecutive seizure events that touch (equal to 4 decimals) become one event. Rows
that overlap, which a ``.csv`` file has when several channels carry the same seizure, are joined
into their union.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from eeg_assets.lib.cache.annotations import ANNOTATION_SUFFIXES, AnnotationError, parse_annotation
from eeg_assets.lib.config import CacheConfig

#: NEDC compares times and durations rounded to this many decimals (its ``MIN_PRECISION``).
NEDC_DECIMALS = 4
#: The two annotation formats, told apart by suffix (:func:`annotation_format`).
NEDC_FORMAT, TSV_FORMAT = "nedc", "tsv"
_FORMAT_NAMES = {NEDC_FORMAT: "NEDC .csv_bi/.csv", TSV_FORMAT: "SzCORE HED-SCORE .tsv"}
#: The name ending of a BIDS events file, SzCORE's format (:mod:`eeg_assets.lib.scoring.tsv`);
#: folders are searched for it (a BIDS dataset also holds ``participants.tsv``, ...).
TSV_SUFFIX = "_events.tsv"

Interval = tuple[float, float]


class ScoringError(ValueError):
    """Input the scorers cannot use: a malformed file, an unpaired file, a duration mismatch."""


@dataclass(frozen=True)
class RecordingEvents:
    """The seizure events of one recording.

    Attributes
    ----------
    name : str
        Where the events came from (a file path), for messages and per-file reports.
    duration_s : float
        Length of the recording in seconds (the ``# duration`` header of its file).
    seizures : tuple of (start_s, stop_s)
        Seizure intervals in seconds, sorted, disjoint, not touching (see :func:`merge_events`).
    """

    name: str
    duration_s: float
    seizures: tuple[Interval, ...]

    @classmethod
    def from_intervals(cls, name: str, duration_s: float,
                       intervals: Iterable[Sequence[float]]) -> RecordingEvents:
        """Validate ``duration_s`` and ``intervals`` (start_s, stop_s) and merge them NEDC's way.

        Events must start before ``duration_s``; one may run past it (TUSZ files have such
        rows), and the scorers keep it whole as NEDC does (SzCORE cuts it at the end).
        """
        duration = float(duration_s)
        if not duration > 0:  # also catches NaN
            raise ScoringError(f"{name}: duration must be a positive number of seconds, "
                               f"got {duration_s!r} (a false-alarm rate needs a length)")
        seizures = merge_events(intervals, name=name)
        if seizures and seizures[-1][0] >= duration:
            raise ScoringError(f"{name}: event ({seizures[-1][0]}, {seizures[-1][1]}) starts "
                               f"after the end of the recording ({duration} s)")
        return cls(name=name, duration_s=duration, seizures=seizures)


def merge_events(intervals: Iterable[Sequence[float]], *,
                 name: str = "events") -> tuple[Interval, ...]:
    """Sort seizure intervals and join those that overlap or touch.

    Parameters
    ----------
    intervals : iterable of (start_s, stop_s)
        Seizure events in seconds, in any order; each must have ``0 <= start_s < stop_s``.
    name : str
        Named in the error raised for an invalid interval.

    Returns
    -------
    tuple of (start_s, stop_s)
        Disjoint intervals in increasing order. Two events touch when the next one starts, to
        :data:`NEDC_DECIMALS` decimals, where the previous one stops: NEDC fills gaps with
        background and then merges consecutive events of one label, so touching events count as
        one. Overlapping events (NEDC expects none) become their union.
    """
    checked: list[Interval] = []
    for interval in intervals:
        start, stop = (float(t) for t in interval)
        if not (0 <= start < stop < float("inf")):
            raise ScoringError(f"{name}: invalid event ({start}, {stop}): expected "
                               "0 <= start < stop, in seconds")
        checked.append((start, stop))
    checked.sort()
    merged: list[Interval] = []
    for start, stop in checked:
        if merged and round(start, NEDC_DECIMALS) <= round(merged[-1][1], NEDC_DECIMALS):
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return tuple(merged)


def read_events(path: Path, config: CacheConfig | None = None) -> RecordingEvents:
    """Read an annotation file (reference or hypothesis) for scoring, in either format.

    Parameters
    ----------
    path : Path
        The file, read by its suffix: a HED-SCORE ``.tsv`` file (SzCORE's ``*_events.tsv``) by
        :func:`~eeg_assets.lib.scoring.tsv.read_events_tsv`; a ``.csv_bi`` or ``.csv`` file
        (NEDC's) by :func:`~eeg_assets.lib.cache.annotations.parse_annotation` (strict about
        headers, numbers and labels), where a file with a column header and no rows is a
        recording without events, as NEDC reads it.
    config : CacheConfig, optional
        Supplies the seizure and background label sets of ``.csv_bi``/``.csv`` files (default:
        ``CacheConfig()``).

    Raises
    ------
    ScoringError
        Naming the file: unreadable, malformed, without a positive duration.
    """
    path = Path(path)
    if annotation_format(path) == TSV_FORMAT:
        from eeg_assets.lib.scoring.tsv import read_events_tsv  # tsv imports this module

        return read_events_tsv(path)
    try:
        annotation = parse_annotation(path, config or CacheConfig(), require_rows=False)
    except AnnotationError as exc:
        raise ScoringError(f"{path}: {exc}") from None
    except OSError as exc:
        raise ScoringError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return RecordingEvents.from_intervals(
        str(path), annotation.duration_s, ((e.start_s, e.stop_s) for e in annotation.seizures))


def pair_files(ref: Path, hyp: Path) -> list[tuple[Path, Path]]:
    """Pair reference and hypothesis files: two folders by file name, two list files by position.

    Parameters
    ----------
    ref, hyp : Path
        Either two folders, searched recursively for annotation files (``<name>.csv_bi``, else
        ``<name>.csv``; or SzCORE's ``<name>_events.tsv``) paired by ``<name>``; or two NEDC
        list files, one path per line (blank lines and ``#`` comments skipped; ``$VARS`` and
        ``~`` expanded; relative paths taken from the current directory, as NEDC does), paired
        line by line. Each file's format is its suffix (:func:`annotation_format`); both files
        of a pair must have the same.

    Returns
    -------
    list of (ref_path, hyp_path)
        In the folders' name order, or in the lists' order.

    Raises
    ------
    ScoringError
        Naming the unpaired files, a missing listed file, an empty input, a folder given with
        a list file, a recording found in both formats in one folder, or a pair in two formats.
    """
    ref, hyp = Path(ref), Path(hyp)
    for what, path in (("reference", ref), ("hypothesis", hyp)):
        if not path.exists():
            raise ScoringError(f"{path}: no such {what} folder or list file")
    if ref.is_dir() != hyp.is_dir():
        raise ScoringError(f"{ref} and {hyp}: give two folders (paired by file name) or two "
                           "list files (paired by position), not one of each")
    pairs = _pair_folders(ref, hyp) if ref.is_dir() else _pair_lists(ref, hyp)
    if not pairs:
        raise ScoringError(f"{ref}: no annotation files to score")
    for ref_path, hyp_path in pairs:
        ref_format, hyp_format = annotation_format(ref_path), annotation_format(hyp_path)
        if ref_format != hyp_format:
            raise ScoringError(f"{ref_path} ({_FORMAT_NAMES[ref_format]}) is paired with "
                               f"{hyp_path} ({_FORMAT_NAMES[hyp_format]}): give references and "
                               "hypotheses in the same format")
    return pairs


def annotation_format(path: Path) -> str:
    """``"tsv"`` for a HED-SCORE ``.tsv`` file (SzCORE's), else ``"nedc"`` (``.csv_bi``, ``.csv``)
    -- by suffix alone."""
    return TSV_FORMAT if Path(path).suffix == ".tsv" else NEDC_FORMAT


def read_pairs(pairs: Iterable[tuple[Path, Path]], config: CacheConfig | None = None
               ) -> Iterator[tuple[RecordingEvents, RecordingEvents]]:
    """Read each (ref, hyp) pair lazily, checking that their durations agree to 4 decimals.

    Raises
    ------
    ScoringError
        For a malformed file, or a pair whose ``# duration`` headers differ (NEDC fails there).
    """
    for ref_path, hyp_path in pairs:
        ref, hyp = read_events(ref_path, config), read_events(hyp_path, config)
        check_durations(ref, hyp)
        yield ref, hyp


def check_durations(ref: RecordingEvents, hyp: RecordingEvents) -> None:
    """Raise :class:`ScoringError` unless both durations agree to :data:`NEDC_DECIMALS` decimals."""
    if round(ref.duration_s, NEDC_DECIMALS) != round(hyp.duration_s, NEDC_DECIMALS):
        raise ScoringError(
            f"duration mismatch: {ref.name} has {ref.duration_s:.4f} s but {hyp.name} has "
            f"{hyp.duration_s:.4f} s (NEDC needs equal durations to 4 decimals)")


def _pair_folders(ref: Path, hyp: Path) -> list[tuple[Path, Path]]:
    ref_files, hyp_files = _annotation_files(ref), _annotation_files(hyp)
    for folder, files, other, other_files in ((ref, ref_files, hyp, hyp_files),
                                              (hyp, hyp_files, ref, ref_files)):
        unpaired = sorted(files.keys() - other_files.keys())
        if unpaired:
            shown = ", ".join(files[name].name for name in unpaired[:5])
            more = f" and {len(unpaired) - 5} more" if len(unpaired) > 5 else ""
            raise ScoringError(f"{len(unpaired)} file(s) in {folder} have no counterpart in "
                               f"{other}: {shown}{more}")
    return [(ref_files[name], hyp_files[name]) for name in sorted(ref_files)]


def _annotation_files(folder: Path) -> dict[str, Path]:
    """``{name: path}`` of the annotation files below ``folder``, ``.csv_bi`` before ``.csv``;
    ``<name>_events.tsv`` files under ``<name>``, refused beside a ``.csv_bi``/``.csv`` file of
    the same name."""
    found: dict[str, Path] = {}
    for suffix in reversed(ANNOTATION_SUFFIXES):  # the preferred suffix is written last
        found.update(_files_named(folder, suffix, lambda path: path.stem))
    tsv_files = _files_named(folder, TSV_SUFFIX, lambda path: path.name[: -len(TSV_SUFFIX)])
    both = sorted(tsv_files.keys() & found.keys())
    if both:
        raise ScoringError(f"{folder}: {found[both[0]]} and {tsv_files[both[0]]} are the same "
                           f"recording in two formats ({len(both)} such); give a folder of one "
                           "format")
    found.update(tsv_files)
    return found


def _files_named(folder: Path, suffix: str, name_of) -> dict[str, Path]:
    seen: dict[str, Path] = {}
    for path in sorted(folder.rglob(f"*{suffix}")):
        if not path.is_file():
            continue
        name = name_of(path)
        if name in seen:
            raise ScoringError(f"{folder}: two files named {path.name} ({seen[name]} and "
                               f"{path}); pairing by name needs unique names")
        seen[name] = path
    return seen


def _pair_lists(ref: Path, hyp: Path) -> list[tuple[Path, Path]]:
    ref_lines, hyp_lines = _read_list(ref), _read_list(hyp)
    if len(ref_lines) != len(hyp_lines):
        longer, entries = (ref, ref_lines) if len(ref_lines) > len(hyp_lines) else (hyp, hyp_lines)
        line_no, first = entries[min(len(ref_lines), len(hyp_lines))]
        raise ScoringError(f"{ref} lists {len(ref_lines)} files but {hyp} lists {len(hyp_lines)}; "
                           f"lists pair by position, so {longer} line {line_no} ({first}) and "
                           "the lines after it are unpaired")
    return [(r, h) for (_, r), (_, h) in zip(ref_lines, hyp_lines)]


def _read_list(list_file: Path) -> list[tuple[int, Path]]:
    """``(line number, path)`` of each file a list names."""
    try:
        lines = list_file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringError(f"{list_file}: cannot read the list file ({exc})") from None
    entries = []
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(os.path.expanduser(os.path.expandvars(line)))
        if not path.is_file():
            raise ScoringError(f"{list_file} line {line_no}: no such file {line}")
        entries.append((line_no, path))
    return entries
