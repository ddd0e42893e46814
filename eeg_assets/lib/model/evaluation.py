"""Score stitched recordings: events, OVERLAP counts, sample AUROC, ``.csv_bi`` hypotheses.

Pure numpy; used by training (validation every epoch) and by checkpoint evaluation.

Conventions
-----------
* **Stitching** of windows onto a recording's timeline: :mod:`eeg_assets.lib.model.stitching`.
* **Sample AUROC** is over the stitched timelines of all recordings together (the Mann-Whitney
  statistic, ties counted half), streamed through :class:`~eeg_assets.lib.model.auroc.BinnedAUROC`,
  which reports a worst-case error bound with it (``auroc_error_bound``, at most 1e-4 on
  realistic scores).
* **Post-processing** (:class:`PostProcessConfig`): probabilities ``>= threshold`` are seizure;
  runs separated by less than ``merge_gap_s`` are merged into one event; events shorter than
  ``min_event_s`` are dropped. An event's confidence is the mean probability over its span.
  Defaults: threshold 0.5 (the probability midpoint; tune the operating point on dev, e.g.
  SeizureTransformer reports TUSZ results at 0.8), merge gap 2 s and minimum 2 s, the
  SeizureTransformer minimum duration; a longer minimum such as the 10 s of the ACNS seizure
  definition would lower false alarms but drop most absence seizures, which last a few seconds.
* **OVERLAP scoring** (as NEDC OVERLAP): a reference seizure is detected when any hypothesis event
  overlaps it; a hypothesis event that overlaps no reference event is a false alarm. Sensitivity is
  detected / reference events, precision is hypothesis events overlapping a reference / hypothesis
  events, false alarms per 24 h are over the total evaluated (stitched) duration. A ratio whose
  denominator is zero is NaN. :func:`score_overlap` is the one per-recording scoring call.
* **Memory.** Recordings are scored as they complete: one recording's timeline exists at a time
  (~17 B per sample of it while it is stitched and scored), then only its events and counts are
  kept, and the AUROC histograms (39 MB) whatever the split's size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.model.auroc import BinnedAUROC
from eeg_assets.lib.model.stitching import stitch_recording

NPZ_SUFFIX = "_windows.npz"
SECONDS_PER_DAY = 24 * 3600.0


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

    @property
    def duration_s(self) -> float:
        return self.stop_s - self.start_s

    def overlaps(self, other: Event) -> bool:
        return self.start_s < other.stop_s and other.start_s < self.stop_s


@dataclass(frozen=True)
class EventCounts:
    """OVERLAP counts; additive over recordings."""

    n_reference: int = 0
    n_detected: int = 0
    n_hypothesis: int = 0
    n_false_alarms: int = 0

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(*(a + b for a, b in zip(dataclasses.astuple(self),
                                                   dataclasses.astuple(other))))


def bname_from_npz(npz_name: str) -> str:
    """``aaaaadkb_s010_t000_windows.npz`` -> ``aaaaadkb_s010_t000`` (the EDF stem)."""
    name = Path(npz_name).name
    if not name.endswith(NPZ_SUFFIX):
        raise ValueError(f"{npz_name!r} is not a cache file name (<edf_stem>{NPZ_SUFFIX})")
    return name[: -len(NPZ_SUFFIX)]


def _runs(mask: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start/stop (exclusive) sample indices of the True runs of a boolean array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def mask_to_events(mask: np.ndarray, fs: float) -> list[Event]:
    """Reference events: every run of True in a label timeline, unfiltered.

    Parameters
    ----------
    mask : np.ndarray, bool, shape (L,)
        Seizure labels of one recording's samples.
    fs : float
        Sample rate in Hz.

    Returns
    -------
    list of Event
        ``[start_s, stop_s)`` in seconds from the timeline's start, in time order.
    """
    return [Event(start / fs, stop / fs) for start, stop in _runs(np.asarray(mask, dtype=bool))]


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
    merged: list[list[int]] = []
    for start, stop in runs:
        if merged and start - merged[-1][1] < post.merge_gap_s * fs:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    return [Event(start / fs, stop / fs, float(probs[start:stop].mean()))
            for start, stop in merged if stop - start >= post.min_event_s * fs]


def score_overlap(reference: list[Event], hypothesis: list[Event]) -> EventCounts:
    """OVERLAP counts of one recording's hypothesis events against its reference events.

    Parameters
    ----------
    reference, hypothesis : list of Event
        One recording's events, in seconds on the same timeline.

    Returns
    -------
    EventCounts
        Reference events, those detected, hypothesis events, and false alarms among them.
    """
    detected = sum(any(ref.overlaps(hyp) for hyp in hypothesis) for ref in reference)
    false_alarms = sum(not any(hyp.overlaps(ref) for ref in reference) for hyp in hypothesis)
    return EventCounts(n_reference=len(reference), n_detected=detected,
                       n_hypothesis=len(hypothesis), n_false_alarms=false_alarms)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def event_metrics(counts: EventCounts, duration_s: float) -> dict[str, float]:
    """Sensitivity, false alarms per 24 h and precision (NaN where a denominator is 0).

    Parameters
    ----------
    counts : EventCounts
        Summed over the recordings scored.
    duration_s : float
        Their total evaluated duration in seconds.
    """
    return {
        "sensitivity": _ratio(counts.n_detected, counts.n_reference),
        "fa_per_24h": _ratio(counts.n_false_alarms * SECONDS_PER_DAY, duration_s),
        "precision": _ratio(counts.n_hypothesis - counts.n_false_alarms, counts.n_hypothesis),
    }


def format_csv_bi(bname: str, duration_s: float, events: list[Event]) -> str:
    """The NEDC ``csv_v1.0.0`` term-based binary annotation text for one recording.

    Parameters
    ----------
    bname : str
        The EDF stem, e.g. ``aaaaadkb_s010_t000``.
    duration_s : float
        The recording's duration in seconds (NEDC pairs files by it, to 4 decimals).
    events : list of Event
        Seizure events in seconds; written as ``TERM`` rows labelled ``seiz``.
    """
    lines = [
        "# version = csv_v1.0.0",
        f"# bname = {bname}",
        f"# duration = {duration_s:.4f} secs",
        "# montage_file = nedc_eas_default_montage.txt",
        "#",
        "channel,start_time,stop_time,label,confidence",
    ]
    lines += [f"TERM,{e.start_s:.4f},{e.stop_s:.4f},seiz,{e.confidence:.4f}" for e in events]
    return "\n".join(lines) + "\n"


def write_csv_bi(path: Path, bname: str, duration_s: float, events: list[Event]) -> None:
    """Write :func:`format_csv_bi`'s text to ``path`` atomically."""
    write_bytes_atomic(Path(path), format_csv_bi(bname, duration_s, events).encode())


@dataclass(frozen=True)
class RecordingResult:
    """One recording's events after stitching; ``duration_s`` is the stitched timeline's."""

    npz_name: str
    duration_s: float
    reference: list[Event]
    hypothesis: list[Event]
    counts: EventCounts

    @property
    def bname(self) -> str:
        return bname_from_npz(self.npz_name)


class ValidationAccumulator:
    """Scores whole recordings as they come and reports dataset-level metrics.

    Keeps per recording only its events and counts (:class:`RecordingResult`), and the AUROC
    histograms; no per-sample array outlives :meth:`add_timeline`.

    Parameters
    ----------
    fs : float
        Sample rate of the timelines in Hz.
    stride : int
        Hop between window starts in samples (for :meth:`add_recording`).
    post : PostProcessConfig
        Probabilities -> hypothesis events.
    """

    def __init__(self, fs: float, stride: int, post: PostProcessConfig = PostProcessConfig()):
        self.fs = fs
        self.stride = stride
        self.post = post
        self.recordings: list[RecordingResult] = []
        self._auroc = BinnedAUROC()

    def add_recording(self, npz_name: str, window_probs: np.ndarray,
                      window_labels: np.ndarray) -> RecordingResult:
        """Stitch and score one recording's ``(n_windows, window)`` probabilities and labels."""
        if window_probs.shape != window_labels.shape:
            raise ValueError(f"{npz_name}: probabilities {window_probs.shape} and labels "
                             f"{window_labels.shape} differ")
        return self.add_timeline(npz_name, *stitch_recording(window_probs, window_labels,
                                                             self.stride))

    def add_timeline(self, npz_name: str, probs: np.ndarray,
                     labels: np.ndarray) -> RecordingResult:
        """Score one stitched recording: probabilities ``(L,)`` in [0, 1], labels ``(L,)`` bool."""
        try:
            self._auroc.update(probs, labels)
        except ValueError as error:
            raise ValueError(f"{npz_name}: {error}") from None
        reference = mask_to_events(labels, self.fs)
        hypothesis = detect_events(probs, self.fs, self.post)
        result = RecordingResult(npz_name, probs.size / self.fs, reference, hypothesis,
                                 score_overlap(reference, hypothesis))
        self.recordings.append(result)
        return result

    def metrics(self) -> dict[str, float]:
        """AUROC (with its error bound), OVERLAP metrics and the totals behind them.

        Keys: ``auroc``, ``auroc_error_bound``, ``sensitivity``, ``fa_per_24h``, ``precision``,
        ``n_reference_events``, ``n_hypothesis_events``, ``n_false_alarms``, ``hours``,
        ``n_recordings``.
        """
        counts = sum((r.counts for r in self.recordings), EventCounts())
        duration_s = sum(r.duration_s for r in self.recordings)
        auroc, auroc_error_bound = self._auroc.compute()
        return {
            "auroc": auroc,
            "auroc_error_bound": auroc_error_bound,
            **event_metrics(counts, duration_s),
            "n_reference_events": counts.n_reference,
            "n_hypothesis_events": counts.n_hypothesis,
            "n_false_alarms": counts.n_false_alarms,
            "hours": duration_s / 3600.0,
            "n_recordings": len(self.recordings),
        }

    def write_hypotheses(self, out_dir: Path) -> list[Path]:
        """One ``<bname>.csv_bi`` per recording (recordings without events included)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for result in self.recordings:
            path = out_dir / f"{result.bname}.csv_bi"
            write_csv_bi(path, result.bname, result.duration_s, result.hypothesis)
            paths.append(path)
        return paths


__all__ = [
    "Event",
    "EventCounts",
    "PostProcessConfig",
    "RecordingResult",
    "ValidationAccumulator",
    "bname_from_npz",
    "detect_events",
    "event_metrics",
    "format_csv_bi",
    "mask_to_events",
    "score_overlap",
    "write_csv_bi",
]
