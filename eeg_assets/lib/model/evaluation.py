"""Turn per-window predictions into per-recording timelines, events, metrics and ``.csv_bi`` files.

Pure numpy; used by training (validation every epoch) and by checkpoint evaluation.

Conventions
-----------
* **Stitching.** Window ``i`` of a recording covers samples ``[i*stride, i*stride + window)``.
  A sample's probability is the mean over every window covering it; its label is taken from any
  covering window (the cache writes them from one mask, so they agree). The timeline has
  ``(n - 1) * stride + window`` samples: the tail the cache dropped is not evaluated.
* **Sample AUROC** is computed over the stitched timelines of all recordings together (the
  Mann-Whitney statistic, ties counted half).
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
  denominator is zero is NaN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.npzio import NPZ_SUFFIX
from eeg_assets.lib.files import write_bytes_atomic

SECONDS_PER_DAY = 24 * 3600.0


@dataclass(frozen=True)
class PostProcessConfig:
    """Probabilities -> events (see the module docstring for the defaults' reasons)."""

    threshold: float = 0.5
    merge_gap_s: float = 2.0
    min_event_s: float = 2.0


@dataclass(frozen=True)
class Event:
    """A seizure interval ``[start_s, stop_s)`` on the recording's timeline."""

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
    return 0 if n_windows == 0 else (n_windows - 1) * stride + window


def stitch_windows(window_values: np.ndarray, stride: int) -> np.ndarray:
    """Average overlapping ``(n, window)`` values onto the recording timeline (float32)."""
    n, window = window_values.shape
    total = np.zeros(timeline_length(n, window, stride), dtype=np.float64)
    coverage = np.zeros_like(total)
    for i in range(n):
        total[i * stride: i * stride + window] += window_values[i]
        coverage[i * stride: i * stride + window] += 1.0
    if (coverage == 0).any():
        raise ValueError(f"stride {stride} > window {window} leaves samples uncovered")
    return (total / coverage).astype(np.float32)


def stitch_labels(window_labels: np.ndarray, stride: int) -> np.ndarray:
    """Boolean timeline from ``(n, window)`` label rows; each sample from one covering window."""
    n, window = window_labels.shape
    if stride > window:
        raise ValueError(f"stride {stride} > window {window} leaves samples uncovered")
    timeline = np.zeros(timeline_length(n, window, stride), dtype=bool)
    for i in range(n):
        timeline[i * stride: i * stride + window] = window_labels[i] > 0.5
    return timeline


def sample_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels``; NaN if one class is absent.

    Equals the probability that a random positive scores above a random negative, ties counting
    one half, computed by sorting once and walking groups of equal scores.
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in size")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    del order
    group_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    pos_per_group = np.add.reduceat(sorted_labels.astype(np.int64), group_starts)
    size_per_group = np.diff(np.r_[group_starts, labels.size])
    neg_per_group = size_per_group - pos_per_group
    negatives_below = np.cumsum(neg_per_group) - neg_per_group
    wins = np.sum(pos_per_group * (negatives_below + 0.5 * neg_per_group), dtype=np.float64)
    return float(wins / (n_pos * float(n_neg)))


def _runs(mask: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start/stop (exclusive) sample indices of the True runs of a boolean array."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def mask_to_events(mask: np.ndarray, fs: float) -> list[Event]:
    """Reference events: every run of a boolean label timeline, unfiltered."""
    return [Event(start / fs, stop / fs) for start, stop in _runs(np.asarray(mask, dtype=bool))]


def detect_events(probs: np.ndarray, fs: float,
                  post: PostProcessConfig = PostProcessConfig()) -> list[Event]:
    """Hypothesis events from a probability timeline: threshold, merge gaps, drop short ones."""
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
    """Sensitivity, false alarms per 24 h and precision from summed counts."""
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
    """Collects whole recordings' window predictions and reports dataset-level metrics.

    The stitched timelines are kept (float32 probabilities, boolean labels) because AUROC needs
    every sample at once: about 5 bytes per sample, ~1.8 GB for the 435 h of TUSZ dev.
    """

    def __init__(self, fs: float, stride: int, post: PostProcessConfig = PostProcessConfig()):
        self.fs = fs
        self.stride = stride
        self.post = post
        self.recordings: list[RecordingResult] = []
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def add_recording(self, npz_name: str, window_probs: np.ndarray,
                      window_labels: np.ndarray) -> RecordingResult:
        if window_probs.shape != window_labels.shape:
            raise ValueError(f"{npz_name}: probabilities {window_probs.shape} and labels "
                             f"{window_labels.shape} differ")
        probs = stitch_windows(window_probs, self.stride)
        labels = stitch_labels(window_labels, self.stride)
        reference = mask_to_events(labels, self.fs)
        hypothesis = detect_events(probs, self.fs, self.post)
        result = RecordingResult(npz_name, probs.size / self.fs, reference, hypothesis,
                                 score_overlap(reference, hypothesis))
        self.recordings.append(result)
        self._probs.append(probs)
        self._labels.append(labels)
        return result

    def metrics(self) -> dict[str, float]:
        """AUROC, OVERLAP metrics and the totals behind them (keys without a ``val_`` prefix)."""
        counts = sum((r.counts for r in self.recordings), EventCounts())
        duration_s = sum(r.duration_s for r in self.recordings)
        probs = np.concatenate(self._probs) if self._probs else np.zeros(0, np.float32)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, bool)
        return {
            "auroc": sample_auroc(probs, labels),
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
    "sample_auroc",
    "score_overlap",
    "stitch_labels",
    "stitch_windows",
    "timeline_length",
    "write_csv_bi",
]
