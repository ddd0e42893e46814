"""Cache-builder benchmark: ``build_split`` against the predecessor's naive recipe, same inputs.

Writes TUSZ-like recordings with pyedflib into a temporary folder (default ~2 EEG-hours: 20-30 min
recordings alternating 250 Hz and 400 Hz, 33 signals each: the 19 EEG channels, 11 extra signals
and 3 side channels at 1 Hz), then measures, each in a fresh subprocess and a fresh cache folder:

* ``build_split`` on 1 worker and on all cores (``workers=os.cpu_count()``);
* the naive baseline on 1 worker and on all cores (a process pool over files): what the
  predecessor did -- ``scipy.signal.resample`` (one FFT of the whole recording per channel),
  causal ``lfilter`` with ``butter``/``iirnotch`` in (b, a) form, the whole windows array in
  memory and ``np.savez_compressed``;
* one 2-hour 512 Hz recording on 1 worker, for the peak memory of one worker (both builders).

Peak RSS per worker is the worker process's own high-water mark (``VmHWM``): the measuring
subprocess itself when it builds in-process (1 worker), else the largest of its pool processes
(see :func:`_poll_worker_peaks`). Nothing is asserted; the figures, the ratios and the targets
(<= 1.0 s per EEG-hour on all cores, >= 8x faster than naive, < 1.5 GB per worker for 2 h at
512 Hz) are printed. Imports are not timed; pool start-up is. Both pools fork from the measuring
process, which is single-threaded like the CLI, so their workers start with scipy imported.

One EEG-hour is ~430 MB of uncompressed windows, so 1.0 s per EEG-hour also means ~430 MB/s of
writes. The NPZs are not fsynced: a benchmark-sized output fits in the page cache, while a
full-corpus build is bounded by the cache disk's sustained write rate.

Run by hand: ``python benchmarks/bench_build.py [--hours 2] [--workers N] [--dir /tmp]``.
The temporary folder (gigabytes) is removed at the end, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from eeg_assets.synthetic.edf_writer import (
    TUSZ_EXTRA_LABELS, TUSZ_SIDE_LABELS, Event, noise_generator, tusz_dir, write_recording,
)
from proc_stats import children, vm_hwm_kb  # a sibling module of this script

WINDOW, STRIDE, TARGET_FS = 15360, 2560, 256
TUSZ_HOURS = 1470
SEIZURE_LABELS = {"seiz", "gnsz", "fnsz", "cpsz", "absz", "spsz", "tcsz", "tnsz", "mysz"}
PINNED = ["FP1", "F3", "C3", "P3", "F7", "T3", "T5", "O1", "FZ",
          "CZ", "PZ", "FP2", "F4", "C4", "P4", "F8", "T4", "T6", "O2"]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def write_corpus(root: Path, hours: float) -> float:
    """Recordings of 25/30/20 min alternating 250/400 Hz until ``hours``; returns EEG seconds."""
    minutes = [25, 30, 20]
    total, i = 0.0, 0
    while total < hours * 3600 - 1:
        duration = min(minutes[i % 3] * 60, int(round(hours * 3600 - total)))
        duration = max(duration, 120)
        patient = "aaaa" + "".join(chr(97 + (i // 26 ** k) % 26) for k in (3, 2, 1, 0))
        write_recording(tusz_dir(root, patient), f"{patient}_s001_t000",
                        fs=(250, 400)[i % 2], duration_s=duration,
                        extra_labels=TUSZ_EXTRA_LABELS, side_labels=TUSZ_SIDE_LABELS,
                        generator=noise_generator(seed=i),
                        events=[Event(duration * 0.3, duration * 0.3 + 45.5, "fnsz"),
                                Event(duration * 0.7, duration * 0.7 + 30.25, "gnsz")])
        total += duration
        i += 1
    return total


# --------------------------------------------------------------------------------------------
# The naive baseline (the predecessor's recipe)
# --------------------------------------------------------------------------------------------

def _naive_label(label: str) -> str:
    name = label.replace(" ", "").upper()
    name = name[3:] if name.startswith("EEG") else name
    for suffix in ("-REF", "-LE", "-AR"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}.get(name, name)


def naive_build_file(edf_path: str, out_dir: str) -> int:
    import pyedflib
    from scipy import signal

    text = Path(edf_path).with_suffix(".csv_bi").read_text()
    rows = [line.split(",") for line in text.splitlines() if line and not line.startswith("#")]
    columns = rows[0]
    events = [(float(r[columns.index("start_time")]), float(r[columns.index("stop_time")]))
              for r in rows[1:] if r[columns.index("label")] in SEIZURE_LABELS]
    reader = pyedflib.EdfReader(edf_path)
    try:
        names = [_naive_label(label) for label in reader.getSignalLabels()]
        channels = []
        b_band, a_band = signal.butter(3, [0.5, 120.0], btype="band", fs=TARGET_FS)
        b_notch, a_notch = signal.iirnotch(60.0, 30.0, fs=TARGET_FS)
        for name in PINNED:
            index = names.index(name)
            x = reader.readSignal(index)
            fs = reader.getSampleFrequency(index)
            x = signal.resample(x, int(round(len(x) * TARGET_FS / fs)))  # FFT, whole recording
            x = signal.lfilter(b_band, a_band, x)                          # causal
            x = signal.lfilter(b_notch, a_notch, x)
            channels.append(x)
    finally:
        reader.close()
    data = np.stack(channels)
    data = (data - data.mean(axis=1, keepdims=True)) / (data.std(axis=1, keepdims=True) + 1e-8)
    data = np.nan_to_num(np.clip(data, -10, 10)).astype(np.float32)
    n = data.shape[1]
    mask = np.zeros(n, np.float32)
    for start, stop in events:
        mask[int(start * TARGET_FS): int(stop * TARGET_FS)] = 1
    starts = range(0, n - WINDOW + 1, STRIDE)
    windows = np.stack([data[:, s: s + WINDOW] for s in starts])
    labels = np.stack([mask[s: s + WINDOW] for s in starts])
    np.savez_compressed(Path(out_dir) / f"{Path(edf_path).stem}_windows.npz",
                        windows=windows, labels=labels)
    return len(windows)


def naive_build(data_dir: Path, cache_dir: Path, workers: int) -> int:
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted(str(p) for p in data_dir.rglob("*.edf"))
    paths.sort(key=lambda p: os.path.getsize(p), reverse=True)
    if workers == 1:
        return sum(naive_build_file(p, str(cache_dir)) for p in paths)
    import multiprocessing
    with ProcessPoolExecutor(max_workers=min(workers, len(paths)),
                             mp_context=multiprocessing.get_context("fork")) as pool:
        return sum(pool.map(naive_build_file, paths, [str(cache_dir)] * len(paths)))


# --------------------------------------------------------------------------------------------
# Measuring (one subprocess per measurement)
# --------------------------------------------------------------------------------------------

def _poll_worker_peaks(process: subprocess.Popen) -> int:
    """Largest ``VmHWM`` (kB) among the measured process's children (its pool workers) until it
    exits; 0 when it had none.

    Polled from this process, so that the measured one runs no extra thread (``build_split``
    starts its workers with ``fork`` only in a single-threaded process, as the CLI is). Not
    ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: Linux carries the parent's RSS at fork time into a
    child's ``ru_maxrss`` across exec, so a big parent inflates every child's figure.
    """
    peaks: dict[int, int] = {}
    while process.poll() is None:
        for pid in children(process.pid):
            peaks[pid] = max(peaks.get(pid, 0), vm_hwm_kb(pid))
        time.sleep(0.05)
    return max(peaks.values(), default=0)


def child(builder: str, data_dir: Path, cache_dir: Path, workers: int) -> None:
    import pyedflib  # noqa: F401 - imports are not timed, for either builder
    from scipy import signal  # noqa: F401

    from eeg_assets.lib.cache.build import build_split

    started = time.perf_counter()
    if builder == "ours":
        report = build_split(data_dir, cache_dir, "bench", workers=workers, progress=None,
                             log=lambda line: None)
        if report.quarantined:
            raise SystemExit(f"quarantined: {[e.reason for e in report.quarantined]}")
        windows = report.windows_built
    else:
        windows = naive_build(data_dir, cache_dir, workers)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in cache_dir.glob("*.npz"))
    print("RESULT " + json.dumps({
        "seconds": seconds, "windows": windows, "bytes": size, "own_rss_kb": vm_hwm_kb(),
    }), flush=True)


def measure(builder: str, data_dir: Path, cache_dir: Path, workers: int) -> dict:
    shutil.rmtree(cache_dir, ignore_errors=True)
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", builder, "--data", str(data_dir),
         "--cache", str(cache_dir), "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker_peak_kb = _poll_worker_peaks(process)
    stdout, stderr = process.communicate()
    shutil.rmtree(cache_dir, ignore_errors=True)  # gigabytes; only the numbers are kept
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"{builder} x{workers} failed:\n{stdout}\n{stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    # the worker's peak: its largest pool process, or the measured process itself when it built
    # in-process (build_split does with one worker or one file to build)
    result["worker_rss_kb"] = worker_peak_kb or result["own_rss_kb"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="EEG-hours of the mixed corpus")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="'all cores' (default: os.cpu_count())")
    parser.add_argument("--dir", default=None, help="parent of the temporary folder")
    parser.add_argument("--skip-512", action="store_true", help="skip the 2-hour 512 Hz run")
    parser.add_argument("--child", choices=["ours", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.data), Path(args.cache), args.workers)
        return

    root = Path(tempfile.mkdtemp(prefix="bench_build_", dir=args.dir))
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"(removed {root})")


def run(args, root: Path) -> None:
    all_cores = args.workers
    print(f"machine: {os.cpu_count()} cores; 'all cores' = {all_cores} workers; python "
          f"{sys.version.split()[0]}, numpy {np.__version__}")
    started = time.perf_counter()
    eeg_s = write_corpus(root / "mix", args.hours)
    n_files = len(list((root / "mix").rglob("*.edf")))
    edf_mb = sum(p.stat().st_size for p in (root / "mix").rglob("*.edf")) / 1e6
    print(f"corpus: {n_files} recordings, {eeg_s / 3600:.2f} EEG-hours (250/400 Hz, 33 signals), "
          f"{edf_mb:.0f} MB of EDF, written in {time.perf_counter() - started:.1f} s")

    rows = []
    mix = f"{eeg_s / 3600:.2g} h mix"
    for builder in ("ours", "naive"):
        for workers in sorted({1, all_cores}):
            print(f"  running {builder} x{workers} ...", flush=True)
            result = measure(builder, root / "mix", root / "cache", workers)
            rows.append((mix, builder, workers, eeg_s, result))

    if not args.skip_512:
        long_dir = root / "long512"
        write_recording(tusz_dir(long_dir, "aaaazzzz"), "aaaazzzz_s001_t000", fs=512,
                        duration_s=7200, extra_labels=TUSZ_EXTRA_LABELS,
                        side_labels=TUSZ_SIDE_LABELS, generator=noise_generator(seed=512),
                        events=[Event(1000.5, 1100.25, "tcsz")])
        shutil.rmtree(root / "mix")  # disk: the mixed corpus is done
        for builder in ("ours", "naive"):
            print(f"  running {builder} x1 on 2 h at 512 Hz ...", flush=True)
            result = measure(builder, long_dir, root / "cache", 1)
            rows.append(("2 h @ 512 Hz", builder, 1, 7200.0, result))

    print()
    header = (f"{'input':<14} {'builder':<7} {'workers':>7} {'wall s':>8} {'s/EEG-h':>8} "
              f"{'peak RSS/worker MB':>19} {'windows':>8} {'output MB':>10}")
    print(header)
    print("-" * len(header))
    for label, builder, workers, seconds_eeg, r in rows:
        print(f"{label:<14} {builder:<7} {workers:>7} {r['seconds']:>8.1f} "
              f"{r['seconds'] / (seconds_eeg / 3600):>8.2f} {r['worker_rss_kb'] / 1024:>19.0f} "
              f"{r['windows']:>8} {r['bytes'] / 1e6:>10.0f}")

    def find(label, builder, workers):
        return next(r for lab, b, w, _, r in rows if (lab, b, w) == (label, builder, workers))

    print()
    for workers in sorted({1, all_cores}):
        ours, naive = find(mix, "ours", workers), find(mix, "naive", workers)
        print(f"speedup vs naive, {workers} worker(s): {naive['seconds'] / ours['seconds']:.1f}x "
              f"(target >= 8x)")
    per_hour = find(mix, "ours", all_cores)["seconds"] / (eeg_s / 3600)
    print(f"ours on all cores ({all_cores}): {per_hour:.2f} s per EEG-hour (target <= 1.0)")
    mb_per_hour = find(mix, "ours", all_cores)["bytes"] / 1e6 / (eeg_s / 3600)
    print(f"full TUSZ ({TUSZ_HOURS} EEG-hours) at this rate: {TUSZ_HOURS * per_hour / 60:.0f} min, "
          f"writing {TUSZ_HOURS * mb_per_hour / 1e3:.0f} GB; the cache disk must sustain "
          f"{mb_per_hour / per_hour:.0f} MB/s for that (this run's output fit in the page cache)")
    if not args.skip_512:
        rss = find("2 h @ 512 Hz", "ours", 1)["worker_rss_kb"] / 1024
        naive_rss = find("2 h @ 512 Hz", "naive", 1)["worker_rss_kb"] / 1024
        print(f"peak RSS of one worker, 2 h at 512 Hz: ours {rss:.0f} MB, naive {naive_rss:.0f} MB "
              f"(target < 1536 MB)")


if __name__ == "__main__":
    main()
