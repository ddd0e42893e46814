"""Scale benchmark: the cache chain, the drop sensor and Dagster on a TUSZ-shaped split.

Builds a split of N short recordings (default N = 500, 2,000 and 4,667: TUSZ's train) in the real
layout (``<patient>/<sNNN_YYYY>/01_tcp_ar/<stem>.{edf,csv_bi,csv}``, 8 recordings per patient, 4
per session) and prints one table, one column per N:

* ``build-cache``: first build (seconds per file), peak RSS (main process / largest worker), a
  no-op rebuild, and adding one recording (total, and its index + manifest refresh);
* ``scan-cache`` (the full rescan of the labels);
* the drop sensor: its first tick after the build (and the runs it requests within two ticks for
  recordings that are already built), a tick with nothing new, a tick that sees one new file and
  the one that requests it, and the cursor's size (which Dagster stores in every tick row);
* metadata system calls per recording (``stat`` family, ``getdents64``, ``openat``, ``readlink``,
  ``access``; counted with ``strace -f``), split by where they land: the raw tree, the cache
  folders, elsewhere (imports, Dagster's own files). Of a sensor tick with nothing new and of a
  no-op ``build_split`` (each between two markers in a warm process), and of the whole no-op
  ``dagster asset materialize`` below (every process of the run);
* a no-op ``dagster asset materialize`` of the chain for the split: command wall time and the sum
  of its step times (assets and checks), medians of three runs, and the runs' peak RSS;
* the sizes of the ledger, the index, the manifest (and the recorded raw listing and folder
  snapshot, where the code writes them).

The recordings are 60 s at 250 Hz with 33 signals (the 19 EEG channels, 11 extra signals at the EEG
rate, 3 side channels at 1 Hz), one window each; every fourth has a seizure. One EDF is written
with pyedflib and copied (real copies, not links) to every recording of the largest N, once, under
``--dir``; the tree of a smaller N links to the first N of those files. Later runs reuse them. The
caches and the Dagster home of a run are temporary and removed at the end.

To measure another checkout of the code (e.g. before a change), put it first on ``PYTHONPATH``;
this script and every subprocess then import that ``eeg_assets``; the corpus is reused. Parts the
other code does not have print as ``n/a``.

Run by hand: ``python benchmarks/bench_scale.py [--sizes 500,2000,4667] [--dir DIR]
[--workers N] [--label TEXT]``. Needs ``strace`` for the system-call rows (else ``n/a``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from proc_stats import descendants, vm_hwm_kb  # a sibling module of this script

RECORDING_S = 60
FS = 250
PER_PATIENT, PER_SESSION = 8, 4
EEG = ["FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4",
       "T5", "T6", "FZ", "CZ", "PZ"]
EXTRA = ["EEG A1-REF", "EEG A2-REF", "EEG ROC-REF", "EEG LOC-REF", "EEG EKG1-REF", "EMG-REF",
         "EEG T1-REF", "EEG T2-REF", "PHOTIC-REF", "EEG 26-REF", "EEG 27-REF"]
SIDE = ["IBI", "BURSTS", "SUPPR"]
METADATA_CALLS = ("newfstatat", "stat", "lstat", "fstat", "statx", "getdents64", "openat", "open",
                  "readlink", "readlinkat", "access", "faccessat", "faccessat2")
BEGIN, END = "/__bench_scale_begin__", "/__bench_scale_end__"
NOOP_RUNS = 3


# ------------------------------------------------------------------------------------------------
# The corpus (generated once, reused)
# ------------------------------------------------------------------------------------------------

def recording_path(i: int) -> Path:
    """Relative path of recording ``i`` of the master list: patients of 8, sessions of 4."""
    p = i // PER_PATIENT
    patient = "aaaa" + "".join(chr(97 + (p // 26 ** k) % 26) for k in (3, 2, 1, 0))
    session = (i % PER_PATIENT) // PER_SESSION + 1
    return Path(patient, f"s{session:03d}_2015", "01_tcp_ar",
                f"{patient}_s{session:03d}_t{i % PER_SESSION:03d}.edf")


def annotation_text(stem: str, seizure: bool, per_channel: bool) -> str:
    rows = ([("TERM", 0.0, 20.0, "bckg"), ("TERM", 20.0, 35.0, "seiz"),
             ("TERM", 35.0, RECORDING_S, "bckg")] if seizure
            else [("TERM", 0.0, RECORDING_S, "bckg")])
    if per_channel:
        rows = [("FP1-F7", a, b, "fnsz" if label == "seiz" else label) for _, a, b, label in rows]
    return "\n".join(["# version = csv_v1.0.0", f"# bname = {stem}",
                      f"# duration = {RECORDING_S:.4f} secs",
                      "# montage_file = nedc_eas_default_montage.txt", "#",
                      "channel,start_time,stop_time,label,confidence"]
                     + [f"{c},{a:.4f},{b:.4f},{label},1.0000" for c, a, b, label in rows]) + "\n"


def write_template(path: Path) -> None:
    import numpy as np
    import pyedflib.highlevel as edf

    labels = [f"EEG {name}-REF" for name in EEG] + EXTRA
    headers = edf.make_signal_headers(labels, sample_frequency=FS, physical_min=-4999.85,
                                      physical_max=4999.85, digital_min=-32767)
    headers += edf.make_signal_headers(SIDE, sample_frequency=1, physical_min=-4999.85,
                                       physical_max=4999.85, digital_min=-32767)
    rng = np.random.default_rng(7)
    t = np.arange(RECORDING_S * FS) / FS
    signals = [30 * rng.standard_normal(t.size) + 10 * np.sin(2 * np.pi * 10 * t + i)
               for i in range(len(labels))] + [np.zeros(RECORDING_S) for _ in SIDE]
    edf.write_edf(str(path), signals, headers)


def ensure_corpus(root: Path, sizes: list[int]) -> dict[int, Path]:
    """``{N: raw root whose train/ holds the first N recordings}``, generated where missing."""
    master = root / "master"
    template = root / "template.edf"
    if not template.exists():
        root.mkdir(parents=True, exist_ok=True)
        write_template(template)
    largest = max(sizes)
    done = master / f".complete-{largest}"
    if not done.exists():
        started = time.perf_counter()
        for i in range(largest):
            edf = master / recording_path(i)
            if edf.exists() and edf.with_suffix(".csv").exists():
                continue
            edf.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template, edf)
            edf.with_suffix(".csv_bi").write_text(annotation_text(edf.stem, i % 4 == 0, False))
            edf.with_suffix(".csv").write_text(annotation_text(edf.stem, i % 4 == 0, True))
        done.touch()
        print(f"generated {largest} recordings under {master} in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    views = {}
    for n in sizes:
        view = root / f"n{n}" / "edf"
        if not (view.parent / ".complete").exists():
            shutil.rmtree(view.parent, ignore_errors=True)
            for i in range(n):
                for suffix in (".edf", ".csv_bi", ".csv"):
                    source = (master / recording_path(i)).with_suffix(suffix)
                    link = view / "train" / source.relative_to(master)
                    link.parent.mkdir(parents=True, exist_ok=True)
                    os.link(source, link)
            (view.parent / ".complete").touch()
        views[n] = view
    return views


def add_recording(raw_root: Path, template: Path, name: str) -> list[Path]:
    """One new recording (a new patient) in the split; returns its files."""
    edf = raw_root / "train" / name / "s001_2020" / "01_tcp_ar" / f"{name}_s001_t000.edf"
    edf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, edf)
    edf.with_suffix(".csv_bi").write_text(annotation_text(edf.stem, True, False))
    return [edf, edf.with_suffix(".csv_bi")]


def remove_patient(raw_root: Path, name: str) -> None:
    shutil.rmtree(raw_root / "train" / name, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Children: each measurement in a fresh process
# ------------------------------------------------------------------------------------------------

def _settings(raw_root: str, cache_root: str, workers: int | None = 1):
    from eeg_assets.settings import Settings

    return Settings(raw_root=Path(raw_root), cache_root=Path(cache_root),
                    results_root=Path(cache_root).parent / "results", workers=workers or 0)


class _Ticker:
    def __init__(self, settings):
        import dagster as dg
        from eeg_assets import defs

        self.dg, self.defs, self.settings = dg, defs, settings
        self.sensor = defs.get_sensor_def("raw_edf_drop_sensor")
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor = None
        self.cursor_sizes: list[int] = []

    def tick(self):
        context = self.dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                               resources={"settings": self.settings},
                                               definitions=self.defs)
        started = time.perf_counter()
        data = self.sensor.evaluate_tick(context)
        seconds = time.perf_counter() - started
        self.cursor = data.cursor
        self.cursor_sizes.append(len(data.cursor or ""))
        return seconds, list(data.run_requests)


def child_sensor(raw_root: str, cache_root: str, template: str) -> dict:
    import warnings
    warnings.simplefilter("ignore")
    ticker = _Ticker(_settings(raw_root, cache_root))
    first_s, first = ticker.tick()
    _, second = ticker.tick()
    quiet = [ticker.tick()[0] for _ in range(3)]
    steady_cursor = ticker.cursor_sizes[-1]
    add_recording(Path(raw_root), Path(template), "zzzzsens")
    try:
        seen_s, seen = ticker.tick()
        settle_s, settled = ticker.tick()
    finally:
        remove_patient(Path(raw_root), "zzzzsens")
    return {"first_tick_s": first_s, "requests_for_built": len(first) + len(second),
            "quiet_tick_s": statistics.median(quiet), "new_file_seen_s": seen_s,
            "new_file_requested_s": settle_s, "requested_new": len(seen) + len(settled),
            "cursor_steady": steady_cursor, "cursor_max": max(ticker.cursor_sizes)}


def child_strace_op(op: str, raw_root: str, cache_root: str) -> None:
    """Run ``op`` between two marker stats (the parent counts the calls between them)."""
    import warnings
    warnings.simplefilter("ignore")
    from eeg_assets.lib.cache.build import build_split

    settings = _settings(raw_root, cache_root)
    if op == "tick":
        ticker = _Ticker(settings)
        for _ in range(3):
            ticker.tick()  # settled: the measured tick has nothing new
        run = ticker.tick
    else:
        def run():
            build_split(settings.raw_dir("train"), settings.cache_dir("train"), "train",
                        workers=1, progress=None, log=lambda line: None)
        run()  # imports and caches warm, as in a long-lived process
    for marker, step in ((BEGIN, run), (END, None)):
        try:
            os.stat(marker)
        except FileNotFoundError:
            pass
        if step:
            step()


def child_add_one(raw_root: str, cache_root: str, template: str, workers: int) -> dict:
    from eeg_assets.lib.cache.build import build_split
    from eeg_assets.lib.dataset.index import collect_facts, update_index
    from eeg_assets.lib.dataset.manifest import update_manifest

    settings = _settings(raw_root, cache_root, workers)
    cache_dir = settings.cache_dir("train")
    add_recording(Path(raw_root), Path(template), "zzzzaddo")
    started = time.perf_counter()
    report = build_split(settings.raw_dir("train"), cache_dir, "train", workers=workers,
                         progress=None, log=lambda line: None)
    built = time.perf_counter()
    facts = collect_facts(cache_dir)
    update_index(cache_dir, facts=facts)
    update_manifest(cache_dir, facts=facts)
    done = time.perf_counter()
    return {"total_s": done - started, "refresh_s": done - built, "built": len(report.built)}


def run_child(mode: str, *args: str, prefix: list[str] | None = None) -> dict:
    done = subprocess.run([*(prefix or []), sys.executable, __file__, "--child", mode, *args],
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or (not lines and prefix is None):
        raise SystemExit(f"child {mode} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):]) if lines else {}


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------

def timed(cmd: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Wall time and peak RSS (kB; the process itself and its largest descendant) of a command.

    ``cwd`` must not be a checkout: ``python -m`` and ``dagster -m`` import from their working
    directory first, which would bypass ``PYTHONPATH``.
    """
    started = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    main = worker = 0
    output = []
    import threading
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()), daemon=True)
    reader.start()
    while process.poll() is None:
        main = max(main, vm_hwm_kb(process.pid))
        for pid in descendants(process.pid):
            worker = max(worker, vm_hwm_kb(pid))
        time.sleep(0.05)
    reader.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{''.join(output)[-4000:]}")
    return {"wall_s": wall, "main_kb": main, "worker_kb": worker, "output": "".join(output)}


_CALL = re.compile(r'^(\d+)\s+(\w+)\((AT_FDCWD|\d+)?(?:, )?(?:"([^"]*)")?')
_RESULT = re.compile(r"= (-?\d+)(?: \w+ \(.*\))?$")


def count_calls(lines: list[str], raw_root: Path, cache_root: Path) -> dict[str, dict[str, int]]:
    """``{"raw"|"cache"|"other": {call: count}}`` of strace lines, by the path each call is on.

    A call on a file descriptor (``getdents64``, ``fstat``) counts where ``openat`` opened it.
    """
    roots = {"raw": str(raw_root.resolve()), "cache": str(cache_root.resolve())}
    opened: dict[tuple[str, str], str] = {}
    counts: dict[str, dict[str, int]] = {"raw": {}, "cache": {}, "other": {}}
    for line in lines:
        match = _CALL.match(line)
        if not match:
            continue
        pid, call, fd, path = match.groups()
        result = (found := _RESULT.search(line)) and found.group(1)
        if not path and fd and fd != "AT_FDCWD":
            path = opened.get((pid, fd), "")
        elif path and not path.startswith("/"):
            path = os.path.join(opened.get((pid, fd), ""), path) if fd != "AT_FDCWD" else path
        if call == "openat" and result is not None and int(result) >= 0:
            opened[(pid, result)] = path or ""
        where = next((name for name, root in roots.items()
                      if path and (path == root or path.startswith(root + "/"))), "other")
        counts[where][call] = counts[where].get(call, 0) + 1
    return counts


def metadata_calls(op: str, raw_root: Path, cache_root: Path, n: int,
                   cmd: list[str] | None = None, cwd: Path | None = None,
                   env: dict | None = None) -> dict | None:
    """Metadata system calls per recording of ``op`` (``tick``, ``build``; ``run``: the command
    ``cmd``, whole), on the raw tree, on the cache folders, and elsewhere (imports, Dagster)."""
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".strace", delete=False) as log:
        path = log.name
    prefix = ["strace", "-f", "-qq", "-o", path, "-e", "trace=" + ",".join(METADATA_CALLS)]
    try:
        if cmd is None:
            run_child("strace-op", op, str(raw_root), str(cache_root), prefix=prefix)
        else:
            subprocess.run(prefix + cmd, cwd=cwd, env=env, check=True, capture_output=True)
        lines = Path(path).read_text().splitlines()
    finally:
        os.unlink(path)
    if cmd is None:
        begin = next(i for i, line in enumerate(lines) if BEGIN in line)
        end = next(i for i, line in enumerate(lines) if END in line)
        lines = lines[begin + 1:end]
    counts = count_calls(lines, raw_root, cache_root)
    return {"per_recording": sum(sum(c.values()) for c in counts.values()) / n,
            **{f"{where}_per_recording": sum(c.values()) / n for where, c in counts.items()},
            "breakdown": {where: {k: round(v / n, 2) for k, v in sorted(c.items())}
                          for where, c in counts.items()}}


def dagster_noop(raw_root: Path, cache_root: Path, work: Path, workers: int, n: int) -> dict:
    import dagster as dg
    from eeg_assets import defs

    raw = defs.resolve_asset_graph().get(dg.AssetKey("raw_edf_recordings"))
    # as split_cache_job runs it: the split listed first (materialized since issue 22)
    chain = (["raw_edf_recordings"] if raw.is_observable or raw.is_materializable else []) + [
        "npz_windows", "dataset_index", "manifest", "balanced_dataset"]
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EEG_ASSETS_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), EEG_ASSETS_RAW_ROOT=str(raw_root),
               EEG_ASSETS_CACHE_ROOT=str(cache_root), EEG_ASSETS_RESULTS_ROOT=str(work / "res"),
               EEG_ASSETS_WORKERS=str(workers))
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m",
           "eeg_assets", "--select", ",".join(chain), "--partition", "train"]
    timed(cmd, work, env)  # the first run records what the CLI build left (not a no-op yet)
    runs = []  # three no-op runs; their medians are reported (12 steps on 2 cores vary a lot)
    for _ in range(NOOP_RUNS):
        result = timed(cmd, work, env)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            steps = instance.get_run_step_stats(instance.get_runs(limit=1)[0].run_id)
        durations = {s.step_key: (s.end_time or 0) - (s.start_time or 0) for s in steps}
        runs.append((result, sum(durations.values()), durations))
    result, step_s, durations = sorted(runs, key=lambda run: run[1])[len(runs) // 2]
    slowest = max(durations, key=durations.get)
    # one more run, under strace (slowed down by it: its times are not the ones reported)
    calls = metadata_calls("run", raw_root, cache_root, n, cmd=cmd, cwd=work, env=env)
    return {"wall_s": statistics.median(r["wall_s"] for r, _, _ in runs), "step_s": step_s,
            "peak_kb": max(max(r["main_kb"], r["worker_kb"]) for r, _, _ in runs),
            "slowest": f"{slowest} {durations[slowest]:.1f} s", "calls": calls}


def file_kb(*paths: Path) -> float | None:
    present = [p for p in paths if p.exists()]
    return sum(p.stat().st_size for p in present) / 1024 if present else None


def measure(n: int, raw_root: Path, template: Path, workers: int, work: Path) -> dict:
    cache_root = work / "cache"
    cache_dir = cache_root / "train"
    cli = [sys.executable, "-m", "eeg_assets"]
    build = [*cli, "build-cache", "--data-dir", str(raw_root / "train"), "--cache-dir",
             str(cache_dir), "--split", "train", "--no-progress", "--workers", str(workers)]
    row: dict = {"n": n}
    print(f"[{n}] first build ...", flush=True)
    first = timed(build, work)
    row.update(first_s=first["wall_s"], build_main_kb=first["main_kb"],
               build_worker_kb=first["worker_kb"])
    print(f"[{n}] no-op build, scan-cache ...", flush=True)
    row["noop_s"] = timed(build, work)["wall_s"]
    row["scan_s"] = timed([*cli, "scan-cache", "--cache-dir", str(cache_dir)], work)["wall_s"]
    print(f"[{n}] sensor ticks ...", flush=True)
    row["sensor"] = run_child("sensor", str(raw_root), str(cache_root), str(template))
    print(f"[{n}] metadata calls (strace) ...", flush=True)
    row["calls_tick"] = metadata_calls("tick", raw_root, cache_root, n)
    row["calls_build"] = metadata_calls("build", raw_root, cache_root, n)
    print(f"[{n}] dagster asset materialize (no-op) ...", flush=True)
    row["dagster"] = dagster_noop(raw_root, cache_root, work, workers, n)
    row["sizes_kb"] = {
        "ledger": file_kb(cache_dir / "_ledger.sqlite", cache_dir / "_ledger.sqlite-wal"),
        "index": file_kb(cache_dir / "_dataset_index.json"),
        "manifest": file_kb(cache_dir / "manifest.json"),
        "listing": file_kb(cache_dir / "_raw_listing.json"),
        "folder snapshot": file_kb(cache_dir / "_raw_folders.json")}
    print(f"[{n}] add one recording ...", flush=True)
    try:
        row["add_one"] = run_child("add-one", str(raw_root), str(cache_root), str(template),
                                   str(workers))
    finally:
        remove_patient(raw_root, "zzzzaddo")
    return row


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------

def _f(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _calls(calls: dict | None) -> str:
    if not calls:
        return "n/a"
    return "/".join(f"{calls[f'{where}_per_recording']:.2f}" for where in ("raw", "cache", "other"))


def print_table(rows: list[dict], label: str) -> None:
    def line(name: str, cell) -> str:
        return f"{name:<46}" + "".join(f"{cell(r):>16}" for r in rows)

    mb = 1024
    out = [f"bench_scale ({label}); python {sys.version.split()[0]}, {os.cpu_count()} cores",
           line("recordings in the split", lambda r: f"{r['n']:,}"),
           line("first build: ms per file", lambda r: f"{1000 * r['first_s'] / r['n']:.0f}"),
           line("first build: total s", lambda r: f"{r['first_s']:.0f}"),
           line("build-cache peak RSS MB (main/worker)",
                lambda r: f"{r['build_main_kb'] / mb:.0f}/{r['build_worker_kb'] / mb:.0f}"),
           line("no-op build-cache s", lambda r: f"{r['noop_s']:.1f}"),
           line("add one recording: total s", lambda r: f"{r['add_one']['total_s']:.2f}"),
           line("  of which index+manifest refresh s",
                lambda r: f"{r['add_one']['refresh_s']:.2f}"),
           line("scan-cache s", lambda r: f"{r['scan_s']:.1f}"),
           line("sensor first tick after build s", lambda r: f"{r['sensor']['first_tick_s']:.2f}"),
           line("  runs requested for built recordings",
                lambda r: str(r["sensor"]["requests_for_built"])),
           line("sensor tick, nothing new s", lambda r: f"{r['sensor']['quiet_tick_s']:.3f}"),
           line("sensor tick, one new file (seen/request) s",
                lambda r: f"{r['sensor']['new_file_seen_s']:.2f}/"
                          f"{r['sensor']['new_file_requested_s']:.2f}"),
           line("  runs requested for the new file", lambda r: str(r["sensor"]["requested_new"])),
           line("cursor bytes (steady/max)",
                lambda r: f"{r['sensor']['cursor_steady']:,}/{r['sensor']['cursor_max']:,}"),
           line("metadata calls/recording, raw/cache/other:", lambda r: ""),
           line("  quiet tick", lambda r: _calls(r["calls_tick"])),
           line("  no-op build-cache (build_split)", lambda r: _calls(r["calls_build"])),
           line("  no-op dagster materialize (whole)",
                lambda r: _calls(r["dagster"].get("calls"))),
           line(f"no-op dagster materialize (median of {NOOP_RUNS}): wall s",
                lambda r: f"{r['dagster']['wall_s']:.1f}"),
           line("  sum of step times s", lambda r: f"{r['dagster']['step_s']:.1f}"),
           line("  peak RSS MB", lambda r: f"{r['dagster']['peak_kb'] / mb:.0f}"),
           *(line(f"{name} KB", lambda r, name=name: _f(r["sizes_kb"][name], ".0f"))
             for name in ("ledger", "index", "manifest", "listing", "folder snapshot"))]
    print("\n".join(out))
    for r in rows:
        for op, calls in (("tick", r["calls_tick"]), ("build", r["calls_build"]),
                          ("dagster run", r["dagster"].get("calls"))):
            if calls:
                print(f"  [{r['n']}] {op} calls per recording: {calls['breakdown']}")
        print(f"  [{r['n']}] slowest no-op step: {r['dagster']['slowest']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,2000,4667",
                        help="recordings in the split, comma-separated (default 500,2000,4667)")
    parser.add_argument("--dir", default=str(Path.home() / ".cache/eeg_assets/bench_scale"),
                        help="where the generated corpus is kept and reused")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--label", default="this checkout", help="names the code measured")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        handlers = {"sensor": child_sensor, "add-one": lambda *a: child_add_one(*a[:3], int(a[3])),
                    "strace-op": child_strace_op}
        result = handlers[args.child](*rest)
        if result is not None:
            print("RESULT " + json.dumps(result), flush=True)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    import eeg_assets
    here = Path(eeg_assets.__file__).parent
    seen = subprocess.run([sys.executable, "-c", "import eeg_assets; print(eeg_assets.__file__)"],
                          cwd=tempfile.gettempdir(), capture_output=True, text=True).stdout
    if Path(seen.strip()).parent != here:  # every subprocess must measure the same code
        raise SystemExit(f"subprocesses import eeg_assets from {seen.strip()}, not {here}")
    print(f"eeg_assets from {here}", flush=True)
    views = ensure_corpus(Path(args.dir), sizes)
    rows = []
    for n in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bench_scale_{n}_"))
        try:
            rows.append(measure(n, views[n], Path(args.dir) / "template.edf", args.workers,
                                work))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(rows, args.label)


if __name__ == "__main__":
    main()
