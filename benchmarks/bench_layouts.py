"""Cache-layout benchmark: the ``windows`` layout against the ``continuous`` one, on the same input.

Writes TUSZ-like recordings of ``--hours`` EEG-hours (``bench_build.write_corpus``: 20-30 min
recordings alternating 250 and 400 Hz, 33 signals, two seizures each), then, for each layout
(``CacheConfig(layout=...)``, ``eeg_assets.lib.cache.layout``), in a folder of its own:

* build: ``build_split`` with ``--workers`` workers, then an ``fsync`` of every file it wrote
  (and of the folder), both inside the timing: the build's files are on disk when the clock
  stops, so the figure includes the disk's write rate, not only the page cache's. Both parts are
  printed (compute + flush). Each build starts with nothing dirty (``os.sync`` first, untimed)
  and with the EDFs in the page cache; with ``--repeats N`` each layout is built N times,
  alternating which layout goes first, and the fastest build counts;
* bytes on disk per EEG-hour: the sizes of the cache files (the NPZs; the data and labels files
  of the continuous layout), not the ledger, listing or index;
* loader windows/s: every window of the split through ``EEGWindowDataset[i]`` (a tensor pair per
  item, as training reads them), in one shuffled order (fixed seed), single process, one torch
  thread. Cold: the median of ``--passes`` passes, each after the cache files' pages are dropped
  (``posix_fadvise(POSIX_FADV_DONTNEED)`` after an ``os.sync``, as bench_verify does) and with a
  fresh dataset, so no old memory map pins them. Warm: the best of ``--passes`` more passes.
  Where ``fincore`` exists, the bytes still cached after a drop are printed, and where
  ``/proc/self/io`` exists, the bytes a cold pass read from storage: the continuous layout
  stores each sample once, so a pass over all windows reads about 1/6 of what the windows layout
  reads (a pass over a sample of the windows gains less);

and checks that the two layouts give the same windows and labels, item by item
(``np.array_equal`` on what ``EEGWindowDataset`` returns). It prints a table, the ratios
continuous/windows, the full-TUSZ projection of each layout (~1,470 EEG-hours, docs/tusz.md:
disk, and build time at this run's rate and at ``--disk-mb-s`` sustained write rates, taken as
``max(compute time, bytes / rate)``), and PASS/FAIL for the three goals of issue 24: the
continuous layout at most 1/5 of the windows layout's bytes, at least as fast to build, and no
slower to load per window (warm and cold).

Run by hand: ``python benchmarks/bench_layouts.py [--hours 2] [--workers 2] [--repeats 1]
[--passes 5] [--dir /tmp] [--disk-mb-s 150 200] [--keep]``. One EEG-hour takes ~0.5 GB of disk for both
caches. Nothing is asserted; the temporary folder is removed at the end (also after a failure or
Ctrl-C) unless ``--keep``. Timings depend on the machine and on whatever else runs there.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench_build import TUSZ_HOURS, write_corpus  # sibling modules of this script
from bench_verify import drop_page_cache
from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.cache.layout import CONTINUOUS, WINDOWS, cache_files_on_disk, files_of, stem_of
from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.dataset.index import update_index
from eeg_assets.lib.dataset.torch_datasets import EEGWindowDataset

LAYOUTS = (WINDOWS, CONTINUOUS)
CONFIGS = {layout: CacheConfig(layout=layout) for layout in LAYOUTS}
#: docs/tusz.md, "EEG hours" per official split (they add up to TUSZ_HOURS, give or take).
TUSZ_SPLIT_HOURS = {"train": 910, "dev": 435, "eval": 128}
#: Sustained sequential write rates (MB/s) of the disks the projection is stated for.
DEFAULT_DISK_RATES = (150.0, 200.0)  # a hard disk, a SATA SSD
SHUFFLE_SEED = 0
#: Goals of issue 24: continuous bytes <= windows bytes / 5.
MAX_BYTES_RATIO = 1 / 5


@dataclass
class BuildFigures:
    compute_s: float  # build_split
    flush_s: float    # fsync of everything it wrote
    cache_bytes: int
    windows: int

    @property
    def seconds(self) -> float:
        return self.compute_s + self.flush_s


@dataclass
class LoaderFigures:
    windows: int
    warm_per_s: float
    cold_per_s: float | None      # None: the page cache could not be dropped here
    resident_after_drop: int | None  # most bytes of the cache files still cached after a drop
    cold_read_bytes: int | None   # bytes a cold pass read from storage (/proc/self/io), median


# --------------------------------------------------------------------------------------------
# Files and the page cache
# --------------------------------------------------------------------------------------------

def cache_file_paths(cache_dir: Path) -> list[Path]:
    """Every file that holds windows: the NPZs, or the data and labels files."""
    return [cache_dir / part for name in cache_files_on_disk(cache_dir) for part in files_of(name)]


def flush_to_disk(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves: the build's output (cache
    files, ledger, listing) is on disk when this returns. Not ``os.sync``: that would also wait
    for other jobs' writes on a shared machine."""
    for parent, _dirs, names in os.walk(folder):
        for name in [*names, "."]:
            fd = os.open(os.path.join(parent, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def resident_bytes(paths: list[Path]) -> int | None:
    """Bytes of the files in the page cache, from util-linux ``fincore`` (None without it)."""
    if shutil.which("fincore") is None:
        return None
    result = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES",
                             *map(str, paths)], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return sum(int(line) for line in result.stdout.split())


def storage_read_bytes() -> int | None:
    """Bytes this process has read from storage so far (page-cache hits excluded)."""
    try:
        with open("/proc/self/io") as fh:
            for line in fh:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def read_through_page_cache(folder: Path) -> None:
    """Read every file once, so both builds find their EDFs in the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                while fh.read(1 << 24):
                    pass


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

def build(data_dir: Path, cache_dir: Path, layout: str, workers: int) -> BuildFigures:
    os.sync()  # the corpus and the other layout's files: nothing of theirs flushed in our timing
    started = time.perf_counter()
    report = build_split(data_dir, cache_dir, "bench", config=CONFIGS[layout], workers=workers,
                         progress=None, log=lambda line: None)
    built = time.perf_counter()
    flush_to_disk(cache_dir)
    flushed = time.perf_counter()
    if report.quarantined or report.failed:
        reasons = [entry.reason for entry in report.quarantined + report.failed]
        raise SystemExit(f"{layout} build did not build everything: {reasons}")
    size = sum(path.stat().st_size for path in cache_file_paths(cache_dir))
    return BuildFigures(compute_s=built - started, flush_s=flushed - built, cache_bytes=size,
                        windows=report.windows_built)


def open_dataset(cache_dir: Path, layout: str) -> EEGWindowDataset:
    config = CONFIGS[layout]
    return EEGWindowDataset(cache_dir, index=update_index(cache_dir, config), config=config,
                            log=lambda line: None)


def read_items(dataset: EEGWindowDataset, order: list[int]) -> float:
    """Windows per second of ``dataset[i]`` over ``order``."""
    started = time.perf_counter()
    for i in order:
        dataset[i]
    return len(order) / (time.perf_counter() - started)


def measure_loader(cache_dir: Path, layout: str, passes: int) -> LoaderFigures:
    """Cold: the median of ``passes`` passes, each from a dropped page cache and a fresh dataset.
    Warm: the best of ``passes`` more passes of the last dataset (a pass over ~350 windows takes
    a fraction of a second, so one pass would measure the other jobs on the machine)."""
    paths = cache_file_paths(cache_dir)
    n_windows = len(open_dataset(cache_dir, layout))
    order = list(range(n_windows))
    random.Random(SHUFFLE_SEED).shuffle(order)
    cold_rates, read_bytes, resident = [], [], []
    dataset = None
    for _ in range(passes):
        dataset = None
        gc.collect()  # a live memory map keeps its pages cached: close the earlier dataset's
        if not drop_page_cache(paths):
            break
        resident.append(resident_bytes(paths))
        dataset = open_dataset(cache_dir, layout)
        before = storage_read_bytes()
        cold_rates.append(read_items(dataset, order))
        after = storage_read_bytes()
        if before is not None and after is not None:
            read_bytes.append(after - before)
    dataset = dataset or open_dataset(cache_dir, layout)
    warm = max(read_items(dataset, order) for _ in range(passes))
    return LoaderFigures(
        windows=n_windows, warm_per_s=warm,
        cold_per_s=statistics.median(cold_rates) if cold_rates else None,
        resident_after_drop=(max(resident) if resident and None not in resident else None),
        cold_read_bytes=int(statistics.median(read_bytes)) if read_bytes else None)


def compare_layouts(windows_dir: Path, continuous_dir: Path) -> tuple[int, list[str]]:
    """``(items compared, differences)`` of the two caches read through ``EEGWindowDataset``."""
    ours = open_dataset(windows_dir, WINDOWS)
    theirs = open_dataset(continuous_dir, CONTINUOUS)
    if len(ours) != len(theirs):
        return 0, [f"{len(ours)} windows in the windows layout, {len(theirs)} in the continuous"]
    differences = []
    for i in range(len(ours)):
        (name, index), (other_name, other_index) = ours.locate(i), theirs.locate(i)
        if (stem_of(name), index) != (stem_of(other_name), other_index):
            differences.append(f"item {i}: {name}[{index}] vs {other_name}[{other_index}]")
            continue
        (window, label), (other_window, other_label) = ours[i], theirs[i]
        if not np.array_equal(window.numpy(), other_window.numpy()):
            differences.append(f"item {i} ({stem_of(name)}[{index}]): windows differ")
        if not np.array_equal(label.numpy(), other_label.numpy()):
            differences.append(f"item {i} ({stem_of(name)}[{index}]): labels differ")
    return len(ours), differences


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3 * 3600 else f"{seconds / 60:.0f} min"


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(eeg_hours: float, workers: int, disk_rates: list[float],
           builds: dict[str, BuildFigures], loaders: dict[str, LoaderFigures]) -> None:
    def per_hour(value: float) -> float:
        return value / eeg_hours

    def cold(figures: LoaderFigures) -> str:
        return f"{figures.cold_per_s:.1f}" if figures.cold_per_s is not None else "n/a"

    print()
    header = (f"{'layout':<11} {'MB/EEG-h':>9} {'build s/EEG-h':>14} {'(compute + flush)':>18} "
              f"{'MB/s written':>13} {'windows/s warm':>15} {'windows/s cold':>15}")
    print(header)
    print("-" * len(header))
    for layout in LAYOUTS:
        b, lo = builds[layout], loaders[layout]
        split = f"({per_hour(b.compute_s):.2f} + {per_hour(b.flush_s):.2f})"
        print(f"{layout:<11} {per_hour(b.cache_bytes) / 1e6:>9.1f} {per_hour(b.seconds):>14.2f} "
              f"{split:>18} {b.cache_bytes / 1e6 / b.seconds:>13.0f} {lo.warm_per_s:>15.1f} "
              f"{cold(lo):>15}")
    for layout in LAYOUTS:
        lo = loaders[layout]
        notes = []
        if lo.resident_after_drop is not None:
            notes.append(f"{lo.resident_after_drop / 1e6:.1f} MB still cached after a drop")
        if lo.cold_read_bytes is not None:
            notes.append(f"a cold pass read {lo.cold_read_bytes / 1e6:.0f} MB from storage")
        if notes:
            print(f"  {layout}: {lo.windows} windows; {'; '.join(notes)}")

    wb, cb = builds[WINDOWS], builds[CONTINUOUS]
    wl, cl = loaders[WINDOWS], loaders[CONTINUOUS]
    bytes_ratio = cb.cache_bytes / wb.cache_bytes
    build_ratio = cb.seconds / wb.seconds
    warm_ratio = cl.warm_per_s / wl.warm_per_s
    cold_ratio = (cl.cold_per_s / wl.cold_per_s
                  if cl.cold_per_s is not None and wl.cold_per_s is not None else None)
    print("\ncontinuous / windows:")
    print(f"  bytes on disk        {bytes_ratio:.3f}  (1/{1 / bytes_ratio:.1f})")
    print(f"  build time (flushed) {build_ratio:.3f}  (compute {cb.compute_s / wb.compute_s:.3f}, "
          f"flush {cb.flush_s / wb.flush_s:.3f})")
    print(f"  windows/s warm       {warm_ratio:.3f}")
    print("  windows/s cold       " + (f"{cold_ratio:.3f}" if cold_ratio is not None else "n/a"))

    print(f"\nfull TUSZ ({TUSZ_HOURS} EEG-hours; train {TUSZ_SPLIT_HOURS['train']}, dev "
          f"{TUSZ_SPLIT_HOURS['dev']}, eval {TUSZ_SPLIT_HOURS['eval']}), projected from this run "
          f"({workers} workers):")
    for layout in LAYOUTS:
        b = builds[layout]
        gigabytes = per_hour(b.cache_bytes) * TUSZ_HOURS / 1e9
        by_split = ", ".join(f"{split} {per_hour(b.cache_bytes) * hours / 1e9:.0f}"
                             for split, hours in TUSZ_SPLIT_HOURS.items())
        compute_s = per_hour(b.compute_s) * TUSZ_HOURS
        at_rates = "; ".join(
            f"at {rate:.0f} MB/s {duration(max(compute_s, gigabytes * 1e3 / rate))}"
            for rate in disk_rates)
        print(f"  {layout:<11} disk {gigabytes:.0f} GB ({by_split}); build at this run's rate "
              f"{duration(per_hour(b.seconds) * TUSZ_HOURS)}; max(compute "
              f"{duration(compute_s)}, bytes / disk rate): {at_rates}")

    print("\ngoals (issue 24):")
    print(f"  {verdict(bytes_ratio <= MAX_BYTES_RATIO)}  bytes: continuous at most 1/5 of windows "
          f"({bytes_ratio:.3f})")
    print(f"  {verdict(build_ratio <= 1)}  build: continuous at least as fast, flushed "
          f"({cb.seconds:.2f} s vs {wb.seconds:.2f} s)")
    load_ok = warm_ratio >= 1 and (cold_ratio is None or cold_ratio >= 1)
    cold_text = f"{cold_ratio:.2f}x" if cold_ratio is not None else "not measured"
    print(f"  {verdict(load_ok)}  load: continuous no slower per window (warm {warm_ratio:.2f}x, "
          f"cold {cold_text})")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def run(args: argparse.Namespace, root: Path) -> None:
    print(f"machine: {os.cpu_count()} cores, shared with other jobs (timings are noisy); "
          f"{args.workers} build workers; python {sys.version.split()[0]}, numpy "
          f"{np.__version__}, torch {torch.__version__}")
    data_dir = root / "edf"
    started = time.perf_counter()
    eeg_seconds = write_corpus(data_dir, args.hours)
    eeg_hours = eeg_seconds / 3600
    edfs = list(data_dir.rglob("*.edf"))
    print(f"corpus: {len(edfs)} recordings, {eeg_hours:.2f} EEG-hours, "
          f"{sum(p.stat().st_size for p in edfs) / 1e6:.0f} MB of EDF, written in "
          f"{time.perf_counter() - started:.1f} s")
    read_through_page_cache(data_dir)

    builds: dict[str, BuildFigures] = {}
    for repeat in range(args.repeats):
        # Alternate which layout builds first, so neither always gets the first build's costs.
        for layout in (LAYOUTS if repeat % 2 == 0 else LAYOUTS[::-1]):
            print(f"  building {layout} ({repeat + 1}/{args.repeats}) ...", end=" ", flush=True)
            shutil.rmtree(root / layout, ignore_errors=True)
            figures = build(data_dir, root / layout, layout, args.workers)
            print(f"{figures.compute_s:.2f} s + {figures.flush_s:.2f} s flush")
            if layout not in builds or figures.seconds < builds[layout].seconds:
                builds[layout] = figures
    if builds[WINDOWS].windows != builds[CONTINUOUS].windows:
        raise SystemExit(f"windows built: {builds[WINDOWS].windows} (windows layout) vs "
                         f"{builds[CONTINUOUS].windows} (continuous)")

    torch.set_num_threads(1)  # one reader, as one DataLoader worker reads
    loaders: dict[str, LoaderFigures] = {}
    for layout in LAYOUTS:
        print(f"  reading {layout} ({args.passes} cold passes, then {args.passes} warm) ...",
              flush=True)
        loaders[layout] = measure_loader(root / layout, layout, args.passes)

    print("  comparing the layouts window by window ...", flush=True)
    compared, differences = compare_layouts(root / WINDOWS, root / CONTINUOUS)
    identical = compared > 0 and not differences
    print(f"identical: {identical} ({compared} windows and their labels, np.array_equal through "
          f"EEGWindowDataset)")
    for line in differences[:10]:
        print(f"  {line}")

    report(eeg_hours, args.workers, args.disk_mb_s, builds, loaders)
    print(f"  {verdict(identical)}  same windows and labels in both layouts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="EEG-hours of synthetic input")
    parser.add_argument("--workers", type=int, default=2, help="build workers (both layouts)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="builds per layout, alternating which goes first; the fastest counts")
    parser.add_argument("--passes", type=int, default=5,
                        help="loader passes over all windows: cold (median) and warm (best)")
    parser.add_argument("--disk-mb-s", type=float, nargs="+", default=list(DEFAULT_DISK_RATES),
                        help="sustained disk write rates (MB/s) for the projection "
                             "(default: 150, a hard disk; 200, a SATA SSD)")
    parser.add_argument("--dir", default=None, help="parent of the temporary folder")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (EDFs and both caches)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_layouts_", dir=args.dir))
    try:
        run(args, root)
    finally:
        if args.keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
            print(f"(removed {root})")


if __name__ == "__main__":
    main()
