"""Per-window predictions -> one recording's sample timeline (the cache's window geometry).

Window ``i`` of a recording covers samples ``[i*stride, i*stride + window)``. A sample's
probability is the mean over every window covering it; its label is taken from a covering window
(the cache writes them from one mask, so they agree). The timeline has
``(n - 1) * stride + window`` samples: the tail the cache dropped is not evaluated. A timeline
takes 13 B per sample while it is filled (float64 sums, float32 coverage, bool labels).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import numpy as np


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
        self._probs: np.ndarray | None = None

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
        if self._probs is None:
            np.divide(self._sums, self._coverage, out=self._sums)
            self._probs = self._sums.astype(np.float32)
            self._sums = self._coverage = None    # the float64 sums are 2x the result
        return self._probs, self._labels


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


class RecordingStream:
    """Stitches recording-ordered window predictions, in batches of any size, per recording.

    Each batch is added to the current recording's :class:`RecordingTimeline` at once, so only
    one recording's timeline is held, never its windows.

    Parameters
    ----------
    recordings : sequence of (npz name, n_windows)
        The recordings in the order their windows arrive.
    stride : int
        Hop between window starts in samples.
    on_recording : callable
        ``on_recording(npz_name, probs (L,) float32, labels (L,) bool)`` once a recording's last
        window has arrived, e.g. :meth:`ValidationAccumulator.add_timeline`.
    """

    def __init__(self, recordings: Sequence[tuple[str, int]], stride: int,
                 on_recording: Callable[[str, np.ndarray, np.ndarray], object]):
        self.stride = stride
        self.on_recording = on_recording
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
                                                   self.stride)
            take = min(n_windows - self._timeline.n_added, len(window_probs) - start)
            self._timeline.add(window_probs[start: start + take],
                               window_labels[start: start + take])
            start += take
            if self._timeline.complete:
                self.on_recording(name, *self._timeline.result())
                self._timeline = None
                self._pending.popleft()

    def finish(self) -> None:
        """Raise unless every listed recording was completed."""
        if self._pending:
            raise ValueError(f"the validation dataset ended with {len(self._pending)} recordings "
                             f"incomplete (first: {self._pending[0][0]})")


__all__ = ["RecordingStream", "RecordingTimeline", "stitch_recording", "timeline_length"]
