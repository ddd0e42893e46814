"""No-op run of the cache chain's steps and checks at TUSZ train size (4,667 NPZs, ~327k windows).

Generates once (reused on later runs) a cache split of 4,667 small but schema-valid NPZs (19
channels; a 1 s window at 25 Hz, so the whole split is ~0.6 GB instead of TUSZ's 306 GB), with
their ledger entries as ``build-cache`` records them, 10-130 windows each (70 on average: the
manifest is ~21 MB, as at full size), a seizure in about a third of them. Then, on a temporary
Dagster instance, it runs what a no-op ``dagster asset materialize`` of the chain runs after the
build step: ``dataset_index``, ``manifest``, ``balanced_dataset`` and every check of the chain
(``npz_windows``'s checks included; the build step itself needs a raw tree and is measured by
``bench_build.py``). It prints each step's duration from the event log, how often
``manifest.json`` was parsed, and the ``npz_schema`` check's files opened. It runs the chain
three times: the first run after the cache was written, then two no-op runs.

Separately, it times ``npz_schema``'s per-file verification on a few full-size NPZs (60 windows
of (19, 15360)) with the page cache of each file dropped first (``posix_fadvise``), to scale the
small-file figures to the real cache.

Run by hand: ``python benchmarks/bench_noop_checks.py [--files 4667] [--dir /tmp]``. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np

from eeg_assets.lib.cache.ledger import BUILT, FileFingerprint, Ledger, RecordingEntry
from eeg_assets.lib.cache.npzio import WindowedArray, write_npz
from eeg_assets.lib.cache.verify import check_npz_file
from eeg_assets.lib.cache.windows import window_seizure_counts
from eeg_assets.lib.config import DEFAULT_CONFIG, CacheConfig
from eeg_assets.lib.dataset import manifest as manifest_module
from eeg_assets.orchestration import assets, build_resources, checks_cache, checks_dataset
from eeg_assets.settings import Settings

SMALL = CacheConfig(target_fs=25, window_s=1, stride_s=1)
SPLIT = "train"


@dataclasses.dataclass(frozen=True)
class BenchSettings(Settings):
    """The project's settings with the small cache configuration the fake NPZs were made with."""

    def cache_config(self) -> CacheConfig:
        return dataclasses.replace(SMALL, notch_hz=self.notch_hz or None)


def write_split(cache_dir: Path, n_files: int, config: CacheConfig = SMALL) -> None:
    rng = np.random.default_rng(0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    window, stride = config.window_samples, config.stride_samples
    with Ledger(cache_dir) as ledger:
        for number in range(n_files):
            n_windows = int(rng.integers(10, 131))
            n_samples = (n_windows - 1) * stride + window
            signal = np.clip(rng.standard_normal((len(config.channels), n_samples),
                                                 dtype=np.float32), -10, 10)
            mask = np.zeros(n_samples, np.float32)
            if rng.random() < 0.3:
                start = int(rng.integers(0, n_samples))
                mask[start:start + int(rng.integers(5, 40 * window))] = 1.0
            stem = f"{'abcdefghijklmnop'[number % 16]}{number // 16:07d}_s001_t000"
            path = cache_dir / f"{stem}_windows.npz"
            write_npz(path, windows=WindowedArray(signal, n_windows, window, stride),
                      labels=WindowedArray(mask, n_windows, window, stride))
            ledger.put(RecordingEntry(
                source=f"{stem[:8]}/s001_2015/01_tcp_ar/{stem}.edf", stem=stem, status=BUILT,
                config_version=config.version(), edf_fingerprint="0:0",
                annotation_fingerprint="0:0", npz_name=path.name,
                npz_fingerprint=str(FileFingerprint.of(path)), n_windows=n_windows,
                seizure_samples=window_seizure_counts(mask, config)))


def count_parses() -> Counter:
    """Count every parse of a manifest.json (the wrapped function is the only JSON reader)."""
    calls: Counter = Counter()
    original = manifest_module._parse_manifest

    def counting(raw: bytes):
        calls["parses"] += 1
        return original(raw)

    manifest_module._parse_manifest = counting
    return calls


def run_chain(settings: Settings, instance: dg.DagsterInstance) -> tuple[dict, dg.ExecuteInProcessResult]:
    selection = (dg.AssetSelection.assets("dataset_index", "manifest", "balanced_dataset")
                 | dg.AssetSelection.checks_for_assets("npz_windows"))
    defs = [assets.raw_edf_recordings, *assets.build_cache_assets(settings),
            *dg.load_asset_checks_from_modules([checks_cache, checks_dataset])]
    result = dg.materialize(defs, resources=build_resources(settings), partition_key=SPLIT,
                            instance=instance, selection=selection, raise_on_error=False)
    starts, durations = {}, {}
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            durations[event.step_key] = record.timestamp - starts[event.step_key]
    return durations, result


def check_metadata(result: dg.ExecuteInProcessResult, name: str) -> dict:
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.asset_check_key.name == name:
            return {k: v.value for k, v in evaluation.metadata.items()}
    return {}


def full_size_verification(folder: Path, n_files: int = 5) -> tuple[float, float]:
    """Seconds and MB read per file to verify full-size NPZs with a cold page cache."""
    config = DEFAULT_CONFIG
    rng = np.random.default_rng(1)
    n_windows, window, stride = 60, config.window_samples, config.stride_samples
    n_samples = (n_windows - 1) * stride + window
    paths = []
    for i in range(n_files):
        signal = rng.standard_normal((19, n_samples), dtype=np.float32)
        path = folder / f"full{i}_s001_t000_windows.npz"
        write_npz(path, windows=WindowedArray(signal, n_windows, window, stride),
                  labels=WindowedArray(np.zeros(n_samples, np.float32), n_windows, window, stride))
        paths.append(path)
    os.sync()
    for path in paths:
        with open(path, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    started = time.perf_counter()
    for path in paths:
        check_npz_file(path, config)
    seconds = (time.perf_counter() - started) / n_files
    read_mb = 3 * (19 + 1) * window * 4 / 1e6  # 3 windows and their label rows
    return seconds, read_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4667)
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="parent of the generated split (kept and reused)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.dir) / f"bench_noop_checks_{args.files}"
    cache_dir = root / "cache" / SPLIT
    if not (root / "complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        started = time.perf_counter()
        write_split(cache_dir, args.files)
        (root / "complete").touch()
        print(f"[setup] {args.files} NPZs + ledger in {time.perf_counter() - started:.0f} s "
              f"under {cache_dir}")
    # A fresh cache each time (copy keeps mtimes, so the ledger still matches): no state of
    # earlier benchmark runs (verification marks, index, manifest) is carried over.
    work = Path(tempfile.mkdtemp(prefix="bench_noop_checks.", dir=args.dir))
    try:
        shutil.copytree(cache_dir, work / "cache" / SPLIT)
        settings = BenchSettings(raw_root=work / "raw", cache_root=work / "cache",
                                 results_root=work / "results", workers=1)
        parses = count_parses()
        windows = sum(e.n_windows for e in Ledger(work / "cache" / SPLIT).entries().values())
        print(f"split of {args.files} NPZs, {windows} windows")
        with dg.instance_for_test() as instance:
            for run in range(args.runs):
                parses.clear()
                started = time.perf_counter()
                durations, result = run_chain(settings, instance)
                wall = time.perf_counter() - started
                schema = check_metadata(result, "npz_schema")
                label = "first run" if run == 0 else f"no-op run {run}"
                size = (work / "cache" / SPLIT / "manifest.json").stat().st_size / 1e6
                print(f"\n{label}: success {result.success}, wall {wall:.1f} s, steps+checks "
                      f"{sum(durations.values()):.2f} s, manifest.json {size:.1f} MB parsed "
                      f"{parses['parses']} time(s); npz_schema opened "
                      # files_checked: the name before verification once per content
                      f"{schema.get('files_verified', schema.get('files_checked'))} file(s)")
                for step, seconds in sorted(durations.items(), key=lambda kv: -kv[1]):
                    print(f"  {step:45s} {seconds:7.2f} s")
        per_file, read_mb = full_size_verification(work)
        print(f"\nfull-size NPZ (60 windows of 19 x 15360), cold page cache: {per_file * 1e3:.1f} "
              f"ms and {read_mb:.1f} MB read per verified file; x{args.files} files = "
              f"{per_file * args.files:.0f} s, {read_mb * args.files / 1e3:.1f} GB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
