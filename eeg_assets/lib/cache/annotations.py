"""TUSZ annotation files (``.csv_bi`` preferred, ``.csv`` when it is the only one).

Parsing is strict: every problem raises :class:`AnnotationError` naming the file and line, because
a silently skipped row turns a seizure into background. Columns are read by header name
(``channel,start_time,stop_time,label,confidence``), never by position: the header may order them
as it likes and add columns of its own (ignored), but must name every one of these.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from eeg_assets.lib.config import CacheConfig

ANNOTATION_SUFFIXES = (".csv_bi", ".csv")  # in order of preference
REQUIRED_COLUMNS = ("channel", "start_time", "stop_time", "label", "confidence")
_DURATION = re.compile(r"^#\s*duration\s*=\s*([0-9.eE+-]+)\s*(secs?)?\s*$")


class AnnotationError(ValueError):
    """A missing or malformed annotation file."""


@dataclass(frozen=True)
class SeizureEvent:
    start_s: float
    stop_s: float
    label: str


@dataclass(frozen=True)
class Annotation:
    path: Path
    duration_s: float | None       # from the "# duration = ... secs" header
    seizures: tuple[SeizureEvent, ...]  # rows of every channel; the label mask is their union


def annotation_names(edf_name: str) -> tuple[str, ...]:
    """The file names that may hold the annotation of ``edf_name``, in order of preference.

    The one annotation rule: ``<stem>.csv_bi``, else ``<stem>.csv``, in the EDF's folder.
    :func:`find_annotation` applies it to the file system, the split listing
    (:mod:`eeg_assets.lib.cache.discovery`) to a folder's directory listing.
    """
    stem = edf_name.rsplit(".", 1)[0]
    return tuple(stem + suffix for suffix in ANNOTATION_SUFFIXES)


def missing_annotation(edf_name: str) -> AnnotationError:
    """The error of a recording whose folder holds none of :func:`annotation_names`."""
    return AnnotationError(
        f"{edf_name}: no annotation file ({' or '.join(annotation_names(edf_name))}); "
        "a recording without annotations is never assumed seizure-free")


def find_annotation(edf_path: Path) -> Path:
    """The annotation file of a recording: ``<stem>.csv_bi``, else ``<stem>.csv``."""
    edf_path = Path(edf_path)
    for name in annotation_names(edf_path.name):
        candidate = edf_path.with_name(name)
        if candidate.is_file():
            return candidate
    raise missing_annotation(edf_path.name)


def parse_annotation(path: Path, config: CacheConfig, *,
                     require_rows: bool = True) -> Annotation:
    """Parse a TUSZ ``.csv_bi``/``.csv`` file; tolerant of BOM, CRLF and spaces, strict otherwise.

    ``require_rows=False`` accepts a file with a header and no rows (a hypothesis without events,
    which NEDC reads as background over the whole recording); a TUSZ reference always has a row.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    duration: float | None = None
    columns: dict[str, int] | None = None
    width = 0  # fields per row: the header's, extra columns included
    seizures: list[SeizureEvent] = []
    rows = 0
    known = config.seizure_labels | config.background_labels
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            match = _DURATION.match(line)
            if match:
                duration = _number(match.group(1), path, line_no, "duration")
            continue
        fields = [f.strip() for f in line.split(",")]
        if columns is None:
            columns, width = _header(fields, path, line_no), len(fields)
            continue
        if len(fields) != width:
            # a row one field short or long would put its values under the wrong names
            raise AnnotationError(
                f"{path.name} line {line_no}: expected {width} fields, got {len(fields)}: {raw!r}")
        rows += 1
        start = _number(fields[columns["start_time"]], path, line_no, "start_time")
        stop = _number(fields[columns["stop_time"]], path, line_no, "stop_time")
        label = fields[columns["label"]].lower()
        if start < 0:
            raise AnnotationError(f"{path.name} line {line_no}: negative start_time {start}")
        if stop <= start:
            raise AnnotationError(
                f"{path.name} line {line_no}: stop_time {stop} is not after start_time {start}")
        if label not in known:
            raise AnnotationError(
                f"{path.name} line {line_no}: unknown label {label!r} "
                f"(seizure labels: {', '.join(sorted(config.seizure_labels))}; "
                f"background: {', '.join(sorted(config.background_labels))})")
        if duration is not None and start >= duration:
            raise AnnotationError(
                f"{path.name} line {line_no}: event starts at {start} s, after the end of the "
                f"recording ({duration} s)")
        if label in config.seizure_labels:
            seizures.append(SeizureEvent(start, stop, label))
    if columns is None:
        raise AnnotationError(f"{path.name}: no column header line "
                              f"({','.join(REQUIRED_COLUMNS)}); the file is empty or truncated")
    if duration is None:
        raise AnnotationError(f"{path.name}: no '# duration = ... secs' header line")
    if rows == 0 and require_rows:
        raise AnnotationError(f"{path.name}: no annotation rows after the column header "
                              "(a seizure-free recording still has a bckg row)")
    return Annotation(path=path, duration_s=duration, seizures=tuple(seizures))


def _header(fields: list[str], path: Path, line_no: int) -> dict[str, int]:
    """``{required column: its index}`` from the column header line; other columns are ignored.

    Raises :class:`AnnotationError` naming the file, the line and the required columns the
    header lacks, or names twice (which of the two to read would be a guess).
    """
    names = [f.lower() for f in fields]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise AnnotationError(
            f"{path.name} line {line_no}: column header lacks {', '.join(missing)} "
            f"(required: {','.join(REQUIRED_COLUMNS)}; got {','.join(fields)})")
    twice = [c for c in REQUIRED_COLUMNS if names.count(c) > 1]
    if twice:
        raise AnnotationError(
            f"{path.name} line {line_no}: column header names {', '.join(twice)} more than once "
            f"(got {','.join(fields)})")
    return {name: names.index(name) for name in REQUIRED_COLUMNS}


def annotation_disagreement(edf_path: Path, config: CacheConfig, *,
                            primary: Annotation | None = None) -> str | None:
    """A warning when the ``.csv_bi`` and ``.csv`` beside ``edf_path`` disagree on seizures.

    The annotation rule labels a recording from its ``.csv_bi`` and never reads its ``.csv``; when
    one of the two has seizure events (labels in ``config.seizure_labels``) and the other has
    none, the recording's labels hang on which file is right, which deserves a line in the build.

    Parameters
    ----------
    edf_path
        The recording's EDF; its annotation files are found beside it by
        :func:`annotation_names`.
    config
        Its seizure and background labels are those the build parses with.
    primary
        The ``.csv_bi`` already parsed (by the build), so that it is not parsed twice.

    Returns
    -------
    str or None
        One sentence naming both files and which has the seizures; ``None`` when they agree,
        when either file is missing (there is nothing to compare), or when either cannot be
        parsed: a bad ``.csv_bi`` is the build's own quarantine, and a bad ``.csv`` is never read
        by the build, so neither says anything about the labels the recording gets.
    """
    edf_path = Path(edf_path)
    paths = [edf_path.with_name(name) for name in annotation_names(edf_path.name)]
    if not all(path.is_file() for path in paths):
        return None
    try:
        chosen = primary if primary is not None else parse_annotation(paths[0], config)
        other = parse_annotation(paths[1], config)
    except (AnnotationError, OSError):
        return None
    if bool(chosen.seizures) == bool(other.seizures):
        return None
    with_events, without = (chosen, other) if chosen.seizures else (other, chosen)
    count = len(with_events.seizures)
    return (f"{with_events.path.name} has {count} seizure event{'s' if count != 1 else ''} but "
            f"{without.path.name} has none; the recording is labelled from {paths[0].name}")


def _number(text: str, path: Path, line_no: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{path.name} line {line_no}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path.name} line {line_no}: {what} is not finite: {text!r}")
    return value
