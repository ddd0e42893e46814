"""Turn per-window predictions into per-recording timelines, events, metrics and ``.csv_bi`` files.

Pure numpy; used by training (validation every epoch) and by checkpoint evaluation.

Conventions
-----------
* **Stitching.** Window ``i`` of a recording covers samples ``[i*stride, i*stride + window)``.
  A sample's probability is the mean over every window covering it; its label is taken from any
  covering window (the cache writes them from one mask, so they agree). The timeline has
  ``(n - 1) * stride + window`` samples: the tail the cache dropped is not evaluated.
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
  (~17 B per sample while it is stitched), then only its events and counts are kept, and the
  AUROC histograms (39 MB) whatever the split's size.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.files import write_bytes_atomic
from eeg_assets.lib.model.auroc import BinnedAUROC

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


def timeline_length(n_windows: int, window: int, stride: int) -> int:
    """Samples covered by ``n_windows`` windows of ``window`` samples every ``stride`` samples."""
    return 0 if n_windows == 0 else (n_windows - 1) * stride + window


class RecordingTimeline:
    """One recording's stitched timeline, filled by its windows arriving in order, in batches.

    Parameters
    ----------
    n_windows : int
        Windows the recording has.
    window, stride : int
        Window length and hop in samples; ``stride <= window`` so that every sample is covered.
    """

    def __init__(self, n_windows: int, window: int, stride: int):
        if stride > window:
            raise ValueError(f"stride {stride} > window {window} leaves samples uncovered")
        self.n_windows, self.window, self.stride = n_windows, window, stride
        self.n_added = 0
        length = timeline_length(n_windows, window, stride)
        self._sums = np.zeros(length, dtype=np.float64)
        self._coverage = np.zeros(length, dtype=np.float32)
        self._labels = np.zeros(length, dtype=bool)

    @property
    def complete(self) -> bool:
        return self.n_added == self.n_windows

    def add(self, window_probs: np.ndarray, window_labels: np.ndarray) -> None:
        """Append the next windows: ``(k, window)`` probabilities and labels (> 0.5 is seizure)."""
        if window_probs.shape != window_labels.shape or window_probs.shape[1:] != (self.window,):
            raise ValueError(f"windows {window_probs.shape} and labels {window_labels.shape} "
                             f"must both be (k, {self.window})")
        if self.n_added + len(window_probs) > self.n_windows:
            raise ValueError(f"{self.n_added + len(window_probs)} windows added to a recording "
                             f"of {self.n_windows}")
        for probs, labels in zip(window_probs, window_labels):
            span = slice(self.n_added * self.stride, self.n_added * self.stride + self.window)
            self._sums[span] += probs
            self._coverage[span] += 1.0
            self._labels[span] = labels > 0.5
            self.n_added += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities float32 (L,), labels bool (L,))`` once every window was added."""
        if not self.complete:
            raise ValueError(f"only {self.n_added} of {self.n_windows} windows were added")
        return (self._sums / self._coverage).astype(np.float32), self._labels


def stitch_recording(window_probs: np.ndarray, window_labels: np.ndarray,
                     stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Stitch a whole recording's windows onto its timeline (see the module's conventions).

    Parameters
    ----------
    window_probs, window_labels : np.ndarray, shape (n_windows, window)
        Per-sample seizure probabilities and labels (> 0.5 is seizure) of consecutive windows.
    stride : int
        Hop between window starts, in samples.

    Returns
    -------
    probs : np.ndarray, float32, shape ((n_windows - 1) * stride + window,)
    labels : np.ndarray, bool, same shape
    """
    timeline = RecordingTimeline(len(window_probs), window_probs.shape[1], stride)
    timeline.add(window_probs, window_labels)
    return timeline.result()


def _runs(mask: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start/stop (exclusive) sample indices of the True runs of a boolean array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def mask_to_events(mask: np.ndarray, fs: float) -> list[Event]:
    """Reference events: every run of a boolean label timeline ``(L,)`` at ``fs`` Hz, unfiltered."""
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
    """OVERLAP counts of one recording's hypothesis events against its reference events."""
    detected = sum(any(ref.overlaps(hyp) for hyp in hypothesis) for ref in reference)
    false_alarms = sum(not any(hyp.overlaps(ref) for ref in reference) for hyp in hypothesis)
    return EventCounts(n_reference=len(reference), n_detected=detected,
                       n_hypothesis=len(hypothesis), n_false_alarms=false_alarms)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def event_metrics(counts: EventCounts, duration_s: float) -> dict[str, float]:
    """Sensitivity, false alarms per 24 h and precision from counts summed over ``duration_s``."""
    return {
        "sensitivity": _ratio(counts.n_detected, counts.n_reference),
        "fa_per_24h": _ratio(counts.n_false_alarms * SECONDS_PER_DAY, duration_s),
        "precision": _ratio(counts.n_hypothesis - counts.n_false_alarms, counts.n_hypothesis),
    }


def format_csv_bi(bname: str, duration_s: float, events: list[Event]) -> str:
    """The NEDC ``csv_v1.0.0`` term-based binary annotation text for one recording."""
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


class RecordingStream:
    """Feeds recording-ordered window predictions, in batches of any size, to an accumulator.

    Each batch is stitched into the current recording's :class:`RecordingTimeline` at once, so
    only one recording's timeline is held, never its windows.

    Parameters
    ----------
    recordings : sequence of (npz name, n_windows)
        The recordings in the order their windows arrive.
    accumulator : ValidationAccumulator
        Receives each recording when its last window has arrived.
    """

    def __init__(self, recordings: Sequence[tuple[str, int]], accumulator: ValidationAccumulator):
        self.accumulator = accumulator
        self._pending = deque((name, n) for name, n in recordings if n > 0)
        self._timeline: RecordingTimeline | None = None

    def add(self, window_probs: np.ndarray, window_labels: np.ndarray) -> None:
        """Next ``(batch, window)`` probabilities and labels, continuing where the last stopped."""
        start = 0
        while start < len(window_probs):
            if not self._pending:
                raise ValueError(
                    "the validation dataset yielded more windows than recordings() lists")
            name, n_windows = self._pending[0]
            if self._timeline is None:
                self._timeline = RecordingTimeline(n_windows, window_probs.shape[1],
                                                   self.accumulator.stride)
            take = min(n_windows - self._timeline.n_added, len(window_probs) - start)
            self._timeline.add(window_probs[start: start + take],
                               window_labels[start: start + take])
            start += take
            if self._timeline.complete:
                self.accumulator.add_timeline(name, *self._timeline.result())
                self._timeline = None
                self._pending.popleft()

    def finish(self) -> None:
        """Raise unless every listed recording was completed."""
        if self._pending:
            raise ValueError(f"the validation dataset ended with {len(self._pending)} recordings "
                             f"incomplete (first: {self._pending[0][0]})")


__all__ = [
    "Event",
    "EventCounts",
    "PostProcessConfig",
    "RecordingResult",
    "RecordingStream",
    "RecordingTimeline",
    "ValidationAccumulator",
    "bname_from_npz",
    "detect_events",
    "event_metrics",
    "format_csv_bi",
    "mask_to_events",
    "score_overlap",
    "stitch_recording",
    "timeline_length",
    "write_csv_bi",
]
