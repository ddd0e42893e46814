"""Full verification benchmark: every byte's CRC-32 and every window's values, beside the read rate.

Writes ``--files`` full-size NPZs (19 channels, 60 s windows at 256 Hz, ``--windows`` windows each:
63 make ~77 MB, the mean of TUSZ train's ~360 GB over 4,667 files) with their ledger entries, as
``fake_cache.write_recording`` writes them with the real NPZ writer. Then, on the same files and in
the same run, it measures:

* the raw read rate: ``open().read()`` in 8 MiB chunks, the most any check that reads every byte
  can reach;
* the full pass: ``verify_split(verify_all=True)``, which ``verify-cache --all``, the Dagster tag
  ``eeg_assets/verify=all`` and the check of new and rebuilt files run (CRC-32 of each member and
  the value rules on every window, streamed a few windows at a time);
* what each byte costs on one core, from memory: ``zlib.crc32`` and the value rules;

each warm (files in the page cache; best of ``--runs``) and cold (pages dropped with
``posix_fadvise(POSIX_FADV_DONTNEED)`` after an ``os.sync``, where the OS allows it). Rates are MB
of NPZ file per second (1 MB = 10**6 bytes). It prints the full pass as a share of the read rate
and projects both to TUSZ: ~628 GB for all splits, ~360 GB (4,667 files) for train, and one run's
random sample of train (10 files).

Run by hand: ``python benchmarks/bench_verify.py [--files 12] [--windows 63] [--dir /tmp]``. The
default takes well under a minute on 2 cores; nothing is asserted; the folder is removed
afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from eeg_assets.lib.cache.verify import CHUNK_BYTES, sample_size, verify_split
from eeg_assets.lib.config import DEFAULT_CONFIG
from eeg_assets.synthetic.fake_cache import write_recording

CONFIG = DEFAULT_CONFIG
READ_CHUNK = 8 << 20
TUSZ_ALL_GB = 628
TUSZ_TRAIN_GB = 360
TUSZ_TRAIN_FILES = 4667


def write_split(cache_dir: Path, n_files: int, n_windows: int) -> list[Path]:
    """Full-size NPZs with a seizure in every third one, and their ledger entries."""
    window = CONFIG.window_samples
    paths = []
    for i in range(n_files):
        counts = [0] * n_windows
        if i % 3 == 0:
            counts[n_windows // 2:n_windows // 2 + 3] = [window // 3, window, window // 2]
        name = write_recording(cache_dir, f"bench{i:04d}_s001_t000", counts[:n_windows], CONFIG,
                               channels=len(CONFIG.channels))
        paths.append(cache_dir / name)
    return paths


def read_all(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(READ_CHUNK):
                pass


def drop_page_cache(paths: list[Path]) -> bool:
    """Ask the OS to forget the files' cached pages; False where it cannot be asked."""
    if not hasattr(os, "posix_fadvise"):
        return False
    os.sync()  # dirty pages cannot be dropped
    for path in paths:
        with open(path, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return True


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def rates(action: Callable[[], object], paths: list[Path], total_bytes: int, runs: int
          ) -> tuple[float, float | None]:
    """(warm MB/s: best of ``runs``, cold MB/s: median of ``runs`` or None)."""
    action()  # everything in the page cache, and any first-call cost paid
    warm = max(total_bytes / 1e6 / timed(action) for _ in range(runs))
    cold_runs = []
    for _ in range(runs):
        if not drop_page_cache(paths):
            return warm, None
        cold_runs.append(total_bytes / 1e6 / timed(action))
    return warm, statistics.median(cold_runs)


def per_core_rates() -> tuple[float, float]:
    """MB/s of ``zlib.crc32`` and of the value rules (max and min per window) on one core, on
    one in-memory chunk of random windows."""
    rows = max(1, CHUNK_BYTES // (len(CONFIG.channels) * CONFIG.window_samples * 4))
    chunk = np.random.default_rng(0).standard_normal(
        (rows, len(CONFIG.channels), CONFIG.window_samples)).astype(np.float32)
    flat = chunk.reshape(rows, -1)
    repeats = 30
    crc_s = timed(lambda: [zlib.crc32(chunk) for _ in range(repeats)])
    values_s = timed(lambda: [(flat.max(axis=1), flat.min(axis=1)) for _ in range(repeats)])
    return chunk.nbytes * repeats / 1e6 / crc_s, chunk.nbytes * repeats / 1e6 / values_s


def duration(gigabytes: float, mb_per_s: float) -> str:
    seconds = gigabytes * 1e3 / mb_per_s
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--windows", type=int, default=63, help="windows per NPZ (63: ~77 MB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="parent of the generated split (removed afterwards)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench_verify_", dir=args.dir))
    try:
        cache_dir = root / "train"
        started = time.perf_counter()
        paths = write_split(cache_dir, args.files, args.windows)
        total = sum(path.stat().st_size for path in paths)
        print(f"wrote {len(paths)} NPZs of {args.windows} windows, {total / 1e6:.0f} MB "
              f"({total / len(paths) / 1e6:.1f} MB each) in {time.perf_counter() - started:.1f} s"
              f" to {cache_dir}")

        def full_pass() -> None:
            report = verify_split(cache_dir, CONFIG, verify_all=True)
            if not report.passed or len(report.verified) != len(paths):
                raise SystemExit(f"the full pass did not pass: {report.problems[:3]}")

        read_warm, read_cold = rates(lambda: read_all(paths), paths, total, args.runs)
        full_warm, full_cold = rates(full_pass, paths, total, args.runs)
        crc_rate, values_rate = per_core_rates()

        print(f"\nrates in MB of NPZ per second ({args.runs} runs; warm: best, cold: median)")
        print(f"  {'':34s}{'warm':>9s}{'cold':>9s}")
        cold_text = (lambda rate: f"{rate:9.0f}" if rate is not None else "      n/a")
        print(f"  {'raw read (open().read, 8 MiB)':34s}{read_warm:9.0f}{cold_text(read_cold)}")
        print(f"  {'full pass (verify_split, all)':34s}{full_warm:9.0f}{cold_text(full_cold)}")
        print(f"  per core: zlib.crc32 {crc_rate:.0f} MB/s, value rules {values_rate:.0f} MB/s "
              f"(chunks of {CHUNK_BYTES >> 20} MiB)")
        print(f"\nfull pass, warm: {full_warm:.0f} MB/s = {100 * full_warm / read_warm:.0f}% of "
              f"the read rate ({read_warm:.0f} MB/s)")
        if read_cold is not None:
            print(f"full pass, cold: {full_cold:.0f} MB/s = {100 * full_cold / read_cold:.0f}% of "
                  f"the read rate ({read_cold:.0f} MB/s)")
            if read_cold > 0.8 * read_warm:
                print("  (the cold read is nearly as fast as the warm one: the OS may not have "
                      "dropped the pages)")
        else:
            print("full pass, cold: not measured (no posix_fadvise here)")

        sampled = sample_size(TUSZ_TRAIN_FILES)
        sample_gb = sampled * TUSZ_TRAIN_GB / TUSZ_TRAIN_FILES
        basis = [("cold", full_cold, read_cold), ("warm", full_warm, read_warm)]
        print("\nprojection (full pass / raw read at this machine's rates):")
        for label, full_rate, read_rate in basis:
            if full_rate is None:
                continue
            print(f"  {label}: TUSZ train ({TUSZ_TRAIN_GB} GB, {TUSZ_TRAIN_FILES:,} files): "
                  f"{duration(TUSZ_TRAIN_GB, full_rate)} / {duration(TUSZ_TRAIN_GB, read_rate)}; "
                  f"all of TUSZ ({TUSZ_ALL_GB} GB): {duration(TUSZ_ALL_GB, full_rate)} / "
                  f"{duration(TUSZ_ALL_GB, read_rate)}; one run's sample of train ({sampled} "
                  f"files, {sample_gb:.2f} GB): {duration(sample_gb, full_rate)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
