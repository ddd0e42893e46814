"""Scenarios with real ``build-cache`` processes: killed with SIGKILL at seeded points then rerun,
a full disk (a file-size limit) on a first build and during a rebuild, and two builds of the same
split at once. Each returns a :class:`~eeg_assets.fault_injection.runs.ScenarioResult` compared
with an uninterrupted build."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from eeg_assets.lib.cache.ledger import BUILT, FAILED
from eeg_assets.synthetic.edf_writer import Event, tusz_dir, write_recording
from eeg_assets.fault_injection.checks import (
    cli_line, compare_with_reference, ledger_facts, missing_reasons, staleness, temporary_files,
    untrustworthy_files,
)
from eeg_assets.fault_injection.runs import (
    PACKAGE_PARENT, ScenarioResult, build_cache_args, cli_env, live_group_members, run_build_cache,
)


def _wait_for(predicate: Callable[[], bool], timeout: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.002)
    return False


def crash_scenario(work_dir: Path, data_dir: Path, reference_dir: Path, *, seed: int,
                   workers: int = 1, trigger: str = "time") -> ScenarioResult:
    """SIGKILL a ``build-cache`` process, then rerun it and compare with an uninterrupted build.

    Where the kill lands, drawn from ``seed``:

    * ``trigger="time"``: 0.3-3.0 s after the process started (imports, build or index/manifest
      refresh, whichever is running then);
    * ``trigger="progress"``: once k of the NPZs are in place (k random), 0-0.2 s later: always
      inside the build, wherever it is (a write, a rename, a ledger update);
    * ``trigger="mid-write"``: as soon as one NPZ is in place while another is being written.

    Only the main process is killed, as the OOM killer or ``kill -9 <pid>`` would; its workers
    must not outlive it.
    """
    rng = random.Random(seed)
    n_expected = len(list(Path(reference_dir).glob("*_windows.npz")))
    if trigger == "time":
        delay = rng.uniform(0.3, 3.0)
        name = f"kill -9 {delay:.2f} s after start, seed {seed}"
    elif trigger == "progress":
        k, delay = rng.randrange(n_expected), rng.uniform(0.0, 0.2)
        name = f"kill -9 {delay:.2f} s after NPZ #{k} was in place, seed {seed}"
    else:
        name = "kill -9 mid-write (one NPZ in place, another being written)"
    name += f", {workers} worker(s)"
    result = ScenarioResult(name, "crash (SIGKILL + rerun)", inputs=1)
    cache = Path(work_dir) / f"crash_{trigger}_{seed}_{workers}"
    proc = subprocess.Popen([sys.executable, "-m", "eeg_assets",
                             *build_cache_args(data_dir, cache, workers)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env(),
                            cwd=PACKAGE_PARENT, start_new_session=True)
    started = time.monotonic()
    try:
        if trigger == "time":
            _wait_for(lambda: time.monotonic() - started >= delay, 120, proc)
        elif trigger == "progress":
            _wait_for(lambda: (cache / ".build.lock").exists()
                      and len(list(cache.glob("*_windows.npz"))) >= k, 120, proc)
            _wait_for(lambda: False, delay, proc)
        else:
            _wait_for(lambda: any(cache.glob("*_windows.npz")) and any(cache.glob(".*.tmp")),
                      120, proc)
        finished_first = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        npz_at_kill = sorted(p.name for p in cache.glob("*_windows.npz"))
        tmp_at_kill = temporary_files(cache)
        # Its workers (a pool when workers > 1) must go with it.
        deadline = time.monotonic() + 5
        while live_group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = live_group_members(proc.pid)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if survivors:
        result.problems.append(f"{len(survivors)} worker process(es) outlived the killed build "
                               "(still writing into the split)")
    untrusted = untrustworthy_files(cache)
    rerun = run_build_cache(data_dir, cache, workers=1)
    if rerun.returncode != 0:
        result.problems.append(f"rerun exited {rerun.returncode}: {rerun.stderr[-500:]}")
    untrusted += [f for f in untrustworthy_files(cache) if f not in untrusted]
    leftovers = temporary_files(cache)
    problems, lost = compare_with_reference(cache, reference_dir)
    result.problems += problems
    if untrusted:
        result.problems.append(f"incomplete files under a final name: {untrusted}")
    if leftovers:
        result.problems.append(f"temporary files left after the rerun: {leftovers}")
    reference_npz = len(list(reference_dir.glob("*_windows.npz")))
    result.good_expected = reference_npz
    result.good_built = reference_npz - lost
    result.files_lost = lost
    result.half_written = len(untrusted) + len(leftovers)
    state = ("the build had already finished" if finished_first else
             f"{len(npz_at_kill)} NPZ(s) in place, {len(tmp_at_kill)} temporary file(s)")
    result.detail = f"at the kill: {state}; rerun: exit {rerun.returncode}"
    shutil.rmtree(cache, ignore_errors=True)
    return result


def _limited_build_command(data_dir: Path, cache_dir: Path, limit_bytes: int) -> list[str]:
    """build-cache in a process that may not write files larger than ``limit_bytes`` (a full disk
    as the writer sees it: write() fails with EFBIG instead of the process being killed)."""
    code = ("import resource, runpy, signal, sys; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); "
            "sys.argv[0] = 'eeg_assets'; "
            "runpy.run_module('eeg_assets', run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", code, *build_cache_args(data_dir, cache_dir, workers=1)]


def _write_failure_lines(proc: subprocess.CompletedProcess, cache: Path, source: str,
                         reasons: tuple[str, ...], kept: bool) -> list[str]:
    """Problems with how a build-cache that could not write ``source``'s NPZ said so: exit 1, the
    summary's ``failed, will retry`` line, then ``error: N recording(s) could not be written``."""
    problems = []
    if proc.returncode != 1:
        problems.append(f"build-cache exited {proc.returncode}, expected 1 (the cache could not "
                        f"be written): {proc.stderr[-300:]}")
    if "Traceback" in proc.stderr:
        problems.append(f"traceback: {proc.stderr[-500:]}")
    if "failed, will retry 1 |" not in proc.stdout:
        problems.append(f"summary counts lack 'failed, will retry 1 |': {proc.stdout[:400]!r}")
    line = cli_line(proc.stdout, "failed, will retry", source)
    expected_line = reasons + (("(its previous NPZ is kept, stale)",) if kept else ())
    if missing := missing_reasons(line, expected_line):
        problems.append(f"summary line '  failed, will retry: {source}: ...' lacks {missing}: "
                        f"{line!r}")
    error = next((x for x in proc.stderr.splitlines() if x.startswith("error: ")), None)
    expected_error = (f"error: 1 recording(s) could not be written to {cache}: {source}: ",
                      *reasons, "tried again next run")
    if kept:
        expected_error += ("the previous NPZ of 1 recording(s) is kept (stale)",)
    if missing := missing_reasons(error, expected_error):
        problems.append(f"stderr 'error: ...' line lacks {missing}: {error!r}")
    return problems


def disk_full_scenario(work_dir: Path, limit_bytes: int = 12 * 2 ** 20) -> ScenarioResult:
    """A write that fails (file-size limit) is 'failed' with a clear reason, leaves nothing under
    the final name, does not stop the small recording, makes build-cache exit 1 naming it (the
    cache could not be written), and is built by a rerun without the limit.
    """
    result = ScenarioResult(f"file-size limit {limit_bytes >> 20} MiB (disk full), then rerun",
                            "disk full", inputs=1, rejections_expected=1, good_expected=2)
    data, cache = Path(work_dir) / "diskfull_data", Path(work_dir) / "diskfull_cache"
    small = write_recording(tusz_dir(data, "small"), "small_s001_t000", duration_s=80,
                            events=[Event(20.5, 45.25, "fnsz")])
    big = write_recording(tusz_dir(data, "big"), "big_s001_t000", duration_s=300,
                          events=[Event(100.0, 160.0, "fnsz")])
    small_src, big_src = (f.edf.relative_to(data).as_posix() for f in (small, big))
    first = subprocess.run(_limited_build_command(data, cache, limit_bytes), capture_output=True,
                           text=True, env=cli_env(), cwd=PACKAGE_PARENT, timeout=300)
    facts = ledger_facts(cache)
    reasons = ("could not write", "big_s001_t000_windows.npz", "File too large")
    big_fact = facts.get(big_src)
    cli_problems = _write_failure_lines(first, cache, big_src, reasons, kept=False)
    result.problems += [f"limited run: {p}" for p in cli_problems]
    if big_fact is None or big_fact[0] != FAILED:
        result.problems.append(f"big recording: expected status failed, got {big_fact}")
    elif missing := missing_reasons(big_fact[4], reasons):
        result.problems.append(f"failed reason lacks {missing}: {big_fact[4]!r}")
    elif not cli_problems:
        result.rejected_as_expected = 1
    half = [p.name for p in cache.glob("big*")] + temporary_files(cache) \
        + untrustworthy_files(cache)
    if half:
        result.problems.append(f"left after the failed write: {half}")
    result.half_written = len(half)
    if facts.get(small_src, (None,))[0] != BUILT:
        result.problems.append(f"the small recording was not built: {facts.get(small_src)}")
    second = run_build_cache(data, cache)
    facts = ledger_facts(cache)
    built = [s for s in (small_src, big_src) if facts.get(s, (None,))[0] == BUILT
             and (cache / facts[s][3]).is_file()]
    result.good_built = len(built)
    if second.returncode != 0 or big_src not in built:
        result.problems.append(f"rerun without the limit did not build the big recording "
                               f"(exit {second.returncode}): {facts.get(big_src)}")
    result.files_lost = 2 - len(built)
    index_reason, manifest_reason = staleness(cache)
    if index_reason or manifest_reason:
        result.problems.append(f"stale after the rerun: {index_reason or manifest_reason}")
    error = next((x for x in first.stderr.splitlines() if x.startswith("error: ")), "")
    result.detail = (f"limited run: exit {first.returncode}, {big_fact[0] if big_fact else None}: "
                     f"{big_fact[4] if big_fact else ''} | {error} | rerun built {len(built)}/2")
    return result


_LIMITED_DAGSTER_RUN = """
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from pathlib import Path
from eeg_assets.fault_injection.runs import materialize_chain, step_failure_message
result = materialize_chain(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]),
                           ["npz_windows"], log_level="CRITICAL", workers=1)
print(json.dumps({"success": result.success, "failure": step_failure_message(result)}))
"""


def rebuild_disk_full_scenario(work_dir: Path, limit_bytes: int = 12 * 2 ** 20,
                               with_dagster: bool = True) -> ScenarioResult:
    """A full disk during a REBUILD keeps the previous NPZ (issue 21).

    Two recordings are built without a limit (the big one's NPZ is ~30 MB); the big EDF is then
    rewritten with the same bytes (a new mtime: it must be rebuilt) and the rebuild runs under a
    file-size limit smaller than its NPZ (``write()`` fails with EFBIG, as on a full disk):

    * ``build-cache`` prints the summary (``failed, will retry: <source>: could not write ...
      (its previous NPZ is kept, stale)``), then ``error: 1 recording(s) could not be written to
      <cache>: ...; tried again next run; the previous NPZ of 1 recording(s) is kept (stale)``
      and exits 1;
    * the ``npz_windows`` step (in a Dagster run under the same limit) fails with that message;
    * after each, the previous NPZ is there byte for byte, its ledger entry is unchanged and
      ``_dataset_index.json`` still lists it; no temporary file is left;
    * a rerun without the limit rebuilds it.

    ENOSPC itself (a real full file system) needs a mount this scenario cannot make; EFBIG from
    ``RLIMIT_FSIZE`` takes the same path in the writer.
    """
    from eeg_assets.lib.cache.ledger import Ledger
    from eeg_assets.lib.dataset.index import read_index

    plays = 2 if with_dagster else 1
    how = "build-cache, npz_windows" if with_dagster else "build-cache"
    result = ScenarioResult(f"file-size limit {limit_bytes >> 20} MiB during a REBUILD, previous "
                            f"NPZ kept ({how})", "disk full", inputs=plays,
                            rejections_expected=plays, good_expected=2)
    raw_root, cache_root = Path(work_dir) / "raw", Path(work_dir) / "cache"
    data, cache = raw_root / "train", cache_root / "train"
    small = write_recording(tusz_dir(data, "small"), "small_s001_t000", duration_s=80,
                            events=[Event(20.5, 45.25, "fnsz")])
    big = write_recording(tusz_dir(data, "big"), "big_s001_t000", duration_s=300,
                          events=[Event(100.0, 160.0, "fnsz")])
    small_src, big_src = (f.edf.relative_to(data).as_posix() for f in (small, big))
    first = run_build_cache(data, cache)
    if first.returncode != 0:
        result.problems.append(f"first build exited {first.returncode}: {first.stderr[-300:]}")
        return result
    entry_before = Ledger(cache).entries().get(big_src)
    if entry_before is None or entry_before.status != BUILT:
        result.problems.append(f"first build did not build {big_src}: {entry_before}")
        return result
    npz_name = entry_before.npz_name
    npz_before = (cache / npz_name).read_bytes()
    st = big.edf.stat()
    big.edf.write_bytes(big.edf.read_bytes())  # same bytes, a new mtime: it must be rebuilt
    os.utime(big.edf, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))

    def kept_intact(when: str) -> bool:
        problems = []
        if not (cache / npz_name).is_file():
            problems.append(f"{npz_name} was removed")
        elif (cache / npz_name).read_bytes() != npz_before:
            problems.append(f"{npz_name} changed")
        if (entry := Ledger(cache).entries().get(big_src)) != entry_before:
            problems.append(f"ledger entry changed: {entry}")
        try:
            if npz_name not in read_index(cache).files:
                problems.append(f"_dataset_index.json no longer lists {npz_name}")
        except Exception as exc:  # noqa: BLE001 - reported
            problems.append(f"_dataset_index.json unreadable: {exc}")
        if half := temporary_files(cache) + untrustworthy_files(cache):
            problems.append(f"left {half}")
            result.half_written += len(half)
        result.problems += [f"{when}: {p}" for p in problems]
        return not problems

    reasons = ("could not write", npz_name, "File too large")
    limited = subprocess.run(_limited_build_command(data, cache, limit_bytes), capture_output=True,
                             text=True, env=cli_env(), cwd=PACKAGE_PARENT, timeout=300)
    cli_problems = _write_failure_lines(limited, cache, big_src, reasons, kept=True)
    result.problems += [f"limited build-cache: {p}" for p in cli_problems]
    cli_error = next((x for x in limited.stderr.splitlines() if x.startswith("error: ")), "")
    if kept_intact("after the limited build-cache") and not cli_problems:
        result.rejected_as_expected += 1
    dagster_failure = ""
    if with_dagster:
        proc = subprocess.run([sys.executable, "-c", _LIMITED_DAGSTER_RUN, str(raw_root),
                               str(cache_root), str(Path(work_dir) / "results"),
                               str(limit_bytes)],
                              capture_output=True, text=True, env=cli_env(), cwd=PACKAGE_PARENT,
                              timeout=300)
        try:
            outcome = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            outcome = None
            result.problems.append(f"limited npz_windows run exited {proc.returncode}: "
                                   f"{proc.stderr[-500:]}")
        ok = outcome is not None
        if outcome is not None:
            dagster_failure = outcome["failure"]
            if outcome["success"]:
                ok = False
                result.problems.append("npz_windows succeeded although it could not write")
            expected = (f"1 recording(s) could not be written to {cache}: {big_src}: ", *reasons,
                        "the previous NPZ of 1 recording(s) is kept (stale)")
            if missing := missing_reasons(dagster_failure, expected):
                ok = False
                result.problems.append(f"npz_windows step failure lacks {missing}: "
                                       f"{dagster_failure!r}")
        if kept_intact("after the limited npz_windows run") and ok:
            result.rejected_as_expected += 1
    rerun = run_build_cache(data, cache)
    entries = Ledger(cache).entries()
    built = [s for s in (small_src, big_src) if s in entries and entries[s].status == BUILT
             and (cache / entries[s].npz_name).is_file()]
    result.good_built, result.files_lost = len(built), 2 - len(built)
    rebuilt = (big_src in entries
               and entries[big_src].edf_fingerprint != entry_before.edf_fingerprint)
    if rerun.returncode != 0 or not rebuilt or "built 1 " not in rerun.stdout:
        result.problems.append(f"rerun without the limit did not rebuild {big_src} (exit "
                               f"{rerun.returncode}): {rerun.stdout[:300]!r}")
    index_reason, manifest_reason = staleness(cache)
    if index_reason or manifest_reason:
        result.problems.append(f"stale after the rerun: {index_reason or manifest_reason}")
    result.detail = (f"build-cache exit {limited.returncode}: {cli_error}"
                     + (f" | npz_windows step: {dagster_failure}" if with_dagster else "")
                     + f" | rerun: exit {rerun.returncode}, rebuilt {rebuilt}")
    return result


_LIBRARY_RUN = """
import sys
from pathlib import Path
from eeg_assets.lib.cache.build import build_split
from eeg_assets.lib.dataset.index import collect_facts, update_index
from eeg_assets.lib.dataset.manifest import update_manifest
data, cache = Path(sys.argv[1]), Path(sys.argv[2])
build_split(data, cache, "train", workers=1, progress=None, log=lambda line: None)
update_index(cache)
update_manifest(cache)
"""


def concurrency_scenario(work_dir: Path, data_dir: Path, reference_dir: Path, *,
                         how: str = "cli", rounds: int = 1) -> ScenarioResult:
    """Two processes build the same split at once (``how="cli"``: two build-cache commands;
    ``how="library"``: two "Dagster runs", i.e. build_split then update_index and update_manifest
    as the npz_windows, dataset_index and manifest assets do). Both must succeed and the result
    must equal one uninterrupted build."""
    title = ("two build-cache processes on the same split" if how == "cli" else
             "two runs of build_split + update_index + update_manifest (as Dagster)")
    result = ScenarioResult(title, "concurrency", inputs=rounds)
    for round_no in range(rounds):
        cache = Path(work_dir) / f"concurrent_{how}_{round_no}"
        if how == "cli":
            command = [sys.executable, "-m", "eeg_assets", *build_cache_args(data_dir, cache)]
        else:
            command = [sys.executable, "-c", _LIBRARY_RUN, str(data_dir), str(cache)]
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=cli_env(), cwd=PACKAGE_PARENT) for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outputs):
            if p.returncode != 0:
                result.problems.append(f"round {round_no}: a process exited {p.returncode}: "
                                       f"{err.strip().splitlines()[-1] if err.strip() else ''}")
        problems, lost = compare_with_reference(cache, reference_dir)
        result.problems += [f"round {round_no}: {p}" for p in problems]
        half = temporary_files(cache) + untrustworthy_files(cache)
        if half:
            result.problems.append(f"round {round_no}: left {half}")
        n_ref = len(list(reference_dir.glob("*_windows.npz")))
        result.good_expected += n_ref
        result.good_built += n_ref - lost
        result.files_lost += lost
        result.half_written += len(half)
        shutil.rmtree(cache, ignore_errors=True)
    result.detail = f"{rounds} round(s); exit codes and results compared with one run"
    return result
