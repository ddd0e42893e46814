"""Probabilities -> seizure events of a recording, and the ``.csv_bi`` files NEDC reads.

Conventions
-----------
* **Post-processing** (:class:`PostProcessConfig`): probabilities ``>= threshold`` are seizure;
  runs separated by less than ``merge_gap_s`` are merged into one event; events shorter than
  ``min_event_s`` are dropped. An event's confidence is the mean probability over its span.
  Defaults: threshold 0.5 (the probability midpoint; the operating threshold of an evaluation is
  chosen on val, see :mod:`eeg_assets.lib.model.operating_point`), merge gap 2 s and minimum 2 s,
  the SeizureTransformer minimum duration; a longer minimum such as the 10 s of the ACNS seizure
  definition would lower false alarms but drop most absence seizures, which last a few seconds.
* **A hypothesis covers the whole recording** (:func:`recording_events`): its duration is the
  reference's, and its events are those of the stitched timeline, which ends at the last cached
  window; the tail after it (under 10 s) is background. Times are rounded to 4 decimals, NEDC's
  precision, so the events scored in memory are exactly those a file holds.
* **Files** (:func:`format_csv_bi`): NEDC's ``csv_v1.0.0`` term-based layout, ``seiz`` rows for the
  events and ``bckg`` rows for the gaps between them, as TUSZ references and NEDC's own sample
  hypotheses are written, so a recording without events still has a row. The same events in
  SzCORE's format (:func:`format_events_tsv`, :mod:`eeg_assets.lib.scoring.tsv`): HED-SCORE
  ``*_events.tsv``, one ``sz`` row per event, one ``bckg`` row over a recording without events,
  times to the same 4 decimals, so both files score alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.scoring import RecordingEvents
from eeg_assets.lib.scoring import tsv as scoring_tsv
from eeg_assets.lib.scoring.events import NEDC_DECIMALS


@dataclass(frozen=True)
class PostProcessConfig:
    """Probabilities -> events (see the module docstring for the defaults' reasons)."""

    threshold: float = 0.5
    merge_gap_s: float = 2.0
    min_event_s: float = 2.0


@dataclass(frozen=True)
class Event:
    """A seizure interval ``[start_s, stop_s)`` on the recording's timeline (seconds)."""

    start_s: float
    stop_s: float
    confidence: float = 1.0


def _runs(mask: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start/stop (exclusive) sample indices of the True runs of a boolean array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def detect_events(probs: np.ndarray, fs: float,
                  post: PostProcessConfig = PostProcessConfig()) -> list[Event]:
    """Hypothesis events of a probability timeline.

    Parameters
    ----------
    probs : np.ndarray, shape (L,)
        Stitched seizure probabilities of one recording.
    fs : float
        Sample rate of the timeline in Hz.
    post : PostProcessConfig
        Threshold, merge gap and minimum duration (seconds).

    Returns
    -------
    list of Event
        In seconds, in time order, confidence = mean probability over the event.
    """
    probs = np.asarray(probs)
    runs = _runs(probs >= post.threshold)
    if not len(runs):
        return []
    # Vectorised: a noisy timeline has a run every few samples at a low threshold, and a loop
    # over them made the 19-threshold sweep of an evaluation 25x slower.
    opens_event = np.r_[True, runs[1:, 0] - runs[:-1, 1] >= post.merge_gap_s * fs]
    starts = runs[opens_event, 0]
    stops = runs[np.r_[opens_event[1:], True], 1]
    kept = stops - starts >= post.min_event_s * fs
    starts, stops = starts[kept], stops[kept]
    return [Event(start / fs, stop / fs, float(probs[start:stop].mean()))
            for start, stop in zip(starts.tolist(), stops.tolist())]


def recording_events(events: Iterable[Event], duration_s: float) -> tuple[Event, ...]:
    """Events as a hypothesis file of a ``duration_s`` recording holds them.

    Times are rounded to 4 decimals and cut at the recording's end (the stitched timeline may run
    up to a second past the annotation's duration, the tolerance the cache allows between the
    annotation header and the EDF); events left empty are dropped.
    """
    end = round(float(duration_s), NEDC_DECIMALS)
    kept = []
    for event in events:
        start = round(event.start_s, NEDC_DECIMALS)
        stop = min(round(event.stop_s, NEDC_DECIMALS), end)
        if start < stop:
            kept.append(Event(start, stop, event.confidence))
    return tuple(kept)


def scored_events(name: str, duration_s: float, events: Sequence[Event]) -> RecordingEvents:
    """The scorers' view of events already in file form (:func:`recording_events`)."""
    return RecordingEvents.from_intervals(name, round(float(duration_s), NEDC_DECIMALS),
                                          ((e.start_s, e.stop_s) for e in events))


def format_csv_bi(bname: str, duration_s: float, events: Sequence[Event]) -> str:
    """The NEDC ``csv_v1.0.0`` term-based binary annotation text of one recording.

    Parameters
    ----------
    bname : str
        The EDF stem, e.g. ``aaaaadkb_s010_t000``.
    duration_s : float
        The recording's duration in seconds; NEDC pairs files by it, to 4 decimals, so it must
        be the reference's.
    events : sequence of Event
        Seizure events in seconds, sorted and disjoint, written as ``seiz`` rows with their
        confidence; the gaps between them become ``bckg`` rows (confidence 1).
    """
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {bname}",
        f"# duration = {duration_s:.4f} secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    end = round(float(duration_s), NEDC_DECIMALS)
    cursor = 0.0
    for event in events:
        if round(event.start_s, NEDC_DECIMALS) > round(cursor, NEDC_DECIMALS):
            lines.append(f"TERM,{cursor:.4f},{event.start_s:.4f},bckg,1.0000")
        lines.append(f"TERM,{event.start_s:.4f},{event.stop_s:.4f},seiz,{event.confidence:.4f}")
        cursor = max(cursor, event.stop_s)
    if round(cursor, NEDC_DECIMALS) < end:
        lines.append(f"TERM,{cursor:.4f},{end:.4f},bckg,1.0000")
    return "\n".join(lines) + "\n"


def write_csv_bi(path: Path, bname: str, duration_s: float, events: Sequence[Event]) -> None:
    """Write :func:`format_csv_bi`'s text to ``path`` atomically."""
    write_bytes_atomic(Path(path), format_csv_bi(bname, duration_s, events).encode())


def format_events_tsv(duration_s: float, events: Sequence[Event]) -> str:
    """SzCORE's HED-SCORE ``*_events.tsv`` text of one recording: an ``sz`` row per event with
    its confidence, or one ``bckg`` row spanning a recording without events
    (:func:`eeg_assets.lib.scoring.tsv.format_events_tsv`)."""
    return scoring_tsv.format_events_tsv(duration_s, [(e.start_s, e.stop_s, e.confidence)
                                                      for e in events])


def write_events_tsv(path: Path, duration_s: float, events: Sequence[Event]) -> Path:
    """Write :func:`format_events_tsv`'s text to ``path`` atomically (folders created)."""
    return scoring_tsv.write_events_tsv(path, duration_s, [(e.start_s, e.stop_s, e.confidence)
                                                           for e in events])


__all__ = ["Event", "PostProcessConfig", "detect_events", "format_csv_bi", "format_events_tsv",
           "recording_events", "scored_events", "write_csv_bi", "write_events_tsv"]
