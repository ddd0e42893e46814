"""Validation and evaluation memory at TUSZ dev's size: the streaming accumulator against the
method it replaced.

A synthetic validation set is streamed the way ``training._validate`` streams one: recordings of
realistic lengths (log-normal, median 8 min, mean ~13 min, 1 min to 4 h, plus one of 6 h) at
256 Hz, 30 % of them with 1-3 seizures of 10-120 s, as float32 probability windows of 15,360
samples every 2,560, 16 windows a batch, generated on the fly. Measured, each in a process of
its own: peak RSS above the RSS the process had just before the stream (the high-water mark is
reset through ``/proc/self/clear_refs``), and wall time.

* **after**: :class:`RecordingStream` into :class:`ValidationAccumulator` (one recording's
  timeline at a time, each scored against its reference by NEDC OVERLAP and TAES and SzCORE,
  binned AUROC), at one threshold as training validates, on the full stream (default 400 M
  samples, TUSZ dev has 398 M) and on the smaller one;
* **sweep**: the same at the 19 thresholds of ``model_evaluation``'s operating-point sweep
  (:data:`SWEEP_THRESHOLDS`), on the full stream;
* **before**: the method this replaced: a recording's windows buffered until it is complete,
  every stitched timeline kept (float32 probabilities, bool labels) and the exact AUROC sorted
  over all of them at the end; on the smaller stream (default 20 M samples), extrapolated per
  sample to TUSZ dev.

Run: ``.venv/bin/python benchmarks/bench_validation_memory.py [--samples 4e8] [--old-samples 2e7]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.references import Reference, SplitReferences
from eeg_assets.lib.model.auroc import sample_auroc
from eeg_assets.lib.model.evaluation import ValidationAccumulator
from eeg_assets.lib.model.hypotheses import detect_events
from eeg_assets.lib.model.operating_point import SWEEP_THRESHOLDS
from eeg_assets.lib.model.stitching import RecordingStream, stitch_recording, timeline_length
from eeg_assets.lib.scoring import EventCounts, score_overlap

FS, WINDOW, STRIDE, BATCH = 256, 15360, 2560, 16
TUSZ_DEV_SAMPLES = 398e6
LONGEST_S = 6 * 3600
POOL = 61   # distinct window rows per class; a prime so rows do not line up with batches


class SyntheticSplit:
    """Recordings (name, n_windows, seizure sample spans) and their windows, from one seed."""

    def __init__(self, total_samples: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.recordings: list[tuple[str, int, list[tuple[int, int]]]] = []
        samples = 0
        while samples < total_samples:
            index = len(self.recordings)
            duration_s = LONGEST_S if index == 10 else float(
                np.clip(rng.lognormal(np.log(8 * 60), 1.0), 60, 4 * 3600))
            n_windows = (int(duration_s * FS) - WINDOW) // STRIDE + 1
            length = timeline_length(n_windows, WINDOW, STRIDE)
            seizures = []
            if rng.random() < 0.3:
                for _ in range(rng.integers(1, 4)):
                    span = int(rng.uniform(10, 120) * FS)
                    start = int(rng.integers(0, max(1, length - span)))
                    seizures.append((start, min(length, start + span)))
            self.recordings.append((f"syn{index:05d}_s001_t000_windows.npz", n_windows, seizures))
            samples += length
        self.samples = samples
        # Per-sample probabilities as a model gives them: log-odds normal per class.
        background = rng.normal(-5, 2, (POOL, WINDOW))
        seizure = rng.normal(1, 2, (POOL, WINDOW))
        self._background = (1 / (1 + np.exp(-background))).astype(np.float32)
        self._seizure = (1 / (1 + np.exp(-seizure))).astype(np.float32)

    def listing(self) -> list[tuple[str, int]]:
        return [(name, n) for name, n, _ in self.recordings]

    def references(self) -> SplitReferences:
        """The seizures in seconds; each recording 5 s longer than its windows (the tail)."""
        return SplitReferences(tuple(
            Reference(name.removesuffix("_windows.npz"),
                      timeline_length(n, WINDOW, STRIDE) / FS + 5.0,
                      tuple((a / FS, b / FS) for a, b in seizures), name)
            for name, n, seizures in self.recordings))

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(probs (b, WINDOW) float32, labels (b, WINDOW) bool)`` in recording order."""
        probs = np.empty((BATCH, WINDOW), np.float32)
        labels = np.zeros((BATCH, WINDOW), bool)
        filled, row = 0, 0
        for _name, n_windows, seizures in self.recordings:
            for i in range(n_windows):
                start = i * STRIDE
                labels[filled] = False
                for onset, offset in seizures:
                    lo, hi = max(onset - start, 0), min(offset - start, WINDOW)
                    if lo < hi:
                        labels[filled, lo:hi] = True
                np.copyto(probs[filled], self._background[row % POOL])
                np.copyto(probs[filled], self._seizure[row % POOL], where=labels[filled])
                filled, row = filled + 1, row + 1
                if filled == BATCH:
                    yield probs, labels
                    filled = 0
        if filled:
            yield probs[:filled], labels[:filled]


class KeepEverything:
    """The method before the streaming accumulator, kept here to measure it."""

    def __init__(self, listing: list[tuple[str, int]]):
        self._pending = list(reversed(listing))
        self._windows: list[tuple[np.ndarray, np.ndarray]] = []
        self._filled = 0
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.counts = EventCounts()

    def add(self, probs: np.ndarray, labels: np.ndarray) -> None:
        start = 0
        while start < len(probs):
            name, n_windows = self._pending[-1]
            take = min(n_windows - self._filled, len(probs) - start)
            # Copies: the generator reuses its batch arrays (the old loader made new ones).
            self._windows.append((probs[start: start + take].copy(),
                                  labels[start: start + take].copy()))
            self._filled += take
            start += take
            if self._filled == n_windows:
                timeline, mask = stitch_recording(np.concatenate([p for p, _ in self._windows]),
                                                  np.concatenate([m for _, m in self._windows]),
                                                  STRIDE)
                edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
                reference = list(zip(np.flatnonzero(edges == 1) / FS,
                                     np.flatnonzero(edges == -1) / FS))
                self.counts += score_overlap(
                    reference, [(e.start_s, e.stop_s) for e in detect_events(timeline, FS)],
                    mask.size / FS)
                self._probs.append(timeline)
                self._labels.append(mask)
                self._windows, self._filled = [], 0
                self._pending.pop()

    def auroc(self) -> float:
        return sample_auroc(np.concatenate(self._probs), np.concatenate(self._labels))


def _rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(method: str, samples: float) -> dict:
    """Stream one synthetic split through ``method``; runs in a process of its own."""
    split = SyntheticSplit(samples)
    baseline = _rss_bytes("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")   # reset the high-water mark to now
        high_water = lambda: _rss_bytes("VmHWM")         # noqa: E731
    except OSError:
        high_water = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731
    start = time.perf_counter()
    if method in ("after", "sweep"):
        accumulator = ValidationAccumulator(FS, split.references(), thresholds=(
            SWEEP_THRESHOLDS if method == "sweep" else ()))
        stream = RecordingStream(split.listing(), STRIDE, accumulator.add_timeline)
        for probs, labels in split.batches():
            stream.add(probs, labels)
        stream.finish()
        metrics = accumulator.metrics()
        auroc, bound = metrics["auroc"], metrics["auroc_error_bound"]
        n_reference = metrics["overlap_targets"]
    else:
        old = KeepEverything(split.listing())
        for probs, labels in split.batches():
            old.add(probs, labels)
        auroc, bound, n_reference = old.auroc(), 0.0, old.counts.targets
    return {"method": method, "samples": split.samples, "recordings": len(split.recordings),
            "peak_bytes": high_water() - baseline, "seconds": time.perf_counter() - start,
            "auroc": auroc, "bound": bound, "n_reference": n_reference}


def _in_child(method: str, samples: float) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", method, "--samples", str(samples)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=float, default=400e6)
    parser.add_argument("--old-samples", type=float, default=20e6)
    parser.add_argument("--child", choices=["after", "before", "sweep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.samples)))
        return
    runs = [_in_child("before", args.old_samples), _in_child("after", args.old_samples),
            _in_child("after", args.samples), _in_child("sweep", args.samples)]
    print(f"{'method':8s} {'samples':>9s} {'recordings':>10s} {'peak RSS':>10s} {'B/sample':>9s} "
          f"{'wall s':>7s} {'ns/sample':>9s} {'AUROC':>9s} {'bound':>8s}")
    for run in runs:
        print(f"{run['method']:8s} {run['samples'] / 1e6:8.1f}M {run['recordings']:10d} "
              f"{run['peak_bytes'] / 1e9:8.3f}GB {run['peak_bytes'] / run['samples']:9.2f} "
              f"{run['seconds']:7.1f} {run['seconds'] / run['samples'] * 1e9:9.1f} "
              f"{run['auroc']:9.6f} " + ("   exact" if run["method"] == "before"
                                           else f"{run['bound']:8.1e}"))
    before, same, full, sweep = runs
    print(f"same {before['samples'] / 1e6:.0f} M-sample stream: |binned - exact AUROC| = "
          f"{abs(same['auroc'] - before['auroc']):.1e} (bound {same['bound']:.1e}); "
          f"reference events {same['n_reference']} = {before['n_reference']}")
    extrapolated = before["peak_bytes"] / before["samples"] * TUSZ_DEV_SAMPLES
    print(f"TUSZ dev ({TUSZ_DEV_SAMPLES / 1e6:.0f} M samples): before {extrapolated / 1e9:.1f} GB "
          f"(extrapolated from {before['samples'] / 1e6:.0f} M), after "
          f"{full['peak_bytes'] / 1e9:.3f} GB (measured at {full['samples'] / 1e6:.0f} M): "
          f"{extrapolated / full['peak_bytes']:.0f}x less; time per sample "
          f"{before['seconds'] / before['samples'] * 1e9:.0f} ns before, "
          f"{full['seconds'] / full['samples'] * 1e9:.0f} ns after")
    print(f"sweep of {len(SWEEP_THRESHOLDS)} thresholds (model_evaluation): "
          f"{sweep['peak_bytes'] / 1e9:.3f} GB, {sweep['seconds']:.0f} s "
          f"({sweep['seconds'] / sweep['samples'] * 1e9:.0f} ns per sample)")


if __name__ == "__main__":
    main()
