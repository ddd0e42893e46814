"""Scenarios with real ``build-cache`` processes: killed with SIGKILL at seeded points then rerun,
a full disk (a file-size limit), and two builds of the same split at once. Each returns a
:class:`~eeg_assets.synthetic.faults.runs.ScenarioResult` compared with an uninterrupted build."""

from __future__ import annotations

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
from eeg_assets.synthetic.faults.checks import (
    cli_line, compare_with_reference, ledger_facts, missing_reasons, staleness, temporary_files,
    untrustworthy_files,
)
from eeg_assets.synthetic.faults.runs import (
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


def disk_full_scenario(work_dir: Path, limit_bytes: int = 12 * 2 ** 20) -> ScenarioResult:
    """A write that fails (file-size limit) is 'failed' with a clear reason, leaves nothing under
    the final name, does not stop the small recording, and is built by a rerun without the limit.
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
    if first.returncode != 0:
        result.problems.append(f"limited run exited {first.returncode}: {first.stderr[-300:]}")
    if big_fact is None or big_fact[0] != FAILED:
        result.problems.append(f"big recording: expected status failed, got {big_fact}")
    elif missing := missing_reasons(big_fact[4], reasons):
        result.problems.append(f"failed reason lacks {missing}: {big_fact[4]!r}")
    line = cli_line(first.stdout, "failed (will retry)", big_src)
    if missing := missing_reasons(line, reasons):
        result.problems.append(f"CLI output lacks {missing} for the failed write: {line!r}")
    elif big_fact is not None and big_fact[0] == FAILED \
            and not missing_reasons(big_fact[4], reasons):
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
    result.detail = (f"limited run: {big_fact[0] if big_fact else None}: "
                     f"{big_fact[4] if big_fact else ''} | rerun built {len(built)}/2")
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
