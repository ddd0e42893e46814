"""Manifest benchmark: full label scan vs incremental update, on splits of 1,000 and 5,000 NPZs.

Writes small NPZs (label rows of 100 samples, 10-100 windows each, ~55 on average like TUSZ) with
their ledger entries, as the cache builder does, then measures:

* the full rescan (``scan-cache``: read every NPZ's labels),
* validating a current manifest,
* the incremental update after one NPZ is added, and after one is rebuilt (facts from the ledger;
  the count of NPZs opened shows that no unchanged file is read), with its breakdown.

Run by hand: ``python benchmarks/bench_manifest.py [--files 5000] [--dir /dev/shm]``. Nothing is
asserted; the figures and ratios are printed. The folder is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from eeg_assets.lib.config import CacheConfig
from eeg_assets.lib.dataset.index import collect_facts
from eeg_assets.lib.cache.ledger import Ledger
from eeg_assets.lib.dataset.manifest import (
    MANIFEST_NAME, ManifestTable, manifest_bytes, manifest_staleness, scan_manifest,
    update_manifest, write_manifest,
)
from eeg_assets.synthetic.fake_cache import write_cache_entry

CONFIG = CacheConfig(target_fs=25, window_s=4, stride_s=1)  # 100 label samples per window


def write_recording(cache_dir: Path, ledger: Ledger, number: int, rng: np.random.Generator) -> None:
    """One recording's NPZ and ledger entry, with a seizure somewhere in about a third of them."""
    n_windows = int(rng.integers(10, 101))
    labels = np.zeros((n_windows, CONFIG.window_samples), dtype=np.float32)
    if rng.random() < 0.3:
        start = int(rng.integers(0, n_windows))
        labels[start:start + int(rng.integers(1, 15)), int(rng.integers(0, 100)):] = 1.0
    write_cache_entry(cache_dir, f"p{number % 600:07d}_s001_t{number:05d}",
                      np.zeros((n_windows, 1, 8), np.float32), labels, config=CONFIG,
                      ledger=ledger)


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def measure(cache_dir: Path, ledger: Ledger, next_number: int, rng: np.random.Generator) -> dict:
    n_files = sum(1 for _ in cache_dir.glob("*.npz"))
    scan, scan_s = timed(scan_manifest, cache_dir, CONFIG)
    windows = sum(f.n_windows for f in scan.facts.files)
    _, validate_s = timed(manifest_staleness, cache_dir, CONFIG)

    write_recording(cache_dir, ledger, next_number, rng)  # the builder adds one recording
    _, add_s = timed(update_manifest, cache_dir, CONFIG)

    rebuilt = sorted(cache_dir.glob("*.npz"))[n_files // 2].name
    number = int(rebuilt.split("_t")[1].split("_")[0])
    (cache_dir / rebuilt).unlink()
    write_recording(cache_dir, ledger, number, rng)  # ... and rebuilds one
    _, rebuild_s = timed(update_manifest, cache_dir, CONFIG)
    incremental = (cache_dir / MANIFEST_NAME).read_bytes()
    # The same steps one by one, for the breakdown.
    facts, facts_s = timed(collect_facts, cache_dir, CONFIG)
    table, derive_s = timed(ManifestTable.from_facts, facts.files, CONFIG)
    _, write_s = timed(write_manifest, cache_dir, table)
    _, dicts_s = timed(table.to_manifest)
    again = scan_manifest(cache_dir, CONFIG)
    return {
        "files": n_files, "windows": windows, "scan_s": scan_s, "validate_s": validate_s,
        "add_s": add_s, "rebuild_s": rebuild_s, "facts_s": facts_s, "derive_s": derive_s,
        "write_s": write_s, "dicts_s": dicts_s, "opened": len(facts.scanned),
        "identical": manifest_bytes(again.manifest) == incremental,
        "manifest_mb": len(incremental) / 1e6,
    }


def report(m: dict) -> None:
    print(f"split of {m['files']} NPZs, {m['windows']} windows, manifest {m['manifest_mb']:.1f} MB")
    print(f"  full scan (read all labels)      {m['scan_s']:8.3f} s")
    print(f"  validate current manifest        {m['validate_s']:8.3f} s")
    print(f"  incremental, one NPZ added       {m['add_s']:8.3f} s")
    print(f"  incremental, one NPZ rebuilt     {m['rebuild_s']:8.3f} s")
    print(f"    = read recorded facts {m['facts_s']:.3f} s (NPZs opened: {m['opened']}), derive "
          f"{m['derive_s']:.3f} s, serialise + write {m['write_s']:.3f} s, return as dicts "
          f"{m['dicts_s']:.3f} s")
    print(f"  full scan / incremental          {m['scan_s'] / m['rebuild_s']:8.1f} x")
    print(f"  incremental == full scan bytes   {m['identical']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None,
                        help="parent folder of the temporary split (default: /dev/shm)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cache_dir = Path(tempfile.mkdtemp(prefix="bench_manifest.", dir=args.dir))
    try:
        ledger = Ledger(cache_dir)
        sizes = sorted({min(1000, args.files), args.files})
        written, results = 0, []
        for size in sizes:
            started = time.perf_counter()
            while written < size:
                write_recording(cache_dir, ledger, written, rng)
                written += 1
            print(f"[setup] {written} NPZs + ledger entries in {time.perf_counter() - started:.1f} s"
                  f" under {cache_dir}")
            results.append(measure(cache_dir, ledger, 10**5 + written, rng))
            report(results[-1])
        if len(results) == 2:
            small, large = results
            print(f"growth {small['files']} -> {large['files']} files "
                  f"(x{large['files'] / small['files']:.1f}): full scan "
                  f"x{large['scan_s'] / small['scan_s']:.1f}, incremental "
                  f"x{large['rebuild_s'] / small['rebuild_s']:.1f} (reading the recorded facts "
                  f"x{large['facts_s'] / small['facts_s']:.1f}, NPZs opened: {small['opened']} "
                  f"and {large['opened']})")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
