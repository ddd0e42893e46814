"""SzCORE's annotation files: BIDS / HED-SCORE ``*_events.tsv``, written and read for scoring.

SzCORE (the 2025 seizure detection challenge and its open benchmark) exchanges references and
hypotheses as the ``*_events.tsv`` files of a BIDS dataset, in the layout and columns that the
SzCORE authors' ``epilepsy2bids`` (class ``Annotations``) writes and ``szcore-evaluation`` reads:
a header row, then one tab-separated row per event with the columns of :data:`TSV_COLUMNS`::

    onset    duration  eventType  confidence  channels  dateTime  recordingDuration
    42.2786  39.4974   sz         0.9123      n/a       n/a       1289.0400

* ``onset`` and ``duration`` in seconds from the start of the recording; ``recordingDuration``
  the recording's length, on every row (the scorers read it from the first).
* ``eventType`` a HED-SCORE level: ``bckg``, or a seizure type, ``sz`` (unclassified) or one of
  its subtypes ``sz_*`` (``sz_foc_ia``, ``sz_gen_m_tonicClonic``, ...). What this project writes is
  ``sz``: its hypotheses and its merged references carry no seizure type.
* A recording without seizures is one ``bckg`` row spanning it (``onset`` 0, ``duration`` the
  recording's), so every file carries its duration.
* ``confidence`` in [0, 1] (a hypothesis' mean probability), ``channels`` and ``dateTime``
  ``n/a``: events are term-based (all channels), and the recording's start time is not kept.

Written here rather than through ``epilepsy2bids``: its writer rounds ``onset``, ``duration`` and
``recordingDuration`` to 2 decimals, so its files would not give the figures of the ``.csv_bi``
files of the same events (NEDC's 4 decimals, :data:`~eeg_assets.lib.scoring.events.NEDC_DECIMALS`),
and it installs pandas, pyarrow, resampy, numba and llvmlite (~460 MB) for this one text format.
The files here hold 4 decimals, which epilepsy2bids' ``Annotations.loadTsv`` (and so
szcore-evaluation) reads as it reads its own.

Layout (:func:`tsv_path`): ``<root>/sub-<subject>/<stem>_events.tsv``, the subject folders
``szcore-evaluation`` looks for (it scores ``<ref>/sub-*/**/*.tsv`` against the same relative
paths under the hypothesis folder and averages per subject), the TUSZ file stem kept in the name
so that the ``score`` command pairs TSV files by the same name as ``.csv_bi`` files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.scoring.events import (
    NEDC_DECIMALS, TSV_SUFFIX, RecordingEvents, ScoringError,
)

#: The HED-SCORE columns, in epilepsy2bids' order.
TSV_COLUMNS = ("onset", "duration", "eventType", "confidence", "channels", "dateTime",
               "recordingDuration")
#: Columns a file must have to be scored; the others may be absent.
REQUIRED_COLUMNS = ("onset", "duration", "eventType", "recordingDuration")
BACKGROUND = "bckg"
#: The unclassified seizure type, written for every seizure event.
SEIZURE = "sz"
NOT_AVAILABLE = "n/a"
#: Sums of two 4-decimal numbers carry float noise (42.2786 + 39.4974 = 81.77600000000001); stops
#: are rounded to this many decimals, far below any file's precision, so that they equal the
#: number a ``.csv_bi`` file writes (81.776) and touching events still touch.
_SUM_DECIMALS = 9


def tsv_path(root: Path, stem: str, subject: str) -> Path:
    """``<root>/sub-<subject>/<stem>_events.tsv``: where a recording's file goes."""
    return Path(root) / f"sub-{subject}" / f"{stem}{TSV_SUFFIX}"


def tsv_stem(path: Path) -> str:
    """The recording's name of a TSV file: its name without ``_events.tsv`` (or ``.tsv``)."""
    name = Path(path).name
    for suffix in (TSV_SUFFIX, ".tsv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def format_events_tsv(duration_s: float, events: Iterable[Sequence[float]]) -> str:
    """The ``*_events.tsv`` text of one recording.

    Parameters
    ----------
    duration_s : float
        The recording's duration in seconds (``recordingDuration`` of every row).
    events : iterable of (start_s, stop_s) or (start_s, stop_s, confidence)
        Seizure events in seconds, sorted and disjoint, written as ``sz`` rows; without a
        confidence, 1. None: one ``bckg`` row over the whole recording.
    """
    duration = f"{float(duration_s):.{NEDC_DECIMALS}f}"
    lines = ["\t".join(TSV_COLUMNS)]
    for event in events:
        start, stop = float(event[0]), float(event[1])
        confidence = float(event[2]) if len(event) > 2 else 1.0
        lines.append("\t".join((f"{start:.{NEDC_DECIMALS}f}",
                                f"{stop - start:.{NEDC_DECIMALS}f}", SEIZURE,
                                f"{confidence:.{NEDC_DECIMALS}f}", NOT_AVAILABLE, NOT_AVAILABLE,
                                duration)))
    if len(lines) == 1:
        lines.append("\t".join((f"{0.0:.{NEDC_DECIMALS}f}", duration, BACKGROUND, NOT_AVAILABLE,
                                NOT_AVAILABLE, NOT_AVAILABLE, duration)))
    return "\n".join(lines) + "\n"


def write_events_tsv(path: Path, duration_s: float, events: Iterable[Sequence[float]]) -> Path:
    """Write :func:`format_events_tsv`'s text to ``path`` atomically (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, format_events_tsv(duration_s, events).encode())
    return path


def _is_seizure(event_type: str) -> bool:
    return event_type == SEIZURE or event_type.startswith(SEIZURE + "_")


def read_events_tsv(path: Path) -> RecordingEvents:
    """Read a HED-SCORE ``*_events.tsv`` file (reference or hypothesis) for scoring.

    Seizure rows (``eventType`` ``sz`` or ``sz_*``) are the events, from ``onset`` to
    ``onset + duration``; ``bckg`` rows are background, as the gaps between events are. Events
    are merged as in a ``.csv_bi`` file (:func:`~eeg_assets.lib.scoring.events.merge_events`).

    Raises
    ------
    ScoringError
        Naming the file (and the line): unreadable, a missing column, a row with another number
        of fields than the header, a value that is not a number, an unknown ``eventType``, no
        rows (no duration), rows that disagree on ``recordingDuration``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ScoringError(f"{path}: cannot read ({reason})") from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip()]
    if not lines:
        raise ScoringError(f"{path}: empty file; expected a header row "
                           f"({', '.join(TSV_COLUMNS)}) and one row per event")
    header_line, header_text = lines[0]
    header = [name.strip() for name in header_text.split("\t")]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ScoringError(f"{path} line {header_line}: no column {', '.join(missing)}; a "
                           f"HED-SCORE events file has the tab-separated columns "
                           f"{', '.join(TSV_COLUMNS)}")
    column = {name: header.index(name) for name in REQUIRED_COLUMNS}
    if len(lines) == 1:
        raise ScoringError(f"{path}: no event rows, so no recordingDuration; a recording without "
                           f"seizures has one {BACKGROUND} row spanning it")
    seizures, duration, duration_line = [], None, None
    for number, line in lines[1:]:
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) != len(header):
            raise ScoringError(f"{path} line {number}: {len(fields)} tab-separated fields, the "
                               f"header has {len(header)}")
        where = f"{path} line {number}"
        onset = _number(fields[column["onset"]], "onset", where)
        length = _number(fields[column["duration"]], "duration", where)
        recording = _number(fields[column["recordingDuration"]], "recordingDuration", where)
        if duration is None:
            duration, duration_line = recording, number
        elif round(recording, NEDC_DECIMALS) != round(duration, NEDC_DECIMALS):
            raise ScoringError(f"{where}: recordingDuration {recording:g} s, but line "
                               f"{duration_line} says {duration:g} s")
        event_type = fields[column["eventType"]]
        if _is_seizure(event_type):
            if onset < 0 or length <= 0:
                raise ScoringError(f"{where}: invalid seizure event (onset {onset:g} s, "
                                   f"duration {length:g} s): expected onset >= 0 and duration > 0")
            seizures.append((onset, round(onset + length, _SUM_DECIMALS)))
        elif event_type != BACKGROUND:
            raise ScoringError(f"{where}: eventType {event_type!r} is neither {BACKGROUND} nor a "
                               f"seizure type ({SEIZURE} or {SEIZURE}_...)")
    return RecordingEvents.from_intervals(str(path), duration, seizures)


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ScoringError(f"{where}: {name} is not a number: {text!r}")
    return value


__all__ = ["REQUIRED_COLUMNS", "TSV_COLUMNS", "TSV_SUFFIX", "format_events_tsv", "read_events_tsv",
           "tsv_path", "tsv_stem", "write_events_tsv"]
