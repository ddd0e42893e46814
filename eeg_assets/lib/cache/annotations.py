"""TUSZ annotation files (``.csv_bi`` preferred, ``.csv`` when it is the only one).

Parsing is strict: every problem raises :class:`AnnotationError` naming the file and line, because
a silently skipped row turns a seizure into background. Columns are read by header name
(``channel,start_time,stop_time,label,confidence``), never by position.
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
            columns = _header(fields, path, line_no)
            continue
        if len(fields) != len(columns):
            raise AnnotationError(
                f"{path.name} line {line_no}: expected {len(columns)} fields, got {len(fields)}: {raw!r}")
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
    names = [f.lower() for f in fields]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise AnnotationError(
            f"{path.name} line {line_no}: column header lacks {', '.join(missing)} "
            f"(expected {','.join(REQUIRED_COLUMNS)}, got {','.join(fields)})")
    return {name: names.index(name) for name in REQUIRED_COLUMNS}


def _number(text: str, path: Path, line_no: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{path.name} line {line_no}: {what} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path.name} line {line_no}: {what} is not finite: {text!r}")
    return value
